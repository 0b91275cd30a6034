"""edgebus as the hub: a real nats-server (and edgebus itself) dials edgebus's leaf port.

Pub/sub, headers, request/reply and queue groups across the accepted link; the leaf
authorization block binding an account; client users authenticating leaves when there is no
such block; refused credentials; and an edgebus leaf under an edgebus hub.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request

import nats
import pytest

from conftest import NATS_SERVER, RealNatsServer, free_port, run_async
from edgebus.testing.embedded import EmbeddedServer
from test_leaf import (Collector, Hub, edge_leafz, edge_waits, eventually, hub_waits, leaf_conf,
                       wait_until)

pytestmark = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")


def real_leaf(hub_leaf_port: int, url_user: str = "", account: str = "") -> RealNatsServer:
    acc = f', account: "{account}"' if account else ""
    return RealNatsServer(
        f'server_name: NLEAF\nleafnodes {{ remotes: [ {{ url: "nats-leaf://{url_user}127.0.0.1:'
        f'{hub_leaf_port}"{acc} }} ] }}\n' + ("accounts { APP { users: [ {user: a, password: a} ] } }\n"
                                              if account else "")).start()


def edge_hub(extra: str = "") -> tuple[EmbeddedServer, int]:
    lp = free_port()
    hub = EmbeddedServer(config=f'server_name: EHUB\nport: -1\n{extra}\n'
                                f'leafnodes {{ listen: "127.0.0.1:{lp}" }}\n').start()
    return hub, lp


def real_sees(srv: RealNatsServer, subject: str) -> bool:
    """Does the real leaf know the edgebus hub's interest in `subject` (its /leafz)?"""
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}/leafz?subs=1", timeout=5) as r:
        leafs = json.loads(r.read())["leafs"]
    return any(subject in (ln.get("subscriptions_list") or ()) for ln in leafs)


def test_real_leaf_to_edgebus_hub():
    hub, lp = edge_hub()
    leaf = real_leaf(lp)
    try:
        wait_until(lambda: edge_leafz(hub), "the real leaf to connect")
        (ln,) = edge_leafz(hub)
        assert ln["name"] == "NLEAF" and ln["is_spoke"] is False and ln["account"] == "$G"

        async def go():
            h = await nats.connect(hub.client_url)
            e = await nats.connect(leaf.client_url)
            on_leaf, on_hub, qa, qb = Collector(), Collector(), Collector(), Collector()
            await e.subscribe("to.leaf", cb=on_leaf.cb)
            await e.subscribe("jobs", queue="Q", cb=qa.cb)
            await e.subscribe("jobs", queue="Q", cb=qb.cb)
            await h.subscribe("to.hub.>", cb=on_hub.cb)

            async def svc(m):
                await m.respond(b"leaf says " + m.data)
            await e.subscribe("svc.leaf", cb=svc)
            await eventually(lambda: {"to.leaf", "jobs", "svc.leaf"} <= set(
                edge_leafz(hub)[0]["subscriptions_list"]), "leaf interest on the edgebus hub")
            await h.publish("to.leaf", b"1", headers={"A": "b"})
            for i in range(20):
                await h.publish("jobs", b"%d" % i)
            await h.publish("jobs", b"end")
            await h.publish("to.leaf", b"end")
            await on_leaf.until(b"end")
            await eventually(lambda: b"end" in qa.datas() + qb.datas(), "queue sentinel")
            assert on_leaf.msgs[0].headers == {"A": "b"}
            assert sorted(qa.datas() + qb.datas()) == sorted([b"%d" % i for i in range(20)] + [b"end"])
            r = await h.request("svc.leaf", b"hi", timeout=5)
            assert r.data == b"leaf says hi"

            async def hub_svc(m):
                await m.respond(b"hub says " + m.data)
            await h.subscribe("svc.hub", cb=hub_svc)
            await asyncio.to_thread(wait_until, lambda: real_sees(leaf, "svc.hub"), "svc.hub")
            await asyncio.to_thread(wait_until, lambda: real_sees(leaf, "to.hub.>"), "to.hub.>")
            r = await e.request("svc.hub", b"yo", timeout=5)
            assert r.data == b"hub says yo"
            await e.publish("to.hub.x", b"up")
            await on_hub.until(b"up")
            await h.close()
            await e.close()
        run_async(go)
    finally:
        leaf.stop()
        hub.close()


