"""Isolation without a server per test: one shared server, a fresh account per test.

    srv = EmbeddedServer(jetstream=True).start()          # once per session
    iso = IsolatedAccount.create(srv)                     # per test, well under 1 ms
    nc = await nats.connect(iso.client_url)               # nats://<user>:<password>@127.0.0.1:port
    ...
    iso.close()                                           # its clients cut, its streams deleted

Each account has its own subjects (nothing published in one reaches another), its own JetStream
(stream and KV names free to reuse), and its own user, whose credentials are in `client_url`.
The pytest fixture is `edgebus_isolated`. Only the NATS listener is isolated this way; a test of
MQTT, WebSocket or restarts wants `edgebus_server`, a server of its own.
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections import deque
from typing import Any

from .embedded import EmbeddedServer

_ids = itertools.count(1)
# accounts made ahead, per server, in the server's loop while the previous test ran: a test's
# set-up then only takes one (no round trip into the server's thread)
_ready: "weakref.WeakKeyDictionary[EmbeddedServer, deque[IsolatedAccount]]" = \
    weakref.WeakKeyDictionary()


class IsolatedAccount:
    """An account of its own on a shared `EmbeddedServer` (see the module docstring)."""

    def __init__(self, server: EmbeddedServer, account: str, user: str, password: str) -> None:
        self.server = server
        self.account = account
        self.user = user
        self.password = password
        self._made_in: Any = None  # the Server (one run of the EmbeddedServer) it exists in

    @classmethod
    def _new(cls, server: EmbeddedServer) -> "IsolatedAccount":
        n = next(_ids)
        return cls(server, f"T{n}_{os.getpid()}", f"t{n}", os.urandom(8).hex())

    @classmethod
    def create(cls, server: EmbeddedServer) -> "IsolatedAccount":
        """A fresh account, ready to connect to: one made ahead (by the previous `close()`)
        when there is one, else made now."""
        ready = _ready.setdefault(server, deque())
        while ready:
            made = ready.popleft()
            if made._made_in is server.server:  # not one from before a restart
                return made
        iso = cls._new(server)
        server.call(iso._create)
        return iso

    @property
    def client_url(self) -> str:
        return f"nats://{self.user}:{self.password}@127.0.0.1:{self.server.port}"

    async def _create(self, server: Any) -> None:
        from ..security.auth import User  # the security layer's user record

        self._made_in = server

        b = server.broker
        acc = b.get_account(self.account, create=True)
        mgr = b.subsystems.get("accounts")
        if mgr is not None:
            mgr.state(acc)
        auth = b.auth
        if not auth.required:
            # credentials now choose the account (INFO asks for them, so clients send those in
            # their URL); clients without any keep the global account, as before, through a
            # hidden no_auth_user (nats-server's own device for exactly this)
            anon = "edgebus-anon-" + os.urandom(6).hex()
            auth.users[anon] = User(anon, b.global_account, password=os.urandom(12).hex())
            auth.no_auth_user = anon
            auth.hidden_no_auth_user = True
            auth.required = True
        auth.users[self.user] = User(self.user, acc, password=self.password)
        js = server.services.get("jetstream")
        if js is not None:
            await js.enable_account(acc)

    def close(self, wait: bool = False) -> None:
        """Cut the account's clients, delete its streams, forget its user, and make the next
        test's account ahead. Unless `wait`, done in the server's loop without waiting for it
        (one wake-up of the server's thread per test): nothing else uses this account."""
        if wait:
            if self.server.running:
                self.server.call(self._close)
        else:
            self.server.call_soon(self._close_and_make_next)

    async def _close_and_make_next(self, server: Any) -> None:
        await self._close(server)
        ready = _ready.setdefault(self.server, deque())
        if not ready:
            nxt = self._new(self.server)
            await nxt._create(server)
            ready.append(nxt)  # only once it is complete (deque appends are thread-safe)

    async def _close(self, server: Any) -> None:
        b = server.broker
        b.auth.users.pop(self.user, None)
        acc = b.accounts.get(self.account)
        if acc is None:
            return
        for c in list(server.connections):
            if c.account is acc:
                c.kill("Client Closed")
        js_service = server.services.get("jetstream")
        js = js_service.accounts.pop(self.account, None) if js_service is not None else None
        if js is not None:
            js_service.router.detach(js)
            for stream in list(js.streams.values()):
                await js_service.delete_stream(stream)
        b.accounts.pop(self.account, None)
