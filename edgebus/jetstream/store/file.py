"""FileStore: the `MsgStore` persisted in append-only block files (stream `storage: file`).

On-disk layout under `directory`:

    msgs/00000001.blk ...  append-only blocks of checksummed records
    index.db               snapshot of the in-memory index, written on clean stop only
    meta/<name>            small blobs for the stream layer (config, consumer state)

Record = magic u16 | type u8 | flags u8 | body_len u32 | body | crc32 u32, the CRC covering
type..body. Types:

    MSG    seq u64, ts i64, ttl i64, subject_len u16, hdr_len u32, subject, hdr, data
    TOMB   seq u64                      message `seq` was removed
    STATE  first u64, last u64, last_ts i64
           "every seq < first is gone; last_seq >= last" — written as the first record of
           every block and whenever the head of the stream moves (limits, expiry, purge,
           compact, skips), so head removals need no per-message tombstone
    ERASED seq u64, ts i64, zeros       a MSG overwritten in place by `erase_msg` (seq and ts
                                        kept: they may still define last_seq / last_ts)

Recovery replays the blocks in order (MSG inserts, TOMB removes, STATE raises the floor and
last_seq). A torn tail (a record that does not fully verify and nothing valid after it) is cut
off; a bad record in the middle is logged, skipped by resynchronising on the next valid record,
and the block is rewritten clean. `index.db` lets a clean restart skip the replay; it is
deleted as soon as it is loaded, so after a crash it is absent and the blocks are replayed.

Writes go straight to the OS with `pwrite` (a killed process loses nothing acknowledged);
`sync_always` adds `fdatasync` before `store_msg` returns. Every write and sync goes through
`fileio` (where tests can make them fail).

A failed write (disk full, I/O error) raises `StoreWriteError` and leaves nothing behind: the
block is cut back to where the record began, and a message that did not reach the file is not
in the index. Sequences are never reused for that: the next STATE record covers them. Reads
keep working; tombstones and STATE records that could not be written stay pending and are
written by a later operation, so writing resumes by itself once the disk has room. An owner may set `defer_writes`
while it handles a batch (the stream does for one client read): appends are then held and
written together by `flush_writes()`, before any other operation of the store, or once 1 MiB
is held; the owner acknowledges the batch only after `flush_writes()` returned. Such an append
takes `_append`, the per-message path written flat (the same records and index as the general
`_store_msg`, which every other case takes).

Blocks are never rewritten on the write path: dead blocks are unlinked when that is cheap,
and sparse or tombstone-holding ones are compacted by `sync()` / `stop()` (one block at a
time, bounded by the block size).

Byte accounting follows nats-server's filestore formula (22 + subject + msg + 8, plus 4 + hdr when
there are headers), so `state().bytes` and max_bytes match a real server.
"""

from __future__ import annotations

import errno
import heapq
import json
import logging
import os
import shutil
import struct
from array import array
from collections import OrderedDict
from typing import Any, Iterator, Sequence
from zlib import crc32

from . import fileio
from .base import ErrMaxMsgSize, StoredMsg, StoreError, StoreLimits, check_meta_name
from .base import new_stored_msg as _new_sm
from .core import StoreCore, _op
from .fileio import StoreWriteError
from .index import PAGE_BITS, Page, SubjInfo

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024

MAGIC = 0xE5B7
MAGIC_BYTES = struct.pack("<H", MAGIC)
HEAD = struct.Struct("<HBBI")
CRC = struct.Struct("<I")
MSGF = struct.Struct("<QqqHI")
HEADMSGF = struct.Struct("<HBBIQqqHI")  # HEAD then MSGF, one unpack for the read loops
TAILHEAD = struct.Struct("<IHBBIQqqHI")  # a record's CRC, then HEADMSGF of the record after it
TOMBF = struct.Struct("<Q")
STATEF = struct.Struct("<QQq")
ERASEDF = struct.Struct("<Qq")
T_MSG, T_TOMB, T_STATE, T_ERASED = 1, 2, 3, 4
REC_OVERHEAD = HEAD.size + CRC.size  # 12
MSG_OVERHEAD = REC_OVERHEAD + MSGF.size  # 42
STATE_REC_LEN = REC_OVERHEAD + STATEF.size
MAX_BODY = 1 << 30  # sanity bound when resynchronising

INDEX_MAGIC = b"EBSIDX01"
OFF_MASK = 0xFFFFFFFF
WBUF_MAX = 1 << 20       # deferred appends are written once this many bytes are held
READ_RUN_MAX = 1 << 20   # batch loads read adjacent records with one pread of at most this


_pack_headmsg = HEADMSGF.pack
_pack_crc = CRC.pack


def _record(typ: int, body: bytes) -> bytes:
    head = HEAD.pack(MAGIC, typ, 0, len(body))
    return head + body + CRC.pack(crc32(body, crc32(head[2:])))


def _blen(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode())


class Block:
    """Bookkeeping for one block file (seq ranges cover MSG records physically in it)."""

    __slots__ = ("index", "path", "size", "live", "live_bytes", "msg_first", "msg_last", "tomb_min", "tomb_max", "state_last_max", "corrupt")

    def __init__(self, index: int, path: str) -> None:
        self.index = index
        self.path = path
        self.size = 0
        self.live = 0
        self.live_bytes = 0
        self.msg_first = 0
        self.msg_last = 0
        self.tomb_min = 0
        self.tomb_max = 0
        self.state_last_max = 0
        self.corrupt = False

    def add_tomb(self, target: int) -> None:
        if self.tomb_min == 0 or target < self.tomb_min:
            self.tomb_min = target
        if target > self.tomb_max:
            self.tomb_max = target

    def to_list(self) -> list[int]:
        return [self.index, self.size, self.live, self.live_bytes, self.msg_first, self.msg_last, self.tomb_min, self.tomb_max, self.state_last_max]


def _iter_records(buf: bytes, start: int = 0) -> Iterator[tuple[int, int, int]]:
    """(offset, type, end) of each valid record; on a bad record resynchronise on the next
    offset where a whole record verifies. Yields (offset, -1, resume) for a skipped bad region
    and (offset, -2, offset) for a torn tail (nothing valid after `offset`)."""
    mv = memoryview(buf)
    n = len(buf)
    off = start
    unpack_head = HEAD.unpack_from
    unpack_crc = CRC.unpack_from
    while off < n:
        if off + REC_OVERHEAD <= n:
            magic, typ, _flags, blen = unpack_head(buf, off)
            end = off + 8 + blen
            if magic == MAGIC and end + 4 <= n and crc32(mv[off + 2 : end]) == unpack_crc(buf, end)[0]:
                yield off, typ, end
                off = end + 4
                continue
        nxt = _resync(buf, mv, off + 1)
        if nxt is None:
            yield off, -2, off
            return
        yield off, -1, nxt
        off = nxt


