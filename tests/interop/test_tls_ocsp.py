"""OCSP peer verification (`ocsp_peer`) and the `ocsp` / `ocsp_cache` settings, against an OCSP
responder made here: a CA (and an intermediate) whose certificates name a local HTTP responder
that answers good / revoked / unknown as the test says, signed by the issuing CA, and counts
the requests it gets. Clients are nats-py over real TLS sockets; leaf links are made with the
real nats-server on the other side."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote_plus

import nats
import pytest

from conftest import NATS_SERVER, free_port, run_async
from edgebus.testing.embedded import EmbeddedServer

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID  # noqa: E402

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class Responder:
    """An OCSP responder on 127.0.0.1: answers for the certificates `register`ed with it."""

    def __init__(self) -> None:
        self.certs: dict[int, tuple] = {}
        self.requests: dict[int, int] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/moved/"):  # a responder behind a redirect
                    self.send_response(302)
                    self.send_header("Location", self.path[len("/moved"):])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    der = base64.b64decode(unquote_plus(self.path.rsplit("/", 1)[1]))
                    req = ocsp.load_der_ocsp_request(der)
                    body = outer.answer(req.serial_number)
                    self.send_response(200)
                except Exception:
                    body = b""
                    self.send_response(400)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def register(self, cert: x509.Certificate, issuer: x509.Certificate, issuer_key: object,
                 status: str, *, signer: tuple | None = None,
                 next_update: datetime.timedelta | None = datetime.timedelta(hours=1)) -> None:
        """Answer `status` for `cert`, signed by its issuer or by `signer` (cert, key), valid
        until `next_update` from now (None: no next update)."""
        self.certs[cert.serial_number] = (cert, issuer, issuer_key, status, signer, next_update)

    def asked(self, cert: x509.Certificate) -> int:
        with self.lock:
            return self.requests.get(cert.serial_number, 0)

    def answer(self, serial: int) -> bytes:
        with self.lock:
            self.requests[serial] = self.requests.get(serial, 0) + 1
        cert, issuer, key, status, signer, next_update = self.certs[serial]
        st = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
              "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=issuer, algorithm=hashes.SHA1(), cert_status=st,
            this_update=NOW - datetime.timedelta(hours=2),
            next_update=NOW + next_update if next_update is not None else None,
            revocation_time=NOW - datetime.timedelta(hours=3) if status == "revoked" else None,
            revocation_reason=None)
        if signer is not None:  # a delegated responder: its certificate rides in the response
            b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, signer[0])
            if len(signer) < 3 or signer[2]:
                b = b.certificates([signer[0]])
            key = signer[1]
        else:
            b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _black_hole_url() -> tuple[socket.socket, str]:
    """An OCSP URL that accepts connections (the kernel's backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s, f"http://127.0.0.1:{s.getsockname()[1]}/"


def _closed_port_url() -> str:
    """An OCSP URL nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


class PKI:
    """A root CA, an intermediate, and certificates naming the responder in their AIA."""

    def __init__(self, d, responder: Responder) -> None:
        self.dir = d
        self.responder = responder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = self._sign(_name("ocsp test root"), self.key.public_key(), None, self.key,
                               ca=True, aia=None)
        self.ca_file = self._write("root.pem", _pem(self.cert))

    def _write(self, name: str, data: bytes) -> str:
        p = self.dir / name
        p.write_bytes(data)
        return str(p)

    def _sign(self, subject, public_key, issuer, issuer_key, *, ca=False, aia=None, usage=None,
              sans=None, must_staple=False) -> x509.Certificate:
        issuer_name = issuer.subject if issuer is not None else subject
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
             .public_key(public_key).serial_number(x509.random_serial_number())
             .not_valid_before(NOW - datetime.timedelta(minutes=5))
             .not_valid_after(NOW + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if aia:
            b = b.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(aia))]),
                critical=False)
        if usage is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if must_staple:
            b = b.add_extension(x509.TLSFeature([x509.TLSFeatureType.status_request]),
                                critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def delegate(self, ocsp_signing: bool = True, issuer: tuple | None = None) -> tuple:
        """A responder certificate the CA issues, with (or without) the OCSP signing usage."""
        icert, ikey = issuer or (self.cert, self.key)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(_name(f"ocsp responder {ocsp_signing}"), key.public_key(), icert, ikey,
                          usage=ExtendedKeyUsageOID.OCSP_SIGNING if ocsp_signing
                          else ExtendedKeyUsageOID.CLIENT_AUTH)
        return cert, key

    def intermediate(self, status: str = "good") -> tuple[x509.Certificate, object]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(_name(f"ocsp test intermediate {status}"), key.public_key(), self.cert,
                          self.key, ca=True, aia=self.responder.url)
        self.responder.register(cert, self.cert, self.key, status)
        return cert, key

    def issue(self, stem: str, status: str = "good", *, server: bool = False, aia: str | None = "",
              issuer: tuple[x509.Certificate, object] | None = None,
              must_staple: bool = False, **answer) -> tuple[str, str, x509.Certificate]:
        """(cert file, key file, cert): the cert file holds the chain up to the root (excluded)."""
        icert, ikey = issuer or (self.cert, self.key)
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = self._sign(_name(stem), key.public_key(), icert, ikey,
                          aia=self.responder.url if aia == "" else aia,
                          usage=ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH,
                          sans=sans if server else None, must_staple=must_staple)
        if aia == "":
            self.responder.register(cert, icert, ikey, status, **answer)
        chain = _pem(cert) + (_pem(icert) if issuer is not None else b"")
        cf = self._write(f"{stem}.pem", chain)
        kf = self._write(f"{stem}-key.pem", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return cf, kf, cert

    def client_ctx(self, who: tuple[str, str, x509.Certificate]) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.load_cert_chain(who[0], who[1])
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    responder = Responder()
    p = PKI(tmp_path_factory.mktemp("ocsp-pki"), responder)
    p.server = p.issue("server", server=True)
    p.good = p.issue("good")
    p.revoked = p.issue("revoked", "revoked")
    p.unknown = p.issue("unknown", "unknown")
    p.unreachable = p.issue("unreachable", aia=_closed_port_url())
    p.no_aia = p.issue("no-aia", aia=None)
    yield p
    responder.close()


class Logs(logging.Handler):
    """edgebus log lines, collected from the server thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def has(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))


