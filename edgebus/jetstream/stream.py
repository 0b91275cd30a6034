"""Stream: one JetStream stream — ingest, limits, retention, dedupe, expectations, TTLs.

A stream is an internal subscriber in its account. Every message published on its subjects
arrives synchronously in `process()` (on the publisher's task, no queue hop), is checked in
nats-server's order (sealed, expected stream, TTL enabled, Nats-Msg-Id duplicate, expected
last subject sequence, expected last sequence, expected last msg id, rollup, sizes, account
limits), stored, and acknowledged to the reply subject with a pub ack. Then rollups purge,
republish fires and `new_msg_listeners` (consumers) are told. During a client connection's
read the replies are held and sent, in order, when the read has been handled
(`core.outbox.at_end_of_read`); a file stream writes the read's messages in one go just
before. The clock is read once per read (the read's messages are stamped 1 ns apart), and a
message without headers on a stream that checks nothing per message (no transform, republish,
interest retention or seal) takes `_ingest_plain`, the same steps without those checks.

Time-based work runs in the stream's own nursery on the server clock: the expiry task
(max_age, per-message TTL, subject delete markers) and the sync task (periodic fsync, or a
group commit before acks when `sync_interval` is "always"). File I/O that can block long
(sync, stop, delete, config writes) goes to a worker thread.

Contract with consumers (consumer.py): `name`, `config`, `store`, `account`, `js`, `nursery`,
`consumers`, `dir`, `new_msg_listeners`, `on_consumer_ack`, `on_consumer_deleted`,
`state_dict()`. Consumers are asked `is_interested(seq)` / `has_acked(seq)` for interest
retention, `is_interested(0, subject)` (or `matches_subject(subject)`, or their config's
filters) for "is anyone interested in this subject" at ingest, and
`on_stream_purged(first_seq, subject_filter)` after a purge, when they have these.

A stream with a `mirror` or `sources` gets a `Sourcing` (sourcing.py), started with the stream;
it feeds `process(..., sourced=True)` (a mirror also passes the origin's `lseq`/`ts`) and reads
`last_error` to learn why a message was refused.
"""

from __future__ import annotations

import heapq
import inspect
import json
import logging
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import trio

from ..codec.headers import get_header
from ..core.outbox import at_end_of_read, in_read
from ..core.router import route
from ..core.clock import rfc3339
from ..core.subject import subjects_collide
from .config import SECOND, StreamConfig
from .errors import (
    ACCOUNT_RESOURCES_EXCEEDED,
    INSUFFICIENT_RESOURCES,
    MESSAGE_TTL_DISABLED,
    MESSAGE_TTL_INVALID,
    STREAM_HEADER_EXCEEDS_MAX,
    STREAM_MSG_EXCEEDS_MAX,
    STREAM_NOT_MATCH,
    STREAM_ROLLUP_FAILED,
    STREAM_SEALED,
    STREAM_STORE_FAILED,
    STREAM_WRONG_LAST_MSG_ID,
    STREAM_WRONG_LAST_SEQUENCE,
    JSError,
    js_err,
)
from .store.base import ErrStoreClosed, LimitError, MsgStore, StoredMsg, StoreError, StoreLimits
from ..core.blocking import run_blocking

if TYPE_CHECKING:
    from .service import JSAccount

log = logging.getLogger("edgebus.jetstream")

# Header names (case-sensitive, as nats-server looks them up).
MSG_ID = b"Nats-Msg-Id"
EXPECTED_STREAM = b"Nats-Expected-Stream"
EXPECTED_LAST_SEQ = b"Nats-Expected-Last-Sequence"
EXPECTED_LAST_SUBJ_SEQ = b"Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJ_SEQ_SUBJ = b"Nats-Expected-Last-Subject-Sequence-Subject"
EXPECTED_LAST_MSG_ID = b"Nats-Expected-Last-Msg-Id"
ROLLUP = b"Nats-Rollup"
MSG_TTL = b"Nats-TTL"
MARKER_REASON = b"Nats-Marker-Reason"
REQUEST_INFO = "Nats-Request-Info"
MAX_HEADER = 65535
STATUS_PREFIX = b"NATS/1.0 "

META_NAME = "stream"  # the store metadata blob holding {config, created}
STREAM_SEQUENCE_NOT_MATCH = 10063  # a mirror message that does not follow the last sequence


def parse_int64(b: bytes) -> int:
    """Go nats-server `parseInt64`: ASCII digits only, else -1."""
    if not b or not b.isdigit() or len(b) > 18:
        return -1
    return int(b)


def parse_msg_ttl(value: bytes) -> int:
    """Nats-TTL -> whole seconds: >0 expires, -1 never. Raises JSError 10165 when invalid.

    nats-server accepts a Go duration (`30s`, `1h`; at least 1s) or an integer number of
    seconds, or `never`."""
    s = value.decode("utf-8", "replace")
    if s.lower() == "never":
        return -1
    from ..conf.durations import _parse_ns  # Go's time.ParseDuration
    try:
        ns = _parse_ns(s)
    except ValueError:
        n = parse_int64(value)
        if n < 0:
            raise js_err(MESSAGE_TTL_INVALID) from None
        return n
    if ns < SECOND:
        raise js_err(MESSAGE_TTL_INVALID)
    return ns // SECOND


def msg_ttl_of(hdr: bytes | None) -> tuple[int, JSError | None]:
    """(ttl seconds, parse error) of a header block; (0, None) when there is no Nats-TTL."""
    if not hdr or MSG_TTL not in hdr:
        return 0, None
    v = get_header(hdr, MSG_TTL)
    if not v:
        return 0, None
    try:
        return parse_msg_ttl(v), None
    except JSError as e:
        return 0, e


