"""Helpers shared by the stream mirror/source interop tests (this module holds no tests).

`js_target` is parametrized over edgebus and the real nats-server; the async helpers talk the
raw JetStream API through nats-py so the JSON both servers send can be compared as is.
Nothing waits a fixed time: `eventually` polls for a state until a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import nats
import pytest

from conftest import run_async
from edgebus.testing.embedded import EmbeddedServer

WAIT = 15.0  # upper bound for a sourced/mirrored state to appear


@dataclass
class Target:
    kind: str  # "edgebus" | "nats-server"
    url: str
    server: Any


@pytest.fixture(params=["edgebus", "nats-server"])
def js_target(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param == "edgebus":
        srv = EmbeddedServer(jetstream=True, store_dir=str(tmp_path / "edgebus-js")).start()
        try:
            yield Target("edgebus", srv.client_url, srv)
        finally:
            srv.close()
    else:
        real = request.getfixturevalue("real_nats_server")(jetstream=True)
        yield Target("nats-server", real.client_url, real)


def run_js(url: str, fn: Callable[[Any, Any], Awaitable[Any]], timeout: float = 45) -> Any:
    """Run `fn(nc, js)` with a fresh nats-py connection to `url`."""
    async def main() -> Any:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            return await fn(nc, nc.jetstream())
        finally:
            await nc.close()
    return run_async(main, timeout=timeout)


async def api(nc: Any, subject: str, body: Any = None) -> dict[str, Any]:
    data = b"" if body is None else json.dumps(body).encode()
    msg = await nc.request(subject, data, timeout=5)
    return json.loads(msg.data)


async def create(nc: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    r = await api(nc, f"$JS.API.STREAM.CREATE.{cfg['name']}", cfg)
    assert "error" not in r, r
    return r


async def info(nc: Any, name: str) -> dict[str, Any]:
    r = await api(nc, f"$JS.API.STREAM.INFO.{name}")
    assert "error" not in r, r
    return r


def parse_hdrs(raw: bytes | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if not raw:
        return out
    for line in raw.split(b"\r\n")[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            out[k.decode()] = v.strip().decode()
    return out


async def messages(nc: Any, name: str) -> list[dict[str, Any]]:
    """Every message of a stream, by sequence: seq, subject, data, headers, time."""
    st = (await info(nc, name))["state"]
    out: list[dict[str, Any]] = []
    if not st["messages"]:
        return out
    for seq in range(st["first_seq"], st["last_seq"] + 1):
        r = await api(nc, f"$JS.API.STREAM.MSG.GET.{name}", {"seq": seq})
        if "error" in r:
            assert r["error"]["err_code"] == 10037, r  # a deleted/skipped sequence
            continue
        m = r["message"]
        out.append({"seq": m["seq"], "subject": m["subject"],
                    "data": base64.b64decode(m.get("data", "")),
                    "hdrs": parse_hdrs(base64.b64decode(m["hdrs"]) if m.get("hdrs") else None),
                    "time": m["time"]})
    return out


def source_fields(m: dict[str, Any]) -> list[str]:
    """The first five `Nats-Stream-Source` fields (nats-server 2.14+ append an identity)."""
    return m["hdrs"]["Nats-Stream-Source"].split(" ")[:5]


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = WAIT,
                     interval: float = 0.05) -> Any:
    """Poll `check()` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


async def wait_last_seq(nc: Any, name: str, seq: int, timeout: float = WAIT) -> dict[str, Any]:
    async def check() -> Any:
        i = await info(nc, name)
        return i if i["state"]["last_seq"] >= seq else None
    return await eventually(check, f"{name} to reach seq {seq}", timeout)


async def wait_count(nc: Any, name: str, n: int, timeout: float = WAIT) -> dict[str, Any]:
    async def check() -> Any:
        i = await info(nc, name)
        return i if i["state"]["messages"] >= n else None
    return await eventually(check, f"{name} to hold {n} messages", timeout)


def view(msgs: list[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(m[k] for k in keys) for m in msgs]
