"""/varz and /accstatz message counters, side by side with the real nats-server: `in_*` count what
clients published (not the server's own traffic), `out_*` what was sent to clients, and both
outlive the clients that made them."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import nats
import pytest

from conftest import NATS_SERVER, RealNatsServer, flushed, run_async
from edgebus.testing.embedded import EmbeddedServer

pytestmark = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")

FIELDS = ("in_msgs", "in_bytes", "out_msgs", "out_bytes")


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _varz(http: str) -> tuple[int, ...]:
    v = _get(http + "/varz")
    return tuple(v[f] for f in FIELDS)


def _scenario(url: str, http: str) -> list[tuple[int, ...]]:
    """The counters after connect, after 10 PUBs of 2 bytes nobody hears, after 5 more to a
    subscriber (and a request answered by nobody), and after the clients closed."""
    seen: list[tuple[int, ...]] = []

    async def main() -> None:
        pub = await nats.connect(url)
        sub_nc = await nats.connect(url)
        await flushed(pub, sub_nc)
        seen.append(_varz(http))
        for _ in range(10):
            await pub.publish("nobody.listens", b"hi")
        await flushed(pub)
        seen.append(_varz(http))
        sub = await sub_nc.subscribe("counted")
        await flushed(sub_nc)
        for _ in range(5):
            await pub.publish("counted", b"abc")
        await flushed(pub)
        for _ in range(5):
            await sub.next_msg(timeout=5)
        seen.append(_varz(http))
        await pub.close()
        await sub_nc.close()
        seen.append(_varz(http))

    run_async(main)
    return seen


def test_varz_counters_match_nats_server() -> None:
    ref = RealNatsServer().start()
    try:
        want = _scenario(ref.client_url, f"http://127.0.0.1:{ref.http_port}")
    finally:
        ref.stop()
    assert want == [(0, 0, 0, 0), (10, 20, 0, 0), (15, 35, 5, 15), (15, 35, 5, 15)]
    with EmbeddedServer(jetstream=True, http_port=-1) as srv:
        assert _scenario(srv.client_url, srv.http_url) == want


def test_accstatz_counts_what_clients_sent_and_received() -> None:
    with EmbeddedServer(jetstream=True, http_port=-1) as srv:
        async def main() -> None:
            nc = await nats.connect(srv.client_url)
            sub = await nc.subscribe("x")
            js = nc.jetstream()
            await js.add_stream(name="S", subjects=["s.>"])  # API traffic: the server's own
            await nc.publish("x", b"12345")
            await sub.next_msg(timeout=5)
            await nc.close()

        run_async(main)
        stats = _get(srv.http_url + "/accstatz?unused=1")["account_statz"]
        g = next(a for a in stats if a["acc"] == "$G")
        # the client published 2 messages (the stream request and "x") and received 2 (the
        # API reply and "x"); nothing the server said internally is counted
        assert g["received"]["msgs"] == 2 and g["sent"]["msgs"] == 2, g
        v = _get(srv.http_url + "/varz")
        assert (v["in_msgs"], v["out_msgs"]) == (2, 2)
