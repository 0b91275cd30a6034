"""JetStream streams through nats-py, run against edgebus and against the real nats-server.

Every test gets a fresh server from the `js_server` fixture (parametrized: edgebus, real
nats-server) and asserts behaviour both must share: stream CRUD, pub acks and expectation
headers, limits and discard policies, purge / get / delete, direct get, retention, republish,
subject transforms and the error codes for bad input.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, Awaitable, Callable

import nats
import pytest
from nats.js.api import StreamConfig
from nats.js.errors import APIError, BadRequestError, NotFoundError

from conftest import run_async

pytestmark = pytest.mark.edgebus(jetstream=True)


class Target:
    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url


@pytest.fixture(params=["edgebus", "nats-server"])
def js_server(request: pytest.FixtureRequest) -> Target:
    if request.param == "edgebus":
        srv = request.getfixturevalue("edgebus_server")
        return Target("edgebus", srv.client_url)
    real = request.getfixturevalue("real_nats_server")(jetstream=True)
    return Target("nats-server", real.client_url)


def with_js(target: Target, fn: Callable[[Any, Any], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        nc = await nats.connect(target.url, allow_reconnect=False)
        try:
            return await fn(nc, nc.jetstream())
        finally:
            await nc.close()
    return run_async(main, timeout=30)


async def api(nc: Any, subject: str, body: Any = None) -> dict[str, Any]:
    """Raw API request; returns the decoded JSON reply."""
    if body is None:
        data = b""
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    msg = await nc.request(subject, data, timeout=5)
    return json.loads(msg.data)


async def pub(nc: Any, subject: str, data: bytes = b"x", **headers: str) -> dict[str, Any]:
    """Publish with a reply and return the raw pub ack JSON (errors included)."""
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()} or None
    msg = await nc.request(subject, data, timeout=5, headers=hdrs)
    return json.loads(msg.data)


def err_code(resp: dict[str, Any]) -> int | None:
    e = resp.get("error")
    return e["err_code"] if e else None


# ---------------------------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------------------------

def test_create_info_update_delete(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        si = await js.add_stream(name="ORDERS", subjects=["orders.>"], storage="memory")
        assert si.did_create
        c = si.config
        assert (c.retention, c.max_msgs, c.max_bytes, c.max_consumers) == ("limits", -1, -1, -1)
        assert c.duplicate_window == 120.0 and c.num_replicas == 1 and c.discard == "old"
        # identical create is a no-op success, a different one is 10058
        again = await api(nc, "$JS.API.STREAM.CREATE.ORDERS",
                          {"name": "ORDERS", "subjects": ["orders.>"], "storage": "memory"})
        assert "error" not in again and again["config"]["name"] == "ORDERS"
        diff = await api(nc, "$JS.API.STREAM.CREATE.ORDERS",
                         {"name": "ORDERS", "subjects": ["other"], "storage": "memory"})
        assert err_code(diff) == 10058
        # overlap with another stream
        ov = await api(nc, "$JS.API.STREAM.CREATE.O2", {"name": "O2", "subjects": ["orders.eu"]})
        assert err_code(ov) == 10065 and ov["error"]["code"] == 400

        si = await js.update_stream(name="ORDERS", subjects=["orders.>", "returns.*"],
                                    storage="memory", max_msgs=10, description="d")
        assert si.config.subjects == ["orders.>", "returns.*"] and si.config.max_msgs == 10
        ack = await js.publish("returns.1", b"r")
        assert ack.stream == "ORDERS" and ack.seq == 1

        for change, code in [({"storage": "file"}, 10052), ({"retention": "workqueue"}, 10052)]:
            cfg = {"name": "ORDERS", "subjects": ["orders.>"], "storage": "memory", **change}
            r = await api(nc, "$JS.API.STREAM.UPDATE.ORDERS", cfg)
            assert err_code(r) == code, r
        r = await api(nc, "$JS.API.STREAM.UPDATE.NOPE", {"name": "NOPE"})
        assert err_code(r) == 10059
        r = await api(nc, "$JS.API.STREAM.UPDATE.ORDERS", {"name": "OTHER"})
        assert err_code(r) == 10056

        # deny_delete cannot be cleared again
        await js.update_stream(name="ORDERS", subjects=["orders.>"], storage="memory", deny_delete=True)
        r = await api(nc, "$JS.API.STREAM.UPDATE.ORDERS",
                      {"name": "ORDERS", "subjects": ["orders.>"], "storage": "memory"})
        assert err_code(r) == 10052 and "deny message deletes" in r["error"]["description"]

        r = await api(nc, "$JS.API.STREAM.DELETE.ORDERS", {"x": 1})
        assert err_code(r) == 10038
        assert await js.delete_stream("ORDERS")
        with pytest.raises(NotFoundError):
            await js.stream_info("ORDERS")
        with pytest.raises(NotFoundError):
            await js.delete_stream("ORDERS")
    with_js(js_server, body)


def test_names_list_and_info_details(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        for name, subj in [("B", "b.*"), ("A", "a.>"), ("C", "c")]:
            await js.add_stream(name=name, subjects=[subj], storage="memory")
        names = await api(nc, "$JS.API.STREAM.NAMES")
        assert names["streams"] == ["A", "B", "C"] and names["total"] == 3 and names["limit"] == 1024
        names = await api(nc, "$JS.API.STREAM.NAMES", {"subject": "b.x"})
        assert names["streams"] == ["B"]
        assert await js.find_stream_name_by_subject("a.q.r") == "A"
        lst = await api(nc, "$JS.API.STREAM.LIST", {"offset": 1})
        assert [s["config"]["name"] for s in lst["streams"]] == ["B", "C"]
        assert lst["total"] == 3 and lst["offset"] == 1 and lst["limit"] == 256
        infos = await js.streams_info()
        assert sorted(i.config.name for i in infos) == ["A", "B", "C"]

        for i in range(6):
            await js.publish(f"a.{i % 3}", b"m")
        await js.delete_msg("A", 2)
        info = await api(nc, "$JS.API.STREAM.INFO.A", {"subjects_filter": "a.*", "deleted_details": True})
        st = info["state"]
        assert st["subjects"] == {"a.0": 2, "a.1": 1, "a.2": 2}
        assert st["deleted"] == [2] and st["num_deleted"] == 1 and st["num_subjects"] == 3
        assert (info["total"], info["limit"]) == (3, 100000)
        si = await js.stream_info("A", subjects_filter="a.1")
        assert si.state.subjects == {"a.1": 1}
        plain = await api(nc, "$JS.API.STREAM.INFO.A")
        assert "subjects" not in plain["state"] and "deleted" not in plain["state"]
        assert plain["state"]["messages"] == 5 and plain["state"]["consumer_count"] == 0
    with_js(js_server, body)


def test_account_info(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        await js.add_stream(name="S", subjects=["s"], storage="memory")
        await js.publish("s", b"hello")
        info = await js.account_info()
        assert info.streams == 1 and info.memory > 0
        assert info.limits.max_streams == -1 and info.api.total >= 1
        raw = await api(nc, "$JS.API.INFO")
        assert raw["type"] == "io.nats.jetstream.api.v1.account_info_response"
    with_js(js_server, body)


# ---------------------------------------------------------------------------------------------
# publishing
# ---------------------------------------------------------------------------------------------

def test_pub_acks_dedupe_and_expectations(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        await js.add_stream(name="S", subjects=["s.>"], storage="memory")
        assert await pub(nc, "s.a") == {"stream": "S", "seq": 1}
        assert await pub(nc, "s.a", Nats_Msg_Id="m1") == {"stream": "S", "seq": 2}
        assert await pub(nc, "s.b", Nats_Msg_Id="m1") == {"stream": "S", "seq": 2, "duplicate": True}
        ack = await js.publish("s.c", b"z", headers={"Nats-Msg-Id": "m1"})
        assert ack.duplicate and ack.seq == 2

        r = await pub(nc, "s.b", Nats_Expected_Stream="T")
        assert err_code(r) == 10060 and r["stream"] == "S" and r["seq"] == 0
        assert (await pub(nc, "s.b", Nats_Expected_Stream="S"))["seq"] == 3
        r = await pub(nc, "s.b", Nats_Expected_Last_Sequence="1")
        assert err_code(r) == 10071 and r["error"]["description"] == "wrong last sequence: 3"
        assert (await pub(nc, "s.b", Nats_Expected_Last_Sequence="3"))["seq"] == 4
        r = await pub(nc, "s.b", Nats_Expected_Last_Subject_Sequence="3")
        assert r["error"]["description"] == "wrong last sequence: 4"
        assert (await pub(nc, "s.new", Nats_Expected_Last_Subject_Sequence="0"))["seq"] == 5
        r = await pub(nc, "s.new", Nats_Expected_Last_Subject_Sequence="0")
        assert err_code(r) == 10071
        r = await pub(nc, "s.x", Nats_Expected_Last_Subject_Sequence="5",
                      Nats_Expected_Last_Subject_Sequence_Subject="s.new")
        assert r["seq"] == 6
        await pub(nc, "s.id", Nats_Msg_Id="last")
        r = await pub(nc, "s.id", Nats_Expected_Last_Msg_Id="nope")
        assert err_code(r) == 10070 and r["error"]["description"] == "wrong last msg ID: last"
        assert "error" not in await pub(nc, "s.id", Nats_Expected_Last_Msg_Id="last")

        # nats-py surfaces the same errors as exceptions
        with pytest.raises(BadRequestError) as ei:
            await js.publish("s.a", b"x", headers={"Nats-Expected-Last-Sequence": "1"})
        assert ei.value.err_code == 10071
        # rollups are off by default; TTLs too
        r = await pub(nc, "s.a", Nats_Rollup="sub")
        assert err_code(r) == 10111 and r["error"]["description"] == "rollup not permitted"
        r = await pub(nc, "s.a", Nats_TTL="10s")
        assert err_code(r) == 10166
        si = await js.stream_info("S")
        assert si.state.last_seq == 8 and si.state.messages == 8
    with_js(js_server, body)


def test_rollup_ttl_and_message_size(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        await api(nc, "$JS.API.STREAM.CREATE.R", {
            "name": "R", "subjects": ["r.>"], "storage": "memory", "allow_rollup_hdrs": True,
            "allow_msg_ttl": True, "max_msg_size": 64})
        for i in range(3):
            await pub(nc, "r.a", b"%d" % i)
            await pub(nc, "r.b", b"%d" % i)
        r = await pub(nc, "r.a", b"last", Nats_Rollup="SUB")
        assert r["seq"] == 7
        si = await js.stream_info("R", subjects_filter=">")
        assert si.state.subjects == {"r.a": 1, "r.b": 3}
        r = await pub(nc, "r.b", b"x", Nats_Rollup="bogus")
        assert err_code(r) == 10111 and r["error"]["description"] == 'rollup value invalid: "bogus"'
        r = await pub(nc, "r.c", b"all", Nats_Rollup="all")
        si = await js.stream_info("R")
        assert si.state.messages == 1 and si.state.first_seq == r["seq"]

        r = await pub(nc, "r.a", b"y" * 65)
        assert err_code(r) == 10054 and r["error"]["code"] == 400
        for bad in ("0", "bogus", "500ms", "-1"):
            assert err_code(await pub(nc, "r.t", Nats_TTL=bad)) == 10165, bad
        for good in ("5s", "1h", "30", "never"):
            assert "error" not in await pub(nc, "r.t", Nats_TTL=good), good
        m = await js.get_last_msg("R", "r.t")
        assert m.headers["Nats-TTL"] == "never"
    with_js(js_server, body)


@pytest.mark.parametrize("storage", ["memory", "file"])
def test_limits_and_discard(js_server: Target, storage: str) -> None:
    async def body(nc: Any, js: Any) -> None:
        create = "$JS.API.STREAM.CREATE."
        await api(nc, create + "OLD", {"name": "OLD", "subjects": ["old.*"], "storage": storage,
                                       "max_msgs": 3, "max_msgs_per_subject": 2})
        for s in ("a", "a", "a", "b", "c"):
            await pub(nc, f"old.{s}")
        si = await js.stream_info("OLD", subjects_filter=">")
        assert si.state.messages == 3 and si.state.first_seq == 3
        assert si.state.subjects == {"old.a": 1, "old.b": 1, "old.c": 1}

        await api(nc, create + "NEW", {"name": "NEW", "subjects": ["new"], "storage": storage,
                                       "discard": "new", "max_msgs": 2})
        assert "error" not in await pub(nc, "new") and "error" not in await pub(nc, "new")
        r = await pub(nc, "new")
        assert err_code(r) == 10077 and r["error"] == {
            "code": 503, "err_code": 10077, "description": "maximum messages exceeded"}

        await api(nc, create + "NB", {"name": "NB", "subjects": ["nb"], "storage": storage,
                                      "discard": "new", "max_bytes": 150})
        assert "error" not in await pub(nc, "nb", b"x" * 60)
        r = await pub(nc, "nb", b"x" * 60)
        assert r["error"]["description"] == "maximum bytes exceeded"

        await api(nc, create + "NP", {"name": "NP", "subjects": ["np.*"], "storage": storage,
                                      "discard": "new", "max_msgs_per_subject": 1,
                                      "discard_new_per_subject": True})
        assert "error" not in await pub(nc, "np.a")
        r = await pub(nc, "np.a")
        assert r["error"]["description"] == "maximum messages per subject exceeded"
        assert "error" not in await pub(nc, "np.b")

        # shrinking limits on update applies at once
        await api(nc, "$JS.API.STREAM.UPDATE.OLD", {"name": "OLD", "subjects": ["old.*"],
                                                     "storage": storage, "max_msgs": 1,
                                                     "max_msgs_per_subject": 2})
        assert (await js.stream_info("OLD")).state.messages == 1
    with_js(js_server, body)


# ---------------------------------------------------------------------------------------------
# purge, get, delete
# ---------------------------------------------------------------------------------------------

def test_purge_variants(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        await js.add_stream(name="P", subjects=["p.*"], storage="memory")

        async def fill() -> None:
            for i in range(10):
                await pub(nc, f"p.{'ab'[i % 2]}", b"%d" % i)

        await fill()
        r = await api(nc, "$JS.API.STREAM.PURGE.P", {"filter": "p.a", "keep": 2})
        assert r == {"type": "io.nats.jetstream.api.v1.stream_purge_response", "success": True, "purged": 3}
        r = await api(nc, "$JS.API.STREAM.PURGE.P", {"seq": 6})
        assert r["purged"] == 2  # seqs 2 and 4 (p.b) are below 6, p.a 1,3,5 already gone
        r = await api(nc, "$JS.API.STREAM.PURGE.P", {"seq": 5, "keep": 1})
        assert err_code(r) == 10003 and r["purged"] == 0
        assert await js.purge_stream("P", subject="p.b")
        si = await js.stream_info("P", subjects_filter=">")
        assert si.state.subjects == {"p.a": 2}
        assert await js.purge_stream("P")
        si = await js.stream_info("P")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (0, 11, 10)
        await fill()
        assert (await js.stream_info("P")).state.first_seq == 11
        assert await js.purge_stream("P", keep=3)
        assert (await js.stream_info("P")).state.first_seq == 18

        await js.add_stream(name="DP", subjects=["dp"], storage="memory", deny_purge=True, deny_delete=True)
        await pub(nc, "dp")
        r = await api(nc, "$JS.API.STREAM.PURGE.DP")
        assert r["error"] == {"code": 500, "err_code": 10110, "description": "stream purge not permitted"}
        r = await api(nc, "$JS.API.STREAM.MSG.DELETE.DP", {"seq": 1})
        assert r["error"] == {"code": 500, "err_code": 10057, "description": "message delete not permitted"}
        r = await api(nc, "$JS.API.STREAM.PURGE.NOPE")
        assert err_code(r) == 10059
    with_js(js_server, body)


def test_msg_get_and_delete(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        await js.add_stream(name="G", subjects=["g.*"], storage="memory")
        await pub(nc, "g.a", b"one")
        await nc.request("g.b", b"two", headers={"k": "v"}, timeout=5)
        await pub(nc, "g.a", b"three")
        m = await js.get_msg("G", 2)
        assert (m.subject, m.seq, m.data, m.headers) == ("g.b", 2, b"two", {"k": "v"})
        m = await js.get_last_msg("G", "g.a")
        assert (m.seq, m.data) == (3, b"three")
        m = await js.get_msg("G", 2, subject="g.a", next=True)
        assert m.seq == 3
        raw = await api(nc, "$JS.API.STREAM.MSG.GET.G", {"seq": 2})
        msg = raw["message"]
        assert base64.b64decode(msg["hdrs"]) == b"NATS/1.0\r\nk: v\r\n\r\n"
        assert base64.b64decode(msg["data"]) == b"two" and msg["time"].endswith("Z")
        raw = await api(nc, "$JS.API.STREAM.MSG.GET.G", {"next_by_subj": "g.*", "seq": 3})
        assert raw["message"]["seq"] == 3

        for req, code in [({"seq": 99}, 10037), ({"last_by_subj": "g.zz"}, 10037),
                          (None, 10003), ({}, 10003), ({"seq": 1, "last_by_subj": "g.a"}, 10003),
                          ({"seq": 1, "batch": 2}, 10003), (b"{nope", 10025)]:
            r = await api(nc, "$JS.API.STREAM.MSG.GET.G", req)
            assert err_code(r) == code, (req, r)
        with pytest.raises(NotFoundError):
            await js.get_msg("G", 99)
        r = await api(nc, "$JS.API.STREAM.MSG.GET.NOPE", {"seq": 1})
        assert err_code(r) == 10059

        assert await js.delete_msg("G", 1)
        r = await api(nc, "$JS.API.STREAM.MSG.DELETE.G", {"seq": 2, "no_erase": True})
        assert r == {"type": "io.nats.jetstream.api.v1.stream_msg_delete_response", "success": True}
        r = await api(nc, "$JS.API.STREAM.MSG.DELETE.G", {"seq": 2})
        assert r["error"] == {"code": 400, "err_code": 10043, "description": "sequence 2 not found"}
        assert err_code(await api(nc, "$JS.API.STREAM.MSG.DELETE.G")) == 10003
        si = await js.stream_info("G")
        assert (si.state.messages, si.state.first_seq) == (1, 3)
    with_js(js_server, body)


# ---------------------------------------------------------------------------------------------
# direct get
# ---------------------------------------------------------------------------------------------

def test_direct_get(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        await js.add_stream(name="D", subjects=["d.>"], storage="memory")
        await pub(nc, "d.a", b"1")
        with pytest.raises(Exception) as ei:  # no allow_direct: nobody answers
            await js.get_msg("D", 1, direct=True)
        assert "no responders" in str(ei.value).lower() or type(ei.value).__name__ == "ServiceUnavailableError"
        await js.update_stream(name="D", subjects=["d.>"], storage="memory", allow_direct=True)
        await nc.request("d.b", b"2", headers={"h": "1"}, timeout=5)
        await pub(nc, "d.a", b"3")
        await pub(nc, "d.c.x", b"4")

        m = await js.get_msg("D", 2, direct=True)
        assert (m.subject, m.seq, m.data) == ("d.b", 2, b"2")
        assert m.headers["h"] == "1" and m.headers["Nats-Stream"] == "D"
        m = await js.get_last_msg("D", "d.a", direct=True)
        assert (m.seq, m.data) == (3, b"3")
        # the last-by-subject form accepts wildcards
        raw = await nc.request("$JS.API.DIRECT.GET.D.d.>", b"", timeout=5)
        assert raw.headers["Nats-Sequence"] == "4" and raw.headers["Nats-Subject"] == "d.c.x"
        with pytest.raises(NotFoundError):
            await js.get_msg("D", 99, direct=True)

        raw = await nc.request("$JS.API.DIRECT.GET.D", b"", timeout=5)
        assert raw.headers["Status"] == "408" and raw.headers.get("Description") == "Empty Request"
        raw = await nc.request("$JS.API.DIRECT.GET.D", b"{oops", timeout=5)
        assert raw.headers["Status"] == "408"
        raw = await nc.request("$JS.API.DIRECT.GET.D", json.dumps({"seq": 1, "last_by_subj": "d.a"}).encode(), timeout=5)
        assert raw.headers["Status"] == "408" and raw.headers.get("Description") == "Bad Request"
        raw = await nc.request("$JS.API.DIRECT.GET.D", json.dumps({"seq": 2, "next_by_subj": "d.a"}).encode(), timeout=5)
        assert raw.headers["Nats-Sequence"] == "3"
    with_js(js_server, body)


def test_direct_get_batch(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        await js.add_stream(name="B", subjects=["b.*"], storage="memory", allow_direct=True)
        for i in range(5):
            await pub(nc, f"b.{'xy'[i % 2]}", b"%d" % i)
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish("$JS.API.DIRECT.GET.B", json.dumps({"seq": 2, "batch": 2, "next_by_subj": "b.x"}).encode(),
                         reply=inbox)
        got = [await sub.next_msg(timeout=5) for _ in range(3)]
        assert [m.headers.get("Nats-Sequence") for m in got[:2]] == ["3", "5"]
        assert [m.headers.get("Nats-Num-Pending") for m in got[:2]] == ["1", "0"]
        assert [m.headers.get("Nats-Last-Sequence") for m in got[:2]] == ["0", "3"]
        eob = got[2]
        assert eob.headers["Status"] == "204" and eob.headers["Nats-Num-Pending"] == "0"
        assert eob.headers["Nats-Last-Sequence"] == "5"

        await nc.publish("$JS.API.DIRECT.GET.B", json.dumps({"multi_last": ["b.*"]}).encode(), reply=inbox)
        got = [await sub.next_msg(timeout=5) for _ in range(3)]
        assert [m.headers.get("Nats-Sequence") for m in got[:2]] == ["4", "5"]
        assert got[2].headers["Status"] == "204" and got[2].headers["Nats-UpTo-Sequence"] == "5"
    with_js(js_server, body)


# ---------------------------------------------------------------------------------------------
# retention, republish, transforms, sealed
# ---------------------------------------------------------------------------------------------

def test_interest_and_workqueue_retention(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        await js.add_stream(name="W", subjects=["w.>"], storage="memory", retention="workqueue")
        await js.add_stream(name="I", subjects=["i.>"], storage="memory", retention="interest")
        ack = await js.publish("i.a", b"nobody listens")
        si = await js.stream_info("I")
        assert ack.seq == 1 and si.state.messages == 0 and si.state.last_seq == 1

        w = await js.pull_subscribe("w.>", "wc")
        c1 = await js.pull_subscribe("i.a", "c1")
        c2 = await js.pull_subscribe("i.>", "c2")
        for k in range(3):
            await js.publish("w.x", b"%d" % k)
            await js.publish("i.a", b"%d" % k)
            await js.publish("i.b", b"%d" % k)
        for m in await w.fetch(2):
            await m.ack_sync()
        assert (await js.stream_info("W")).state.messages == 1
        for m in await c1.fetch(3):
            await m.ack_sync()
        assert (await js.stream_info("I")).state.messages == 6
        msgs = await c2.fetch(6)
        for m in msgs[:4]:
            await m.ack_sync()
        assert (await js.stream_info("I")).state.messages == 2
    with_js(js_server, body)


def test_republish_and_subject_transform(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        sub = await nc.subscribe("out.>")
        await api(nc, "$JS.API.STREAM.CREATE.RP", {
            "name": "RP", "subjects": ["rp.>"], "storage": "memory",
            "republish": {"src": "rp.>", "dest": "out.>"}})
        await pub(nc, "rp.a", b"one")
        await nc.request("rp.a", b"two", headers={"x": "y"}, timeout=5)
        m1 = await sub.next_msg(timeout=5)
        m2 = await sub.next_msg(timeout=5)
        assert (m1.subject, m1.data) == ("out.a", b"one")
        h = m2.headers
        assert (h["Nats-Stream"], h["Nats-Subject"], h["Nats-Sequence"], h["Nats-Last-Sequence"]) == \
            ("RP", "rp.a", "2", "1")
        assert h["x"] == "y" and h["Nats-Time-Stamp"].endswith("Z")

        await api(nc, "$JS.API.STREAM.CREATE.HO", {
            "name": "HO", "subjects": ["ho.*"], "storage": "memory",
            "republish": {"src": "ho.*", "dest": "out.ho.{{wildcard(1)}}", "headers_only": True}})
        await pub(nc, "ho.k", b"12345")
        m = await sub.next_msg(timeout=5)
        assert m.subject == "out.ho.k" and m.data == b"" and m.headers["Nats-Msg-Size"] == "5"

        r = await api(nc, "$JS.API.STREAM.CREATE.CY", {
            "name": "CY", "subjects": ["cy.>"], "republish": {"src": ">", "dest": "cy.x"}})
        assert err_code(r) == 10052

        await api(nc, "$JS.API.STREAM.CREATE.TR", {
            "name": "TR", "subjects": ["in.*.*"], "storage": "memory",
            "subject_transform": {"src": "in.*.*", "dest": "st.{{wildcard(2)}}.{{wildcard(1)}}"}})
        await pub(nc, "in.a.b")
        m = await js.get_msg("TR", 1)
        assert m.subject == "st.b.a"
    with_js(js_server, body)


def test_sealed_and_first_seq(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        r = await api(nc, "$JS.API.STREAM.CREATE.SE", {"name": "SE", "sealed": True})
        assert err_code(r) == 10052
        await js.add_stream(name="SE", subjects=["se"], storage="memory")
        await pub(nc, "se")
        si = await js.update_stream(name="SE", subjects=["se"], storage="memory", sealed=True)
        assert si.config.sealed and si.config.deny_delete and si.config.deny_purge
        assert si.config.discard == "new"
        assert err_code(await pub(nc, "se")) == 10109
        assert err_code(await api(nc, "$JS.API.STREAM.PURGE.SE")) == 10109
        assert err_code(await api(nc, "$JS.API.STREAM.MSG.DELETE.SE", {"seq": 1})) == 10109
        r = await api(nc, "$JS.API.STREAM.UPDATE.SE", {"name": "SE", "subjects": ["se"], "storage": "memory"})
        assert err_code(r) == 10052

        await api(nc, "$JS.API.STREAM.CREATE.FS", {"name": "FS", "subjects": ["fs"], "storage": "memory",
                                                   "first_seq": 100})
        assert (await pub(nc, "fs"))["seq"] == 100
    with_js(js_server, body)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

BAD_CONFIGS: list[tuple[Any, int]] = [
    (b"{not json", 10025),
    ({"name": "X", "max_msgs": "ten"}, 10025),
    ({"name": "X", "max_age": 1.5}, 10025),
    ({"name": "X", "retention": "forever"}, 10025),
    ({"name": "X", "storage": "disk"}, 10025),
    ({"name": "X", "compression": "zip"}, 10025),
    ({"name": "Y"}, 10056),
    (None, 10056),
    ({"name": "X", "max_age": 1000}, 10052),
    ({"name": "X", "subjects": ["a", "a"]}, 10052),
    ({"name": "X", "subjects": ["a.*", "a.b"]}, 10052),
    ({"name": "X", "subjects": ["bad..subject"]}, 10052),
    ({"name": "X", "subjects": [">"]}, 10052),
    ({"name": "X", "subjects": ["$JS.API.>"]}, 10052),
    ({"name": "X", "deny_purge": True, "allow_rollup_hdrs": True}, 10052),
    ({"name": "X", "discard_new_per_subject": True}, 10052),
    ({"name": "X", "duplicate_window": 5_000_000_000, "max_age": 1_000_000_000}, 10052),
    ({"name": "X", "subject_delete_marker_ttl": 10}, 10052),
    ({"name": "X", "mirror_direct": True}, 10052),
    ({"name": "X", "placement": {"preferred": "srv"}}, 10052),
    ({"name": "X", "num_replicas": 3}, 10074),
    ({"name": "X", "num_replicas": -1}, 10133),
    ({"name": "X", "mirror": {"name": "O"}, "subjects": ["m"]}, 10034),
    ({"name": "X", "subject_transform": {"src": "a.*", "dest": "b.{{wildcard(2)}}"}, "subjects": ["a.*"]}, 10156),
]


@pytest.mark.parametrize("cfg,code", BAD_CONFIGS, ids=[str(i) for i in range(len(BAD_CONFIGS))])
def test_invalid_stream_configs(js_server: Target, cfg: Any, code: int) -> None:
    async def body(nc: Any, js: Any) -> None:
        r = await api(nc, "$JS.API.STREAM.CREATE.X", cfg)
        assert r["type"] == "io.nats.jetstream.api.v1.stream_create_response"
        assert set(r["error"]) == {"code", "err_code", "description"}
        assert err_code(r) == code, r
    with_js(js_server, body)


def test_bad_requests_and_unknown_streams(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        for subj in ("STREAM.INFO.NOPE", "STREAM.DELETE.NOPE", "STREAM.PURGE.NOPE"):
            r = await api(nc, "$JS.API." + subj)
            assert r["error"] == {"code": 404, "err_code": 10059, "description": "stream not found"}
        for subj in ("STREAM.INFO.NOPE", "STREAM.NAMES", "STREAM.LIST", "STREAM.PURGE.NOPE"):
            r = await api(nc, "$JS.API." + subj, b"{bad json")
            assert err_code(r) == 10025, subj
        r = await api(nc, "$JS.API.STREAM.LEADER.STEPDOWN.NOPE")
        assert r["error"]["err_code"] == 10010 and r["error"]["code"] == 503
        with pytest.raises(APIError):
            await js.add_stream(StreamConfig(name="X", subjects=["x"], max_age=0.001))
    with_js(js_server, body)


# ---------------------------------------------------------------------------------------------
# accounts and domains (configured servers, compared with nats-server)
# ---------------------------------------------------------------------------------------------

ACCOUNTS = """
accounts {
  A { users: [{user: a, password: a}], jetstream: {max_streams: 1, max_mem: 1000, max_consumers: 2} }
  B { users: [{user: b, password: b}] }
}
"""


async def _account_probe(url: str) -> list[Any]:
    out: list[Any] = []
    for user in ("a", "b"):
        nc = await nats.connect(url, user=user, password=user, allow_reconnect=False)
        for subj, body in [("$JS.API.INFO", None),
                           ("$JS.API.STREAM.CREATE.S", {"name": "S", "storage": "memory"}),
                           ("$JS.API.STREAM.CREATE.T", {"name": "T", "storage": "memory"}),
                           ("$JS.API.STREAM.CREATE.S", {"name": "S", "storage": "memory", "max_bytes": 5000}),
                           ("$JS.API.STREAM.CREATE.S", {"name": "S", "storage": "memory", "max_consumers": 5}),
                           ("$JS.API.STREAM.NAMES", None),
                           ("S", b"x" * 300), ("S", b"x" * 300), ("S", b"x" * 300), ("S", b"x" * 300)]:
            data = body if isinstance(body, bytes) else json.dumps(body).encode() if body else b""
            try:
                r = json.loads((await nc.request(subj, data, timeout=5)).data)
                out.append((user, subj, r.get("error") or r.get("seq") or r.get("streams")))
            except Exception as e:
                out.append((user, subj, type(e).__name__))
        await nc.close()
    return out


def test_account_limits_and_accounts_without_jetstream(real_nats_server: Any) -> None:
    real = real_nats_server(config=ACCOUNTS, jetstream=True)
    theirs = run_async(_account_probe, real.client_url)
    from edgebus.testing.embedded import EmbeddedServer
    with EmbeddedServer(config=ACCOUNTS + "\njetstream: enabled\n", port=-1) as srv:
        ours = run_async(_account_probe, srv.client_url)
    assert ours == theirs
    codes = [r[2]["err_code"] for r in ours if isinstance(r[2], dict)]
    assert {10027, 10028, 10026, 10002, 10039} <= set(codes)


def test_domain_api(tmp_path: Any, real_nats_server: Any) -> None:
    conf = f'jetstream {{ domain: hub, store_dir: "{tmp_path}/real" }}'
    real = real_nats_server(config=conf)
    from edgebus.options import Options
    from edgebus.testing.embedded import EmbeddedServer
    o = Options()
    o.port = -1
    o.jetstream.enabled = True
    o.jetstream.domain = "hub"
    o.jetstream.store_dir = str(tmp_path / "edge")

    async def probe(url: str) -> list[Any]:
        nc = await nats.connect(url, allow_reconnect=False)
        js = nc.jetstream(domain="hub")
        info = await js.account_info()
        await js.add_stream(name="S", subjects=["s"], storage="memory")
        ack = await js.publish("s", b"x")
        m = await js.get_msg("S", 1)
        direct_off = None
        try:
            await js.get_msg("S", 1, direct=True)
        except Exception as e:
            direct_off = type(e).__name__
        si = await api(nc, "$JS.API.STREAM.INFO.S")
        await nc.close()
        return [info.domain, ack.domain, ack.seq, m.data, direct_off, si.get("domain")]

    theirs = run_async(probe, real.client_url)
    with EmbeddedServer(o) as srv:
        ours = run_async(probe, srv.client_url)
    assert ours == theirs == ["hub", "hub", 1, b"x", "NoRespondersError", "hub"]


def test_stream_action_advisories(js_server: Target) -> None:
    async def body(nc: Any, js: Any) -> None:
        sub = await nc.subscribe("$JS.EVENT.ADVISORY.STREAM.>")
        await js.add_stream(name="ADV", subjects=["adv"], storage="memory")
        await js.update_stream(name="ADV", subjects=["adv", "adv2"], storage="memory")
        await js.delete_stream("ADV")
        got = [await sub.next_msg(timeout=5) for _ in range(3)]
        assert [m.subject for m in got] == ["$JS.EVENT.ADVISORY.STREAM.CREATED.ADV",
                                            "$JS.EVENT.ADVISORY.STREAM.UPDATED.ADV",
                                            "$JS.EVENT.ADVISORY.STREAM.DELETED.ADV"]
        events = [json.loads(m.data) for m in got]
        assert [e["action"] for e in events] == ["create", "modify", "delete"]
        assert all(e["type"] == "io.nats.jetstream.advisory.v1.stream_action" and e["stream"] == "ADV"
                   and len(e["id"]) == 22 and e["timestamp"].endswith("Z") for e in events)
    with_js(js_server, body)


def _shape(d: Any, depth: int = 0) -> Any:
    if isinstance(d, dict):
        return {k: _shape(v, depth + 1) for k, v in d.items()} if depth < 3 else sorted(d)
    if isinstance(d, list) and d:
        return [_shape(d[0], depth + 1)]
    return type(d).__name__


def test_jsz_document_shape(real_nats_server: Any) -> None:
    """/jsz with account, stream and consumer details has nats-server's keys and counts."""
    import urllib.request

    from edgebus.testing.embedded import EmbeddedServer

    async def fill(url: str) -> None:
        nc = await nats.connect(url, allow_reconnect=False)
        js = nc.jetstream()
        await js.add_stream(name="S", subjects=["s"])
        await js.publish("s", b"x")
        await js.pull_subscribe("s", "C")
        await nc.close()

    q = "/jsz?accounts=true&streams=true&consumers=true&config=true"
    real = real_nats_server(jetstream=True)
    run_async(fill, real.client_url)
    theirs = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{real.http_port}{q}", timeout=5).read())
    with EmbeddedServer(jetstream=True, http_port=-1) as srv:
        run_async(fill, srv.client_url)
        ours = json.loads(urllib.request.urlopen(srv.http_url + q, timeout=5).read())
    for doc in (ours, theirs):
        doc.pop("limits")
        doc["config"].pop("strict", None)
    assert _shape(ours) == _shape(theirs)
    for k in ("streams", "consumers", "messages", "total"):
        assert ours[k] == theirs[k], k
    detail = ours["account_details"][0]["stream_detail"][0]
    assert detail["name"] == "S" and detail["state"]["messages"] == 1
    assert detail["consumer_detail"][0]["name"] == "C"


