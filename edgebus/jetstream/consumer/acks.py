"""Acks, redelivery and backoff.

The ack subject a delivery carries (`$JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<dseq>.<ts>.<pending>`)
comes back here with +ACK / -NAK [delay] / +WPI / +TERM / +NXT; this part moves the ack floor,
drops settled entries from the pending map, tells the stream (interest and work-queue
retention), and owns the redelivery queue (`rdq`): expiry by AckWait or BackOff
(`_check_pending`), NAK delays, MaxDeliver.
"""

from __future__ import annotations

import json
import random
from collections import deque
from typing import TYPE_CHECKING, Any

from .common import ACK_WAIT_DELAY_NS, log

if TYPE_CHECKING:
    from ...core.client import Msg

# -- Go duration parsing (NAK delays like "-NAK 5s") -------------------------------------------

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_go_duration(s: str) -> int:
    """time.ParseDuration: e.g. "300ms", "-1.5h", "2h45m". Returns ns; ValueError if bad."""
    orig = s
    if not s:
        raise ValueError(f"time: invalid duration {orig!r}")
    neg = False
    if s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {orig!r}")
    total = 0.0
    while s:
        i = 0
        while i < len(s) and (s[i].isdigit() or s[i] == "."):
            i += 1
        if i == 0:
            raise ValueError(f"time: invalid duration {orig!r}")
        num = s[:i]
        s = s[i:]
        j = 0
        while j < len(s) and not (s[j].isdigit() or s[j] == "."):
            j += 1
        unit = s[:j]
        s = s[j:]
        if unit not in _UNITS or num == ".":
            raise ValueError(f"time: unknown unit {unit!r} in duration {orig!r}" if unit
                             else f"time: missing unit in duration {orig!r}")
        total += float(num) * _UNITS[unit]
    return -int(total) if neg else int(total)


