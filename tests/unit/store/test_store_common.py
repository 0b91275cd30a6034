"""The store contract, run against both backends (memory and file).

Every test gets a `h` harness: `h.new(limits)` makes a store, `h.reopen(store)` returns the
same store for memory and a stopped-and-reopened one for file (alternating between the
index.db path and a full replay), so persistence of each feature is checked for free.
"""

from __future__ import annotations

import os

import pytest

from edgebus.jetstream.store.base import (
    DiscardPolicy,
    ErrMaxBytes,
    ErrMaxMsgs,
    ErrMaxMsgSize,
    ErrMaxMsgsPerSubject,
    ErrSequenceMismatch,
    ErrStoreClosed,
    ErrTooManyResults,
    SimpleState,
    StoreLimits,
)
from edgebus.jetstream.store.file import FileStore
from edgebus.jetstream.store.memory import MemoryStore

S = 1_000_000_000
T0 = 1_700_000_000 * S
HDR = b"NATS/1.0\r\nA: b\r\n\r\n"


class Harness:
    def __init__(self, kind: str, tmp_path) -> None:
        self.kind = kind
        self.tmp = tmp_path
        self.n = 0
        self.reopens = 0

    def new(self, limits: StoreLimits | None = None, **kw):
        self.n += 1
        if self.kind == "memory":
            return MemoryStore(limits)
        self.dir = os.path.join(self.tmp, f"s{self.n}")
        self.kw = {"block_size": kw.get("block_size", 512), "sync_always": kw.get("sync_always", False)}
        return FileStore(self.dir, limits, **self.kw)

    def reopen(self, st):
        if self.kind == "memory":
            return st
        st.stop()
        self.reopens += 1
        if self.reopens % 2 == 0:
            os.unlink(os.path.join(st.directory, "index.db"))
        return FileStore(st.directory, st.limits, **self.kw)


@pytest.fixture(params=["memory", "file"])
def h(request, tmp_path):
    return Harness(request.param, tmp_path)


def fill(st, n, subj="foo", start_ts=T0, hdr=None, data=b"x"):
    return [st.store_msg(subj if isinstance(subj, str) else subj(i), hdr, data, start_ts + i)[0] for i in range(n)]


def msize(st, subj, hdr, data):
    return st._size_of(subj, len(hdr or b""), len(data))


def contents(st):
    out, seq = [], 0
    while True:
        m, seq = st.load_next_msg(">", seq)
        if m is None:
            return out
        out.append((m.seq, m.subject, m.hdr, m.data, m.ts))


def check_reopen(h, st):
    """Reopen and assert nothing observable changed."""
    before = (st.state(True), contents(st), st.subjects_state(">"), st.next_expiry())
    st2 = h.reopen(st)
    after = (st2.state(True), contents(st2), st2.subjects_state(">"), st2.next_expiry())
    assert after == before
    return st2


# ------------------------------------------------------------------------------ basics


def test_store_and_load(h):
    st = h.new()
    assert st.state().first_seq == 0 and st.state().last_seq == 0
    assert st.store_msg("foo", None, b"hello", T0) == (1, T0)
    assert st.store_msg("bar", HDR, b"world", T0 + 1) == (2, T0 + 1)
    assert st.store_msg("foo", b"", b"", T0 + 2) == (3, T0 + 2)  # empty header block -> None
    m = st.load_msg(2)
    assert (m.seq, m.subject, m.hdr, m.data, m.ts) == (2, "bar", HDR, b"world", T0 + 1)
    assert st.load_msg(3).hdr is None and st.load_msg(3).data == b""
    assert st.load_msg(4) is None and st.load_msg(0) is None
    s = st.state()
    assert (s.msgs, s.first_seq, s.last_seq, s.first_ts, s.last_ts, s.num_subjects) == (3, 1, 3, T0, T0 + 2, 2)
    assert s.bytes == msize(st, "foo", None, b"hello") + msize(st, "bar", HDR, b"world") + msize(st, "foo", None, b"")
    assert st.subject_for_seq(2) == "bar"
    check_reopen(h, st)


