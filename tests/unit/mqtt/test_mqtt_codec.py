"""Tests for the sans-IO MQTT 3.1.1 codec (edgebus.codec.mqtt).

In the h11 habit every well-formed input is fed whole, one byte at a time
and followed by the start of another packet; malformed input must raise
MQTTProtocolError (and nothing else) however it is chunked.
"""

from __future__ import annotations

import pathlib
import random
import socket
import threading
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebus.codec import mqtt
from edgebus.codec.mqtt import (
    MAX_REMAINING_LENGTH,
    SUBACK_FAILURE,
    ConnAck,
    Connect,
    ConnackCode,
    Disconnect,
    MQTTParser,
    MQTTProtocolError,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    Publish,
    Role,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    Will,
    encode,
)

TRANSCRIPTS = pathlib.Path(__file__).resolve().parents[3] / "protocols" / "mqtt"
CONNECT = Connect("t1")
CONNECT_BYTES = encode(CONNECT)
CONNACK_BYTES = mqtt.connack(False, 0)


def new_parser(role: Role = Role.SERVER, *, connected: bool = True, **kwargs: object) -> MQTTParser:
    parser = MQTTParser(our_role=role, **kwargs)  # type: ignore[arg-type]
    if connected:
        handshake = CONNECT_BYTES if role is Role.SERVER else CONNACK_BYTES
        assert len(parser.feed(handshake)) == 1
        assert parser.connected
    return parser


def feed_chunks(parser: MQTTParser, chunks: Sequence[bytes]) -> list[Packet]:
    events: list[Packet] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def parse_every_way(data: bytes, make: Callable[[], MQTTParser], trailer: bytes) -> list[Packet]:
    """Parse ``data`` whole, byte by byte and with ``trailer`` (an incomplete
    packet) appended; all three must agree.  Returns the packets."""
    whole = make().feed(data)
    assert feed_chunks(make(), bytewise(data)) == whole
    parser = make()
    assert parser.feed(data + trailer) == whole
    if not parser.disconnected:
        assert parser.pending == len(trailer)
    return whole


# --------------------------------------------------------------------------
# Round trips: encode() then parse, for every packet type.
# --------------------------------------------------------------------------

CONNECTS = [
    Connect("c"),
    Connect("", clean_session=True),
    Connect("dev-1", clean_session=False, keepalive=65535),
    Connect("w0", will=Will("dead/w0", b"", 0, False)),
    Connect("w1", will=Will("dead/w1", b"bye", 1, True)),
    Connect("w2", keepalive=5, will=Will("dead/ü", b"\x00\xff", 2, False)),
    Connect("u", username="user"),
    Connect("up", username="user", password=b"\xff\x00secret"),
    Connect("up0", username="ü", password=b""),
    Connect(
        "all-" + "x" * 300,
        clean_session=False,
        keepalive=60,
        will=Will("w/" + "t" * 200, b"m" * 65535, 1, True),
        username="n" * 1000,
        password=b"p" * 65535,
    ),
]

SERVER_BOUND = [
    Publish("a/b", b"hello"),
    Publish("a/b", b"", qos=1, packet_id=1),
    Publish("x", b"\x00" * 200, qos=2, retain=True, dup=True, packet_id=65535),
    Publish("ünï/cødé", b"p", retain=True),
    Publish("/", b"x"),
    Publish("t", bytes(20_000)),
    Publish("big", bytes(2_097_152), qos=1, packet_id=9),  # 4-byte remaining length
    Publish("$SYS/x", b"", dup=True),
    PubAck(1),
    PubRec(2),
    PubRel(3),
    PubComp(65535),
    Subscribe(1, [("a/+/c", 0), ("#", 1), ("$SYS/#", 2)]),
    Subscribe(65535, [("x" * 65535, 0)]),
    Unsubscribe(7, ["a", "b/#"]),
    PingReq(),
    Disconnect(),
]

CLIENT_BOUND = [
    Publish("a", b"x", qos=1, packet_id=4),
    PubAck(1),
    PubRec(2),
    PubRel(3),
    PubComp(4),
    SubAck(1, [0, 1, 2, SUBACK_FAILURE]),
    SubAck(2, [SUBACK_FAILURE]),
    UnsubAck(3),
    PingResp(),
]


def _short(packet: Packet) -> str:
    text = repr(packet)
    return text if len(text) < 60 else text[:57] + "..."


@pytest.mark.parametrize("packet", CONNECTS, ids=_short)
def test_connect_round_trip(packet: Connect) -> None:
    data = encode(packet)
    got = parse_every_way(data, lambda: MQTTParser(), trailer=b"\xc0")
    assert got == [packet]


@pytest.mark.parametrize("packet", SERVER_BOUND, ids=_short)
def test_client_to_server_round_trip(packet: Packet) -> None:
    data = encode(packet)
    got = parse_every_way(data, new_parser, trailer=b"\x30\x05\x00")
    assert got == [packet]


@pytest.mark.parametrize("packet", CLIENT_BOUND, ids=_short)
def test_server_to_client_round_trip(packet: Packet) -> None:
    data = encode(packet)
    got = parse_every_way(data, lambda: new_parser(Role.CLIENT), trailer=b"\xd0")
    assert got == [packet]


