"""The one clock: every timer and timestamp in the server comes from here.

Monotonic time is trio's clock, so a test running under `trio.testing.MockClock` can jump an
hour and every MaxAge, AckWait and ping timer sees it. Wall time is trio time plus an anchor
taken when the clock was made, so timestamps jump along with the mock clock too.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import trio


class Clock:
    def __init__(self) -> None:
        self._wall0 = time.time_ns()
        # the run's clock read directly (one call instead of trio.current_time's three
        # frames): a Clock belongs to one trio run, as its anchor already assumes
        self._read: Any = None
        try:
            self._anchor()
        except RuntimeError:  # made outside trio: anchor lazily on first use
            self._mono0: float | None = None

    def _anchor(self) -> None:
        self._read = trio.lowlevel.current_clock().current_time
        self._mono0 = self._read()

    def monotonic(self) -> float:
        """Seconds on trio's clock (what trio.sleep_until uses)."""
        return trio.current_time()

    def now_ns(self) -> int:
        """Wall-clock nanoseconds since the epoch, advancing with trio's clock."""
        read = self._read
        if read is None:
            try:
                self._anchor()
            except RuntimeError:
                pass  # before the trio run (config being applied): the clock's start time
            return self._wall0
        return self._wall0 + int((read() - self._mono0) * 1e9)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ns() / 1e9, tz=timezone.utc)


def rfc3339(ns: int) -> str:
    """Go's RFC3339Nano in UTC: trailing zeros trimmed; 0 is Go's zero time."""
    if ns <= 0:
        return "0001-01-01T00:00:00Z"
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


def parse_rfc3339(s: str) -> int:
    """Nanoseconds since the epoch from an RFC 3339 timestamp (nanosecond precision kept)."""
    if not s or s.startswith("0001-01-01"):
        return 0
    s = s.strip()
    frac_ns = 0
    main = s
    tz = ""
    # split timezone
    if s.endswith("Z") or s.endswith("z"):
        main, tz = s[:-1], "+00:00"
    else:
        for i in range(len(s) - 1, 9, -1):
            if s[i] in "+-":
                main, tz = s[:i], s[i:]
                break
    if "." in main:
        main, frac = main.split(".", 1)
        frac_ns = int((frac + "000000000")[:9])
    dt = datetime.fromisoformat(main + (tz or "+00:00"))
    return int(dt.timestamp()) * 1_000_000_000 + frac_ns
