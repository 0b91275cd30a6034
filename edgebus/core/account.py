"""An account: its own subject index, mappings, limits and counters.

Messages are routed in an account by `core.router.route` (the one delivery path). Imports and
exports plug in as subscriptions of internal forwarding clients, so routing itself never needs
to know about them. The counters are what /varz and /accstatz report: `in_*` what clients
published into the account, `out_*` what was sent to them (not to in-process subscribers);
they outlive the clients.
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
        self.clients: set[Any] = set()  # (add_client / remove_client keep the counts)
        self._conns = 0
        self._leafs = 0
        # what the account's clients published and were sent, as /varz and /accstatz report
        # it: each client counts its own traffic per message and adds it here per read and
        # per write (Client.settle), so routing does no account bookkeeping per message.
        # In-process clients (JetStream, $SYS) are not counted, as in nats-server.
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
        """Route a message held as a `Msg` (callers that have one: service imports, the
        JetStream API): `core.router.route` with its parts."""
        on = msg.deliver
        return router.route(self, msg.subject_b, msg.reply_b, msg.hdr, (msg.data,), msg.src,
                            on.encode("utf-8", "surrogateescape") if on is not None else None)

    # -- the account's clients (registered connections: NATS, MQTT, leaf) ------------------
    def add_client(self, c: Any) -> None:
        if c not in self.clients:
            self.clients.add(c)
            if c.kind == "Client":
                self._conns += 1
            elif c.kind == "Leafnode":
                self._leafs += 1

    def remove_client(self, c: Any) -> None:
        if c in self.clients:
            self.clients.discard(c)
            if c.kind == "Client":
                self._conns -= 1
            elif c.kind == "Leafnode":
                self._leafs -= 1

    def num_connections(self) -> int:
        return self._conns

    def num_leafnodes(self) -> int:
        return self._leafs
