"""The sans-IO NATS codec: every client operation fed whole, byte by byte and with trailing
data; the errors nats-server gives; serializers; and fuzzing (hypothesis): the parser raises
nothing but ProtocolError, and any split of the input gives the same operations."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebus.codec import nats as proto
from edgebus.codec.nats import (OP_CONNECT, OP_ERR, OP_INFO, OP_MSG, OP_OK, OP_PING, OP_PONG,
                                OP_PUB, OP_PUBS, OP_SUB, OP_UNSUB, ClientParser, ProtocolError,
                                ServerParser)


def parser(headers: bool = True, batch: bool = False, **kw) -> ServerParser:
    p = ServerParser(**kw)
    p.headers = headers
    p.batch = batch
    return p


def expand(ops: list[tuple]) -> list[tuple]:
    """Batch-mode operations as the plain operations they stand for."""
    out = []
    for op in ops:
        if op[0] == OP_PUBS:
            out += [(OP_PUB, op[1], op[2], None, p) for p in op[3]]
        else:
            out.append(op)
    return out


def feed_all(p: ServerParser, chunks) -> tuple[list[tuple], ProtocolError | None]:
    """Feed chunks one by one as a connection does (resuming after CONNECT pauses); return
    the operations and the first error."""
    ops: list[tuple] = []
    for c in chunks:
        err = p.feed_into(c, ops)
        while err is None and p.more:
            err = p.feed_into(b"", ops)
        if err is not None:
            return ops, err
    return ops, None


def whole(data: bytes, **kw):
    return feed_all(parser(**kw), [data])


def bytewise(data: bytes, **kw):
    return feed_all(parser(**kw), [data[i:i + 1] for i in range(len(data))])


# (bytes, expected operations) for every client operation
CASES = [
    (b"PUB foo 5\r\nhello\r\n", [(OP_PUB, b"foo", None, None, b"hello")]),
    (b"PUB foo bar 5\r\nhello\r\n", [(OP_PUB, b"foo", b"bar", None, b"hello")]),
    (b"PUB foo 0\r\n\r\n", [(OP_PUB, b"foo", None, None, b"")]),
    (b"PUB foo 4\r\n\r\n\r\n\r\n", [(OP_PUB, b"foo", None, None, b"\r\n\r\n")]),
    (b"pub\tfoo \t r  2\r\nhi\r\n", [(OP_PUB, b"foo", b"r", None, b"hi")]),
    (b"PUB foo\tr 2\r\nhi\r\n", [(OP_PUB, b"foo", b"r", None, b"hi")]),
    (b"PUB foo 2\nhi\r\n", [(OP_PUB, b"foo", None, None, b"hi")]),
    (b"PUB f\x0bo 1\r\nx\r\n", [(OP_PUB, b"f\x0bo", None, None, b"x")]),  # only space/tab split
    (b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
     [(OP_PUB, b"foo", None, b"NATS/1.0\r\n\r\n", b"hi")]),
    (b"HPUB foo rep 12 12\r\nNATS/1.0\r\n\r\n\r\n",
     [(OP_PUB, b"foo", b"rep", b"NATS/1.0\r\n\r\n", b"")]),
    (b"HPUB foo 0 2\r\nhi\r\n", [(OP_PUB, b"foo", None, None, b"hi")]),  # 0: no headers
    (b"SUB foo 1\r\n", [(OP_SUB, b"foo", None, b"1")]),
    (b"SUB foo.* q 1\r\n", [(OP_SUB, b"foo.*", b"q", b"1")]),
    (b"sub\tfoo\t1\n", [(OP_SUB, b"foo", None, b"1")]),
    (b"UNSUB 1\r\n", [(OP_UNSUB, b"1", None)]),
    (b"UNSUB 1 5\r\n", [(OP_UNSUB, b"1", 5)]),
    (b"UNSUB 1 x\r\n", [(OP_UNSUB, b"1", -1)]),  # not a size: "no max", removed at once
    (b"PING\r\n", [(OP_PING,)]),
    (b"ping\n", [(OP_PING,)]),
    (b"PING whatever\r\n", [(OP_PING,)]),
    (b"PONG\r\n", [(OP_PONG,)]),
    (b"+OK\r\n", [(OP_OK,)]),
    (b"-ERR 'oops'\r\n", [(OP_ERR, b"'oops'")]),
    (b"CONNECT {\"verbose\":false}\r\n", [(OP_CONNECT, b"{\"verbose\":false}")]),
    (b"CONNECT\t {}\r\n", [(OP_CONNECT, b"{}")]),
    (b"CONNECT\r\n", [(OP_CONNECT, b"")]),
    (b"INFO {}\r\n", [(OP_INFO, b"{}")]),
]


@pytest.mark.parametrize("data,expected", CASES, ids=[c[0][:24].decode(errors="replace") for c in CASES])
def test_op_whole_bytewise_and_with_trailing_data(data, expected):
    assert whole(data) == (expected, None)
    assert bytewise(data) == (expected, None)
    # followed by more operations (and a partial one that must wait)
    ops, err = whole(data + b"PING\r\nPUB x 3\r\nab")
    assert err is None and ops == expected + [(OP_PING,)]
    p = parser()
    ops, err = feed_all(p, [data + b"PUB x 3\r\nab"])
    assert ops == expected and err is None
    assert p.feed(b"c\r\n") == [(OP_PUB, b"x", None, None, b"abc")]


def test_many_pubs_in_one_read_fast_path_and_mixed():
    frame = b"PUB bench.x 16\r\n" + b"x" * 16 + b"\r\n"
    data = frame * 500 + b"PING\r\n" + frame * 3 + b"PUB bench.x r 2\r\n\r\n\r\n" + frame
    ops, err = whole(data)
    assert err is None
    assert len(ops) == 506
    assert ops[500] == (OP_PING,)
    assert ops[504] == (OP_PUB, b"bench.x", b"r", None, b"\r\n")
    assert all(o == (OP_PUB, b"bench.x", None, None, b"x" * 16) for o in ops[:500])
    assert bytewise(data) == (ops, None)


def test_batch_mode_groups_identical_control_lines():
    a = b"PUB a 2\r\nxy\r\n"
    b = b"PUB a r 2\r\nzz\r\n"
    data = a * 3 + b * 2 + b"PUB a 3\r\nxyz\r\n" + a + b"PING\r\n" + a * 2
    ops, err = feed_all(parser(batch=True), [data])
    assert err is None
    assert ops == [(OP_PUBS, b"a", None, [b"xy"] * 3), (OP_PUBS, b"a", b"r", [b"zz"] * 2),
                   (OP_PUB, b"a", None, None, b"xyz"), (OP_PUB, b"a", None, None, b"xy"),
                   (OP_PING,), (OP_PUB, b"a", None, None, b"xy"), (OP_PUB, b"a", None, None, b"xy")]
    # (a single PUB stays a PUB; after a short run the precise path continues, which emits
    # plain PUBs)
    assert expand(ops) == whole(data)[0]


def test_pause_after_connect_applies_headers_to_following_hpub():
    p = ServerParser()
    ops: list[tuple] = []
    data = b"CONNECT {}\r\nHPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n"
    assert p.feed_into(data, ops) is None
    assert ops == [(OP_CONNECT, b"{}")] and p.more
    p.headers = True  # what the connection does for CONNECT {"headers":true}
    assert p.feed_into(b"", ops) is None and not p.more
    assert ops[1] == (OP_PUB, b"foo", None, b"NATS/1.0\r\n\r\n", b"")


def test_large_payload_over_many_reads():
    p = parser()
    payload = bytes(range(256)) * 4000  # ~1 MB
    data = b"PUB big 1024000\r\n" + payload + b"\r\nPING\r\n"
    ops: list[tuple] = []
    for i in range(0, len(data), 65536):
        assert p.feed_into(data[i:i + 65536], ops) is None
    assert ops == [(OP_PUB, b"big", None, None, payload), (OP_PING,)]


ERRORS = [
    # (bytes, -ERR text or None for a silent close)
    (b"FOO\r\n", proto.ERR_UNKNOWN_OP),
    (b"PUX", proto.ERR_UNKNOWN_OP),  # refused before the newline
    (b" PING\r\n", proto.ERR_UNKNOWN_OP),
    (b"\r\n", proto.ERR_UNKNOWN_OP),
    (b"MSG foo 1 2\r\nhi\r\n", proto.ERR_UNKNOWN_OP),
    (b"RS+ $G foo\r\n", proto.ERR_UNKNOWN_OP),
    (b"PUB\r\n", proto.ERR_UNKNOWN_OP),
    (b"-ERR\r\n", proto.ERR_UNKNOWN_OP),
    (b"PUB foo 2\r\nhiX", proto.ERR_UNKNOWN_OP),
    (b"PUB foo 2\r\nhi\n", proto.ERR_UNKNOWN_OP),
    (b"PUB big 130\r\n" + b"z" * 130 + b"XX", proto.ERR_UNKNOWN_OP),  # large-payload path
    ((b"PUB big 130\r\n" + b"z" * 130 + b"\r\n") * 3 + b"PUB big 130\r\n" + b"z" * 130 + b"\rX",
     proto.ERR_UNKNOWN_OP),
    (b"PUB foo 2000000\r\n", proto.ERR_MAX_PAYLOAD),
    (b"HPUB foo 12 2000000\r\n", proto.ERR_MAX_PAYLOAD),
    (b"PUB " + b"x" * 5000, proto.ERR_MAX_CONTROL_LINE),
    (b"SUB " + b"x" * 4095 + b" 1\r\n", proto.ERR_MAX_CONTROL_LINE),
    (b"PUB foo bar baz 2\r\n", None),
    (b"PUB foo -1\r\n", None),
    (b"PUB foo 0000000002\r\nhi\r\n", None),
    (b"PUB foo +2\r\nhi\r\n", None),
    (b"PUB foo 1_0\r\n", None),
    (b"HPUB foo 14 12\r\n", None),
    (b"HPUB foo 12\r\n", None),
    (b"SUB foo\r\n", None),
    (b"SUB a b c d\r\n", None),
    (b"UNSUB\t\r\n", None),
    (b"UNSUB 1 2 3\r\n", None),
]


@pytest.mark.parametrize("data,err", ERRORS, ids=[e[0][:20].decode(errors="replace") for e in ERRORS])
def test_protocol_errors(data, err):
    good = data.count(b"z" * 130 + b"\r\n")  # complete frames before the bad one
    for ops, e in (whole(data), bytewise(data)):
        assert len(ops) == good
        assert isinstance(e, ProtocolError)
        assert e.err == err


def test_hpub_needs_headers_negotiated():
    ops, e = whole(b"HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n", headers=False)
    assert ops == [] and e is not None and e.err is None


def test_control_line_limit_counts_arguments_only():
    arg = b"a" * 30
    assert whole(b"SUB " + arg + b" 1\r\n", max_control_line=32)[1] is None  # 32 bytes of args
    assert whole(b"SUB " + arg + b"b 1\r\n", max_control_line=32)[1].err == proto.ERR_MAX_CONTROL_LINE
    # a PING line is never too long (the server ignores its rest) and is not buffered whole
    p = parser()
    ops, err = feed_all(p, [b"PING" + b"z" * 100_000])
    assert (ops, err) == ([], None) and len(p.buf) < 100
    assert p.feed(b"zz\r\n") == [(OP_PING,)]


def test_ops_before_an_error_are_returned():
    ops, e = whole(b"SUB a 1\r\nPING\r\nXYZ\r\nPING\r\n")
    assert ops == [(OP_SUB, b"a", None, b"1"), (OP_PING,)]
    assert e.err == proto.ERR_UNKNOWN_OP


def test_feed_raises():
    with pytest.raises(ProtocolError):
        ServerParser().feed(b"BAD\r\n")


# -- serializers ------------------------------------------------------------------------

def test_frames_round_trip_through_client_parser():
    cp = ClientParser()
    data = (proto.msg_frame(b"foo", b"1", None, None, b"hi")
            + proto.msg_frame(b"foo", b"1", b"r", None, b"a\r\nb")
            + proto.msg_frame(b"foo", b"2", None, b"NATS/1.0\r\nA: b\r\n\r\n", b"x")
            + proto.msg_frame(b"foo", b"2", b"r", b"NATS/1.0\r\n\r\n", b"")
            + proto.PING + proto.PONG + proto.OK + proto.err_frame("Stale Connection")
            + proto.info_frame({"server_id": "N", "max_payload": 5}))
    ops = cp.feed(data)
    assert ops[:4] == [(OP_MSG, b"foo", b"1", None, None, b"hi"),
                       (OP_MSG, b"foo", b"1", b"r", None, b"a\r\nb"),
                       (OP_MSG, b"foo", b"2", None, b"NATS/1.0\r\nA: b\r\n\r\n", b"x"),
                       (OP_MSG, b"foo", b"2", b"r", b"NATS/1.0\r\n\r\n", b"")]
    assert ops[4:8] == [(OP_PING,), (OP_PONG,), (OP_OK,), (OP_ERR, b"Stale Connection")]
    assert ops[8][0] == OP_INFO and json.loads(ops[8][1]) == {"server_id": "N", "max_payload": 5}


def test_serializer_shapes():
    assert proto.err_frame("Invalid Subject") == b"-ERR 'Invalid Subject'\r\n"
    info = proto.info_frame({"a": 1, "b": "x"})
    assert info == b'INFO {"a":1,"b":"x"} \r\n'  # compact JSON, space before CRLF (nats-server)
    assert proto.pub_frame(b"s", None, None, b"abc") == b"PUB s 3\r\nabc\r\n"
    assert proto.pub_frame(b"s", b"r", b"NATS/1.0\r\n\r\n", b"ab") == \
        b"HPUB s r 12 14\r\nNATS/1.0\r\n\r\nab\r\n"
    assert proto.msg_frame(b"s", b"9", None, b"NATS/1.0\r\n\r\n", b"ab") == \
        b"HMSG s 9 12 14\r\nNATS/1.0\r\n\r\nab\r\n"
    # what a client writes, the server parses back
    p = parser()
    assert p.feed(proto.pub_frame(b"s", b"r", b"NATS/1.0\r\n\r\n", b"ab")) == \
        [(OP_PUB, b"s", b"r", b"NATS/1.0\r\n\r\n", b"ab")]


def test_client_parser_rejects_garbage_with_protocol_error_only():
    for bad in (b"MSG foo\r\n", b"MSG a b x\r\n", b"HMSG a b 5 2\r\n", b"WHAT\r\n",
                b"MSG a b 1\r\nxyz", b"X" * 70000):
        with pytest.raises(ProtocolError):
            ClientParser().feed(bad)


# -- fuzzing ------------------------------------------------------------------------------

# fragments that make the parser's interesting paths likely
FRAGMENTS = [b"PUB ", b"pub ", b"HPUB ", b"SUB ", b"UNSUB ", b"PING", b"PONG", b"+OK", b"-ERR ",
             b"CONNECT ", b"INFO ", b"foo", b"a.b", b"*", b">", b" ", b"\t", b"\r\n", b"\n",
             b"\r", b"0", b"1", b"2", b"12", b"99999", b"1234567890", b"NATS/1.0\r\n\r\n",
             b"{}", b"x", b"PUB foo 2\r\nhi\r\n", b"HPUB f 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
             b"PUB b 130\r\n" + b"z" * 130 + b"\r\n", b"PUB b 130\r\n", b"z" * 64, b"130"]

chunks_of = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=8)), max_size=30)


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0] + points + [len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks_of, st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
       st.booleans())
def test_fuzz_only_protocol_errors_and_split_invariance(frags, cuts, headers):
    data = b"".join(frags)
    kw = {"headers": headers, "max_payload": 256, "max_control_line": 48}
    try:
        ref = whole(data, **kw)
    except ProtocolError:  # pragma: no cover - feed_into returns errors, never raises
        raise AssertionError("feed_into raised")
    for batch in (False, True):
        got = feed_all(parser(batch=batch, **kw), _splits(data, cuts))
        assert expand(got[0]) == ref[0]
        assert (got[1] is None) == (ref[1] is None)
        if ref[1] is not None:
            assert (got[1].err, got[1].reason) == (ref[1].err, ref[1].reason)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(a, b):
    p = parser()
    ops: list[tuple] = []
    for chunk in (a, b):
        err = p.feed_into(chunk, ops)
        assert err is None or isinstance(err, ProtocolError)
        if err is not None:
            break
    cp = ClientParser()
    try:
        cp.feed(a)
        cp.feed(b)
    except ProtocolError:
        pass


valid_subject = st.from_regex(rb"\A[a-z]{1,5}(\.[a-z*>]{1,3}){0,3}\Z")


@st.composite
def valid_ops(draw):
    """(bytes, expected operations) for a stream of well-formed operations."""
    out, exp = [], []
    seps = st.sampled_from([b" ", b" ", b"\t", b"  ", b" \t"])
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["pub", "pub", "hpub", "sub", "unsub", "ping", "pong",
                                     "again", "again"]))
        if kind == "again":  # the previous operation once more (runs of identical PUBs)
            if out:
                out.append(out[-1])
                exp.append(exp[-1])
            continue

        class Sep:  # a fresh separator at each place
            @staticmethod
            def join(parts):
                return parts[0] + b"".join(draw(seps) + p for p in parts[1:])
        sep = Sep
        eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
        if kind in ("pub", "hpub"):
            subj = draw(valid_subject)
            reply = draw(st.one_of(st.none(), valid_subject))
            payload = draw(st.one_of(st.binary(max_size=40),
                                     st.binary(min_size=128, max_size=300)))  # sized path
            hdr = b"NATS/1.0\r\nK: v\r\n\r\n" if kind == "hpub" else None
            args = [b"HPUB" if hdr else b"PUB", subj] + ([reply] if reply else [])
            if hdr:
                args += [str(len(hdr)).encode(), str(len(hdr) + len(payload)).encode()]
            else:
                args.append(str(len(payload)).encode())
            out.append(sep.join(args) + eol + (hdr or b"") + payload + b"\r\n")
            exp.append((OP_PUB, subj, reply, hdr, payload))
        elif kind == "sub":
            subj = draw(valid_subject)
            out.append(sep.join([b"SUB", subj, b"7"]) + eol)
            exp.append((OP_SUB, subj, None, b"7"))
        elif kind == "unsub":
            out.append(sep.join([b"UNSUB", b"7", b"3"]) + eol)
            exp.append((OP_UNSUB, b"7", 3))
        else:
            out.append(kind.upper().encode() + eol)
            exp.append((OP_PING,) if kind == "ping" else (OP_PONG,))
    return b"".join(out), exp


@settings(max_examples=300, deadline=None)
@given(valid_ops(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_fuzz_valid_streams_any_split(case, cuts):
    data, expected = case
    assert whole(data) == (expected, None)
    assert feed_all(parser(), _splits(data, cuts)) == (expected, None)
    ops, err = feed_all(parser(batch=True), _splits(data, cuts))
    assert (expand(ops), err) == (expected, None)


def test_connect_options_types_like_nats_server():
    co = proto.connect_options
    assert co(b'{"verbose":false,"name":"x","protocol":1,"custom":[1]}') == \
        {"verbose": False, "name": "x", "protocol": 1, "custom": [1]}
    assert co(b'{"Verbose":false,"NO_RESPONDERS":true}') == {"verbose": False, "no_responders": True}
    assert co(b'{"verbose":null,"user":null}') == {}  # null: not given
    for bad in (b'{"verbose":"yes"}', b'{"verbose":1}', b'{"protocol":1.5}', b'{"protocol":"1"}',
                b'{"protocol":true}', b'{"name":5}', b'[]', b'"x"', b'', b'{', b'{} junk'):
        with pytest.raises(ValueError):
            co(bad)


def test_batch_frames_joined_with_a_sid_are_what_append_msgs_makes():
    """codec.nats.batch_frames frames a batch once for every subscription: joined with a sid,
    the pieces are exactly the frames append_msgs makes message by message (MSG, HMSG, with and
    without reply, headers left out for a client without them, sizes past the size-line
    table)."""
    import random

    from edgebus.codec.nats import append_msgs, batch_frames
    rnd = random.Random(7)
    for _ in range(200):
        msgs = []
        for _ in range(rnd.randint(1, 12)):
            hdr = rnd.choice([None, None, b"NATS/1.0\r\nK: v\r\n\r\n"])
            size = rnd.choice([0, 1, 16, 4095, 4096, 70000])
            # a JetStream run carries an ack subject per message
            reply = rnd.choice([None, None, b"$JS.ACK.S.C.1.%d.%d.1700000000000000000.0"
                                % (rnd.randint(1, 9), rnd.randint(1, 9))])
            msgs.append((1, b"s.%d" % rnd.randint(0, 5), reply, hdr,
                         bytes([97 + rnd.randint(0, 5)]) * size))
        for headers in (True, False):
            pieces, total = batch_frames(msgs, headers)
            for sid in (b"1", b"abc"):
                want = bytearray()
                n = sum(append_msgs(want, m[1], sid, m[2], m[3] if headers else None, (m[4],))
                        for m in msgs)
                assert sid.join(pieces) == bytes(want) and total == n


def test_run_frames_are_batch_frames_of_the_same_run():
    """codec.nats.run_frames (a JetStream run kept as parallel lists, Batch.run: one subject, no
    headers, a reply each) makes exactly batch_frames' pieces and count, with and without
    headers, for runs of one message and more, sizes past the size-line table."""
    import random

    from edgebus.codec.nats import batch_frames, run_frames
    rnd = random.Random(11)
    for _ in range(200):
        subject = rnd.choice([b"s", b"orders.eu.%d" % rnd.randint(0, 9), b"a%b"])
        k = rnd.randint(1, 9)
        payloads = [bytes([97 + rnd.randint(0, 5)]) * rnd.choice([0, 1, 16, 4095, 4096, 70000])
                    for _ in range(k)]
        replies = [b"$JS.ACK.S.C.1.%d.%d.1700000000000000000.%d" % (i + 5, i + 1, k - i - 1)
                   for i in range(k)]
        got = run_frames(subject, replies, payloads)
        for headers in (True, False):
            assert got == batch_frames([(None, subject, r, None, d)
                                        for r, d in zip(replies, payloads)], headers)