@pytest.fixture
def logs():
    h = Logs()
    lg = logging.getLogger("edgebus")
    old = lg.level
    lg.addHandler(h)
    lg.setLevel(logging.DEBUG)
    yield h
    lg.removeHandler(h)
    lg.setLevel(old)


def tls_conf(pki, peer: str = "ocsp_peer: true", extra: str = "", store: str = "") -> str:
    cache = f"ocsp_cache {{ local_store: '{store}' }}\n" if store else "ocsp_cache: false\n"
    return (f"{cache}{extra}\ntls {{\n cert_file: '{pki.server[0]}'\n key_file: '{pki.server[1]}'\n"
            f" ca_file: '{pki.ca_file}'\n verify: true\n {peer}\n}}\n")


def connects(port: int, ctx: ssl.SSLContext) -> bool:
    """Does a nats-py client with this TLS context get a round trip through the server?"""
    async def go() -> bool:
        try:
            nc = await nats.connect(f"tls://127.0.0.1:{port}", tls=ctx, allow_reconnect=False,
                                    max_reconnect_attempts=0, connect_timeout=5)
        except Exception:
            return False
        try:
            sub = await nc.subscribe("t")
            await nc.publish("t", b"x")
            return (await sub.next_msg(timeout=3)).data == b"x"
        except Exception:
            return False
        finally:
            await nc.close()
    return bool(run_async(go))


# -- clients ---------------------------------------------------------------------------------

def test_client_good_connects_revoked_and_unknown_refused(pki, logs, tmp_path):
    with EmbeddedServer(config=tls_conf(pki, store=str(tmp_path / "rc"))) as s:
        assert connects(s.port, pki.client_ctx(pki.good))
        assert not connects(s.port, pki.client_ctx(pki.revoked))
        assert logs.has("client not OCSP valid") == 1
        assert logs.has("with CA status [revoked]") == 1
        assert not connects(s.port, pki.client_ctx(pki.unknown))
        assert logs.has("with CA status [unknown]") == 1
        # no OCSP URL in the certificate: nothing to ask, the chain is valid
        assert connects(s.port, pki.client_ctx(pki.no_aia))
        # the cache answers the second time: the responder was asked once per certificate
        asked = pki.responder.asked(pki.good[2])
        assert connects(s.port, pki.client_ctx(pki.good))
        assert not connects(s.port, pki.client_ctx(pki.revoked))
        assert pki.responder.asked(pki.good[2]) == asked
        assert pki.responder.asked(pki.revoked[2]) == 1


@pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")
def test_nats_server_gives_the_same_answers(pki, logs):
    """The reference: nats-server with the same tls block and responder lets in and refuses
    the same clients as edgebus."""
    from conftest import RealNatsServer
    who = [pki.good, pki.revoked, pki.unknown, pki.no_aia, pki.unreachable]
    ref = RealNatsServer(tls_conf(pki)).start()
    try:
        theirs = [connects(ref.port, pki.client_ctx(w)) for w in who]
    finally:
        ref.stop()
    with EmbeddedServer(config=tls_conf(pki)) as s:
        ours = [connects(s.port, pki.client_ctx(w)) for w in who]
    assert theirs == ours == [True, False, False, True, False]


