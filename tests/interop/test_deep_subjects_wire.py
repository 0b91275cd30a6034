"""Subjects as deep as nats-server's control line allows (4,096 bytes: ~2,000 tokens), over
real sockets: the same raw script against edgebus and the real nats-server must see the same
bytes; a deep subscription works across a leaf link to a nats-server hub and for MQTT clients
(retained and live). Before the sublist and the retained index walked tokens iteratively, a
990-token PUB against a `*`-per-token subscription raised RecursionError and the publisher was
disconnected."""

from __future__ import annotations

import socket

import nats
import pytest

from conftest import NATS_SERVER, flushed, run_async
from edgebus.codec import mqtt as m
from edgebus.testing.embedded import EmbeddedServer
from test_leaf import Collector, connected, edge_waits, hub_waits, leaf_conf, start_hub
from test_mqtt import RawMQTT, mqtt_port, mqtt_server

pytestmark = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")

# "PUB xyz.a.a...a 12" is 4,096 bytes with 2,044 tokens (max_control_line's default)
N = 2044


def subj(first: str, tok: str = "a", n: int = N) -> str:
    return ".".join([first] + [tok] * (n - 1))


STARS_FWC = ".".join(["*"] * (N - 2) + [">"])   # matches subjects of N-1 tokens and more
STARS = ".".join(["*"] * N)


def _raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    buf = b""
    while b"\r\n" not in buf:
        buf += s.recv(4096)
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\nPING\r\n')
    _until_pong(s)
    return s


def _until_pong(s: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"PONG\r\n"):
        d = s.recv(65536)
        if not d:
            return buf + b"<EOF>"
        buf += d
    return buf[:-6]


def _script(port: int) -> list[bytes]:
    """What a subscriber and a publisher see; each step ends with PING/PONG."""
    sub, pub = _raw(port), _raw(port)
    out = []
    sub.sendall(f"SUB {STARS_FWC} 1\r\nSUB {STARS} 2\r\nSUB {subj('xyz')} 3\r\n"
                f"SUB {STARS} q 4\r\nSUB {subj('xyz', n=N - 1)}.* 5\r\nPING\r\n".encode())
    out.append(_until_pong(sub))
    line = f"PUB {subj('xyz')} 12\r\n".encode()
    assert len(line) == 4096 + 2
    hdr = b"NATS/1.0\r\nk: v\r\n\r\n"
    pub.sendall(line + b"hello world!\r\n"
                + f"PUB {subj('y')} 1\r\n1\r\n".encode()
                + f"HPUB {subj('xyz', n=N - 1)} {len(hdr)} {len(hdr) + 2}\r\n".encode() + hdr
                + b"hh\r\nPING\r\n")
    out.append(_until_pong(pub))    # no -ERR, still connected
    sub.sendall(b"PING\r\n")
    out.append(_until_pong(sub))
    for s in (sub, pub):
        s.close()
    return out


def test_deep_subjects_like_nats_server(edgebus_server, real_nats_server):
    ref = _script(real_nats_server().port)
    got = _script(int(edgebus_server.client_url.rsplit(":", 1)[1]))
    assert ref[2].count(b"MSG ") == 9 and b"HMSG " in ref[2]  # the script is worth comparing
    assert got == ref


def test_deep_subjects_with_nats_py(edgebus_server):
    async def main():
        nc = await nats.connect(edgebus_server.client_url, allow_reconnect=False)
        s = await nc.subscribe(".".join(["p"] + ["*"] * (N - 200) + [">"]))
        await flushed(nc)
        await nc.publish(subj("p", n=N - 10), b"1")
        await nc.publish(subj("p", n=N - 100), b"2")
        got = [await s.next_msg(5) for _ in range(2)]
        assert [(len(g.subject.split(".")), g.data) for g in got] == [(N - 10, b"1"), (N - 100, b"2")]
        assert nc.is_connected
        await nc.close()
    run_async(main)


