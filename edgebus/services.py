"""The optional subsystems the server starts, in order: JetStream, $SYS, WebSocket, MQTT,
leaf nodes, monitoring. Each is started only when configured, runs under the server's root
nursery and reports started(); each is imported lazily so an unused one costs nothing."""

from __future__ import annotations

import errno
import logging
import os
from typing import Any

import trio

log = logging.getLogger("edgebus")


class ListenError(OSError):
    """A listener could not bind; the message names which one and the address, in the words
    nats-server logs for that listener (an operator must learn that 1883 is taken, not 4222)."""

    def __str__(self) -> str:
        return str(self.strerror)


# listener -> (how nats-server introduces the failure, the options' (host, port))
_LISTENERS: dict[str, tuple[str, Any]] = {
    "websocket": ("Unable to listen for websocket connections: ",
                  lambda o: (o.websocket.host, o.websocket.port)),
    "mqtt": ("Unable to listen for MQTT connections: ", lambda o: (o.mqtt.host, o.mqtt.port)),
    "leaf": ("Error listening on leafnode port: {port} - ",
             lambda o: (o.leafnodes.host, o.leafnodes.port)),
    "monitor": ("Can't start monitoring: can't listen to the monitor port: ",
                lambda o: (o.http_host, o.http_port)),
}
_BIND_ERRNOS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def _bind_error(e: BaseException) -> OSError | None:
    """The bind failure inside `e` (possibly nested in exception groups), if that is what it is."""
    if isinstance(e, OSError) and e.errno in _BIND_ERRNOS:
        return e
    if isinstance(e, BaseExceptionGroup):
        for sub in e.exceptions:
            found = _bind_error(sub)
            if found is not None:
                return found
    return None


def listen_error_text(host: str, port: int, err: OSError) -> str:
    """Go's `listen tcp HOST:PORT: bind: <reason>`."""
    reason = os.strerror(err.errno).lower() if err.errno else str(err)
    h = f"[{host}]" if ":" in host else host
    return f"listen tcp {h}:{port}: bind: {reason}"


async def start_all(server: Any, nursery: trio.Nursery) -> None:
    for name, starter in _STARTERS:
        try:
            await starter(server, nursery)
        except BaseException as e:
            err = _bind_error(e)
            if err is None or name not in _LISTENERS:
                raise
            intro, where = _LISTENERS[name]
            host, port = where(server.options)
            host = host or "0.0.0.0"
            raise ListenError(err.errno, intro.format(port=port)
                              + listen_error_text(host, port, err)) from e


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
