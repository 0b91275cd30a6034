"""Three workers in one queue group share 30 jobs; each job is done exactly once."""

import asyncio
from collections import Counter

import nats

from _common import server_url


async def main(url: str) -> None:
    nc = await nats.connect(url)
    done: Counter[str] = Counter()
    finished = asyncio.Event()

    def worker(name: str):
        async def handle(msg) -> None:
            done[name] += 1
            if sum(done.values()) == 30:
                finished.set()
        return handle

    for i in range(3):
        await nc.subscribe("jobs", queue="workers", cb=worker(f"w{i}"))
    for i in range(30):
        await nc.publish("jobs", str(i).encode())
    await asyncio.wait_for(finished.wait(), 5)
    print("jobs per worker:", dict(done))
    await nc.close()


if __name__ == "__main__":
    with server_url() as u:
        asyncio.run(main(u))
