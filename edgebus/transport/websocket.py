"""The WebSocket front-end: NATS over WebSocket, answering as nats-server's `websocket.go` does.

A small RFC 6455 server of its own (no third-party WebSocket server) so every observable detail
can follow nats-server: the HTTP upgrade checks and their error responses (Go's `http.Error`
format, keep-alive after an error), origin checks, permessage-deflate without context takeover,
browser frame sizes, close codes derived from the close reason, cookies that fill in missing
CONNECT credentials. `WebSocketStream` turns an upgraded connection into the trio byte stream the
protocol drivers already speak, so a WebSocket client is the same `NatsConnection` as a TCP one;
paths ending in `/mqtt` and `/leafnode` hand the stream to the MQTT and leaf services.

Sections: options validation, HTTP handshake, frame codec (sans-IO), the stream adapter, the
listener.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import ipaddress
import logging
import math
import re
import ssl
import struct
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import trio

from ..codec.nats import ERR_AUTH_TIMEOUT
from .nats_conn import NatsConnection
from . import listen
from .nats_tcp import peer_of

log = logging.getLogger("edgebus")

# -- protocol constants (RFC 6455 / RFC 7692, and nats-server's choices) -------------------
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_CONTROL_PAYLOAD = 125
BROWSER_FRAME_SIZE = 4096  # nats-server: browsers behave better with frames of at most 4 KiB
COMPRESS_THRESHOLD = 64  # nats-server does not compress pending output of 64 bytes or less
_MAX_MSG_PAYLOAD_MULTIPLE = 8
_MAX_MSG_PAYLOAD_LIMIT = 64 * 1024 * 1024
PMC_RESPONSE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
# appended to a compressed message before inflating: the sync-flush tail the sender stripped
# plus an empty final stored block, so the deflate stream ends cleanly (as nats-server does)
_INFLATE_TAIL = b"\x00\x00\xff\xff\x01\x00\x00\xff\xff"
_MAX_HEADER_BYTES = (1 << 20) + 4096  # Go's http.DefaultMaxHeaderBytes plus its slack

LEAF_PATH = "/leafnode"
MQTT_PATH = "/mqtt"
KIND_CLIENT, KIND_MQTT, KIND_LEAF = "client", "mqtt", "leaf"

# close status sent when the server closes, from the connection's close reason
# (nats-server's wsEnqueueCloseMessage); anything unlisted is 1011
_CLOSE_STATUS: dict[str, int] = {
    "Client Closed": 1000,
    **dict.fromkeys((
        "Authentication Timeout", "Authentication Failure", "Slow Consumer (Pending Bytes)",
        "Slow Consumer (Write Deadline)", "Maximum Account Connections Exceeded",
        "Maximum Connections Exceeded", "Maximum Control Line Exceeded",
        "Maximum Subscriptions Exceeded", "Missing Account", "Authentication Expired",
        "Credentials Revoked", "Revocation"), 1008),
    "TLS Handshake Error": 1015,
    "TLS Handshake Failure": 1015,
    "Parse Error": 1002,
    "Protocol Violation": 1002,
    "Bad Client Protocol Version": 1002,
    "Maximum Message Payload Exceeded": 1009,
    **dict.fromkeys(("Write Error", "Read Error", "Stale Connection", "Server Shutdown"), 1001),
}
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "connection", "upgrade", "nats-no-masking"})


# ==========================================================================================
# options validation
# ==========================================================================================
def validate_websocket_options(o: Any) -> None:
    """nats-server's validateWebsocketOptions: raise ValueError with its wording."""
    wo = o.websocket
    if wo is None or wo.port is None:
        return
    if wo.tls is None and not wo.no_tls:
        raise ValueError("websocket requires TLS configuration")
    for ao in wo.allowed_origins or ():
        err, u = _parse_request_uri(ao)
        if err:
            raise ValueError(f"unable to parse allowed origin: {err}")
        if u.scheme not in ("http", "https"):
            raise ValueError(f'unable to parse allowed origin "{ao}": allowed origins must be '
                             "absolute URLs with http or https scheme")
        if not u.netloc:
            raise ValueError(f'unable to parse allowed origin "{ao}": host is required')
    if wo.no_auth_user:
        names = _user_names(o)
        if o.operator:
            raise ValueError("no_auth_user not compatible with Trusted Operator")
        if names is None:
            raise ValueError(f'no_auth_user: "{wo.no_auth_user}" present, but users/nkeys are not defined')
        if wo.no_auth_user not in names:
            raise ValueError(f'no_auth_user: "{wo.no_auth_user}" not present as user or nkey in '
                             "authorization block or account configuration")
    auth = {str(k).lower(): v for k, v in (wo.authorization or {}).items()}
    if _has_users_or_nkeys(o):
        if auth.get("user") or auth.get("username"):
            raise ValueError("websocket authentication username not compatible with presence of users/nkeys")
        if auth.get("token"):
            raise ValueError("websocket authentication token not compatible with presence of users/nkeys")
    if wo.jwt_cookie and not o.operator and not getattr(o, "trusted_keys", None):
        raise ValueError("trusted operators or trusted keys configuration is required for JWT "
                         f'authentication via cookie "{wo.jwt_cookie}"')
    for key in (getattr(wo, "headers", None) or {}):
        k = str(key).lower()
        if k in _FORBIDDEN_HEADERS:
            raise ValueError(f'websocket: invalid header "{key}" not allowed')
        if k.startswith("sec-websocket-"):
            raise ValueError(f'websocket: invalid header "{key}", "Sec-WebSocket-" prefix not allowed')


