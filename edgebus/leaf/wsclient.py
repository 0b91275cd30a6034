"""The client side of a WebSocket, for remotes with ws:// or wss:// URLs.

nats-server's leaf dialer sends `GET /leafnode` (after the URL's own path) with the usual
upgrade headers, checks the 101 answer, then speaks the leaf protocol in binary frames, masked
unless the hub agreed to `Nats-No-Masking: true`. `WebSocketClientStream` is the trio byte
stream the leaf link reads and writes; the upgrade and the framing are the sans-IO codec's
(`codec/websocket.py`), shared with the WebSocket listener.
"""

from __future__ import annotations

import trio

from ..codec.websocket import (NO_MASKING_HEADER, OP_BINARY, OP_CLOSE, OP_PONG, BadRequest,
                               ClientHandshakeError, FrameReader, HeadReader, WsClose,
                               check_client_answer, client_frame, client_request, close_payload,
                               new_client_key)

__all__ = ["NO_MASKING_HEADER", "WebSocketClientStream", "WebSocketHandshakeError", "client_frame",
           "handshake", "leaf_path"]

LEAF_PATH = "leafnode"
ANSWER_LIMIT = 65536


class WebSocketHandshakeError(OSError):
    """The server did not upgrade the connection."""


def leaf_path(url_path: str) -> str:
    """`/leafnode` after the URL's own path, as nats-server builds it."""
    p = url_path.strip("/")
    return "/" + (f"{p}/{LEAF_PATH}" if p else LEAF_PATH)


async def handshake(stream: trio.abc.Stream, host: str, url_path: str, *, no_masking: bool,
                    timeout: float) -> tuple["WebSocketClientStream", bytes]:
    """Upgrade `stream`; returns the framed stream and any bytes read past the HTTP answer."""
    key = new_client_key()
    answer = HeadReader(limit=ANSWER_LIMIT)
    head = None
    with trio.fail_after(timeout):
        await stream.send_all(client_request(host, leaf_path(url_path), key, no_masking=no_masking))
        while head is None:
            data = await stream.receive_some(4096)
            if not data:
                raise WebSocketHandshakeError("connection closed during websocket handshake")
            try:
                head = answer.feed(data)
            except BadRequest:  # 431: too long
                raise WebSocketHandshakeError("websocket handshake answer too long") from None
    try:
        masked = check_client_answer(head, key, no_masking=no_masking)
    except ClientHandshakeError as e:
        raise WebSocketHandshakeError(str(e)) from None
    return WebSocketClientStream(stream, masked=masked), answer.trailing


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
