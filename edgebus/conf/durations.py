"""Go-style durations: parse ``"1h30m"`` / ``"100ms"`` into seconds and print them back.

nats-server reads most time settings with Go's ``time.ParseDuration``; a plain number is
taken as seconds (for most keys with a deprecation warning, which the options mapper
emits). `parse_duration` implements the Go grammar exactly, including its error texts, so
messages match nats-server's. `format_duration` renders seconds the way Go's
``Duration.String`` does (``2m0s``), which monitoring endpoints report.
"""

from __future__ import annotations

__all__ = ["parse_duration", "parse_duration_ns", "format_duration"]

_NS = 1
_US = 1000 * _NS
_MS = 1000 * _US
_S = 1000 * _MS
_M = 60 * _S
_H = 60 * _M
_UNITS = {
    "ns": _NS,
    "us": _US,
    "\u00b5s": _US,  # micro sign
    "\u03bcs": _US,  # Greek mu
    "ms": _MS,
    "s": _S,
    "m": _M,
    "h": _H,
}
_MAX_NS = 2**63 - 1


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_ns(text: str) -> int:
    """Nanoseconds in a Go duration string; raises ValueError with Go's message."""
    invalid = ValueError(f"time: invalid duration {_q(text)}")
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        if not (s[0] == "." or s[0].isascii() and s[0].isdigit()):
            raise invalid
        i = 0
        while i < len(s) and s[i].isascii() and s[i].isdigit():
            i += 1
        whole, s = s[:i], s[i:]
        frac = ""
        if s[:1] == ".":
            s = s[1:]
            i = 0
            while i < len(s) and s[i].isascii() and s[i].isdigit():
                i += 1
            frac, s = s[:i], s[i:]
        if not whole and not frac:
            raise invalid
        i = 0
        while i < len(s) and s[i] != "." and not (s[i].isascii() and s[i].isdigit()):
            i += 1
        if i == 0:
            raise ValueError(f"time: missing unit in duration {_q(text)}")
        unit, s = s[:i], s[i:]
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {_q(unit)} in duration {_q(text)}")
        scale = _UNITS[unit]
        value = int(whole or "0") * scale
        if frac:
            # Go truncates the fraction towards zero at nanosecond resolution
            value += int(frac) * scale // 10 ** len(frac)
        total += value
        if total > _MAX_NS:
            raise invalid
    return -total if negative else total


def parse_duration_ns(text: str) -> int:
    """Integer nanoseconds in a Go duration string (exact, no float rounding)."""
    return _parse_ns(text)


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`: a Go duration string, or a number meaning seconds.

    Raises ValueError (Go's wording, e.g. ``time: unknown unit "x" in duration "2x"``)
    for anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"time: invalid duration {_q(str(value).lower())}")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"time: invalid duration {_q(str(value))}")
    return _parse_ns(value) / _S


def _fraction(v: int, unit: int) -> str:
    """`v` in multiples of `unit`, with Go's shortest fractional rendering."""
    whole, rest = divmod(v, unit)
    if not rest:
        return str(whole)
    digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` for `seconds`: ``"2m0s"``, ``"1.5s"``, ``"100ms"``."""
    ns = round(seconds * _S)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < _S:
        if ns < _US:
            return f"{sign}{ns}ns"
        if ns < _MS:
            return f"{sign}{_fraction(ns, _US)}\u00b5s"
        return f"{sign}{_fraction(ns, _MS)}ms"
    hours, ns = divmod(ns, _H)
    minutes, ns = divmod(ns, _M)
    secs = _fraction(ns, _S) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return f"{sign}{secs}"
