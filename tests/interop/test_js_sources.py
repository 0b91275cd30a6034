"""Stream sources through nats-py, against edgebus and the real nats-server alike.

A sourcing stream stores each origin message under a new local sequence, with the origin's
headers minus `Nats-Expected-*` plus `Nats-Stream-Source: <origin> <origin seq> <filter>
<dest> <subject>`; filters and subject transforms select and rename; many origins merge, each
in its own order; `opt_start_seq` / `opt_start_time` pick the start; a stream sourcing a
sourcing stream replaces the inherited header; STREAM.UPDATE adds and removes sources; and
STREAM.INFO shows a `sources` section. Each test runs once per server.
"""

from __future__ import annotations

from typing import Any

from test_js_sources_helpers import (
    Target,
    create,
    info,
    js_target,
    messages,
    run_js,
    source_fields,
    wait_count,
)

__all__ = ["js_target"]  # the parametrized fixture, imported for pytest


def _key(si: dict[str, Any]) -> tuple[Any, ...]:
    # nats-server lists sources in map order: compare them sorted
    return (si["name"], si.get("filter_subject", ""), str(si.get("subject_transforms", "")))


def test_sources_with_filters_and_transforms(js_target: Target) -> None:
    async def go(nc: Any, js: Any) -> None:
        await create(nc, {"name": "O1", "subjects": ["o1.>"]})
        await create(nc, {"name": "O2", "subjects": ["o2.>"]})
        for i in range(3):
            await js.publish("o1.a", b"a%d" % i, headers={"Nats-Msg-Id": f"a{i}",
                                                          "Nats-Expected-Stream": "O1"})
            await js.publish("o1.b", b"b%d" % i)
            await js.publish("o1.c", b"c%d" % i)
            await js.publish(f"o2.x.{i}", b"x%d" % i)
        sources = [{"name": "O1", "filter_subject": "o1.a"},
                   {"name": "O1", "subject_transforms": [{"src": "o1.b", "dest": "s.b"}]},
                   {"name": "O2"}]
        r = await create(nc, {"name": "S", "subjects": ["s.own"], "sources": sources})
        assert sorted(r["sources"], key=_key) == sorted([
            {"name": "O1", "lag": 0, "active": -1, "filter_subject": "o1.a"},
            {"name": "O1", "lag": 0, "active": -1, "subject_transforms": [{"src": "o1.b", "dest": "s.b"}]},
            {"name": "O2", "lag": 0, "active": -1}], key=_key)

        ack = await js.publish("s.own", b"local")
        await js.publish("o2.x.9", b"late")
        si = await wait_count(nc, "S", 11)
        msgs = await messages(nc, "S")
        assert [m["seq"] for m in msgs] == list(range(1, 12))  # new local sequences
        local = [m for m in msgs if m["seq"] == ack.seq]
        assert local[0]["subject"] == "s.own" and "Nats-Stream-Source" not in local[0]["hdrs"]
        got = {(m["subject"], m["data"]): source_fields(m) for m in msgs if m["seq"] != ack.seq}
        want = {}
        for i in range(3):
            want[("o1.a", b"a%d" % i)] = ["O1", str(1 + 3 * i), "o1.a", ">", "o1.a"]
            want[("s.b", b"b%d" % i)] = ["O1", str(2 + 3 * i), "o1.b", "s.b", "o1.b"]
            want[(f"o2.x.{i}", b"x%d" % i)] = ["O2", str(1 + i), ">", ">", f"o2.x.{i}"]
        want[("o2.x.9", b"late")] = ["O2", "4", ">", ">", "o2.x.9"]
        assert got == want
        # origin headers kept, expectations dropped
        a0 = [m for m in msgs if m["subject"] == "o1.a"][0]
        assert a0["hdrs"]["Nats-Msg-Id"] == "a0" and "Nats-Expected-Stream" not in a0["hdrs"]
        # each origin's messages keep their order
        for subj in ("o1.a", "s.b"):
            seqs = [int(source_fields(m)[1]) for m in msgs if m["subject"] == subj]
            assert seqs == sorted(seqs)

        for s in si["sources"]:
            assert s["lag"] == 0 and s["active"] >= 0 and "error" not in s
        assert sorted(s.get("filter_subject", "") for s in si["sources"]) == ["", "", "o1.a"]
    run_js(js_target.url, go)


