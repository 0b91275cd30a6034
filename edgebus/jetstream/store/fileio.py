"""The file store's writes and syncs, in one place, with a switch for tests to make them fail.

`FileStore` appends, erases and syncs only through `pwrite`, `fdatasync` and `fsync` here, and
turns their `OSError` into `StoreWriteError` (whose text is the errno's, as nats-server words
it: "no space left on device", never a path). Normally these are the `os` functions.

Tests (never the server) may switch on `FAULTS`, process-wide:

    FAULTS.fail_writes = errno.ENOSPC   # every pwrite fails until set back to 0
    FAULTS.fail_syncs = errno.EIO       # every fsync / fdatasync fails
    FAULTS.counting = True              # record, by file path, how far it was written
    FAULTS.written[path], FAULTS.synced[path]   # ... and how much of that a sync covered

The switch is plain data read on each call, so a test flips it and the running server sees it
at its next write. A real small filesystem (a size-limited tmpfs) exercises the same paths
without the switch; the switch also reaches the cases a filesystem cannot stage on demand (EIO,
a failed sync).
"""

from __future__ import annotations

import os
from typing import Callable

from .base import StoreError


class StoreWriteError(StoreError):
    """A write or sync of the file store failed (disk full, I/O error). `seqs` are the messages
    that had been accepted into the index but did not reach the file and were dropped again."""

    def __init__(self, err: OSError | str, seqs: tuple[int, ...] = ()) -> None:
        super().__init__(describe(err) if isinstance(err, OSError) else err)
        self.errno = err.errno if isinstance(err, OSError) else None
        self.seqs = seqs


def describe(err: OSError) -> str:
    """The errno's text as Go (and so nats-server) prints it: `no space left on device`."""
    if err.errno is None:
        return "write error"
    text = os.strerror(err.errno)
    return text[:1].lower() + text[1:]


class Faults:
    """The test switch (see the module docstring). All off by default."""

    def __init__(self) -> None:
        self.fail_writes = 0   # an errno: every pwrite fails with it
        self.fail_syncs = 0    # an errno: every fsync / fdatasync fails with it
        self.counting = False
        # by file path: the end of the furthest write, and that end as of the last sync
        self.written: dict[str, int] = {}
        self.synced: dict[str, int] = {}
        self.syncs = 0

    def reset(self) -> None:
        self.fail_writes = self.fail_syncs = self.syncs = 0
        self.counting = False
        self.written.clear()
        self.synced.clear()


FAULTS = Faults()


def _raise(code: int) -> None:
    raise OSError(code, os.strerror(code))


def _path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def pwrite(fd: int, data: bytes, offset: int) -> int:
    if FAULTS.fail_writes:
        _raise(FAULTS.fail_writes)
    n = os.pwrite(fd, data, offset)
    if FAULTS.counting:
        path = _path(fd)
        FAULTS.written[path] = max(FAULTS.written.get(path, 0), offset + n)
    return n


def _sync(fd: int, call: Callable[[int], None]) -> None:
    if FAULTS.fail_syncs:
        _raise(FAULTS.fail_syncs)
    if not FAULTS.counting:
        call(fd)
        return
    path = _path(fd)
    covered = FAULTS.written.get(path, 0)  # read before: a write during the call is not covered
    call(fd)
    FAULTS.syncs += 1
    FAULTS.synced[path] = max(FAULTS.synced.get(path, 0), covered)


def fdatasync(fd: int) -> None:
    _sync(fd, os.fdatasync)


def fsync(fd: int) -> None:
    _sync(fd, os.fsync)


def write_file(path: str, data: bytes) -> None:
    """Create or truncate `path`, write all of `data` to it and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        done = 0
        while done < len(data):
            done += pwrite(fd, data[done:], done)
        fsync(fd)
    finally:
        os.close(fd)
