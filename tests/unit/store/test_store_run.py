"""`store_run`: a run of plain messages (one subject, no headers) stored in one call must leave
exactly what the same messages stored one by one with `store_msg` leave: index, state, block
files, stamps, sequences, discard-old eviction, and on a failed write the same messages
taken back."""

from __future__ import annotations

import errno
import os
import random
from typing import Any

import pytest

from edgebus.jetstream.store.base import DiscardPolicy, LimitError, StoreLimits
from edgebus.jetstream.store.file import FileStore
from edgebus.jetstream.store.fileio import FAULTS, StoreWriteError
from edgebus.jetstream.store.memory import MemoryStore
from test_store_file import blocks, contents  # the same helpers


def index_of(st: Any) -> Any:
    """The in-memory index: every page's columns, every subject's live sequences."""
    pages = [(pno, [i.name if i is not None else None for i in p.subj], list(p.ts), list(p.a),
              list(p.b) if p.b is not None else None, p.live)
             for pno, p in sorted(st._seqs.pages.items())]
    subjects = sorted((i.name, i.msgs, i.first, i.last,
                       list(i.seqs[i.head:]) if i.seqs is not None and i.msgs > 1 else None)
                      for i in st._subjects.by_name.values())
    return pages, subjects, st._seqs.count, st._msgs, st._bytes, st._first, st._last, st._last_ts


def snapshot(st: Any) -> Any:
    return st.state(True), contents(st), st.subjects_state(), st.next_expiry(), index_of(st)


def check_consistent(st: Any) -> None:
    s = st.state(True)
    msgs = contents(st)
    assert s.msgs == len(msgs) == st._seqs.count
    assert s.bytes == sum(st._size_of(m[1], len(m[2] or b""), len(m[3])) for m in msgs)
    for subj, ss in st.subjects_state().items():
        seqs = [m[0] for m in msgs if m[1] == subj]
        assert (ss.msgs, ss.first, ss.last) == (len(seqs), seqs[0], seqs[-1])
    for info in st._subjects.by_name.values():
        if info.msgs > 1:
            assert list(info.seqs[info.head:]) == [m[0] for m in msgs if m[1] == info.name]

S = 1_000_000_000
T0 = 1_700_000_000 * S


@pytest.fixture(autouse=True)
def _faults() -> Any:
    FAULTS.reset()
    yield FAULTS
    FAULTS.reset()


def _workload(seed: int) -> list[tuple[str, Any]]:
    """Runs (subject, [payloads]) mixed with single messages (subject, (hdr, data))."""
    rnd = random.Random(seed)
    out: list[tuple[str, Any]] = []
    for _ in range(120):
        subj = rnd.choice(["a", "b.c", "é.x", "d"])
        if rnd.random() < 0.3:
            hdr = b"NATS/1.0\r\nX: %d\r\n\r\n" % rnd.randrange(9) if rnd.random() < 0.5 else None
            out.append((subj, (hdr, b"s" * rnd.randrange(30))))
        else:
            size = rnd.randrange(40)
            n = rnd.randrange(1, 200)
            out.append((subj, [(b"%d" % i).ljust(size if rnd.random() < 0.9 else 70, b"y")
                               for i in range(n)]))
    return out


def _one_by_one(st: Any, work: list[tuple[str, Any]]) -> list[Any]:
    got: list[Any] = []
    ts = T0
    for subj, item in work:
        for hdr, data in ([item] if isinstance(item, tuple) else [(None, d) for d in item]):
            try:
                got.append(st.store_msg(subj, hdr, data, ts))
            except LimitError as e:
                got.append(type(e).__name__)
            ts += 1
    return got


def _in_runs(st: Any, work: list[tuple[str, Any]]) -> tuple[list[Any], int]:
    """What the stream does (`Stream._ingest_run`): store_run, and store_msg for a message
    it leaves."""
    got: list[Any] = []
    ts = T0
    in_run = 0
    for subj, item in work:
        if isinstance(item, tuple):
            try:
                got.append(st.store_msg(subj, item[0], item[1], ts))
            except LimitError as e:
                got.append(type(e).__name__)
            ts += 1
            continue
        i = 0
        while i < len(item):
            k, last = st.store_run(subj, item, i, ts)
            if k:
                got.extend((s, ts + s - (last - k + 1)) for s in range(last - k + 1, last + 1))
                in_run += k
                ts += k
                i += k
                continue
            try:
                got.append(st.store_msg(subj, None, item[i], ts))
            except LimitError as e:
                got.append(type(e).__name__)
            ts += 1
            i += 1
    return got, in_run