def test_unknown_is_good_and_unreachable_responder(pki, logs):
    conf = tls_conf(pki, "ocsp_peer { verify: true, unknown_is_good: true, ca_timeout: 1 }")
    with EmbeddedServer(config=conf) as s:
        assert connects(s.port, pki.client_ctx(pki.unknown))
        assert not connects(s.port, pki.client_ctx(pki.revoked))
        # a responder that cannot be reached refuses the client...
        assert not connects(s.port, pki.client_ctx(pki.unreachable))
        assert logs.has("Attempt to obtain OCSP response from CA responder for [CN=unreachable]")
    conf = tls_conf(pki, "ocsp_peer { verify: true, allow_when_ca_unreachable: true }")
    with EmbeddedServer(config=conf) as s:
        # ...unless allow_when_ca_unreachable says otherwise
        assert connects(s.port, pki.client_ctx(pki.unreachable))
        assert logs.has("AllowWhenCAUnreachable set; no cached revocation so allowing")
        assert not connects(s.port, pki.client_ctx(pki.revoked))


def test_responder_that_never_answers_times_out(pki, logs, tmp_path):
    sock, url = _black_hole_url()
    try:
        silent = pki.issue("silent", aia=url)
        conf = tls_conf(pki, "ocsp_peer { verify: true, ca_timeout: 0.3 }")
        with EmbeddedServer(config=conf) as s:
            assert not connects(s.port, pki.client_ctx(silent))
            assert logs.has("for [CN=silent] failed: exhausted OCSP responders: timeout")
            assert connects(s.port, pki.client_ctx(pki.good))  # the server is not stuck
    finally:
        sock.close()


def test_response_signatures_and_freshness(pki, logs):
    """Only the issuer or a delegate it gave the OCSP-signing usage may sign; a stale
    response (next update past, beyond the allowed clock skew) is not used."""
    delegated = pki.issue("by-delegate", signer=pki.delegate(True))
    no_usage = pki.issue("by-non-delegate", signer=pki.delegate(False))
    # answers signed by a key that is neither the issuer's nor a delegate's
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = pki._sign(_name("stranger"), stranger_key.public_key(), None, stranger_key, ca=True)
    forged = pki.issue("forged", signer=(stranger, stranger_key, False))
    forged_delegate = pki.issue("forged-delegate", signer=(stranger, stranger_key))
    stale = pki.issue("stale", next_update=-datetime.timedelta(minutes=10))
    no_next = pki.issue("no-next-update", next_update=None)
    with EmbeddedServer(config=tls_conf(pki)) as s:
        assert connects(s.port, pki.client_ctx(delegated))
        assert not connects(s.port, pki.client_ctx(no_usage))
        assert logs.has("Could not parse OCSP CA response for [CN=by-non-delegate]: invalid delegation")
        assert not connects(s.port, pki.client_ctx(forged))
        assert logs.has("Could not parse OCSP CA response for [CN=forged]: bad response signature")
        assert not connects(s.port, pki.client_ctx(forged_delegate))
        assert logs.has("[CN=forged-delegate]: response signed by a certificate the issuer did not")
        assert not connects(s.port, pki.client_ctx(stale))
        assert logs.has("New OCSP CA response obtained for [CN=stale] but not current")
        # no next update: good for cache_ttl_when_next_update_unset (1 h) after this update,
        # which was 2 h ago
        assert not connects(s.port, pki.client_ctx(no_next))
    conf = tls_conf(pki, 'ocsp_peer { verify: true, allowed_clockskew: "15m", '
                         'cache_ttl_when_next_update_unset: "3h" }')
    with EmbeddedServer(config=conf) as s:
        assert connects(s.port, pki.client_ctx(stale))
        assert connects(s.port, pki.client_ctx(no_next))


def test_responder_behind_a_redirect(pki):
    moved = pki.issue("moved", aia=pki.responder.url + "moved/")
    pki.responder.register(moved[2], pki.cert, pki.key, "good")
    with EmbeddedServer(config=tls_conf(pki)) as s:
        assert connects(s.port, pki.client_ctx(moved))  # the answer came from the new place
        assert pki.responder.asked(moved[2]) == 1


def test_warn_only_allows_revoked(pki, logs):
    with EmbeddedServer(config=tls_conf(pki, "ocsp_peer { verify: true, warn_only: true }")) as s:
        assert connects(s.port, pki.client_ctx(pki.revoked))
        assert logs.has("but WarnOnly is true so allowing")


