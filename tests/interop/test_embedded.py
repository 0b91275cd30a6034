"""The embedding API: EmbeddedServer lifecycle, same-port restarts, dropping clients, errors."""

import asyncio

import nats
import pytest

from conftest import run_async
from edgebus import EmbeddedServer
from edgebus.options import MQTTOptions, WebsocketOptions


def test_restart_keeps_every_port_even_free_picked_ones() -> None:
    with EmbeddedServer(mqtt=MQTTOptions(port=-1, host="127.0.0.1"),
                        websocket=WebsocketOptions(port=-1, no_tls=True), http_port=-1) as s:
        before = (s.port, s.server.mqtt_port, s.server.ws_port, s.server.http_port)
        assert all(before)
        s.restart()
        assert (s.port, s.server.mqtt_port, s.server.ws_port, s.server.http_port) == before


def test_drop_client_and_reconnect(edgebus_server) -> None:
    async def scenario() -> int:
        reconnected = asyncio.Event()

        async def on_reconnect() -> None:
            reconnected.set()

        nc = await nats.connect(edgebus_server.client_url, name="victim", reconnect_time_wait=0.05,
                                reconnected_cb=on_reconnect)
        dropped = await asyncio.to_thread(edgebus_server.drop_client, name="victim")
        await asyncio.wait_for(reconnected.wait(), 10)
        sub = await nc.subscribe("after")
        await nc.publish("after", b"ok")
        msg = await sub.next_msg(5)
        assert msg.data == b"ok"
        await nc.close()
        return dropped

    assert run_async(scenario) == 1


def test_startup_error_is_reported() -> None:
    with pytest.raises(RuntimeError, match="websocket requires TLS"):
        EmbeddedServer(websocket=WebsocketOptions(port=-1)).start()


def test_config_text(tmp_path) -> None:
    with EmbeddedServer(config="port: -1\nmax_payload: 4KB\nserver_name: cfg\n") as s:
        async def info() -> tuple[str, int]:
            nc = await nats.connect(s.client_url)
            r = (nc._server_info["server_name"], nc.max_payload)
            await nc.close()
            return r
        assert run_async(info) == ("cfg", 4096)


def test_max_payload_above_max_pending_refused() -> None:
    with pytest.raises(RuntimeError, match=r"max_payload \(2048\) cannot be higher than max_pending \(1024\)"):
        EmbeddedServer(max_payload=2048, max_pending=1024).start()