class AckMixin:
    """Ack handling and redelivery of `Consumer`."""

    def _on_ack(self, sub: Any, msg: "Msg") -> None:
        self._on_ack_raw(sub, msg.subject_b, msg.reply_b, msg.hdr, msg.data, msg.src)

    def _on_ack_raw(self, sub: Any, subject_b: bytes, reply_b: bytes | None, hdr: bytes | None,
                    data: bytes, src: Any) -> None:
        """An ack, from its parts (the in-process client hands them over with no Msg made)."""
        if self.closed:
            return
        toks = subject_b.split(b".")
        if len(toks) != 9:
            return
        try:
            dc = int(toks[4])
            sseq = int(toks[5])
            dseq = int(toks[6])
        except ValueError:
            sseq = dseq = dc = 0
        self._suppress_deletion()
        self.process_ack(sseq, dseq, dc, bytes(data),
                         reply_b.decode("utf-8", "surrogateescape") if reply_b else None)

    def process_ack(self, sseq: int, dseq: int, dc: int, payload: bytes, reply: str | None) -> None:
        """processAck: dispatch on the ack payload; answer an ack-sync when asked."""
        skip_reply = sseq == 0
        if payload == b"" or payload == b"+ACK" or payload == b"+OK":
            if not self._process_ack_msg(sseq, dseq, dc, True):
                skip_reply = True
        elif payload.startswith(b"+NXT"):
            self._process_ack_msg(sseq, dseq, dc, True)
            if reply:
                self.process_next_request(reply, payload[4:])
            skip_reply = True
        elif payload.startswith(b"-NAK"):
            self._process_nak(sseq, dseq, dc, payload)
        elif payload == b"+WPI":
            self._progress_update(sseq)
        elif payload.startswith(b"+TERM"):
            reason = payload[5:].strip().decode("utf-8", "replace")
            if not self._process_term(sseq, dseq, dc, reason, reply):
                skip_reply = True
        if reply and not skip_reply:
            self._send(reply, None, None, b"")

    def _process_ack_msg(self, sseq: int, dseq: int, dc: int, sample: bool) -> bool:
        """processAckMsg: returns False when the ack is for something not yet delivered."""
        if self.closed:
            return False
        if sseq >= self.st.sseq:
            return False
        ap = self.cfg.ack_policy
        acked: list[int] = []
        need_signal = False
        maxp = self.cfg.max_ack_pending
        if ap == "explicit":
            p = self.st.pending.get(sseq)
            if p is not None:
                if sample and self.sfreq:
                    self._sample_ack(sseq, dseq, dc, p)
                if maxp > 0 and len(self.st.pending) >= maxp:
                    need_signal = True
                del self.st.pending[sseq]
                dseq = p[0]
                if not self.st.pending:
                    # everything delivered is acked: the floor is the last delivery (as the
                    # consumer store reports it), not how far a filtered scan has run ahead
                    self.st.adflr = self.st.dseq - 1
                    self.st.asflr = self.st.delivered_sseq
                elif dseq == self.st.adflr + 1:
                    self.st.adflr, self.st.asflr = dseq, sseq
                    pend = self.st.pending
                    q = pend.get(sseq + 1)
                    if q is not None:
                        # acks in delivery order: the next message is the one still pending
                        self.st.adflr = q[0] - 1
                    elif len(pend) < self.st.sseq - sseq:
                        nxt = min(pend)
                        if nxt > sseq:
                            q = pend[nxt]
                            self.st.adflr, self.st.asflr = q[0] - 1, nxt - 1
                    else:
                        for ss in range(sseq + 1, self.st.sseq):
                            q = pend.get(ss)
                            if q is not None:
                                self.st.adflr, self.st.asflr = q[0] - 1, ss - 1
                                break
                acked.append(sseq)
            self.st.rdc.pop(sseq, None)
            self._remove_from_rdq(sseq)
        elif ap == "all":
            if dseq <= self.st.adflr or sseq <= self.st.asflr:
                return True
            if maxp > 0 and len(self.st.pending) >= maxp:
                need_signal = True
            old_floor = self.st.asflr
            self.st.adflr, self.st.asflr = dseq, sseq
            for seq in [s for s in self.st.pending if s <= sseq]:
                del self.st.pending[seq]
                self.st.rdc.pop(seq, None)
                self._remove_from_rdq(seq)
            if self.retention != "limits":
                acked.extend(range(old_floor + 1, sseq + 1))
        else:
            return self.retention != "limits"
        self.st.lat = self.clock.now_ns()
        self._mark_dirty()
        if self.retention != "limits":
            for seq in acked:
                self._stream_ack(seq)
        if need_signal:
            self._wake()
        return True

    def _sample_ack(self, sseq: int, dseq: int, dc: int, p: list[int]) -> None:
        f = self.sfreq
        if f <= 0 or (f < 100 and random.randint(0, 99) > f):
            return
        self.advisories.ack_metric(dseq, sseq, self.clock.now_ns() - p[1], dc)

    def _process_nak(self, sseq: int, dseq: int, dc: int, payload: bytes) -> None:
        if dseq <= self.st.adflr or dseq > self.st.dseq:
            return
        p = self.st.pending.get(sseq)
        if p is None:
            return
        self.advisories.nak(dseq, sseq, dc)
        arg = payload[4:].strip()
        if arg:
            delay: int | None
            try:
                if arg[:1] == b"{":
                    d = json.loads(arg)
                    delay = int((d or {}).get("delay") or 0) if isinstance(d, dict) else None
                    if delay is None:
                        raise ValueError("bad nak")
                else:
                    delay = parse_go_duration(arg.decode())
            except (ValueError, TypeError):
                delay = None
            if delay is not None:
                self._remove_from_rdq(sseq)
                # "now - ack_wait" is expired now, so offset the redelivery from there
                p[1] = self.clock.now_ns() - self.cfg.ack_wait + delay
                self._mark_dirty()
                at = self._now() + 0.01
                if not self._ptmr_at or self._ptmr_at > at:
                    self._ptmr_at = at
                    self._wake()
                return
        if sseq not in self.rdq_set:
            self.rdq.append(sseq)
            self.rdq_set.add(sseq)
        self._wake()

    def _progress_update(self, sseq: int) -> None:
        p = self.st.pending.get(sseq)
        if p is not None:
            p[1] = self.clock.now_ns()
            self._mark_dirty()

    def _process_term(self, sseq: int, dseq: int, dc: int, reason: str, reply: str | None) -> bool:
        acked = self._process_ack_msg(sseq, dseq, dc, False)
        self.advisories.terminated(dseq, sseq, dc, reason)
        return acked

    def _remove_from_rdq(self, seq: int) -> None:
        if seq in self.rdq_set:
            self.rdq_set.discard(seq)
            try:
                self.rdq.remove(seq)
            except ValueError:
                pass

    def _delivery_count(self, seq: int) -> int:
        return self.st.rdc.get(seq, 0) + 1

    def _inc_dc(self, seq: int) -> int:
        n = self.st.rdc.get(seq, 0) + 1
        self.st.rdc[seq] = n
        return n + 1

    def _dec_dc(self, seq: int) -> None:
        n = self.st.rdc.get(seq)
        if n is None:
            return
        if n <= 1:
            del self.st.rdc[seq]
        else:
            self.st.rdc[seq] = n - 1

    def _drop_pending(self, seq: int) -> None:
        """Max deliveries reached: stop tracking `seq` (its redelivery count stays)."""
        if self.st.pending.pop(seq, None) is not None:
            self._mark_dirty()
            if not self.st.pending:
                self.st.adflr = self.st.dseq - 1
                self.st.asflr = self.st.sseq - 1
            if self.cfg.max_ack_pending > 0:
                self._wake()

    def _arm_ack_timer(self, at: float) -> None:
        """Make sure the pending check runs by trio time `at` (the earliest wins)."""
        if not self._ptmr_at or self._ptmr_at > at:
            self._ptmr_at = at

    def _ack_wait_for(self, seq: int) -> int:
        """How long (ns, with the burst delay) a delivery of `seq` waits for its ack: AckWait,
        or the BackOff step for the deliveries it has had so far."""
        bo = self.cfg.backoff
        if bo:
            bi = min(max(self.st.rdc.get(seq, 0), 0), len(bo) - 1)
            return self._ack_wait(bo[bi])
        return self._ack_wait(0)

    def _ack_wait(self, nxt: int) -> int:
        return (nxt if nxt > 0 else self.cfg.ack_wait) + ACK_WAIT_DELAY_NS

    def _check_pending(self) -> None:
        """checkPending: queue expired messages for redelivery, re-arm the timer."""
        if self.closed or not self.st.pending:
            self._ptmr_at = 0.0
            return
        st = self.store.state()
        fseq = st.first_seq
        now = self.clock.now_ns()
        ttl = self.cfg.ack_wait
        bo = self.cfg.backoff
        nxt = bo[-1] if bo else self._ack_wait(0)
        expired: list[int] = []
        changed = False
        for seq, p in list(self.st.pending.items()):
            if seq < fseq or seq <= self.st.asflr:
                del self.st.pending[seq]
                self.st.rdc.pop(seq, None)
                self._remove_from_rdq(seq)
                changed = True
                if seq > self.st.asflr:
                    self.st.asflr = seq
                if p[0] > self.st.adflr:
                    self.st.adflr = p[0]
                continue
            elapsed = now - p[1]
            deadline = ttl
            if bo:
                dc = max(self.st.rdc.get(seq, 0), 0)
                nbi = dc + 1
                if dc + 1 >= len(bo):
                    dc = len(bo) - 1
                    nbi = dc
                deadline = bo[dc]
                if bo[nbi] < nxt:
                    nxt = bo[nbi]
            if elapsed >= deadline:
                if seq in self.rdq_set:
                    continue
                if self.maxdc and self._delivery_count(seq) >= self.maxdc:
                    # this was the last allowed delivery: give up on it now
                    self.advisories.max_deliveries(seq, self._delivery_count(seq))
                    self.st.rdc[seq] = self._delivery_count(seq)
                    del self.st.pending[seq]
                    changed = True
                    if self.cfg.max_ack_pending > 0:
                        self._kick = True
                    continue
                expired.append(seq)
            elif deadline - elapsed < nxt:
                nxt = deadline - elapsed
        if expired:
            expired.sort()
            off = now - self.st.pending[expired[0]][1]
            for seq in expired:
                self.rdq.append(seq)
                self.rdq_set.add(seq)
                p = self.st.pending.get(seq)
                if p is not None:
                    p[1] += off
            self._kick = True
        if self.st.pending:
            self._ptmr_at = self._now() + max(nxt, 0) / 1e9
        else:
            self._ptmr_at = 0.0
            self.rdq.clear()
            self.rdq_set.clear()
            self.st.adflr = self.st.dseq - 1
            self.st.asflr = self.st.sseq - 1
        if changed or expired:
            self._mark_dirty()

    def _force_expire_pending(self) -> None:
        expired = sorted(s for s in self.st.pending if s not in self.rdq_set)
        for s in expired:
            self.rdq.append(s)
            self.rdq_set.add(s)
        self._wake()

    def needs_ack(self, seq: int, subject: str | None = None) -> bool:
        """needAck: must the stream keep `seq` for this consumer (interest retention)?"""
        if self._filters and not self.is_interested(seq, subject):
            return False
        ap = self.cfg.ack_policy
        need = False
        if ap in ("none", "all"):
            need = seq > self.st.asflr
        elif seq > self.st.asflr:
            need = True if seq >= self.st.sseq else seq in self.st.pending
        if not need:
            need = seq in self.st.rdc
        return need

    def has_acked(self, seq: int, subject: str | None = None) -> bool:
        """True once this consumer no longer needs `seq` (acked, or not interested)."""
        return not self.needs_ack(seq, subject)

    def _stream_ack(self, seq: int) -> None:
        hook = getattr(self.stream, "on_consumer_ack", None)
        if hook is not None:
            try:
                hook(self, seq)
            except Exception:
                log.exception("stream on_consumer_ack hook failed")
