"""The one outbox of a connection, and the read batch of the connection whose read is handled.

`Outbox` is what NATS, MQTT and leaf connections share: the output buffer `out`, the bytes in
flight (handed to the stream, not yet taken by the kernel), `max_pending` and the slow consumer
rule, the write deadline, the wake-up, and the one writer loop. A connection kind mixes it in
and frames its messages into `out` through its own codec; `_before_send` lets a kind turn what
it gathered into bytes just before a send (the leaf link's LMSGs).

`ReadBatch` is the reader's "end of read". A reader owns one and opens it (`begin`) for each
read it handles; until `end` it is the current batch of the reader's task — a context variable,
which trio keeps per task (and Python per thread), so readers of other connections, other
servers' threads and tasks started meanwhile never see it. Output made meanwhile — by this
connection's messages, and by in-process work they trigger (a PubAck, a `$SYS` reply) — is not
sent by waking each writer task: the connections are listed and, when the read is handled
(`end`), written to straight from the reader (one send each, no task switch), after the
callbacks queued for that moment (`at_end_of_read`: a stream writing the read's messages to
its file before their PubAcks leave). The batch also collects the subscribers that fell
behind, for the publisher to wait on (`stall`: nats-server's fast-producer stall).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any, Callable

import trio

log = logging.getLogger("edgebus")

# a publisher waits at most this long per read for the subscribers it pushed past 3/4 of their
# max_pending (nats-server's stall)
STALL_MAX = 0.010


class ReadBatch:
    """What happens at the end of the read being handled (see the module docstring)."""

    __slots__ = ("flush", "stall", "at_end", "active")

    def __init__(self) -> None:
        self.flush: list[Outbox] = []
        self.stall: list[Outbox] = []
        self.at_end: list[Callable[[], None]] = []
        # open (begin..end) and not suspended: a task started during the read inherits the
        # context variable, but sees the batch only while its reader is handling that read
        self.active = False

    def begin(self) -> None:
        """The reader starts handling a read: this batch is current in its task."""
        self.active = True
        _reading.set(self)

    def suspend(self) -> None:
        """The reader is about to wait in the middle of a read (an asynchronous
        authentication): other tasks run meanwhile, so the end-of-read work so far is done
        now and the output so far sent."""
        try:
            self._run_at_end()
        finally:
            self.active = False
            self._send()

    def resume(self) -> None:
        self.active = True

    def end(self) -> None:
        """Run the queued callbacks, then send what the read produced."""
        try:
            self._run_at_end()
        finally:
            self.active = False
            _reading.set(None)
            self._send()

    def _send(self) -> None:
        flush, self.flush = self.flush, []
        for ob in flush:
            ob._flush()

    def _run_at_end(self) -> None:
        while self.at_end:
            cbs, self.at_end = self.at_end, []
            for cb in cbs:
                try:
                    cb()
                except Exception:
                    log.exception("end-of-read callback failed")

    async def wait_stalled(self) -> None:
        """Wait (STALL_MAX at most) for the subscribers this read pushed past 3/4 of their
        max_pending to drain below it."""
        targets, self.stall = self.stall, []
        with trio.move_on_after(STALL_MAX):
            for t in dict.fromkeys(targets):
                while not t.closing and len(t.out) + t.inflight > t._stall_at:
                    if t._drained is None:
                        t._drained = trio.Event()
                    await t._drained.wait()


# the batch of the read this task is handling (ReadBatch.begin/end)
_reading: ContextVar[ReadBatch | None] = ContextVar("edgebus_read_batch", default=None)


def current_read() -> ReadBatch | None:
    """The batch of the read being handled in this task, or None."""
    b = _reading.get()
    return b if b is not None and b.active else None


def at_end_of_read(cb: Callable[[], None]) -> bool:
    """Queue `cb` for the end of the read being handled; False when no read is (then the
    caller does its work at once)."""
    b = _reading.get()
    if b is None or not b.active:
        return False
    b.at_end.append(cb)
    return True


def in_read() -> bool:
    """Whether a connection's read is being handled right now (in this task)."""
    b = _reading.get()
    return b is not None and b.active


