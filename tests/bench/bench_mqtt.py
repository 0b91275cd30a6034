"""MQTT benchmark: edgebus against mosquitto and the amqtt broker on the same load.

Run:  python tests/bench/bench_mqtt.py [--servers edgebus,mosquitto,amqtt] [--repeat 3]
                                       [--write tests/bench/RESULTS_mqtt.md]

Every server is started here on a free port and measured with the shared raw-socket generator
(`mqtt_bench.py` from the project's bench kit, `--bench-dir`, default `$EDGEBUS_BENCH_DIR` or
`/work/shared/bench`), exactly as the anchor figures were taken:

- `mqtt_qos0_1to1`: QoS 0, 1 publisher -> 1 subscriber, 16-byte payload;
- `mqtt_qos1_1to1`: QoS 1 both ways, publisher window 256;
- `mqtt_retained`: the retained-message check (RETAIN on a new subscription, not on live
  messages, cleared by an empty retained publish);
- `idle_1000` (edgebus): RSS of the server with 1000 connected idle MQTT clients.

Each throughput test runs `--repeat` times and reports the median (and range) of the
per-subscriber rate; amqtt gets a tenth of the messages (`--amqtt-scale`), as in the anchors.
Before each run the box must be quiet (`--quiet-pct`, waiting up to `--quiet-wait` s); runs where
other processes burnt more than `--max-ext-cpu` % of a core are retried and flagged.

edgebus runs with JetStream enabled (as nats-server requires for MQTT) and default options;
mosquitto with `persistence false`, `max_queued_messages 0` and Nagle on (the anchor setup);
amqtt with one TCP listener and only the anonymous-auth plugin.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TARGETS = {  # ratio of edgebus to each reference
    "mqtt_qos0_1to1": {"mosquitto": 0.75, "amqtt": 20.0},
    "mqtt_qos1_1to1": {"mosquitto": 0.5, "amqtt": 10.0},
}
IDLE_CLIENTS = 1000
IDLE_RSS_MAX_KIB = 64 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mstr(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def connect_packet(cid: str, keepalive: int = 60) -> bytes:
    body = _mstr(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + _mstr(cid.encode())
    return b"\x10" + bytes([len(body)]) + body


def wait_mqtt(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(connect_packet("bench-probe"))
                if s.recv(4)[:1] == b"\x20":
                    s.sendall(b"\xe0\x00")
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no MQTT server answered on port {port}")


def rss_kib(pid: int) -> int:
    total = 0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Server:
    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.tmp = tmp
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        t, p = self.tmp, self.port
        if self.name == "edgebus":
            conf = t / "edgebus.conf"
            conf.write_text(f"port: {free_port()}\nserver_name: bench\n"
                            f"jetstream {{ store_dir: {json.dumps(str(t / 'js'))} }}\n"
                            f"mqtt {{ port: {p}, host: 127.0.0.1 }}\n")
            return [sys.executable, "-m", "edgebus", "-c", str(conf)]
        if self.name == "mosquitto":
            exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            conf = t / "mosquitto.conf"
            conf.write_text(f"listener {p} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                            "max_queued_messages 0\n")
            return [exe, "-c", str(conf)]
        if self.name == "amqtt":
            conf = t / "amqtt.yaml"
            conf.write_text("---\nlisteners:\n  default:\n    type: tcp\n"
                            f"    bind: 127.0.0.1:{p}\nplugins:\n"
                            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                            "    allow_anonymous: true\n")
            exe = shutil.which("amqtt")
            if exe is None:
                raise RuntimeError("amqtt not installed")
            return [exe, "-c", str(conf)]
        raise ValueError(self.name)

    def available(self) -> bool:
        if self.name == "mosquitto":
            return bool(shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto"))
        if self.name == "amqtt":
            return bool(shutil.which("amqtt"))
        return True

    def __enter__(self) -> "Server":
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL,
                                     stderr=open(self.tmp / f"{self.name}.log", "wb"),
                                     cwd=str(ROOT))
        wait_mqtt(self.port)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def busy_pct(interval: float = 1.0) -> float:
    def snap() -> tuple[int, int]:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = f[3] + f[4]
        return sum(f), idle
    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def wait_quiet(pct: float, max_wait: float) -> float:
    deadline = time.monotonic() + max_wait
    b = busy_pct()
    while b > pct and time.monotonic() < deadline:
        b = busy_pct()
    return b


def run_generator(bench_dir: Path, args: list[str], timeout: float = 180) -> dict[str, str]:
    r = subprocess.run([sys.executable, str(bench_dir / "mqtt_bench.py"), *args],
                       capture_output=True, text=True, timeout=timeout)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(kv.split("=", 1) for kv in line.split()[1:])
    raise RuntimeError(f"generator failed: {r.stdout[-500:]} {r.stderr[-1000:]}")


def measure(srv: Server, bench_dir: Path, test: str, n: int, a: argparse.Namespace) -> dict:
    gen = {"mqtt_qos0_1to1": ["--qos", "0", "--subs", "1", "--size", "16"],
           "mqtt_qos1_1to1": ["--qos", "1", "--subs", "1", "--size", "16", "--window", "256"]}[test]
    runs = []
    for _ in range(a.repeat):
        for attempt in range(a.retries + 1):
            wait_quiet(a.quiet_pct, a.quiet_wait)
            res = run_generator(bench_dir, ["--port", str(srv.port), "--n", str(n),
                                            "--server-pid", str(srv.proc.pid), *gen])
            ext = float(res.get("ext_cpu_pct", 0) or 0)
            res["disturbed"] = ext > a.max_ext_cpu
            if not res["disturbed"] or attempt == a.retries:
                break
        runs.append(res)
    rates = [float(r["msgs_per_s"]) for r in runs]
    return {"test": test, "n": n, "median": statistics.median(rates), "min": min(rates),
            "max": max(rates), "lost": max(int(r.get("lost", 0)) for r in runs),
            "srv_cpu": statistics.median(float(r.get("srv_cpu_pct", 0) or 0) for r in runs),
            "lg_cpu": max(float(r.get("lg_cpu_max_pct", 0) or 0) for r in runs),
            "ext_cpu": statistics.median(float(r.get("ext_cpu_pct", 0) or 0) for r in runs),
            "disturbed": sum(1 for r in runs if r["disturbed"])}


def retained_check(srv: Server, bench_dir: Path) -> dict:
    r = run_generator(bench_dir, ["--port", str(srv.port), "--test", "retained"])
    return {"test": "mqtt_retained", "ok": r.get("ok") == "1", "latency_us": r.get("latency_us")}


def idle_clients(srv: Server, n: int) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 200
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))
    pid = srv.proc.pid
    before = rss_kib(pid)
    socks = []
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(connect_packet(f"idle-{i}", keepalive=300))
            socks.append(s)
        for s in socks:
            if s.recv(4)[:1] != b"\x20":
                raise RuntimeError("no CONNACK")
        time.sleep(1.0)
        with_clients = rss_kib(pid)
    finally:
        for s in socks:
            s.close()
    return {"test": f"idle_{n}", "rss_before_kib": before, "rss_kib": with_clients,
            "per_client_kib": (with_clients - before) / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="edgebus,mosquitto,amqtt")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n0", type=int, default=300_000, help="QoS 0 messages")
    ap.add_argument("--n1", type=int, default=150_000, help="QoS 1 messages")
    ap.add_argument("--amqtt-scale", type=float, default=0.1)
    ap.add_argument("--idle", type=int, default=IDLE_CLIENTS)
    ap.add_argument("--bench-dir", default=os.environ.get("EDGEBUS_BENCH_DIR", "/work/shared/bench"))
    ap.add_argument("--quiet-pct", type=float, default=25.0)
    ap.add_argument("--quiet-wait", type=float, default=60.0)
    ap.add_argument("--max-ext-cpu", type=float, default=15.0)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--write", default=None, help="write a markdown report here")
    a = ap.parse_args()
    bench_dir = Path(a.bench_dir)
    if not (bench_dir / "mqtt_bench.py").exists():
        print(f"mqtt_bench.py not found in {bench_dir} (--bench-dir)", file=sys.stderr)
        return 2
    results: dict[str, dict[str, dict]] = {}
    for name in a.servers.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as td:
            srv = Server(name, Path(td))
            if not srv.available():
                print(f"skip {name}: not installed", file=sys.stderr)
                continue
            scale = a.amqtt_scale if name == "amqtt" else 1.0
            with srv:
                res = results.setdefault(name, {})
                for test, n in (("mqtt_qos0_1to1", a.n0), ("mqtt_qos1_1to1", a.n1)):
                    res[test] = measure(srv, bench_dir, test, max(1000, int(n * scale)), a)
                    print(name, json.dumps(res[test]), flush=True)
                res["mqtt_retained"] = retained_check(srv, bench_dir)
                print(name, json.dumps(res["mqtt_retained"]), flush=True)
                if name == "edgebus" and a.idle:
                    res["idle"] = idle_clients(srv, a.idle)
                    print(name, json.dumps(res["idle"]), flush=True)
    report = render(results, a)
    print(report)
    if a.write:
        Path(a.write).write_text(report)
    return 0


def render(results: dict[str, dict[str, dict]], a: argparse.Namespace) -> str:
    lines = ["| server | test | n | msgs/s per sub, median [min–max] | srv CPU % | gen CPU % | ext CPU % | disturbed runs |",
             "|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        for test in ("mqtt_qos0_1to1", "mqtt_qos1_1to1"):
            r = res.get(test)
            if r:
                lines.append(f"| {name} | {test} | {r['n']:,} | {r['median']:,.0f} [{r['min']:,.0f}–{r['max']:,.0f}]"
                             f" | {r['srv_cpu']:.0f} | {r['lg_cpu']:.0f} | {r['ext_cpu']:.0f} | {r['disturbed']}/{a.repeat} |")
    lines += ["", "| ratio edgebus / reference | target | measured | met |", "|---|---|---|---|"]
    eb = results.get("edgebus", {})
    for test, refs in TARGETS.items():
        for ref, target in refs.items():
            if test in eb and test in results.get(ref, {}):
                ratio = eb[test]["median"] / max(1.0, results[ref][test]["median"])
                lines.append(f"| {test} vs {ref} | >= {target}x | {ratio:.2f}x | {'yes' if ratio >= target else 'NO'} |")
    lines.append("")
    for name, res in results.items():
        r = res.get("mqtt_retained")
        if r:
            lines.append(f"- {name} retained check: ok={int(r['ok'])} latency_us={r['latency_us']}")
    idle = eb.get("idle")
    if idle:
        ok = idle["rss_kib"] <= IDLE_RSS_MAX_KIB
        lines.append(f"- edgebus with {a.idle} idle MQTT clients: RSS {idle['rss_kib'] / 1024:.1f} MiB "
                     f"(before {idle['rss_before_kib'] / 1024:.1f} MiB, {idle['per_client_kib']:.1f} KiB per client); "
                     f"target <= 64 MiB: {'met' if ok else 'NOT met'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