def test_load_recent_with_headers(h):
    """What a stream reads back on restart (duplicate window, delete-marker TTLs): the newest
    messages from a time on that have headers, ascending, after removals and a reopen."""
    st = h.new()
    for i in range(40):
        st.store_msg("s.%d" % (i % 3), HDR if i % 4 == 0 else None, b"%d" % i, T0 + i)
    st.remove_msg(20)
    st.remove_msg(21)  # had headers
    st = h.reopen(st)
    got = st.load_recent_with_headers(T0 + 10)
    assert [m.seq for m in got] == [13, 17, 25, 29, 33, 37]
    assert all(m.hdr == HDR and m.data == b"%d" % (m.seq - 1) for m in got)
    assert [m.seq for m in st.load_recent_with_headers(0)] == [1, 5, 9, 13, 17, 25, 29, 33, 37]
    assert st.load_recent_with_headers(T0 + 40) == []
    # the walk back stops at the first older message, as timestamps only grow
    st.store_msg("s.0", HDR, b"late", T0 + 5)
    assert [m.seq for m in st.load_recent_with_headers(T0 + 10)] == []


def test_byte_accounting_matches_nats_server(h):
    st = h.new()
    st.store_msg("ab", None, b"xyz", T0)
    st.store_msg("ab", b"hh", b"xyz", T0)
    if h.kind == "memory":
        assert st.state().bytes == (2 + 3 + 16) + (2 + 2 + 3 + 16)
    else:
        assert st.state().bytes == (22 + 2 + 3 + 8) + (22 + 2 + 4 + 2 + 3 + 8)


def test_remove_and_deleted_details(h):
    st = h.new()
    fill(st, 10)
    assert st.remove_msg(5) and st.remove_msg(7)
    assert not st.remove_msg(5) and not st.remove_msg(99)
    s = st.state(deleted_details=True)
    assert (s.msgs, s.first_seq, s.last_seq, s.num_deleted, s.deleted) == (8, 1, 10, 2, [5, 7])
    assert st.remove_msg(1) and st.remove_msg(2)
    s = st.state(True)
    assert (s.first_seq, s.first_ts, s.num_deleted) == (3, T0 + 2, 2)
    assert st.remove_msg(10)
    s = st.state(True)
    assert (s.last_seq, s.num_deleted, s.deleted) == (10, 3, [5, 7, 10])  # last_seq stays
    assert st.erase_msg(3)
    assert st.load_msg(3) is None
    st = check_reopen(h, st)
    for seq in (4, 6, 8, 9):
        st.remove_msg(seq)
    s = st.state(True)
    assert (s.msgs, s.first_seq, s.last_seq, s.first_ts, s.num_deleted, s.deleted) == (0, 11, 10, 0, 0, [])
    st = check_reopen(h, st)
    assert st.store_msg("foo", None, b"", T0)[0] == 11


# ------------------------------------------------------------------------------ limits


def test_max_msgs_discard_old(h):
    st = h.new(StoreLimits(max_msgs=5))
    fill(st, 12)
    s = st.state()
    assert (s.msgs, s.first_seq, s.last_seq) == (5, 8, 12)
    check_reopen(h, st)


def test_max_msgs_discard_new(h):
    st = h.new(StoreLimits(max_msgs=5, discard=DiscardPolicy.NEW))
    fill(st, 5)
    with pytest.raises(ErrMaxMsgs, match="maximum messages exceeded"):
        st.store_msg("foo", None, b"x", T0)
    assert st.state().last_seq == 5  # no sequence consumed
    st.remove_msg(2)
    assert st.store_msg("foo", None, b"x", T0)[0] == 6


def test_max_bytes_discard_old(h):
    st = h.new()
    one = msize(st, "foo", None, b"x" * 10)
    st.update_config(StoreLimits(max_bytes=one * 3 + 1))
    fill(st, 7, data=b"x" * 10)
    s = st.state()
    assert (s.msgs, s.bytes, s.first_seq) == (3, one * 3, 5)
    seq, _ = st.store_msg("foo", None, b"x" * 40, T0)  # a bigger one evicts several
    s = st.state()
    assert s.bytes <= one * 3 + 1 and s.msgs < 3 and s.last_seq == seq and st.load_msg(seq) is not None
    check_reopen(h, st)


