"""Consumers, KV and pull requests through a JetStream domain (`$JS.<domain>.API.…`), against
edgebus and the real nats-server configured with `jetstream { domain: hub }`."""

from __future__ import annotations

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from js.jshelpers import JSServer, run, start_server, stop_server


@pytest.fixture(params=["edgebus", "nats-server"])
def srv(request: pytest.FixtureRequest, tmp_path) -> JSServer:
    s = start_server(request.param, tmp_path, js_extra="domain: hub")
    try:
        yield s
    finally:
        stop_server(s)


def test_consumers_and_kv_through_domain(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc = await nats.connect(url)
        js = nc.jetstream(domain="hub")
        await js.add_stream(name="S", subjects=["foo.>"])
        ack = await js.publish("foo.1", b"one")
        assert ack.domain == "hub"
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT))
        psub = await js.pull_subscribe_bind("D", "S")
        (m,) = await psub.fetch(1, timeout=2)
        assert m.data == b"one" and m.metadata.domain is None   # v1 ack subjects carry no domain
        await m.ack_sync()
        info = await js.consumer_info("S", "D")
        assert info.ack_floor.stream_seq == 1
        kv = await js.create_key_value(bucket="B")
        await kv.put("k", b"v")
        assert (await kv.get("k")).value == b"v"
        w = await kv.watchall()
        e = await w.updates(timeout=5)
        assert (e.key, e.value) == ("k", b"v")
        await nc.close()

    run(main, srv.url)