def test_deep_subjects_across_a_leaf_link():
    hub, lp = start_hub()
    leaf = EmbeddedServer(config=leaf_conf(lp)).start()
    n = N - 20  # the hub's LS+ and LMSG lines carry a few more bytes than a SUB/PUB
    filt = ".".join(["d"] + ["*"] * (n - 2) + [">"])
    try:
        connected(leaf)

        async def main():
            edge = await nats.connect(leaf.client_url, allow_reconnect=False)
            hnc = await nats.connect(hub.client_url, allow_reconnect=False)
            on_edge, on_hub = Collector(), Collector()
            await edge.subscribe(filt, cb=on_edge.cb)
            await hnc.subscribe(filt, cb=on_hub.cb)
            await flushed(edge, hnc)
            await hub_waits(hub, filt)
            await hnc.publish(subj("d", n=n), b"from-hub")
            await on_edge.until(b"from-hub")
            await edge_waits(leaf, filt)
            await edge.publish(subj("d", n=n), b"from-edge")
            await on_hub.until(b"from-edge")
            assert edge.is_connected and hnc.is_connected
            await edge.close()
            await hnc.close()
        run_async(main)
    finally:
        leaf.close()
        hub.stop()


def test_deep_mqtt_topics_retained_and_live():
    srv = mqtt_server(jetstream=True)
    srv.start()
    try:
        port = mqtt_port(srv)
        levels = N - 20
        topic = "/".join(["a"] * levels)
        pub = RawMQTT(port, "deep-pub")
        pub.publish(topic, b"retained", qos=1, retain=True)
        sub = RawMQTT(port, "deep-sub")
        assert sub.subscribe([("/".join(["+"] * (levels - 1) + ["#"]), 1)]) == [1]
        p = sub.expect(m.Publish)
        assert (p.topic, p.payload, p.retain) == (topic, b"retained", True)
        sub.send(m.puback(p.packet_id))
        pub.publish(topic, b"live", qos=1, pid=2)
        p = sub.expect(m.Publish)
        assert (p.topic, p.payload, p.retain) == (topic, b"live", False)
        sub.disconnect()
        pub.disconnect()
    finally:
        srv.close()


# -- JSON nested deeper than Python's recursion limit ------------------------------------------
DEEP_JSON = [b"[" * 20000, b'{"a":' * 12000, b'{"name":"X","metadata":{"s":"[[[}]","t":' + b"[" * 20000]


def _api_script(url: str) -> list[tuple[str, bytes]]:
    async def main() -> list[tuple[str, bytes]]:
        nc = await nats.connect(url, allow_reconnect=False)
        out = []
        for subj in ("$JS.API.STREAM.CREATE.X", "$JS.API.CONSUMER.CREATE.X", "$JS.API.STREAM.LIST"):
            for body in DEEP_JSON:
                r = await nc.request(subj, body, timeout=5)
                out.append((subj, r.data))
        assert nc.is_connected
        await nc.close()
        return out
    return run_async(main)


def test_deeply_nested_json_api_requests_like_nats_server(real_nats_server):
    ref = _api_script(real_nats_server(jetstream=True).client_url)
    srv = EmbeddedServer(jetstream=True).start()
    try:
        got = _api_script(srv.client_url)
    finally:
        srv.close()
    assert b"exceeded max depth at offset 10001" in ref[0][1]  # the script is worth comparing
    assert got == ref


@pytest.mark.edgebus(jetstream=True)
def test_deeply_nested_connect_and_pull_request(edgebus_server, caplog):
    """Refused as any malformed JSON is (CONNECT: the connection closes, as nats-server's does;
    a pull request: its error status), with no traceback in the log."""
    port = int(edgebus_server.client_url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.recv(4096)
    raw.sendall(b"CONNECT " + b"[" * 3000 + b"\r\nPING\r\n")
    buf = b""
    while True:
        d = raw.recv(65536)
        if not d:
            break
        buf += d
    assert b"PONG" not in buf
    raw.close()

    async def pull() -> None:
        nc = await nats.connect(edgebus_server.client_url, allow_reconnect=False)
        js = nc.jetstream()
        await js.add_stream(name="P", subjects=["p.>"])
        await js.add_consumer("P", durable_name="c")
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish("$JS.API.CONSUMER.MSG.NEXT.P.c", b"{" + b'"a":[' * 3000, reply=inbox)
        m = await sub.next_msg(5)
        assert m.headers and m.headers.get("Status") == "400", m.headers
        assert nc.is_connected
        await nc.close()
    run_async(pull)
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