def test_max_bytes_discard_new(h):
    st = h.new()
    one = msize(st, "foo", None, b"x" * 10)
    st.update_config(StoreLimits(max_bytes=one * 3, discard="new"))
    fill(st, 3, data=b"x" * 10)  # exactly at the limit is allowed
    with pytest.raises(ErrMaxBytes, match="maximum bytes exceeded"):
        st.store_msg("foo", None, b"x", T0)
    assert st.state().msgs == 3 and st.state().last_seq == 3


def test_max_msg_size_any_discard(h):
    for discard in ("old", "new"):
        st = h.new(StoreLimits(max_msg_size=10, discard=discard))
        st.store_msg("foo", b"12345", b"12345", T0)  # hdr + data == 10 is fine
        with pytest.raises(ErrMaxMsgSize, match="message size exceeds maximum allowed"):
            st.store_msg("foo", b"12345", b"123456", T0)
        assert st.state().last_seq == 1


def test_per_subject_discard_old(h):
    st = h.new(StoreLimits(max_msgs_per_subject=2))
    fill(st, 9, subj=lambda i: f"kv.{i % 3}")
    assert st.subjects_totals() == {"kv.0": 2, "kv.1": 2, "kv.2": 2}
    assert st.subjects_state("kv.1") == {"kv.1": SimpleState(2, 5, 8)}
    assert st.state().first_seq == 4
    check_reopen(h, st)


def test_per_subject_discard_new(h):
    # discard new without discard_new_per_subject still replaces per subject (nats-server).
    st = h.new(StoreLimits(max_msgs_per_subject=1, max_msgs=2, discard="new"))
    fill(st, 2, subj=lambda i: f"k.{i}")
    assert st.store_msg("k.0", None, b"new", T0)[0] == 3  # at subject limit: replacement ok
    assert st.state().msgs == 2
    with pytest.raises(ErrMaxMsgs):
        st.store_msg("k.9", None, b"x", T0)
    st = h.new(StoreLimits(max_msgs_per_subject=1, discard="new", discard_new_per_subject=True))
    st.store_msg("k", None, b"1", T0)
    with pytest.raises(ErrMaxMsgsPerSubject, match="maximum messages per subject exceeded"):
        st.store_msg("k", None, b"2", T0)
    st.store_msg("other", None, b"2", T0)
    # A roll-up message is allowed through (it purges the subject after storing).
    seq, _ = st.store_msg("k", b"NATS/1.0\r\nNats-Rollup: sub\r\n\r\n", b"3", T0)
    assert seq == 3 and st.subjects_totals("k") == {"k": 1}


def test_discard_new_bytes_at_subject_limit(h):
    st = h.new()
    big = msize(st, "k", None, b"x" * 50)
    st.update_config(StoreLimits(max_bytes=big * 2, max_msgs_per_subject=1, discard="new"))
    st.store_msg("k", None, b"x" * 50, T0)
    st.store_msg("j", None, b"x" * 50, T0)
    st.store_msg("k", None, b"y" * 50, T0)  # replaces an equally big message: fine
    with pytest.raises(ErrMaxBytes):
        st.store_msg("k", None, b"z" * 51, T0)  # would not fit even after replacing
    assert st.load_last_msg("k").data == b"y" * 50


def test_update_config_enforces(h):
    st = h.new()
    fill(st, 20, subj=lambda i: f"s.{i % 4}")
    st.update_config(StoreLimits(max_msgs=10))
    assert st.state().msgs == 10 and st.state().first_seq == 11
    st.update_config(StoreLimits(max_msgs=10, max_msgs_per_subject=1))
    assert st.subjects_totals() == {f"s.{i}": 1 for i in range(4)}
    assert sorted(st.multi_last_seqs([">"])) == [17, 18, 19, 20]
    # Discard new never evicts on update.
    st2 = h.new()
    fill(st2, 5)
    st2.update_config(StoreLimits(max_msgs=2, discard="new"))
    assert st2.state().msgs == 5
    check_reopen(h, st)


# ------------------------------------------------------------------------------ expiry


