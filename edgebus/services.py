"""The optional subsystems the server starts, in order: JetStream, $SYS, WebSocket, MQTT,
leaf nodes, monitoring. Each is started only when configured, runs under the server's root
nursery and reports started(); each is imported lazily so an unused one costs nothing."""

from __future__ import annotations

import logging
from typing import Any

import trio

log = logging.getLogger("edgebus")


async def start_all(server: Any, nursery: trio.Nursery) -> None:
    for name, starter in _STARTERS:
        await starter(server, nursery)


async def _jetstream(server: Any, nursery: trio.Nursery) -> None:
    if not server.options.jetstream.enabled:
        return
    from .jetstream.service import JetStreamService
    svc = JetStreamService(server)
    server.services["jetstream"] = svc
    await nursery.start(svc.run)


async def _system(server: Any, nursery: trio.Nursery) -> None:
    try:
        from .security.sysacct import SystemService
    except ImportError:
        return
    svc = SystemService(server)
    server.services["system"] = svc
    await nursery.start(svc.run)


async def _websocket(server: Any, nursery: trio.Nursery) -> None:
    ws = server.options.websocket
    if ws is None or ws.port is None:
        return
    from .transport.websocket import serve_websocket
    await nursery.start(serve_websocket, server)


async def _mqtt(server: Any, nursery: trio.Nursery) -> None:
    mq = server.options.mqtt
    if mq is None or mq.port is None:
        return
    from .transport.mqtt import MQTTService
    svc = MQTTService(server)
    server.services["mqtt"] = svc
    await nursery.start(svc.run)


async def _leaf(server: Any, nursery: trio.Nursery) -> None:
    lo = server.options.leafnodes
    if lo is None:
        return
    try:
        from .leaf.service import LeafService
    except ImportError:
        log.warning("leaf nodes are configured but not available in this build")
        return
    svc = LeafService(server)
    server.services["leaf"] = svc
    await nursery.start(svc.run)


async def _monitor(server: Any, nursery: trio.Nursery) -> None:
    if server.options.http_port is None:
        return
    from .transport import monitor
    await nursery.start(monitor.serve_monitor, server)


_STARTERS: list[tuple[str, Any]] = [
    ("jetstream", _jetstream),
    ("system", _system),
    ("websocket", _websocket),
    ("mqtt", _mqtt),
    ("leaf", _leaf),
    ("monitor", _monitor),
]
