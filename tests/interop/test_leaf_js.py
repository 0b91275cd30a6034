"""JetStream domains across the leaf link (hub domain "hub" on a real nats-server, leaf domain
"edge" on edgebus), as nats-server maps `$JS.<domain>.API.>`.

A hub client reaches the leaf's JetStream with `jetstream(domain="edge")`: create a stream,
publish with acks, read it back by sequence and through a pull consumer (whose deliveries cross
the link on the request's inbox). A leaf client does the same with the hub's JetStream. The
plain `$JS.API.>` stays private on each side.
"""

from __future__ import annotations

import json
import os

import nats
import pytest

from conftest import NATS_SERVER, free_port, run_async
from edgebus.testing.embedded import EmbeddedServer
from test_leaf import Hub, connected, edge_waits, hub_waits, leaf_conf

pytestmark = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")


def _edgebus_jetstream() -> bool:
    import importlib.util
    return importlib.util.find_spec("edgebus.jetstream.service") is not None


@pytest.fixture
def domains(tmp_path):
    if not _edgebus_jetstream():
        pytest.skip("edgebus JetStream is not available in this build")
    lp = free_port()
    store = json.dumps(os.path.join(str(tmp_path), "hub-js"))
    hub = Hub(f'server_name: HUB\njetstream {{ domain: hub, store_dir: {store} }}\n'
              f'leafnodes {{ listen: "127.0.0.1:{lp}" }}\n').start()
    leaf = EmbeddedServer(config=leaf_conf(lp, extra="jetstream { domain: edge }"),
                          jetstream=True, store_dir=str(tmp_path / "edge-js")).start()
    try:
        connected(leaf)
        yield hub, leaf
    finally:
        leaf.close()
        hub.stop()


def test_hub_client_uses_leaf_jetstream_by_domain(domains):
    hub, leaf = domains

    async def go():
        await hub_waits(hub, "$JS.edge.API.>")
        h = await nats.connect(hub.client_url)
        js = h.jetstream(domain="edge")
        si = await js.add_stream(name="ORDERS", subjects=["orders.>"])
        assert si.config.name == "ORDERS"
        await hub_waits(hub, "orders.>")  # the stream's interest crossed back to the hub
        for i in range(5):
            ack = await js.publish(f"orders.{i}", b"o%d" % i)
            assert (ack.stream, ack.seq, ack.domain) == ("ORDERS", i + 1, "edge")
        info = await js.stream_info("ORDERS")
        assert info.state.messages == 5
        assert (await js.get_msg("ORDERS", 3)).data == b"o2"
        psub = await js.pull_subscribe("orders.>", "reader", stream="ORDERS")
        msgs = await psub.fetch(5, timeout=5)
        assert [(m.subject, m.data) for m in msgs] == [(f"orders.{i}", b"o%d" % i) for i in range(5)]
        for m in msgs:
            await m.ack_sync()
        ci = await js.consumer_info("ORDERS", "reader")
        assert ci.num_ack_pending == 0 and ci.delivered.stream_seq == 5
        # the hub's own JetStream does not see the leaf's stream
        with pytest.raises(nats.js.errors.NotFoundError):
            await h.jetstream().stream_info("ORDERS")
        await h.close()
    run_async(go)


def test_leaf_client_uses_hub_jetstream_by_domain(domains):
    hub, leaf = domains

    async def go():
        await edge_waits(leaf, "$JS.hub.API.STREAM.>")  # nats-server announces each mapping
        e = await nats.connect(leaf.client_url)
        js = e.jetstream(domain="hub")
        await js.add_stream(name="CENTRAL", subjects=["central.>"])
        await edge_waits(leaf, "central.>")
        ack = await js.publish("central.a", b"c1")
        assert (ack.stream, ack.seq, ack.domain) == ("CENTRAL", 1, "hub")
        psub = await js.pull_subscribe("central.>", "r", stream="CENTRAL")
        (m,) = await psub.fetch(1, timeout=5)
        assert (m.subject, m.data) == ("central.a", b"c1")
        await m.ack_sync()
        with pytest.raises(nats.js.errors.NotFoundError):
            await e.jetstream().stream_info("CENTRAL")
        await e.close()
    run_async(go)
