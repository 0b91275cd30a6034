"""Stored timestamps stay ascending when the clock does not move: a NATS client's read of
publishes is stamped once and then a nanosecond a message (jetstream/stream.py), and a second
read at the same instant (MockClock, no time passing) must go on from there, not start over
below the first read's stamps. Both storage kinds."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from edgebus.core.clock import parse_rfc3339

pytestmark = [pytest.mark.trio, pytest.mark.edgebus(jetstream=True)]


async def _line(stream: trio.SocketStream, buf: bytearray, token: bytes) -> None:
    while token not in buf:
        buf += await stream.receive_some(65536)
    del buf[:buf.index(token) + len(token)]


@pytest.mark.parametrize("storage", ["file", "memory"])
async def test_reads_at_one_instant_get_ascending_stamps(edgebus_trio_server: Any,
                                                         mock_clock: Any, storage: str) -> None:
    srv = edgebus_trio_server
    c = await srv.connect()
    js = c.jetstream()
    await js.add_stream("T", ["t.>"], storage=storage)
    s = await trio.open_tcp_stream("127.0.0.1", srv.port)
    buf = bytearray()
    await _line(s, buf, b"\r\n")  # INFO
    await s.send_all(b'CONNECT {"verbose":false}\r\nSUB _INBOX.a 1\r\nPING\r\n')
    await _line(s, buf, b"PONG\r\n")
    t0 = trio.current_time()
    for _ in range(3):  # three reads, each several publishes (PubAcks asked for)
        await s.send_all(b"".join(b"PUB t.%d _INBOX.a 1\r\nx\r\n" % i for i in range(5))
                         + b"PING\r\n")
        await _line(s, buf, b"PONG\r\n")
    assert trio.current_time() == t0  # the clock did not move
    stamps = []
    for seq in range(1, 16):
        r = await c.request("$JS.API.STREAM.MSG.GET.T", json.dumps({"seq": seq}).encode())
        stamps.append(parse_rfc3339(json.loads(r.data)["message"]["time"]))
    assert len(set(stamps)) == 15 and stamps == sorted(stamps), stamps
    await s.aclose()
