"""Accounts with nats-py over real sockets: isolation, $G, stream/service imports and exports
(prefix, `to`, response types, private exports), the system account's events and requests,
and the /accountz and /accstatz documents."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from conftest import flushed, run_async
from edgebus.testing.embedded import EmbeddedServer

CONF = """
authorization { users: [ {user: g, password: g} ] }
accounts {
  A {
    users: [{user: a, password: a}]
    exports: [
      {stream: "news.>"}
      {stream: "private.>", accounts: [B]}
      {service: "svc.*"}
      {service: "multi", response_type: stream}
      {service: "single"}
    ]
  }
  B {
    users: [{user: b, password: b}]
    imports: [
      {stream: {account: A, subject: "news.>"}, prefix: "ext"}
      {stream: {account: A, subject: "private.>"}}
      {service: {account: A, subject: "svc.*"}, to: "asvc.*"}
      {service: {account: A, subject: "multi"}}
      {service: {account: A, subject: "single"}}
    ]
  }
  C { users: [{user: c, password: c}] }
  SYS { users: [{user: sys, password: sys}] }
}
system_account: SYS
"""


async def conn(url: str, user: str, **kw):
    return await nats.connect(url, user=user, password=user, allow_reconnect=False, **kw)


async def nothing(sub, wait: float = 0.3) -> bool:
    try:
        await sub.next_msg(timeout=wait)
    except nats.errors.TimeoutError:
        return True
    return False


@pytest.fixture(scope="module")
def srv():
    with EmbeddedServer(config=CONF, port=-1, http_port=-1) as s:
        yield s


def test_accounts_are_isolated_both_ways(srv):
    async def go():
        a, b, c, g = [await conn(srv.client_url, u) for u in "abcg"]
        subs = {n: await x.subscribe("iso.>") for n, x in zip("abcg", (a, b, c, g))}
        for x in (a, b, c, g):
            await flushed(x)
        await a.publish("iso.1", b"from-a")
        await g.publish("iso.2", b"from-g")
        for x in (a, g):
            await flushed(x)
        assert (await subs["a"].next_msg(timeout=2)).data == b"from-a"
        assert (await subs["g"].next_msg(timeout=2)).data == b"from-g"  # $G users talk to $G
        assert await nothing(subs["a"])
        assert await nothing(subs["b"])
        assert await nothing(subs["c"])
        assert await nothing(subs["g"])
        for x in (a, b, c, g):
            await x.close()
    run_async(go)


def test_stream_import_with_prefix_and_private_export(srv):
    async def go():
        a, b, c = [await conn(srv.client_url, u) for u in "abc"]
        sb = await b.subscribe("ext.news.>")
        sp = await b.subscribe("private.>")
        sc = await c.subscribe(">")
        await flushed(b)
        await flushed(c)
        await a.publish("news.eu", b"n1")
        await a.publish("private.x", b"p1")
        await flushed(a)
        m = await sb.next_msg(timeout=2)
        assert (m.subject, m.data) == ("ext.news.eu", b"n1")
        m = await sp.next_msg(timeout=2)
        assert (m.subject, m.data) == ("private.x", b"p1")
        assert await nothing(sc)
        # a stream import is one-way: B publishing on the prefixed subject reaches nobody in A
        sa = await a.subscribe("news.>")
        await flushed(a)
        await b.publish("ext.news.eu", b"back")
        await flushed(b)
        assert await nothing(sa)
        for x in (a, b, c):
            await x.close()
    run_async(go)


def test_service_import_with_to_and_reply_tracking(srv):
    async def go():
        a, b = await conn(srv.client_url, "a"), await conn(srv.client_url, "b")
        seen_reply = []

        async def handler(m):
            seen_reply.append(m.reply)
            await m.respond(b"pong:" + m.subject.encode())
        await a.subscribe("svc.*", cb=handler)
        await flushed(a)
        r = await b.request("asvc.ping", b"x", timeout=2)
        assert r.data == b"pong:svc.ping"
        # the responder sees a tracked reply, never the requester's inbox
        assert seen_reply[0].startswith("_R_.")
        # requests are one-way too: A cannot call into B's subject space
        with pytest.raises(nats.errors.NoRespondersError):
            await a.request("asvc.ping", b"", timeout=1)
        for x in (a, b):
            await x.close()
    run_async(go)


def test_response_types_singleton_and_stream(srv):
    async def go():
        a, b = await conn(srv.client_url, "a"), await conn(srv.client_url, "b")

        async def three(m):
            for i in range(3):
                await m.respond(str(i).encode())
        await a.subscribe("multi", cb=three)
        await a.subscribe("single", cb=three)
        await flushed(a)
        out = {}
        for subj in ("multi", "single"):
            inbox = b.new_inbox()
            s = await b.subscribe(inbox)
            await b.publish(subj, b"", reply=inbox)
            got = []
            while True:
                try:
                    got.append((await s.next_msg(timeout=0.5)).data)
                except nats.errors.TimeoutError:
                    break
            out[subj] = got
        for x in (a, b):
            await x.close()
        return out
    out = run_async(go)
    assert out["multi"] == [b"0", b"1", b"2"]
    assert out["single"] == [b"0"]


def test_no_responders_through_service_import(srv):
    async def go():
        b = await conn(srv.client_url, "b")
        with pytest.raises(nats.errors.NoRespondersError):
            await b.request("single", b"", timeout=2)
        await b.close()
    run_async(go)


def test_private_export_refuses_unlisted_importer():
    from edgebus.conf import options_from_config, parse_string
    from edgebus.security.setup import SecurityConfigError, configure
    from edgebus.server import Server
    conf = """accounts {
      A { exports: [{stream: "p.>", accounts: [B]}] }
      B { }
      C { imports: [{stream: {account: A, subject: "p.>"}}] }
    }"""
    srv = Server(options_from_config(parse_string(conf), filename="<test>"))
    with pytest.raises(SecurityConfigError, match="not authorized"):
        configure(srv)


def test_system_events_and_requests(srv):
    async def go():
        sysc = await conn(srv.client_url, "sys")
        events = await sysc.subscribe("$SYS.ACCOUNT.C.>")
        await flushed(sysc)
        c = await conn(srv.client_url, "c", name="watched")
        await c.publish("x", b"12345")
        await flushed(c)
        ev = json.loads((await events.next_msg(timeout=2)).data)
        assert ev["type"] == "io.nats.server.advisory.v1.client_connect"
        assert ev["client"]["acc"] == "C" and ev["client"]["user"] == "c"
        assert ev["client"]["name"] == "watched"
        assert {"name", "host", "id", "ver", "seq", "time"} <= set(ev["server"])
        conns = json.loads((await events.next_msg(timeout=2)).data)
        assert conns["type"] == "io.nats.server.advisory.v1.account_connections"
        assert conns["acc"] == "C" and conns["conns"] == 1
        await c.close()
        ev = None
        while ev is None or ev["type"] != "io.nats.server.advisory.v1.client_disconnect":
            ev = json.loads((await events.next_msg(timeout=2)).data)
        assert ev["received"] == {"msgs": 1, "bytes": 5}
        assert ev["reason"]

        ping = json.loads((await sysc.request("$SYS.REQ.SERVER.PING", b"", timeout=2)).data)
        assert "statsz" in ping and ping["server"]["id"]
        sid = ping["server"]["id"]
        for z in ("VARZ", "CONNZ", "SUBSZ", "HEALTHZ", "ACCOUNTZ", "JSZ"):
            r = json.loads((await sysc.request(f"$SYS.REQ.SERVER.PING.{z}", b"{}", timeout=2)).data)
            assert "data" in r, (z, r)
            r2 = json.loads((await sysc.request(f"$SYS.REQ.SERVER.{sid}.{z}", b"", timeout=2)).data)
            assert "data" in r2
        hz = json.loads((await sysc.request("$SYS.REQ.SERVER.PING.HEALTHZ", b"", timeout=2)).data)
        assert hz["data"]["status"] == "ok"
        accz = json.loads((await sysc.request("$SYS.REQ.SERVER.PING.ACCOUNTZ", b"", timeout=2)).data)
        assert {"A", "B", "C", "SYS", "$G"} <= set(accz["data"]["accounts"])
        a = await conn(srv.client_url, "a")
        await a.subscribe("foo")
        await flushed(a)
        cz = json.loads((await sysc.request("$SYS.REQ.ACCOUNT.A.CONNZ", b"", timeout=2)).data)
        assert cz["data"]["num_connections"] == 1
        info = json.loads((await sysc.request("$SYS.REQ.ACCOUNT.A.INFO", b"", timeout=2)).data)
        assert info["data"]["account_name"] == "A"
        assert any(e["subject"] == "news.>" for e in info["data"]["exports"])
        # accounts ask about themselves through the system imports
        ui = json.loads((await a.request("$SYS.REQ.USER.INFO", b"", timeout=2)).data)
        assert ui["data"]["user"] == "a" and ui["data"]["account"] == "A"
        st = json.loads((await a.request("$SYS.REQ.ACCOUNT.PING.STATZ", b"", timeout=2)).data)
        assert st["data"]["account_statz"][0]["acc"] == "A"
        # ordinary accounts cannot see $SYS traffic
        with pytest.raises(nats.errors.NoRespondersError):
            await a.request("$SYS.REQ.SERVER.PING.VARZ", b"", timeout=1)
        for x in (sysc, a):
            await x.close()
    run_async(go)


def test_failed_auth_event(srv):
    async def go():
        sysc = await conn(srv.client_url, "sys")
        s = await sysc.subscribe("$SYS.SERVER.*.CLIENT.AUTH.ERR")
        await flushed(sysc)
        with pytest.raises(nats.errors.Error):
            await nats.connect(srv.client_url, user="a", password="nope", allow_reconnect=False,
                               max_reconnect_attempts=0)
        ev = json.loads((await s.next_msg(timeout=2)).data)
        assert ev["client"]["user"] == "a"
        await sysc.close()
    run_async(go)


def test_accountz_and_accstatz(srv):
    from edgebus.security.monitor_acc import accountz, accstatz

    async def go():
        a = await conn(srv.client_url, "a")
        await a.subscribe("stat.x")
        await a.publish("stat.x", b"abc")
        await flushed(a)
        await asyncio.sleep(0.05)
        z = srv.call(lambda s: accountz(s, {}))
        assert z["system_account"] == "SYS" and "A" in z["accounts"]
        d = srv.call(lambda s: accountz(s, {"acc": "B"}))["account_detail"]
        assert d["account_name"] == "B" and not d["is_system"]
        assert {i["subject"] for i in d["imports"]} >= {"news.>", "svc.*"}
        st = srv.call(lambda s: accstatz(s, {}))["account_statz"]
        mine = [x for x in st if x["acc"] == "A"][0]
        assert mine["conns"] == 1 and mine["num_subscriptions"] >= 1
        assert mine["received"]["msgs"] >= 1
        assert "C" not in {x["acc"] for x in st}
        assert "C" in {x["acc"] for x in srv.call(lambda s: accstatz(s, {"unused": "true"}))["account_statz"]}
        await a.close()
    run_async(go)


def test_system_account_only_config_keeps_global_open():
    conf = "accounts { SYS { users: [{user: admin, password: pw}] } }\nsystem_account: SYS"

    async def go(url):
        anon = await nats.connect(url, allow_reconnect=False)
        admin = await nats.connect(url, user="admin", password="pw", allow_reconnect=False)
        r = json.loads((await admin.request("$SYS.REQ.SERVER.PING", b"", timeout=2)).data)
        assert "statsz" in r
        await anon.close()
        await admin.close()
    with EmbeddedServer(config=conf, port=-1) as s:
        run_async(go, s.client_url)


def _keys(d: dict, prefix: str = "") -> set:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _keys(v, prefix + k + ".")
    return out


def test_sys_json_shapes_match_real_nats_server(real_nats_server):
    conf = """accounts { A { users: [{user: a, password: a}] }, SYS { users: [{user: sys, password: sys}] } }
    system_account: SYS"""

    async def grab(url):
        s = await conn(url, "sys")
        sub = await s.subscribe("$SYS.ACCOUNT.A.>")
        await flushed(s)
        a = await conn(url, "a", name="n")
        await a.publish("x", b"1")
        await flushed(a)
        await a.close()
        out = {}
        while len(out) < 3:
            m = await sub.next_msg(timeout=2)
            out[m.subject] = json.loads(m.data)
        out["userinfo"] = json.loads((await s.request("$SYS.REQ.USER.INFO", b"", timeout=2)).data)
        out["ping"] = json.loads((await s.request("$SYS.REQ.SERVER.PING", b"", timeout=2)).data)
        await s.close()
        return out

    real = real_nats_server(config=conf)
    theirs = run_async(grab, real.client_url)
    with EmbeddedServer(config=conf, port=-1) as s:
        ours = run_async(grab, s.client_url)
    # feature_flags and gomaxprocs are 2.12+/Go-only; rtt is only set once measured
    ignore = {"server.feature_flags", "statsz.gomaxprocs", "client.rtt"}
    for subject, doc in theirs.items():
        want = {k for k in _keys(doc) if not any(k.startswith(i) for i in ignore)}
        assert want <= _keys(ours[subject]), (subject, sorted(want - _keys(ours[subject])))
    assert ours["$SYS.ACCOUNT.A.CONNECT"]["client"]["name_tag"] == "A"


def test_kick_request_disconnects_client(srv):
    async def go():
        sysc = await conn(srv.client_url, "sys")
        victim = await conn(srv.client_url, "c")
        cid = victim._client_id
        sid = json.loads((await sysc.request("$SYS.REQ.SERVER.PING", b"", timeout=2)).data)["server"]["id"]
        r = json.loads((await sysc.request(f"$SYS.REQ.SERVER.{sid}.KICK", json.dumps({"cid": cid}).encode(),
                                           timeout=2)).data)
        assert "error" not in r
        for _ in range(100):
            if victim.is_closed or not victim.is_connected:
                break
            await asyncio.sleep(0.02)
        assert not victim.is_connected
        r = json.loads((await sysc.request(f"$SYS.REQ.SERVER.{sid}.KICK", b'{"cid": 999999}', timeout=2)).data)
        assert r["error"]["code"] == 404
        await victim.close()
        await sysc.close()
    run_async(go)


def test_config_account_limits():
    conf = """accounts { L { users: [{user: l, password: l}]
                          limits: { max_connections: 1, max_subscriptions: 1, max_payload: 64 } } }"""

    async def go(url):
        nc = await conn(url, "l")
        with pytest.raises(nats.errors.Error, match="maximum account active connections"):
            await nats.connect(url, user="l", password="l", allow_reconnect=False,
                               max_reconnect_attempts=0)
        assert nc.max_payload == 1048576  # INFO is sent before we know the account
        await nc.subscribe("a")
        await nc.subscribe("b")
        for _ in range(100):
            if nc.is_closed:
                break
            await asyncio.sleep(0.02)
        # nats-py closes on this -ERR (the server keeps the connection)
        assert "maximum subscriptions exceeded" in str(nc.last_error).lower()
    with EmbeddedServer(config=conf, port=-1) as s:
        run_async(go, s.client_url)


def test_stream_import_follows_importer_interest(real_nats_server):
    conf = """accounts {
      A { users: [{user: a, password: a}], exports: [{stream: "news.>"}] }
      B { users: [{user: b, password: b}], imports: [{stream: {account: A, subject: "news.>"}, prefix: "in"}] }
    }"""

    async def go(url):
        a, b = await conn(url, "a"), await conn(url, "b")
        out = {}
        try:
            await a.request("news.q", b"", timeout=1)
            out["before"] = "answered"
        except nats.errors.NoRespondersError:
            out["before"] = "no responders"
        s = await b.subscribe("in.news.>")
        await flushed(b)
        await a.publish("news.x", b"1")
        out["delivered"] = (await s.next_msg(timeout=2)).subject
        await s.unsubscribe()
        await flushed(b)
        try:
            await a.request("news.q", b"", timeout=1)
            out["after"] = "answered"
        except nats.errors.NoRespondersError:
            out["after"] = "no responders"
        await a.close()
        await b.close()
        return out

    real = real_nats_server(config=conf)
    theirs = run_async(go, real.client_url)
    with EmbeddedServer(config=conf, port=-1) as s:
        ours = run_async(go, s.client_url)
    assert ours == theirs == {"before": "no responders", "delivered": "in.news.x",
                              "after": "no responders"}
