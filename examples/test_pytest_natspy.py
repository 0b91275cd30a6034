"""pytest with nats-py: the `edgebus_server` fixture gives each test a fresh broker in a
thread (pip install nats-py pytest; the fixture comes with edgebus).

    pytest examples/test_pytest_natspy.py
"""

import asyncio

import nats
import pytest


def test_request_reply(edgebus_server):
    async def main():
        nc = await nats.connect(edgebus_server.client_url)

        async def upper(msg):
            await msg.respond(msg.data.upper())

        await nc.subscribe("greet", cb=upper)
        reply = await nc.request("greet", b"hello", timeout=5)
        await nc.close()
        return reply.data

    assert asyncio.run(main()) == b"HELLO"


@pytest.mark.edgebus(jetstream=True)
def test_stream_survives_a_restart(edgebus_server):
    async def publish():
        nc = await nats.connect(edgebus_server.client_url)
        js = nc.jetstream()
        await js.add_stream(name="EVENTS", subjects=["events.>"])
        await js.publish("events.boot", b"up")
        await nc.close()

    async def count():
        nc = await nats.connect(edgebus_server.client_url)
        info = await nc.jetstream().stream_info("EVENTS")
        await nc.close()
        return info.state.messages

    asyncio.run(publish())
    edgebus_server.restart()  # same port, same store
    assert asyncio.run(count()) == 1


def test_isolated_account(edgebus_isolated):
    # one server for the whole session, a fresh account (own subjects, own JetStream) per test
    async def main():
        nc = await nats.connect(edgebus_isolated.client_url)
        js = nc.jetstream()
        await js.add_stream(name="EVENTS", subjects=["events.>"])  # no clash with other tests
        ack = await js.publish("events.x", b"1")
        await nc.close()
        return ack.seq

    assert asyncio.run(main()) == 1
