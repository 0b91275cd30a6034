"""The registry of optional subsystems the server starts (monitoring, JetStream, WebSocket,
MQTT, leaf nodes, $SYS). Each is started only when configured, and reports started()."""

from __future__ import annotations

from typing import Any

import trio


async def start_all(server: Any, nursery: trio.Nursery) -> None:
    for name, starter in _STARTERS:
        await starter(server, nursery)


async def _monitor(server: Any, nursery: trio.Nursery) -> None:
    o = server.options
    if o.http_port is None:
        return
    from .transport import monitor
    await nursery.start(monitor.serve_monitor, server)


_STARTERS: list[tuple[str, Any]] = [
    ("monitor", _monitor),
]


def register(name: str, starter: Any, *, before: str | None = None) -> None:
    """Add a subsystem starter (used by jetstream/, transport/mqtt, leaf/)."""
    if any(n == name for n, _ in _STARTERS):
        return
    if before is not None:
        for i, (n, _) in enumerate(_STARTERS):
            if n == before:
                _STARTERS.insert(i, (name, starter))
                return
    _STARTERS.append((name, starter))
