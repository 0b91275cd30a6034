"""A thread-backed server usable from any code: sync, asyncio (nats-py), or another trio loop.

    with EmbeddedServer(jetstream=True) as srv:
        nc = await nats.connect(srv.client_url)

The server runs its own trio loop in a daemon thread. `stop()` and `restart()` keep the port and
the JetStream store directory, so clients reconnect to the same URL.
"""

from __future__ import annotations

import copy
import tempfile
import threading
from typing import Any, Callable

import trio

from ..options import Options
from ..server import Server


class EmbeddedServer:
    """A server in a thread of its own (see the module docstring).

    Fault helpers: `stop()` and `start()` (clients see the server go away and come back on the
    same ports, the JetStream store kept), `restart()`, `drop_client(cid=None, name=None)` (cut
    connections as a network failure would), `call(fn)` (run `fn(server)` in the server's loop).
    """

    def __init__(self, options: Options | None = None, *, jetstream: bool = False,
                 store_dir: str | None = None, config: str | None = None, **overrides: Any) -> None:
        if config is not None:
            from ..conf import parse_string
            from ..conf.options_map import options_from_config
            parsed = parse_string(config)
            options = options_from_config(parsed, filename="<config>")
            if not {"port", "listen", "net"} & {str(k).lower() for k in parsed} \
                    and "port" not in overrides:
                overrides["port"] = -1  # an embedded server takes a free port unless told
        self.options = copy.deepcopy(options) if options is not None else Options()
        if options is None and "port" not in overrides:
            self.options.port = -1
        for k, v in overrides.items():
            setattr(self.options, k, v)
        if jetstream:
            self.options.jetstream.enabled = True
        if store_dir is not None:
            self.options.jetstream.store_dir = store_dir
        self._tmp: tempfile.TemporaryDirectory | None = None
        if self.options.jetstream.enabled and not self.options.jetstream.store_dir:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgebus-js-")
            self.options.jetstream.store_dir = self._tmp.name
        self.server: Server | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._error: BaseException | None = None
        self.port = 0
        self._ports: dict[str, int] = {}

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "EmbeddedServer":
        if self._thread is not None:
            return self
        ready = threading.Event()
        opts = copy.deepcopy(self.options)
        if self.port:
            # a restart comes back on the same ports, even those first picked as "any free"
            pin_ports(opts, {"port": self.port, **self._ports})

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self.server = Server(opts)
            async with trio.open_nursery() as n:
                try:
                    await n.start(self.server.run)
                except BaseException as e:
                    self._error = e  # before ready is set: start() must see it
                    raise
                finally:
                    ready.set()

        def runner() -> None:
            try:
                trio.run(main)
            except BaseException as e:  # surfaced to the caller of start()
                self._error = e
                ready.set()

        self._error = None
        self._thread = threading.Thread(target=runner, name="edgebus-embedded", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("edgebus did not start")
        if self._error is not None:
            self._thread = None
            err = self._error
            while isinstance(err, BaseExceptionGroup) and err.exceptions:
                err = err.exceptions[0]
            raise RuntimeError(f"edgebus failed to start: {err}") from self._error
        assert self.server is not None
        self.port = self.server.port
        self._ports = listening_ports(self.server)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        try:
            self.call(lambda s: s.shutdown())
        except RuntimeError:
            pass
        self._thread.join(timeout)
        self._thread = None
        self._token = None

    def restart(self) -> None:
        """Stop and start again on the same ports with the same store (a server restart)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "EmbeddedServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- access ---------------------------------------------------------------------------
    @property
    def client_url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def call(self, fn: Callable[[Server], Any]) -> Any:
        """Run `fn(server)` inside the server's loop (thread-safe) and return its result."""
        if self._token is None or self.server is None:
            raise RuntimeError("server not running")
        server = self.server

        async def run() -> Any:
            r = fn(server)
            if hasattr(r, "__await__"):
                r = await r
            return r

        return trio.from_thread.run(run, trio_token=self._token)

    def call_soon(self, fn: Callable[[Server], Any]) -> None:
        """Schedule `fn(server)` (a coroutine function allowed) in the server's loop and return
        at once, without waiting for it; does nothing if the server is not running."""
        token, server = self._token, self.server
        if token is None or server is None:
            return

        def schedule() -> None:
            async def run() -> None:
                r = fn(server)
                if hasattr(r, "__await__"):
                    await r
            server.nursery.start_soon(run)
        try:
            token.run_sync_soon(schedule)
        except trio.RunFinishedError:
            pass

    def drop_client(self, cid: int | None = None, name: str | None = None) -> int:
        """Cut client connections (all, or by cid or CONNECT name); returns how many."""
        return self.call(lambda server: drop_clients(server, cid, name))

    @property
    def ws_url(self) -> str | None:
        """The WebSocket listener, None unless `websocket` is configured."""
        return self.server.ws_url if self.server is not None else None

    @property
    def mqtt_url(self) -> str | None:
        """The MQTT listener (`mqtt://127.0.0.1:port`), None unless `mqtt` is configured."""
        return self.server.mqtt_url if self.server is not None else None

    @property
    def http_url(self) -> str | None:
        """The monitoring listener, None unless `http_port` is set."""
        return self.server.http_url if self.server is not None else None


def drop_clients(server: Server, cid: int | None = None, name: str | None = None) -> int:
    """Cut the connections of a running `Server` (all, or by cid or CONNECT name) as a network
    failure would; returns how many. Call it in the server's loop (`EmbeddedServer.drop_client`
    does that from any thread)."""
    n = 0
    for c in list(server.connections):
        if (cid is None or c.cid == cid) and (name is None or c.name == name):
            c.kill("Client Closed")
            n += 1
    return n


def listening_ports(server: Server) -> dict[str, int]:
    """The ports a running server listens on, by Server attribute (`port`, `ws_port`, ...)."""
    return {a: getattr(server, a, 0) for a in
            ("port", "ws_port", "mqtt_port", "leaf_port", "http_port")}


def pin_ports(opts: Options, ports: dict[str, int]) -> None:
    """Make `opts` listen on `ports` (from `listening_ports`): a restarted server comes back
    on the same ports, even those first picked as "any free"."""
    if ports.get("port"):
        opts.port = ports["port"]
    for attr, sub in (("ws_port", opts.websocket), ("mqtt_port", opts.mqtt),
                      ("leaf_port", opts.leafnodes)):
        if sub is not None and sub.port is not None and ports.get(attr):
            sub.port = ports[attr]
    if opts.http_port is not None and ports.get("http_port"):
        opts.http_port = ports["http_port"]
