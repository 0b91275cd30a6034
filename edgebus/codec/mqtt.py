"""Sans-IO MQTT 3.1.1 codec: a resumable packet parser and packet serializers.

The job of this module is bytes <-> packet objects, nothing else.  It does no
I/O, keeps no timers and knows nothing about sessions, NATS subjects or
JetStream; a connection driver owns one :class:`MQTTParser`, feeds it whatever
the socket produced and acts on the returned packets.  Outgoing packets are
plain ``bytes`` built by the module-level serializers (``connack``,
``publish``, ``suback``, ...) or by :func:`encode`.

Validation follows the OASIS MQTT 3.1.1 specification as enforced by
nats-server's MQTT front-end (``server/mqtt.go``), so a driver built on this
codec closes connections for the same inputs nats-server does:

* the first packet must be CONNECT and a second CONNECT is an error;
* reserved fixed-header flag bits must hold their mandated values (0x2 for
  PUBREL, SUBSCRIBE and UNSUBSCRIBE, 0 elsewhere, any QoS but 3 for PUBLISH);
* the remaining length is at most 4 bytes long; PUBACK/PUBREC/PUBREL/PUBCOMP
  have exactly 2 bytes of body and PINGREQ/DISCONNECT none;
* strings must be well-formed UTF-8 without U+0000; topics and filters must
  not be empty; a PUBLISH topic (or Will topic) must not contain ``+``/``#``;
* packet identifiers are never 0;
* CONNECT problems that the spec answers with a CONNACK return code carry
  that code in :attr:`MQTTProtocolError.connack_rc` (protocol level != 4 ->
  0x01, bad client identifier -> 0x02, empty or invalid user name -> 0x04).

Deliberately *not* checked here (they are policy, or NATS-specific, and
belong to the driver or to :mod:`edgebus.codec.mqtt_topics`): whitespace in
topics, wildcard placement inside SUBSCRIBE filters (nats-server answers a
bad filter with SUBACK 0x80 rather than closing), ``reject_qos2_publish``,
authentication.  Empty client identifiers are returned as ``""``; the driver
assigns one when clean-session is set.

The parser is role-aware (h11 style): ``Role.SERVER`` parses what a client
sends, ``Role.CLIENT`` parses what a server sends.  The client role exists so
tests and tools can speak to a broker with the same code.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Callable, Union

__all__ = [
    "MAX_REMAINING_LENGTH",
    "PROTOCOL_LEVEL",
    "PROTOCOL_NAME",
    "SUBACK_FAILURE",
    "ConnAck",
    "Connect",
    "ConnackCode",
    "Disconnect",
    "MQTTParser",
    "MQTTProtocolError",
    "Packet",
    "PacketType",
    "PingReq",
    "PingResp",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "Role",
    "SubAck",
    "Subscribe",
    "UnsubAck",
    "Unsubscribe",
    "Will",
    "connack",
    "connect",
    "disconnect",
    "encode",
    "pingreq",
    "pingresp",
    "puback",
    "pubcomp",
    "publish",
    "publish_header",
    "pubrec",
    "pubrel",
    "suback",
    "subscribe",
    "unsuback",
    "unsubscribe",
]

PROTOCOL_NAME = "MQTT"
PROTOCOL_LEVEL = 4
#: Largest value a 4-byte remaining-length varint can carry (256 MiB - 1).
MAX_REMAINING_LENGTH = 268_435_455
#: SUBACK return code for a refused filter.
SUBACK_FAILURE = 0x80


class PacketType(enum.IntEnum):
    """Control packet types (high nibble of the first byte)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnackCode(enum.IntEnum):
    """CONNACK return codes (spec table 3.1, plus nats-server's 0x10)."""

    ACCEPTED = 0x00
    UNACCEPTABLE_PROTOCOL_VERSION = 0x01
    IDENTIFIER_REJECTED = 0x02
    SERVER_UNAVAILABLE = 0x03
    BAD_USERNAME_OR_PASSWORD = 0x04
    NOT_AUTHORIZED = 0x05
    #: Not in the spec: nats-server's answer to a QoS 2 Will when
    #: ``reject_qos2_publish`` is configured.
    QOS2_WILL_REJECTED = 0x10


