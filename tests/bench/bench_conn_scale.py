#!/usr/bin/env python3
"""Per-connection and per-subscription costs, side by side with nats-server.

    python tests/bench/bench_conn_scale.py                 # 3 alternating rounds
    python tests/bench/bench_conn_scale.py --idle 2000 --subs 10000 --rounds 5

Loads (raw sockets, stdlib only; each round starts a fresh server of each kind):
  ping_with_idle  open --idle connections (CONNECT + PING/PONG each, then left idle), then
                  time a new connection: TCP connect -> INFO -> CONNECT+PING -> PONG.
                  The median of 20 such connections is the figure (ms). Anything the server
                  does per accept that grows with the number of connections shows here.
  subs            one connection sends --subs SUBs (distinct subjects `s.<i>.x`, one write)
                  followed by PING, and waits for the PONG (seconds);
  unsubs          then the same for their UNSUBs.
The two servers take turns; each figure is the median over the rounds. "ratio" is edgebus /
nats-server (here lower is better: these are times).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from bench_delivery import start  # noqa: E402  (fresh servers of either kind, the same way)


def recv_until(s: socket.socket, token: bytes, buf: bytes = b"") -> bytes:
    while token not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    return buf


def handshake(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    recv_until(s, b"\r\n")  # INFO
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
    recv_until(s, b"PONG\r\n")
    return s


def one_round(kind: str, root: Path, idle: int, nsubs: int) -> dict[str, float]:
    p, port = start(kind, root)
    conns: list[socket.socket] = []
    try:
        for _ in range(idle):
            conns.append(handshake(port))
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            s = handshake(port)
            times.append(time.perf_counter() - t0)
            s.close()
        ping_ms = statistics.median(times) * 1000
        for c in conns:
            c.close()
        conns.clear()
        s = handshake(port)
        subs = b"".join(b"SUB s.%d.x %d\r\n" % (i, i + 1) for i in range(nsubs))
        t0 = time.perf_counter()
        s.sendall(subs + b"PING\r\n")
        recv_until(s, b"PONG\r\n")
        sub_s = time.perf_counter() - t0
        unsubs = b"".join(b"UNSUB %d\r\n" % (i + 1) for i in range(nsubs))
        t0 = time.perf_counter()
        s.sendall(unsubs + b"PING\r\n")
        recv_until(s, b"PONG\r\n")
        unsub_s = time.perf_counter() - t0
        s.close()
        return {"ping_with_idle_ms": ping_ms, "subs_s": sub_s, "unsubs_s": unsub_s}
    finally:
        for c in conns:
            c.close()
        p.terminate()
        p.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--subs", type=int, default=10000)
    ap.add_argument("--edgebus-root", default=str(ROOT))
    a = ap.parse_args()
    root = Path(a.edgebus_root)
    res: dict[str, dict[str, list[float]]] = {"nats-server": {}, "edgebus": {}}
    for r in range(a.rounds):
        for kind in ("nats-server", "edgebus"):
            for k, v in one_round(kind, root, a.idle, a.subs).items():
                res[kind].setdefault(k, []).append(v)
            print(f"round {r + 1} {kind}: " + " ".join(
                f"{k}={v[-1]:.4g}" for k, v in res[kind].items()), flush=True)
    print(f"\n| figure ({a.idle} idle, {a.subs} subs) | edgebus | nats-server | ratio |")
    print("|---|---|---|---|")
    for k in res["edgebus"]:
        e = statistics.median(res["edgebus"][k])
        n = statistics.median(res["nats-server"][k])
        print(f"| {k} | {e:.4g} | {n:.4g} | {e / n:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
