"""Sourcing across JetStream domains over a leaf link: edgebus (domain "edge", the leaf) sources
and mirrors streams of a real nats-server hub (domain "hub") with `external: {api:
"$JS.hub.API"}`, and the hub sources an edgebus stream the same way.

Everything crosses as plain messages: the consumer-create request and its `$JSC.R.` reply,
the deliveries on `$JS.S.` / `$JS.M.` subjects, heartbeats and flow-control replies (enough
data is sent for flow control to kick in). A leaf link that drops and comes back (hub
restart), and a restart of the leaf itself, have the sourcing resume without loss or duplicates.
"""

from __future__ import annotations

from typing import Any

import nats
import pytest

from conftest import NATS_SERVER, run_async
from edgebus.jetstream.config import server_hash
from test_js_sources_helpers import (
    create,
    eventually,
    info,
    messages,
    source_fields,
    view,
    wait_count,
    wait_last_seq,
)
from test_leaf import Hub, connected, edge_waits, hub_waits
from test_leaf_js import domains  # noqa: F401  (hub domain "hub" + edgebus leaf domain "edge")

pytestmark = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")

EXT_HUB = {"api": "$JS.hub.API", "deliver": ""}
EXT_EDGE = {"api": "$JS.edge.API", "deliver": ""}
BIG = b"x" * 8192  # 300 of these pass the 1 MiB flow-control threshold




def test_edgebus_sources_and_mirrors_a_hub_stream(domains: Any) -> None:
    hub, leaf = domains

    async def go() -> None:
        h = await nats.connect(hub.client_url)
        hjs = h.jetstream()
        e = await nats.connect(leaf.client_url)
        await hjs.add_stream(name="ORDERS", subjects=["orders.>"], allow_direct=True)
        for i in range(5):
            await hjs.publish(f"orders.{i % 2}", b"o%d" % i, headers={"Nats-Msg-Id": f"o{i}"})
        await edge_waits(leaf, "$JS.hub.API.CONSUMER.>")
        r = await create(e, {"name": "LOCAL", "subjects": ["local"],
                             "sources": [{"name": "ORDERS", "external": EXT_HUB}]})
        assert r["sources"] == [{"name": "ORDERS", "external": EXT_HUB, "lag": 0, "active": -1}]
        await create(e, {"name": "COPY", "mirror": {"name": "ORDERS", "external": EXT_HUB}})
        await create(e, {"name": "ONLY1", "mirror": {"name": "ORDERS", "external": EXT_HUB,
                                                      "filter_subject": "orders.1"}})
        await wait_count(e, "LOCAL", 5)
        await wait_last_seq(e, "COPY", 5)

        for i in range(5, 305):  # flow control round trips across the link
            await hjs.publish(f"orders.{i % 2}", BIG + b"%d" % i)
        await wait_count(e, "LOCAL", 305, timeout=30)
        copy = await wait_last_seq(e, "COPY", 305, timeout=30)
        await wait_last_seq(e, "ONLY1", 304, timeout=30)

        origin = await messages(h, "ORDERS")
        assert view(await messages(e, "COPY"), "seq", "subject", "data", "hdrs", "time") == \
            view(origin, "seq", "subject", "data", "hdrs", "time")
        assert [m["seq"] for m in await messages(e, "ONLY1")] == list(range(2, 305, 2))
        local = await messages(e, "LOCAL")
        assert [m["data"] for m in local] == [m["data"] for m in origin]
        iname = "ORDERS:" + server_hash("$JS.hub.API")
        assert [source_fields(m) for m in local] == \
            [[iname, str(m["seq"]), ">", ">", m["subject"]] for m in origin]
        # the hub told us its stream identity: it ends each header (nats-server 2.14+)
        assert len(local[0]["hdrs"]["Nats-Stream-Source"].split(" ")) == 6

        assert copy["mirror"]["external"] == EXT_HUB and copy["mirror"]["lag"] == 0
        si = (await info(e, "LOCAL"))["sources"][0]
        assert si["external"] == EXT_HUB and "error" not in si
        await h.close()
        await e.close()
    run_async(go, timeout=60)


