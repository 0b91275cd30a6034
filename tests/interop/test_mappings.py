"""Subject mappings (top level for $G and per account) with nats-py, and the results of
deterministic transforms (partition, split, wildcard reorder) compared with the real nats-server."""

from __future__ import annotations

import nats
import pytest

from conftest import flushed, run_async
from edgebus.testing.embedded import EmbeddedServer

MAPPINGS = """
mappings {
  "orders.*.*": "bucket.{{partition(5,1,2)}}.{{wildcard(2)}}.{{wildcard(1)}}"
  "user.*": "users.{{partition(3,1)}}.$1"
  "path.*": "p.{{split(1,-)}}"
  "old.>": "new.>"
  "cut.*": "c.{{splitFromLeft(1,2)}}"
}
"""

SUBJECTS = [f"orders.{c}.{i}" for c in ("eu", "us", "apac", "x") for i in range(6)] + \
    [f"user.{n}" for n in ("alice", "bob", "carol", "dave", "erin", "42", "")] + \
    ["path.a-b-c", "path.-x--y-", "old.a.b.c", "cut.abcdef", "cut.a", "untouched.subject"]
SUBJECTS = [s for s in SUBJECTS if not s.endswith(".")]


async def mapped_subjects(url: str, user: str | None = None) -> dict[str, str]:
    kw = {"user": user, "password": user} if user else {}
    nc = await nats.connect(url, allow_reconnect=False, **kw)
    sub = await nc.subscribe(">")
    await flushed(nc)
    out = {}
    for s in SUBJECTS:
        await nc.publish(s, s.encode())
        m = await sub.next_msg(timeout=2)
        out[m.data.decode()] = m.subject
    await nc.close()
    return out


def test_top_level_mappings_match_real_nats_server(real_nats_server):
    real = real_nats_server(config=MAPPINGS)
    with EmbeddedServer(config=MAPPINGS, port=-1) as s:
        ours = run_async(mapped_subjects, s.client_url)
    theirs = run_async(mapped_subjects, real.client_url)
    assert ours == theirs
    assert ours["untouched.subject"] == "untouched.subject"
    assert ours["old.a.b.c"] == "new.a.b.c"


def test_account_mappings_match_real_nats_server(real_nats_server):
    body = MAPPINGS.replace("mappings {", "mappings: {")
    conf = f"""accounts {{
      M {{ users: [{{user: m, password: m}}]
          {body} }}
      N {{ users: [{{user: n, password: n}}] }}
    }}"""
    real = real_nats_server(config=conf)
    with EmbeddedServer(config=conf, port=-1) as s:
        ours = run_async(mapped_subjects, s.client_url, "m")
        plain = run_async(mapped_subjects, s.client_url, "n")
    theirs = run_async(mapped_subjects, real.client_url, "m")
    assert ours == theirs
    # mappings are per account: N's subjects stay as published
    assert all(k == v for k, v in plain.items())


def test_weighted_mapping_splits_traffic():
    conf = """mappings { "w": [ {destination: "w.a", weight: 50%}, {destination: "w.b", weight: 50%} ] }"""

    async def go(url):
        nc = await nats.connect(url, allow_reconnect=False)
        sub = await nc.subscribe("w.*")
        await flushed(nc)
        for _ in range(200):
            await nc.publish("w", b"")
        seen = set()
        for _ in range(200):
            seen.add((await sub.next_msg(timeout=2)).subject)
        await nc.close()
        return seen
    with EmbeddedServer(config=conf, port=-1) as s:
        assert run_async(go, s.client_url) == {"w.a", "w.b"}


def test_mapping_applies_to_requests():
    conf = 'mappings { "svc.v1": "svc.v2" }'

    async def go(url):
        nc = await nats.connect(url, allow_reconnect=False)

        async def h(m):
            await m.respond(m.subject.encode())
        await nc.subscribe("svc.v2", cb=h)
        r = await nc.request("svc.v1", b"", timeout=2)
        await nc.close()
        return r.data
    with EmbeddedServer(config=conf, port=-1) as s:
        assert run_async(go, s.client_url) == b"svc.v2"


def test_invalid_mapping_refused():
    from edgebus.conf import options_from_config, parse_string
    from edgebus.server import Server
    srv = Server(options_from_config(parse_string('mappings { "a.*": "b.{{wildcard(3)}}" }'),
                                     filename="<test>"))
    from edgebus.security.setup import SecurityConfigError, configure
    with pytest.raises(SecurityConfigError, match="mappings"):
        configure(srv)


def test_accountz_lists_mappings():
    from edgebus.security.monitor_acc import accountz
    with EmbeddedServer(config='mappings { "a": "b", "w": [{destination: "x", weight: 40%}] }',
                        port=-1) as s:
        d = s.call(lambda srv: accountz(srv, {"acc": "$G"}))["account_detail"]
    assert d["mappings"]["a"] == [{"destination": "b", "weight": 100}]
    assert d["mappings"]["w"] == [{"destination": "x", "weight": 40}]