def test_replies_of_one_read_keep_publish_order(js_server: Target) -> None:
    """PubAcks and errors for publishes that arrive in one read come back in publish order
    (edgebus holds a file stream's replies until the read's appends are written)."""
    async def go(nc: Any, js: Any) -> list[bytes]:
        await js.add_stream(name="ORD", subjects=["ord"], storage="file")
        host, port = nc.connected_url.hostname, nc.connected_url.port
        r, w = await asyncio.open_connection(host, port)
        await r.readline()  # INFO
        bad = b"NATS/1.0\r\nNats-Expected-Last-Sequence: 99\r\n\r\n"
        w.write(b'CONNECT {"verbose":false,"headers":true}\r\nSUB r.* 1\r\n'
                b"PUB ord r.1 1\r\na\r\n"
                b"HPUB ord r.2 %d %d\r\n%sb\r\n" % (len(bad), len(bad) + 1, bad) +
                b"PUB ord r.3 1\r\nc\r\nPING\r\n")
        await w.drain()
        got = []
        while len(got) < 3:
            line = await asyncio.wait_for(r.readline(), 5)
            if line.startswith(b"MSG "):
                subj = line.split()[1]
                body = await r.readexactly(int(line.split()[-1]) + 2)
                got.append(subj + b" " + body[:-2])
        w.close()
        await js.delete_stream("ORD")
        return got

    got = with_js(js_server, go)
    assert [g.split(b" ")[0] for g in got] == [b"r.1", b"r.2", b"r.3"]
    assert b'"seq":1' in got[0] and b"wrong last sequence" in got[1] and b'"seq":2' in got[2]


