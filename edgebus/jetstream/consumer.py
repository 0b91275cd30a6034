"""A JetStream consumer: push/pull delivery from the stream's store, acks, redelivery, timers.

One `Consumer` per stream consumer. Its state machine follows nats-server's `consumer.go`:
`sseq`/`dseq` (next stream / delivery sequence), ack floors, the `pending` map of delivered but
unacked messages, the redelivery queue, the pull wait queue, push interest and flow control.

Threading model (trio): everything that arrives on the wire — acks, pull requests, flow-control
replies, interest changes, new-message signals from the stream — is handled synchronously in the
InternalClient callback that delivers it, and only *kicks* the consumer's single delivery task.
That task delivers as many messages as it can in a burst, straight from the store, then sleeps on
one trio Event until kicked or until the nearest timer (ack wait, heartbeats, pull expiry, pause,
inactivity, state flush). No task or channel send happens per message.

All times come from the broker's one clock: wall nanoseconds (`clock.now_ns()`) for anything
persisted or reported, trio time for sleeping, so MockClock drives AckWait and friends.

What the stream gives us: `name`, `config`, `store`, `account`, `js.client`, `nursery`,
`consumers`, `dir`, `new_msg_listeners`, `on_consumer_ack(consumer, seq)` and
`on_consumer_deleted(consumer)`. What we give the stream: `matches_subject`, `is_interested`,
`needs_ack` / `has_acked` (interest retention), `on_stream_purged(first_seq, filter)`, optional
`on_msg_removed(seq, subject)` (exact pending counts; without it removals are noticed by
comparing the store's state with our own accounting), `stop(delete=...)` and `info()`.
Durable state lives in `<stream dir>/obs/<name>/` (`meta.inf` config, `o.dat` state, JSON).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import threading
import weakref
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import trio

from ..codec.headers import build_headers
from ..codec.json_depth import loads
from ..core.client import CLIENT, LEAF
from ..core.router import route
from ..core.clock import rfc3339
from ..core.subject import is_literal, subject_matches
from .advisories import Advisories, nuid
from .consumer_config import ConsumerConfig, go_duration, sample_frequency
from .names import TRASH_PREFIX, store_child
from .store.subjects import compile_filter
from ..core.blocking import run_blocking

if TYPE_CHECKING:
    from ..core.client import Msg
    from ..core.sublist import Subscription

log = logging.getLogger("edgebus.jetstream.consumer")

FLOW_CONTROL_MAX_PENDING = 32 * 1024 * 1024   # JsFlowControlMaxPending
ACK_WAIT_DELAY_NS = 1_000_000                  # ackWaitDelay: let bursts expire together
BURST = 256                                    # deliveries before yielding to other tasks
NBUF_MSGS = 128                                # store read-ahead: messages per load_next_msgs
NBUF_BYTES = 256 * 1024                        # ... and at most about this many payload bytes
FAST_BURST_BYTES = 1 << 20                     # bulk path: payload bytes per burst before settling
FLUSH_INTERVAL = 0.1                           # seconds between consumer state writes
STATE_RETRY = 1.0                              # ... and before retrying one that failed

PENDING_MSGS_HDR = "Nats-Pending-Messages"
PENDING_BYTES_HDR = "Nats-Pending-Bytes"

TERM_LIMITS_REASON = "Message deleted by stream limits"
TERM_UNACKED_LIMITS_REASON = "Unacknowledged message was deleted"

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _status(code: int, text: str, extra: Iterable[tuple[str, str]] = ()) -> bytes:
    return build_headers(list(extra), status=code, description=text)


def _pending_status(code: int, text: str, n: int, b: int) -> bytes:
    return _status(code, text, [(PENDING_MSGS_HDR, str(n)), (PENDING_BYTES_HDR, str(b))])


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


# -- pull requests -------------------------------------------------------------------------------

# the subjects of consumer acks: $JS.ACK.<stream>.<consumer>.<5 tokens> (the 2 after the head
# name the consumer; see Sublist.set_prefix_family)
ACK_FAMILY = b"$JS.ACK."


class _Target:
    """The one subscriber a fast burst delivers to on one deliver subject (through the
    delivery contract, core.contract.Subscriber), and how many it got."""

    __slots__ = ("deliver", "sub", "on", "n")

    def __init__(self, sub: Any, on: bytes) -> None:
        self.deliver = sub.client.deliver
        self.sub = sub
        self.on = on
        self.n = 0


_MISSING: Any = object()
# subscriber kinds a fast burst hands messages to itself (see Consumer._fast_target)
_BURST_KINDS = (CLIENT, LEAF)


class PullRequest:
    """A waiting pull request (nats-server waitingRequest). Times are trio seconds."""

    __slots__ = ("reply", "n", "d", "b", "expires", "received", "hb", "hbt", "no_wait", "max_bytes",
                 "group")

    def __init__(self, reply: str, n: int, b: int, expires: float, received: float, hb: float,
                 no_wait: bool, group: dict[str, Any] | None = None) -> None:
        self.reply = reply
        self.n = n                  # messages still wanted
        self.d = 0                  # messages delivered
        self.b = b                  # remaining byte budget (0 = unlimited)
        self.max_bytes = b
        self.expires = expires      # 0 = never
        self.received = received
        self.hb = hb                # heartbeat interval in seconds (0 = none)
        self.hbt = received + hb if hb else 0.0
        self.no_wait = no_wait
        self.group = group          # priority group request: group, min_pending, min_ack_pending, id


def parse_next_request(data: bytes, now: float) -> tuple[int, float, int, bool, float, dict[str, Any] | None]:
    """nextReqFromMsg: (batch, expires_at, max_bytes, no_wait, heartbeat_s, priority_group).

    Raises ValueError with nats-server's text for a bad JSON request."""
    req = data.strip()
    if not req:
        return 1, 0.0, 0, False, 0.0, None
    if req[:1] == b"{":
        try:
            d = loads(req)
        except ValueError as e:
            raise ValueError(str(e)) from None
        if not isinstance(d, dict):
            raise ValueError("json: cannot unmarshal into Go value of type server.JSApiConsumerGetNextRequest")

        def num(key: str) -> int:
            v = d.get(key)
            if v is None:
                return 0
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"json: cannot unmarshal {type(v).__name__} into Go struct field "
                                 f"JSApiConsumerGetNextRequest.{key}")
            return int(v)

        expires_ns = num("expires")
        batch = num("batch")
        max_bytes = num("max_bytes")
        hb_ns = num("idle_heartbeat")
        no_wait = bool(d.get("no_wait") or False)
        if hb_ns > 0 and hb_ns * 2 > expires_ns:
            raise ValueError("heartbeat value too large")
        # like nats-server, a JSON request always carries a (possibly empty) priority group
        group = {"group": d.get("group") or "", "min_pending": d.get("min_pending") or 0,
                 "min_ack_pending": d.get("min_ack_pending") or 0, "id": d.get("id") or ""}
        expires = now + expires_ns / 1e9 if expires_ns > 0 else 0.0
        return batch, expires, max_bytes, no_wait, hb_ns / 1e9, group
    try:
        return int(req), 0.0, 0, False, 0.0, None
    except ValueError:
        return 1, 0.0, 0, False, 0.0, None


# -- push interest ------------------------------------------------------------------------------

class _DeliverInterest:
    """One sublist listener per account telling push consumers when interest on their deliver
    subject appears or goes away (nats-server's registerNotification)."""

    def __init__(self, sublist: Any) -> None:
        self.sublist = sublist
        self.by_subject: dict[str, set[Consumer]] = {}
        sublist.listeners.append(self._changed)

    def add(self, subject: str, consumer: "Consumer") -> None:
        self.by_subject.setdefault(subject, set()).add(consumer)

    def remove(self, subject: str, consumer: "Consumer") -> None:
        s = self.by_subject.get(subject)
        if s is not None:
            s.discard(consumer)
            if not s:
                del self.by_subject[subject]

    def _changed(self, sub: "Subscription", added: bool) -> None:
        if not self.by_subject:
            return
        subj = sub.subject
        if is_literal(subj):
            cons = self.by_subject.get(subj)
            if cons:
                for c in list(cons):
                    c._interest_changed()
            return
        for dsubj, cons in list(self.by_subject.items()):
            if subject_matches(dsubj, subj):
                for c in list(cons):
                    c._interest_changed()


_interest_watchers: "weakref.WeakKeyDictionary[Any, _DeliverInterest]" = weakref.WeakKeyDictionary()


