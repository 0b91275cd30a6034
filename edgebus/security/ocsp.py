"""OCSP peer verification (`ocsp_peer` in a tls{} block), as nats-server's server/ocsp_peer.go.

After a TLS handshake the peer's *verified* chain (leaf first, trust anchor last) is checked:
every link except the anchor whose certificate names an http(s) OCSP responder (AIA) is
"eligible", and the chain is valid when each eligible link has a current, correctly signed
`good` response from its responder (or `unknown`, with `unknown_is_good`). A self-signed
certificate alone, or a chain with no eligible link, is valid; an eligible certificate whose
issuer is unknown is not. Responses come from the `ocsp_cache` when a
current one is there, else from the responder by HTTP GET (`<url>/<url-escaped base64 request>`,
as nats-server) made by `ocsp_http` on trio and h11, bounded by `ca_timeout`.

Policy, as nats-server: a revoked (or unknown) link rejects the peer; a responder that cannot
be reached rejects it too unless `allow_when_ca_unreachable` is set and no revocation for the
certificate is cached; `warn_only` logs and allows everything. Each refusal is published as
nats-server's `$SYS.SERVER.<id>.OCSP.PEER.LINK.INVALID` and `.CONN.REJECT` advisories.

Python's `ssl` cannot run this inside the handshake (nats-server does it in Go's
VerifyConnection), so callers run `PeerVerifier.check` right after the handshake and before a
byte of protocol, and close the connection when it fails: to the client the connection ends
just after its handshake, as with nats-server under TLS 1.3, where the rejection also arrives
only after the client's handshake completed.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable
from urllib.parse import quote_plus, urlsplit

import trio

from ..options import OCSPPeerOptions
from .ocsp_cache import ResponseCache
from .ocsp_http import http_get

log = logging.getLogger("edgebus.security")

# rejection reasons, the texts nats-server returns for its TLS handshake error
CLIENT_REJECTED = "client not OCSP valid"
SERVER_REJECTED = "server not OCSP valid"


class OCSPPeerRejected(ssl.SSLError):
    """The peer's certificate chain is not OCSP valid (an SSLError, so TLS error paths catch it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "peer not OCSP valid"


@dataclass
class Link:
    """One eligible certificate of a chain, its issuer and its responders."""
    leaf: Any  # cryptography x509.Certificate
    issuer: Any
    urls: list[str]


def _x509() -> Any:
    from cryptography import x509
    return x509


def verified_chain(ssl_stream: Any) -> list[bytes]:
    """The DER certificates OpenSSL verified for the peer, leaf first; [] when none.

    `get_verified_chain()` is public from Python 3.13; 3.10-3.12 have the same method on the
    private `_sslobj`. Without either, fall back to the peer's own certificate alone (the
    caller completes the chain from the configured CA file).
    """
    obj = getattr(ssl_stream, "_ssl_object", ssl_stream)  # trio.SSLStream wraps an SSLObject
    for target in (obj, getattr(obj, "_sslobj", None)):
        get = getattr(target, "get_verified_chain", None)
        if get is None:
            continue
        try:
            chain = get() or []
        except (ssl.SSLError, ValueError):
            return []
        out = []
        for c in chain:
            if isinstance(c, bytes):
                out.append(c)
            else:  # _ssl.Certificate
                out.append(c.public_bytes(2))  # _ssl.ENCODING_DER
        return out
    try:
        der = ssl_stream.getpeercert(binary_form=True)
    except (ssl.SSLError, ValueError):
        der = None
    return [der] if der else []


def complete_chain(chain: list[Any], ca_file: str | None) -> list[Any]:
    """Extend `chain` (certificates, leaf first) with issuers from `ca_file`, matching the
    issuer name to a subject and checking the signature, until a self-signed certificate or
    no issuer is found."""
    if not chain or not ca_file:
        return chain
    x509 = _x509()
    try:
        with open(ca_file, "rb") as f:
            pool = x509.load_pem_x509_certificates(f.read())
    except (OSError, ValueError):
        return chain
    out = list(chain)
    while len(out) < 10:
        cur = out[-1]
        if cur.issuer == cur.subject:
            break
        nxt = None
        for cand in pool:
            if cand.subject != cur.issuer or cand in out:
                continue
            try:
                cur.verify_directly_issued_by(cand)
            except Exception:  # InvalidSignature, or a key type that cannot have signed it
                continue
            nxt = cand
            break
        if nxt is None:
            break
        out.append(nxt)
    return out