def _mixed_read_frames() -> list[bytes]:
    """Publishes covering every ingest path: plain PUBs (edgebus's `_ingest_plain`), headers,
    Nats-Msg-Id and its duplicates, expected-last-(subject-)sequence right and wrong, and more
    than the stream holds (max_msgs 12, discard new), with one reply subject each."""
    def hpub(subj: str, i: int, *hdrs: tuple[str, str]) -> bytes:
        h = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in hdrs) + b"\r\n"
        data = b"h%d" % i
        return b"HPUB %s r.%d %d %d\r\n%s%s\r\n" % (subj.encode(), i, len(h), len(h) + len(data), h, data)

    def plain(subj: str, i: int) -> bytes:
        return b"PUB %s r.%d 2\r\np%d\r\n" % (subj.encode(), i, i % 10)

    frames: list[bytes] = []
    for i, f in enumerate([
        lambda i: plain("mix.a", i),
        lambda i: plain("mix.b", i),
        lambda i: hpub("mix.a", i, ("Nats-Msg-Id", "one")),
        lambda i: plain("mix.c", i),
        lambda i: hpub("mix.b", i, ("Nats-Msg-Id", "one")),            # duplicate
        lambda i: hpub("mix.b", i, ("Nats-Expected-Last-Sequence", "4")),
        lambda i: hpub("mix.b", i, ("Nats-Expected-Last-Sequence", "99")),
        lambda i: hpub("mix.a", i, ("Nats-Expected-Last-Subject-Sequence", "3")),
        lambda i: hpub("mix.a", i, ("Nats-Expected-Last-Subject-Sequence", "3")),  # now wrong
        lambda i: hpub("mix.c", i, ("X-Other", "v")),
        lambda i: plain("mix.a", i),
        lambda i: hpub("mix.d", i, ("Nats-Msg-Id", "two")),
        lambda i: plain("mix.b", i),
        lambda i: plain("mix.c", i),
        lambda i: plain("mix.d", i),          # 12 stored by here: the stream is full
        lambda i: plain("mix.a", i),          # maximum messages exceeded
        lambda i: plain("mix.a", i),
        lambda i: hpub("mix.a", i, ("Nats-Msg-Id", "two")),  # still a duplicate
        lambda i: hpub("mix.e", i, ("Nats-Msg-Id", "three")),  # refused
        lambda i: plain("mix.b", i),
        lambda i: hpub("mix.e", i, ("Nats-Msg-Id", "three")),  # refused again, not a duplicate
        lambda i: hpub("mix.b", i, ("Nats-Expected-Last-Sequence", "12")),  # refused by the limit
    ], start=1):
        frames.append(f(i))
    return frames


