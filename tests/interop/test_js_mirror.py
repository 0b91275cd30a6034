"""Stream mirrors through nats-py, against edgebus and the real nats-server alike.

A mirror holds the origin's messages at the origin's sequence numbers and timestamps, with the
origin's gaps as deleted sequences and its `Nats-Expected-*` headers gone; it starts where the
origin starts (purged origins, `opt_start_seq`), filters and renames with `filter_subject` /
`subject_transforms`, mirrors a KV bucket (rollups included), shows a `mirror` section in
STREAM.INFO, and with `mirror_direct` answers direct gets for the origin. Each test runs once per
server; the assertions are the behaviour both must share.
"""

from __future__ import annotations

import json
from typing import Any

import nats
import pytest

from test_js_sources_helpers import (
    Target,
    api,
    create,
    eventually,
    info,
    js_target,
    messages,
    run_js,
    view,
    wait_last_seq,
)

__all__ = ["js_target"]  # the parametrized fixture, imported for pytest


def test_mirror_keeps_origin_sequences_timestamps_and_gaps(js_target: Target) -> None:
    async def go(nc: Any, js: Any) -> None:
        await create(nc, {"name": "O", "subjects": ["o.>"], "allow_direct": True})
        for i in range(6):
            await js.publish(f"o.{'ab'[i % 2]}", b"m%d" % i,
                             headers={"Nats-Msg-Id": f"id{i}", "Nats-Expected-Stream": "O"})
        await js.delete_msg("O", 2)
        await api(nc, "$JS.API.STREAM.MSG.DELETE.O", {"seq": 4, "no_erase": True})

        r = await create(nc, {"name": "M", "mirror": {"name": "O"}})
        # mirror_direct follows the origin's allow_direct; no consumer answered yet
        assert r["config"]["mirror_direct"] is True
        assert r["mirror"] == {"name": "O", "lag": 0, "active": -1}
        assert "subjects" not in r["config"] and "duplicate_window" not in r["config"]

        await wait_last_seq(nc, "M", 6)
        for i in range(6, 9):
            await js.publish(f"o.c.{i}", b"m%d" % i)
        await js.delete_msg("O", 7)  # may or may not have been mirrored yet
        mi = await wait_last_seq(nc, "M", 9)

        origin = await messages(nc, "O")
        mirror = await messages(nc, "M")
        want = [dict(m, hdrs={k: v for k, v in m["hdrs"].items() if not k.startswith("Nats-Expected-")})
                for m in origin]
        mirror = [m for m in mirror if m["seq"] != 7]  # 7 may have made it across first
        assert view(mirror, "seq", "subject", "data", "hdrs", "time") == \
            view(want, "seq", "subject", "data", "hdrs", "time")
        st = mi["state"]
        assert (st["first_seq"], st["last_seq"]) == (1, 9)
        assert st["first_ts"] == origin[0]["time"]

        m = mi["mirror"]
        assert (m["name"], m["lag"]) == ("O", 0) and m["active"] >= 0 and "error" not in m

        # the caught-up mirror shares the origin's direct gets (queue group _sys_)
        answered_by = set()
        for _ in range(40):
            msg = await nc.request("$JS.API.DIRECT.GET.O", b'{"seq": 1}', timeout=5)
            assert msg.data == b"m0"
            answered_by.add(msg.headers["Nats-Stream"])
        assert answered_by == {"O", "M"}
        with pytest.raises(nats.errors.NoRespondersError):
            await nc.request("$JS.API.DIRECT.GET.M", b'{"seq": 1}', timeout=5)

        # nothing published reaches the mirror itself: the origin answers
        r = await nc.request("o.a", b"direct", headers={"Nats-Expected-Stream": "M"}, timeout=5)
        assert json.loads(r.data)["error"]["err_code"] == 10060
        # a mirror takes no subjects, and its mirror config cannot change
        r = await api(nc, "$JS.API.STREAM.UPDATE.M", {"name": "M", "mirror": {"name": "O"}, "subjects": ["m.>"]})
        assert r["error"]["err_code"] == 10034
        r = await api(nc, "$JS.API.STREAM.UPDATE.M", {"name": "M", "mirror": {"name": "O", "filter_subject": "o.a"}})
        assert r["error"]["err_code"] == 10055
    run_js(js_target.url, go)


