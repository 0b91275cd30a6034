"""Backend-independent store logic: limits, per-subject limits, TTL / max_age expiry, purge
variants and every query. `MemoryStore` and `FileStore` subclass `StoreCore` and only decide
where message bytes live (the `_persist_*`, `_load_slot`, `_slot_size` and `_on_*` hooks), so
both backends have the same semantics by construction.
"""

from __future__ import annotations

import functools
import heapq
import threading
from array import array
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from .base import (
    DiscardPolicy,
    ErrMaxBytes,
    ErrMaxMsgs,
    ErrMaxMsgSize,
    ErrMaxMsgsPerSubject,
    ErrSequenceMismatch,
    ErrStoreClosed,
    ErrTooManyResults,
    MsgStore,
    SimpleState,
    StoredMsg,
    StoreLimits,
    StreamState,
)
from .index import PAGE_BITS, PAGE_MASK, Page, SeqMap, SubjectIndex, SubjInfo
from .subjects import compile_filter, has_wildcard, is_all

NS_PER_S = 1_000_000_000
_ROLLUP = b"\r\nNats-Rollup:"

F = TypeVar("F", bound=Callable[..., Any])


def _op(fn: F) -> F:
    """Public-method wrapper: take the store lock, refuse when closed, and let the backend
    flush whatever the operation queued (file store: tombstones / state records) at the end."""

    @functools.wraps(fn)
    def wrapper(self: StoreCore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._closed:
                raise ErrStoreClosed()
            if self._io_pending:
                self._flush_pending_io()
            if self._after_op_noop:
                return fn(self, *args, **kwargs)
            try:
                return fn(self, *args, **kwargs)
            finally:
                self._after_op()

    return wrapper  # type: ignore[return-value]


class StoreCore(MsgStore):
    """Shared implementation; see `MsgStore` for the contract of each public method."""

    # Column layout of the SeqMap; backends override.
    _A_TYPE = "O"
    _B_TYPE: str | None = None
    # load_next_msgs honours max_bytes (False: loads copy nothing, so the cap is ignored)
    _BATCH_BYTES_CAP = True

    # an append that needs no limit check but the ones `_append` makes itself (see `limits`)
    _fast = False
    _fast_mms = 0
    _fast_evict = False
    # the last subject `_append` saw (a run of messages on one subject shares the str object)
    _ap_subj: str | None = None

    def __init__(self, limits: StoreLimits | None = None) -> None:
        self.limits = limits if limits is not None else StoreLimits()
        # the backend has no end-of-operation work: _op skips the call
        self._after_op_noop = type(self)._after_op is StoreCore._after_op
        self._lock = threading.RLock()
        self._closed = False
        self._seqs = SeqMap(self._A_TYPE, self._B_TYPE)
        self._subjects = SubjectIndex()
        self._msgs = 0
        self._bytes = 0
        self._first = 0
        self._first_ts = 0
        self._last = 0
        self._last_ts = 0
        # Per-message TTL: seq -> expiry ns, and a heap of (expiry, seq) with lazy deletion.
        self._ttl_exp: dict[int, int] = {}
        self._ttl_heap: list[tuple[int, int]] = []
        # Messages with a negative TTL ("never"): exempt from max_age.
        self._never: set[int] = set()
        # Bumped whenever sequences below last_seq can be reused (truncate), so a reader that
        # buffered messages knows a live sequence may now hold a different message.
        self.reuse_gen = 0
        # counts removals: a reader holding messages it loaded earlier knows they are all
        # still live while this has not moved (see Consumer._take_fresh)
        self.removals = 0

    @property
    def limits(self) -> StoreLimits:
        return self._limits

    @limits.setter
    def limits(self, lim: StoreLimits) -> None:
        """Adopt `lim` (treated as immutable: assign a new one to change it) and decide
        whether `store_msg` may take the backend's `_append` path: no per-subject limit and
        nothing a discard-new limit could refuse (max_msg_size and discard-old eviction are
        checked there)."""
        self._limits = lim
        old = lim.discard is DiscardPolicy.OLD
        self._fast = lim.max_msgs_per_subject <= 0 and (old or (lim.max_msgs <= 0 and lim.max_bytes <= 0))
        self._fast_mms = lim.max_msg_size
        self._fast_evict = old and (lim.max_msgs > 0 or lim.max_bytes > 0)

    # ---------------------------------------------------------------- backend hooks
    def _size_of(self, subject: str, hlen: int, dlen: int) -> int:
        """Accounting size of a message (what max_bytes and state.bytes count)."""
        raise NotImplementedError

    def _slot_size(self, page: Page, off: int, info: SubjInfo) -> int:
        raise NotImplementedError

    def _persist_msg(self, seq: int, subject: str, hdr: bytes | None, data: bytes, ts: int, ttl: int) -> tuple[Any, int]:
        """Store the bytes; return the (a, b) column values for the slot."""
        raise NotImplementedError

    def _load_slot(self, seq: int, info: SubjInfo, page: Page, off: int) -> StoredMsg:
        raise NotImplementedError

    def _on_removed(self, seq: int, a: Any, b: int, ts: int, erase: bool) -> None:
        """A live message was removed (slot already cleared)."""

    def _on_purged(self) -> None:
        """Everything was dropped at once (purge / reset / compact past the end)."""

    def _on_skipped(self) -> None:
        """last_seq (and maybe first_seq) moved without a message."""

    def _on_truncated(self, seq: int) -> None:
        """Messages above `seq` were removed and last_seq lowered to `seq`."""

    def _after_op(self) -> None:
        """End of a public operation."""

    def _append(self, subject: str, hdr: bytes | None, data: bytes, ts: int) -> tuple[int, int] | None:
        """`_store_msg` for a message without TTL when `_fast` holds, written flat for the
        backend (the per-message ingest path): the same effects, in the same order, or None
        (before changing anything) for `_store_msg` to take it. It ends the operation itself
        (what `_after_op` does). `hdr` is None or non-empty bytes, `data` bytes. The base
        class has no such path."""
        return None

    def _index_append(self, seq: int, subject: str, ts: int, a: Any, b: int, size: int) -> None:
        """What `_store_msg` does after persisting a message without TTL (last, `_insert`),
        inlined for `_append`; the caller then checks eviction and ends the operation."""
        self._last = seq
        self._last_ts = ts
        subjects = self._subjects
        info = subjects.by_name.get(subject)
        if info is None:
            info = subjects.add(subject, None, seq)
        else:
            n = info.msgs
            if n > 1:
                info.seqs.append(seq)  # type: ignore[union-attr]
            elif n == 1:
                info.seqs = array("Q", (info.first, seq))
                info.head = 0
            else:
                info.first = seq
            info.last = seq
            info.msgs = n + 1
        seqs = self._seqs
        page = seqs._last_page
        if page is not None and seq >> PAGE_BITS == seqs._last_pno and len(page.subj) == seq & PAGE_MASK:
            page.subj.append(info)
            page.ts.append(ts)
            page.a.append(a)
            if page.b is not None:
                page.b.append(b)
            page.live += 1
            seqs.count += 1
        else:
            seqs.append(seq, info, ts, a, b)
        self._bytes += size
        self._msgs += 1
        if self._msgs == 1:
            self._first = seq
            self._first_ts = ts
        if self._fast_evict:
            lim = self._limits
            if 0 < lim.max_msgs < self._msgs or 0 < lim.max_bytes < self._bytes:
                self._enforce_limits()

    def _index_extend(self, seq: int, subject: str, ts: int, a_col: list[Any], b_col: list[int] | None,
                      size: int) -> None:
        """`_index_append` for len(a_col) messages on `subject`: seq, seq+1, ... stamped ts,
        ts+1, ... with columns a_col[i] (b_col[i]) and `size` bytes in all, when nothing can
        be evicted (not `_fast_evict`): the same index, built a page at a time."""
        m = len(a_col)
        self._index_append(seq, subject, ts, a_col[0], b_col[0] if b_col is not None else 0, 0)
        if m > 1:
            info = self._subjects.by_name[subject]
            last = seq + m - 1
            if info.msgs == 1:
                info.seqs = array("Q", (info.first,))
                info.head = 0
            info.seqs.extend(range(seq + 1, last + 1))  # type: ignore[union-attr]
            info.last = last
            info.msgs += m - 1
            seqs = self._seqs
            i = 1
            s = seq + 1
            while i < m:
                page = seqs._last_page
                if page is not None and s >> PAGE_BITS == seqs._last_pno and len(page.subj) == s & PAGE_MASK:
                    c = min(PAGE_MASK + 1 - (s & PAGE_MASK), m - i)
                    page.subj.extend([info] * c)
                    page.ts.extend(range(ts + i, ts + i + c))
                    page.a.extend(a_col[i:i + c])
                    if page.b is not None:
                        page.b.extend(b_col[i:i + c])  # type: ignore[index]
                    page.live += c
                    seqs.count += c
                    i += c
                    s += c
                else:
                    seqs.append(s, info, ts + i, a_col[i], b_col[i] if b_col is not None else 0)
                    i += 1
                    s += 1
            self._last = last
            self._last_ts = ts + m - 1
            self._msgs += m - 1
        self._bytes += size

    # set by a backend holding writes back (file store: deferred appends); every public
    # operation but store_msg completes them first, so nothing ever reads around them
    _io_pending = False

    def _flush_pending_io(self) -> None:
        """Complete writes held back by the backend (see `_io_pending`)."""

    def flush_writes(self) -> None:
        """Complete every write held back so far (raises StoreError if one fails)."""
        with self._lock:
            if self._io_pending and not self._closed:
                self._flush_pending_io()

    # ---------------------------------------------------------------- internals
    def _insert(self, seq: int, subject: str, info: SubjInfo | None, ts: int, a: Any, b: int, size: int, ttl: int) -> SubjInfo:
        info = self._subjects.add(subject, info, seq)
        self._seqs.append(seq, info, ts, a, b)
        self._msgs += 1
        self._bytes += size
        if self._msgs == 1:
            self._first = seq
            self._first_ts = ts
        if ttl > 0:
            exp = ts + ttl * NS_PER_S
            self._ttl_exp[seq] = exp
            heapq.heappush(self._ttl_heap, (exp, seq))
        elif ttl < 0:
            self._never.add(seq)
        return info

    def _remove_seq(self, seq: int, erase: bool = False) -> bool:
        loc = self._seqs.get(seq)
        if loc is None:
            return False
        page, off = loc
        info = page.subj[off]
        assert info is not None
        size = self._slot_size(page, off, info)
        a = page.a[off]
        b = page.b[off] if page.b is not None else 0
        ts = page.ts[off]
        self._seqs.remove(seq)
        self.removals += 1
        self._subjects.remove(info, seq)
        self._msgs -= 1
        self._bytes -= size
        if self._ttl_exp and self._ttl_exp.pop(seq, None) is not None:
            if len(self._ttl_heap) > 2 * len(self._ttl_exp) + 64:
                # Too many stale heap entries: rebuild from the live map.
                self._ttl_heap = [(e, s) for s, e in self._ttl_exp.items()]
                heapq.heapify(self._ttl_heap)
        if self._never:
            self._never.discard(seq)
        if seq == self._first:
            self._advance_first(seq + 1)
        self._on_removed(seq, a, b, ts, erase)
        return True

    def _advance_first(self, start: int) -> None:
        if self._msgs == 0:
            self._first = self._last + 1
            self._first_ts = 0
            return
        nxt = self._seqs.first_live(start)
        assert nxt is not None
        self._first = nxt
        loc = self._seqs.get(nxt)
        assert loc is not None
        self._first_ts = loc[0].ts[loc[1]]

    def _reset_all(self) -> None:
        self._seqs.clear()
        self.removals += 1
        self._subjects.clear()
        self._ttl_exp.clear()
        self._ttl_heap.clear()
        self._never.clear()
        self._msgs = 0
        self._bytes = 0
        self._first = self._last + 1
        self._first_ts = 0

    def _remove_first_of(self, info: SubjInfo) -> None:
        self._remove_seq(info.first)

    def _enforce_per_subject(self, info: SubjInfo, maxp: int) -> None:
        while info.msgs > maxp:
            self._remove_seq(info.first)

    def _enforce_limits(self) -> None:
        """Discard-old eviction for max_msgs then max_bytes (nats-server order)."""
        lim = self.limits
        if lim.discard is not DiscardPolicy.OLD:
            return
        if lim.max_msgs > 0:
            while self._msgs > lim.max_msgs:
                self._remove_seq(self._first)
        if lim.max_bytes > 0:
            while self._bytes > lim.max_bytes and self._msgs:
                self._remove_seq(self._first)

    def _load(self, seq: int) -> StoredMsg | None:
        loc = self._seqs.get(seq)
        if loc is None:
            return None
        page, off = loc
        info = page.subj[off]
        assert info is not None
        return self._load_slot(seq, info, page, off)

    def _load_many(self, items: list[tuple[int, SubjInfo, Page, int]]) -> list[StoredMsg | None]:
        """Load the (seq, info, page, offset) slots from `SeqMap.iter_live` (collected first: a
        backend may drop an unreadable record, giving None for it)."""
        load_slot = self._load_slot
        return [load_slot(seq, info, page, off) for seq, info, page, off in items]

    def _clamp_start(self, start: int) -> int:
        return start if start > self._first else self._first

    def _scan_matching(self, filter_subject: str, lo: int, hi: int) -> Iterator[int]:
        """Live sequences in [lo, hi] on subjects matching the filter, ascending, by a linear
        walk with a per-subject match cache (used when many subjects could match)."""
        matcher = compile_filter(filter_subject)
        cache: dict[SubjInfo, bool] = {}
        for seq, info, _, _ in self._seqs.iter_live(lo, hi):
            m = cache.get(info)
            if m is None:
                m = cache[info] = matcher(info.name)
            if m:
                yield seq

    def _matching_seqs(self, filter_subject: str, lo: int, hi: int) -> Iterator[int]:
        """Live matching sequences in [lo, hi], ascending, choosing the cheaper strategy."""
        if lo > hi:
            return iter(())
        if self._subjects.covers_all(filter_subject):
            return (s for s, _, _, _ in self._seqs.iter_live(lo, hi))
        if not has_wildcard(filter_subject):
            info = self._subjects.get(filter_subject)
            return iter(info.seqs_between(lo, hi) if info else ())
        if self._subjects.candidates(filter_subject) > 1024:
            return self._scan_matching(filter_subject, lo, hi)
        lists = [i.seqs_between(lo, hi) for i in self._subjects.match(filter_subject)]
        lists = [x for x in lists if x]
        if len(lists) == 1:
            return iter(lists[0])
        return heapq.merge(*lists)

    # ---------------------------------------------------------------- writing
    def store_msg(self, subject: str, hdr: bytes | None, data: bytes, ts: int, ttl: int = 0) -> tuple[int, int]:
        # what _op does, written out: this is the per-message ingest call
        with self._lock:
            if self._closed:
                raise ErrStoreClosed()
            if self._fast and not ttl and type(data) is bytes and (not hdr or type(hdr) is bytes):
                r = self._append(subject, hdr or None, data, ts)
                if r is not None:
                    return r
            if self._after_op_noop:
                return self._store_msg(subject, hdr, data, ts, ttl)
            try:
                return self._store_msg(subject, hdr, data, ts, ttl)
            finally:
                self._after_op()

    def store_run(self, subject: str, datas: Sequence[bytes], start: int, ts: int) -> tuple[int, int]:
        """See `MsgStore.store_run`: each message as `store_msg` would take it by the
        backend's `_append` path; the run stops (before changing anything for it) at the
        first that needs the general path or would raise."""
        with self._lock:
            if self._closed:
                raise ErrStoreClosed()
            if not self._fast:
                return 0, 0
            k = self._append_run(subject, datas, start, ts)
            return (k, self._last) if k else (0, 0)

    def _append_run(self, subject: str, datas: Sequence[bytes], start: int, ts: int) -> int:
        """`store_run` under the lock: `_append` for each, stopping at the first it declines."""
        n = len(datas)
        i = start
        append = self._append
        mms = self._fast_mms
        while i < n:
            data = datas[i]
            if type(data) is not bytes or (mms > 0 and len(data) > mms) or \
                    append(subject, None, data, ts) is None:
                break
            ts += 1
            i += 1
        return i - start

    def _store_msg(self, subject: str, hdr: bytes | None, data: bytes, ts: int, ttl: int) -> tuple[int, int]:
        if not hdr:
            hdr = None
        if type(data) is not bytes:
            data = bytes(data)
        if hdr is not None and type(hdr) is not bytes:
            hdr = bytes(hdr)
        lim = self.limits
        hlen = len(hdr) if hdr else 0
        dlen = len(data)
        if lim.max_msg_size > 0 and hlen + dlen > lim.max_msg_size:
            raise ErrMaxMsgSize()
        size = self._size_of(subject, hlen, dlen)
        info = self._subjects.get(subject)
        maxp = lim.max_msgs_per_subject
        at_subject_limit = maxp > 0 and info is not None and info.msgs >= maxp
        if lim.discard is DiscardPolicy.NEW:
            # Same precedence as nats-server: per-subject, then msgs, then bytes. A message
            # that will replace its subject's oldest (per-subject limit) does not grow msgs.
            if at_subject_limit and lim.discard_new_per_subject and not (hdr and _ROLLUP in hdr):
                raise ErrMaxMsgsPerSubject()
            if lim.max_msgs > 0 and self._msgs >= lim.max_msgs and not at_subject_limit:
                raise ErrMaxMsgs()
            if lim.max_bytes > 0 and self._bytes + size > lim.max_bytes:
                if not at_subject_limit:
                    raise ErrMaxBytes()
                assert info is not None
                loc = self._seqs.get(info.first)
                assert loc is not None
                if self._slot_size(loc[0], loc[1], info) < size:
                    raise ErrMaxBytes()
        seq = self._last + 1
        a, b = self._persist_msg(seq, subject, hdr, data, ts, ttl)
        self._last = seq
        self._last_ts = ts
        info = self._insert(seq, subject, info, ts, a, b, size, ttl)
        if maxp > 0 and info.msgs > maxp:
            self._enforce_per_subject(info, maxp)
        self._enforce_limits()
        return seq, ts

    @_op
    def skip_msg(self, ts: int | None = None) -> int:
        seq = self._last + 1
        self._skip(seq, 1, ts)
        return seq

    @_op
    def skip_msgs(self, seq: int, num: int, ts: int | None = None) -> None:
        if num <= 0:
            return
        self._skip(seq, num, ts)

    def _skip(self, seq: int, num: int, ts: int | None) -> None:
        if seq == 0:
            seq = self._last + 1
        elif seq != self._last + 1:
            raise ErrSequenceMismatch()
        self._last = seq + num - 1
        if ts and not self._last_ts:
            self._last_ts = ts
        if self._msgs == 0:
            self._first = self._last + 1
            self._first_ts = 0
        self._on_skipped()

    # ---------------------------------------------------------------- reading
    @_op
    def load_msg(self, seq: int) -> StoredMsg | None:
        return self._load(seq)

    @_op
    def subject_for_seq(self, seq: int) -> str | None:
        loc = self._seqs.get(seq)
        if loc is None:
            return None
        info = loc[0].subj[loc[1]]
        return info.name if info is not None else None

    @_op
    def load_next_msg(self, filter_subject: str, start_seq: int) -> tuple[StoredMsg | None, int]:
        start = start_seq
        while True:
            seq = self._next_matching(filter_subject, start)
            if seq is None:
                return None, self._last + 1
            msg = self._load(seq)
            if msg is not None:
                return msg, seq + 1
            start = seq + 1  # unreadable record (file store dropped it): keep looking

    @_op
    def load_next_msgs(self, filter_subject: str, start_seq: int, max_msgs: int,
                       max_bytes: int = 0) -> tuple[list[StoredMsg], int]:
        """Up to `max_msgs` messages that `load_next_msg` would return one after another from
        `start_seq`, under one lock acquisition; with `max_bytes`, stop once about that many
        bytes were read (at least one message is returned; a backend whose loads copy nothing
        may ignore it). Returns (msgs, next): when
        the store ran out, `next` is what `load_next_msg` returns at the end (last_seq + 1),
        else the sequence after the last message returned."""
        out: list[StoredMsg] = []
        if max_msgs <= 0:
            return out, start_seq
        if max_bytes <= 0 or not self._BATCH_BYTES_CAP:
            max_bytes = 1 << 62
        nbytes = 0
        start = start_seq
        load = self._load
        if self._msgs and self._subjects.covers_all(filter_subject):
            return self._load_live(self._clamp_start(start), max_msgs, max_bytes)
        while True:
            seq = self._next_matching(filter_subject, start)
            if seq is None:
                return out, self._last + 1
            msg = load(seq)
            start = seq + 1
            if msg is not None:
                out.append(msg)
                hdr = msg.hdr
                nbytes += len(msg.data) + (len(hdr) if hdr else 0)
                if len(out) >= max_msgs or nbytes >= max_bytes:
                    return out, start

    def _load_live(self, start: int, max_msgs: int, max_bytes: int) -> tuple[list[StoredMsg], int]:
        """`load_next_msgs` when every message matches: one walk over the live slots from
        `start` instead of a search per message, then one load of them all (the file store
        reads adjacent records with one pread, and overrides this with a one-pass reader).
        `max_bytes` counts `_slot_size` (1 << 62 or more: no cap)."""
        items = []
        nbytes = 0
        slot_size = self._slot_size if max_bytes < 1 << 62 else None
        nxt = self._last + 1
        for item in self._seqs.iter_live(start, self._last):
            items.append(item)
            if slot_size is not None:
                nbytes += slot_size(item[2], item[3], item[1])
            if len(items) >= max_msgs or nbytes >= max_bytes:
                nxt = item[0] + 1
                break
        return [m for m in self._load_many(items) if m is not None], nxt

    def is_live(self, seq: int) -> bool:
        """Whether `seq` holds a message, without the lock (a single index probe, for a reader
        that checks messages it buffered from `load_next_msgs` are still there)."""
        return self._seqs.get(seq) is not None

    def _next_matching(self, filter_subject: str, start_seq: int) -> int | None:
        if self._msgs == 0:
            return None
        start = self._clamp_start(start_seq)
        if start > self._last:
            return None
        if self._subjects.covers_all(filter_subject):
            return self._seqs.first_live(start)
        if not has_wildcard(filter_subject):
            info = self._subjects.get(filter_subject)
            return info.next_ge(start) if info is not None else None
        ncand = self._subjects.candidates(filter_subject)
        if ncand <= 1024 or (self._last - start) > 8 * ncand:
            best = None
            for info in self._subjects.match(filter_subject):
                s = info.next_ge(start)
                if s is not None and (best is None or s < best):
                    best = s
            return best
        return next(self._scan_matching(filter_subject, start, self._last), None)

    @_op
    def load_last_msg(self, subject_filter: str) -> StoredMsg | None:
        if self._msgs == 0:
            return None
        seq: int | None
        if self._subjects.covers_all(subject_filter):
            seq = self._seqs.last_live(self._last)
        elif not has_wildcard(subject_filter):
            info = self._subjects.get(subject_filter)
            seq = info.last if info is not None else None
        else:
            seq = max((i.last for i in self._subjects.match(subject_filter)), default=None)
        return self._load(seq) if seq is not None else None

    @_op
    def load_recent_with_headers(self, since_ts: int) -> list[StoredMsg]:
        """The newest messages stamped at or after `since_ts` (walking back from the last one
        to the first older one) that carry headers, ascending. Only those are read: what a
        stream's restart needs (Nats-Msg-Id within the duplicate window, Nats-TTL for delete
        markers) without loading every message."""
        has_hdr = self._has_headers
        items = []
        for seq, info, page, off in self._seqs.iter_live_rev(self._last, self._first):
            if page.ts[off] < since_ts:
                break
            if has_hdr(page, off):
                items.append((seq, info, page, off))
        items.reverse()
        return [m for m in self._load_many(items) if m is not None]

    def _has_headers(self, page: Page, off: int) -> bool:
        """Does the message in this slot carry headers? (backends answer from the index)"""
        raise NotImplementedError

    @_op
    def load_prev_msg(self, filter_subject: str, start_seq: int) -> StoredMsg | None:
        if self._msgs == 0 or start_seq < self._first:
            return None
        start = min(start_seq, self._last)
        seq: int | None
        if self._subjects.covers_all(filter_subject):
            seq = self._seqs.last_live(start)
        elif not has_wildcard(filter_subject):
            info = self._subjects.get(filter_subject)
            seq = info.last_le(start) if info is not None else None
        elif self._subjects.candidates(filter_subject) <= 1024:
            seq = max((s for i in self._subjects.match(filter_subject) if (s := i.last_le(start)) is not None), default=None)
        else:
            matcher = compile_filter(filter_subject)
            seq = None
            for s, info, _, _ in self._seqs.iter_live_rev(start, self._first):
                if matcher(info.name):
                    seq = s
                    break
        return self._load(seq) if seq is not None else None

    # ---------------------------------------------------------------- removing
    @_op
    def remove_msg(self, seq: int) -> bool:
        return self._remove_seq(seq)

    @_op
    def erase_msg(self, seq: int) -> bool:
        return self._remove_seq(seq, erase=True)

    @_op
    def purge(self) -> int:
        return self._purge()

    def _purge(self) -> int:
        n = self._msgs
        self._reset_all()
        self._on_purged()
        return n

    @_op
    def purge_ex(self, subject_filter: str = "", seq: int = 0, keep: int = 0) -> int:
        if seq == 1:
            return 0  # "up to but not including 1"
        if is_all(subject_filter):
            if keep == 0 and seq == 0:
                return self._purge()
            if seq > 1:
                return self._compact(seq)
            subject_filter = ">"
        ss = self._filtered_state(subject_filter, 0)
        if ss.msgs == 0:
            return 0
        maxp = 0
        if keep > 0:
            if keep >= ss.msgs:
                return 0
            maxp = ss.msgs - keep
        last = ss.last if seq == 0 else min(seq - 1, ss.last)
        victims: list[int] = []
        for s in self._matching_seqs(subject_filter, ss.first, last):
            victims.append(s)
            if maxp and len(victims) >= maxp:
                break
        for s in victims:
            self._remove_seq(s)
        return len(victims)

    @_op
    def compact(self, seq: int) -> int:
        return self._compact(seq)

    def _compact(self, seq: int) -> int:
        if seq == 0:
            return self._purge()
        if self._first > seq:
            return 0
        if seq <= self._last:
            victims = [s for s, _, _, _ in self._seqs.iter_live(self._first, seq - 1)]
            for s in victims:
                self._remove_seq(s)
            if self._msgs == 0:
                self._first = self._last + 1
            elif self._first < seq:  # pragma: no cover - defensive
                self._advance_first(seq)
            return len(victims)
        # Past the end: empty store whose next message gets `seq`.
        n = self._msgs
        self._last = seq - 1
        self._reset_all()
        self._first = seq
        self._on_purged()
        return n

    @_op
    def truncate(self, seq: int) -> None:
        self.reuse_gen += 1
        if seq == 0:
            self._last = 0
            self._last_ts = 0
            self._reset_all()
            self._first = 0
            self._on_purged()
            return
        if seq >= self._last:
            return
        victims = [s for s, _, _, _ in self._seqs.iter_live(seq + 1, self._last)]
        for s in reversed(victims):
            self._remove_seq(s)
        loc = self._seqs.get(seq)
        if loc is not None:
            self._last_ts = loc[0].ts[loc[1]]
        self._last = seq
        self._seqs.trim_after(seq)
        if self._msgs == 0:
            self._first = seq + 1
            self._first_ts = 0
        self._on_truncated(seq)

    @_op
    def expire(self, now_ns: int) -> list[int]:
        removed: list[int] = []
        max_age = self.limits.max_age
        if max_age > 0 and self._msgs:
            min_ts = now_ns - max_age
            never = self._never
            for seq, _, page, off in self._seqs.iter_live(self._first, self._last):
                if page.ts[off] > min_ts:
                    break
                if never and seq in never:
                    continue
                removed.append(seq)
            for seq in removed:
                self._remove_seq(seq)
        heap = self._ttl_heap
        if heap:
            ttl_exp = self._ttl_exp
            extra = []
            while heap and heap[0][0] <= now_ns:
                exp, seq = heapq.heappop(heap)
                if ttl_exp.get(seq) == exp and self._remove_seq(seq):
                    extra.append(seq)
            if extra:
                removed.extend(extra)
                removed.sort()
        return removed

    @_op
    def next_expiry(self) -> int | None:
        best: int | None = None
        heap = self._ttl_heap
        while heap and self._ttl_exp.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # stale
        if heap:
            best = heap[0][0]
        max_age = self.limits.max_age
        if max_age > 0 and self._msgs:
            never = self._never
            for seq, _, page, off in self._seqs.iter_live(self._first, self._last):
                if never and seq in never:
                    continue
                t = page.ts[off] + max_age
                if best is None or t < best:
                    best = t
                break
        return best

    # ---------------------------------------------------------------- state
    @_op
    def state(self, deleted_details: bool = False) -> StreamState:
        st = StreamState(
            msgs=self._msgs,
            bytes=self._bytes,
            first_seq=self._first,
            first_ts=self._first_ts,
            last_seq=self._last,
            last_ts=self._last_ts,
            num_subjects=len(self._subjects),
        )
        if self._msgs:
            st.num_deleted = self._last - self._first + 1 - self._msgs
        if deleted_details:
            st.deleted = self._seqs.absent(self._first, self._last) if st.num_deleted else []
        return st

    @_op
    def filtered_state(self, subject_filter: str = ">", start_seq: int = 0) -> SimpleState:
        return self._filtered_state(subject_filter, start_seq)

    def _filtered_state(self, subject_filter: str, start_seq: int) -> SimpleState:
        if self._msgs == 0:
            return SimpleState()
        start = self._clamp_start(start_seq)
        if start > self._last:
            return SimpleState()
        if self._subjects.covers_all(subject_filter):
            n = self._seqs.count_range(start, self._last)
            if n == 0:
                return SimpleState()
            first = self._seqs.first_live(start)
            last = self._seqs.last_live(self._last)
            assert first is not None and last is not None
            return SimpleState(n, first, last)
        ss = SimpleState()
        for info in self._subjects.match(subject_filter):
            n = info.count_ge(start)
            if not n:
                continue
            ss.msgs += n
            f = info.next_ge(start)
            assert f is not None
            if ss.first == 0 or f < ss.first:
                ss.first = f
            if info.last > ss.last:
                ss.last = info.last
        return ss

    @_op
    def subjects_state(self, subject_filter: str = ">") -> dict[str, SimpleState]:
        return {i.name: SimpleState(i.msgs, i.first, i.last) for i in self._subjects.match(subject_filter)}

    @_op
    def subjects_totals(self, subject_filter: str = ">") -> dict[str, int]:
        return {i.name: i.msgs for i in self._subjects.match(subject_filter)}

    @_op
    def num_pending(self, start_seq: int, filter_subject: str = ">", last_per_subject: bool = False) -> int:
        if self._msgs == 0:
            return 0
        start = self._clamp_start(start_seq)
        if start > self._last:
            return 0
        if last_per_subject:
            return sum(1 for i in self._subjects.match(filter_subject) if i.last >= start)
        if self._subjects.covers_all(filter_subject):
            return self._seqs.count_range(start, self._last)
        return sum(i.count_ge(start) for i in self._subjects.match(filter_subject))

    @_op
    def multi_last_seqs(self, filters: Iterable[str], max_seq: int = 0, max_allowed: int = 0) -> list[int]:
        if self._msgs == 0:
            return []
        if max_seq <= 0:
            max_seq = self._last
        found: set[int] = set()
        for f in filters:
            for info in self._subjects.match(f):
                s = info.last_le(max_seq)
                if s is not None:
                    found.add(s)
            if max_allowed > 0 and len(found) > max_allowed:
                raise ErrTooManyResults()
        return sorted(found)

    # ---------------------------------------------------------------- config
    @_op
    def update_config(self, limits: StoreLimits) -> None:
        old = self.limits
        self.limits = limits
        self._enforce_limits()
        maxp = limits.max_msgs_per_subject
        if maxp > 0 and (old.max_msgs_per_subject <= 0 or maxp < old.max_msgs_per_subject):
            for info in [i for i in self._subjects.by_name.values() if i.msgs > maxp]:
                self._enforce_per_subject(info, maxp)
