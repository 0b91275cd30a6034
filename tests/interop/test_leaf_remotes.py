"""Remote configurations a stock hub asks for (issue 11, item 1), each against a real
nats-server hub, and edgebus as the hub of a real nats-server leaf where the option is the
hub's: TLS with `handshake_first`, `wss://` remotes, several URLs with failover and a short
`reconnect`, and the local `account` a remote binds. (Plain TLS, `ws://`, user/password,
tokens, nkeys and `.creds` files are in test_leaf_tls.py, test_leaf.py, test_leaf_auth.py.)
"""

from __future__ import annotations

import nats
import pytest

from conftest import NATS_SERVER, RealNatsServer, free_port, run_async
from edgebus.testing.embedded import EmbeddedServer
from test_leaf import (Collector, Hub, connected, edge_leafz, edge_waits, hub_waits,
                       wait_until)

pytestmark = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")

pytest.importorskip("cryptography.x509")
from test_leaf_tls import _pki, one_message_down  # noqa: E402


async def _roundtrip(hub_url: str, leaf: EmbeddedServer, hub: Hub, tag: str,
                     leaf_kw: dict | None = None) -> None:
    h = await nats.connect(hub_url)
    e = await nats.connect(leaf.client_url, **(leaf_kw or {}))
    down, up = Collector(), Collector()
    await e.subscribe(f"{tag}.down", cb=down.cb)
    await h.subscribe(f"{tag}.up", cb=up.cb)
    await hub_waits(hub, f"{tag}.down")
    await edge_waits(leaf, f"{tag}.up")
    await h.publish(f"{tag}.down", b"d")
    await e.publish(f"{tag}.up", b"u")
    await down.until(b"d")
    await up.until(b"u")
    await h.close()
    await e.close()


def test_tls_handshake_first_to_a_nats_server_hub(tmp_path):
    ca, cert, key = _pki(tmp_path)
    lp = free_port()
    hub = Hub(f'server_name: HUB\nleafnodes {{ listen: "127.0.0.1:{lp}", tls {{ cert_file: "{cert}", '
              f'key_file: "{key}", handshake_first: true }} }}\n').start()
    leaf = EmbeddedServer(config=(
        f'server_name: EDGE\nport: -1\nleafnodes {{ remotes: [ {{ url: "tls://localhost:{lp}", '
        f'tls {{ ca_file: "{ca}", handshake_first: true }} }} ] }}\n')).start()
    try:
        connected(leaf)
        run_async(_roundtrip, hub.client_url, leaf, hub, "tf")
    finally:
        leaf.close()
        hub.stop()


def test_nats_server_leaf_with_handshake_first_to_an_edgebus_hub(tmp_path):
    ca, cert, key = _pki(tmp_path)
    lp = free_port()
    hub = EmbeddedServer(config=(
        f'server_name: EHUB\nport: -1\nleafnodes {{ listen: "127.0.0.1:{lp}", tls {{ '
        f'cert_file: "{cert}", key_file: "{key}", handshake_first: true }} }}\n')).start()
    leaf = RealNatsServer(f'server_name: NLEAF\nleafnodes {{ remotes: [ {{ url: '
                          f'"tls://localhost:{lp}", tls {{ ca_file: "{ca}", handshake_first: true }} '
                          f'}} ] }}\n').start()
    try:
        wait_until(lambda: edge_leafz(hub), "the TLS-first leaf to connect")
        run_async(one_message_down, hub, leaf, "tf.down")
    finally:
        leaf.stop()
        hub.close()


def test_wss_remote_to_a_nats_server_hub(tmp_path):
    ca, cert, key = _pki(tmp_path)
    wp = free_port()
    hub = Hub(f'server_name: HUB\nleafnodes {{ listen: "127.0.0.1:{free_port()}" }}\n'
              f'websocket {{ listen: "127.0.0.1:{wp}", tls {{ cert_file: "{cert}", key_file: "{key}" }} }}\n').start()
    leaf = EmbeddedServer(config=(
        f'server_name: EDGE\nport: -1\nleafnodes {{ remotes: [ {{ url: "wss://localhost:{wp}", '
        f'tls {{ ca_file: "{ca}" }} }} ] }}\n')).start()
    try:
        connected(leaf)
        run_async(_roundtrip, hub.client_url, leaf, hub, "wss")
    finally:
        leaf.close()
        hub.stop()


