"""The last warning and error log lines, kept in memory for the status page and `/logz`.

One bounded ring per process, fed by a handler on the `edgebus` logger at WARNING level: debug
and info lines never reach it, so it costs nothing on the message path. `install()` is
idempotent (the CLI calls it when it sets up logging, the monitor when it starts). Times are the
log records' own wall-clock times, the same ones the log file shows.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

#: How many lines are kept; older ones fall off.
CAPACITY = 100

_LEVELS = {logging.WARNING: "WRN", logging.ERROR: "ERR", logging.CRITICAL: "FTL"}


class RecentLog(logging.Handler):
    """Keeps the last `capacity` WARNING+ records as small dicts (no exception text)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.total = 0  # lines ever seen, so a reader can tell how many fell off

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string must not break the caller's log call
            text = str(record.msg)
        self.lines.append({"time_ns": int(record.created * 1e9),
                           "level": _LEVELS.get(record.levelno, "WRN"),
                           "logger": record.name, "text": text})
        self.total += 1

    def recent(self, limit: int = 0) -> list[dict[str, Any]]:
        """The newest `limit` lines (all when 0), oldest first."""
        lines = list(self.lines)
        return lines[-limit:] if limit > 0 else lines


_ring: RecentLog | None = None
_lock = threading.Lock()  # embedded servers start from threads; only guards install()


def install() -> RecentLog:
    """Attach the ring to the `edgebus` logger once per process and return it."""
    global _ring
    with _lock:
        if _ring is None:
            _ring = RecentLog()
            logging.getLogger("edgebus").addHandler(_ring)
        return _ring
