"""What the stream tells the consumer, and how many matching messages are left.

The stream calls `_on_new_msg` after each store, `on_msg_removed` for each removal it reports
(limits, delete, interest/work-queue acks) and `on_stream_purged`; removals it does not report
are noticed by comparing the store's state with our own accounting (`_check_store_changes`).
`npc` is the cached num_pending (messages at or after the scan position that match), counted
down per fresh delivery and recounted from the store when it may be wrong (`_npc_stale`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .common import TERM_UNACKED_LIMITS_REASON


class StreamHooksMixin:
    """Stream notifications and num_pending of `Consumer`."""

    def _check_store_changes(self) -> None:
        """Notice removals we were not told about (limits, purge, deletes): the store's message
        count no longer matches our own accounting, so recount pending lazily."""
        try:
            st = self.store.state()
        except Exception:
            return
        removed = st.msgs < self._seen_msgs + max(st.last_seq - self._seen_last, 0)
        if st.msgs != self._seen_msgs or st.last_seq != self._seen_last:
            self._npc_stale = True
            self._seen_msgs = st.msgs
            self._seen_last = st.last_seq
        if st.first_seq != self._seen_first:
            self._seen_first = st.first_seq
            if self.st.sseq < st.first_seq and not self.st.lss:
                self.st.sseq = st.first_seq
        if removed and self.st.pending:
            self._settle_removed_pending()

    def _settle_removed_pending(self) -> None:
        """Pending messages the stream no longer has are settled like a TERM (what nats-server's
        decStreamPending does when the stream tells it about each removal)."""
        subject_for = self.store.subject_for_seq
        for seq in [s for s in self.st.pending if subject_for(s) is None]:
            p = self.st.pending.get(seq)
            if p is not None:
                self._process_term(seq, p[0], self._delivery_count(seq), TERM_UNACKED_LIMITS_REASON, None)

    def _recalc_num_pending(self) -> int:
        store = self.store
        lps = self.cfg.deliver_policy == "last_per_subject"
        fl = self._filters
        if not fl:
            n = store.num_pending(self.st.sseq, ">", lps)
        else:
            n = sum(store.num_pending(self.st.sseq, f, lps) for f in fl)
        st = store.state()
        self.npc = n
        self.npf = st.last_seq
        self._seen_msgs = st.msgs
        self._seen_last = st.last_seq
        self._npc_stale = False
        return n

    def _num_pending(self) -> int:
        if self._npc_stale:
            self._recalc_num_pending()
        return self.npc if self.npc > 0 else 0

    def _dec_npc(self) -> None:
        if not self._npc_stale:
            self.npc -= 1

    def num_pending(self) -> int:
        """checkNumPending: recount when the cheap counter looks inconsistent."""
        self._check_store_changes()
        if not self._npc_stale:
            st = self.store.state()
            if (self.st.sseq > st.last_seq and self.npc > 0) or self.npc > st.msgs:
                self._npc_stale = True
        return self._num_pending()

    def _on_new_msg(self, seq: int, subject: str) -> None:
        """The stream stored a message (called synchronously after each store)."""
        if self.closed:
            return
        self._seen_msgs += 1
        self._seen_last = seq
        if self.stream.config is not self._seen_stream_cfg:
            self._check_stream_config()
        if not self._matcher(subject):
            return
        if seq > self.npf and not self._npc_stale:
            self.npc += 1
        if seq < self.st.sseq:
            return
        if (self.is_push and self.active) or (self.is_pull and self.waiting):
            self._wake()

    def on_msg_removed(self, seq: int, subject: str) -> None:
        """decStreamPending: the stream removed one message (limits, delete, interest/WQ ack)."""
        if self.closed:
            return
        self._seen_msgs -= 1
        if seq >= self.st.sseq and self._matcher(subject) and not self._npc_stale:
            self.npc -= 1
        p = self.st.pending.get(seq)
        if p is not None:
            self._process_term(seq, p[0], self._delivery_count(seq), TERM_UNACKED_LIMITS_REASON, None)

    def on_stream_purged(self, first_seq: int, subject: str = "") -> None:
        """The stream was purged (optionally by subject): skip past removed messages."""
        if self.closed:
            return
        self._npc_stale = True
        self._check_store_changes()
        if not subject and self.st.sseq < first_seq:
            self.st.sseq = first_seq
        if self.st.asflr < first_seq - 1:
            self.st.asflr = first_seq - 1
            for seq in [s for s in self.st.pending if s <= self.st.asflr]:
                p = self.st.pending.pop(seq)
                if p[0] > self.st.adflr:
                    self.st.adflr = p[0]
                self.st.rdc.pop(seq, None)
        store = self.store
        for seq in [s for s in self.st.pending if store.load_msg(s) is None]:
            p = self.st.pending.pop(seq)
            self.st.rdc.pop(seq, None)
            if p[0] > self.st.adflr and not self.st.pending:
                self.st.adflr = p[0]
        if not self.st.pending:
            self.st.adflr = self.st.dseq - 1
            self.st.asflr = self.st.sseq - 1
        if self.rdq:
            keep = [s for s in self.rdq if s in self.st.pending]
            self.rdq = deque(keep)
            self.rdq_set = set(keep)
        self._mark_dirty()
        self._wake()

    def is_interested(self, seq: int, subject: str | None = None) -> bool:
        """Does this consumer's filter select the message at `seq`?"""
        self._check_stream_config()
        if not self._filters:
            return True
        if subject is None:
            subject = self.store.subject_for_seq(seq)
            if subject is None:
                return False
        return self._matcher(subject)
