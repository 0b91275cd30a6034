"""Pull requests: the waiting list of a pull consumer.

A `MSG.NEXT` request becomes a `PullRequest` (nats-server's waitingRequest) after
`parse_next_request` read its JSON; requests wait in `Consumer.waiting`, FIFO with round-robin
per message (nats-server waitQueue.pop). This part admits requests (limits, priority groups,
no_wait), picks the request the next message goes to, and ends requests: expiry (408), no_wait
with nothing left (404), batch/bytes done (409), and sends their heartbeats.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any

from ...codec.json_depth import loads
from ..advisories import nuid
from ..consumer_config import go_duration
from .common import pending_status, status

if TYPE_CHECKING:
    from ...core.client import Msg
    from .main import Consumer

class PullRequest:
    """A waiting pull request (nats-server waitingRequest). Times are trio seconds."""

    __slots__ = ("reply", "n", "d", "b", "expires", "received", "hb", "hbt", "no_wait", "max_bytes",
                 "group")

    def __init__(self, reply: str, n: int, b: int, expires: float, received: float, hb: float,
                 no_wait: bool, group: dict[str, Any] | None = None) -> None:
        self.reply = reply
        self.n = n                  # messages still wanted
        self.d = 0                  # messages delivered
        self.b = b                  # remaining byte budget (0 = unlimited)
        self.max_bytes = b
        self.expires = expires      # 0 = never
        self.received = received
        self.hb = hb                # heartbeat interval in seconds (0 = none)
        self.hbt = received + hb if hb else 0.0
        self.no_wait = no_wait
        self.group = group          # priority group request: group, min_pending, min_ack_pending, id


def parse_next_request(data: bytes, now: float) -> tuple[int, float, int, bool, float, dict[str, Any] | None]:
    """nextReqFromMsg: (batch, expires_at, max_bytes, no_wait, heartbeat_s, priority_group).

    Raises ValueError with nats-server's text for a bad JSON request."""
    req = data.strip()
    if not req:
        return 1, 0.0, 0, False, 0.0, None
    if req[:1] == b"{":
        try:
            d = loads(req)
        except ValueError as e:
            raise ValueError(str(e)) from None
        if not isinstance(d, dict):
            raise ValueError("json: cannot unmarshal into Go value of type server.JSApiConsumerGetNextRequest")

        def num(key: str) -> int:
            v = d.get(key)
            if v is None:
                return 0
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"json: cannot unmarshal {type(v).__name__} into Go struct field "
                                 f"JSApiConsumerGetNextRequest.{key}")
            return int(v)

        expires_ns = num("expires")
        batch = num("batch")
        max_bytes = num("max_bytes")
        hb_ns = num("idle_heartbeat")
        no_wait = bool(d.get("no_wait") or False)
        if hb_ns > 0 and hb_ns * 2 > expires_ns:
            raise ValueError("heartbeat value too large")
        # like nats-server, a JSON request always carries a (possibly empty) priority group
        group = {"group": d.get("group") or "", "min_pending": d.get("min_pending") or 0,
                 "min_ack_pending": d.get("min_ack_pending") or 0, "id": d.get("id") or ""}
        expires = now + expires_ns / 1e9 if expires_ns > 0 else 0.0
        return batch, expires, max_bytes, no_wait, hb_ns / 1e9, group
    try:
        return int(req), 0.0, 0, False, 0.0, None
    except ValueError:
        return 1, 0.0, 0, False, 0.0, None