def test_nats_server_leaf_over_wss_to_an_edgebus_hub(tmp_path):
    ca, cert, key = _pki(tmp_path)
    wp = free_port()
    hub = EmbeddedServer(config=(
        f'server_name: EHUB\nport: -1\nleafnodes {{ port: -1 }}\nwebsocket {{ listen: "127.0.0.1:{wp}", '
        f'tls {{ cert_file: "{cert}", key_file: "{key}" }} }}\n')).start()
    leaf = RealNatsServer(f'server_name: NLEAF\nleafnodes {{ remotes: [ {{ url: "wss://localhost:{wp}", '
                          f'tls {{ ca_file: "{ca}" }} }} ] }}\n').start()
    try:
        wait_until(lambda: edge_leafz(hub), "the wss leaf to connect")
        run_async(one_message_down, hub, leaf, "wss.down")
    finally:
        leaf.stop()
        hub.close()


def test_several_urls_fail_over_to_the_next_hub():
    """The remote lists a hub that is down, hub A and hub B: the leaf reaches A, and when A
    goes away it moves to B on its own (reconnect: 0.2s)."""
    dead = free_port()
    la, lb = free_port(), free_port()
    hub_a = Hub(f'server_name: HUBA\nleafnodes {{ listen: "127.0.0.1:{la}" }}\n').start()
    hub_b = Hub(f'server_name: HUBB\nleafnodes {{ listen: "127.0.0.1:{lb}" }}\n').start()
    leaf = EmbeddedServer(config=(
        'server_name: EDGE\nport: -1\nleafnodes { reconnect: "0.2s", remotes: [ { urls: ['
        f'"nats-leaf://127.0.0.1:{dead}", "nats-leaf://127.0.0.1:{la}", "nats-leaf://127.0.0.1:{lb}"'
        '], no_randomize: true } ] }\n')).start()
    try:
        wait_until(lambda: [x["name"] for x in edge_leafz(leaf)] == ["HUBA"], "the leaf on hub A")
        hub_a.stop()
        wait_until(lambda: [x["name"] for x in edge_leafz(leaf)] == ["HUBB"], "the leaf on hub B")
        run_async(_roundtrip, hub_b.client_url, leaf, hub_b, "fo")
    finally:
        leaf.close()
        hub_a.stop()
        hub_b.stop()


def test_remote_binds_the_local_account():
    """`account` on the remote: only that local account's traffic crosses the link."""
    hub_lp = free_port()
    hub = Hub(f'server_name: HUB\nleafnodes {{ listen: "127.0.0.1:{hub_lp}" }}\n').start()
    leaf = EmbeddedServer(config=(
        'server_name: EDGE\nport: -1\naccounts { SENSORS { users: [ {user: s, password: s} ] }, '
        'OTHER { users: [ {user: o, password: o} ] } }\n'
        f'leafnodes {{ remotes: [ {{ url: "nats-leaf://127.0.0.1:{hub_lp}", account: SENSORS }} ] }}\n')).start()
    try:
        connected(leaf)
        assert edge_leafz(leaf)[0]["account"] == "SENSORS"
        run_async(_roundtrip, hub.client_url, leaf, hub, "acc", {"user": "s", "password": "s"})

        async def other_stays_home():
            h = await nats.connect(hub.client_url)
            o = await nats.connect(leaf.client_url, user="o", password="o")
            s = await nats.connect(leaf.client_url, user="s", password="s")
            got = Collector()
            await h.subscribe("acc.up", cb=got.cb)
            await edge_waits(leaf, "acc.up")
            await o.publish("acc.up", b"from OTHER")
            await s.publish("acc.up", b"from SENSORS")  # the sentinel, after the other one
            await got.until(b"from SENSORS")
            assert got.datas() == [b"from SENSORS"]
            for c in (h, o, s):
                await c.close()
        run_async(other_stays_home)
    finally:
        leaf.close()
        hub.stop()