def ocsp_urls(cert: Any) -> list[str]:
    """The http(s) OCSP responder URLs in a certificate's AIA extension."""
    x509 = _x509()
    from cryptography.x509.oid import AuthorityInformationAccessOID
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    out = []
    for d in aia:
        if d.access_method != AuthorityInformationAccessOID.OCSP:
            continue
        if not isinstance(d.access_location, x509.UniformResourceIdentifier):
            continue
        u = d.access_location.value
        if urlsplit(u).scheme in ("http", "https"):
            out.append(u)
    return out


def fingerprint(cert: Any) -> str:
    """nats-server's cache key: base64 of the SHA-256 of the DER certificate."""
    from cryptography.hazmat.primitives.serialization import Encoding
    return base64.b64encode(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()).decode()


def subject_of(cert: Any) -> str:
    return str(cert.subject.rfc4514_string())


def cert_info(cert: Any) -> dict[str, str]:
    """nats-server's CertInfo for events: subject, issuer, fingerprint, raw (base64 DER)."""
    from cryptography.hazmat.primitives.serialization import Encoding
    return {"subject": subject_of(cert), "issuer": str(cert.issuer.rfc4514_string()),
            "fingerprint": fingerprint(cert),
            "raw": base64.b64encode(cert.public_bytes(Encoding.DER)).decode()}


def status_name(resp: Any) -> str:
    from cryptography.x509 import ocsp
    s = resp.certificate_status
    if s == ocsp.OCSPCertStatus.GOOD:
        return "good"
    if s == ocsp.OCSPCertStatus.REVOKED:
        return "revoked"
    return "unknown"


# -- responses --------------------------------------------------------------------------------

def _verify_signature(key: Any, signature: bytes, data: bytes, hash_alg: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), hash_alg)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(hash_alg))
    elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        key.verify(signature, data)
    else:
        raise ValueError(f"unsupported responder key type {type(key).__name__}")


def parse_response(raw: bytes, leaf: Any, issuer: Any) -> Any:
    """Parse a DER OCSP response, check it was signed by `issuer` or by a delegate the issuer
    certified with the OCSP-signing extended key usage (RFC 6960 4.2.2.2), and return its
    single response for `leaf` (status, this/next update). Raises ValueError saying what is
    wrong."""
    from cryptography.x509 import ocsp
    x509 = _x509()
    try:
        resp = ocsp.load_der_ocsp_response(raw)
    except ValueError as e:
        raise ValueError(f"malformed response: {e}") from None
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise ValueError(f"responder status {resp.response_status.name.lower()}")
    signer = issuer
    for cert in resp.certificates:
        if cert == issuer:
            break
        try:
            cert.verify_directly_issued_by(issuer)
        except Exception:
            raise ValueError("response signed by a certificate the issuer did not sign") from None
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = []
        if x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            raise ValueError("invalid delegation: signer lacks the OCSP signing usage")
        signer = cert
        break
    try:
        _verify_signature(signer.public_key(), resp.signature, resp.tbs_response_bytes,
                          resp.signature_hash_algorithm)
    except ValueError:
        raise
    except Exception:
        raise ValueError("bad response signature") from None
    # the answer about `leaf` (a responder may answer several certificates at once)
    for single in resp.responses:
        if single.serial_number == leaf.serial_number:
            return single
    raise ValueError("response is for another certificate")


def response_current(resp: Any, opts: OCSPPeerOptions, now: datetime) -> bool:
    """nats-server's OCSPResponseCurrent: inside [this_update, next_update] give or take the
    allowed clock skew; without next_update, this_update + cache_ttl_when_next_update_unset."""
    skew = timedelta(seconds=opts.allowed_clockskew if opts.allowed_clockskew >= 0 else 30)
    this_update = resp.this_update_utc
    next_update = resp.next_update_utc
    if next_update is None:
        ttl = opts.cache_ttl_when_next_update_unset
        next_update = this_update + timedelta(seconds=ttl if ttl >= 0 else 3600)
    if next_update < now - skew:
        return False
    return not this_update > now + skew


