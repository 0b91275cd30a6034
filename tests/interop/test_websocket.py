"""NATS over WebSocket against edgebus with real sockets: the opening handshake, framing,
permessage-deflate, browser frame sizes, close codes, HTTP refusals, TLS, and third-party
WebSocket clients (trio-websocket, wsproto, websockets).

The hand-driven client (tests/interop/ws/wsclient.py) writes exact bytes, so each nats-server
behaviour (websocket.go) is checked directly; test_websocket_differential.py runs the same
client against the real nats-server.
"""

from __future__ import annotations

import datetime
import json
import struct
import sys
from pathlib import Path

import pytest
import trio

from edgebus.options import Options, TLSOptions, WebsocketOptions
from edgebus.server import Server

sys.path.insert(0, str(Path(__file__).parent / "ws"))
from wsclient import (BINARY, CLOSE, CONT, PING, PONG, TEXT, RawWebSocket, accept_key,  # noqa: E402
                      deflate, inflate, new_key, upgrade_request)

PMD = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
BROWSER = ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0 Safari/537.36")
SAFARI = ("User-Agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.0 Safari/605.1.15")


def ws_opts(**kw) -> WebsocketOptions:
    kw.setdefault("port", -1)
    kw.setdefault("host", "127.0.0.1")
    kw.setdefault("no_tls", True)
    return WebsocketOptions(**kw)


async def opened(port: int, headers: list[tuple[str, str]] | None = None,
                 path: str = "/") -> tuple[RawWebSocket, dict]:
    """Upgrade, then read INFO; returns the client and the INFO object."""
    ws = await RawWebSocket.connect("127.0.0.1", port)
    with trio.fail_after(10):
        resp = await ws.handshake(upgrade_request(path, headers=headers))
        assert resp.status == 101, resp
        data = await ws.recv_data_until(b"\r\n")
    assert data.startswith(b"INFO ")
    ws.response = resp  # type: ignore[attr-defined]
    return ws, json.loads(data[5:data.index(b"\r\n")])


async def close_frame(ws: RawWebSocket):
    """Read until the server's close frame (returned) or EOF (None); data frames are skipped."""
    with trio.fail_after(10):
        while True:
            f = await ws.recv_frame()
            if f is None or f.opcode == CLOSE:
                return f


def msg_frames(ws: RawWebSocket) -> list:
    """Frames after INFO, without the server's own keep-alive PINGs (sent after ~2 s)."""
    return [f for f in ws.frames_seen[1:] if f.payload != b"PING\r\n"]


async def tcp_client(port: int, connect: bytes = b'CONNECT {"verbose":false}\r\n') -> trio.SocketStream:
    s = await trio.open_tcp_stream("127.0.0.1", port)
    await s.send_all(connect)
    return s


async def tcp_read_until(s: trio.SocketStream, needle: bytes) -> bytes:
    buf = b""
    with trio.fail_after(10):
        while needle not in buf:
            data = await s.receive_some(65536)
            assert data, f"closed before {needle!r}: {buf!r}"
            buf += data
    return buf


# -- handshake and INFO ---------------------------------------------------------------------
@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts())
async def test_upgrade_response_info_and_ports(edgebus_trio_server):
    srv = edgebus_trio_server
    key = new_key()
    ws = await RawWebSocket.connect("127.0.0.1", srv.ws_port)
    resp = await ws.handshake(upgrade_request(key=key))
    assert resp.status_line == "HTTP/1.1 101 Switching Protocols"
    assert resp.headers == [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                            ("Sec-WebSocket-Accept", accept_key(key))]
    f = await ws.recv_frame()
    # server frames: binary, final, unmasked, never compressed without negotiation
    assert (f.opcode, f.fin, f.masked, f.rsv1) == (BINARY, True, False, False)
    info = json.loads(f.payload[5:f.payload.index(b"\r\n")])
    # INFO describes the WebSocket listener, not the NATS port
    assert info["host"] == "127.0.0.1" and info["port"] == srv.ws_port != srv.port
    assert info["client_ip"] == "127.0.0.1"
    assert "tls_required" not in info and "tls_available" not in info
    assert srv.ports["websocket"] == [f"ws://127.0.0.1:{srv.ws_port}"]
    await ws.aclose()


