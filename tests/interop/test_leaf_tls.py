"""TLS on the leaf link, with a throw-away CA made here: edgebus dialing a real nats-server hub
whose leaf port requires TLS (the hub's INFO asks for it; the remote trusts the CA), and a real
nats-server leaf dialing edgebus's TLS leaf port."""

from __future__ import annotations

import datetime
import ipaddress

import nats
import pytest

from conftest import NATS_SERVER, RealNatsServer, free_port, run_async
from edgebus.testing.embedded import EmbeddedServer
from test_leaf import (Collector, Hub, connected, edge_leafz, edge_waits, eventually, hub_waits,
                       wait_until)

pytestmark = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _pki(d) -> tuple[str, str, str]:
    """(ca.pem, server cert, server key) for 127.0.0.1 / localhost."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = []
    for name, data in (("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
                       ("server.pem", cert.public_bytes(serialization.Encoding.PEM)),
                       ("server-key.pem", key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))):
        p = d / name
        p.write_bytes(data)
        paths.append(str(p))
    return paths[0], paths[1], paths[2]


async def one_message_down(hub: EmbeddedServer, leaf: RealNatsServer, subject: str) -> None:
    """A client of the edgebus hub publishes on `subject` and a client of the real leaf, once
    the hub sees the leaf's interest, gets the message."""
    h = await nats.connect(hub.client_url)
    e = await nats.connect(leaf.client_url)
    got = Collector()
    await e.subscribe(subject, cb=got.cb)
    await eventually(lambda: subject in edge_leafz(hub)[0]["subscriptions_list"], subject)
    await h.publish(subject, b"ok")
    await got.until(b"ok")
    await h.close()
    await e.close()


def test_edgebus_dials_tls_hub(tmp_path):
    ca, cert, key = _pki(tmp_path)
    lp = free_port()
    hub = Hub(f'server_name: HUB\nleafnodes {{ listen: "127.0.0.1:{lp}", tls {{ cert_file: "{cert}", '
              f'key_file: "{key}" }} }}\n').start()
    leaf = EmbeddedServer(config=(
        f'server_name: EDGE\nport: -1\nleafnodes {{ remotes: [ {{ url: "nats-leaf://localhost:{lp}", '
        f'tls {{ ca_file: "{ca}" }} }} ] }}\n')).start()
    try:
        connected(leaf)

        async def go():
            h = await nats.connect(hub.client_url)
            e = await nats.connect(leaf.client_url)
            got = Collector()
            await e.subscribe("secure", cb=got.cb)
            await hub_waits(hub, "secure")
            await h.publish("secure", b"over tls")
            await got.until(b"over tls")
            up = Collector()
            await h.subscribe("secure.up", cb=up.cb)
            await edge_waits(leaf, "secure.up")
            await e.publish("secure.up", b"back")
            await up.until(b"back")
            await h.close()
            await e.close()
        run_async(go)
    finally:
        leaf.close()
        hub.stop()


def test_real_leaf_dials_edgebus_tls_port(tmp_path):
    ca, cert, key = _pki(tmp_path)
    lp = free_port()
    hub = EmbeddedServer(config=(
        f'server_name: EHUB\nport: -1\nleafnodes {{ listen: "127.0.0.1:{lp}", tls {{ '
        f'cert_file: "{cert}", key_file: "{key}" }} }}\n')).start()
    leaf = RealNatsServer(f'server_name: NLEAF\nleafnodes {{ remotes: [ {{ url: '
                          f'"nats-leaf://localhost:{lp}", tls {{ ca_file: "{ca}" }} }} ] }}\n').start()
    try:
        wait_until(lambda: edge_leafz(hub), "the TLS leaf to connect")
        run_async(one_message_down, hub, leaf, "tls.down")
    finally:
        leaf.stop()
        hub.close()
