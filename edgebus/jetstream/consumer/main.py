"""The `Consumer` class: one consumer of one stream, put together from the parts beside it.

This module holds what ties the parts together: construction, the start position
(selectStartingSeqNo), the lifecycle (start / stop / delete), persistence of config and state,
config updates and ConsumerInfo. The behaviour lives in the mixins: `delivery` (both delivery
paths), `readahead` (store reads), `pull` (the waiting list), `push` (interest, heartbeats,
flow control), `acks` (acks, redelivery, backoff), `stream_hooks` (stream notifications,
num_pending), `task` (the delivery task and timers). The state they share is `self.st`
(`state.ConsumerState`).

What the stream gives us: `name`, `config`, `store`, `account`, `js.client`, `nursery`,
`consumers`, `dir`, `new_msg_listeners`, `on_consumer_ack(consumer, seq)` and
`on_consumer_deleted(consumer)`. What we give the stream: `matches_subject`, `is_interested`,
`needs_ack` / `has_acked` (interest retention), `on_stream_purged(first_seq, filter)`, optional
`on_msg_removed(seq, subject)` (exact pending counts; without it removals are noticed by
comparing the store's state with our own accounting), `stop(delete=...)` and `info()`.
Durable state lives in `<stream dir>/obs/<name>/` (`meta.inf` config, `o.dat` state, JSON).

All times come from the broker's one clock: wall nanoseconds (`clock.now_ns()`) for anything
persisted or reported, trio time for sleeping, so MockClock drives AckWait and friends.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable

import trio

from ...core.blocking import run_blocking
from ...core.clock import rfc3339
from ..advisories import Advisories, nuid
from ..consumer_config import ConsumerConfig, sample_frequency
from ..names import TRASH_PREFIX, store_child
from ..store.subjects import compile_filter
from .acks import AckMixin
from .common import ACK_FAMILY, ACK_WAIT_DELAY_NS, FLOW_CONTROL_MAX_PENDING, FLUSH_INTERVAL, log, status
from .delivery import DeliveryMixin
from .pull import PullMixin, PullRequest
from .push import PushMixin, _interest_watcher
from .readahead import ReadAheadMixin
from .state import ConsumerState, atomic_write
from .stream_hooks import StreamHooksMixin
from .task import TaskMixin


class Consumer(DeliveryMixin, ReadAheadMixin, PullMixin, PushMixin, AckMixin, StreamHooksMixin,
               TaskMixin):
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

        # sequences and ack state (what is persisted) ...
        self.st = ConsumerState()
        # ... and the redelivery queue (sequences due again, in order; the set mirrors it)
        self.rdq: deque[int] = deque()
        self.rdq_set: set[int] = set()
        self.npc = 0                               # cached num pending (stream_hooks)
        self.npf = 0                               # stream last seq the count covers
        self._npc_stale = True
        self._seen_msgs = -1                       # store msgs/last we have accounted for
        self._seen_last = -1
        self._seen_first = -1

        # activity
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
            self.st = ConsumerState.from_json(state)
        else:
            self._select_start()

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
                    self.st.lss_resume = last
                    if not seqs:
                        sseq = last
                    else:
                        sseq = seqs[0]
                        self.st.lss = seqs
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
        if self.st.lss and sseq != self.st.lss[0]:
            # the clamp moved us (cannot really happen): drop the skip list
            self.st.lss = None
        self.st.start_at(sseq)

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
        if self.st.pending:
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
            hdr = status(409, "Consumer Deleted")
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
        return self.st.to_json()

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
                atomic_write(d / "meta.inf", meta)
            atomic_write(d / "o.dat", state)

    def write_meta_now(self) -> None:
        """Write config + state synchronously (used right after create/update: small files)."""
        if not self._persistent():
            return
        self._write_state_blocking(self._state_snapshot(), True)
        self._dirty = False
        self._cfg_dirty = False

    def update_config(self, new: ConsumerConfig) -> None:
        """updateConfig: the caller already ran check_update()."""
        old = self.cfg
        if new.deliver_subject != old.deliver_subject and self.is_push:
            if self.st.pending:
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
        from ..consumer_config import set_static_metadata
        set_static_metadata(new)
        self.update_config(new)

    def info(self) -> dict[str, Any]:
        """The ConsumerInfo JSON (without the response `type`)."""
        self._check_stream_config()
        self._check_store_changes()
        cfg = self.cfg
        now_ns = self.clock.now_ns()
        delivered: dict[str, Any] = {"consumer_seq": self.st.dseq - 1, "stream_seq": self.st.delivered_sseq}
        if self.st.ldt:
            delivered["last_active"] = rfc3339(self.st.ldt)
        ack_floor: dict[str, Any] = {"consumer_seq": self.st.adflr, "stream_seq": self.st.asflr}
        if self.st.lat:
            ack_floor["last_active"] = rfc3339(self.st.lat)
        if self.is_pull:
            self._process_waiting(eos=False)
        info: dict[str, Any] = {
            "stream_name": self.stream_name,
            "name": self.name,
            "created": rfc3339(self.created_ns),
            "config": _config_for_response(cfg, self.broker),
            "delivered": delivered,
            "ack_floor": ack_floor,
            "num_ack_pending": len(self.st.pending),
            "num_redelivered": 0 if cfg.max_deliver == 1 else len(self.st.rdc),
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
    from ... import NATS_VERSION
    from ..consumer_config import config_json_with_dynamic_metadata
    return config_json_with_dynamic_metadata(cfg, NATS_VERSION)
