"""An account: its own subject index, mappings, limits and counters.

Messages are routed in an account by `core.router.route` (the one delivery path). Imports and
exports plug in as subscriptions of internal forwarding clients, so routing itself never needs
to know about them. The counters are what /varz and /accstatz report: `in_*` what clients
published into the account (counted by the front-ends), `out_*` what the router delivered to
clients (not to in-process subscribers); they outlive the clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import router
from .client import Msg
from .sublist import Sublist

if TYPE_CHECKING:
    from .broker import Broker


class Account:
    def __init__(self, name: str, broker: "Broker | None" = None) -> None:
        self.name = name
        self.broker = broker
        self.sublist = Sublist()
        self.mappings: Any = None  # object with apply(subject) -> str | None
        self.jetstream: Any = None  # per-account JetStream state, set by jetstream/
        self.js_limits: Any = None
        self.is_system = False
        self.clients: set[Any] = set()
        # counters of the clients that left this account (the live ones keep their own)
        self.gone_in_msgs = 0
        self.gone_in_bytes = 0
        self.gone_out_msgs = 0
        self.gone_out_bytes = 0
        self.slow_consumers = 0
        self.exports: Any = None
        self.imports: Any = None
        self.limits: dict[str, Any] = {}
        self.jwt: str | None = None
        self.nkey: str | None = None

    def __repr__(self) -> str:
        return f"<Account {self.name}>"

    def route(self, msg: Msg) -> int:
        """Route a message held as a `Msg` (callers that have one: service imports, the
        JetStream API): `core.router.route` with its parts."""
        on = msg.deliver
        return router.route(self, msg.subject_b, msg.reply_b, msg.hdr, (msg.data,), msg.src,
                            on.encode("utf-8", "surrogateescape") if on is not None else None)

    # What the account's clients published and were sent, as /varz and /accstatz report it:
    # each client counts its own traffic on its path (nothing per message here), and a client
    # that leaves hands its figures over (`client_gone`). In-process clients (JetStream, $SYS)
    # are not among `clients`: the server's own traffic is not counted, as in nats-server.
    @property
    def in_msgs(self) -> int:
        return self.gone_in_msgs + sum(int(c.in_msgs) for c in self.clients)

    @property
    def in_bytes(self) -> int:
        return self.gone_in_bytes + sum(int(c.in_bytes) for c in self.clients)

    @property
    def out_msgs(self) -> int:
        return self.gone_out_msgs + sum(int(c.out_msgs) for c in self.clients)

    @property
    def out_bytes(self) -> int:
        return self.gone_out_bytes + sum(int(c.out_bytes) for c in self.clients)

    def client_gone(self, c: Any) -> None:
        """`c` leaves the account (closed, or moved to another): keep its figures here."""
        self.gone_in_msgs += c.in_msgs
        self.gone_in_bytes += c.in_bytes
        self.gone_out_msgs += c.out_msgs
        self.gone_out_bytes += c.out_bytes

    def num_connections(self) -> int:
        return sum(1 for c in self.clients if c.kind == "Client")

    def num_leafnodes(self) -> int:
        return sum(1 for c in self.clients if c.kind == "Leafnode")
