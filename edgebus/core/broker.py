"""The broker core: accounts, the client registry, identity, counters and the auth hook.

Nothing here knows about sockets, JetStream, MQTT or leaf nodes. Those are Clients of the core
(see client.py) and register themselves in `subsystems`; the top-level `edgebus.server.Server`
assembles them and owns their tasks.
"""

from __future__ import annotations

import base64
import logging
import os
from collections import deque
from typing import Any, Callable

from .. import NATS_VERSION
from ..options import Options
from .account import Account
from .clock import Clock

log = logging.getLogger("edgebus")

GLOBAL_ACCOUNT = "$G"
SYSTEM_ACCOUNT = "$SYS"


def _random_server_id() -> str:
    # shaped like a server nkey public key: 'N' + 55 base32 chars
    return "N" + base64.b32encode(os.urandom(35)).decode()[:55]


class AuthResult:
    """What an authenticator decides for one connection."""

    __slots__ = ("account", "user", "permissions", "expires", "extra")

    def __init__(self, account: Account, user: str | None = None, permissions: Any = None,
                 expires: float | None = None, extra: Any = None) -> None:
        self.account = account
        self.user = user
        self.permissions = permissions
        self.expires = expires  # wall seconds when the credentials expire, or None
        self.extra = extra


class NoAuth:
    """The default authenticator: everyone is let in to the global account."""

    required = False
    nonce = False

    def __init__(self, broker: "Broker") -> None:
        self.broker = broker

    def authenticate(self, client: Any, opts: dict[str, Any], nonce: str | None,
                     context: dict[str, Any] | None = None) -> AuthResult | None:
        return AuthResult(self.broker.global_account)

    def required_for(self, listener: str) -> bool:
        return self.required


class Broker:
    def __init__(self, options: Options | None = None, clock: Clock | None = None) -> None:
        self.options = options or Options()
        self.clock = clock or Clock()
        self.server_id = _random_server_id()
        self.server_name = self.options.server_name or self.server_id
        self.accounts: dict[str, Account] = {}
        self.global_account = self.get_account(GLOBAL_ACCOUNT, create=True)
        self.system_account = self.get_account(self.options.system_account or SYSTEM_ACCOUNT,
                                               create=True)
        self.system_account.is_system = True
        self._cid = 0
        self._n_client_conns = 0
        self.clients: dict[int, Any] = {}
        self.closed_clients: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.total_connections = 0
        self.slow_consumers = 0
        self.auth: Any = NoAuth(self)
        self.lame_duck = False
        self.shutting_down = False
        self.subsystems: dict[str, Any] = {}
        self.start_ns = 0
        self.config_load_ns = 0
        # hooks called as cb(client) on connect/authenticated and cb(client, reason) on close
        self.on_connect: list[Callable[[Any], None]] = []
        self.on_disconnect: list[Callable[[Any, str], None]] = []
        self.listen_urls: dict[str, list[str]] = {}
        self.client_port = 0
        self.client_host = self.options.host

    # -- accounts -------------------------------------------------------------------------
    def get_account(self, name: str, create: bool = False) -> Account:
        acc = self.accounts.get(name)
        if acc is None:
            if not create:
                raise KeyError(name)
            acc = Account(name, self)
            self.accounts[name] = acc
        return acc

    # -- clients --------------------------------------------------------------------------
    def next_cid(self) -> int:
        self._cid += 1
        return self._cid

    def register(self, client: Any) -> None:
        self.clients[client.cid] = client
        client.account.add_client(client)
        if client.kind == "Client":
            self.total_connections += 1
            self._n_client_conns += 1

    def unregister(self, client: Any, reason: str) -> None:
        if self.clients.pop(client.cid, None) is None:
            return
        client.settle()
        client.account.remove_client(client)
        if client.kind == "Client":
            self._n_client_conns -= 1
            snap = client.info_for_connz()
            if snap:
                self.closed_clients.append(snap)
        for cb in self.on_disconnect:
            cb(client, reason)

    def move_account(self, client: Any, account: Account) -> None:
        registered = client in client.account.clients
        if registered:
            client.settle()  # its figures so far stay with the old account
            client.account.remove_client(client)
        client.account = account
        if registered:
            account.add_client(client)

    def num_client_connections(self) -> int:
        return self._n_client_conns

    # -- INFO -----------------------------------------------------------------------------
    def info_base(self) -> dict[str, Any]:
        o = self.options
        info: dict[str, Any] = {
            "server_id": self.server_id,
            "server_name": self.server_name,
            "version": NATS_VERSION,
            "proto": 1,
            "go": "go1.24.4",
            "host": self.client_host,
            "port": self.client_port,
            "headers": not o.no_header_support,
            "max_payload": o.max_payload,
        }
        if o.jetstream.enabled:
            info["jetstream"] = True
            if o.jetstream.domain:
                info["domain"] = o.jetstream.domain
        return info