def test_leaf_authorization_binds_account(caplog):
    lp = free_port()
    hub = EmbeddedServer(config=(
        "server_name: EHUB\nport: -1\n"
        "accounts { APP { users: [ {user: app, password: app} ] } }\n"
        f'leafnodes {{ listen: "127.0.0.1:{lp}", authorization {{ user: leaf, password: s3cret, '
        'account: APP } }\n')).start()
    caplog.set_level(logging.ERROR, logger="edgebus.leaf")
    bad = real_leaf(lp, url_user="leaf:wrong@")
    try:
        wait_until(lambda: "authentication error" in caplog.text, "the wrong password refused")
        assert edge_leafz(hub) == []
        bad.stop()
        leaf = real_leaf(lp, url_user="leaf:s3cret@")
        try:
            wait_until(lambda: edge_leafz(hub), "the leaf to connect")
            assert edge_leafz(hub)[0]["account"] == "APP"

            async def go():
                h = await nats.connect(hub.client_url, user="app", password="app")
                e = await nats.connect(leaf.client_url)
                got = Collector()
                await h.subscribe("in.app", cb=got.cb)
                await asyncio.to_thread(wait_until, lambda: real_sees(leaf, "in.app"), "in.app")
                await e.publish("in.app", b"x")
                await got.until(b"x")
                assert got.datas()[0] == b"x"
                await h.close()
                await e.close()
            run_async(go)
        finally:
            leaf.stop()
    finally:
        bad.stop()
        hub.close()


def test_client_users_authenticate_leaves_without_leaf_block():
    """No leafnodes authorization block: the leaf's URL credentials are checked against the
    server's users and bind the user's account (nats-server's isClientAuthorized)."""
    lp = free_port()
    hub = EmbeddedServer(config=(
        "server_name: EHUB\nport: -1\n"
        "accounts { APP { users: [ {user: lu, password: lp} ] }, OTHER { users: [ {user: o, password: o} ] } }\n"
        f'leafnodes {{ listen: "127.0.0.1:{lp}" }}\n')).start()
    leaf = EmbeddedServer(config=leaf_conf(lp, name="EL").replace("nats-leaf://", "nats-leaf://lu:lp@")).start()
    try:
        wait_until(lambda: edge_leafz(hub), "the leaf to connect")
        assert edge_leafz(hub)[0]["account"] == "APP"
        assert edge_leafz(leaf)[0]["account"] == "$G"

        async def go():
            h = await nats.connect(hub.client_url, user="lu", password="lp")
            e = await nats.connect(leaf.client_url)
            got, back = Collector(), Collector()
            await h.subscribe("app.in", cb=got.cb)
            await e.subscribe("app.out", cb=back.cb)
            await edge_waits(leaf, "app.in")
            await eventually(lambda: "app.out" in edge_leafz(hub)[0]["subscriptions_list"], "app.out")
            await e.publish("app.in", b"1")
            await h.publish("app.out", b"2")
            await got.until(b"1")
            await back.until(b"2")
            await h.close()
            await e.close()
        run_async(go)
    finally:
        leaf.close()
        hub.close()


