"""Delivery: taking the next message and handing it to a push subscriber or a pull request.

Two paths with one set of books. The general path (`_deliver_burst`) takes one message at a
time (`_get_next_msg`: redeliveries, then the last-per-subject skip list, then the read-ahead)
and routes it through `core.router.route`. The bulk path (`_burst_fast`) runs first when only
fresh messages to plain client subscribers are due, and hands read-ahead messages to the one
subscriber through the delivery contract without a route per message; when every waiting
pull request takes messages alike it hands a whole run to them at once (`_took_many`). Both
format the ack reply with `ACK_REPLY`, advance pull requests with `_took_from` / `_took_many`
(the same round robin), record pending entries with `ConsumerState.track` and the ack timer with
`_arm_ack_timer`, and settle sequences, activity, the AckNone ack floor, the dirty mark and the
counters with `_settle_delivered`. `tests/interop/test_js_consumers_bulk.py` holds the two paths
to the same bytes.
"""

from __future__ import annotations

from itertools import repeat
from operator import countOf, itemgetter
from typing import TYPE_CHECKING, Any

import trio

from ...core.client import CLIENT, LEAF
from ...core.contract import Batch
from ...core.router import route
from .common import TERM_UNACKED_LIMITS_REASON, pending_status
from .pull import PullRequest

if TYPE_CHECKING:
    from ...core.contract import Subscriber

# the ack reply subject of a delivery: $JS.ACK.<stream>.<consumer>. (the consumer's ack prefix)
# then <delivery count>.<stream seq>.<consumer seq>.<stored ts ns>.<num pending>
ACK_REPLY = b"%s%d.%d.%d.%d.%d"

BURST = 256                                    # deliveries before yielding to other tasks
FAST_BURST_BYTES = 1 << 20                     # bulk path: payload bytes per burst before settling


def ack_format(prefix: bytes, dc: int) -> bytes:
    """ACK_REPLY with the prefix and delivery count filled in, for the bulk path's many
    deliveries of one count: `ack_format(p, dc) % (sseq, cseq, ts, pending)` equals
    `ACK_REPLY % (p, dc, sseq, cseq, ts, pending)`."""
    return ACK_REPLY.replace(b"%s%d", prefix.replace(b"%", b"%%") + b"%d" % dc, 1)


class _Target:
    """The one subscriber a fast burst delivers to on one deliver subject (through the
    delivery contract, core.contract.Subscriber), and how many it got."""

    __slots__ = ("deliver", "batch", "sub", "on", "n")

    def __init__(self, sub: Any, on: bytes) -> None:
        c = sub.client
        self.deliver = c.deliver
        # a kind that only frames into its own output takes a run in one call (the
        # NATS connection: one join for the run's frames instead of a format per message)
        self.batch = c.deliver_batch if c.takes_batches else None
        self.sub = sub
        self.on = on
        self.n = 0


_subj_of = itemgetter(1)   # of a StoredMsg (seq, subject, hdr, data, ts)
_hdr_of = itemgetter(2)
_data_of = itemgetter(3)
_MISSING: Any = object()
# subscriber kinds a fast burst hands messages to itself (see _fast_target)
_BURST_KINDS = (CLIENT, LEAF)


def _headers_only(hdr: bytes | None, data: bytes) -> tuple[bytes, bytes]:
    """convertToHeadersOnly: drop the payload, add `Nats-Msg-Size`."""
    size = f"Nats-Msg-Size: {len(data)}\r\n\r\n".encode()
    if not hdr:
        return b"NATS/1.0\r\n" + size, b""
    return hdr[:-2] + size, b""


def _add_header(hdr: bytes | None, key: str, value: str) -> bytes:
    line = f"{key}: {value}\r\n\r\n".encode()
    if not hdr:
        return b"NATS/1.0\r\n" + line
    return hdr[:-2] + line


