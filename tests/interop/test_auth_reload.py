"""Configuration reload applied to live nats-py connections: a removed user is disconnected,
narrowed permissions apply at once (subscriptions no longer allowed are dropped), new users and
accounts work, and a broken file changes nothing."""

from __future__ import annotations

import asyncio

import nats
import pytest

from conftest import flushed, run_async
from edgebus.testing.embedded import EmbeddedServer

BEFORE = """
port: -1
authorization { users: [
  {user: keep, password: k}
  {user: gone, password: g}
  {user: narrow, password: n}
] }
"""
AFTER = """
port: -1
authorization { users: [
  {user: keep, password: k}
  {user: narrow, password: n, permissions: { publish: "allowed.>", subscribe: "allowed.>" }}
  {user: fresh, password: f}
] }
"""


def test_reload_applies_to_live_connections(tmp_path):
    from edgebus.conf import load_config
    from edgebus.security.reload import reload_from_file
    path = tmp_path / "server.conf"
    path.write_text(BEFORE)
    opts, _ = load_config(str(path))
    with EmbeddedServer(opts) as s:
        async def go():
            events: dict[str, list] = {"gone": [], "narrow": []}

            def cb(name):
                async def err(e):
                    events[name].append(str(e).lower())
                return err
            keep = await nats.connect(s.client_url, user="keep", password="k", allow_reconnect=False)
            gone = await nats.connect(s.client_url, user="gone", password="g", allow_reconnect=False,
                                      error_cb=cb("gone"))
            narrow = await nats.connect(s.client_url, user="narrow", password="n",
                                        allow_reconnect=False, error_cb=cb("narrow"))
            s_any = await narrow.subscribe("anything")
            s_ok = await narrow.subscribe("allowed.x")
            await flushed(narrow)

            path.write_text(AFTER)
            changed = await asyncio.to_thread(s.call, reload_from_file)
            assert "authorization" in changed

            for _ in range(100):
                if gone.is_closed:
                    break
                await asyncio.sleep(0.02)
            assert gone.is_closed
            assert isinstance(gone.last_error, nats.errors.AuthorizationError) or \
                any("authorization violation" in e for e in events["gone"])
            # the narrowed user keeps its connection, loses the subscription outside its rights
            await keep.publish("anything", b"1")
            await keep.publish("allowed.x", b"2")
            await flushed(keep)
            assert (await s_ok.next_msg(timeout=2)).data == b"2"
            with pytest.raises(nats.errors.TimeoutError):
                await s_any.next_msg(timeout=0.3)
            await narrow.publish("denied", b"")
            await flushed(narrow)
            for _ in range(50):
                if any('publish to "denied"' in e for e in events["narrow"]):
                    break
                await asyncio.sleep(0.02)
            assert any('subscription to "anything"' in e for e in events["narrow"])
            assert any('publish to "denied"' in e for e in events["narrow"])
            assert not narrow.is_closed
            fresh = await nats.connect(s.client_url, user="fresh", password="f", allow_reconnect=False)
            for c in (keep, narrow, fresh):
                await c.close()
        run_async(go)


def test_broken_reload_changes_nothing(tmp_path):
    from edgebus.conf import load_config
    from edgebus.security.reload import ReloadError, reload
    path = tmp_path / "server.conf"
    path.write_text(BEFORE)
    opts, _ = load_config(str(path))
    bad, _ = load_config(str(path))
    bad.no_auth_user = "nobody-by-that-name"
    with EmbeddedServer(opts) as s:
        with pytest.raises(ReloadError):
            s.call(lambda srv: reload(srv, bad))

        async def go():
            nc = await nats.connect(s.client_url, user="gone", password="g", allow_reconnect=False)
            await nc.close()
        run_async(go)


def test_reload_accounts_and_mappings(tmp_path):
    from edgebus.conf import load_config
    from edgebus.security.reload import reload_from_file
    path = tmp_path / "server.conf"
    path.write_text("""port: -1
    accounts { A { users: [{user: a, password: a}] } }""")
    opts, _ = load_config(str(path))
    with EmbeddedServer(opts) as s:
        path.write_text("""port: -1
        accounts {
          A { users: [{user: a, password: a}], exports: [{stream: "out.>"}], mappings: {"m": "mapped"} }
          B { users: [{user: b, password: b}], imports: [{stream: {account: A, subject: "out.>"}}] }
        }""")
        s.call(reload_from_file)

        async def go():
            a = await nats.connect(s.client_url, user="a", password="a", allow_reconnect=False)
            b = await nats.connect(s.client_url, user="b", password="b", allow_reconnect=False)
            sb = await b.subscribe("out.>")
            sm = await a.subscribe("mapped")
            await flushed(b)
            await flushed(a)
            await a.publish("out.1", b"x")
            await a.publish("m", b"y")
            assert (await sb.next_msg(timeout=2)).data == b"x"
            assert (await sm.next_msg(timeout=2)).data == b"y"
            await a.close()
            await b.close()
        run_async(go)


def test_reload_over_sys_request(tmp_path):
    import json
    from edgebus.conf import load_config
    path = tmp_path / "server.conf"
    conf = """port: -1
    accounts { SYS { users: [{user: sys, password: sys}] }, A { users: [{user: a, password: a}] } }
    system_account: SYS"""
    path.write_text(conf)
    opts, _ = load_config(str(path))
    with EmbeddedServer(opts) as s:
        path.write_text(conf.replace("A { users: [{user: a, password: a}] }",
                                     "A { users: [{user: a2, password: a2}] }"))

        async def go():
            sysc = await nats.connect(s.client_url, user="sys", password="sys", allow_reconnect=False)
            sid = s.server.broker.server_id
            r = json.loads((await sysc.request(f"$SYS.REQ.SERVER.{sid}.RELOAD", b"", timeout=3)).data)
            assert "error" not in r, r
            nc = await nats.connect(s.client_url, user="a2", password="a2", allow_reconnect=False)
            await nc.close()
            await sysc.close()
        run_async(go)


def test_reload_operator_mode_memory_resolver(tmp_path):
    import sys
    import time
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    pytest.importorskip("nkeys")
    from test_auth_jwt import Org
    from edgebus.conf import load_config
    from edgebus.security.reload import reload_from_file
    o = Org(tmp_path)
    kp, tok = o.user("victim", iat=int(time.time()) - 60)
    path = tmp_path / "op.conf"
    path.write_text("port: -1\n" + o.config())
    opts, _ = load_config(str(path))
    with EmbeddedServer(opts) as s:
        async def go():
            nc = await nats.connect(s.client_url, user_credentials=o.creds(kp, tok),
                                    allow_reconnect=False)
            o.acc_jwt = o.account_jwt(revocations={kp.public_key: int(time.time())})
            path.write_text("port: -1\n" + o.config())
            await asyncio.to_thread(s.call, reload_from_file)
            for _ in range(100):
                if nc.is_closed:
                    break
                await asyncio.sleep(0.02)
            assert nc.is_closed
        run_async(go)
