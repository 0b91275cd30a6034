"""OCSP settings: `ocsp_peer` inside tls{} blocks, the top-level `ocsp_cache` and `ocsp` blocks.

Names, defaults and error texts follow nats-server (server/ocsp_peer.go `parseOCSPPeer`,
server/ocsp_responsecache.go `parseOCSPResponseCache`, the `ocsp` case of opts.go).

Stapling (`ocsp`) is where edgebus differs: Python's `ssl` module cannot attach an OCSP
response to the server's handshake, so every config under which nats-server *would* staple is
refused with a positioned error instead of running without the staple: mode `always` with a TLS
listener, and modes `auto` (the default) / `must` when a listener's certificate carries the
Must-Staple (`status_request`) TLS feature. Where nats-server does not staple either (`never`,
or `auto`/`must` with an ordinary certificate) edgebus runs as it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..options import OCSPCacheOptions, OCSPPeerOptions, OCSPStapleOptions, TLSOptions
from .durations import parse_duration
from .errors import Position
from .map_base import MapperBase, go_type

__all__ = ["OCSPMapper", "has_must_staple"]

_PEER_FLOATS = ("ca_timeout", "allowed_clockskew", "cache_ttl_when_next_update_unset")
_PEER_BOOLS = ("verify", "warn_only", "unknown_is_good", "allow_when_ca_unreachable")
_STAPLE_MODES = ("auto", "always", "must", "never")
_PEER_ERR = "error parsing tls peer config"
_CACHE_ERR = "error parsing OCSP peer cache config"
# id-pe-tlsfeature (RFC 7633) and the status_request feature number (RFC 6066)
_STATUS_REQUEST = 5


def has_must_staple(cert_file: str) -> bool:
    """Does the first certificate in `cert_file` carry the Must-Staple TLS feature?"""
    from cryptography import x509
    try:
        with open(cert_file, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        ext = cert.extensions.get_extension_for_class(x509.TLSFeature).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return any(int(feature.value) == _STATUS_REQUEST for feature in ext)


class OCSPMapper(MapperBase):
    """Mixed into the block mapper; `tls()` calls `ocsp_peer`, the top level the rest."""

    # server-side tls{} blocks that nats-server would staple: (position of the block, options)
    _staple_blocks: list[tuple[Position, TLSOptions]]
    _ocsp_pos: Position | None = None
    _ocsp_peer_pos: Position | None = None

    # -- ocsp_peer ------------------------------------------------------------------------

    def ocsp_peer(self, v: Any, pos: Position, key: str) -> OCSPPeerOptions:
        self._ocsp_peer_pos = pos  # for check_ocsp_peer, which runs when the block is read
        if isinstance(v, bool):
            return OCSPPeerOptions(verify=v)
        if not isinstance(v, Mapping):
            raise self.fail(pos, f"error parsing ocsp peer config: unsupported type {go_type(v)}")
        pc = OCSPPeerOptions()
        for low, k, val, p in self.entries(v):
            if low in _PEER_BOOLS:
                if not isinstance(val, bool):
                    raise self.fail(p, f'{_PEER_ERR}, unknown field ["{k}"]')
                setattr(pc, low, val)
            elif low in _PEER_FLOATS:
                secs = self._peer_seconds(val, p)
                if secs >= 0:  # negative values keep the default, as nats-server
                    setattr(pc, low, secs)
            else:
                raise self.fail(p, f'{_PEER_ERR}, unknown field ["{k}"]')
        return pc

    def _peer_seconds(self, v: Any, pos: Position) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise self.fail(pos, f"{_PEER_ERR}, conversion error: unexpected type")
        if isinstance(v, str):
            try:
                return parse_duration(v)
            except ValueError as e:
                raise self.fail(pos, f"{_PEER_ERR}, conversion error: {e}") from None
        return float(v)

    def check_ocsp_peer(self, t: TLSOptions, pos: Position, side: str) -> None:
        """After a tls{} block is read: client and leaf-accept peers must present certificates."""
        peer = t.ocsp_peer is not None and t.ocsp_peer.verify
        if peer and side != "remote" and not t.verify:
            raise self.fail(self._ocsp_peer_pos or pos,
                            "OCSP peer verification for client connections requires TLS "
                            "verify (mTLS) to be enabled")
        if side in ("client", "websocket", "mqtt") and t.cert_file:
            if not hasattr(self, "_staple_blocks"):
                self._staple_blocks = []
            self._staple_blocks.append((pos, t))

    # -- ocsp_cache -----------------------------------------------------------------------

    def top_ocsp_cache(self, v: Any, pos: Position, key: str) -> None:
        if isinstance(v, bool):
            self.o.ocsp_cache = OCSPCacheOptions(type="local" if v else "none")
            return
        if not isinstance(v, Mapping):
            raise self.fail(pos, f"error parsing ocsp_cache config: unsupported type {go_type(v)}")
        cc = OCSPCacheOptions()
        for low, k, val, p in self.entries(v):
            # nats-server calls a value of the wrong type an unknown field, too
            unknown = f'{_CACHE_ERR}, unknown field ["{k}"]'
            if low == "type":
                if not isinstance(val, str):
                    raise self.fail(p, unknown)
                if val.lower() not in ("none", "local"):
                    raise self.fail(p, f"{_CACHE_ERR}, unknown type [{val}]")
                cc.type = val.lower()
            elif low == "local_store":
                if not isinstance(val, str):
                    raise self.fail(p, unknown)
                cc.local_store = val
            elif low == "preserve_revoked":
                if not isinstance(val, bool):
                    raise self.fail(p, unknown)
                cc.preserve_revoked = val
            elif low == "save_interval":
                # nats-server keeps whole seconds, at least one
                cc.save_interval = max(1.0, float(int(self._peer_seconds(val, p))))
            else:
                raise self.fail(p, unknown)
        self.o.ocsp_cache = cc

    # -- ocsp (stapling) ------------------------------------------------------------------

    def top_ocsp(self, v: Any, pos: Position, key: str) -> None:
        self._ocsp_pos = pos
        if isinstance(v, bool):
            self.o.ocsp = OCSPStapleOptions(mode="auto" if v else "never")
            return
        if not isinstance(v, Mapping):
            raise self.fail(pos, f"error parsing ocsp config: unsupported type {go_type(v)}")
        oc = OCSPStapleOptions()
        for low, k, val, p in self.entries(v):
            if k == "mode":  # nats-server matches these keys case-sensitively
                if not isinstance(val, str) or val.lower() not in _STAPLE_MODES:
                    raise self.fail(p, f"error parsing ocsp config: unsupported ocsp mode {val!r}")
                oc.mode = val.lower()
                self._ocsp_pos = p
            elif k == "url":
                oc.urls = [self.str_(val, p, k)]
            elif k == "urls":
                oc.urls = self.strings(val, p, k, "ocsp config")
            else:
                raise self.fail(p, f'error parsing ocsp config: unsupported field "{k}"')
        self.o.ocsp = oc

    def ocsp_checks(self) -> None:
        """Refuse what would need a staple (see the module docstring); runs after the whole file."""
        mode = self.o.ocsp.mode if self.o.ocsp is not None else "auto"
        for pos, t in getattr(self, "_staple_blocks", []):
            assert t.cert_file
            must = has_must_staple(t.cert_file)
            if mode == "always":
                self.error(self._ocsp_pos or pos,
                           'ocsp mode "always" needs OCSP stapling, which edgebus cannot do '
                           "(Python's ssl module has no server-side stapling)")
                return
            if must and mode in ("auto", "must"):
                self.error(pos, f"certificate at '{t.cert_file}' has MustStaple (status_request) "
                                "but edgebus cannot staple OCSP responses; set 'ocsp: false' to "
                                "run without the staple")
            elif must and mode == "never":
                self.report.notices.append(
                    f"{pos}: Certificate at '{t.cert_file}' has MustStaple but OCSP is disabled")
