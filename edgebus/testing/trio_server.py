"""A server in the caller's trio loop that a test can stop, start and restart (the value of the
`edgebus_trio_server` fixture).

Everything a `Server` has is reachable on it (`.broker`, `.services`, `.options`,
`.client_url`, `await .connect()`...): attribute access goes to the server currently running
(`.server`). `restart()` comes back on the same ports with the same JetStream store, all in
virtual time under `autojump_clock`, so durability across restarts is testable in milliseconds.
Clients of the server before a restart (in-process ones included) are cut, as by a real one.
"""

from __future__ import annotations

import copy
from typing import Any

import trio

from ..options import Options
from ..server import Server
from .embedded import drop_clients, listening_ports, pin_ports


class TrioServer:
    """A restartable `Server` run in `nursery` (see the module docstring)."""

    def __init__(self, options: Options, nursery: trio.Nursery) -> None:
        self._options = options  # the template; `.options` is the running server's
        self._nursery = nursery
        self.server: Server | None = None
        self._stopped: trio.Event | None = None
        self._ports: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        # only called for what TrioServer itself lacks: the running server's attributes
        server = self.__dict__.get("server")
        if server is None:
            raise AttributeError(f"{name} (the server is stopped)")
        return getattr(server, name)

    async def start(self) -> "TrioServer":
        if self.server is not None:
            return self
        opts = copy.deepcopy(self._options)
        pin_ports(opts, self._ports)
        server = Server(opts)
        stopped = trio.Event()

        async def run(task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await server.run(task_status=task_status)
            finally:
                stopped.set()

        await self._nursery.start(run)
        self.server, self._stopped = server, stopped
        self._ports = listening_ports(server)
        return self

    async def stop(self) -> None:
        """Shut the server down (clients see it go) and wait until it has."""
        server, stopped = self.server, self._stopped
        if server is None or stopped is None:
            return
        server.shutdown()
        await stopped.wait()
        self.server = None

    async def restart(self) -> None:
        """Stop, then start on the same ports with the same store."""
        await self.stop()
        await self.start()

    def drop_clients(self, cid: int | None = None, name: str | None = None) -> int:
        """Cut client connections (all, or by cid or CONNECT name); returns how many."""
        if self.server is None:
            return 0
        return drop_clients(self.server, cid, name)

    def shutdown(self) -> None:
        """Ask the server to stop without waiting (`Server.shutdown`)."""
        if self.server is not None:
            self.server.shutdown()