def test_mirror_starts_where_the_origin_starts(js_target: Target) -> None:
    async def go(nc: Any, js: Any) -> None:
        await create(nc, {"name": "O", "subjects": ["o.>"]})
        for i in range(5):
            await js.publish("o.x", b"%d" % i)
        await js.purge_stream("O")
        await create(nc, {"name": "M", "mirror": {"name": "O"}})

        async def moved() -> Any:
            st = (await info(nc, "M"))["state"]
            return st if st["first_seq"] == 6 else None
        st = await eventually(moved, "the empty mirror to move to the origin's first sequence")
        assert (st["messages"], st["last_seq"]) == (0, 5)
        await js.publish("o.y", b"after")
        await wait_last_seq(nc, "M", 6)
        assert view(await messages(nc, "M"), "seq", "subject", "data") == [(6, "o.y", b"after")]

        # opt_start_seq applies to an empty mirror
        for i in range(4):
            await js.publish("o.z", b"z%d" % i)
        await create(nc, {"name": "M2", "mirror": {"name": "O", "opt_start_seq": 8}})
        await wait_last_seq(nc, "M2", 10)
        assert view(await messages(nc, "M2"), "seq", "data") == [(8, b"z1"), (9, b"z2"), (10, b"z3")]
    run_js(js_target.url, go)


def test_mirror_filter_and_subject_transforms(js_target: Target) -> None:
    async def go(nc: Any, js: Any) -> None:
        await create(nc, {"name": "O", "subjects": ["o.>"]})
        for i in range(6):
            await js.publish(f"o.{'abc'[i % 3]}", b"%d" % i)
        r = await create(nc, {"name": "F", "mirror": {"name": "O", "filter_subject": "o.b"}})
        assert r["mirror"] == {"name": "O", "lag": 0, "active": -1}
        trs = [{"src": "o.a", "dest": "m.a"}, {"src": "o.c", "dest": "m.c"}]
        r = await create(nc, {"name": "T", "mirror": {"name": "O", "subject_transforms": trs}})
        assert r["mirror"]["subject_transforms"] == trs

        await js.publish("o.b", b"last-b")
        await js.publish("o.c", b"last-c")
        f = await wait_last_seq(nc, "F", 7)
        t = await wait_last_seq(nc, "T", 8)
        # filtered out messages leave gaps at their origin sequences
        assert view(await messages(nc, "F"), "seq", "subject", "data") == \
            [(2, "o.b", b"1"), (5, "o.b", b"4"), (7, "o.b", b"last-b")]
        assert view(await messages(nc, "T"), "seq", "subject", "data") == \
            [(1, "m.a", b"0"), (3, "m.c", b"2"), (4, "m.a", b"3"), (6, "m.c", b"5"), (8, "m.c", b"last-c")]
        assert f["mirror"]["filter_subject"] == "o.b"
        assert t["mirror"]["subject_transforms"] == trs
    run_js(js_target.url, go)


def test_mirror_of_a_kv_bucket(js_target: Target) -> None:
    async def go(nc: Any, js: Any) -> None:
        kv = await js.create_key_value(bucket="cfg", history=5)
        await kv.put("a", b"1")
        await kv.put("b", b"2")
        await kv.put("a", b"3")
        await kv.delete("b")
        await kv.put("c", b"4")
        # what nats.go creates for a mirrored bucket
        await create(nc, {"name": "KV_cfgm", "mirror": {"name": "KV_cfg"}, "max_msgs_per_subject": 5,
                          "discard": "new", "allow_rollup_hdrs": True, "deny_delete": True,
                          "allow_direct": True, "mirror_direct": True})
        await kv.purge("a")  # a rollup: the mirror must take it too
        await kv.put("c", b"5")
        last = (await info(nc, "KV_cfg"))["state"]["last_seq"]
        await wait_last_seq(nc, "KV_cfgm", last)
        origin = await messages(nc, "KV_cfg")
        mirror = await messages(nc, "KV_cfgm")
        assert view(mirror, "seq", "subject", "data", "hdrs", "time") == \
            view(origin, "seq", "subject", "data", "hdrs", "time")
        # latest values read from the mirror itself
        got = {}
        for key in ("a", "b", "c"):
            m = await nc.request(f"$JS.API.DIRECT.GET.KV_cfgm.$KV.cfg.{key}", b"", timeout=5)
            got[key] = (m.data, (m.headers or {}).get("KV-Operation"))
        assert got == {"a": (b"", "PURGE"), "b": (b"", "DEL"), "c": (b"5", None)}
    run_js(js_target.url, go)