def test_ocsp_peer_false_does_not_check(pki):
    with EmbeddedServer(config=tls_conf(pki, "ocsp_peer: false")) as s:
        before = pki.responder.asked(pki.revoked[2])
        assert connects(s.port, pki.client_ctx(pki.revoked))
        assert pki.responder.asked(pki.revoked[2]) == before


def test_intermediate_in_the_chain_is_checked(tmp_path):
    """The client sends leaf + intermediate, the server trusts only the root: every link below
    the root is checked, so a revoked intermediate refuses a client whose own cert is good."""
    responder = Responder()
    try:
        p = PKI(tmp_path, responder)
        p.server = p.issue("server", server=True, aia=None)
        good_ica = p.intermediate("good")
        bad_ica = p.intermediate("revoked")
        ok = p.issue("via-good-ica", issuer=good_ica)
        bad = p.issue("via-revoked-ica", issuer=bad_ica)
        with EmbeddedServer(config=tls_conf(p)) as s:
            assert connects(s.port, p.client_ctx(ok))
            assert not connects(s.port, p.client_ctx(bad))
            assert responder.asked(bad_ica[0]) == 1
            assert responder.asked(ok[2]) == 1
    finally:
        responder.close()


def test_cache_saved_and_reloaded(pki, tmp_path):
    store = tmp_path / "rc"
    conf = tls_conf(pki, store=str(store))
    with EmbeddedServer(config=conf) as s:
        asked = pki.responder.asked(pki.good[2])
        assert connects(s.port, pki.client_ctx(pki.good))
        assert pki.responder.asked(pki.good[2]) == asked + 1
    saved = json.loads((store / "cache.json").read_text())
    assert [v["resp_status"] for v in saved.values()] == ["good"]
    assert [v["subject"] for v in saved.values()] == ["CN=good"]
    # a new server starts from the saved responses: no new request for the same client
    with EmbeddedServer(config=conf) as s:
        assert connects(s.port, pki.client_ctx(pki.good))
        assert pki.responder.asked(pki.good[2]) == asked + 1


def test_cache_saved_while_running(pki, tmp_path):
    store = tmp_path / "rc"
    conf = tls_conf(pki, store=str(store)).replace(
        f"local_store: '{store}'", f"local_store: '{store}', save_interval: 1")
    with EmbeddedServer(config=conf) as s:
        assert connects(s.port, pki.client_ctx(pki.revoked)) is False
        _wait(lambda: (store / "cache.json").exists(), "the cache saved by its timer")
        saved = json.loads((store / "cache.json").read_text())
        assert [v["resp_status"] for v in saved.values()] == ["revoked"]


def test_no_cache_asks_every_time(pki):
    with EmbeddedServer(config=tls_conf(pki)) as s:  # ocsp_cache: false
        asked = pki.responder.asked(pki.good[2])
        assert connects(s.port, pki.client_ctx(pki.good))
        assert connects(s.port, pki.client_ctx(pki.good))
        assert pki.responder.asked(pki.good[2]) == asked + 2


# -- leaf nodes ------------------------------------------------------------------------------

needs_nats_server = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")


def _wait(pred, what: str, timeout: float = 15.0):
    import time
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _leafz(srv: EmbeddedServer) -> list:
    return srv.call(lambda s: s.services["leaf"].leafz({}))


def _real_leafz(srv) -> list:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}/leafz", timeout=5) as r:
        return json.loads(r.read())["leafs"]


def _refused_then_good_hub(pki, logs, hub_revoked, hub, edge) -> None:
    """`edge(port)` dials `hub(cert)`: with the revoked hub certificate it is refused after
    each handshake, again and again, and never connected; with the good one it connects."""
    h, port = hub(hub_revoked)
    e = edge(port)
    try:
        _wait(lambda: pki.responder.asked(hub_revoked[2]) >= 2, "two OCSP checks of the hub")
        _wait(lambda: logs.has("server not OCSP valid") >= 2, "two refusals")
        assert _leafz(e) == [] and _real_leafz(h) == []
    finally:
        e.stop()
        h.stop()
    h, port = hub(pki.server)
    e = edge(port)
    try:
        _wait(lambda: _leafz(e), "the leaf connection to the good hub")
    finally:
        e.stop()
        h.stop()


@needs_nats_server
def test_leaf_remote_refuses_revoked_hub(pki, logs, tmp_path):
    from conftest import RealNatsServer
    hub_revoked = pki.issue("hub-revoked", "revoked", server=True)

    def hub(cert) -> tuple[RealNatsServer, int]:
        lp = free_port()
        return RealNatsServer(f'leafnodes {{ listen: "127.0.0.1:{lp}", tls {{ cert_file: "{cert[0]}", '
                              f'key_file: "{cert[1]}" }} }}\n').start(), lp

    def edge(lp: int) -> EmbeddedServer:
        return EmbeddedServer(config=(
            f'ocsp_cache: false\nleafnodes {{ reconnect: "0.2s", remotes: [ {{ url: '
            f'"nats-leaf://127.0.0.1:{lp}", tls {{ ca_file: "{pki.ca_file}", ocsp_peer: true }} }} ] }}\n'
        )).start()

    _refused_then_good_hub(pki, logs, hub_revoked, hub, edge)


