"""FileStore when the disk is full or failing (the `fileio.FAULTS` switch): a failed write
raises `StoreWriteError` worded as nats-server words the errno, leaves neither a record in the
file nor a message in the index, reads keep working, and writing resumes when the fault ends;
`sync_always` and `sync()` really reach fdatasync / fsync (a failed sync is an error)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

from edgebus.jetstream.store import fileio
from edgebus.jetstream.store.file import FileStore
from edgebus.jetstream.store.fileio import FAULTS, StoreWriteError

S = 1_000_000_000
T0 = 1_700_000_000 * S


@pytest.fixture(autouse=True)
def faults() -> Iterator[fileio.Faults]:
    FAULTS.reset()
    yield FAULTS
    FAULTS.reset()


def contents(st: FileStore) -> list[tuple[int, str, bytes]]:
    out, seq = [], 0
    while True:
        m, seq = st.load_next_msg(">", seq)
        if m is None:
            return out
        out.append((m.seq, m.subject, m.data))


def block(d: str) -> str:
    md = os.path.join(d, "msgs")
    return os.path.join(md, sorted(f for f in os.listdir(md) if f.endswith(".blk"))[-1])


def test_failed_write_leaves_nothing_and_writing_resumes(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d)
    for i in range(3):
        st.store_msg(f"a.{i}", None, b"m%d" % i, T0 + i)
    size = os.path.getsize(block(d))
    FAULTS.fail_writes = errno.ENOSPC
    with pytest.raises(StoreWriteError) as ei:
        st.store_msg("a.x", None, b"lost", T0 + 9)
    assert str(ei.value) == "no space left on device"  # nats-server's wording, no path
    FAULTS.fail_writes = errno.EIO
    with pytest.raises(StoreWriteError, match="^input/output error$"):
        st.store_msg("a.x", None, b"lost", T0 + 9)
    # reads go on; the failed messages are nowhere
    assert contents(st) == [(1, "a.0", b"m0"), (2, "a.1", b"m1"), (3, "a.2", b"m2")]
    assert st.state().last_seq == 3 and os.path.getsize(block(d)) == size
    assert st.remove_msg(2)  # its tombstone cannot be written now: it stays pending
    FAULTS.fail_writes = 0
    assert st.store_msg("a.3", None, b"m3", T0 + 10) == (4, T0 + 10)
    st.stop()
    st2 = FileStore(d)
    assert contents(st2) == [(1, "a.0", b"m0"), (3, "a.2", b"m2"), (4, "a.3", b"m3")]
    st2.stop()


def test_failed_deferred_batch_is_taken_back(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d)
    st.store_msg("a.1", None, b"ok", T0)
    st.defer_writes = True
    assert st.store_msg("a.2", None, b"lost2", T0 + 1)[0] == 2
    assert st.store_msg("a.3", None, b"lost3", T0 + 2)[0] == 3
    FAULTS.fail_writes = errno.ENOSPC
    st.defer_writes = False
    with pytest.raises(StoreWriteError) as ei:
        st.flush_writes()
    assert ei.value.seqs == (2, 3)
    assert contents(st) == [(1, "a.1", b"ok")]
    st.flush_writes()  # the error was reported once
    FAULTS.fail_writes = 0
    # sequences are not reused: 2 and 3 may have been announced to consumers
    assert st.store_msg("a.4", None, b"m4", T0 + 3)[0] == 4
    st.defer_writes = True
    st.store_msg("a.5", None, b"m5", T0 + 4)
    st.defer_writes = False
    st.flush_writes()
    st.stop()
    st2 = FileStore(d)
    assert contents(st2) == [(1, "a.1", b"ok"), (4, "a.4", b"m4"), (5, "a.5", b"m5")]
    assert st2.state().last_seq == 5
    st2.stop()


@pytest.mark.parametrize("hdr", [None, b"NATS/1.0\r\nA: b\r\n\r\n"])
def test_held_appends_written_past_the_cap_fail_as_a_whole(tmp_path, hdr):
    """Held-back appends are written once WBUF_MAX bytes are held, by the store_msg that
    crosses it: when that write fails, that message too leaves the index (it is indexed
    before the write), and the whole batch is reported."""
    st = FileStore(str(tmp_path / "s"), block_size=8 << 20)
    st.store_msg("a.0", None, b"ok", T0)
    st.defer_writes = True
    FAULTS.fail_writes = errno.ENOSPC
    big = b"x" * (200 << 10)
    seqs = [st.store_msg("a.1", hdr, big, T0 + i)[0] for i in range(1, 7)]  # > 1 MiB at the 6th
    assert not st._io_pending  # the 6th wrote them (and failed)
    st.defer_writes = False
    with pytest.raises(StoreWriteError) as ei:
        st.flush_writes()
    assert ei.value.seqs == tuple(seqs)
    FAULTS.fail_writes = 0
    assert contents(st) == [(1, "a.0", b"ok")]
    assert st.state().msgs == 1 and st.state().last_seq == 7
    st.stop()


def test_a_deferred_failure_seen_by_another_operation_still_reaches_flush_writes(tmp_path):
    st = FileStore(str(tmp_path / "s"))
    st.defer_writes = True
    st.store_msg("a.1", None, b"lost", T0)
    FAULTS.fail_writes = errno.ENOSPC
    assert st.load_msg(1) is None  # the read completes the held write first: it fails
    st.defer_writes = False
    with pytest.raises(StoreWriteError):
        st.flush_writes()
    FAULTS.fail_writes = 0
    st.stop()


def test_block_header_written_late_when_the_disk_was_full(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d, block_size=256)
    st.store_msg("a.1", None, b"x" * 100, T0)
    FAULTS.fail_writes = errno.ENOSPC
    with pytest.raises(StoreWriteError):
        st.store_msg("a.2", None, b"y" * 200, T0 + 1)  # needs a new block: its header fails too
    FAULTS.fail_writes = 0
    st.store_msg("a.3", None, b"z" * 200, T0 + 2)
    st.remove_msg(1)
    st.stop()
    with open(block(d), "rb") as f:
        assert f.read(3)[2] == 3  # T_STATE first, as in every block
    st2 = FileStore(d)
    assert contents(st2) == [(2, "a.3", b"z" * 200)]
    st2.stop()


def test_sync_always_fdatasyncs_before_store_msg_returns(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d, sync_always=True)
    FAULTS.counting = True
    for i in range(3):
        st.store_msg("a", None, b"m%d" % i, T0 + i)
        path = block(d)
        assert FAULTS.synced.get(path, 0) == FAULTS.written[path] == os.path.getsize(path)
    FAULTS.fail_syncs = errno.EIO
    with pytest.raises(StoreWriteError, match="input/output error"):
        st.store_msg("a", None, b"unsynced", T0 + 9)
    FAULTS.fail_syncs = 0
    assert [c[2] for c in contents(st)] == [b"m0", b"m1", b"m2"]
    st.stop()


def test_sync_reaches_fsync_and_reports_failure(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d)
    FAULTS.counting = True
    st.store_msg("a", None, b"m", T0)
    path = block(d)
    assert FAULTS.synced.get(path, 0) < FAULTS.written[path]  # written, not yet synced
    FAULTS.fail_syncs = errno.EIO
    with pytest.raises(StoreWriteError, match="input/output error"):
        st.sync()
    FAULTS.fail_syncs = 0
    st.sync()  # the block stayed on the to-sync list
    assert FAULTS.synced[path] == FAULTS.written[path]
    st.stop()


def test_purge_frees_a_full_disk_and_keeps_the_sequence(tmp_path):
    """Purging is how an operator makes room: it must work while writes fail, and the stream's
    sequence must survive it (the new block's STATE is written once writing works again)."""
    d = str(tmp_path / "s")
    st = FileStore(d)
    for i in range(3):
        st.store_msg("a", None, b"m%d" % i, T0 + i)
    FAULTS.fail_writes = errno.ENOSPC
    assert st.purge() == 3
    assert st.state().msgs == 0 and st.state().last_seq == 3
    FAULTS.fail_writes = 0
    st.state()  # any operation writes the pending STATE
    st.stop()
    os.unlink(os.path.join(d, "index.db"))  # as after a crash: the blocks are replayed
    st2 = FileStore(d)
    assert (st2.state().msgs, st2.state().first_seq, st2.state().last_seq) == (0, 4, 3)
    assert st2.store_msg("a", None, b"next", T0 + 9)[0] == 4
    st2.stop()


def test_damaged_block_opens_on_a_full_disk(tmp_path):
    d = str(tmp_path / "s")
    st = FileStore(d)
    for i in range(3):
        st.store_msg("a", None, b"msg-%d" % i, T0 + i)
    st.stop()
    os.unlink(os.path.join(d, "index.db"))
    path = block(d)
    with open(path, "r+b") as f:
        data = f.read()
        at = data.index(b"msg-1")
        f.seek(at)
        f.write(b"XXX")  # a bad record in the middle: the block would be rewritten clean
    FAULTS.fail_writes = errno.ENOSPC
    st2 = FileStore(d)   # no room for the clean copy: it opens all the same
    assert [c[2] for c in contents(st2)] == [b"msg-0", b"msg-2"]
    FAULTS.fail_writes = 0
    st2.stop()
