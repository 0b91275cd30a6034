"""MQTT QoS 1/2 delivery and state that outlives connections and server restarts: redelivery
with DUP on reconnect, the `max_ack_pending` window, QoS 2 both ways, persistent sessions and
retained messages across `EmbeddedServer.restart()` (with and without JetStream), Wills of
killed clients."""

from __future__ import annotations

import pytest

from conftest import free_port
from edgebus.codec import mqtt as m
from edgebus.options import MQTTOptions
from test_mqtt import RawMQTT, mqtt_port, mqtt_server


@pytest.fixture(scope="module")
def srv():
    s = mqtt_server(jetstream=True, mqtt=MQTTOptions(port=-1, host="127.0.0.1", max_ack_pending=5))
    s.start()
    yield s
    s.close()


@pytest.fixture
def port(srv) -> int:
    return mqtt_port(srv)


def test_qos1_redelivered_with_dup_when_the_subscriber_drops_mid_stream(port):
    sub = RawMQTT(port, "r-sub", clean=False)
    assert sub.subscribe([("r/#", 1)]) == [1]
    pub = RawMQTT(port, "r-pub")
    for i in range(4):
        pub.publish("r/x", b"m%d" % i, qos=1, pid=i + 1)
    first = sub.publishes(4)
    assert [p.payload for p in first] == [b"m0", b"m1", b"m2", b"m3"]
    sub.send(m.puback(first[0].packet_id) + m.puback(first[1].packet_id))
    sub.ping()
    sub.abort()  # m2, m3 were never acknowledged
    pub.publish("r/x", b"m4", qos=1, pid=9)  # queued while the session is away
    pub.publish("r/x", b"q0", qos=0)  # QoS 0 is not kept for an absent client
    sub = RawMQTT(port, "r-sub", clean=False)
    assert sub.connack.session_present
    again = sub.publishes(3)
    # (m4 may have gone out to the dying connection already: its DUP flag is not checked)
    assert [(p.payload, p.dup) for p in again[:2]] == [(b"m2", True), (b"m3", True)]
    assert again[2].payload == b"m4"
    assert [p.packet_id for p in again[:2]] == [first[2].packet_id, first[3].packet_id]
    for p in again:
        sub.send(m.puback(p.packet_id))
    sub.ping()
    sub.disconnect()
    sub = RawMQTT(port, "r-sub", clean=False)
    sub.ping()
    assert sub.quiet() == []  # everything acknowledged: nothing comes back
    sub.disconnect()
    RawMQTT(port, "r-sub", clean=True).disconnect()
    pub.disconnect()


def test_max_ack_pending_bounds_unacknowledged_deliveries(port):
    sub = RawMQTT(port, "w-sub")
    sub.subscribe([("w/x", 1)])
    pub = RawMQTT(port, "w-pub")
    for i in range(12):
        pub.publish("w/x", b"%d" % i, qos=1, pid=i + 1)
    got = sub.publishes(5)
    sub.ping()
    assert sub.quiet() == []  # window of 5 full
    seen = [p.payload for p in got]
    while len(seen) < 12:
        for p in got:
            sub.send(m.puback(p.packet_id))
        got = sub.publishes(min(5, 12 - len(seen)))
        seen += [p.payload for p in got]
    assert seen == [b"%d" % i for i in range(12)]
    pub.disconnect()
    sub.disconnect()


def test_qos2_both_ways(port):
    sub = RawMQTT(port, "q2-sub")
    assert sub.subscribe([("q2/#", 2), ("q2one/#", 1)]) == [2, 1]
    pub = RawMQTT(port, "q2-pub")
    pub.send(m.publish("q2/a", b"exactly", 2, packet_id=11))
    assert pub.expect(m.PubRec).packet_id == 11
    # a resent PUBLISH with the same id before PUBREL is not delivered twice
    pub.send(m.publish("q2/a", b"exactly", 2, dup=True, packet_id=11))
    assert pub.expect(m.PubRec).packet_id == 11
    sub.ping()
    assert sub.quiet() == []  # held until PUBREL
    pub.send(m.pubrel(11))
    assert pub.expect(m.PubComp).packet_id == 11
    p = sub.expect(m.Publish)
    assert (p.topic, p.payload, p.qos) == ("q2/a", b"exactly", 2)
    sub.send(m.pubrec(p.packet_id))
    assert sub.expect(m.PubRel).packet_id == p.packet_id
    sub.send(m.pubcomp(p.packet_id))
    sub.ping()
    assert sub.quiet() == []
    # PUBREL for an unknown id still gets PUBCOMP
    pub.send(m.pubrel(99))
    assert pub.expect(m.PubComp).packet_id == 99
    # a QoS 2 publish to a QoS 1 subscription is delivered at QoS 1
    pub.publish("q2one/b", b"down", qos=2, pid=12)
    assert sub.expect(m.Publish).qos == 1
    pub.disconnect()
    sub.disconnect()


