"""Recovery time of FileStore with N 16-byte messages: clean restart (index.db) and replay
(index removed, as after a crash). Also reports the write rate.

Run: python tests/bench/store_recovery_bench.py [N] [SUBJECTS]
Target: <= 5 s to reopen with 1,000,000 messages.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from edgebus.jetstream.store.file import FileStore


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    nsubj = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    d = tempfile.mkdtemp(prefix="edgebus-store-bench-")
    try:
        subjects = [f"bench.sub.{i}" for i in range(nsubj)]
        payload = b"0123456789abcdef"
        st = FileStore(d)
        ts = 1_700_000_000_000_000_000
        t0 = time.perf_counter()
        for i in range(n):
            st.store_msg(subjects[i % nsubj], None, payload, ts + i)
        t1 = time.perf_counter()
        # Some interior deletes so recovery has tombstones to apply too.
        for seq in range(2, n, 1000):
            st.remove_msg(seq)
        st.stop()
        t2 = time.perf_counter()
        size = sum(os.path.getsize(os.path.join(d, "msgs", f)) for f in os.listdir(os.path.join(d, "msgs")))
        print(f"messages={n} subjects={nsubj} write={n / (t1 - t0):,.0f} msg/s stop={t2 - t1:.2f}s disk={size / 1e6:.1f} MB")

        t0 = time.perf_counter()
        st = FileStore(d)
        t1 = time.perf_counter()
        state = st.state()
        print(f"clean reopen (index.db): {t1 - t0:.2f} s, msgs={state.msgs}")
        st.stop()

        os.unlink(os.path.join(d, "index.db"))
        t0 = time.perf_counter()
        st = FileStore(d)
        t1 = time.perf_counter()
        state2 = st.state()
        assert state2 == state, (state2, state)
        print(f"replay reopen (no index): {t1 - t0:.2f} s, msgs={state2.msgs}")
        st.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
