"""Delivery rules for leaf traffic, as nats-server's `processMsgResults` applies them.

Three rules differ from `Account.route`, which serves every other client kind:

- A message that arrived over a link without a queue list is for plain subscriptions only; with
  a list, it is also for one member of each listed queue group and of no other group. (The
  sender already chose the queue groups; picking again here would deliver twice.) A message
  whose subject this account maps is the exception: the mapped subject's interest is what made
  the sender forward it, so local queue groups take part.
- A queue group prefers local members: a member behind a leaf link is chosen only when the
  group has no member here.
- Nothing goes back over the link it came from.

`route_from_leaf` delivers an inbound message; `pick_local` lets a link hand a queue message
that `Account.route` chose for it to a local member instead.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from ..core.client import LEAF, Msg
from ..core.sublist import EMPTY_RESULT, Subscription

if TYPE_CHECKING:
    from ..core.account import Account

_choice = random.choice


class LeafSub(Subscription):
    """Interest a peer announced with LS+: `qw` is the queue weight (members behind it)."""

    __slots__ = ("qw",)

    def __init__(self, client: Any, subject: str, queue: str | None, key: bytes, qw: int) -> None:
        super().__init__(client, subject, queue, key)
        self.qw = qw


def weight(sub: Subscription) -> int:
    """How much one subscription counts in an LS+ weight: a leaf queue sub counts its members."""
    if sub.queue is not None and isinstance(sub, LeafSub) and sub.qw > 0:
        return sub.qw
    return 1


def sub_key(subject: str, queue: str | None) -> str:
    """The interest key nats-server uses (`keyFromSub`): `subject` or `subject queue`."""
    return subject if queue is None else f"{subject} {queue}"


def _deliver(sub: Subscription, msg: Msg) -> None:
    c = sub.client
    c.deliver(sub, msg)
    sub.delivered += 1
    if sub.max and sub.delivered >= sub.max:
        c.remove_sub(sub)


def _pick(group: list[Subscription], src: Any) -> Subscription | None:
    """A local member at random, else a member behind another leaf link, else None."""
    local = [s for s in group if s.client.kind != LEAF and s.client is not src]
    if local:
        return local[0] if len(local) == 1 else _choice(local)
    remote = [s for s in group if s.client is not src]
    if remote:
        return remote[0] if len(remote) == 1 else _choice(remote)
    return None


def js_ack_deliver_idx(reply: bytes) -> int:
    """Where `@<subject>` starts in a JetStream ack reply that carries the stored subject of a
    message sent on its deliver subject (nats-server's jsAckDeliverIdx), or -1."""
    if not reply.startswith(b"$JS.ACK."):
        return -1
    at = reply.find(b"@")
    if at < 0 or reply.count(b".", 0, at) < 8:
        return -1
    return at


def route_from_leaf(account: "Account", msg: Msg, queues: list[bytes] | None) -> int:
    """Deliver a message received over the link `msg.src`; returns the number of deliveries.

    A JetStream delivery arrives on its deliver subject with `reply@stored-subject`: it is
    matched on the deliver subject, local subscribers get it with the stored subject and the
    plain ack reply, other links get it as it came."""
    src = msg.src
    local = msg
    if msg.reply_b is not None:
        at = js_ack_deliver_idx(msg.reply_b)
        if at >= 0:
            local = Msg(None, None, msg.hdr, msg.data, src, msg.reply_b[at + 1:],
                        msg.reply_b[:at])
    mapped = False
    if account.mappings is not None:
        m = account.mappings.apply(msg.subject)
        if m is not None and m != msg.subject:
            if not m:
                return 0  # weighted mapping to "no destination"
            msg.subject = m
            mapped = True
    account.in_msgs += 1
    r = account.sublist.match_bytes(msg.subject_b)
    if r is EMPTY_RESULT:
        return 0
    n = 0
    for sub in r.psubs:
        if sub.client is src:
            continue
        _deliver(sub, msg if sub.client.kind == LEAF else local)
        n += 1
    if r.qsubs and (queues or mapped):
        want = {q.decode("utf-8", "surrogateescape") for q in queues} if queues else None
        for group in r.qsubs:
            if want is not None and group[0].queue not in want:
                continue
            sub = _pick(group, src)
            if sub is not None:
                _deliver(sub, msg if sub.client.kind == LEAF else local)
                n += 1
    account.out_msgs += n
    return n


def pick_local(account: "Account", queue: str, msg: Msg) -> bool:
    """`Account.route` chose a link's queue subscription: deliver to a local member of the
    same group instead, if there is one (nats-server prefers local queue members)."""
    r = account.sublist.match_bytes(msg.subject_b)
    src = msg.src
    no_echo = src is not None and not src.echo
    for group in r.qsubs:
        if group[0].queue != queue:
            continue
        local = [s for s in group if s.client.kind != LEAF and not (no_echo and s.client is src)]
        if not local:
            return False
        _deliver(local[0] if len(local) == 1 else _choice(local), msg)
        return True
    return False
