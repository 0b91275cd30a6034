"""The sans-IO leaf codec (edgebus/codec/leaf.py) against bytes recorded from nats-server.

The transcripts in protocols/leaf/transcripts/ were recorded by protocols/leaf/record.py with
the real nats-server 2.15.1 on one end of the link. Every read is parsed here byte by byte and
whole; every LS+/LS-/LMSG/HMSG/PING/PONG/-ERR that nats-server sent is serialized again and must
come out byte for byte as nats-server wrote it. Plus the argument forms and errors of
nats-server's leaf parsers.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from edgebus.codec import leaf as L
from edgebus.codec.nats import ProtocolError

TRANSCRIPTS = Path(__file__).resolve().parents[2] / "protocols" / "leaf" / "transcripts"


def load(name: str) -> list[tuple[str, bytes]]:
    out = []
    for line in (TRANSCRIPTS / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        tag, _, lit = line.partition(" ")
        out.append((tag, ast.literal_eval(lit)))
    return out


def stream(name: str, tag: str) -> bytes:
    return b"".join(d for t, d in load(name) if t == tag)


def serialize(op: tuple) -> bytes:
    code = op[0]
    if code == L.OP_LSUB:
        return L.ls_plus(op[1], op[2], op[3])
    if code == L.OP_LUNSUB:
        return L.ls_minus(op[1], op[2])
    if code == L.OP_LMSG:
        return L.lmsg(op[1], op[2], op[3], op[4], op[5])
    if code == L.OP_PING:
        return L.PING
    if code == L.OP_PONG:
        return L.PONG
    if code == L.OP_ERR:
        return L.err_frame(op[1].decode())
    raise AssertionError(op)


def strip_json_ops(data: bytes) -> bytes:
    """The stream without its INFO and CONNECT lines (JSON is compared as JSON)."""
    return b"".join(ln for ln in data.splitlines(keepends=True)
                    if not ln.startswith((b"INFO ", b"CONNECT ")))


@pytest.mark.parametrize("name,tag", [("hub-nats-server.txt", "H>L"),
                                      ("leaf-nats-server.txt", "L>H"),
                                      ("hub-auth-refused.txt", "H>L")])
def test_real_server_bytes_parse_and_reserialize_exactly(name, tag):
    data = stream(name, tag)
    whole = L.LeafParser().feed(data)
    p = L.LeafParser()
    bytewise: list[tuple] = []
    for i in range(len(data)):
        bytewise += p.feed(data[i:i + 1])
    assert bytewise == whole and p.buf == b""
    rest = [op for op in whole if op[0] not in (L.OP_INFO, L.OP_CONNECT)]
    assert b"".join(serialize(op) for op in rest) == strip_json_ops(data)


def test_hub_handshake_shape():
    ops = L.LeafParser().feed(stream("hub-nats-server.txt", "H>L"))
    first = json.loads(ops[0][1])
    assert ops[0][0] == L.OP_INFO and first["client_id"] and "leafnode_urls" in first
    assert first["info_on_connect"] and first["auth_required"] and first["nonce"]
    second = json.loads(ops[1][1])
    assert second["connect_info"] and second["remote_account"] == "$G" and "nonce" not in second
    subs = [op[1] for op in ops if op[0] == L.OP_LSUB]
    assert any(s.startswith(b"$LDS.") for s in subs)
    msgs = [op for op in ops if op[0] == L.OP_LMSG]
    # plain, with headers, queue-only and reply-plus-queue forms, as the hub sent them
    assert (b"foo", None, None, None, b"hi") == msgs[0][1:]
    assert msgs[1][4] == b"NATS/1.0\r\nX: 1\r\n\r\n" and msgs[1][5] == b"with headers"
    assert msgs[2][1:4] == (b"bar", None, [b"q"])
    assert msgs[3][1] == b"bar" and msgs[3][2].startswith(b"_INBOX.") and msgs[3][3] == [b"q"]


def test_leaf_connect_shape():
    ops = L.LeafParser().feed(stream("leaf-nats-server.txt", "L>H"))
    assert ops[0][0] == L.OP_CONNECT
    c = json.loads(ops[0][1])
    assert c["name"] == "NLEAF" and c["remote_account"] == "$G" and "lang" not in c


def test_refused_password():
    ops = L.LeafParser().feed(stream("hub-auth-refused.txt", "H>L"))
    assert ops[-1] == (L.OP_ERR, b"Authorization Violation")


def test_argument_forms():
    p = L.LeafParser()
    ops = p.feed(b"LS+ a.b\r\nLS+ a.* grp 3\r\nls- a.*  grp\r\nLMSG s r 1\r\nx\r\n"
                 b"LMSG s | q1 q2 0\r\n\r\nLMSG s + r q1 2\r\nxy\r\n"
                 b"HMSG s 12 12\r\nNATS/1.0\r\n\r\n\r\nhmsg s + r q 12 14\r\nNATS/1.0\r\n\r\nok\r\n"
                 b"+OK\r\n-ERR 'Loop detected'\r\n")
    assert ops == [
        (L.OP_LSUB, b"a.b", None, 1), (L.OP_LSUB, b"a.*", b"grp", 3), (L.OP_LUNSUB, b"a.*", b"grp"),
        (L.OP_LMSG, b"s", b"r", None, None, b"x"), (L.OP_LMSG, b"s", None, [b"q1", b"q2"], None, b""),
        (L.OP_LMSG, b"s", b"r", [b"q1"], None, b"xy"),
        (L.OP_LMSG, b"s", None, None, b"NATS/1.0\r\n\r\n", b""),
        (L.OP_LMSG, b"s", b"r", [b"q"], b"NATS/1.0\r\n\r\n", b"ok"),
        (L.OP_OK,), (L.OP_ERR, b"Loop detected")]
    assert L.lmsg(b"s", b"r", [b"q1", b"q2"], None, b"xy") == b"LMSG s + r q1 q2 2\r\nxy\r\n"
    assert L.lmsg(b"s", None, None, b"NATS/1.0\r\n\r\n", b"ok") == b"HMSG s 12 14\r\nNATS/1.0\r\n\r\nok\r\n"
    assert L.ls_plus(b"x", b"q", 7) == b"LS+ x q 7\r\n" and L.ls_minus(b"x") == b"LS- x\r\n"


@pytest.mark.parametrize("data,err", [
    (b"LMSG s x 1 2\r\n", None),                  # bad reply indicator
    (b"LMSG s\r\n", None),                        # no size
    (b"HMSG s 5 3\r\n", None),                    # header larger than total
    (b"LS+ a q\r\n", None),                       # queue without weight
    (b"MSG s 1 1\r\nx\r\n", "Unknown Protocol Operation"),
    (b"LMSG s 3\r\nabcd\r\n", "Unknown Protocol Operation"),  # payload not followed by CRLF
    (b"LMSG s 2000000\r\n", "Maximum Payload Violation"),
])
def test_errors(data, err):
    with pytest.raises(ProtocolError) as ei:
        L.LeafParser(max_payload=1024 * 1024).feed(data)
    assert ei.value.err == err


def test_control_line_limit_is_sixteen_times_the_client_one():
    p = L.LeafParser(max_control_line=16)
    assert p.feed(b"LS+ " + b"a" * 200 + b"\r\n")[0][1] == b"a" * 200
    with pytest.raises(ProtocolError):
        L.LeafParser(max_control_line=16).feed(b"LS+ " + b"a" * 300)
