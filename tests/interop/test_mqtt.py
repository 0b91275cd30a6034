"""MQTT 3.1.1 front-end, protocol basics over real sockets: CONNECT/CONNACK return codes, client
ids, PUBLISH/PUBACK, SUBSCRIBE/SUBACK (0x80 for refused filters), UNSUBSCRIBE, PINGREQ,
DISCONNECT, takeover of a client id, `$` topics, keep-alive, paho-mqtt and mosquitto clients.

`RawMQTT` (a blocking socket plus the codec's client-role parser) is shared by the other
`test_mqtt_*` files.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from typing import Any, Callable

import pytest

from edgebus.codec import mqtt as m
from edgebus.options import MQTTOptions
from edgebus.testing.embedded import EmbeddedServer

MOSQ_PUB = shutil.which("mosquitto_pub")
MOSQ_SUB = shutil.which("mosquitto_sub")


class RawMQTT:
    """A hand-driven MQTT client: send any bytes, read parsed packets."""

    def __init__(self, port: int, client_id: str | None = "c", *, clean: bool = True,
                 keepalive: int = 0, will: m.Will | None = None, username: str | None = None,
                 password: bytes | None = None, expect_rc: int | None = 0,
                 timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = m.MQTTParser(our_role=m.Role.CLIENT)
        self.pending: list[Any] = []
        self.eof = False
        self.connack: m.ConnAck | None = None
        if client_id is not None:
            self.send(m.connect(client_id, clean_session=clean, keepalive=keepalive, will=will,
                                username=username, password=password))
            if expect_rc is not None:
                self.connack = self.expect(m.ConnAck)
                assert self.connack.return_code == expect_rc, self.connack

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.pending += self.parser.feed(data)
        return True

    def expect(self, kind: type, timeout: float = 5.0, where: Callable[[Any], bool] | None = None) -> Any:
        """The next packet of this type (others stay queued)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, p in enumerate(self.pending):
                if isinstance(p, kind) and (where is None or where(p)):
                    return self.pending.pop(i)
            if not self._fill(deadline):
                raise AssertionError(f"no {kind.__name__} within {timeout}s; got {self.pending} "
                                     f"eof={self.eof}")

    def publishes(self, n: int, timeout: float = 5.0) -> list[m.Publish]:
        out = []
        while len(out) < n:
            out.append(self.expect(m.Publish, timeout))
        return out

    def quiet(self, kind: type = m.Publish, wait: float = 0.3) -> list[Any]:
        """Packets of this type that arrive within `wait` seconds (for "nothing came")."""
        deadline = time.monotonic() + wait
        while self._fill(deadline):
            pass
        got = [p for p in self.pending if isinstance(p, kind)]
        self.pending = [p for p in self.pending if not isinstance(p, kind)]
        return got

    def wait_closed(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._fill(deadline)
        return self.eof

    def subscribe(self, filters: list[tuple[str, int]], pid: int = 1) -> list[int]:
        self.send(m.subscribe(pid, filters))
        return self.expect(m.SubAck, where=lambda p: p.packet_id == pid).return_codes

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                pid: int = 1) -> None:
        self.send(m.publish(topic, payload, qos, retain, packet_id=pid if qos else None))
        if qos == 1:
            self.expect(m.PubAck, where=lambda p: p.packet_id == pid)
        elif qos == 2:
            self.expect(m.PubRec, where=lambda p: p.packet_id == pid)
            self.send(m.pubrel(pid))
            self.expect(m.PubComp, where=lambda p: p.packet_id == pid)

    def ping(self) -> None:
        self.send(m.pingreq())
        self.expect(m.PingResp)

    def disconnect(self) -> None:
        try:
            self.send(m.disconnect())
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Drop the connection abruptly (RST), like a crashed device."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


def mqtt_server(**kw: Any) -> EmbeddedServer:
    mq = kw.pop("mqtt", None) or MQTTOptions(port=-1, host="127.0.0.1")
    return EmbeddedServer(mqtt=mq, **kw)