def test_max_age_expire(h):
    st = h.new(StoreLimits(max_age=10 * S))
    for i in range(5):
        st.store_msg("a", None, b"x", T0 + i * S)
    assert st.next_expiry() == T0 + 10 * S
    assert st.expire(T0 + 10 * S - 1) == []
    assert st.expire(T0 + 11 * S) == [1, 2]  # ts <= now - max_age
    assert st.state().first_seq == 3
    assert st.next_expiry() == T0 + 12 * S
    st = check_reopen(h, st)
    assert st.expire(T0 + 100 * S) == [3, 4, 5]
    assert st.next_expiry() is None
    s = st.state()
    assert (s.msgs, s.first_seq, s.last_seq) == (0, 6, 5)
    check_reopen(h, st)


def test_ttl_expire(h):
    st = h.new(StoreLimits(max_age=100 * S))
    st.store_msg("a", None, b"1", T0, ttl=5)
    st.store_msg("a", None, b"2", T0, ttl=-1)  # never: exempt from max_age
    st.store_msg("b", None, b"3", T0, ttl=2)
    st.store_msg("b", None, b"4", T0)
    assert st.next_expiry() == T0 + 2 * S
    st = check_reopen(h, st)
    assert st.expire(T0 + 2 * S) == [3]
    assert st.next_expiry() == T0 + 5 * S
    st.remove_msg(1)  # removed before its TTL: nothing to do later
    assert st.next_expiry() == T0 + 100 * S
    st = check_reopen(h, st)
    assert st.expire(T0 + 1000 * S) == [4]
    assert [m[0] for m in contents(st)] == [2]
    assert st.next_expiry() is None
    check_reopen(h, st)


def test_ttl_without_max_age(h):
    st = h.new()
    seqs = [st.store_msg("t", None, b"", T0 + i, ttl=10 - i)[0] for i in range(5)]
    assert st.next_expiry() == T0 + 4 + 6 * S
    assert st.expire(T0 + 7 * S + 3) == seqs[3:]
    assert st.state().msgs == 3


# ------------------------------------------------------------------------------ purge family


def test_purge(h):
    st = h.new()
    fill(st, 10, subj=lambda i: f"p.{i % 2}")
    assert st.purge() == 10
    s = st.state()
    assert (s.msgs, s.bytes, s.first_seq, s.last_seq, s.num_subjects, s.num_deleted) == (0, 0, 11, 10, 0, 0)
    st = check_reopen(h, st)
    assert st.store_msg("p", None, b"", T0)[0] == 11
    assert st.state().first_seq == 11
    check_reopen(h, st)


def test_purge_ex_filter_seq_keep(h):
    st = h.new()
    fill(st, 20, subj=lambda i: f"a.{i % 2}.x")  # odd seqs a.0.x, even a.1.x
    assert st.purge_ex("a.0.x", seq=1) == 0
    assert st.purge_ex("a.0.x", seq=6) == 3  # 1,3,5: up to but not including 6
    assert st.purge_ex("a.0.x", keep=2) == 5  # 7..15 go, 17,19 stay
    assert st.subjects_state("a.0.x") == {"a.0.x": SimpleState(2, 17, 19)}
    assert st.purge_ex("a.*.x", keep=3) == 9
    assert [m[0] for m in contents(st)] == [18, 19, 20]
    assert st.purge_ex("a.>", keep=5) == 0  # keep >= count
    assert st.purge_ex("nope") == 0
    st = check_reopen(h, st)
    assert st.purge_ex("", keep=1) == 2
    assert [m[0] for m in contents(st)] == [20]
    check_reopen(h, st)


def test_purge_ex_all_with_seq_is_compact(h):
    st = h.new()
    fill(st, 10)
    assert st.purge_ex(">", seq=4) == 3
    assert st.state().first_seq == 4
    assert st.purge_ex("", 0, 0) == 7
    assert st.state().first_seq == 11


def test_compact(h):
    st = h.new()
    fill(st, 10)
    st.remove_msg(6)
    assert st.compact(5) == 4
    assert st.state().first_seq == 5
    assert st.compact(3) == 0  # already past
    assert st.compact(7) == 1  # 5 (6 already gone)
    s = st.state()
    assert (s.first_seq, s.msgs) == (7, 4)
    st = check_reopen(h, st)
    assert st.compact(50) == 4  # past the end: next message gets 50
    s = st.state()
    assert (s.msgs, s.first_seq, s.last_seq) == (0, 50, 49)
    st = check_reopen(h, st)
    assert st.store_msg("foo", None, b"", T0)[0] == 50
    check_reopen(h, st)


