"""The Client base of connection kinds, the in-process client, and the Msg callbacks get.

A NATS TCP/WebSocket connection, an MQTT connection, the leaf link, JetStream and $SYS are
Clients of the core: they belong to an account, own subscriptions and publish into the account.
What receives messages implements the one delivery contract (`core.contract.Subscriber`);
`InternalClient` is the in-process kind: each of its subscriptions carries a callback that runs
synchronously on delivery, with the message as a `Msg` (or as parts, for a subscription that
sets `raw`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Sequence

from . import router
from .contract import Batch, deliver_each
from .sublist import Subscription

if TYPE_CHECKING:
    from .account import Account
    from .broker import Broker
    from .contract import Subscriber

# connection kinds, as /connz names them
CLIENT = "Client"
JETSTREAM = "JetStream"
SYSTEM = "System"
ACCOUNT = "Account"
LEAF = "Leafnode"


class Msg:
    """One published message on its way through an account.

    The subject and reply exist as bytes (as they came off the wire) and as str; whichever
    was not given is made on first use, so the NATS hot path never decodes.

    `deliver` is set when the message is routed on another subject than the one it carries:
    a JetStream delivery is matched on its deliver subject (a push deliver subject, a pull
    request's inbox) but reaches the subscriber under its stored subject. A leaf link sends it
    across on `deliver` (nats-server's `reply@subject` form).
    """

    __slots__ = ("_subject", "subject_b", "_reply", "reply_b", "hdr", "data", "src", "deliver")

    def __init__(self, subject: str | None, reply: str | None, hdr: bytes | None, data: bytes,
                 src: "Client | None" = None, subject_b: bytes | None = None,
                 reply_b: bytes | None = None, deliver: str | None = None) -> None:
        self.deliver = deliver
        self._subject = subject
        self.subject_b = subject_b if subject_b is not None else subject.encode()  # type: ignore[union-attr]
        self._reply = reply or None
        self.reply_b = reply_b if reply_b is not None else (reply.encode() if reply else None)
        self.hdr = hdr
        self.data = data
        self.src = src

    @property
    def subject(self) -> str:
        s = self._subject
        if s is None:
            s = self._subject = self.subject_b.decode("utf-8", "surrogateescape")
        return s

    @subject.setter
    def subject(self, value: str) -> None:
        self._subject = value
        self.subject_b = value.encode("utf-8", "surrogateescape")

    @property
    def reply(self) -> str | None:
        r = self._reply
        if r is None and self.reply_b:
            r = self._reply = self.reply_b.decode("utf-8", "surrogateescape")
        return r

    @reply.setter
    def reply(self, value: str | None) -> None:
        self._reply = value or None
        self.reply_b = value.encode("utf-8", "surrogateescape") if value else None

    def size(self) -> int:
        return len(self.data) + (len(self.hdr) if self.hdr else 0)

    def __repr__(self) -> str:
        return f"<Msg {self.subject} reply={self.reply} {len(self.data)}B>"


class Client(ABC):
    """Base of every connection kind: a `core.contract.Subscriber` with an account, an id and
    counters. Subclasses implement `deliver` (abstract: a kind without it cannot be made, and
    the type checker says so) and `close`."""

    kind = CLIENT
    type = "nats"
    # (core.contract.Subscriber.takes_batches: a kind that frames straight into its own
    # output says True and implements deliver_batch better than one deliver per message)
    takes_batches = False

    def __init__(self, broker: "Broker", account: "Account | None" = None) -> None:
        self.broker = broker
        self.cid = broker.next_cid()
        self.account: Account = account if account is not None else broker.global_account
        self.subs: dict[bytes, Subscription] = {}
        self.echo = True
        self.headers = True
        self.no_responders = False
        self.permissions: Any = None  # core.permissions.Permissions or None
        self.user: str | None = None
        self.name = ""
        self.lang = ""
        self.version = ""
        self.in_msgs = 0
        self.in_bytes = 0
        self.out_msgs = 0
        self.out_bytes = 0
        self.start_ns = broker.clock.now_ns()
        self.last_activity_ns = self.start_ns
        self.closed = False
        self.close_reason = ""
        self.stop_ns = 0

    # -- interest -------------------------------------------------------------------------
    def add_sub(self, subject: str, queue: str | None, sid: bytes) -> Subscription:
        old = self.subs.get(sid)
        if old is not None:
            return old
        sub = Subscription(self, subject, queue, sid)
        self.subs[sid] = sub
        self.account.sublist.insert(sub)
        return sub

    def remove_sub(self, sub: Subscription) -> None:
        if self.subs.get(sub.sid) is sub:
            del self.subs[sub.sid]
            self.account.sublist.remove(sub)

    def unsubscribe_sid(self, sid: bytes, max_msgs: int | None = None) -> None:
        sub = self.subs.get(sid)
        if sub is None:
            return
        if max_msgs and max_msgs > sub.delivered:
            sub.max = max_msgs
        else:
            self.remove_sub(sub)

    # -- traffic figures ------------------------------------------------------------------
    _settled_in_msgs = 0
    _settled_in_bytes = 0
    _settled_out_msgs = 0
    _settled_out_bytes = 0

    def settle(self) -> None:
        """Add this client's traffic since the last call to its account's figures (called
        per read, per write and on leaving, not per message)."""
        acc = self.account
        d = self.in_msgs - self._settled_in_msgs
        if d:
            acc.in_msgs += d
            acc.in_bytes += self.in_bytes - self._settled_in_bytes
            self._settled_in_msgs = self.in_msgs
            self._settled_in_bytes = self.in_bytes
        d = self.out_msgs - self._settled_out_msgs
        if d:
            acc.out_msgs += d
            acc.out_bytes += self.out_bytes - self._settled_out_bytes
            self._settled_out_msgs = self.out_msgs
            self._settled_out_bytes = self.out_bytes

    def drop_all_subs(self) -> None:
        subs = list(self.subs.values())
        self.subs.clear()
        sl = self.account.sublist
        for s in subs:
            sl.remove(s)

    # -- traffic --------------------------------------------------------------------------
    def publish(self, subject: str, reply: str | None, hdr: bytes | None, data: bytes) -> int:
        """Route a message into this client's account; returns the number of deliveries."""
        self.in_msgs += 1
        self.in_bytes += len(data) + (len(hdr) if hdr else 0)
        return router.route(self.account, subject.encode("utf-8", "surrogateescape"),
                            reply.encode("utf-8", "surrogateescape") if reply else None,
                            hdr, (data,), self)

    @abstractmethod
    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None, hdr: bytes | None,
                payloads: Sequence[bytes], src: "Subscriber | None", on: bytes | None) -> None:
        """The delivery contract: see core.contract.Subscriber.deliver."""

    def deliver_batch(self, sub: Subscription, batch: Batch, src: "Subscriber | None") -> None:
        """The delivery contract: see core.contract.Subscriber.deliver_batch."""
        deliver_each(self, sub, batch, src)

    def close(self, reason: str = "Client Closed") -> None:
        raise NotImplementedError

    def info_for_connz(self) -> dict[str, Any]:
        return {}


class InternalClient(Client):
    """An in-process client: subscriptions call back into Python synchronously.

    Used by JetStream, $SYS handlers, MQTT bridging and tests. A callback receives
    `(sub, msg)` and must not block; work that must wait is queued to its owner's task.
    """

    kind = SYSTEM
    type = "internal"

    def __init__(self, broker: "Broker", account: "Account | None" = None, kind: str = SYSTEM,
                 name: str = "") -> None:
        super().__init__(broker, account)
        self.kind = kind
        self.name = name
        self._sid = 0

    def subscribe(self, subject: str, cb: Callable[[Subscription, Msg], None],
                  queue: str | None = None) -> Subscription:
        self._sid += 1
        sub = self.add_sub(subject, queue, str(self._sid).encode())
        sub.extra = cb
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.remove_sub(sub)

    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None, hdr: bytes | None,
                payloads: Sequence[bytes], src: Any, on: bytes | None) -> None:
        self.out_msgs += len(payloads)
        raw = sub.raw
        if hdr is None and len(payloads) > 1 and sub.raw_run is not None:
            for data in payloads:
                self.out_bytes += len(data)
            sub.raw_run(sub, subject, reply, payloads, src)
            return
        hl = len(hdr) if hdr else 0
        for data in payloads:
            self.out_bytes += len(data) + hl
            if raw is not None:
                # a stream's ingest, a consumer's acks: parts, no Msg made
                raw(sub, subject, reply, hdr, data, src)
            else:
                sub.extra(sub, Msg(None, None, hdr, data, src, subject, reply,
                                   on.decode("utf-8", "surrogateescape") if on is not None else None))

    def close(self, reason: str = "Client Closed") -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self.drop_all_subs()
