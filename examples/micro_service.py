"""A microservice with nats-py's micro API: endpoints, then discovery as `nats micro` does it
through $SRV.PING, $SRV.INFO and $SRV.STATS. (pip install nats-py)"""

import asyncio
import json

import nats
from nats.micro import add_service
from nats.micro.service import EndpointConfig, ServiceConfig


async def main(url: str) -> None:
    nc = await nats.connect(url)

    async def celsius_to_f(req) -> None:
        c = float(req.data)
        await req.respond(f"{c * 9 / 5 + 32:.1f}".encode())

    svc = await add_service(nc, ServiceConfig(name="convert", version="1.0.0",
                                              description="unit conversion"))
    await svc.add_endpoint(EndpointConfig(name="c2f", subject="convert.c2f",
                                          handler=celsius_to_f))

    reply = await nc.request("convert.c2f", b"21.5", timeout=5)
    print(f"21.5 C = {reply.data.decode()} F")

    ping = json.loads((await nc.request("$SRV.PING.convert", b"", timeout=5)).data)
    print(f"PING: {ping['name']} {ping['version']} ({ping['type']})")
    info = json.loads((await nc.request("$SRV.INFO.convert", b"", timeout=5)).data)
    print("INFO endpoints:", [e["subject"] for e in info["endpoints"]])
    stats = json.loads((await nc.request("$SRV.STATS.convert", b"", timeout=5)).data)
    print("STATS requests:", stats["endpoints"][0]["num_requests"])
    await svc.stop()
    await nc.close()


if __name__ == "__main__":
    from _common import server_url
    with server_url() as u:
        asyncio.run(main(u))