def go_duration_seconds(secs: int) -> str:
    """Go's Duration.String for whole seconds: 5s, 1m0s, 1h0m0s."""
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def _append_headers(hdr: bytes | None, items: list[tuple[str, str]]) -> bytes:
    """nats-server genHeader: append `Key: value` lines to a block (or start one)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in items).encode()
    if not hdr:
        return b"NATS/1.0\r\n" + extra + b"\r\n"
    return hdr[:-2] + extra + b"\r\n"


def _strip_status(hdr: bytes) -> bytes | None:
    """Drop a status code from the first line (`NATS/1.0 503` -> `NATS/1.0`)."""
    end = hdr.find(b"\r\n")
    rest = hdr[end:] if end >= 0 else b"\r\n\r\n"
    if rest == b"\r\n\r\n":
        return None
    return b"NATS/1.0" + rest


def _remove_header(hdr: bytes, key: str) -> bytes | None:
    from ..codec.headers import remove_header
    return remove_header(hdr, key)


def _set_ttl_header(hdr: bytes, ttl: int) -> bytes:
    h = _remove_header(hdr, MSG_TTL.decode())
    return _append_headers(h, [("Nats-TTL", str(ttl))])


def store_limits_for(cfg: StreamConfig) -> StoreLimits:
    return StoreLimits(
        max_msgs=cfg.max_msgs, max_bytes=cfg.max_bytes, max_age=cfg.max_age,
        max_msgs_per_subject=cfg.max_msgs_per_subject, max_msg_size=cfg.max_msg_size,
        discard=cfg.discard, discard_new_per_subject=cfg.discard_new_per_subject)


def _consumer_config(c: Any) -> Any:
    return getattr(c, "cfg", None) or getattr(c, "config", None)


def _consumer_matches(c: Any, subject: str) -> bool:
    """Does consumer `c` want messages on `subject`? (interest retention ingest check)

    Uses `c.matches_subject(subject)` or `c.is_interested(seq, subject)` when the consumer has
    them, else its config's filter_subject / filter_subjects."""
    fn = getattr(c, "matches_subject", None)
    if fn is not None:
        return bool(fn(subject))
    fn = getattr(c, "is_interested", None)
    if fn is not None:
        try:
            return bool(fn(0, subject))
        except TypeError:
            pass
    cfg = _consumer_config(c)
    filters: list[str] = []
    if cfg is not None:
        filters = list(getattr(cfg, "filter_subjects", None) or [])
        f = getattr(cfg, "filter_subject", "")
        if f:
            filters.append(f)
    if not filters:
        return True
    return any(subjects_collide(f, subject) for f in filters)


def seq_from_time(store: MsgStore, ts_ns: int) -> int:
    """First sequence stored at or after `ts_ns` (nats-server GetSeqFromTime); last+1 if none.

    Timestamps grow with sequence numbers, so "the next message at or after s is not older
    than ts" is monotone in s: binary-search the smallest such s over the sequence range."""
    st = store.state()
    last = store.load_last_msg(">") if st.msgs else None
    if last is None or last.ts < ts_ns:
        return st.last_seq + 1
    lo, hi = st.first_seq, last.seq
    while lo < hi:
        mid = (lo + hi) // 2
        m, _ = store.load_next_msg(">", mid)
        if m is not None and m.ts >= ts_ns:
            hi = mid
        else:
            lo = mid + 1
    m, _ = store.load_next_msg(">", lo)
    return m.seq if m is not None else st.last_seq + 1


