"""core.router.route with in-memory subscribers, no sockets: the lone-subscriber shortcut, runs,
queue groups, max deliveries, echo, mappings, JetStream-style routing on another subject, leaf
origin rules, and the exact-prefix registry; core.router.route_msgs (a read's messages, those
in a row that go to the same subscriptions handed over as one batch) against what `route`
gives one message at a time, and the NATS framing of a batch (exact bytes).

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
from edgebus.core.contract import Batch, Subscriber, deliver_each
from edgebus.core.router import route, route_msgs
from edgebus.core.sublist import UNKNOWN, Subscription
from edgebus.options import Options


class Recorder:
    """A subscriber that records each delivery call: (sid, subject, reply, hdr, payloads, on)."""

    def __init__(self, acc: Account, kind: str = "Client", echo: bool = True,
                 batches: bool = False) -> None:
        self.acc, self.kind, self.echo = acc, kind, echo
        self.takes_batches = batches
        self.calls: list[tuple[Any, ...]] = []
        self.batches: list[list[bytes]] = []  # the payloads of each deliver_batch call
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

    def deliver_batch(self, sub: Subscription, batch: Batch, src: Subscriber | None) -> None:
        assert self.takes_batches
        self.batches.append([m[4] for m in batch.msgs])
        deliver_each(self, sub, batch, src)

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


# -- route_msgs: a read's messages ----------------------------------------------------------

def pubs(*msgs: tuple[bytes, bytes] | tuple[bytes, bytes, bytes]) -> list[tuple[Any, ...]]:
    """(subject, payload[, hdr]) -> the parser's PUB operations."""
    return [(1, m[0], None, m[2] if len(m) > 2 else None, m[1]) for m in msgs]


def same_as_route(make: Any, msgs: list[tuple[Any, ...]], src_index: int | None = None) -> None:
    """route_msgs gives every subscriber the calls (subject, payload, order) that `route`
    message by message gives, in two fresh accounts made by `make(acc) -> [Recorder]`."""
    a, b = Account("A"), Account("B")
    ra, rb = make(a), make(b)
    for m in msgs:
        route(a, m[1], None, m[3], (m[4],), ra[src_index] if src_index is not None else None)
    route_msgs(b, msgs, rb[src_index] if src_index is not None else Recorder(b))
    flat = [[(c[0], c[1], c[3], p) for c in r.calls for p in c[4]] for r in ra]
    assert flat == [[(c[0], c[1], c[3], p) for c in r.calls for p in c[4]] for r in rb]
    assert [[s.delivered for s in r.subs] for r in ra] == [[s.delivered for s in r.subs] for r in rb]


def test_a_read_to_the_same_subscriptions_goes_as_one_batch() -> None:
    acc = Account("A")
    x, y = Recorder(acc, batches=True), Recorder(acc, batches=True)
    x.sub("sensors.*.temp")
    y.sub("sensors.>", sid=b"2")
    msgs = pubs(*[(b"sensors.%d.temp" % (i % 5), b"%d" % i) for i in range(20)])
    route_msgs(acc, msgs, Recorder(acc))
    want = [b"%d" % i for i in range(20)]
    assert x.batches == [want] and y.batches == [want]
    assert [c[1] for c in x.calls] == [b"sensors.%d.temp" % (i % 5) for i in range(20)]
    assert x.subs[0].delivered == 20
    # results of different subjects with the same subscriptions share one fanout
    sl = acc.sublist
    f0, f1 = sl.cache[b"sensors.0.temp"].fanout, sl.cache[b"sensors.1.temp"].fanout
    assert f0 is f1 and f0 is not UNKNOWN and f0 is not None
    assert sl.matches == 20 and sl.cache_hits == 15


def test_a_batch_ends_where_a_message_goes_elsewhere() -> None:
    acc = Account("A")
    x, y = Recorder(acc, batches=True), Recorder(acc, batches=True)
    x.sub("a.*")
    y.sub("a.b")
    msgs = pubs((b"a.1", b"1"), (b"a.2", b"2"), (b"a.b", b"3"), (b"a.b", b"4"), (b"none", b"5"),
                (b"a.3", b"6"), (b"a.4", b"7"))
    route_msgs(acc, msgs, Recorder(acc))
    assert x.batches == [[b"1", b"2"], [b"3", b"4"], [b"6", b"7"]]
    assert y.batches == [[b"3", b"4"]]
    assert x.payloads() == [b"1", b"2", b"3", b"4", b"6", b"7"]


