"""The WebSocket front-end: NATS (and MQTT on paths ending `/mqtt`) over WebSocket.

trio-websocket does the HTTP upgrade and framing; `WebSocketStream` turns a connection into the
byte stream the protocol drivers already speak, so a WebSocket client is the same NatsConnection
(or MQTT session) as a TCP one. Binary frames out; text or binary frames in.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket as _serve

from .nats_conn import NatsConnection
from .nats_tcp import normalize_port

log = logging.getLogger("edgebus")


class WebSocketStream(trio.abc.Stream):
    """A trio Stream over one WebSocket connection: each send_all is one binary message."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self._pending = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.ws.send_message(bytes(data))
        except ConnectionClosed as e:
            raise trio.BrokenResourceError("websocket closed") from e

    async def wait_send_all_might_not_block(self) -> None:
        return

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._pending:
            data = self._pending
            if max_bytes is not None and len(data) > max_bytes:
                self._pending = data[max_bytes:]
                return data[:max_bytes]
            self._pending = b""
            return data
        try:
            msg = await self.ws.get_message()
        except ConnectionClosed:
            return b""
        data = msg.encode() if isinstance(msg, str) else msg
        if max_bytes is not None and len(data) > max_bytes:
            self._pending = data[max_bytes:]
            return data[:max_bytes]
        return data

    async def aclose(self) -> None:
        try:
            await self.ws.aclose()
        except Exception:
            pass


def _origin_ok(request: WebSocketRequest, wo: Any) -> bool:
    headers = {k.decode().lower(): v.decode() for k, v in request.headers}
    origin = headers.get("origin")
    if not origin:
        return True
    o = urlsplit(origin)
    if wo.same_origin:
        host = headers.get("host", "")
        if (o.netloc or "").lower() != host.lower():
            return False
    if wo.allowed_origins:
        allowed = False
        for a in wo.allowed_origins:
            u = urlsplit(a)
            if u.scheme == o.scheme and u.hostname == o.hostname and (u.port or None) == (o.port or None):
                allowed = True
                break
        return allowed
    return True


def _client_ip(request: WebSocketRequest) -> tuple[str, int]:
    remote = request.remote
    ip, port = str(getattr(remote, "address", "")), int(getattr(remote, "port", 0) or 0)
    for k, v in request.headers:
        if k.decode().lower() == "x-forwarded-for":
            first = v.decode().split(",")[0].strip()
            try:
                ipaddress.ip_address(first)
                ip = first
            except ValueError:
                pass
    return ip, port


def _server_context(tls: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.ca_file:
        ctx.load_verify_locations(tls.ca_file)
    if tls.verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def serve_websocket(server: Any, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
    o = server.options
    wo = o.websocket
    assert wo is not None
    ctx: ssl.SSLContext | None = None
    if wo.tls is not None and wo.tls.cert_file:
        make = getattr(server, "make_tls_context", None)
        ctx = make(wo.tls) if make is not None else _server_context(wo.tls)
    elif not wo.no_tls:
        raise ValueError("websocket requires TLS configuration (or no_tls: true)")
    if wo.compression:
        log.warning("websocket compression is accepted but not negotiated by this build")
    host = wo.host or "0.0.0.0"
    broker = server.broker

    async def handler(request: WebSocketRequest) -> None:
        if not _origin_ok(request, wo):
            await request.reject(403, body=b"origin not allowed")
            return
        path = request.path or "/"
        remote = _client_ip(request)
        if path.endswith("/mqtt"):
            mqtt = server.services.get("mqtt")
            if mqtt is None or not hasattr(mqtt, "handle_stream"):
                await request.reject(404, body=b"MQTT is not enabled")
                return
            ws = await request.accept(subprotocol="mqtt")
            await mqtt.handle_stream(WebSocketStream(ws), remote=remote, conn_type="websocket")
            return
        if path.endswith("/leafnode"):
            leaf = server.services.get("leaf")
            if leaf is None or not hasattr(leaf, "handle_stream"):
                await request.reject(404, body=b"leafnode connections not accepted")
                return
            ws = await request.accept()
            await leaf.handle_stream(WebSocketStream(ws), remote=remote)
            return
        ws = await request.accept()
        extra = {"host": host, "port": server.ws_port}
        if ctx is not None:
            extra["tls_required"] = True
        conn = NatsConnection(broker, WebSocketStream(ws), conn_type="websocket", remote=remote,
                              tls=extra, no_auth_user=wo.no_auth_user or o.no_auth_user)
        server.connections.add(conn)
        try:
            await conn.run()
        except Exception:
            log.exception("websocket connection %d failed", conn.cid)
        finally:
            server.connections.discard(conn)

    async with trio.open_nursery() as n:
        server.listener_scopes.append(n.cancel_scope)
        ws_server = await n.start(lambda task_status: _serve(
            handler, host, normalize_port(wo.port), ctx, handler_nursery=server.conn_nursery,
            connect_timeout=wo.handshake_timeout, max_message_size=o.max_payload + 64 * 1024,
            task_status=task_status))
        server.ws_port = ws_server.port
        scheme = "wss" if ctx is not None else "ws"
        h = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        server.ports["websocket"] = [f"{scheme}://{h}:{server.ws_port}"]
        log.info("Listening for websocket clients on %s://%s:%d", scheme, host, server.ws_port)
        task_status.started()
