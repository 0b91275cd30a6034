"""The one contract between the router and whatever receives messages.

Every kind of receiver — a NATS connection (TCP, TLS, WebSocket), an MQTT session, a leaf link,
an in-process client (JetStream, `$SYS`, service imports, tests) — is a `Subscriber`: it owns
subscriptions and takes deliveries through one method, `deliver`, with the message as parts.
A run of messages with the same subject, reply and headers is one call with several payloads.
Each kind frames what it gets through its own codec; the router never asks what a subscriber
can do (no `hasattr` probes): the type checker holds every kind to this contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:
    from .sublist import Subscription


class Subscriber(Protocol):
    """What `core.router.route` delivers to (the `client` of a `Subscription`)."""

    # the /connz kind ("Client", "Leafnode", "JetStream", ...): leaf origin rules use it
    kind: str
    # False: never deliver a message back to the subscriber that published it
    echo: bool

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

    def remove_sub(self, sub: "Subscription") -> None:
        """Drop `sub` (the router calls this when a subscription reached its max)."""
        ...
