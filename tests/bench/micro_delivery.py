#!/usr/bin/env python3
"""In-process CPU cost of the per-message delivery path (no sockets, no other processes).

    PYTHONPATH=. python tests/bench/micro_delivery.py            # 1/4 subscribers x 1/100 subjects
    PYTHONPATH=. python tests/bench/micro_delivery.py --profile 4 100

One publishing `NatsConnection` (verbose and pedantic off, as the benchmark clients) handles a
64 KiB read of 16 B PUBs (`NatsConnection._handle`, inside a read batch, as its reader does)
cycling over 1 or 100 subjects `bench.x.<i>`; 1 or 4 subscribing `NatsConnection`s (sids 1..4,
as tests/bench/nats_pubsub.py's) take `bench.x.*`. The figure is the process CPU time per
published message, best of --rounds; the subscribers' buffers are emptied between reads. The
machine is shared: CPU time of the best round is what moves least with other work.
"""

from __future__ import annotations

import argparse
import time

import trio
import trio.testing

from edgebus.core.broker import Broker
from edgebus.options import Options
from edgebus.transport.nats_conn import NatsConnection


def make_read(subjects: int, size: int = 16, limit: int = 65536) -> tuple[bytes, int]:
    payload = b"x" * size
    if subjects == 1:
        frames = [b"PUB bench.x %d\r\n%s\r\n" % (size, payload)]
    else:
        frames = [b"PUB bench.x.%d %d\r\n%s\r\n" % (i, size, payload) for i in range(subjects)]
    out = []
    n = total = 0
    while True:
        f = frames[n % len(frames)]
        if total + len(f) > limit:
            break
        out.append(f)
        total += len(f)
        n += 1
    return b"".join(out), n


async def measure(nsubs: int, subjects: int, rounds: int, reads: int) -> float:
    broker = Broker(Options())
    pub = NatsConnection(broker, trio.testing.memory_stream_pair()[0])
    pub.verbose = pub.pedantic = False
    pub.authed = pub.connected = True
    subs = []
    for i in range(nsubs):
        c = NatsConnection(broker, trio.testing.memory_stream_pair()[0])
        c.authed = c.connected = True
        c.add_sub("bench.x.*" if subjects > 1 else "bench.x", None, b"%d" % (i + 1))
        c._parked = True  # an idle writer: the end of the read flushes (no socket here)
        subs.append(c)
    data, n = make_read(subjects)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(reads):
            batch = getattr(pub, "read_batch", None)  # (a tree before it: the class's)
            if batch is None:
                from edgebus.core.outbox import ReadBatch
                batch = ReadBatch.begin()
            else:
                batch.begin()
            try:
                await pub._handle(data)
            finally:
                batch.end()
                pub.settle()
            for c in subs:
                c.out = bytearray()
                c._parked = True
        dt = time.process_time() - t0
        best = min(best, dt / (reads * n))
    expect = n * reads * rounds
    for c in subs:
        assert c.out_msgs == expect, (c.out_msgs, expect)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reads", type=int, default=20)
    ap.add_argument("--profile", nargs=2, type=int, metavar=("SUBS", "SUBJECTS"))
    args = ap.parse_args()
    if args.profile:
        import cProfile
        import pstats
        s, j = args.profile
        cProfile.runctx("trio.run(measure, s, j, 3, 20)", globals(), {"s": s, "j": j},
                        "/tmp/micro.prof")
        pstats.Stats("/tmp/micro.prof").sort_stats("tottime").print_stats(15)
        return
    for subjects in (1, 100):
        for nsubs in (1, 4):
            us = trio.run(measure, nsubs, subjects, args.rounds, args.reads)
            print(f"subs={nsubs} subjects={subjects:3d}: {us:.3f} us/msg")


if __name__ == "__main__":
    main()
