"""JetStream: a stream, a durable pull consumer, fetch in batches, ack. (pip install nats-py)"""

import asyncio

import nats

from _common import server_url


async def main(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    for i in range(5):
        ack = await js.publish(f"orders.{i}", f"order {i}".encode())
    print(f"stored up to seq {ack.seq} in {ack.stream}")

    sub = await js.pull_subscribe("orders.>", durable="billing")
    done = 0
    while done < 5:
        for msg in await sub.fetch(batch=2, timeout=5):
            print(f"billing {msg.data.decode()} (stream seq {msg.metadata.sequence.stream})")
            await msg.ack()
            done += 1
    info = await js.consumer_info("ORDERS", "billing")
    print(f"pending after acks: {info.num_pending + info.num_ack_pending}")
    await js.delete_stream("ORDERS")
    await nc.close()


if __name__ == "__main__":
    with server_url(jetstream=True) as u:
        asyncio.run(main(u))
