"""Credentials on the link: edgebus dials a real nats-server hub that requires them.

User and password in the URL (hub leafnodes authorization binding an account), a refused
password (nats-server's -ERR reaches the leaf, no link), a token in the URL checked against
the hub's client authorization, an nkey remote signing the hub's nonce, and an operator-mode
hub taking a `.creds` file (user JWT plus nonce signature).
"""

from __future__ import annotations

import logging

import nats
import pytest

from conftest import NATS_SERVER, free_port, run_async
from edgebus.options import LeafOptions, LeafRemote, Options
from edgebus.security import jwt as J
from edgebus.security import nkeys as nk
from edgebus.testing.embedded import EmbeddedServer
from test_leaf import (Collector, Hub, connected, edge_leafz, edge_waits, hub_waits, leaf_conf,
                       wait_until)

pytestmark = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")


async def _roundtrip(hub: Hub, leaf: EmbeddedServer, hub_kw: dict | None = None) -> None:
    h = await nats.connect(hub.client_url, **(hub_kw or {}))
    e = await nats.connect(leaf.client_url)
    down, up = Collector(), Collector()
    await e.subscribe("auth.down", cb=down.cb)
    await h.subscribe("auth.up", cb=up.cb)
    await hub_waits(hub, "auth.down")
    await edge_waits(leaf, "auth.up")
    await h.publish("auth.down", b"d")
    await e.publish("auth.up", b"u")
    await down.until(b"d")
    await up.until(b"u")
    await h.close()
    await e.close()


def test_user_password_in_url_binds_hub_account(caplog):
    lp = free_port()
    hub = Hub("server_name: HUB\naccounts { APP { users: [ {user: app, password: app} ] } }\n"
              f'leafnodes {{ listen: "127.0.0.1:{lp}", authorization {{ user: edge, '
              'password: "p@ss word", account: APP } }\n').start()
    caplog.set_level(logging.ERROR, logger="edgebus.leaf")
    bad = EmbeddedServer(config=leaf_conf(lp).replace("nats-leaf://", "nats-leaf://edge:nope@")).start()
    try:
        wait_until(lambda: "Authorization Violation" in caplog.text, "the hub's refusal")
        assert edge_leafz(bad) == [] and hub.leafz() == []
    finally:
        bad.close()
    leaf = EmbeddedServer(config=leaf_conf(lp).replace("nats-leaf://", "nats-leaf://edge:p%40ss%20word@")).start()
    try:
        connected(leaf)
        assert hub.leafz()[0]["account"] == "APP"
        run_async(_roundtrip, hub, leaf, {"user": "app", "password": "app"})
    finally:
        leaf.close()
        hub.stop()


def test_token_in_url():
    lp = free_port()
    hub = Hub(f'server_name: HUB\nauthorization {{ token: t0ken }}\nleafnodes {{ listen: "127.0.0.1:{lp}" }}\n').start()
    leaf = EmbeddedServer(config=leaf_conf(lp).replace("nats-leaf://", "nats-leaf://t0ken@")).start()
    try:
        connected(leaf)
        run_async(_roundtrip, hub, leaf, {"token": "t0ken"})
    finally:
        leaf.close()
        hub.stop()


def test_nkey_remote_signs_nonce():
    pytest.importorskip("nkeys")
    kp = nk.create_pair("user")
    lp = free_port()
    hub = Hub(f'server_name: HUB\nleafnodes {{ listen: "127.0.0.1:{lp}", authorization {{ '
              f'nkey: {kp.public_key} }} }}\n').start()
    o = Options(server_name="EDGE", port=-1,
                leafnodes=LeafOptions(remotes=[LeafRemote(urls=[f"nats-leaf://127.0.0.1:{lp}"],
                                                          nkey=kp.seed)]))
    leaf = EmbeddedServer(o).start()
    try:
        connected(leaf)
        run_async(_roundtrip, hub, leaf)
    finally:
        leaf.close()
        hub.stop()


def test_creds_file_with_operator_mode_hub(tmp_path):
    pytest.importorskip("nkeys")  # the nats-py client on the hub signs with it
    op, sys_acc, acc = nk.create_pair("operator"), nk.create_pair("account"), nk.create_pair("account")
    opc = J.new_operator_claims(op.public_key, name="OP")
    opc["nats"]["system_account"] = sys_acc.public_key
    op_jwt = J.encode(opc, op)
    sys_jwt = J.encode(J.new_account_claims(sys_acc.public_key, name="SYS"), op)
    acc_jwt = J.encode(J.new_account_claims(acc.public_key, name="APP"), op)

    def creds(name: str) -> str:
        u = nk.create_pair("user")
        tok = J.encode(J.new_user_claims(u.public_key, name=name), acc)
        p = tmp_path / f"{name}.creds"
        p.write_text(J.format_user_config(tok, u.seed))
        return str(p)

    lp = free_port()
    hub = Hub(f"server_name: HUB\noperator: {op_jwt}\nsystem_account: {sys_acc.public_key}\n"
              f"resolver: MEMORY\nresolver_preload: {{\n {acc.public_key}: {acc_jwt}\n"
              f" {sys_acc.public_key}: {sys_jwt}\n}}\n"
              f'leafnodes {{ listen: "127.0.0.1:{lp}" }}\n').start()
    leaf = EmbeddedServer(config=leaf_conf(lp, f'credentials: "{creds("edge")}"')).start()
    try:
        connected(leaf)
        assert hub.leafz()[0]["account"] == acc.public_key
        run_async(_roundtrip, hub, leaf, {"user_credentials": creds("client")})
    finally:
        leaf.close()
        hub.stop()
