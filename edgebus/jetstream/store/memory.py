"""MemoryStore: the `MsgStore` kept entirely in RAM (stream `storage: memory`).

Layout (per message): one slot in each of three page columns of `SeqMap` (subject-info pointer,
int64 timestamp in an array, payload pointer) plus the payload object itself — the `bytes` data
when there are no headers, else a `(hdr, data)` tuple. Subject strings are shared through the
subject index. Byte accounting uses nats-server's memstore formula
(`len(subject) + len(hdr) + len(data) + 16`).
"""

from __future__ import annotations

from typing import Any, Sequence

from .base import ErrMaxMsgSize, StoredMsg, StoreLimits, check_meta_name
from .base import new_stored_msg as _new_sm
from .core import StoreCore, _op
from .index import Page, SubjInfo


def _blen(s: str) -> int:
    """Subject length in bytes, as nats-server counts it."""
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogateescape"))


class MemoryStore(StoreCore):
    """In-memory message store. `erase_msg` cannot scrub Python's immutable bytes; it drops
    the store's references (same visible effect as remove)."""

    _A_TYPE = "O"
    # a loaded message shares the stored bytes objects: a batch load copies nothing, so it
    # needs no byte cap
    _BATCH_BYTES_CAP = False

    def __init__(self, limits: StoreLimits | None = None) -> None:
        super().__init__(limits)
        self._meta: dict[str, bytes] = {}

    # ---------------------------------------------------------------- hooks
    def _size_of(self, subject: str, hlen: int, dlen: int) -> int:
        return _blen(subject) + hlen + dlen + 16

    def _slot_size(self, page: Page, off: int, info: SubjInfo) -> int:
        p = page.a[off]
        if type(p) is bytes:
            return _blen(info.name) + len(p) + 16
        return _blen(info.name) + len(p[0]) + len(p[1]) + 16

    def _has_headers(self, page: Page, off: int) -> bool:
        return type(page.a[off]) is not bytes

    def _persist_msg(self, seq: int, subject: str, hdr: bytes | None, data: bytes, ts: int, ttl: int) -> tuple[Any, int]:
        return (data if hdr is None else (hdr, data)), 0

    _ap_slen = 0

    def _append(self, subject: str, hdr: bytes | None, data: bytes, ts: int) -> tuple[int, int] | None:
        if subject is self._ap_subj:
            slen = self._ap_slen
        else:
            if not subject.isascii():
                return None
            slen = self._ap_slen = len(subject)
            self._ap_subj = subject
        n = len(data) if hdr is None else len(data) + len(hdr)
        mms = self._fast_mms
        if mms > 0 and n > mms:
            raise ErrMaxMsgSize()
        seq = self._last + 1
        self._index_append(seq, subject, ts, data if hdr is None else (hdr, data), 0, slen + n + 16)
        return seq, ts

    def _append_run(self, subject: str, datas: Sequence[bytes], start: int, ts: int) -> int:
        """`_append` for each of `datas[start:]`; with nothing to evict, indexed in one go."""
        if self._fast_evict:
            return super()._append_run(subject, datas, start, ts)
        if subject is not self._ap_subj:
            if not subject.isascii():
                return 0
            self._ap_slen = len(subject)
            self._ap_subj = subject
        mms = self._fast_mms
        n = len(datas)
        j = start
        size = 0
        while j < n:
            data = datas[j]
            if type(data) is not bytes or (mms > 0 and len(data) > mms):
                break
            size += len(data)
            j += 1
        m = j - start
        if m:
            part = datas[start:j]
            self._index_extend(self._last + 1, subject, ts, part if type(part) is list else list(part),
                               None, size + m * (self._ap_slen + 16))
        return m

    def _load_many(self, items: list[tuple[int, SubjInfo, Page, int]]) -> list[StoredMsg | None]:
        out: list[StoredMsg | None] = []
        for seq, info, page, off in items:
            p = page.a[off]
            if type(p) is bytes:
                out.append(_new_sm(StoredMsg, (seq, info.name, None, p, page.ts[off])))
            else:
                out.append(_new_sm(StoredMsg, (seq, info.name, p[0], p[1], page.ts[off])))
        return out

    def _load_slot(self, seq: int, info: SubjInfo, page: Page, off: int) -> StoredMsg:
        p = page.a[off]
        if type(p) is bytes:
            return _new_sm(StoredMsg, (seq, info.name, None, p, page.ts[off]))
        return _new_sm(StoredMsg, (seq, info.name, p[0], p[1], page.ts[off]))

    # ---------------------------------------------------------------- lifecycle
    def sync(self) -> None:
        pass  # nothing to make durable

    def stop(self) -> None:
        with self._lock:
            self._closed = True

    def delete(self) -> None:
        with self._lock:
            self._reset_all()
            self._meta.clear()
            self._closed = True

    # ---------------------------------------------------------------- metadata
    @_op
    def write_meta(self, name: str, data: bytes) -> None:
        check_meta_name(name)
        self._meta[name] = bytes(data)

    @_op
    def read_meta(self, name: str) -> bytes | None:
        check_meta_name(name)
        return self._meta.get(name)

    @_op
    def delete_meta(self, name: str) -> bool:
        check_meta_name(name)
        return self._meta.pop(name, None) is not None

    @_op
    def list_meta(self) -> list[str]:
        return sorted(self._meta)