def test_truncate(h):
    st = h.new()
    fill(st, 10, subj=lambda i: f"t.{i % 3}")
    st.remove_msg(4)
    st.truncate(5)
    s = st.state()
    assert (s.msgs, s.first_seq, s.last_seq, s.last_ts) == (4, 1, 5, T0 + 4)
    assert st.subjects_totals() == {"t.0": 1, "t.1": 2, "t.2": 1}
    st = check_reopen(h, st)
    assert st.store_msg("new", None, b"n", T0 + 100)[0] == 6
    assert st.load_msg(6).subject == "new"
    st = check_reopen(h, st)
    st.truncate(0)
    s = st.state()
    assert (s.msgs, s.first_seq, s.last_seq) == (0, 0, 0)
    st = check_reopen(h, st)
    assert st.store_msg("again", None, b"", T0)[0] == 1


def test_truncate_everything_above_first(h):
    st = h.new()
    fill(st, 6)
    st.compact(4)
    st.truncate(2)
    s = st.state()
    assert (s.msgs, s.first_seq, s.last_seq) == (0, 3, 2)
    check_reopen(h, st)


def test_skip_msgs(h):
    st = h.new()
    st.skip_msgs(1, 99)  # first_seq = 100 on an empty stream
    s = st.state()
    assert (s.first_seq, s.last_seq, s.msgs) == (100, 99, 0)
    st = check_reopen(h, st)
    assert st.store_msg("x", None, b"", T0)[0] == 100
    assert st.skip_msg() == 101
    st.skip_msgs(0, 3)
    assert st.store_msg("x", None, b"", T0)[0] == 105
    s = st.state(True)
    assert (s.first_seq, s.num_deleted, s.deleted) == (100, 4, [101, 102, 103, 104])
    with pytest.raises(ErrSequenceMismatch):
        st.skip_msgs(7, 1)
    check_reopen(h, st)


# ------------------------------------------------------------------------------ queries


def populate(st):
    subjects = ["orders.eu.new", "orders.us.new", "orders.eu.done", "events.a", "orders.eu.new", "events.b", "orders.us.new", "x"]
    for i, s in enumerate(subjects):
        st.store_msg(s, None, str(i + 1).encode(), T0 + i)
    return subjects


def test_load_next_wildcards(h):
    st = h.new()
    populate(st)
    assert st.load_next_msg("orders.*.new", 0)[0].seq == 1
    m, nxt = st.load_next_msg("orders.*.new", 3)
    assert (m.seq, nxt) == (5, 6)
    assert st.load_next_msg("orders.>", 4)[0].seq == 5
    assert st.load_next_msg("*.b", 0)[0].seq == 6
    assert st.load_next_msg("events.a", 5) == (None, 9)
    assert st.load_next_msg("orders.us.new", 2)[0].seq == 2
    assert st.load_next_msg(">", 8)[0].seq == 8
    assert st.load_next_msg("", 9) == (None, 9)
    assert st.load_next_msg("nope.*", 0) == (None, 9)
    assert st.load_next_msg("orders", 0) == (None, 9)  # `orders` is not `orders.>`
    st.remove_msg(5)
    assert st.load_next_msg("orders.eu.*", 4) == (None, 9)


def test_load_last_and_prev(h):
    st = h.new()
    populate(st)
    assert st.load_last_msg("orders.eu.new").seq == 5
    assert st.load_last_msg("orders.*.new").seq == 7
    assert st.load_last_msg(">").seq == 8
    assert st.load_last_msg("nope") is None
    st.remove_msg(8)
    assert st.load_last_msg("").seq == 7
    assert st.load_prev_msg("orders.eu.new", 4).seq == 1
    assert st.load_prev_msg("orders.>", 4).seq == 3
    assert st.load_prev_msg(">", 100).seq == 7
    assert st.load_prev_msg("events.*", 3) is None
    assert st.load_prev_msg("x", 100) is None


