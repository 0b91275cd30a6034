"""The MQTT connection driver, for any trio byte stream (TCP, TLS or WebSocket).

One `MQTTConnection` per network connection, built like the NATS driver: a nursery with a reader
(parse every packet of a read and act on it synchronously), a writer (one `send_all` of
everything pending in the outbound bytearray) and a timer task (CONNECT deadline, keep-alive,
QoS 1/2 redelivery). Deliveries from other clients append to the outbound buffer and wake the
writer; nothing on the message path creates a task or sends on a channel.

Connection rules follow nats-server's `mqtt.go`:

- the first packet must be CONNECT, within the auth timeout (2 s by default; nats-server applies
  it only when authentication is required, edgebus always, so a client that never completes its
  CONNECT is dropped);
- CONNACK return codes: 0x01 protocol level, 0x02 client id (also a session-hash collision),
  0x04 empty/invalid user name, 0x05 authentication failure, 0x10 QoS 2 Will refused
  (`reject_qos2_publish`), 0x03 when the account's MQTT storage cannot be opened (nats-server
  closes without a CONNACK there);
- user name and password become the NATS `user` / `pass`; the password is also offered as
  `auth_token` (and as a bearer user JWT when it looks like one);
- keep-alive: the connection is closed after floor(1.5 x keep-alive) seconds without a packet
  (nats-server's read deadline, truncated to whole seconds as Go's conversion does);
- a malformed packet closes the connection without an answer, after acting on the packets that
  preceded it in the same read;
- a PUBLISH denied by permissions is dropped silently (QoS 1 still gets its PUBACK), a filter
  denied by permissions gets SUBACK 0x80;
- the Will is published when the connection ends without DISCONNECT (not after a takeover);
- retained messages go out after the SUBACK with RETAIN set, at min(stored, granted) QoS; a
  filter whose first level is a wildcard gets no `$` topics [MQTT-4.7.2-1] (nats-server applies
  that rule to live messages only and hands retained `$` topics to `#` subscribers).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Sequence

import trio

from ..codec import mqtt as codec
from ..codec.mqtt import (Connect, Disconnect, MQTTParser, MQTTProtocolError, PingReq, PubAck,
                          PubComp, Publish, PubRec, PubRel, Role, Subscribe, Unsubscribe)
from ..codec.mqtt_topics import (TopicError, parent_subject, subject_to_topic,
                                  subscription_subjects, topic_to_subject)
from ..core.broker import AuthResult
from ..core.client import CLIENT, Client
from ..core.outbox import Outbox
from ..core.router import route
from ..core.sublist import Subscription
from .manager import SessionCollision
from .persist import nuid
from .session import PUB_HEADERS, Session

if TYPE_CHECKING:
    from ..transport.mqtt import MQTTService

log = logging.getLogger("edgebus.mqtt")

_PINGRESP = b"\xd0\x00"
_HDR_LEN = [len(h) for h in PUB_HEADERS]
# room for the variable header of a PUBLISH on top of max_payload once connected
_PUBLISH_OVERHEAD = 2 + 65535 + 2 + 5


class Will:
    __slots__ = ("subject", "subject_b", "topic", "data", "qos", "retain")

    def __init__(self, subject: str, topic: str, data: bytes, qos: int, retain: bool) -> None:
        self.subject = subject
        self.subject_b = subject.encode("utf-8", "surrogateescape")
        self.topic = topic
        self.data = data
        self.qos = qos
        self.retain = retain


def _looks_like_jwt(s: str) -> bool:
    return s.startswith("eyJ") and s.count(".") == 2


class MQTTConnection(Client, Outbox):
    kind = CLIENT
    type = "mqtt"

    def __init__(self, service: "MQTTService", stream: trio.abc.Stream, *,
                 remote: tuple[str, int] = ("", 0), websocket: bool = False,
                 tls_context: Any = None, tls_timeout: float = 2.0) -> None:
        super().__init__(service.broker)
        o = self.broker.options
        self.service = service
        self.stream = stream
        self.remote = remote
        self.websocket = websocket
        self.tls_context = tls_context
        self.tls_timeout = tls_timeout
        self.tls: dict[str, Any] = {}
        self.peer_cert: Any = None
        # before CONNECT nats-server bounds a packet by max_payload
        self.parser = MQTTParser(our_role=Role.SERVER, max_packet_size=o.max_payload)
        self._outbox_init(o.max_pending)
        self._timer_lot = trio.lowlevel.ParkingLot()
        self._timer_at = math.inf
        self.max_payload = o.max_payload
        self.closing = False
        self.connected = False
        self.graceful = False
        self.session: Session | None = None
        self.mgr: Any = None
        self.client_id = ""
        self.keepalive = 0
        self.will: Will | None = None
        self.last_rx = 0.0
        self.auth_extra: Any = None
        # what config reload needs to authenticate the connection again
        self.listener = "mqtt"
        self.nonce: str | None = None
        self.connect_opts: dict[str, Any] = {}
        self._scope: trio.CancelScope | None = None
        mq = o.mqtt
        self.reject_qos2_pub = bool(getattr(mq, "reject_qos2_publish", False))
        self.downgrade_qos2_sub = bool(getattr(mq, "downgrade_qos2_subscribe", False))

    def __repr__(self) -> str:
        return f"<MQTTConnection cid={self.cid} id={self.client_id!r}>"

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        b = self.broker
        b.register(self)
        try:
            self.last_rx = trio.current_time()
            if self.tls_context is not None and not await self._start_tls():
                return
            if b.num_client_connections() > b.options.max_connections:
                self.close("Maximum Connections Exceeded")
                return
            async with trio.open_nursery() as n:
                self._scope = n.cancel_scope
                n.start_soon(self._writer)
                n.start_soon(self._reader)
                n.start_soon(self._timers)
        finally:
            self.closed = True
            self.closing = True
            self.stop_ns = b.clock.now_ns()
            if not self.close_reason:
                self.close_reason = "Server Shutdown" if b.shutting_down else "Client Closed"
            try:
                self._on_closed()
            finally:
                b.unregister(self, self.close_reason)
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(1):
                        try:
                            await self.stream.aclose()
                        except Exception:
                            pass

    async def _start_tls(self) -> bool:
        ssl_stream = trio.SSLStream(self.stream, self.tls_context, server_side=True)
        try:
            with trio.move_on_after(self.tls_timeout) as cs:
                await ssl_stream.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.debug("cid=%d MQTT TLS handshake failed: %s", self.cid, e)
            self.close_reason = "TLS Handshake Error"
            return False
        if cs.cancelled_caught:
            self.close_reason = "TLS Handshake Error"
            return False
        self.stream = ssl_stream
        self.tls = {"tls_required": True}
        try:
            self.peer_cert = ssl_stream.getpeercert(binary_form=True)
        except Exception:
            self.peer_cert = None
        return True

    def close(self, reason: str = "Client Closed", err: str | None = None) -> None:
        """Close after flushing what is pending (MQTT has no error packet: `err` is ignored)."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        self._release_writer()
        self._timer_lot.unpark_all()

    def kill(self, reason: str) -> None:
        """Close at once, dropping pending output (slow consumer, shutdown, test faults)."""
        self.closing = True
        if not self.close_reason:
            self.close_reason = reason
        self.out = bytearray()
        if self._scope is not None:
            self._scope.cancel()
        self._release_writer()
        self._timer_lot.unpark_all()

    def _on_closed(self) -> None:
        sess, mgr = self.session, self.mgr
        if sess is not None and mgr is not None:
            mgr.release(self, sess)
        will = self.will
        self.will = None
        if will is not None and not self.graceful and mgr is not None:
            try:
                self._publish(will.subject, will.subject_b, will.topic, will.data, will.qos,
                              will.retain)
            except Exception:
                log.exception("MQTT: publishing the Will of %r failed", self.client_id)

    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None, hdr: bytes | None,
                payloads: Sequence[bytes], src: Any, on: bytes | None) -> None:
        """The subscriptions of an MQTT client belong to its session, which outlives the
        connection: what is delivered here is the session's."""
        s = self.session
        if s is not None:
            s.deliver(sub, subject, reply, hdr, payloads, src, on)

    # -- output (core.outbox.Outbox: buffer, slow consumer rule, wake-up, writer loop) -----
    def wake_timer(self, due: float) -> None:
        """A QoS 1/2 delivery went out, due again at `due`: wake the timer task if it sleeps
        past that."""
        if due < self._timer_at and self._timer_lot:
            self._timer_lot.unpark()

    # -- reader ---------------------------------------------------------------------------
    async def _reader(self) -> None:
        stream = self.stream
        parser = self.parser
        clock = self.broker.clock
        try:
            while not self.closing:
                data = await stream.receive_some(65536)
                if not data:
                    self.close("Client Closed")
                    return
                self.last_rx = trio.current_time()
                self.last_activity_ns = clock.now_ns()
                try:
                    packets = parser.feed(data)
                except MQTTProtocolError as e:
                    await self._handle(e.events)
                    if self.closing:
                        return
                    if e.connack_rc is not None and not self.connected:
                        self.out += codec.connack(False, e.connack_rc)
                    log.debug("cid=%d MQTT protocol error: %s", self.cid, e)
                    self.close("Protocol Violation")
                    return
                if packets:
                    await self._handle(packets)
                    self.settle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.close("Client Closed")

    async def _handle(self, packets: list[Any]) -> None:
        pub_subjects = self.service.pub_subjects
        hdr0 = PUB_HEADERS[0]
        limit0 = self.max_payload - len(hdr0)
        for p in packets:
            if self.closing:
                return
            t = type(p)
            if t is Publish:
                # the plain QoS 0 PUBLISH of a known topic, inlined: most of the traffic
                ent = pub_subjects.get(p.topic)
                data = p.payload
                if ent is not None and p.qos == 0 and not p.retain and self.permissions is None \
                        and len(data) <= limit0:
                    self.in_msgs += 1
                    n = len(data)
                    self.in_bytes += n
                    route(self.account, ent[1], None, hdr0, (data,), self)
                else:
                    self._on_publish(p)
            elif t is PubAck:
                s = self.session
                if s is not None and s.conn is self:
                    s.on_puback(p.packet_id)
            elif t is PingReq:
                self.out += _PINGRESP
                self.wake()
            elif t is Subscribe:
                self._on_subscribe(p)
            elif t is Unsubscribe:
                self._on_unsubscribe(p)
            elif t is PubRec:
                s = self.session
                if s is not None and s.conn is self:
                    s.on_pubrec(p.packet_id)
            elif t is PubRel:
                self._on_pubrel(p.packet_id)
            elif t is PubComp:
                s = self.session
                if s is not None and s.conn is self:
                    s.on_pubcomp(p.packet_id)
            elif t is Disconnect:
                # normal disconnect: the Will is discarded [MQTT-3.1.2-8]
                self.will = None
                self.graceful = True
                self.close("Client Closed")
                return
            elif t is Connect:
                await self._on_connect(p)

    # -- CONNECT --------------------------------------------------------------------------
    async def _on_connect(self, p: Connect) -> None:
        svc = self.service
        will = None
        if p.will is not None:
            try:
                wsubj = topic_to_subject(p.will.topic)
            except TopicError as e:
                log.debug("cid=%d MQTT Will topic refused: %s", self.cid, e)
                self.close("Protocol Violation")
                return
            if self.reject_qos2_pub and p.will.qos == 2:
                self._refuse(codec.ConnackCode.QOS2_WILL_REJECTED, "Protocol Violation")
                return
            will = Will(wsubj, p.will.topic, p.will.message, p.will.qos, p.will.retain)
        self.client_id = p.client_id or nuid()
        self.keepalive = p.keepalive
        res = self._authenticate(p)
        if res is not None and hasattr(res, "wait"):
            # bcrypt in a worker thread, or an auth callout: bounded by the auth timeout
            o = self.broker.options
            res = await res.wait(o.auth_timeout if o.auth_timeout is not None else 2.0)
            if isinstance(res, str):
                res = None
        if res is None:
            log.info("MQTT authentication error for client %r cid=%d", self.client_id, self.cid)
            self._refuse(codec.ConnackCode.NOT_AUTHORIZED, "Authentication Failure")
            return
        self._apply_auth(res)
        try:
            mgr = await svc.manager_for(self.account)
        except Exception:
            log.exception("MQTT: cannot set up account %r", self.account.name)
            self._refuse(codec.ConnackCode.SERVER_UNAVAILABLE, "Server Unavailable")
            return
        if self.closing:
            return
        if mgr.jailed(self.client_id):
            # the id is flapping between clients: hold this one a second, then close it
            await trio.sleep(1.0)
            self.close("Duplicate Client ID")
            return
        try:
            sess, present = mgr.bind(self, self.client_id, p.clean_session)
        except SessionCollision:
            self._refuse(codec.ConnackCode.IDENTIFIER_REJECTED, "Protocol Violation")
            return
        self.mgr = mgr
        self.session = sess
        self.will = will
        self.connected = True
        self.parser.max_packet_size = self.max_payload + _PUBLISH_OVERHEAD
        self.out += codec.connack(present, 0)
        sess.resend_all()
        self.wake()
        self._timer_lot.unpark_all()
        for cb in self.broker.on_connect:
            try:
                cb(self)
            except Exception:
                log.exception("on_connect hook failed")

    def _refuse(self, rc: int, reason: str) -> None:
        self.out += codec.connack(False, rc)
        self.close(reason)

    def _authenticate(self, p: Connect) -> AuthResult | None:
        auth = self.broker.auth
        o = self.broker.options
        if not auth.required_for("mqtt"):
            nau = (o.mqtt.no_auth_user if o.mqtt else None) or o.no_auth_user
            if nau and hasattr(auth, "bind_user"):
                r = auth.bind_user(nau)
                if r is not None:
                    return r
            return AuthResult(self.broker.global_account)
        opts: dict[str, Any] = {}
        if p.username is not None:
            opts["user"] = p.username
        if p.password is not None:
            pw = p.password.decode("utf-8", "surrogateescape")
            opts["pass"] = pw
            opts["auth_token"] = pw
            if _looks_like_jwt(pw):
                opts["jwt"] = pw
        self.connect_opts = opts
        res = auth.authenticate(self, opts, None, self.auth_context())
        if res is None or isinstance(res, str):
            return None
        return res

    def auth_context(self) -> dict[str, Any]:
        return {"remote": self.remote, "tls": self.tls, "listener": "mqtt",
                "conn_type": "mqtt_ws" if self.websocket else "mqtt", "stream": self.stream,
                "peer_cert": self.peer_cert}

    def _apply_auth(self, res: AuthResult) -> None:
        self.broker.move_account(self, res.account)
        self.user = res.user
        self.permissions = res.permissions
        self.auth_extra = res.extra

    def apply_auth(self, res: AuthResult) -> None:
        """Re-authentication after a config reload: new permissions; subscriptions they no
        longer allow are dropped from the session."""
        self._apply_auth(res)
        sess = self._own_session()
        perms = self.permissions
        if sess is None or perms is None:
            return
        removed = False
        for subject in list(sess.filters):
            if not perms.can_subscribe(subject):
                sess.unsubscribe(subject, parent_subject(subject))
                removed = True
        if removed:
            self.mgr.save(sess)
        sess.update_deny_filter()

    # -- PUBLISH --------------------------------------------------------------------------
    def _on_publish(self, p: Publish) -> None:
        data = p.payload
        qos = p.qos
        self.in_msgs += 1
        self.in_bytes += len(data)
        ent = self.service.pub_subjects.get(p.topic)
        if ent is None:
            try:
                ent = self.service.pub_subject(p.topic)
            except TopicError as e:
                log.debug("cid=%d MQTT publish topic refused: %s", self.cid, e)
                self.close("Protocol Violation")
                return
        if len(data) + _HDR_LEN[qos] > self.max_payload:
            log.warning("cid=%d Maximum Payload Violation: %d vs %d", self.cid,
                        len(data) + _HDR_LEN[qos], self.max_payload)
            self.close("Maximum Payload Exceeded")
            return
        if qos == 2:
            # keep until PUBREL, answer PUBREC [MQTT-4.3.3-2, method A]
            if self.reject_qos2_pub:
                self.close("Protocol Violation")
                return
            pid = p.packet_id
            assert pid is not None  # (the codec requires one for QoS > 0)
            sess = self._own_session()
            if sess is not None:
                sess.store_qos2(pid, ent[0], data, p.retain)
            self.out += bytes((0x50, 2, pid >> 8, pid & 0xFF))
            self.wake()
            return
        if p.retain or self.permissions is not None:
            self._publish(ent[0], ent[1], p.topic, data, qos, p.retain)
        else:  # the common case, inlined
            route(self.account, ent[1], None, PUB_HEADERS[qos], (data,), self)
        if qos:
            pid = p.packet_id
            assert pid is not None
            self.out += bytes((0x40, 2, pid >> 8, pid & 0xFF))
            self.wake()

    def _own_session(self) -> Session | None:
        """The session, unless another connection took it over (packets still queued on this
        one must not change it)."""
        s = self.session
        return s if s is not None and s.conn is self else None

    def _on_pubrel(self, pid: int) -> None:
        s = self._own_session()
        if s is not None:
            m = s.release_qos2(pid)
            if m is not None:
                self._publish(m.subject, m.subject.encode("utf-8", "surrogateescape"),
                              None, m.data, 2, m.retain)
        self.out += bytes((0x70, 2, pid >> 8, pid & 0xFF))
        self.wake()

    def _publish(self, subject: str, subject_b: bytes, topic: str | None, data: bytes, qos: int,
                 retain: bool) -> None:
        """Route a message from this client (PUBLISH, released QoS 2, Will)."""
        perms = self.permissions
        if perms is not None and perms.has_pub_rules and not perms.can_publish(subject):
            log.debug("cid=%d MQTT publish to %r denied", self.cid, subject)
            return
        acc = self.account
        if retain and self.mgr is not None:
            key = subject
            if acc.mappings is not None:
                mapped = acc.mappings.apply(subject)
                if mapped:
                    key = mapped
            self.mgr.retain(key, subject_to_topic(key) if key != subject or topic is None else topic,
                            data, qos, self.user)
        route(acc, subject_b, None, PUB_HEADERS[qos], (data,), self)

    # -- SUBSCRIBE / UNSUBSCRIBE ----------------------------------------------------------
    def _on_subscribe(self, p: Subscribe) -> None:
        sess = self._own_session()
        if sess is None:
            return
        perms = self.permissions
        o = self.broker.options
        codes: list[int] = []
        granted = []
        before = dict(sess.filters)
        for filt, qos in p.filters:
            if qos == 2 and self.downgrade_qos2_sub:
                qos = 1
            try:
                fs = subscription_subjects(filt)
            except TopicError as e:
                log.debug("cid=%d MQTT filter %r refused: %s", self.cid, filt, e)
                codes.append(codec.SUBACK_FAILURE)
                continue
            if perms is not None and (not perms.can_subscribe(fs.subject)
                                      or (fs.parent and not perms.can_subscribe(fs.parent))):
                codes.append(codec.SUBACK_FAILURE)
                continue
            if o.max_subscriptions and fs.subject not in sess.filters and \
                    len(sess.filters) >= o.max_subscriptions:
                codes.append(codec.SUBACK_FAILURE)
                continue
            subs = sess.subscribe(fs, qos)
            codes.append(qos)
            granted.append((fs, qos, subs))
        self.out += codec.suback(p.packet_id, codes)
        sess.update_deny_filter()
        if sess.filters != before:
            self.mgr.save(sess)
        # retained messages after the SUBACK [MQTT-3.3.1-6], RETAIN set [MQTT-3.3.1-8]
        index = self.mgr.retained
        if len(index):
            for fs, qos, subs in granted:
                for sub in subs:
                    for rm in index.match(sub.subject):
                        if fs.wildcard_first and rm.subject[:1] == "$":
                            continue
                        if perms is not None and sess.deny_filter and perms.delivery_denied(rm.subject):
                            continue
                        sess.send_retained(rm, qos, sub.sid, self)
        self.wake()

    def _on_unsubscribe(self, p: Unsubscribe) -> None:
        sess = self._own_session()
        if sess is None:
            return
        before = len(sess.filters)
        for filt in p.filters:
            try:
                fs = subscription_subjects(filt)
            except TopicError:
                continue
            sess.unsubscribe(fs.subject, fs.parent)
        if len(sess.filters) != before:
            self.mgr.save(sess)
        sess.update_deny_filter()
        self.out += codec.unsuback(p.packet_id)
        self.wake()

    # -- timers ---------------------------------------------------------------------------
    async def _timers(self) -> None:
        """CONNECT deadline, then keep-alive and QoS 1/2 redelivery."""
        o = self.broker.options
        mq = o.mqtt
        auth_to = None
        if mq is not None and isinstance(mq.authorization, dict):
            auth_to = mq.authorization.get("timeout")
        timeout = float(auth_to if auth_to else (o.auth_timeout or 2.0))
        deadline = trio.current_time() + timeout
        while not self.connected:
            if self.closing:
                return
            if trio.current_time() >= deadline:
                self.close("Authentication Timeout")
                return
            with trio.move_on_at(deadline):
                await self._timer_lot.park()
        ka = math.floor(1.5 * self.keepalive) if self.keepalive else 0
        ack_wait = self.service.ack_wait
        while not self.closing:
            now = trio.current_time()
            wake_at = math.inf
            if ka:
                due_ka = self.last_rx + ka
                if now >= due_ka:
                    log.debug("cid=%d MQTT keep-alive expired", self.cid)
                    self.close("Stale Connection")
                    return
                wake_at = due_ka
            sess = self.session
            if sess is not None and sess.conn is self:
                due = sess.next_due(ack_wait)
                if due is not None:
                    if due <= now:
                        sess.redeliver_due(ack_wait)
                        continue
                    wake_at = min(wake_at, due)
            self._timer_at = wake_at
            with trio.move_on_at(wake_at):
                await self._timer_lot.park()
            self._timer_at = math.inf

    # -- monitoring -----------------------------------------------------------------------
    def info_for_connz(self) -> dict[str, Any]:
        from ..core.clock import rfc3339
        subs = list(self.session.subs.values()) if self.session is not None and \
            self.session.conn is self else []
        return {
            "cid": self.cid,
            "kind": self.kind,
            "type": self.type,
            "ip": self.remote[0],
            "port": self.remote[1],
            "start": rfc3339(self.start_ns),
            "last_activity": rfc3339(self.last_activity_ns),
            "stop": rfc3339(self.stop_ns) if self.closed else None,
            "reason": self.close_reason if self.closed else None,
            "rtt": "0s",
            "pending_bytes": len(self.out),
            "in_msgs": self.in_msgs,
            "out_msgs": self.out_msgs,
            "in_bytes": self.in_bytes,
            "out_bytes": self.out_bytes,
            "subscriptions": len(subs),
            "name": self.name,
            "lang": self.lang,
            "version": self.version,
            "authorized_user": self.user or "",
            "account": self.account.name,
            "mqtt_client": self.client_id,
            "subs": [s.subject for s in subs],
            "subs_detail": [{"account": self.account.name, "subject": s.subject, "qgroup": "",
                             "sid": s.sid.decode(errors="replace"), "msgs": s.delivered,
                             "max": s.max, "cid": self.cid} for s in subs],
        }