def test_route_msgs_gives_what_route_gives() -> None:
    # lone subscribers, several, a queue group between batches, a subscriber that does not
    # take batches, a client with two matching subscriptions, nothing interested, headers
    def make(acc: Account) -> list[Recorder]:
        rs = [Recorder(acc, batches=True) for _ in range(3)] + [Recorder(acc), Recorder(acc)]
        rs[0].sub("m.*")
        rs[1].sub("m.*", sid=b"2")
        rs[2].sub("m.q", queue="g")
        rs[3].sub("m.slow")
        rs[4].sub("m.two", sid=b"a")
        rs[4].sub("m.*", sid=b"b")
        return rs
    hdr = b"NATS/1.0\r\nA: 1\r\n\r\n"
    msgs = pubs((b"m.1", b"1"), (b"m.2", b"2", hdr), (b"m.q", b"3"), (b"m.3", b"4"),
                (b"m.slow", b"5"), (b"m.4", b"6"), (b"m.two", b"7"), (b"x", b"8"), (b"m.5", b"9"))
    same_as_route(make, msgs)


def test_max_deliveries_cut_a_batch_and_remove_the_subscription() -> None:
    def make(acc: Account) -> list[Recorder]:
        rs = [Recorder(acc, batches=True), Recorder(acc, batches=True)]
        rs[0].sub("s.*", max_msgs=3)
        rs[1].sub("s.*")
        return rs
    same_as_route(make, pubs(*[(b"s.%d" % i, b"%d" % i) for i in range(6)]))
    acc = Account("A")
    a, b = make(acc)
    route_msgs(acc, pubs(*[(b"s.%d" % i, b"%d" % i) for i in range(6)]), Recorder(acc))
    assert a.batches == [[b"0", b"1", b"2"]] and not a.subs and acc.sublist.count == 1
    assert b.batches == [[b"%d" % i for i in range(6)]]
    # a max already reached in the middle of a read: the rest go to the others only
    acc = Account("B")
    a, b = make(acc)
    route_msgs(acc, pubs((b"s.1", b"1"), (b"s.2", b"2")), Recorder(acc))
    route_msgs(acc, pubs((b"s.1", b"3"), (b"s.2", b"4"), (b"s.3", b"5")), Recorder(acc))
    assert a.payloads() == [b"1", b"2", b"3"] and not a.subs


def test_route_msgs_echo() -> None:
    def make(acc: Account) -> list[Recorder]:
        rs = [Recorder(acc, echo=False, batches=True), Recorder(acc, batches=True)]
        rs[0].sub("e.*")
        rs[1].sub("e.*")
        return rs
    msgs = pubs((b"e.1", b"1"), (b"e.2", b"2"), (b"e.3", b"3"))
    same_as_route(make, msgs, src_index=0)
    acc = Account("A")
    me, other = make(acc)
    route_msgs(acc, msgs, me)
    assert not me.calls and other.batches == [[b"1", b"2", b"3"]]
    me.echo = True
    route_msgs(acc, msgs, me)
    assert me.batches == [[b"1", b"2", b"3"]]


def test_route_msgs_mappings_and_prefix_registry_go_one_by_one() -> None:
    acc = Account("A")
    acc.mappings = Mapping({"old.1": "new.1", "gone": ""})
    a = Recorder(acc, batches=True)
    a.sub("new.*")
    route_msgs(acc, pubs((b"old.1", b"1"), (b"gone", b"2"), (b"new.2", b"3")), Recorder(acc))
    assert [(c[1], c[4]) for c in a.calls] == [(b"new.1", [b"1"]), (b"new.2", [b"3"])]
    assert not a.batches
    acc = Account("B")
    sl = acc.sublist
    sl.set_prefix_family(b"$JS.ACK.", 2, 5)
    owner = Recorder(acc)
    s = owner.sub("$JS.ACK.S.C.*.*.*.*.*")
    sl.add_prefix(b"$JS.ACK.S.C.", s)
    b = Recorder(acc, batches=True)
    b.sub("t.*")
    route_msgs(acc, pubs((b"t.1", b"1"), (b"t.2", b"2"), (b"$JS.ACK.S.C.1.1.1.1.0", b"+ACK"),
                         (b"t.3", b"3")), Recorder(acc))
    assert b.batches == [[b"1", b"2"]] and b.payloads() == [b"1", b"2", b"3"]
    assert owner.payloads() == [b"+ACK"]


