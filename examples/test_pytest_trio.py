"""pytest-trio with virtual time: the server runs in the test's trio loop, the in-process
client talks to it without a socket, and `autojump_clock` skips every wait, so a minute of
MaxAge or AckWait passes in milliseconds (pip install 'edgebus[trio]').

    pytest examples/test_pytest_trio.py
"""

import pytest
import trio


@pytest.mark.trio
@pytest.mark.edgebus(jetstream=True)
async def test_max_age_and_redelivery(edgebus_trio_server, autojump_clock):
    nc = await edgebus_trio_server.connect()
    js = nc.jetstream()
    await js.add_stream("EVENTS", ["events.>"], max_age=60)   # a file stream, 60 s MaxAge
    await js.publish("events.1", b"hello")
    await js.add_consumer("EVENTS", "worker", ack_wait=30)

    [msg] = await js.fetch("EVENTS", "worker")
    assert msg.data == b"hello"                                 # not acked...
    [again] = await js.fetch("EVENTS", "worker", timeout=31)
    assert again.num_delivered == 2                             # ...so redelivered after 30 s
    await again.ack()

    await trio.sleep(60)
    info = await js.stream_info("EVENTS")
    assert info["state"]["messages"] == 0                       # aged out


@pytest.mark.trio
async def test_pub_sub_in_virtual_time(edgebus_trio_server, autojump_clock):
    nc = await edgebus_trio_server.connect()
    sub = await nc.subscribe("ticks")
    for i in range(3):
        await trio.sleep(60)                                    # a minute, instantly
        await nc.publish("ticks", str(i).encode(), headers={"Minute": str(i + 1)})
    assert [(await sub.next_msg()).headers["Minute"] for _ in range(3)] == ["1", "2", "3"]
