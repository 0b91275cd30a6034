#!/usr/bin/env python3
"""The delivery path side by side with nats-server: one subject and mixed subjects.

    python tests/bench/bench_delivery.py                  # 3 alternating runs per server
    python tests/bench/bench_delivery.py --repeat 1 --n 200000
    python tests/bench/bench_delivery.py --edgebus-root /tmp/old-tree   # another edgebus tree

Loads (the shared raw-socket generator, tests/bench/nats_pubsub.py = /work/shared/bench's):
  1to1_16         --subs 1 --size 16                      one subject (the run path)
  1to4_16         --subs 4 --size 16
  1to1_16_s100    --subs 1 --size 16 --subjects 100       the publisher cycles 100 subjects,
  1to4_16_s100    --subs 4 --size 16 --subjects 100       the subscribers take `bench.x.*`
All with `--count marker`. For each load the servers take turns (nats-server, edgebus, ...),
each run on a fresh server process, so both see the same machine load; the median of the
runs counts and "ratio" is edgebus / nats-server. Other developers share the machine: read
ratios, not absolute figures. "per CPU-s" divides each run's rate by the server's CPU use
(messages per second of server CPU): steadier than the rate when the machine is busy, and
the same ratio when both servers could use what they needed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# (name, generator arguments, messages as a multiple of --n: the one-subject loads run much
# faster, and need more messages for a measurable span)
LOADS = [
    ("1to1_16", "--subs 1 --size 16", 4),
    ("1to4_16", "--subs 4 --size 16", 2),
    ("1to1_16_s100", "--subs 1 --size 16 --subjects 100", 1),
    ("1to4_16_s100", "--subs 4 --size 16 --subjects 100", 1),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(4096).startswith(b"INFO"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server on {port} did not start")


def start(kind: str, root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    if kind == "nats-server":
        argv = [shutil.which("nats-server") or "nats-server", "-a", "127.0.0.1", "-p", str(port)]
        env = None
    else:
        argv = [sys.executable, "-m", "edgebus", "-a", "127.0.0.1", "-p", str(port)]
        env = dict(os.environ, PYTHONPATH=str(root))
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                         cwd=str(root))
    wait_port(port)
    return p, port


def run(kind: str, root: Path, args: str, n: int) -> tuple[float, float]:
    """(msgs/s, msgs per second of server CPU) of one run on a fresh server."""
    p, port = start(kind, root)
    try:
        out = subprocess.run([sys.executable, str(HERE / "nats_pubsub.py"), "--port", str(port),
                              "--server-pid", str(p.pid), "--n", str(n), "--count", "marker",
                              "--timeout", "120", *args.split()],
                             capture_output=True, text=True, timeout=180).stdout
    finally:
        p.terminate()
        p.wait(10)
    for line in out.splitlines():
        if line.startswith("RESULT"):
            kv = dict(t.split("=", 1) for t in line.split()[1:] if "=" in t)
            rate = float(kv["msgs_per_s"])
            cpu = float(kv.get("srv_cpu_pct", "0") or 0) / 100
            return rate, (rate / cpu if cpu > 0 else 0.0)
    raise RuntimeError(f"no RESULT from the generator: {out!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--only", default="")
    ap.add_argument("--edgebus-root", default=str(ROOT))
    a = ap.parse_args()
    root = Path(a.edgebus_root)
    only = {x for x in a.only.split(",") if x}
    print("| load | edgebus | nats-server | ratio | ratio per CPU-s | runs (edgebus / nats-server) |")
    print("|---|---|---|---|---|---|")
    for name, args, mult in LOADS:
        if only and name not in only:
            continue
        got: dict[str, list[tuple[float, float]]] = {"edgebus": [], "nats-server": []}
        for _ in range(a.repeat):
            for kind in ("nats-server", "edgebus"):
                got[kind].append(run(kind, root, args, a.n * mult))
        eb = statistics.median(r for r, _ in got["edgebus"])
        ns = statistics.median(r for r, _ in got["nats-server"])
        ebc = statistics.median(c for _, c in got["edgebus"])
        nsc = statistics.median(c for _, c in got["nats-server"])
        runs = " ".join(f"{x / 1e3:.0f}k" for x, _ in got["edgebus"]) + " / " + \
            " ".join(f"{x / 1e3:.0f}k" for x, _ in got["nats-server"])
        per_cpu = f"{ebc / nsc:.2f}x" if nsc else "-"
        print(f"| {name} | {eb / 1e3:,.0f} k/s | {ns / 1e3:,.0f} k/s | {eb / ns:.2f}x | {per_cpu} "
              f"| {runs} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