def test_fanouts_follow_the_subscriptions() -> None:
    import gc
    import weakref
    acc = Account("A")
    sl = acc.sublist
    a, b = Recorder(acc, batches=True), Recorder(acc)
    s1 = a.sub("f.*")
    f = sl.fanout_of(sl.match_bytes(b"f.1"))
    assert f is not None and f.subs == (s1,) and f is sl.fanout_of(sl.match_bytes(b"f.2"))
    # a new subscription: a new fanout for the results it joins
    s2 = a.sub("f.1", sid=b"2")
    assert sl.fanout_of(sl.match_bytes(b"f.1")) is None  # a client with two subscriptions
    assert sl.fanout_of(sl.match_bytes(b"f.2")) is f
    a.remove_sub(s2)
    b.sub("f.2")
    assert sl.fanout_of(sl.match_bytes(b"f.2")) is None  # b does not take batches
    # a fanout lives as long as a cached result holds it, not after its subscriptions left
    assert sl.fanout_of(sl.match_bytes(b"f.3")) is f
    gone = weakref.ref(f)
    del f
    gc.collect()
    assert gone() is not None  # (the cached result of f.3)
    a.remove_sub(s1)
    gc.collect()
    assert gone() is None


def test_nats_connection_frames_a_batch_once_for_every_sid() -> None:
    from edgebus.core.permissions import Permissions
    from edgebus.transport.nats_conn import NatsConnection

    async def main() -> None:
        broker = Broker(Options())
        conns = []
        for sid in (b"1", b"22", b"333"):
            c = NatsConnection(broker, trio.testing.memory_stream_pair()[0])
            c.headers = True
            c.add_sub("b.*", None, sid)
            conns.append(c)
        conns[1].headers = False  # its client did not ask for headers: HMSG becomes MSG
        pub = NatsConnection(broker, trio.testing.memory_stream_pair()[0])
        big = b"z" * 5000
        hdr = b"NATS/1.0\r\nA: 1\r\n\r\n"
        route_msgs(pub.account, pubs((b"b.1", b"ab"), (b"b.2", b"", hdr), (b"b.3", big),
                                     (b"b.4", b"cd")), pub)
        for c, sid in zip(conns, (b"1", b"22", b"333")):
            h = c.headers
            want = (b"MSG b.1 %s 2\r\nab\r\n" % sid +
                    (b"HMSG b.2 %s 18 18\r\n%s\r\n" % (sid, hdr) if h else
                     b"MSG b.2 %s 0\r\n\r\n" % sid) +
                    b"MSG b.3 %s 5000\r\n%s\r\n" % (sid, big) +
                    b"MSG b.4 %s 2\r\ncd\r\n" % sid)
            assert bytes(c.out) == want
            assert c.out_msgs == 4 and c.out_bytes == 5004 + (18 if h else 0)
            assert c.subs[sid].delivered == 4
        # a HMSG first, a MSG last
        for c in conns:
            c.out = bytearray()
        route_msgs(pub.account, pubs((b"b.1", b"x", hdr), (b"b.2", b"y")), pub)
        assert bytes(conns[0].out) == (b"HMSG b.1 1 18 19\r\n" + hdr + b"x\r\n"
                                       b"MSG b.2 1 1\r\ny\r\n")
        # delivery permissions: the batch goes message by message through the filter
        c = conns[2]
        c.out = bytearray()
        c.permissions = Permissions.from_config({"subscribe": {"allow": [">"], "deny": ["b.2"]}})
        c.deny_filter = True
        route_msgs(pub.account, pubs((b"b.1", b"1"), (b"b.2", b"2"), (b"b.3", b"3")), pub)
        assert bytes(c.out) == b"MSG b.1 333 1\r\n1\r\nMSG b.3 333 1\r\n3\r\n"
        # a closing connection gets nothing
        conns[0].out = bytearray()
        conns[0].closing = True
        route_msgs(pub.account, pubs((b"b.1", b"1"), (b"b.2", b"2")), pub)
        assert not conns[0].out

    trio.run(main)


def test_a_batch_past_max_pending_makes_a_slow_consumer() -> None:
    from edgebus.transport.nats_conn import NatsConnection

    async def main() -> None:
        o = Options()
        o.max_pending = 4096
        broker = Broker(o)
        slow = NatsConnection(broker, trio.testing.memory_stream_pair()[0])
        slow.add_sub("s.*", None, b"1")
        ok = NatsConnection(broker, trio.testing.memory_stream_pair()[0])
        ok.max_pending = ok._stall_at = 1 << 20
        ok.add_sub("s.*", None, b"2")
        pub = NatsConnection(broker, trio.testing.memory_stream_pair()[0])
        route_msgs(pub.account, pubs(*[(b"s.%d" % i, b"x" * 100) for i in range(60)]), pub)
        assert slow.closing and slow.close_reason == "Slow Consumer (Pending Bytes)"
        assert broker.slow_consumers == 1 and ok.out_msgs == 60 and not ok.closing

    trio.run(main)
