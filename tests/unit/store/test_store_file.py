"""FileStore-only behaviour: restarts, torn tails, corruption, crashes, compaction, erasure."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time


from edgebus.jetstream.store.base import StoreLimits
from edgebus.jetstream.store.file import FileStore, _iter_records

S = 1_000_000_000
T0 = 1_700_000_000 * S


def blocks(d):
    md = os.path.join(d, "msgs")
    return sorted(os.path.join(md, f) for f in os.listdir(md) if f.endswith(".blk"))


def contents(st):
    out, seq = [], 0
    while True:
        m, seq = st.load_next_msg(">", seq)
        if m is None:
            return out
        out.append((m.seq, m.subject, m.hdr, m.data, m.ts))


def snapshot(st):
    return st.state(True), contents(st), st.subjects_state(), st.next_expiry()


def crash(st):
    """Drop a store without a clean stop (no index.db, nothing flushed beyond what the OS has)."""
    with st._lock:
        st._close_fds()
        st._closed = True


def check_consistent(st):
    """Internal invariants: state counters agree with the indexes and the loaded messages."""
    s = st.state(True)
    msgs = contents(st)
    assert s.msgs == len(msgs) == st._seqs.count
    assert s.bytes == sum(st._size_of(m[1], len(m[2] or b""), len(m[3])) for m in msgs)
    if msgs:
        assert s.first_seq == msgs[0][0] and s.first_ts == msgs[0][4] and s.last_seq >= msgs[-1][0]
    else:
        assert s.first_seq == s.last_seq + 1 or (s.first_seq, s.last_seq) == (0, 0)
    totals: dict[str, int] = {}
    for m in msgs:
        totals[m[1]] = totals.get(m[1], 0) + 1
    assert st.subjects_totals() == totals
    for subj, ss in st.subjects_state().items():
        seqs = [m[0] for m in msgs if m[1] == subj]
        assert (ss.msgs, ss.first, ss.last) == (len(seqs), seqs[0], seqs[-1])
    live_per_block: dict[int, int] = {}
    for seq, _, page, off in st._seqs.iter_live(0, 1 << 62):
        b = page.a[off] >> 32
        live_per_block[b] = live_per_block.get(b, 0) + 1
    for blk in st._blocks.values():
        assert blk.live == live_per_block.get(blk.index, 0)
        assert blk.size == os.path.getsize(blk.path)
    return s


def test_clean_restart_uses_index_and_removes_it(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d, block_size=1024)
    for i in range(200):
        st.store_msg(f"a.{i % 7}", b"NATS/1.0\r\nK: v\r\n\r\n" if i % 3 == 0 else None, b"p%d" % i, T0 + i, ttl=(60 if i % 5 == 0 else 0))
    for seq in range(3, 200, 9):
        st.remove_msg(seq)
    before = snapshot(st)
    st.stop()
    assert os.path.exists(os.path.join(d, "index.db"))
    st = FileStore(d, block_size=1024)
    assert not os.path.exists(os.path.join(d, "index.db"))  # only valid until the next write
    assert snapshot(st) == before
    check_consistent(st)
    crash(st)
    st = FileStore(d, block_size=1024)  # replay
    assert snapshot(st) == before
    check_consistent(st)


def test_stale_index_is_ignored(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d, block_size=1024)
    for i in range(50):
        st.store_msg("a", None, b"x", T0 + i)
    st.stop()
    saved = open(os.path.join(d, "index.db"), "rb").read()
    st = FileStore(d, block_size=1024)
    for i in range(50):
        st.store_msg("b", None, b"y", T0 + i)
    st.remove_msg(10)
    before = snapshot(st)
    crash(st)
    # Put back the old snapshot: it no longer matches the blocks and must not be believed.
    with open(os.path.join(d, "index.db"), "wb") as f:
        f.write(saved)
    st = FileStore(d, block_size=1024)
    assert snapshot(st) == before
    # A corrupt snapshot is rejected as well.
    st.stop()
    p = os.path.join(d, "index.db")
    blob = bytearray(open(p, "rb").read())
    blob[len(blob) // 2] ^= 0xFF
    open(p, "wb").write(bytes(blob))
    st = FileStore(d, block_size=1024)
    assert snapshot(st) == before
    check_consistent(st)


def test_torn_tail_every_offset(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d)
    for i in range(5):
        st.store_msg("t.x", b"NATS/1.0\r\nH: 1\r\n\r\n" if i == 4 else None, b"payload-%d" % i, T0 + i)
    st.stop()
    os.unlink(os.path.join(d, "index.db"))
    (path,) = blocks(d)
    full = open(path, "rb").read()
    last_off = [off for off, typ, end in _iter_records(full)][-1]
    for cut in range(last_off, len(full)):
        with open(path, "wb") as f:
            f.write(full[:cut])
        st = FileStore(d)
        s = check_consistent(st)
        assert (s.msgs, s.last_seq) == (4, 4), cut
        assert st.load_msg(5) is None
        assert os.path.getsize(path) == last_off  # torn bytes cut off, never served
        assert st.store_msg("t.y", None, b"after", T0)[0] == 5
        crash(st)
        st = FileStore(d)
        assert [m[3] for m in contents(st)][-1] == b"after"
        crash(st)
    with open(path, "wb") as f:
        f.write(full)
    st = FileStore(d)
    assert st.state().msgs == 5


def test_corrupt_middle_block_is_skipped(tmp_path, caplog):
    d = str(tmp_path / "s")
    st = FileStore(d, block_size=400)
    for i in range(60):
        st.store_msg(f"c.{i % 4}", None, b"data-%03d" % i, T0 + i)
    st.stop()
    os.unlink(os.path.join(d, "index.db"))
    paths = blocks(d)
    assert len(paths) >= 5
    victim = paths[len(paths) // 2]
    buf = bytearray(open(victim, "rb").read())
    recs = [(off, end) for off, typ, end in _iter_records(bytes(buf)) if typ == 1]
    off, end = recs[len(recs) // 2]
    buf[end - 3] ^= 0x55  # damage one record's payload
    open(victim, "wb").write(bytes(buf))
    with caplog.at_level(logging.WARNING, logger="edgebus.jetstream.store.file"):
        st = FileStore(d, block_size=400)
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    s = check_consistent(st)
    assert s.msgs == 59 and s.last_seq == 60
    datas = {m[3] for m in contents(st)}
    assert len(datas) == 59
    # The damaged block was rewritten clean: a second replay reports nothing.
    crash(st)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgebus.jetstream.store.file"):
        st = FileStore(d, block_size=400)
    assert not caplog.records
    assert check_consistent(st).msgs == 59


def test_garbage_block_header_and_random_damage_never_crash(tmp_path, caplog):
    rng = random.Random(7)
    d = str(tmp_path / "s")
    st = FileStore(d, block_size=300)
    for i in range(80):
        st.store_msg(f"r.{i % 5}", None, os.urandom(rng.randrange(0, 40)), T0 + i)
        if i % 7 == 0:
            st.remove_msg(rng.randrange(1, i + 2))
    st.stop()
    os.unlink(os.path.join(d, "index.db"))
    pristine = {p: open(p, "rb").read() for p in blocks(d)}
    for trial in range(25):
        for p, data in pristine.items():
            open(p, "wb").write(data)
        p = rng.choice(sorted(pristine))
        buf = bytearray(pristine[p])
        for _ in range(rng.randrange(1, 6)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        open(p, "wb").write(bytes(buf))
        with caplog.at_level(logging.CRITICAL):
            st = FileStore(d, block_size=300)
            check_consistent(st)
            st.store_msg("after", None, b"ok", T0)
            crash(st)
        for q in blocks(d):
            if q not in pristine:
                os.unlink(q)


def test_corruption_detected_on_read(tmp_path, caplog):
    d = str(tmp_path / "s")
    st = FileStore(d)
    for i in range(3):
        st.store_msg("x", None, b"hello-%d" % i, T0)
    (path,) = blocks(d)
    buf = bytearray(open(path, "rb").read())
    i = buf.find(b"hello-1")
    buf[i] ^= 1
    with open(path, "r+b") as f:
        f.write(bytes(buf))
    with caplog.at_level(logging.WARNING, logger="edgebus.jetstream.store.file"):
        assert st.load_msg(2) is None
        m, nxt = st.load_next_msg("x", 2)
    assert m.seq == 3
    assert any("checksum" in r.getMessage() for r in caplog.records)
    assert st.state().msgs == 2


def test_dead_blocks_are_unlinked_and_sparse_ones_compacted(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d, StoreLimits(max_msgs=20), block_size=500)
    for i in range(1000):
        st.store_msg("q", None, b"0123456789", T0 + i)
    assert len(blocks(d)) <= 6  # old blocks go away as the limit evicts
    st.update_config(StoreLimits())
    for i in range(200):
        st.store_msg("r", None, b"0123456789", T0 + i)
    size_before = sum(os.path.getsize(p) for p in blocks(d))
    for seq in range(1001, 1201):
        if seq % 5:
            st.remove_msg(seq)  # interior deletes -> tombstones, sparse blocks
    before = snapshot(st)
    st.sync()
    size_after = sum(os.path.getsize(p) for p in blocks(d))
    assert size_after < size_before * 0.7
    assert snapshot(st) == before
    check_consistent(st)
    crash(st)
    st = FileStore(d, block_size=500)
    assert snapshot(st) == before


def test_tombstones_survive_block_removal(tmp_path):
    """A tombstone for a message in an old block must outlive the block it was written to."""
    d = str(tmp_path / "s")
    st = FileStore(d, block_size=300)
    for i in range(6):
        st.store_msg("old", None, b"x" * 20, T0)  # block 1
    st.remove_msg(3)  # tombstone lands in a later block
    first_new = st.state().last_seq + 1
    for i in range(30):
        st.store_msg("new", None, b"y" * 20, T0)
    for seq in range(first_new, first_new + 30):
        st.remove_msg(seq)  # every later message goes -> those blocks die
    st.sync()
    crash(st)
    st = FileStore(d, block_size=300)
    assert st.load_msg(3) is None
    assert [m[0] for m in contents(st)] == [1, 2, 4, 5, 6]
    check_consistent(st)


def test_erase_overwrites_bytes(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d, block_size=300)
    st.store_msg("e", None, b"SECRET-ONE", T0)
    for i in range(10):
        st.store_msg("e", None, b"filler-%d" % i, T0)
    st.store_msg("e", None, b"SECRET-TWO", T0)
    assert st.erase_msg(1) and st.erase_msg(12)
    raw = b"".join(open(p, "rb").read() for p in blocks(d))
    assert b"SECRET" not in raw
    crash(st)
    st = FileStore(d, block_size=300)
    assert st.load_msg(1) is None and st.load_msg(12) is None
    assert check_consistent(st).msgs == 10


def test_sync_always_and_metadata_atomic(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d, sync_always=True, block_size=256)
    for i in range(20):
        st.store_msg("s", None, b"z" * 30, T0 + i)
    st.write_meta("cfg", b"one")
    st.write_meta("cfg", b"two")
    assert sorted(os.listdir(os.path.join(d, "meta"))) == ["cfg"]
    crash(st)
    st = FileStore(d, sync_always=True, block_size=256)
    assert st.state().msgs == 20 and st.read_meta("cfg") == b"two"
    st.delete()
    assert not os.path.exists(d)


def test_limits_applied_on_open(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d)
    for i in range(10):
        st.store_msg(f"k.{i % 2}", None, b"v", T0 + i)
    st.stop()
    st = FileStore(d, StoreLimits(max_msgs=6, max_msgs_per_subject=2))
    assert st.state().msgs == 4 and st.state().first_seq == 7


def test_sync_from_another_thread(tmp_path):
    """The stream layer runs sync() in a worker thread while it keeps using the store."""
    d = str(tmp_path / "s")
    st = FileStore(d, StoreLimits(max_msgs=300), block_size=1024)
    stop = threading.Event()
    errors: list[BaseException] = []

    def syncer():
        try:
            while not stop.is_set():
                st.sync()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=syncer)
    t.start()
    try:
        for i in range(1500):
            seq, _ = st.store_msg(f"t.{i % 5}", None, b"v" * (i % 50), T0 + i)
            if i % 3 == 0:
                st.remove_msg(seq - 7)
            if i % 500 == 0:
                st.load_next_msg("t.*", seq - 100)
    finally:
        stop.set()
        t.join()
    assert not errors
    before = snapshot(st)
    check_consistent(st)
    crash(st)
    st = FileStore(d, StoreLimits(max_msgs=300), block_size=1024)
    assert snapshot(st) == before


CHILD = textwrap.dedent(
    """
    import sys
    from edgebus.jetstream.store.file import FileStore
    d, run = sys.argv[1], sys.argv[2]
    st = FileStore(d, sync_always=True, block_size=2048)
    i = 0
    while True:
        payload = f"{run}-{i}".encode()
        seq, _ = st.store_msg(f"crash.{i % 3}", None, payload, 1000 + i)
        if i % 17 == 5:
            print("deleting", seq - 3, flush=True)
            st.remove_msg(seq - 3)
            print("deleted", seq - 3, flush=True)
        print("ack", seq, payload.decode(), flush=True)
        i += 1
    """
)


def test_crash_sigkill_keeps_acknowledged(tmp_path):
    d = str(tmp_path / "s")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(1234)
    acked: dict[int, bytes] = {}
    deleted: set[int] = set()  # removal acknowledged: must be gone
    maybe: set[int] = set()  # removal started: either outcome is fine

    def record(line: str) -> int:
        parts = line.split()
        if not line.endswith("\n") or len(parts) < 2:
            return 0  # cut short by the kill: never acknowledged
        if parts[0] == "ack" and len(parts) == 3:
            acked[int(parts[1])] = parts[2].encode()
            return 1
        if parts[0] == "deleting":
            maybe.add(int(parts[1]))
        elif parts[0] == "deleted":
            deleted.add(int(parts[1]))
        return 0

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    for run in range(15):
        p = subprocess.Popen([sys.executable, str(script), d, str(run)], stdout=subprocess.PIPE, text=True, env=env)
        want = rng.randrange(1, 120)
        got = 0
        assert p.stdout is not None
        while got < want:
            line = p.stdout.readline()
            if not line:
                break
            got += record(line)
        time.sleep(rng.random() * 0.01)  # kill at a random moment, usually mid-write
        p.send_signal(signal.SIGKILL)
        rest, _ = p.communicate()
        assert p.returncode == -signal.SIGKILL, "child died on its own"
        for line in rest.splitlines(keepends=True):  # acknowledged before the kill landed
            record(line)
        st = FileStore(d, sync_always=True, block_size=2048)
        check_consistent(st)
        for seq, payload in acked.items():
            m = st.load_msg(seq)
            if seq in deleted:
                assert m is None
            elif seq in maybe:
                assert m is None or m.data == payload
            else:
                assert m is not None and m.data == payload, (run, seq)
        assert st.state().last_seq >= max(acked)
        crash(st)


def test_deferred_writes_land_before_any_other_operation(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d, StoreLimits())
    st.store_msg("a", None, b"0", T0)
    size0 = sum(os.path.getsize(b) for b in blocks(d))
    st.defer_writes = True
    for i in range(1, 4):
        st.store_msg("a", b"NATS/1.0\r\nX: y\r\n\r\n" if i == 2 else None, b"%d" % i, T0 + i)
    assert sum(os.path.getsize(b) for b in blocks(d)) == size0  # held back: one write later
    m = st.load_msg(3)  # any other operation writes them first
    assert (m.seq, m.hdr, m.data) == (3, b"NATS/1.0\r\nX: y\r\n\r\n", b"2")
    assert sum(os.path.getsize(b) for b in blocks(d)) > size0
    st.store_msg("a", None, b"4", T0 + 4)
    st.flush_writes()
    st.defer_writes = False
    crash(st)  # nothing but what reached the OS
    st2 = FileStore(d, StoreLimits())
    assert [m[3] for m in contents(st2)] == [b"0", b"1", b"2", b"3", b"4"]
    check_consistent(st2)
    st2.stop()


def test_deferred_writes_across_a_block_boundary(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d, StoreLimits(), block_size=512)
    st.defer_writes = True
    for i in range(100):
        st.store_msg("b.%d" % (i % 3), None, b"x" * 20, T0 + i)
    st.flush_writes()
    crash(st)
    st2 = FileStore(d, StoreLimits())
    assert len(blocks(d)) > 3 and len(contents(st2)) == 100
    check_consistent(st2)
    st2.stop()


def test_deferred_append_path_writes_what_the_general_path_writes(tmp_path, monkeypatch):
    """A read's worth of messages held back (`defer_writes`) is stored by `_append`, the flat
    per-message path: the block files and the index must be exactly what `_store_msg` makes,
    with mixed subjects, headers, a non-ASCII subject, eviction by discard-old limits and block
    boundaries in the batch."""
    msgs = []
    for i in range(300):
        subj = ["a", "b.c", "é.x", "b.c"][i % 4]
        hdr = b"NATS/1.0\r\nNats-Msg-Id: %d\r\n\r\n" % i if i % 3 == 0 else None
        msgs.append((subj, hdr, b"x" * (i % 40), T0 + i))
    limits = StoreLimits(max_msgs=250, max_bytes=9000)
    general = FileStore(str(tmp_path / "g"), limits, block_size=700)
    for m in msgs:
        general.store_msg(*m)
    fast = FileStore(str(tmp_path / "f"), limits, block_size=700)
    calls = {"general": 0}
    orig = FileStore._store_msg

    def counting(self, *a):
        calls["general"] += 1
        return orig(self, *a)

    monkeypatch.setattr(FileStore, "_store_msg", counting)
    fast.defer_writes = True
    got = [fast.store_msg(*m) for m in msgs]
    fast.defer_writes = False
    fast.flush_writes()
    assert got == [(i + 1, m[3]) for i, m in enumerate(msgs)]
    # the non-ASCII subject, a block's first message and nothing else go the general way
    assert 75 <= calls["general"] < 110  # (97 when written)
    assert snapshot(fast) == snapshot(general)
    check_consistent(fast)
    fb, gb = blocks(str(tmp_path / "f")), blocks(str(tmp_path / "g"))
    assert [os.path.basename(b) for b in fb] == [os.path.basename(b) for b in gb]
    for a, b in zip(fb, gb):
        with open(a, "rb") as f1, open(b, "rb") as f2:
            assert f1.read() == f2.read()
    general.stop()
    crash(fast)
    st2 = FileStore(str(tmp_path / "f"), limits)
    assert snapshot(st2) == snapshot(general_reopened := FileStore(str(tmp_path / "g"), limits))
    st2.stop()
    general_reopened.stop()
