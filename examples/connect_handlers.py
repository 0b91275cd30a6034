"""Connect with lifecycle callbacks, publish one message, close."""

import asyncio

import nats

from _common import server_url


async def main(url: str) -> None:
    async def error_cb(e: Exception) -> None:
        print("error:", e)

    async def disconnected_cb() -> None:
        print("disconnected")

    async def reconnected_cb() -> None:
        print("reconnected to", nc.connected_url.netloc)

    async def closed_cb() -> None:
        print("closed")

    nc = await nats.connect(url, name="example", error_cb=error_cb, disconnected_cb=disconnected_cb,
                            reconnected_cb=reconnected_cb, closed_cb=closed_cb)
    print("connected to", nc.connected_url.netloc, "server", nc.connected_server_version)
    await nc.publish("hello", b"world")
    await nc.close()


if __name__ == "__main__":
    with server_url() as u:
        asyncio.run(main(u))