class PullMixin:
    """The pull-request waiting list of `Consumer`."""

    def _on_next_request(self, sub: Any, msg: "Msg") -> None:
        if not msg.reply or self.closed:
            return
        self.process_next_request(msg.reply, bytes(msg.data))

    def process_next_request(self, reply: str, data: bytes) -> None:
        """processNextMsgRequest."""
        if self.closed:
            return
        if self.is_push:
            self._send(reply, None, status(409, "Consumer is push based"), b"")
            return
        now = self._now()
        try:
            batch, expires, max_bytes, no_wait, hb, group = parse_next_request(data, now)
        except ValueError as e:
            self._send(reply, None, status(400, f"Bad Request - {e}"), b"")
            return
        cfg = self.cfg
        if cfg.max_batch > 0 and batch > cfg.max_batch:
            self._send(reply, None, status(409, f"Exceeded MaxRequestBatch of {cfg.max_batch}"), b"")
            return
        if expires and cfg.max_expires > 0 and expires > now + cfg.max_expires / 1e9:
            self._send(reply, None, status(409, f"Exceeded MaxRequestExpires of {go_duration(cfg.max_expires)}"), b"")
            return
        if max_bytes > 0 and cfg.max_bytes > 0 and max_bytes > cfg.max_bytes:
            self._send(reply, None, status(409, f"Exceeded MaxRequestMaxBytes of {cfg.max_bytes}"), b"")
            return
        if group is not None:
            if (group["min_pending"] or group["min_ack_pending"]) and cfg.priority_policy != "overflow":
                self._send(reply, None, status(400, "Bad Request - Not a Overflow Priority consumer"), b"")
            if group["id"] and cfg.priority_policy != "pinned_client":
                self._send(reply, None, status(400, "Bad Request - Not a Pinned Client Priority consumer"), b"")
            if cfg.priority_policy != "none":
                if not group["group"]:
                    self._send(reply, None, status(400, "Bad Request - Priority Group missing"), b"")
                    return
                if group["group"] not in cfg.priority_groups:
                    self._send(reply, None, status(400, "Bad Request - Invalid Priority Group"), b"")
                    return
                if self.pin_id:
                    if group["id"] == self.pin_id:
                        self._pin_at = now + cfg.priority_timeout / 1e9
                    elif group["id"]:
                        self._send(reply, None, status(423, "Nats-Pin-Id mismatch"), b"")
                        return
        if batch <= 0:
            batch = 1
        if len(self.waiting) >= cfg.max_waiting > 0:
            self._process_waiting(eos=False)
        if no_wait:
            msgs_pending = self.num_pending() + len(self.rdq)
            if msgs_pending == 0 and not expires:
                self.waiting_last = now
                self._send(reply, None, status(404, "No Messages"), b"")
                return
            if msgs_pending > 0:
                brp = self._process_waiting(eos=False)
                if msgs_pending < brp:
                    self.waiting_last = now
                    self._send(reply, None, status(408, "Requests Pending"), b"")
                    return
        wr = PullRequest(reply, batch, max_bytes, expires, now, hb, no_wait, group)
        if cfg.max_waiting > 0 and len(self.waiting) >= cfg.max_waiting:
            if not hb:
                self._send(reply, None, status(409, "Exceeded MaxWaiting"), b"")
            return
        self.waiting.append(wr)
        self.waiting_last = now
        self._wake()

    def _next_waiting(self, sz: int, now: float | None = None) -> PullRequest | None:
        """nextWaiting: the request the next message goes to, FIFO with round-robin batches,
        honouring a pinned client or overflow thresholds when the consumer has a priority
        policy."""
        wq = self.waiting
        if now is None:
            now = self._now()
        sl = self.account.sublist
        policy = self.cfg.priority_policy
        cycled = 0
        while wq:
            wr = wq[0]
            if wr.b > 0:
                if sz <= wr.b:
                    wr.b -= sz
                    if wr.b == 0:
                        wr.n = 1
                else:
                    self._send(wr.reply, None,
                               pending_status(409, "Message Size Exceeds MaxBytes", wr.n, wr.b), b"")
                    wq.popleft()
                    continue
            if not wr.expires or now < wr.expires:
                new_pin = False
                rid = (wr.group or {}).get("id") or ""
                if policy == "pinned_client":
                    if not self.pin_id:
                        if rid:
                            self._send(wr.reply, None, status(423, "Nats-Wrong-Pin-Id"), b"")
                            wq.popleft()
                            continue
                        self.pin_id = nuid()
                        self.pin_ts = self.clock.now_ns()
                        self._pin_at = now + self.cfg.priority_timeout / 1e9
                        new_pin = True
                    elif rid != self.pin_id:
                        if not rid:
                            wq.rotate(-1)
                            cycled += 1
                            if cycled >= len(wq):
                                return None
                            continue
                        self._send(wr.reply, None, status(423, "Nats-Wrong-Pin-Id"), b"")
                        wq.popleft()
                        continue
                elif policy == "overflow" and wr.group is not None:
                    mp = int(wr.group.get("min_pending") or 0)
                    map_ = int(wr.group.get("min_ack_pending") or 0)
                    if (mp > 0 and mp > self.npc + 1) or (map_ > 0 and map_ > len(self.st.pending)):
                        wq.rotate(-1)
                        cycled += 1
                        if cycled >= len(wq):
                            return None
                        continue
                if sl.match(wr.reply):
                    if new_pin:
                        self.advisories.pinned(self._group_name(), self.pin_id)
                    self._took_from(wr, now)
                    return wr
                if new_pin:
                    self.pin_id = ""   # the would-be pinned client is gone: pick again
                    self._pin_at = 0.0
            else:
                self._send(wr.reply, None, pending_status(408, "Request Timeout", wr.n, wr.b), b"")
            wq.popleft()
        return None

    def _took_from(self, wr: PullRequest, now: float) -> None:
        """One message goes to `wr`, the head of the waiting list (both delivery paths): count
        it, and move `wr` to the back while it wants more (round robin per message, as
        nats-server's waitQueue.pop), its heartbeat timer restarted; else drop it."""
        wr.d += 1
        wr.n -= 1
        wq = self.waiting
        wq.popleft()
        if wr.n > 0:
            wq.append(wr)
            if wr.hb:
                wr.hbt = now + wr.hb

    def _all_take_alike(self, now: float, k: int) -> bool:
        """Whether every waiting request a run of `k` messages reaches takes messages the bulk
        path's simple way: no byte budget, not expired, and all on one inbox (so the run can be
        handed out with `_took_many`). Round robin, the run reaches the first `k` requests at
        most: those are all that are looked at."""
        wq = self.waiting
        if not wq:
            return False
        reply = wq[0].reply
        for wr in (wq if k >= len(wq) else islice(wq, k)):
            if wr.b > 0 or (wr.expires and now >= wr.expires) or wr.reply != reply:
                return False
        return True

    def _took_many(self, k: int, now: float) -> int:
        """Hand up to `k` messages to the waiting requests in one step, leaving every request
        (delivered and wanted counts, heartbeat time) and the order of the waiting list exactly
        as `k` calls of `_took_from` on the head would (round robin per message). For the bulk
        path, when every waiting request takes messages the same way (the caller checked:
        no byte budget, not expired, one inbox). Returns how many were handed out: `k`, or
        fewer when the requests want fewer in total."""
        wq = self.waiting
        if not wq or k <= 0:
            return 0
        if k < len(wq):
            # one round, not complete: each of the first k requests gets one and moves to the
            # back if it wants more (its heartbeat restarted), the rest are not touched
            pop = wq.popleft
            for _ in range(k):
                wr = pop()
                wr.d += 1
                wr.n -= 1
                if wr.n > 0:
                    wq.append(wr)
                    if wr.hb:
                        wr.hbt = now + wr.hb
            return k
        ns = [wr.n for wr in wq]
        total = sum(ns)
        if k >= total:
            # every request gets all it wants and is done
            for wr, n in zip(wq, ns):
                wr.d += n
                wr.n = 0
                if n > 1 and wr.hb:
                    wr.hbt = now + wr.hb
            wq.clear()
            return total
        # r complete rounds (each request with some left gets one per round, in list order),
        # then one more message for each of the first `rem` requests still wanting after them
        alive = len(ns)
        done = 0     # messages handed out by the complete rounds so far
        r = 0
        for v in sorted(set(ns)):
            step = (v - r) * alive
            if done + step > k:
                break
            done += step
            r = v
            alive -= ns.count(v)
        r += (k - done) // alive
        done = sum(n if n < r else r for n in ns)
        rem = k - done
        stay: list[PullRequest] = []
        served: list[PullRequest] = []
        for wr, n in zip(wq, ns):
            got = n if n < r else r
            if n > r and rem > 0:
                got += 1
                rem -= 1
                served.append(wr)
            elif got < n:
                stay.append(wr)
            wr.d += got
            wr.n = n - got
            if wr.hb and (got > 1 or (got and wr.n > 0)):
                wr.hbt = now + wr.hb   # (a serve that leaves it wanting more restarts it)
        # the requests served in the last partial round moved to the back (those done drop)
        wq.clear()
        wq.extend(stay)
        wq.extend(wr for wr in served if wr.n > 0)
        return k

    def _group_name(self) -> str:
        g = self.cfg.priority_groups
        return g[0] if g else ""

    def unpin(self, group: str) -> None:
        """CONSUMER.UNPIN: the next pull request gets a new pin."""
        self.pin_id = ""
        self._pin_at = 0.0
        self.advisories.unpinned(group, "admin")
        self._wake()

    def _process_waiting(self, eos: bool) -> int:
        """processWaiting: expire, answer finished no-wait requests, drop requests nobody
        listens to, send pull heartbeats. Returns the batch still wanted in total."""
        if not self.waiting:
            return 0
        now = self._now()
        sl = self.account.sublist
        keep: deque[PullRequest] = deque()
        brp = 0
        for wr in self.waiting:
            expired = bool(wr.expires) and now >= wr.expires
            if (eos and wr.no_wait) or expired:
                if expired:
                    self._send(wr.reply, None, pending_status(408, "Request Timeout", wr.n, wr.b), b"")
                    continue
                if not wr.expires or wr.d > 0:
                    self._send(wr.reply, None, status(404, "No Messages"), b"")
                    continue
            if not sl.match(wr.reply):
                continue
            brp += wr.n
            if wr.hbt and now >= wr.hbt:
                self._send_idle_heartbeat(wr.reply)
                wr.hbt = now + wr.hb
            keep.append(wr)
        self.waiting = keep
        return brp
