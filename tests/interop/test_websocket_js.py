"""Real JavaScript clients over WebSocket: nats.ws (npm `nats.ws`) in Node next to nats-py and
nats.js (npm `nats`) on the NATS port.

Node 20 has no WebSocket global, which nats.ws needs: tests/interop/ws/nats_client.mjs installs
the `ws` package's WebSocket (it offers permessage-deflate and can send the Cookie/Origin headers
a browser would), or uses Node's own undici WebSocket with --experimental-websocket. The npm
packages are pinned in tests/interop/ws/package.json; a missing node_modules is installed once
per session, and the tests skip when node or npm is absent.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from conftest import flushed, run_async
from edgebus.options import WebsocketOptions
from edgebus.testing.embedded import EmbeddedServer

WS_DIR = Path(__file__).parent / "ws"
SCRIPT = WS_DIR / "nats_client.mjs"

nats = pytest.importorskip("nats")


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with tests/interop/ws/node_modules installed."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if not node_bin:
        pytest.skip("node is not installed")
    wanted = ("nats.ws", "nats", "ws")
    if not all((WS_DIR / "node_modules" / p / "package.json").exists() for p in wanted):
        if not npm_bin:
            pytest.skip("npm is not installed and tests/interop/ws/node_modules is missing")
        try:
            subprocess.run([npm_bin, "install", "--no-audit", "--no-fund", "--silent"], cwd=WS_DIR,
                           check=True, timeout=300, capture_output=True)
        except (subprocess.SubprocessError, OSError) as e:
            pytest.skip(f"npm install failed in {WS_DIR}: {e}")
    return node_bin


async def run_node(node: str, script: dict, on_ready: Callable[[], Awaitable[None]] | None = None,
                   node_args: tuple[str, ...] = ()) -> list[dict]:
    """Run nats_client.mjs; on its "ready" event, await `on_ready` and let it go on."""
    proc = await asyncio.create_subprocess_exec(
        node, *node_args, str(SCRIPT), json.dumps(script), cwd=WS_DIR,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    events: list[dict] = []
    assert proc.stdout is not None and proc.stdin is not None
    try:
        async for line in proc.stdout:
            ev = json.loads(line)
            events.append(ev)
            if ev["event"] == "ready":
                if on_ready is not None:
                    await on_ready()
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode()
    assert not [e for e in events if e["event"] == "error"], (events, err)
    return events


def one(events: list[dict], event: str, **match: Any) -> dict:
    found = [e for e in events if e["event"] == event and all(e.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (event, match, events)
    return found[0]


def ws_server(**kw: Any) -> EmbeddedServer:
    extra = {k: kw.pop(k) for k in list(kw) if k not in WebsocketOptions.__dataclass_fields__}
    wo = WebsocketOptions(port=-1, host="127.0.0.1", no_tls=True, **kw)
    for k, v in extra.items():
        setattr(wo, k, v)  # settings the listener reads when present (e.g. token_cookie)
    return EmbeddedServer(websocket=wo)


def ws_url(srv: EmbeddedServer) -> str:
    return f"ws://127.0.0.1:{srv.call(lambda s: s.ws_port)}"


def test_nats_ws_with_nats_py_and_nats_js(node):
    with ws_server() as srv:
        async def main() -> None:
            nc = await nats.connect(srv.client_url)
            from_ws: list = []
            done = asyncio.Event()

            async def collect(msg):
                from_ws.append(msg)
                if len(from_ws) == 2:
                    done.set()

            async def py_service(msg):
                await msg.respond(b"py:" + msg.data)

            await nc.subscribe("from.ws.>", cb=collect)
            await nc.subscribe("py.svc", cb=py_service)
            await flushed(nc)
            replies: dict = {}

            async def on_ready() -> None:
                await nc.publish("to.ws", b"one")
                await nc.publish("to.ws", b"two", headers={"X-From": "nats-py"})
                await nc.publish("to.ws", b"p" * 200_000)
                r = await nc.request("ws.svc", b"q", timeout=5)
                replies["py->ws"] = (r.data, r.headers)

            events = await run_node(node, {
                "connections": {"ws": {"transport": "ws", "servers": ws_url(srv), "name": "nats.ws"},
                                "js": {"transport": "tcp", "servers": srv.client_url}},
                "steps": [
                    {"op": "sub", "conn": "ws", "id": "to", "subject": "to.ws", "max": 3},
                    {"op": "reply", "conn": "ws", "subject": "ws.svc", "prefix": "ws:"},
                    {"op": "flush", "conn": "ws"},
                    {"op": "ready"},
                    {"op": "pub", "conn": "ws", "subject": "from.ws.a", "data": "hi",
                     "headers": {"X-From": "ws"}},
                    {"op": "pub", "conn": "ws", "subject": "from.ws.big", "size": 300_000},
                    {"op": "request", "conn": "ws", "id": "ws->py", "subject": "py.svc", "data": "ping"},
                    {"op": "request", "conn": "js", "id": "js->ws", "subject": "ws.svc", "data": "hello"},
                    {"op": "wait", "id": "to"},
                ]}, on_ready)
            await asyncio.wait_for(done.wait(), 10)
            await nc.drain()

            info = one(events, "connected", conn="ws")["info"]
            assert info["port"] == srv.call(lambda s: s.ws_port)
            got = one(events, "messages", id="to")["msgs"]
            assert [(m["data"], m["size"]) for m in got] == [("one", 3), ("two", 3),
                                                               ("pppppppppppppppppppp...", 200_000)]
            assert got[1]["headers"] == {"X-From": ["nats-py"]}
            assert one(events, "reply", id="ws->py")["msg"]["data"] == "py:ping"
            js = one(events, "reply", id="js->ws")["msg"]
            assert js["data"] == "ws:hello" and js["headers"] == {"Served-By": ["ws"]}
            assert replies["py->ws"] == (b"ws:q", {"Served-By": "ws"})
            by_subject = {m.subject: m for m in from_ws}
            a = by_subject["from.ws.a"]
            assert a.data == b"hi" and a.headers == {"X-From": "ws"}
            assert by_subject["from.ws.big"].data == b"x" * 300_000
        run_async(main, timeout=60)


def test_nats_ws_with_permessage_deflate(node):
    with ws_server(compression=True) as srv:
        async def main() -> None:
            nc = await nats.connect(srv.client_url)

            async def on_ready() -> None:
                # which connections negotiated compression, seen from the server
                flags = srv.call(lambda s: [c.stream.upgrade.compress for c in s.connections
                                            if c.type == "websocket"])
                assert flags == [True]
                await nc.publish("z", b"abc" * 100_000)

            events = await run_node(node, {
                "connections": {"ws": {"transport": "ws", "servers": ws_url(srv)}},
                "steps": [
                    {"op": "sub", "conn": "ws", "id": "z", "subject": "z", "max": 2},
                    {"op": "flush", "conn": "ws"},
                    {"op": "ready"},
                    {"op": "pub", "conn": "ws", "subject": "z", "size": 500_000},
                    {"op": "wait", "id": "z"},
                ]}, on_ready)
            await nc.drain()
            sizes = sorted(m["size"] for m in one(events, "messages", id="z")["msgs"])
            assert sizes == [300_000, 500_000]
        run_async(main, timeout=60)
    # and a client that does not offer it gets plain frames
    with ws_server(compression=True) as srv:
        async def plain() -> None:
            async def on_ready() -> None:
                flags = srv.call(lambda s: [c.stream.upgrade.compress for c in s.connections
                                            if c.type == "websocket"])
                assert flags == [False]
            await run_node(node, {"deflate": False,
                                  "connections": {"ws": {"transport": "ws", "servers": ws_url(srv)}},
                                  "steps": [{"op": "flush", "conn": "ws"}, {"op": "ready"}]}, on_ready)
        run_async(plain, timeout=60)


def test_node_native_websocket(node):
    """Node's own WebSocket (undici) instead of the `ws` shim."""
    probe = subprocess.run([node, "--experimental-websocket", "-e",
                            "process.exit(typeof WebSocket === 'function' ? 0 : 3)"],
                           capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("this node has no --experimental-websocket WebSocket")
    with ws_server() as srv:
        async def main() -> None:
            nc = await nats.connect(srv.client_url)

            async def on_ready() -> None:
                await nc.publish("n", b"from-py")

            events = await run_node(node, {
                "shim": "native",
                "connections": {"ws": {"transport": "ws", "servers": ws_url(srv)}},
                "steps": [
                    {"op": "sub", "conn": "ws", "id": "n", "subject": "n", "max": 2},
                    {"op": "flush", "conn": "ws"},
                    {"op": "ready"},
                    {"op": "pub", "conn": "ws", "subject": "n", "size": 70_000},
                    {"op": "wait", "id": "n"},
                ]}, on_ready, node_args=("--experimental-websocket",))
            await nc.drain()
            got = one(events, "messages", id="n")["msgs"]
            assert sorted(m["size"] for m in got) == [7, 70_000]
        run_async(main, timeout=60)


def test_nats_ws_token_cookie_and_origins(node):
    with ws_server(authorization={"token": "s3cr3t"}, token_cookie="nats_token",
                   allowed_origins=["http://app.example"]) as srv:
        url = ws_url(srv)
        steps = [{"op": "sub", "conn": "ws", "id": "c", "subject": "c", "max": 1},
                 {"op": "pub", "conn": "ws", "subject": "c", "data": "cookie-auth"},
                 {"op": "wait", "id": "c"}]

        def script(**kw: Any) -> dict:
            return {**kw, "connections": {"ws": {"transport": "ws", "servers": url}}, "steps": steps}

        async def main() -> None:
            # a page from the allowed origin whose cookie carries the token
            events = await run_node(node, script(origin="http://app.example",
                                                 headers={"Cookie": "theme=dark; nats_token=s3cr3t"}))
            assert one(events, "connected", conn="ws")["info"]["auth_required"] is True
            assert one(events, "messages", id="c")["msgs"][0]["data"] == "cookie-auth"
            # no cookie: the server refuses the CONNECT
            events = await run_node(node, script(origin="http://app.example"))
            assert one(events, "connect_error", conn="ws")["code"] == "AUTHORIZATION_VIOLATION"
            # another origin: the upgrade itself is refused (403)
            events = await run_node(node, script(origin="http://evil.example",
                                                 headers={"Cookie": "nats_token=s3cr3t"}))
            assert one(events, "connect_error", conn="ws")
        run_async(main, timeout=60)


def test_nats_ws_many_small_messages_keep_order(node):
    with ws_server() as srv:
        async def main() -> None:
            nc = await nats.connect(srv.client_url)
            got: list[bytes] = []
            done = asyncio.Event()

            async def cb(msg):
                got.append(msg.data)
                if len(got) == 2000:
                    done.set()

            await nc.subscribe("seq", cb=cb)
            await flushed(nc)
            steps: list[dict] = [{"op": "pub", "conn": "ws", "subject": "seq", "data": str(i)}
                                 for i in range(2000)]
            await run_node(node, {"connections": {"ws": {"transport": "ws", "servers": ws_url(srv)}},
                                  "steps": steps + [{"op": "flush", "conn": "ws"}]})
            await asyncio.wait_for(done.wait(), 10)
            await nc.drain()
            assert got == [str(i).encode() for i in range(2000)]
        run_async(main, timeout=60)
