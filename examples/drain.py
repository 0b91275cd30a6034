"""Drain: stop taking new messages but finish the ones already received, then close."""

import asyncio

import nats

from _common import server_url


async def main(url: str) -> None:
    nc = await nats.connect(url)
    handled = 0

    async def slow(msg) -> None:
        nonlocal handled
        await asyncio.sleep(0.001)
        handled += 1

    await nc.subscribe("work", cb=slow)
    pub = await nats.connect(url)
    for i in range(100):
        await pub.publish("work", b"x")
    await pub.flush()
    await nc.drain()  # waits for the 100 in-flight handlers before closing
    print("handled", handled, "messages before closing")
    await pub.close()


if __name__ == "__main__":
    with server_url() as u:
        asyncio.run(main(u))
