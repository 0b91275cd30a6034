"""What a consumer has delivered and what has been acked: its durable state.

`ConsumerState` is the one record of a consumer's position, as nats-server's `ConsumerState`
(delivered and ack-floor sequences, the pending map, redelivery counts) plus what edgebus also
persists (the scan position, the last-per-subject skip list, activity times). Every other part
of the consumer reads and writes these fields; this module owns their JSON form in
`<stream dir>/obs/<name>/o.dat` and writing it atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class ConsumerState:
    """The consumer's sequences and ack state. Sequences are 1-based; 0 means "none yet"."""

    # next stream sequence to consider (nats-server o.sseq); persisted as scan_seq + 1, which can
    # run ahead of the last delivery when a filter skips messages
    sseq: int = 1
    # next delivery (consumer) sequence (o.dseq); delivered.consumer_seq is dseq - 1
    dseq: int = 1
    # stream sequence of the last delivery (delivered.stream_seq)
    delivered_sseq: int = 0
    # ack floor: consumer and stream sequence below which everything is acked
    adflr: int = 0
    asflr: int = 0
    # delivered but not acked: stream seq -> [original delivery seq, delivery time ns]
    # (a list, not a tuple: redelivery and +WPI move the time in place)
    pending: dict[int, list[int]] = field(default_factory=dict)
    # stream seq -> redeliveries so far (the delivery count is this + 1)
    rdc: dict[int, int] = field(default_factory=dict)
    # deliver_policy last_per_subject: sequences still to deliver first, then resume here
    lss: list[int] | None = None
    lss_resume: int = 0
    # last delivery / last ack, wall ns (reported as last_active)
    ldt: int = 0
    lat: int = 0

    def start_at(self, sseq: int) -> None:
        """A fresh consumer that starts scanning at `sseq`: nothing delivered, floors below it."""
        self.sseq = max(sseq, 1)
        self.dseq = 1
        self.adflr = 0
        self.asflr = self.sseq - 1
        self.delivered_sseq = self.sseq - 1

    def track(self, seq: int, dseq: int, now_ns: int) -> None:
        """Stream seq `seq` went out as delivery `dseq` at `now_ns` and waits for its ack. A
        redelivery keeps the delivery seq of its first delivery and restarts the clock."""
        p = self.pending.get(seq)
        if p is not None:
            p[1] = now_ns
        else:
            self.pending[seq] = [dseq, now_ns]

    def to_json(self) -> dict[str, Any]:
        """The o.dat document."""
        return {
            "delivered": {"consumer_seq": self.dseq - 1, "stream_seq": self.delivered_sseq,
                          "scan_seq": self.sseq - 1},
            "ack_floor": {"consumer_seq": self.adflr, "stream_seq": self.asflr},
            "pending": {str(s): [p[0], p[1]] for s, p in self.pending.items()},
            "redelivered": {str(s): n for s, n in self.rdc.items()},
            "lss": ({"seqs": list(self.lss), "resume": self.lss_resume} if self.lss else None),
            "last_delivered_ns": self.ldt,
            "last_ack_ns": self.lat,
        }

    @classmethod
    def from_json(cls, st: dict[str, Any]) -> "ConsumerState":
        """Read an o.dat document back (missing keys: their defaults)."""
        delivered = st.get("delivered") or {}
        floor = st.get("ack_floor") or {}
        s = cls()
        s.delivered_sseq = int(delivered.get("stream_seq", 0))
        scan = int(delivered.get("scan_seq", s.delivered_sseq))
        s.sseq = max(scan, s.delivered_sseq) + 1
        s.dseq = int(delivered.get("consumer_seq", 0)) + 1
        s.adflr = int(floor.get("consumer_seq", 0))
        s.asflr = int(floor.get("stream_seq", 0))
        s.pending = {int(k): [int(v[0]), int(v[1])] for k, v in (st.get("pending") or {}).items()}
        s.rdc = {int(k): int(v) for k, v in (st.get("redelivered") or {}).items()}
        lss = st.get("lss")
        if lss and lss.get("seqs"):
            s.lss = [int(x) for x in lss["seqs"]]
            s.lss_resume = int(lss.get("resume", 0))
        s.ldt = int(st.get("last_delivered_ns", 0))
        s.lat = int(st.get("last_ack_ns", 0))
        # checkRedelivered: redelivery counts at or below the ack floor are stale
        for seq in [x for x in s.rdc if x <= s.asflr]:
            del s.rdc[seq]
        return s


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a synced temporary file, so a crash leaves the old or
    the new copy, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a partial copy would only take more of a full disk
        raise
