"""Consumers across broken connections and server restarts (edgebus: `drop_client`, `restart`).

An ordered consumer must carry on, in order and without gaps, after its connection is cut
while messages keep arriving; durable consumers keep their position across a restart and a
reconnecting client keeps fetching from them.
"""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from js.jshelpers import run

pytestmark = pytest.mark.edgebus(jetstream=True)


def test_ordered_consumer_recovers_after_dropped_connection(edgebus_server) -> None:
    srv = edgebus_server

    async def main() -> None:
        pub = await nats.connect(srv.client_url, name="pub")
        sub_nc = await nats.connect(srv.client_url, name="sub", reconnect_time_wait=0.1,
                                    max_reconnect_attempts=-1)
        js = pub.jetstream()
        await js.add_stream(name="S", subjects=["foo.>"])
        for i in range(10):
            await js.publish("foo.x", b"%d" % i)
        sjs = sub_nc.jetstream()
        sub = await sjs.subscribe("foo.>", ordered_consumer=True, idle_heartbeat=0.3)
        seen = [(await sub.next_msg(3)).metadata.sequence.stream for _ in range(10)]

        # cut the subscriber's connection while messages keep coming
        dropped = await asyncio.get_running_loop().run_in_executor(None, lambda: srv.drop_client(name="sub"))
        assert dropped == 1
        for i in range(10, 30):
            await js.publish("foo.x", b"%d" % i)
        for _ in range(20):
            m = await sub.next_msg(10)
            seen.append(m.metadata.sequence.stream)
        assert seen == list(range(1, 31))
        await js.publish("foo.x", b"after")
        assert (await sub.next_msg(5)).data == b"after"
        await sub_nc.close()
        await pub.close()

    run(main, timeout=60)


def test_durable_pull_and_push_survive_restart_with_reconnecting_client(edgebus_server) -> None:
    srv = edgebus_server

    async def main() -> None:
        nc = await nats.connect(srv.client_url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
        js = nc.jetstream()
        await js.add_stream(name="S", subjects=["foo.>"])
        for i in range(6):
            await js.publish("foo.x", b"%d" % i)
        await js.add_consumer("S", ConsumerConfig(durable_name="PULL", ack_policy=AckPolicy.EXPLICIT))
        await js.add_consumer("S", ConsumerConfig(durable_name="PUSH", ack_policy=AckPolicy.EXPLICIT,
                                                  deliver_subject="push.inbox"))
        psub = await js.pull_subscribe_bind("PULL", "S")
        for m in await psub.fetch(3, timeout=2):
            await m.ack_sync()
        push = await nc.subscribe("push.inbox")
        for _ in range(2):
            m = await push.next_msg(2)
            await m.ack_sync()

        await asyncio.get_running_loop().run_in_executor(None, srv.restart)

        async def info_ok() -> object:
            try:
                return await js.consumer_info("S", "PULL")
            except Exception:
                return None
        for _ in range(100):
            info = await info_ok()
            if info:
                break
            await asyncio.sleep(0.1)
        assert info.ack_floor.stream_seq == 3 and info.num_pending == 3
        ms = await psub.fetch(3, timeout=3)
        assert [m.data for m in ms] == [b"3", b"4", b"5"]
        # deliveries made before the restart can still be acked after it (pending was restored)
        got = []
        while len(got) < 4:
            m = await push.next_msg(5)
            got.append(m.data)
            await m.ack()
        assert got == [b"2", b"3", b"4", b"5"]
        await nc.close()

    run(main, timeout=60)
