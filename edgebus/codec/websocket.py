"""WebSocket for NATS, sans-IO: the HTTP upgrade (request and answer) and RFC 6455 frames.

No trio and nothing of the server here: bytes in, values out. Server side: `HeadReader` finds
one request head in what has arrived (however it was split, keeping what follows it),
`parse_request` reads it as Go's net/http does, `check_upgrade` applies nats-server's wsUpgrade
checks in its order and `upgrade_response` / `http_error` / `go_bad_request` are the answers;
`FrameReader` turns client frames into protocol bytes and control items, `FrameWriter` frames
server output (deflate, browser frame sizes). Client side (the leaf remote on ws:// URLs):
`client_request`, `check_client_answer` and `client_frame`.

The transport (`transport/websocket.py`, `leaf/wsclient.py`) owns the sockets and the timing.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import ipaddress
import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("edgebus")

# -- protocol constants (RFC 6455 / RFC 7692, and nats-server's choices) -------------------
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_CONTROL_PAYLOAD = 125
BROWSER_FRAME_SIZE = 4096  # nats-server: browsers behave better with frames of at most 4 KiB
COMPRESS_THRESHOLD = 64  # nats-server does not compress pending output of 64 bytes or less
_MAX_MSG_PAYLOAD_MULTIPLE = 8
_MAX_MSG_PAYLOAD_LIMIT = 64 * 1024 * 1024
PMC_RESPONSE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
# appended to a compressed message before inflating: the sync-flush tail the sender stripped
# plus an empty final stored block, so the deflate stream ends cleanly (as nats-server does)
_INFLATE_TAIL = b"\x00\x00\xff\xff\x01\x00\x00\xff\xff"
MAX_HEADER_BYTES = (1 << 20) + 4096  # Go's http.DefaultMaxHeaderBytes plus its slack

LEAF_PATH = "/leafnode"
MQTT_PATH = "/mqtt"
KIND_CLIENT, KIND_MQTT, KIND_LEAF = "client", "mqtt", "leaf"


# ==========================================================================================
# HTTP handshake (server side)
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
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


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


def parse_request_uri(raw: str) -> tuple[str | None, _URI]:
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
            err, u = parse_request_uri(ao)
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
        err, u = parse_request_uri(origin)
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
# request heads, however they arrive
# ==========================================================================================
class HeadReader:
    """Collects bytes until one HTTP head (request or answer) is complete.

    `feed(data)` returns the head (without its blank line) once it is complete, else None;
    the bytes after the head stay in `trailing` (the first frames, or the next request).
    Raises BadRequest(431) when the head grows past `limit` without ending."""

    def __init__(self, limit: int = MAX_HEADER_BYTES) -> None:
        self.limit = limit
        self.buf = bytearray()

    def feed(self, data: bytes) -> bytes | None:
        self.buf += data
        i = self.buf.find(b"\r\n\r\n")
        if i < 0:
            if len(self.buf) > self.limit:
                raise BadRequest(431)
            return None
        head = bytes(self.buf[:i])
        del self.buf[:i + 4]
        return head

    def next_head(self) -> bytes | None:
        """A further complete head among the bytes already held (keep-alive requests)."""
        return self.feed(b"")

    @property
    def trailing(self) -> bytes:
        return bytes(self.buf)


# ==========================================================================================
# client side (leaf remotes on ws:// and wss:// URLs)
# ==========================================================================================
NO_MASKING_HEADER = "Nats-No-Masking"


class ClientHandshakeError(ValueError):
    """The server did not upgrade the connection."""


def new_client_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def client_request(host: str, path: str, key: str, *, no_masking: bool = False) -> bytes:
    """The upgrade request nats-server's leaf dialer sends."""
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if no_masking:
        req += f"{NO_MASKING_HEADER}: true\r\n"
    return (req + "\r\n").encode()


def check_client_answer(head: bytes, key: str, *, no_masking: bool = False) -> bool:
    """Check the server's answer head to `client_request`; returns whether frames from us
    must be masked (unless both sides agreed on no masking). Raises ClientHandshakeError."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ")
    headers: dict[str, str] = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    if (len(status) < 2 or status[1] != "101" or headers.get("upgrade", "").lower() != "websocket"
            or headers.get("connection", "").lower() != "upgrade"
            or headers.get("sec-websocket-accept") != accept_key(key)):
        raise ClientHandshakeError("invalid websocket connection")
    return not (no_masking and headers.get(NO_MASKING_HEADER.lower()) == "true")


def mask(data: bytes, key: bytes) -> bytes:
    """XOR with a 4-byte masking key (RFC 6455 5.3)."""
    return _unmask(data, key, 0)


def client_frame(opcode: int, payload: bytes, masked: bool = True) -> bytes:
    """One final frame from client to server (masked with a fresh key unless told not to)."""
    b0 = 0x80 | opcode
    n = len(payload)
    mbit = 0x80 if masked else 0
    if n <= 125:
        head = bytes((b0, mbit | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not masked:
        return head + payload
    k = os.urandom(4)
    return head + k + mask(payload, k)
