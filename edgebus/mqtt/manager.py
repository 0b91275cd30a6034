"""The MQTT state of one account: its sessions, retained messages and client-id takeovers.

nats-server keeps one `mqttAccountSessionManager` per account, created on the first MQTT CONNECT
in that account; `AccountSessions` is its counterpart. On `open()` it loads what an earlier run
left: retained messages into the in-memory index, persistent sessions with their subscriptions
(so they collect QoS 1/2 messages before their clients come back) and their queued deliveries.

Client ids are unique per account. A CONNECT with an id already in use closes the older
connection (its Will is dropped) [MQTT-3.1.4-2]; a further CONNECT with that id within one second
of a takeover is held for a second and closed (nats-server's "flappers" jail).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import trio

from ..codec.mqtt_topics import FilterSubjects, is_wildcard_first, parent_subject
from ..core.client import InternalClient
from .persist import AccountStorage, get_hash, open_account_storage, parse_headers, session_record
from .retained import RETAINED_PREFIX, RetainedIndex, RetainedMsg, decode, encode
from .session import InboundQoS2, Pending, Session

if TYPE_CHECKING:
    from .connection import MQTTConnection

log = logging.getLogger("edgebus.mqtt")

#: How long a client id stays "jailed" after a takeover (nats-server `mqttSessJailDur`).
JAIL_SECONDS = 1.0


class SessionCollision(Exception):
    """Two client ids share a session hash (nats-server: CONNACK 0x02)."""


class AccountSessions:
    def __init__(self, service: Any, account: Any) -> None:
        self.service = service
        self.server = service.server
        self.broker = service.broker
        self.account = account
        mq = self.server.options.mqtt
        self.max_ack_pending = min(0xFFFF, int(getattr(mq, "max_ack_pending", 0) or 1024))
        aw = float(getattr(mq, "ack_wait", 0) or 0)
        self.ack_wait = aw if aw > 0 else 30.0
        self.sessions: dict[str, Session] = {}
        self.by_hash: dict[str, Session] = {}
        self.retained = RetainedIndex()
        self.flappers: dict[str, float] = {}
        self.client = InternalClient(self.broker, account, name="MQTT")
        self.storage: AccountStorage = None  # type: ignore[assignment]
        self.origin = get_hash(self.broker.server_name)

    def __repr__(self) -> str:
        return f"<AccountSessions {self.account.name} sessions={len(self.sessions)}>"

    # -- startup --------------------------------------------------------------------------
    async def open(self) -> None:
        self.storage = await open_account_storage(self.server, self.account, self.client)
        self._load_retained()
        self._load_sessions()
        if self.retained or self.sessions:
            log.info("MQTT account %r: restored %d retained message(s), %d session(s) (%s)",
                     self.account.name, len(self.retained), len(self.sessions),
                     self.storage.backend)

    def _load_retained(self) -> None:
        for m in self.storage.retained.scan():
            rm, delete = decode(m.subject, m.hdr, m.data)
            if rm is None:
                log.warning("MQTT: skipping unreadable retained record %r", m.subject)
                continue
            if delete:
                self.retained.remove(rm.subject)
                self.storage.retained.delete(m.subject)
            else:
                self.retained.set(rm)

    def _load_sessions(self) -> None:
        for m in self.storage.sessions.scan():
            try:
                rec = json.loads(m.data)
                cid = str(rec["id"])
                subs = {str(k): int(v) for k, v in (rec.get("subs") or {}).items()}
                clean = bool(rec.get("clean", False))
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("MQTT: skipping unreadable session record %r", m.subject)
                continue
            if clean:  # a clean session's record left by a crash: nothing to restore
                self.storage.sessions.delete(m.subject)
                continue
            sess = Session(self, cid, False)
            for subject, qos in subs.items():
                fs = FilterSubjects(subject, parent_subject(subject), is_wildcard_first(subject))
                sess.subscribe(fs, max(0, min(2, qos)))
            self.sessions[cid] = sess
            self.by_hash[sess.hash] = sess
        pend = self.storage.pending
        for m in pend.scan():
            h, _, kind = m.subject.partition(".")
            sess = self.by_hash.get(h)
            if sess is None:
                pend.remove(m.seq)
                continue
            hd = parse_headers(m.hdr)
            try:
                if kind == "out":
                    p = Pending(int(hd["Nmqtt-Pub"]), hd["Nmqtt-Subject"], None,
                                hd.get("Nmqtt-Sid", hd["Nmqtt-Subject"]).encode("utf-8", "surrogateescape"),
                                seq=m.seq, dup=True)
                    sess.backlog.append(p)
                elif kind == "rel":
                    r = Pending(2, "", None, b"", seq=m.seq)
                    r.pid = int(hd["Nmqtt-PubRel"])
                    sess.pubrel[r.pid] = r
                elif kind == "in":
                    flags = hd.get("Nmqtt-Pub", "20")
                    sess.qos2_in[int(hd["Nmqtt-PI"])] = InboundQoS2(
                        hd["Nmqtt-Subject"], m.data, flags[1:2] == "1", m.seq)
                else:
                    pend.remove(m.seq)
            except (KeyError, ValueError):
                pend.remove(m.seq)

    # -- sessions -------------------------------------------------------------------------
    def jailed(self, client_id: str) -> bool:
        t = self.flappers.get(client_id)
        if t is None:
            return False
        if trio.current_time() - t > JAIL_SECONDS:
            del self.flappers[client_id]
            return False
        return True

    def bind(self, conn: "MQTTConnection", client_id: str, clean: bool) -> tuple[Session, bool]:
        """Attach `conn` to the session of `client_id` (created if needed); returns
        (session, session_present). Closes the connection that held the id before."""
        h = get_hash(client_id)
        other = self.by_hash.get(h)
        if other is not None and other.id != client_id:
            raise SessionCollision(client_id)
        sess = self.sessions.get(client_id)
        present = False
        if sess is None:
            sess = Session(self, client_id, clean)
            self.sessions[client_id] = sess
            self.by_hash[h] = sess
        else:
            if clean or sess.clean:
                sess.clear()
                if not sess.clean:
                    self.storage.sessions.delete(self.storage.session_subject(sess.hash))
            else:
                present = True
            sess.clean = clean
            old = sess.conn
            if old is not None and old is not conn:
                old.will = None  # a replaced client does not get its Will published
                self.flappers[client_id] = trio.current_time()
                log.warning("Replacing old client cid=%d since both have the same client ID %r",
                            old.cid, client_id)
                old.close("Duplicate Client ID")
        sess.attach(conn)
        self.save(sess)
        return sess, present

    def release(self, conn: "MQTTConnection", sess: Session) -> None:
        """`conn` closed: a clean session ends, a persistent one waits for its client."""
        if not sess.detach(conn):
            return  # taken over by another connection
        self.flappers.pop(sess.id, None)
        if sess.clean:
            sess.clear()
            sess.closed = True
            if self.sessions.get(sess.id) is sess:
                del self.sessions[sess.id]
                self.by_hash.pop(sess.hash, None)

    def save(self, sess: Session) -> None:
        if sess.clean:
            return
        body = session_record(self.origin, sess.id, False, sess.filters)
        try:
            self.storage.sessions.put(self.storage.session_subject(sess.hash), None, body)
        except Exception:
            log.exception("MQTT: persisting session %r failed", sess.id)

    # -- retained -------------------------------------------------------------------------
    def retain(self, subject: str, topic: str, data: bytes, qos: int, source: str | None) -> None:
        """A PUBLISH with RETAIN: store (non-empty payload) or clear (empty) [MQTT-3.3.1-5/10]."""
        key = RETAINED_PREFIX + subject
        try:
            if data:
                rm = RetainedMsg(subject, topic, data, (qos << 1) | 1, self.origin, source or "")
                self.retained.set(rm)
                hdr, body = encode(rm)
                self.storage.retained.put(key, hdr, body)
            else:
                self.retained.remove(subject)
                self.storage.retained.delete(key)
        except Exception:
            log.exception("MQTT: unable to store retained message for account %r, subject %r",
                          self.account.name, subject)

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        for sess in list(self.sessions.values()):
            sess.drop_all_subs()
        self.client.close()
        if self.storage is not None:
            self.storage.close()