# -- HTTP -------------------------------------------------------------------------------------

async def fetch_response(link: Link, timeout: float) -> bytes:
    """Ask each responder of `link` in turn (GET, as nats-server's peer check); the first
    answer wins. Raises OSError with the last failure."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509 import ocsp
    req = ocsp.OCSPRequestBuilder().add_certificate(link.leaf, link.issuer, hashes.SHA1()).build()
    from cryptography.hazmat.primitives.serialization import Encoding
    enc = quote_plus(base64.b64encode(req.public_bytes(Encoding.DER)).decode())
    err: Exception = OSError("no available OCSP servers")
    for u in link.urls:
        log.debug("Trying OCSP responder url [%s]", u)
        try:
            with trio.fail_after(timeout if timeout > 0 else 2.0):
                return await http_get(f"{u.rstrip('/')}/{enc}")
        except trio.TooSlowError:
            err = OSError(f"timeout after {timeout:g}s")
        except OSError as e:
            err = e
    raise OSError(f"exhausted OCSP responders: {err}")


# -- the verifier -----------------------------------------------------------------------------

class PeerVerifier:
    """Checks peer chains for one server; shares one response cache among all tls{} blocks."""

    def __init__(self, cache: ResponseCache, now: Callable[[], datetime],
                 emit: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.cache = cache
        self.now = now
        # emit(event, body): publish `$SYS.SERVER.<id>.OCSP.PEER.<event>` (none without $SYS)
        self.emit = emit

    async def check(self, ssl_stream: Any, opts: OCSPPeerOptions, *, peer_is_server: bool,
                    ca_file: str | None = None, who: str = "", kind: str = "Client") -> None:
        """Raise OCSPPeerRejected unless the peer of `ssl_stream` is OCSP valid."""
        reason = SERVER_REJECTED if peer_is_server else CLIENT_REJECTED
        x509 = _x509()
        chain = [x509.load_der_x509_certificate(d) for d in verified_chain(ssl_stream)]
        if len(chain) == 1:
            chain = complete_chain(chain, ca_file)
        if not chain:
            log.error("%sPeer certificate is nil, rejecting OCSP peer", who)
            raise OCSPPeerRejected(reason)
        log.debug("Peer OCSP enabled: 1 TLS %s chain(s) will be evaluated",
                  "server" if peer_is_server else "client")
        if not await self.chain_valid(chain, opts, who):
            log.debug("No OCSP valid chains, thus peer is invalid")
            if self.emit is not None:
                self.emit("CONN.REJECT", {"type": "io.nats.server.advisory.v1.ocsp_peer_reject",
                                          "kind": kind, "peer": cert_info(chain[0]),
                                          "reason": reason})
            raise OCSPPeerRejected(reason)

    async def chain_valid(self, chain: list[Any], opts: OCSPPeerOptions, who: str = "") -> bool:
        log.debug("Chain [0]: %d total link(s)", len(chain))
        if len(chain) == 1:
            c = chain[0]
            if c.subject == c.issuer or not ocsp_urls(c):
                log.debug("Chain [0] is self-signed, thus peer is valid")
                return True
            # an eligible certificate whose issuer is unknown cannot be checked
            log.debug("%sNo issuer found for [%s]", who, subject_of(c))
            return False
        links = []
        for i, cert in enumerate(chain[:-1]):  # the trust anchor is never checked
            urls = ocsp_urls(cert)
            if urls:
                links.append(Link(cert, chain[i + 1], urls))
        if not links:
            log.debug("Chain [0] has no OCSP eligible links, thus peer is valid")
            return True
        log.debug("Chain [0] has %d OCSP eligible link(s)", len(links))
        for link in links:
            bad = await self.link_good(link, opts, who)
            if bad:
                log.debug("%s%s", who, bad)
                if self.emit is not None:
                    self.emit("LINK.INVALID", {
                        "type": "io.nats.server.advisory.v1.ocsp_peer_link_invalid",
                        "link": cert_info(link.leaf), "peer": cert_info(chain[0]),
                        "reason": bad})
                return False
        log.debug("Chain [0] is OCSP valid for all eligible links, thus peer is valid")
        return True

    async def link_good(self, link: Link, opts: OCSPPeerOptions, who: str = "") -> str:
        """"" when the link's certificate is good under `opts`, else the reason it is not."""
        key = fingerprint(link.leaf)
        subj = subject_of(link.leaf)
        log.debug("Checking OCSP peer cache for [%s], key [%s]", subj, key)
        now = self.now()
        resp = None
        cached_revocation = False
        raw = self.cache.get(key)
        if raw:
            try:
                cached = parse_response(raw, link.leaf, link.issuer)
            except ValueError:
                log.debug("Invalid cached OCSP response for [%s] with fingerprint [%s]", subj, key)
                self.cache.delete(key, was_miss=True)
            else:
                if response_current(cached, opts, now):
                    log.debug("Cached OCSP response is current, status [%s]", status_name(cached))
                    resp = cached
                else:
                    log.debug("Cached OCSP response is expired, status [%s]", status_name(cached))
                    self.cache.delete(key, was_miss=True)
                # even when stale: allow_when_ca_unreachable must not let it pass
                cached_revocation = status_name(cached) == "revoked"
        if resp is None:
            try:
                raw = await fetch_response(link, opts.ca_timeout)
            except OSError as e:
                log.warning("%sAttempt to obtain OCSP response from CA responder for [%s] "
                            "failed: %s", who, subj, e)
                if opts.warn_only:
                    log.warning("%sOCSP verify fail for [%s] but WarnOnly is true so allowing",
                                who, subj)
                    return ""
                if opts.allow_when_ca_unreachable and not cached_revocation:
                    log.warning("%sFailed to obtain OCSP CA response for [%s] but "
                                "AllowWhenCAUnreachable set; no cached revocation so allowing",
                                who, subj)
                    return ""
                if opts.allow_when_ca_unreachable:
                    log.warning("%sFailed to obtain OCSP CA response for [%s] but "
                                "AllowWhenCAUnreachable set; cached revocation exists so "
                                "rejecting", who, subj)
                return "Failed OCSP response fetch"
            try:
                resp = parse_response(raw, link.leaf, link.issuer)
            except ValueError as e:
                log.error("%sCould not parse OCSP CA response for [%s]: %s", who, subj, e)
                if opts.warn_only:
                    return ""
                return "Failed OCSP response parse"
            if not response_current(resp, opts, now):
                log.warning("%sNew OCSP CA response obtained for [%s] but not current", who, subj)
                if opts.warn_only:
                    return ""
                return "OCSP response not in effectivity window"
            self.cache.put(key, raw, status_name(resp), resp.next_update_utc, subj)
        status = status_name(resp)
        if status == "revoked" or (status == "unknown" and not opts.unknown_is_good):
            log.warning("%sOCSP verify fail for [%s] with CA status [%s]", who, subj, status)
            if opts.warn_only:
                log.warning("%sOCSP verify fail for [%s] but WarnOnly is true so allowing",
                            who, subj)
                return ""
            return f"Invalid OCSP response status: {status}"
        log.debug("%sOCSP verify pass for [%s]", who, subj)
        return ""


