"""Publish and subscribe: a literal subscription, `*` and `>` wildcards."""

import asyncio

import nats

from _common import server_url


async def main(url: str) -> None:
    nc = await nats.connect(url)
    done = asyncio.Event()
    seen: list[str] = []

    async def handler(msg) -> None:
        seen.append(f"{msg.subject}: {msg.data.decode()}")
        if len(seen) == 5:  # kitchen matches all three, garage two
            done.set()

    await nc.subscribe("sensors.kitchen.temp", cb=handler)
    await nc.subscribe("sensors.*.temp", cb=handler)
    await nc.subscribe("sensors.>", cb=handler)
    await nc.publish("sensors.kitchen.temp", b"21.5")
    await nc.publish("sensors.garage.temp", b"12.0")
    await asyncio.wait_for(done.wait(), 5)
    print("\n".join(sorted(seen)))
    await nc.close()


if __name__ == "__main__":
    with server_url() as u:
        asyncio.run(main(u))