@pytest.mark.parametrize(
    "packet",
    [ConnAck(False, 0), ConnAck(True, 0), ConnAck(False, 5), ConnAck(False, ConnackCode.QOS2_WILL_REJECTED)],
    ids=_short,
)
def test_connack_round_trip(packet: ConnAck) -> None:
    got = parse_every_way(encode(packet), lambda: MQTTParser(our_role=Role.CLIENT), trailer=b"\xd0")
    assert got == [packet]


def test_many_packets_in_one_feed_and_in_random_chunks() -> None:
    packets: list[Packet] = []
    for i in range(1, 1001):
        packets.append(Publish(f"t/{i}", str(i).encode() * (i % 50), qos=i % 3, packet_id=i if i % 3 else None))
        packets.append(PubAck(i))
    data = b"".join(encode(p) for p in packets)
    assert new_parser().feed(data) == packets
    rng = random.Random(1234)
    cuts = sorted(rng.sample(range(1, len(data)), 3000))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    assert feed_chunks(new_parser(), chunks) == packets


def test_large_packet_in_many_chunks_is_assembled_once() -> None:
    packet = Publish("bulk", bytes(range(256)) * 4096, qos=1, packet_id=3)  # 1 MiB
    data = encode(packet)
    parser = new_parser()
    results = [parser.feed(data[i : i + 4096]) for i in range(0, len(data), 4096)]
    assert all(r == [] for r in results[:-1])
    assert results[-1] == [packet]
    assert parser.pending == 0


def test_feed_accepts_bytearray_and_memoryview() -> None:
    data = encode(Publish("a", b"b"))
    assert new_parser().feed(bytearray(data)) == [Publish("a", b"b")]
    assert new_parser().feed(memoryview(data)) == [Publish("a", b"b")]
    parser = new_parser()
    assert parser.feed(memoryview(data)[:3]) == []
    assert parser.feed(memoryview(data)[3:]) == [Publish("a", b"b")]


def test_payload_is_bytes_not_a_view() -> None:
    parser = new_parser()
    parser.feed(b"\x30\x04\x00\x01a")
    [packet] = parser.feed(b"x")
    assert type(packet.payload) is bytes and packet.payload == b"x"


# --------------------------------------------------------------------------
# Serializers: exact bytes (from the spec's layouts) and argument checks.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("produced", "expected"),
    [
        (mqtt.connack(False, 0), "20 02 00 00"),
        (mqtt.connack(True, 0), "20 02 01 00"),
        (mqtt.connack(True, 1), "20 02 00 01"),  # [MQTT-3.2.2-4]: no session-present on refusal
        (mqtt.connack(False, ConnackCode.QOS2_WILL_REJECTED), "20 02 00 10"),
        (mqtt.puback(0x1234), "40 02 12 34"),
        (mqtt.pubrec(1), "50 02 00 01"),
        (mqtt.pubrel(1), "62 02 00 01"),
        (mqtt.pubcomp(65535), "70 02 ff ff"),
        (mqtt.suback(10, [0, 1, 2, 0x80]), "90 06 00 0a 00 01 02 80"),
        (mqtt.unsuback(5), "b0 02 00 05"),
        (mqtt.pingresp(), "d0 00"),
        (mqtt.pingreq(), "c0 00"),
        (mqtt.disconnect(), "e0 00"),
        (mqtt.publish("a/b", b"hi"), "30 07 00 03 61 2f 62 68 69"),
        (mqtt.publish("a/b", b"hi", qos=1, packet_id=10), "32 09 00 03 61 2f 62 00 0a 68 69"),
        (mqtt.publish("a", b"", qos=2, retain=True, dup=True, packet_id=1), "3d 05 00 01 61 00 01"),
        (mqtt.publish(b"a", b"", retain=True), "31 03 00 01 61"),
        (mqtt.publish_header("a", 1000), "30 eb 07 00 01 61"),
        (mqtt.subscribe(1, [("a", 1)]), "82 06 00 01 00 01 61 01"),
        (mqtt.unsubscribe(2, ["a"]), "a2 05 00 02 00 01 61"),
        (mqtt.connect("c", keepalive=60), "10 0d 00 04 4d 51 54 54 04 02 00 3c 00 01 63"),
    ],
)
def test_serializer_bytes(produced: bytes, expected: str) -> None:
    assert produced == bytes.fromhex(expected)


@pytest.mark.parametrize(
    ("remaining", "encoded"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "80 01"),
        (16_383, "ff 7f"),
        (16_384, "80 80 01"),
        (2_097_151, "ff ff 7f"),
        (2_097_152, "80 80 80 01"),
        (MAX_REMAINING_LENGTH, "ff ff ff 7f"),
    ],
)
def test_remaining_length_encoding(remaining: int, encoded: str) -> None:
    # Topic "" is never valid on the wire, but lets the length be exact.
    header = mqtt.publish_header(b"", remaining - 2)
    assert header == b"\x30" + bytes.fromhex(encoded) + b"\x00\x00"