@pytest.mark.trio
async def test_listening_line_and_no_tls_warning(caplog):
    caplog.set_level("INFO", logger="edgebus")
    opts = Options(port=-1, websocket=WebsocketOptions(port=-1, no_tls=True))
    srv = Server(opts)
    async with trio.open_nursery() as n:
        await n.start(srv.run)
        # default host, as nats-server: every interface
        assert f"Listening for websocket clients on ws://0.0.0.0:{srv.ws_port}" in caplog.text
        assert "Websocket not configured with TLS. DO NOT USE IN PRODUCTION!" in caplog.text
        assert srv.ports["websocket"] == [f"ws://127.0.0.1:{srv.ws_port}"]
        srv.shutdown()


@pytest.mark.trio
@pytest.mark.parametrize("ws, message", [
    (WebsocketOptions(port=-1), "websocket requires TLS configuration"),
    (WebsocketOptions(port=-1, no_tls=True, allowed_origins=["ftp://x.example"]),
     'unable to parse allowed origin "ftp://x.example": allowed origins must be absolute URLs '
     "with http or https scheme"),
    (WebsocketOptions(port=-1, no_tls=True, jwt_cookie="jwt"),
     'trusted operators or trusted keys configuration is required for JWT authentication via '
     'cookie "jwt"'),
])
async def test_startup_refused_with_nats_server_wording(ws, message):
    srv = Server(Options(port=-1, websocket=ws))
    with pytest.raises(BaseExceptionGroup) as ei:
        async with trio.open_nursery() as n:
            await n.start(srv.run)
    assert message in repr(ei.value)


def test_custom_header_names_refused():
    from edgebus.transport.websocket import validate_websocket_options
    wo = WebsocketOptions(port=-1, no_tls=True)
    wo.headers = {"Sec-WebSocket-Foo": "x"}  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match='invalid header "Sec-WebSocket-Foo", "Sec-WebSocket-" prefix'):
        validate_websocket_options(Options(websocket=wo))
    wo.headers = {"Connection": "x"}  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match='websocket: invalid header "Connection" not allowed'):
        validate_websocket_options(Options(websocket=wo))


def _custom_headers_opts() -> WebsocketOptions:
    wo = ws_opts()
    wo.headers = {"X-Served-By": "edgebus"}  # type: ignore[attr-defined]
    return wo


@pytest.mark.trio
@pytest.mark.edgebus(websocket=_custom_headers_opts())
async def test_configured_headers_in_upgrade_response(edgebus_trio_server):
    ws, _ = await opened(edgebus_trio_server.ws_port)
    assert ws.response.header("X-Served-By") == "edgebus"
    await ws.aclose()


