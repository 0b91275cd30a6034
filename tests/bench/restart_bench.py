#!/usr/bin/env python3
"""Restart of a JetStream server with a file store: process start -> first PONG, and -> the
first STREAM.INFO answered with the recovered state; edgebus and nats-server side by side.

    python tests/bench/restart_bench.py [--msgs 100000] [--streams 3] [--consumers 2]
                                        [--rounds 3] [--servers edgebus,nats-server]

For each server, once: a fresh store directory, `--streams` file streams (`R0`..) sharing
`--msgs` 16-byte messages (pipelined publish, one PubAck each), `--consumers` durable pull
consumers per stream with explicit ack (the first one acks half its stream), then for each stop
mode: `term` (SIGTERM, the server stops cleanly) and `kill` (SIGKILL, as a crash), `--rounds`
times: stop, start again (`-js -sd <dir>`), and time from the spawn until
  pong_ms  a client's CONNECT + PING is answered with PONG (polling connect every 2 ms)
  info_ms  `$JS.API.STREAM.INFO.R0` is answered with all of R0's messages (sent right after
           the PONG: a JetStream request that finds the stream not yet recovered would show here)
Each round stops the running server that way and starts it again. Medians of the rounds are printed as RESULT lines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import benchlib as bl  # noqa: E402

CMDS = {
    "edgebus": [sys.executable, "-m", "edgebus", "-a", "127.0.0.1", "-p", "{port}", "-js", "-sd", "{dir}"],
    "nats-server": ["nats-server", "-a", "127.0.0.1", "-p", "{port}", "-js", "-sd", "{dir}"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(name: str, port: int, d: str) -> subprocess.Popen:
    argv = [a.format(port=port, dir=d) for a in CMDS[name]]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=str(HERE.parents[1]), start_new_session=True)


def first_pong(port: int, t0: float, timeout: float = 60.0) -> tuple[float, bl.NatsRaw]:
    """Poll until CONNECT + PING gets PONG; (ms since t0, the connected client)."""
    while True:
        try:
            c = bl.NatsRaw("127.0.0.1", port, name="restart", headers=True, timeout=timeout)
            c.ping_pong()
            return (time.perf_counter() - t0) * 1000, c
        except OSError:
            if time.perf_counter() - t0 > timeout:
                raise
            time.sleep(0.002)


def populate(port: int, streams: int, msgs: int, consumers: int) -> None:
    c = bl.NatsRaw("127.0.0.1", port, name="populate", headers=True)
    c.ping_pong()
    for i in range(streams):
        r = c.request_json(f"$JS.API.STREAM.CREATE.R{i}",
                           {"name": f"R{i}", "subjects": [f"r{i}.>"], "storage": "file",
                            "num_replicas": 1})
        assert "error" not in r, r
    inbox = b"_INBOX.restart.ack"
    c.sock.sendall(b"SUB " + inbox + b" 7\r\n")
    c.ping_pong()
    per = msgs // streams
    sent = acked = 0
    window = 1000
    frames = [b"PUB r%d.s%d %s 16\r\n0123456789abcdef\r\n" % (i, k, inbox) for i in range(streams) for k in range(10)]
    rbuf = bytearray(1 << 20)
    total = per * streams
    while acked < total:
        while sent < total and sent - acked < window:
            k = min(200, total - sent)
            c.sock.sendall(b"".join(frames[((sent + j) // per) * 10 + (sent + j) % 10] for j in range(k)))
            sent += k
        got = c.sock.recv_into(rbuf)
        acked += rbuf.count(b"MSG ", 0, got)  # 16-byte payloads: no split markers matter here
    c.ping_pong()
    for i in range(streams):
        for k in range(consumers):
            r = c.request_json(f"$JS.API.CONSUMER.CREATE.R{i}.C{k}",
                               {"stream_name": f"R{i}", "config": {"durable_name": f"C{k}",
                                                                   "ack_policy": "explicit"}})
            assert "error" not in r, r
        # the first consumer of each stream gets (and acks) half of its messages
        got = 0
        inbox2 = f"_INBOX.restart.f{i}"
        c.sock.sendall(f"SUB {inbox2} {100 + i}\r\n".encode())
        while got < per // 2:
            n = min(500, per // 2 - got)
            body = json.dumps({"batch": n, "expires": 2_000_000_000}).encode()
            c.sock.sendall(f"PUB $JS.API.CONSUMER.MSG.NEXT.R{i}.C0 {inbox2} {len(body)}\r\n".encode() + body + b"\r\n")
            acks = []
            for _ in range(n):
                _s, reply, _h, _d = c.read_msg()
                acks.append(b"PUB %s 0\r\n\r\n" % reply)
            c.sock.sendall(b"".join(acks))
            got += n
        c.ping_pong()
    c.close()


def stop(p: subprocess.Popen, mode: str) -> None:
    os.killpg(p.pid, signal.SIGTERM if mode == "term" else signal.SIGKILL)
    p.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msgs", type=int, default=100_000)
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--servers", default="edgebus,nats-server")
    ap.add_argument("--modes", default="term,kill")
    a = ap.parse_args()
    per = a.msgs // a.streams
    for name in a.servers.split(","):
        d = tempfile.mkdtemp(prefix=f"restart-{name}-")
        try:
            port = free_port()
            p = spawn(name, port, d)
            _, c = first_pong(port, time.perf_counter())
            c.close()
            populate(port, a.streams, a.msgs, a.consumers)
            for mode in a.modes.split(","):
                if p.poll() is not None:  # (stopped by the previous mode's last round)
                    port = free_port()
                    p = spawn(name, port, d)
                    first_pong(port, time.perf_counter())[1].close()
                pongs, infos = [], []
                for _ in range(a.rounds):
                    stop(p, mode)
                    port = free_port()
                    t0 = time.perf_counter()
                    p = spawn(name, port, d)
                    pong_ms, c = first_pong(port, t0)
                    info = c.request_json("$JS.API.STREAM.INFO.R0", None)
                    info_ms = (time.perf_counter() - t0) * 1000
                    c.close()
                    n = info.get("state", {}).get("messages")
                    if n != per:
                        print(f"ERROR {name} {mode}: STREAM.INFO after restart: {json.dumps(info)[:300]}",
                              file=sys.stderr)
                        return 1
                    pongs.append(pong_ms)
                    infos.append(info_ms)
                stop(p, "term")
                print(f"RESULT test=restart server={name} stop={mode} msgs={a.msgs} streams={a.streams} "
                      f"consumers={a.consumers} pong_ms={statistics.median(pongs):.0f} "
                      f"info_ms={statistics.median(infos):.0f} pong_ms_all={','.join('%.0f' % x for x in pongs)}",
                      flush=True)
        finally:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, UnboundLocalError):
                pass
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