def test_filtered_state_and_subjects(h):
    st = h.new()
    populate(st)
    assert st.filtered_state("orders.>") == SimpleState(5, 1, 7)
    assert st.filtered_state("orders.*.new", 3) == SimpleState(2, 5, 7)
    assert st.filtered_state(">", 4) == SimpleState(5, 4, 8)
    assert st.filtered_state("none") == SimpleState()
    assert st.filtered_state(">", 100) == SimpleState()
    assert st.subjects_totals("orders.eu.*") == {"orders.eu.new": 2, "orders.eu.done": 1}
    assert st.subjects_state("events.>") == {"events.a": SimpleState(1, 4, 4), "events.b": SimpleState(1, 6, 6)}
    assert len(st.subjects_totals()) == 6


def test_num_pending(h):
    st = h.new()
    populate(st)
    assert st.num_pending(1) == 8
    assert st.num_pending(3, ">") == 6
    assert st.num_pending(2, "orders.*.new") == 3
    assert st.num_pending(0, "orders.>", last_per_subject=True) == 3
    assert st.num_pending(6, "orders.>", last_per_subject=True) == 1
    assert st.num_pending(9) == 0
    st.remove_msg(4)
    assert st.num_pending(1, "events.*") == 1
    assert st.num_pending(4) == 4


def test_multi_last_seqs(h):
    st = h.new()
    populate(st)
    assert st.multi_last_seqs(["orders.*.new"]) == [5, 7]
    assert st.multi_last_seqs(["orders.*.new", "events.>"]) == [4, 5, 6, 7]
    assert st.multi_last_seqs([">"], max_seq=4) == [1, 2, 3, 4]
    assert st.multi_last_seqs(["orders.eu.new"], max_seq=4) == [1]
    with pytest.raises(ErrTooManyResults):
        st.multi_last_seqs([">"], max_allowed=3)
    assert st.multi_last_seqs(["none"]) == []


def test_many_subjects_linear_paths(h):
    """More candidate subjects than the enumeration threshold: scan-based code paths."""
    st = h.new(block_size=64 * 1024)
    n = 3000
    for i in range(n):
        st.store_msg(f"kv.b.{i}", None, b"v", T0 + i)
    for i in range(0, n, 2):
        st.store_msg(f"kv.b.{i}", None, b"w", T0 + n + i)
    assert st.load_next_msg("kv.b.*", 0)[0].seq == 1
    assert st.load_next_msg("kv.*.7", 2)[0].seq == 8
    assert st.load_next_msg("kv.*.2999", 2990)[0].seq == 3000
    assert st.load_prev_msg("kv.*.5", 4000).seq == 6
    assert st.num_pending(0, "kv.b.*") == n + n // 2
    assert st.num_pending(0, "kv.b.*", last_per_subject=True) == n
    assert st.purge_ex("kv.*.*", keep=n) == n // 2
    assert st.state().msgs == n
    assert st.filtered_state("kv.b.*") == SimpleState(n, n // 2 + 1, n + n // 2)


# ------------------------------------------------------------------------------ misc


def test_meta_and_closed(h):
    st = h.new()
    assert st.read_meta("config.json") is None
    st.write_meta("config.json", b'{"a":1}')
    st.write_meta("c.obs.o1", b"state")
    st.write_meta("config.json", b'{"a":2}')
    assert st.read_meta("config.json") == b'{"a":2}'
    assert st.list_meta() == ["c.obs.o1", "config.json"]
    assert st.delete_meta("c.obs.o1") and not st.delete_meta("c.obs.o1")
    with pytest.raises(ValueError):
        st.write_meta("../evil", b"")
    st = h.reopen(st)
    assert st.read_meta("config.json") == b'{"a":2}'
    st.stop()
    with pytest.raises(ErrStoreClosed):
        st.store_msg("a", None, b"", T0)
    with pytest.raises(ErrStoreClosed):
        st.load_msg(1)


def test_delete(h):
    st = h.new()
    fill(st, 5)
    st.delete()
    if h.kind == "file":
        assert not os.path.exists(h.dir)
    with pytest.raises(ErrStoreClosed):
        st.state()