# -- NATS over frames -----------------------------------------------------------------------
@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts())
async def test_ops_split_across_frames_both_directions_with_tcp(edgebus_trio_server):
    srv = edgebus_trio_server
    ws, _ = await opened(srv.ws_port)
    # an op split over two binary messages, then a text message holding two ops
    await ws.send_frame(BINARY, b'CONNECT {"verbose":false,"headers":true}\r\nSU')
    await ws.send_frame(TEXT, b"B ws.> 1\r\nPING\r\n")
    await ws.recv_data_until(b"PONG\r\n")
    tcp = await tcp_client(srv.port, b'CONNECT {"verbose":false,"headers":true}\r\n')
    await tcp.send_all(b"PUB ws.hello 5\r\nhello\r\nHPUB ws.h 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
    got = await ws.recv_data_until(b"hi\r\n")
    assert b"MSG ws.hello 1 5\r\nhello\r\n" in got
    assert b"HMSG ws.h 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n" in got
    # the other way: one PUB fragmented over a message and its continuation frames, with a
    # ping (answered with the same payload) between the fragments
    await tcp.send_all(b"SUB back 9\r\nPING\r\n")
    await tcp_read_until(tcp, b"PONG\r\n")
    await ws.send_frame(BINARY, b"PUB ba", fin=False)
    await ws.send_frame(PING, b"between")
    await ws.send_frame(CONT, b"ck 2\r\n", fin=False)
    await ws.send_frame(CONT, b"ok\r\n")
    assert b"MSG back 9 2\r\nok\r\n" in await tcp_read_until(tcp, b"ok\r\n")
    pongs = [f for f in ws.frames_seen if f.opcode == PONG]
    while not pongs:
        f = await ws.recv_frame()
        pongs += [f] if f.opcode == PONG else []
    assert pongs[0].payload == b"between"
    await tcp.aclose()
    await ws.aclose()


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts())
async def test_large_message_through_one_frame_per_flush(edgebus_trio_server):
    srv = edgebus_trio_server
    ws, _ = await opened(srv.ws_port)
    body = bytes(range(256)) * 1000  # 256 KB of binary data, not UTF-8
    await ws.send_frame(BINARY, b'CONNECT {"verbose":false}\r\nSUB big 1\r\nPUB big %d\r\n' % len(body)
                        + body + b"\r\n")
    got = await ws.recv_data_until(body + b"\r\n")
    assert got.endswith(b"MSG big 1 %d\r\n" % len(body) + body + b"\r\n")
    # a non-browser client gets no fragmentation: every data frame is a complete message
    assert all(f.fin and f.opcode == BINARY for f in ws.frames_seen)
    await ws.aclose()


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts())
async def test_browser_frames_are_at_most_4k(edgebus_trio_server):
    ws, _ = await opened(edgebus_trio_server.ws_port, headers=[BROWSER])
    await ws.send_frame(BINARY, b'CONNECT {"verbose":false}\r\nSUB a 1\r\nPUB a 10000\r\n'
                        + b"x" * 10000 + b"\r\n")
    got = await ws.recv_data_until(b"x\r\n")
    assert got == b"MSG a 1 10000\r\n" + b"x" * 10000 + b"\r\n"
    data = msg_frames(ws)
    assert len(data) == 3 and all(len(f.payload) <= 4096 and f.fin and f.opcode == BINARY for f in data)
    await ws.aclose()


# -- close handshake and errors --------------------------------------------------------------
@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts())
async def test_client_close_is_echoed(edgebus_trio_server):
    ws, _ = await opened(edgebus_trio_server.ws_port)
    await ws.send_frame(CLOSE, struct.pack("!H", 1000) + b"bye")
    f = await close_frame(ws)
    assert (f.close_status, f.close_text) == (1000, "bye")
    assert await ws.recv_frame() is None  # and the TCP connection ends
    # a close without status (1005) is answered with an empty close frame
    ws, _ = await opened(edgebus_trio_server.ws_port)
    await ws.send_frame(CLOSE)
    f = await close_frame(ws)
    assert f.payload == b""
    # a close body that is not UTF-8 is answered with 1007
    ws, _ = await opened(edgebus_trio_server.ws_port)
    await ws.send_frame(CLOSE, struct.pack("!H", 1000) + b"\xff\xfe")
    f = await close_frame(ws)
    assert (f.close_status, f.close_text) == (1007, "invalid utf8 body in close frame")


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts())
@pytest.mark.parametrize("frame_kw, message", [
    (dict(opcode=BINARY, payload=b"PING\r\n", mask=False), "mask bit missing"),
    (dict(opcode=BINARY, payload=b"PING\r\n", rsv2=True), "RSV2 and RSV3 must be clear"),
    (dict(opcode=BINARY, payload=b"PING\r\n", rsv1=True),
     "compressed frame received without negotiated permessage-deflate"),
    (dict(opcode=3, payload=b"PING\r\n"), "unknown opcode 3"),
    (dict(opcode=CONT, payload=b"PING\r\n"), "invalid continuation frame"),
    (dict(opcode=PING, payload=b"x" * 126), "control frame length bigger than maximum allowed of 125 bytes"),
    (dict(opcode=PING, payload=b"x", fin=False), "control frame does not have final bit set"),
    (dict(opcode=CLOSE, payload=b"x"), "close frame payload cannot be 1 byte"),
    (dict(opcode=CLOSE, payload=struct.pack("!H", 1005)), "invalid close status code 1005"),
])
async def test_protocol_errors_close_with_1002(edgebus_trio_server, frame_kw, message):
    ws, _ = await opened(edgebus_trio_server.ws_port)
    await ws.send_frame(frame_kw.pop("opcode"), frame_kw.pop("payload"), **frame_kw)
    f = await close_frame(ws)
    assert (f.close_status, f.close_text) == (1002, message)
    assert await ws.recv_frame() is None


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts())
async def test_new_message_before_final_fragment_is_a_protocol_error(edgebus_trio_server):
    ws, _ = await opened(edgebus_trio_server.ws_port)
    await ws.send_frame(TEXT, b"PI", fin=False)
    await ws.send_frame(TEXT, b"NG\r\n")
    f = await close_frame(ws)
    assert (f.close_status, f.close_text) == (
        1002, "new message started before final frame for previous message was received")


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts(), max_payload=1024)
async def test_close_status_follows_close_reason(edgebus_trio_server):
    srv = edgebus_trio_server
    # max payload: the -ERR first, then 1009 with nats-server's reason text
    ws, _ = await opened(srv.ws_port)
    await ws.send_frame(BINARY, b'CONNECT {"verbose":false}\r\nPUB a 2000\r\n')
    f = await close_frame(ws)
    data = b"".join(x.payload for x in ws.frames_seen if x.opcode == BINARY)
    assert b"-ERR 'Maximum Payload Violation'\r\n" in data
    assert (f.close_status, f.close_text) == (1009, "Maximum Message Payload Exceeded")
    # a parser error: 1002 "Protocol Violation" after the -ERR
    ws, _ = await opened(srv.ws_port)
    await ws.send_frame(BINARY, b"FOO\r\n")
    f = await close_frame(ws)
    assert b"-ERR 'Unknown Protocol Operation'" in b"".join(x.payload for x in ws.frames_seen)
    assert (f.close_status, f.close_text) == (1002, "Protocol Violation")


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts())
async def test_server_shutdown_says_going_away(edgebus_trio_server):
    ws, _ = await opened(edgebus_trio_server.ws_port)
    edgebus_trio_server.shutdown()
    f = await close_frame(ws)
    assert (f.close_status, f.close_text) == (1001, "Server Shutdown")


