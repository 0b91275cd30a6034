"""The sans-IO WebSocket codec (`codec/websocket.py`): HTTP upgrade heads and RFC 6455 frames,
each fed whole, byte by byte and followed by trailing data (as h11 tests its parser), plus the
client side the leaf remote uses, checked against the server side."""

from __future__ import annotations

import struct
from typing import Any, Callable

import pytest

from edgebus.codec import websocket as ws

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example
REQUEST = (b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n"
           b"Origin: http://example.com\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")


def chunkings(data: bytes) -> dict[str, list[bytes]]:
    return {"whole": [data], "bytewise": [data[i:i + 1] for i in range(len(data))],
            "halves": [data[:len(data) // 2], data[len(data) // 2:]]}


def feed_heads(reader: ws.HeadReader, chunks: list[bytes]) -> list[bytes]:
    heads = []
    for c in chunks:
        h = reader.feed(c)
        while h is not None:
            heads.append(h)
            h = reader.next_head()
    return heads


# -- upgrade heads ----------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["whole", "bytewise", "halves"])
def test_request_head_however_it_arrives(how: str) -> None:
    first_frame = ws.client_frame(ws.OP_BINARY, b"CONNECT {}\r\n")
    reader = ws.HeadReader()
    heads = feed_heads(reader, chunkings(REQUEST + first_frame)[how])
    assert len(heads) == 1
    assert reader.trailing == first_frame  # what followed the head is kept, untouched
    req = ws.parse_request(heads[0])
    assert (req.method, req.target, req.version, req.path) == ("GET", "/chat", "HTTP/1.1", "/chat")
    assert req.get("sec-websocket-key") == KEY and req.keep_alive
    up = ws.check_upgrade(req, compression=True, origins=ws.OriginChecker(False, []),
                          secure=False, mqtt_enabled=False)
    assert (up.kind, up.compress, up.no_masking) == (ws.KIND_CLIENT, True, False)
    resp = ws.upgrade_response(up)
    assert resp.startswith(b"HTTP/1.1 101 Switching Protocols\r\n") and resp.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in resp
    assert b"Sec-WebSocket-Extensions: " + ws.PMC_RESPONSE.encode() in resp


def test_two_requests_on_one_connection_and_a_partial_third() -> None:
    bad = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    reader = ws.HeadReader()
    heads = feed_heads(reader, [bad + REQUEST + b"GET /x HT"])
    assert [ws.parse_request(h).target for h in heads] == ["/", "/chat"]
    assert reader.trailing == b"GET /x HT"
    with pytest.raises(ws.HandshakeRefused) as ei:
        ws.check_upgrade(ws.parse_request(heads[0]), compression=False,
                         origins=ws.OriginChecker(False, []), secure=False, mqtt_enabled=False)
    assert (ei.value.status, ei.value.reason) == (400, "invalid value for header 'Upgrade'")


def test_head_too_large_and_malformed_requests() -> None:
    reader = ws.HeadReader(limit=64)
    with pytest.raises(ws.BadRequest) as ei:
        for b in chunkings(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 100)["bytewise"]:
            reader.feed(b)
    assert ei.value.status == 431
    for head, detail in ((b"GET / HTTP/1.1", "missing required Host header"),
                         (b"GET / HTTP/2.0\r\nHost: h", "unsupported protocol version"),
                         (b"GET / HTTP/1.1\r\nno colon", "malformed MIME header line")):
        with pytest.raises(ws.BadRequest) as ei:
            ws.parse_request(head)
        assert ei.value.detail == detail


# -- frames -----------------------------------------------------------------------------------
def read_all(reader: ws.FrameReader, chunks: list[bytes]) -> tuple[bytes, list[Any]]:
    data, controls = b"", []
    for c in chunks:
        for it in reader.feed(c):
            if isinstance(it, tuple):
                controls.append(it)
            else:
                data += it
    return data, controls


@pytest.mark.parametrize("how", ["whole", "bytewise", "halves"])
def test_masked_client_frames(how: str) -> None:
    big = bytes(range(256)) * 300  # 76,800 bytes: the 64-bit length form
    stream = (ws.client_frame(ws.OP_BINARY, b"PUB a 2\r\nhi\r\n")
              + ws.client_frame(ws.OP_PING, b"p1")
              + ws.client_frame(ws.OP_BINARY, b"x" * 300)    # 16-bit length
              + ws.client_frame(ws.OP_BINARY, big))
    # a message in fragments: TEXT (not final) then CONT (final)
    frag = bytearray(ws.client_frame(ws.OP_TEXT, b"frag-"))
    frag[0] &= 0x7F
    stream += bytes(frag) + ws.client_frame(ws.OP_CONT, b"ment")
    trailing = ws.client_frame(ws.OP_BINARY, b"next")[:5]  # the start of a frame to come
    data, controls = read_all(ws.FrameReader(), chunkings(stream + trailing)[how])
    assert data == b"PUB a 2\r\nhi\r\n" + b"x" * 300 + big + b"frag-ment"
    assert controls == [("ping", b"p1")]


@pytest.mark.parametrize("how", ["whole", "bytewise", "halves"])
@pytest.mark.parametrize("browser", [False, True])
def test_server_frames_round_trip_with_deflate(how: str, browser: bool) -> None:
    msgs = [b"MSG a 1 2\r\nhi\r\n", b"INFO " + b"{}" * 5000 + b"\r\n", b"+OK\r\n"]
    w = ws.FrameWriter(compress=True, browser=browser)
    wire = b"".join(w.encode(m) for m in msgs)
    reader = ws.FrameReader(mask_required=False, compression=True)
    data, _ = read_all(reader, chunkings(wire)[how])
    assert data == b"".join(msgs)


def test_close_frames_end_the_reader() -> None:
    reader = ws.FrameReader()
    wire = ws.client_frame(ws.OP_BINARY, b"last") + ws.client_frame(ws.OP_CLOSE, ws.close_payload(1000, "bye"))
    with pytest.raises(ws.WsClose) as ei:
        reader.feed(wire)
    assert reader.pending == [b"last"]  # what came before the close is kept
    assert ei.value.payload == struct.pack("!H", 1000) + b"bye"   # echoed back
    assert ws.close_payload(1000, "x" * 200).endswith(b"...")
    assert len(ws.close_payload(1000, "x" * 200)) == ws.MAX_CONTROL_PAYLOAD


@pytest.mark.parametrize("wire, message", [
    (ws.encode_frame(ws.OP_BINARY, b"unmasked"), "mask bit missing"),
    (ws.client_frame(ws.OP_PING, b"p" * 126), "control frame length bigger than maximum allowed of 125 bytes"),
    (ws.client_frame(ws.OP_CONT, b"x"), "invalid continuation frame"),
    (ws.client_frame(3, b"x"), "unknown opcode 3"),
])
def test_protocol_errors_close_with_1002(wire: bytes, message: str) -> None:
    for how, chunks in chunkings(wire).items():
        reader = ws.FrameReader()
        with pytest.raises(ws.WsClose) as ei:
            for c in chunks:
                reader.feed(c)
        assert ei.value.payload == ws.close_payload(1002, message), how


# -- the client side (leaf remotes) -----------------------------------------------------------
@pytest.mark.parametrize("no_masking", [False, True])
def test_client_handshake_against_the_server_side(no_masking: bool) -> None:
    key = ws.new_client_key()
    req_bytes = ws.client_request("hub:7422", "/leafnode", key, no_masking=no_masking)
    (head,) = feed_heads(ws.HeadReader(), [req_bytes])
    up = ws.check_upgrade(ws.parse_request(head), compression=False,
                          origins=ws.OriginChecker(False, []), secure=False, mqtt_enabled=False)
    assert up.kind == ws.KIND_LEAF and up.no_masking == no_masking
    answer = ws.HeadReader(limit=65536)
    first = ws.encode_frame(ws.OP_BINARY, b"INFO {}\r\n")
    (ahead,) = feed_heads(answer, chunkings(ws.upgrade_response(up) + first)["bytewise"])
    assert answer.trailing == first
    assert ws.check_client_answer(ahead, key, no_masking=no_masking) is (not no_masking)
    with pytest.raises(ws.ClientHandshakeError):
        ws.check_client_answer(ahead, ws.new_client_key(), no_masking=no_masking)


def test_client_frames_are_masked_unless_told() -> None:
    f: Callable[..., bytes] = ws.client_frame
    assert f(ws.OP_BINARY, b"abc", False) == b"\x82\x03abc"
    masked = f(ws.OP_BINARY, b"abc")
    assert masked[1] == 0x83 and masked[6:] == ws.mask(b"abc", masked[2:6])
    assert ws.FrameReader().feed(masked) == [b"abc"]
