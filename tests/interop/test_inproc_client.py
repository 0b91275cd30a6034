"""The public in-process client (`await server.connect()`) in virtual time.

Everything runs in the test's trio loop under `autojump_clock`: MaxAge, AckWait redelivery, TTLs
and KV history over minutes or hours of trio time, for file streams (nats-server's default, the
store doing real disk I/O) and memory streams alike.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from edgebus.client import JetStreamError, NoRespondersError

pytestmark = [pytest.mark.trio, pytest.mark.edgebus(jetstream=True)]
STORAGES = pytest.mark.parametrize("storage", ["file", "memory"])


async def test_publish_subscribe_headers_request(edgebus_trio_server: Any) -> None:
    async with await edgebus_trio_server.connect() as nc:
        sub = await nc.subscribe("greet.*")
        await nc.publish("greet.joe", b"hello", headers={"X-Id": "7"})
        msg = await sub.next_msg()
        assert (msg.subject, msg.data, msg.headers) == ("greet.joe", b"hello", {"X-Id": "7"})

        async def responder(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            sub = await nc.subscribe("svc.echo", queue="q")
            task_status.started()
            async for req in sub:
                await req.respond(req.data.upper())

        async with trio.open_nursery() as n:
            await n.start(responder)
            assert (await nc.request("svc.echo", b"abc")).data == b"ABC"
            n.cancel_scope.cancel()
        with pytest.raises(NoRespondersError):
            await nc.request("nobody.home", b"")


async def test_unsubscribe_after_limit_ends_iteration(edgebus_trio_server: Any) -> None:
    nc = await edgebus_trio_server.connect()
    sub = await nc.subscribe("n")
    await sub.unsubscribe(limit=2)
    for i in range(4):
        await nc.publish("n", b"%d" % i)
    assert [m.data async for m in sub] == [b"0", b"1"]
    await nc.close()


@STORAGES
async def test_max_age_in_virtual_time(edgebus_trio_server: Any, autojump_clock: Any,
                                       storage: str) -> None:
    nc = await edgebus_trio_server.connect()
    js = nc.jetstream()
    await js.add_stream("AGE", ["age.>"], storage=storage, max_age=60)
    assert (await js.publish("age.1", b"x"))["seq"] == 1
    await trio.sleep(30)
    await js.publish("age.2", b"y")
    assert (await js.stream_info("AGE"))["state"]["messages"] == 2
    await trio.sleep(31)  # the first is 61 s old, the second 31 s
    assert (await js.stream_info("AGE"))["state"]["messages"] == 1
    await trio.sleep(30)
    state = (await js.stream_info("AGE"))["state"]
    assert (state["messages"], state["first_seq"]) == (0, 3)


@STORAGES
async def test_ack_wait_redelivery_in_virtual_time(edgebus_trio_server: Any, autojump_clock: Any,
                                                   storage: str) -> None:
    nc = await edgebus_trio_server.connect()
    js = nc.jetstream()
    await js.add_stream("JOBS", ["jobs.>"], storage=storage)
    await js.publish("jobs.1", b"work")
    await js.add_consumer("JOBS", "W", ack_wait=30)
    start = trio.current_time()
    [first] = await js.fetch("JOBS", "W")
    assert (first.data, first.num_delivered) == (b"work", 1)
    assert await js.fetch("JOBS", "W", timeout=29) == []   # not redelivered inside the ack wait
    [again] = await js.fetch("JOBS", "W", timeout=10)
    assert again.num_delivered == 2 and 30 <= trio.current_time() - start < 40
    assert (await js.api("CONSUMER.INFO.JOBS.W"))["num_redelivered"] == 1
    await again.ack()
    assert await js.fetch("JOBS", "W", timeout=120) == []  # acked: never again
    assert (await js.api("CONSUMER.INFO.JOBS.W"))["num_ack_pending"] == 0


@STORAGES
async def test_kv_history_and_ttl(edgebus_trio_server: Any, autojump_clock: Any,
                                  storage: str) -> None:
    nc = await edgebus_trio_server.connect()
    js = nc.jetstream()
    kv = await js.create_key_value("cfg", history=3, ttl=120, storage=storage)
    for v in (b"1", b"2", b"3", b"4"):
        await kv.put("mode", v)
    assert await kv.get("mode") == b"4"
    assert await kv.history("mode") == [b"2", b"3", b"4"]
    await kv.delete("mode")
    assert await kv.get("mode") is None
    await kv.put("other", b"x")
    await trio.sleep(121)
    assert await kv.get("other") is None  # the bucket's TTL (its MaxAge) has passed


async def test_jetstream_errors_are_raised(edgebus_trio_server: Any) -> None:
    js = (await edgebus_trio_server.connect()).jetstream()
    with pytest.raises(JetStreamError) as e:
        await js.stream_info("NOPE")
    assert e.value.err_code == 10059


@STORAGES
async def test_per_message_ttl_in_virtual_time(edgebus_trio_server: Any, autojump_clock: Any,
                                               storage: str) -> None:
    js = (await edgebus_trio_server.connect()).jetstream()
    await js.add_stream("TTL", ["ttl.>"], storage=storage, allow_msg_ttl=True)
    await js.publish("ttl.short", b"a", ttl=5)
    await js.publish("ttl.long", b"b", ttl=120)
    await js.publish("ttl.never", b"c")
    await trio.sleep(6)
    assert (await js.stream_info("TTL"))["state"]["messages"] == 2
    await trio.sleep(120)
    assert (await js.stream_info("TTL"))["state"]["messages"] == 1


async def test_serve_with_jetstream_gives_a_client(tmp_path: Any) -> None:
    # the client module's docstring example: edgebus.serve(jetstream=True), no fixture
    import edgebus

    async with edgebus.serve(jetstream=True) as server:
        async with await server.connect() as nc:
            js = nc.jetstream()
            await js.add_stream("ORDERS", ["orders.>"])
            assert (await js.publish("orders.1", b"{}"))["seq"] == 1


async def test_nak_with_delay_and_term(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    js = (await edgebus_trio_server.connect()).jetstream()
    await js.add_stream("Q", ["q.>"])
    await js.publish("q.1", b"a")
    await js.publish("q.2", b"b")
    await js.add_consumer("Q", "C", ack_wait=300)
    first, second = await js.fetch("Q", "C", batch=2)
    await first.nak(delay=10)
    await second.term()
    assert await js.fetch("Q", "C", timeout=9) == []           # not before the NAK delay
    [again] = await js.fetch("Q", "C", timeout=5)
    assert (again.data, again.num_delivered) == (b"a", 2)
    await again.ack()
    assert await js.fetch("Q", "C", timeout=600) == []         # the termed one never returns


async def test_restart_in_virtual_time_keeps_the_file_stream(edgebus_trio_server: Any,
                                                               autojump_clock: Any) -> None:
    server = edgebus_trio_server
    js = (await server.connect()).jetstream()
    await js.add_stream("DUR", ["dur.>"], max_age=3600)
    await js.add_consumer("DUR", "C", ack_wait=30)
    for i in range(3):
        await js.publish(f"dur.{i}", b"%d" % i)
    [m0] = await js.fetch("DUR", "C")
    await m0.ack()
    port = server.port
    await server.restart()
    assert server.port == port  # same ports after a restart
    js = (await server.connect()).jetstream()  # clients of the old run are gone
    assert (await js.stream_info("DUR"))["state"]["messages"] == 3
    got = await js.fetch("DUR", "C", batch=5, timeout=5)
    assert [m.data for m in got] == [b"1", b"2"]  # the acked one stays acked
