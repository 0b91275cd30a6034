"""Go duration parsing and printing."""

from __future__ import annotations

import pytest

from edgebus.conf import parse_duration
from edgebus.conf.durations import format_duration


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("100ms", 0.1),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("0", 0.0),
        ("-1s", -1.0),
        ("+2s", 2.0),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("250μs", 0.00025),
        ("10ns", 1e-8),
        ("1m30s500ms", 90.5),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("value,seconds", [(5, 5.0), (0, 0.0), (2.5, 2.5)])
def test_numbers_are_seconds(value: float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "text,message",
    [
        ("2x", 'time: unknown unit "x" in duration "2x"'),
        ("5", 'time: missing unit in duration "5"'),
        ("", 'time: invalid duration ""'),
        (".", 'time: invalid duration "."'),
        ("s", 'time: invalid duration "s"'),
        ("1h-2m", 'time: unknown unit "h-" in duration "1h-2m"'),
        ("9999999999h", 'time: invalid duration "9999999999h"'),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


def test_bool_is_not_a_duration() -> None:
    with pytest.raises(ValueError):
        parse_duration(True)


@pytest.mark.parametrize(
    "seconds,text",
    [
        (0, "0s"),
        (120, "2m0s"),
        (1.5, "1.5s"),
        (0.1, "100ms"),
        (5400, "1h30m0s"),
        (3723.5, "1h2m3.5s"),
        (0.00025, "250µs"),
        (1e-8, "10ns"),
        (-2, "-2s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