class Outbox:
    """The output side of a connection (mixed into NATS, MQTT and leaf connections).

    The host sets `stream`, `broker`, `account`, `cid`, `closing`, `close_reason` and
    implements `kill(reason)`; it calls `_outbox_init` in its constructor and runs `_writer`
    in its nursery. After appending to `out` it calls `_after_append()`."""

    out: bytearray
    inflight: int
    max_pending: int
    closing: bool
    close_reason: str
    stream: Any
    broker: Any
    account: Any
    cid: int
    _stall_at: int
    _drained: trio.Event | None
    # the close reason when the stream breaks under the writer
    _write_error_reason = "Client Closed"

    def _outbox_init(self, max_pending: int) -> None:
        self.out = bytearray()
        self.inflight = 0
        self.max_pending = max_pending
        # more than this pending makes a publisher wait a little for us (stall)
        self._stall_at = max_pending * 3 // 4
        self._drained = None
        self._piece = max(16384, min(1 << 20, max_pending // 4))  # bytes per send_all
        self._lot = trio.lowlevel.ParkingLot()
        self._parked = False  # the writer waits in _lot for output
        self._flush_queued = False
        self._scope: trio.CancelScope | None = None

    def kill(self, reason: str) -> None:
        raise NotImplementedError

    def settle(self) -> None:
        """Add the traffic counted so far to the account's figures (core.client.Client)."""

    def _before_send(self) -> None:
        """Turn what the kind gathered into bytes in `out` (the leaf link's LMSGs)."""

    def _stop_writing(self) -> bool:
        """True when nothing more may be written (a TLS client's close_notify was seen)."""
        return False

    async def _ready_to_write(self) -> bool:
        """Called before each write; False to look again first (the NATS connection lets its
        reader see a TLS close_notify that arrived meanwhile)."""
        return True

    # -- after an append ------------------------------------------------------------------
    def _after_append(self) -> None:
        """The slow consumer rule, the stall, and the wake-up, after output was appended."""
        pending = len(self.out) + self.inflight
        if pending > self._stall_at:
            if pending > self.max_pending:
                self.slow_consumer("Slow Consumer (Pending Bytes)")
                return
            b = _reading.get()
            if b is not None and b.active:  # falling behind: the publisher waits for us
                b.stall.append(self)
        if self._parked and not self._flush_queued:
            self._wake()

    def wake(self) -> None:
        """Output is waiting: see that it gets sent."""
        if self._parked and not self._flush_queued:
            self._wake()

    def _wake(self) -> None:
        """The writer is idle. If a read is being handled, the reader sends our output when it
        is done (one direct send for everything the read produced, no task switch);
        otherwise the writer task is woken."""
        b = _reading.get()
        if b is not None and b.active:
            self._flush_queued = True
            b.flush.append(self)
        else:
            self._parked = False
            self._lot.unpark()

    def _flush(self) -> None:
        """The end of a read that gave us output (ReadBatch.end)."""
        self._flush_queued = False
        if not self._parked:
            return  # the writer is already busy and will see the new output
        self._before_send()
        self.settle()
        out = self.out
        sock = self._raw_socket()
        if sock is not None and out and not self.closing:
            try:
                sent = sock.send(out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the writer will meet the error and close
            if sent == len(out):
                self.out = bytearray()
                return  # all taken by the kernel; the writer stays parked
            if sent:
                del out[:sent]
        self._parked = False
        self._lot.unpark()

    _raw_for: Any = None
    _raw: Any = None

    def _raw_socket(self) -> Any:
        """The non-blocking stdlib socket under a plain TCP stream (not TLS or WebSocket),
        for direct sends while the writer task is idle."""
        st = self.stream
        if st is not self._raw_for:
            self._raw_for = st
            self._raw = None
            if type(st) is trio.SocketStream:
                self._raw = getattr(st.socket, "_sock", None)
        return self._raw

    def _release_writer(self) -> None:
        """Closing: let the writer see it (it flushes what is pending, then ends)."""
        self._parked = False
        self._lot.unpark_all()

    # -- the writer -----------------------------------------------------------------------
    async def _writer(self) -> None:
        wd = self.broker.options.write_deadline
        late = False
        try:
            while True:
                if self._stop_writing():
                    break
                self._before_send()
                if not self.out:
                    if self.closing:
                        break
                    self._parked = True
                    await self._lot.park()
                    continue
                if not await self._ready_to_write():
                    continue
                self.settle()
                data = self.out
                self.out = bytearray()
                # hand the buffer to the stream in pieces, so `inflight` (counted as pending
                # against max_pending) is what the kernel has not taken yet, not all of it
                total = len(data)
                piece = self._piece
                with memoryview(data) as view:
                    off = 0
                    while off < total:
                        self.inflight = total - off
                        with trio.move_on_after(wd) as cs:
                            await self.stream.send_all(view[off:off + piece])
                        if cs.cancelled_caught:
                            late = True
                            break
                        off += piece
                        if self._drained is not None and \
                                len(self.out) + total - off <= self._stall_at:
                            self._drained.set()  # release stalled publishers
                            self._drained = None
                self.inflight = 0
                if late:
                    self.slow_consumer("Slow Consumer (Write Deadline)")
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.closing = True
            if not self.close_reason:
                self.close_reason = self._write_error_reason
        if self._scope is not None:
            self._scope.cancel()

    def slow_consumer(self, reason: str) -> None:
        """Pending output over max_pending, or a write past the deadline: count it, close at
        once (pending output dropped)."""
        self.broker.slow_consumers += 1
        self.account.slow_consumers += 1
        log.warning("Slow Consumer Detected: %s cid=%d", reason, self.cid)
        self.kill(reason)
