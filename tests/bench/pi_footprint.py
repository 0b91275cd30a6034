#!/usr/bin/env python3
"""Memory and CPU of an `edgebus` gateway process (the figures in firmware-notes/raspberry-pi.md).

Starts `edgebus -c <conf>` with MQTT and JetStream (file store), then measures, from /proc:
  1. idle: RSS after start-up, CPU over --idle seconds with no clients;
  2. MQTT sessions: --sessions persistent MQTT 3.1.1 sessions (clean_session=0, one QoS 1
     subscription each, keepalive 60 s), RSS with them connected, CPU over --idle seconds;
  3. a busy stream: nats-py publishes --msgs messages of --size bytes to a file stream with
     JetStream acks (windows of 100 in flight); msgs/s, CPU while publishing, RSS after.

    python tests/bench/pi_footprint.py [--sessions 200] [--msgs 20000] [--size 128]

RESULT lines carry the figures; the machine's CPU model is printed for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_percent_over(pid: int, seconds: float) -> float:
    c0, t0 = cpu_s(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_s(pid) - c0) / (time.monotonic() - t0)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    n, rl = len(body), b""
    while True:
        d, n = n % 128, n // 128
        rl += bytes([d | (0x80 if n else 0)])
        if not n:
            return bytes([first]) + rl + body


def mqtt_session(port: int, client_id: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(_packet(0x10, _utf8("MQTT") + bytes([4, 0x00]) + struct.pack("!H", 60)
                      + _utf8(client_id)))
    assert s.recv(4)[:2] == b"\x20\x02"
    s.sendall(_packet(0x82, struct.pack("!H", 1) + _utf8(f"sensors/{client_id}/cmd") + b"\x01"))
    assert s.recv(5)[0] == 0x90
    return s


async def busy_stream(url: str, n: int, size: int) -> float:
    import nats
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="READINGS", subjects=["readings.>"], storage="file")
    payload = os.urandom(size)
    t0 = time.monotonic()
    for start in range(0, n, 100):
        await asyncio.gather(*(js.publish(f"readings.{i % 50}", payload)
                               for i in range(start, min(n, start + 100))))
    rate = n / (time.monotonic() - t0)
    await nc.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--msgs", type=int, default=20000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--idle", type=float, default=5.0)
    a = ap.parse_args()
    with open("/proc/cpuinfo") as fh:
        model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    print(f"cpu: {model}, {os.cpu_count()} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="pi-footprint-") as d:
        port, mport = free_port(), free_port()
        conf = os.path.join(d, "gw.conf")
        with open(conf, "w") as fh:
            fh.write(f"port: {port}\nmqtt {{ port: {mport} }}\n"
                     f"jetstream {{ store_dir: {json.dumps(os.path.join(d, 'js'))} }}\n")
        p = subprocess.Popen([sys.executable, "-m", "edgebus", "-c", conf],
                             stderr=subprocess.PIPE, text=True)
        try:
            for line in p.stderr:  # type: ignore[union-attr]
                if "Server is ready" in line:
                    break
            time.sleep(1)
            print(f"RESULT test=pi name=idle rss_mib={rss_mib(p.pid):.1f} "
                  f"cpu_pct={cpu_percent_over(p.pid, a.idle):.2f}")
            socks = [mqtt_session(mport, f"s{i}") for i in range(a.sessions)]
            time.sleep(1)
            print(f"RESULT test=pi name=mqtt_sessions sessions={len(socks)} "
                  f"rss_mib={rss_mib(p.pid):.1f} cpu_pct={cpu_percent_over(p.pid, a.idle):.2f}")
            c0, t0 = cpu_s(p.pid), time.monotonic()
            rate = asyncio.run(busy_stream(f"nats://127.0.0.1:{port}", a.msgs, a.size))
            cpu = 100 * (cpu_s(p.pid) - c0) / (time.monotonic() - t0)
            print(f"RESULT test=pi name=busy_stream msgs={a.msgs} size={a.size} "
                  f"msgs_per_s={rate:.0f} cpu_pct={cpu:.0f} rss_mib={rss_mib(p.pid):.1f}")
            for s in socks:
                s.close()
        finally:
            p.terminate()
            p.wait(30)


if __name__ == "__main__":
    main()
