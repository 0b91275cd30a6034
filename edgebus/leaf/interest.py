"""What one link has told its peer about our interest, and the LS+ / LS- a change needs.

nats-server keeps a map per leaf connection (`smap`) from interest key (`subject` or
`subject queue`) to a count; `updateSmap` turns a subscription change into protocol:
plain interest is announced when its count leaves 0 and withdrawn when it returns to 0, queue
interest is re-announced with its new weight on every change. Which subscriptions count:

- never the link's own (what the peer told us);
- a spoke counts only local interest: clients, internal subscribers, and leaves that dial
  this server — not what a hub told it; `$LDS.` subjects count regardless, so loops show;
- only subjects the peer may receive (`perms.can_subscribe`: the hub's import permissions,
  our deny_imports, the JetStream denies), checked when interest appears.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..codec import leaf as proto
from ..core.client import LEAF
from ..core.sublist import Subscription
from .routing import sub_key, weight

LDS_PREFIX = "$LDS."


def is_local(sub: Subscription) -> bool:
    """Interest a spoke may announce to its hub."""
    c = sub.client
    return c.kind != LEAF or not getattr(c, "is_spoke", False)


class InterestMap:
    """The counts behind what `link` announced (its `is_spoke` and `perms` are read live)."""

    __slots__ = ("link", "counts")

    def __init__(self, link: Any) -> None:
        self.link = link
        self.counts: dict[str, int] = {}

    def _counts(self, sub: Subscription) -> bool:
        link = self.link
        return sub.client is not link and (not link.is_spoke or is_local(sub))

    def snapshot(self, subs: Iterable[Subscription], extra: Iterable[str]) -> bytes:
        """All current interest (plus `extra` subjects: mapping sources, our $LDS) as LS+."""
        perms = self.link.perms
        counts = self.counts
        for sub in subs:
            if not self._counts(sub) or (perms is not None and not perms.can_subscribe(sub.subject)):
                continue
            k = sub_key(sub.subject, sub.queue)
            counts[k] = counts.get(k, 0) + weight(sub)
        for subject in extra:
            counts[subject] = counts.get(subject, 0) + 1
        buf = bytearray()
        for k, n in counts.items():
            subject, _, queue = k.partition(" ")
            buf += proto.ls_plus(subject.encode(), queue.encode() or None, n)
        return bytes(buf)

    def update(self, sub: Subscription, delta: int) -> bytes:
        """`sub` changed by `delta` members: the LS+ / LS- to send, or b""."""
        subject = sub.subject
        if sub.client is self.link:
            return b""
        if not subject.startswith(LDS_PREFIX):
            if not self._counts(sub):
                return b""
            perms = self.link.perms
            if delta > 0 and perms is not None and not perms.can_subscribe(subject):
                return b""
        counts = self.counts
        key = sub_key(subject, sub.queue)
        n = counts.get(key)
        if delta < 0 and n is None:
            return b""
        n = n or 0
        changed = sub.queue is not None or (n <= 0 < n + delta) or (n > 0 >= n + delta)
        n += delta
        if n > 0:
            counts[key] = n
        else:
            counts.pop(key, None)
        if not changed:
            return b""
        q = sub.queue.encode() if sub.queue is not None else None
        if n > 0:
            return proto.ls_plus(subject.encode(), q, n)
        return proto.ls_minus(subject.encode(), q)