# -- permessage-deflate ---------------------------------------------------------------------
@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts(compression=True))
async def test_compression_negotiated_and_used_both_ways(edgebus_trio_server):
    srv = edgebus_trio_server
    ws, info = await opened(srv.ws_port, headers=[PMD])
    assert ws.response.header("Sec-WebSocket-Extensions") == \
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    assert ws.frames_seen[0].rsv1  # INFO is longer than 64 bytes: compressed
    # a compressed client message, fragmented (RSV1 on the first frame only)
    z = deflate(b'CONNECT {"verbose":false}\r\nSUB z 1\r\nPING\r\n')
    await ws.send_frame(BINARY, z[:4], rsv1=True, fin=False)
    await ws.send_frame(CONT, z[4:])
    await ws.recv_data_until(b"PONG\r\n")
    assert not ws.frames_seen[-1].rsv1  # 6 bytes are not worth compressing
    # plain frames are still accepted on a compressed connection
    big = b"y" * 5000
    await ws.send_frame(BINARY, b"PUB z %d\r\n" % len(big) + big + b"\r\n")
    got = await ws.recv_data_until(big + b"\r\n")
    assert got.endswith(b"MSG z 1 5000\r\n" + big + b"\r\n")
    last = ws.frames_seen[-1]
    assert last.rsv1 and len(last.payload) < 200 and inflate(last.payload).startswith(b"MSG z 1 5000")
    await ws.aclose()


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts(compression=True))
async def test_compression_only_when_offered_and_browser_fragments(edgebus_trio_server):
    port = edgebus_trio_server.ws_port
    ws, _ = await opened(port)
    assert ws.response.header("Sec-WebSocket-Extensions") is None
    assert not ws.frames_seen[0].rsv1
    await ws.aclose()
    # a browser: the compressed message is cut into 4 KiB frames, RSV1 on the first only
    import os
    noise = os.urandom(20000).hex().encode()  # incompressible enough to need several frames
    ws, _ = await opened(port, headers=[PMD, BROWSER])
    await ws.send_frame(BINARY, b'CONNECT {"verbose":false}\r\nSUB a 1\r\nPUB a %d\r\n' % len(noise)
                        + noise + b"\r\n")
    got = await ws.recv_data_until(noise + b"\r\n")
    assert got.endswith(b"MSG a 1 %d\r\n" % len(noise) + noise + b"\r\n")
    msg = msg_frames(ws)
    assert len(msg) > 2 and msg[0].opcode == BINARY and msg[0].rsv1 and not msg[0].fin
    assert all(f.opcode == CONT and not f.rsv1 and len(f.payload) <= 4096 for f in msg[1:])
    assert msg[-1].fin
    await ws.aclose()
    # Safari cannot take fragmented compressed frames: one frame
    ws, _ = await opened(port, headers=[PMD, SAFARI])
    await ws.send_frame(BINARY, b'CONNECT {"verbose":false}\r\nSUB a 1\r\nPUB a %d\r\n' % len(noise)
                        + noise + b"\r\n")
    await ws.recv_data_until(noise + b"\r\n")
    msg = msg_frames(ws)
    assert len(msg) == 1 and msg[0].rsv1 and len(msg[0].payload) > 4096
    await ws.aclose()


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts(compression=True), max_payload=4096)
async def test_inflated_data_beyond_max_payload_closes_1009(edgebus_trio_server):
    ws, _ = await opened(edgebus_trio_server.ws_port, headers=[PMD])
    await ws.send_frame(BINARY, deflate(b"PING\r\n" * 2000), rsv1=True)  # 12 KB from ~60 bytes
    f = await close_frame(ws)
    assert (f.close_status, f.close_text) == (1009, "Maximum Message Payload Exceeded")