@needs_nats_server
def test_leaf_remote_over_wss_refuses_revoked_hub(pki, logs):
    """The same check on a leaf remote that dials the hub's WebSocket port over TLS."""
    from conftest import RealNatsServer
    hub_revoked = pki.issue("wss-hub-revoked", "revoked", server=True)

    def hub(cert) -> tuple[RealNatsServer, int]:
        wp = free_port()
        return RealNatsServer(
            f'leafnodes {{ port: -1 }}\nwebsocket {{ listen: "127.0.0.1:{wp}", tls {{ '
            f'cert_file: "{cert[0]}", key_file: "{cert[1]}" }} }}\n').start(), wp

    def edge(wp: int) -> EmbeddedServer:
        return EmbeddedServer(config=(
            f'ocsp_cache: false\nleafnodes {{ reconnect: "0.2s", remotes: [ {{ url: '
            f'"wss://127.0.0.1:{wp}", tls {{ ca_file: "{pki.ca_file}", ocsp_peer: true }} }} ] }}\n'
        )).start()

    _refused_then_good_hub(pki, logs, hub_revoked, hub, edge)


@needs_nats_server
def test_leaf_accept_refuses_revoked_leaf(pki, logs, tmp_path):
    from conftest import RealNatsServer
    lp = free_port()
    hub = EmbeddedServer(config=(
        f'ocsp_cache: false\nleafnodes {{ listen: "127.0.0.1:{lp}", tls {{ cert_file: "{pki.server[0]}", '
        f'key_file: "{pki.server[1]}", ca_file: "{pki.ca_file}", verify: true, ocsp_peer: true }} }}\n'
    )).start()

    def leaf(cert) -> RealNatsServer:
        return RealNatsServer(
            f'leafnodes {{ reconnect: "0.2s", remotes: [ {{ url: "nats-leaf://127.0.0.1:{lp}", '
            f'tls {{ cert_file: "{cert[0]}", key_file: "{cert[1]}", ca_file: "{pki.ca_file}" }} }} ] }}\n'
        ).start()

    try:
        asked = pki.responder.asked(pki.revoked[2])
        bad = leaf(pki.revoked)
        try:
            _wait(lambda: pki.responder.asked(pki.revoked[2]) >= asked + 2, "two OCSP checks")
            _wait(lambda: logs.has("client not OCSP valid") >= 2, "two refusals")
            assert _leafz(hub) == [] and _real_leafz(bad) == []
        finally:
            bad.stop()
        good = leaf(pki.good)
        try:
            _wait(lambda: _leafz(hub), "the good leaf connected")
        finally:
            good.stop()
    finally:
        hub.stop()


# -- config ----------------------------------------------------------------------------------

def _conf_errors(text: str) -> str:
    from edgebus.conf import parse_string
    from edgebus.conf.errors import ConfigError
    from edgebus.conf.options_map import options_from_config
    try:
        options_from_config(parse_string(text, filename="t.conf"), filename="t.conf")
    except ConfigError as e:
        return str(e)
    return ""


def _options(text: str):
    from edgebus.conf import parse_string
    from edgebus.conf.options_map import options_from_config
    return options_from_config(parse_string(text, filename="t.conf"), filename="t.conf")


def test_config_ocsp_peer_options(pki):
    o = _options(tls_conf(pki, "ocsp_peer { verify: true, ca_timeout: 0.5, allowed_clockskew: "
                               '"1m", cache_ttl_when_next_update_unset: 60, unknown_is_good: '
                               "true, allow_when_ca_unreachable: true, warn_only: false }"))
    p = o.tls.ocsp_peer
    assert (p.verify, p.ca_timeout, p.allowed_clockskew, p.cache_ttl_when_next_update_unset,
            p.unknown_is_good, p.allow_when_ca_unreachable) == (True, 0.5, 60.0, 60.0, True, True)
    assert _options(tls_conf(pki)).tls.ocsp_peer.ca_timeout == 2.0
    err = _conf_errors(tls_conf(pki, "ocsp_peer { verify: true, bogus: 1 }"))
    assert 't.conf:' in err and 'error parsing tls peer config, unknown field ["bogus"]' in err
    err = _conf_errors(tls_conf(pki, 'ocsp_peer { ca_timeout: "soon" }'))
    assert "error parsing tls peer config, conversion error" in err
    # client certificates are needed to check them
    err = _conf_errors(tls_conf(pki).replace("verify: true", "verify: false"))
    assert "OCSP peer verification for client connections requires TLS verify (mTLS)" in err
    err = _conf_errors(f"mqtt {{ port: -1, tls {{ cert_file: '{pki.server[0]}', key_file: "
                       f"'{pki.server[1]}', ca_file: '{pki.ca_file}', ocsp_peer: true }} }}")
    assert "requires TLS verify (mTLS)" in err
    # a leaf remote checks the hub's certificate: no client certificate needed
    assert _conf_errors(f"leafnodes {{ remotes: [ {{ url: 'nats-leaf://127.0.0.1:1', tls {{ "
                        f"ca_file: '{pki.ca_file}', ocsp_peer: true }} }} ] }}") == ""