def _user_lists(o: Any) -> list[list[Any]]:
    """The users/nkeys lists of the authorization block and of every account."""
    blocks = [o.authorization or {}] + [a for a in (o.accounts or {}).values() if isinstance(a, dict)]
    out = []
    for b in blocks:
        for k, v in b.items():
            if str(k).lower() in ("users", "nkeys") and isinstance(v, list):
                out.append(v)
    return out


def _has_users_or_nkeys(o: Any) -> bool:
    return any(_user_lists(o))


def _user_names(o: Any) -> set[str] | None:
    """User names and nkeys configured, or None when there are no users/nkeys at all."""
    lists = _user_lists(o)
    if not lists:
        return None
    names = set()
    for lst in lists:
        for u in lst:
            if isinstance(u, dict):
                low = {str(k).lower(): v for k, v in u.items()}
                names.update(str(low[k]) for k in ("user", "username", "nkey") if k in low)
    return names


# ==========================================================================================
# HTTP handshake
# ==========================================================================================
_STATUS_TEXT = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
                431: "Request Header Fields Too Large", 500: "Internal Server Error",
                505: "HTTP Version Not Supported"}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")


@dataclass
class HttpRequest:
    method: str
    target: str
    version: str  # "HTTP/1.1"
    headers: list[tuple[str, str]]  # names lower-cased, values trimmed, in order

    def get(self, name: str) -> str:
        for k, v in self.headers:
            if k == name:
                return v
        return ""

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path if not self.target.startswith("/") else self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        conn = [t.strip().lower() for v in self.values("connection") for t in v.split(",")]
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


