"""core/blocking: blocking work runs in a worker thread on the real clock and inline under a
MockClock (where a thread's wait would let autojump fire timeouts), and it is the only place
the server hands work to threads."""

from __future__ import annotations

import threading
from pathlib import Path

import trio
import trio.testing

from edgebus.core.blocking import run_blocking, virtual_time

EDGEBUS = Path(__file__).resolve().parents[2] / "edgebus"


def _where() -> int:
    return threading.get_ident()


def test_thread_on_the_real_clock_inline_on_a_mock_clock() -> None:
    async def main() -> tuple[bool, bool]:
        return virtual_time(), await run_blocking(_where) == threading.get_ident()

    assert trio.run(main) == (False, False)
    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == (True, True)


def test_no_other_module_hands_work_to_threads() -> None:
    offenders = [str(p.relative_to(EDGEBUS)) for p in EDGEBUS.rglob("*.py")
                 if "to_thread" in p.read_text() and p.name != "blocking.py"]
    assert offenders == [], "use edgebus.core.blocking.run_blocking"
