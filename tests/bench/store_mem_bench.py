"""Memory overhead of MemoryStore: bytes allocated per stored 16-byte message beyond the payload.

Run: python tests/bench/store_mem_bench.py [N] [SUBJECTS]
Reports the RSS delta and tracemalloc's net allocation (exact Python heap growth).
Target: <= 200 B overhead per message at N = 1,000,000.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import tracemalloc

from edgebus.jetstream.store.memory import MemoryStore


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    nsubj = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    subjects = [f"bench.sub.{i}" for i in range(nsubj)]
    ts = 1_700_000_000_000_000_000

    def build() -> MemoryStore:
        st = MemoryStore()
        for i in range(n):
            st.store_msg(subjects[i % nsubj], None, i.to_bytes(16, "little"), ts + i)
        return st

    # 1) RSS growth in a fresh process (first, so no freed arenas get reused).
    # Payloads are created inside the measured window (a publisher hands over fresh bytes) and
    # their 16 B content is subtracted, so "overhead" includes each bytes object's header.
    gc.collect()
    r0 = rss()
    t0 = time.perf_counter()
    st = build()
    elapsed = time.perf_counter() - t0
    gc.collect()
    r1 = rss()
    assert st.state().msgs == n
    print(f"messages={n} subjects={nsubj} store_rate={n / elapsed:,.0f} msg/s")
    print(f"rss: {(r1 - r0) / n:.1f} B/msg total, overhead {(r1 - r0 - 16 * n) / n:.1f} B/msg beyond the 16 B payload")
    del st
    gc.collect()

    # 2) Exact Python heap growth.
    tracemalloc.start()
    st = build()
    gc.collect()
    cur, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert st.state().msgs == n
    print(f"tracemalloc: {cur / n:.1f} B/msg total, overhead {(cur - 16 * n) / n:.1f} B/msg beyond the 16 B payload")


if __name__ == "__main__":
    main()
