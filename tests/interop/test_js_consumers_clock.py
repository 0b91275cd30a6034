"""Consumer timers under trio's MockClock: ack wait, backoff, NAK delays, max deliveries, pull
expiry and heartbeats, push heartbeats and ephemeral inactivity — in virtual time.

The server runs in the test's own trio loop (`edgebus_trio_server`) and the test talks to it
with an in-process client, so `autojump_clock` jumps straight to each timer. Streams use memory
storage so nothing waits on worker threads (which would let the clock jump mid-request).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from edgebus.core.client import InternalClient

pytestmark = [pytest.mark.trio, pytest.mark.edgebus(jetstream=True)]


class InProc:
    """A minimal in-process NATS client on the server's global account."""

    def __init__(self, server: Any) -> None:
        b = server.broker
        self.c = InternalClient(b, b.global_account, kind="Client", name="test")
        self.n = 0

    def inbox(self) -> str:
        self.n += 1
        return f"_INBOX.test.{self.n}"

    async def request(self, subject: str, body: Any = b"", timeout: float = 1000) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        got: list[Any] = []
        ev = trio.Event()
        inbox = self.inbox()

        def cb(sub: Any, msg: Any) -> None:
            got.append(msg)
            ev.set()
        sub = self.c.subscribe(inbox, cb)
        self.c.publish(subject, inbox, None, data)
        with trio.fail_after(timeout):
            await ev.wait()
        self.c.unsubscribe(sub)
        return got[0]

    async def api(self, subject: str, body: Any = b"") -> dict[str, Any]:
        return json.loads((await self.request("$JS.API." + subject, body)).data)

    def collect(self, subject: str) -> list[tuple[float, Any]]:
        """Everything arriving on `subject`, stamped with (virtual) trio time."""
        box: list[tuple[float, Any]] = []
        self.c.subscribe(subject, lambda sub, msg: box.append((trio.current_time(), msg)))
        return box

    def pull(self, stream: str, consumer: str, req: Any, inbox: str) -> None:
        data = req if isinstance(req, bytes) else json.dumps(req).encode()
        self.c.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", inbox, None, data)

    async def setup(self, n: int = 1, **stream: Any) -> None:
        cfg = {"name": "S", "subjects": ["foo.>"], "storage": "memory", **stream}
        r = await self.api("STREAM.CREATE.S", cfg)
        assert "error" not in r, r
        for i in range(n):
            ack = await self.request(f"foo.{i}", b"m%d" % i)
            assert json.loads(ack.data)["seq"] == i + 1

    async def consumer(self, **cfg: Any) -> dict[str, Any]:
        name = cfg.get("durable_name") or cfg.get("name")
        subj = f"CONSUMER.CREATE.S.{name}" if name else "CONSUMER.CREATE.S"
        r = await self.api(subj, {"stream_name": "S", "config": cfg})
        assert "error" not in r, r
        return r


def _status(msg: Any) -> str | None:
    if msg.hdr and msg.hdr.startswith(b"NATS/1.0 ") and len(msg.hdr) > 12 and msg.hdr[9:12].isdigit():
        return msg.hdr.split(b"\r\n", 1)[0][9:].decode()
    return None


async def until(pred: Any, limit: float = 1000.0) -> None:
    with trio.fail_after(limit):
        while not pred():
            await trio.sleep(0.01)


