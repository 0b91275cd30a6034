"""Mirrors and sources across server restarts and origin loss, against edgebus and nats-server.

- A restart (same port, same store) while a mirror and a source are copying loses nothing and
  doubles nothing: the full message lists of origin, mirror and source are compared afterwards.
- A source whose sourced messages were all purged still resumes exactly after a restart.
- An origin deleted under a mirror and a source: both report the error in STREAM.INFO, and once
  the origin is recreated they attach to it again; the source takes the new origin from its
  beginning, the mirror once the new sequences pass its own. Both servers run this scenario at
  the same time, since it waits for their 10 s health checks and retry backoff.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats
import pytest

from conftest import NATS_SERVER, free_port, run_async
from edgebus.testing.embedded import EmbeddedServer
from test_js_sources_helpers import create, eventually, info, messages, run_js, source_fields, view, wait_count, wait_last_seq

KINDS = ["edgebus", "nats-server"]


class Restartable:
    """edgebus or the real nats-server on fixed ports and a store that survives a restart."""

    def __init__(self, kind: str, tmp_path: Any) -> None:
        self.kind = kind
        store = str(tmp_path / f"{kind}-js")
        if kind == "edgebus":
            self.srv: Any = EmbeddedServer(jetstream=True, store_dir=store).start()
            self.url = self.srv.client_url
            return
        if not NATS_SERVER:
            pytest.skip("nats-server binary not installed")
        from test_leaf import Hub  # a real nats-server that restarts on the same ports
        port, http_port = free_port(), free_port()
        self.srv = Hub(f"jetstream {{ store_dir: {json.dumps(store)} }}\n", port=port,
                       http_port=http_port).start()
        self.url = self.srv.client_url

    def restart(self) -> None:
        if self.kind == "edgebus":
            self.srv.restart()
        else:
            self.srv = self.srv.restarted()

    def close(self) -> None:
        if self.kind == "edgebus":
            self.srv.close()
        else:
            self.srv.stop()


@pytest.fixture(params=KINDS)
def restartable(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    r = Restartable(request.param, tmp_path)
    try:
        yield r
    finally:
        r.close()


async def _publish(js: Any, start: int, n: int) -> None:
    acks = [js.publish(f"o.{i % 3}", b"payload-%d" % i, headers={"Nats-Msg-Id": f"id-{i}"})
            for i in range(start, start + n)]
    await asyncio.gather(*acks)


def test_restarts_lose_and_double_nothing(restartable: Restartable) -> None:
    async def setup(nc: Any, js: Any) -> None:
        await create(nc, {"name": "O", "subjects": ["o.>"]})
        await _publish(js, 0, 2000)
        await create(nc, {"name": "M", "mirror": {"name": "O"}})
        await create(nc, {"name": "S", "subjects": ["s"], "sources": [{"name": "O"}]})

        async def started() -> Any:
            return (await info(nc, "S"))["state"]["messages"] > 0
        # ask without pausing: the copy takes a few dozen milliseconds
        await eventually(started, "the source to start copying", interval=0)
    run_js(restartable.url, setup)
    restartable.restart()  # most likely mid-copy: the rest must follow after the restart

    async def more(nc: Any, js: Any) -> None:
        await _publish(js, 2000, 300)
        await js.publish("s", b"local")
    run_js(restartable.url, more)
    restartable.restart()

    async def check(nc: Any, js: Any) -> None:
        await _publish(js, 2300, 100)
        await wait_last_seq(nc, "M", 2400)
        await wait_count(nc, "S", 2401)
        origin = await messages(nc, "O")
        mirror = await messages(nc, "M")
        assert view(mirror, "seq", "subject", "data", "hdrs", "time") == \
            view(origin, "seq", "subject", "data", "hdrs", "time")
        src = [m for m in await messages(nc, "S") if m["subject"] != "s"]
        seqs = [int(source_fields(m)[1]) for m in src]
        assert seqs == list(range(1, 2401))  # in order, each once
        assert [m["data"] for m in src] == [m["data"] for m in origin]
        assert (await info(nc, "S"))["state"]["messages"] == 2401
    run_js(restartable.url, check)


def test_source_resumes_after_its_messages_are_gone(restartable: Restartable) -> None:
    async def setup(nc: Any, js: Any) -> None:
        await create(nc, {"name": "O", "subjects": ["o.>"]})
        await create(nc, {"name": "S", "sources": [{"name": "O"}]})
        await _publish(js, 0, 10)
        await wait_count(nc, "S", 10)
        await js.purge_stream("S")
    run_js(restartable.url, setup)
    restartable.restart()

    async def check(nc: Any, js: Any) -> None:
        await _publish(js, 10, 5)
        await wait_count(nc, "S", 5)
        await js.publish("o.x", b"sentinel")
        await wait_count(nc, "S", 6)
        msgs = await messages(nc, "S")
        assert [int(source_fields(m)[1]) for m in msgs] == [11, 12, 13, 14, 15, 16]
    run_js(restartable.url, check)


# -- the origin goes away and comes back ---------------------------------------------------------

async def _origin_lost_and_recreated(url: str) -> dict[str, Any]:
    nc = await nats.connect(url, allow_reconnect=False)
    js = nc.jetstream()
    try:
        await create(nc, {"name": "O", "subjects": ["o.>"]})
        await create(nc, {"name": "M", "mirror": {"name": "O"}})
        await create(nc, {"name": "S", "sources": [{"name": "O"}]})
        for i in range(3):
            await js.publish("o.old", b"old%d" % i)
        await wait_last_seq(nc, "M", 3)
        await wait_count(nc, "S", 3)
        await js.delete_stream("O")

        async def errors() -> Any:
            m, s = (await info(nc, "M"))["mirror"], (await info(nc, "S"))["sources"][0]
            if "error" in m and "error" in s:
                return m["error"], s["error"]
            return None
        merr, serr = await eventually(errors, "mirror and source to report the lost origin", 40)

        await create(nc, {"name": "O", "subjects": ["o.>"]})

        async def reattached() -> Any:
            # a consumer on the new origin delivers to us again: no error, recent activity
            m, s = (await info(nc, "M"))["mirror"], (await info(nc, "S"))["sources"][0]
            return all("error" not in x and 0 <= x["active"] < 5_000_000_000 for x in (m, s))
        await eventually(reattached, "mirror and source to attach to the new origin", 40)
        for i in range(4):
            await js.publish("o.new", b"new%d" % i)

        async def recovered() -> Any:
            mi, si = await info(nc, "M"), await info(nc, "S")
            done = mi["state"]["last_seq"] >= 4 and si["state"]["messages"] >= 7
            return (mi, si) if done else None
        mi, si = await eventually(recovered, "mirror and source to take the new messages")
        return {"merr": merr, "serr": serr, "mirror": await messages(nc, "M"),
                "source": await messages(nc, "S"), "mi": mi, "si": si}
    finally:
        await nc.close()


def test_origin_deleted_then_recreated(tmp_path: Any) -> None:
    if not NATS_SERVER:
        pytest.skip("nats-server binary not installed")
    edge = Restartable("edgebus", tmp_path)
    real = Restartable("nats-server", tmp_path)
    try:
        async def both() -> list[dict[str, Any]]:
            return list(await asyncio.gather(_origin_lost_and_recreated(edge.url),
                                             _origin_lost_and_recreated(real.url)))
        results = run_async(both, timeout=90)
    finally:
        edge.close()
        real.close()
    for r in results:
        assert r["merr"]["err_code"] == r["serr"]["err_code"] == 10059  # stream not found
        # the source starts over on the new origin: nothing of it lost
        assert [m["data"] for m in r["source"]] == [b"old0", b"old1", b"old2",
                                                    b"new0", b"new1", b"new2", b"new3"]
        assert [source_fields(m)[1] for m in r["source"]] == ["1", "2", "3", "1", "2", "3", "4"]
        # the mirror keeps its sequences: the new origin's 1-3 are behind it, 4 follows
        assert view(r["mirror"], "seq", "data") == [(1, b"old0"), (2, b"old1"), (3, b"old2"), (4, b"new3")]
    edge_r, real_r = results
    assert edge_r["merr"] == real_r["merr"] and edge_r["serr"] == real_r["serr"]
