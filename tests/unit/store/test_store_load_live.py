"""The file store's one-pass batch read (`FileStore._load_live`, what a consumer's read-ahead
uses on an unfiltered stream) returns exactly what the general walk (`StoreCore._load_live`:
index walk, then `_load_many`) returns: the same messages, byte for byte, the same next
sequence, across removed messages, tombstones, headers, block boundaries, byte caps and a
corrupt record; and the clean case really takes the one-pass route."""

from __future__ import annotations

import os
import random

from edgebus.jetstream.store.core import StoreCore
from edgebus.jetstream.store.file import FileStore

S = 1_000_000_000
T0 = 1_700_000_000 * S
UNCAPPED = 1 << 62


def fill(d: str, n: int = 700, seed: int = 7) -> FileStore:
    """A store with small blocks (many block boundaries), mixed subjects, sizes and headers,
    some messages removed (tombstones land between records) and one erased."""
    rnd = random.Random(seed)
    st = FileStore(d, block_size=8192)
    for i in range(n):
        hdr = b"NATS/1.0\r\nK: %d\r\n\r\n" % i if rnd.random() < 0.3 else None
        data = bytes([65 + i % 26]) * rnd.choice((0, 1, 16, 100, 900))
        st.store_msg(f"s.{rnd.randrange(5)}", hdr, data, T0 + i * 1000)
        if i > 10 and rnd.random() < 0.05:
            st.remove_msg(rnd.randrange(1, i))
    st.erase_msg(n // 2)
    return st


def rows(msgs):
    return [(m.seq, m.subject, m.hdr, m.data, m.ts) for m in msgs]


def both(st: FileStore, start: int, max_msgs: int, max_bytes: int):
    fast = st._load_live(start, max_msgs, max_bytes)
    general = StoreCore._load_live(st, start, max_msgs, max_bytes)
    return (rows(fast[0]), fast[1]), (rows(general[0]), general[1])


def test_one_pass_read_equals_the_general_walk(tmp_path):
    st = fill(str(tmp_path / "a"))
    try:
        last = st.state().last_seq
        starts = list(range(1, last + 2, 7)) + [1, 2, last, last + 1]
        for start in starts:
            for max_msgs in (1, 3, 128, 5000):
                for max_bytes in (1, 200, 4096, 256 * 1024, UNCAPPED):
                    fast, general = both(st, start, max_msgs, max_bytes)
                    assert fast == general, (start, max_msgs, max_bytes)
        # and the public entry point delivers the store in order, as load_next_msg does
        seq, got = 1, []
        while True:
            msgs, seq = st.load_next_msgs(">", seq, 128, 256 * 1024)
            if not msgs:
                break
            got += rows(msgs)
        one, seq = [], 0
        while True:
            m, seq = st.load_next_msg(">", seq)
            if m is None:
                break
            one.append((m.seq, m.subject, m.hdr, m.data, m.ts))
        assert got == one and len(one) > 500
    finally:
        st.stop()


def test_clean_run_takes_the_one_pass_route(tmp_path, monkeypatch):
    st = FileStore(str(tmp_path / "c"))
    try:
        for i in range(300):
            st.store_msg("bench.js", None, b"x" * 16, T0 + i)
        calls = []
        real = StoreCore._load_live

        def spy(self, *a):
            calls.append(a)
            return real(self, *a)

        monkeypatch.setattr(StoreCore, "_load_live", spy)
        msgs, nxt = st.load_next_msgs(">", 1, 128, 256 * 1024)
        assert [m.seq for m in msgs] == list(range(1, 129)) and nxt == 129
        assert msgs[5].data == b"x" * 16 and msgs[5].subject == "bench.js" and msgs[5].ts == T0 + 5
        assert calls == []   # no fallback to the general walk
        st.remove_msg(140)   # a removed slot is stepped over, the next record read afresh
        msgs, nxt = st.load_next_msgs(">", 129, 128, 256 * 1024)
        assert [m.seq for m in msgs] == list(range(129, 140)) + list(range(141, 258)) and nxt == 258
        assert calls == []
        msgs, nxt = st.load_next_msgs(">", 258, 128, 256 * 1024)
        assert [m.seq for m in msgs] == list(range(258, 301)) and nxt == 301
        assert calls == []
    finally:
        st.stop()


def test_corrupt_record_is_dropped_as_the_general_walk_drops_it(tmp_path):
    # two identical stores, the same record corrupted in both: the one-pass read on one and
    # the general walk on the other give the same messages and leave the same store
    a, b = fill(str(tmp_path / "a"), 300), fill(str(tmp_path / "b"), 300)
    try:
        victim = 57
        for st in (a, b):
            loc = st._seqs.get(victim)
            assert loc is not None
            page, off = loc
            index, pos = page.a[off] >> 32, page.a[off] & 0xFFFFFFFF
            path = st._blocks[index].path
            with open(path, "r+b") as f:
                f.seek(pos + 18)
                c = f.read(1)
                f.seek(pos + 18)
                f.write(bytes([c[0] ^ 0xFF]))
        fast = a._load_live(1, 5000, UNCAPPED)
        general = StoreCore._load_live(b, 1, 5000, UNCAPPED)
        assert (rows(fast[0]), fast[1]) == (rows(general[0]), general[1])
        assert victim not in [m.seq for m in fast[0]]
        assert a.state().msgs == b.state().msgs
    finally:
        a.stop()
        b.stop()