async def test_ack_wait_redelivery_and_max_deliveries(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    t = InProc(edgebus_trio_server)
    await t.setup(n=1)
    adv = t.collect("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.D")
    await t.consumer(durable_name="D", ack_policy="explicit", max_deliver=3)  # default ack_wait 30s
    got = t.collect("_INBOX.pull")
    start = trio.current_time()
    t.pull("S", "D", {"batch": 10, "expires": 200 * 10**9}, "_INBOX.pull")
    await until(lambda: len(got) == 3)
    times = [round(ts - start) for ts, _ in got]
    assert times == [0, 30, 60]                       # each after a full ack wait
    assert [m.reply.split(".")[4] for _, m in got] == ["1", "2", "3"]   # delivery count token
    await until(lambda: len(adv) == 1)
    a = json.loads(adv[0][1].data)
    assert (a["stream_seq"], a["deliveries"]) == (1, 3)
    assert round(adv[0][0] - start) == 90
    info = await t.api("CONSUMER.INFO.S.D")
    assert info["num_ack_pending"] == 0 and info["num_redelivered"] == 1


async def test_backoff_schedule(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    t = InProc(edgebus_trio_server)
    await t.setup(n=1)
    r = await t.consumer(durable_name="D", ack_policy="explicit", max_deliver=5,
                         backoff=[1 * 10**9, 5 * 10**9, 20 * 10**9])
    assert r["config"]["ack_wait"] == 10**9
    got = t.collect("_INBOX.b")
    start = trio.current_time()
    t.pull("S", "D", {"batch": 10, "expires": 100 * 10**9}, "_INBOX.b")
    await until(lambda: len(got) == 5)
    deltas = [round(b[0] - a[0]) for a, b in zip(got, got[1:])]
    assert deltas == [1, 5, 20, 20]                   # the last backoff value repeats
    assert round(got[0][0] - start) == 0


async def test_nak_delay_and_progress(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    t = InProc(edgebus_trio_server)
    await t.setup(n=2)
    await t.consumer(durable_name="D", ack_policy="explicit", ack_wait=10 * 10**9)
    got = t.collect("_INBOX.n")
    t.pull("S", "D", {"batch": 1}, "_INBOX.n")
    await until(lambda: len(got) == 1)
    m0 = got[0][1]
    t0 = trio.current_time()
    await t.request(m0.reply, b'-NAK {"delay": 40000000000}')   # 40s
    t.pull("S", "D", {"batch": 5, "expires": 100 * 10**9}, "_INBOX.n")
    await until(lambda: len(got) == 2)
    assert got[1][1].data == b"m1"
    await t.request(got[1][1].reply, b"+ACK")
    await until(lambda: len(got) == 3)
    assert got[2][1].data == b"m0" and round(got[2][0] - t0) == 40
    # +WPI keeps pushing the redelivery out
    m0b = got[2][1]
    for _ in range(3):
        await trio.sleep(8)
        await t.request(m0b.reply, b"+WPI")
    before = len(got)
    await trio.sleep(8)
    assert len(got) == before                      # 32s after delivery, still not redelivered
    await trio.sleep(5)
    assert len(got) == before + 1                  # 10s after the last +WPI it comes back


async def test_pull_expiry_heartbeats_and_no_wait(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    t = InProc(edgebus_trio_server)
    await t.setup(n=0)
    await t.consumer(durable_name="D", ack_policy="explicit")
    got = t.collect("_INBOX.h")
    start = trio.current_time()
    t.pull("S", "D", {"batch": 2, "expires": 20 * 10**9, "idle_heartbeat": 5 * 10**9}, "_INBOX.h")
    await until(lambda: any(_status(m) and _status(m).startswith("408") for _, m in got))
    sts = [(round(ts - start), _status(m)) for ts, m in got]
    assert sts[:3] == [(5, "100 Idle Heartbeat"), (10, "100 Idle Heartbeat"), (15, "100 Idle Heartbeat")]
    assert sts[-1] == (20, "408 Request Timeout")
    assert b"Nats-Pending-Messages: 2" in got[-1][1].hdr
    # no_wait with expires waits for the first message, then ends with 404
    got.clear()
    t.pull("S", "D", {"batch": 3, "expires": 50 * 10**9, "no_wait": True}, "_INBOX.h")
    await trio.sleep(10)
    assert got == []
    await t.request("foo.x", b"late")
    await until(lambda: len(got) == 2)
    assert got[0][1].data == b"late" and _status(got[1][1]) == "404 No Messages"


async def test_push_idle_heartbeats_and_inactive_ephemeral(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    t = InProc(edgebus_trio_server)
    await t.setup(n=1)
    box = t.collect("push.d")
    start = trio.current_time()
    await t.consumer(durable_name="P", deliver_subject="push.d", ack_policy="none",
                     idle_heartbeat=3 * 10**9, flow_control=True)
    await until(lambda: len(box) >= 4)
    assert box[0][1].data == b"m0"
    hb = [(round(ts - start), _status(m)) for ts, m in box[1:4]]
    assert hb == [(3, "100 Idle Heartbeat"), (6, "100 Idle Heartbeat"), (9, "100 Idle Heartbeat")]
    assert b"Nats-Last-Consumer: 1" in box[1][1].hdr and b"Nats-Last-Stream: 1" in box[1][1].hdr

    # ephemerals: 5s of inactivity (plus up to 1s jitter) and they are gone
    r = await t.consumer(ack_policy="explicit")
    name = r["name"]
    await trio.sleep(4)
    assert "error" not in await t.api(f"CONSUMER.INFO.S.{name}")
    await trio.sleep(3)
    assert (await t.api(f"CONSUMER.INFO.S.{name}"))["error"]["err_code"] == 10014
    # a waiting pull request keeps it alive ...
    r = await t.consumer(ack_policy="explicit", inactive_threshold=10 * 10**9, filter_subject="foo.none")
    name = r["name"]
    t.collect("_INBOX.keep")
    t.pull("S", name, {"batch": 1, "expires": 60 * 10**9}, "_INBOX.keep")
    await trio.sleep(50)
    assert "error" not in await t.api(f"CONSUMER.INFO.S.{name}")
    # ... until it expires and the threshold passes
    await trio.sleep(30)
    assert (await t.api(f"CONSUMER.INFO.S.{name}"))["error"]["err_code"] == 10014
    # so does an unacked delivery: the countdown starts when its (re)delivery is due
    r = await t.consumer(ack_policy="explicit", inactive_threshold=10 * 10**9)
    name = r["name"]
    t.pull("S", name, {"batch": 1}, "_INBOX.keep")
    await trio.sleep(35)
    assert "error" not in await t.api(f"CONSUMER.INFO.S.{name}")
    await trio.sleep(45)
    assert (await t.api(f"CONSUMER.INFO.S.{name}"))["error"]["err_code"] == 10014
    # push ephemeral without interest goes away; with interest it stays
    r = await t.consumer(deliver_subject="nobody.here", ack_policy="none", inactive_threshold=2 * 10**9)
    await trio.sleep(3)
    assert (await t.api(f"CONSUMER.INFO.S.{r['name']}"))["error"]["err_code"] == 10014
    r = await t.consumer(deliver_subject="push.d", ack_policy="none", inactive_threshold=2 * 10**9)
    await trio.sleep(3)
    assert "error" not in await t.api(f"CONSUMER.INFO.S.{r['name']}")


async def test_replay_original_and_rate_limit_pacing(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    t = InProc(edgebus_trio_server)
    await t.setup(n=0, max_msg_size=1000)
    for gap in (0, 10, 20):
        await trio.sleep(gap)
        await t.request("foo.r", b"r")
    box = t.collect("replay.d")
    start = trio.current_time()
    await t.consumer(durable_name="R", deliver_subject="replay.d", ack_policy="none",
                     replay_policy="original")
    await until(lambda: len(box) == 3)
    assert [round(ts - start) for ts, _ in box] == [0, 10, 30]   # the original spacing

    for _ in range(10):
        await t.request("foo.b", b"x" * 500)
    box2 = t.collect("rate.d")
    start = trio.current_time()
    await t.consumer(name="L", deliver_subject="rate.d", ack_policy="none", filter_subject="foo.b",
                     rate_limit_bps=8000)                     # 1000 bytes/s, burst = max_msg_size
    await until(lambda: len(box2) == 10)
    took = box2[-1][0] - start
    assert 4.0 < took < 5.5, took                              # ~10 x 550 bytes at 1000 B/s