def test_config_ocsp_cache():
    assert _options("ocsp_cache: false").ocsp_cache.type == "none"
    c = _options('ocsp_cache { type: local, local_store: "/x", preserve_revoked: true, '
                 'save_interval: "0.2s" }').ocsp_cache
    assert (c.type, c.local_store, c.preserve_revoked, c.save_interval) == ("local", "/x", True, 1.0)
    assert "unknown type [redis]" in _conf_errors("ocsp_cache { type: redis }")
    assert 'unknown field ["size"]' in _conf_errors("ocsp_cache { size: 1 }")


def test_config_stapling_refused_where_nats_server_would_staple(pki):
    staple = pki.issue("must-staple", server=True, must_staple=True)
    plain = f"tls {{ cert_file: '{pki.server[0]}', key_file: '{pki.server[1]}' }}\n"
    must = f"tls {{ cert_file: '{staple[0]}', key_file: '{staple[1]}' }}\n"
    # always: every certificate would be stapled
    err = _conf_errors('ocsp { mode: always }\n' + plain)
    assert "t.conf:1:" in err and 'ocsp mode "always" needs OCSP stapling' in err
    # auto (the default) and must staple only Must-Staple certificates
    for head in ("", "ocsp: true\n", "ocsp { mode: must }\n", "ocsp { mode: auto }\n"):
        assert _conf_errors(head + plain) == ""
        err = _conf_errors(head + must)
        assert "has MustStaple (status_request) but edgebus cannot staple" in err, head
    # never: runs without, as nats-server does, and says so
    from edgebus.conf import parse_string
    from edgebus.conf.map_base import ConfigReport
    from edgebus.conf.options_map import options_from_config
    for head in ("ocsp: false\n", "ocsp { mode: never }\n"):
        report = ConfigReport()
        options_from_config(parse_string(head + must), filename="t.conf", report=report)
        assert [n for n in report.notices if "has MustStaple but OCSP is disabled" in n]
    assert "unsupported ocsp mode" in _conf_errors("ocsp { mode: sometimes }\n" + plain)
    assert _options('ocsp { mode: never, urls: ["http://a", "http://b"] }').ocsp.urls == \
        ["http://a", "http://b"]


def test_reload_turns_ocsp_peer_on(pki):
    from edgebus.security.reload import reload
    with EmbeddedServer(config=tls_conf(pki, "ocsp_peer: false")) as s:
        assert connects(s.port, pki.client_ctx(pki.revoked))
        s.call(lambda srv: reload(srv, _options(tls_conf(pki))))
        assert not connects(s.port, pki.client_ctx(pki.revoked))
        assert connects(s.port, pki.client_ctx(pki.good))


def test_varz_reports_ocsp_peer_and_cache(pki, tmp_path):
    import urllib.request
    lp = free_port()
    conf = (tls_conf(pki, store=str(tmp_path / "rc")) + "http_port: -1\n"
            f'leafnodes {{ listen: "127.0.0.1:{lp}", tls {{ cert_file: "{pki.server[0]}", '
            f'key_file: "{pki.server[1]}", ca_file: "{pki.ca_file}", verify: true, ocsp_peer: true }} }}\n')
    with EmbeddedServer(config=conf) as s:
        assert connects(s.port, pki.client_ctx(pki.good))
        assert not connects(s.port, pki.client_ctx(pki.revoked))
        with urllib.request.urlopen(f"{s.http_url}/varz", timeout=5) as r:
            v = json.loads(r.read())
    assert v["tls_ocsp_peer_verify"] is True and v["leaf"]["tls_ocsp_peer_verify"] is True
    c = v["ocsp_peer_cache"]
    assert (c["cache_type"], c["cached_responses"], c["cached_good_responses"],
            c["cached_revoked_responses"], c["cache_misses"]) == ("local", 2, 1, 1, 2)