def test_hub_sources_an_edgebus_stream(domains: Any) -> None:
    hub, leaf = domains

    async def go() -> None:
        h = await nats.connect(hub.client_url)
        e = await nats.connect(leaf.client_url)
        ejs = e.jetstream()
        await ejs.add_stream(name="SENSORS", subjects=["sensors.>"])
        for i in range(20):
            await ejs.publish(f"sensors.{i % 4}", b"s%d" % i)
        await hub_waits(hub, "$JS.edge.API.>")
        await create(h, {"name": "CENTRAL", "sources": [{"name": "SENSORS", "external": EXT_EDGE}]})
        await create(h, {"name": "BACKUP", "mirror": {"name": "SENSORS", "external": EXT_EDGE}})
        await wait_count(h, "CENTRAL", 20, timeout=30)
        await wait_last_seq(h, "BACKUP", 20, timeout=30)
        origin = await messages(e, "SENSORS")
        assert view(await messages(h, "BACKUP"), "seq", "subject", "data", "time") == \
            view(origin, "seq", "subject", "data", "time")
        central = await messages(h, "CENTRAL")
        assert [source_fields(m)[1] for m in central] == [str(i) for i in range(1, 21)]
        await h.close()
        await e.close()
    run_async(go, timeout=60)


def test_leaf_link_drop_resumes_sourcing(domains: Any) -> None:
    hub, leaf = domains

    async def go() -> Hub:
        h = await nats.connect(hub.client_url)
        hjs = h.jetstream()
        await hjs.add_stream(name="ORDERS", subjects=["orders.>"])
        for i in range(10):
            await hjs.publish("orders.a", b"%d" % i)
        e = await nats.connect(leaf.client_url)
        await edge_waits(leaf, "$JS.hub.API.CONSUMER.>")
        await create(e, {"name": "LOCAL", "sources": [{"name": "ORDERS", "external": EXT_HUB}]})
        await create(e, {"name": "COPY", "mirror": {"name": "ORDERS", "external": EXT_HUB}})
        await wait_count(e, "LOCAL", 10)
        await wait_last_seq(e, "COPY", 10)
        await h.close()
        await e.close()
        return hub

    run_async(go)
    hub2 = hub.restarted()  # the link drops; the hub keeps its store and comes back
    try:
        connected(leaf)

        async def after() -> None:
            h = await nats.connect(hub2.client_url)
            hjs = h.jetstream()
            for i in range(10, 20):
                await hjs.publish("orders.a", b"%d" % i)
            e = await nats.connect(leaf.client_url)
            # the reconnecting link re-kicks the idle consumers: no 10 s health check needed
            await wait_count(e, "LOCAL", 20, timeout=30)
            await wait_last_seq(e, "COPY", 20, timeout=30)
            local = await messages(e, "LOCAL")
            assert [m["data"] for m in local] == [b"%d" % i for i in range(20)]
            assert view(await messages(e, "COPY"), "seq", "data") == [(i + 1, b"%d" % i) for i in range(20)]

            async def healthy() -> Any:
                si = await info(e, "LOCAL")
                return "error" not in si["sources"][0]
            await eventually(healthy, "the source to be healthy again")
            await h.close()
            await e.close()
        run_async(after, timeout=60)

        leaf.restart()  # now the leaf: it resumes from its own store once the link is back
        connected(leaf)

        async def after_leaf_restart() -> None:
            h = await nats.connect(hub2.client_url)
            hjs = h.jetstream()
            for i in range(20, 25):
                await hjs.publish("orders.a", b"%d" % i)
            e = await nats.connect(leaf.client_url)
            await wait_count(e, "LOCAL", 25, timeout=30)
            await wait_last_seq(e, "COPY", 25, timeout=30)
            assert [m["data"] for m in await messages(e, "LOCAL")] == [b"%d" % i for i in range(25)]
            assert [m["data"] for m in await messages(e, "COPY")] == [b"%d" % i for i in range(25)]
            await h.close()
            await e.close()
        run_async(after_leaf_restart, timeout=60)
    finally:
        hub2.stop()
