"""The one router: a message (or a run of them) from any source to the matched subscriptions.

Every door into an account comes here: a NATS PUB or a run of identical PUBs, an MQTT
PUBLISH, a message over a leaf link, a JetStream delivery or PubAck, a `$SYS` reply, an
in-process publish, a service import's forward. `route` applies, in order:

1. the account's subject mappings (to the routing subject);
2. the match, through the sublist cache (or the sublist's exact-prefix registry, for subjects
   such as acknowledgements that are all different and would all miss the cache);
3. echo: never back to a publisher that asked not to see its own messages;
4. plain subscriptions each get the message; each queue group gives it to one member, a local
   member before one behind a leaf link;
5. leaf origin rules (nats-server's `processMsgResults`): a message that came over a link goes
   to no queue group unless the link named it (or this account's mapping changed its subject),
   and never back over that link;
6. max deliveries (auto-unsubscribe).

Nothing here counts traffic: each client counts its own (see `Account.in_msgs`).

Each receiver gets one `Subscriber.deliver` call with the message as parts. A run goes to each
subscriber as one call when that changes nothing anyone observes (no queue groups, no client
with two matching subscriptions); otherwise it is routed message by message.

`route_msgs` routes the messages of one read (a NATS publisher's PUBs without reply) as
`route` would one by one, except that consecutive messages whose subjects match the same
subscriptions — a publisher cycling over `sensors.<id>.temp` with subscribers on
`sensors.*.temp` — reach each subscriber in one `Subscriber.deliver_batch` call, when every
one of them `takes_batches` (see `MatchResult.fanout`).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Sequence

from .contract import Batch, BatchMsg
from .sublist import EMPTY_RESULT, UNKNOWN, Fanout, MatchResult, Subscription

if TYPE_CHECKING:
    from .account import Account
    from .contract import Subscriber

LEAF = "Leafnode"  # the kind of a leaf link (core.client.LEAF)

_choice = random.choice


def route(acc: "Account", subject: bytes, reply: bytes | None, hdr: bytes | None,
          payloads: Sequence[bytes], src: "Subscriber | None", on: bytes | None = None,
          queues: Sequence[bytes] | None = None) -> int:
    """Deliver `payloads` (messages with the same subject, reply and headers) published by
    `src` in account `acc`; returns the number of deliveries.

    `on` is the subject to route on when it differs from the one subscribers see (a JetStream
    delivery: its deliver subject or a pull request's inbox). `queues` are the queue groups a
    leaf link named for a message it sent (only read when `src` is a leaf link)."""
    mapped = False
    mappings = acc.mappings
    if mappings is not None:
        if len(payloads) > 1:
            # a weighted mapping chooses per message
            n = 0
            for p in payloads:
                n += route(acc, subject, reply, hdr, (p,), src, on, queues)
            return n
        target = subject if on is None else on
        s = target.decode("utf-8", "surrogateescape")
        m = mappings.apply(s)
        if m is not None and m != s:
            if on is not None:
                if m:
                    on = m.encode("utf-8", "surrogateescape")
                    mapped = True
            elif not m:
                return 0  # a weighted mapping chose "no destination": the message is dropped
            else:
                subject = m.encode("utf-8", "surrogateescape")
                mapped = True
    sl = acc.sublist
    target = subject if on is None else on
    r: MatchResult | None = None
    sub = sl.prefix_match(target) if sl.prefixed else None
    if sub is None:
        r = sl.cache.get(target)  # a hit without a call (match_bytes counts a miss)
        if r is None:
            r = sl.match_bytes(target)
        else:
            sl.cache_hits += 1
        if r is EMPTY_RESULT:
            return 0
        sub = r.solo
    if sub is not None:
        # one subscription is interested (the common case): no loop, no picking
        c = sub.client
        if c is src and not c.echo:
            return 0
        k = len(payloads)
        mx = sub.max
        if mx:
            left = mx - sub.delivered
            if left < k:
                if left <= 0:
                    return 0
                payloads = payloads[:left]
                k = left
        sub.delivered += k
        c.deliver(sub, subject, reply, hdr, payloads, src, on)
        if mx and sub.delivered >= mx:
            c.remove_sub(sub)
        return k
    assert r is not None
    from_leaf = src is not None and src.kind == LEAF
    if len(payloads) > 1 and not r.runs_ok:
        n = 0
        for p in payloads:
            n += _deliver_all(r, subject, reply, hdr, (p,), src, on, queues, from_leaf, mapped)
        return n
    return _deliver_all(r, subject, reply, hdr, payloads, src, on, queues, from_leaf, mapped)


def route_msgs(acc: "Account", msgs: list[BatchMsg], src: "Subscriber") -> None:
    """Route `msgs` — messages without reply, (code, subject, None, hdr, payload) as the NATS
    parser hands them over — published one after the other by `src`, as `route` would one by
    one; consecutive messages with the same `MatchResult.fanout` go to each of its subscribers
    in one `deliver_batch` call (held back until a message goes elsewhere, and at the end)."""
    sl = acc.sublist
    if acc.mappings is not None:
        for m in msgs:
            route(acc, m[1], None, m[3], (m[4],), src)
        return
    cache = sl.cache
    # subjects of the exact-prefix registry's family go through `route` (acknowledgements)
    head = sl.family_head if sl.prefixed else None
    others = 0  # messages not found in the cache (the rest are counted as hits at the end)
    cur: Fanout | None = None  # the fanout of msgs[start:i], held back
    start = 0
    for i, m in enumerate(msgs):
        subject = m[1]
        if head is not None and subject.startswith(head) and \
                sl.prefix_match(subject) is not None:
            if cur is not None:
                _hand(cur, msgs, start, i, src)
                cur = None
            others += 1
            route(acc, subject, None, m[3], (m[4],), src)
            continue
        r = cache.get(subject)
        if r is None:
            others += 1
            r = sl.match_bytes(subject)  # (which counts the miss)
        f = r.fanout
        if f is cur:
            if f is not None:
                continue  # held back with the ones before
        else:
            if f is UNKNOWN:
                f = sl.fanout_of(r)
                if f is cur and f is not None:
                    continue
            if cur is not None:
                _hand(cur, msgs, start, i, src)
            cur = f
            if f is not None:
                start = i
                continue
        if r is EMPTY_RESULT:
            continue
        # one at a time: queue groups, in-process subscribers, a leaf link...
        sub = r.solo
        if sub is not None:
            _give(sub, subject, m[3], (m[4],), src)
        else:
            _deliver_all(r, subject, None, m[3], (m[4],), src, None, None, src.kind == LEAF,
                         False)
    if cur is not None:
        _hand(cur, msgs, start, len(msgs), src)
    sl.cache_hits += len(msgs) - others


def _give(sub: Subscription, subject: bytes, hdr: bytes | None, payloads: Sequence[bytes],
          src: "Subscriber") -> None:
    """One replyless message of `route_msgs` to `sub`, with echo and max as `route`."""
    c = sub.client
    if c is src and not c.echo:
        return
    mx = sub.max
    if mx and sub.delivered >= mx:
        return
    sub.delivered += 1
    c.deliver(sub, subject, None, hdr, payloads, src, None)
    if mx and sub.delivered >= mx:
        c.remove_sub(sub)


def _hand(f: Fanout, msgs: list[BatchMsg], start: int, end: int, src: "Subscriber") -> None:
    """Deliver the held-back `msgs[start:end]` to the subscriptions of `f` (echo and max as
    `route`); one message goes through `deliver`, several as a Batch."""
    k = end - start
    if k == 1:
        m = msgs[start]
        subject = m[1]
        hdr = m[3]
        payloads = (m[4],)
        for sub in f.subs:
            _give(sub, subject, hdr, payloads, src)
        return
    if k != len(msgs):
        msgs = msgs[start:end]
    batch = Batch(msgs)
    for sub in f.subs:
        c = sub.client
        if c is src and not c.echo:
            continue
        mx = sub.max
        if not mx:
            sub.delivered += k
            c.deliver_batch(sub, batch, src)
            continue
        left = mx - sub.delivered
        if left <= 0:
            continue
        b = batch if left >= k else Batch(msgs[:left])
        sub.delivered += len(b.msgs)
        c.deliver_batch(sub, b, src)
        if sub.delivered >= mx:
            c.remove_sub(sub)


def _deliver_all(r: MatchResult, subject: bytes, reply: bytes | None,
                 hdr: bytes | None, payloads: Sequence[bytes], src: "Subscriber | None",
                 on: bytes | None, queues: Sequence[bytes] | None, from_leaf: bool,
                 mapped: bool) -> int:
    """Deliver to every plain subscription of `r` and to one member of each queue group."""
    no_echo = src is not None and not src.echo
    n = 0
    k = len(payloads)
    for sub in r.psubs:
        c = sub.client
        if no_echo and c is src:
            continue
        mx = sub.max
        if not mx:
            sub.delivered += k
            n += k
            c.deliver(sub, subject, reply, hdr, payloads, src, on)
            continue
        left = mx - sub.delivered
        if left <= 0:
            continue
        ps = payloads if left >= k else payloads[:left]
        j = len(ps)
        sub.delivered += j
        n += j
        c.deliver(sub, subject, reply, hdr, ps, src, on)
        if sub.delivered >= mx:
            c.remove_sub(sub)
    if r.qsubs and (not from_leaf or queues or mapped):
        # (a run never reaches here with queue groups: runs_ok is False for them)
        want = None
        if from_leaf and queues:
            want = {q.decode("utf-8", "surrogateescape") for q in queues}
        for group in r.qsubs:
            if want is not None and group[0].queue not in want:
                continue
            qsub = pick(group, src, no_echo or from_leaf)
            if qsub is None:
                continue
            sub = qsub
            c = sub.client
            sub.delivered += 1
            n += 1
            c.deliver(sub, subject, reply, hdr, payloads, src, on)
            if sub.max and sub.delivered >= sub.max:
                c.remove_sub(sub)
    return n


def pick(group: list[Subscription], src: "Subscriber | None", skip_src: bool) -> Subscription | None:
    """The queue group member to deliver to: a local member at random, else one behind a leaf
    link (nats-server prefers local members); never `src` when `skip_src`."""
    if len(group) == 1:
        s = group[0]
        return None if skip_src and s.client is src else s
    local = [s for s in group if s.client.kind != LEAF and not (skip_src and s.client is src)]
    if local:
        return local[0] if len(local) == 1 else _choice(local)
    remote = [s for s in group if not (skip_src and s.client is src)]
    if remote:
        return remote[0] if len(remote) == 1 else _choice(remote)
    return None