class Role(enum.Enum):
    """Which end of the connection the parser sits on."""

    SERVER = "server"  # parses client -> server packets
    CLIENT = "client"  # parses server -> client packets


class MQTTProtocolError(Exception):
    """The peer broke the protocol; the connection must be closed.

    ``connack_rc`` -- when not ``None``, send ``connack(False, connack_rc)``
    before closing (only raised for a CONNECT).

    ``events`` -- packets that were decoded, in the same :meth:`MQTTParser.feed`
    call, *before* the offending packet.  nats-server processes packets in
    order and only then fails, so a driver should handle these first (for
    example a PUBLISH that preceded garbage is still delivered).
    """

    def __init__(self, message: str, *, connack_rc: int | None = None) -> None:
        super().__init__(message)
        self.connack_rc = connack_rc
        self.events: list[Packet] = []


# --------------------------------------------------------------------------
# Packet objects.  Plain slotted dataclasses: cheap to build on the hot path,
# comparable in tests, and their repr is valid Python (used by the golden
# transcripts under protocols/mqtt/).
# --------------------------------------------------------------------------


@dataclass(slots=True)
class Will:
    """Will message from CONNECT.

    ``topic`` passed the spec's PUBLISH topic rules (non-empty, no wildcard).
    nats-server also converts it to a NATS subject while parsing CONNECT and
    closes *without* a CONNACK if that fails (e.g. a space in the topic), so
    a driver should do that conversion before answering the CONNECT."""

    topic: str
    message: bytes
    qos: int = 0
    retain: bool = False


@dataclass(slots=True)
class Connect:
    client_id: str
    clean_session: bool = True
    keepalive: int = 0
    will: Will | None = None
    username: str | None = None
    #: MQTT passwords are binary data; nats-server uses them as both password
    #: and token, decoding is the driver's business.
    password: bytes | None = None
    protocol_name: str = PROTOCOL_NAME
    protocol_level: int = PROTOCOL_LEVEL


@dataclass(slots=True)
class ConnAck:
    session_present: bool
    return_code: int


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    #: ``None`` for QoS 0, 1..65535 otherwise.
    packet_id: int | None = None


@dataclass(slots=True)
class PubAck:
    packet_id: int


@dataclass(slots=True)
class PubRec:
    packet_id: int


@dataclass(slots=True)
class PubRel:
    packet_id: int


