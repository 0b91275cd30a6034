"""The one way blocking work (file I/O, fsync, directory removal, bcrypt) leaves the event loop.

With trio's real clock the work runs in a worker thread, so the loop keeps serving clients
meanwhile. Under a virtual clock (`trio.testing.MockClock`, pytest-trio's `autojump_clock`) a
task waiting on a thread looks idle to trio, so the clock jumps to the next deadline while the
disk is being written: a client's 5 s request timeout fires while a file stream is still being
created (`STREAM.CREATE` -> TooSlowError), an AckWait elapses during an fsync. There the work runs
inline instead: virtual time is a test setting, and a few milliseconds of disk I/O stalling the
loop is harmless next to time that jumps.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, TypeVar

import trio

T = TypeVar("T")


def virtual_time() -> bool:
    """True when the running trio loop is driven by a MockClock."""
    testing = sys.modules.get("trio.testing")  # nobody made a MockClock without importing it
    return testing is not None and isinstance(trio.lowlevel.current_clock(), testing.MockClock)


async def run_blocking(fn: Callable[..., T], *args: Any, abandon_on_cancel: bool = False) -> T:
    """`fn(*args)` off the loop (a worker thread), or inline under a virtual clock; a
    checkpoint either way, like `trio.to_thread.run_sync` (whose `abandon_on_cancel` applies
    to the thread)."""
    if virtual_time():
        await trio.lowlevel.checkpoint_if_cancelled()
        result = fn(*args)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return result
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=abandon_on_cancel)
