"""The assembled server: the core broker plus listeners and subsystems, under one nursery.

`Server(options).run(task_status=...)` runs until `shutdown()`; `serve()` is the async context
manager for trio code. The NATS listener, WebSocket, MQTT, monitoring, JetStream and the leaf
link are started here, each a service that reports `started()`.
"""

from __future__ import annotations

import logging
import ssl
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import trio

from .core.broker import Broker
from .core.clock import Clock
from .options import Options
from .transport import listen, nats_tcp

log = logging.getLogger("edgebus")


class Server:
    def __init__(self, options: Options | None = None, **overrides: Any) -> None:
        self.options = options or Options()
        for k, v in overrides.items():
            setattr(self.options, k, v)
        self.broker = Broker(self.options, Clock())
        self.tls_context: ssl.SSLContext | None = None
        self.connections: set[Any] = set()
        self.listener_scopes: list[trio.CancelScope] = []
        self.conn_nursery: trio.Nursery = None  # type: ignore[assignment]
        self.nursery: trio.Nursery = None  # type: ignore[assignment]
        self.port = 0
        self.http_port = 0
        self.ws_port = 0
        self.mqtt_port = 0
        self.leaf_port = 0
        self.ports: dict[str, list[str]] = {}
        # listener name -> sockets the `edgebus` command bound before the server was imported
        # (see transport/listen.py); each listener takes its own, or binds when absent
        self.prebound: dict[str, list[Any]] = {}
        self._stop: trio.Event | None = None
        self.running = False
        self.stopped = trio.Event()  # set when run() has closed everything
        self.services: dict[str, Any] = {}
        # called just before "Server is ready" (embedders' hooks; the `edgebus` command writes
        # its ports and pid files earlier, as soon as its listeners are bound)
        self.before_ready: list[Any] = []

    # -- addresses ------------------------------------------------------------------------
    @property
    def client_host(self) -> str:
        h = self.options.host
        return "127.0.0.1" if h in listen.WILDCARD_HOSTS else h.strip("[]")

    @property
    def client_url(self) -> str:
        return f"nats://{listen.url_host(self.options.host)}:{self.port}"

    def _url(self, scheme: str, port: int) -> str | None:
        if not port:
            return None
        h = self.client_host
        return f"{scheme}://[{h}]:{port}" if ":" in h else f"{scheme}://{h}:{port}"

    @property
    def ws_url(self) -> str | None:
        """The WebSocket listener (`ws://`, `wss://` with TLS), None when not configured."""
        ws = self.options.websocket
        tls = ws is not None and ws.tls is not None and not ws.no_tls
        return self._url("wss" if tls else "ws", self.ws_port)

    @property
    def mqtt_url(self) -> str | None:
        """The MQTT listener (`mqtt://host:port`), None when not configured."""
        return self._url("mqtt", self.mqtt_port)

    @property
    def http_url(self) -> str | None:
        """The monitoring listener (`http://host:port`), None when not configured."""
        return self._url("http", self.http_port)

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        o = self.options
        b = self.broker
        self._stop = trio.Event()
        validate_options(o)
        b.start_ns = b.clock.now_ns()
        self._setup_security()
        async with trio.open_nursery() as root:
            self.nursery = root
            async with trio.open_nursery() as conns:
                self.conn_nursery = conns
                listeners = listen.trio_listeners(listen.take(self, listen.NATS))
                self.port = nats_tcp.listener_port(listeners)
                b.client_port = self.port
                # subsystems first (JetStream recovers its streams), so that the first client
                # accepted already finds them
                await self._start_services(root)
                self.ports = listen.port_urls(o, {
                    listen.NATS: self.port, listen.MONITORING: self.http_port,
                    listen.WEBSOCKET: self.ws_port, listen.MQTT: self.mqtt_port})
                await conns.start(nats_tcp.serve_nats, self, listeners)
                log.info("Listening for client connections on %s:%d", o.host, self.port)
                self.running = True
                for cb in self.before_ready:
                    cb()
                log.info("Server is ready")
                task_status.started(self)
                await self._stop.wait()
                await self._graceful_close()
                conns.cancel_scope.cancel()
            root.cancel_scope.cancel()
        listen.close_all(self.prebound)  # any a failed service never took
        self.running = False
        self.stopped.set()

    def _setup_security(self) -> None:
        """Build authenticators and the TLS context from options (security/ plugs in here)."""
        try:
            from .security import setup
        except ImportError:
            setup = None  # type: ignore[assignment]
        if setup is not None and hasattr(setup, "configure"):
            setup.configure(self)

    async def _start_services(self, nursery: trio.Nursery) -> None:
        """Start the optional subsystems that are configured; each reports started()."""
        from . import services
        await services.start_all(self, nursery)

    async def _graceful_close(self) -> None:
        for scope in self.listener_scopes:
            scope.cancel()
        self.broker.shutting_down = True
        for svc in list(self.services.values()):
            stop = getattr(svc, "stop", None)
            if stop is not None:
                try:
                    res = stop()
                    if hasattr(res, "__await__"):
                        await res
                except Exception:
                    log.exception("stopping service failed")
        for c in list(self.connections):
            c.close("Server Shutdown")
        # give writers a moment to flush
        with trio.move_on_after(0.5):
            while any(c.out for c in self.connections):
                await trio.sleep(0.01)

    def shutdown(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def connect(self, account: str | None = None, name: str = "") -> Any:
        """An in-process client (`edgebus.client.InProcClient`) of `account` (default the
        global account) for trio code in this server's loop: no socket, the server's clock."""
        from .client import InProcClient
        await trio.lowlevel.checkpoint()
        return InProcClient(self, account, name)

    async def lame_duck(self) -> None:
        """Lame duck mode: stop accepting, tell clients (INFO ldm), close them over time, stop."""
        from .codec.nats import info_frame
        o = self.options
        b = self.broker
        b.lame_duck = True
        for scope in self.listener_scopes:
            scope.cancel()
        log.info("Entering lame duck mode, stop accepting new clients")
        for c in list(self.connections):
            if getattr(c, "protocol", 0) >= 1:
                info = c.make_info()
                info["ldm"] = True
                c.enqueue(info_frame(info))
        await trio.sleep(min(o.lame_duck_grace_period, o.lame_duck_duration))
        conns = list(self.connections)
        span = max(0.0, o.lame_duck_duration - o.lame_duck_grace_period)
        step = min(1.0, span / len(conns)) if conns else 0
        for c in conns:
            c.close("Server Shutdown")
            if step:
                await trio.sleep(step)
        self.shutdown()


def validate_options(o: Options) -> None:
    """Cross-setting checks nats-server makes before it starts (its validateOptions)."""
    if o.max_payload > o.max_pending:
        raise ValueError(f"max_payload ({o.max_payload}) cannot be higher than max_pending "
                         f"({o.max_pending})")


@asynccontextmanager
async def serve(options: Options | None = None, *, jetstream: bool = False,
                store_dir: str | None = None, **overrides: Any) -> AsyncIterator[Server]:
    """Run a server inside the caller's trio loop for the duration of the block.

    `async with edgebus.serve(jetstream=True) as srv: ...` — srv.client_url is ready inside,
    `await srv.connect()` gives an in-process client. A free port unless told; with JetStream
    and no `store_dir`, a temporary store removed afterwards.
    """
    server = Server(options, **overrides)
    if "port" not in overrides and options is None:
        server.options.port = -1
    js = server.options.jetstream
    if jetstream:
        js.enabled = True
    if store_dir is not None:
        js.store_dir = store_dir
    tmp = None
    if js.enabled and not js.store_dir:
        import tempfile
        tmp = tempfile.TemporaryDirectory(prefix="edgebus-js-")
        js.store_dir = tmp.name
    try:
        async with trio.open_nursery() as n:
            await n.start(server.run)
            try:
                yield server
            finally:
                server.shutdown()
    finally:
        if tmp is not None:
            tmp.cleanup()
