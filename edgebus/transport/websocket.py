"""The WebSocket front-end: NATS over WebSocket, answering as nats-server's `websocket.go` does.

A small RFC 6455 server of its own (no third-party WebSocket server) so every observable detail
can follow nats-server: the HTTP upgrade checks and their error responses (Go's `http.Error`
format, keep-alive after an error), origin checks, permessage-deflate without context takeover,
browser frame sizes, close codes derived from the close reason, cookies that fill in missing
CONNECT credentials. `WebSocketStream` turns an upgraded connection into the trio byte stream the
protocol drivers already speak, so a WebSocket client is the same `NatsConnection` as a TCP one;
paths ending in `/mqtt` and `/leafnode` hand the stream to the MQTT and leaf services.

The HTTP upgrade parsing and the frame codec are sans-IO, in `codec/websocket.py`; here:
options validation, the stream adapter, the listener.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections import deque
from typing import Any, Callable

import trio

from ..codec.nats import ERR_AUTH_TIMEOUT
from ..codec.websocket import (KIND_CLIENT, KIND_LEAF, KIND_MQTT, OP_CLOSE, OP_PONG, BadRequest,
                               FrameReader, FrameWriter, HandshakeRefused, HeadReader,
                               OriginChecker, Upgrade, WsClose, check_upgrade, close_payload,
                               encode_frame, go_bad_request, http_error, parse_request,
                               parse_request_uri, upgrade_response)
from .nats_conn import NatsConnection
from . import listen
from .nats_tcp import peer_of

log = logging.getLogger("edgebus")


# close status sent when the server closes, from the connection's close reason
# (nats-server's wsEnqueueCloseMessage); anything unlisted is 1011
_CLOSE_STATUS: dict[str, int] = {
    "Client Closed": 1000,
    **dict.fromkeys((
        "Authentication Timeout", "Authentication Failure", "Slow Consumer (Pending Bytes)",
        "Slow Consumer (Write Deadline)", "Maximum Account Connections Exceeded",
        "Maximum Connections Exceeded", "Maximum Control Line Exceeded",
        "Maximum Subscriptions Exceeded", "Missing Account", "Authentication Expired",
        "Credentials Revoked", "Revocation"), 1008),
    "TLS Handshake Error": 1015,
    "TLS Handshake Failure": 1015,
    "Parse Error": 1002,
    "Protocol Violation": 1002,
    "Bad Client Protocol Version": 1002,
    "Maximum Message Payload Exceeded": 1009,
    **dict.fromkeys(("Write Error", "Read Error", "Stale Connection", "Server Shutdown"), 1001),
}
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "connection", "upgrade", "nats-no-masking"})


# ==========================================================================================
# options validation
# ==========================================================================================
def validate_websocket_options(o: Any) -> None:
    """nats-server's validateWebsocketOptions: raise ValueError with its wording."""
    wo = o.websocket
    if wo is None or wo.port is None:
        return
    if wo.tls is None and not wo.no_tls:
        raise ValueError("websocket requires TLS configuration")
    for ao in wo.allowed_origins or ():
        err, u = parse_request_uri(ao)
        if err:
            raise ValueError(f"unable to parse allowed origin: {err}")
        if u.scheme not in ("http", "https"):
            raise ValueError(f'unable to parse allowed origin "{ao}": allowed origins must be '
                             "absolute URLs with http or https scheme")
        if not u.netloc:
            raise ValueError(f'unable to parse allowed origin "{ao}": host is required')
    if wo.no_auth_user:
        names = _user_names(o)
        if o.operator:
            raise ValueError("no_auth_user not compatible with Trusted Operator")
        if names is None:
            raise ValueError(f'no_auth_user: "{wo.no_auth_user}" present, but users/nkeys are not defined')
        if wo.no_auth_user not in names:
            raise ValueError(f'no_auth_user: "{wo.no_auth_user}" not present as user or nkey in '
                             "authorization block or account configuration")
    auth = {str(k).lower(): v for k, v in (wo.authorization or {}).items()}
    if _has_users_or_nkeys(o):
        if auth.get("user") or auth.get("username"):
            raise ValueError("websocket authentication username not compatible with presence of users/nkeys")
        if auth.get("token"):
            raise ValueError("websocket authentication token not compatible with presence of users/nkeys")
    if wo.jwt_cookie and not o.operator and not getattr(o, "trusted_keys", None):
        raise ValueError("trusted operators or trusted keys configuration is required for JWT "
                         f'authentication via cookie "{wo.jwt_cookie}"')
    for key in (getattr(wo, "headers", None) or {}):
        k = str(key).lower()
        if k in _FORBIDDEN_HEADERS:
            raise ValueError(f'websocket: invalid header "{key}" not allowed')
        if k.startswith("sec-websocket-"):
            raise ValueError(f'websocket: invalid header "{key}", "Sec-WebSocket-" prefix not allowed')


