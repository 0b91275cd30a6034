"""A real nats-server connecting to edgebus as a leaf node over WebSocket (`/leafnode`), with
masked frames and with `ws_no_masking` (the Nats-No-Masking handshake header)."""

from __future__ import annotations

import asyncio

import pytest

from conftest import flushed, run_async
from edgebus.testing.embedded import EmbeddedServer

nats = pytest.importorskip("nats")


async def _first(sub, publish, attempts: int = 100) -> bytes:
    """Publish until the leaf's interest has propagated and a message arrives."""
    for _ in range(attempts):
        await publish()
        try:
            return (await sub.next_msg(timeout=0.1)).data
        except nats.errors.TimeoutError:
            continue
    raise AssertionError("nothing crossed the leaf connection")


@pytest.mark.parametrize("no_masking", [False, True])
def test_nats_server_leaf_over_websocket(real_nats_server, no_masking):
    conf = "port: -1\nleafnodes { port: -1 }\nwebsocket { port: -1, host: 127.0.0.1, no_tls: true }"
    with EmbeddedServer(config=conf) as hub:
        ws_port = hub.call(lambda s: s.ws_port)
        leaf = real_nats_server(config=f'leafnodes {{ remotes [ {{ url: "ws://127.0.0.1:{ws_port}", '
                                       f"ws_no_masking: {str(no_masking).lower()} }} ] }}\n")

        async def main() -> None:
            a = await nats.connect(hub.client_url)
            b = await nats.connect(leaf.client_url)
            sub_a = await a.subscribe("to.hub.>")
            sub_b = await b.subscribe("to.leaf.>")
            await flushed(a)
            await flushed(b)

            async def pub_b() -> None:
                await b.publish("to.hub.x", b"from-leaf")
                await flushed(b)

            async def pub_a() -> None:
                await a.publish("to.leaf.x", b"from-hub")
                await flushed(a)

            assert await _first(sub_a, pub_b) == b"from-leaf"
            assert await _first(sub_b, pub_a) == b"from-hub"
            # the hub sees the leaf as a leaf connection, not a client
            kinds = hub.call(lambda s: sorted(type(c).__name__ for c in s.connections))
            assert "WebsocketClientConnection" not in kinds
            await asyncio.gather(a.close(), b.close())

        run_async(main, timeout=60)