# -- HTTP refusals --------------------------------------------------------------------------
@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts())
@pytest.mark.parametrize("request_bytes, status", [
    (upgrade_request(method="POST"), "405 Method Not Allowed"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "400 Bad Request"),
    (upgrade_request().replace(b"Connection: Upgrade", b"Connection: keep-alive"), "400 Bad Request"),
    (upgrade_request().replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"), "400 Bad Request"),
    (upgrade_request(key="c2hvcnQ="), "400 Bad Request"),
    (upgrade_request("/mqtt"), "404 Not Found"),  # MQTT is not enabled
])
async def test_refused_upgrades_answer_like_go_and_keep_the_connection(edgebus_trio_server, request_bytes,
                                                                        status):
    ws = await RawWebSocket.connect("127.0.0.1", edgebus_trio_server.ws_port)
    with trio.fail_after(10):
        resp = await ws.handshake(request_bytes)
        assert resp.status_line == f"HTTP/1.1 {status}"
        names = [k for k, _ in resp.headers]
        assert names == ["Content-Type", "Sec-Websocket-Version", "X-Content-Type-Options", "Date",
                         "Content-Length"]
        assert resp.header("Content-Type") == "text/plain; charset=utf-8"
        assert resp.header("Sec-Websocket-Version") == "13"
        assert resp.body == status.split(" ", 1)[1].encode() + b"\n"
        # Go's server keeps the connection for the next request, which may upgrade
        resp = await ws.handshake(upgrade_request())
        assert resp.status == 101
    await ws.aclose()


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts())
async def test_requests_go_cannot_parse_and_early_data(edgebus_trio_server):
    port = edgebus_trio_server.ws_port
    cases = [
        (b"HELLO\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           b"Connection: close\r\n\r\n400 Bad Request"),
        (upgrade_request().replace(b"Host: 127.0.0.1\r\n", b""),
         b"HTTP/1.1 400 Bad Request: missing required Host header\r\nContent-Type: text/plain; "
         b"charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: missing required Host header"),
        # data before the 101 arrived: nats-server just closes
        (upgrade_request() + b"PING\r\n", b""),
    ]
    for req, expected in cases:
        ws = await RawWebSocket.connect("127.0.0.1", port)
        await ws.send(req)
        with trio.fail_after(10):
            assert await ws.read_rest() == expected
    # HTTP/1.0 without Host reaches the handler, which refuses it; the connection then ends
    ws = await RawWebSocket.connect("127.0.0.1", port)
    req = upgrade_request().replace(b"Host: 127.0.0.1\r\n", b"").replace(b"HTTP/1.1", b"HTTP/1.0")
    resp = await ws.handshake(req)
    assert resp.status_line == "HTTP/1.0 400 Bad Request"
    with trio.fail_after(10):
        assert await ws.read_rest() == b""
    # "Connection: close" is honoured and said in the response
    ws = await RawWebSocket.connect("127.0.0.1", port)
    resp = await ws.handshake(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert resp.status == 400 and resp.header("Connection") == "close"
    with trio.fail_after(10):
        assert await ws.read_rest() == b""


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts(handshake_timeout=0.2))
async def test_handshake_timeout_drops_a_silent_connection(edgebus_trio_server):
    ws = await RawWebSocket.connect("127.0.0.1", edgebus_trio_server.ws_port)
    await ws.send(b"GET / HTTP/1.1\r\n")  # never finished
    with trio.fail_after(10):
        assert await ws.read_rest() == b""


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts(), http_port=-1)
async def test_x_forwarded_for_does_not_replace_the_peer_address(edgebus_trio_server):
    # nats-server only prefixes its log lines with the forwarded address; INFO client_ip and
    # /connz keep the TCP peer
    ws, info = await opened(edgebus_trio_server.ws_port, headers=[("X-Forwarded-For", "10.1.2.3")])
    assert info["client_ip"] == "127.0.0.1"
    conns = [c for c in edgebus_trio_server.connections if c.type == "websocket"]
    assert [c.remote[0] for c in conns] == ["127.0.0.1"]
    await ws.aclose()


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts())
async def test_leafnode_path_without_leafnodes_is_closed_after_upgrade(edgebus_trio_server):
    ws = await RawWebSocket.connect("127.0.0.1", edgebus_trio_server.ws_port)
    resp = await ws.handshake(upgrade_request("/leafnode"))
    assert resp.status == 101
    with trio.fail_after(10):
        assert await ws.recv_frame() is None


