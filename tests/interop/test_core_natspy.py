"""Core NATS with a real client (nats-py) and raw sockets against edgebus over TCP:
pub/sub, wildcards, queue groups, request/reply, headers, no responders, auto-unsubscribe,
drain, reconnect across a restart, max payload, slow consumers, lame duck mode, thousands of
connections, and hostile peers (garbage, oversized lines, half-open connections)."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import sys
import time

import nats
import pytest
from nats.errors import MaxPayloadError, NoRespondersError

from conftest import flushed, free_port, run_async


async def _connect(url: str, **kw):
    return await nats.connect(url, allow_reconnect=kw.pop("allow_reconnect", False), **kw)


def raw(port: int, hello: bytes = b'CONNECT {"verbose":false}\r\n') -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    buf = b""
    while b"\r\n" not in buf:
        buf += s.recv(4096)
    assert buf.startswith(b"INFO ")
    if hello:
        s.sendall(hello)
    return s


def read_until(s: socket.socket, marker: bytes) -> bytes:
    buf = b""
    while marker not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    return buf


def read_to_eof(s: socket.socket) -> bytes:
    buf = b""
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        buf += d
    return buf


# -- messaging --------------------------------------------------------------------------------

def test_pub_sub_and_wildcards(edgebus_server):
    async def main():
        nc = await _connect(edgebus_server.client_url)
        exact = await nc.subscribe("orders.eu.new")
        star = await nc.subscribe("orders.*.new")
        tail = await nc.subscribe("orders.>")
        await nc.publish("orders.eu.new", b"1")
        await nc.publish("orders.us.new", b"2")
        await nc.publish("orders.us.old.x", b"3")
        await nc.publish("other", b"4")
        await flushed(nc)
        assert (await exact.next_msg(5)).data == b"1"
        assert [(await star.next_msg(5)).data for _ in range(2)] == [b"1", b"2"]
        got = [await tail.next_msg(5) for _ in range(3)]
        assert [(m.subject, m.data) for m in got] == [
            ("orders.eu.new", b"1"), ("orders.us.new", b"2"), ("orders.us.old.x", b"3")]
        for s in (exact, star, tail):
            assert s.pending_msgs == 0
        await nc.close()
    run_async(main)


def test_queue_groups_share_the_work(edgebus_server):
    async def main():
        workers = [await _connect(edgebus_server.client_url) for _ in range(3)]
        counts = [0, 0, 0]
        subs = []
        for i, w in enumerate(workers):
            async def cb(msg, i=i):
                counts[i] += 1
            subs.append(await w.subscribe("work", queue="pool", cb=cb))
            await flushed(w)
        watcher = await _connect(edgebus_server.client_url)
        seen = await watcher.subscribe("work")
        pub = await _connect(edgebus_server.client_url)
        for i in range(300):
            await pub.publish("work", str(i).encode())
        await flushed(pub)
        for _ in range(300):
            await seen.next_msg(5)  # the plain subscriber sees every message
        for w in workers:
            await flushed(w)
        deadline = time.monotonic() + 10
        while sum(counts) < 300 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert sum(counts) == 300  # each message to exactly one member
        assert all(c > 0 for c in counts), counts
        for c in workers + [watcher, pub]:
            await c.close()
    run_async(main)


def test_request_reply_and_no_responders(edgebus_server):
    async def main():
        svc = await _connect(edgebus_server.client_url)

        async def handler(msg):
            await msg.respond(b"pong:" + msg.data)
        await svc.subscribe("svc.ping", cb=handler)
        await flushed(svc)
        nc = await _connect(edgebus_server.client_url)
        for i in range(20):
            r = await nc.request("svc.ping", str(i).encode(), timeout=5)
            assert r.data == b"pong:" + str(i).encode()
        with pytest.raises(NoRespondersError):
            await nc.request("svc.nobody", b"x", timeout=5)
        await svc.close()
        await nc.close()
    run_async(main)


def test_headers_round_trip(edgebus_server):
    async def main():
        nc = await _connect(edgebus_server.client_url)
        sub = await nc.subscribe("h")
        await nc.publish("h", b"body", headers={"Trace-Id": "abc", "Empty": ""})
        m = await sub.next_msg(5)
        assert m.data == b"body" and m.headers["Trace-Id"] == "abc"
        # a raw subscriber without header support gets the payload only
        s = raw(edgebus_server.port)
        s.sendall(b"SUB h 1\r\nPING\r\n")
        read_until(s, b"PONG\r\n")
        await nc.publish("h", b"xyz", headers={"K": "v"})
        await flushed(nc)
        assert read_until(s, b"xyz\r\n") == b"MSG h 1 3\r\nxyz\r\n"
        s.close()
        await nc.close()
    run_async(main)


def wait_until(pred, timeout: float = 10.0) -> bool:
    """Poll `pred` until true (a bounded wait for an event, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _client_subs(server) -> int:
    """Subscriptions of client connections (the server has internal ones of its own)."""
    return server.call(lambda s: sum(len(c.subs) for c in s.connections))


def test_auto_unsubscribe(edgebus_server):
    async def main():
        nc = await _connect(edgebus_server.client_url)
        sub = await nc.subscribe("au")
        await sub.unsubscribe(limit=3)
        for i in range(6):
            await nc.publish("au", str(i).encode())
        await flushed(nc)
        got = [(await sub.next_msg(5)).data for _ in range(3)]
        assert got == [b"0", b"1", b"2"]
        assert _client_subs(edgebus_server) == 0  # the server removed it after 3 deliveries
        await nc.close()
    run_async(main)


def test_drain_delivers_in_flight_messages(edgebus_server):
    async def main():
        nc = await _connect(edgebus_server.client_url)
        got = []
        closed = asyncio.Event()

        async def cb(msg):
            await asyncio.sleep(0)
            got.append(msg.data)

        async def on_closed():
            closed.set()
        sub_nc = await _connect(edgebus_server.client_url, closed_cb=on_closed)
        await sub_nc.subscribe("d", cb=cb)
        await flushed(sub_nc)
        for i in range(200):
            await nc.publish("d", b"%d" % i)
        await flushed(nc)
        await sub_nc.drain()
        await asyncio.wait_for(closed.wait(), 10)
        assert got == [b"%d" % i for i in range(200)]
        await nc.close()
    run_async(main)


def test_reconnect_after_restart(edgebus_server):
    async def main():
        reconnected = asyncio.Event()

        async def on_reconnect():
            reconnected.set()
        nc = await nats.connect(edgebus_server.client_url, reconnected_cb=on_reconnect,
                                reconnect_time_wait=0.05, max_reconnect_attempts=-1)
        sub = await nc.subscribe("again")
        await flushed(nc)
        await asyncio.to_thread(edgebus_server.restart)  # same port, fresh server
        await asyncio.wait_for(reconnected.wait(), 20)
        await flushed(nc)  # subscriptions are replayed on reconnect
        other = await _connect(edgebus_server.client_url)
        await other.publish("again", b"hello")
        await flushed(other)
        assert (await sub.next_msg(5)).data == b"hello"
        await other.close()
        await nc.close()
    run_async(main)


@pytest.mark.edgebus(max_payload=1024)
def test_max_payload_advertised_and_enforced(edgebus_server):
    async def main():
        nc = await _connect(edgebus_server.client_url)
        assert nc.max_payload == 1024
        with pytest.raises(MaxPayloadError):
            await nc.publish("big", b"x" * 1025)
        await nc.publish("big", b"x" * 1024)
        await flushed(nc)
        await nc.close()
    run_async(main)
    s = raw(edgebus_server.port)  # a client that ignores the limit is cut off
    s.sendall(b"PUB big 1025\r\n")
    assert read_to_eof(s) == b"-ERR 'Maximum Payload Violation'\r\n"
    s.close()


@pytest.mark.edgebus(max_pending=256 * 1024, max_payload=64 * 1024)  # nats-server wants payload <= pending
def test_slow_consumer_is_cut_off_publisher_unharmed(edgebus_server):
    slow = raw(edgebus_server.port)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(b"SUB firehose 1\r\nPING\r\n")
    read_until(slow, b"PONG\r\n")

    async def main():
        nc = await _connect(edgebus_server.client_url)
        fast = await nc.subscribe("firehose")
        payload = b"y" * 4096
        for _ in range(1000):  # 4 MB, never read by `slow`
            await nc.publish("firehose", payload)
        await nc.flush(10)
        for _ in range(1000):
            assert (await fast.next_msg(5)).data == payload
        await nc.close()
    run_async(main)
    assert wait_until(lambda: edgebus_server.call(lambda s: s.broker.slow_consumers) > 0)
    assert edgebus_server.call(lambda s: s.broker.slow_consumers) == 1  # only the slow one
    rest = read_to_eof(slow)  # whatever was already in flight, then the close; no -ERR
    assert b"-ERR" not in rest
    slow.close()


@pytest.mark.edgebus(lame_duck_grace_period=0.2, lame_duck_duration=1.0)
def test_lame_duck_mode(edgebus_server):
    async def main():
        ldm = asyncio.Event()
        closed = asyncio.Event()

        async def on_ldm():
            ldm.set()

        async def on_disconnect():
            closed.set()
        nc = await nats.connect(edgebus_server.client_url, lame_duck_mode_cb=on_ldm,
                                disconnected_cb=on_disconnect, allow_reconnect=False)
        await flushed(nc)
        task = asyncio.create_task(asyncio.to_thread(edgebus_server.call, lambda s: s.lame_duck()))
        await asyncio.wait_for(ldm.wait(), 10)  # INFO with ldm:true
        with pytest.raises(OSError):  # no new clients are accepted meanwhile
            socket.create_connection(("127.0.0.1", edgebus_server.port), timeout=2).recv(1)
        await asyncio.wait_for(closed.wait(), 10)  # then the server closes the client
        await task
        await nc.close()
    run_async(main)


# -- many connections and hostile peers -------------------------------------------------------

def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.fixture
def edgebus_process():
    """edgebus in its own process, so its memory can be measured alone."""
    port = free_port()
    code = ("import trio; from edgebus.server import Server; from edgebus.options import Options;"
            f"o = Options(); o.port = {port}; o.host = '127.0.0.1'; trio.run(Server(o).run)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            raw(port, hello=None).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.02)
    yield proc, port
    proc.terminate()
    proc.wait(10)


def test_thousands_of_connections_memory_bounded_others_unharmed(edgebus_process):
    proc, port = edgebus_process
    n = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 200:
        pytest.skip(f"file descriptor limit {hard} too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    base = _rss_kib(proc.pid)
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(b'CONNECT {"verbose":false}\r\nSUB conn.%d 1\r\nPING\r\n' % i)
            socks.append(s)
        for s in socks:  # every one is served: INFO ... PONG
            got = read_until(s, b"PONG\r\n")
            assert got.startswith(b"INFO ") and got.endswith(b"PONG\r\n")
        grown = _rss_kib(proc.pid) - base
        # bounded: well under 40 KiB per idle connection with one subscription
        assert grown < n * 40, f"RSS grew {grown} KiB for {n} connections"

        async def main():  # a normal client still works while they are all there
            nc = await _connect(f"nats://127.0.0.1:{port}")
            sub = await nc.subscribe("ok")
            await nc.publish("conn.1999", b"to the last raw one")
            await nc.publish("ok", b"fine")
            assert (await sub.next_msg(5)).data == b"fine"
            await nc.close()
        run_async(main)
        assert read_until(socks[-1], b"one\r\n") == b"MSG conn.1999 1 19\r\nto the last raw one\r\n"
    finally:
        for s in socks:
            s.close()


def test_garbage_and_oversized_lines_close_only_the_offender(edgebus_server):
    async def main():
        nc = await _connect(edgebus_server.client_url)
        sub = await nc.subscribe("alive")
        g = raw(edgebus_server.port, hello=None)
        g.sendall(bytes(range(256)) * 4)
        assert read_to_eof(g) == b"-ERR 'Unknown Protocol Operation'\r\n"
        g.close()
        o = raw(edgebus_server.port, hello=None)
        o.sendall(b"SUB " + b"x" * 100_000)
        assert read_to_eof(o) == b"-ERR 'maximum control line exceeded'\r\n"
        o.close()
        await nc.publish("alive", b"yes")
        assert (await sub.next_msg(5)).data == b"yes"
        await nc.close()
    run_async(main)


@pytest.mark.edgebus(ping_interval=0.2, ping_max=1)
def test_half_open_connections_are_reaped(edgebus_server):
    """A peer that stops talking mid-message is found stale by the keep-alive and closed;
    a peer that half-closes its side is closed at once. Neither disturbs others."""
    silent = raw(edgebus_server.port)
    silent.sendall(b"SUB x 1\r\nPUB x 100\r\npartial")  # then nothing, ever
    half = raw(edgebus_server.port)
    half.sendall(b"SUB y 1\r\n")
    half.shutdown(socket.SHUT_WR)
    assert read_to_eof(half) == b""
    half.close()
    assert read_to_eof(silent) == b"PING\r\n-ERR 'Stale Connection'\r\n"
    silent.close()

    async def main():
        nc = await _connect(edgebus_server.client_url)
        await flushed(nc)
        await nc.close()
    run_async(main)
    assert wait_until(lambda: edgebus_server.call(lambda s: len(s.connections)) == 0)
    assert _client_subs(edgebus_server) == 0
