"""core.router.route with in-memory subscribers, no sockets: the lone-subscriber shortcut, runs,
queue groups, max deliveries, echo, mappings, JetStream-style routing on another subject, leaf
origin rules, and the exact-prefix registry.

Traffic counters are the clients' own (tests/interop/test_varz_counters.py). `Recorder` implements the delivery contract (core.contract.Subscriber) and keeps every call;
`NatsConnection` over `trio.testing.memory_stream_pair` checks the wire framing of a run.
"""

from __future__ import annotations

from typing import Any, Sequence

import trio
import trio.testing

from edgebus.core.account import Account
from edgebus.core.broker import Broker
from edgebus.core.client import LEAF
from edgebus.core.contract import Subscriber
from edgebus.core.router import route
from edgebus.core.sublist import Subscription
from edgebus.options import Options


class Recorder:
    """A subscriber that records each delivery call: (sid, subject, reply, hdr, payloads, on)."""

    def __init__(self, acc: Account, kind: str = "Client", echo: bool = True) -> None:
        self.acc, self.kind, self.echo = acc, kind, echo
        self.calls: list[tuple[Any, ...]] = []
        self.subs: list[Subscription] = []

    def sub(self, subject: str, queue: str | None = None, sid: bytes = b"1",
            max_msgs: int = 0) -> Subscription:
        s = Subscription(self, subject, queue, sid, max_msgs)
        self.acc.sublist.insert(s)
        self.subs.append(s)
        return s

    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None, hdr: bytes | None,
                payloads: Sequence[bytes], src: Subscriber | None, on: bytes | None) -> None:
        self.calls.append((sub.sid, subject, reply, hdr, list(payloads), on))

    def remove_sub(self, sub: Subscription) -> None:
        self.subs.remove(sub)
        self.acc.sublist.remove(sub)

    def payloads(self) -> list[bytes]:
        return [p for c in self.calls for p in c[4]]


class Mapping:
    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    def apply(self, subject: str) -> str | None:
        return self.table.get(subject)


def test_lone_subscriber_gets_the_parts_and_counts() -> None:
    acc = Account("A")
    r = Recorder(acc)
    r.sub("cmd.>")
    n = route(acc, b"cmd.valve.open", b"_INBOX.1", b"NATS/1.0\r\nA: b\r\n\r\n", (b"on",), None)
    assert n == 1
    assert r.calls == [(b"1", b"cmd.valve.open", b"_INBOX.1", b"NATS/1.0\r\nA: b\r\n\r\n", [b"on"], None)]
    assert route(acc, b"other", None, None, (b"x",), None) == 0


def test_run_goes_to_each_subscriber_in_one_call() -> None:
    acc = Account("A")
    a, b = Recorder(acc), Recorder(acc)
    a.sub("s")
    b.sub("*")
    run = [b"1", b"2", b"3"]
    assert route(acc, b"s", None, None, run, None) == 6
    assert [c[4] for c in a.calls] == [run] and [c[4] for c in b.calls] == [run]


def test_run_to_a_client_with_two_matching_subscriptions_is_interleaved() -> None:
    # it must see message 1 on both subscriptions before message 2
    acc = Account("A")
    a = Recorder(acc)
    a.sub("s", sid=b"1")
    a.sub("*", sid=b"2")
    route(acc, b"s", None, None, [b"m1", b"m2"], None)
    assert [(c[0], c[4]) for c in a.calls] == [(b"1", [b"m1"]), (b"2", [b"m1"]),
                                               (b"1", [b"m2"]), (b"2", [b"m2"])]


def test_queue_group_each_message_to_exactly_one_member() -> None:
    acc = Account("A")
    members = [Recorder(acc) for _ in range(3)]
    for m in members:
        m.sub("work", queue="q")
    plain = Recorder(acc)
    plain.sub("work")
    run = [b"%d" % i for i in range(30)]
    assert route(acc, b"work", None, None, run, None) == 60
    got = sorted(p for m in members for p in m.payloads())
    assert got == sorted(run)
    assert plain.payloads() == run


def test_max_deliveries_cut_a_run_and_remove_the_subscription() -> None:
    acc = Account("A")
    a = Recorder(acc)
    a.sub("s", max_msgs=3)
    assert route(acc, b"s", None, None, [b"1", b"2", b"3", b"4", b"5"], None) == 3
    assert a.payloads() == [b"1", b"2", b"3"] and not a.subs
    assert route(acc, b"s", None, None, (b"6",), None) == 0
    # the same with another subscriber present (the general path)
    b, c = Recorder(acc), Recorder(acc)
    b.sub("t", max_msgs=2)
    c.sub("t")
    assert route(acc, b"t", None, None, [b"1", b"2", b"3"], None) == 5
    assert b.payloads() == [b"1", b"2"] and not b.subs and c.payloads() == [b"1", b"2", b"3"]


