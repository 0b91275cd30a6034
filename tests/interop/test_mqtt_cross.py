"""MQTT next to NATS: cross-delivery both ways with nats-py, JetStream streams storing MQTT
publishes, retained messages and sessions readable from NATS, subject mappings; authentication
and permissions from the same config; TLS; MQTT over WebSocket; the amqtt client."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading

import nats
import pytest

from conftest import flushed, run_async
from edgebus.codec import mqtt as m
from edgebus.options import MQTTOptions, TLSOptions, WebsocketOptions
from edgebus.testing.embedded import EmbeddedServer
from test_mqtt import RawMQTT, mqtt_port, mqtt_server


@pytest.fixture(scope="module")
def srv():
    s = mqtt_server(jetstream=True, server_name="edge-1")
    s.start()
    yield s
    s.close()


def test_nats_and_mqtt_cross_delivery(srv):
    port = mqtt_port(srv)

    async def main() -> None:
        nc = await nats.connect(srv.client_url)
        sub = await nc.subscribe("sensors.>")
        await flushed(nc)
        mq = RawMQTT(port, "cross")
        assert mq.subscribe([("sensors/#", 1)]) == [1]
        # MQTT -> NATS: HMSG with the Nmqtt-Pub header, topic mapped to a subject
        mq.publish("sensors/room.1/temp", b"21.5", qos=1)
        msg = await sub.next_msg(timeout=5)
        assert msg.subject == "sensors.room//1.temp" and msg.data == b"21.5"
        assert msg.headers == {"Nmqtt-Pub": "1"}
        echo = mq.expect(m.Publish)
        assert echo.topic == "sensors/room.1/temp" and echo.qos == 1
        mq.send(m.puback(echo.packet_id))
        # NATS -> MQTT: always QoS 0, topic rebuilt from the subject
        await nc.publish("sensors.hall.temp", b"19")
        await flushed(nc)
        p = mq.expect(m.Publish)
        assert (p.topic, p.payload, p.qos, p.retain) == ("sensors/hall/temp", b"19", 0, False)
        mq.disconnect()
        await sub.unsubscribe()
        await nc.close()

    run_async(main)


def test_jetstream_stream_stores_mqtt_publishes_and_retained_is_readable(srv):
    port = mqtt_port(srv)

    async def main() -> None:
        nc = await nats.connect(srv.client_url)
        js = nc.jetstream()
        await js.add_stream(name="SENS", subjects=["store.>"])
        mq = RawMQTT(port, "js-pub")
        mq.publish("store/x", b"a", qos=1)
        mq.publish("store/y", b"b", qos=0)
        mq.publish("store/x", b"kept", qos=1, retain=True, pid=2)
        info = await js.stream_info("SENS")
        assert info.state.messages == 3
        first = await js.get_msg("SENS", 1)
        assert first.subject == "store.x" and first.data == b"a"
        assert first.headers["Nmqtt-Pub"] == "1"
        # the retained copy is where nats-server keeps it, in its format
        rm = await js.get_last_msg("$MQTT_rmsgs", "$MQTT.rmsgs.store.x")
        assert rm.data == b"kept"
        assert rm.headers["Nmqtt-RTopic"] == "store/x" and rm.headers["Nmqtt-RFlags"] == "3"
        # a persistent session record: $MQTT.sess.<hash>, nats-server's JSON
        RawMQTT(port, "js-keeper", clean=False).subscribe([("store/#", 1)])
        from edgebus.mqtt.persist import get_hash
        rec = await js.get_last_msg("$MQTT_sess", "$MQTT.sess." + get_hash("js-keeper"))
        import json
        body = json.loads(rec.data)
        assert body["id"] == "js-keeper" and body["subs"] == {"store.>": 1}
        # an empty retained publish clears the record
        mq.publish("store/x", b"", retain=True)
        with pytest.raises(Exception):
            await js.get_last_msg("$MQTT_rmsgs", "$MQTT.rmsgs.store.x")
        mq.disconnect()
        RawMQTT(port, "js-keeper", clean=True).disconnect()
        await js.delete_stream("SENS")
        await nc.close()

    run_async(main)


def test_account_mappings_apply_to_mqtt_publishes():
    s = mqtt_server(config="""
        mqtt { port: -1, host: 127.0.0.1 }
        mappings { "old.>": "new.>" }
    """)
    s.start()
    try:
        port = mqtt_port(s)
        sub = RawMQTT(port, "map-sub")
        sub.subscribe([("new/#", 0)])
        pub = RawMQTT(port, "map-pub")
        pub.publish("old/a", b"x", retain=True)
        p = sub.expect(m.Publish)
        assert (p.topic, p.payload) == ("new/a", b"x")
        late = RawMQTT(port, "map-late")
        late.subscribe([("new/a", 0)])
        assert late.expect(m.Publish).retain  # stored under the mapped subject
        for c in (sub, pub, late):
            c.disconnect()
    finally:
        s.close()


# --------------------------------------------------------------------------- auth / perms

USERS_CONF = """
    mqtt { port: -1, host: 127.0.0.1 }
    authorization {
      users: [
        {user: alice, password: wonder,
         permissions: {publish: {deny: ["secret.>"]}, subscribe: {deny: ["hidden.>"]}}}
        {user: bob, password: builder, allowed_connection_types: ["STANDARD"]}
        {user: dev, password: d3v, allowed_connection_types: ["MQTT"]}
      ]
    }