def mqtt_port(srv: EmbeddedServer) -> int:
    return srv.server.mqtt_port  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def srv():
    s = mqtt_server(jetstream=True)
    s.start()
    yield s
    s.close()


@pytest.fixture
def port(srv) -> int:
    return mqtt_port(srv)


# ---------------------------------------------------------------------------------- CONNECT

def test_listener_is_announced(srv):
    assert srv.server.ports["mqtt"] == [f"mqtt://127.0.0.1:{mqtt_port(srv)}"]
    assert srv.server.services["mqtt"].port == mqtt_port(srv)


def test_connack_codes(port):
    c = RawMQTT(port, "ok")
    assert c.connack == m.ConnAck(False, 0)
    c.disconnect()
    # protocol level 5 (MQTT 5): CONNACK 0x01 then close
    c = RawMQTT(port, None)
    c.send(m.connect("v5", protocol_level=5))
    assert c.expect(m.ConnAck).return_code == 0x01
    assert c.wait_closed()
    # MQTT 3.1 name: closed without CONNACK
    c = RawMQTT(port, None)
    c.send(m.connect("v31", protocol_name="MQIsdp", protocol_level=3))
    assert c.wait_closed() and not c.pending
    # empty client id without clean session: 0x02
    c = RawMQTT(port, "", clean=False, expect_rc=0x02)
    assert c.wait_closed()
    # client id that is not a valid NATS name: 0x02
    c = RawMQTT(port, "a.b", expect_rc=0x02)
    assert c.wait_closed()
    # user-name flag with an empty user name: 0x04
    c = RawMQTT(port, "u", username="", expect_rc=0x04)
    assert c.wait_closed()


def test_empty_client_id_gets_an_assigned_one(srv, port):
    c = RawMQTT(port, "", clean=True)
    c.ping()
    ids = srv.call(lambda s: [x.client_id for x in s.services["mqtt"].connections])
    assigned = [i for i in ids if len(i) == 22]
    assert assigned, ids
    c.disconnect()


def test_second_connect_is_a_protocol_violation(port):
    c = RawMQTT(port, "twice")
    c.send(m.connect("twice"))
    assert c.wait_closed()


def test_first_packet_must_be_connect(port):
    c = RawMQTT(port, None)
    c.send(m.pingreq())
    assert c.wait_closed() and not c.pending


# ----------------------------------------------------------------------------- pub / sub

def test_publish_subscribe_qos0_qos1_ping_unsubscribe(port):
    sub = RawMQTT(port, "s1")
    assert sub.subscribe([("t/+/x", 1), ("t/#", 0)]) == [1, 0]
    pub = RawMQTT(port, "p1")
    pub.publish("t/a/x", b"one", qos=1, pid=7)
    got = sub.publishes(2)
    by_qos = sorted((p.qos, p.payload, p.topic) for p in got)
    assert by_qos == [(0, b"one", "t/a/x"), (1, b"one", "t/a/x")]
    q1 = next(p for p in got if p.qos == 1)
    assert q1.packet_id and not q1.dup and not q1.retain
    sub.send(m.puback(q1.packet_id))
    sub.ping()
    # '#' also matches the parent level
    pub.publish("t", b"parent")
    assert sub.expect(m.Publish).topic == "t"
    sub.send(m.unsubscribe(3, ["t/#", "t/+/x"]))
    assert sub.expect(m.UnsubAck).packet_id == 3
    pub.publish("t/a/x", b"after")
    sub.ping()
    assert sub.quiet() == []
    sub.disconnect()
    pub.disconnect()


def test_suback_failure_for_refused_filters(port):
    c = RawMQTT(port, "f1")
    codes = c.subscribe([("a/#/b", 0), ("ok/+", 2), ("has space", 1), ("$MQTT/sub/x", 0), ("#", 1)])
    assert codes == [0x80, 2, 0x80, 0x80, 1]
    c.disconnect()


def test_topic_mapping_round_trip(port):
    sub = RawMQTT(port, "map-s")
    sub.subscribe([("#", 0)])
    pub = RawMQTT(port, "map-p")
    topics = ["/lead", "trail/", "a//b", "dot.ted/x", "/", "é/ü"]
    for t in topics:
        pub.publish(t, t.encode())
    got = [p.topic for p in sub.publishes(len(topics))]
    assert got == topics
    sub.disconnect()
    pub.disconnect()