def _user_lists(o: Any) -> list[list[Any]]:
    """The users/nkeys lists of the authorization block and of every account."""
    blocks = [o.authorization or {}] + [a for a in (o.accounts or {}).values() if isinstance(a, dict)]
    out = []
    for b in blocks:
        for k, v in b.items():
            if str(k).lower() in ("users", "nkeys") and isinstance(v, list):
                out.append(v)
    return out


def _has_users_or_nkeys(o: Any) -> bool:
    return any(_user_lists(o))


def _user_names(o: Any) -> set[str] | None:
    """User names and nkeys configured, or None when there are no users/nkeys at all."""
    lists = _user_lists(o)
    if not lists:
        return None
    names = set()
    for lst in lists:
        for u in lst:
            if isinstance(u, dict):
                low = {str(k).lower(): v for k, v in u.items()}
                names.update(str(low[k]) for k in ("user", "username", "nkey") if k in low)
    return names


# ==========================================================================================
# HTTP handshake
# ==========================================================================================
# ==========================================================================================
# the stream adapter
# ==========================================================================================
class WebSocketStream(trio.abc.Stream):
    """A trio Stream over an upgraded connection: send_all writes frames, receive_some returns
    the unframed client bytes, aclose ends with a close frame whose status follows the close
    reason (`close_reason` is asked at close time, e.g. the NatsConnection's)."""

    def __init__(self, raw: trio.abc.Stream, up: Upgrade | None = None, *,
                 max_payload: int = 1024 * 1024) -> None:
        up = up or Upgrade(KIND_CLIENT, "", False, False, False, False, None)
        self.raw = raw
        self.upgrade = up
        self.reader = FrameReader(mask_required=not up.no_masking, compression=up.compress,
                                  max_payload=max_payload)
        self.writer = FrameWriter(compress=up.compress, browser=up.browser, nocompfrag=up.nocompfrag)
        self.close_reason: Callable[[], str | None] = lambda: None
        self._send_lock = trio.Lock()
        self._ready: deque[bytes] = deque()
        self._eof = False
        self._close_reply: bytes | None = None  # close frame owed to the peer
        self._close_sent = False
        self._torn = False
        self.socket = getattr(raw, "socket", None)  # for code that peeks at the socket

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._close_sent:
            raise trio.ClosedResourceError("websocket closed")
        frames = self.writer.encode(bytes(data))
        async with self._send_lock:
            # stays set if the send is cut short (write deadline, kill): the peer then holds a
            # partial frame, and a close frame after it would be garbage
            self._torn = True
            await self.raw.send_all(frames)
            self._torn = False

    async def wait_send_all_might_not_block(self) -> None:
        await self.raw.wait_send_all_might_not_block()

    async def _send_control(self, opcode: int, payload: bytes) -> None:
        async with self._send_lock:
            await self.raw.send_all(encode_frame(opcode, payload))

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._ready:
            if self._eof:
                return b""
            data = await self.raw.receive_some(65536)
            if not data:
                self._eof = True
                return b""
            try:
                items = self.reader.feed(data)
            except WsClose as e:
                items = self.reader.pending
                self._close_reply = e.payload
                self._eof = True
            for it in items:
                if isinstance(it, tuple):
                    try:
                        await self._send_control(OP_PONG, it[1])
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self._eof = True
                elif it:
                    self._ready.append(it)
        chunk = self._ready.popleft()
        if max_bytes is not None and len(chunk) > max_bytes:
            self._ready.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk

    async def aclose(self) -> None:
        """Send the close frame owed (an echo, a protocol error, or one for the close reason)."""
        if not self._close_sent and not self._torn:
            self._close_sent = True
            payload = self._close_reply
            if payload is None:
                reason = self.close_reason() or "Client Closed"
                payload = close_payload(_CLOSE_STATUS.get(reason, 1011), reason)
            try:
                with trio.move_on_after(1):
                    await self._send_control(OP_CLOSE, payload)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
                pass
        await self.raw.aclose()


