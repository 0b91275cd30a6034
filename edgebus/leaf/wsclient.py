"""The client side of a WebSocket, for remotes with ws:// or wss:// URLs.

nats-server's leaf dialer sends `GET /leafnode` (after the URL's own path) with the usual
upgrade headers, checks the 101 answer, then speaks the leaf protocol in binary frames, masked
unless the hub agreed to `Nats-No-Masking: true`. `WebSocketClientStream` is the trio byte
stream the leaf link reads and writes; framing is shared with the WebSocket listener
(`FrameReader` parses the server's unmasked frames).
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

import trio

from ..transport.websocket import (OP_BINARY, OP_CLOSE, OP_PONG, FrameReader, WsClose,
                                   close_payload)

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LEAF_PATH = "leafnode"
NO_MASKING_HEADER = "Nats-No-Masking"


class WebSocketHandshakeError(OSError):
    """The server did not upgrade the connection."""


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


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
    key = os.urandom(4)
    return head + key + _mask(payload, key)


def leaf_path(url_path: str) -> str:
    """`/leafnode` after the URL's own path, as nats-server builds it."""
    p = url_path.strip("/")
    return "/" + (f"{p}/{LEAF_PATH}" if p else LEAF_PATH)


async def handshake(stream: trio.abc.Stream, host: str, url_path: str, *, no_masking: bool,
                    timeout: float) -> tuple["WebSocketClientStream", bytes]:
    """Upgrade `stream`; returns the framed stream and any bytes read past the HTTP answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {leaf_path(url_path)} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if no_masking:
        req += f"{NO_MASKING_HEADER}: true\r\n"
    req += "\r\n"
    buf = b""
    with trio.fail_after(timeout):
        await stream.send_all(req.encode())
        while b"\r\n\r\n" not in buf:
            data = await stream.receive_some(4096)
            if not data:
                raise WebSocketHandshakeError("connection closed during websocket handshake")
            buf += data
            if len(buf) > 65536:
                raise WebSocketHandshakeError("websocket handshake answer too long")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ")
    headers: dict[str, str] = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    if (len(status) < 2 or status[1] != "101" or headers.get("upgrade", "").lower() != "websocket"
            or headers.get("connection", "").lower() != "upgrade"
            or headers.get("sec-websocket-accept") != accept):
        raise WebSocketHandshakeError("invalid websocket connection")
    masked = not (no_masking and headers.get(NO_MASKING_HEADER.lower()) == "true")
    ws = WebSocketClientStream(stream, masked=masked)
    return ws, rest


class WebSocketClientStream(trio.abc.Stream):
    """Leaf protocol bytes over client WebSocket frames."""

    def __init__(self, raw: trio.abc.Stream, *, masked: bool = True) -> None:
        self.raw = raw
        self.masked = masked
        self.reader = FrameReader(mask_required=False, max_payload=64 * 1024 * 1024)
        self._ready: list[bytes] = []
        self._eof = False
        self._closed = False
        self._send_lock = trio.Lock()
        self.socket = getattr(raw, "socket", None)

    def feed(self, data: bytes) -> None:
        """Bytes already read from the raw stream (past the HTTP answer)."""
        if data:
            self._take(data)

    def _take(self, data: bytes) -> list[tuple]:
        try:
            items = self.reader.feed(data)
        except WsClose:
            items = self.reader.pending
            self._eof = True
        controls = []
        for it in items:
            if isinstance(it, tuple):
                controls.append(it)
            elif it:
                self._ready.append(it)
        return controls

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("websocket closed")
        async with self._send_lock:
            await self.raw.send_all(client_frame(OP_BINARY, bytes(data), self.masked))

    async def wait_send_all_might_not_block(self) -> None:
        await self.raw.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._ready:
            if self._eof:
                return b""
            data = await self.raw.receive_some(65536)
            if not data:
                self._eof = True
                return b""
            for _, payload in self._take(data):
                async with self._send_lock:
                    await self.raw.send_all(client_frame(OP_PONG, payload, self.masked))
        chunk = self._ready.pop(0)
        if max_bytes is not None and len(chunk) > max_bytes:
            self._ready.insert(0, chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                with trio.move_on_after(1):
                    async with self._send_lock:
                        await self.raw.send_all(client_frame(OP_CLOSE, close_payload(1000, ""),
                                                             self.masked))
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError,
                    OSError):
                pass
        await self.raw.aclose()