def test_edgebus_leaf_under_edgebus_hub_with_queues():
    hub, lp = edge_hub()
    leaf = EmbeddedServer(config=leaf_conf(lp, name="EL")).start()
    try:
        wait_until(lambda: edge_leafz(hub) and edge_leafz(leaf), "both ends connected")
        assert edge_leafz(leaf)[0]["is_spoke"] is True and edge_leafz(hub)[0]["is_spoke"] is False

        async def go():
            h = await nats.connect(hub.client_url)
            e = await nats.connect(leaf.client_url)
            hq, lq = Collector(), Collector()
            await h.subscribe("w", queue="g", cb=hq.cb)
            await e.subscribe("w", queue="g", cb=lq.cb)
            await edge_waits(leaf, "w")
            await eventually(lambda: "w" in edge_leafz(hub)[0]["subscriptions_list"], "w on hub")
            for i in range(30):
                await h.publish("w", b"h%d" % i)
                await e.publish("w", b"e%d" % i)
            await h.publish("w", b"hend")
            await e.publish("w", b"eend")
            # local members are preferred: each side keeps its own publishes
            await hq.until(b"hend")
            await lq.until(b"eend")
            assert sorted(hq.datas()) == sorted([b"h%d" % i for i in range(30)] + [b"hend"])
            assert sorted(lq.datas()) == sorted([b"e%d" % i for i in range(30)] + [b"eend"])
            # without a local member the group is served across the link
            await (await h.subscribe("only.leaf", queue="g2")).unsubscribe()
            ol = Collector()
            await e.subscribe("only.leaf", queue="g2", cb=ol.cb)
            await eventually(lambda: "only.leaf" in edge_leafz(hub)[0]["subscriptions_list"], "only.leaf")
            for i in range(10):
                await h.publish("only.leaf", b"%d" % i)
            await h.publish("only.leaf", b"end")
            await ol.until(b"end")
            assert ol.datas() == [b"%d" % i for i in range(10)] + [b"end"]
            await h.close()
            await e.close()
        run_async(go)
    finally:
        leaf.close()
        hub.close()


def test_real_leaf_over_websocket():
    """A nats-server leaf with a ws:// remote reaches edgebus's WebSocket listener, which
    hands `/leafnode` connections to the leaf service."""
    wp = free_port()
    hub = EmbeddedServer(config=(f'server_name: EHUB\nport: -1\nwebsocket {{ listen: '
                                 f'"127.0.0.1:{wp}", no_tls: true }}\nleafnodes {{ }}\n')).start()
    leaf = RealNatsServer(f'server_name: NLEAF\nleafnodes {{ remotes: [ {{ url: '
                          f'"ws://127.0.0.1:{wp}" }} ] }}\n').start()
    try:
        wait_until(lambda: edge_leafz(hub), "the WebSocket leaf to connect")

        async def go():
            h = await nats.connect(hub.client_url)
            e = await nats.connect(leaf.client_url)
            got, up = Collector(), Collector()
            await e.subscribe("wsx", cb=got.cb)
            await h.subscribe("wsy", cb=up.cb)
            await eventually(lambda: "wsx" in edge_leafz(hub)[0]["subscriptions_list"], "wsx")
            await h.publish("wsx", b"over ws", headers={"a": "b"})
            await got.until(b"over ws")
            assert got.msgs[0].headers == {"a": "b"}
            await asyncio.to_thread(wait_until, lambda: real_sees(leaf, "wsy"), "wsy")
            await e.publish("wsy", b"back")
            await up.until(b"back")
            await h.close()
            await e.close()
        run_async(go)
    finally:
        leaf.stop()
        hub.close()


def test_edgebus_hub_relays_between_two_real_leaves_without_duplicates():
    hub, lp = edge_hub()
    leaves = [RealNatsServer(f'server_name: NL{i}\nleafnodes {{ remotes: [ {{ url: '
                             f'"nats-leaf://127.0.0.1:{lp}" }} ] }}\n').start() for i in (1, 2)]
    n = 20
    try:
        wait_until(lambda: len(edge_leafz(hub)) == 2, "two leaves")

        async def go():
            h = await nats.connect(hub.client_url)
            c1 = await nats.connect(leaves[0].client_url)
            c2 = await nats.connect(leaves[1].client_url)
            cols = [Collector(), Collector(), Collector()]
            for c, col in zip((h, c1, c2), cols):
                await c.subscribe("all.*", cb=col.cb)
            await eventually(lambda: all("all.*" in ln["subscriptions_list"] for ln in edge_leafz(hub)),
                             "both leaves' interest on the hub")
            for lf in leaves:
                await asyncio.to_thread(wait_until, lambda: real_sees(lf, "all.*"), "hub interest")
            for i in range(n):
                for tag, c in ((b"h", h), (b"a", c1), (b"b", c2)):
                    await c.publish("all.x", tag + b"%d" % i)
            for c in (h, c1, c2):
                await c.publish("all.end", b"end")
            for col in cols:
                await col.until(b"end", count=3)
            for c in (h, c1, c2):
                await c.publish("all.fin", b"fin")
            for col in cols:
                await col.until(b"fin", count=3)
            want = sorted([t + b"%d" % i for i in range(n) for t in (b"h", b"a", b"b")]
                          + [b"end"] * 3 + [b"fin"] * 3)
            for col in cols:
                assert sorted(col.datas()) == want
            for c in (h, c1, c2):
                await c.close()
        run_async(go)
    finally:
        for lf in leaves:
            lf.stop()
        hub.close()


