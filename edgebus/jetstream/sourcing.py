"""Sourcing: run a stream's `mirror` or `sources[]` the way nats-server does (stream.go).

Every mirror/source is one `SourceInfo`. Its data comes from an ephemeral push consumer on the
origin stream, created with a plain API request, even when the origin lives in this server:
`$JS.API.CONSUMER.CREATE.<origin>[.<name>.<filter>]` (the `$JS.API` prefix swapped for
`external.api` when set) with an internal reply subject `$JSC.R.<8 random>`. The consumer is
`direct`, ack none, max_deliver 1, flow control, 1 s idle heartbeats, 10 s inactive threshold,
and delivers to `$JS.M.<8>` / `$JS.S.<8>` (or `<external.deliver>.M.<8>` / `.S.<8>`). The
request is the one nats-server 2.11 sends (a random `mirror-<8>` / `src-<8>` name only with a
single filter; no `sourcing` flag or API-level header), which any 2.10+ origin accepts.
Nothing here needs more than publish/subscribe in the stream's account, so the same code
works within one server, across accounts (service imports) and across JetStream domains over
a leaf link.

Delivered messages are processed synchronously in the subscription callback, like a publish:

- a mirror stores each message at the origin's sequence with the origin's timestamp; gaps the
  origin itself has (deleted/expired messages: the delivery sequence is contiguous but the
  stream sequence jumped) become skipped sequences; a delivery gap recreates the consumer;
- a source stores with a new local sequence and adds `Nats-Stream-Source:
  <origin[:hash(api)]> <origin seq> <filter> <dest> <subject>`, first removing an inherited one;
- both drop `Nats-Expected-*` / `Nats-Batch-*` headers, answer flow-control requests, check
  heartbeats (`Nats-Last-Consumer` must equal the last delivery we saw, else recreate), and
  apply their subject transforms (first match wins);
- a message the stream refuses (a discard-new limit, say) is not skipped: the tracking goes
  back and the consumer is recreated at that message (nats-server 2.12+); a mirror whose
  next message does not follow its last sequence recreates after its real last one.

Recreating follows nats-server's timers: at most one request per 2 s, backoff
`min(10 s x failures, 2 min)` plus 100-200 ms jitter, 30 s to wait for the create response, and
a health check every 10 s that recreates a consumer nothing arrived from for 10 s (the old one
deletes itself after its inactive threshold). A mirror resumes after its last sequence; a
source after the last origin sequence it stored, found on restart by scanning the stream
backwards for the newest `Nats-Stream-Source` of each source, and remembered in the stream's
`sources` metadata blob too (written on stop and every health check), so a source whose
messages were since removed still resumes exactly.

Leaf links (intermittent links to another domain): a link coming up re-kicks idle consumers
at once (`retry_disconnected`, nats-server's checkInternalSyncConsumers), forgetting earlier
failures. Two deliberate refinements: a mirror/source with `external` that was receiving
when a link went down is re-kicked too (its consumer on the far side may be gone with a
restarted hub; nats-server would wait for the health check), half a second after the link
is up so the far side's interest has arrived; and a create request that reached no one fails
at once instead of waiting 30 s for an answer that cannot come.

Recreated origins (nats-server 2.14+): a source remembers the origin's identity
(`Nats-Stream-Identity` on the create response, a hash of the origin's creation time; kept in
the source header's sixth field and the saved positions) and sends it with each create request;
an origin that was recreated refuses it with 10225, and the source starts over from the new
origin's beginning. Origins that send no identity (older servers) are caught by a fallback:
a source that asked to resume at origin sequence N and got a consumer whose delivered stream
sequence is below N-1 concludes the same. Mirrors keep their sequences, as in nats-server:
a recreated origin's messages are taken once its sequence passes the mirror's.
"""

from __future__ import annotations

import json
import logging
import random
from typing import TYPE_CHECKING, Any

import trio

from ..codec.headers import get_header, lines_without
from ..core.clock import parse_rfc3339, rfc3339
from .config import source_index_name, server_hash
from .errors import js_err
from ..core.blocking import run_blocking

if TYPE_CHECKING:
    from ..core.client import Msg
    from ..core.sublist import Subscription
    from .config import StreamConfig
    from .stream import Stream

log = logging.getLogger("edgebus.jetstream.sourcing")

SECOND_NS = 1_000_000_000
HEARTBEAT_NS = SECOND_NS                 # sourceHealthHB
INACTIVE_THRESHOLD_NS = 10 * SECOND_NS   # sourceHealthCheckInterval, as the consumer's threshold
ACK_WAIT_NS = 22 * 3600 * SECOND_NS
HEALTH_CHECK = 10.0                      # seconds between health checks / stall threshold
RETRY_THRESHOLD = 2.0                    # sourceConsumerRetryThreshold
RETRY_BACKOFF = 5.0                      # retryBackOff (x 2 x failures)
RETRY_MAX = 120.0                        # retryMaximum
LINK_SETTLE = 0.5                        # after a leaf link is up, before re-kicking
CREATE_WAIT = 30.0                       # srcConsumerWaitTime
DGET_CAUGHT_UP = 10                      # dgetCaughtUpThresh: pending below this serves direct gets
META_NAME = "sources"                    # store metadata blob with the per-source positions