class Stream:
    """One stream in one account. Created by the service; see the module docstring."""

    def __init__(self, js: "JSAccount", config: StreamConfig, store: MsgStore, created_ns: int,
                 directory: Path | None) -> None:
        self.js = js
        self.account = js.account
        self.name = config.name
        self.config = config
        self.store = store
        self.created = created_ns
        self.dir = directory
        self.consumers: dict[str, Any] = {}
        self.new_msg_listeners: list[Callable[[int, str], None]] = []
        self.nursery: trio.Nursery = None  # type: ignore[assignment]
        self.closed = False
        self.clock = js.service.clock
        self._subs: list[Any] = []
        self._direct_subs: list[Any] = []
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()
        # ingest state
        st = store.state()
        self.lseq = st.last_seq
        self.lmsgid = ""
        self._dd: dict[str, tuple[int, int]] = {}  # msg id -> (seq, ts)
        self._ddq: deque[tuple[int, str]] = deque()
        # expiry
        self._wake = trio.Event()
        self._scheduled: int | None = None
        self._sdm_heap: list[tuple[int, int]] = []  # (expires ns, seq) for delete markers
        # sync
        self._pending_acks: list[tuple[str | bytes, bytes]] = []
        # during a client's read, a file stream holds its appends and replies back until the
        # read is handled: one write for them all, then the replies (_defer_replies)
        self._deferring = False
        self._defer_ok = not js.service.sync_always or not self.is_file
        self._store_defers = hasattr(store, "defer_writes") and not js.service.sync_always
        self.broker = js.account.broker
        self._sync_wanted = trio.Event()
        self._compile()
        self._ack_prefix = self._make_ack_prefix()
        # why the last process() refused a message (sourcing retries on it)
        self.last_error: JSError | None = None
        self.sourcing: Any = None
        if config.mirror is not None or config.sources:
            from .sourcing import Sourcing
            self.sourcing = Sourcing(self)

    # ---------------------------------------------------------------------------------
    # setup
    # ---------------------------------------------------------------------------------
    def _compile(self) -> None:
        cfg = self.config
        self._itr = self._rp_tr = None
        try:
            from ..core.transform import SubjectTransform
        except ImportError:  # pragma: no cover - transform module ships with the core
            SubjectTransform = None  # type: ignore[assignment,misc]
        if SubjectTransform is not None:
            st = cfg.subject_transform
            if st is not None and st.get("dest"):
                self._itr = SubjectTransform.compile(st.get("src") or ">", st["dest"])
            rp = cfg.republish
            if rp is not None:
                self._rp_tr = SubjectTransform.compile(rp.get("src") or ">", rp.get("dest") or ">")
        self._max_msg_size = cfg.max_msg_size
        self._sdm_ttl = cfg.subject_delete_marker_ttl // SECOND if cfg.subject_delete_marker_ttl > 0 else 0
        # a message without headers needs no per-message check but sizes and limits
        # (_ingest_plain): nothing maps its subject, republishes it, or decides per message
        self._plain_ok = (not cfg.sealed and self._itr is None and self._rp_tr is None
                          and cfg.retention != "interest")

    def _make_ack_prefix(self) -> bytes:
        dom = self.js.service.domain
        if dom:
            return json.dumps({"stream": self.name, "domain": dom}, separators=(",", ":"))[:-1].encode() + b',"seq":'
        return b'{"stream":' + json.dumps(self.name).encode() + b',"seq":'

    @property
    def is_file(self) -> bool:
        return self.config.storage == "file"

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Own the stream's nursery (consumer tasks live here) until the stream stops."""
        try:
            async with trio.open_nursery() as n:
                self.nursery = n
                self._scope = n.cancel_scope
                self._subscribe()
                if self.config.subject_delete_marker_ttl > 0:
                    self._rebuild_sdm_index()
                self._rebuild_dedupe()
                n.start_soon(self._expiry_loop)
                if self.is_file:
                    n.start_soon(self._sync_loop)
                if self.sourcing is not None:
                    self.sourcing.start(n)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._done.set()

    def _subscribe(self) -> None:
        for subj in self.config.subjects:
            self._subs.append(self._ingest_sub(subj))
        # mirror_direct answers for the origin's name once caught up (sourcing.py)
        self._set_direct(self.config.allow_direct)

    def _set_direct(self, on: bool) -> None:
        c = self.js.client
        if on and not self._direct_subs:
            from .direct import on_direct_get, on_direct_get_last
            pre = f"$JS.API.DIRECT.GET.{self.name}"
            self._direct_subs = [
                c.subscribe(pre, lambda sub, msg: on_direct_get(self, msg), queue="_sys_"),
                c.subscribe(pre + ".>", lambda sub, msg: on_direct_get_last(self, msg), queue="_sys_"),
            ]
        elif not on and self._direct_subs:
            for s in self._direct_subs:
                c.unsubscribe(s)
            self._direct_subs = []

    def _unsubscribe_all(self) -> None:
        c = self.js.client
        for s in self._subs:
            c.unsubscribe(s)
        self._subs = []
        self._set_direct(False)

    def _rebuild_dedupe(self) -> None:
        """Recover Nats-Msg-Id entries still inside the duplicate window (after a restart)."""
        window = self.config.duplicate_window
        last = self.store.load_last_msg(">")
        if last is None:
            return
        if last.hdr:
            v = get_header(last.hdr, MSG_ID)
            self.lmsgid = v.decode("utf-8", "replace") if v else ""
        if window <= 0:
            return
        cutoff = self.clock.now_ns() - window
        # only messages with headers are read (a store of plain messages reads none)
        for m in self.store.load_recent_with_headers(cutoff):
            if m.hdr and MSG_ID in m.hdr:
                v = get_header(m.hdr, MSG_ID)
                if v:
                    mid = v.decode("utf-8", "replace")
                    if mid not in self._dd:
                        self._dd[mid] = (m.seq, m.ts)
                        self._ddq.append((m.ts, mid))

    def _rebuild_sdm_index(self) -> None:
        self._sdm_heap = []
        for m in self.store.load_recent_with_headers(0):  # (every message with headers)
            if m.hdr and MSG_TTL in m.hdr:
                ttl, _ = msg_ttl_of(m.hdr)
                if ttl > 0:
                    self._sdm_heap.append((m.ts + ttl * SECOND, m.seq))
        heapq.heapify(self._sdm_heap)

    # ---------------------------------------------------------------------------------
    # ingest
    # ---------------------------------------------------------------------------------
    def _ingest_sub(self, subject: str) -> Any:
        sub = self.js.client.subscribe(subject, self._on_inbound)
        sub.raw = self._on_raw
        sub.raw_run = self._on_raw_run
        return sub

    def _on_inbound(self, sub: Any, msg: Any) -> None:
        self.process(msg.subject, msg.reply_b, msg.hdr, msg.data)

    def _on_raw(self, sub: Any, subject_b: bytes, reply_b: bytes | None, hdr: bytes | None,
                data: bytes, src: Any) -> None:
        if subject_b is not self._last_sb:  # a run of PUBs shares one subject object
            self._last_sb = subject_b
            self._last_s = subject_b.decode("utf-8", "surrogateescape")
        if hdr is None and self._plain_ok and not self.closed:
            self._ingest_plain(self._last_s, reply_b, data)
        elif not self.closed:
            self._process(self._last_s, reply_b, hdr, data, False, -1, 0)

    def _on_raw_run(self, sub: Any, subject_b: bytes, reply_b: bytes | None, payloads: Any,
                    src: Any) -> None:
        """`_on_raw` for each of a run of payloads without headers (one subject and reply)."""
        if self._plain_ok and not self.closed:
            if subject_b is not self._last_sb:
                self._last_sb = subject_b
                self._last_s = subject_b.decode("utf-8", "surrogateescape")
            self._ingest_run(self._last_s, reply_b, payloads)
        else:
            for data in payloads:
                self._on_raw(sub, subject_b, reply_b, None, data, src)

    _last_sb: bytes | None = None
    _last_s = ""

    def _publish_reply(self, reply: str | bytes, body: bytes) -> None:
        """Publish a PubAck or error to a publisher's reply subject (bytes off the wire, or
        str from an in-process publisher)."""
        c = self.js.client
        c.in_msgs += 1
        c.in_bytes += len(body)
        rb = reply if type(reply) is bytes else reply.encode("utf-8", "surrogateescape")  # type: ignore[union-attr]
        route(c.account, rb, None, None, (body,), c)

    def _reply_err(self, reply: str | bytes | None, err: JSError) -> None:
        self.last_error = err
        if reply and not self.config.no_ack:
            data = self._err_body(err)
            if self._deferring:
                self._pending_acks.append((reply, data))  # after the PubAcks before it
            else:
                self._publish_reply(reply, data)

    def _err_body(self, err: JSError) -> bytes:
        """The PubAck-shaped error reply for `err`."""
        return json.dumps({"error": err.to_json(), "stream": self.name, "seq": 0},
                          separators=(",", ":")).encode()

    def _defer_replies(self, now: int) -> None:
        """Hold this read's file appends and replies back until the read is handled
        (core.outbox.at_end_of_read): the appends then go to the file in one write, and only
        then do the PubAcks leave, so a PubAck still means the message reached the file.

        The clock is read once per read (`now`, at its first message): the read's later
        messages are stamped `now` + 1 ns, + 2 ns ... (`_ingest_now`), so timestamps stay
        distinct and ascending without a clock read per message."""
        self._deferring = True
        self._read_now = now + 1
        if self._store_defers:
            self.store.defer_writes = True  # type: ignore[attr-defined]
        at_end_of_read(self._release_replies)

    def _release_replies(self) -> None:
        self._deferring = False
        store = self.store
        acks, self._pending_acks = self._pending_acks, []
        try:
            if self._store_defers:
                store.defer_writes = False  # type: ignore[attr-defined]
                store.flush_writes()  # type: ignore[attr-defined]
        except StoreError as e:
            log.error("JetStream failed to store msgs on stream '%s > %s': %s",
                      self.account.name, self.name, e)
            self._forget_unstored(getattr(e, "seqs", ()))
            # 10077 with the errno's text, as nats-server up to 2.13 answers a failed store
            # (2.14+ answers nothing and refuses every write until restart; edgebus tells the
            # publisher at once and takes writes again as soon as the disk has room)
            err = js_err(STREAM_STORE_FAILED, err=str(e))
            self.last_error = err
            body = self._err_body(err)
            # the read's messages went to the file in one write: none of them is acknowledged
            acks = [(reply, body) for reply, _ in acks]
        # consecutive replies to one subject (a pipelining publisher with one reply inbox)
        # go out as a run: one match, one formatted write per equal-size stretch
        c = self.js.client
        i = 0
        n = len(acks)
        while i < n:
            reply, b = acks[i]
            j = i + 1
            size = len(b)
            while j < n and acks[j][0] == reply and len(acks[j][1]) == size:
                j += 1
            if j - i > 1 and type(reply) is bytes:
                bodies = [x[1] for x in acks[i:j]]
                c.in_msgs += j - i
                c.in_bytes += size * (j - i)
                route(c.account, reply, None, None, bodies, c)
            else:
                for k in range(i, j):
                    self._publish_reply(*acks[k])
            i = j

    _read_now = 0

    def _ingest_now(self) -> int:
        """The time to stamp an arriving message with: the clock, or during a client's read
        the read's time, one nanosecond further for each message (see `_defer_replies`)."""
        if self._deferring:
            now = self._read_now
            self._read_now = now + 1
            return now
        return self._clock_stamp()

    def _clock_stamp(self) -> int:
        """The clock, but never before a stamp already given: a read's stamps run ahead of
        the clock by a nanosecond a message, and under MockClock the clock may not move at
        all between two reads."""
        now = self.clock.now_ns()
        r = self._read_now
        return now if now >= r else r

    def _ingest_plain(self, subject: str, reply: str | bytes | None, data: bytes) -> int:
        """`process()` for a message without headers on a stream whose config checks nothing
        per message (`_plain_ok`; the caller checked `closed`): the same result, with
        nothing looked at that cannot apply. A message the size or storage limits refuse
        goes to `process()`, which answers it as always."""
        svc = self.js.service
        cfg = self.config
        if 0 <= self._max_msg_size < len(data) or svc.limits_exceeded(cfg.storage) or \
                self.js.would_exceed_limits(cfg.storage, subject, None, data):
            return self._process(subject, reply, None, data, False, -1, 0)
        if self._deferring:
            now = self._read_now
            self._read_now = now + 1
        else:
            now = self._clock_stamp()
            if self._defer_ok and in_read():
                self._defer_replies(now)
        try:
            seq, ts = self.store.store_msg(subject, None, data, now)
        except StoreError as e:
            self._store_failed(reply, e)
            return 0
        self.lseq = seq
        self.lmsgid = ""
        if reply and not cfg.no_ack:
            if self._deferring:
                self._pending_acks.append((reply, self._ack_prefix + b"%d}" % seq))
            else:
                self._send_ack(reply, self._ack_prefix + b"%d}" % seq)
        if self.new_msg_listeners:
            for cb in self.new_msg_listeners:
                try:
                    cb(seq, subject)
                except Exception:
                    log.exception("new message listener failed on stream %s", self.name)
        if cfg.max_age > 0 and self._scheduled is None:
            self._wake.set()
        return seq

    def _run_ok(self) -> bool:
        """Can `_ingest_run` store a stretch of plain messages in one go: their stamps come
        from the read's time (`_deferring`), no listener must see each one stored before
        the next, and no account or server storage limit needs a look per message."""
        if not self._deferring or self.new_msg_listeners or self.closed:
            return False
        svc = self.js.service
        lim = self.js.limits
        if self.config.storage == "memory":
            return svc.max_memory < 0 and lim.max_memory < 0 and lim.memory_max_stream_bytes <= 0
        return svc.max_store < 0 and lim.max_storage < 0 and lim.storage_max_stream_bytes <= 0

    def _ingest_run(self, subject: str, reply: bytes | None, datas: Any) -> None:
        """`_ingest_plain(subject, reply, data)` for each of `datas` in order (the caller
        checked `_plain_ok` and `closed`), with what can go in one go stored by one
        `store_run` and its PubAcks made in one loop: the same stamps, sequences, stored
        records, limits and replies. A message the run cannot take (the first of a read,
        too large, a new block, ...) goes through `_ingest_plain` alone."""
        n = len(datas)
        i = 0
        mms = self._max_msg_size
        while i < n:
            if not self._run_ok():
                self._ingest_plain(subject, reply, datas[i])
                i += 1
                continue
            j = n
            if mms >= 0:
                for k in range(i, n):
                    if len(datas[k]) > mms:
                        j = k
                        break
            k, last = self.store.store_run(subject, datas if j == n else datas[:j], i, self._read_now)
            if k == 0:
                self._ingest_plain(subject, reply, datas[i])
                i += 1
                continue
            self._read_now += k
            self.lseq = last
            self.lmsgid = ""
            cfg = self.config
            if reply and not cfg.no_ack:
                pre = self._ack_prefix
                self._pending_acks.extend([(reply, pre + b"%d}" % s) for s in range(last - k + 1, last + 1)])
            if cfg.max_age > 0 and self._scheduled is None:
                self._wake.set()
            i += k

    def _store_failed(self, reply: str | bytes | None, e: StoreError) -> None:
        """The store refused or failed a message: the publisher gets the error."""
        if not isinstance(e, LimitError):
            log.error("JetStream failed to store a msg on stream '%s > %s': %s",
                      self.account.name, self.name, e)
        self._reply_err(reply, js_err(STREAM_STORE_FAILED, err=str(e)))

    def _forget_unstored(self, seqs: Any) -> None:
        """Messages the store accepted but could not write (disk full) were dropped again:
        a retry with the same Nats-Msg-Id must be stored, not answered as a duplicate."""
        if not seqs:
            return
        gone = set(seqs)
        for msg_id in [k for k, (seq, _) in self._dd.items() if seq in gone]:
            del self._dd[msg_id]
        if self.lseq in gone:
            self.lmsgid = ""

    def process(self, subject: str, reply: str | bytes | None, hdr: bytes | None, data: bytes, *,
                sourced: bool = False, lseq: int = -1, ts: int = 0) -> int:
        """Ingest one published message; returns the stored sequence (0 if not stored).

        `sourced` marks a message from a mirror/source consumer; a mirror also gives `lseq`,
        the sequence it must follow (the message is stored at lseq+1), and the origin's `ts`."""
        if self.closed:
            return 0
        if not hdr and lseq < 0 and self._plain_ok and not ts:
            return self._ingest_plain(subject, reply, data)
        return self._process(subject, reply, hdr, data, sourced, lseq, ts)

    def _process(self, subject: str, reply: str | bytes | None, hdr: bytes | None, data: bytes,
                 sourced: bool, lseq: int, ts: int) -> int:
        """`process()` for every message (`_ingest_plain` takes the plain ones)."""
        cfg = self.config
        if cfg.sealed:
            self._reply_err(reply, js_err(STREAM_SEALED))
            return 0
        if lseq >= 0 and lseq != self.lseq:
            st = self.store.state()
            if st.first_seq == 0 and st.msgs == 0:
                # a mirror that never held anything starts at the origin's sequence
                self.store.compact(lseq + 1)
                self.lseq = lseq
            else:
                self._reply_err(reply, js_err(STREAM_SEQUENCE_NOT_MATCH))
                return 0
        if self._itr is not None:
            mapped = self._itr.match(subject)
            if mapped is not None:
                subject = mapped
        msg_id = ""
        rollup = b""
        ttl = 0
        ttl_err: JSError | None = None
        now = self._ingest_now()
        if hdr:
            if hdr.startswith(STATUS_PREFIX):
                hdr = _strip_status(hdr)
            if hdr and b"Nats-Request-Info:" in hdr:
                hdr = _remove_header(hdr, REQUEST_INFO)
        if hdr:
            # substring probes first: most messages carry none of these headers
            has_exp = b"Nats-Expected-" in hdr
            if has_exp:
                v = get_header(hdr, EXPECTED_STREAM)
                if v and v.decode("utf-8", "replace") != self.name:
                    self._reply_err(reply, js_err(STREAM_NOT_MATCH))
                    return 0
            ttl, ttl_err = msg_ttl_of(hdr)
            if ttl != 0 and not cfg.allow_msg_ttl:
                if not sourced:
                    self._reply_err(reply, js_err(MESSAGE_TTL_DISABLED))
                    return 0
                ttl = 0  # sourced messages keep the header, the TTL does not apply (ADR-43)
            v = get_header(hdr, MSG_ID) if MSG_ID in hdr else None
            if v:
                msg_id = v.decode("utf-8", "replace")
                dd = self._dd.get(msg_id)
                if dd is not None and now - dd[1] < cfg.duplicate_window:
                    if reply and not cfg.no_ack:
                        self._send_ack(reply, self._ack_prefix + b"%d,\"duplicate\": true}" % dd[0])
                    return 0
            if has_exp and not self._check_expected(subject, reply, hdr):
                return 0
            v = get_header(hdr, ROLLUP) if ROLLUP in hdr else None
            if v:
                if not cfg.allow_rollup_hdrs or cfg.deny_purge:
                    self._reply_err(reply, js_err(STREAM_ROLLUP_FAILED, err="rollup not permitted"))
                    return 0
                rollup = v.lower()
                if rollup not in (b"sub", b"all"):
                    r = rollup.decode("utf-8", "replace")
                    self._reply_err(reply, js_err(STREAM_ROLLUP_FAILED, err=f'rollup value invalid: "{r}"'))
                    return 0
        hlen = len(hdr) if hdr else 0
        if 0 <= self._max_msg_size < hlen + len(data):
            self._reply_err(reply, js_err(STREAM_MSG_EXCEEDS_MAX))
            return 0
        if hlen > MAX_HEADER:
            self._reply_err(reply, js_err(STREAM_HEADER_EXCEEDS_MAX))
            return 0
        svc = self.js.service
        if svc.limits_exceeded(cfg.storage):
            self._reply_err(reply, js_err(INSUFFICIENT_RESOURCES))
            return 0
        if cfg.retention == "interest" and not self._has_interest(subject):
            # nobody would ever consume it: consume a sequence, store nothing, ack normally
            seq = self.store.skip_msg(now)
            self.lseq = seq
            self.lmsgid = msg_id
            if msg_id:
                self._remember_id(msg_id, seq, now)
            if reply and not cfg.no_ack:
                self._send_ack(reply, self._ack_prefix + b"%d}" % seq)
            return 0
        if self.js.would_exceed_limits(cfg.storage, subject, hdr, data):
            self._reply_err(reply, js_err(ACCOUNT_RESOURCES_EXCEEDED))
            return 0
        if ttl_err is not None:
            self._reply_err(reply, ttl_err)
            return 0
        if ttl > 0 and self._sdm_ttl and cfg.max_msgs_per_subject != 1 and ttl < self._sdm_ttl:
            # a delete marker must outlive the message it replaces
            ttl = self._sdm_ttl
            assert hdr is not None
            hdr = _set_ttl_header(hdr, ttl)
        if self._defer_ok and not self._deferring and in_read():
            self._defer_replies(now)
        try:
            seq, ts = self.store.store_msg(subject, hdr, data, ts or now, ttl)
        except StoreError as e:
            self._store_failed(reply, e)
            return 0
        self.lseq = seq
        self.lmsgid = msg_id
        if msg_id:
            self._remember_id(msg_id, seq, ts)
        if ttl > 0 and self._sdm_ttl:
            heapq.heappush(self._sdm_heap, (ts + ttl * SECOND, seq))
        if rollup == b"sub":
            self.purge(subject, 0, 1)
        elif rollup == b"all":
            self.purge("", 0, 1)
        if self._rp_tr is not None:
            self._republish(subject, hdr, data, seq, ts)
        if reply and not cfg.no_ack:
            self._send_ack(reply, self._ack_prefix + b"%d}" % seq)
        for cb in self.new_msg_listeners:
            try:
                cb(seq, subject)
            except Exception:
                log.exception("new message listener failed on stream %s", self.name)
        if (cfg.max_age > 0 or ttl) and (self._scheduled is None or
                                          (ttl > 0 and ts + ttl * SECOND < self._scheduled)):
            self._wake.set()
        return seq

    def _check_expected(self, subject: str, reply: str | bytes | None, hdr: bytes) -> bool:
        """Nats-Expected-Last-Subject-Sequence, -Last-Sequence, -Last-Msg-Id, in that order."""
        v = get_header(hdr, EXPECTED_LAST_SUBJ_SEQ)
        if v:
            want = parse_int64(v)
            alt = get_header(hdr, EXPECTED_LAST_SUBJ_SEQ_SUBJ)
            subj = alt.decode("utf-8", "replace") if alt else subject
            last = self.store.load_last_msg(subj)
            have = last.seq if last is not None else 0
            if have != want:
                self._reply_err(reply, js_err(STREAM_WRONG_LAST_SEQUENCE, seq=have))
                return False
        v = get_header(hdr, EXPECTED_LAST_SEQ)
        if v and parse_int64(v) != self.lseq:
            self._reply_err(reply, js_err(STREAM_WRONG_LAST_SEQUENCE, seq=self.lseq))
            return False
        v = get_header(hdr, EXPECTED_LAST_MSG_ID)
        if v and v.decode("utf-8", "replace") != self.lmsgid:
            self._reply_err(reply, js_err(STREAM_WRONG_LAST_MSG_ID, id=self.lmsgid))
            return False
        return True

    def _send_ack(self, reply: str | bytes, body: bytes) -> None:
        if self._deferring:
            self._pending_acks.append((reply, body))
            return
        if self.js.service.sync_always and self.is_file:
            # group commit: the ack goes out once the write is on disk
            self._pending_acks.append((reply, body))
            self._sync_wanted.set()
            return
        self._publish_reply(reply, body)

    def _remember_id(self, msg_id: str, seq: int, ts: int) -> None:
        self._dd[msg_id] = (seq, ts)
        q = self._ddq
        q.append((ts, msg_id))
        window = self.config.duplicate_window
        while q and ts - q[0][0] >= window:
            old_ts, old = q.popleft()
            e = self._dd.get(old)
            if e is not None and e[1] == old_ts:
                del self._dd[old]

    def _has_interest(self, subject: str) -> bool:
        return any(_consumer_matches(c, subject) for c in self.consumers.values())

    def _republish(self, subject: str, hdr: bytes | None, data: bytes, seq: int, ts: int) -> None:
        assert self._rp_tr is not None
        dest = self._rp_tr.match(subject)
        if dest is None:
            return
        prev = self.store.load_prev_msg(subject, seq - 1) if seq > 1 else None
        items = [("Nats-Stream", self.name), ("Nats-Subject", subject), ("Nats-Sequence", str(seq)),
                 ("Nats-Time-Stamp", rfc3339(ts)), ("Nats-Last-Sequence", str(prev.seq if prev else 0))]
        body = data
        if (self.config.republish or {}).get("headers_only"):
            items.append(("Nats-Msg-Size", str(len(data))))
            body = b""
        self.js.client.publish(dest, None, _append_headers(hdr, items), body)

    # ---------------------------------------------------------------------------------
    # retention hooks (called by consumers)
    # ---------------------------------------------------------------------------------
    def on_consumer_ack(self, consumer: Any, seq: int) -> None:
        """A consumer acked `seq`: workqueue removes it, interest removes it once every
        interested consumer has acked it."""
        r = self.config.retention
        if r == "workqueue":
            self._remove(seq)
        elif r == "interest" and self._interest_done(seq):
            self._remove(seq)

    def on_consumer_deleted(self, consumer: Any) -> None:
        """A consumer is gone: interest streams drop messages nobody else still wants."""
        for k, c in list(self.consumers.items()):
            if c is consumer:
                del self.consumers[k]
        if self.config.retention == "interest":
            self.check_interest_state()

    def check_interest_state(self) -> None:
        if self.closed:
            return
        if not self.consumers:
            if self.store.state().msgs:
                self.store.purge()
            return
        seq = 0
        doomed = []
        while True:
            m, nxt = self.store.load_next_msg(">", seq)
            if m is None:
                break
            if self._interest_done(m.seq):
                doomed.append(m.seq)
            seq = nxt
        for s in doomed:
            self._remove(s)

    def _interest_done(self, seq: int) -> bool:
        for c in self.consumers.values():
            try:
                if c.is_interested(seq) and not c.has_acked(seq):
                    return False
            except Exception:
                log.exception("consumer interest check failed")
                return False
        return True

    def _remove(self, seq: int) -> bool:
        try:
            return self.store.remove_msg(seq)
        except StoreError:
            return False

    # ---------------------------------------------------------------------------------
    # operations used by the API
    # ---------------------------------------------------------------------------------
    def purge(self, subject_filter: str = "", seq: int = 0, keep: int = 0, *, full: bool = False) -> int:
        """Purge (`full` = no request body: everything) and move consumers along."""
        n = self.store.purge() if full else self.store.purge_ex(subject_filter, seq, keep)
        st = self.store.state()
        if st.last_seq > self.lseq:
            self.lseq = st.last_seq
        first = st.first_seq
        if subject_filter and subject_filter != ">":
            fs = self.store.filtered_state(subject_filter, first)
            first = fs.first or first
        for c in list(self.consumers.values()):
            hook = getattr(c, "on_stream_purged", None)
            if hook is not None:
                try:
                    hook(first, subject_filter)
                except Exception:
                    log.exception("consumer purge hook failed")
        return n

    def delete_msg(self, seq: int, erase: bool) -> bool:
        return self.store.erase_msg(seq) if erase else self.store.remove_msg(seq)

    def state_dict(self, deleted_details: bool = False) -> dict[str, Any]:
        """StreamState JSON (`state` in StreamInfo)."""
        st = self.store.state(deleted_details)
        d: dict[str, Any] = {
            "messages": st.msgs,
            "bytes": st.bytes,
            "first_seq": st.first_seq,
            "first_ts": rfc3339(st.first_ts if st.msgs else 0),
            "last_seq": st.last_seq,
            "last_ts": rfc3339(st.last_ts),
        }
        if st.num_subjects:
            d["num_subjects"] = st.num_subjects
        if st.num_deleted:
            d["num_deleted"] = st.num_deleted
        if deleted_details and st.deleted:
            d["deleted"] = list(st.deleted)
        # as nats-server's store counts them: direct consumers (a mirror's or source's, a
        # hub's source of this stream over a leaf link) have no store and are not counted
        d["consumer_count"] = sum(1 for c in self.consumers.values() if not c.cfg.direct)
        return d

    def info(self, deleted_details: bool = False) -> dict[str, Any]:
        """StreamInfo JSON (without paging or subject details)."""
        svc = self.js.service
        d: dict[str, Any] = {
            "config": self.config.to_info_json(svc.server_version),
            "created": rfc3339(self.created),
            "state": self.state_dict(deleted_details),
        }
        if svc.domain:
            d["domain"] = svc.domain
        d["cluster"] = {"leader": svc.server_name}
        if self.sourcing is not None:
            d.update(self.sourcing.info_json())
        d["ts"] = rfc3339(self.clock.now_ns())
        return d

    def apply_config(self, cfg: StreamConfig) -> None:
        """Switch to an already validated new config (STREAM.UPDATE)."""
        old = self.config
        self.config = cfg
        c = self.js.client
        if list(cfg.subjects) != list(old.subjects):
            keep = {s.subject: s for s in self._subs}
            subs = []
            for subj in cfg.subjects:
                s = keep.pop(subj, None)
                subs.append(s if s is not None else self._ingest_sub(subj))
            for s in keep.values():
                c.unsubscribe(s)
            self._subs = subs
        self._set_direct(cfg.allow_direct)
        self._compile()
        self._ack_prefix = self._make_ack_prefix()
        self.store.update_config(store_limits_for(cfg))
        if cfg.sources != old.sources:
            if self.sourcing is None:
                from .sourcing import Sourcing
                self.sourcing = Sourcing(self)
                if self.nursery is not None:
                    self.sourcing.start(self.nursery)
            else:
                self.sourcing.update(old, cfg)
        if cfg.subject_delete_marker_ttl > 0 and not old.subject_delete_marker_ttl:
            self._rebuild_sdm_index()
        if old.retention != cfg.retention and cfg.retention == "interest":
            self.check_interest_state()
        self._wake.set()

    def meta_blob(self) -> bytes:
        return json.dumps({"config": self.config.to_json(), "created": self.created}).encode()

    async def persist_config(self) -> None:
        if self.is_file:
            await run_blocking(self.store.write_meta, META_NAME, self.meta_blob())
        else:
            self.store.write_meta(META_NAME, self.meta_blob())

    async def stop(self, delete: bool = False) -> None:
        """Stop consumers and tasks, then close (or delete) the store off the event loop."""
        if self.closed:
            return
        self.closed = True
        if self.sourcing is not None:
            await self.sourcing.stop(persist=not delete)
        self._unsubscribe_all()
        for c in list(self.consumers.values()):
            try:
                # on delete the consumer goes with the stream (no state write, waiters told)
                stop = c.stop
                if delete and "delete" in inspect.signature(stop).parameters:
                    await stop(delete=True)
                else:
                    await stop()
            except Exception:
                log.exception("stopping consumer failed")
        if delete:
            self.consumers.clear()
        if self._scope is not None:
            self._scope.cancel()
        await self._flush_acks()
        fn = self.store.delete if delete else self.store.stop
        if self.is_file:
            await run_blocking(fn)
        else:
            fn()

    # ---------------------------------------------------------------------------------
    # background tasks
    # ---------------------------------------------------------------------------------
    async def _expiry_loop(self) -> None:
        svc_clock = self.clock
        while True:
            nxt = self._next_expiry()
            self._scheduled = nxt
            if nxt is None:
                await self._wake.wait()
            else:
                delay = max(0, nxt - svc_clock.now_ns()) / 1e9
                with trio.move_on_after(delay):
                    await self._wake.wait()
            self._wake = trio.Event()
            self._scheduled = None
            if not self.closed:
                try:
                    self.run_expiry(svc_clock.now_ns())
                except StoreError:
                    return

    def _next_expiry(self) -> int | None:
        try:
            return self.store.next_expiry()
        except StoreError:
            return None

    def run_expiry(self, now: int) -> None:
        """Remove what max_age and message TTLs say is due; with subject delete markers, leave
        a marker where the last message of a subject expired."""
        if not self._sdm_ttl:
            self.store.expire(now)
            return
        due = self._due_for_markers(now)
        by_subject: dict[str, list[StoredMsg]] = {}
        for seq in sorted(due):
            m = self.store.load_msg(seq)
            if m is not None:
                by_subject.setdefault(m.subject, []).append(m)
        for subject, msgs in by_subject.items():
            total = self.store.filtered_state(subject).msgs
            last = msgs[-1]
            if len(msgs) >= total and not (last.hdr and MARKER_REASON in last.hdr):
                for m in msgs[:-1]:
                    self._remove(m.seq)
                hdr = _append_headers(None, [("Nats-Marker-Reason", "MaxAge"),
                                             ("Nats-TTL", go_duration_seconds(self._sdm_ttl)),
                                             ("Nats-Rollup", "sub")])
                self.process(subject, None, hdr, b"")
                if self.store.load_msg(last.seq) is not None:
                    self._remove(last.seq)
            else:
                for m in msgs:
                    self._remove(m.seq)
        nxt = self._next_expiry()
        if nxt is not None and nxt <= now:
            # anything our own index missed still goes, markers or not
            self.store.expire(now)

    def _due_for_markers(self, now: int) -> set[int]:
        due: set[int] = set()
        max_age = self.config.max_age
        if max_age > 0:
            cutoff = now - max_age
            seq = 0
            while True:
                m, nxt = self.store.load_next_msg(">", seq)
                if m is None or m.ts > cutoff:
                    break
                ttl, _ = msg_ttl_of(m.hdr)
                if ttl >= 0:
                    due.add(m.seq)
                seq = nxt
        heap = self._sdm_heap
        while heap and heap[0][0] <= now:
            due.add(heapq.heappop(heap)[1])
        return due

    async def _sync_loop(self) -> None:
        svc = self.js.service
        if svc.sync_always:
            while True:
                await self._sync_wanted.wait()
                await self._flush_acks()
        else:
            while True:
                await trio.sleep(svc.sync_interval)
                try:
                    await run_blocking(self.store.sync)
                except StoreError as e:
                    # logged by the store; the blocks stay unsynced and the next tick retries
                    if isinstance(e, ErrStoreClosed):
                        return

    async def _flush_acks(self) -> None:
        self._sync_wanted = trio.Event()
        acks, self._pending_acks = self._pending_acks, []
        if not acks and not self.js.service.sync_always:
            return
        try:
            await run_blocking(self.store.sync)
        except StoreError as e:
            if isinstance(e, ErrStoreClosed):
                return
            # not on disk for sure: no PubAck, the publishers get the error instead (and a
            # retry with the same Nats-Msg-Id is stored again, not called a duplicate)
            self._forget_unstored([json.loads(body).get("seq") for _, body in acks])
            err = js_err(STREAM_STORE_FAILED, err=str(e))
            self.last_error = err
            body = self._err_body(err)
            acks = [(reply, body) for reply, _ in acks]
        for reply, body in acks:
            self._publish_reply(reply, body)