def test_chain_hub_edgebus_leaf():
    """nats-server hub <- edgebus (a spoke upward, a hub downward) <- nats-server leaf:
    interest and messages pass through edgebus in both directions."""
    top_lp, mid_lp = free_port(), free_port()
    top = Hub(f'server_name: TOP\nleafnodes {{ listen: "127.0.0.1:{top_lp}" }}\n').start()
    mid = EmbeddedServer(config=(
        f'server_name: MID\nport: -1\nleafnodes {{ listen: "127.0.0.1:{mid_lp}", remotes: '
        f'[ {{ url: "nats-leaf://127.0.0.1:{top_lp}" }} ] }}\n')).start()
    low = RealNatsServer(f'server_name: LOW\nleafnodes {{ remotes: [ {{ url: '
                         f'"nats-leaf://127.0.0.1:{mid_lp}" }} ] }}\n').start()
    try:
        wait_until(lambda: len(edge_leafz(mid)) == 2, "both links of the middle server")

        async def go():
            t = await nats.connect(top.client_url)
            b = await nats.connect(low.client_url)
            down, up = Collector(), Collector()
            await b.subscribe("chain.down", cb=down.cb)
            await t.subscribe("chain.up", cb=up.cb)
            await hub_waits(top, "chain.down")
            await asyncio.to_thread(wait_until, lambda: real_sees(low, "chain.up"), "chain.up")
            for i in range(10):
                await t.publish("chain.down", b"%d" % i)
                await b.publish("chain.up", b"%d" % i)
            await t.publish("chain.down", b"end")
            await b.publish("chain.up", b"end")
            await down.until(b"end")
            await up.until(b"end")
            assert down.datas() == up.datas() == [b"%d" % i for i in range(10)] + [b"end"]

            async def svc(m):
                await m.respond(b"low:" + m.data)
            await b.subscribe("chain.svc", cb=svc)
            await hub_waits(top, "chain.svc")
            assert (await t.request("chain.svc", b"q", timeout=5)).data == b"low:q"
            await t.close()
            await b.close()
        run_async(go)
    finally:
        low.stop()
        mid.close()
        top.stop()


def test_leaf_authorization_users_with_bcrypt():
    from edgebus.security.passwords import hash_password
    lp = free_port()
    hashed = hash_password("pw1", 4)
    hub = EmbeddedServer(config=(
        "server_name: EHUB\nport: -1\naccounts { A1 { }, A2 { } }\n"
        f'leafnodes {{ listen: "127.0.0.1:{lp}", authorization {{ users: [ '
        f'{{ user: one, password: "{hashed}", account: A1 }}, '
        '{ user: two, password: pw2, account: A2 } ] } }\n')).start()
    l1 = EmbeddedServer(config=leaf_conf(lp, name="L1").replace("nats-leaf://", "nats-leaf://one:pw1@")).start()
    l2 = EmbeddedServer(config=leaf_conf(lp, name="L2").replace("nats-leaf://", "nats-leaf://two:pw2@")).start()
    try:
        wait_until(lambda: len(edge_leafz(hub)) == 2, "both leaves")
        assert sorted(ln["account"] for ln in edge_leafz(hub)) == ["A1", "A2"]
    finally:
        l1.close()
        l2.close()
        hub.close()