LIMITS = [
    StoreLimits(),
    StoreLimits(max_msgs=300),
    StoreLimits(max_bytes=9000),
    StoreLimits(max_msgs=250, max_bytes=12000, max_msg_size=50),
    StoreLimits(max_msgs=1),
    StoreLimits(max_msgs=400, discard=DiscardPolicy.NEW),  # general path throughout
    StoreLimits(max_msgs_per_subject=3),                  # general path throughout
]


@pytest.mark.parametrize("limits", LIMITS, ids=range(len(LIMITS)))
@pytest.mark.parametrize("seed", [1, 2])
def test_file_store_run_writes_what_store_msg_writes(tmp_path: Any, limits: StoreLimits, seed: int) -> None:
    work = _workload(seed)
    general = FileStore(str(tmp_path / "g"), limits, block_size=2048)
    general.defer_writes = True
    want = _one_by_one(general, work)
    general.defer_writes = False
    general.flush_writes()
    runs = FileStore(str(tmp_path / "r"), limits, block_size=2048)
    runs.defer_writes = True
    got, in_run = _in_runs(runs, work)
    runs.defer_writes = False
    runs.flush_writes()
    assert got == want
    fast = limits.max_msgs_per_subject <= 0 and limits.discard is DiscardPolicy.OLD
    assert (in_run > len(want) // 2) if fast else in_run == 0
    assert snapshot(runs) == snapshot(general)
    check_consistent(runs)
    fb, gb = blocks(str(tmp_path / "r")), blocks(str(tmp_path / "g"))
    assert [os.path.basename(b) for b in fb] == [os.path.basename(b) for b in gb]
    for a, b in zip(fb, gb):
        with open(a, "rb") as f1, open(b, "rb") as f2:
            assert f1.read() == f2.read()
    runs.stop()
    general.stop()
    assert snapshot(FileStore(str(tmp_path / "r"), limits)) == snapshot(FileStore(str(tmp_path / "g"), limits))


def test_file_store_run_without_held_writes_takes_nothing(tmp_path: Any) -> None:
    st = FileStore(str(tmp_path / "s"))
    st.store_msg("a", None, b"0", T0)
    assert st.store_run("a", [b"1", b"2"], 0, T0 + 1) == (0, 0)  # not defer_writes
    st.stop()


@pytest.mark.parametrize("limits", LIMITS, ids=range(len(LIMITS)))
def test_memory_store_run_stores_what_store_msg_stores(limits: StoreLimits) -> None:
    work = _workload(3)
    general = MemoryStore(limits)
    want = _one_by_one(general, work)
    runs = MemoryStore(limits)
    got, in_run = _in_runs(runs, work)
    assert got == want
    fast = limits.max_msgs_per_subject <= 0 and limits.discard is DiscardPolicy.OLD
    assert (in_run > len(want) // 2) if fast else in_run == 0
    assert snapshot(runs) == snapshot(general)


def test_a_run_written_past_the_cap_fails_as_one_by_one(tmp_path: Any) -> None:
    """A run that crosses WBUF_MAX writes the held appends at the same message as store_msg
    would; when that write fails the same sequences leave the index and are reported."""
    big = [b"x" * (150 << 10)] * 12
    out = []
    for name, by_run in (("g", False), ("r", True)):
        st = FileStore(str(tmp_path / name), block_size=8 << 20)
        st.store_msg("a.0", None, b"ok", T0)
        st.defer_writes = True
        FAULTS.fail_writes = errno.ENOSPC
        if by_run:
            i = 0
            while i < len(big):
                k, _ = st.store_run("a.1", big, i, T0 + 1 + i)
                if not k:  # after the failed write: its STATE record goes with the next
                    st.store_msg("a.1", None, big[i], T0 + 1 + i)
                    k = 1
                i += k
        else:
            for i, d in enumerate(big):
                st.store_msg("a.1", None, d, T0 + 1 + i)
        st.defer_writes = False
        with pytest.raises(StoreWriteError) as ei:
            st.flush_writes()
        FAULTS.fail_writes = 0
        st.store_msg("a.2", None, b"after", T0 + 100)
        out.append((ei.value.seqs, snapshot(st), contents(st)))
        st.stop()
    assert out[0] == out[1]
    assert [m[:2] for m in out[0][2]] == [(1, "a.0"), (14, "a.2")]
