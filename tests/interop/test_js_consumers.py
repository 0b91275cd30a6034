"""JetStream consumers through nats-py, run against edgebus and against the real nats-server:
CONSUMER.* API forms and errors, pull statuses, acks, redelivery, push delivery, retention.

Every scenario talks to a real server over a socket; where behaviour is meant to be identical
the same test runs against both (the `srv` fixture is parametrized over the two).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ReplayPolicy, RetentionPolicy
from nats.js.errors import APIError, NotFoundError

from conftest import flushed
from js.jshelpers import JSServer, api, pull, run, server_fixture, status_of, wait_for


@pytest.fixture(params=["edgebus", "nats-server"])
def srv(request: pytest.FixtureRequest, tmp_path) -> JSServer:
    yield from server_fixture(request, tmp_path)


async def _setup(url: str, subjects: list[str] | None = None, n: int = 0, **stream_kw):
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="S", subjects=subjects or ["foo.>"], **stream_kw)
    for i in range(n):
        await js.publish(f"foo.{i}", b"m%d" % i)
    return nc, js


# -- API: create / info / names / list / delete -----------------------------------------------

def test_create_info_names_list_delete(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=5)
        ci = await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT,
                                                       filter_subject="foo.>"))
        assert ci.name == "D" and ci.stream_name == "S"
        c = ci.config
        assert (c.ack_wait, c.max_deliver, c.max_waiting, c.max_ack_pending) == (30.0, -1, 512, 1000)
        assert c.deliver_policy == DeliverPolicy.ALL and c.replay_policy == ReplayPolicy.INSTANT
        assert ci.num_pending == 5 and ci.num_ack_pending == 0 and ci.num_waiting == 0
        assert ci.delivered.consumer_seq == 0 and ci.delivered.stream_seq == 0

        await js.add_consumer("S", ConsumerConfig(durable_name="A", ack_policy=AckPolicy.EXPLICIT))
        names = await api(nc, "CONSUMER.NAMES.S")
        assert names["consumers"] == ["A", "D"] and names["total"] == 2 and names["limit"] == 1024
        lst = await api(nc, "CONSUMER.LIST.S", {"offset": 1})
        assert lst["total"] == 2 and lst["offset"] == 1 and [x["name"] for x in lst["consumers"]] == ["D"]
        raw = await api(nc, "CONSUMER.INFO.S.D")
        assert raw["type"] == "io.nats.jetstream.api.v1.consumer_info_response"
        assert set(raw) >= {"stream_name", "name", "created", "config", "delivered", "ack_floor",
                            "num_ack_pending", "num_redelivered", "num_waiting", "num_pending", "ts"}

        assert await js.delete_consumer("S", "A")
        with pytest.raises(NotFoundError) as e:
            await js.consumer_info("S", "A")
        assert e.value.err_code == 10014
        with pytest.raises(NotFoundError):
            await js.delete_consumer("S", "A")
        bad = await api(nc, "CONSUMER.INFO.NOPE.D")
        assert bad["error"]["err_code"] == 10059 and bad["error"]["code"] == 404
        assert set(bad["error"]) == {"code", "err_code", "description"}
        await nc.close()

    run(main, srv.url)


def test_create_forms_actions_and_errors(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url)
        cfg = {"durable_name": "D", "ack_policy": "explicit"}
        ok = await api(nc, "CONSUMER.CREATE.S.D", {"stream_name": "S", "config": cfg, "action": "create"})
        assert ok["name"] == "D" and "error" not in ok
        # identical config with action create: idempotent
        again = await api(nc, "CONSUMER.CREATE.S.D", {"stream_name": "S", "config": cfg, "action": "create"})
        assert "error" not in again, again
        diff = dict(cfg, description="other")
        r = await api(nc, "CONSUMER.CREATE.S.D", {"stream_name": "S", "config": diff, "action": "create"})
        assert r["error"]["err_code"] == 10148
        # create-or-update applies an allowed change
        r = await api(nc, "CONSUMER.CREATE.S.D", {"stream_name": "S", "config": diff})
        assert r["config"]["description"] == "other"
        # ... but not an immutable one
        r = await api(nc, "CONSUMER.CREATE.S.D", {"stream_name": "S", "config": dict(cfg, ack_policy="all")})
        assert r["error"]["err_code"] == 10012 and "ack policy" in r["error"]["description"]
        r = await api(nc, "CONSUMER.CREATE.S.X", {"stream_name": "S", "config": {"ack_policy": "explicit"},
                                                  "action": "update"})
        assert r["error"]["err_code"] == 10149
        errors = {
            ("CONSUMER.CREATE.S.D", json.dumps({"stream_name": "T", "config": cfg})): 10056,
            ("CONSUMER.CREATE.S.E", json.dumps({"stream_name": "S", "config": cfg})): 10017,
            ("CONSUMER.DURABLE.CREATE.S.E", json.dumps({"stream_name": "S", "config": cfg})): 10017,
            ("CONSUMER.DURABLE.CREATE.S.D", json.dumps({"stream_name": "S", "config": {}})): 10018,
            ("CONSUMER.CREATE.S", json.dumps({"stream_name": "S", "config": cfg})): 10020,
            ("CONSUMER.CREATE.S.F.foo.x", json.dumps({"stream_name": "S", "config": {"filter_subject": "foo.y"}})): 10131,
            ("CONSUMER.CREATE.S.F.foo.x", json.dumps({"stream_name": "S", "config": {"filter_subjects": ["foo.x"]}})): 10137,
            ("CONSUMER.CREATE.NOPE.D", json.dumps({"stream_name": "NOPE", "config": cfg})): 10059,
            ("CONSUMER.CREATE.S.F", json.dumps({"stream_name": "S", "config": {"deliver_policy": "by_start_sequence"}})): 10094,
            ("CONSUMER.CREATE.S.F", json.dumps({"stream_name": "S", "config": {"opt_start_seq": 3}})): 10094,
            ("CONSUMER.CREATE.S.F", json.dumps({"stream_name": "S", "config": {"idle_heartbeat": 1000000000}})): 10088,
            ("CONSUMER.CREATE.S.F", json.dumps({"stream_name": "S", "config": {"deliver_subject": "dx", "flow_control": True}})): 10108,
            ("CONSUMER.CREATE.S.F", json.dumps({"stream_name": "S", "config": {"deliver_subject": "dx", "idle_heartbeat": 50000000}})): 10083,
            ("CONSUMER.CREATE.S.F", json.dumps({"stream_name": "S", "config": {"deliver_subject": "d.*"}})): 10079,
            ("CONSUMER.CREATE.S.F", json.dumps({"stream_name": "S", "config": {"deliver_subject": "foo.bar"}})): 10081,
            ("CONSUMER.CREATE.S.F", json.dumps({"stream_name": "S", "config": {"rate_limit_bps": 100}})): 10086,
            ("CONSUMER.CREATE.S.F", json.dumps({"stream_name": "S", "config": {"filter_subjects": ["foo.>", "foo.a"]}})): 10138,
            ("CONSUMER.CREATE.S.F", json.dumps({"stream_name": "S", "config": {"backoff": [1, 2, 3], "max_deliver": 2}})): 10116,
            ("CONSUMER.CREATE.S.F", json.dumps({"stream_name": "S", "config": {"ack_wait": "x"}})): 10025,
            ("CONSUMER.CREATE.S.F", b"{bad json"): 10025,
        }
        for (subj, body), code in errors.items():
            r = await api(nc, subj, body if isinstance(body, bytes) else body.encode())
            assert r.get("error", {}).get("err_code") == code, (subj, body, r)
        # named ephemeral on the 2.9+ form, and a legacy server-named ephemeral
        r = await api(nc, "CONSUMER.CREATE.S.eph.foo.x", {"stream_name": "S", "config": {"filter_subject": "foo.x"}})
        assert r["name"] == "eph" and r["config"]["inactive_threshold"] == 5_000_000_000
        r = await api(nc, "CONSUMER.CREATE.S", {"stream_name": "S", "config": {}})
        assert len(r["name"]) == 8
        await nc.close()

    run(main, srv.url)


def test_workqueue_rules_and_delete_on_ack(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=3, retention=RetentionPolicy.WORK_QUEUE)
        r = await api(nc, "CONSUMER.CREATE.S.A", {"stream_name": "S", "config": {"ack_policy": "none"}})
        assert r["error"]["err_code"] == 10084
        r = await api(nc, "CONSUMER.CREATE.S.A", {"stream_name": "S", "config": {"ack_policy": "all"}})
        assert r["error"]["err_code"] == 10098
        r = await api(nc, "CONSUMER.CREATE.S.A", {"stream_name": "S", "config": {
            "ack_policy": "explicit", "deliver_policy": "last"}})
        assert r["error"]["err_code"] == 10101
        await js.add_consumer("S", ConsumerConfig(durable_name="A", ack_policy=AckPolicy.EXPLICIT,
                                                  filter_subject="foo.0"))
        r = await api(nc, "CONSUMER.CREATE.S.B", {"stream_name": "S", "config": {"ack_policy": "explicit"}})
        assert r["error"]["err_code"] == 10099
        r = await api(nc, "CONSUMER.CREATE.S.B", {"stream_name": "S", "config": {
            "ack_policy": "explicit", "filter_subject": "foo.*"}})
        assert r["error"]["err_code"] == 10100
        await js.add_consumer("S", ConsumerConfig(durable_name="B", ack_policy=AckPolicy.EXPLICIT,
                                                  filter_subjects=["foo.1", "foo.2"]))
        psub = await js.pull_subscribe_bind("B", "S")
        msgs = await psub.fetch(2, timeout=2)
        assert sorted(m.subject for m in msgs) == ["foo.1", "foo.2"]
        for m in msgs:
            await m.ack_sync()
        si = await js.stream_info("S")
        assert si.state.messages == 1  # only foo.0 (consumer A's) is left
        await nc.close()

    run(main, srv.url)


def test_interest_retention_removes_after_all_acked(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, retention=RetentionPolicy.INTEREST)
        await js.publish("foo.0", b"nobody")  # no consumers: not kept
        for d in ("A", "B"):
            await js.add_consumer("S", ConsumerConfig(durable_name=d, ack_policy=AckPolicy.EXPLICIT))
        for i in range(3):
            await js.publish(f"foo.{i}", b"x")
        assert (await js.stream_info("S")).state.messages == 3
        a = await js.pull_subscribe_bind("A", "S")
        for m in await a.fetch(3, timeout=2):
            await m.ack_sync()
        assert (await js.stream_info("S")).state.messages == 3
        b = await js.pull_subscribe_bind("B", "S")
        ms = await b.fetch(3, timeout=2)
        await ms[0].ack_sync()
        assert (await js.stream_info("S")).state.messages == 2
        await js.delete_consumer("S", "B")  # the last one that cared: the rest goes
        assert await wait_for(lambda: _msgs_is(js, 0))
        await nc.close()

    run(main, srv.url)


async def _msgs_is(js, n: int) -> bool:
    return (await js.stream_info("S")).state.messages == n


# -- pull requests and their statuses ------------------------------------------------------

def test_pull_statuses(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url)
        r = await api(nc, "CONSUMER.CREATE.S.P", {"stream_name": "S", "config": {
            "durable_name": "P", "ack_policy": "explicit", "max_batch": 5, "max_waiting": 1}})
        assert r["config"]["max_batch"] == 5 and r["config"]["max_waiting"] == 1
        out = await pull(nc, "S", "P", {"batch": 1, "no_wait": True})
        assert [status_of(m) for m in out] == [("404", "No Messages")]
        out = await pull(nc, "S", "P", {"batch": 3, "expires": 200_000_000})
        assert status_of(out[-1]) == ("408", "Request Timeout")
        assert out[-1].headers["Nats-Pending-Messages"] == "3"
        assert out[-1].headers["Nats-Pending-Bytes"] == "0"
        out = await pull(nc, "S", "P", {"batch": 10})
        assert status_of(out[0]) == ("409", "Exceeded MaxRequestBatch of 5")
        out = await pull(nc, "S", "P", b'{"batch": 1, "idle_heartbeat": 1000000000, "expires": 1000000000}')
        assert status_of(out[0]) == ("400", "Bad Request - heartbeat value too large")
        out = await pull(nc, "S", "P", b"{nope")
        assert status_of(out[0])[0] == "400" and status_of(out[0])[1].startswith("Bad Request")

        await js.publish("foo.1", b"x" * 100)
        await js.publish("foo.2", b"y" * 100)
        out = await pull(nc, "S", "P", {"batch": 2, "max_bytes": 50, "expires": 1_000_000_000})
        assert status_of(out[0]) == ("409", "Message Size Exceeds MaxBytes")
        out = await pull(nc, "S", "P", {"batch": 1, "max_bytes": 10000, "expires": 1_000_000_000})
        assert out[0].data == b"x" * 100 and status_of(out[1])[:1] == ("409",)
        assert status_of(out[1])[1] == "Batch Completed"
        assert out[1].headers["Nats-Pending-Messages"] == "0"
        # no_wait delivers what is there, then 404
        out = await pull(nc, "S", "P", {"batch": 5, "no_wait": True})
        assert out[0].data == b"y" * 100 and status_of(out[1]) == ("404", "No Messages")

        # a waiting request, then one too many
        inbox = nc.new_inbox()
        s1 = await nc.subscribe(inbox)
        await nc.publish("$JS.API.CONSUMER.MSG.NEXT.S.P", b'{"batch":1,"expires":2000000000}', reply=inbox)
        await flushed(nc)
        out = await pull(nc, "S", "P", {"batch": 1, "expires": 1_000_000_000})
        assert status_of(out[0]) == ("409", "Exceeded MaxWaiting")
        info = await js.consumer_info("S", "P")
        assert info.num_waiting == 1
        await js.publish("foo.3", b"z")
        m = await s1.next_msg(2)
        assert m.data == b"z" and m.subject == "foo.3"

        # push consumer answers pull requests with a 409
        await js.add_consumer("S", ConsumerConfig(durable_name="PU", deliver_subject="push.here"))
        out = await pull(nc, "S", "PU", {"batch": 1})
        assert status_of(out[0]) == ("409", "Consumer is push based")
        # a missing consumer: nobody answers
        with pytest.raises(nats.errors.NoRespondersError):
            await nc.request("$JS.API.CONSUMER.MSG.NEXT.S.NOPE", b"1", timeout=1)
        await nc.close()

    run(main, srv.url)


def test_pull_heartbeats_and_plain_requests(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=3)
        await js.add_consumer("S", ConsumerConfig(durable_name="P", ack_policy=AckPolicy.NONE))
        # a bare number is a batch size, an empty body is one message
        out = await pull(nc, "S", "P", b"2", until_status=False, max_msgs=2)
        assert [m.data for m in out] == [b"m0", b"m1"]
        out = await pull(nc, "S", "P", b"", until_status=False, max_msgs=1)
        assert [m.data for m in out] == [b"m2"]
        out = await pull(nc, "S", "P", {"batch": 1, "expires": 700_000_000, "idle_heartbeat": 200_000_000},
                         timeout=3)
        sts = [status_of(m) for m in out]
        assert ("100", "Idle Heartbeat") in sts and sts[-1] == ("408", "Request Timeout")
        hb = next(m for m in out if status_of(m) == ("100", "Idle Heartbeat"))
        assert hb.headers["Nats-Last-Consumer"] == "3" and hb.headers["Nats-Last-Stream"] == "3"
        # nats-py fetch with heartbeat over a long wait
        psub = await js.pull_subscribe_bind("P", "S")
        await js.publish("foo.9", b"late")
        msgs = await psub.fetch(1, timeout=2, heartbeat=0.2)
        assert msgs[0].data == b"late"
        await nc.close()

    run(main, srv.url)


# -- acks ------------------------------------------------------------------------------------

def test_ack_kinds(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=4)
        term_sub = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.D")
        nak_sub = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.S.D")
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT))
        psub = await js.pull_subscribe_bind("D", "S")
        m0, m1, m2 = await psub.fetch(3, timeout=2)
        md = m0.metadata
        assert (md.stream, md.consumer, md.num_delivered, md.num_pending) == ("S", "D", 1, 3)
        assert (md.sequence.stream, md.sequence.consumer) == (1, 1)
        resp = await m0.ack_sync()                 # double ack: the server answers
        assert resp.data == b""
        await nc.request(m1.reply, b"-NAK", timeout=2)   # redelivered at once (synced nak)
        again = await psub.fetch(1, timeout=2)
        assert again[0].data == b"m1" and again[0].metadata.num_delivered == 2
        assert again[0].metadata.sequence.consumer == 4
        nak = json.loads((await nak_sub.next_msg(2)).data)
        assert nak["type"] == "io.nats.jetstream.advisory.v1.nak" and nak["stream_seq"] == 2
        await nc.request(m2.reply, b"+TERM too big", timeout=2)  # terminated with a reason
        adv = json.loads((await term_sub.next_msg(2)).data)
        assert adv["type"] == "io.nats.jetstream.advisory.v1.terminated"
        assert (adv["stream_seq"], adv["reason"], adv["deliveries"]) == (3, "too big", 1)
        await again[0].in_progress()
        await again[0].ack_sync()
        # +NXT: ack and ask for the next one on the same inbox
        nxt_inbox = nc.new_inbox()
        nsub = await nc.subscribe(nxt_inbox)
        await nc.publish("$JS.API.CONSUMER.MSG.NEXT.S.D", b"1", reply=nxt_inbox)
        m3 = await nsub.next_msg(2)
        assert m3.data == b"m3"
        await js.publish("foo.5", b"m5")
        await nc.publish(m3.reply, b"+NXT", reply=nxt_inbox)
        m5 = await nsub.next_msg(2)
        assert m5.data == b"m5"
        await m5.ack_sync()
        info = await js.consumer_info("S", "D")
        assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 5
        assert info.num_pending == 0
        await nc.close()

    run(main, srv.url)


def test_nak_with_delay_and_ack_all(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=3)
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT))
        psub = await js.pull_subscribe_bind("D", "S")
        (m,) = await psub.fetch(1, timeout=2)
        await m.nak(delay=0.5)
        # not redelivered right away: the next fetch gets the next message
        (n1,) = await psub.fetch(1, timeout=2)
        assert n1.data == b"m1"
        await n1.ack()
        # ... but once the delay is over
        got = await psub.fetch(1, timeout=3)
        assert got[0].data in (b"m0", b"m2")
        if got[0].data == b"m2":
            await got[0].ack()
            got = await psub.fetch(1, timeout=3)
        assert got[0].data == b"m0" and got[0].metadata.num_delivered == 2
        await got[0].ack_sync()

        await js.add_consumer("S", ConsumerConfig(durable_name="ALL", ack_policy=AckPolicy.ALL))
        asub = await js.pull_subscribe_bind("ALL", "S")
        ms = await asub.fetch(3, timeout=2)
        await ms[1].ack_sync()
        info = await js.consumer_info("S", "ALL")
        assert info.num_ack_pending == 1 and info.ack_floor.stream_seq == 2
        await nc.close()

    run(main, srv.url)


def test_redelivery_after_ack_wait_and_max_deliver(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=1)
        adv_sub = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.D")
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT,
                                                  ack_wait=0.3, max_deliver=2))
        psub = await js.pull_subscribe_bind("D", "S")
        (a,) = await psub.fetch(1, timeout=2)
        (b,) = await psub.fetch(1, timeout=3)   # not acked: comes back after ack_wait
        assert (a.data, b.data) == (b"m0", b"m0")
        assert b.metadata.num_delivered == 2 and b.metadata.sequence.consumer == 2
        info = await js.consumer_info("S", "D")
        assert info.num_redelivered == 1
        # max_deliver reached: never again, and an advisory says so
        with pytest.raises(nats.errors.TimeoutError):
            await psub.fetch(1, timeout=1.0)
        adv = json.loads((await adv_sub.next_msg(3)).data)
        assert adv["type"] == "io.nats.jetstream.advisory.v1.max_deliver"
        assert (adv["stream"], adv["consumer"], adv["stream_seq"], adv["deliveries"]) == ("S", "D", 1, 2)
        info = await js.consumer_info("S", "D")
        assert info.num_ack_pending == 0
        await nc.close()

    run(main, srv.url)


def test_backoff_redeliveries(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=1)
        ci = await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT,
                                                       backoff=[0.1, 0.3], max_deliver=4))
        assert ci.config.ack_wait == 0.1 and ci.config.backoff == [0.1, 0.3]
        psub = await js.pull_subscribe_bind("D", "S")
        counts = []
        for _ in range(4):
            (m,) = await psub.fetch(1, timeout=3)
            counts.append(m.metadata.num_delivered)
        assert counts == [1, 2, 3, 4]
        with pytest.raises(nats.errors.TimeoutError):
            await psub.fetch(1, timeout=0.8)
        await nc.close()

    run(main, srv.url)


def test_max_ack_pending_holds_delivery(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=5)
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT,
                                                  max_ack_pending=2))
        psub = await js.pull_subscribe_bind("D", "S")
        ms = await psub.fetch(5, timeout=1)
        assert [m.data for m in ms] == [b"m0", b"m1"]
        await ms[0].ack_sync()
        ms2 = await psub.fetch(5, timeout=1)
        assert [m.data for m in ms2] == [b"m2"]
        await nc.close()

    run(main, srv.url)


# -- deliver policies and filters -------------------------------------------------------------

def test_deliver_policies_and_filters(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, subjects=["foo.>", "bar.>"])
        for i in range(3):
            await js.publish("foo.a", b"a%d" % i)
            await js.publish("foo.b", b"b%d" % i)
            await js.publish("bar.c", b"c%d" % i)
        first_ts = (await js.get_msg("S", 4)).time  # noqa: F841 - a real stored timestamp

        async def first_of(**cfg) -> tuple[bytes, int]:
            ci = await js.add_consumer("S", ConsumerConfig(ack_policy=AckPolicy.NONE, **cfg))
            psub = await js.pull_subscribe_bind(ci.name, "S")
            (m,) = await psub.fetch(1, timeout=2)
            await js.delete_consumer("S", ci.name)
            return m.data, ci.num_pending

        assert await first_of(deliver_policy=DeliverPolicy.ALL) == (b"a0", 9)
        assert await first_of(deliver_policy=DeliverPolicy.LAST) == (b"c2", 1)
        assert await first_of(deliver_policy=DeliverPolicy.LAST, filter_subject="foo.>") == (b"b2", 1)
        assert await first_of(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=5) == (b"b1", 5)
        assert await first_of(filter_subject="bar.*") == (b"c0", 3)
        assert await first_of(filter_subjects=["bar.c", "foo.b"]) == (b"b0", 6)
        assert await first_of(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, filter_subject="foo.*") == (b"a2", 2)

        ci = await js.add_consumer("S", ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.NEW))
        assert ci.num_pending == 0 and ci.delivered.stream_seq == 9
        psub = await js.pull_subscribe_bind(ci.name, "S")
        await js.publish("foo.z", b"new")
        (m,) = await psub.fetch(1, timeout=2)
        assert m.data == b"new" and m.metadata.num_pending == 0

        # by start time: everything stored from now on
        ts = (await js.get_msg("S", 10)).time
        r = await api(nc, "CONSUMER.CREATE.S", {"stream_name": "S", "config": {
            "deliver_policy": "by_start_time", "opt_start_time": ts.isoformat().replace("+00:00", "Z"),
            "ack_policy": "none"}})
        assert r["num_pending"] == 1, r
        await nc.close()

    run(main, srv.url)


# -- push consumers ----------------------------------------------------------------------------

def test_push_queue_group_and_headers_only(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=20)
        got: dict[int, int] = {1: 0, 2: 0}

        def counter(k):
            async def cb(msg):
                got[k] += 1
                await msg.ack()
            return cb

        await js.subscribe("foo.>", queue="workers", cb=counter(1), manual_ack=True,
                           config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT))
        await js.subscribe("foo.>", queue="workers", cb=counter(2), manual_ack=True,
                           config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT))
        assert await wait_for(lambda: _true(got[1] + got[2] == 20))
        ci = await js.consumer_info("S", "workers")
        assert ci.config.deliver_group == "workers" and ci.push_bound

        ho = await js.subscribe("foo.1", headers_only=True, ordered_consumer=True)
        m = await ho.next_msg(2)
        assert m.data == b"" and m.headers["Nats-Msg-Size"] == "2"
        await js.publish("foo.h", b"hello", headers={"X-A": "1"})
        ho2 = await js.subscribe("foo.h", headers_only=True)
        m = await ho2.next_msg(2)
        assert m.headers["X-A"] == "1" and m.headers["Nats-Msg-Size"] == "5"
        await nc.close()

    run(main, srv.url)


async def _true(v: bool) -> bool:
    return v


def test_push_flow_control_and_heartbeats_ordered(srv: JSServer) -> None:
    """An ordered push consumer over more bytes than the first flow-control window."""
    async def main(url: str) -> None:
        nc, js = await _setup(url)
        payload = b"x" * 4096
        for i in range(1200):   # ~5 MB: several flow-control rounds
            await js.publish(f"foo.{i % 7}", payload)
        sub = await js.subscribe("foo.>", ordered_consumer=True, idle_heartbeat=0.5)
        seqs = []
        for _ in range(1200):
            m = await sub.next_msg(5)
            seqs.append(m.metadata.sequence.stream)
        assert seqs == list(range(1, 1201))
        # idle: heartbeats keep it alive, and a new message still arrives in order
        await asyncio.sleep(1.2)
        await js.publish("foo.1", b"tail")
        m = await sub.next_msg(3)
        assert m.data == b"tail" and m.metadata.sequence.stream == 1201
        await nc.close()

    run(main, srv.url, timeout=60)


def test_push_raw_heartbeat_and_flow_control_status(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url)
        sub = await nc.subscribe("dl.raw")
        await js.add_consumer("S", ConsumerConfig(durable_name="R", deliver_subject="dl.raw",
                                                  ack_policy=AckPolicy.NONE, idle_heartbeat=0.2,
                                                  flow_control=True))
        hb = await sub.next_msg(2)
        assert status_of(hb) == ("100", "Idle Heartbeat")
        assert hb.headers["Nats-Last-Consumer"] == "0" and hb.headers["Nats-Last-Stream"] == "0"
        big = b"y" * 65536
        for i in range(40):    # 2.5 MB > half the initial 2 MiB window
            await js.publish("foo.x", big)
        fc = None
        n = 0
        while fc is None:
            m = await sub.next_msg(3)
            st = status_of(m)
            if st == ("100", "FlowControl Request"):
                fc = m
            elif st is None:
                n += 1
        assert fc.reply.startswith("$JS.FC.S.R.") and fc.data == b""
        await nc.publish(fc.reply, b"")
        while n < 40:
            m = await sub.next_msg(3)
            if status_of(m) is None:
                n += 1
            elif status_of(m)[1] == "FlowControl Request":
                await nc.publish(m.reply, b"")
        await nc.close()

    run(main, srv.url)


def test_replay_original_and_rate_limit_deliver_everything(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=5)
        s1 = await js.subscribe("foo.>", config=ConsumerConfig(replay_policy=ReplayPolicy.ORIGINAL,
                                                               ack_policy=AckPolicy.NONE))
        s2 = await js.subscribe("foo.>", config=ConsumerConfig(rate_limit_bps=80_000,
                                                               ack_policy=AckPolicy.NONE))
        for s in (s1, s2):
            assert [(await s.next_msg(3)).data for _ in range(5)] == [b"m%d" % i for i in range(5)]
        await nc.close()

    run(main, srv.url)


# -- lifecycle ---------------------------------------------------------------------------------

def test_ephemeral_removed_after_inactive_threshold(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=1)
        ci = await js.add_consumer("S", ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, inactive_threshold=0.3))
        assert ci.config.inactive_threshold == 0.3

        async def gone() -> bool:
            try:
                await js.consumer_info("S", ci.name)
                return False
            except NotFoundError:
                return True

        assert await wait_for(gone, timeout=5)
        # a durable without a threshold stays
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT))
        await asyncio.sleep(0.5)
        assert (await js.consumer_info("S", "D")).name == "D"
        await nc.close()

    run(main, srv.url)


def test_durable_state_survives_restart(srv: JSServer) -> None:
    async def phase1(url: str) -> None:
        nc, js = await _setup(url, n=6)
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT,
                                                  ack_wait=30))
        psub = await js.pull_subscribe_bind("D", "S")
        ms = await psub.fetch(4, timeout=2)
        for m in ms[:3]:
            await m.ack_sync()
        info = await js.consumer_info("S", "D")
        assert (info.delivered.stream_seq, info.ack_floor.stream_seq, info.num_ack_pending) == (4, 3, 1)
        await nc.close()

    async def phase2(url: str) -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        info = await js.consumer_info("S", "D")
        assert (info.delivered.stream_seq, info.delivered.consumer_seq) == (4, 4)
        assert (info.ack_floor.stream_seq, info.num_ack_pending, info.num_pending) == (3, 1, 2)
        psub = await js.pull_subscribe_bind("D", "S")
        ms = await psub.fetch(2, timeout=2)
        assert [m.data for m in ms] == [b"m4", b"m5"]
        await nc.close()

    run(phase1, srv.url)
    srv.restart()
    run(phase2, srv.url)


def test_pause_and_resume(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=2)
        adv = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.PAUSE.S.D")
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT))
        r = await api(nc, "CONSUMER.PAUSE.S.D", {"pause_until": "2999-01-01T00:00:00Z"})
        assert r["paused"] is True and r["pause_until"] == "2999-01-01T00:00:00Z" and r["pause_remaining"] > 0
        a = json.loads((await adv.next_msg(2)).data)
        assert a["type"] == "io.nats.jetstream.advisory.v1.consumer_pause" and a["paused"] is True
        info = await api(nc, "CONSUMER.INFO.S.D")
        assert info["paused"] is True and info["config"]["pause_until"] == "2999-01-01T00:00:00Z"
        psub = await js.pull_subscribe_bind("D", "S")
        with pytest.raises(nats.errors.TimeoutError):
            await psub.fetch(1, timeout=0.5)
        r = await api(nc, "CONSUMER.PAUSE.S.D", {})
        assert r["paused"] is False
        ms = await psub.fetch(2, timeout=2)
        assert [m.data for m in ms] == [b"m0", b"m1"]
        r = await api(nc, "CONSUMER.PAUSE.S.NOPE", {})
        assert r["error"]["err_code"] == 10014
        await nc.close()

    run(main, srv.url)


def test_created_deleted_advisories_and_ack_metrics(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=1)
        created = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.CREATED.S.*")
        deleted = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.DELETED.S.*")
        metric = await nc.subscribe("$JS.EVENT.METRIC.CONSUMER.ACK.S.D")
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT,
                                                  sample_freq="100%"))
        c = json.loads((await created.next_msg(2)).data)
        assert c["type"] == "io.nats.jetstream.advisory.v1.consumer_action"
        assert (c["stream"], c["consumer"], c["action"]) == ("S", "D", "create") and len(c["id"]) == 22
        psub = await js.pull_subscribe_bind("D", "S")
        (m,) = await psub.fetch(1, timeout=2)
        await m.ack_sync()
        mt = json.loads((await metric.next_msg(2)).data)
        assert mt["type"] == "io.nats.jetstream.metric.v1.consumer_ack"
        assert (mt["stream_seq"], mt["consumer_seq"], mt["deliveries"]) == (1, 1, 1) and mt["ack_time"] >= 0
        await js.delete_consumer("S", "D")
        d = json.loads((await deleted.next_msg(2)).data)
        assert (d["consumer"], d["action"]) == ("D", "delete")
        await nc.close()

    run(main, srv.url)


def test_consumer_delete_releases_waiting_pulls(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url)
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT))
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish("$JS.API.CONSUMER.MSG.NEXT.S.D", b'{"batch":1,"expires":5000000000}', reply=inbox)
        await flushed(nc)
        await asyncio.sleep(0.1)
        await js.delete_consumer("S", "D")
        m = await sub.next_msg(2)
        assert status_of(m) == ("409", "Consumer Deleted")
        await nc.close()

    run(main, srv.url)


def test_priority_groups_pinned_client_and_overflow(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=4)
        r = await api(nc, "CONSUMER.CREATE.S.PIN", {"stream_name": "S", "config": {
            "durable_name": "PIN", "ack_policy": "explicit", "priority_policy": "pinned_client",
            "priority_groups": ["g"], "priority_timeout": 60_000_000_000}})
        assert r["config"]["priority_policy"] == "pinned_client", r
        out = await pull(nc, "S", "PIN", {"batch": 1})
        assert status_of(out[0]) == ("400", "Bad Request - Priority Group missing")
        out = await pull(nc, "S", "PIN", {"batch": 1, "group": "nope"})
        assert status_of(out[0]) == ("400", "Bad Request - Invalid Priority Group")
        out = await pull(nc, "S", "PIN", {"batch": 1, "group": "g"}, until_status=False, max_msgs=1)
        pin = out[0].headers["Nats-Pin-Id"]
        assert out[0].data == b"m0" and pin
        info = await api(nc, "CONSUMER.INFO.S.PIN")
        assert info["priority_groups"][0]["group"] == "g"
        assert info["priority_groups"][0]["pinned_client_id"] == pin
        # another client (no pin id) gets nothing while the pin holds; the pinned one does
        out = await pull(nc, "S", "PIN", {"batch": 1, "group": "g", "expires": 300_000_000})
        assert status_of(out[-1]) == ("408", "Request Timeout")
        out = await pull(nc, "S", "PIN", {"batch": 1, "group": "g", "id": pin}, until_status=False, max_msgs=1)
        assert out[0].data == b"m1"
        out = await pull(nc, "S", "PIN", {"batch": 1, "group": "g", "id": "wrong"})
        assert status_of(out[0])[0] == "423"
        r = await api(nc, "CONSUMER.UNPIN.S.PIN", {"group": "g"})
        assert "error" not in r, r
        out = await pull(nc, "S", "PIN", {"batch": 1, "group": "g"}, until_status=False, max_msgs=1)
        assert out[0].data == b"m2" and out[0].headers["Nats-Pin-Id"] != pin
        r = await api(nc, "CONSUMER.UNPIN.S.PIN", {"group": "zz"})
        assert r["error"]["err_code"] == 10160

        await api(nc, "CONSUMER.CREATE.S.OV", {"stream_name": "S", "config": {
            "durable_name": "OV", "ack_policy": "explicit", "priority_policy": "overflow",
            "priority_groups": ["g"]}})
        out = await pull(nc, "S", "OV", {"batch": 1, "group": "g", "min_pending": 10, "expires": 300_000_000})
        assert status_of(out[-1]) == ("408", "Request Timeout")
        out = await pull(nc, "S", "OV", {"batch": 1, "group": "g", "min_pending": 2}, until_status=False, max_msgs=1)
        assert out[0].data == b"m0"
        await nc.close()

    run(main, srv.url)


def test_filter_equal_to_stream_subjects_follows_stream_update(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=2)
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.NONE,
                                                  filter_subject="foo.>"))
        await js.update_stream(name="S", subjects=["foo.>", "bar.>"])
        await js.publish("bar.x", b"not for D")
        await js.publish("foo.x", b"for D")
        psub = await js.pull_subscribe_bind("D", "S")
        ms = await psub.fetch(5, timeout=1)
        assert [m.data for m in ms] == [b"m0", b"m1", b"for D"]
        assert (await js.consumer_info("S", "D")).num_pending == 0
        await nc.close()

    run(main, srv.url)


def test_pending_message_removed_from_stream_is_settled(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=3)
        term = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.D")
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT))
        psub = await js.pull_subscribe_bind("D", "S")
        ms = await psub.fetch(3, timeout=2)
        assert (await js.consumer_info("S", "D")).num_ack_pending == 3
        await js.delete_msg("S", 2)
        info = await js.consumer_info("S", "D")
        assert info.num_ack_pending == 2
        adv = json.loads((await term.next_msg(3)).data)
        assert (adv["stream_seq"], adv["reason"]) == (2, "Unacknowledged message was deleted")
        await ms[0].ack_sync()
        await ms[2].ack_sync()
        info = await js.consumer_info("S", "D")
        assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 3
        await js.purge_stream("S")
        info = await js.consumer_info("S", "D")
        assert info.num_pending == 0 and info.num_ack_pending == 0
        await nc.close()

    run(main, srv.url)


def test_max_consumers_limit(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="S", subjects=["foo.>"], max_consumers=1)
        await js.add_consumer("S", ConsumerConfig(durable_name="A", ack_policy=AckPolicy.EXPLICIT))
        r = await api(nc, "CONSUMER.CREATE.S.B", {"stream_name": "S", "config": {"ack_policy": "explicit"}})
        assert r["error"]["err_code"] == 10026
        # updating the existing one is not a new consumer
        r = await api(nc, "CONSUMER.CREATE.S.A", {"stream_name": "S", "config": {
            "durable_name": "A", "ack_policy": "explicit", "description": "x"}})
        assert r["config"]["description"] == "x"
        await js.delete_consumer("S", "A")
        r = await api(nc, "CONSUMER.CREATE.S.B", {"stream_name": "S", "config": {"ack_policy": "explicit"}})
        assert r["name"] == "B"
        await nc.close()

    run(main, srv.url)


def test_acks_reach_other_subscribers_and_the_consumer(srv: JSServer) -> None:
    """An ack is an ordinary message too: a client subscribed to $JS.ACK.> sees it, and the
    consumer applies it, whether or not anyone else listens (edgebus routes acks by their
    prefix while only consumers listen there)."""
    async def main(url: str) -> None:
        nc, js = await _setup(url, n=3)
        await js.add_consumer("S", ConsumerConfig(durable_name="D", ack_policy=AckPolicy.EXPLICIT))
        spy_nc = await nats.connect(url)
        spy = await spy_nc.subscribe("$JS.ACK.>")
        await flushed(spy_nc)
        msgs = await pull(nc, "S", "D", {"batch": 3}, until_status=False, max_msgs=3)
        assert len(msgs) == 3
        await nc.publish(msgs[0].reply, b"+ACK")
        seen = await spy.next_msg(timeout=2)
        assert seen.subject == msgs[0].reply and seen.data == b"+ACK"
        async def floor() -> tuple[int, int]:
            ci = await api(nc, "CONSUMER.INFO.S.D")
            return ci["ack_floor"]["stream_seq"], ci["num_ack_pending"]
        assert await wait_for(lambda: _eq(floor(), (1, 2))) == (1, 2)
        await spy.unsubscribe()
        await flushed(spy_nc)
        for m in msgs[1:]:
            await nc.publish(m.reply, b"")
        assert await wait_for(lambda: _eq(floor(), (3, 0))) == (3, 0)
        await spy_nc.close()
        await nc.close()
    run(main, srv.url)


async def _eq(aw: Any, want: Any) -> Any:
    """`want` once the awaited value equals it, else None (a predicate for wait_for)."""
    got = await aw
    return got if got == want else None
