"""The pytest plugin (entry point `pytest11`): edgebus fixtures for any test style.

Fixtures (`pytest --fixtures` shows each one's docstring):

- `edgebus_server`: a server of the test's own, in a thread (sync tests, pytest-asyncio and
  nats-py, anything). URLs: `.client_url`, `.ws_url`, `.mqtt_url`, `.http_url`.
- `edgebus_isolated`: an account of the test's own on one server shared by the session; same
  isolation for NATS clients (subjects, JetStream, KV) at well under 1 ms per test.
- `edgebus_trio_server`: a `Server` in the test's own trio loop (pytest-trio), so
  `autojump_clock` drives its timers; `await server.connect()` gives an in-process client
  (`edgebus.client.InProcClient`).
- options: `@pytest.mark.edgebus(jetstream=True, config="...", **Options fields)`, or override
  the `edgebus_options` fixture (returning a dict).

Fault helpers, all in one place:

- `edgebus_server.stop()` / `.start()` / `.restart()`: the server goes away and comes back on
  the same ports with the same JetStream store (clients reconnect to the same URL).
- `edgebus_server.drop_client(cid=None, name=None)`: cut client connections (all, or by cid or
  by the name a client gave in CONNECT) as a network failure would.
- `await edgebus_trio_server.restart()` / `.stop()` / `.start()`: the same for the in-loop
  server (virtual time included); `.drop_clients(cid=None, name=None)` cuts its connections
  (`edgebus.testing.drop_clients(server, ...)` for any running `Server`).
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "edgebus(**options): options for the edgebus fixtures")


@pytest.fixture
def edgebus_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Options for `edgebus_server` / `edgebus_trio_server`: the `@pytest.mark.edgebus(...)`
    keywords (`jetstream=True`, `config="mqtt { port: -1 }"`, any `edgebus.Options` field).
    Override this fixture to give a whole module or directory the same options."""
    marker = request.node.get_closest_marker("edgebus")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def edgebus_server(edgebus_options: dict[str, Any]) -> Iterator[Any]:
    """A fresh edgebus server for this test, running in a thread (works from sync tests,
    asyncio and nats-py). An `edgebus.EmbeddedServer`: `.client_url` (free port, 127.0.0.1),
    `.ws_url`, `.mqtt_url`, `.http_url` (None unless configured); fault helpers `.restart()`,
    `.stop()`, `.start()`, `.drop_client()`. Options from `@pytest.mark.edgebus(...)`."""
    from .embedded import EmbeddedServer
    srv = EmbeddedServer(**edgebus_options)
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="session")
def edgebus_session_server() -> Iterator[Any]:
    """One JetStream-enabled edgebus server for the whole session (it backs
    `edgebus_isolated`). Tests sharing it directly also share its subjects and streams; its
    `.client_url` (no credentials) stays in the global account, apart from every isolated one."""
    from .embedded import EmbeddedServer
    srv = EmbeddedServer(jetstream=True)
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def edgebus_isolated(edgebus_session_server: Any) -> Iterator[Any]:
    """An account of this test's own on the session's shared server: its own subjects,
    JetStream and KV namespace, and a user whose credentials are in `.client_url`
    (`nats://user:password@127.0.0.1:port`). Costs well under 1 ms per test where a server
    per test costs several. Its clients are cut and its streams deleted after the test.
    NATS clients only: MQTT, WebSocket and restarts need `edgebus_server`."""
    from .isolation import IsolatedAccount
    iso = IsolatedAccount.create(edgebus_session_server)
    try:
        yield iso
    finally:
        iso.close()


@pytest.fixture
async def edgebus_trio_server(edgebus_options: dict[str, Any], tmp_path: Any) -> AsyncIterator[Any]:
    """A fresh `edgebus.Server` running inside this test's trio loop (needs pytest-trio and
    `@pytest.mark.trio`); with the `autojump_clock` fixture, every server timer (MaxAge,
    AckWait, TTLs, keepalives) runs in virtual time. `await server.connect()` gives an
    in-process client; `.client_url`, `.ws_url`, `.mqtt_url`, `.http_url` for real clients.
    Faults: `await server.restart()` (same ports and store), `await .stop()` / `.start()`,
    `.drop_clients(cid=, name=)`. JetStream (`@pytest.mark.edgebus(jetstream=True)`) stores
    under the test's tmp_path. An `edgebus.testing.trio_server.TrioServer`."""
    import trio

    from ..options import Options
    kw = dict(edgebus_options)
    config = kw.pop("config", None)
    if config is not None:
        from ..conf import parse_string
        from ..conf.options_map import options_from_config
        parsed = parse_string(config)
        opts = options_from_config(parsed, filename="<config>")
        if not {"port", "listen", "net"} & {str(k).lower() for k in parsed} and "port" not in kw:
            opts.port = -1
    else:
        opts = Options()
        opts.port = -1
    if kw.pop("jetstream", False):
        opts.jetstream.enabled = True
    if "store_dir" in kw:
        opts.jetstream.store_dir = kw.pop("store_dir")
    for k, v in kw.items():
        setattr(opts, k, v)
    if opts.jetstream.enabled and not opts.jetstream.store_dir:
        opts.jetstream.store_dir = str(tmp_path / "js")
    from .trio_server import TrioServer
    async with trio.open_nursery() as n:
        server = await TrioServer(opts, n).start()
        yield server
        await server.stop()