# -- TLS ------------------------------------------------------------------------------------
def _self_signed(tmp_path: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


@pytest.mark.trio
async def test_wss_listener(tmp_path):
    import ssl
    cert, key = _self_signed(tmp_path)
    opts = Options(port=-1, websocket=WebsocketOptions(port=-1, host="127.0.0.1",
                                                       tls=TLSOptions(cert_file=cert, key_file=key)))
    srv = Server(opts)
    async with trio.open_nursery() as n:
        await n.start(srv.run)
        assert srv.ports["websocket"] == [f"wss://127.0.0.1:{srv.ws_port}"]
        ctx = ssl.create_default_context(cafile=cert)
        tcp = await trio.open_tcp_stream("127.0.0.1", srv.ws_port)
        tls = trio.SSLStream(tcp, ctx, server_hostname="localhost")
        ws = RawWebSocket(tls)
        with trio.fail_after(10):
            resp = await ws.handshake(upgrade_request(host="localhost"))
            assert resp.status == 101
            data = await ws.recv_data_until(b"\r\n")
        info = json.loads(data[5:data.index(b"\r\n")])
        assert info["tls_required"] is True and info["tls_available"] is True
        await ws.send_frame(BINARY, b'CONNECT {"verbose":false}\r\nPING\r\n')
        await ws.recv_data_until(b"PONG\r\n")
        # and a third-party client over wss
        from trio_websocket import open_websocket_url
        async with open_websocket_url(f"wss://localhost:{srv.ws_port}/", ssl_context=ctx) as tw:
            with trio.fail_after(10):
                assert (await tw.get_message()).startswith(b"INFO ")
        await ws.aclose()
        srv.shutdown()


# -- third-party clients --------------------------------------------------------------------
@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts(allowed_origins=["http://good.example"]))
async def test_trio_websocket_client(edgebus_trio_server):
    from trio_websocket import HandshakeError, open_websocket_url
    url = f"ws://127.0.0.1:{edgebus_trio_server.ws_port}/"
    with pytest.raises(HandshakeError):
        async with open_websocket_url(url, extra_headers=[(b"Origin", b"http://evil.example")]):
            pass
    async with open_websocket_url(url, extra_headers=[(b"Origin", b"http://good.example")]) as ws:
        with trio.fail_after(10):
            assert (await ws.get_message()).startswith(b"INFO ")
            await ws.send_message('CONNECT {"verbose":false}\r\nSUB t 1\r\nPUB t 2\r\nok\r\n')
            buf = b""
            while b"MSG t 1 2\r\nok\r\n" not in buf:
                buf += await ws.get_message()


