"""Helpers for the JetStream interop tests: one server fixture for edgebus and the real
nats-server, raw JetStream API / pull requests with nats-py, and the nats.js script runner.

Imported by tests/interop/test_js_consumers*.py, test_kv*.py and test_objstore*.py as
`from js.jshelpers import ...` (tests/interop is on sys.path under pytest's prepend mode).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import NATS_SERVER, RealNatsServer

JS_DIR = Path(__file__).resolve().parent
NODE = shutil.which("node")


class JSServer:
    """A running JetStream server of either kind, with the few controls tests need."""

    def __init__(self, kind: str, impl: Any) -> None:
        self.kind = kind
        self.impl = impl

    @property
    def url(self) -> str:
        return self.impl.client_url

    @property
    def is_edgebus(self) -> bool:
        return self.kind == "edgebus"

    def restart(self) -> None:
        """Stop and start again on the same port with the same store directory."""
        if self.is_edgebus:
            self.impl.restart()
            return
        proc = self.impl.proc
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            self.impl.proc = None
        self.impl.start()


def start_server(kind: str, tmp_path: Path, js_extra: str = "") -> JSServer:
    """Start edgebus or nats-server with JetStream; `js_extra` goes inside `jetstream { }`
    (e.g. `domain: hub`)."""
    if kind == "edgebus":
        from edgebus.testing.embedded import EmbeddedServer
        if js_extra:
            store = json.dumps(str(tmp_path / "eb"))
            srv = EmbeddedServer(config=f"port: -1\njetstream {{ store_dir: {store}\n{js_extra} }}\n")
        else:
            srv = EmbeddedServer(jetstream=True, store_dir=str(tmp_path / "eb"))
        srv.start()
        return JSServer(kind, srv)
    if not NATS_SERVER:
        pytest.skip("nats-server binary not installed")
    real = RealNatsServer("", jetstream=False)
    store = json.dumps(os.path.join(real.dir, "js"))
    with open(real.conf_path, "a") as f:
        f.write(f"\njetstream {{ store_dir: {store}\n{js_extra} }}\n")
    return JSServer(kind, real.start())


def stop_server(s: JSServer) -> None:
    if s.is_edgebus:
        s.impl.close()
    else:
        s.impl.stop()


def server_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JSServer]:
    s = start_server(request.param, tmp_path)
    try:
        yield s
    finally:
        stop_server(s)


# -- nats-py helpers --------------------------------------------------------------------------

def run(coro_fn: Any, *args: Any, timeout: float = 30) -> Any:
    """Run a nats-py scenario from a sync test with an overall deadline."""
    async def main() -> Any:
        return await asyncio.wait_for(coro_fn(*args), timeout)
    return asyncio.run(main())


async def api(nc: Any, subject: str, body: Any = None, timeout: float = 2.0) -> dict[str, Any]:
    """A raw `$JS.API.` request; returns the decoded response (errors included)."""
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    msg = await nc.request("$JS.API." + subject, data, timeout=timeout)
    return json.loads(msg.data)


def status_of(msg: Any) -> tuple[str, str] | None:
    """(code, description) of a status message, None for a data message."""
    h = msg.headers or {}
    if "Status" in h:
        return h["Status"], h.get("Description", "")
    return None


async def pull(nc: Any, stream: str, consumer: str, req: Any, *, until_status: bool = True,
               max_msgs: int = 1000, timeout: float = 2.0) -> list[Any]:
    """Send one raw MSG.NEXT request and collect what arrives on its inbox: messages, and
    status messages up to the first terminal one (anything but 100) when `until_status`."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    data = req if isinstance(req, bytes) else json.dumps(req).encode()
    await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", data, reply=inbox)
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < max_msgs:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                m = await sub.next_msg(timeout=left)
            except Exception:
                break
            out.append(m)
            st = status_of(m)
            if until_status and st is not None and st[0] != "100":
                break
    finally:
        await sub.unsubscribe()
    return out


async def wait_for(pred: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy (bounded; no timing claims)."""
    deadline = time.monotonic() + timeout
    while True:
        v = await pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        await asyncio.sleep(interval)


# -- nats.js -----------------------------------------------------------------------------------

def node_ready() -> bool:
    return NODE is not None and (JS_DIR / "node_modules" / "nats").is_dir()


def run_node(script: str, url: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run `tests/interop/js/<script>` against `url`; it prints one JSON object at the end."""
    if not node_ready():
        pytest.skip("node or the npm package `nats` is not installed (npm install in tests/interop/js)")
    p = subprocess.run([NODE, str(JS_DIR / script), url, *args], capture_output=True, text=True,
                       timeout=timeout, cwd=JS_DIR, env={**os.environ, "NODE_NO_WARNINGS": "1"})
    if p.returncode != 0:
        raise AssertionError(f"{script} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"{script} printed no result:\n{p.stdout}\n{p.stderr}"
    return json.loads(lines[-1])
