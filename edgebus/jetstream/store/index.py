"""In-memory indexes shared by both stores: sequence -> slot (`SeqMap`) and per-subject state
(`SubjectIndex`).

`SeqMap` keeps one slot per sequence in fixed-size pages of parallel columns (subject info,
timestamp, and one or two backend columns: the payload for the memory store, the on-disk
location/size for the file store). Columns are Python lists or `array`s, so a stored message
costs a few machine words instead of an object graph, deleted sequences cost nothing beyond an
empty slot, and empty pages are dropped (big gaps are free).

`SubjectIndex` keeps, per subject, the message count and first/last sequence, plus the exact
ascending list of live sequences (an `array('Q')`, only once a subject has 2+ messages). That makes
last-by-subject, per-subject limits, "next message on subject >= n" and filtered counting
O(log n) without scanning, and a sorted list of subject names answers wildcard filters by
range-scanning their literal prefix.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from typing import Iterator

from sortedcontainers import SortedList

from .subjects import compile_filter, has_wildcard, is_all, literal_prefix

PAGE_BITS = 12
PAGE_SIZE = 1 << PAGE_BITS
PAGE_MASK = PAGE_SIZE - 1


# --------------------------------------------------------------------------------------------
# Per-subject index
# --------------------------------------------------------------------------------------------


class SubjInfo:
    """Live state of one subject. Invariant: when `msgs >= 2`, `seqs[head:]` is exactly the
    ascending list of live sequences on this subject; when `msgs == 1`, `seqs` is None and
    `first == last`. Stored by reference in every `SeqMap` slot of the subject, so a slot's
    subject is compared by identity."""

    __slots__ = ("name", "msgs", "first", "last", "seqs", "head")

    def __init__(self, name: str) -> None:
        self.name = name
        self.msgs = 0
        self.first = 0
        self.last = 0
        self.seqs: array | None = None
        self.head = 0

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"SubjInfo({self.name!r}, msgs={self.msgs}, first={self.first}, last={self.last})"

    def count_ge(self, seq: int) -> int:
        """Live messages on this subject with sequence >= seq."""
        if seq <= self.first:
            return self.msgs
        if seq > self.last:
            return 0
        seqs = self.seqs
        assert seqs is not None  # first < seq <= last implies 2+ messages
        return len(seqs) - bisect_left(seqs, seq, self.head)

    def next_ge(self, seq: int) -> int | None:
        """Smallest live sequence >= seq, or None."""
        if seq <= self.first:
            return self.first
        if seq > self.last:
            return None
        seqs = self.seqs
        assert seqs is not None
        return seqs[bisect_left(seqs, seq, self.head)]

    def last_le(self, seq: int) -> int | None:
        """Largest live sequence <= seq, or None."""
        if seq >= self.last:
            return self.last
        if seq < self.first:
            return None
        seqs = self.seqs
        assert seqs is not None
        return seqs[bisect_right(seqs, seq, self.head) - 1]

    def seqs_between(self, lo: int, hi: int) -> list[int]:
        """Live sequences in [lo, hi], ascending."""
        if hi < self.first or lo > self.last:
            return []
        seqs = self.seqs
        if seqs is None:
            return [self.first]
        i = bisect_left(seqs, lo, self.head)
        j = bisect_right(seqs, hi, i)
        return seqs[i:j].tolist()


class SubjectIndex:
    """All subjects with at least one live message."""

    __slots__ = ("by_name", "names", "_bulk")

    def __init__(self) -> None:
        self.by_name: dict[str, SubjInfo] = {}
        self.names: SortedList = SortedList()
        self._bulk = False

    def begin_bulk(self) -> None:
        """Stop maintaining the sorted name list (bulk loading); `end_bulk` rebuilds it in one
        sort, much cheaper than a million single inserts."""
        self._bulk = True

    def end_bulk(self) -> None:
        self._bulk = False
        self.names = SortedList(self.by_name)

    def __len__(self) -> int:
        return len(self.by_name)

    def get(self, name: str) -> SubjInfo | None:
        return self.by_name.get(name)

    def clear(self) -> None:
        self.by_name.clear()
        self.names.clear()

    def add(self, name: str, info: SubjInfo | None, seq: int) -> SubjInfo:
        """Record a new live message; `seq` must exceed every live sequence of the subject."""
        if info is None:
            info = self.by_name.get(name)
            if info is None:
                info = SubjInfo(name)
                self.by_name[name] = info
                if not self._bulk:
                    self.names.add(name)
        n = info.msgs
        if n == 0:
            info.first = seq
        elif n == 1:
            info.seqs = array("Q", (info.first, seq))
            info.head = 0
        else:
            info.seqs.append(seq)  # type: ignore[union-attr]
        info.last = seq
        info.msgs = n + 1
        return info

    def remove(self, info: SubjInfo, seq: int) -> None:
        """Forget live message `seq` of `info` (which must be live)."""
        n = info.msgs - 1
        info.msgs = n
        if n == 0:
            del self.by_name[info.name]
            if not self._bulk:
                self.names.remove(info.name)
            info.seqs = None
            return
        seqs = info.seqs
        assert seqs is not None
        if n == 1:
            # Back to the compact single-message form.
            a, b = seqs[info.head], seqs[-1]
            keep = b if a == seq else a
            info.first = info.last = keep
            info.seqs = None
            info.head = 0
            return
        if seq == info.first:
            # Front removal (the common case: limits, acks in order): O(1), compacted lazily.
            h = info.head + 1
            if h > 64 and h * 2 > len(seqs):
                del seqs[:h]
                h = 0
            info.head = h
            info.first = seqs[h]
        elif seq == info.last:
            seqs.pop()
            info.last = seqs[-1]
        else:
            i = bisect_left(seqs, seq, info.head)
            del seqs[i]

    # -- filter support ----------------------------------------------------------------------
    def match(self, filter_subject: str | None) -> list[SubjInfo]:
        """Every subject matching the filter."""
        if is_all(filter_subject):
            return list(self.by_name.values())
        assert filter_subject is not None
        if not has_wildcard(filter_subject):
            info = self.by_name.get(filter_subject)
            return [info] if info is not None else []
        prefix = literal_prefix(filter_subject)
        matcher = compile_filter(filter_subject)
        by_name = self.by_name
        if not prefix:
            return [i for i in by_name.values() if matcher(i.name)]
        names = self.names
        lo = names.bisect_left(prefix)
        hi = names.bisect_left(prefix[:-1] + "/")  # '/' sorts right after '.'
        if filter_subject == prefix + ">":
            return [by_name[n] for n in names.islice(lo, hi)]  # every name in range matches
        if filter_subject == prefix + "*":
            plen = len(prefix)  # exactly one more token: no '.' after the prefix
            return [by_name[n] for n in names.islice(lo, hi) if n.find(".", plen) < 0 and len(n) > plen]
        return [by_name[n] for n in names.islice(lo, hi) if matcher(n)]

    def covers_all(self, filter_subject: str | None) -> bool:
        """True when the filter matches every current subject (e.g. `$KV.b.>` on a KV
        stream), so whole-stream fast paths apply."""
        if is_all(filter_subject):
            return True
        assert filter_subject is not None
        if not filter_subject.endswith(".>"):
            return False
        prefix = literal_prefix(filter_subject)
        if filter_subject != prefix + ">":
            return False
        return self.candidates(filter_subject) == len(self.by_name)

    def candidates(self, filter_subject: str | None) -> int:
        """Upper bound on the number of subjects `match` would return (cheap)."""
        if is_all(filter_subject):
            return len(self.by_name)
        assert filter_subject is not None
        if not has_wildcard(filter_subject):
            return 1 if filter_subject in self.by_name else 0
        prefix = literal_prefix(filter_subject)
        if not prefix:
            return len(self.by_name)
        names = self.names
        return names.bisect_left(prefix[:-1] + "/") - names.bisect_left(prefix)


# --------------------------------------------------------------------------------------------
# Sequence map
# --------------------------------------------------------------------------------------------


class Page:
    """One PAGE_SIZE-aligned run of slots. Columns grow by append (writes are in sequence
    order), so a page holding a handful of messages costs a handful of slots."""

    __slots__ = ("subj", "ts", "a", "b", "live")

    def __init__(self, a_type: str, b_type: str | None) -> None:
        self.subj: list[SubjInfo | None] = []
        self.ts = array("q")
        self.a: list | array = [] if a_type == "O" else array(a_type)
        self.b: array | None = array(b_type) if b_type else None
        self.live = 0


class SeqMap:
    """Sequence -> (subject info, ts, backend columns). `a_type` is 'O' for a list of objects or
    an `array` typecode; `b_type` an optional second array column."""

    __slots__ = ("pages", "pnos", "count", "a_type", "b_type", "_a_empty", "_last_pno", "_last_page")

    def __init__(self, a_type: str = "O", b_type: str | None = None) -> None:
        self.pages: dict[int, Page] = {}
        self.pnos: list[int] = []  # sorted page numbers
        self.count = 0
        self.a_type = a_type
        self.b_type = b_type
        self._a_empty = None if a_type == "O" else 0
        self._last_pno = -1
        self._last_page: Page | None = None

    def clear(self) -> None:
        self.pages.clear()
        self.pnos.clear()
        self.count = 0
        self._last_pno = -1
        self._last_page = None

    # -- single slots ----------------------------------------------------------------------
    def _page_for_append(self, pno: int) -> Page:
        page = self.pages.get(pno)
        if page is None:
            prev = self._last_page
            if prev is not None and prev.live == 0 and self.pages.get(self._last_pno) is prev:
                # The previous append page was kept alive while empty; drop it now.
                self._drop_page(self._last_pno)
            page = Page(self.a_type, self.b_type)
            self.pages[pno] = page
            pnos = self.pnos
            if not pnos or pnos[-1] < pno:
                pnos.append(pno)
            else:
                pnos.insert(bisect_left(pnos, pno), pno)
        self._last_pno = pno
        self._last_page = page
        return page

    def append(self, seq: int, info: SubjInfo, ts: int, a: object, b: int = 0) -> None:
        """Fill slot `seq` (which must be empty; normally above every other sequence)."""
        pno = seq >> PAGE_BITS
        off = seq & PAGE_MASK
        page = self._last_page if pno == self._last_pno else self._page_for_append(pno)
        assert page is not None
        n = len(page.subj)
        if off == n:
            page.subj.append(info)
            page.ts.append(ts)
            page.a.append(a)
            if page.b is not None:
                page.b.append(b)
        elif off > n:
            gap = off - n
            page.subj.extend([None] * gap)
            page.subj.append(info)
            page.ts.extend(array("q", bytes(8 * gap)))
            page.ts.append(ts)
            if self.a_type == "O":
                page.a.extend([None] * gap)  # type: ignore[arg-type]
            else:
                page.a.extend(array(self.a_type, [0]) * gap)  # type: ignore[arg-type]
            page.a.append(a)
            if page.b is not None:
                page.b.extend(array(self.b_type, [0]) * gap)  # type: ignore[arg-type]
                page.b.append(b)
        else:
            assert page.subj[off] is None, "slot already used"
            page.subj[off] = info
            page.ts[off] = ts
            page.a[off] = a
            if page.b is not None:
                page.b[off] = b
        page.live += 1
        self.count += 1

    def get(self, seq: int) -> tuple[Page, int] | None:
        page = self.pages.get(seq >> PAGE_BITS)
        if page is None:
            return None
        off = seq & PAGE_MASK
        if off < len(page.subj) and page.subj[off] is not None:
            return page, off
        return None

    def remove(self, seq: int) -> None:
        """Empty a live slot (caller checked it is live)."""
        pno = seq >> PAGE_BITS
        page = self.pages[pno]
        off = seq & PAGE_MASK
        page.subj[off] = None
        page.a[off] = self._a_empty  # release the payload now
        page.live -= 1
        self.count -= 1
        if page.live == 0 and page is not self._last_page:
            self._drop_page(pno)

    def _drop_page(self, pno: int) -> None:
        del self.pages[pno]
        pnos = self.pnos
        if pnos and pnos[0] == pno:
            del pnos[0]
        else:
            i = bisect_left(pnos, pno)
            if i < len(pnos) and pnos[i] == pno:
                del pnos[i]
        if pno == self._last_pno:
            self._last_pno = -1
            self._last_page = None

    def trim_after(self, seq: int) -> None:
        """Shorten the page columns past `seq` (all those slots must already be empty), so
        appends after a truncate start from a clean slate."""
        for pno in [p for p in self.pnos if (p << PAGE_BITS) + len(self.pages[p].subj) - 1 > seq]:
            page = self.pages[pno]
            keep = max(0, seq - (pno << PAGE_BITS) + 1)
            del page.subj[keep:]
            del page.ts[keep:]
            del page.a[keep:]
            if page.b is not None:
                del page.b[keep:]
            if page.live == 0:
                self._drop_page(pno)

    # -- ranges ----------------------------------------------------------------------------
    def iter_live(self, lo: int, hi: int) -> Iterator[tuple[int, SubjInfo, Page, int]]:
        """(seq, info, page, offset) of live slots in [lo, hi], ascending. Do not remove
        slots while iterating; collect first."""
        pnos = self.pnos
        i = bisect_left(pnos, lo >> PAGE_BITS)
        pages = self.pages
        for pno in pnos[i:]:
            base = pno << PAGE_BITS
            if base > hi:
                return
            page = pages[pno]
            subj = page.subj
            start = lo - base if lo > base else 0
            end = min(len(subj), hi - base + 1)
            for off in range(start, end):
                info = subj[off]
                if info is not None:
                    yield base + off, info, page, off

    def iter_live_rev(self, hi: int, lo: int) -> Iterator[tuple[int, SubjInfo, Page, int]]:
        """Like iter_live, descending from hi down to lo."""
        pnos = self.pnos
        i = bisect_right(pnos, hi >> PAGE_BITS)
        pages = self.pages
        for pno in reversed(pnos[:i]):
            base = pno << PAGE_BITS
            if base + PAGE_MASK < lo:
                return
            page = pages[pno]
            subj = page.subj
            end = min(len(subj) - 1, hi - base)
            stop = lo - base if lo > base else 0
            for off in range(end, stop - 1, -1):
                info = subj[off]
                if info is not None:
                    yield base + off, info, page, off

    def first_live(self, lo: int, hi: int | None = None) -> int | None:
        """Smallest live sequence >= lo (and <= hi), or None."""
        for seq, _, _, _ in self.iter_live(lo, hi if hi is not None else 1 << 64):
            return seq
        return None

    def last_live(self, hi: int, lo: int = 0) -> int | None:
        """Largest live sequence <= hi (and >= lo), or None."""
        for seq, _, _, _ in self.iter_live_rev(hi, lo):
            return seq
        return None

    def count_range(self, lo: int, hi: int) -> int:
        """Number of live slots in [lo, hi]."""
        if lo > hi:
            return 0
        total = 0
        pnos = self.pnos
        pages = self.pages
        i = bisect_left(pnos, lo >> PAGE_BITS)
        for pno in pnos[i:]:
            base = pno << PAGE_BITS
            if base > hi:
                break
            page = pages[pno]
            n = len(page.subj)
            if lo <= base and hi >= base + n - 1:
                total += page.live
            else:
                s = page.subj[max(lo - base, 0) : min(hi - base + 1, n)]
                total += len(s) - s.count(None)
        return total

    def absent(self, lo: int, hi: int) -> list[int]:
        """Sequences in [lo, hi] without a live slot (the interior deletes)."""
        out: list[int] = []
        cur = lo
        for seq, _, _, _ in self.iter_live(lo, hi):
            if seq > cur:
                out.extend(range(cur, seq))
            cur = seq + 1
        if cur <= hi:
            out.extend(range(cur, hi + 1))
        return out
