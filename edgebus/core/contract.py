"""The one contract between the router and whatever receives messages.

Every kind of receiver — a NATS connection (TCP, TLS, WebSocket), an MQTT session, a leaf link,
an in-process client (JetStream, `$SYS`, service imports, tests) — is a `Subscriber`: it owns
subscriptions and takes deliveries through one method, `deliver`, with the message as parts.
A run of messages with the same subject, reply and headers is one call with several payloads.
A kind whose deliveries do nothing but frame into its own output (`takes_batches`) may also
get several messages with different subjects in one call, `deliver_batch` (the messages of
one read that all went to the same subscriptions). Each kind frames what it gets through its
own codec; the router never asks what a subscriber can do (no `hasattr` probes): the type
checker holds every kind to this contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:
    from .sublist import Subscription

# a message of a Batch: the NATS parser's PUB operation (code, subject, reply, hdr, payload),
# passed on as it is (the code is not read); the reply is None for a publisher's PUBs, and the
# ack subject for a JetStream consumer's deliveries
BatchMsg = tuple[Any, bytes, "bytes | None", "bytes | None", bytes]


class Batch:
    """Messages for `Subscriber.deliver_batch`, in order (`msgs`).

    The router makes one per group of messages and hands the same one to each subscriber:
    `framed` is where a codec keeps what it made of the messages for one subscriber and can
    use again for the next (NATS: the frames up to the subscription id), by its own key.
    `replies` says whether any message has a reply (a JetStream consumer's run: each its own
    ack subject), which a kind with response permissions must see message by message.
    `run`, when given, is the same messages as parallel lists (subject, replies, payloads) for a
    batch whose messages all have that one subject, no headers and each a reply (a JetStream
    consumer's run of plain messages): a codec may frame them from these without reading each
    message's tuple (codec.nats.run_frames)."""

    __slots__ = ("msgs", "framed", "replies", "run")

    def __init__(self, msgs: list[BatchMsg], replies: bool = False,
                 run: "tuple[bytes, list[bytes], list[bytes]] | None" = None) -> None:
        self.msgs = msgs
        self.framed: dict[Any, Any] = {}
        self.replies = replies
        self.run = run


def deliver_each(s: "Subscriber", sub: "Subscription", batch: Batch,
                 src: "Subscriber | None") -> None:
    """`deliver_batch` as one `deliver` per message (for kinds with nothing better)."""
    deliver = s.deliver
    for m in batch.msgs:
        deliver(sub, m[1], m[2], m[3], (m[4],), src, None)


class Subscriber(Protocol):
    """What `core.router.route` delivers to (the `client` of a `Subscription`)."""

    # the /connz kind ("Client", "Leafnode", "JetStream", ...): leaf origin rules use it
    kind: str
    # False: never deliver a message back to the subscriber that published it
    echo: bool
    # True: a delivery has no effect beyond this subscriber's own output (no callback, nothing
    # routed on), so the router may hold a read's messages back and hand them over together
    # with deliver_batch
    takes_batches: bool

    def deliver(self, sub: "Subscription", subject: bytes, reply: bytes | None,
                hdr: bytes | None, payloads: Sequence[bytes], src: "Subscriber | None",
                on: bytes | None) -> None:
        """Take the messages `payloads` (one, or a run of them in order) for `sub`.

        `subject` is the subject the subscriber sees; `on`, when not None, is the subject the
        message was routed on, which differs for a JetStream delivery (matched on its deliver
        subject or a pull request's inbox, seen under its stored subject). `src` published
        it (None: the server itself). The router has already counted the deliveries on `sub`
        and applied echo, queue groups and the max; the publisher's permissions were checked
        where it published, and the subscriber applies its own delivery permissions."""
        ...

    def deliver_batch(self, sub: "Subscription", batch: Batch, src: "Subscriber | None") -> None:
        """Take `batch.msgs` for `sub`, in order, as if each came through `deliver` (with its
        reply, and `on` None). The router has counted them on `sub` and applied echo and the
        max; only a kind that `takes_batches` gets this call (`deliver_each` does it one by
        one)."""
        ...

    def remove_sub(self, sub: "Subscription") -> None:
        """Drop `sub` (the router calls this when a subscription reached its max)."""
        ...
