"""An account: its own subject index, mappings, counters, and the routing of one message.

`Account.route` is the single delivery path every client kind uses: apply the account's subject
mappings, match through the sublist cache, then hand the message to every plain subscriber and to
one member of each queue group. Imports and exports plug in as subscriptions of internal
forwarding clients, so routing itself never needs to know about them. `route_run` is the same
for several messages with one subject: one match, and the whole run to each subscriber at once
whenever that cannot change what anyone observes.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from .client import Msg
from .sublist import EMPTY_RESULT, Sublist

if TYPE_CHECKING:
    from .broker import Broker

_choice = random.choice


class Account:
    def __init__(self, name: str, broker: "Broker | None" = None) -> None:
        self.name = name
        self.broker = broker
        self.sublist = Sublist()
        self.mappings: Any = None  # object with apply(subject) -> str | None
        self.jetstream: Any = None  # per-account JetStream state, set by jetstream/
        # consumer ack subscriptions by prefix (b"$JS.ACK.<stream>.<consumer>."); see route_raw
        self.ack_subs: dict[bytes, Any] = {}
        self.js_limits: Any = None
        self.is_system = False
        self.clients: set[Any] = set()
        self.in_msgs = 0
        self.in_bytes = 0
        self.out_msgs = 0
        self.out_bytes = 0
        self.slow_consumers = 0
        self.exports: Any = None
        self.imports: Any = None
        self.limits: dict[str, Any] = {}
        self.jwt: str | None = None
        self.nkey: str | None = None

    def __repr__(self) -> str:
        return f"<Account {self.name}>"

    def route(self, msg: Msg) -> int:
        """Deliver `msg` to every interested subscriber; return how many got it."""
        if msg.deliver is not None:
            d = msg.deliver
            if self.mappings is not None:
                mapped = self.mappings.apply(d)
                if mapped:
                    d = msg.deliver = mapped
            return self._route_on(msg, d.encode("utf-8", "surrogateescape"))
        if self.mappings is not None:
            mapped = self.mappings.apply(msg.subject)
            if mapped is not None and mapped != msg.subject:
                if not mapped:
                    return 0  # a weighted mapping chose "no destination": the message is dropped
                msg.subject = mapped
        return self._route_on(msg, msg.subject_b)

    def route_raw(self, subject_b: bytes, reply_b: bytes | None, hdr: bytes | None, data: bytes,
                  src: Any) -> int:
        """`route` for a message given as parts (a NATS PUB, a JetStream reply). When one
        subscription alone is interested it gets the parts directly: an in-process one that
        takes raw parts (a stream's ingest, a consumer's acks), or a connection that takes
        them (`deliver_parts`); anything else is routed as a Msg."""
        if self.mappings is not None:
            return self.route(Msg(None, None, hdr, data, src, subject_b, reply_b))
        sub = None
        if self.ack_subs and subject_b.startswith(b"$JS.ACK.") and \
                self.sublist.ack_interest == len(self.ack_subs):
            # only consumers listen on ack subjects: the consumer is found by the prefix,
            # with no subject match (acks are all different subjects: every match misses)
            sub = self._ack_sub(subject_b)
        if sub is None:
            r = self.sublist.match_bytes(subject_b)
            if r is EMPTY_RESULT:
                self.in_msgs += 1
                return 0
            sub = r.solo
            if sub is None:
                return self._deliver_all(Msg(None, None, hdr, data, src, subject_b, reply_b), r)
        c = sub.client
        self.in_msgs += 1
        if c is src and not src.echo:
            return 0
        self.out_msgs += 1
        sub.delivered += 1
        raw = sub.raw
        if raw is not None:
            c.out_msgs += 1
            c.out_bytes += len(data) + (len(hdr) if hdr else 0)
            if sub.max and sub.delivered >= sub.max:
                c.remove_sub(sub)
            raw(sub, subject_b, reply_b, hdr, data, src)
            return 1
        dp = c.deliver_parts
        if dp is not None:
            dp(sub, subject_b, reply_b, hdr, data, src)
        else:
            c.deliver(sub, Msg(None, None, hdr, data, src, subject_b, reply_b))
        if sub.max and sub.delivered >= sub.max:
            c.remove_sub(sub)
        return 1

    def _ack_sub(self, subject_b: bytes) -> Any:
        """The consumer ack subscription (`$JS.ACK.<stream>.<consumer>.*.*.*.*.*`) that
        `subject_b` matches, or None."""
        i = subject_b.find(b".", 8)
        if i <= 8:
            return None
        j = subject_b.find(b".", i + 1)
        if j <= i + 1:
            return None
        sub = self.ack_subs.get(subject_b[:j + 1])
        if sub is None:
            return None
        rest = subject_b[j + 1:]
        if rest.count(b".") != 4 or b".." in rest or rest[:1] == b"." or rest[-1:] == b".":
            return None
        return sub

    def _route_on(self, msg: Msg, subject_b: bytes) -> int:
        r = self.sublist.match_bytes(subject_b)
        if r is EMPTY_RESULT:
            self.in_msgs += 1
            return 0
        return self._deliver_all(msg, r)

    def _deliver_all(self, msg: Msg, r: Any) -> int:
        self.in_msgs += 1
        src = msg.src
        no_echo = src is not None and not src.echo
        n = 0
        for sub in r.psubs:
            c = sub.client
            if no_echo and c is src:
                continue
            c.deliver(sub, msg)
            n += 1
            sub.delivered += 1
            if sub.max and sub.delivered >= sub.max:
                c.remove_sub(sub)
        for group in r.qsubs:
            sub = _choice(group) if len(group) > 1 else group[0]
            c = sub.client
            if no_echo and c is src:
                others = [s for s in group if s.client is not src]
                if not others:
                    continue
                sub = _choice(others)
                c = sub.client
            c.deliver(sub, msg)
            n += 1
            sub.delivered += 1
            if sub.max and sub.delivered >= sub.max:
                c.remove_sub(sub)
        self.out_msgs += n
        return n

    def route_run(self, subject_b: bytes, reply_b: bytes | None, payloads: list[bytes],
                  src: Any) -> int:
        """Deliver several messages with the same subject and reply (and, from the NATS
        parser, the same size) — what `route` would do for each in turn, with one match and,
        for subscribers that can take them so (`deliver_run`), one write per subscriber.
        Returns the number of deliveries."""
        r = self.sublist.match_bytes(subject_b) if self.mappings is None else None
        if r is not None and r is not EMPTY_RESULT:
            sub = r.solo_raw
            if sub is not None and not sub.max and (sub.client is not src or src.echo):
                # a stream's ingest: each message straight to it, the counting done once
                k = len(payloads)
                size = sum(map(len, payloads))
                self.in_msgs += k
                self.out_msgs += k
                c = sub.client
                c.out_msgs += k
                c.out_bytes += size
                sub.delivered += k
                raw = sub.raw
                for p in payloads:
                    raw(sub, subject_b, reply_b, None, p, src)
                return k
        if r is None or not r.runs_ok or r.solo_raw is not None:
            n = 0
            for p in payloads:
                n += self.route_raw(subject_b, reply_b, None, p, src)
            return n
        self.in_msgs += len(payloads)
        if r is EMPTY_RESULT:
            return 0
        no_echo = src is not None and not src.echo
        n = 0
        for sub in r.psubs:
            c = sub.client
            if no_echo and c is src:
                continue
            batch = payloads
            if sub.max:
                left = sub.max - sub.delivered
                if left < len(batch):
                    batch = batch[:left]
            dr = getattr(c, "deliver_run", None)
            if dr is not None:
                dr(sub, subject_b, reply_b, batch, src)
            else:
                for p in batch:
                    c.deliver(sub, Msg(None, None, None, p, src, subject_b, reply_b))
            k = len(batch)
            n += k
            sub.delivered += k
            if sub.max and sub.delivered >= sub.max:
                c.remove_sub(sub)
        self.out_msgs += n
        return n

    def num_connections(self) -> int:
        return sum(1 for c in self.clients if c.kind == "Client")

    def num_leafnodes(self) -> int:
        return sum(1 for c in self.clients if c.kind == "Leafnode")