@pytest.mark.parametrize(
    "call",
    [
        lambda: mqtt.publish("a", b"", qos=3),
        lambda: mqtt.publish("a", b"", qos=1),
        lambda: mqtt.publish("a", b"", qos=1, packet_id=0),
        lambda: mqtt.publish("a", b"", qos=2, packet_id=65536),
        lambda: mqtt.publish("a", b"", qos=0, packet_id=1),
        lambda: mqtt.publish("t" * 65536, b""),
        lambda: mqtt.publish_header("a", MAX_REMAINING_LENGTH),
        lambda: mqtt.puback(0),
        lambda: mqtt.pubrel(65536),
        lambda: mqtt.suback(1, []),
        lambda: mqtt.suback(1, [3]),
        lambda: mqtt.suback(0, [0]),
        lambda: mqtt.unsuback(0),
        lambda: mqtt.connack(False, 256),
        lambda: mqtt.subscribe(1, []),
        lambda: mqtt.subscribe(1, [("a", 3)]),
        lambda: mqtt.unsubscribe(1, []),
        lambda: mqtt.connect("c", keepalive=70_000),
        lambda: mqtt.connect("c", will=Will("w", b"", 3)),
    ],
)
def test_serializer_rejects_bad_arguments(call: Callable[[], bytes]) -> None:
    with pytest.raises(ValueError):
        call()


def test_encode_rejects_non_packets() -> None:
    with pytest.raises(TypeError):
        encode("PINGREQ")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Parser state: CONNECT/CONNACK gate, DISCONNECT, failures, size guard.
# --------------------------------------------------------------------------


def test_connected_flag_and_second_connect() -> None:
    parser = MQTTParser()
    assert not parser.connected
    assert parser.feed(CONNECT_BYTES) == [CONNECT]
    assert parser.connected
    with pytest.raises(MQTTProtocolError, match="second CONNECT") as info:
        parser.feed(CONNECT_BYTES)
    assert info.value.connack_rc is None


def test_disconnect_stops_parsing() -> None:
    parser = new_parser()
    assert parser.feed(encode(PingReq()) + encode(Disconnect()) + b"\xff\xff garbage") == [
        PingReq(),
        Disconnect(),
    ]
    assert parser.disconnected
    assert parser.pending == 0
    assert parser.feed(b"\x00 more garbage") == []


def test_error_carries_packets_decoded_before_it() -> None:
    parser = new_parser()
    good = [Publish("a", b"1"), PubAck(5)]
    data = b"".join(encode(p) for p in good) + b"\x40\x02\x00\x00"  # PUBACK pid 0
    with pytest.raises(MQTTProtocolError, match="packet identifier cannot be 0") as info:
        parser.feed(data)
    assert info.value.events == good


def test_parser_stays_failed() -> None:
    parser = new_parser()
    with pytest.raises(MQTTProtocolError):
        parser.feed(b"\x00\x00")
    with pytest.raises(MQTTProtocolError, match="already failed"):
        parser.feed(encode(PingReq()))
    assert parser.pending == 0


def test_max_packet_size_counts_the_whole_packet() -> None:
    packet = encode(Publish("a", bytes(95)))  # 2 + 3 + 95 = 100 bytes
    assert len(packet) == 100
    assert new_parser(max_packet_size=100).feed(packet) == [Publish("a", bytes(95))]
    with pytest.raises(MQTTProtocolError, match="maximum packet size"):
        new_parser(max_packet_size=99).feed(packet)


def test_max_packet_size_fires_before_the_body_arrives() -> None:
    parser = new_parser(max_packet_size=1000)
    with pytest.raises(MQTTProtocolError, match="maximum packet size"):
        parser.feed(b"\x30\x80\x80\x01")  # announces 16384 bytes


def test_max_packet_size_applies_to_connect_and_can_change() -> None:
    with pytest.raises(MQTTProtocolError, match="maximum packet size"):
        MQTTParser(max_packet_size=10).feed(CONNECT_BYTES)
    parser = MQTTParser(max_packet_size=len(CONNECT_BYTES))
    parser.feed(CONNECT_BYTES)
    parser.max_packet_size = None  # e.g. lifted once connected, as nats-server does
    assert parser.feed(encode(Publish("a", bytes(5000)))) == [Publish("a", bytes(5000))]


def test_longest_remaining_length_waits_for_data() -> None:
    parser = new_parser()
    assert parser.feed(b"\x30\xff\xff\xff\x7f") == []
    assert parser.pending == 5


def test_client_role_gate() -> None:
    parser = MQTTParser(our_role=Role.CLIENT)
    with pytest.raises(MQTTProtocolError, match="first packet should be a CONNACK"):
        parser.feed(encode(PingResp()))
    parser = new_parser(Role.CLIENT)
    with pytest.raises(MQTTProtocolError, match="second CONNACK"):
        parser.feed(CONNACK_BYTES)


# Malformed input: (id, role, connected first?, bytes, message part, connack rc).
S, C = Role.SERVER, Role.CLIENT


def _c(body: bytes) -> bytes:
    """CONNECT packet around a hand-made body."""
    return b"\x10" + bytes([len(body)]) + body


def _hdr(level: int = 4, flags: int = 2, name: bytes = b"MQTT") -> bytes:
    return len(name).to_bytes(2, "big") + name + bytes([level, flags]) + b"\x00\x3c"