API_PREFIX = "$JS.API"
STREAM_SOURCE = "Nats-Stream-Source"
STREAM_IDENTITY = "Nats-Stream-Identity"
LAST_CONSUMER = b"Nats-Last-Consumer"
CONSUMER_STALLED = b"Nats-Consumer-Stalled"
_CONTROL = b"NATS/1.0 100 "
_STRIP_PREFIXES = (b"Nats-Expected-", b"Nats-Batch-")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

STREAM_SEQUENCE_NOT_MATCH = 10063   # a mirror message that does not follow the stream
IDENTITY_MISMATCH = 10225           # JSConsumerStreamIdentityMismatchF: the origin was recreated


def rand8() -> str:
    """8 base-62 characters (nats-server's syncSubject / infoReplySubject suffixes)."""
    return "".join(random.choice(_B62) for _ in range(8))


def retry_backoff(fails: int) -> float:
    """calculateRetryBackoff: 5 s x 2 x failures, at most 2 minutes."""
    return min(RETRY_BACKOFF * 2 * fails, RETRY_MAX)


def _jitter() -> float:
    return 0.1 + random.random() * 0.1


def _num(tok: str) -> int:
    """parseAckReplyNum: ASCII digits only, else -1."""
    return int(tok) if tok.isdigit() else -1


def parse_ack_reply(reply: str | None) -> tuple[str, int, int, int, int, int] | None:
    """(consumer, stream seq, delivery seq, delivery count, timestamp, pending) of a v1
    (`$JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<dseq>.<ts>.<pending>`) or v2 (domain and
    account hash after ACK, a random token at the end) ack subject; None if it is neither."""
    if not reply or not reply.startswith("$JS.ACK."):
        return None
    t = reply.split(".")
    if len(t) == 9:
        off = 3
    elif len(t) >= 11:
        off = 5
    else:
        return None
    return (t[off], _num(t[off + 2]), _num(t[off + 3]), _num(t[off + 1]), _num(t[off + 4]),
            _num(t[off + 5]))


def stream_and_seq(value: str) -> tuple[str, str, int, str]:
    """nats-server streamAndSeq: (origin index name part, source index name, origin seq,
    origin identity) of a `Nats-Stream-Source` value: `<origin> <seq> <filter> <dest>
    [<subject> [<identity>]]`. Also reads the pre-2.10 form (a raw v1 ack subject, no index
    name)."""
    if value.startswith("$JS.ACK."):
        t = value.split(".")
        if len(t) == 9:
            return t[2], "", max(_num(t[5]), 0), ""
        if len(t) >= 11:
            return t[4], "", max(_num(t[7]), 0), ""
        return "", "", 0, ""
    f = value.split(" ")
    if len(f) != 2 and len(f) <= 3:
        return "", "", 0, ""
    seq = max(_num(f[1]), 0)
    if len(f) >= 4:
        return f[0], " ".join((f[0], f[2], f[3])), seq, f[5] if len(f) >= 6 else ""
    return f[0], "", seq, ""


def strip_headers(hdr: bytes | None, names: tuple[bytes, ...], prefixes: tuple[bytes, ...]) -> bytes | None:
    """The header block without lines whose key is in `names` or starts with a prefix."""
    if not hdr:
        return hdr
    if not any(n in hdr for n in names) and not any(p in hdr for p in prefixes):
        return hdr
    return b"\r\n".join(lines_without(hdr, names, prefixes)) + b"\r\n\r\n"


def append_header(hdr: bytes | None, key: str, value: str) -> bytes:
    """nats-server genHeader: add one line at the end (starting a block if needed)."""
    line = f"{key}: {value}\r\n".encode()
    if not hdr:
        return b"NATS/1.0\r\n" + line + b"\r\n"
    return hdr[:-2] + line + b"\r\n"


def _is_control(msg: "Msg") -> bool:
    return not msg.data and bool(msg.hdr) and msg.hdr.startswith(_CONTROL)  # type: ignore[union-attr]


def _compile(src: str, dest: str) -> Any:
    """A compiled transform, or None for an empty destination (nats-server: no transform)."""
    if not dest:
        return None
    from ..core.transform import SubjectTransform
    try:
        return SubjectTransform.compile(src or ">", dest)
    except ValueError:  # validated at config time already
        log.error("unable to compile source transform %r -> %r", src, dest)
        return None


