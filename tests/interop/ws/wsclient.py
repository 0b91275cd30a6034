"""A deliberately small, hand-driven WebSocket client for the interop tests (trio).

It lets a test write exactly the bytes it wants: any handshake request (valid or not), masked
or unmasked frames, text/binary/continuation/control opcodes, RSV bits and permessage-deflate
payloads, and read back every frame the server sends. The same client talks to edgebus and to
the real nats-server, so the differential tests compare like with like.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass, field

import trio

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
# permessage-deflate: the sender strips this sync-flush tail; the receiver appends it back
_TAIL = b"\x00\x00\xff\xff"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(path: str = "/", *, host: str = "127.0.0.1", key: str | None = None,
                    headers: list[tuple[str, str]] | None = None, method: str = "GET") -> bytes:
    """A valid RFC 6455 opening handshake, plus any extra headers."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key or new_key()}",
             "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in headers or ()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False,
          rsv2: bool = False, mask: bool = True) -> bytes:
    """Encode one frame; clients mask by default (RFC 6455 5.3)."""
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n <= 125:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _xor(payload, key)


def _xor(data: bytes, key: bytes) -> bytes:
    """Mask or unmask with a 4-byte key (one big-int XOR instead of a per-byte loop)."""
    n = len(data)
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


def deflate(data: bytes) -> bytes:
    """One permessage-deflate message body, no context takeover."""
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(_TAIL)
    return out[:-4]


def inflate(data: bytes) -> bytes:
    d = zlib.decompressobj(-15)
    return d.decompress(data + _TAIL) + d.flush()


@dataclass
class Frame:
    fin: bool
    rsv1: bool
    opcode: int
    masked: bool
    payload: bytes

    @property
    def close_status(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_text(self) -> str:
        return self.payload[2:].decode("utf-8", "replace")


@dataclass
class HttpResponse:
    status_line: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class RawWebSocket:
    """One TCP connection: send the handshake, then frames; read responses and frames."""

    stream: trio.abc.Stream
    buf: bytearray = field(default_factory=bytearray)
    frames_seen: list[Frame] = field(default_factory=list)

    @classmethod
    async def connect(cls, host: str, port: int) -> "RawWebSocket":
        return cls(await trio.open_tcp_stream(host, port))

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        if not data:
            return False
        self.buf += data
        return True

    async def read_http(self) -> HttpResponse:
        """Read one HTTP response head (and a Content-Length body, if any)."""
        while b"\r\n\r\n" not in self.buf:
            if not await self._fill():
                raise EOFError(f"connection closed during HTTP response: {bytes(self.buf)!r}")
        i = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:i]).decode("latin-1").split("\r\n")
        del self.buf[:i + 4]
        headers = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in head[1:])]
        resp = HttpResponse(head[0], headers)
        n = int(resp.header("Content-Length") or 0)
        while len(self.buf) < n:
            if not await self._fill():
                break
        resp.body = bytes(self.buf[:n])
        del self.buf[:n]
        return resp

    async def read_rest(self) -> bytes:
        """Everything until the server closes the connection."""
        while await self._fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    async def handshake(self, request: bytes) -> HttpResponse:
        await self.stream.send_all(request)
        return await self.read_http()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_frame(self, opcode: int, payload: bytes = b"", **kw: bool) -> None:
        await self.stream.send_all(frame(opcode, payload, **kw))

    async def recv_frame(self) -> Frame | None:
        """The next frame, or None when the server closed the TCP connection."""
        while True:
            f = self._parse_frame()
            if f is not None:
                self.frames_seen.append(f)
                return f
            if not await self._fill():
                return None

    def _parse_frame(self) -> Frame | None:
        b = self.buf
        if len(b) < 2:
            return None
        b0, b1 = b[0], b[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = struct.unpack("!Q", b[2:10])[0], 10
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            if len(b) < pos + 4:
                return None
            key, pos = bytes(b[pos:pos + 4]), pos + 4
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        if masked:
            payload = _xor(payload, key)
        del b[:pos + n]
        return Frame(bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, masked, payload)

    async def recv_data_until(self, needle: bytes, limit: int = 200, timeout: float = 10) -> bytes:
        """Concatenate data messages (inflating compressed ones) until `needle` shows up;
        `timeout` only guards against a hang."""
        out = b""
        compressed: bytes | None = None
        for _ in range(limit):
            with trio.fail_after(timeout):
                f = await self.recv_frame()
            if f is None:
                raise EOFError(f"closed before {needle!r}; got {out!r}")
            if f.opcode in (TEXT, BINARY, CONT):
                if f.opcode != CONT:
                    compressed = b"" if f.rsv1 else None
                if compressed is not None:
                    compressed += f.payload
                    if f.fin:
                        out += inflate(compressed)
                        compressed = None
                else:
                    out += f.payload
                if needle in out:
                    return out
        raise AssertionError(f"{needle!r} not in {out!r}")

    async def aclose(self) -> None:
        await self.stream.aclose()
