"""Edge uplink: push a local JetStream stream into a hub stream over a leaf remote.

A stock nats-server hub that *sources* an edge stream drives the transfer itself. When an
outage outlasts its 10 s health check, its create request is sent while the link is down and
lost; it waits 30 s for the answer and backs off, and a leaf reconnecting meanwhile does not
make it ask again, so after outages of 10-50 s it catches up 30-40 s after the link returns,
whatever the edge answers. An uplink is the edge-driven alternative, an edgebus option of a
remote (`uplinks: [{stream, subject_prefix, hub_stream}]`, see firmware-notes/leaf-sync.md):

- every message of the local stream is published, in stream order, as
  `<subject_prefix>.<subject>` with `Nats-Msg-Id: <server>.<stream>.<created>:<seq>.<ts>`
  (the publisher's own id, `Nats-Stream-Source`, `Nats-Expected-*` and `Nats-Batch-*` are
  dropped; `Nats-Expected-Stream: <hub_stream>` is added when set) and a reply subject on
  which the hub's stream answers with its PubAck;
- up to `max_pending` publishes are in flight; the acked floor (every sequence at or below it
  is acked, or gone from the local stream) only moves forward and is saved in the stream's
  metadata (`uplink-<prefix>`, in a worker thread: the file store fsyncs it) at once, then at
  most once a second, and when the uplink stops;
- when the link comes back, and when no ack arrived for `ack_wait`, sending starts again after
  the acked floor: the hub's duplicate window drops what it already stored (a PubAck with
  `duplicate`), so nothing is doubled, and a TCP link loses only a tail of what was sent, so
  the order is kept; a publish that reaches no one (the hub's interest not there yet) is
  tried again 50 ms later;
- after a restart (even a SIGKILL) it resumes from the saved floor (at most the stream's last
  sequence); what was acked after the last save is sent again and dropped as a duplicate (the
  hub stream's duplicate window, 2 minutes by default, must outlast the edge's restart).

One task per uplink in the leaf service's nursery; the stream's new-message listener and the
PubAcks only set fields and wake that task.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

import trio

from ..codec.headers import lines_without
from ..core.blocking import run_blocking
from ..core.client import InternalClient, Msg
from ..core.sublist import Subscription
from ..options import LeafUplink

if TYPE_CHECKING:
    from .service import LeafService

log = logging.getLogger("edgebus.leaf")

SAVE_EVERY = 1.0          # seconds between saves of the acked floor (an fsync on a file store)
NO_INTEREST_RETRY = 0.05  # a publish reached no one while the link is up: the hub's interest is on its way
NO_INTEREST_WARN = 5.0    # ... and if it still reaches no one after this long, say so once
STREAM_POLL = 0.1         # the configured stream does not exist (yet): look again (a dict lookup)
_B62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DROP_PREFIXES = (b"Nats-Expected-", b"Nats-Batch-")
_DROP_NAMES = (b"Nats-Msg-Id", b"Nats-Stream-Source")


def _nuid() -> str:
    return bytes(_B62[b % 62] for b in os.urandom(16)).decode()


def _strip(hdr: bytes | None) -> bytes | None:
    if not hdr:
        return None
    kept = lines_without(hdr, _DROP_NAMES, _DROP_PREFIXES)
    return b"\r\n".join(kept) + b"\r\n\r\n" if len(kept) > 1 else None


class Uplink:
    """One configured uplink (an `uplinks` entry of a leaf remote)."""

    def __init__(self, service: "LeafService", account_name: str, opts: LeafUplink) -> None:
        self.service = service
        self.broker = service.broker
        self.account_name = account_name
        self.opts = opts
        self.meta_name = "uplink-" + opts.subject_prefix
        self.stream: Any = None
        self.acked = 0          # the floor: every seq <= acked is acked (or gone locally)
        self.next = 1           # next sequence to send
        self.sent: dict[int, float] = {}   # in flight: seq -> trio time sent
        self.done: set[int] = set()        # acked above the floor
        self.link_up = False
        self.sent_total = 0
        self.resent_total = 0
        self.duplicates = 0
        self.errors = 0
        self.last_error = ""
        self.last_ack_at = 0.0
        self.down_since: float | None = None
        self._saved = -1
        self._no_interest_since: float | None = None
        self._warned = False
        self._wake = trio.Event()
        self._client: InternalClient | None = None
        self._sub: Subscription | None = None
        self._inbox = ""
        self._id_prefix = ""

    # -- wiring ---------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def set_link(self, up: bool) -> None:
        if up == self.link_up:
            return
        self.link_up = up
        if up:
            self._rewind()
        self.wake()

    def _on_new_msg(self, seq: int, subject: str) -> None:
        self.wake()

    def _rewind(self) -> None:
        """Send again everything after the acked floor (the hub drops what it has)."""
        if self.sent:
            self.resent_total += len(self.sent)
        self.sent.clear()
        self.done = {s for s in self.done if s > self.acked}
        self.next = self.acked + 1

    # -- the task -------------------------------------------------------------------------
    async def run(self) -> None:
        stream = await self._find_stream()
        self.stream = stream
        acc = stream.account
        self._id_prefix = f"{self.broker.server_name}.{stream.name}.{stream.created}:"
        self.acked = self._load_floor()
        self.next = self.acked + 1
        self._client = InternalClient(self.broker, acc, name=f"uplink {stream.name}")
        self._inbox = f"_INBOX.{_nuid()}."
        self._sub = self._client.subscribe(self._inbox + "*", self._on_ack)
        stream.new_msg_listeners.append(self._on_new_msg)
        self.link_up = bool(self.service.connected(acc.name))
        log.info("Uplink of stream %r to %s.> starting after sequence %d", stream.name,
                 self.opts.subject_prefix, self.acked)
        try:
            await self._loop()
        finally:
            with trio.CancelScope(shield=True):
                try:
                    self.stream.new_msg_listeners.remove(self._on_new_msg)
                except ValueError:
                    pass
                self._client.close()
                with trio.move_on_after(2):
                    await self._save(force=True)

    async def _find_stream(self) -> Any:
        while True:
            js = self.service.server.services.get("jetstream")
            jsa = js.accounts.get(self.account_name) if js is not None else None
            if jsa is not None:
                await jsa.ready.wait()
                s = jsa.streams.get(self.opts.stream)
                if s is not None and not getattr(s, "closed", False):
                    return s
            await trio.sleep(STREAM_POLL)

    async def _loop(self) -> None:
        last_save = float("-inf")  # the first progress is saved at once, then once a second
        while True:
            stream = self.stream
            if getattr(stream, "closed", False):
                # the stream was deleted or replaced: start over with whatever has that name
                stream.new_msg_listeners.remove(self._on_new_msg)
                self.stream = await self._find_stream()
                self.stream.new_msg_listeners.append(self._on_new_msg)
                self._id_prefix = f"{self.broker.server_name}.{self.stream.name}.{self.stream.created}:"
                self.acked = self._load_floor()
                self._saved = -1
                self._rewind()
                continue
            self._advance_floor()
            timeout = self._send()
            now = trio.current_time()
            if now - last_save >= SAVE_EVERY and self._saved != self.acked:
                await self._save()
                last_save = now
            elif self._saved != self.acked:
                timeout = min(timeout, SAVE_EVERY - (now - last_save))
            with trio.move_on_after(max(timeout, 0.0)):
                await self._wake.wait()
            self._wake = trio.Event()
            if self.sent and self.link_up:
                oldest = next(iter(self.sent.values()))  # sent in order: the first is the oldest
                if trio.current_time() - max(oldest, self.last_ack_at) >= self.opts.ack_wait:
                    log.debug("uplink %s: no ack for %.1fs, sending again after %d",
                              stream.name, self.opts.ack_wait, self.acked)
                    self._rewind()

    def _send(self) -> float:
        """Publish what the window allows; the seconds until we must look again."""
        if not self.link_up:
            return 3600.0
        stream = self.stream
        store = stream.store
        last = stream.lseq
        client = self._client
        assert client is not None
        prefix = self.opts.subject_prefix + "."
        inbox = self._inbox
        # the headers we add, as bytes once per call (this loop runs for every message)
        id_key = b"Nats-Msg-Id: " + self._id_prefix.encode()
        hub_stream = self.opts.hub_stream
        expected = (b"Nats-Expected-Stream: " + hub_stream.encode() + b"\r\n" if hub_stream else b"") + b"\r\n"
        limit = self.acked + self.opts.max_pending
        now = trio.current_time()
        while self.next <= last and self.next <= limit:
            seq = self.next
            if seq in self.done:
                self.next += 1
                continue
            m = store.load_msg(seq)
            if m is None:  # deleted or expired here: nothing to send
                self.done.add(seq)
                self.next += 1
                continue
            base = _strip(m.hdr) if m.hdr else None
            # the stored timestamp too: a sequence reused after the edge lost unsynced data
            # (a power cut) is a new message, not a duplicate of what the hub already has
            hdr = ((base[:-2] if base else b"NATS/1.0\r\n") + id_key + b"%d.%d\r\n" % (seq, m.ts)
                   + expected)
            if not client.publish(prefix + m.subject, inbox + str(seq), hdr, m.data):
                # nobody (yet) listens for it: the hub's stream interest is still on its way,
                # or no hub stream takes these subjects (said once, after a while)
                if self._no_interest_since is None:
                    self._no_interest_since = now
                elif now - self._no_interest_since > NO_INTEREST_WARN and not self._warned:
                    self._warned = True
                    log.warning("Uplink of stream %r: nothing on the hub takes %s> (is the hub "
                                "stream's subject %s> ?)", stream.name, prefix, prefix)
                return NO_INTEREST_RETRY
            self._no_interest_since = None
            self._warned = False
            self.sent[seq] = now
            self.sent_total += 1
            self.next += 1
        if self.sent:
            return self.opts.ack_wait
        return 3600.0

    def _on_ack(self, sub: Subscription, msg: Msg) -> None:
        try:
            seq = int(msg.subject.rsplit(".", 1)[1])
        except (ValueError, IndexError):
            return
        if seq not in self.sent:
            return  # an answer to a send we already gave up on (it is sent again)
        data = msg.data
        if data[:1] == b"{" and b'"error"' not in data:
            ack: Any = {"duplicate": True} if b'"duplicate":true' in data else {}
        else:
            try:
                ack = json.loads(data) if data else None
            except ValueError:
                ack = None
        if not isinstance(ack, dict) or "error" in ack:
            # no responders (a status header), or the hub refused it: keep it, send again later
            self.errors += 1
            self.last_error = (json.dumps(ack["error"]) if isinstance(ack, dict)
                               else (msg.hdr or b"").split(b"\r\n", 1)[0].decode("utf-8", "replace"))
            if self.errors == 1 or self.errors % 100 == 0:
                log.warning("Uplink of stream %r: the hub refused sequence %d: %s", self.stream.name,
                            seq, self.last_error)
            return
        if ack.get("duplicate"):
            self.duplicates += 1
        del self.sent[seq]
        self.done.add(seq)
        self.last_ack_at = trio.current_time()
        if seq == self.acked + 1:
            self.wake()

    def _advance_floor(self) -> None:
        a = self.acked
        done = self.done
        while a + 1 in done:
            a += 1
            done.discard(a)
        self.acked = a

    # -- the saved floor ------------------------------------------------------------------
    def _load_floor(self) -> int:
        try:
            raw = self.stream.store.read_meta(self.meta_name)
            if raw:
                d = json.loads(raw)
                if d.get("created") == self.stream.created:
                    # never past what the stream holds (it may have lost an unsynced tail)
                    return min(int(d.get("acked", 0)), self.stream.lseq)
        except (OSError, ValueError, TypeError, AttributeError):
            log.warning("uplink %s: unreadable saved position, starting from the beginning",
                        self.opts.stream)
        return 0

    async def _save(self, force: bool = False) -> None:
        s = self.stream
        if s is None or getattr(s, "closed", False) or (self._saved == self.acked and not force):
            return
        acked = self.acked
        blob = json.dumps({"acked": acked, "created": s.created}).encode()
        try:
            if getattr(s, "is_file", False):
                await run_blocking(s.store.write_meta, self.meta_name, blob)
            else:
                s.store.write_meta(self.meta_name, blob)
            self._saved = acked
        except Exception as e:  # a closed or failing store: resending is safe, losing is not
            log.warning("uplink %s: cannot save its position: %s", self.opts.stream, e)

    # -- monitoring -----------------------------------------------------------------------
    def backlog(self) -> int:
        """Messages of the local stream not yet acked by the hub."""
        s = self.stream
        if s is None:
            return 0
        last = s.lseq
        first = s.store.state().first_seq if last else 0
        return max(0, last - max(self.acked, first - 1))

    def info(self) -> dict[str, Any]:
        s = self.stream
        d: dict[str, Any] = {"stream": self.opts.stream, "subject_prefix": self.opts.subject_prefix,
                             "active": self.link_up, "acked_seq": self.acked,
                             "lag": self.backlog()}
        if self.opts.hub_stream:
            d["hub_stream"] = self.opts.hub_stream
        lag_ns = 0
        if s is not None and d["lag"]:
            m = s.store.load_next_msg(">", self.acked + 1)[0]
            if m is not None:
                lag_ns = max(0, self.broker.clock.now_ns() - m.ts)
        d["lag_ns"] = lag_ns
        d["saved_seq"] = max(self._saved, 0)  # where a restart would resume
        d["in_flight"] = len(self.sent)
        d["sent"] = self.sent_total
        d["resent"] = self.resent_total
        d["duplicates"] = self.duplicates
        if self.last_error:
            d["last_error"] = self.last_error
        return d