class SourceInfo:
    """The live state of one mirror or source (nats-server `sourceInfo`)."""

    def __init__(self, cfg: dict[str, Any], mirror: bool) -> None:
        self.cfg = cfg
        self.mirror = mirror
        self.name: str = cfg.get("name", "")
        self.iname = source_index_name(cfg)
        self.external: dict[str, str] | None = cfg.get("external") or None
        trs = cfg.get("subject_transforms") or []
        # what the info shows: a mirror's filter appears once its consumer was requested
        self.sf: str = "" if mirror or trs else (cfg.get("filter_subject") or "")
        self.sfs: list[str] = [t.get("src", "") for t in trs]
        self.dests: list[str] = [t.get("dest", "") for t in trs]
        self.trs: list[Any] = [_compile(t.get("src", ""), t.get("dest", "")) for t in trs]
        self.sseq = 0          # last origin stream sequence processed
        self.dseq = 0          # last delivery sequence of the current consumer
        self.lag = 0
        self.cname = ""        # current consumer on the origin
        self.err: dict[str, Any] | None = None
        self.last_ns = 0       # wall time anything last arrived (0 = never)
        self.sub: Subscription | None = None
        self.dsubs: list[Subscription] = []   # mirror direct get subscriptions
        self.sip = False       # a create request is in flight
        self.lreq: float | None = None        # trio time of the last create request
        self.fails = 0
        self.rc = False        # origin was recreated: start over from its beginning
        self.ident = ""        # the origin's identity (sources only)
        self.link_lost = False  # a leaf link went down while this consumer was in use
        self.next_at: float | None = None     # a scheduled (re)create, trio time
        self.next_seq = 0
        self.wake = trio.Event()
        self.scope = trio.CancelScope()

    def transform(self, subject: str) -> str:
        for tr in self.trs:
            if tr is None:
                continue
            out = tr.match(subject)
            if out is not None:
                return out
        return subject

    def source_header(self, subject: str, reply: str) -> str:
        """genSourceHeader: `<origin[:hash]> <origin seq> <filter> <dest> <subject> [<ident>]`."""
        parts = self.iname.split(" ")
        seq = "1"
        t = reply.split(".")
        if len(t) >= 2 and t[0] == "$JS" and t[1] == "ACK":
            if len(t) == 9:
                seq = t[5]
            elif len(t) >= 11:
                seq = t[7]
        if self.ident:
            return f"{parts[0]} {seq} {parts[1]} {parts[2]} {subject} {self.ident}"
        return f"{parts[0]} {seq} {parts[1]} {parts[2]} {subject}"

    def matches_index(self, stream_name: str) -> bool:
        """A pre-2.10 header naming just the origin stream (or `<origin>:<hash>`)."""
        if stream_name == self.name:
            return True
        return bool(self.external) and stream_name == f"{self.name}:{server_hash(self.external.get('api', ''))}"

    def info_json(self, now_ns: int) -> dict[str, Any]:
        """StreamSourceInfo."""
        d: dict[str, Any] = {"name": self.name}
        if self.external:
            d["external"] = {"api": self.external.get("api", ""), "deliver": self.external.get("deliver", "")}
        d["lag"] = self.lag
        d["active"] = -1 if self.last_ns == 0 else max(now_ns - self.last_ns, 0)
        if self.err is not None:
            d["error"] = self.err
        if self.sf:
            d["filter_subject"] = self.sf
        if self.sfs:
            d["subject_transforms"] = [{"src": s, "dest": t} for s, t in zip(self.sfs, self.dests)]
        return d