def _s(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


BAD_INPUT = [
    # --- CONNECT ---
    ("first-not-connect", S, False, b"\x30\x03\x00\x01a", "first packet should be a CONNECT", None),
    ("http-get", S, False, b"GET / HTTP/1.1\r\n", "Websocket port", None),
    ("proto-name", S, False, _c(_hdr(name=b"MQTX") + _s(b"c")), "protocol name", None),
    ("proto-empty", S, False, _c(_hdr(name=b"") + _s(b"c")), "protocol name", None),
    ("mqisdp", S, False, _c(_hdr(level=3, name=b"MQIsdp") + _s(b"c")), "older protocol", None),
    ("level-3", S, False, _c(_hdr(level=3) + _s(b"c")), "unacceptable protocol version", 1),
    ("level-5", S, False, _c(_hdr(level=5) + _s(b"c")), "unacceptable protocol version", 1),
    ("reserved-flag", S, False, _c(_hdr(flags=0x03) + _s(b"c")), "reserved bit", None),
    ("will-qos-no-will", S, False, _c(_hdr(flags=0x12) + _s(b"c")), "Will QoS must be 0", None),
    ("will-retain-no-will", S, False, _c(_hdr(flags=0x22) + _s(b"c")), "Will Retain", None),
    ("will-qos3", S, False, _c(_hdr(flags=0x1E) + _s(b"c") + _s(b"w") + _s(b"m")), "got 3", None),
    ("pass-no-user", S, False, _c(_hdr(flags=0x42) + _s(b"c") + _s(b"p")), "password flag", None),
    ("cid-empty-not-clean", S, False, _c(_hdr(flags=0) + _s(b"")), "clean session flag", 2),
    ("cid-bad-utf8", S, False, _c(_hdr() + _s(b"\xc3\x28")), "invalid utf8 for client ID", 2),
    ("cid-surrogate", S, False, _c(_hdr() + _s(b"\xed\xa0\x80")), "invalid utf8", 2),
    ("cid-nul", S, False, _c(_hdr() + _s(b"a\x00")), "null character", 2),
    ("cid-dot", S, False, _c(_hdr() + _s(b"a.b")), "invalid character in client ID", 2),
    ("cid-star", S, False, _c(_hdr() + _s(b"a*")), "invalid character in client ID", 2),
    ("cid-gt", S, False, _c(_hdr() + _s(b">")), "invalid character in client ID", 2),
    ("cid-space", S, False, _c(_hdr() + _s(b"a b")), "invalid character in client ID", 2),
    ("cid-tab", S, False, _c(_hdr() + _s(b"a\tb")), "invalid character in client ID", 2),
    ("will-topic-empty", S, False, _c(_hdr(flags=6) + _s(b"c") + _s(b"") + _s(b"m")), "empty Will topic", None),
    ("will-topic-utf8", S, False, _c(_hdr(flags=6) + _s(b"c") + _s(b"\xff") + _s(b"m")), "Will topic", None),
    ("will-topic-nul", S, False, _c(_hdr(flags=6) + _s(b"c") + _s(b"a\x00") + _s(b"m")), "null", None),
    ("will-topic-plus", S, False, _c(_hdr(flags=6) + _s(b"c") + _s(b"a/+") + _s(b"m")), "wildcards", None),
    ("will-missing-msg", S, False, _c(_hdr(flags=6) + _s(b"c") + _s(b"w")), "malformed CONNECT", None),
    ("user-empty", S, False, _c(_hdr(flags=0x82) + _s(b"c") + _s(b"")), "empty user name", 4),
    ("user-bad-utf8", S, False, _c(_hdr(flags=0x82) + _s(b"c") + _s(b"\xff")), "user name", 4),
    ("user-nul", S, False, _c(_hdr(flags=0x82) + _s(b"c") + _s(b"\x00")), "user name", 4),
    ("password-missing", S, False, _c(_hdr(flags=0xC2) + _s(b"c") + _s(b"u")), "malformed CONNECT", None),
    ("connect-truncated", S, False, _c(_hdr()[:-1]), "malformed CONNECT", None),
    ("connect-cid-overrun", S, False, _c(_hdr() + b"\x00\x09ab"), "malformed CONNECT", None),
    ("connect-trailing", S, False, _c(_hdr() + _s(b"c") + b"\x00"), "trailing bytes", None),
    ("connect-flags", S, False, b"\x12" + CONNECT_BYTES[1:], "fixed header flags", None),
    ("second-connect", S, True, CONNECT_BYTES, "second CONNECT", None),
    # --- fixed header ---
    ("varint-5-bytes", S, True, b"\x30\x80\x80\x80\x80\x01", "malformed variable int", None),
    ("type-0", S, True, b"\x00\x00", "unknown packet type 0", None),
    ("type-15", S, True, b"\xf0\x00", "unknown packet type 15", None),
    ("connack-to-server", S, True, b"\x20\x02\x00\x00", "unknown packet type 2", None),
    ("suback-to-server", S, True, b"\x90\x03\x00\x01\x00", "unknown packet type 9", None),
    ("unsuback-to-server", S, True, b"\xb0\x02\x00\x01", "unknown packet type 11", None),
    ("pingresp-to-server", S, True, b"\xd0\x00", "unknown packet type 13", None),
    ("puback-flags", S, True, b"\x41\x02\x00\x01", "fixed header flags", None),
    ("pubrel-flags-0", S, True, b"\x60\x02\x00\x01", "fixed header flags", None),
    ("pubcomp-flags", S, True, b"\x72\x02\x00\x01", "fixed header flags", None),
    ("subscribe-flags-0", S, True, b"\x80\x06\x00\x01\x00\x01a\x00", "fixed header flags", None),
    ("subscribe-flags-3", S, True, b"\x83\x06\x00\x01\x00\x01a\x00", "fixed header flags", None),
    ("unsubscribe-flags", S, True, b"\xa0\x05\x00\x01\x00\x01a", "fixed header flags", None),
    ("pingreq-flags", S, True, b"\xc1\x00", "fixed header flags", None),
    ("disconnect-flags", S, True, b"\xe2\x00", "fixed header flags", None),
    ("puback-len-3", S, True, b"\x40\x03\x00\x01\x00", "remaining length 3", None),
    ("pubrec-len-1", S, True, b"\x50\x01\x00", "remaining length 1", None),
    ("pingreq-len-1", S, True, b"\xc0\x01\x00", "remaining length 1", None),
    ("disconnect-len-2", S, True, b"\xe0\x02\x00\x00", "remaining length 2", None),
    # --- PUBLISH ---
    ("publish-qos3", S, True, b"\x36\x05\x00\x01a\x00\x01", "QoS=3", None),
    ("publish-pid-0", S, True, b"\x32\x05\x00\x01a\x00\x00", "packet identifier cannot be 0", None),
    ("publish-no-pid", S, True, b"\x32\x03\x00\x01a", "malformed PUBLISH", None),
    ("publish-empty-topic", S, True, b"\x30\x02\x00\x00", "topic cannot be empty", None),
    ("publish-topic-overrun", S, True, b"\x30\x03\x00\x05a", "malformed PUBLISH", None),
    ("publish-no-topic", S, True, b"\x30\x01\x00", "malformed PUBLISH", None),
    ("publish-topic-utf8", S, True, b"\x30\x04\x00\x02\xc3\x28", "invalid utf8 for topic", None),
    ("publish-topic-nul", S, True, b"\x30\x04\x00\x02a\x00", "null character", None),
    ("publish-topic-nul-utf8", S, True, b"\x30\x05\x00\x03\xc3\xa9\x00", "null character", None),
    ("publish-topic-hash", S, True, b"\x30\x04\x00\x02a#", "wildcards", None),
    ("publish-topic-plus", S, True, b"\x30\x05\x00\x03+/a", "wildcards", None),
    # --- acks ---
    ("puback-pid-0", S, True, b"\x40\x02\x00\x00", "packet identifier cannot be 0", None),
    ("pubrel-pid-0", S, True, b"\x62\x02\x00\x00", "packet identifier cannot be 0", None),
    # --- SUBSCRIBE / UNSUBSCRIBE ---
    ("subscribe-pid-0", S, True, b"\x82\x06\x00\x00\x00\x01a\x00", "packet identifier cannot be 0", None),
    ("subscribe-no-filter", S, True, b"\x82\x02\x00\x01", "at least 1 topic filter", None),
    ("subscribe-short", S, True, b"\x82\x01\x00", "malformed SUBSCRIBE", None),
    ("subscribe-empty-filter", S, True, b"\x82\x05\x00\x01\x00\x00\x00", "filter cannot be empty", None),
    ("subscribe-no-qos", S, True, b"\x82\x05\x00\x01\x00\x01a", "malformed SUBSCRIBE", None),
    ("subscribe-qos-3", S, True, b"\x82\x06\x00\x01\x00\x01a\x03", "got 3", None),
    ("subscribe-qos-reserved", S, True, b"\x82\x06\x00\x01\x00\x01a\x04", "got 4", None),
    ("subscribe-filter-utf8", S, True, b"\x82\x06\x00\x01\x00\x01\xff\x00", "invalid utf8", None),
    ("subscribe-filter-nul", S, True, b"\x82\x06\x00\x01\x00\x01\x00\x00", "null character", None),
    ("subscribe-2nd-bad", S, True, b"\x82\x09\x00\x01\x00\x01a\x00\x00\x01b", "malformed SUBSCRIBE", None),
    ("unsubscribe-pid-0", S, True, b"\xa2\x05\x00\x00\x00\x01a", "packet identifier cannot be 0", None),
    ("unsubscribe-no-filter", S, True, b"\xa2\x02\x00\x01", "at least 1 topic filter", None),
    ("unsubscribe-empty", S, True, b"\xa2\x04\x00\x01\x00\x00", "filter cannot be empty", None),
    ("unsubscribe-overrun", S, True, b"\xa2\x05\x00\x01\x00\x02a", "malformed UNSUBSCRIBE", None),
    # --- client role ---
    ("c-first-not-connack", C, False, b"\x30\x03\x00\x01a", "first packet should be a CONNACK", None),
    ("c-connack-ack-flags", C, False, b"\x20\x02\x02\x00", "acknowledge flags", None),
    ("c-connack-flags", C, False, b"\x21\x02\x00\x00", "fixed header flags", None),
    ("c-connack-len", C, False, b"\x20\x03\x00\x00\x00", "remaining length 3", None),
    ("c-connect-to-client", C, True, CONNECT_BYTES, "unknown packet type 1", None),
    ("c-subscribe-to-client", C, True, b"\x82\x06\x00\x01\x00\x01a\x00", "unknown packet type 8", None),
    ("c-pingreq-to-client", C, True, b"\xc0\x00", "unknown packet type 12", None),
    ("c-suback-code", C, True, b"\x90\x03\x00\x01\x03", "SUBACK return code", None),
    ("c-suback-empty", C, True, b"\x90\x02\x00\x01", "at least 1 return code", None),
    ("c-suback-pid-0", C, True, b"\x90\x03\x00\x00\x00", "packet identifier cannot be 0", None),
    ("c-unsuback-pid-0", C, True, b"\xb0\x02\x00\x00", "packet identifier cannot be 0", None),
    ("c-pingresp-len", C, True, b"\xd0\x01\x00", "remaining length 1", None),
]


@pytest.mark.parametrize(
    ("role", "connected", "data", "message", "rc"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
@pytest.mark.parametrize("how", ["whole", "bytewise"])
def test_malformed_input(
    role: Role, connected: bool, data: bytes, message: str, rc: int | None, how: str
) -> None:
    parser = new_parser(role, connected=connected)
    with pytest.raises(MQTTProtocolError) as info:
        feed_chunks(parser, [data] if how == "whole" else bytewise(data))
    assert message in str(info.value)
    assert info.value.connack_rc == rc
    assert info.value.events == []
    with pytest.raises(MQTTProtocolError):
        parser.feed(b"")


# --------------------------------------------------------------------------
# Real paho-mqtt bytes: paho talks to a tiny socket server built on this
# codec, so both paho's packet builders and paho's parser are exercised.
# --------------------------------------------------------------------------


class CodecServer:
    """One-connection MQTT server on a thread; records every packet."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.packets: list[Packet] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(10)
                self._serve(conn)
        except BaseException as exc:  # reported by the test thread
            self.error = exc
        finally:
            self.listener.close()
            self.done.set()

    def _serve(self, conn: socket.socket) -> None:
        parser = MQTTParser()
        next_pid = 0
        while True:
            data = conn.recv(65536)
            if not data:
                return
            for packet in parser.feed(data):
                self.packets.append(packet)
                out = b""
                if isinstance(packet, Connect):
                    out = mqtt.connack(False, 0)
                elif isinstance(packet, Subscribe):
                    out = mqtt.suback(packet.packet_id, [q for _, q in packet.filters])
                elif isinstance(packet, Unsubscribe):
                    out = mqtt.unsuback(packet.packet_id)
                elif isinstance(packet, Publish):
                    if packet.qos == 1:
                        out = mqtt.puback(packet.packet_id)  # type: ignore[arg-type]
                    elif packet.qos == 2:
                        out = mqtt.pubrec(packet.packet_id)  # type: ignore[arg-type]
                    # Echo it back so paho's parser sees our PUBLISH encoding.
                    next_pid += 1
                    out += mqtt.publish(
                        packet.topic, packet.payload, packet.qos, packet.retain, False,
                        next_pid if packet.qos else None,
                    )
                elif isinstance(packet, PubRel):
                    out = mqtt.pubcomp(packet.packet_id)
                elif isinstance(packet, PubRec):
                    out = mqtt.pubrel(packet.packet_id)
                elif isinstance(packet, PingReq):
                    out = mqtt.pingresp()
                elif isinstance(packet, Disconnect):
                    return
                if out:
                    conn.sendall(out)


def _capture_first_bytes(connect: Callable[[int], None]) -> bytes:
    """Let ``connect(port)`` talk to a socket that records and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def accept() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            while len(received) < 2 or len(received) < 2 + received[1]:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                received.extend(chunk)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        connect(listener.getsockname()[1])
        thread.join(10)
    finally:
        listener.close()
    return bytes(received)


def test_paho_client_session() -> None:
    paho = pytest.importorskip("paho.mqtt.client")
    from paho.mqtt.enums import CallbackAPIVersion

    server = CodecServer()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="paho-7", clean_session=False, protocol=paho.MQTTv311
    )
    client.username_pw_set("alice", "s3cr\u00e9t")
    client.will_set("status/paho-7", b"gone", qos=2, retain=True)
    received: list[tuple[str, bytes, int, bool]] = []
    got_three = threading.Event()

    def on_message(_c: object, _u: object, msg: object) -> None:
        received.append((msg.topic, msg.payload, msg.qos, msg.retain))  # type: ignore[attr-defined]
        if len(received) == 3:
            got_three.set()

    client.on_message = on_message
    unsubscribed = threading.Event()
    client.on_unsubscribe = lambda *args: unsubscribed.set()
    client.connect("127.0.0.1", server.port, keepalive=45)
    client.loop_start()
    try:
        _, sub_mid = client.subscribe([("a/+/c", 0), ("b/#", 1), ("c", 2)])
        infos = [
            client.publish("a/x/c", b"zero", qos=0),
            client.publish("b/1/2", b"one" * 100, qos=1, retain=True),
            client.publish("c", b"\x00\xff", qos=2),
        ]
        for info in infos:
            info.wait_for_publish(timeout=10)
        assert got_three.wait(10), received
        client._send_pingreq()  # paho's own PINGREQ builder
        _, unsub_mid = client.unsubscribe(["a/+/c", "c"])
        # PINGRESP and UNSUBACK must reach paho before it hangs up.
        assert unsubscribed.wait(10)
        client.disconnect()
        assert server.done.wait(10)
    finally:
        client.loop_stop()
    assert server.error is None, server.error

    assert server.packets[0] == Connect(
        "paho-7",
        clean_session=False,
        keepalive=45,
        will=Will("status/paho-7", b"gone", 2, True),
        username="alice",
        password="s3cr\u00e9t".encode(),
    )
    assert Subscribe(sub_mid, [("a/+/c", 0), ("b/#", 1), ("c", 2)]) in server.packets
    assert Publish("a/x/c", b"zero") in server.packets
    assert Publish("b/1/2", b"one" * 100, 1, True, False, infos[1].mid) in server.packets
    assert Publish("c", b"\x00\xff", 2, False, False, infos[2].mid) in server.packets
    assert PubRel(infos[2].mid) in server.packets  # client's half of the QoS 2 flow
    assert PubAck(2) in server.packets and PubRec(3) in server.packets  # acks of our echoes
    assert PubComp(3) in server.packets
    assert Unsubscribe(unsub_mid, ["a/+/c", "c"]) in server.packets
    assert PingReq() in server.packets
    assert server.packets[-1] == Disconnect()
    assert sorted(received) == [
        ("a/x/c", b"zero", 0, False),
        ("b/1/2", b"one" * 100, 1, True),
        ("c", b"\x00\xff", 2, False),
    ]


@pytest.mark.parametrize(
    ("protocol_name", "message", "rc"),
    [("MQTTv31", "older protocol", None), ("MQTTv5", "unacceptable protocol version of 5", 1)],
)
def test_paho_other_protocol_versions_are_refused(protocol_name: str, message: str, rc: int | None) -> None:
    paho = pytest.importorskip("paho.mqtt.client")
    from paho.mqtt.enums import CallbackAPIVersion

    def connect(port: int) -> None:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="old", protocol=getattr(paho, protocol_name)
        )
        client.connect("127.0.0.1", port)
        client.loop(timeout=0.2)

    data = _capture_first_bytes(connect)
    assert data[0] == 0x10
    with pytest.raises(MQTTProtocolError, match=message) as info:
        MQTTParser().feed(data)
    assert info.value.connack_rc == rc


# --------------------------------------------------------------------------
# Golden transcripts (protocols/mqtt/*.txt, format in its README.md).
# --------------------------------------------------------------------------

_EVAL_NAMES = {
    name: getattr(mqtt, name)
    for name in (
        "Connect", "ConnAck", "Will", "Publish", "PubAck", "PubRec", "PubRel", "PubComp",
        "Subscribe", "SubAck", "Unsubscribe", "UnsubAck", "PingReq", "PingResp", "Disconnect",
    )
}  # fmt: skip
_EVAL_NAMES.update(bytes=bytes, range=range)


def _packet_from_text(text: str) -> Packet:
    return eval(text, {"__builtins__": {}}, dict(_EVAL_NAMES))  # noqa: S307 - repo data


def _hex(text: str) -> bytes:
    out = bytearray()
    words = text.split()
    i = 0
    while i < len(words):
        if words[i].startswith("*"):
            out += bytes.fromhex(words[i + 1]) * int(words[i][1:])
            i += 2
        else:
            out += bytes.fromhex(words[i])
            i += 1
    return bytes(out)


class Step:
    def __init__(self, direction: str, data: bytes, lineno: int) -> None:
        self.direction = direction
        self.data = data
        self.lineno = lineno
        self.expected: list[Packet] = []
        self.canonical = True
        self.error: tuple[int | None, str] | None = None


def load_transcript(path: pathlib.Path) -> list[list[Step]]:
    """Sections (connections) of blocks, each with its expectations."""
    sections: list[list[Step]] = [[]]
    current: Step | None = None
    for lineno, raw in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "---":
            sections.append([])
            current = None
            continue
        tag, _, rest = line.partition(" ")
        if tag in ("C:", "S:"):
            data = _hex(rest.split("#", 1)[0])
            direction = tag[0]
            if current is not None and current.direction == direction and not (
                current.expected or current.error
            ):
                current.data += data
            else:
                current = Step(direction, data, lineno)
                sections[-1].append(current)
            continue
        assert current is not None, f"{path.name}:{lineno}: expectation before any bytes"
        if tag in ("=", "~"):
            current.expected.append(_packet_from_text(rest))
            current.canonical &= tag == "="
        elif tag == "!":
            rc_text, _, message = rest.partition(" ")
            assert rc_text.startswith("rc="), f"{path.name}:{lineno}"
            rc = None if rc_text == "rc=-" else int(rc_text[3:], 16)
            current.error = (rc, message)
        else:
            raise AssertionError(f"{path.name}:{lineno}: cannot parse {raw!r}")
    return [section for section in sections if section]


def replay(path: pathlib.Path, bytewise_feed: bool) -> int:
    blocks = 0
    for section in load_transcript(path):
        parsers = {"C": MQTTParser(our_role=Role.SERVER), "S": MQTTParser(our_role=Role.CLIENT)}
        for step in section:
            where = f"{path.name}:{step.lineno}"
            parser = parsers[step.direction]
            chunks = bytewise(step.data) if bytewise_feed else [step.data]
            got: list[Packet] = []
            try:
                for chunk in chunks:
                    got += parser.feed(chunk)
            except MQTTProtocolError as exc:
                assert step.error is not None, f"{where}: unexpected {exc!r}"
                rc, message = step.error
                assert message in str(exc), where
                assert exc.connack_rc == rc, where
                assert got + exc.events == step.expected, where
            else:
                assert step.error is None, f"{where}: expected an error"
                assert got == step.expected, where
                if step.expected and step.canonical:
                    assert b"".join(map(encode, step.expected)) == step.data, where
            blocks += 1
    return blocks


TRANSCRIPT_FILES = sorted(TRANSCRIPTS.glob("*.txt"))


def test_transcripts_exist() -> None:
    assert len(TRANSCRIPT_FILES) >= 4


@pytest.mark.parametrize("path", TRANSCRIPT_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("bytewise_feed", [False, True], ids=["blocks", "bytewise"])
def test_transcript_replay(path: pathlib.Path, bytewise_feed: bool) -> None:
    assert replay(path, bytewise_feed) > 0


# --------------------------------------------------------------------------
# Property tests.
# --------------------------------------------------------------------------


def _run(parser: MQTTParser, chunks: Sequence[bytes]) -> tuple[list[Packet], str | None]:
    """Packets and error message; anything but MQTTProtocolError propagates."""
    events: list[Packet] = []
    for chunk in chunks:
        try:
            events += parser.feed(chunk)
        except MQTTProtocolError as exc:
            return events + exc.events, str(exc)
    return events, None


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


_packetish = st.builds(
    lambda first, body, extra: bytes([first]) + mqtt._varint(max(0, len(body) + extra)) + body,
    st.integers(0, 255),
    st.binary(max_size=40),
    st.sampled_from([0, 0, 0, -1, 1, 5]),
)
_noise = st.one_of(
    st.binary(max_size=200),
    st.lists(_packetish, max_size=6).map(b"".join),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    role=st.sampled_from([Role.SERVER, Role.CLIENT]),
    connected=st.booleans(),
    data=_noise,
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    limit=st.one_of(st.none(), st.integers(0, 64)),
)
def test_fuzz_only_protocol_errors_and_chunking_invariance(
    role: Role, connected: bool, data: bytes, cuts: list[int], limit: int | None
) -> None:
    parsers = [new_parser(role, connected=connected) for _ in range(2)]
    for parser in parsers:
        parser.max_packet_size = limit
    whole = _run(parsers[0], [data])
    chunked = _run(parsers[1], _split(data, cuts))
    assert chunked == whole


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
_topic = _text.filter(lambda t: t and "+" not in t and "#" not in t)
_pid = st.integers(1, 65535)


@st.composite
def _publish(draw: st.DrawFn) -> Publish:
    qos = draw(st.integers(0, 2))
    return Publish(
        draw(_topic),
        draw(st.binary(max_size=300)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()),
        draw(_pid) if qos else None,
    )


_server_bound = st.one_of(
    _publish(),
    st.builds(PubAck, _pid),
    st.builds(PubRec, _pid),
    st.builds(PubRel, _pid),
    st.builds(PubComp, _pid),
    st.builds(
        Subscribe,
        _pid,
        st.lists(st.tuples(_text.filter(bool), st.integers(0, 2)), min_size=1, max_size=4),
    ),
    st.builds(Unsubscribe, _pid, st.lists(_text.filter(bool), min_size=1, max_size=4)),
    st.just(PingReq()),
)


@settings(max_examples=200)
@given(packets=st.lists(_server_bound, max_size=8), cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_round_trip_property(packets: list[Packet], cuts: list[int]) -> None:
    data = b"".join(encode(p) for p in packets)
    assert _run(new_parser(), _split(data, cuts)) == (packets, None)


@settings(max_examples=100)
@given(
    client_id=_text.filter(lambda s: not set(s) & set(" \t\r\n\f.*>")),
    clean=st.booleans(),
    keepalive=st.integers(0, 65535),
    will=st.one_of(
        st.none(), st.builds(Will, _topic, st.binary(max_size=50), st.integers(0, 2), st.booleans())
    ),
    username=st.one_of(st.none(), _text.filter(bool)),
    password=st.one_of(st.none(), st.binary(max_size=50)),
)
def test_connect_round_trip_property(
    client_id: str, clean: bool, keepalive: int, will: Will | None, username: str | None, password: bytes | None
) -> None:
    if password is not None and username is None:
        username = "u"  # a password needs a user name [MQTT-3.1.2-22]
    if not client_id:
        clean = True
    packet = Connect(client_id, clean, keepalive, will, username, password)
    assert MQTTParser().feed(encode(packet)) == [packet]


@st.composite
def _mutated_stream(draw: st.DrawFn) -> bytes:
    """A valid CONNECT + packet stream with a few bytes overwritten, inserted
    or removed: reaches deep into the body parsers, unlike random noise."""
    packets = [draw(st.sampled_from(CONNECTS[:-1])), *draw(st.lists(_server_bound, max_size=4))]
    data = bytearray(b"".join(encode(p) for p in packets))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "delete" and at < len(data):
            del data[at]
        elif action == "insert":
            data.insert(at, draw(st.integers(0, 255)))
        elif at < len(data):
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=400)
@given(data=_mutated_stream(), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_fuzz_mutated_streams(data: bytes, cuts: list[int]) -> None:
    whole = _run(MQTTParser(), [data])
    assert _run(MQTTParser(), _split(data, cuts)) == whole
