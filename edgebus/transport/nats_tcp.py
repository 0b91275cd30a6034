"""The NATS client listener: accept TCP (optionally TLS) connections and run a driver for each."""

from __future__ import annotations

import logging
import socket
from typing import Any

import trio

from .listen import normalize_port, unmap_v4  # noqa: F401  (normalize_port: its old home)
from .nats_conn import NatsConnection

log = logging.getLogger("edgebus")


def peer_of(stream: Any) -> tuple[str, int]:
    try:
        sock = stream.socket
        addr = sock.getpeername()
        return unmap_v4(str(addr[0])), int(addr[1])
    except (AttributeError, OSError):
        return "", 0


def listener_port(listeners: list[trio.SocketListener]) -> int:
    return listeners[0].socket.getsockname()[1]


async def serve_nats(server: Any, listeners: list[trio.SocketListener], *,
                     task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
    """Accept loop for NATS clients; each connection runs in the server's connection nursery."""
    broker = server.broker
    o = broker.options
    tls_ctx = server.tls_context
    tls_info: dict[str, Any] = {}
    if tls_ctx is not None:
        tls_info["tls_required"] = True
        if o.tls and o.tls.verify:
            tls_info["tls_verify"] = True

    async def handle(stream: trio.SocketStream) -> None:
        try:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        except OSError:
            pass
        conn = NatsConnection(broker, stream, remote=peer_of(stream), tls=tls_info,
                              # the current context: a config reload may have rotated the
                              # certificate (existing connections keep theirs)
                              tls_context=server.tls_context if tls_ctx is not None else None,
                              tls_first=bool(o.tls and o.tls.handshake_first),
                              tls_timeout=o.tls.timeout if o.tls else 2.0,
                              no_auth_user=o.no_auth_user)
        server.connections.add(conn)
        try:
            await conn.run()
        except Exception:  # a bug in one connection must not take the server down
            log.exception("connection %d failed", conn.cid)
        finally:
            server.connections.discard(conn)

    async with trio.open_nursery() as n:
        server.listener_scopes.append(n.cancel_scope)
        for ln in listeners:
            n.start_soon(_accept_loop, ln, handle, server.conn_nursery)
        task_status.started()


async def _accept_loop(listener: trio.SocketListener, handle: Any, nursery: trio.Nursery) -> None:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:
                # EMFILE and friends: back off instead of spinning
                log.error("accept failed: %s", e)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(handle, stream)
