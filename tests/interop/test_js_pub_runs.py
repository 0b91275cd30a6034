"""A pipelining publisher's run of plain PUBs (one subject, one reply, no headers) reaches a
stream as one run (jetstream/stream.py `_ingest_run`: one `store_run`, the PubAcks made in
one loop). It must answer and store exactly what the same publishes sent one at a time do:
PubAck bodies and order, errors, stored messages, limits (discard old stays on the run path;
discard new, per-subject limits and max_msg_size take the general one), with stamps distinct
and ascending. Both storage kinds."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from edgebus.core.clock import parse_rfc3339
from edgebus.jetstream.store.core import StoreCore

pytestmark = [pytest.mark.trio, pytest.mark.edgebus(jetstream=True)]


def _frames() -> list[tuple[bytes, bool]]:
    """(frame, asks for a reply)."""
    hdr = b"NATS/1.0\r\nX: y\r\n\r\n"
    out: list[tuple[bytes, bool]] = []
    for r in range(5):
        out += [(b"PUB p.a _INBOX.a 2\r\n%02d\r\n" % i, True) for i in range(30 + 7 * r)]
        out.append((b"HPUB p.b _INBOX.a %d %d\r\n%shh\r\n" % (len(hdr), len(hdr) + 2, hdr), True))
        out += [(b"PUB p.c _INBOX.a 3\r\nccc\r\n", True)] * 9
        out += [(b"PUB p.d 2\r\nnn\r\n", False)] * 6  # no reply asked
        out.append((b"PUB p.a _INBOX.a 1\r\nz\r\n", True))
    return out


async def _until(s: trio.SocketStream, buf: bytearray, token: bytes) -> None:
    while token not in buf:
        buf += await s.receive_some(65536)
    del buf[:buf.index(token) + len(token)]


async def _replies(s: trio.SocketStream, buf: bytearray, n: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < n:
        i = buf.find(b"MSG ")
        j = buf.find(b"\r\n", i) if i >= 0 else -1
        if j >= 0:
            size = int(bytes(buf[i:j]).split()[-1])
            if len(buf) >= j + 2 + size + 2:
                out.append(json.loads(bytes(buf[j + 2:j + 2 + size])))
                del buf[:j + 2 + size + 2]
                continue
        buf += await s.receive_some(65536)
    return out


CONFIGS = [
    {},
    {"max_msgs": 50},
    {"max_bytes": 2500},
    {"max_msgs": 60, "discard": "new"},
    {"max_msgs_per_subject": 5},
    {"max_msg_size": 2},
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=range(len(CONFIGS)))
@pytest.mark.parametrize("storage", ["file", "memory"])
async def test_a_run_of_pubs_answers_and_stores_as_one_at_a_time(
        edgebus_trio_server: Any, storage: str, cfg: dict[str, Any], monkeypatch: Any) -> None:
    srv = edgebus_trio_server
    c = await srv.connect()
    frames = _frames()
    stored_by_run = [0]
    orig = StoreCore.store_run

    def counting(self: Any, *a: Any) -> Any:
        r = orig(self, *a)
        stored_by_run[0] += r[0]
        return r

    monkeypatch.setattr(StoreCore, "store_run", counting)

    async def run(together: bool) -> tuple[list[Any], list[Any], list[int]]:
        body = {"name": "P", "subjects": ["p.>"], "storage": storage, **cfg}
        r = await c.request("$JS.API.STREAM.CREATE.P", json.dumps(body).encode())
        assert "error" not in json.loads(r.data), r.data
        s = await trio.open_tcp_stream("127.0.0.1", srv.port)
        buf = bytearray()
        await _until(s, buf, b"\r\n")  # INFO
        await s.send_all(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\nSUB _INBOX.a 1\r\nPING\r\n')
        await _until(s, buf, b"PONG\r\n")
        acks: list[Any] = []
        if together:
            await s.send_all(b"".join(f for f, _ in frames))
            acks = await _replies(s, buf, sum(1 for _, r in frames if r))
        else:
            for f, want in frames:
                if want:
                    await s.send_all(f)
                    acks += await _replies(s, buf, 1)
                else:
                    await s.send_all(f + b"PING\r\n")
                    await _until(s, buf, b"PONG\r\n")
        await s.aclose()
        info = json.loads((await c.request("$JS.API.STREAM.INFO.P", b"")).data)["state"]
        msgs: list[Any] = []
        stamps: list[int] = []
        for seq in range(info["first_seq"], info["last_seq"] + 1):
            r = await c.request("$JS.API.STREAM.MSG.GET.P", json.dumps({"seq": seq}).encode())
            m = json.loads(r.data).get("message")
            if m is not None:
                msgs.append((m["seq"], m["subject"], m.get("data"), m.get("hdrs")))
                stamps.append(parse_rfc3339(m["time"]))
        await c.request("$JS.API.STREAM.DELETE.P", b"")
        return acks, [info["messages"], info["bytes"], info["first_seq"], info["last_seq"], msgs], stamps

    alone = await run(False)
    assert stored_by_run[0] == 0  # one at a time: no runs
    together = await run(True)
    assert together[:2] == alone[:2]
    assert len(set(together[2])) == len(together[2]) and together[2] == sorted(together[2])
    general = "discard" in cfg or "max_msgs_per_subject" in cfg
    if general:
        assert stored_by_run[0] == 0
    else:
        assert stored_by_run[0] > len(frames) // 2
    await c.close()