@pytest.mark.parametrize("jetstream", [True, False], ids=["jetstream", "mqtt-store"])
def test_sessions_and_retained_survive_a_restart(tmp_path, jetstream):
    mq = MQTTOptions(port=free_port(), host="127.0.0.1")
    s = mqtt_server(jetstream=jetstream, store_dir=str(tmp_path), mqtt=mq)
    s.start()
    try:
        port = mq.port
        keeper = RawMQTT(port, "keeper", clean=False)
        keeper.subscribe([("home/+/temp", 1), ("home/#", 0)])
        pub = RawMQTT(port, "pub", clean=False)
        pub.publish("home/kitchen/temp", b"21", qos=1, retain=True, pid=1)
        pub.publish("home/état", b"on", qos=0, retain=True)
        got = keeper.publishes(3)
        unacked = next(p for p in got if p.qos == 1)
        keeper.abort()
        pub.publish("home/hall/temp", b"19", qos=1, pid=2)  # queued for the offline session
        # a QoS 2 publish received but not yet released survives too
        pub.send(m.publish("home/q2/temp", b"q2", 2, packet_id=3))
        pub.expect(m.PubRec)
        pub.abort()
        s.restart()
        keeper = RawMQTT(port, "keeper", clean=False)
        assert keeper.connack.session_present
        again = keeper.publishes(2)
        assert [(p.topic, p.payload, p.qos, p.dup) for p in again] == [
            ("home/kitchen/temp", b"21", 1, True), ("home/hall/temp", b"19", 1, True)]
        assert unacked.payload == b"21"
        for p in again:
            keeper.send(m.puback(p.packet_id))
        # the session's subscriptions are back: live messages flow
        pub = RawMQTT(port, "pub", clean=False)
        pub.send(m.pubrel(3))  # releases the QoS 2 message stored before the restart
        pub.expect(m.PubComp)
        late = keeper.publishes(2)
        assert sorted((p.topic, p.qos) for p in late) == [("home/q2/temp", 0), ("home/q2/temp", 1)]
        # retained messages are back for new subscribers
        new = RawMQTT(port, "new")
        new.subscribe([("home/#", 1)])
        ret = new.publishes(2)
        assert sorted((p.topic, p.payload, p.retain) for p in ret) == [
            ("home/kitchen/temp", b"21", True), ("home/état", b"on", True)]
        for c in (keeper, pub, new):
            c.disconnect()
    finally:
        s.close()


def test_will_on_killed_client_with_qos_and_retain(port):
    watcher = RawMQTT(port, "will-w")
    watcher.subscribe([("dev/+/status", 1)])
    dev = RawMQTT(port, "dev-7", keepalive=60,
                  will=m.Will("dev/7/status", b"offline", qos=1, retain=True))
    dev.publish("dev/7/status", b"online", qos=1, pid=1)
    p = watcher.expect(m.Publish)
    assert p.payload == b"online"
    watcher.send(m.puback(p.packet_id))
    dev.abort()
    w = watcher.expect(m.Publish)
    assert (w.topic, w.payload, w.qos, w.retain) == ("dev/7/status", b"offline", 1, False)
    watcher.send(m.puback(w.packet_id))
    # the Will was retained
    late = RawMQTT(port, "will-late")
    late.subscribe([("dev/7/status", 0)])
    r = late.expect(m.Publish)
    assert (r.payload, r.retain) == (b"offline", True)
    # a clean DISCONNECT discards the Will
    dev2 = RawMQTT(port, "dev-8", will=m.Will("dev/8/status", b"offline"))
    dev2.disconnect()
    watcher.ping()
    assert watcher.quiet() == []
    late.publish("dev/7/status", b"", retain=True)
    for c in (watcher, late):
        c.disconnect()


def test_state_moves_into_jetstream_when_it_is_turned_on(tmp_path):
    mq = MQTTOptions(port=free_port(), host="127.0.0.1")
    s = mqtt_server(jetstream=False, store_dir=str(tmp_path), mqtt=mq)
    s.start()
    try:
        keeper = RawMQTT(mq.port, "mover", clean=False)
        keeper.subscribe([("mv/#", 1)])
        keeper.disconnect()
        pub = RawMQTT(mq.port, "mv-pub")
        pub.publish("mv/r", b"kept", qos=1, retain=True)
        pub.publish("mv/q", b"queued", qos=1, pid=2)
        pub.disconnect()
    finally:
        s.stop()
    s = mqtt_server(jetstream=True, store_dir=str(tmp_path), mqtt=mq)
    s.start()
    try:
        keeper = RawMQTT(mq.port, "mover", clean=False)
        assert keeper.connack.session_present
        got = keeper.publishes(2)
        assert sorted(p.payload for p in got) == [b"kept", b"queued"]
        for p in got:
            keeper.send(m.puback(p.packet_id))
        keeper.disconnect()
        late = RawMQTT(mq.port, "mv-late")
        late.subscribe([("mv/r", 0)])
        assert late.expect(m.Publish).payload == b"kept"
        late.disconnect()
        assert not (tmp_path / "mqtt" / "$G" / "rmsgs").exists()
    finally:
        s.close()