"""


def test_users_permissions_and_connection_types():
    s = EmbeddedServer(config=USERS_CONF)
    s.start()
    try:
        port = mqtt_port(s)
        RawMQTT(port, "nobody", expect_rc=0x05).wait_closed()
        RawMQTT(port, "wrong", username="alice", password=b"nope", expect_rc=0x05).wait_closed()
        RawMQTT(port, "bob", username="bob", password=b"builder", expect_rc=0x05).wait_closed()
        dev = RawMQTT(port, "dev", username="dev", password=b"d3v")
        dev.disconnect()
        a = RawMQTT(port, "alice", username="alice", password=b"wonder")
        assert a.subscribe([("hidden/#", 0), ("open/#", 0), ("secret/#", 1)]) == [0x80, 0, 1]
        a.publish("secret/x", b"no", qos=1)  # dropped, but still acknowledged
        a.publish("open/x", b"yes", qos=1, pid=2)
        assert [p.payload for p in a.publishes(1)] == [b"yes"]
        a.ping()
        assert a.quiet() == []
        a.disconnect()

        async def nats_side() -> None:
            with pytest.raises(Exception):
                await nats.connect(s.client_url, user="dev", password="d3v",
                                   allow_reconnect=False, max_reconnect_attempts=0)
            nc = await nats.connect(s.client_url, user="bob", password="builder")
            await nc.close()

        run_async(nats_side)
    finally:
        s.close()


def test_token_as_password_and_no_auth_user():
    s = EmbeddedServer(config="""
        mqtt { port: -1, host: 127.0.0.1 }
        authorization { token: "t0ken" }
    """)
    s.start()
    try:
        port = mqtt_port(s)
        RawMQTT(port, "t1", username="any", password=b"t0ken").disconnect()
        RawMQTT(port, "t2", username="any", password=b"bad", expect_rc=0x05).wait_closed()
        RawMQTT(port, "t3", expect_rc=0x05).wait_closed()
    finally:
        s.close()
    s = EmbeddedServer(config="""
        mqtt { port: -1, host: 127.0.0.1, no_auth_user: guest }
        authorization { users: [ {user: guest, password: g, permissions: {publish: "pub.>"}} ] }
    """)
    s.start()
    try:
        c = RawMQTT(mqtt_port(s), "anon")  # no credentials: bound to the no_auth_user
        c.subscribe([("#", 0)])
        c.publish("pub/x", b"1")
        c.publish("other", b"2")  # denied for guest
        assert [p.topic for p in c.publishes(1)] == ["pub/x"]
        c.ping()
        assert c.quiet() == []
        c.disconnect()
    finally:
        s.close()


# ------------------------------------------------------------------------------ TLS / WS

def _make_pki(d):
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("mqtt test CA")).issuer_name(name("mqtt test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "srv.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "srv-key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return str(d / "ca.pem"), str(d / "srv.pem"), str(d / "srv-key.pem")


def test_mqtt_over_tls(tmp_path):
    ca, cert, key = _make_pki(tmp_path)
    s = mqtt_server(mqtt=MQTTOptions(port=-1, host="127.0.0.1",
                                     tls=TLSOptions(cert_file=cert, key_file=key)))
    s.start()
    try:
        port = mqtt_port(s)
        assert s.server.ports["mqtt"] == [f"tls://127.0.0.1:{port}"]
        paho = pytest.importorskip("paho.mqtt.client")
        got = threading.Event()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="tls-1", protocol=paho.MQTTv311)
        c.tls_set(ca_certs=ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe("tls/x", 1)
        c.on_subscribe = lambda cl, *a: cl.publish("tls/x", b"secure", qos=1)
        c.on_message = lambda cl, u, msg: got.set() if msg.payload == b"secure" else None
        c.connect("127.0.0.1", port)
        c.loop_start()
        try:
            assert got.wait(10)
        finally:
            c.loop_stop()
            c.disconnect()
        # a plain-text client does not get in
        raw = RawMQTT(port, "plain", expect_rc=None)
        assert raw.wait_closed() and not raw.pending
    finally:
        s.close()


def test_mqtt_over_websocket_meets_tcp_clients():
    s = mqtt_server(websocket=WebsocketOptions(port=-1, host="127.0.0.1", no_tls=True))
    s.start()
    try:
        paho = pytest.importorskip("paho.mqtt.client")
        got: list = []
        ready = threading.Event()
        done = threading.Event()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ws-1", protocol=paho.MQTTv311,
                        transport="websockets")
        c.ws_set_options(path="/mqtt")
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe("ws/#", 1)
        c.on_subscribe = lambda *a: ready.set()

        def on_message(cl, u, msg):
            got.append((msg.topic, msg.payload))
            if msg.topic == "ws/from-tcp":
                cl.publish("ws/from-ws", b"hi tcp", qos=1)
                done.set()

        c.on_message = on_message
        c.connect("127.0.0.1", s.server.ws_port)
        c.loop_start()
        try:
            assert ready.wait(10)
            tcp = RawMQTT(mqtt_port(s), "tcp-1")
            tcp.subscribe([("ws/from-ws", 0)])
            tcp.publish("ws/from-tcp", b"hi ws", qos=1)
            assert done.wait(10)
            assert tcp.expect(m.Publish, timeout=10).payload == b"hi tcp"
            tcp.disconnect()
        finally:
            c.loop_stop()
            c.disconnect()
        assert ("ws/from-tcp", b"hi ws") in got
        # the MQTT port refuses a WebSocket handshake
        raw = RawMQTT(mqtt_port(s), None)
        raw.send(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.wait_closed()
    finally:
        s.close()


def test_amqtt_client(srv):
    amqtt_client = pytest.importorskip("amqtt.client")
    port = mqtt_port(srv)

    async def main() -> None:
        sub = amqtt_client.MQTTClient(client_id="amqtt-sub")
        pub = amqtt_client.MQTTClient(client_id="amqtt-pub")
        await sub.connect(f"mqtt://127.0.0.1:{port}/")
        await pub.connect(f"mqtt://127.0.0.1:{port}/")
        try:
            await sub.subscribe([("amq/#", 1)])
            await pub.publish("amq/a", b"qos1", qos=1)
            await pub.publish("amq/b", b"qos0", qos=0)
            await pub.publish("amq/c", b"qos2", qos=2)
            got = []
            for _ in range(3):
                msg = await sub.deliver_message(timeout_duration=10)
                got.append((msg.topic, bytes(msg.data), msg.qos))
            assert sorted(got) == [("amq/a", b"qos1", 1), ("amq/b", b"qos0", 0), ("amq/c", b"qos2", 1)]
        finally:
            await pub.disconnect()
            await sub.disconnect()

    run_async(main)


def test_config_reload_reauthenticates_mqtt_clients(tmp_path):
    from edgebus.conf import load_config
    from edgebus.security.reload import reload_from_file
    before = """
        mqtt { port: -1, host: 127.0.0.1 }
        authorization { users: [
          {user: keep, password: k}
          {user: gone, password: g}
          {user: narrow, password: n}
        ] }
    """
    after = """
        mqtt { port: -1, host: 127.0.0.1 }
        authorization { users: [
          {user: keep, password: k}
          {user: narrow, password: n, permissions: {subscribe: "allowed.>"}}
        ] }
    """
    path = tmp_path / "server.conf"
    path.write_text(before)
    opts, _ = load_config(str(path))
    with EmbeddedServer(opts) as s:
        port = mqtt_port(s)
        keep = RawMQTT(port, "keep", username="keep", password=b"k")
        gone = RawMQTT(port, "gone", username="gone", password=b"g")
        narrow = RawMQTT(port, "narrow", username="narrow", password=b"n")
        assert narrow.subscribe([("anything", 0), ("allowed/x", 0)]) == [0, 0]
        path.write_text(after)
        s.call(reload_from_file)
        assert gone.wait_closed()
        keep.publish("anything", b"1")
        keep.publish("allowed/x", b"2")
        assert [p.topic for p in narrow.publishes(1)] == ["allowed/x"]
        narrow.ping()
        assert narrow.quiet() == []
        keep.disconnect()
        narrow.disconnect()
