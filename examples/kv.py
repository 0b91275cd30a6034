"""Key-value store: put, get, history, watch, delete. (pip install nats-py)"""

import asyncio

import nats

from _common import server_url


async def main(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="config", history=5)
    watcher = await kv.watch("device.>")
    await kv.put("device.mode", b"eco")
    await kv.put("device.mode", b"boost")
    entry = await kv.get("device.mode")
    print(f"device.mode = {entry.value.decode()} (revision {entry.revision})")
    print("history:", [e.value.decode() for e in await kv.history("device.mode")])
    seen = []
    async for update in watcher:
        if update is None:  # initial values delivered
            continue
        seen.append(update.value.decode())
        if len(seen) == 2:
            break
    print("watched:", seen)
    await kv.delete("device.mode")
    try:
        await kv.get("device.mode")
    except nats.js.errors.KeyNotFoundError:
        print("device.mode deleted")
    await js.delete_key_value("config")
    await nc.close()


if __name__ == "__main__":
    with server_url(jetstream=True) as u:
        asyncio.run(main(u))
