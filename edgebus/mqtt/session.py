"""One MQTT session: subscriptions, QoS 1/2 delivery tracking, packet identifiers, redelivery.

A `Session` outlives its network connections when clean-session is 0. It is the subscriber the
core delivers to (`Subscription.client`), so a persistent session keeps collecting QoS 1/2
messages while its client is away. The connection (`connection.MQTTConnection`) is attached
with `attach()` and detached when it closes; while attached, deliveries are written straight
into the connection's outbound buffer.

Delivery rules, as nats-server's `mqttDeliverMsgCbQoS0` / `mqttDeliverMsgCbQoS12`:

- the delivered QoS is min(publish QoS, subscription QoS); messages from NATS clients (no
  `Nmqtt-Pub` header) are QoS 0;
- filters whose first level is a wildcard never see subjects starting with `$` [MQTT-4.7.2-1];
- QoS 1/2 deliveries get a per-session packet identifier (a rolling counter that skips ids in
  use) and stay tracked until PUBACK (QoS 1) or PUBREC -> PUBREL -> PUBCOMP (QoS 2); at most
  `max_ack_pending` are unacknowledged, the rest wait in order in the backlog;
- an unacknowledged PUBLISH (or PUBREL) is sent again with DUP and its packet id after
  `ack_wait`, and at once when the session's client reconnects as MQTT 3.1.1 §4.4 asks
  (nats-server's JetStream consumer waits for `ack_wait` there); retained deliveries are
  resent the same way (nats-server tracks them but never resends them).

Persistent sessions write every queued QoS 1/2 delivery to the account's `PendingLog`, so
they survive disconnects and restarts; clean sessions keep them in memory only.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Sequence

import trio

from ..codec.mqtt import append_qos0, publish_for_field
from ..codec.mqtt_topics import FilterSubjects, PARENT_SID_SUFFIX, subject_to_topic
from ..core.client import CLIENT
from ..core.contract import Batch, deliver_each
from ..core.sublist import Subscription
from .persist import get_hash, header_block

if TYPE_CHECKING:
    from .connection import MQTTConnection
    from .manager import AccountSessions

log = logging.getLogger("edgebus.mqtt")

#: NATS header block of a message published by an MQTT client, by QoS (nats-server's format:
#: no space after the colon). NATS subscribers see it; MQTT sessions read the QoS from it.
PUB_HEADERS = (b"NATS/1.0\r\nNmqtt-Pub:0\r\n\r\n",
               b"NATS/1.0\r\nNmqtt-Pub:1\r\n\r\n",
               b"NATS/1.0\r\nNmqtt-Pub:2\r\n\r\n")
_QOS_OF_HEADER = {h: q for q, h in enumerate(PUB_HEADERS)}

# subject -> length-prefixed MQTT topic (shared: a pure function of the subject)
_TOPIC_FIELDS: dict[str, bytes] = {}
_TOPIC_CACHE_MAX = 50_000


def topic_field_for(subject: str) -> bytes:
    tf = _TOPIC_FIELDS.get(subject)
    if tf is None:
        raw = subject_to_topic(subject).encode("utf-8", "surrogateescape")
        tf = len(raw).to_bytes(2, "big") + raw
        if len(_TOPIC_FIELDS) >= _TOPIC_CACHE_MAX:
            _TOPIC_FIELDS.clear()
        _TOPIC_FIELDS[subject] = tf
    return tf


class SubInfo:
    """MQTT attributes of one core subscription (kept in `Subscription.extra`)."""

    __slots__ = ("qos", "reserved")

    def __init__(self, qos: int, reserved: bool) -> None:
        self.qos = qos
        self.reserved = reserved


class Pending:
    """A QoS 1/2 delivery: queued, in flight (has a pid), or a PUBREL awaiting PUBCOMP."""

    __slots__ = ("qos", "subject", "data", "sid", "seq", "pid", "sent", "dup", "retain", "tf")

    def __init__(self, qos: int, subject: str, data: bytes | None, sid: bytes, seq: int = 0,
                 dup: bool = False, retain: bool = False, tf: bytes | None = None) -> None:
        self.qos = qos
        self.subject = subject
        self.data = data
        self.sid = sid
        self.seq = seq  # PendingLog sequence (persistent sessions), else 0
        self.pid = 0
        self.sent = 0.0
        self.dup = dup
        self.retain = retain
        self.tf = tf


class InboundQoS2:
    """A QoS 2 PUBLISH received and acknowledged with PUBREC, delivered on PUBREL."""

    __slots__ = ("subject", "data", "retain", "seq")

    def __init__(self, subject: str, data: bytes, retain: bool, seq: int = 0) -> None:
        self.subject = subject
        self.data = data
        self.retain = retain
        self.seq = seq


class Session:
    """See the module docstring. The subscriber of its subscriptions (core.contract.Subscriber):
    it outlives connections, so it is not a connection `Client`."""

    kind = CLIENT
    type = "mqtt"
    echo = True
    takes_batches = False  # (deliveries store QoS 1/2 state: one message at a time)

    def __init__(self, mgr: "AccountSessions", client_id: str, clean: bool) -> None:
        self.mgr = mgr
        self.account = mgr.account
        self.broker = mgr.broker
        self.id = client_id
        self.hash = get_hash(client_id)
        self.clean = clean
        self.conn: MQTTConnection | None = None
        self.subs: dict[bytes, Subscription] = {}
        self.filters: dict[str, int] = {}  # subscription subject -> QoS (the persisted "subs")
        self.inflight: dict[int, Pending] = {}  # pid -> PUBLISH awaiting PUBACK / PUBREC
        self.pubrel: dict[int, Pending] = {}  # pid -> PUBREL awaiting PUBCOMP
        self.backlog: deque[Pending] = deque()
        self.backlog_bytes = 0
        self.qos2_in: dict[int, InboundQoS2] = {}
        self.last_pid = 0
        self.maxp = mgr.max_ack_pending
        self.deny_filter = False
        self.dropped = 0
        self.closed = False

    def __repr__(self) -> str:
        return f"<Session {self.id!r} clean={self.clean} subs={len(self.filters)}>"

    @property
    def cid(self) -> int:
        c = self.conn
        return c.cid if c is not None else 0

    @property
    def persistent(self) -> bool:
        return not self.clean

    # -- subscriptions --------------------------------------------------------------------
    def subscribe(self, fs: FilterSubjects, qos: int) -> list[Subscription]:
        """Create or update the core subscriptions of one filter; returns them."""
        out = []
        for subject, sid in ((fs.subject, fs.subject.encode()),
                             (fs.parent, (fs.parent + PARENT_SID_SUFFIX).encode() if fs.parent else b"")):
            if subject is None:
                continue
            sub = self.subs.get(sid)
            if sub is None:
                sub = Subscription(self, subject, None, sid)
                sub.extra = SubInfo(qos, fs.wildcard_first)
                self.subs[sid] = sub
                self.account.sublist.insert(sub)
            else:
                if qos == 0 and sub.extra.qos > 0:
                    self._drop_pending_of({sid})  # nats-server deletes the JS consumer
                sub.extra.qos = qos
            out.append(sub)
        self.filters[fs.subject] = qos
        return out

    def unsubscribe(self, subject: str, parent: str | None) -> bool:
        sids = {subject.encode()}
        if parent:
            sids.add((parent + PARENT_SID_SUFFIX).encode())
        found = False
        for sid in sids:
            sub = self.subs.pop(sid, None)
            if sub is not None:
                found = True
                self.account.sublist.remove(sub)
        self._drop_pending_of(sids)
        self.filters.pop(subject, None)
        return found

    def drop_all_subs(self) -> None:
        subs = list(self.subs.values())
        self.subs.clear()
        sl = self.account.sublist
        for s in subs:
            sl.remove(s)

    def remove_sub(self, sub: Subscription) -> None:  # core callback (auto-unsubscribe)
        if self.subs.get(sub.sid) is sub:
            del self.subs[sub.sid]
            self.account.sublist.remove(sub)

    def update_deny_filter(self) -> None:
        conn = self.conn
        perms = conn.permissions if conn is not None else None
        self.deny_filter = perms is not None and any(
            perms.needs_delivery_filter(s.subject) for s in self.subs.values())

    def _denied(self, subject: str) -> bool:
        conn = self.conn
        p = conn.permissions if conn is not None else None
        return p is not None and p.delivery_denied(subject)

    # -- delivery (the core.contract.Subscriber method, called by core.router.route) -------
    def deliver(self, sub: Subscription, subject_b: bytes, reply: bytes | None, hdr: bytes | None,
                payloads: Sequence[bytes], src: Any, on: bytes | None) -> None:
        info = sub.extra
        if info.reserved and subject_b[:1] == b"$":
            return
        subject = subject_b.decode("utf-8", "surrogateescape")
        q = _QOS_OF_HEADER.get(hdr, 0) if type(hdr) is bytes else 0
        if info.qos < q:
            q = info.qos
        if q:
            for data in payloads:
                self._deliver_qos(sub, subject, data, q)
            return
        conn = self.conn
        if conn is None or conn.closing:
            return
        if self.deny_filter and self._denied(subject):
            return
        tf = _TOPIC_FIELDS.get(subject) or topic_field_for(subject)
        conn.out_bytes += append_qos0(conn.out, tf, payloads)
        conn.out_msgs += len(payloads)
        conn._after_append()  # the slow consumer rule, the stall, the wake-up

    def deliver_batch(self, sub: Subscription, batch: Batch, src: Any) -> None:
        deliver_each(self, sub, batch, src)

    def _deliver_qos(self, sub: Subscription, subject: str, data: bytes, qos: int) -> None:
        if self.deny_filter and self._denied(subject):
            return
        p = Pending(qos, subject, data, sub.sid)
        if not self.clean:
            hdr = header_block([("Nmqtt-Pub", str(qos)), ("Nmqtt-Subject", subject),
                                ("Nmqtt-Sid", sub.sid.decode("utf-8", "surrogateescape"))])
            try:
                p.seq = self.mgr.storage.pending.add(self.hash + ".out", hdr, data)
            except Exception:
                log.exception("MQTT: storing a QoS %d delivery for session %r failed", qos, self.id)
        conn = self.conn
        if conn is not None and not conn.closing and not self.backlog \
                and len(self.inflight) < self.maxp:
            self._send(p, conn)
        else:
            self._queue(p)

    def _queue(self, p: Pending) -> None:
        if p.seq and p.data is not None:
            p.data = None  # on disk: keep memory flat while the client is away
        elif p.data is not None:
            self.backlog_bytes += len(p.data)
            limit = self.broker.options.max_pending
            while self.backlog_bytes > limit and self.backlog:
                # a clean session that does not acknowledge: drop the oldest, like a slow consumer
                old = self.backlog.popleft()
                self.backlog_bytes -= len(old.data or b"")
                self.dropped += 1
                if self.dropped == 1:
                    log.warning("MQTT session %r: QoS backlog over %d bytes, dropping oldest",
                                self.id, limit)
        self.backlog.append(p)

    def next_pid(self) -> int:
        pid = self.last_pid
        inflight, pubrel = self.inflight, self.pubrel
        for _ in range(65535):
            pid = pid + 1 if pid < 65535 else 1
            if pid not in inflight and pid not in pubrel:
                self.last_pid = pid
                return pid
        return 0

    def _send(self, p: Pending, conn: "MQTTConnection") -> bool:
        pid = self.next_pid()
        if pid == 0:
            self.backlog.appendleft(p)
            return False
        data = p.data
        if data is None:
            m = self.mgr.storage.pending.load(p.seq)
            if m is None:  # removed under us (purge): nothing to send
                return True
            data = m.data
        p.pid = pid
        p.sent = now = trio.current_time()
        self.inflight[pid] = p
        tf = p.tf or _TOPIC_FIELDS.get(p.subject) or topic_field_for(p.subject)
        out = conn.out
        idle = not out
        out += publish_for_field(tf, data, p.qos, pid, p.dup, p.retain)
        conn.out_msgs += 1
        conn.out_bytes += len(data)
        if not self.clean:
            p.data = None
        if idle:
            conn.wake()
        conn.wake_timer(now + self.mgr.ack_wait)
        return True

    def send_retained(self, rm: Any, sub_qos: int, sid: bytes, conn: "MQTTConnection") -> None:
        """A retained message for a new subscription: RETAIN set, QoS min(stored, granted);
        tracked like any QoS 1/2 delivery (falls back to QoS 0 without a free packet id)."""
        qos = min(rm.qos, sub_qos)
        if qos:
            pid = self.next_pid()
            if pid:
                p = Pending(qos, rm.subject, rm.data, sid, retain=True, tf=rm.tf)
                p.pid = pid
                p.sent = trio.current_time()
                self.inflight[pid] = p
                conn.out += publish_for_field(rm.tf, rm.data, qos, pid, False, True)
                conn.out_msgs += 1
                conn.out_bytes += len(rm.data)
                conn.wake_timer(p.sent + self.mgr.ack_wait)
                return
        conn.out += publish_for_field(rm.tf, rm.data, 0, 0, False, True)
        conn.out_msgs += 1
        conn.out_bytes += len(rm.data)

    def pump(self) -> None:
        """Send backlog while the in-flight window has room."""
        conn = self.conn
        if conn is None or conn.closing:
            return
        backlog = self.backlog
        while backlog and len(self.inflight) < self.maxp:
            p = backlog.popleft()
            if p.data is not None and not p.seq:
                self.backlog_bytes -= len(p.data)
            if not self._send(p, conn):
                break

    # -- acknowledgements from the client -------------------------------------------------
    def on_puback(self, pid: int) -> None:
        p = self.inflight.pop(pid, None)
        if p is None:
            return
        if p.seq:
            self.mgr.storage.pending.remove(p.seq)
        if self.backlog:
            self.pump()

    def on_pubrec(self, pid: int) -> None:
        p = self.inflight.pop(pid, None)
        if p is not None and p.seq:
            self.mgr.storage.pending.remove(p.seq)
        # nats-server answers every PUBREC with a PUBREL, known packet id or not
        r = Pending(2, p.subject if p else "", None, p.sid if p else b"")
        r.pid = pid
        r.sent = now = trio.current_time()
        if not self.clean:
            try:
                r.seq = self.mgr.storage.pending.add(
                    self.hash + ".rel", header_block([("Nmqtt-PubRel", str(pid))]), b"")
            except Exception:
                log.exception("MQTT: storing PUBREL state for session %r failed", self.id)
        self.pubrel[pid] = r
        conn = self.conn
        if conn is not None:
            conn.out += bytes((0x62, 2, pid >> 8, pid & 0xFF))
            conn.wake()
            conn.wake_timer(now + self.mgr.ack_wait)

    def on_pubcomp(self, pid: int) -> None:
        r = self.pubrel.pop(pid, None)
        if r is not None and r.seq:
            self.mgr.storage.pending.remove(r.seq)
        if self.backlog:
            self.pump()

    # -- inbound QoS 2 --------------------------------------------------------------------
    def store_qos2(self, pid: int, subject: str, data: bytes, retain: bool) -> None:
        """Keep a QoS 2 PUBLISH until PUBREL; a repeated packet id keeps the first copy
        (nats-server: `$MQTT_qos2in` has one message per subject, discard new)."""
        if pid in self.qos2_in:
            return
        m = InboundQoS2(subject, data, retain)
        if not self.clean:
            hdr = header_block([("Nmqtt-Pub", "2" + ("1" if retain else "0")),
                                ("Nmqtt-Subject", subject), ("Nmqtt-PI", str(pid))])
            try:
                m.seq = self.mgr.storage.pending.add(self.hash + ".in", hdr, data)
            except Exception:
                log.exception("MQTT: storing a QoS 2 publish for session %r failed", self.id)
        self.qos2_in[pid] = m

    def release_qos2(self, pid: int) -> InboundQoS2 | None:
        m = self.qos2_in.pop(pid, None)
        if m is not None and m.seq:
            self.mgr.storage.pending.remove(m.seq)
        return m

    # -- connection changes ---------------------------------------------------------------
    def attach(self, conn: "MQTTConnection") -> None:
        self.conn = conn
        self.update_deny_filter()

    def resend_all(self) -> None:
        """After (re)connect: every unacknowledged PUBLISH again with DUP and its packet id,
        every pending PUBREL again, then the backlog."""
        conn = self.conn
        if conn is None:
            return
        now = trio.current_time()
        for pid, p in list(self.inflight.items()):
            self._resend(p, conn, now)
        for pid, r in list(self.pubrel.items()):
            del self.pubrel[pid]
            r.sent = now
            self.pubrel[pid] = r
            conn.out += bytes((0x62, 2, pid >> 8, pid & 0xFF))
        self.pump()
        conn.wake()
        conn.wake_timer(now + self.mgr.ack_wait)

    def _resend(self, p: Pending, conn: "MQTTConnection", now: float) -> None:
        data = p.data
        if data is None:
            m = self.mgr.storage.pending.load(p.seq) if p.seq else None
            if m is None:
                self.inflight.pop(p.pid, None)
                return
            data = m.data
        del self.inflight[p.pid]
        p.sent = now
        p.dup = True
        self.inflight[p.pid] = p
        tf = p.tf or _TOPIC_FIELDS.get(p.subject) or topic_field_for(p.subject)
        conn.out += publish_for_field(tf, data, p.qos, p.pid, True, p.retain)

    def next_due(self, ack_wait: float) -> float | None:
        """When the oldest unacknowledged PUBLISH or PUBREL is due again (trio time)."""
        due = None
        for d in (self.inflight, self.pubrel):
            if d:
                first = next(iter(d.values()))
                t = first.sent + ack_wait
                if due is None or t < due:
                    due = t
        return due

    def redeliver_due(self, ack_wait: float) -> int:
        """Resend (DUP) everything unacknowledged for `ack_wait` seconds; returns how many."""
        conn = self.conn
        if conn is None or conn.closing:
            return 0
        now = trio.current_time()
        limit = now - ack_wait
        n = 0
        for p in list(self.inflight.values()):
            if p.sent > limit:
                break
            self._resend(p, conn, now)
            n += 1
        for pid, r in list(self.pubrel.items()):
            if r.sent > limit:
                break
            del self.pubrel[pid]
            r.sent = now
            self.pubrel[pid] = r
            conn.out += bytes((0x62, 2, pid >> 8, pid & 0xFF))
            n += 1
        if n:
            conn.wake()
        return n

    def detach(self, conn: "MQTTConnection") -> bool:
        """The connection closed; returns True when it was this session's connection."""
        if self.conn is not conn:
            return False
        self.conn = None
        return True

    def _drop_pending_of(self, sids: set[bytes]) -> None:
        pend = self.mgr.storage.pending
        for pid, p in list(self.inflight.items()):
            if p.sid in sids:
                del self.inflight[pid]
                if p.seq:
                    pend.remove(p.seq)
        if self.backlog:
            keep: deque[Pending] = deque()
            for p in self.backlog:
                if p.sid in sids:
                    if p.seq:
                        pend.remove(p.seq)
                    elif p.data is not None:
                        self.backlog_bytes -= len(p.data)
                else:
                    keep.append(p)
            self.backlog = keep

    def clear(self) -> None:
        """Discard all state [MQTT-3.1.2-6]: subscriptions, queued and in-flight messages."""
        self.drop_all_subs()
        self.filters.clear()
        self.inflight.clear()
        self.pubrel.clear()
        self.backlog.clear()
        self.backlog_bytes = 0
        self.qos2_in.clear()
        self.last_pid = 0
        self.mgr.storage.pending.purge_session(self.hash)
