"""A `no_wait` pull request with `expires` and `idle_heartbeat` that stalls on
`max_ack_pending`, side by side with nats-server: it ends with `404 No Messages` at its first
heartbeat tick (not heartbeats until it expires, then 408), and the messages freed by later acks
land in the next such request."""

from __future__ import annotations

from typing import Any

import nats
import pytest

from conftest import NATS_SERVER
from js.jshelpers import api, pull, run, start_server, status_of, stop_server

# heartbeat 0.25 s, expiry 10 s: a request left open would take the whole 10 s and end in 408
REQ = {"batch": 5, "no_wait": True, "expires": 10_000_000_000, "idle_heartbeat": 250_000_000}


def _show(msgs: list[Any]) -> list[str]:
    out = []
    for m in msgs:
        st = status_of(m)
        out.append(f"{st[0]} {st[1]}" if st else m.data.decode())
    return out


async def _scenario(url: str) -> list[Any]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="S", subjects=["s.>"])
    await api(nc, "CONSUMER.CREATE.S.C", {"stream_name": "S", "config": {
        "durable_name": "C", "ack_policy": "explicit", "max_ack_pending": 2}})
    for i in range(5):
        await js.publish("s.x", b"m%d" % i)
    first = await pull(nc, "S", "C", REQ, timeout=30)
    for m in first:
        if status_of(m) is None:
            await nc.request(m.reply, b"+ACK", timeout=10)  # a reply: the ack is processed
    second = await pull(nc, "S", "C", REQ, timeout=30)
    info = await api(nc, "CONSUMER.INFO.S.C")
    await nc.close()
    return [_show(first), _show(second),
            {k: info[k] for k in ("num_ack_pending", "num_pending", "num_waiting")}]


@pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")
def test_no_wait_request_stalled_on_max_ack_pending(tmp_path) -> None:
    results = {}
    for kind in ("nats-server", "edgebus"):
        srv = start_server(kind, tmp_path / kind)
        try:
            results[kind] = run(_scenario, srv.url, timeout=60)
        finally:
            stop_server(srv)
    assert results["edgebus"] == results["nats-server"]
    assert results["nats-server"] == [["m0", "m1", "404 No Messages"], ["m2", "m3", "404 No Messages"],
                                      {"num_ack_pending": 2, "num_pending": 1, "num_waiting": 0}]