def test_wildcard_filters_do_not_match_dollar_topics(port):
    sub = RawMQTT(port, "dollar-s")
    sub.subscribe([("#", 0), ("+/status", 0), ("$SYSX/#", 0)])
    pub = RawMQTT(port, "dollar-p")
    pub.publish("$SYSX/status", b"d", retain=True)
    pub.publish("dev/status", b"n")
    got = sub.publishes(3)
    assert sorted((p.topic, p.payload) for p in got) == [
        ("$SYSX/status", b"d"), ("dev/status", b"n"), ("dev/status", b"n")]
    sub.ping()
    assert sub.quiet() == []
    # retained: a wildcard-first filter does not get '$' topics either [MQTT-4.7.2-1]
    late = RawMQTT(port, "dollar-late")
    late.subscribe([("#", 0)])
    late.ping()
    assert [p.topic for p in late.quiet()] == []
    assert late.subscribe([("$SYSX/+", 0)], pid=2) == [0]
    assert late.expect(m.Publish).retain
    pub.publish("$SYSX/status", b"", retain=True)
    for c in (sub, pub, late):
        c.disconnect()


def test_takeover_closes_the_old_connection_without_its_will(port):
    watcher = RawMQTT(port, "watcher")
    watcher.subscribe([("wills/#", 0)])
    old = RawMQTT(port, "dup", will=m.Will("wills/dup", b"gone"))
    new = RawMQTT(port, "dup")
    assert old.wait_closed()
    new.ping()
    watcher.ping()
    assert watcher.quiet() == []
    new.disconnect()
    watcher.disconnect()


def test_takeover_jail_for_flapping_client_ids(port):
    a = RawMQTT(port, "flap")
    b = RawMQTT(port, "flap")
    t0 = time.monotonic()
    # a third client with the same id within a second of the takeover is held, then closed
    c = RawMQTT(port, "flap", expect_rc=None)
    if time.monotonic() - t0 > 0.8:
        pytest.skip("box too slow to reconnect within the 1 s jail window")
    assert a.wait_closed()
    assert c.wait_closed(timeout=5) and not c.pending
    b.ping()
    b.disconnect()


def test_keepalive_expiry_closes_and_pings_keep_alive(port):
    idle = RawMQTT(port, "ka-idle", keepalive=1)  # closed after floor(1.5 x 1) = 1 s
    busy = RawMQTT(port, "ka-busy", keepalive=4)  # 6 s, pinged every 0.3 s
    stop = threading.Event()

    def pinger() -> None:
        while not stop.wait(0.3):
            try:
                busy.send(m.pingreq())
            except OSError:
                return

    t = threading.Thread(target=pinger, daemon=True)
    t.start()
    try:
        assert idle.wait_closed(timeout=10)
        assert not busy.eof
        busy.expect(m.PingResp)
    finally:
        stop.set()
        t.join()
    busy.disconnect()


def test_session_present_flag(port):
    c = RawMQTT(port, "sp", clean=False)
    assert c.connack.session_present is False
    c.subscribe([("sp/x", 1)])
    c.disconnect()
    c = RawMQTT(port, "sp", clean=False)
    assert c.connack.session_present is True
    c.disconnect()
    c = RawMQTT(port, "sp", clean=True)  # clean session discards it
    assert c.connack.session_present is False
    c.disconnect()
    c = RawMQTT(port, "sp", clean=False)
    assert c.connack.session_present is False
    c.disconnect()


def test_connz_lists_mqtt_clients():
    import json
    import urllib.request
    s = mqtt_server(http_port=-1)
    s.start()
    try:
        c = RawMQTT(mqtt_port(s), "connz-me")
        c.subscribe([("z/#", 0)])
        with urllib.request.urlopen(s.http_url + "/connz?subs=1&mqtt_client=connz-me") as r:
            d = json.load(r)
        assert d["num_connections"] == 1
        conn = d["connections"][0]
        assert conn["mqtt_client"] == "connz-me" and conn["type"] == "mqtt"
        assert sorted(conn["subscriptions_list"]) == ["z", "z.>"]
        c.disconnect()
    finally:
        s.close()