# ==========================================================================================
# the listener
# ==========================================================================================
class WebsocketClientConnection(NatsConnection):
    """A NATS client over WebSocket: the TCP driver, with nats-server's WebSocket INFO rule."""

    def make_info(self) -> dict[str, Any]:
        info = super().make_info()
        # createWSClient copies the server INFO, whose auth_required a no_auth_user (the
        # server's or the websocket's own) does not hide, then adds the websocket override
        if self.auth_required:
            info["auth_required"] = True
        return info

    @property
    def ping_interval(self) -> float:
        # websocket { ping_interval } overrides the server's for WebSocket clients
        wo = self.broker.options.websocket
        if wo is not None and wo.ping_interval:
            return wo.ping_interval
        return self.broker.options.ping_interval

    async def _auth_timer(self) -> None:
        # websocket { authorization { timeout } } replaces the server's auth timeout
        wo = self.broker.options.websocket
        auth = {str(k).lower(): v for k, v in ((wo.authorization if wo else None) or {}).items()}
        timeout = auth.get("timeout")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            await super()._auth_timer()
            return
        await trio.sleep(timeout)
        if not self.authed:
            self.close("Authentication Timeout", ERR_AUTH_TIMEOUT)


class _Handshaker:
    """Reads requests on one connection until one upgrades (or the connection ends)."""

    def __init__(self, stream: trio.abc.Stream, timeout: float) -> None:
        self.stream = stream
        self.timeout = timeout if timeout and timeout > 0 else math.inf
        self.heads = HeadReader()

    async def read_head(self) -> bytes | None:
        """One request head; None on EOF or timeout; raises BadRequest(431) when too large."""
        with trio.move_on_after(self.timeout):
            head = self.heads.next_head()
            while head is None:
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                head = self.heads.feed(data)
            return head
        return None