def test_sys_events_for_rejected_peer(pki):
    import asyncio
    conf = tls_conf(pki) + ('accounts { SYS { users [ { user: sys, password: s } ] }, '
                            'APP { users [ { user: app, password: a } ] } }\nsystem_account: SYS\n')
    with EmbeddedServer(config=conf) as s:
        async def go() -> list:
            nc = await nats.connect(f"tls://sys:s@127.0.0.1:{s.port}", tls=pki.client_ctx(pki.good))
            got: list = []
            done = asyncio.Event()

            async def cb(m) -> None:
                got.append((m.subject, json.loads(m.data)))
                if len(got) == 2:
                    done.set()
            await nc.subscribe("$SYS.SERVER.*.OCSP.PEER.>", cb=cb)
            await nc.flush()
            assert not await asyncio.to_thread(connects, s.port, pki.client_ctx(pki.revoked))
            await asyncio.wait_for(done.wait(), 10)
            await nc.close()
            return got
        got = run_async(go)
    (link_subj, link), (rej_subj, rej) = got
    assert link_subj.endswith(".OCSP.PEER.LINK.INVALID") and rej_subj.endswith(".OCSP.PEER.CONN.REJECT")
    assert link["type"] == "io.nats.server.advisory.v1.ocsp_peer_link_invalid"
    assert link["link"]["subject"] == link["peer"]["subject"] == "CN=revoked"
    assert link["reason"] == "Invalid OCSP response status: revoked"
    assert rej["type"] == "io.nats.server.advisory.v1.ocsp_peer_reject"
    assert (rej["kind"], rej["reason"], rej["peer"]["issuer"]) == ("Client", "client not OCSP valid",
                                                                  "CN=ocsp test root")
    assert rej["server"]["id"] and rej["id"] and rej["timestamp"]


def test_chain_from_ca_file_without_the_verified_chain(tmp_path):
    """Where Python gives only the peer's certificate, the chain is completed from the CA file
    (issuer by subject and signature); an eligible certificate with no issuer found is refused."""
    import trio
    from edgebus.options import OCSPPeerOptions
    from edgebus.security.ocsp import PeerVerifier, complete_chain
    from edgebus.security.ocsp_cache import ResponseCache
    from edgebus.options import OCSPCacheOptions
    responder = Responder()
    try:
        p = PKI(tmp_path, responder)
        ica = p.intermediate("revoked")
        leaf = p.issue("leaf", issuer=ica)[2]
        both = tmp_path / "both.pem"
        both.write_bytes(_pem(p.cert) + _pem(ica[0]))
        assert complete_chain([leaf], str(both)) == [leaf, ica[0], p.cert]
        assert complete_chain([leaf], p.ca_file) == [leaf]  # the intermediate is not there
        now = lambda: datetime.datetime.now(datetime.timezone.utc)  # noqa: E731
        v = PeerVerifier(ResponseCache(OCSPCacheOptions(type="none"), now), now)
        opts = OCSPPeerOptions(verify=True)
        assert trio.run(v.chain_valid, [leaf], opts) is False
        assert trio.run(v.chain_valid, complete_chain([leaf], str(both)), opts) is False
        assert responder.asked(ica[0]) == 1  # the revoked intermediate was asked about
        good = p.issue("direct")[2]
        assert trio.run(v.chain_valid, complete_chain([good], p.ca_file), opts) is True
        assert trio.run(v.chain_valid, [p.cert], opts) is True  # self-signed
    finally:
        responder.close()


