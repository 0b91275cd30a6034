"""The delivery matrix: every producer kind x every subscriber kind x every delivery shape.

Producers: a NATS client over TCP (nats-py), a NATS client over WebSocket (a small raw client on
the project's frame helpers), MQTT QoS 0 and QoS 1 publishers (paho-mqtt), a nats-py client on a
real nats-server hub that edgebus is a leaf node of, a JetStream push consumer delivering stored
messages, and an in-process client. Subscribers: the same kinds (MQTT at QoS 0 and 1; JetStream
as a stream capturing the subject). Shapes: a lone subscriber, several subscribers, a queue
group, a run of identical PUBs, mixed subjects, headers.

Each cell checks that every message arrives intact (subject, payload, headers where both ends
carry them; exactly once across a queue group) and that the publisher is still connected
afterwards. The servers are shared by all cells (module scope); every cell uses its own subject
prefix, streams and connections, so cells do not see each other's traffic.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import queue as _queue
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats
import paho.mqtt.client as paho
import pytest

from conftest import NATS_SERVER, free_port, run_async
from test_leaf import Hub, edge_leafz, subs_of, wait_until
from edgebus.core.client import InternalClient
from edgebus.testing.embedded import EmbeddedServer

sys.path.insert(0, str(Path(__file__).parent / "ws"))
from wsclient import BINARY, frame, upgrade_request  # noqa: E402

pytestmark = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")

WAIT = 10.0
RUN = 20  # messages in a run of identical PUBs
PRODUCERS = ["nats", "ws", "mqtt0", "mqtt1", "leaf", "js", "inproc"]
SUBSCRIBERS = ["nats", "ws", "mqtt0", "mqtt1", "leaf", "js", "inproc"]
SHAPES = ["lone", "several", "queue", "run", "mixed", "headers"]
QUEUE_KINDS = {"nats", "ws", "leaf", "inproc"}  # subscriber kinds that have queue groups
HEADER_KINDS = {"nats", "ws", "leaf", "js", "inproc"}  # kinds that carry NATS headers
_cell_ids = itertools.count(1)


# -- servers -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def servers():
    lp = free_port()
    hub = Hub(f'server_name: HUB\nleafnodes {{ listen: "127.0.0.1:{lp}" }}\n').start()
    conf = (f"server_name: EDGE\nport: -1\n"
            f'mqtt {{ host: "127.0.0.1", port: {free_port()} }}\n'
            f'websocket {{ host: "127.0.0.1", port: {free_port()}, no_tls: true }}\n'
            f'leafnodes {{ remotes: [ {{ url: "nats-leaf://127.0.0.1:{lp}" }} ] }}\n')
    srv = EmbeddedServer(config=conf, jetstream=True).start()
    try:
        _wait_until(lambda: edge_leafz(srv), "the leaf link to come up")
        yield hub, srv
    finally:
        srv.close()
        hub.stop()


def _wait_until(pred: Any, what: str, timeout: float = WAIT) -> Any:
    return wait_until(pred, what, timeout)


async def _until(pred: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _hub_leafz(hub: Hub) -> list[set[str]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{hub.http_port}/leafz?subs=1", timeout=5) as r:
        return subs_of(json.loads(r.read())["leafs"])


def _topic(subject: str) -> str:
    return subject.replace(".", "/")


def _hdr_value(hdr: Any) -> str | None:
    """The X-Mx header of a received message, whatever form the client gives headers in."""
    if hdr is None:
        return None
    if isinstance(hdr, dict):
        return hdr.get("X-Mx")
    for line in bytes(hdr).split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip() == b"X-Mx":
            return v.strip().decode()
    return None


# -- a NATS client over WebSocket (asyncio, raw frames) -----------------------------------------
class WsNats:
    """Just enough of a NATS client over WebSocket: CONNECT, SUB, PUB/HPUB, PING/PONG, MSG/HMSG."""

    def __init__(self) -> None:
        self.msgs: list[tuple[str, bytes, Any]] = []
        self.pongs = 0
        self.closed = False
        self._buf = b""
        self._nats = bytearray()

    async def connect(self, port: int) -> "WsNats":
        self.r, self.w = await asyncio.open_connection("127.0.0.1", port)
        self.w.write(upgrade_request("/"))
        head = await self.r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self._task = asyncio.ensure_future(self._read())
        self.send(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n')
        await self.ping()
        return self

    def send(self, data: bytes) -> None:
        self.w.write(frame(BINARY, data))

    async def ping(self) -> None:
        n = self.pongs
        self.send(b"PING\r\n")
        await _until(lambda: self.pongs > n or self.closed, "PONG over WebSocket")
        assert not self.closed, "the WebSocket connection was closed"

    async def _read(self) -> None:
        try:
            while True:
                data = await self.r.read(65536)
                if not data:
                    break
                self._buf += data
                self._frames()
        finally:
            self.closed = True

    def _frames(self) -> None:
        b = self._buf
        while len(b) >= 2:
            op, n, pos = b[0] & 0x0F, b[1] & 0x7F, 2
            if n == 126:
                n, pos = int.from_bytes(b[2:4], "big"), 4
            elif n == 127:
                n, pos = int.from_bytes(b[2:10], "big"), 10
            if len(b) < pos + n:
                break
            payload, b = b[pos:pos + n], b[pos + n:]
            if op == 8:
                self.closed = True
            elif op in (0, 1, 2):
                self._nats += payload
                self._proto()
        self._buf = b

    def _proto(self) -> None:
        buf = self._nats
        while True:
            i = buf.find(b"\r\n")
            if i < 0:
                return
            line = bytes(buf[:i]).split()
            op = line[0].upper() if line else b""
            if op in (b"MSG", b"HMSG"):
                total = int(line[-1])
                if len(buf) < i + 2 + total + 2:
                    return
                body = bytes(buf[i + 2:i + 2 + total])
                hl = int(line[-2]) if op == b"HMSG" else 0
                self.msgs.append((line[1].decode(), body[hl:], body[:hl] if hl else None))
                del buf[:i + 2 + total + 2]
                continue
            del buf[:i + 2]
            if op == b"PING":
                self.send(b"PONG\r\n")
            elif op == b"PONG":
                self.pongs += 1
            elif op == b"-ERR":
                self.closed = True

    async def close(self) -> None:
        self.w.close()
        self._task.cancel()


# -- subscribers ---------------------------------------------------------------------------------
class Sub:
    """One subscriber of some kind on `<prefix>.cmd.>` (or the MQTT/stream equivalent)."""

    interest: str  # the subject the leaf hub sees for this subscriber's interest

    def __init__(self, env: "Env", prefix: str, queue: str | None) -> None:
        self.env, self.prefix, self.queue = env, prefix, queue
        self.interest = f"{prefix}.cmd.>"
        self.msgs: list[tuple[str, bytes, Any]] = []  # (subject, payload, headers)

    async def start(self) -> None: ...

    async def received(self) -> list[tuple[str, bytes, Any]]:
        return self.msgs

    async def stop(self) -> None: ...


class NatsSub(Sub):
    url_attr = "edge_url"

    async def start(self) -> None:
        self.nc = await nats.connect(getattr(self.env, self.url_attr))

        async def cb(m: Any) -> None:
            self.msgs.append((m.subject, m.data, m.headers))
        await self.nc.subscribe(f"{self.prefix}.cmd.>", queue=self.queue or "", cb=cb)
        await self.nc.flush()
        await self.nc.flush()

    async def stop(self) -> None:
        await self.nc.close()


class LeafSub(NatsSub):
    """A subscriber on the hub: edgebus forwards over the leaf link."""

    url_attr = "hub_url"

    async def start(self) -> None:
        await super().start()
        subject = self.interest

        def seen() -> bool:
            return any(any(s.startswith(subject) for s in subs) for subs in subs_of(edge_leafz(self.env.srv)))
        await asyncio.to_thread(_wait_until, seen, f"edgebus to see the hub's interest in {subject}")


class WsSub(Sub):
    async def start(self) -> None:
        self.ws = await WsNats().connect(self.env.ws_port)
        q = f" {self.queue}" if self.queue else ""
        self.ws.send(f"SUB {self.prefix}.cmd.>{q} 1\r\n".encode())
        await self.ws.ping()
        self.msgs = self.ws.msgs

    async def stop(self) -> None:
        await self.ws.close()


class MqttSub(Sub):
    qos = 0

    async def start(self) -> None:
        c = self.mq = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{self.prefix}-{id(self)}")
        done = threading.Event()

        def on_msg(_c: Any, _u: Any, m: Any) -> None:
            self.msgs.append((m.topic.replace("/", "."), m.payload, None))
        c.on_message = on_msg
        c.on_subscribe = lambda *a: done.set()
        c.connect("127.0.0.1", self.env.mqtt_port)
        c.loop_start()
        c.subscribe(f"{_topic(self.prefix)}/cmd/#", qos=self.qos)
        assert await asyncio.to_thread(done.wait, WAIT), "no SUBACK"

    async def stop(self) -> None:
        self.mq.disconnect()
        self.mq.loop_stop()


class Mqtt1Sub(MqttSub):
    qos = 1


class StreamSub(Sub):
    """A JetStream stream capturing the subjects: the messages are read back from it."""

    async def start(self) -> None:
        self.nc = await nats.connect(self.env.edge_url)
        self.js = self.nc.jetstream()
        self.stream = f"DST_{self.prefix}"
        await self.js.add_stream(name=self.stream, subjects=[f"{self.prefix}.cmd.>"], storage="memory")

    async def received(self) -> list[tuple[str, bytes, Any]]:
        info = await self.js.stream_info(self.stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
            m = await self.js.get_msg(self.stream, seq)
            out.append((m.subject, m.data or b"", m.headers))  # nats-py gives None for b""
        return out

    async def stop(self) -> None:
        await self.js.delete_stream(self.stream)
        await self.nc.close()


class InprocSub(Sub):
    async def start(self) -> None:
        msgs = self.msgs

        def make(server: Any) -> Any:
            c = InternalClient(server.broker, name="matrix")

            def cb(sub: Any, m: Any) -> None:
                msgs.append((m.subject, bytes(m.data), m.hdr))
            c.subscribe(f"{self.prefix}.cmd.>", cb, queue=self.queue)
            return c
        self.c = await asyncio.to_thread(self.env.srv.call, make)

    async def stop(self) -> None:
        await asyncio.to_thread(self.env.srv.call, lambda s: self.c.close())


SUB_KINDS = {"nats": NatsSub, "ws": WsSub, "mqtt0": MqttSub, "mqtt1": Mqtt1Sub, "leaf": LeafSub,
             "js": StreamSub, "inproc": InprocSub}


# -- producers -----------------------------------------------------------------------------------
class Pub:
    def __init__(self, env: "Env", prefix: str) -> None:
        self.env, self.prefix = env, prefix

    async def start(self) -> None: ...

    async def publish(self, batch: list[tuple[str, bytes, str | None]], queue: str | None) -> None: ...

    async def alive(self) -> None: ...

    async def stop(self) -> None: ...


class NatsPub(Pub):
    url_attr = "edge_url"

    async def start(self) -> None:
        self.errors: list[Any] = []

        async def on_disc() -> None:
            self.errors.append("disconnected")

        async def on_err(e: Exception) -> None:
            self.errors.append(e)
        self.nc = await nats.connect(getattr(self.env, self.url_attr), disconnected_cb=on_disc,
                                     error_cb=on_err, allow_reconnect=False)

    async def publish(self, batch: list[tuple[str, bytes, str | None]], queue: str | None) -> None:
        for subject, data, h in batch:
            await self.nc.publish(subject, data, headers={"X-Mx": h} if h else None)
        await self.nc.flush()

    async def alive(self) -> None:
        await self.nc.flush(timeout=WAIT)
        assert self.nc.is_connected and not self.errors, f"publisher lost: {self.errors}"

    async def stop(self) -> None:
        await self.nc.close()


class LeafPub(NatsPub):
    url_attr = "hub_url"


class WsPub(Pub):
    async def start(self) -> None:
        self.ws = await WsNats().connect(self.env.ws_port)

    async def publish(self, batch: list[tuple[str, bytes, str | None]], queue: str | None) -> None:
        out = b""
        for subject, data, h in batch:
            if h:
                hdr = f"NATS/1.0\r\nX-Mx: {h}\r\n\r\n".encode()
                out += b"HPUB %s %d %d\r\n%s%s\r\n" % (subject.encode(), len(hdr), len(hdr) + len(data), hdr, data)
            else:
                out += b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(data), data)
        self.ws.send(out)  # one frame: a run arrives in one read

    async def alive(self) -> None:
        await self.ws.ping()

    async def stop(self) -> None:
        await self.ws.close()


class MqttPub(Pub):
    qos = 0

    async def start(self) -> None:
        c = self.mq = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{self.prefix}-pub")
        self.lost: "_queue.Queue[Any]" = _queue.Queue()
        c.on_disconnect = lambda *a: self.lost.put(a)
        c.connect("127.0.0.1", self.env.mqtt_port)
        c.loop_start()
        await asyncio.to_thread(_wait_until, c.is_connected, "MQTT CONNACK")

    async def publish(self, batch: list[tuple[str, bytes, str | None]], queue: str | None) -> None:
        infos = [self.mq.publish(_topic(s), d, qos=self.qos) for s, d, _ in batch]
        for i in infos:
            await asyncio.to_thread(i.wait_for_publish, WAIT)

    async def alive(self) -> None:
        assert self.mq.is_connected() and self.lost.empty(), "MQTT publisher lost"

    async def stop(self) -> None:
        self.mq.disconnect()
        self.mq.loop_stop()


class Mqtt1Pub(MqttPub):
    qos = 1


class JsPub(Pub):
    """A push consumer per target subject delivers what a stream stored."""

    async def start(self) -> None:
        self.nc = await nats.connect(self.env.edge_url)
        self.js = self.nc.jetstream()
        self.stream = f"SRC_{self.prefix}"
        await self.js.add_stream(name=self.stream, subjects=[f"src{self.prefix}.>"], storage="memory")

    async def publish(self, batch: list[tuple[str, bytes, str | None]], queue: str | None) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig
        targets: dict[str, int] = {}
        for subject, data, h in batch:
            k = targets.setdefault(subject, len(targets))
            await self.js.publish(f"src{self.prefix}.{k}", data, headers={"X-Mx": h} if h else None)
        for subject, k in targets.items():
            await self.js.add_consumer(self.stream, ConsumerConfig(
                durable_name=f"c{k}", deliver_subject=subject, deliver_group=queue,
                filter_subject=f"src{self.prefix}.{k}", ack_policy=AckPolicy.NONE))

    async def alive(self) -> None:
        await self.nc.flush(timeout=WAIT)
        info = await self.js.stream_info(self.stream)
        assert info.config.name == self.stream

    async def stop(self) -> None:
        await self.js.delete_stream(self.stream)
        await self.nc.close()


class InprocPub(Pub):
    async def start(self) -> None:
        self.c = await asyncio.to_thread(
            self.env.srv.call, lambda s: InternalClient(s.broker, name="matrix-pub"))

    async def publish(self, batch: list[tuple[str, bytes, str | None]], queue: str | None) -> None:
        def pub(server: Any) -> None:
            for subject, data, h in batch:
                hdr = f"NATS/1.0\r\nX-Mx: {h}\r\n\r\n".encode() if h else None
                self.c.publish(subject, None, hdr, data)
        await asyncio.to_thread(self.env.srv.call, pub)

    async def alive(self) -> None:
        assert not self.c.closed


PUB_KINDS = {"nats": NatsPub, "ws": WsPub, "mqtt0": MqttPub, "mqtt1": Mqtt1Pub, "leaf": LeafPub,
             "js": JsPub, "inproc": InprocPub}


class Env:
    def __init__(self, hub: Hub, srv: EmbeddedServer) -> None:
        self.hub, self.srv = hub, srv
        self.edge_url = srv.client_url
        self.hub_url = hub.client_url
        self.ws_port = srv.server.ws_port  # type: ignore[union-attr]
        self.mqtt_port = srv.server.mqtt_port  # type: ignore[union-attr]


# -- the cells -----------------------------------------------------------------------------------
def _cells() -> list[Any]:
    out = []
    for p in PRODUCERS:
        for s in SUBSCRIBERS:
            for shape in SHAPES:
                if p == "leaf" and s == "leaf":
                    continue  # nothing goes back over the link a message came from
                if shape == "queue" and s not in QUEUE_KINDS:
                    continue
                if shape == "headers" and p.startswith("mqtt"):
                    continue  # MQTT 3.1.1 publishes carry no headers
                out.append(pytest.param(p, s, shape, id=f"{p}-to-{s}-{shape}"))
    return out


def _batch(prefix: str, shape: str) -> list[tuple[str, bytes, str | None]]:
    base = f"{prefix}.cmd"
    if shape == "run":
        return [(f"{base}.valve.open", b"run-%03d" % i, None) for i in range(RUN)]
    if shape == "mixed":
        subjects = ["a", "b.c", "valve.open", "a", "d.e.f", "b.c", "g"]
        return [(f"{base}.{s}", f"mixed-{i}".encode(), None) for i, s in enumerate(subjects)]
    if shape == "headers":
        return [(f"{base}.valve.open", b"with-header", "v1"), (f"{base}.valve.close", b"", "v2")]
    if shape == "queue":
        return [(f"{base}.valve.open", b"q-%02d" % i, None) for i in range(10)]
    return [(f"{base}.valve.open", b"open", None)]


@pytest.mark.parametrize("producer,subscriber,shape", _cells())
def test_delivery(servers: Any, producer: str, subscriber: str, shape: str) -> None:
    env = Env(*servers)
    prefix = f"mx{next(_cell_ids)}"
    batch = _batch(prefix, shape)
    queue = "q" if shape == "queue" else None
    n_subs = 2 if shape in ("several", "queue") else 1

    async def main() -> None:
        subs: list[Sub] = [SUB_KINDS[subscriber](env, prefix, queue) for _ in range(n_subs)]
        if shape == "several" and subscriber == "js":
            subs[1] = NatsSub(env, prefix, None)  # one stream per subject space: a stream and a client
        pub = PUB_KINDS[producer](env, prefix)
        try:
            for s in subs:
                await s.start()
            if producer == "leaf":
                interest = subs[0].interest if subscriber != "js" else f"{prefix}.cmd.>"
                await asyncio.to_thread(
                    _wait_until, lambda: any(interest in x for x in _hub_leafz(env.hub)),
                    f"the hub to see {interest}")
            await pub.start()
            await pub.publish(batch, queue)
            want = [(s, d, h) for s, d, h in batch]
            if shape == "queue":
                async def total() -> int:
                    return sum([len(await s.received()) for s in subs])
                await _until_async(lambda: total(), len(want), "all queue messages")
                got = [m for s in subs for m in await s.received()]
                assert sorted(m[1] for m in got) == sorted(d for _, d, _ in want), "not exactly once"
            else:
                for s in subs:
                    await _until_async(s.received, len(want), f"{len(want)} messages at {type(s).__name__}",
                                       count=True)
                    got = await s.received()
                    assert len(got) == len(want), got
                    _check(producer, s, want, got)
            await pub.alive()
        finally:
            await pub.stop()
            for s in subs:
                await s.stop()

    run_async(main, timeout=60)


async def _until_async(get: Any, n: int, what: str, count: bool = False) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        v = await get()
        k = len(v) if count else v
        if k >= n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (have {k} of {n})")
        await asyncio.sleep(0.01)


def _check(producer: str, sub: Sub, want: list[Any], got: list[Any]) -> None:
    mqtt_sub = isinstance(sub, MqttSub)
    if producer == "js":
        # JetStream delivers under the stored subject, on the consumer's deliver subject, and
        # each target subject has its own consumer: only the order per consumer is defined
        key = lambda m: m[1]  # noqa: E731
        got, want = sorted(got, key=key), sorted(want, key=key)
    else:
        assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1] for g in got] == [w[1] for w in want]
    if any(w[2] for w in want) and not mqtt_sub:
        assert [_hdr_value(g[2]) for g in got] == [w[2] for w in want]