@pytest.mark.parametrize("storage", ["file", "memory"])
def test_a_read_of_mixed_publishes_answers_as_one_at_a_time(js_server: Target, storage: str) -> None:
    """Publishes that arrive in one read (edgebus: appended to the file together, the clock
    read once) get exactly the PubAcks and errors that the same publishes sent one at a time
    get, and the stored messages have distinct, ascending timestamps."""
    frames = _mixed_read_frames()

    async def run(nc: Any, js: Any, together: bool) -> tuple[list[Any], list[int]]:
        await js.add_stream(name="MIX", subjects=["mix.>"], storage=storage, max_msgs=12,
                            discard="new")
        host, port = nc.connected_url.hostname, nc.connected_url.port
        r, w = await asyncio.open_connection(host, port)
        await r.readline()  # INFO
        w.write(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\nSUB r.* 1\r\nPING\r\n')
        await w.drain()
        while not (await asyncio.wait_for(r.readline(), 5)).startswith(b"PONG"):
            pass

        async def reply() -> tuple[int, Any]:
            while True:
                line = await asyncio.wait_for(r.readline(), 5)
                if line.startswith(b"MSG "):
                    body = await r.readexactly(int(line.split()[-1]) + 2)
                    return int(line.split()[1].split(b".")[1]), json.loads(body[:-2])

        got: dict[int, Any] = {}
        if together:
            w.write(b"".join(frames))
            await w.drain()
            for _ in frames:
                i, body = await reply()
                got[i] = body
        else:
            for f in frames:
                w.write(f)
                await w.drain()
                i, body = await reply()
                got[i] = body
        w.close()
        stamps = []
        for seq in range(1, 13):
            m = await api(nc, "$JS.API.STREAM.MSG.GET.MIX", {"seq": seq})
            stamps.append(m["message"]["time"])
        await js.delete_stream("MIX")
        return [got[i] for i in range(1, len(frames) + 1)], stamps

    together, stamps = with_js(js_server, lambda nc, js: run(nc, js, True))
    alone, _ = with_js(js_server, lambda nc, js: run(nc, js, False))
    assert together == alone
    acks = [(a.get("seq"), a.get("duplicate", False), err_code(a)) for a in together]
    ok = [(s, False, None) for s in range(1, 13)]
    assert acks == [*ok[:4], (3, True, None), ok[4], (0, False, 10071), ok[5], (0, False, 10071),
                    *ok[6:], (0, False, 10077), (0, False, 10077), (9, True, None),
                    *[(0, False, 10077)] * 4]
    # RFC 3339 with nanoseconds, all in one second or two: distinct and ascending as strings
    # once aligned; compare the parsed nanoseconds
    ns = [_rfc3339_ns(t) for t in stamps]
    assert ns == sorted(ns) and len(set(ns)) == len(ns)


def _rfc3339_ns(t: str) -> int:
    import datetime
    base, _, frac = t.rstrip("Z").partition(".")
    secs = int(datetime.datetime.fromisoformat(base).replace(tzinfo=datetime.timezone.utc).timestamp())
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])
