"""NATS over WebSocket: a raw WebSocket client speaks the NATS protocol to edgebus."""

import json

import pytest
import trio
from trio_websocket import open_websocket_url

from edgebus.options import WebsocketOptions


async def _recv_until(ws, needle: bytes, limit: int = 50) -> bytes:
    buf = b""
    for _ in range(limit):
        with trio.fail_after(5):
            m = await ws.get_message()
        buf += m if isinstance(m, bytes) else m.encode()
        if needle in buf:
            return buf
    raise AssertionError(f"{needle!r} not in {buf!r}")


@pytest.mark.trio
@pytest.mark.edgebus(websocket=WebsocketOptions(port=-1, host="127.0.0.1", no_tls=True))
async def test_nats_over_websocket_pubsub_and_cross_delivery(edgebus_trio_server):
    srv = edgebus_trio_server
    url = f"ws://127.0.0.1:{srv.ws_port}/"
    async with open_websocket_url(url) as ws:
        info = await _recv_until(ws, b"\r\n")
        assert info.startswith(b"INFO ")
        parsed = json.loads(info[5:info.index(b"\r\n")])
        assert parsed["port"] == srv.ws_port and parsed["headers"] is True
        # ops may be split across frames arbitrarily
        await ws.send_message(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSU")
        await ws.send_message(b"B ws.> 1\r\nPING\r\n")
        await _recv_until(ws, b"PONG\r\n")
        # a TCP client publishes; the WebSocket subscriber receives
        stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
        await stream.send_all(b"CONNECT {\"verbose\":false}\r\nPUB ws.hello 5\r\nhello\r\nPING\r\n")
        got = await _recv_until(ws, b"hello\r\n")
        assert b"MSG ws.hello 1 5\r\nhello\r\n" in got
        # and the other way round
        await stream.send_all(b"SUB back 9\r\nPING\r\n")
        await ws.send_message(b"PUB back 2\r\nok\r\n")
        buf = b""
        with trio.fail_after(5):
            while b"MSG back 9 2\r\nok\r\n" not in buf:
                buf += await stream.receive_some(4096)
        await stream.aclose()
    conns = [c for c in srv.connections if c.type == "websocket"]
    assert conns == [] or all(c.closing for c in conns)


@pytest.mark.trio
@pytest.mark.edgebus(websocket=WebsocketOptions(port=-1, host="127.0.0.1", no_tls=True,
                                                allowed_origins=["http://good.example"]))
async def test_websocket_origin_rejected(edgebus_trio_server):
    from trio_websocket import HandshakeError
    url = f"ws://127.0.0.1:{edgebus_trio_server.ws_port}/"
    with pytest.raises(HandshakeError):
        async with open_websocket_url(url, extra_headers=[(b"Origin", b"http://evil.example")]):
            pass
    async with open_websocket_url(url, extra_headers=[(b"Origin", b"http://good.example")]) as ws:
        assert (await _recv_until(ws, b"\r\n")).startswith(b"INFO")
