"""A service answering requests; a request nobody answers fails fast (no responders)."""

import asyncio

import nats
from nats.errors import NoRespondersError

from _common import server_url


async def main(url: str) -> None:
    nc = await nats.connect(url)

    async def upper(msg) -> None:
        await msg.respond(msg.data.upper())

    await nc.subscribe("svc.upper", cb=upper)
    reply = await nc.request("svc.upper", b"hello edge", timeout=2)
    print("reply:", reply.data.decode())
    try:
        await nc.request("svc.missing", b"?", timeout=2)
    except NoRespondersError:
        print("svc.missing: no responders")
    await nc.close()


if __name__ == "__main__":
    with server_url() as u:
        asyncio.run(main(u))
