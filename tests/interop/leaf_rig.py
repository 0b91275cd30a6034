"""The edge-sync rig shared by tests/interop/test_leaf_sync.py and tests/bench/bench_leaf_flap.py.

A real nats-server hub (JetStream domain "hub", `leafnodes { no_advertise: true }`), a leaf
(edgebus as `python -m edgebus`, or nats-server) in JetStream domain "edge" whose one remote
goes through a `LinkProxy` that cuts the link, and the streams of both directions:
  EDGE    on the leaf (edge.>), sourced by the hub's CLOUD through `$JS.edge.API`
  CMDS    on the hub (cmds.>), mirrored by the leaf's CMDS_M through `$JS.hub.API`
  UP      on the hub (up.>), fed by the edge's uplink of EDGE (edgebus only, `uplink=True`)
Both servers are processes on fixed ports, so the leaf can be SIGKILLed and restarted and
the hub restarted on its store. `Publisher` publishes acked messages (payload = index) at a
steady rate; `tally` compares what was acked with a copy: lost, doubled, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from conftest import free_port  # below the kernel's ephemeral range: no client socket takes it
from link_proxy import LinkProxy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NATS_SERVER = shutil.which("nats-server") or "nats-server"
EXT_EDGE = {"api": "$JS.edge.API", "deliver": ""}
EXT_HUB = {"api": "$JS.hub.API", "deliver": ""}


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                if s.recv(4096).startswith(b"INFO"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"no server on port {port}")


class Proc:
    """A server process (nats-server or edgebus) on fixed ports, restartable, killable."""

    def __init__(self, kind: str, conf: str, workdir: str, name: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.http_port = free_port()
        self.dir = workdir
        self.conf_path = os.path.join(workdir, f"{name}.conf")
        self.log_path = os.path.join(workdir, f"{name}.log")
        with open(self.conf_path, "w") as f:
            f.write(f"listen: 127.0.0.1:{self.port}\nhttp: 127.0.0.1:{self.http_port}\n" + conf)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "Proc":
        if self.kind == "edgebus":
            cmd = [sys.executable, "-m", "edgebus", "-c", self.conf_path]
        else:
            cmd = [NATS_SERVER, "-c", self.conf_path]
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, cwd=ROOT)
        wait_port(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return json.loads(r.read())


def hub_conf(leaf_port: int, store: str, extra: str = "") -> str:
    return (f"server_name: HUB\njetstream {{ domain: hub, store_dir: {json.dumps(store)} }}\n"
            f'leafnodes {{ listen: "127.0.0.1:{leaf_port}", no_advertise: true }}\n{extra}')


def leaf_conf(proxy_port: int, store: str, extra_remote: str = "", extra: str = "") -> str:
    sep = ", " if extra_remote else ""
    return (f"server_name: EDGE\njetstream {{ domain: edge, store_dir: {json.dumps(store)} }}\n"
            f'leafnodes {{ remotes: [ {{ url: "nats-leaf://127.0.0.1:{proxy_port}"{sep}{extra_remote} }} ] }}\n'
            f"{extra}")


@dataclass
class Rig:
    """A hub, a leaf behind a cutting proxy, and the streams of both directions."""
    leaf_kind: str
    uplink: bool = False
    uplink_opts: str = ""  # more keys for the uplink entry, e.g. ", max_pending: 100"
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="leafflap-"))
    hub: Any = None
    leaf: Any = None
    proxy: Any = None

    def start(self) -> "Rig":
        lp = free_port()
        # LEAFFLAP_HUB_DEBUG=1: the hub logs its source consumer retries (to read a slow run)
        extra = "debug: true\n" if os.environ.get("LEAFFLAP_HUB_DEBUG") else ""
        self.hub = Proc("nats-server", hub_conf(lp, os.path.join(self.workdir, "hub-js"), extra),
                        self.workdir, "hub").start()
        self.proxy = LinkProxy(lp).start()
        extra_remote = ""
        if self.uplink:
            extra_remote = f'uplinks: [ {{ stream: EDGE, subject_prefix: up, hub_stream: UP{self.uplink_opts} }} ]'
        self.leaf = Proc(self.leaf_kind, leaf_conf(self.proxy.port, os.path.join(self.workdir, "edge-js"),
                                                   extra_remote=extra_remote), self.workdir, "leaf").start()
        return self

    def close(self) -> None:
        for p in (self.leaf, self.hub):
            if p is not None:
                p.stop()
        if self.proxy is not None:
            self.proxy.close()
        if os.environ.get("LEAFFLAP_KEEP"):
            print(f"logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def hub_leafs(self) -> int:
        try:
            return len(self.hub.get("/leafz")["leafs"] or [])
        except OSError:
            return 0


async def api(nc: Any, subject: str, body: Any = None, timeout: float = 5) -> dict[str, Any]:
    data = b"" if body is None else json.dumps(body).encode()
    msg = await nc.request(subject, data, timeout=timeout)
    return json.loads(msg.data)


async def until(pred: Any, what: str, timeout: float = 60.0, every: float = 0.02) -> float:
    """Poll `pred()` (async) until true; the seconds it took."""
    t0 = time.monotonic()
    while True:
        try:
            if await pred():
                return time.monotonic() - t0
        except Exception:  # noqa: BLE001  a request timing out while the link settles
            pass
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


async def msg_count(nc: Any, stream: str) -> int:
    r = await api(nc, f"$JS.API.STREAM.INFO.{stream}", timeout=2)
    return int(r["state"]["messages"]) if "state" in r else -1


async def read_all(nc: Any, stream: str) -> list[bytes]:
    """Every message's payload, in stream order (an ordered ephemeral push consumer)."""
    js = nc.jetstream()
    total = await msg_count(nc, stream)
    out: list[bytes] = []
    if total <= 0:
        return out
    sub = await js.subscribe(">", stream=stream, ordered_consumer=True)
    try:
        while len(out) < total:
            m = await sub.next_msg(timeout=10)
            out.append(m.data)
    finally:
        await sub.unsubscribe()
    return out