# --------------------------------------------------------------------------- real clients

def _paho(cid: str, clean: bool = True):
    paho = pytest.importorskip("paho.mqtt.client")
    return paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv311,
                       clean_session=clean)


def test_paho_qos0_qos1_qos2_and_retained(port):
    got: list[tuple[str, bytes, int, bool]] = []
    done = threading.Event()
    subscribed = threading.Event()
    sub = _paho("paho-sub")
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe([("paho/#", 2)])
    sub.on_subscribe = lambda *a: subscribed.set()

    def on_message(c, u, msg):
        got.append((msg.topic, msg.payload, msg.qos, bool(msg.retain)))
        if len(got) == 4:
            done.set()

    sub.on_message = on_message
    pub = _paho("paho-pub")
    pub.connect("127.0.0.1", port, keepalive=30)
    pub.loop_start()
    pub.publish("paho/retained", b"r", qos=1, retain=True).wait_for_publish(5)
    sub.connect("127.0.0.1", port, keepalive=30)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        for q in (0, 1, 2):
            pub.publish(f"paho/q{q}", f"m{q}".encode(), qos=q).wait_for_publish(5)
        assert done.wait(5), got
    finally:
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()
    assert got[0] == ("paho/retained", b"r", 1, True)
    assert sorted(got[1:]) == [("paho/q0", b"m0", 0, False), ("paho/q1", b"m1", 1, False),
                              ("paho/q2", b"m2", 2, False)]
    c = RawMQTT(port, "paho-clean")
    c.publish("paho/retained", b"", retain=True)
    c.disconnect()


@pytest.mark.skipif(not (MOSQ_PUB and MOSQ_SUB), reason="mosquitto-clients not installed")
def test_mosquitto_pub_sub(srv, port):
    sub = subprocess.Popen([MOSQ_SUB, "-h", "127.0.0.1", "-p", str(port), "-t", "mosq/#", "-q", "1",
                            "-C", "2", "-W", "20", "-v", "-i", "mosq-sub"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not srv.call(lambda s: s.broker.global_account.sublist.has_interest("mosq.x")):
            assert time.monotonic() < deadline and sub.poll() is None
            time.sleep(0.05)
        for i, (msg, q) in enumerate((("hello", "0"), ("world", "1"))):
            r = subprocess.run([MOSQ_PUB, "-h", "127.0.0.1", "-p", str(port), "-t", f"mosq/{i}",
                                "-m", msg, "-q", q], capture_output=True, timeout=10)
            assert r.returncode == 0, r.stderr
        out, err = sub.communicate(timeout=20)
    finally:
        if sub.poll() is None:
            sub.kill()
    assert sub.returncode == 0, err
    assert out.decode().splitlines() == ["mosq/0 hello", "mosq/1 world"]


@pytest.mark.skipif(not (MOSQ_PUB and MOSQ_SUB), reason="mosquitto-clients not installed")
def test_mosquitto_retained_and_clear(port):
    def pub(*args: str) -> None:
        r = subprocess.run([MOSQ_PUB, "-h", "127.0.0.1", "-p", str(port), *args],
                           capture_output=True, timeout=10)
        assert r.returncode == 0, r.stderr

    def sub_once() -> subprocess.CompletedProcess:
        return subprocess.run([MOSQ_SUB, "-h", "127.0.0.1", "-p", str(port), "-t", "mret/#", "-C", "1",
                               "-W", "2", "-v", "--retained-only"], capture_output=True, timeout=10)

    pub("-t", "mret/a", "-m", "kept", "-r", "-q", "1")
    r = sub_once()
    assert r.stdout.decode().strip() == "mret/a kept"
    pub("-t", "mret/a", "-r", "-n")
    r = sub_once()
    assert r.stdout.strip() == b""  # timed out: nothing retained any more