class BadRequest(Exception):
    """The request cannot be parsed; Go's server answers before any handler runs and closes."""

    def __init__(self, status: int = 400, detail: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def parse_request(head: bytes) -> HttpRequest:
    """Parse a request head (without the blank line) as Go's net/http reads one."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        raise BadRequest()
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest()
    method, target, version = parts
    if not _TOKEN.match(method):
        raise BadRequest(detail="invalid method")
    m = re.fullmatch(r"HTTP/(\d)\.(\d)", version)
    if not m:
        raise BadRequest(detail="malformed HTTP version")
    if m.group(1) != "1":
        raise BadRequest(505, "unsupported protocol version")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            raise BadRequest(detail="malformed MIME header line")
        headers.append((name.lower(), value.strip(" \t")))
    req = HttpRequest(method, target, version, headers)
    if version == "HTTP/1.1" and "host" not in {k for k, _ in headers}:
        raise BadRequest(detail="missing required Host header")
    return req


def go_bad_request(err: BadRequest) -> bytes:
    """Go's answer to a request it cannot parse (written before closing the connection)."""
    text = _STATUS_TEXT.get(err.status, "Bad Request")
    line = f"{err.status} {text}" + (f": {err.detail}" if err.detail else "")
    return (f"HTTP/1.1 {line}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Connection: close\r\n\r\n{line}").encode()


def http_error(status: int, req: HttpRequest) -> bytes:
    """nats-server's wsReturnHTTPError: Go's http.Error with a Sec-Websocket-Version header."""
    text = _STATUS_TEXT[status]
    body = text + "\n"
    lines = [f"{req.version} {status} {text}", "Content-Type: text/plain; charset=utf-8",
             "Sec-Websocket-Version: 13", "X-Content-Type-Options: nosniff",
             f"Date: {email.utils.formatdate(usegmt=True)}", f"Content-Length: {len(body)}"]
    if not req.keep_alive and req.version == "HTTP/1.1":
        lines.append("Connection: close")  # Go adds it last
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def _header_contains(req: HttpRequest, name: str, value: str) -> bool:
    """A comma-separated token of any `name` header equals `value` (case-insensitively)."""
    return any(t.strip(" \t").lower() == value.lower() for v in req.values(name) for t in v.split(","))


def _offers_deflate(req: HttpRequest) -> bool:
    for v in req.values("sec-websocket-extensions"):
        for ext in v.split(","):
            for p in ext.strip(" \t").split(";"):
                if p.strip(" \t").lower() == "permessage-deflate":
                    return True
    return False


def parse_cookies(req: HttpRequest) -> dict[str, str]:
    """Go's Request.Cookies(): `name=value` pairs of every Cookie header; bad pairs skipped."""
    out: dict[str, str] = {}
    for line in req.values("cookie"):
        for part in line.split(";"):
            part = part.strip(" ")
            if not part:
                continue
            name, _, value = part.partition("=")
            if not _TOKEN.match(name):
                continue
            if len(value) > 1 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if any(c in '";\\' or not 0x20 <= ord(c) < 0x7F for c in value):
                continue
            out.setdefault(name, value)  # the first cookie of a name wins, as Go's loop ends up
    return out


# -- origins ------------------------------------------------------------------------------
@dataclass
class _URI:
    scheme: str
    netloc: str


def _parse_request_uri(raw: str) -> tuple[str | None, _URI]:
    """Go's url.ParseRequestURI, as far as origins need it: (error, parsed)."""
    empty = _URI("", "")
    if not raw or any(ord(c) <= 0x20 or c == "\x7f" for c in raw):
        return f'parse "{raw}": invalid URI for request', empty
    if raw.startswith("/"):
        return None, empty  # an absolute path: no scheme, no host
    scheme, sep, rest = raw.partition(":")
    if not sep:
        return f'parse "{raw}": invalid URI for request', empty
    if not scheme:
        return f'parse "{raw}": missing protocol scheme', empty
    if not _SCHEME.match(scheme):
        return f'parse "{raw}": first path segment in URL cannot contain colon', empty
    if not rest.startswith("/"):
        return f'parse "{raw}": invalid URI for request', empty
    if not rest.startswith("//"):
        return None, _URI(scheme.lower(), "")
    netloc = rest[2:].split("/", 1)[0].split("?", 1)[0]
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        if "]" not in host:
            return f'parse "{raw}": missing \']\' in host', empty
        tail = host[host.index("]") + 1:]
        port = tail[1:] if tail.startswith(":") else tail
        bad = bool(tail) and not tail.startswith(":")
    else:
        port = host.rpartition(":")[2] if ":" in host else ""
        bad = False
    if bad or (port and not port.isdigit()):
        return f'parse "{raw}": invalid port "{":" + port}" after host', empty
    return None, _URI(scheme.lower(), host)


def _host_and_port(secure: bool, hostport: str) -> tuple[str, str] | None:
    """nats-server's wsGetHostAndPort: lower-cased host, and the port (scheme default if none)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return None
        host, rest = hostport[1:end], hostport[end + 1:]
        if not rest:
            return hostport.lower(), ("443" if secure else "80")  # Go keeps the brackets here
        if not rest.startswith(":") or ":" in rest[1:]:
            return None
        return host.lower(), rest[1:]
    if ":" not in hostport:
        return hostport.lower(), ("443" if secure else "80")
    host, _, port = hostport.rpartition(":")
    if ":" in host:
        return None  # too many colons
    return host.lower(), port


class OriginChecker:
    """same_origin / allowed_origins (nats-server's srvWebsocket.checkOrigin)."""

    def __init__(self, same_origin: bool, allowed_origins: list[str]) -> None:
        self.same_origin = same_origin
        self.allowed: dict[str, list[tuple[str, str]]] = {}
        for ao in allowed_origins or ():
            err, u = _parse_request_uri(ao)
            hp = _host_and_port(u.scheme == "https", u.netloc) if not err else None
            if hp is None:
                log.error("error parsing allowed origin: %s", err or ao)
                continue
            self.allowed.setdefault(hp[0], []).append((u.scheme, hp[1]))
        self.listed = bool(allowed_origins)

    def check(self, req: HttpRequest, secure: bool) -> str | None:
        """None when allowed, else the reason."""
        if not self.same_origin and not self.listed:
            return None
        origin = req.get("origin") or req.get("sec-websocket-origin")
        if not origin:
            return None  # non-browser clients may send anything, so no Origin is accepted
        err, u = _parse_request_uri(origin)
        if err:
            return err
        ohp = _host_and_port(u.scheme == "https", u.netloc)
        if ohp is None:
            return f"address {u.netloc}: invalid address"
        if self.same_origin:
            rhp = _host_and_port(secure, req.get("host"))
            if rhp is None:
                return f"address {req.get('host')}: invalid address"
            if ohp != rhp or u.scheme != ("https" if secure else "http"):
                return "not same origin"
        if self.listed:
            if not any(s == u.scheme and p == ohp[1] for s, p in self.allowed.get(ohp[0], ())):
                return "not in the allowed list"
        return None


@dataclass
class Upgrade:
    """What a successful opening handshake decided."""

    kind: str
    key: str
    compress: bool
    no_masking: bool
    browser: bool
    nocompfrag: bool
    forwarded_for: str | None
    cookies: dict[str, str] = field(default_factory=dict)


class HandshakeRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_upgrade(req: HttpRequest, *, compression: bool, origins: OriginChecker, secure: bool,
                  mqtt_enabled: bool) -> Upgrade:
    """nats-server's wsUpgrade checks, in its order; raises HandshakeRefused."""
    path = req.path
    kind = KIND_LEAF if path.endswith(LEAF_PATH) else KIND_MQTT if path.endswith(MQTT_PATH) else KIND_CLIENT
    if kind == KIND_MQTT and not mqtt_enabled:
        raise HandshakeRefused(404, "mqtt websocket endpoint not enabled")
    if req.method != "GET":
        raise HandshakeRefused(405, "request method must be GET")
    if not req.get("host"):
        raise HandshakeRefused(400, "'Host' missing in request")
    if not _header_contains(req, "upgrade", "websocket"):
        raise HandshakeRefused(400, "invalid value for header 'Upgrade'")
    if not _header_contains(req, "connection", "Upgrade"):
        raise HandshakeRefused(400, "invalid value for header 'Connection'")
    key = req.get("sec-websocket-key")
    if not key:
        raise HandshakeRefused(400, "key missing")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError(key)
    except (binascii.Error, ValueError):
        raise HandshakeRefused(400, "invalid websocket key") from None
    if not _header_contains(req, "sec-websocket-version", "13"):
        raise HandshakeRefused(400, "invalid version")
    err = origins.check(req, secure)
    if err:
        raise HandshakeRefused(403, f"origin not allowed: {err}")
    compress = compression and _offers_deflate(req)
    # leaf nodes may ask for unmasked frames; the header must be exactly "true"
    no_masking = req.get("nats-no-masking") == "true"
    xff = req.values("x-forwarded-for")
    forwarded = None
    if xff:
        try:
            forwarded = str(ipaddress.ip_address(xff[0]))
        except ValueError:
            pass  # only a single, valid IP is taken (nats-server uses net.ParseIP)
    up = Upgrade(kind, key, compress, no_masking, False, False, forwarded)
    if kind != KIND_LEAF:
        ua = req.get("user-agent")
        if ua.startswith("Mozilla/"):
            up.browser = True
            # Safari cannot take fragmented compressed frames; Chrome on macOS also says "Safari/"
            # but only Safari itself says "Version/"
            up.nocompfrag = compress and "Version/" in ua and "Safari/" in ua
        up.cookies = parse_cookies(req)
    return up


def upgrade_response(up: Upgrade, extra_headers: str = "") -> bytes:
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {accept_key(up.key)}"]
    if up.compress:
        lines.append(f"Sec-WebSocket-Extensions: {PMC_RESPONSE}")
    if up.no_masking:
        lines.append("Nats-No-Masking: true")
    if up.kind == KIND_MQTT:
        lines.append("Sec-Websocket-Protocol: mqtt")
    return ("\r\n".join(lines) + "\r\n" + extra_headers + "\r\n").encode()


# ==========================================================================================
# frame codec (sans-IO)
# ==========================================================================================
class WsClose(Exception):
    """The reader has finished: `payload` is the close frame to send back (may be empty)."""

    def __init__(self, payload: bytes, reason: str = "") -> None:
        super().__init__(reason)
        self.payload = payload
        self.reason = reason


def close_payload(status: int, text: str) -> bytes:
    """Status and text; a text too long for a control frame is cut and ends in '...'."""
    b = text.encode()
    if len(b) > MAX_CONTROL_PAYLOAD - 2:
        b = b[:MAX_CONTROL_PAYLOAD - 5] + b"..."
    return struct.pack("!H", status) + b


def _protocol_error(message: str) -> WsClose:
    return WsClose(close_payload(1002, message), message)


def _valid_close_status(code: int) -> bool:
    if code in (1004, 1005, 1006, 1015) or code < 1000 or code >= 5000:
        return False
    return not 1016 <= code <= 2999


def _unmask(data: bytes | bytearray, key: bytes, pos: int) -> bytes:
    """XOR with the 4-byte key starting at key offset `pos` (big-int XOR: fast in CPython)."""
    n = len(data)
    if not n:
        return b""
    k = key[pos:] + key[:pos]
    mask = (k * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """One unmasked (server-to-client) frame."""
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    n = len(payload)
    if n <= 125:
        return bytes((b0, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


class FrameReader:
    """Client frames in, NATS bytes out. Data is handed on as it arrives (a frame may hold part
    of an operation or several); compressed messages are inflated once complete.

    `feed` returns a list of items: `bytes` (protocol data) or `("ping", payload)`; it raises
    WsClose when the connection must end (a close frame, or a protocol error) after the items
    already returned by earlier calls. Items produced by the failing call are kept in `pending`.
    """

    def __init__(self, *, mask_required: bool = True, compression: bool = False,
                 max_payload: int = 1024 * 1024) -> None:
        self.mask_required = mask_required
        self.compression = compression
        self.max_payload = max_payload if max_payload > 0 else 1024 * 1024
        self.max_compressed = min(self.max_payload * _MAX_MSG_PAYLOAD_MULTIPLE, _MAX_MSG_PAYLOAD_LIMIT)
        self._buf = bytearray()
        self._rem = 0  # payload bytes left in the current data frame
        self._in_frame = False
        self._masked = False
        self._key = b""
        self._kpos = 0
        self._final_seen = True  # the last data message is complete
        self._compressed = False  # the current message is compressed
        self._cbuf = bytearray()
        self.pending: list[Any] = []

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        out: list[Any] = []
        self.pending = out
        buf = self._buf
        while True:
            if self._in_frame:
                if self._rem and buf:
                    n = min(self._rem, len(buf))
                    chunk = bytes(buf[:n])
                    del buf[:n]
                    if self._masked:
                        chunk = _unmask(chunk, self._key, self._kpos)
                        self._kpos = (self._kpos + n) & 3
                    self._rem -= n
                    if self._compressed:
                        if len(self._cbuf) + n > self.max_compressed:
                            raise WsClose(close_payload(1009, "Maximum Message Payload Exceeded"),
                                          "Maximum Message Payload Exceeded")
                        self._cbuf += chunk
                    else:
                        out.append(chunk)
                if self._rem:
                    return out
                self._in_frame = False
                if self._compressed and self._final_seen:
                    self._inflate(out)
                continue
            if not self._header(out):
                return out

    def _header(self, out: list[Any]) -> bool:
        """Parse one frame header (and a whole control frame); False when more bytes are needed."""
        buf = self._buf
        if len(buf) < 2:
            return False
        b0, b1 = buf[0], buf[1]
        opcode, final, rsv1 = b0 & 0x0F, bool(b0 & 0x80), bool(b0 & 0x40)
        if b0 & 0x30:
            raise _protocol_error("RSV2 and RSV3 must be clear")
        if rsv1 and not self.compression:
            raise _protocol_error("compressed frame received without negotiated permessage-deflate")
        masked = bool(b1 & 0x80)
        if self.mask_required and not masked:
            raise _protocol_error("mask bit missing")
        n, pos = b1 & 0x7F, 2
        if opcode in (OP_CLOSE, OP_PING, OP_PONG):
            if n > MAX_CONTROL_PAYLOAD:
                raise _protocol_error(
                    f"control frame length bigger than maximum allowed of {MAX_CONTROL_PAYLOAD} bytes")
            if not final:
                raise _protocol_error("control frame does not have final bit set")
            if rsv1:
                raise _protocol_error("control frame must not be compressed")
        elif opcode in (OP_TEXT, OP_BINARY):
            if not self._final_seen:
                raise _protocol_error(
                    "new message started before final frame for previous message was received")
        elif opcode == OP_CONT:
            if self._final_seen or rsv1:
                raise _protocol_error("invalid continuation frame")
        else:
            raise _protocol_error(f"unknown opcode {opcode}")
        if n == 126:
            if len(buf) < 4:
                return False
            n, pos = struct.unpack_from("!H", buf, 2)[0], 4
        elif n == 127:
            if len(buf) < 10:
                return False
            n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
            if n >> 63:
                raise _protocol_error("invalid 64-bit payload length")
        key = b""
        if masked:
            if len(buf) < pos + 4:
                return False
            key, pos = bytes(buf[pos:pos + 4]), pos + 4
        if opcode >= OP_CLOSE:
            if len(buf) < pos + n:
                return False
            payload = bytes(buf[pos:pos + n])
            del buf[:pos + n]
            if masked:
                payload = _unmask(payload, key, 0)
            self._control(opcode, payload, out)
            return True
        del buf[:pos]
        if opcode != OP_CONT:
            self._compressed = rsv1
            self._cbuf = bytearray()
        self._final_seen = final
        self._in_frame, self._rem, self._masked, self._key, self._kpos = True, n, masked, key, 0
        return True

    def _control(self, opcode: int, payload: bytes, out: list[Any]) -> None:
        if opcode == OP_PING:
            out.append(("ping", payload))
        elif opcode == OP_CLOSE:
            if len(payload) == 1:
                raise _protocol_error("close frame payload cannot be 1 byte")
            if not payload:
                raise WsClose(b"", "Client Closed")  # 1005: no status, so none is echoed
            status = struct.unpack("!H", payload[:2])[0]
            if not _valid_close_status(status):
                raise _protocol_error(f"invalid close status code {status}")
            body = payload[2:]
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                raise WsClose(close_payload(1007, "invalid utf8 body in close frame"), "Client Closed")
            raise WsClose(payload, "Client Closed")
        # pongs need nothing

    def _inflate(self, out: list[Any]) -> None:
        data = bytes(self._cbuf) + _INFLATE_TAIL
        self._cbuf = bytearray()
        self._compressed = False
        d = zlib.decompressobj(-15)
        try:
            plain = d.decompress(data, self.max_payload + 1)
        except zlib.error as e:
            raise _protocol_error(f"invalid compressed data: {e}") from None
        if len(plain) > self.max_payload:
            # the first max_payload bytes are parsed, then the connection ends (as nats-server)
            out.append(plain[:self.max_payload])
            raise WsClose(close_payload(1009, "Maximum Message Payload Exceeded"),
                          "Maximum Message Payload Exceeded")
        if plain:
            out.append(plain)


class FrameWriter:
    """Server output as frames: binary, unmasked; deflated above 64 bytes when negotiated;
    at most 4 KiB per frame for browsers (compressed messages fragmented, unless Safari)."""

    def __init__(self, *, compress: bool = False, browser: bool = False, nocompfrag: bool = False) -> None:
        self.compress = compress
        self.max_frame = BROWSER_FRAME_SIZE if browser else 0
        self.nocompfrag = nocompfrag

    def encode(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self.compress and len(data) > COMPRESS_THRESHOLD:
            c = zlib.compressobj(1, zlib.DEFLATED, -15)  # no context takeover: fresh each time
            p = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
            p = p[:-4]  # drop the 00 00 ff ff sync-flush tail (RFC 7692 7.2.1)
            mfs = 0 if self.nocompfrag else self.max_frame
            if not mfs or len(p) <= mfs:
                return encode_frame(OP_BINARY, p, rsv1=True)
            parts = [p[i:i + mfs] for i in range(0, len(p), mfs)]
            last = len(parts) - 1
            return b"".join(encode_frame(OP_BINARY if i == 0 else OP_CONT, part,
                                         fin=i == last, rsv1=i == 0)
                            for i, part in enumerate(parts))
        mfs = self.max_frame
        if not mfs or len(data) <= mfs:
            return encode_frame(OP_BINARY, bytes(data))
        # each piece is a complete message of its own, as nats-server frames them
        return b"".join(encode_frame(OP_BINARY, bytes(data[i:i + mfs])) for i in range(0, len(data), mfs))


# ==========================================================================================
# the stream adapter
# ==========================================================================================
class WebSocketStream(trio.abc.Stream):
    """A trio Stream over an upgraded connection: send_all writes frames, receive_some returns
    the unframed client bytes, aclose ends with a close frame whose status follows the close
    reason (`close_reason` is asked at close time, e.g. the NatsConnection's)."""

    def __init__(self, raw: trio.abc.Stream, up: Upgrade | None = None, *,
                 max_payload: int = 1024 * 1024) -> None:
        up = up or Upgrade(KIND_CLIENT, "", False, False, False, False, None)
        self.raw = raw
        self.upgrade = up
        self.reader = FrameReader(mask_required=not up.no_masking, compression=up.compress,
                                  max_payload=max_payload)
        self.writer = FrameWriter(compress=up.compress, browser=up.browser, nocompfrag=up.nocompfrag)
        self.close_reason: Callable[[], str | None] = lambda: None
        self._send_lock = trio.Lock()
        self._ready: deque[bytes] = deque()
        self._eof = False
        self._close_reply: bytes | None = None  # close frame owed to the peer
        self._close_sent = False
        self._torn = False
        self.socket = getattr(raw, "socket", None)  # for code that peeks at the socket

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._close_sent:
            raise trio.ClosedResourceError("websocket closed")
        frames = self.writer.encode(bytes(data))
        async with self._send_lock:
            # stays set if the send is cut short (write deadline, kill): the peer then holds a
            # partial frame, and a close frame after it would be garbage
            self._torn = True
            await self.raw.send_all(frames)
            self._torn = False

    async def wait_send_all_might_not_block(self) -> None:
        await self.raw.wait_send_all_might_not_block()

    async def _send_control(self, opcode: int, payload: bytes) -> None:
        async with self._send_lock:
            await self.raw.send_all(encode_frame(opcode, payload))

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._ready:
            if self._eof:
                return b""
            data = await self.raw.receive_some(65536)
            if not data:
                self._eof = True
                return b""
            try:
                items = self.reader.feed(data)
            except WsClose as e:
                items = self.reader.pending
                self._close_reply = e.payload
                self._eof = True
            for it in items:
                if isinstance(it, tuple):
                    try:
                        await self._send_control(OP_PONG, it[1])
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self._eof = True
                elif it:
                    self._ready.append(it)
        chunk = self._ready.popleft()
        if max_bytes is not None and len(chunk) > max_bytes:
            self._ready.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk

    async def aclose(self) -> None:
        """Send the close frame owed (an echo, a protocol error, or one for the close reason)."""
        if not self._close_sent and not self._torn:
            self._close_sent = True
            payload = self._close_reply
            if payload is None:
                reason = self.close_reason() or "Client Closed"
                payload = close_payload(_CLOSE_STATUS.get(reason, 1011), reason)
            try:
                with trio.move_on_after(1):
                    await self._send_control(OP_CLOSE, payload)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
                pass
        await self.raw.aclose()


# ==========================================================================================
# the listener
# ==========================================================================================
class WebsocketClientConnection(NatsConnection):
    """A NATS client over WebSocket: the TCP driver, with nats-server's WebSocket INFO rule."""

    def make_info(self) -> dict[str, Any]:
        info = super().make_info()
        # createWSClient copies the server INFO, whose auth_required a no_auth_user (the
        # server's or the websocket's own) does not hide, then adds the websocket override
        if self.auth_required:
            info["auth_required"] = True
        return info

    @property
    def ping_interval(self) -> float:
        # websocket { ping_interval } overrides the server's for WebSocket clients
        wo = self.broker.options.websocket
        if wo is not None and wo.ping_interval:
            return wo.ping_interval
        return self.broker.options.ping_interval

    async def _auth_timer(self) -> None:
        # websocket { authorization { timeout } } replaces the server's auth timeout
        wo = self.broker.options.websocket
        auth = {str(k).lower(): v for k, v in ((wo.authorization if wo else None) or {}).items()}
        timeout = auth.get("timeout")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            await super()._auth_timer()
            return
        await trio.sleep(timeout)
        if not self.authed:
            self.close("Authentication Timeout", ERR_AUTH_TIMEOUT)


class _Handshaker:
    """Reads requests on one connection until one upgrades (or the connection ends)."""

    def __init__(self, stream: trio.abc.Stream, timeout: float) -> None:
        self.stream = stream
        self.timeout = timeout if timeout and timeout > 0 else math.inf
        self.buf = bytearray()

    async def read_head(self) -> bytes | None:
        """One request head; None on EOF or timeout; raises BadRequest(431) when too large."""
        with trio.move_on_after(self.timeout):
            while True:
                i = self.buf.find(b"\r\n\r\n")
                if i >= 0:
                    head = bytes(self.buf[:i])
                    del self.buf[:i + 4]
                    return head
                if len(self.buf) > _MAX_HEADER_BYTES:
                    raise BadRequest(431)
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.buf += data
        return None


class WebsocketListener:
    """The websocket{} listener: accept, upgrade, and run the protocol for each connection."""

    def __init__(self, server: Any) -> None:
        self.server = server
        o = server.options
        self.wo = o.websocket
        self.origins = OriginChecker(self.wo.same_origin, list(self.wo.allowed_origins or ()))
        headers = getattr(self.wo, "headers", None) or {}
        self.raw_headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.ssl_context: ssl.SSLContext | None = None
        self.host = self.wo.host or "0.0.0.0"
        self.port = 0

    def _make_ssl_context(self) -> ssl.SSLContext | None:
        tls = self.wo.tls
        if tls is None:
            return None
        make = getattr(self.server, "make_tls_context", None)
        if make is not None:
            return make(tls)
        try:
            from ..security.tlsconf import server_context
        except ImportError:  # pragma: no cover - security is part of the package
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
            return ctx
        return server_context(tls)

    @property
    def scheme(self) -> str:
        return "wss" if self.ssl_context is not None else "ws"

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        server = self.server
        validate_websocket_options(server.options)
        self.ssl_context = self._make_ssl_context()
        listeners = listen.trio_listeners(listen.take(server, listen.WEBSOCKET))
        self.port = listeners[0].socket.getsockname()[1]
        server.ws_port = self.port
        log.info("Listening for websocket clients on %s://%s:%d", self.scheme, self.host, self.port)
        if self.ssl_context is None:
            log.warning("Websocket not configured with TLS. DO NOT USE IN PRODUCTION!")
        async with trio.open_nursery() as n:
            server.listener_scopes.append(n.cancel_scope)
            for ln in listeners:
                n.start_soon(self._accept_loop, ln)
            task_status.started()

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:
                    log.error("websocket accept failed: %s", e)
                    await trio.sleep(0.1)
                    continue
                self.server.conn_nursery.start_soon(self._handle, stream)

    async def _handle(self, raw: trio.SocketStream) -> None:
        peer = peer_of(raw)
        holder: list[trio.abc.Stream] = [raw]  # the outermost stream so far, to close on failure
        try:
            up = await self._handshake(raw, peer, holder)
            if up is None:
                with trio.CancelScope(shield=True):
                    await _aclose_quietly(holder[-1])
                return
            await self._dispatch(holder[-1], up, peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.debug("websocket connection from %s:%d ended: %s", peer[0], peer[1], e)
            with trio.CancelScope(shield=True):
                await _aclose_quietly(holder[-1])
        except Exception:  # one connection's failure must not take the listener down
            log.exception("websocket connection from %s:%d failed", *peer)
            with trio.CancelScope(shield=True):
                await _aclose_quietly(holder[-1])

    async def _handshake(self, raw: trio.SocketStream, peer: tuple[str, int],
                         holder: list[trio.abc.Stream]) -> Upgrade | None:
        """TLS (if configured), then HTTP requests until one upgrades; None: close the socket."""
        stream: trio.abc.Stream = raw
        if self.ssl_context is not None:
            stream = trio.SSLStream(raw, self.ssl_context, server_side=True)
            holder.append(stream)
            # Go's http.Server ReadTimeout (= handshake_timeout) covers the TLS handshake too
            with trio.move_on_after(self.wo.handshake_timeout or math.inf) as cs:
                try:
                    await stream.do_handshake()
                except (trio.BrokenResourceError, ssl.SSLError, OSError) as e:
                    log.error("%s:%d - websocket TLS handshake error: %s", *peer, e)
                    return None
            if cs.cancelled_caught:
                log.error("%s:%d - websocket TLS handshake error: timeout", *peer)
                return None
        hs = _Handshaker(stream, self.wo.handshake_timeout)
        mqtt_enabled = self._mqtt_enabled()
        while True:
            try:
                head = await hs.read_head()
                if head is None:
                    return None
                req = parse_request(head)
            except BadRequest as e:
                await _send_quietly(stream, go_bad_request(e))
                return None
            try:
                up = check_upgrade(req, compression=self.wo.compression, origins=self.origins,
                                   secure=self.ssl_context is not None, mqtt_enabled=mqtt_enabled)
            except HandshakeRefused as e:
                log.error("%s:%d - websocket handshake error: %s", peer[0], peer[1], e.reason)
                await _send_quietly(stream, http_error(e.status, req))
                if not req.keep_alive or req.get("content-length") not in ("", "0") \
                        or req.get("transfer-encoding"):
                    return None
                continue  # Go's server keeps the connection open for the next request
            if hs.buf:
                # nats-server refuses a client that did not wait for the 101 (and just closes)
                log.error("%s:%d - websocket handshake error: client sent data before handshake "
                          "is complete", *peer)
                return None
            await stream.send_all(upgrade_response(up, self.raw_headers))
            return up

    def _mqtt_enabled(self) -> bool:
        mq = self.server.options.mqtt
        return mq is not None and mq.port is not None

    async def _dispatch(self, stream: trio.abc.Stream, up: Upgrade, peer: tuple[str, int]) -> None:
        server = self.server
        o = server.options
        ws = WebSocketStream(stream, up, max_payload=o.max_payload)
        if up.forwarded_for:
            # nats-server shows the forwarded address only in its log prefix; INFO client_ip,
            # /connz and auth checks keep using the TCP peer
            log.debug("%s/%s:%d - websocket connection from a proxy", up.forwarded_for, *peer)
        if up.kind == KIND_MQTT:
            mqtt = server.services.get("mqtt")
            if mqtt is None or not hasattr(mqtt, "handle_stream"):
                await ws.aclose()
                return
            await mqtt.handle_stream(ws, remote=peer, conn_type="websocket")
            return
        if up.kind == KIND_LEAF:
            leaf = server.services.get("leaf")
            if o.leafnodes is None or leaf is None or not hasattr(leaf, "handle_stream"):
                log.error("Not configured to accept leaf node connections")
                await stream.aclose()  # silently, as nats-server (no close frame)
                return
            await leaf.handle_stream(ws, remote=peer)
            return
        await self._run_client(ws, up, peer)

    async def _run_client(self, ws: WebSocketStream, up: Upgrade, peer: tuple[str, int]) -> None:
        server = self.server
        o = server.options
        wo = self.wo
        info: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.ssl_context is not None:
            info["tls_required"] = True
            info["tls_available"] = True
        conn = WebsocketClientConnection(server.broker, ws, conn_type="websocket", listener="websocket",
                                         remote=peer, tls=info,
                                         no_auth_user=wo.no_auth_user or o.no_auth_user,
                                         cookie_creds=self._cookie_creds(up.cookies) or None)
        ws.close_reason = lambda: conn.close_reason
        server.connections.add(conn)
        try:
            await conn.run()
        except Exception:
            log.exception("websocket connection %d failed", conn.cid)
        finally:
            server.connections.discard(conn)

    def _cookie_creds(self, cookies: dict[str, str]) -> dict[str, str]:
        """CONNECT fields the configured cookies supply (used only where CONNECT has none)."""
        out: dict[str, str] = {}
        wo = self.wo
        for opt, connect_key in (("jwt_cookie", "jwt"), ("user_cookie", "user"),
                                 ("pass_cookie", "pass"), ("token_cookie", "auth_token")):
            name = getattr(wo, opt, None)
            if name and cookies.get(name):
                out[connect_key] = cookies[name]
        return out


async def _send_quietly(stream: trio.abc.Stream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def _aclose_quietly(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(1):
        try:
            await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def serve_websocket(server: Any, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
    """The service entry point (services.py): validate, listen, report started()."""
    listener = WebsocketListener(server)
    server.services["websocket"] = listener
    await listener.run(task_status=task_status)