def _reset_on_close(ssl_stream: Any) -> None:
    """Make the coming close a TCP reset: the refused peer fails at once, as on nats-server's
    TLS alert, rather than seeing a quiet end of stream some clients wait on."""
    import socket
    import struct
    sock = getattr(getattr(ssl_stream, "transport_stream", None), "socket", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def tls_blocks(o: Any) -> list[Any]:
    """Every tls{} block whose `ocsp_peer` edgebus acts on: clients (NATS, WebSocket, MQTT),
    leaf accept, leaf remotes."""
    out = [o.tls]
    for listener in (o.websocket, o.mqtt):
        if listener is not None:
            out.append(listener.tls)
    if o.leafnodes is not None:
        out.append(o.leafnodes.tls)
        out += [r.tls for r in o.leafnodes.remotes]
    return [t for t in out if t is not None]


class StaplingUnsupported(ValueError):
    """The settings need OCSP stapling, which edgebus cannot do."""


def check_stapling(o: Any) -> None:
    """The config-file check of `edgebus.conf.map_ocsp`, again at start for TLS set by command
    line flags: refuse a listener certificate nats-server would staple (Must-Staple, mode not
    `never`; any certificate under `always`)."""
    from ..conf.map_ocsp import has_must_staple
    mode = o.ocsp.mode if o.ocsp is not None else "auto"
    if mode == "never":
        return
    for t in (o.tls, getattr(o.websocket, "tls", None), getattr(o.mqtt, "tls", None)):
        if t is None or not t.cert_file:
            continue
        if mode == "always" or has_must_staple(t.cert_file):
            raise StaplingUnsupported(
                f"certificate at '{t.cert_file}' needs an OCSP staple (ocsp mode {mode}), which "
                "edgebus cannot provide; set 'ocsp: false' to run without it")


def configure(server: Any) -> None:
    """At start: refuse what needs stapling; when some tls{} block verifies peers with OCSP,
    make the server's verifier and its response cache (loaded and saved by the cache's own
    task, see `ResponseCache.run`)."""
    from ..options import OCSPCacheOptions
    o = server.options
    check_stapling(o)
    server.ocsp_verifier = None
    if not any(t.ocsp_peer is not None and t.ocsp_peer.verify for t in tls_blocks(o)):
        return
    now = server.broker.clock.now
    server.ocsp_verifier = PeerVerifier(ResponseCache(o.ocsp_cache or OCSPCacheOptions(), now),
                                        now, lambda event, body: _sys_event(server, event, body))


def _sys_event(server: Any, event: str, body: dict[str, Any]) -> None:
    """Publish an OCSP peer advisory into the system account, as nats-server does."""
    svc = getattr(server, "services", {}).get("system")
    if svc is None or getattr(svc, "client", None) is None:
        return
    from ..core.clock import rfc3339
    from .sysacct import nuid
    b = server.broker
    body = {"type": body.pop("type"), "id": nuid(), "timestamp": rfc3339(b.clock.now_ns()),
            **body, "server": svc.server_info()}
    svc.send(f"$SYS.SERVER.{b.server_id}.OCSP.PEER.{event}", body)


def on_reload(server: Any) -> None:
    """A reload that turns `ocsp_peer` on for the client listener gets a verifier and cache
    if the server started without one (the new setting is read per connection)."""
    if getattr(server, "ocsp_verifier", None) is not None:
        return
    configure(server)
    verifier = server.ocsp_verifier
    if verifier is not None and getattr(server, "nursery", None) is not None:
        server.services["ocsp"] = verifier.cache
        server.nursery.start_soon(verifier.cache.run)


def varz(server: Any, d: dict[str, Any]) -> None:
    """/varz: `tls_ocsp_peer_verify` (top level, `leaf`, `websocket`, `mqtt`) and the
    `ocsp_peer_cache` block."""
    verifier = getattr(server, "ocsp_verifier", None)
    if verifier is None:
        return
    o = server.options

    def on(t: Any) -> bool:
        return t is not None and t.ocsp_peer is not None and t.ocsp_peer.verify

    if on(o.tls):
        d["tls_ocsp_peer_verify"] = True
    for block, sub in (("leaf", o.leafnodes), ("websocket", o.websocket), ("mqtt", o.mqtt)):
        if sub is not None and on(sub.tls) and isinstance(d.get(block), dict):
            d[block]["tls_ocsp_peer_verify"] = True
    if verifier.cache.type != "none":
        d["ocsp_peer_cache"] = {k: v for k, v in verifier.cache.stats().items() if v}


def peer_check(server: Any, tls: Any, *, peer_is_server: bool,
               kind: str = "Client") -> Callable[..., Any] | None:
    """An async `check(ssl_stream, log_prefix)` for connections under the tls{} options `tls`
    (raises OCSPPeerRejected), or None when that block does not ask for OCSP peer
    verification."""
    opts = getattr(tls, "ocsp_peer", None) if tls is not None else None
    verifier = getattr(server, "ocsp_verifier", None)
    if opts is None or not opts.verify or verifier is None:
        return None

    async def check(ssl_stream: Any, prefix: str = "") -> None:
        try:
            await verifier.check(ssl_stream, opts, peer_is_server=peer_is_server,
                                 ca_file=tls.ca_file, who=prefix, kind=kind)
        except OCSPPeerRejected as e:
            if not peer_is_server:  # a leaf remote's dialer logs its own connect errors
                log.error("%sTLS handshake error: %s", prefix, e)
            _reset_on_close(ssl_stream)
            raise
    return check
