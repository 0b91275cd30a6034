"""Leaf interest as the core sees it: `LeafSub` (an LS+ with its queue weight), the interest
key nats-server uses, and the JetStream `reply@subject` form of deliveries across a link.

The delivery rules for leaf traffic (queue groups only as the link named them, local queue
members first, nothing back over the link it came from) are in `core.router.route`, the one
delivery path.
"""

from __future__ import annotations

from typing import Any

from ..core.sublist import Subscription


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


def js_ack_deliver_idx(reply: bytes) -> int:
    """Where `@<subject>` starts in a JetStream ack reply that carries the stored subject of a
    message sent on its deliver subject (nats-server's jsAckDeliverIdx), or -1."""
    if not reply.startswith(b"$JS.ACK."):
        return -1
    at = reply.find(b"@")
    if at < 0 or reply.count(b".", 0, at) < 8:
        return -1
    return at