def test_websocket_and_mqtt_listeners_check_peers(pki, logs):
    """ocsp_peer in the websocket{} and mqtt{} tls blocks: a WebSocket upgrade over TLS and a
    paho-mqtt client with a good certificate get in, a revoked one is refused."""
    import threading
    paho = pytest.importorskip("paho.mqtt.client")
    tls = (f"tls {{ cert_file: '{pki.server[0]}', key_file: '{pki.server[1]}', "
           f"ca_file: '{pki.ca_file}', verify: true, ocsp_peer: true }}")
    conf = (f"ocsp_cache: false\nwebsocket {{ port: -1, host: 127.0.0.1, {tls} }}\n"
            f"mqtt {{ port: -1, host: 127.0.0.1, {tls} }}\n")

    def ws_connects(port: int, who) -> bool:
        """A raw TLS socket's WebSocket upgrade: 101, or the connection closed."""
        upgrade = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with pki.client_ctx(who).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(upgrade)
                    return tls.recv(4096).startswith(b"HTTP/1.1 101")
        except (ssl.SSLError, OSError):
            return False

    def mqtt_connects(port: int, who) -> bool:
        result: list = []
        done = threading.Event()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"ocsp-{who[2].serial_number}",
                        protocol=paho.MQTTv311)
        c.tls_set(ca_certs=pki.ca_file, certfile=who[0], keyfile=who[1],
                  tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = lambda cl, u, f, rc, p=None: (result.append(not rc.is_failure), done.set())
        c.on_disconnect = lambda *a: (result.append(False), done.set())
        try:
            c.connect("127.0.0.1", port)
        except (OSError, ssl.SSLError):
            return False
        c.loop_start()
        try:
            assert done.wait(10)
            return result[0]
        finally:
            c.loop_stop()
            c.disconnect()

    with EmbeddedServer(config=conf) as s:
        ws_port, mqtt_port = s.server.ws_port, s.server.mqtt_port
        assert ws_connects(ws_port, pki.good)
        assert not ws_connects(ws_port, pki.revoked)
        assert logs.has("websocket TLS handshake error: client not OCSP valid") == 1
        assert mqtt_connects(mqtt_port, pki.good)
        assert not mqtt_connects(mqtt_port, pki.revoked)
        assert logs.has("mid:") and logs.has("client not OCSP valid") == 2


@pytest.mark.parametrize("preserve", [True, False])
def test_cached_revocation_and_unreachable_responder(pki, logs, tmp_path, preserve):
    """A stale revoked response in the saved cache still refuses a client whose responder is
    down, even with allow_when_ca_unreachable; with preserve_revoked it keeps doing so, without
    it the stale entry is dropped and the next connection is let in."""
    import hashlib
    cert = pki.unreachable[2]
    pki.responder.register(cert, pki.cert, pki.key, "revoked",
                           next_update=-datetime.timedelta(minutes=10))
    stale = pki.responder.answer(cert.serial_number)
    der = cert.public_bytes(serialization.Encoding.DER)
    key = base64.b64encode(hashlib.sha256(der).digest()).decode()
    store = tmp_path / "rc"
    store.mkdir()
    (store / "cache.json").write_text(json.dumps({key: {
        "subject": "CN=unreachable", "cached_at": "2026-01-01T00:00:00Z", "resp_status": "revoked",
        "resp_expires": "2026-01-01T00:00:00Z", "resp": base64.b64encode(stale).decode()}}))
    conf = (f"ocsp_cache {{ local_store: '{store}', preserve_revoked: {str(preserve).lower()} }}\n"
            + tls_conf(pki, "ocsp_peer { verify: true, allow_when_ca_unreachable: true }")
            .replace("ocsp_cache: false\n", ""))
    with EmbeddedServer(config=conf) as s:
        assert not connects(s.port, pki.client_ctx(pki.unreachable))
        assert logs.has("cached revocation exists so rejecting") == 1
        assert connects(s.port, pki.client_ctx(pki.unreachable)) is (not preserve)


def test_unreadable_cache_file_and_bogus_entries(pki, logs, tmp_path):
    store = tmp_path / "rc"
    store.mkdir()
    (store / "cache.json").write_text("{not json")
    with EmbeddedServer(config=tls_conf(pki, store=str(store))) as s:
        assert logs.has("Unable to load OCSP peer cache")
        assert connects(s.port, pki.client_ctx(pki.good))
    saved = json.loads((store / "cache.json").read_text())  # replaced by a good one
    assert [v["subject"] for v in saved.values()] == ["CN=good"]
    # an entry whose response does not parse is dropped and fetched again
    for v in saved.values():
        v["resp"] = base64.b64encode(b"garbage").decode()
    (store / "cache.json").write_text(json.dumps(saved))
    asked = pki.responder.asked(pki.good[2])
    with EmbeddedServer(config=tls_conf(pki, store=str(store))) as s:
        assert connects(s.port, pki.client_ctx(pki.good))
        assert not connects(s.port, pki.client_ctx(pki.revoked))
    assert pki.responder.asked(pki.good[2]) == asked + 1


def test_stapling_refused_for_tls_set_without_a_config_file(pki):
    """TLS from command line flags or the Python API gets the same refusal at start."""
    from edgebus.options import OCSPStapleOptions, TLSOptions
    staple = pki.issue("must-staple-api", server=True, must_staple=True)
    tls = TLSOptions(cert_file=staple[0], key_file=staple[1])
    with pytest.raises(RuntimeError, match="needs an OCSP staple .ocsp mode auto."):
        EmbeddedServer(tls=tls).start()
    plain = TLSOptions(cert_file=pki.server[0], key_file=pki.server[1])
    with pytest.raises(RuntimeError, match="needs an OCSP staple .ocsp mode always."):
        EmbeddedServer(tls=plain, ocsp=OCSPStapleOptions(mode="always")).start()
    EmbeddedServer(tls=plain).start().stop()
    EmbeddedServer(tls=tls, ocsp=OCSPStapleOptions(mode="never")).start().stop()
