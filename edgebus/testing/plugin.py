"""The pytest plugin (entry point `pytest11`): edgebus fixtures for any test style.

- `edgebus_server`: a thread-backed EmbeddedServer (works with pytest-asyncio and nats-py, sync
  tests, anything); `.client_url`, `.stop()`, `.restart()`, `.drop_client()`.
- `edgebus_trio_server`: a Server running in the test's own trio loop (pytest-trio), so an
  `autojump_clock` drives its timers.
- options: `@pytest.mark.edgebus(jetstream=True, config="...", **Options fields)` or override the
  `edgebus_options` fixture (returning a dict).
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "edgebus(**options): options for the edgebus fixtures")


@pytest.fixture
def edgebus_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("edgebus")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def edgebus_server(edgebus_options: dict[str, Any]) -> Iterator[Any]:
    from .embedded import EmbeddedServer
    srv = EmbeddedServer(**edgebus_options)
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
async def edgebus_trio_server(edgebus_options: dict[str, Any], tmp_path: Any) -> AsyncIterator[Any]:
    import trio

    from ..options import Options
    from ..server import Server
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
    server = Server(opts)
    async with trio.open_nursery() as n:
        await n.start(server.run)
        yield server
        server.shutdown()