class Sourcing:
    """The mirror or sources of one stream. Created with the stream, started by its `run()`."""

    def __init__(self, stream: "Stream") -> None:
        self.stream = stream
        self.client = stream.js.client
        self.clock = stream.clock
        self.mirror: SourceInfo | None = None
        self.sources: dict[str, SourceInfo] = {}
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._started = False  # supervisors running (before that, _main takes every source)
        self._saved: str = ""
        cfg = stream.config
        if cfg.mirror is not None:
            self.mirror = SourceInfo(cfg.mirror, mirror=True)
        for s in cfg.sources:
            si = SourceInfo(s, mirror=False)
            self.sources[si.iname] = si

    # ------------------------------------------------------------------------------ lifecycle
    def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._main, name=f"sourcing {self.stream.name}")

    async def _main(self) -> None:
        ready = getattr(self.stream.js, "ready", None)
        if ready is not None:
            # recovery of the account's other streams first, or our first requests would find
            # neither the API nor our origins
            await ready.wait()
        if self._closed:
            return
        self._hook_leaf()
        assert self._nursery is not None
        if self.mirror is not None:
            self._nursery.start_soon(self._supervise, self.mirror)
            self._schedule_mirror()
        else:
            self._recover_positions(list(self.sources.values()), use_saved=True)
            for si in self.sources.values():
                self._nursery.start_soon(self._supervise, si)
                self._schedule_source(si, si.sseq + 1)
        self._started = True
        while True:
            await trio.sleep(HEALTH_CHECK)
            self._health_check()
            await self._persist()

    async def stop(self, persist: bool = True) -> None:
        """The stream stops (or is deleted): drop every subscription, remember positions."""
        if self._closed:
            return
        for si in self._all():
            self._cancel(si)
            si.scope.cancel()
        if persist and self.sources:
            await self._persist()
        self._closed = True

    def _all(self) -> list[SourceInfo]:
        return [self.mirror] if self.mirror is not None else list(self.sources.values())

    def all(self) -> list[SourceInfo]:
        """The mirror, or every source (for monitoring)."""
        return self._all()

    def update(self, old: "StreamConfig", new: "StreamConfig") -> None:
        """STREAM.UPDATE changed the sources: stop removed ones, start added ones where the
        stream's own messages say they left off (a mirror cannot be changed)."""
        keep: dict[str, SourceInfo] = {}
        added: list[SourceInfo] = []
        for s in new.sources:
            iname = source_index_name(s)
            si = self.sources.get(iname)
            if si is None:
                si = SourceInfo(s, mirror=False)
                added.append(si)
            else:
                si.cfg = s
            keep[iname] = si
        for iname, si in self.sources.items():
            if iname not in keep:
                self._cancel(si)
                si.scope.cancel()
        self.sources = keep
        if not self._started or self._closed:
            return  # _main starts whatever is configured then
        self._recover_positions(added, use_saved=False)
        assert self._nursery is not None
        for si in added:
            self._nursery.start_soon(self._supervise, si)
            self._schedule_source(si, si.sseq + 1)

    # ------------------------------------------------------------------------------ info
    def info_json(self) -> dict[str, Any]:
        """The `mirror` / `sources` sections of StreamInfo."""
        now = self.clock.now_ns()
        if self.mirror is not None:
            return {"mirror": self.mirror.info_json(now)}
        if self.sources:
            return {"sources": [si.info_json(now) for si in self.sources.values()]}
        return {}

    # ------------------------------------------------------------------------------ scheduling
    def _wake(self, si: SourceInfo, at: float, seq: int) -> None:
        si.next_at = at
        si.next_seq = seq
        si.wake.set()

    def _schedule_source(self, si: SourceInfo, seq: int, delay: float = 0.0) -> None:
        """setupSourceConsumer: throttle to one request per 2 s, back off after failures."""
        if self._closed or si.next_at is not None or si.sip or self.sources.get(si.iname) is not si:
            return
        now = trio.current_time()
        if si.lreq is not None:
            since = now - si.lreq
            if since < RETRY_THRESHOLD:
                delay = max(delay, RETRY_THRESHOLD - since)
            if si.fails:
                delay += retry_backoff(si.fails)
        self._wake(si, now + delay + _jitter(), seq)

    def _schedule_mirror(self, delay: float = 0.0) -> None:
        """scheduleSetupMirrorConsumerRetry (replaces a pending schedule)."""
        si = self.mirror
        if self._closed or si is None:
            return
        now = trio.current_time()
        if si.lreq is not None:
            delay += max(RETRY_THRESHOLD - (now - si.lreq), 0.0)
        delay += retry_backoff(si.fails) + _jitter()
        self._wake(si, now + delay, 0)

    def _retry_mirror(self) -> None:
        """retryMirrorConsumer: drop the consumer, ask again now (or when throttling allows)."""
        si = self.mirror
        if si is None or self._closed:
            return
        self._cancel(si)
        si.sseq = self.stream.lseq
        if si.sip:
            return
        now = trio.current_time()
        if si.lreq is not None and now - si.lreq < RETRY_THRESHOLD:
            self._schedule_mirror()
        else:
            self._wake(si, now, 0)

    def _retry_source(self, si: SourceInfo, seq: int) -> None:
        """retrySourceConsumerAtSeq."""
        self._schedule_source(si, seq)

    def _health_check(self) -> None:
        """Every 10 s: recreate consumers nothing has arrived from for 10 s."""
        now = self.clock.now_ns()
        limit = int(HEALTH_CHECK * SECOND_NS)
        if self.mirror is not None:
            si = self.mirror
            # nats-server's mirror health ticker runs only while a consumer is established
            if si.sub is not None and now - si.last_ns > limit:
                self._retry_mirror()
            return
        for si in self.sources.values():
            if now - si.last_ns > limit:
                self._schedule_source(si, si.sseq + 1)

    def retry_disconnected(self) -> None:
        """retryDisconnectedSyncConsumers: a leaf link came up; retry soon whatever is not
        receiving (or was cut off by a link going down), forgetting earlier failures."""
        if self._closed:
            return
        now = self.clock.now_ns()
        limit = int(HEALTH_CHECK * SECOND_NS)
        for si in self._all():
            if si.sip or not (si.sub is None or now - si.last_ns > limit or si.link_lost):
                continue
            si.next_at = None
            si.fails = 0
            si.link_lost = False
            self._cancel(si)
            if si.mirror:
                self._schedule_mirror(LINK_SETTLE)
            else:
                self._schedule_source(si, si.sseq + 1, LINK_SETTLE)

    def link_down(self) -> None:
        """A leaf link went down: consumers in another domain may not survive it."""
        for si in self._all():
            if si.external and si.sub is not None:
                si.link_lost = True

    async def _supervise(self, si: SourceInfo) -> None:
        """One task per mirror/source: waits for its scheduled (re)create and runs it."""
        with si.scope:
            while True:
                at = si.next_at
                if at is None:
                    await si.wake.wait()
                    si.wake = trio.Event()
                    continue
                if trio.current_time() < at:
                    with trio.move_on_at(at):
                        await si.wake.wait()
                    si.wake = trio.Event()
                    continue
                seq = si.next_seq
                si.next_at = None
                try:
                    await self._setup(si, seq)
                except trio.Cancelled:
                    raise
                except Exception:
                    log.exception("setting up %s consumer for '%s > %s' failed",
                                  "mirror" if si.mirror else "source", self.stream.account.name,
                                  self.stream.name)
                    si.fails += 1
                    self._after_failure(si, seq)

    def _after_failure(self, si: SourceInfo, seq: int) -> None:
        if si.sub is not None:
            return
        self._cancel(si)
        if si.mirror:
            self._schedule_mirror()
        else:
            self._schedule_source(si, seq)

    # ------------------------------------------------------------------------------ the request
    def _cancel(self, si: SourceInfo) -> None:
        """cancelSourceInfo: stop listening to the current consumer (it expires by itself)."""
        if si.sub is not None:
            self.client.unsubscribe(si.sub)
            si.sub = None
        for s in si.dsubs:
            self.client.unsubscribe(s)
        si.dsubs = []
        si.cname = ""

    def _request(self, si: SourceInfo, seq: int) -> tuple[str, dict[str, Any]]:
        """The consumer-create subject and CreateConsumerRequest for one (re)create."""
        cfg = si.cfg
        ext = si.external
        kind = "M" if si.mirror else "S"
        if ext and ext.get("deliver"):
            deliver = f"{ext['deliver']}.{kind}.{rand8()}".replace("..", ".")
        else:
            deliver = f"$JS.{kind}.{rand8()}"
        c: dict[str, Any] = {}
        policy = "all"
        opt_seq = 0
        opt_time: str | None = None
        st = self.stream.store.state()
        if si.mirror:
            opt_seq = st.last_seq + 1
            policy = "by_start_sequence"
            if st.msgs == 0 and st.first_seq == 0:
                # only the first time: the configured start
                opt_seq = int(cfg.get("opt_start_seq") or 0)
                if not opt_seq and cfg.get("opt_start_time"):
                    opt_time = cfg["opt_start_time"]
                    policy = "by_start_time"
            if not opt_seq and opt_time is None:
                policy = "all"
        elif seq > 1:
            opt_seq, policy = seq, "by_start_sequence"
        elif cfg.get("opt_start_seq"):
            opt_seq, policy = int(cfg["opt_start_seq"]), "by_start_sequence"
        elif cfg.get("opt_start_time"):
            # not before what the stream already holds
            want = parse_rfc3339(cfg["opt_start_time"])
            opt_time = cfg["opt_start_time"]
            if st.last_ts and want < st.last_ts:
                opt_time = rfc3339(st.last_ts)
            policy = "by_start_time"
        elif st.first_seq > 1 and st.last_ts and not si.rc:
            opt_time, policy = rfc3339(st.last_ts), "by_start_time"
        filt = cfg.get("filter_subject") or ""
        filters = [t.get("src", "") for t in cfg.get("subject_transforms") or []]
        if si.mirror and filt:
            si.sf = filt
        if not filt and len(filters) == 1:
            # the extended create subject carries exactly one filter
            filt, filters = filters[0], []
        if filt:
            c["name"] = f"{'mirror' if si.mirror else 'src'}-{server_hash(rand8() + rand8())}"
        c["deliver_policy"] = policy
        if opt_seq:
            c["opt_start_seq"] = opt_seq
        if opt_time is not None:
            c["opt_start_time"] = opt_time
        c["ack_policy"] = "none"
        c["ack_wait"] = ACK_WAIT_NS
        c["max_deliver"] = 1
        if filt:
            c["filter_subject"] = filt
        if filters:
            c["filter_subjects"] = filters
        c["replay_policy"] = "instant"
        c["flow_control"] = True
        c["deliver_subject"] = deliver
        c["idle_heartbeat"] = HEARTBEAT_NS
        c["inactive_threshold"] = INACTIVE_THRESHOLD_NS
        c["num_replicas"] = 0
        c["direct"] = True
        if filt:
            subject = f"{API_PREFIX}.CONSUMER.CREATE.{si.name}.{c['name']}.{filt}"
        else:
            subject = f"{API_PREFIX}.CONSUMER.CREATE.{si.name}"
        if ext and ext.get("api"):
            subject = subject.replace(API_PREFIX, ext["api"], 1).replace("..", ".")
        return subject, {"stream_name": si.name, "config": c, "action": ""}

    async def _setup(self, si: SourceInfo, seq: int) -> None:
        """setupMirrorConsumer / trySetupSourceConsumer: listen on the deliver subject, request
        a consumer, wait for the answer. The new consumer may start delivering before its
        create response arrives (an origin that sees interest at once, as through a stream
        import): those deliveries are held and handled after the response, as nats-server
        subscribes first and queues them too."""
        if self._closed:
            return
        self._hook_leaf()
        self._cancel(si)
        if si.mirror and si.lreq is not None:
            si.sseq = self.stream.lseq
        si.lreq = trio.current_time()
        subject, req = self._request(si, seq)
        reply = "$JSC.R." + rand8()
        answers: list[tuple[bytes | None, bytes]] = []
        got = trio.Event()
        early: list["Msg"] = []

        def on_reply(sub: Any, msg: "Msg") -> None:
            answers.append((msg.hdr, msg.data))
            got.set()

        dsub = self.client.subscribe(req["config"]["deliver_subject"], lambda sub, msg: early.append(msg))
        rsub = self.client.subscribe(reply, on_reply)
        si.err = None
        si.sip = True
        # a source tells the origin which incarnation it expects (refused if recreated)
        hdr = append_header(None, STREAM_IDENTITY, si.ident) if si.ident and not si.mirror else None
        try:
            reached = self.client.publish(subject, reply, hdr, json.dumps(req, separators=(",", ":")).encode())
            if reached or answers:
                with trio.move_on_after(CREATE_WAIT):
                    await got.wait()
        finally:
            self.client.unsubscribe(rsub)
            si.sip = False
        try:
            self._created(si, seq, req, answers, dsub, early)
        finally:
            if si.sub is not dsub:
                self.client.unsubscribe(dsub)

    def _created(self, si: SourceInfo, seq: int, req: dict[str, Any],
                 answers: list[tuple[bytes | None, bytes]], dsub: Any, early: list["Msg"]) -> None:
        """Act on the create response: on success `dsub` becomes the consumer's subscription
        and what arrived on it meanwhile is handled now."""
        if self._closed or (si is not self.mirror and self.sources.get(si.iname) is not si):
            return
        if not answers:
            log.debug("no answer to the %s consumer create for '%s > %s'", "mirror" if si.mirror
                      else "source", self.stream.account.name, self.stream.name)
            si.fails += 1
            self._after_failure(si, seq)
            return
        rhdr, body = answers[0]
        try:
            resp = json.loads(body)
            if not isinstance(resp, dict):
                raise ValueError("not an object")
        except ValueError:
            log.warning("JetStream bad %s consumer create response: %r",
                        "mirror" if si.mirror else "source", body[:200])
            si.err = js_err(10025, err="invalid JSON").to_json() if si.mirror else None
            si.fails += 1
            self._after_failure(si, seq)
            return
        err = resp.get("error")
        info_cfg = resp.get("config")
        if isinstance(err, dict) and err.get("err_code") == IDENTITY_MISMATCH and not si.mirror:
            # the origin was recreated: start over from its beginning (not a failure)
            si.sseq = si.dseq = 0
            si.ident, si.rc = "", True
            self._cancel(si)
            self._schedule_source(si, 0)
            return
        if err is not None or not isinstance(info_cfg, dict):
            si.err = err if isinstance(err, dict) else js_err(
                10029 if si.mirror else 10045, err="invalid consumer create response").to_json()
            log.warning("JetStream error response for stream %s create %s consumer %s: %s",
                        self.stream.name, "mirror" if si.mirror else "source", si.name, si.err)
            si.fails += 1
            self._after_failure(si, seq)
            return
        si.fails = 0
        si.link_lost = False
        delivered = int((resp.get("delivered") or {}).get("stream_seq") or 0)
        deliver = info_cfg.get("deliver_subject") or req["config"]["deliver_subject"]
        if si.mirror:
            self._mirror_established(si, delivered)
        else:
            ident = get_header(rhdr, STREAM_IDENTITY) if rhdr else None
            if not self._source_established(si, seq, delivered, ident.decode() if ident else ""):
                return
        si.cname = str(resp.get("name") or "")
        si.dseq = 0
        si.last_ns = self.clock.now_ns()
        if deliver != dsub.subject:
            si.sub = self.client.subscribe(deliver, lambda sub, msg: self._on_msg(si, sub, msg))
            return
        si.sub = dsub
        dsub.extra = lambda sub, msg: self._on_msg(si, sub, msg)
        for m in early:
            if si.sub is not dsub:
                break  # a held message made us recreate: the rest are stale
            self._on_msg(si, dsub, m)

    def _mirror_established(self, si: SourceInfo, delivered: int) -> None:
        """The origin starts after `delivered`: move an empty mirror there, or skip the gap."""
        stream = self.stream
        st = stream.store.state()
        if st.last_seq < delivered:
            if st.msgs == 0:
                stream.store.compact(delivered + 1)
            else:
                stream.store.skip_msgs(st.last_seq + 1, delivered - st.last_seq)
            stream.lseq = delivered
        si.sseq = max(delivered, st.last_seq)

    def _source_established(self, si: SourceInfo, seq: int, delivered: int, ident: str) -> bool:
        """Take the new consumer's position; False when the origin turned out to be a
        recreated one and the source must start over."""
        recreated = si.rc or bool(ident and si.ident and ident != si.ident)
        if not recreated and not ident and seq > 1 and delivered < seq - 1:
            # no identity to compare: resuming at origin seq N, the origin ends before N-1
            si.sseq = si.dseq = 0
            si.ident, si.rc = "", True
            self._schedule_source(si, 0)
            log.warning("JetStream source stream %r for stream '%s > %s' was recreated, "
                        "resetting source state", si.name, self.stream.account.name, self.stream.name)
            return False
        if recreated and not si.rc:
            log.warning("JetStream source stream %r for stream '%s > %s' was recreated, "
                        "resetting source state", si.name, self.stream.account.name, self.stream.name)
            si.sseq = 0
        elif si.rc:
            si.sseq = 0
        si.ident, si.rc = ident, False
        if si.sseq < delivered:
            si.sseq = delivered
        return True

    # ------------------------------------------------------------------------------ messages
    def _on_msg(self, si: SourceInfo, sub: "Subscription", msg: "Msg") -> None:
        if sub is not si.sub:
            return  # an earlier consumer's stragglers
        si.last_ns = self.clock.now_ns()
        if si.mirror:
            self._on_mirror_msg(si, msg)
        else:
            self._on_source_msg(si, msg)

    def _control(self, si: SourceInfo, msg: "Msg") -> bool:
        """Flow control / heartbeat. True when the consumer must be recreated."""
        if msg.reply:
            self.client.publish(msg.reply, None, None, b"")
            return False
        last = get_header(msg.hdr, LAST_CONSUMER)
        if last and last.isdigit() and int(last) > 0 and int(last) != si.dseq:
            return True
        stalled = get_header(msg.hdr, CONSUMER_STALLED)
        if stalled:
            self.client.publish(stalled.decode("utf-8", "replace"), None, None, b"")
        return False

    def _on_mirror_msg(self, si: SourceInfo, msg: "Msg") -> None:
        """processInboundMirrorMsg."""
        if _is_control(msg):
            if self._control(si, msg):
                self._retry_mirror()
            return
        ar = parse_ack_reply(msg.reply)
        if ar is None or ar[0] != si.cname:
            return
        _, sseq, dseq, dc, ts, pending = ar
        if dc > 1:
            return
        olag, osseq, odseq = si.lag, si.sseq, si.dseq
        stream = self.stream
        if sseq <= si.sseq:
            if dseq == si.dseq + 1:
                si.dseq += 1
            return
        if sseq == si.sseq + 1:
            si.dseq = dseq
            si.sseq += 1
        elif dseq == si.dseq + 1:
            # contiguous deliveries, but the origin no longer has what lies between
            st = stream.store.state()
            try:
                stream.store.skip_msgs(st.last_seq + 1, sseq - 1 - st.last_seq)
            except Exception:
                si.sseq, si.dseq = osseq, odseq
                self._retry_mirror()
                return
            stream.lseq = sseq - 1
            si.dseq += 1
            si.sseq = sseq
        else:
            self._retry_mirror()
            return
        si.lag = pending - 1 if pending > 0 else 0
        if stream.config.mirror_direct and not si.dsubs and pending < DGET_CAUGHT_UP:
            self._mirror_direct(si)
        subject = si.transform(msg.subject) if si.trs else msg.subject
        hdr = strip_headers(msg.hdr, (), _STRIP_PREFIXES)
        stream.last_error = None
        stored = stream.process(subject, None, hdr, msg.data, sourced=True, lseq=sseq - 1, ts=ts)
        err = stream.last_error
        if stored or err is None:
            return
        if err.err_code != STREAM_SEQUENCE_NOT_MATCH:
            log.warning("Error processing inbound mirror message for '%s' > '%s': %s",
                        stream.account.name, stream.name, err.description)
            return
        # we missed messages: start again after what we really have
        si.lag, si.dseq, si.sseq = olag, odseq, osseq
        if sseq <= stream.lseq:
            si.sseq = stream.lseq
        self._retry_mirror()

    def _mirror_direct(self, si: SourceInfo) -> None:
        """A caught-up mirror with mirror_direct answers direct gets for its origin."""
        from .direct import on_direct_get, on_direct_get_last
        stream = self.stream
        pre = f"$JS.API.DIRECT.GET.{si.name}"
        si.dsubs = [
            self.client.subscribe(pre, lambda sub, m: on_direct_get(stream, m), queue="_sys_"),
            self.client.subscribe(pre + ".>", lambda sub, m: on_direct_get_last(stream, m), queue="_sys_"),
        ]

    def _on_source_msg(self, si: SourceInfo, msg: "Msg") -> None:
        """processInboundSourceMsg."""
        if _is_control(msg):
            if self._control(si, msg):
                self._retry_source(si, si.sseq + 1)
            return
        ar = parse_ack_reply(msg.reply)
        if ar is None or ar[0] != si.cname:
            return
        _, sseq, dseq, dc, _ts, pending = ar
        if dc > 1:
            return
        osseq, odseq = si.sseq, si.dseq
        if sseq <= si.sseq:
            if dseq == si.dseq + 1:
                si.dseq += 1
            return
        if dseq == si.dseq + 1:
            si.dseq += 1
            si.sseq = sseq
        else:
            # a delivery went missing: ask again after the last one we have
            self._cancel(si)
            self._retry_source(si, si.sseq + 1)
            return
        si.lag = pending - 1 if pending > 0 else 0
        hdr = strip_headers(msg.hdr, (STREAM_SOURCE.encode(),), _STRIP_PREFIXES)
        hdr = append_header(hdr, STREAM_SOURCE, si.source_header(msg.subject, msg.reply or ""))
        subject = si.transform(msg.subject) if si.trs else msg.subject
        stream = self.stream
        stream.last_error = None
        stored = stream.process(subject, None, hdr, msg.data, sourced=True)
        err = stream.last_error
        if stored or err is None:
            return  # stored, or a duplicate / no-interest skip: both count as done
        log.debug("Error processing inbound source %r for '%s' > '%s': %s", si.iname,
                  stream.account.name, stream.name, err.description)
        # keep the message: try again from it (nats-server 2.12+)
        si.sseq, si.dseq = osseq, odseq
        self._cancel(si)
        self._retry_source(si, sseq)

    # ------------------------------------------------------------------------------ positions
    def _load_saved(self) -> dict[str, Any]:
        try:
            blob = self.stream.store.read_meta(META_NAME)
            return json.loads(blob) if blob else {}
        except Exception:
            log.exception("unreadable source positions for stream %s", self.stream.name)
            return {}

    def _snapshot(self) -> str:
        return json.dumps({"lseq": self.stream.lseq,
                           "sources": {si.iname: {"seq": si.sseq, "ident": si.ident}
                                       for si in self.sources.values()}},
                          sort_keys=True)

    async def _persist(self) -> None:
        if not self.sources:
            return
        snap = self._snapshot()
        if snap == self._saved:
            return
        store = self.stream.store
        try:
            if self.stream.is_file:
                await run_blocking(store.write_meta, META_NAME, snap.encode())
            else:
                store.write_meta(META_NAME, snap.encode())
            self._saved = snap
        except Exception:
            log.exception("saving source positions for stream %s failed", self.stream.name)

    def _recover_positions(self, wanted: list[SourceInfo], use_saved: bool) -> None:
        """startingSequenceForSources: the newest `Nats-Stream-Source` of each source in the
        stream, scanning backwards. With saved positions only messages stored after the save
        need scanning, and a source not found there resumes at its saved position."""
        saved = self._load_saved() if use_saved else {}
        positions = saved.get("sources") or {}
        floor = int(saved.get("lseq") or 0) if positions else 0
        store = self.stream.store
        st = store.state()
        todo = {si.iname: si for si in wanted}
        by_name = list(wanted)
        seq = st.last_seq
        while todo and st.msgs and seq > floor and seq >= st.first_seq:
            m = store.load_prev_msg(">", seq)
            if m is None or m.seq <= floor:
                break
            seq = m.seq - 1
            v = get_header(m.hdr, STREAM_SOURCE) if m.hdr and b"Nats-Stream-Source:" in m.hdr else None
            if not v:
                continue
            name, iname, sseq, ident = stream_and_seq(v.decode("utf-8", "replace"))
            if iname:
                si = todo.pop(iname, None)
                if si is not None:
                    si.sseq, si.dseq, si.ident = sseq, 0, ident
            elif name:
                for si in by_name:
                    if si.iname in todo and si.matches_index(name):
                        todo.pop(si.iname)
                        si.sseq, si.dseq, si.ident = sseq, 0, ""
        for iname, si in todo.items():
            pos = positions.get(iname) or {}
            si.sseq = int(pos.get("seq") or 0) if isinstance(pos, dict) else 0
            si.ident = str(pos.get("ident") or "") if isinstance(pos, dict) else ""
            si.dseq = 0
        self._saved = self._snapshot() if use_saved and positions else ""

    # ------------------------------------------------------------------------------ leaf links
    def _hook_leaf(self) -> None:
        hook = getattr(self.stream.js.service, "watch_leaf_links", None)
        if hook is not None:
            hook()


__all__ = ["Sourcing", "SourceInfo", "parse_ack_reply", "stream_and_seq"]