@dataclass(slots=True)
class PubComp:
    packet_id: int


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    #: ``(topic filter, requested QoS)`` in packet order; never empty.
    filters: list[tuple[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class SubAck:
    packet_id: int
    return_codes: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    filters: list[str] = field(default_factory=list)


@dataclass(slots=True)
class UnsubAck:
    packet_id: int


@dataclass(slots=True)
class PingReq:
    pass


@dataclass(slots=True)
class PingResp:
    pass


@dataclass(slots=True)
class Disconnect:
    pass


Packet = Union[
    Connect,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    PingReq,
    PingResp,
    Disconnect,
]

# --------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------

# Mandatory low nibble per packet type; PUBLISH (None) carries dup/qos/retain.
_REQUIRED_FLAGS: dict[int, int | None] = {
    1: 0, 2: 0, 3: None, 4: 0, 5: 0, 6: 2, 7: 0,
    8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0,
}  # fmt: skip

# Packet types whose remaining length is fixed by the spec.
_FIXED_LENGTH: dict[int, int] = {2: 2, 4: 2, 5: 2, 6: 2, 7: 2, 11: 2, 12: 0, 13: 0, 14: 0}

# Which packet types each role accepts from its peer.
_ACCEPTS: dict[Role, frozenset[int]] = {
    Role.SERVER: frozenset({1, 3, 4, 5, 6, 7, 8, 10, 12, 14}),
    Role.CLIENT: frozenset({2, 3, 4, 5, 6, 7, 9, 11, 13}),
}

# nats-server's client-id rule (isValidName): it becomes part of NATS subjects.
_BAD_CLIENT_ID_CHARS = frozenset(" \t\r\n\f.*>")

_PING_REQ = PingReq()  # stateless packets can be shared
_PING_RESP = PingResp()
_DISCONNECT = Disconnect()


class _Malformed(Exception):
    """Internal: a body field ran past the end of its packet."""


def _decode_utf8(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MQTTProtocolError(f"invalid utf8 for {what} {raw!r}") from None
    if "\x00" in text:
        raise MQTTProtocolError(f"invalid null character in {what} {text!r}")
    return text


class _Reader:
    """Cursor over one packet body ``buf[pos:end]``; never reads past ``end``."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise _Malformed
        self.pos += 1
        return self.buf[self.pos - 1]

    def uint16(self) -> int:
        p = self.pos
        if p + 2 > self.end:
            raise _Malformed
        self.pos = p + 2
        return (self.buf[p] << 8) | self.buf[p + 1]

    def blob(self) -> bytes:
        n = self.uint16()
        p = self.pos
        if p + n > self.end:
            raise _Malformed
        self.pos = p + n
        return self.buf[p : p + n]


class MQTTParser:
    """Incremental MQTT 3.1.1 parser.

    ``feed(data)`` accepts any chunking of the byte stream (down to single
    bytes) and returns every packet completed by it, in order.  The first
    :class:`MQTTProtocolError` puts the parser in a failed state: any later
    ``feed`` raises again.  After a DISCONNECT nothing more is parsed and
    further input is ignored (nats-server closes the connection right away).

    ``max_packet_size`` bounds the whole packet (fixed header included); it is
    checked as soon as the remaining length is known, before buffering the
    body.  It is a plain attribute so a driver can change it after CONNECT
    (nats-server only applies ``max_payload`` before the connection is
    established).  ``None`` means the protocol limit only.
    """

    __slots__ = ("our_role", "max_packet_size", "_buf", "_need", "_connected", "_failed", "_done")

    def __init__(self, *, our_role: Role = Role.SERVER, max_packet_size: int | None = None) -> None:
        self.our_role = our_role
        self.max_packet_size = max_packet_size
        self._buf = bytearray()
        # Byte count the buffer must reach before parsing is worth retrying;
        # keeps a large packet arriving in many chunks O(n) instead of O(n^2).
        self._need = 0
        self._connected = False
        self._failed = False
        self._done = False

    @property
    def connected(self) -> bool:
        """CONNECT (server role) or CONNACK (client role) has been parsed."""
        return self._connected

    @property
    def disconnected(self) -> bool:
        """A DISCONNECT has been parsed; the parser ignores further input."""
        return self._done

    @property
    def pending(self) -> int:
        """Number of buffered bytes belonging to a not yet complete packet."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        if self._failed:
            raise MQTTProtocolError("parser already failed; the connection must be closed")
        if self._done:
            return []
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []
            buf = bytes(self._buf)
            self._buf.clear()
        else:
            buf = bytes(data)  # no copy when data is already bytes
        events: list[Packet] = []
        try:
            pos = self._parse(buf, events)
        except MQTTProtocolError as exc:
            self._failed = True
            self._buf.clear()
            exc.events = events
            raise
        if pos < len(buf) and not self._done:
            self._buf += memoryview(buf)[pos:]
        return events

    # The loop is written for speed: one pass over ``buf``, indices instead
    # of slices for the header, handlers called with body bounds.
    def _parse(self, buf: bytes, events: list[Packet]) -> int:
        n = len(buf)
        pos = 0
        accepts = _ACCEPTS[self.our_role]
        server = self.our_role is Role.SERVER
        self._need = 0
        while pos < n:
            first = buf[pos]
            ptype = first >> 4
            flags = first & 0x0F
            if not self._connected and self._check_first_packet(buf, pos, ptype, server):
                return pos  # could still be "GET ", wait for more bytes
            if ptype not in accepts:
                raise MQTTProtocolError(f"received unknown packet type {ptype}")
            required = _REQUIRED_FLAGS[ptype]
            if required is None:
                if flags & 0x06 == 0x06:  # PUBLISH: refuse before buffering a body
                    raise MQTTProtocolError("QoS=3 is invalid in MQTT")
            elif flags != required:
                raise MQTTProtocolError(
                    f"invalid fixed header flags {flags:x} for packet type {first & 0xF0:x}"
                )
            # Remaining length: 1..4 bytes, 7 bits each, little-endian groups.
            p = pos + 1
            if p < n and buf[p] < 0x80:  # the common single-byte case
                length = buf[p]
                p += 1
            else:
                length = 0
                shift = 0
                while True:
                    if p >= n:
                        return pos  # header incomplete
                    b = buf[p]
                    p += 1
                    length |= (b & 0x7F) << shift
                    if not b & 0x80:
                        break
                    shift += 7
                    if shift == 28:
                        raise MQTTProtocolError("malformed variable int")
            total = p - pos + length
            limit = self.max_packet_size
            if limit is not None and total > limit:
                raise MQTTProtocolError(f"maximum packet size exceeded ({total} > {limit})")
            fixed = _FIXED_LENGTH.get(ptype)
            if fixed is not None and length != fixed:
                raise MQTTProtocolError(
                    f"invalid remaining length {length} for packet type {first & 0xF0:x}"
                )
            end = p + length
            if end > n:
                self._need = total
                return pos
            try:
                packet = self._packet(buf, ptype, flags, p, end, server)
            except _Malformed:
                raise MQTTProtocolError(
                    f"malformed {PacketType(ptype).name} packet: field runs past its end"
                ) from None
            events.append(packet)
            pos = end
            if ptype == 14:  # DISCONNECT: stop, like nats-server does
                self._done = True
                return n
        return pos

    def _check_first_packet(self, buf: bytes, pos: int, ptype: int, server: bool) -> bool:
        """Raise unless the packet at ``pos`` may open the connection.

        Returns True when more bytes are needed to tell which error it is:
        nats-server recognises a WebSocket handshake (``GET ``) sent to the
        MQTT port and reports it specifically, whatever the chunking."""
        if server and ptype != PacketType.CONNECT:
            head = buf[pos : pos + 4]
            if len(head) < 4 and b"GET ".startswith(head):
                return True
            if head == b"GET ":
                raise MQTTProtocolError(
                    "MQTT clients over websocket must connect to the Websocket port, not the MQTT port"
                )
            raise MQTTProtocolError(f"the first packet should be a CONNECT, got packet type {ptype}")
        if not server and ptype != PacketType.CONNACK:
            raise MQTTProtocolError(f"the first packet should be a CONNACK, got packet type {ptype}")
        return False

    def _packet(self, buf: bytes, ptype: int, flags: int, p: int, end: int, server: bool) -> Packet:
        if ptype == 3:
            return _parse_publish(buf, flags, p, end)
        if 4 <= ptype <= 7 or ptype == 11:
            pid = (buf[p] << 8) | buf[p + 1]
            if pid == 0:
                raise MQTTProtocolError("packet identifier cannot be 0")
            return _PID_PACKETS[ptype](pid)
        if ptype == 12:
            return _PING_REQ
        if ptype == 13:
            return _PING_RESP
        if ptype == 14:
            return _DISCONNECT
        if ptype == 1:
            if self._connected:
                raise MQTTProtocolError("received a second CONNECT packet")
            packet: Packet = _parse_connect(_Reader(buf, p, end))
            self._connected = True
            return packet
        if ptype == 2:
            if self._connected:
                raise MQTTProtocolError("received a second CONNACK packet")
            ack_flags = buf[p]
            if ack_flags & 0xFE:
                raise MQTTProtocolError(f"invalid CONNACK acknowledge flags {ack_flags:x}")
            self._connected = True
            return ConnAck(bool(ack_flags), buf[p + 1])
        if ptype == 8:
            return _parse_subscribe(_Reader(buf, p, end))
        if ptype == 10:
            return _parse_unsubscribe(_Reader(buf, p, end))
        if ptype == 9:
            return _parse_suback(_Reader(buf, p, end))
        raise AssertionError(f"unhandled packet type {ptype}")  # pragma: no cover


_PID_PACKETS: dict[int, Callable[[int], Packet]] = {4: PubAck, 5: PubRec, 6: PubRel, 7: PubComp, 11: UnsubAck}


def _parse_publish(buf: bytes, flags: int, p: int, end: int) -> Publish:
    qos = (flags >> 1) & 3  # 3 was refused by the caller
    if p + 2 > end:
        raise _Malformed
    tlen = (buf[p] << 8) | buf[p + 1]
    p += 2
    if tlen == 0:
        raise MQTTProtocolError("topic cannot be empty")
    tend = p + tlen
    if tend > end:
        raise _Malformed
    raw = buf[p:tend]
    if raw.isascii():  # fast path: ASCII is valid UTF-8
        topic = raw.decode("ascii")
        if "\x00" in topic:
            raise MQTTProtocolError(f"invalid null character in topic {topic!r}")
    else:
        topic = _decode_utf8(raw, "topic")
    if "+" in topic or "#" in topic:
        raise MQTTProtocolError(f"wildcards not allowed in publish's topic: {topic!r}")
    p = tend
    pid = None
    if qos:
        if p + 2 > end:
            raise _Malformed
        pid = (buf[p] << 8) | buf[p + 1]
        if pid == 0:
            raise MQTTProtocolError(f"with QoS={qos}, packet identifier cannot be 0")
        p += 2
    return Publish(topic, buf[p:end], qos, bool(flags & 1), bool(flags & 8), pid)


def _parse_connect(r: _Reader) -> Connect:
    raw_name = r.blob()
    if raw_name != b"MQTT":
        if raw_name == b"MQIsdp":
            # MQTT 3.1: nats-server closes without a CONNACK.
            raise MQTTProtocolError(f"older protocol {raw_name!r} not supported")
        raise MQTTProtocolError(f"expected connect packet with protocol name 'MQTT', got {raw_name!r}")
    level = r.byte()
    if level != PROTOCOL_LEVEL:
        raise MQTTProtocolError(
            f"unacceptable protocol version of {level}",
            connack_rc=ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION,
        )
    flags = r.byte()
    if flags & 0x01:
        raise MQTTProtocolError("connect flags reserved bit not set to 0")
    clean = bool(flags & 0x02)
    has_will = bool(flags & 0x04)
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    has_password = bool(flags & 0x40)
    has_user = bool(flags & 0x80)
    if not has_will:
        if will_qos:
            raise MQTTProtocolError(f"if Will flag is set to 0, Will QoS must be 0 too, got {will_qos}")
        if will_retain:
            raise MQTTProtocolError("if Will flag is set to 0, Will Retain flag must be 0 too")
    elif will_qos == 3:
        raise MQTTProtocolError("if Will flag is set to 1, Will QoS can be 0, 1 or 2, got 3")
    if has_password and not has_user:
        raise MQTTProtocolError("password flag set but username flag is not")
    keepalive = r.uint16()

    raw_cid = r.blob()
    if not raw_cid and not clean:
        raise MQTTProtocolError(
            "when client ID is empty, clean session flag must be set to 1",
            connack_rc=ConnackCode.IDENTIFIER_REJECTED,
        )
    try:
        client_id = _decode_utf8(raw_cid, "client ID")
    except MQTTProtocolError as exc:
        exc.connack_rc = ConnackCode.IDENTIFIER_REJECTED
        raise
    if not _BAD_CLIENT_ID_CHARS.isdisjoint(client_id):
        # nats-server embeds the client id in NATS subjects (isValidName).
        raise MQTTProtocolError(
            f"invalid character in client ID {client_id!r}",
            connack_rc=ConnackCode.IDENTIFIER_REJECTED,
        )

    will = None
    if has_will:
        raw_topic = r.blob()
        if not raw_topic:
            raise MQTTProtocolError("empty Will topic not allowed")
        topic = _decode_utf8(raw_topic, "Will topic")
        if "+" in topic or "#" in topic:
            raise MQTTProtocolError(f"wildcards not allowed in publish's topic: {topic!r}")
        will = Will(topic, r.blob(), will_qos, will_retain)

    username = None
    if has_user:
        raw_user = r.blob()
        if not raw_user:
            raise MQTTProtocolError(
                "empty user name not allowed", connack_rc=ConnackCode.BAD_USERNAME_OR_PASSWORD
            )
        try:
            username = _decode_utf8(raw_user, "user name")
        except MQTTProtocolError as exc:
            exc.connack_rc = ConnackCode.BAD_USERNAME_OR_PASSWORD
            raise
    password = r.blob() if has_password else None
    if r.pos != r.end:
        # nats-server would misread these bytes as the next packet and then
        # fail; refusing the CONNECT outright ends the same way.
        raise MQTTProtocolError(f"{r.end - r.pos} unexpected trailing bytes in CONNECT")
    return Connect(client_id, clean, keepalive, will, username, password, PROTOCOL_NAME, level)


def _read_filter(r: _Reader) -> str:
    raw = r.blob()
    if not raw:
        raise MQTTProtocolError("topic filter cannot be empty")
    return _decode_utf8(raw, "topic filter")


def _read_packet_id(r: _Reader) -> int:
    pid = r.uint16()
    if pid == 0:
        raise MQTTProtocolError("packet identifier cannot be 0")
    return pid


def _parse_subscribe(r: _Reader) -> Subscribe:
    pid = _read_packet_id(r)
    filters: list[tuple[str, int]] = []
    while r.pos < r.end:
        topic_filter = _read_filter(r)
        qos = r.byte()
        if qos > 2:  # also catches the 6 reserved bits [MQTT-3-8.3-4]
            raise MQTTProtocolError(f"subscribe QoS value must be 0, 1 or 2, got {qos}")
        filters.append((topic_filter, qos))
    if not filters:
        raise MQTTProtocolError("subscribe protocol must contain at least 1 topic filter")
    return Subscribe(pid, filters)


def _parse_unsubscribe(r: _Reader) -> Unsubscribe:
    pid = _read_packet_id(r)
    filters: list[str] = []
    while r.pos < r.end:
        filters.append(_read_filter(r))
    if not filters:
        raise MQTTProtocolError("unsubscribe protocol must contain at least 1 topic filter")
    return Unsubscribe(pid, filters)


_SUBACK_CODES = frozenset({0, 1, 2, SUBACK_FAILURE})


def _parse_suback(r: _Reader) -> SubAck:
    pid = _read_packet_id(r)
    codes = list(r.buf[r.pos : r.end])
    if not codes:
        raise MQTTProtocolError("SUBACK must contain at least 1 return code")
    for code in codes:
        if code not in _SUBACK_CODES:
            raise MQTTProtocolError(f"invalid SUBACK return code {code:#x}")
    return SubAck(pid, codes)


# --------------------------------------------------------------------------
# Serializers.  Arguments are validated (ValueError) because a bad outgoing
# packet is a bug in the caller, and the peer would just drop the connection.
# --------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL_VARINTS[n]
    if n > MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {n} exceeds the MQTT maximum {MAX_REMAINING_LENGTH}")
    out = bytearray()
    while True:
        digit = n & 0x7F
        n >>= 7
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


_SMALL_VARINTS = [bytes([i]) for i in range(0x80)]


def _check_pid(packet_id: int) -> None:
    if not 1 <= packet_id <= 0xFFFF:
        raise ValueError(f"packet identifier must be 1..65535, got {packet_id!r}")


def _check_qos(qos: int) -> None:
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, got {qos!r}")


def _string(value: str | bytes) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(raw) > 0xFFFF:
        raise ValueError(f"MQTT strings are limited to 65535 bytes, got {len(raw)}")
    return len(raw).to_bytes(2, "big") + raw


def _pid_packet(first: int, packet_id: int) -> bytes:
    _check_pid(packet_id)
    return bytes((first, 2, packet_id >> 8, packet_id & 0xFF))


def connack(session_present: bool, return_code: int = ConnackCode.ACCEPTED) -> bytes:
    """CONNACK.  The session-present bit is forced to 0 when ``return_code``
    is not 0 [MQTT-3.2.2-4], as nats-server does."""
    if not 0 <= return_code <= 0xFF:
        raise ValueError(f"invalid CONNACK return code {return_code!r}")
    return bytes((0x20, 2, 1 if session_present and return_code == 0 else 0, return_code))


def publish_header(
    topic: str | bytes,
    payload_len: int,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
) -> bytes:
    """Everything of a PUBLISH packet up to (excluding) the payload.

    Lets a driver send large payloads without concatenating them."""
    _check_qos(qos)
    topic_field = _string(topic)
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    if qos:
        if packet_id is None:
            raise ValueError(f"QoS {qos} PUBLISH needs a packet identifier")
        _check_pid(packet_id)
        return (
            bytes((first,))
            + _varint(len(topic_field) + 2 + payload_len)
            + topic_field
            + packet_id.to_bytes(2, "big")
        )
    if packet_id is not None:
        raise ValueError("QoS 0 PUBLISH has no packet identifier")
    return bytes((first,)) + _varint(len(topic_field) + payload_len) + topic_field


# PUBLISH fixed header for QoS 0 without flags and a one-byte remaining length
_QOS0_HEAD = [bytes((0x30, n)) for n in range(128)]


def publish_for_field(topic_field: bytes, payload: bytes, qos: int, packet_id: int, dup: bool,
                      retain: bool) -> bytes:
    """A whole PUBLISH for a precomputed topic field (2-byte length, then the topic): how a
    session frames a delivery (no checks: the session's values are valid)."""
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    rl = len(topic_field) + len(payload) + (2 if qos else 0)
    head = bytes((first, rl)) if rl < 128 else bytes((first,)) + _varint(rl)
    if qos:
        return head + topic_field + packet_id.to_bytes(2, "big") + payload
    return head + topic_field + payload


def append_qos0(out: bytearray, topic_field: bytes, payloads: Sequence[bytes]) -> int:
    """Append one plain QoS 0 PUBLISH per payload to `out` (the delivery framing of a NATS
    message to an MQTT session); returns the payload bytes."""
    n = 0
    for data in payloads:
        rl = len(topic_field) + len(data)
        if rl < 128:
            out += _QOS0_HEAD[rl]
        else:
            out.append(0x30)
            out += _varint(rl)
        out += topic_field
        out += data
        n += len(data)
    return n


def publish(
    topic: str | bytes,
    payload: bytes = b"",
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
) -> bytes:
    """A complete PUBLISH packet."""
    return publish_header(topic, len(payload), qos, retain, dup, packet_id) + payload


def puback(packet_id: int) -> bytes:
    return _pid_packet(0x40, packet_id)


def pubrec(packet_id: int) -> bytes:
    return _pid_packet(0x50, packet_id)


def pubrel(packet_id: int) -> bytes:
    # PUBREL's reserved flags are 0b0010 [MQTT-3.6.1-1].
    return _pid_packet(0x62, packet_id)


def pubcomp(packet_id: int) -> bytes:
    return _pid_packet(0x70, packet_id)


def suback(packet_id: int, return_codes: Iterable[int]) -> bytes:
    """SUBACK: one code per filter, each 0, 1, 2 (granted QoS) or 0x80."""
    _check_pid(packet_id)
    codes = bytes(return_codes)
    if not codes:
        raise ValueError("SUBACK needs at least one return code")
    for code in codes:
        if code not in _SUBACK_CODES:
            raise ValueError(f"invalid SUBACK return code {code:#x}")
    return b"\x90" + _varint(2 + len(codes)) + packet_id.to_bytes(2, "big") + codes


def unsuback(packet_id: int) -> bytes:
    return _pid_packet(0xB0, packet_id)


def pingresp() -> bytes:
    return b"\xd0\x00"


# Client -> server packets: used by tests, tools and the client role.


def connect(
    client_id: str,
    *,
    clean_session: bool = True,
    keepalive: int = 0,
    will: Will | None = None,
    username: str | None = None,
    password: bytes | None = None,
    protocol_name: str = PROTOCOL_NAME,
    protocol_level: int = PROTOCOL_LEVEL,
) -> bytes:
    """CONNECT.  ``protocol_name``/``protocol_level`` are settable so tests
    can build packets a server must refuse."""
    if not 0 <= keepalive <= 0xFFFF:
        raise ValueError(f"keepalive must be 0..65535, got {keepalive!r}")
    flags = 0x02 if clean_session else 0
    payload = [_string(client_id)]
    if will is not None:
        _check_qos(will.qos)
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += (_string(will.topic), _string(will.message))
    if username is not None:
        flags |= 0x80
        payload.append(_string(username))
    if password is not None:
        flags |= 0x40
        payload.append(_string(password))
    body = b"".join(
        [_string(protocol_name), bytes((protocol_level, flags)), keepalive.to_bytes(2, "big"), *payload]
    )
    return b"\x10" + _varint(len(body)) + body


def subscribe(packet_id: int, filters: Sequence[tuple[str, int]]) -> bytes:
    _check_pid(packet_id)
    if not filters:
        raise ValueError("SUBSCRIBE needs at least one filter")
    parts = [packet_id.to_bytes(2, "big")]
    for topic_filter, qos in filters:
        _check_qos(qos)
        parts += (_string(topic_filter), bytes((qos,)))
    body = b"".join(parts)
    return b"\x82" + _varint(len(body)) + body


def unsubscribe(packet_id: int, filters: Sequence[str]) -> bytes:
    _check_pid(packet_id)
    if not filters:
        raise ValueError("UNSUBSCRIBE needs at least one filter")
    body = packet_id.to_bytes(2, "big") + b"".join(_string(f) for f in filters)
    return b"\xa2" + _varint(len(body)) + body


def pingreq() -> bytes:
    return b"\xc0\x00"


def disconnect() -> bytes:
    return b"\xe0\x00"


def encode(packet: Packet) -> bytes:
    """Serialize any packet object (the inverse of :meth:`MQTTParser.feed`)."""
    if isinstance(packet, Publish):
        return publish(
            packet.topic, packet.payload, packet.qos, packet.retain, packet.dup, packet.packet_id
        )
    if isinstance(packet, PubAck):
        return puback(packet.packet_id)
    if isinstance(packet, PubRec):
        return pubrec(packet.packet_id)
    if isinstance(packet, PubRel):
        return pubrel(packet.packet_id)
    if isinstance(packet, PubComp):
        return pubcomp(packet.packet_id)
    if isinstance(packet, Connect):
        return connect(
            packet.client_id,
            clean_session=packet.clean_session,
            keepalive=packet.keepalive,
            will=packet.will,
            username=packet.username,
            password=packet.password,
            protocol_name=packet.protocol_name,
            protocol_level=packet.protocol_level,
        )
    if isinstance(packet, ConnAck):
        return connack(packet.session_present, packet.return_code)
    if isinstance(packet, Subscribe):
        return subscribe(packet.packet_id, packet.filters)
    if isinstance(packet, SubAck):
        return suback(packet.packet_id, packet.return_codes)
    if isinstance(packet, Unsubscribe):
        return unsubscribe(packet.packet_id, packet.filters)
    if isinstance(packet, UnsubAck):
        return unsuback(packet.packet_id)
    if isinstance(packet, PingReq):
        return pingreq()
    if isinstance(packet, PingResp):
        return pingresp()
    if isinstance(packet, Disconnect):
        return disconnect()
    raise TypeError(f"not an MQTT packet: {packet!r}")
