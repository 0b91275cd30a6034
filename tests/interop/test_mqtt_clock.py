"""MQTT timers in virtual time: keep-alive expiry (floor(1.5 x keep-alive), as nats-server's read
deadline), the CONNECT deadline, QoS 1 and QoS 2 (PUBREL) redelivery after `ack_wait`.

The server runs in the test's trio loop under `autojump_clock`, and the clients talk to the real
connection driver through in-memory streams (`MQTTService.handle_stream`), so every timer fires
at its exact virtual time without waiting.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from edgebus.codec import mqtt as m
from edgebus.options import MQTTOptions

pytestmark = [pytest.mark.trio,
              pytest.mark.edgebus(mqtt=MQTTOptions(port=-1, host="127.0.0.1", ack_wait=30.0))]


class MemClient:
    """An MQTT client on one end of an in-memory stream; the server driver has the other."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.parser = m.MQTTParser(our_role=m.Role.CLIENT)
        self.pending: list[Any] = []
        self.eof = False

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def next(self, kind: type | None = None) -> Any:
        while True:
            for i, p in enumerate(self.pending):
                if kind is None or isinstance(p, kind):
                    return self.pending.pop(i)
            data = await self.stream.receive_some(65536)
            if not data:
                self.eof = True
                raise EOFError
            self.pending += self.parser.feed(data)

    async def wait_eof(self) -> None:
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                self.eof = True
                return
            self.pending += self.parser.feed(data)


async def connect(server: Any, nursery: trio.Nursery, client_id: str, **kw: Any) -> MemClient:
    client_end, server_end = trio.testing.memory_stream_pair()
    nursery.start_soon(server.services["mqtt"].handle_stream, server_end, ("10.0.0.1", 1000), "mqtt")
    c = MemClient(client_end)
    if client_id is not None:
        await c.send(m.connect(client_id, **kw))
        ack = await c.next(m.ConnAck)
        assert ack.return_code == 0
    return c


async def test_keepalive_expiry_in_virtual_time(edgebus_trio_server, autojump_clock):
    async with trio.open_nursery() as n:
        c = await connect(edgebus_trio_server, n, "ka", keepalive=10)
        t0 = trio.current_time()
        await c.send(m.pingreq())
        await c.next(m.PingResp)
        await trio.sleep(9)
        await c.send(m.pingreq())  # activity resets the deadline
        await c.next(m.PingResp)
        t1 = trio.current_time()
        await c.wait_eof()
        assert trio.current_time() - t1 == pytest.approx(15, abs=0.01)  # floor(1.5 x 10)
        assert t1 - t0 == pytest.approx(9, abs=0.01)
        c3 = await connect(edgebus_trio_server, n, "ka3", keepalive=3)
        t3 = trio.current_time()
        await c3.wait_eof()
        assert trio.current_time() - t3 == pytest.approx(4, abs=0.01)  # floor(4.5)


async def test_connect_deadline(edgebus_trio_server, autojump_clock):
    async with trio.open_nursery() as n:
        c = await connect(edgebus_trio_server, n, None)
        t0 = trio.current_time()
        await c.send(m.connect("slow")[:7])  # never completed
        await c.wait_eof()
        assert trio.current_time() - t0 == pytest.approx(2, abs=0.01)
        assert c.pending == []


async def test_qos1_and_pubrel_redelivery_after_ack_wait(edgebus_trio_server, autojump_clock):
    async with trio.open_nursery() as n:
        sub = await connect(edgebus_trio_server, n, "rd-sub", keepalive=0)
        await sub.send(m.subscribe(1, [("rd/1", 1), ("rd/2", 2)]))
        assert (await sub.next(m.SubAck)).return_codes == [1, 2]
        pub = await connect(edgebus_trio_server, n, "rd-pub")
        await pub.send(m.publish("rd/1", b"one", 1, packet_id=1))
        await pub.next(m.PubAck)
        first = await sub.next(m.Publish)
        t0 = trio.current_time()
        assert not first.dup
        again = await sub.next(m.Publish)
        assert trio.current_time() - t0 == pytest.approx(30, abs=0.01)
        assert (again.dup, again.packet_id, again.payload) == (True, first.packet_id, b"one")
        await sub.send(m.puback(again.packet_id))
        # QoS 2: PUBREC moves it to PUBREL, which is also sent again until PUBCOMP
        await pub.send(m.publish("rd/2", b"two", 2, packet_id=2))
        await pub.next(m.PubRec)
        await pub.send(m.pubrel(2))
        await pub.next(m.PubComp)
        q2 = await sub.next(m.Publish)
        assert q2.qos == 2
        await sub.send(m.pubrec(q2.packet_id))
        rel = await sub.next(m.PubRel)
        t1 = trio.current_time()
        rel2 = await sub.next(m.PubRel)
        assert rel2.packet_id == rel.packet_id == q2.packet_id
        assert trio.current_time() - t1 == pytest.approx(30, abs=0.01)
        await sub.send(m.pubcomp(q2.packet_id) + m.pingreq())
        await sub.next(m.PingResp)
        with trio.move_on_after(100):  # nothing more after PUBCOMP
            p = await sub.next(m.PubRel)
            raise AssertionError(f"unexpected {p}")
        n.cancel_scope.cancel()