def test_echo() -> None:
    acc = Account("A")
    me = Recorder(acc, echo=False)
    me.sub("s")
    assert route(acc, b"s", None, None, (b"x",), me) == 0
    other = Recorder(acc)
    other.sub("s")
    assert route(acc, b"s", None, None, (b"x",), me) == 1
    assert not me.calls and other.payloads() == [b"x"]
    me.echo = True
    assert route(acc, b"s", None, None, (b"y",), me) == 2
    # a queue group never picks a member that must not see its own message
    acc2 = Account("B")
    q1, q2 = Recorder(acc2, echo=False), Recorder(acc2)
    q1.sub("s", queue="q")
    q2.sub("s", queue="q")
    for _ in range(20):
        route(acc2, b"s", None, None, (b"z",), q1)
    assert not q1.calls and len(q2.calls) == 20


def test_mappings_change_the_subject_or_drop_the_message() -> None:
    acc = Account("A")
    acc.mappings = Mapping({"old": "new", "gone": ""})
    a = Recorder(acc)
    a.sub("new")
    assert route(acc, b"old", None, None, [b"1", b"2"], None) == 2
    assert [(c[1], c[4]) for c in a.calls] == [(b"new", [b"1"]), (b"new", [b"2"])]
    b = Recorder(acc)
    b.sub("gone")
    assert route(acc, b"gone", None, None, (b"x",), None) == 0 and not b.calls


def test_routed_on_another_subject_seen_under_its_own() -> None:
    # a JetStream delivery: matched on the deliver subject, carrying the stored subject
    acc = Account("A")
    a = Recorder(acc)
    a.sub("deliver.here")
    assert route(acc, b"orders.1", b"$JS.ACK.x", None, (b"d",), None, on=b"deliver.here") == 1
    assert a.calls == [(b"1", b"orders.1", b"$JS.ACK.x", None, [b"d"], b"deliver.here")]


def test_leaf_origin_rules() -> None:
    acc = Account("A")
    link = Recorder(acc, kind=LEAF, echo=False)
    other_link = Recorder(acc, kind=LEAF, echo=False)
    local_q, plain = Recorder(acc), Recorder(acc)
    link.sub("s", sid=b"l1")
    other_link.sub("s", queue="q", sid=b"l2")
    local_q.sub("s", queue="q")
    plain.sub("s")
    # from a link without a queue list: plain subscriptions only, nothing back over the link
    assert route(acc, b"s", None, None, (b"1",), link) == 1
    assert plain.payloads() == [b"1"] and not link.calls and not local_q.calls
    # with the group named: one member, the local one before the one behind another link
    for _ in range(10):
        route(acc, b"s", None, None, (b"2",), link, queues=[b"q"])
    assert local_q.payloads() == [b"2"] * 10 and not other_link.calls
    # a group it did not name gets nothing
    route(acc, b"s", None, None, (b"3",), link, queues=[b"other"])
    assert b"3" not in local_q.payloads()
    # from a local client: the local member is still preferred over the leaf member
    for _ in range(10):
        route(acc, b"s", None, None, (b"4",), plain)
    assert local_q.payloads().count(b"4") == 10 and not other_link.calls


def test_prefix_registry_routes_without_growing_the_cache() -> None:
    acc = Account("A")
    sl = acc.sublist
    sl.set_prefix_family(b"$JS.ACK.", 2, 5)
    owner = Recorder(acc)
    s = owner.sub("$JS.ACK.S.C.*.*.*.*.*")
    sl.add_prefix(b"$JS.ACK.S.C.", s)
    for i in range(50):
        assert route(acc, b"$JS.ACK.S.C.1.%d.1.1.0" % i, None, None, (b"",), None) == 1
    assert len(owner.calls) == 50 and not sl.cache
    watcher = Recorder(acc)
    watcher.sub("$JS.ACK.>")
    assert route(acc, b"$JS.ACK.S.C.1.99.1.1.0", None, None, (b"",), None) == 2


def test_nats_connection_frames_a_run_through_the_codec() -> None:
    from edgebus.transport.nats_conn import NatsConnection

    async def main() -> None:
        broker = Broker(Options())
        ours, theirs = trio.testing.memory_stream_pair()
        conn = NatsConnection(broker, ours)
        conn.headers = True
        sub = conn.add_sub("s.>", None, b"7")
        acc = conn.account
        assert route(acc, b"s.x", None, None, [b"ab", b"cd"], None) == 2
        assert route(acc, b"s.y", b"r", b"NATS/1.0\r\n\r\n", (b"e",), None) == 1
        assert bytes(conn.out) == (b"MSG s.x 7 2\r\nab\r\nMSG s.x 7 2\r\ncd\r\n"
                                   b"HMSG s.y 7 r 12 13\r\nNATS/1.0\r\n\r\ne\r\n")
        assert (conn.out_msgs, sub.delivered) == (3, 3)

    trio.run(main)