class WebsocketListener:
    """The websocket{} listener: accept, upgrade, and run the protocol for each connection."""

    def __init__(self, server: Any) -> None:
        self.server = server
        o = server.options
        self.wo = o.websocket
        self.origins = OriginChecker(self.wo.same_origin, list(self.wo.allowed_origins or ()))
        headers = getattr(self.wo, "headers", None) or {}
        self.raw_headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.ssl_context: ssl.SSLContext | None = None
        self.host = self.wo.host or "0.0.0.0"
        self.port = 0

    def _make_ssl_context(self) -> ssl.SSLContext | None:
        tls = self.wo.tls
        if tls is None:
            return None
        make = getattr(self.server, "make_tls_context", None)
        if make is not None:
            return make(tls)
        try:
            from ..security.tlsconf import server_context
        except ImportError:  # pragma: no cover - security is part of the package
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
            return ctx
        return server_context(tls)

    @property
    def scheme(self) -> str:
        return "wss" if self.ssl_context is not None else "ws"

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        server = self.server
        validate_websocket_options(server.options)
        self.ssl_context = self._make_ssl_context()
        listeners = listen.trio_listeners(listen.take(server, listen.WEBSOCKET))
        self.port = listeners[0].socket.getsockname()[1]
        server.ws_port = self.port
        log.info("Listening for websocket clients on %s://%s:%d", self.scheme, self.host, self.port)
        if self.ssl_context is None:
            log.warning("Websocket not configured with TLS. DO NOT USE IN PRODUCTION!")
        async with trio.open_nursery() as n:
            server.listener_scopes.append(n.cancel_scope)
            for ln in listeners:
                n.start_soon(self._accept_loop, ln)
            task_status.started()

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:
                    log.error("websocket accept failed: %s", e)
                    await trio.sleep(0.1)
                    continue
                self.server.conn_nursery.start_soon(self._handle, stream)

    async def _handle(self, raw: trio.SocketStream) -> None:
        peer = peer_of(raw)
        holder: list[trio.abc.Stream] = [raw]  # the outermost stream so far, to close on failure
        try:
            up = await self._handshake(raw, peer, holder)
            if up is None:
                with trio.CancelScope(shield=True):
                    await _aclose_quietly(holder[-1])
                return
            await self._dispatch(holder[-1], up, peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.debug("websocket connection from %s:%d ended: %s", peer[0], peer[1], e)
            with trio.CancelScope(shield=True):
                await _aclose_quietly(holder[-1])
        except Exception:  # one connection's failure must not take the listener down
            log.exception("websocket connection from %s:%d failed", *peer)
            with trio.CancelScope(shield=True):
                await _aclose_quietly(holder[-1])

    async def _handshake(self, raw: trio.SocketStream, peer: tuple[str, int],
                         holder: list[trio.abc.Stream]) -> Upgrade | None:
        """TLS (if configured), then HTTP requests until one upgrades; None: close the socket."""
        stream: trio.abc.Stream = raw
        if self.ssl_context is not None:
            stream = trio.SSLStream(raw, self.ssl_context, server_side=True)
            holder.append(stream)
            # Go's http.Server ReadTimeout (= handshake_timeout) covers the TLS handshake too
            with trio.move_on_after(self.wo.handshake_timeout or math.inf) as cs:
                try:
                    await stream.do_handshake()
                except (trio.BrokenResourceError, ssl.SSLError, OSError) as e:
                    log.error("%s:%d - websocket TLS handshake error: %s", *peer, e)
                    return None
            if cs.cancelled_caught:
                log.error("%s:%d - websocket TLS handshake error: timeout", *peer)
                return None
        hs = _Handshaker(stream, self.wo.handshake_timeout)
        mqtt_enabled = self._mqtt_enabled()
        while True:
            try:
                head = await hs.read_head()
                if head is None:
                    return None
                req = parse_request(head)
            except BadRequest as e:
                await _send_quietly(stream, go_bad_request(e))
                return None
            try:
                up = check_upgrade(req, compression=self.wo.compression, origins=self.origins,
                                   secure=self.ssl_context is not None, mqtt_enabled=mqtt_enabled)
            except HandshakeRefused as e:
                log.error("%s:%d - websocket handshake error: %s", peer[0], peer[1], e.reason)
                await _send_quietly(stream, http_error(e.status, req))
                if not req.keep_alive or req.get("content-length") not in ("", "0") \
                        or req.get("transfer-encoding"):
                    return None
                continue  # Go's server keeps the connection open for the next request
            if hs.heads.trailing:
                # nats-server refuses a client that did not wait for the 101 (and just closes)
                log.error("%s:%d - websocket handshake error: client sent data before handshake "
                          "is complete", *peer)
                return None
            await stream.send_all(upgrade_response(up, self.raw_headers))
            return up

    def _mqtt_enabled(self) -> bool:
        mq = self.server.options.mqtt
        return mq is not None and mq.port is not None

    async def _dispatch(self, stream: trio.abc.Stream, up: Upgrade, peer: tuple[str, int]) -> None:
        server = self.server
        o = server.options
        ws = WebSocketStream(stream, up, max_payload=o.max_payload)
        if up.forwarded_for:
            # nats-server shows the forwarded address only in its log prefix; INFO client_ip,
            # /connz and auth checks keep using the TCP peer
            log.debug("%s/%s:%d - websocket connection from a proxy", up.forwarded_for, *peer)
        if up.kind == KIND_MQTT:
            mqtt = server.services.get("mqtt")
            if mqtt is None or not hasattr(mqtt, "handle_stream"):
                await ws.aclose()
                return
            await mqtt.handle_stream(ws, remote=peer, conn_type="websocket")
            return
        if up.kind == KIND_LEAF:
            leaf = server.services.get("leaf")
            if o.leafnodes is None or leaf is None or not hasattr(leaf, "handle_stream"):
                log.error("Not configured to accept leaf node connections")
                await stream.aclose()  # silently, as nats-server (no close frame)
                return
            await leaf.handle_stream(ws, remote=peer)
            return
        await self._run_client(ws, up, peer)

    async def _run_client(self, ws: WebSocketStream, up: Upgrade, peer: tuple[str, int]) -> None:
        server = self.server
        o = server.options
        wo = self.wo
        info: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.ssl_context is not None:
            info["tls_required"] = True
            info["tls_available"] = True
        conn = WebsocketClientConnection(server.broker, ws, conn_type="websocket", listener="websocket",
                                         remote=peer, tls=info,
                                         no_auth_user=wo.no_auth_user or o.no_auth_user,
                                         cookie_creds=self._cookie_creds(up.cookies) or None)
        ws.close_reason = lambda: conn.close_reason
        server.connections.add(conn)
        try:
            await conn.run()
        except Exception:
            log.exception("websocket connection %d failed", conn.cid)
        finally:
            server.connections.discard(conn)

    def _cookie_creds(self, cookies: dict[str, str]) -> dict[str, str]:
        """CONNECT fields the configured cookies supply (used only where CONNECT has none)."""
        out: dict[str, str] = {}
        wo = self.wo
        for opt, connect_key in (("jwt_cookie", "jwt"), ("user_cookie", "user"),
                                 ("pass_cookie", "pass"), ("token_cookie", "auth_token")):
            name = getattr(wo, opt, None)
            if name and cookies.get(name):
                out[connect_key] = cookies[name]
        return out


async def _send_quietly(stream: trio.abc.Stream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def _aclose_quietly(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(1):
        try:
            await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def serve_websocket(server: Any, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
    """The service entry point (services.py): validate, listen, report started()."""
    listener = WebsocketListener(server)
    server.services["websocket"] = listener
    await listener.run(task_status=task_status)