def test_many_sources_merge(js_target: Target) -> None:
    n = 12

    async def go(nc: Any, js: Any) -> None:
        for k in range(n):
            await create(nc, {"name": f"O{k}", "subjects": [f"o{k}.>"], "storage": "memory"})
            for i in range(5):
                await js.publish(f"o{k}.e", b"%d-%d" % (k, i))
        await create(nc, {"name": "ALL", "storage": "memory",
                          "sources": [{"name": f"O{k}"} for k in range(n)]})
        await wait_count(nc, "ALL", 5 * n)
        msgs = await messages(nc, "ALL")
        assert len(msgs) == 5 * n
        for k in range(n):
            mine = [m for m in msgs if m["subject"] == f"o{k}.e"]
            assert [m["data"] for m in mine] == [b"%d-%d" % (k, i) for i in range(5)]
            assert [source_fields(m)[:2] for m in mine] == [[f"O{k}", str(i + 1)] for i in range(5)]
    run_js(js_target.url, go)


def test_start_sequence_and_start_time(js_target: Target) -> None:
    async def go(nc: Any, js: Any) -> None:
        await create(nc, {"name": "O", "subjects": ["o.>"]})
        for i in range(10):
            await js.publish("o.n", b"%d" % (i + 1))
        t8 = (await messages(nc, "O"))[7]["time"]
        await create(nc, {"name": "BYSEQ", "sources": [{"name": "O", "opt_start_seq": 6}]})
        await create(nc, {"name": "BYTIME", "sources": [{"name": "O", "opt_start_time": t8}]})
        await wait_count(nc, "BYSEQ", 5)
        await wait_count(nc, "BYTIME", 3)
        assert [m["data"] for m in await messages(nc, "BYSEQ")] == [b"6", b"7", b"8", b"9", b"10"]
        assert [m["data"] for m in await messages(nc, "BYTIME")] == [b"8", b"9", b"10"]
    run_js(js_target.url, go)


def test_chained_sources_replace_the_header(js_target: Target) -> None:
    async def go(nc: Any, js: Any) -> None:
        await create(nc, {"name": "O", "subjects": ["o.>"]})
        await create(nc, {"name": "S1", "sources": [{"name": "O"}]})
        await create(nc, {"name": "S2", "sources": [{"name": "S1", "filter_subject": "o.keep"}]})
        await js.publish("o.drop", b"1")
        await js.publish("o.keep", b"2")
        await wait_count(nc, "S2", 1)
        (m,) = await messages(nc, "S2")
        assert (m["subject"], m["data"]) == ("o.keep", b"2")
        assert source_fields(m) == ["S1", "2", "o.keep", ">", "o.keep"]
        assert list(m["hdrs"]).count("Nats-Stream-Source") == 1
    run_js(js_target.url, go)


def test_update_adds_and_removes_sources(js_target: Target) -> None:
    async def go(nc: Any, js: Any) -> None:
        await create(nc, {"name": "A", "subjects": ["a"]})
        await create(nc, {"name": "B", "subjects": ["b"]})
        await create(nc, {"name": "S", "sources": [{"name": "A"}]})
        await js.publish("a", b"a1")
        await js.publish("b", b"b1")
        await wait_count(nc, "S", 1)
        r = await nc.request("$JS.API.STREAM.UPDATE.S",
                             b'{"name": "S", "sources": [{"name": "B"}]}', timeout=5)
        assert b'"error"' not in r.data, r.data
        await wait_count(nc, "S", 2)  # B from its beginning
        await js.publish("a", b"a2")  # A no longer sourced
        await js.publish("b", b"b2")
        await wait_count(nc, "S", 3)
        i = await info(nc, "S")
        assert [s["name"] for s in i["sources"]] == ["B"]
        assert [m["data"] for m in await messages(nc, "S")] == [b"a1", b"b1", b"b2"]
    run_js(js_target.url, go)


def test_full_work_queue_source_loses_nothing(js_target: Target) -> None:
    """A discard-new limit refuses sourced messages: the source retries from the refused one."""
    async def go(nc: Any, js: Any) -> None:
        await create(nc, {"name": "O", "subjects": ["o.>"]})
        for i in range(16):
            await js.publish("o.job", b"%d" % i)
        await create(nc, {"name": "WQ", "retention": "workqueue", "max_msgs": 10, "discard": "new",
                          "sources": [{"name": "O"}]})
        await wait_count(nc, "WQ", 10)
        psub = await js.pull_subscribe("o.job", "worker", stream="WQ")
        got: list[Any] = []
        while len(got) < 16:
            for m in await psub.fetch(10, timeout=10):
                got.append(m)
                await m.ack_sync()
        assert [m.data for m in got] == [b"%d" % i for i in range(16)]
        assert [int(m.headers["Nats-Stream-Source"].split(" ")[1]) for m in got] == list(range(1, 17))
        assert (await info(nc, "WQ"))["state"]["messages"] == 0
    run_js(js_target.url, go)