@pytest.mark.trio
@pytest.mark.edgebus(websocket=ws_opts(compression=True))
async def test_wsproto_client_with_permessage_deflate(edgebus_trio_server):
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, BytesMessage, Request
    from wsproto.extensions import PerMessageDeflate
    stream = await trio.open_tcp_stream("127.0.0.1", edgebus_trio_server.ws_port)
    conn = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(conn.send(Request(host="127.0.0.1", target="/", extensions=[PerMessageDeflate()])))
    got = b""
    accepted = None
    big = b"z" * 100_000
    publish = b'CONNECT {"verbose":false}\r\nSUB big 1\r\nPUB big 100000\r\n' + big + b"\r\n"
    with trio.fail_after(10):
        while b"MSG big 1 100000\r\n" + big not in got:
            data = await stream.receive_some(65536)
            assert data
            conn.receive_data(data)
            for ev in conn.events():
                if isinstance(ev, AcceptConnection):
                    accepted = ev
                    await stream.send_all(conn.send(BytesMessage(data=publish)))
                elif isinstance(ev, BytesMessage):
                    got += ev.data
    assert accepted is not None and [type(e).__name__ for e in accepted.extensions] == ["PerMessageDeflate"]
    await stream.aclose()


@pytest.mark.edgebus(websocket=ws_opts(compression=True))
def test_websockets_library_client(edgebus_server):
    ws_sync = pytest.importorskip("websockets.sync.client")
    port = edgebus_server.call(lambda s: s.ws_port)
    with ws_sync.connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as ws:
        assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        assert ws.recv(timeout=10).startswith(b"INFO ")
        payload = b"w" * 50_000
        ws.send(b'CONNECT {"verbose":false}\r\nSUB q 1\r\nPUB q 50000\r\n' + payload + b"\r\n")
        got = b""
        while not got.endswith(payload + b"\r\n"):
            got += ws.recv(timeout=10)
        assert got == b"MSG q 1 50000\r\n" + payload + b"\r\n"


def test_mqtt_path_upgrade_names_the_subprotocol():
    """With MQTT enabled, `/mqtt` upgrades carry Sec-Websocket-Protocol: mqtt (the MQTT service
    then takes the stream); the check itself needs no running MQTT listener."""
    from edgebus.transport.websocket import (KIND_MQTT, OriginChecker, check_upgrade, parse_request,
                                             upgrade_response)
    head = upgrade_request("/some/prefix/mqtt", key="dGhlIHNhbXBsZSBub25jZQ==")[:-4]
    up = check_upgrade(parse_request(head), compression=False, origins=OriginChecker(False, []),
                       secure=False, mqtt_enabled=True)
    assert up.kind == KIND_MQTT
    assert upgrade_response(up) == (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    b"Connection: Upgrade\r\n"
                                    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                    b"Sec-Websocket-Protocol: mqtt\r\n\r\n")



@pytest.mark.trio
@pytest.mark.edgebus(ping_interval=3600.0, websocket=ws_opts(ping_interval=5.0))
async def test_websocket_ping_interval_overrides_server(edgebus_trio_server, autojump_clock):
    """websocket { ping_interval } applies to WebSocket clients: with a 5 s interval and
    ping_max 2 a silent client is stale after about 15 s of (virtual) time, not hours."""
    ws, _ = await opened(edgebus_trio_server.ws_port)
    await ws.send_frame(BINARY, b'CONNECT {"verbose":false}\r\n')
    start = trio.current_time()
    got = await ws.recv_data_until(b"Stale Connection", timeout=600)
    assert got.count(b"PING\r\n") == 2
    assert trio.current_time() - start < 60
    await ws.aclose()