def tally(acked: list[int], got: list[bytes]) -> dict[str, Any]:
    idx = [int(x) for x in got]
    seen: dict[int, int] = {}
    for i in idx:
        seen[i] = seen.get(i, 0) + 1
    lost = sum(1 for a in acked if a not in seen)
    doubled = sum(c - 1 for c in seen.values() if c > 1)
    return {"acked": len(acked), "copies": len(idx), "lost": lost, "doubled": doubled,
            "in_order": idx == sorted(idx)}


class Publisher:
    """Acked publishes at a steady rate; the indexes whose PubAck arrived."""

    def __init__(self, url: str, prefix: str, rate: float) -> None:
        self.url, self.prefix, self.rate = url, prefix, rate
        self.acked: list[int] = []
        self._stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        import nats
        nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        js = nc.jetstream(timeout=2)
        i = 0
        t0 = time.monotonic()
        while not self._stop.is_set():
            try:
                await js.publish(f"{self.prefix}.{i % 4}", str(i).encode(),
                                 headers={"Nats-Msg-Id": f"{self.prefix}-{i}"})
                self.acked.append(i)
                i += 1
            except Exception:  # noqa: BLE001  no ack: the same index is published again
                pass
            delay = t0 + i / self.rate - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
        await nc.close()

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            await self.task


async def setup_streams(rig: Rig) -> tuple[Any, Any]:
    import nats
    h = await nats.connect(rig.hub.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    e = await nats.connect(rig.leaf.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    await until(lambda: _true(rig.hub_leafs() >= 1), "the leaf to connect", 20)
    await api(e, "$JS.API.STREAM.CREATE.EDGE", {"name": "EDGE", "subjects": ["edge.>"],
                                                "duplicate_window": 300_000_000_000})
    await api(h, "$JS.API.STREAM.CREATE.CMDS", {"name": "CMDS", "subjects": ["cmds.>"],
                                                "duplicate_window": 300_000_000_000})
    if rig.uplink:
        await api(h, "$JS.API.STREAM.CREATE.UP", {"name": "UP", "subjects": ["up.>"],
                                                  "duplicate_window": 300_000_000_000})

    async def created(nc: Any, cfg: dict[str, Any]) -> bool:
        r = await api(nc, f"$JS.API.STREAM.CREATE.{cfg['name']}", cfg, timeout=2)
        return "error" not in r or r["error"].get("err_code") == 10058
    # the other side's JetStream answers once the link carries $JS.<domain>.API
    await until(lambda: created(h, {"name": "CLOUD", "sources": [{"name": "EDGE", "external": EXT_EDGE}]}),
                "CLOUD created", 20)
    await until(lambda: created(e, {"name": "CMDS_M", "mirror": {"name": "CMDS", "external": EXT_HUB}}),
                "CMDS_M created", 20)
    return h, e


async def _true(v: bool) -> bool:
    return v


