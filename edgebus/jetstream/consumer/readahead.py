"""Reading the stream ahead of delivery.

Fresh (first-time) deliveries come from the store in batches (`store.load_next_msgs`, one call
per NBUF_MSGS messages) into a read-ahead buffer. The buffer is valid while the scan position
(`st.sseq`), the filters, the store and its `reuse_gen` are what they were when it was filled;
each buffered message is re-checked as live before use unless nothing was removed since.
"""

from __future__ import annotations

from collections import deque
from typing import Any

NBUF_MSGS = 128                                # store read-ahead: messages per load_next_msgs
NBUF_BYTES = 256 * 1024                        # ... and at most about this many payload bytes


class ReadAheadMixin:
    """The store read-ahead of `Consumer`."""

    def _next_buffered(self, store: Any) -> Any:
        """The next matching message at or after sseq, from the read-ahead buffer (refilled
        with one store call per NBUF_MSGS messages); None at the end (sseq moved past it).
        Does not move sseq past the message (the caller does)."""
        buf = self._nbuf
        fl = self._filters
        if buf:
            key = self._nbuf_key
            if key is not None and key[0] == self.st.sseq and key[1] is store \
                    and key[2] is fl and key[3] == store.reuse_gen:
                is_live = store.is_live
                while buf:
                    sm = buf.popleft()
                    if is_live(sm.seq):
                        self._nbuf_key = (sm.seq + 1, store, fl, key[3], key[4])
                        return sm
                    # removed since it was read: skip it as a fresh read would
            buf.clear()
        msgs = self._refill(store, fl)
        if not msgs:
            return None
        sm = msgs[0]
        if len(msgs) > 1:
            buf.extend(msgs[1:])
            self._nbuf_key = (sm.seq + 1, store, fl, store.reuse_gen, self._nbuf_removals)
        else:
            self._nbuf_key = None
        return sm

    def _refill(self, store: Any, fl: list[str], n: int = NBUF_MSGS) -> list[Any]:
        """One read-ahead load (of `n` messages at most) from sseq; at the end of the stream,
        sseq moves to where the store says the next message will be and the result is empty."""
        self._nbuf_removals = store.removals
        msgs, nseq = store.load_next_msgs(fl[0] if fl else ">", self.st.sseq, n, NBUF_BYTES)
        if not msgs:
            self._nbuf_key = None
            if nseq > self.st.sseq:
                self.st.sseq = nseq
        return msgs

    def _take_fresh(self, store: Any, limit: int) -> list[Any]:
        """Up to `limit` next matching messages for the bulk path, in order, from the
        read-ahead buffer (refilled once when empty), with sseq moved past them; `_give_back`
        returns the ones a burst did not deliver. While nothing was removed from the store
        since the buffer was filled, its messages are known live without a probe each."""
        buf = self._nbuf
        fl = self._filters
        out: list[Any] = []
        if buf:
            key = self._nbuf_key
            if key is not None and key[0] == self.st.sseq and key[1] is store \
                    and key[2] is fl and key[3] == store.reuse_gen:
                if key[4] == store.removals:
                    if len(buf) <= limit:
                        out = list(buf)
                        buf.clear()
                    else:
                        pop = buf.popleft
                        out = [pop() for _ in range(limit)]
                else:
                    is_live = store.is_live
                    while buf and len(out) < limit:
                        sm = buf.popleft()
                        if is_live(sm.seq):
                            out.append(sm)
            else:
                buf.clear()
        if not out and not buf:
            # (as many as the burst may take, if more than a read-ahead: one load, one run)
            msgs = self._refill(store, fl, limit if limit > NBUF_MSGS else NBUF_MSGS)
            if not msgs:
                return out
            if len(msgs) > limit:
                buf.extend(msgs[limit:])
                out = msgs[:limit]
            else:
                out = msgs
        if not out:
            return out
        nxt = out[-1].seq + 1
        self.st.sseq = nxt
        self._nbuf_key = (nxt, store, fl, store.reuse_gen, self._nbuf_removals) if buf else None
        return out

    def _give_back(self, store: Any, msgs: list[Any]) -> None:
        """Undo `_take_fresh` for `msgs` (its tail): back to the front of the buffer."""
        if not msgs:
            return
        self._nbuf.extendleft(reversed(msgs))
        self.st.sseq = msgs[0].seq
        self._nbuf_key = (self.st.sseq, store, self._filters, store.reuse_gen, self._nbuf_removals)

    def _load_next(self, start: int) -> tuple[Any, int]:
        store = self.store
        fl = self._filters
        if not fl:
            return store.load_next_msg(">", start)
        if len(fl) == 1:
            return store.load_next_msg(fl[0], start)
        best = None
        eof = start
        for f in fl:
            m, n = store.load_next_msg(f, start)
            if m is not None and (best is None or m.seq < best.seq):
                best = m
            elif m is None and n > eof:
                eof = n
        if best is not None:
            return best, best.seq + 1
        return None, eof