def _resync(buf: bytes, mv: memoryview, pos: int) -> int | None:
    n = len(buf)
    while True:
        pos = buf.find(MAGIC_BYTES, pos)
        if pos < 0 or pos + REC_OVERHEAD > n:
            return None
        _, _, _, blen = HEAD.unpack_from(buf, pos)
        end = pos + 8 + blen
        if blen <= MAX_BODY and end + 4 <= n and crc32(mv[pos + 2 : end]) == CRC.unpack_from(buf, end)[0]:
            return pos
        pos += 1


class FileStore(StoreCore):
    """Block-file message store. See the module docstring for the format and guarantees."""

    _A_TYPE = "Q"  # location: block index << 32 | offset
    _B_TYPE = "I"  # record length << 1 | has-headers bit

    def __init__(
        self,
        directory: str,
        limits: StoreLimits | None = None,
        *,
        sync_always: bool = False,
        block_size: int = DEFAULT_BLOCK_SIZE,
        max_open_blocks: int = 64,
    ) -> None:
        super().__init__(limits)
        self.directory = os.path.abspath(directory)
        self.sync_always = sync_always
        self.block_size = block_size
        self._msg_dir = os.path.join(self.directory, "msgs")
        self._meta_dir = os.path.join(self.directory, "meta")
        self._index_path = os.path.join(self.directory, "index.db")
        os.makedirs(self._msg_dir, exist_ok=True)
        os.makedirs(self._meta_dir, exist_ok=True)
        self._blocks: dict[int, Block] = {}
        self._active: Block | None = None
        self._active_fd = -1
        # appends held back while the owner batches a read's worth of messages (_write)
        self.defer_writes = False
        self._wbuf: list[bytes] = []
        self._wbuf_at = 0
        self._read_fds: OrderedDict[int, int] = OrderedDict()
        self._max_open = max_open_blocks
        self._unsynced: set[int] = set()
        self._dead: set[int] = set()
        self._sparse: set[int] = set()
        self._pending_tombs: list[int] = []
        self._pending_erase: list[tuple[int, int, int, int, int]] = []
        self._need_state = False
        self._recovering = False
        self._newly_dead: set[int] = set()
        # a deferred write that failed outside flush_writes(), for flush_writes() to raise
        self._write_error: StoreWriteError | None = None
        with self._lock:
            self._open()

    # ================================================================ open / recover
    def _block_path(self, index: int) -> str:
        return os.path.join(self._msg_dir, f"{index:08d}.blk")

    def _list_block_files(self) -> list[tuple[int, str]]:
        out = []
        for name in os.listdir(self._msg_dir):
            if name.endswith(".blk") and name[:-4].isdigit():
                out.append((int(name[:-4]), os.path.join(self._msg_dir, name)))
            elif name.endswith(".tmp"):
                # Leftover of an interrupted compaction: the original block is still there.
                try:
                    os.unlink(os.path.join(self._msg_dir, name))
                except OSError:
                    pass
        out.sort()
        return out

    def _open(self) -> None:
        files = self._list_block_files()
        try:
            os.unlink(self._index_path + ".tmp")  # an index write interrupted by a crash
        except FileNotFoundError:
            pass
        loaded = False
        if os.path.exists(self._index_path):
            try:
                loaded = self._load_index(files)
            except Exception as e:  # any problem with the snapshot: fall back to a replay
                log.warning("filestore %s: index unusable (%s), rebuilding from blocks", self.directory, e)
                self._reset_memory()
                loaded = False
            # The snapshot is only valid until the first mutation; never trust it again.
            try:
                os.unlink(self._index_path)
                self._fsync_dir(self.directory)
            except OSError:
                pass
        if not loaded:
            self._recover_blocks(files)
        # Continue appending to the last block when possible.
        last = next(reversed(self._blocks.values()), None) if self._blocks else None
        if last is not None and last.size < self.block_size and not last.corrupt:
            self._active = last
            self._active_fd = os.open(last.path, os.O_RDWR)
        else:
            self._new_block()
        for blk in list(self._blocks.values()):
            if blk.corrupt:
                try:
                    self._rewrite_block(blk)
                except StoreWriteError as e:  # no room for the clean copy: reads check CRCs
                    log.warning("filestore %s: %s not rewritten: %s", self.directory, blk.path, e)
        self._enforce_limits()
        maxp = self.limits.max_msgs_per_subject
        if maxp > 0:
            for info in [i for i in self._subjects.by_name.values() if i.msgs > maxp]:
                self._enforce_per_subject(info, maxp)
        self._flush()

    def _reset_memory(self) -> None:
        self._last = 0
        self._last_ts = 0
        self._reset_all()
        self._first = 0
        self._blocks.clear()

    def _recover_blocks(self, files: list[tuple[int, str]]) -> None:
        self._recovering = True
        self._subjects.begin_bulk()
        fast_evict, self._fast_evict = self._fast_evict, False  # limits apply after the replay
        try:
            index_append = self._index_append
            floor = 0
            best_seq, best_ts = 0, 0  # highest sequence seen anywhere, and its timestamp
            subj_cache: dict[bytes, str] = {}
            max_msg_seq = 0
            insert = self._insert
            unpack_msg = MSGF.unpack_from
            seqs = self._seqs
            for bi, (index, path) in enumerate(files):
                blk = Block(index, path)
                self._blocks[index] = blk
                with open(path, "rb") as f:
                    buf = f.read()
                good_end = 0
                for off, typ, end in _iter_records(buf):
                    if typ == T_MSG:
                        seq, ts, ttl, slen, hlen = unpack_msg(buf, off + 8)
                        if seq <= max_msg_seq:
                            # Blocks only ever hold ascending sequences; anything else is damage.
                            log.warning("filestore %s: out-of-order record for seq %d in %s ignored", self.directory, seq, path)
                            good_end = end + 4
                            continue
                        max_msg_seq = seq
                        p = off + 8 + MSGF.size
                        sb = buf[p : p + slen]
                        subject = subj_cache.get(sb)
                        if subject is None:
                            subject = subj_cache[sb] = sb.decode("utf-8", "surrogateescape")
                        rl = end + 4 - off
                        if ttl:
                            if seq > self._last:
                                self._last = seq
                            insert(seq, subject, None, ts, (index << 32) | off, (rl << 1) | (1 if hlen else 0), rl - 12 + (4 if hlen else 0), ttl)
                        else:
                            # what _insert does, one call (_fast_evict is off while replaying;
                            # last_ts is settled after the replay)
                            last = self._last
                            index_append(seq, subject, ts, (index << 32) | off, (rl << 1) | (1 if hlen else 0), rl - 12 + (4 if hlen else 0))
                            if last > seq:
                                self._last = last
                        blk.live += 1
                        blk.live_bytes += rl
                        if blk.msg_first == 0:
                            blk.msg_first = seq
                        blk.msg_last = seq
                        if seq >= best_seq:
                            best_seq, best_ts = seq, ts
                    elif typ == T_TOMB:
                        (target,) = TOMBF.unpack_from(buf, off + 8)
                        blk.add_tomb(target)
                        self._remove_seq(target)
                    elif typ == T_STATE:
                        first, last, lts = STATEF.unpack_from(buf, off + 8)
                        if first > floor:
                            floor = first
                        if last > blk.state_last_max:
                            blk.state_last_max = last
                        if last > best_seq or (last == best_seq and lts > best_ts):
                            best_seq, best_ts = last, lts
                        if last > self._last:
                            self._last = last
                    elif typ == T_ERASED:
                        seq, ts = ERASEDF.unpack_from(buf, off + 8)
                        if seq >= best_seq:
                            best_seq, best_ts = seq, ts
                    elif typ == -1:
                        log.warning("filestore %s: corrupt bytes at offset %d..%d of %s skipped", self.directory, off, end, path)
                        blk.corrupt = True
                        continue
                    elif typ == -2:
                        log.warning(
                            "filestore %s: %s has %d bytes of incomplete/corrupt tail at offset %d; truncated",
                            self.directory, path, len(buf) - off, off,
                        )
                        break
                    good_end = end + 4
                if good_end < len(buf):
                    with open(path, "r+b") as f:
                        f.truncate(good_end)
                        os.fsync(f.fileno())
                blk.size = good_end
            self._last = max(self._last, best_seq)
            self._last_ts = best_ts
            if floor > 0 and self._msgs:
                for s in [s for s, _, _, _ in seqs.iter_live(self._first, floor - 1)]:
                    self._remove_seq(s)
            if self._msgs == 0:
                self._first = self._last + 1 if self._last or floor else 0
                self._first_ts = 0
            for blk in self._blocks.values():
                if blk.live == 0:
                    self._newly_dead.add(blk.index)
                elif blk.live_bytes * 2 < blk.size:
                    self._sparse.add(blk.index)
        finally:
            self._fast_evict = fast_evict
            self._recovering = False
            self._subjects.end_bulk()
            self._pending_tombs.clear()
            self._pending_erase.clear()
            self._need_state = False

    # ================================================================ low-level I/O
    def _fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            fileio.fsync(fd)
        finally:
            os.close(fd)

    def _new_block(self) -> Block:
        """Start a new active block whose first record is the current STATE."""
        if self._io_pending:
            self._flush_pending_io()
        old = self._active
        index = (next(reversed(self._blocks)) + 1) if self._blocks else 1
        path = self._block_path(index)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        blk = Block(index, path)
        self._blocks[index] = blk
        if old is not None:
            if self._active_fd >= 0:
                self._cache_read_fd(old.index, self._active_fd)
            if not self.sync_always:
                self._unsynced.add(old.index)
            if old.live == 0:
                self._newly_dead.add(old.index)
            elif old.live_bytes * 2 < old.size:
                self._sparse.add(old.index)
        self._active = blk
        self._active_fd = fd
        self._need_state = False
        try:
            self._write(self._state_record())
        except StoreWriteError:
            # the block stays empty: the end of this operation tries the STATE again (a purge
            # has freed room by then), else the block's first write carries it (_write)
            self._need_state = True
        blk.state_last_max = self._last
        if self.sync_always:
            self._fsync_dir(self._msg_dir)
        return blk

    def _state_record(self) -> bytes:
        return _record(T_STATE, STATEF.pack(self._first, self._last, self._last_ts))

    def _write(self, rec: bytes) -> int:
        """Append to the active block; returns the offset written at. While `defer_writes`
        is set the record is held in memory and written with the ones after it by
        `flush_writes` (or before any other operation): one pwrite per batch."""
        blk = self._active
        assert blk is not None
        off = blk.size
        at = off
        if off == 0 and rec[2] != T_STATE:
            # the block's STATE header did not make it (disk full when it was made): every
            # block starts with one, so it goes in front of this record
            head = self._state_record()
            rec = head + rec
            at = len(head)
        if self.defer_writes and not self.sync_always:
            if not self._wbuf:
                self._wbuf_at = off
                self._io_pending = True
            self._wbuf.append(rec)
            blk.size = off + len(rec)
            self._unsynced.add(blk.index)
            # past WBUF_MAX the appends are written at the end of the operation (_after_op),
            # once the message is in the index: a failed write then takes it out again
            return at
        try:
            n = fileio.pwrite(self._active_fd, rec, off)
            if n != len(rec):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a short write: full
            if self.sync_always:
                fileio.fdatasync(self._active_fd)
        except OSError as e:
            self._cut_back(off)
            _log_write_error(self.directory, e)
            raise StoreWriteError(e) from None
        blk.size = off + n
        if not self.sync_always:
            self._unsynced.add(blk.index)
        return at

    def _cut_back(self, size: int) -> None:
        """After a failed write, end the active block where the failed record began (so no
        partial record is left for a later append to follow)."""
        blk = self._active
        assert blk is not None
        blk.size = size
        try:
            os.ftruncate(self._active_fd, size)
        except OSError:
            pass  # a torn tail is cut off on recovery anyway

    def _flush_pending_io(self) -> None:
        """Write the held-back appends of the active block with one pwrite. On failure
        nothing of them stays: the block is cut back, their messages leave the index, their
        tombstones and STATE go back to pending, and the error waits for `flush_writes()`
        (the owner answers the batch's publishers with it)."""
        buf = self._wbuf
        if not buf:
            self._io_pending = False
            return
        data = b"".join(buf) if len(buf) > 1 else buf[0]
        at = self._wbuf_at
        self._wbuf = []
        self._io_pending = False
        try:
            n = fileio.pwrite(self._active_fd, data, at)
            if n != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            self._cut_back(at)
            _log_write_error(self.directory, e)
            seqs = self._unindex_failed(data)
            if self._write_error is None:
                self._write_error = StoreWriteError(e, seqs)
            else:
                self._write_error.seqs += seqs

    def _unindex_failed(self, data: bytes) -> tuple[int, ...]:
        """Undo in memory what the records in `data` (which never reached the file) did."""
        seqs: list[int] = []
        tombs: list[int] = []
        for off, typ, _end in _iter_records(data):
            if typ == T_MSG:
                seqs.append(TOMBF.unpack_from(data, off + 8)[0])
            elif typ == T_TOMB:
                tombs.append(TOMBF.unpack_from(data, off + 8)[0])
        for seq in seqs:
            if self._seqs.get(seq) is not None:
                self._remove_seq(seq)
        gone = set(seqs)
        # nothing on disk to hide for those; the tombstones that were lost are written later
        self._pending_tombs = [t for t in self._pending_tombs if t not in gone] + \
            [t for t in tombs if t not in gone]
        self._pending_erase = [e for e in self._pending_erase if e[0] not in gone]
        # the next STATE record keeps last_seq past the lost sequences (never reused)
        self._need_state = True
        return tuple(seqs)

    def flush_writes(self) -> None:
        with self._lock:
            if self._io_pending and not self._closed:
                self._flush_pending_io()
            err, self._write_error = self._write_error, None
        if err is not None:
            raise err

    def _room_for(self, n: int) -> None:
        blk = self._active
        assert blk is not None
        if blk.size + n > self.block_size and blk.size > STATE_REC_LEN:
            self._new_block()

    def _cache_read_fd(self, index: int, fd: int) -> None:
        self._read_fds[index] = fd
        self._read_fds.move_to_end(index)
        while len(self._read_fds) > self._max_open:
            _, old = self._read_fds.popitem(last=False)
            os.close(old)

    def _read_fd(self, index: int) -> int:
        if self._active is not None and index == self._active.index:
            return self._active_fd
        fd = self._read_fds.get(index)
        if fd is None:
            fd = os.open(self._blocks[index].path, os.O_RDONLY)
            self._cache_read_fd(index, fd)
        else:
            self._read_fds.move_to_end(index)
        return fd

    def _close_read_fd(self, index: int) -> None:
        fd = self._read_fds.pop(index, None)
        if fd is not None:
            os.close(fd)

    # ================================================================ core hooks
    def _size_of(self, subject: str, hlen: int, dlen: int) -> int:
        return 30 + _blen(subject) + dlen + (4 + hlen if hlen else 0)

    def _slot_size(self, page: Page, off: int, info: SubjInfo) -> int:
        b = page.b[off]  # type: ignore[index]
        return (b >> 1) - 12 + (4 if b & 1 else 0)

    def _has_headers(self, page: Page, off: int) -> bool:
        return bool(page.b[off] & 1)  # type: ignore[index]

    def _persist_msg(self, seq: int, subject: str, hdr: bytes | None, data: bytes, ts: int, ttl: int) -> tuple[Any, int]:
        sb = subject.encode("utf-8", "surrogateescape")
        hdr_b = hdr or b""
        if len(sb) > 0xFFFF or MSG_OVERHEAD + len(sb) + len(hdr_b) + len(data) >= 1 << 31:
            raise StoreError("message too large")
        blen = MSGF.size + len(sb) + len(hdr_b) + len(data)
        rec = b"".join((HEADMSGF.pack(MAGIC, T_MSG, 0, blen, seq, ts, ttl, len(sb), len(hdr_b)),
                        sb, hdr_b, data))
        rec += CRC.pack(crc32(memoryview(rec)[2:]))
        self._room_for(len(rec))
        off = self._write(rec)
        blk = self._active
        assert blk is not None
        blk.live += 1
        blk.live_bytes += len(rec)
        if blk.msg_first == 0:
            blk.msg_first = seq
        blk.msg_last = seq
        return (blk.index << 32) | off, (len(rec) << 1) | (1 if hdr_b else 0)

    _ap_sb = b""

    def _append(self, subject: str, hdr: bytes | None, data: bytes, ts: int) -> tuple[int, int] | None:
        """`_persist_msg` + the rest of `_store_msg` + `_after_op`, flat, for a message whose
        record joins the held-back appends of a read (`defer_writes`) in the active block; any
        other case (a write now, a new block, a block without its STATE header, a subject that
        is not ASCII, a huge message) goes the general way."""
        if not self.defer_writes or self.sync_always:
            return None
        blk = self._active
        assert blk is not None
        off = blk.size
        if off == 0:
            return None
        if subject is self._ap_subj:
            sb = self._ap_sb
        else:
            if not subject.isascii() or len(subject) > 0xFFFF:
                return None
            sb = self._ap_sb = subject.encode()
            self._ap_subj = subject
        slen = len(sb)
        dlen = len(data)
        seq = self._last + 1
        if hdr is None:
            mms = self._fast_mms
            if mms > 0 and dlen > mms:
                raise ErrMaxMsgSize()
            if dlen >= MAX_BODY:
                return None
            size = 30 + slen + dlen  # _size_of
            rec = _pack_headmsg(MAGIC, T_MSG, 0, 30 + slen + dlen, seq, ts, 0, slen, 0) + sb + data
        else:
            hlen = len(hdr)
            mms = self._fast_mms
            if mms > 0 and hlen + dlen > mms:
                raise ErrMaxMsgSize()
            if hlen + dlen >= MAX_BODY:
                return None
            size = 34 + slen + hlen + dlen
            rec = _pack_headmsg(MAGIC, T_MSG, 0, 30 + slen + hlen + dlen, seq, ts, 0, slen, hlen) + sb + hdr + data
        rec += _pack_crc(crc32(rec[2:]))
        rl = len(rec)
        if off + rl > self.block_size:
            return None
        # _write, deferred
        wbuf = self._wbuf
        if not wbuf:
            self._wbuf_at = off
            self._io_pending = True
            # (the block cannot change while appends are held: _new_block writes them first)
            self._unsynced.add(blk.index)
        wbuf.append(rec)
        blk.size = off + rl
        blk.live += 1
        blk.live_bytes += rl
        if blk.msg_first == 0:
            blk.msg_first = seq
        blk.msg_last = seq
        self._index_append(seq, subject, ts, (blk.index << 32) | off, (rl << 1) | (hdr is not None), size)
        # _after_op
        if self._need_state or self._pending_tombs or self._pending_erase or self._newly_dead:
            self._flush()
        if self._io_pending and self._active.size - self._wbuf_at >= WBUF_MAX:
            self._flush_pending_io()
        return seq, ts

    def _append_run(self, subject: str, datas: Sequence[bytes], start: int, ts: int) -> int:
        """`_append(subject, None, data, ts)` for each of `datas[start:]` (stamps 1 ns
        apart), in one loop, stopping where `_append` would decline."""
        if not self.defer_writes or self.sync_always:
            return 0
        if subject is self._ap_subj:
            sb = self._ap_sb
        else:
            if not subject.isascii() or len(subject) > 0xFFFF:
                return 0
            sb = self._ap_sb = subject.encode()
            self._ap_subj = subject
        slen = len(sb)
        mms = self._fast_mms
        block_size = self.block_size
        n = len(datas)
        i = start
        if not self._fast_evict:
            # nothing is evicted: records a stretch at a time (up to where a message would
            # write the held-back appends out, or the block ends), then its index in one go
            while i < n and not (self._need_state or self._pending_tombs or self._pending_erase
                                 or self._newly_dead):
                blk = self._active
                assert blk is not None
                off = blk.size
                if off == 0:
                    break
                wbuf = self._wbuf
                fresh = not wbuf
                at = off if fresh else self._wbuf_at
                j = i
                seq = self._last + 1
                locs: list[int] = []
                lens: list[int] = []
                size = 0
                bidx = blk.index << 32
                pos = off
                full = False
                while j < n:
                    data = datas[j]
                    if type(data) is not bytes:
                        break
                    dlen = len(data)
                    if (mms > 0 and dlen > mms) or dlen >= MAX_BODY:
                        break
                    rec = _pack_headmsg(MAGIC, T_MSG, 0, 30 + slen + dlen, seq + j - i, ts + j - i, 0, slen, 0) + sb + data
                    rec += _pack_crc(crc32(rec[2:]))
                    rl = len(rec)
                    if pos + rl > block_size:
                        break
                    wbuf.append(rec)
                    locs.append(bidx | pos)
                    lens.append(rl << 1)
                    size += 30 + slen + dlen
                    pos += rl
                    j += 1
                    if pos - at >= WBUF_MAX:
                        full = True
                        break
                m = j - i
                if m == 0:
                    return i - start
                if fresh:
                    self._wbuf_at = off
                    self._io_pending = True
                    self._unsynced.add(blk.index)
                blk.size = pos
                blk.live += m
                blk.live_bytes += pos - off
                if blk.msg_first == 0:
                    blk.msg_first = seq
                blk.msg_last = seq + m - 1
                self._index_extend(seq, subject, ts, locs, lens, size)
                ts += m
                i = j
                if full:
                    self._flush_pending_io()
                elif j < n:
                    return i - start  # the next one needs the general path
            return i - start
        # discard-old eviction may run after any message: one `_append` each (the same steps)
        append = self._append
        while i < n:
            data = datas[i]
            if type(data) is not bytes:
                break
            dlen = len(data)
            if (mms > 0 and dlen > mms) or dlen >= MAX_BODY:
                break  # (store_msg raises ErrMaxMsgSize for the first)
            if append(subject, None, data, ts) is None:
                break
            ts += 1
            i += 1
        return i - start

    def _load_slot(self, seq: int, info: SubjInfo, page: Page, off: int) -> StoredMsg:
        loc = page.a[off]
        index = loc >> 32
        pos = loc & OFF_MASK
        rl = page.b[off] >> 1  # type: ignore[index]
        buf = os.pread(self._read_fd(index), rl, pos)
        magic, typ, _f, blen = HEAD.unpack_from(buf, 0) if len(buf) >= 8 else (0, 0, 0, 0)
        if magic != MAGIC or typ != T_MSG or 8 + blen + 4 != len(buf) or crc32(memoryview(buf)[2 : 8 + blen]) != CRC.unpack_from(buf, 8 + blen)[0]:
            raise _CorruptRecord(seq, index, pos)
        rseq, ts, _ttl, slen, hlen = MSGF.unpack_from(buf, 8)
        if rseq != seq:
            raise _CorruptRecord(seq, index, pos)
        p = 8 + MSGF.size + slen
        hdr = buf[p : p + hlen] if hlen else None
        return _new_sm(StoredMsg, (seq, info.name, hdr, buf[p + hlen : 8 + blen], ts))

    def _load_live(self, start: int, max_msgs: int, max_bytes: int) -> tuple[list[StoredMsg], int]:
        """`load_next_msgs` when every message matches, in one pass: a run of live slots of one
        index page whose records lie back to back in one block (what a stream that is only
        appended to has) is read with one pread and checked and parsed in the same loop, with
        no per-message tuples between the index walk and the reads. Anything else (a removed
        slot, a block boundary, a record that does not check out) is left to the general walk
        from there on, so the result is exactly StoreCore._load_live's."""
        seqs = self._seqs
        pages = seqs.pages
        last = self._last
        out: list[StoredMsg] = []
        append = out.append
        nbytes = 0
        cur = start
        unpack = HEADMSGF.unpack_from
        crc_at = CRC.unpack_from
        tail_head = TAILHEAD.unpack_from
        hsize = HEADMSGF.size
        while cur <= last and len(out) < max_msgs and nbytes < max_bytes:
            pno = cur >> PAGE_BITS
            page = pages.get(pno)
            if page is None:
                break
            base = pno << PAGE_BITS
            lo = cur - base
            subj = page.subj
            hi = min(len(subj), last - base + 1, lo + max_msgs - len(out))
            if hi <= lo:
                break
            if subj[lo] is None:
                # removed: on to the next live slot (its record starts a fresh read)
                while lo < hi and subj[lo] is None:
                    lo += 1
                cur = base + lo
                continue
            infos = subj[lo:hi]
            if None in infos:
                hi = lo + infos.index(None)   # the live slots before the next removed one
                del infos[hi - lo:]
            a = page.a
            b = page.b
            assert b is not None
            first = a[lo]
            end_loc = a[hi - 1]
            index = first >> 32
            p0 = first & OFF_MASK
            span = (end_loc & OFF_MASK) + (b[hi - 1] >> 1) - p0
            if end_loc >> 32 != index or not 0 < span <= READ_RUN_MAX:
                break
            buf = os.pread(self._read_fd(index), span, p0)
            n = len(buf)
            p = 0
            seq = cur
            ok = True
            if n < MSG_OVERHEAD:
                break
            magic, typ, _f, blen, rseq, ts, _ttl, slen, hlen = unpack(buf, 0)
            for info, bb in zip(infos, b[lo:hi]):
                # the record of `seq` must be the next one in the buffer and pass _read_run's
                # checks (magic, type, length as indexed, sequence, CRC); a gap between two
                # records (a tombstone, a removed message) fails them and ends the fast walk
                rl = bb >> 1
                e = p + 8 + blen
                if magic != MAGIC or typ != T_MSG or blen + 12 != rl or rseq != seq or p + rl > n:
                    ok = False
                    break
                c = crc32(buf[p + 2 : e])   # (a copy costs less than a memoryview slice here)
                q = p + hsize + slen
                sm = _new_sm(StoredMsg, (seq, info.name, buf[q : q + hlen] if hlen else None,
                                         buf[q + hlen : e], ts))
                p = e + 4
                # this record's CRC and the next record's head in one unpack
                if p + hsize <= n:
                    crc, magic, typ, _f, blen, rseq, ts, _ttl, slen, hlen = tail_head(buf, e)
                else:
                    crc = crc_at(buf, e)[0]
                    magic = 0   # no next record in this read
                if crc != c:
                    ok = False
                    break
                append(sm)
                nbytes += rl - 12 + ((bb & 1) << 2)   # _slot_size
                seq += 1
                if nbytes >= max_bytes:
                    return out, seq
            cur = seq
            if not ok:
                break
        if cur > last:
            return out, last + 1
        if len(out) >= max_msgs:
            return out, cur
        more, nxt = super()._load_live(cur, max_msgs - len(out), max_bytes - nbytes)
        out += more
        return out, nxt

    def _load_many(self, items: list[tuple[int, SubjInfo, Page, int]]) -> list[StoredMsg | None]:
        """Adjacent records of one block are read with a single pread (up to READ_RUN_MAX
        bytes); a record that does not check out is re-read alone by `_load`, which reports
        and drops it exactly as a single load would."""
        out: list[StoredMsg | None] = []
        run: list[tuple[int, SubjInfo, int, int]] = []
        run_idx = -1
        run_start = run_end = 0
        for seq, info, page, off in items:
            loc = page.a[off]
            index = loc >> 32
            pos = loc & OFF_MASK
            rl = page.b[off] >> 1  # type: ignore[index]
            if run and index == run_idx and pos == run_end and run_end + rl - run_start <= READ_RUN_MAX:
                run.append((seq, info, pos, rl))
                run_end += rl
                continue
            if run:
                self._read_run(run_idx, run_start, run_end, run, out)
            run = [(seq, info, pos, rl)]
            run_idx = index
            run_start = pos
            run_end = pos + rl
        if run:
            self._read_run(run_idx, run_start, run_end, run, out)
        return out

    def _read_run(self, index: int, start: int, end: int, run: list[tuple[int, SubjInfo, int, int]],
                  out: list[StoredMsg | None]) -> None:
        buf = os.pread(self._read_fd(index), end - start, start)
        n = len(buf)
        mv = memoryview(buf)
        unpack = HEADMSGF.unpack_from
        crc_at = CRC.unpack_from
        append = out.append
        for seq, info, pos, rl in run:
            p0 = pos - start
            if rl >= MSG_OVERHEAD and p0 + rl <= n:
                magic, typ, _f, blen, rseq, ts, _ttl, slen, hlen = unpack(buf, p0)
                e = p0 + 8 + blen
                if magic == MAGIC and typ == T_MSG and blen + 12 == rl and rseq == seq \
                        and crc32(mv[p0 + 2 : e]) == crc_at(buf, e)[0]:
                    p = p0 + HEADMSGF.size + slen
                    append(_new_sm(StoredMsg, (seq, info.name, buf[p : p + hlen] if hlen else None,
                                               buf[p + hlen : e], ts)))
                    continue
            append(self._load(seq))  # re-read alone: reports and drops a bad record

    def _load(self, seq: int) -> StoredMsg | None:
        try:
            return super()._load(seq)
        except _CorruptRecord as e:
            # Never serve bad bytes: report, drop the message from the index, carry on.
            log.warning("filestore %s: record for seq %d in block %d at %d failed its checksum; dropped", self.directory, e.seq, e.block, e.pos)
            self._remove_seq(seq)
            return None

    def _on_removed(self, seq: int, a: Any, b: int, ts: int, erase: bool) -> None:
        index = a >> 32
        blk = self._blocks.get(index)
        if blk is not None:
            blk.live -= 1
            blk.live_bytes -= b >> 1
            if blk is not self._active:
                if blk.live == 0:
                    self._newly_dead.add(index)
                elif blk.live_bytes * 2 < blk.size:
                    self._sparse.add(index)
        if self._recovering:
            return
        if seq < self._first:
            self._need_state = True  # covered by the floor of a STATE record
        else:
            self._pending_tombs.append(seq)
        if erase:
            self._pending_erase.append((seq, ts, index, a & OFF_MASK, b >> 1))

    def _on_skipped(self) -> None:
        self._need_state = True

    def _on_purged(self) -> None:
        # A fresh block whose header STATE carries the new first/last; every older block is
        # then entirely dead and holds nothing that could matter (no message survives).
        self._pending_tombs.clear()
        self._pending_erase.clear()
        old = [b for b in self._blocks.values()]
        self._new_block()
        if self.sync_always:
            try:
                fileio.fsync(self._active_fd)
            except OSError as e:
                raise StoreWriteError(e) from None
        for blk in old:
            self._unlink_block(blk)
        self._dead.clear()
        self._newly_dead.clear()
        self._sparse.clear()

    def _on_truncated(self, seq: int) -> None:
        # Sequences above `seq` will be reused, so no record mentioning them may survive:
        # rewrite every block that has one (rare operation; cost bounded by those blocks).
        self._pending_tombs = [s for s in self._pending_tombs if s <= seq]
        self._pending_erase.clear()
        for blk in list(self._blocks.values()):
            if blk.msg_last > seq or blk.state_last_max > seq or blk.tomb_max > seq:
                self._rewrite_block(blk, max_seq=seq)
        self._need_state = True

    def _after_op(self) -> None:
        if not self._closed:
            self._flush()
            if self._io_pending and self._active is not None and self._active.size - self._wbuf_at >= WBUF_MAX:
                self._flush_pending_io()

    # ================================================================ flushing & maintenance
    def _flush(self) -> None:
        """Persist what the last operation queued: one STATE record if the head moved, a TOMB per
        interior removal, in-place erasure, then drop blocks that died (when cheap)."""
        tombs: list[int] = []
        if self._pending_tombs:
            floor = self._first
            for s in self._pending_tombs:
                if s >= floor:
                    tombs.append(s)
                else:
                    self._need_state = True
            self._pending_tombs = []
        if self._need_state or tombs:
            recs = [self._state_record()] if self._need_state else []
            recs.extend(_record(T_TOMB, TOMBF.pack(s)) for s in tombs)
            data = b"".join(recs)
            try:
                self._room_for(len(data))
                self._write(data)
            except (StoreWriteError, OSError):
                # kept for the next operation: the operation itself (a read, or a message
                # already written) succeeded
                self._pending_tombs = tombs + self._pending_tombs
                return
            blk = self._active
            assert blk is not None
            for s in tombs:
                blk.add_tomb(s)
            if self._need_state and self._last > blk.state_last_max:
                blk.state_last_max = self._last
            self._need_state = False
        if self._pending_erase:
            erase, self._pending_erase = self._pending_erase, []
            for seq, ts, index, pos, rl in erase:
                self._erase_in_place(seq, ts, index, pos, rl)
        if self._newly_dead:
            # Unlink what died if no tombstone in it can matter; the rest waits for sync().
            for index in sorted(self._newly_dead):
                blk = self._blocks.get(index)
                if blk is None or blk is self._active or blk.live:
                    continue
                if self._tomb_targets_elsewhere(blk):
                    self._dead.add(index)
                else:
                    self._unlink_block(blk)
            self._newly_dead.clear()

    def _erase_in_place(self, seq: int, ts: int, index: int, pos: int, rl: int) -> None:
        blk = self._blocks.get(index)
        if blk is None:
            return
        rec = _record(T_ERASED, ERASEDF.pack(seq, ts) + bytes(rl - REC_OVERHEAD - ERASEDF.size))
        if self._io_pending:
            self._flush_pending_io()
        try:
            if blk is self._active:
                fileio.pwrite(self._active_fd, rec, pos)
                if self.sync_always:
                    fileio.fdatasync(self._active_fd)
                return
            fd = os.open(blk.path, os.O_WRONLY)
            try:
                fileio.pwrite(fd, rec, pos)
                if self.sync_always:
                    fileio.fdatasync(fd)
                else:
                    self._unsynced.add(index)
            finally:
                os.close(fd)
        except OSError as e:
            _log_write_error(self.directory, e)
            raise StoreWriteError(e) from None

    def _tomb_targets_elsewhere(self, blk: Block) -> bool:
        """Could a tombstone in `blk` still hide a message physically present in an older
        block? (Conservative: compares seq ranges only.)"""
        if blk.tomb_max == 0:
            return False
        for other in self._blocks.values():
            if other.index >= blk.index:
                break
            if other.msg_last and other.msg_first <= blk.tomb_max and other.msg_last >= blk.tomb_min:
                return True
        return False

    def _tomb_needed(self, target: int, blk: Block) -> bool:
        for other in self._blocks.values():
            if other.index >= blk.index:
                return False
            if other.msg_last and other.msg_first <= target <= other.msg_last:
                return True
        return False

    def _unlink_block(self, blk: Block) -> None:
        self._close_read_fd(blk.index)
        if blk is self._active:  # pragma: no cover - callers never unlink the active block
            raise AssertionError("unlinking the active block")
        try:
            os.unlink(blk.path)
        except FileNotFoundError:
            pass
        self._blocks.pop(blk.index, None)
        self._unsynced.discard(blk.index)
        self._dead.discard(blk.index)
        self._newly_dead.discard(blk.index)
        self._sparse.discard(blk.index)

    def _drop_dead_blocks(self) -> None:
        for index in sorted(self._dead | self._newly_dead):
            blk = self._blocks.get(index)
            if blk is None or blk is self._active or blk.live:
                continue
            if self._tomb_targets_elsewhere(blk):
                self._rewrite_block(blk)  # keeps only the tombstones still needed
            else:
                self._unlink_block(blk)
        self._dead.clear()
        self._newly_dead.clear()

    def _maintenance(self) -> None:
        try:
            self._compact_blocks()
        except (OSError, StoreWriteError) as e:
            # compaction needs room for a copy of a block: with a full disk it waits
            log.warning("filestore %s: compaction postponed: %s", self.directory,
                        e if isinstance(e, StoreWriteError) else fileio.describe(e))

    def _compact_blocks(self) -> None:
        self._drop_dead_blocks()
        for index in sorted(self._sparse):
            blk = self._blocks.get(index)
            if blk is None or blk is self._active:
                continue
            if blk.live == 0 or blk.live_bytes * 2 < blk.size:
                self._rewrite_block(blk)
        self._sparse.clear()

    def _rewrite_block(self, blk: Block, max_seq: int | None = None) -> None:
        """Rewrite `blk` with only its live messages and the tombstones still needed, behind a
        fresh STATE header: temp file, fsync, rename. Cost bounded by the block size."""
        with open(blk.path, "rb") as f:
            buf = f.read()
        out = [self._state_record()]
        size = len(out[0])
        moves: list[tuple[int, int]] = []
        nb = Block(blk.index, blk.path)
        nb.state_last_max = self._last
        for off, typ, end in _iter_records(buf):
            if typ == T_MSG:
                (seq,) = TOMBF.unpack_from(buf, off + 8)
                loc = self._seqs.get(seq)
                if loc is None or loc[0].a[loc[1]] != (blk.index << 32) | off:
                    continue
                rec = buf[off : end + 4]
                moves.append((seq, size))
                out.append(rec)
                size += len(rec)
                nb.live += 1
                nb.live_bytes += len(rec)
                if nb.msg_first == 0:
                    nb.msg_first = seq
                nb.msg_last = seq
            elif typ == T_TOMB:
                (target,) = TOMBF.unpack_from(buf, off + 8)
                if (max_seq is None or target <= max_seq) and self._tomb_needed(target, blk):
                    out.append(buf[off : end + 4])
                    size += end + 4 - off
                    nb.add_tomb(target)
        is_active = blk is self._active
        if not is_active and nb.live == 0 and nb.tomb_max == 0:
            self._unlink_block(blk)
            return
        tmp = blk.path + ".tmp"
        try:
            fileio.write_file(tmp, b"".join(out))
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StoreWriteError(e) from None
        self._close_read_fd(blk.index)
        if is_active:
            os.close(self._active_fd)
            self._active_fd = -1
        os.replace(tmp, blk.path)
        self._fsync_dir(self._msg_dir)
        nb.size = size
        self._blocks[blk.index] = nb
        if is_active:
            self._active = nb
            self._active_fd = os.open(nb.path, os.O_RDWR)
        for seq, pos in moves:
            loc = self._seqs.get(seq)
            assert loc is not None
            loc[0].a[loc[1]] = (blk.index << 32) | pos
        self._unsynced.discard(blk.index)
        self._dead.discard(blk.index)
        self._newly_dead.discard(blk.index)
        self._sparse.discard(blk.index)

    # ================================================================ lifecycle
    def sync(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._io_pending:
                self._flush_pending_io()
            self._flush()
            self._maintenance()
            fds = []
            for index in self._unsynced:
                if self._active is not None and index == self._active.index:
                    fds.append(os.dup(self._active_fd))
                elif index in self._blocks:
                    fds.append(os.dup(self._read_fd(index)))
            unsynced, self._unsynced = self._unsynced, set()
        # fsync outside the lock so a sync from a worker thread does not stall writers.
        failed: OSError | None = None
        for fd in fds:
            try:
                fileio.fsync(fd)
            except OSError as e:
                failed = e
            finally:
                os.close(fd)
        if failed is None:
            try:
                self._fsync_dir(self._msg_dir)
            except OSError as e:
                failed = e
        if failed is not None:
            with self._lock:
                self._unsynced |= unsynced
            _log_write_error(self.directory, failed)
            raise StoreWriteError(failed)

    def stop(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._io_pending:
                self._flush_pending_io()
            self._flush()
            self._maintenance()
            try:
                if self._active_fd >= 0:
                    fileio.fsync(self._active_fd)
                for index in list(self._unsynced):
                    if index in self._blocks:
                        fileio.fsync(self._read_fd(index))
                self._unsynced.clear()
                self._fsync_dir(self._msg_dir)
                self._write_index()
            except OSError as e:  # a missing index only costs a replay on next open
                log.warning("filestore %s: could not sync or write the index: %s",
                            self.directory, fileio.describe(e))
                try:
                    os.unlink(self._index_path + ".tmp")
                except OSError:
                    pass
            self._close_fds()
            self._closed = True

    def _close_fds(self) -> None:
        if self._active_fd >= 0:
            os.close(self._active_fd)
            self._active_fd = -1
        for fd in self._read_fds.values():
            os.close(fd)
        self._read_fds.clear()

    def delete(self) -> None:
        with self._lock:
            if not self._closed:
                self._close_fds()
                self._closed = True
            self._reset_all()
            shutil.rmtree(self.directory, ignore_errors=True)

    # ================================================================ index snapshot
    def _write_index(self) -> None:
        infos = list(self._subjects.by_name.values())
        ids = {id(info): i + 1 for i, info in enumerate(infos)}
        names = [i.name.encode("utf-8", "surrogateescape") for i in infos]
        name_lens = array("I", map(len, names))
        counts = array("Q", (i.msgs for i in infos))
        sseqs = array("Q")
        for info in infos:
            if info.seqs is None:
                sseqs.append(info.first)
            else:
                sseqs.extend(info.seqs[info.head :])
        pages = []
        for pno in self._seqs.pnos:
            page = self._seqs.pages[pno]
            sid = array("I", [ids[id(x)] if x is not None else 0 for x in page.subj])
            pages.append((pno, page.live, sid, page.ts, page.a, page.b))
        ttl_seqs = array("Q", self._ttl_exp.keys())
        ttl_exps = array("q", self._ttl_exp.values())
        never = array("Q", sorted(self._never))
        header = {
            "first": self._first,
            "first_ts": self._first_ts,
            "last": self._last,
            "last_ts": self._last_ts,
            "msgs": self._msgs,
            "bytes": self._bytes,
            "blocks": [b.to_list() for b in self._blocks.values()],
            "nsubj": len(infos),
            "pages": [[p[0], p[1], len(p[2])] for p in pages],
            "nttl": len(ttl_seqs),
            "nnever": len(never),
        }
        parts: list[bytes] = [json.dumps(header).encode(), name_lens.tobytes(), b"".join(names), counts.tobytes(), sseqs.tobytes()]
        for _, _, sid, ts, a, b in pages:
            parts += [sid.tobytes(), ts.tobytes(), a.tobytes(), b.tobytes()]  # type: ignore[union-attr]
        parts += [ttl_seqs.tobytes(), ttl_exps.tobytes(), never.tobytes()]
        lens = struct.pack(f"<{len(parts)}Q", *map(len, parts))
        body = struct.pack("<I", len(parts)) + lens + b"".join(parts)
        blob = INDEX_MAGIC + body + CRC.pack(crc32(body))
        tmp = self._index_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._index_path)
        self._fsync_dir(self.directory)

    def _load_index(self, files: list[tuple[int, str]]) -> bool:
        with open(self._index_path, "rb") as f:
            blob = f.read()
        if not blob.startswith(INDEX_MAGIC) or len(blob) < len(INDEX_MAGIC) + 8:
            raise ValueError("bad magic")
        body = memoryview(blob)[len(INDEX_MAGIC) : -4]
        if crc32(body) != CRC.unpack_from(blob, len(blob) - 4)[0]:
            raise ValueError("checksum mismatch")
        (nparts,) = struct.unpack_from("<I", body, 0)
        lens = struct.unpack_from(f"<{nparts}Q", body, 4)
        pos = 4 + 8 * nparts
        parts = []
        for n in lens:
            parts.append(body[pos : pos + n])
            pos += n
        it = iter(parts)
        header = json.loads(bytes(next(it)))
        # The snapshot must describe exactly the block files on disk.
        on_disk = {index: os.path.getsize(path) for index, path in files}
        if {b[0]: b[1] for b in header["blocks"]} != on_disk:
            log.info("filestore %s: index is stale, rebuilding from blocks", self.directory)
            return False
        for row in header["blocks"]:
            blk = Block(row[0], self._block_path(row[0]))
            (_, blk.size, blk.live, blk.live_bytes, blk.msg_first, blk.msg_last, blk.tomb_min, blk.tomb_max, blk.state_last_max) = row
            self._blocks[blk.index] = blk
        name_lens = array("I")
        name_lens.frombytes(next(it))
        names_blob = bytes(next(it))
        counts = array("Q")
        counts.frombytes(next(it))
        sseqs = array("Q")
        sseqs.frombytes(next(it))
        infos: list[SubjInfo | None] = [None]
        by_name = self._subjects.by_name
        p = 0
        q = 0
        for ln, cnt in zip(name_lens, counts):
            info = SubjInfo(names_blob[p : p + ln].decode("utf-8", "surrogateescape"))
            p += ln
            info.msgs = cnt
            if cnt == 1:
                info.first = info.last = sseqs[q]
            else:
                info.seqs = sseqs[q : q + cnt]
                info.first = info.seqs[0]
                info.last = info.seqs[-1]
            q += cnt
            by_name[info.name] = info
            infos.append(info)
        self._subjects.names.update(by_name.keys())
        seqs = self._seqs
        for pno, live, n in header["pages"]:
            page = Page(self._A_TYPE, self._B_TYPE)
            sid = array("I")
            sid.frombytes(next(it))
            page.subj = [infos[i] for i in sid]
            page.ts.frombytes(next(it))
            page.a.frombytes(next(it))  # type: ignore[union-attr]
            page.b.frombytes(next(it))  # type: ignore[union-attr]
            if not (len(page.subj) == len(page.ts) == len(page.a) == len(page.b) == n):  # type: ignore[arg-type]
                raise ValueError("page length mismatch")
            page.live = live
            seqs.pages[pno] = page
            seqs.pnos.append(pno)
            seqs.count += live
        if seqs.pnos:
            seqs._last_pno = seqs.pnos[-1]
            seqs._last_page = seqs.pages[seqs._last_pno]
        ttl_seqs = array("Q")
        ttl_seqs.frombytes(next(it))
        ttl_exps = array("q")
        ttl_exps.frombytes(next(it))
        self._ttl_exp = dict(zip(ttl_seqs, ttl_exps))
        self._ttl_heap = [(e, s) for s, e in self._ttl_exp.items()]
        heapq.heapify(self._ttl_heap)
        never = array("Q")
        never.frombytes(next(it))
        self._never = set(never)
        self._first = header["first"]
        self._first_ts = header["first_ts"]
        self._last = header["last"]
        self._last_ts = header["last_ts"]
        self._msgs = header["msgs"]
        self._bytes = header["bytes"]
        if seqs.count != self._msgs or sum(counts) != self._msgs:
            raise ValueError("message count mismatch")
        for blk in self._blocks.values():
            if blk.live == 0:
                self._newly_dead.add(blk.index)
            elif blk.live_bytes * 2 < blk.size:
                self._sparse.add(blk.index)
        return True

    # ================================================================ metadata
    def _meta_path(self, name: str) -> str:
        check_meta_name(name)
        return os.path.join(self._meta_dir, name)

    @_op
    def write_meta(self, name: str, data: bytes) -> None:
        path = self._meta_path(name)
        tmp = os.path.join(self._meta_dir, f".{name}.tmp")
        try:
            fileio.write_file(tmp, bytes(data))
            os.replace(tmp, path)
            self._fsync_dir(self._meta_dir)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            _log_write_error(self.directory, e)
            raise StoreWriteError(e) from None

    @_op
    def read_meta(self, name: str) -> bytes | None:
        try:
            with open(self._meta_path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    @_op
    def delete_meta(self, name: str) -> bool:
        try:
            os.unlink(self._meta_path(name))
        except FileNotFoundError:
            return False
        self._fsync_dir(self._meta_dir)
        return True

    @_op
    def list_meta(self) -> list[str]:
        return sorted(n for n in os.listdir(self._meta_dir) if not n.startswith("."))


def _log_write_error(directory: str, e: OSError) -> None:
    log.error("filestore %s: write failed: %s", directory, fileio.describe(e))


class _CorruptRecord(Exception):
    def __init__(self, seq: int, block: int, pos: int) -> None:
        super().__init__(seq, block, pos)
        self.seq, self.block, self.pos = seq, block, pos
