"""Object store: put a file larger than one chunk, list, get it back intact.
(pip install nats-py)"""

import asyncio
import hashlib
import os

import nats

from _common import server_url


async def main(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    obs = await js.create_object_store("firmware")
    blob = os.urandom(300_000)  # several 128 KiB chunks
    info = await obs.put("sensor-v2.bin", blob)
    print(f"stored {info.name}: {info.size} bytes in {info.chunks} chunks")
    print("objects:", [o.name for o in await obs.list()])
    got = await obs.get("sensor-v2.bin")
    same = hashlib.sha256(got.data).digest() == hashlib.sha256(blob).digest()
    print(f"read back {len(got.data)} bytes, identical: {same}")
    await js.delete_object_store("firmware")
    await nc.close()


if __name__ == "__main__":
    with server_url(jetstream=True) as u:
        asyncio.run(main(u))