def _interest_watcher(account: Any) -> _DeliverInterest:
    w = _interest_watchers.get(account)
    if w is None:
        w = _interest_watchers[account] = _DeliverInterest(account.sublist)
    return w


# -- the consumer ---------------------------------------------------------------------------------

class Consumer:
    """One consumer of one stream. Create with `Consumer(stream, cfg, name)`, then `start()`."""

    def __init__(self, stream: Any, cfg: ConsumerConfig, name: str, *, created_ns: int = 0,
                 state: dict[str, Any] | None = None) -> None:
        self.stream = stream
        self.cfg = cfg
        self.name = name
        self.stream_name: str = stream.name
        self.account = stream.account
        self.broker = self.account.broker
        self.clock = self.broker.clock
        self.client = stream.js.client
        self.created_ns = created_ns or self.clock.now_ns()
        self.closed = False
        self.advisories = Advisories(self.client, self.account, self.stream_name, name,
                                     self.broker.options.jetstream.domain, self.clock)

        # sequences and ack state
        self.sseq = 1                 # next stream sequence to consider
        self.dseq = 1                 # next delivery (consumer) sequence
        self.delivered_sseq = 0       # stream seq of the last delivery (reported as delivered)
        self.adflr = 0                # ack floor, consumer seq
        self.asflr = 0                # ack floor, stream seq
        self.pending: dict[int, list[int]] = {}   # sseq -> [original dseq, timestamp ns]
        self.rdc: dict[int, int] = {}              # sseq -> redeliveries so far
        self.rdq: deque[int] = deque()
        self.rdq_set: set[int] = set()
        self.lss: list[int] | None = None          # deliver last_per_subject skip list
        self.lss_resume = 0
        self.npc = 0                               # cached num pending
        self.npf = 0                               # stream last seq the count covers
        self._npc_stale = True
        self._seen_msgs = -1                       # store msgs/last we have accounted for
        self._seen_last = -1
        self._seen_first = -1

        # activity
        self.ldt = 0                  # last delivery (ns)
        self.lat = 0                  # last ack (ns)
        self.waiting: deque[PullRequest] = deque()
        self.waiting_last = 0.0       # trio time of the last pull activity

        # push
        self.active = False
        self.pbytes = 0
        self.maxpb = 0
        self.pblimit = 0
        self.fcid = ""
        self.fcsz = 0

        self._filters: list[str] = []
        self._matcher: Callable[[str], bool] = bool
        # Read-ahead of the next matching messages (store.load_next_msgs), valid while sseq,
        # the filters, the store and its reuse_gen are what they were when it was filled;
        # each buffered message is re-checked as live before it is used.
        self._nbuf: deque[Any] = deque()
        self._nbuf_key: tuple[Any, ...] | None = None
        self._nbuf_removals = 0       # store.removals when the read-ahead buffer was filled
        self._set_filters(cfg.filters)
        self.sfreq = sample_frequency(cfg)
        self.maxdc = max(cfg.max_deliver, 0)

        # timers (trio seconds; 0 = disarmed)
        self._ptmr_at = 0.0
        self._hb_at = 0.0
        self._dtmr_at = 0.0
        self._pause_at = 0.0
        self.dthresh = 0.0
        self._flush_at = 0.0
        self._state_write_failing = False
        self._dirty = False
        self._cfg_dirty = False
        self._files_lock = threading.Lock()   # state writes (worker threads) vs removal
        self._files_removed = False

        # priority groups (2.11): the pinned client of the (single) group
        self.pin_id = ""
        self.pin_ts = 0
        self._pin_at = 0.0

        # what the last fresh take from the store was (seq, previous sseq, from the skip list)
        self._taken: tuple[int, int, bool] | None = None

        # rate limit / replay
        self._rl_tokens = 0.0
        self._rl_last = 0.0
        self._replay = cfg.replay_policy == "original"
        self._replay_lseq = 0
        self._lts = 0

        # the delivery task
        self._kick = False
        self._event: trio.Event | None = None
        self._scope: trio.CancelScope | None = None
        self._done: trio.Event | None = None
        self._subs: list[Any] = []

        self.ack_prefix = f"$JS.ACK.{self.stream_name}.{name}."
        self.ack_prefix_b = self.ack_prefix.encode()
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream_name}.{name}"
        self.fc_prefix = f"$JS.FC.{self.stream_name}.{name}."

        self._persist = self._persistent()
        self._update_inactive_threshold()
        if state is not None:
            self._apply_state(state)
        else:
            self._select_start()

    # -------------------------------------------------------------------------- properties
    @property
    def store(self) -> Any:
        return self.stream.store

    @property
    def is_push(self) -> bool:
        return bool(self.cfg.deliver_subject)

    @property
    def is_pull(self) -> bool:
        return not self.cfg.deliver_subject

    @property
    def is_durable(self) -> bool:
        return bool(self.cfg.durable_name)

    @property
    def retention(self) -> str:
        r = getattr(self.stream.config, "retention", "limits")
        return getattr(r, "value", r) or "limits"

    def _now(self) -> float:
        return trio.current_time()

    def _set_filters(self, filters: list[str]) -> None:
        # isFiltered: a filter equal to the stream's own subjects selects everything, and the
        # unfiltered store scan is much cheaper than a wildcard one. That depends on the stream
        # config, so remember which one we looked at (see _check_stream_config).
        self._seen_stream_cfg = self.stream.config
        stream_subjects = list(getattr(self.stream.config, "subjects", None) or [])
        if filters and sorted(filters) == sorted(stream_subjects):
            filters = []
        self._filters = [f for f in filters if f and f != ">"] if len(filters) == 1 else list(filters)
        fl = self._filters
        if not fl:
            self._matcher = bool
        elif len(fl) == 1:
            self._matcher = compile_filter(fl[0])
        else:
            ms = [compile_filter(f) for f in fl]
            self._matcher = lambda s: any(m(s) for m in ms)

    def _check_stream_config(self) -> None:
        """The stream was updated (subjects may differ): re-derive our effective filters."""
        if self.stream.config is not self._seen_stream_cfg:
            self._set_filters(self.cfg.filters)
            self._npc_stale = True

    def matches(self, subject: str) -> bool:
        if self.stream.config is not self._seen_stream_cfg:
            self._check_stream_config()
        return self._matcher(subject)

    matches_subject = matches  # the stream's interest-retention ingest check

    # -------------------------------------------------------------------------- start position
    def _select_start(self) -> None:
        """selectStartingSeqNo."""
        cfg = self.cfg
        st = self.store.state()
        first = st.first_seq
        last = st.last_seq
        sseq = 1
        if cfg.opt_start_seq == 0:
            dp = cfg.deliver_policy
            if dp == "all":
                sseq = first
            elif dp == "last":
                if not self._filters:
                    sseq = last
                else:
                    sseq = 0
                    for f in self._filters:
                        ss = self.store.filtered_state(f, 1)
                        if ss.last > sseq:
                            sseq = ss.last
            elif dp == "last_per_subject":
                mmp = getattr(self.stream.config, "max_msgs_per_subject", 0) or 0
                if mmp == 1:
                    sseq = first
                else:
                    filters = self._filters or [cfg.filter_subject or ">"]
                    seqs = self.store.multi_last_seqs(filters)
                    self.lss_resume = last
                    if not seqs:
                        sseq = last
                    else:
                        sseq = seqs[0]
                        self.lss = seqs
            elif cfg.opt_start_time is not None:
                sseq = self._seq_from_time(cfg.opt_start_time, first, last)
                if self._filters:
                    nseq = last
                    for f in self._filters:
                        ss = self.store.filtered_state(f, first)
                        if ss.first >= sseq and ss.first < nseq:
                            nseq = ss.first
                    if sseq < nseq < last:
                        sseq = nseq
            else:  # new
                sseq = last + 1
        else:
            sseq = cfg.opt_start_seq
        if first == 0 and (cfg.direct or cfg.opt_start_seq == 0):
            sseq = 1
        elif sseq > last and (cfg.direct or cfg.opt_start_seq == 0):
            sseq = last + 1
        elif sseq < first:
            sseq = first
        if self.lss and sseq != self.lss[0]:
            # the clamp moved us (cannot really happen): drop the skip list
            self.lss = None
        self.sseq = max(sseq, 1)
        self.dseq = 1
        self.adflr = 0
        self.asflr = self.sseq - 1
        self.delivered_sseq = self.sseq - 1

    def _seq_from_time(self, ts: int, first: int, last: int) -> int:
        """First sequence whose timestamp is >= ts (binary search over the store)."""
        get = getattr(self.store, "get_seq_from_time", None)
        if get is not None:
            return get(ts)
        if first == 0 or last < first:
            return last + 1
        lo, hi = first, last + 1
        while lo < hi:
            mid = (lo + hi) // 2
            m, _ = self.store.load_next_msg(">", mid)
            if m is None:
                hi = mid
            elif m.ts >= ts:
                hi = mid
            else:
                lo = m.seq + 1
        return lo

    # -------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Subscribe (acks, pull requests, flow control), hook into the stream, start the task."""
        cfg = self.cfg
        c = self.client
        if cfg.ack_policy != "none":
            sub = c.subscribe(self.ack_prefix + "*.*.*.*.*", self._on_ack)
            sub.raw = self._on_ack_raw
            self._subs.append(sub)
            # acks are all different subjects (every match would miss the cache): the core's
            # exact-prefix registry finds this consumer by the prefix alone
            sl = self.account.sublist
            sl.set_prefix_family(ACK_FAMILY, 2, 5)
            sl.add_prefix(self.ack_prefix_b, sub)
        self._subs.append(c.subscribe(self.next_subject, self._on_next_request))
        if cfg.flow_control:
            self._set_max_pending_bytes(FLOW_CONTROL_MAX_PENDING)
            self._subs.append(c.subscribe(self.fc_prefix + "*", self._on_flow_control))
        self.stream.new_msg_listeners.append(self._on_new_msg)
        now = self._now()
        self.waiting_last = now
        if self.is_push:
            _interest_watcher(self.account).add(cfg.deliver_subject, self)
            self.active = bool(self.account.sublist.match(cfg.deliver_subject))
        if self.dthresh > 0 and (self.is_pull or not self.active):
            self._dtmr_at = now + self.dthresh
        if cfg.idle_heartbeat and self.is_push:
            self._hb_at = now + cfg.idle_heartbeat / 1e9
        self._update_pause_timer()
        if self._replay:
            self._replay_lseq = self.store.state().last_seq
        if self.pending:
            # restored pending: check them soon (nats-server: 0.5-1.5s, or ack wait if shorter)
            delay = 0.5 + random.random()
            if cfg.ack_wait and cfg.ack_wait / 1e9 < delay:
                delay = (cfg.ack_wait + ACK_WAIT_DELAY_NS) / 1e9
            self._ptmr_at = now + delay
        self._recalc_num_pending()
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self.stream.nursery.start_soon(self._run, name=f"consumer {self.stream_name} > {self.name}")

    async def stop(self, delete: bool = False) -> None:
        """Stop delivering (server shutdown, or stream deletion when `delete`). Durable state is
        written out first so a restart resumes exactly here."""
        if self.closed:
            return
        if delete:
            self._close(advisory=True, release_requests=True, remove_files=True)
            return
        self._close(advisory=False, release_requests=False, remove_files=False)
        if self._done is not None:
            await self._done.wait()   # an in-flight state write finishes before the final one
        if self._persistent():
            snap = self._state_snapshot()
            try:
                await run_blocking(self._write_state_blocking, snap, self._cfg_dirty)
            except Exception:
                log.exception("writing consumer state for %s > %s failed", self.stream_name, self.name)

    def delete(self, advisory: bool = True) -> None:
        """Delete the consumer (API delete or inactivity): release waiting pull requests with
        409 Consumer Deleted, drop its files, tell the stream."""
        self._close(advisory=advisory, release_requests=True, remove_files=True)

    def _close(self, advisory: bool, release_requests: bool, remove_files: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if release_requests and self.is_pull:
            hdr = _status(409, "Consumer Deleted")
            for wr in self.waiting:
                self._send(wr.reply, None, hdr, b"")
        self.waiting.clear()
        if advisory:
            self.advisories.deleted()
        for s in self._subs:
            self.account.sublist.remove_prefix(self.ack_prefix_b, s)
            self.client.unsubscribe(s)
        self._subs.clear()
        try:
            self.stream.new_msg_listeners.remove(self._on_new_msg)
        except ValueError:
            pass
        if self.is_push:
            _interest_watcher(self.account).remove(self.cfg.deliver_subject, self)
        if self._scope is not None:
            self._scope.cancel()
        consumers = getattr(self.stream, "consumers", None)
        if consumers is not None and consumers.get(self.name) is self:
            del consumers[self.name]
            if remove_files:
                hook = getattr(self.stream, "on_consumer_deleted", None)
                if hook is not None:
                    try:
                        hook(self)
                    except Exception:
                        log.exception("stream on_consumer_deleted hook failed")
        if remove_files and self._persistent():
            d = self.dir
            if d is not None:
                self._remove_dir(d)

    def _remove_dir(self, d: Path) -> None:
        # The directory is renamed out of the way at once and removed later: a consumer
        # re-created under the same name right after the delete gets a directory of its
        # own, which a late rmtree of the old one would otherwise take with it.
        with self._files_lock:
            self._files_removed = True
            trash = d.with_name(f"{TRASH_PREFIX}{d.name}.{nuid()}")
            try:
                d.rename(trash)
            except OSError:
                return  # never written (or already gone)

        def remove() -> None:
            shutil.rmtree(trash, ignore_errors=True)
        try:
            self.stream.nursery.start_soon(run_blocking, remove)
        except RuntimeError:  # nursery closed: do it inline
            remove()

    # -------------------------------------------------------------------------- persistence
    @property
    def dir(self) -> Path | None:
        base = getattr(self.stream, "dir", None)
        if base is None:
            return None
        return store_child(Path(base) / "obs", self.name)

    def _persistent(self) -> bool:
        """File-backed stream and not a memory/direct consumer: state lives in obs/<name>."""
        return getattr(self.stream, "dir", None) is not None and not self.cfg.mem_storage \
            and not self.cfg.direct

    def _mark_dirty(self) -> None:
        self._dirty = True
        if not self._flush_at and self._persist:
            self._flush_at = self._now() + FLUSH_INTERVAL
            self._wake()

    def _state_snapshot(self) -> dict[str, Any]:
        return {
            "delivered": {"consumer_seq": self.dseq - 1, "stream_seq": self.delivered_sseq,
                          "scan_seq": self.sseq - 1},
            "ack_floor": {"consumer_seq": self.adflr, "stream_seq": self.asflr},
            "pending": {str(s): [p[0], p[1]] for s, p in self.pending.items()},
            "redelivered": {str(s): n for s, n in self.rdc.items()},
            "lss": ({"seqs": list(self.lss), "resume": self.lss_resume} if self.lss else None),
            "last_delivered_ns": self.ldt,
            "last_ack_ns": self.lat,
        }

    def meta_json(self) -> dict[str, Any]:
        return {"name": self.name, "created": rfc3339(self.created_ns), "config": self.cfg.to_json()}

    def _write_state_blocking(self, snap: dict[str, Any], with_meta: bool) -> None:
        d = self.dir
        if d is None:
            return
        meta = json.dumps(self.meta_json()).encode()
        state = json.dumps(snap).encode()
        with self._files_lock:
            if self._files_removed:
                return
            d.mkdir(parents=True, exist_ok=True)
            if with_meta or not (d / "meta.inf").exists():
                _atomic_write(d / "meta.inf", meta)
            _atomic_write(d / "o.dat", state)

    def write_meta_now(self) -> None:
        """Write config + state synchronously (used right after create/update: small files)."""
        if not self._persistent():
            return
        self._write_state_blocking(self._state_snapshot(), True)
        self._dirty = False
        self._cfg_dirty = False

    def _apply_state(self, st: dict[str, Any]) -> None:
        delivered = st.get("delivered") or {}
        floor = st.get("ack_floor") or {}
        self.delivered_sseq = int(delivered.get("stream_seq", 0))
        scan = int(delivered.get("scan_seq", self.delivered_sseq))
        self.sseq = max(scan, self.delivered_sseq) + 1
        self.dseq = int(delivered.get("consumer_seq", 0)) + 1
        self.adflr = int(floor.get("consumer_seq", 0))
        self.asflr = int(floor.get("stream_seq", 0))
        self.pending = {int(k): [int(v[0]), int(v[1])] for k, v in (st.get("pending") or {}).items()}
        self.rdc = {int(k): int(v) for k, v in (st.get("redelivered") or {}).items()}
        lss = st.get("lss")
        if lss and lss.get("seqs"):
            self.lss = [int(s) for s in lss["seqs"]]
            self.lss_resume = int(lss.get("resume", 0))
        self.ldt = int(st.get("last_delivered_ns", 0))
        self.lat = int(st.get("last_ack_ns", 0))
        # checkRedelivered: drop redelivery counts below the ack floor
        for s in [s for s in self.rdc if s <= self.asflr]:
            del self.rdc[s]

    # -------------------------------------------------------------------------- the task
    def _wake(self) -> None:
        self._kick = True
        ev = self._event
        if ev is not None:
            ev.set()

    signal = _wake

    async def _run(self) -> None:
        assert self._scope is not None and self._done is not None
        try:
            with self._scope:
                while not self.closed:
                    try:
                        await self._loop()
                    except Exception:
                        # a bug must not leave a registered consumer that silently stopped
                        log.exception("consumer %s > %s failed; resuming", self.stream_name, self.name)
                        self._event = None
                        await trio.sleep(1.0)
        finally:
            self._done.set()

    async def _loop(self) -> None:
        while not self.closed:
            self._kick = False
            self._check_stream_config()
            self._check_store_changes()
            reason = await self._deliver_burst()
            if self.closed:
                return
            if reason == "yield":
                await trio.sleep(0)
                continue
            if self._replay and self.sseq > self._replay_lseq:
                self._replay = False
            if self.is_pull:
                self._process_waiting(eos=reason != "maxack")
            self._run_timers()
            if self._dirty and self._flush_at and self._now() >= self._flush_at:
                await self._flush()
                continue
            if self._kick:
                continue
            deadline = self._next_deadline()
            now = self._now()
            if deadline <= now:
                # timers just ran, so this is float rounding: never spin without yielding time
                deadline = now + 1e-6
            self._event = ev = trio.Event()
            with trio.move_on_at(deadline):
                await ev.wait()
            self._event = None
            self._run_timers()

    async def _flush(self) -> None:
        self._flush_at = 0.0
        if not self._dirty:
            return
        self._dirty = False
        if not self._persistent():
            return
        with_meta = self._cfg_dirty
        self._cfg_dirty = False
        snap = self._state_snapshot()
        try:
            await run_blocking(self._write_state_blocking, snap, with_meta)
        except OSError as e:
            # disk full or failing: the state stays dirty and is tried again in a second
            # (logged once per failing spell)
            if not self._state_write_failing:
                log.error("writing consumer state for %s > %s failed: %s", self.stream_name,
                          self.name, e.strerror or e)
            self._state_write_failing = True
            self._cfg_dirty = self._cfg_dirty or with_meta
            self._dirty = True
            self._flush_at = self._now() + STATE_RETRY
            self._wake()
        except Exception:
            log.exception("writing consumer state for %s > %s failed", self.stream_name, self.name)
        else:
            self._state_write_failing = False

    def _next_deadline(self) -> float:
        d = float("inf")
        for t in (self._ptmr_at, self._hb_at, self._dtmr_at, self._pause_at, self._flush_at, self._pin_at):
            if t and t < d:
                d = t
        if self.is_pull and self.waiting:
            for wr in self.waiting:
                if wr.expires and wr.expires < d:
                    d = wr.expires
                if wr.hbt and wr.hbt < d:
                    d = wr.hbt
        return d

    def _run_timers(self) -> None:
        if self.closed:
            return
        now = self._now()
        if self._ptmr_at and now >= self._ptmr_at:
            self._ptmr_at = 0.0
            self._check_pending()
        if self._hb_at and now >= self._hb_at:
            if self.active:
                self._send_idle_heartbeat(self.cfg.deliver_subject)
            self._hb_at = now + self.cfg.idle_heartbeat / 1e9
        if self._pin_at and now >= self._pin_at:
            self._pin_at = 0.0
            if self.pin_id:
                self.pin_id = ""
                self.advisories.unpinned(self._group_name(), "timeout")
                self._kick = True
        if self._pause_at and now >= self._pause_at:
            self._pause_at = 0.0
            self.advisories.pause(False, self.cfg.pause_until)
            self._kick = True
        if self.is_pull and self.waiting:
            # a request's expiry or heartbeat time came: nats-server's request timer then runs
            # processWaiting with eos, which ends a no_wait request (404) even while delivery
            # is stalled on max_ack_pending
            due = any((wr.expires and now >= wr.expires) or (wr.hbt and now >= wr.hbt)
                      for wr in self.waiting)
            self._process_waiting(eos=due)
        if self._dtmr_at and now >= self._dtmr_at:
            self._dtmr_at = 0.0
            self._delete_not_active()

    # -------------------------------------------------------------------------- delivery
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
            pending = self._num_pending()
            seq = sm.seq
            reply = f"{self.ack_prefix}{dc}.{seq}.{self.dseq}.{sm.ts}.{pending}"
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
                    wr.d += 1
                    wr.n -= 1
                    wq.popleft()
                    if wr.n > 0:
                        wq.append(wr)
                else:
                    wr = self._next_waiting(sz, now)
                if wr is None:
                    self._put_back(seq, dc)
                    return "idle"
                dsubj = wr.reply
                if cfg.priority_policy == "pinned_client" and self.pin_id:
                    hdr = _add_header(hdr, "Nats-Pin-Id", self.pin_id)
                    sz = len(sm.subject) + len(reply) + len(hdr) + len(data)
                if wr.n > 0 and wr.hb:
                    wr.hbt = now + wr.hb
            # replay original / rate limit: wait while still holding the message
            delay_until = 0.0
            if self._replay and self._lts > 0:
                gap = (sm.ts - self._lts) / 1e9
                if gap > 0.001:
                    delay_until = now + gap
            self._lts = sm.ts
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
                self._send(dsubj, None, _pending_status(409, "Batch Completed", wr.n, wr.b), b"")
            if push and self.cfg.idle_heartbeat:
                self._hb_at = now + self.cfg.idle_heartbeat / 1e9
            count += 1
        return "idle"

    def _fast_ok(self) -> bool:
        """Whether this burst can start on the bulk path: fresh messages only (no
        redeliveries, skip list or replay/rate pacing), no per-message rewriting, no flow
        control, one filter at most, deliver subjects that are not remapped."""
        cfg = self.cfg
        if self.rdq or self.lss or self._replay or self.closed:
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
        subject per burst instead of a route per message, and the burst's state (timers,
        dirty mark, flush) settled once at the end. Stops (to let the general loop decide)
        at the first message or request that needs anything more. Returns the count."""
        cfg = self.cfg
        c = self.client
        store = self.store
        push = bool(cfg.deliver_subject)
        acking = cfg.ack_policy != "none"
        if acking and cfg.max_ack_pending > 0:
            limit = min(limit, cfg.max_ack_pending - len(self.pending))
        if limit <= 0:
            return 0
        if self._npc_stale:
            self._recalc_num_pending()
        wq = self.waiting
        targets: dict[str, _Target | None] = {}
        used: list[_Target] = []
        prefix = self.ack_prefix_b
        pending_map = self.pending
        stream_acks = not acking and retention != "limits"
        npc = self.npc
        dseq = self.dseq
        count = 0
        nbytes = 0
        last_seq = 0
        last_ts = 0
        dsubj = cfg.deliver_subject
        wr: PullRequest | None = None
        last_subj: Any = None
        sb = b""
        while count < limit and nbytes < FAST_BURST_BYTES:
            msgs = self._take_fresh(store, limit - count)
            if not msgs:
                break
            stop = False
            for i, sm in enumerate(msgs):
                if not push:
                    if not wq:
                        stop = True
                    else:
                        wr = wq[0]
                        if wr.b > 0 or (wr.expires and now >= wr.expires):
                            stop = True
                        dsubj = wr.reply
                if not stop:
                    t = targets.get(dsubj, _MISSING)
                    if t is _MISSING:
                        t = targets[dsubj] = self._fast_target(dsubj)
                        if t is not None:
                            used.append(t)
                    stop = t is None or nbytes >= FAST_BURST_BYTES
                if stop:
                    self._give_back(store, msgs[i:])
                    break
                seq, subj, hdr, data, ts = sm
                if subj is not last_subj:
                    last_subj = subj
                    sb = subj.encode("utf-8", "surrogateescape")
                npc -= 1
                pend = npc if npc > 0 else 0
                size = len(data) if hdr is None else len(hdr) + len(data)
                # the delivery contract, as the router calls it: seen under the stored
                # subject, routed on the deliver subject, the ack subject as reply
                t.deliver(t.sub, sb, b"%s1.%d.%d.%d.%d" % (prefix, seq, dseq, ts, pend), hdr,
                          (data,), c, t.on)
                t.n += 1
                nbytes += size
                if acking:
                    p = pending_map.get(seq)
                    if p is not None:
                        p[1] = now_ns
                    else:
                        pending_map[seq] = [dseq, now_ns]
                dseq += 1
                count += 1
                last_seq = seq
                last_ts = ts
                if wr is not None:
                    wr.d += 1
                    wr.n -= 1
                    wq.popleft()
                    if wr.n > 0:
                        wq.append(wr)
                        if wr.hb:
                            wr.hbt = now + wr.hb
                if stream_acks:
                    self.npc = npc
                    self._stream_ack(seq)
                    if self._npc_stale:
                        self._recalc_num_pending()
                    npc = self.npc
            if stop:
                break
        if not count:
            return 0
        # settle the burst as `_deliver` would have after its last message
        self.npc = npc
        self.dseq = dseq
        self._taken = None
        if last_seq > self.delivered_sseq:
            self.delivered_sseq = last_seq
        self.ldt = now_ns
        self._lts = last_ts
        if acking:
            at = now + self._ack_wait(0) / 1e9
            if not self._ptmr_at or self._ptmr_at > at:
                self._ptmr_at = at
        else:
            self.adflr = dseq - 1
            self.asflr = last_seq
        if not (self._dirty and (self._flush_at or not self._persist)):
            self._mark_dirty()
        if self.dthresh > 0 and not push:
            self.waiting_last = now
        if push and cfg.idle_heartbeat:
            self._hb_at = now + cfg.idle_heartbeat / 1e9
        c = self.client
        c.in_msgs += count
        c.in_bytes += nbytes
        for t in used:
            t.sub.delivered += t.n
        return count

    def _get_next_msg(self) -> tuple[Any, int] | str | None:
        """getNextMsg: redeliveries first, then the skip list, then the next match."""
        store = self.store
        while self.rdq:
            seq = self.rdq.popleft()
            self.rdq_set.discard(seq)
            if seq not in self.pending:
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
                p = self.pending.get(seq)
                if p is not None:
                    self._process_term(seq, p[0], dc - 1, TERM_UNACKED_LIMITS_REASON, None)
                continue
            return sm, dc
        if self.cfg.max_ack_pending > 0 and self.cfg.ack_policy != "none" \
                and len(self.pending) >= self.cfg.max_ack_pending:
            return "maxack"
        while self.lss:
            seq = self.lss.pop(0)
            self._taken = (seq, self.sseq, True)
            if not self.lss:
                self.lss = None
                self.sseq = self.lss_resume
            else:
                self.sseq = seq
            self.sseq += 1
            sm = store.load_msg(seq)
            if sm is None:
                continue
            return sm, 1
        if len(self._filters) <= 1 and hasattr(store, "load_next_msgs"):
            sm = self._next_buffered(store)
        else:
            sm, nseq = self._load_next(self.sseq)
            if sm is None and nseq > self.sseq:
                self.sseq = nseq
        if sm is None:
            return None
        self._taken = (sm.seq, self.sseq, False)
        self.sseq = sm.seq + 1
        return sm, 1

    def _next_buffered(self, store: Any) -> Any:
        """The next matching message at or after sseq, from the read-ahead buffer (refilled
        with one store call per NBUF_MSGS messages); None at the end (sseq moved past it).
        Does not move sseq past the message (the caller does)."""
        buf = self._nbuf
        fl = self._filters
        if buf:
            key = self._nbuf_key
            if key is not None and key[0] == self.sseq and key[1] is store \
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

    def _refill(self, store: Any, fl: list[str]) -> list[Any]:
        """One read-ahead load from sseq; at the end of the stream, sseq moves to where
        the store says the next message will be and the result is empty."""
        self._nbuf_removals = store.removals
        msgs, nseq = store.load_next_msgs(fl[0] if fl else ">", self.sseq, NBUF_MSGS, NBUF_BYTES)
        if not msgs:
            self._nbuf_key = None
            if nseq > self.sseq:
                self.sseq = nseq
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
            if key is not None and key[0] == self.sseq and key[1] is store \
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
            msgs = self._refill(store, fl)
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
        self.sseq = nxt
        self._nbuf_key = (nxt, store, fl, store.reuse_gen, self._nbuf_removals) if buf else None
        return out

    def _give_back(self, store: Any, msgs: list[Any]) -> None:
        """Undo `_take_fresh` for `msgs` (its tail): back to the front of the buffer."""
        if not msgs:
            return
        self._nbuf.extendleft(reversed(msgs))
        self.sseq = msgs[0].seq
        self._nbuf_key = (self.sseq, store, self._filters, store.reuse_gen, self._nbuf_removals)

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

    def _put_back(self, seq: int, dc: int) -> None:
        """Could not hand this message to anyone: undo taking it."""
        taken = self._taken
        if dc == 1 and taken is not None and taken[0] == seq:
            _, prev_sseq, from_lss = taken
            if from_lss:   # back onto the last-per-subject skip list
                self.lss = [seq] + (self.lss or [])
            self.sseq = prev_sseq
            if not self._npc_stale:
                self.npc += 1
            self._taken = None
        elif seq not in self.rdq_set:
            self._dec_dc(seq)
            self.rdq.appendleft(seq)
            self.rdq_set.add(seq)

    def _deliver(self, dsubj: str, reply: str, sm: Any, hdr: bytes | None, data: bytes,
                 dc: int, sz: int, now: float | None = None, now_ns: int | None = None,
                 retention: str | None = None) -> None:
        """deliverMsg: update state first (delivery may re-enter us via a synchronous ack),
        then publish. `now` / `now_ns` / `retention`: the burst's clock readings and stream
        retention (looked up here when absent)."""
        if now is None:
            now = self._now()
        if now_ns is None:
            now_ns = self.clock.now_ns()
        dseq = self.dseq
        self.dseq = dseq + 1
        seq = sm.seq
        maxpb = self.maxpb
        if maxpb > 0:
            self.pbytes += sz
        ap = self.cfg.ack_policy
        if dc == 1 and seq > self.delivered_sseq:
            self.delivered_sseq = seq
        self.ldt = now_ns
        if ap != "none":
            self._track_pending(seq, dseq, now_ns, now)
        else:
            self.adflr = dseq
            self.asflr = seq
        if not (self._dirty and (self._flush_at or not self._persist)):
            self._mark_dirty()
        if self.dthresh > 0 and not self.cfg.deliver_subject:
            self.waiting_last = now
        n = self._publish_as(dsubj, reply, hdr, data, sm.subject)
        if n == 0:
            self._did_not_deliver(seq, dsubj)
        if maxpb > 0 and self._need_flow_control(sz):
            self._send_flow_control()
        if ap == "none" and (retention or self.retention) != "limits":
            self._stream_ack(seq)

    def _publish_as(self, dsubj: str, reply: str, hdr: bytes | None, data: bytes, orig_subject: str) -> int:
        """Deliver to `dsubj` while the message keeps its stored subject.

        A pull consumer's messages are addressed to the request's inbox but must arrive with the
        original subject; push deliveries likewise. The router routes on `on` (dsubj) and the
        frame carries the stored subject (nats-server's internal client does the same)."""
        c = self.client
        c.in_msgs += 1
        c.in_bytes += len(data) + (len(hdr) if hdr else 0)
        return route(self.account, orig_subject.encode("utf-8", "surrogateescape"),
                     reply.encode("utf-8", "surrogateescape") if reply else None, hdr, (data,), c,
                     dsubj.encode("utf-8", "surrogateescape"))

    def _send(self, subject: str, reply: str | None, hdr: bytes | None, data: bytes) -> int:
        return self.client.publish(subject, reply, hdr, data)

    def _did_not_deliver(self, seq: int, dsubj: str) -> None:
        """Nobody received it: push goes inactive, pull re-queues it."""
        self._dec_dc(seq)
        if self.is_push:
            self.active = bool(self.account.sublist.match(self.cfg.deliver_subject))
            if not self.active and self.dthresh > 0 and not self._dtmr_at:
                self._dtmr_at = self._now() + self.dthresh
        if seq in self.pending and seq not in self.rdq_set:
            self.rdq.append(seq)
            self.rdq_set.add(seq)

    def _track_pending(self, seq: int, dseq: int, now_ns: int, now: float | None = None) -> None:
        p = self.pending.get(seq)
        if p is not None:
            p[1] = now_ns
        else:
            self.pending[seq] = [dseq, now_ns]
        delay = self._ack_wait(0)
        bo = self.cfg.backoff
        if bo:
            bi = min(max(self.rdc.get(seq, 0), 0), len(bo) - 1)
            delay = self._ack_wait(bo[bi])
        at = (self._now() if now is None else now) + delay / 1e9
        if not self._ptmr_at or self._ptmr_at > at:
            self._ptmr_at = at

    def _ack_wait(self, nxt: int) -> int:
        return (nxt if nxt > 0 else self.cfg.ack_wait) + ACK_WAIT_DELAY_NS

    # -------------------------------------------------------------------------- num pending
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
            if self.sseq < st.first_seq and not self.lss:
                self.sseq = st.first_seq
        if removed and self.pending:
            self._settle_removed_pending()

    def _settle_removed_pending(self) -> None:
        """Pending messages the stream no longer has are settled like a TERM (what nats-server's
        decStreamPending does when the stream tells it about each removal)."""
        subject_for = self.store.subject_for_seq
        for seq in [s for s in self.pending if subject_for(s) is None]:
            p = self.pending.get(seq)
            if p is not None:
                self._process_term(seq, p[0], self._delivery_count(seq), TERM_UNACKED_LIMITS_REASON, None)

    def _recalc_num_pending(self) -> int:
        store = self.store
        lps = self.cfg.deliver_policy == "last_per_subject"
        fl = self._filters
        if not fl:
            n = store.num_pending(self.sseq, ">", lps)
        else:
            n = sum(store.num_pending(self.sseq, f, lps) for f in fl)
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
            if (self.sseq > st.last_seq and self.npc > 0) or self.npc > st.msgs:
                self._npc_stale = True
        return self._num_pending()

    # -------------------------------------------------------------------------- stream hooks
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
        if seq < self.sseq:
            return
        if (self.is_push and self.active) or (self.is_pull and self.waiting):
            self._wake()

    def on_msg_removed(self, seq: int, subject: str) -> None:
        """decStreamPending: the stream removed one message (limits, delete, interest/WQ ack)."""
        if self.closed:
            return
        self._seen_msgs -= 1
        if seq >= self.sseq and self._matcher(subject) and not self._npc_stale:
            self.npc -= 1
        p = self.pending.get(seq)
        if p is not None:
            self._process_term(seq, p[0], self._delivery_count(seq), TERM_UNACKED_LIMITS_REASON, None)

    def on_stream_purged(self, first_seq: int, subject: str = "") -> None:
        """The stream was purged (optionally by subject): skip past removed messages."""
        if self.closed:
            return
        self._npc_stale = True
        self._check_store_changes()
        if not subject and self.sseq < first_seq:
            self.sseq = first_seq
        if self.asflr < first_seq - 1:
            self.asflr = first_seq - 1
            for seq in [s for s in self.pending if s <= self.asflr]:
                p = self.pending.pop(seq)
                if p[0] > self.adflr:
                    self.adflr = p[0]
                self.rdc.pop(seq, None)
        store = self.store
        for seq in [s for s in self.pending if store.load_msg(s) is None]:
            p = self.pending.pop(seq)
            self.rdc.pop(seq, None)
            if p[0] > self.adflr and not self.pending:
                self.adflr = p[0]
        if not self.pending:
            self.adflr = self.dseq - 1
            self.asflr = self.sseq - 1
        if self.rdq:
            keep = [s for s in self.rdq if s in self.pending]
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

    def needs_ack(self, seq: int, subject: str | None = None) -> bool:
        """needAck: must the stream keep `seq` for this consumer (interest retention)?"""
        if self._filters and not self.is_interested(seq, subject):
            return False
        ap = self.cfg.ack_policy
        need = False
        if ap in ("none", "all"):
            need = seq > self.asflr
        elif seq > self.asflr:
            need = True if seq >= self.sseq else seq in self.pending
        if not need:
            need = seq in self.rdc
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

    # -------------------------------------------------------------------------- acks
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
        if sseq >= self.sseq:
            return False
        ap = self.cfg.ack_policy
        acked: list[int] = []
        need_signal = False
        maxp = self.cfg.max_ack_pending
        if ap == "explicit":
            p = self.pending.get(sseq)
            if p is not None:
                if sample and self.sfreq:
                    self._sample_ack(sseq, dseq, dc, p)
                if maxp > 0 and len(self.pending) >= maxp:
                    need_signal = True
                del self.pending[sseq]
                dseq = p[0]
                if not self.pending:
                    # everything delivered is acked: the floor is the last delivery (as the
                    # consumer store reports it), not how far a filtered scan has run ahead
                    self.adflr = self.dseq - 1
                    self.asflr = self.delivered_sseq
                elif dseq == self.adflr + 1:
                    self.adflr, self.asflr = dseq, sseq
                    pend = self.pending
                    q = pend.get(sseq + 1)
                    if q is not None:
                        # acks in delivery order: the next message is the one still pending
                        self.adflr = q[0] - 1
                    elif len(pend) < self.sseq - sseq:
                        nxt = min(pend)
                        if nxt > sseq:
                            q = pend[nxt]
                            self.adflr, self.asflr = q[0] - 1, nxt - 1
                    else:
                        for ss in range(sseq + 1, self.sseq):
                            q = pend.get(ss)
                            if q is not None:
                                self.adflr, self.asflr = q[0] - 1, ss - 1
                                break
                acked.append(sseq)
            self.rdc.pop(sseq, None)
            self._remove_from_rdq(sseq)
        elif ap == "all":
            if dseq <= self.adflr or sseq <= self.asflr:
                return True
            if maxp > 0 and len(self.pending) >= maxp:
                need_signal = True
            old_floor = self.asflr
            self.adflr, self.asflr = dseq, sseq
            for seq in [s for s in self.pending if s <= sseq]:
                del self.pending[seq]
                self.rdc.pop(seq, None)
                self._remove_from_rdq(seq)
            if self.retention != "limits":
                acked.extend(range(old_floor + 1, sseq + 1))
        else:
            return self.retention != "limits"
        self.lat = self.clock.now_ns()
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
        if dseq <= self.adflr or dseq > self.dseq:
            return
        p = self.pending.get(sseq)
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
        p = self.pending.get(sseq)
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
        return self.rdc.get(seq, 0) + 1

    def _inc_dc(self, seq: int) -> int:
        n = self.rdc.get(seq, 0) + 1
        self.rdc[seq] = n
        return n + 1

    def _dec_dc(self, seq: int) -> None:
        n = self.rdc.get(seq)
        if n is None:
            return
        if n <= 1:
            del self.rdc[seq]
        else:
            self.rdc[seq] = n - 1

    def _drop_pending(self, seq: int) -> None:
        """Max deliveries reached: stop tracking `seq` (its redelivery count stays)."""
        if self.pending.pop(seq, None) is not None:
            self._mark_dirty()
            if not self.pending:
                self.adflr = self.dseq - 1
                self.asflr = self.sseq - 1
            if self.cfg.max_ack_pending > 0:
                self._wake()

    # -------------------------------------------------------------------------- redelivery
    def _check_pending(self) -> None:
        """checkPending: queue expired messages for redelivery, re-arm the timer."""
        if self.closed or not self.pending:
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
        for seq, p in list(self.pending.items()):
            if seq < fseq or seq <= self.asflr:
                del self.pending[seq]
                self.rdc.pop(seq, None)
                self._remove_from_rdq(seq)
                changed = True
                if seq > self.asflr:
                    self.asflr = seq
                if p[0] > self.adflr:
                    self.adflr = p[0]
                continue
            elapsed = now - p[1]
            deadline = ttl
            if bo:
                dc = max(self.rdc.get(seq, 0), 0)
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
                    self.rdc[seq] = self._delivery_count(seq)
                    del self.pending[seq]
                    changed = True
                    if self.cfg.max_ack_pending > 0:
                        self._kick = True
                    continue
                expired.append(seq)
            elif deadline - elapsed < nxt:
                nxt = deadline - elapsed
        if expired:
            expired.sort()
            off = now - self.pending[expired[0]][1]
            for seq in expired:
                self.rdq.append(seq)
                self.rdq_set.add(seq)
                p = self.pending.get(seq)
                if p is not None:
                    p[1] += off
            self._kick = True
        if self.pending:
            self._ptmr_at = self._now() + max(nxt, 0) / 1e9
        else:
            self._ptmr_at = 0.0
            self.rdq.clear()
            self.rdq_set.clear()
            self.adflr = self.dseq - 1
            self.asflr = self.sseq - 1
        if changed or expired:
            self._mark_dirty()

    # -------------------------------------------------------------------------- pull requests
    def _on_next_request(self, sub: Any, msg: "Msg") -> None:
        if not msg.reply or self.closed:
            return
        self.process_next_request(msg.reply, bytes(msg.data))

    def process_next_request(self, reply: str, data: bytes) -> None:
        """processNextMsgRequest."""
        if self.closed:
            return
        if self.is_push:
            self._send(reply, None, _status(409, "Consumer is push based"), b"")
            return
        now = self._now()
        try:
            batch, expires, max_bytes, no_wait, hb, group = parse_next_request(data, now)
        except ValueError as e:
            self._send(reply, None, _status(400, f"Bad Request - {e}"), b"")
            return
        cfg = self.cfg
        if cfg.max_batch > 0 and batch > cfg.max_batch:
            self._send(reply, None, _status(409, f"Exceeded MaxRequestBatch of {cfg.max_batch}"), b"")
            return
        if expires and cfg.max_expires > 0 and expires > now + cfg.max_expires / 1e9:
            self._send(reply, None, _status(409, f"Exceeded MaxRequestExpires of {go_duration(cfg.max_expires)}"), b"")
            return
        if max_bytes > 0 and cfg.max_bytes > 0 and max_bytes > cfg.max_bytes:
            self._send(reply, None, _status(409, f"Exceeded MaxRequestMaxBytes of {cfg.max_bytes}"), b"")
            return
        if group is not None:
            if (group["min_pending"] or group["min_ack_pending"]) and cfg.priority_policy != "overflow":
                self._send(reply, None, _status(400, "Bad Request - Not a Overflow Priority consumer"), b"")
            if group["id"] and cfg.priority_policy != "pinned_client":
                self._send(reply, None, _status(400, "Bad Request - Not a Pinned Client Priority consumer"), b"")
            if cfg.priority_policy != "none":
                if not group["group"]:
                    self._send(reply, None, _status(400, "Bad Request - Priority Group missing"), b"")
                    return
                if group["group"] not in cfg.priority_groups:
                    self._send(reply, None, _status(400, "Bad Request - Invalid Priority Group"), b"")
                    return
                if self.pin_id:
                    if group["id"] == self.pin_id:
                        self._pin_at = now + cfg.priority_timeout / 1e9
                    elif group["id"]:
                        self._send(reply, None, _status(423, "Nats-Pin-Id mismatch"), b"")
                        return
        if batch <= 0:
            batch = 1
        if len(self.waiting) >= cfg.max_waiting > 0:
            self._process_waiting(eos=False)
        if no_wait:
            msgs_pending = self.num_pending() + len(self.rdq)
            if msgs_pending == 0 and not expires:
                self.waiting_last = now
                self._send(reply, None, _status(404, "No Messages"), b"")
                return
            if msgs_pending > 0:
                brp = self._process_waiting(eos=False)
                if msgs_pending < brp:
                    self.waiting_last = now
                    self._send(reply, None, _status(408, "Requests Pending"), b"")
                    return
        wr = PullRequest(reply, batch, max_bytes, expires, now, hb, no_wait, group)
        if cfg.max_waiting > 0 and len(self.waiting) >= cfg.max_waiting:
            if not hb:
                self._send(reply, None, _status(409, "Exceeded MaxWaiting"), b"")
            return
        self.waiting.append(wr)
        self.waiting_last = now
        self._wake()

    def _next_waiting(self, sz: int, now: float | None = None) -> PullRequest | None:
        """nextWaiting: the request the next message goes to, FIFO with round-robin batches,
        honouring a pinned client or overflow thresholds when the consumer has a priority
        policy."""
        wq = self.waiting
        if now is None:
            now = self._now()
        sl = self.account.sublist
        policy = self.cfg.priority_policy
        cycled = 0
        while wq:
            wr = wq[0]
            if wr.b > 0:
                if sz <= wr.b:
                    wr.b -= sz
                    if wr.b == 0:
                        wr.n = 1
                else:
                    self._send(wr.reply, None,
                               _pending_status(409, "Message Size Exceeds MaxBytes", wr.n, wr.b), b"")
                    wq.popleft()
                    continue
            if not wr.expires or now < wr.expires:
                new_pin = False
                rid = (wr.group or {}).get("id") or ""
                if policy == "pinned_client":
                    if not self.pin_id:
                        if rid:
                            self._send(wr.reply, None, _status(423, "Nats-Wrong-Pin-Id"), b"")
                            wq.popleft()
                            continue
                        self.pin_id = nuid()
                        self.pin_ts = self.clock.now_ns()
                        self._pin_at = now + self.cfg.priority_timeout / 1e9
                        new_pin = True
                    elif rid != self.pin_id:
                        if not rid:
                            wq.rotate(-1)
                            cycled += 1
                            if cycled >= len(wq):
                                return None
                            continue
                        self._send(wr.reply, None, _status(423, "Nats-Wrong-Pin-Id"), b"")
                        wq.popleft()
                        continue
                elif policy == "overflow" and wr.group is not None:
                    mp = int(wr.group.get("min_pending") or 0)
                    map_ = int(wr.group.get("min_ack_pending") or 0)
                    if (mp > 0 and mp > self.npc + 1) or (map_ > 0 and map_ > len(self.pending)):
                        wq.rotate(-1)
                        cycled += 1
                        if cycled >= len(wq):
                            return None
                        continue
                if sl.match(wr.reply):
                    if new_pin:
                        self.advisories.pinned(self._group_name(), self.pin_id)
                    wr.d += 1
                    wr.n -= 1
                    wq.popleft()
                    if wr.n > 0:
                        wq.append(wr)
                    return wr
                if new_pin:
                    self.pin_id = ""   # the would-be pinned client is gone: pick again
                    self._pin_at = 0.0
            else:
                self._send(wr.reply, None, _pending_status(408, "Request Timeout", wr.n, wr.b), b"")
            wq.popleft()
        return None

    def _group_name(self) -> str:
        g = self.cfg.priority_groups
        return g[0] if g else ""

    def unpin(self, group: str) -> None:
        """CONSUMER.UNPIN: the next pull request gets a new pin."""
        self.pin_id = ""
        self._pin_at = 0.0
        self.advisories.unpinned(group, "admin")
        self._wake()

    def _process_waiting(self, eos: bool) -> int:
        """processWaiting: expire, answer finished no-wait requests, drop requests nobody
        listens to, send pull heartbeats. Returns the batch still wanted in total."""
        if not self.waiting:
            return 0
        now = self._now()
        sl = self.account.sublist
        keep: deque[PullRequest] = deque()
        brp = 0
        for wr in self.waiting:
            expired = bool(wr.expires) and now >= wr.expires
            if (eos and wr.no_wait) or expired:
                if expired:
                    self._send(wr.reply, None, _pending_status(408, "Request Timeout", wr.n, wr.b), b"")
                    continue
                if not wr.expires or wr.d > 0:
                    self._send(wr.reply, None, _status(404, "No Messages"), b"")
                    continue
            if not sl.match(wr.reply):
                continue
            brp += wr.n
            if wr.hbt and now >= wr.hbt:
                self._send_idle_heartbeat(wr.reply)
                wr.hbt = now + wr.hb
            keep.append(wr)
        self.waiting = keep
        return brp

    # -------------------------------------------------------------------------- push side
    def _interest_changed(self) -> None:
        if self.closed or not self.is_push:
            return
        interest = bool(self.account.sublist.match(self.cfg.deliver_subject))
        if interest and not self.active:
            self._wake()
        self.active = interest
        if self.dthresh > 0:
            if interest:
                self._dtmr_at = 0.0
            elif not self._dtmr_at:
                self._dtmr_at = self._now() + self.dthresh
                self._wake()

    def _send_idle_heartbeat(self, subject: str) -> None:
        items = [("Nats-Last-Consumer", str(self.dseq - 1)), ("Nats-Last-Stream", str(self.sseq - 1))]
        if self.fcid:
            items.append(("Nats-Consumer-Stalled", self.fcid))
        self._send(subject, None, _status(100, "Idle Heartbeat", items), b"")

    def _set_max_pending_bytes(self, limit: int) -> None:
        self.pblimit = limit
        self.maxpb = max(limit // 16, 1)

    def _need_flow_control(self, sz: int) -> bool:
        if self.maxpb == 0:
            return False
        if not self.fcid and self.pbytes > self.maxpb // 2:
            return True
        if self.fcid and (self.pbytes - self.fcsz) >= self.maxpb:
            self.fcsz += sz
        return False

    def _send_flow_control(self) -> None:
        if not self.is_push:
            return
        rn = random.getrandbits(63)
        suffix = ""
        for _ in range(4):
            rn, r = divmod(rn, 62)
            suffix += _B62[r]
        self.fcid = self.fc_prefix + suffix
        self.fcsz = self.pbytes
        self._send(self.cfg.deliver_subject, self.fcid, _status(100, "FlowControl Request"), b"")

    def _on_flow_control(self, sub: Any, msg: "Msg") -> None:
        if self.closed or msg.subject != self.fcid:
            return
        if self.maxpb < self.pblimit:
            self.maxpb = min(self.maxpb * 2, self.pblimit)
        self.pbytes = max(self.pbytes - self.fcsz, 0)
        self.fcid = ""
        self.fcsz = 0
        self._wake()

    def _rate_delay(self, sz: int) -> float:
        """Token bucket in bytes/s (rate_limit_bps / 8), burst = max message size."""
        rate = self.cfg.rate_limit_bps / 8
        if rate <= 0:
            return 0.0
        burst = getattr(self.stream.config, "max_msg_size", 0) or 0
        if burst <= 0:
            burst = self.broker.options.max_payload
        now = self._now()
        if self._rl_last == 0.0:
            self._rl_tokens = float(burst)
        else:
            self._rl_tokens = min(float(burst), self._rl_tokens + (now - self._rl_last) * rate)
        self._rl_last = now
        self._rl_tokens -= sz
        if self._rl_tokens >= 0:
            return 0.0
        return -self._rl_tokens / rate

    # -------------------------------------------------------------------------- inactivity
    def _update_inactive_threshold(self) -> None:
        cfg = self.cfg
        if not cfg.durable_name and cfg.inactive_threshold <= 0:
            self.dthresh = 5.0 + 0.1 + random.random() * 0.9
            cfg.inactive_threshold = 5_000_000_000
        elif cfg.inactive_threshold > 0:
            t = cfg.inactive_threshold / 1e9
            self.dthresh = t + 0.1 + random.random() * 0.9 if self.is_pull else t
        else:
            self.dthresh = 0.0

    def _suppress_deletion(self) -> None:
        if self.dthresh <= 0:
            return
        now = self._now()
        if self.is_push:
            if self._dtmr_at:
                self._dtmr_at = now + self.dthresh
        else:
            self.waiting_last = now
            if self._dtmr_at:
                self._dtmr_at = now + self.dthresh

    def _delete_not_active(self) -> None:
        """deleteNotActive."""
        if self.closed:
            return
        now = self._now()
        if self.is_push:
            if self.active:
                return
        else:
            deadline = self.waiting_last + self.dthresh
            if now < deadline:
                self._dtmr_at = deadline
                return
            self._process_waiting(eos=True)
            if self.waiting:
                self._dtmr_at = now + self.dthresh
                return
            now_ns = self.clock.now_ns()
            delay = 0
            bo = self.cfg.backoff
            for seq, p in self.pending.items():
                if bo:
                    bi = min(max(self.rdc.get(seq, 0), 0), len(bo) - 1)
                    aw = self._ack_wait(bo[bi])
                else:
                    aw = self._ack_wait(0)
                ts = p[1] + aw + int(self.dthresh * 1e9)
                if ts > now_ns:
                    delay = max(delay, ts - now_ns)
            if delay > 0:
                self._dtmr_at = now + delay / 1e9
                return
        log.debug("deleting inactive consumer %s > %s", self.stream_name, self.name)
        self.delete(advisory=True)

    # -------------------------------------------------------------------------- config update
    def update_config(self, new: ConsumerConfig) -> None:
        """updateConfig: the caller already ran check_update()."""
        old = self.cfg
        if new.deliver_subject != old.deliver_subject and self.is_push:
            if self.pending:
                self._force_expire_pending()
            w = _interest_watcher(self.account)
            w.remove(old.deliver_subject, self)
            w.add(new.deliver_subject, self)
            self.active = bool(self.account.sublist.match(new.deliver_subject))
        if new.max_ack_pending != old.max_ack_pending:
            self._kick = True
        if new.ack_wait != old.ack_wait and self._ptmr_at:
            self._ptmr_at = self._now() + 0.1
        if new.sample_freq != old.sample_freq:
            self.sfreq = sample_frequency(new)
        if new.max_deliver != old.max_deliver:
            self.maxdc = max(new.max_deliver, 0)
        threshold_changed = new.inactive_threshold != old.inactive_threshold
        pause_changed = new.pause_until != old.pause_until
        filters_changed = new.filters != old.filters
        self.cfg = new
        if threshold_changed:
            self._update_inactive_threshold()
            self._dtmr_at = self._now() + self.dthresh if self.dthresh > 0 else 0.0
        if pause_changed:
            self._update_pause_timer()
            self.advisories.pause(self._paused(), new.pause_until)
        if filters_changed:
            self._set_filters(new.filters)
            self._recalc_num_pending()
        self._persist = self._persistent()
        self._cfg_dirty = True
        self._mark_dirty()
        self._wake()

    def _force_expire_pending(self) -> None:
        expired = sorted(s for s in self.pending if s not in self.rdq_set)
        for s in expired:
            self.rdq.append(s)
            self.rdq_set.add(s)
        self._wake()

    def _update_pause_timer(self) -> None:
        pu = self.cfg.pause_until
        self._pause_at = 0.0
        if pu:
            now_ns = self.clock.now_ns()
            if pu > now_ns:
                self._pause_at = self._now() + (pu - now_ns) / 1e9
                self._wake()

    def pause(self, until_ns: int | None) -> None:
        """CONSUMER.PAUSE: set or clear pause_until (0/None resumes)."""
        new = self.cfg.copy()
        new.pause_until = until_ns or None
        from .consumer_config import set_static_metadata
        set_static_metadata(new)
        self.update_config(new)

    # -------------------------------------------------------------------------- info
    def info(self) -> dict[str, Any]:
        """The ConsumerInfo JSON (without the response `type`)."""
        self._check_stream_config()
        self._check_store_changes()
        cfg = self.cfg
        now_ns = self.clock.now_ns()
        delivered: dict[str, Any] = {"consumer_seq": self.dseq - 1, "stream_seq": self.delivered_sseq}
        if self.ldt:
            delivered["last_active"] = rfc3339(self.ldt)
        ack_floor: dict[str, Any] = {"consumer_seq": self.adflr, "stream_seq": self.asflr}
        if self.lat:
            ack_floor["last_active"] = rfc3339(self.lat)
        if self.is_pull:
            self._process_waiting(eos=False)
        info: dict[str, Any] = {
            "stream_name": self.stream_name,
            "name": self.name,
            "created": rfc3339(self.created_ns),
            "config": _config_for_response(cfg, self.broker),
            "delivered": delivered,
            "ack_floor": ack_floor,
            "num_ack_pending": len(self.pending),
            "num_redelivered": 0 if cfg.max_deliver == 1 else len(self.rdc),
            "num_waiting": len(self.waiting) if self.is_pull else 0,
            "num_pending": self.num_pending(),
        }
        if self.is_push and self.active:
            info["push_bound"] = True
        pu = cfg.pause_until
        if pu and now_ns < pu:
            info["paused"] = True
            info["pause_remaining"] = pu - now_ns
        info["ts"] = rfc3339(now_ns)
        if cfg.priority_groups:
            pg: dict[str, Any] = {"group": cfg.priority_groups[0]}
            if self.pin_id:
                pg["pinned_client_id"] = self.pin_id
            pg["pinned_ts"] = rfc3339(self.pin_ts if self.pin_id else 0)
            info["priority_groups"] = [pg]
        return info

    def __repr__(self) -> str:
        return f"<Consumer {self.stream_name} > {self.name}>"


def _config_for_response(cfg: ConsumerConfig, broker: Any) -> dict[str, Any]:
    from .. import NATS_VERSION
    from .consumer_config import config_json_with_dynamic_metadata
    return config_json_with_dynamic_metadata(cfg, NATS_VERSION)


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


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a partial copy would only take more of a full disk
        raise