class DeliveryMixin:
    """Delivery (both paths) of `Consumer`."""

    def _paused(self) -> bool:
        pu = self.cfg.pause_until
        return bool(pu) and self.clock.now_ns() < pu  # type: ignore[operator]

    async def _deliver_burst(self) -> str:
        """Deliver until something stops us; returns why: eof, maxack, idle, paused, yield.

        The clock is read once per burst (and again after any sleep): a burst is at most BURST
        deliveries done without yielding, so every message in it gets the same timestamps."""
        count = 0
        now = self._now()
        now_ns = self.clock.now_ns()
        retention = self.retention
        if self._fast_ok():
            count = self._burst_fast(BURST, now, now_ns, retention)
        while not self.closed:
            cfg = self.cfg
            pu = cfg.pause_until
            if pu and now_ns < pu:
                return "paused"
            push = bool(cfg.deliver_subject)
            if push:
                if not self.active or (self.maxpb > 0 and self.pbytes > self.maxpb):
                    return "idle"
            elif not self.waiting:
                return "idle"
            if count >= BURST:
                return "yield"
            nxt = self._get_next_msg()
            if nxt is None:
                return "eof"
            if nxt == "maxack":
                return "maxack"
            sm, dc = nxt
            if dc == 1 and not self._npc_stale:
                self.npc -= 1
            seq = sm.seq
            reply = ACK_REPLY % (self.ack_prefix_b, dc, seq, self.st.dseq, sm.ts, self._num_pending())
            hdr = sm.hdr
            data = sm.data
            if cfg.headers_only:
                hdr, data = _headers_only(hdr, data)
            sz = len(sm.subject) + len(reply) + (len(hdr) if hdr else 0) + len(data)
            wr: PullRequest | None = None
            if push:
                dsubj = cfg.deliver_subject
            else:
                # fast path of _next_waiting for the head request when no byte budget, expiry
                # or priority rule applies (anything else: the full walk, nothing changed yet)
                wq = self.waiting
                wr = wq[0] if wq else None
                pp = cfg.priority_policy
                if wr is not None and wr.b <= 0 and (not wr.expires or now < wr.expires) and pp != "pinned_client" \
                        and (pp != "overflow" or wr.group is None) \
                        and self.account.sublist.match(wr.reply):
                    self._took_from(wr, now)
                else:
                    wr = self._next_waiting(sz, now)
                if wr is None:
                    self._put_back(seq, dc)
                    return "idle"
                dsubj = wr.reply
                if cfg.priority_policy == "pinned_client" and self.pin_id:
                    hdr = _add_header(hdr, "Nats-Pin-Id", self.pin_id)
                    sz = len(sm.subject) + len(reply) + len(hdr) + len(data)
            # replay original / rate limit: wait while still holding the message
            delay_until = 0.0
            if self._replay and self._lts > 0:
                gap = (sm.ts - self._lts) / 1e9
                if gap > 0.001:
                    delay_until = now + gap
            if cfg.rate_limit_bps:
                d = self._rate_delay(sz)
                if d > 0:
                    delay_until = max(delay_until, now + d)
            if delay_until:
                await trio.sleep_until(delay_until)
                if self.closed:
                    return "idle"
                now = self._now()
                now_ns = self.clock.now_ns()
            self._deliver(dsubj, reply, sm, hdr, data, dc, sz, now, now_ns, retention)
            if wr is not None and wr.n <= 0 and wr.b > 0:
                self._send(dsubj, None, pending_status(409, "Batch Completed", wr.n, wr.b), b"")
            count += 1
        return "idle"

    def _fast_ok(self) -> bool:
        """Whether this burst can start on the bulk path: fresh messages only (no
        redeliveries, skip list or replay/rate pacing), no per-message rewriting, no flow
        control, one filter at most, deliver subjects that are not remapped."""
        cfg = self.cfg
        if self.rdq or self.st.lss or self._replay or self.closed:
            return False
        if cfg.rate_limit_bps or cfg.headers_only or cfg.backoff or self.maxpb > 0:
            return False
        if cfg.priority_policy not in ("none", "") or len(self._filters) > 1:
            return False
        if self._paused():
            return False
        if cfg.deliver_subject:
            if not self.active:
                return False
        elif not self.waiting:
            return False
        return self.account.mappings is None and hasattr(self.store, "load_next_msgs")

    def _fast_target(self, dsubj: str) -> "_Target | None":
        """The one subscription a delivery to `dsubj` goes to, when the burst may hand it
        messages itself, as the router would (a single plain subscription, no auto-unsubscribe)
        and nothing can re-enter this consumer during the burst (a client connection or a
        leaf link, not an in-process subscriber whose callback might ack); else None."""
        sub = self.account.sublist.match(dsubj).solo
        if sub is None or sub.max or sub.client.kind not in _BURST_KINDS:
            return None
        return _Target(sub, dsubj.encode("utf-8", "surrogateescape"))

    def _burst_fast(self, limit: int, now: float, now_ns: int, retention: str) -> int:
        """Deliver up to `limit` fresh messages the way `_deliver_burst` would, each handed to
        its subscriber through the delivery contract: one subscriber lookup per deliver
        subject per burst instead of a route per message, and the burst's books settled once
        at the end (`_settle_delivered`). Stops (to let the general loop decide) at the first
        message or request that needs anything more. Returns the count."""
        cfg = self.cfg
        c = self.client
        store = self.store
        st = self.st
        push = bool(cfg.deliver_subject)
        acking = cfg.ack_policy != "none"
        if acking and cfg.max_ack_pending > 0:
            limit = min(limit, cfg.max_ack_pending - len(st.pending))
        if limit <= 0:
            return 0
        if self._npc_stale:
            self._recalc_num_pending()
        wq = self.waiting
        took_from = self._took_from
        took_many = self._took_many
        track = st.track
        targets: dict[str, _Target | None] = {}
        prefix = self.ack_prefix_b
        stream_acks = not acking and retention != "limits"
        # local copies of the counters the loop moves; written back by _settle_delivered
        npc = self.npc
        dseq = first_dseq = st.dseq
        nbytes = 0
        last_seq = 0
        last_ts = 0
        wr: PullRequest | None = None
        # the subscriber of the current deliver subject and its delivery method, kept in
        # locals while the subject stays the same (push: always; pull: while the requests
        # share an inbox)
        dsubj: str | None = None
        t: _Target | None = None
        if push:
            dsubj = cfg.deliver_subject
            t = targets[dsubj] = self._fast_target(dsubj)
            if t is None:
                return 0
        deliver, tsub, on = (t.deliver, t.sub, t.on) if t is not None else (None, None, None)
        last_subj: Any = None
        sb = b""
        fmt = ack_format(prefix, 1)  # (every fresh delivery here is the first)
        while dseq - first_dseq < limit and nbytes < FAST_BURST_BYTES:
            msgs = self._take_fresh(store, limit - (dseq - first_dseq))
            if not msgs:
                break
            stop = -1
            take = msgs
            per_msg = not push   # pull: pick the request for each message
            if per_msg and self._all_take_alike(now, len(msgs)):
                # every waiting request takes messages alike: hand the run out in one step
                if wq[0].reply != dsubj:
                    dsubj = wq[0].reply
                    t = targets.get(dsubj, _MISSING)
                    if t is _MISSING:
                        t = targets[dsubj] = self._fast_target(dsubj)
                per_msg = False
                wr = None
                if t is None:   # not a subscriber this path delivers to: none of the run
                    stop = 0
                    take = []
                else:
                    deliver, tsub, on = t.deliver, t.sub, t.on
                    k = took_many(len(msgs), now)
                    if k < len(msgs):   # the requests want no more than these
                        stop = k
                        take = msgs[:k]
            # a run handed out in one step goes to its subscriber in one call, if it takes
            # batches (Batch with replies: each delivery's ack subject)
            run: list[Any] | None = [] if not per_msg and t is not None and t.batch else None
            k = len(take)
            if run is not None and k and not stream_acks and npc >= k:
                # a run of plain messages (one subject, no headers, under the byte cap): the
                # same books and bytes as the loop below, made a list at a time and framed by
                # the codec from parallel lists (Batch.run)
                subj = take[0][1]
                if countOf(map(_subj_of, take), subj) == k and not any(map(_hdr_of, take)):
                    datas = list(map(_data_of, take))
                    total = sum(map(len, datas))
                    if not push or nbytes + total - len(datas[-1]) < FAST_BURST_BYTES:
                        if subj is not last_subj:
                            last_subj = subj
                            sb = subj.encode("utf-8", "surrogateescape")
                        # (npc >= k: no pending count below zero to clamp)
                        replies = [fmt % (sm[0], d, sm[4], q) for sm, d, q in
                                   zip(take, range(dseq, dseq + k), range(npc - 1, npc - 1 - k, -1))]
                        if acking:
                            for sm, d in zip(take, range(dseq, dseq + k)):
                                track(sm[0], d, now_ns)
                        t.batch(tsub, Batch(list(zip(repeat(None), repeat(sb), replies, repeat(None), datas)),  # type: ignore[union-attr]
                                            True, (sb, replies, datas)), c)
                        t.n += k  # type: ignore[union-attr]
                        nbytes += total
                        npc -= k
                        dseq += k
                        run = None
                        take = []
            for i, sm in enumerate(take):
                if per_msg:
                    if not wq:
                        stop = i
                        break
                    wr = wq[0]
                    if wr.b > 0 or (wr.expires and now >= wr.expires):
                        stop = i
                        break
                    if wr.reply != dsubj:
                        dsubj = wr.reply
                        t = targets.get(dsubj, _MISSING)
                        if t is _MISSING:
                            t = targets[dsubj] = self._fast_target(dsubj)
                        if t is None:
                            stop = i
                            break
                        deliver, tsub, on = t.deliver, t.sub, t.on
                    if nbytes >= FAST_BURST_BYTES:
                        stop = i
                        break
                elif push and nbytes >= FAST_BURST_BYTES:
                    # (a run handed out in one step is delivered whole: the cap then acts
                    # between runs, by the loop condition)
                    stop = i
                    break
                seq, subj, hdr, data, ts = sm
                if subj is not last_subj:
                    last_subj = subj
                    sb = subj.encode("utf-8", "surrogateescape")
                npc -= 1
                # the delivery contract, as the router calls it: seen under the stored
                # subject, routed on the deliver subject, the ack subject as reply
                reply = fmt % (seq, dseq, ts, npc if npc > 0 else 0)
                if run is not None:
                    run.append((None, sb, reply, hdr, data))
                else:
                    deliver(tsub, sb, reply, hdr, (data,), c, on)
                t.n += 1  # type: ignore[union-attr]
                nbytes += len(data) if hdr is None else len(hdr) + len(data)
                if acking:
                    track(seq, dseq, now_ns)
                dseq += 1
                if wr is not None:
                    took_from(wr, now)
                if stream_acks:
                    self.npc = npc
                    self._stream_ack(seq)
                    if self._npc_stale:
                        self._recalc_num_pending()
                    npc = self.npc
            if run:
                t.batch(tsub, Batch(run, True), c)  # type: ignore[union-attr]
            k = len(msgs) if stop < 0 else stop
            if k:
                last_seq, last_ts = msgs[k - 1].seq, msgs[k - 1].ts
            if stop >= 0:
                self._give_back(store, msgs[stop:])
                break
        count = dseq - first_dseq
        if not count:
            return 0
        self.npc = npc
        self._taken = None
        if acking:
            # (no BackOff on this path: every delivery waits the plain AckWait)
            self._arm_ack_timer(now + self._ack_wait(0) / 1e9)
        self._settle_delivered(count, nbytes, dseq, last_seq, last_seq, last_ts, now, now_ns)
        for u in targets.values():
            if u is not None:
                u.sub.delivered += u.n   # (the router counts these on the general path)
        return count

    def _get_next_msg(self) -> tuple[Any, int] | str | None:
        """getNextMsg: redeliveries first, then the skip list, then the next match."""
        store = self.store
        while self.rdq:
            seq = self.rdq.popleft()
            self.rdq_set.discard(seq)
            if seq not in self.st.pending:
                continue
            dc = self._inc_dc(seq)
            if self.maxdc and dc > self.maxdc:
                if dc == self.maxdc + 1:
                    self.advisories.max_deliveries(seq, dc - 1)
                self._drop_pending(seq)
                continue
            sm = store.load_msg(seq)
            if sm is None:
                self._dec_dc(seq)
                # gone from the stream while pending: settle it like a TERM
                p = self.st.pending.get(seq)
                if p is not None:
                    self._process_term(seq, p[0], dc - 1, TERM_UNACKED_LIMITS_REASON, None)
                continue
            return sm, dc
        if self.cfg.max_ack_pending > 0 and self.cfg.ack_policy != "none" \
                and len(self.st.pending) >= self.cfg.max_ack_pending:
            return "maxack"
        while self.st.lss:
            seq = self.st.lss.pop(0)
            self._taken = (seq, self.st.sseq, True)
            if not self.st.lss:
                self.st.lss = None
                self.st.sseq = self.st.lss_resume
            else:
                self.st.sseq = seq
            self.st.sseq += 1
            sm = store.load_msg(seq)
            if sm is None:
                continue
            return sm, 1
        if len(self._filters) <= 1 and hasattr(store, "load_next_msgs"):
            sm = self._next_buffered(store)
        else:
            sm, nseq = self._load_next(self.st.sseq)
            if sm is None and nseq > self.st.sseq:
                self.st.sseq = nseq
        if sm is None:
            return None
        self._taken = (sm.seq, self.st.sseq, False)
        self.st.sseq = sm.seq + 1
        return sm, 1

    def _put_back(self, seq: int, dc: int) -> None:
        """Could not hand this message to anyone: undo taking it."""
        taken = self._taken
        if dc == 1 and taken is not None and taken[0] == seq:
            _, prev_sseq, from_lss = taken
            if from_lss:   # back onto the last-per-subject skip list
                self.st.lss = [seq] + (self.st.lss or [])
            self.st.sseq = prev_sseq
            if not self._npc_stale:
                self.npc += 1
            self._taken = None
        elif seq not in self.rdq_set:
            self._dec_dc(seq)
            self.rdq.appendleft(seq)
            self.rdq_set.add(seq)

    def _deliver(self, dsubj: str, reply: bytes, sm: Any, hdr: bytes | None, data: bytes,
                 dc: int, sz: int, now: float, now_ns: int, retention: str) -> None:
        """deliverMsg, one message of the general path: update state first (delivery may
        re-enter us via a synchronous ack), then publish. `now` / `now_ns` / `retention`: the
        burst's clock readings and stream retention."""
        st = self.st
        dseq = st.dseq
        seq = sm.seq
        maxpb = self.maxpb
        if maxpb > 0:
            self.pbytes += sz
        ap = self.cfg.ack_policy
        if ap != "none":
            st.track(seq, dseq, now_ns)
            self._arm_ack_timer(now + self._ack_wait_for(seq) / 1e9)
        self._settle_delivered(1, len(data) + (len(hdr) if hdr else 0), dseq + 1,
                               seq if dc == 1 else 0, seq, sm.ts, now, now_ns)
        n = route(self.account, sm.subject.encode("utf-8", "surrogateescape"), reply, hdr, (data,),
                  self.client, dsubj.encode("utf-8", "surrogateescape"))
        if n == 0:
            self._did_not_deliver(seq, dsubj)
        if maxpb > 0 and self._need_flow_control(sz):
            self._send_flow_control()
        if ap == "none" and retention != "limits":
            self._stream_ack(seq)

    def _settle_delivered(self, count: int, nbytes: int, next_dseq: int, fresh_seq: int,
                          last_seq: int, last_ts: int, now: float, now_ns: int) -> None:
        """The books after `count` deliveries (both paths; the bulk path once per burst):
        delivery sequence, delivered stream seq (`fresh_seq`: the highest first delivery, 0
        for none), activity times, the AckNone ack floor, the dirty mark, and the in-process
        client's counters (`nbytes` of headers and payloads, as nats-server counts them).
        Pending entries and their ack timer are the caller's (`st.track`,
        `_arm_ack_timer`)."""
        st = self.st
        cfg = self.cfg
        st.dseq = next_dseq
        if fresh_seq > st.delivered_sseq:
            st.delivered_sseq = fresh_seq
        st.ldt = now_ns
        self._lts = last_ts
        if cfg.ack_policy == "none":
            # nothing to ack: the floor follows the deliveries
            st.adflr = next_dseq - 1
            st.asflr = last_seq
        if not (self._dirty and (self._flush_at or not self._persist)):
            self._mark_dirty()
        if cfg.deliver_subject:
            if cfg.idle_heartbeat:
                self._hb_at = now + cfg.idle_heartbeat / 1e9
        elif self.dthresh > 0:
            self.waiting_last = now
        c = self.client
        c.in_msgs += count
        c.in_bytes += nbytes

    def _send(self, subject: str, reply: str | None, hdr: bytes | None, data: bytes) -> int:
        return self.client.publish(subject, reply, hdr, data)

    def _did_not_deliver(self, seq: int, dsubj: str) -> None:
        """Nobody received it: push goes inactive, pull re-queues it."""
        self._dec_dc(seq)
        if self.is_push:
            self.active = bool(self.account.sublist.match(self.cfg.deliver_subject))
            if not self.active and self.dthresh > 0 and not self._dtmr_at:
                self._dtmr_at = self._now() + self.dthresh
        if seq in self.st.pending and seq not in self.rdq_set:
            self.rdq.append(seq)
            self.rdq_set.add(seq)
