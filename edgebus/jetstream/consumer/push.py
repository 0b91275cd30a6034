"""The push side: deliver-subject interest, idle heartbeats, flow control, rate limit.

A push consumer delivers while someone listens on its deliver subject (`_DeliverInterest`, one
sublist listener per account, nats-server's registerNotification); flow control pauses it once
`maxpb` bytes are outstanding until the client answers the FC request; `rate_limit_bps` is a
token bucket.
"""

from __future__ import annotations

import random
import weakref
from typing import TYPE_CHECKING, Any

from ...core.subject import is_literal, subject_matches
from .common import status

if TYPE_CHECKING:
    from ...core.client import Msg
    from ...core.sublist import Subscription
    from .main import Consumer

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class _DeliverInterest:
    """One sublist listener per account telling push consumers when interest on their deliver
    subject appears or goes away (nats-server's registerNotification)."""

    def __init__(self, sublist: Any) -> None:
        self.sublist = sublist
        self.by_subject: dict[str, set[Consumer]] = {}
        sublist.listeners.append(self._changed)

    def add(self, subject: str, consumer: "Consumer") -> None:
        self.by_subject.setdefault(subject, set()).add(consumer)

    def remove(self, subject: str, consumer: "Consumer") -> None:
        s = self.by_subject.get(subject)
        if s is not None:
            s.discard(consumer)
            if not s:
                del self.by_subject[subject]

    def _changed(self, sub: "Subscription", added: bool) -> None:
        if not self.by_subject:
            return
        subj = sub.subject
        if is_literal(subj):
            cons = self.by_subject.get(subj)
            if cons:
                for c in list(cons):
                    c._interest_changed()
            return
        for dsubj, cons in list(self.by_subject.items()):
            if subject_matches(dsubj, subj):
                for c in list(cons):
                    c._interest_changed()


_interest_watchers: "weakref.WeakKeyDictionary[Any, _DeliverInterest]" = weakref.WeakKeyDictionary()


def _interest_watcher(account: Any) -> _DeliverInterest:
    w = _interest_watchers.get(account)
    if w is None:
        w = _interest_watchers[account] = _DeliverInterest(account.sublist)
    return w


class PushMixin:
    """The push-side behaviour of `Consumer`."""

    def _interest_changed(self) -> None:
        if self.closed or not self.is_push:
            return
        interest = bool(self.account.sublist.match(self.cfg.deliver_subject))
        if interest and not self.active:
            self._wake()
        self.active = interest
        if self.dthresh > 0:
            if interest:
                self._dtmr_at = 0.0
            elif not self._dtmr_at:
                self._dtmr_at = self._now() + self.dthresh
                self._wake()

    def _send_idle_heartbeat(self, subject: str) -> None:
        items = [("Nats-Last-Consumer", str(self.st.dseq - 1)), ("Nats-Last-Stream", str(self.st.sseq - 1))]
        if self.fcid:
            items.append(("Nats-Consumer-Stalled", self.fcid))
        self._send(subject, None, status(100, "Idle Heartbeat", items), b"")

    def _set_max_pending_bytes(self, limit: int) -> None:
        self.pblimit = limit
        self.maxpb = max(limit // 16, 1)

    def _need_flow_control(self, sz: int) -> bool:
        if self.maxpb == 0:
            return False
        if not self.fcid and self.pbytes > self.maxpb // 2:
            return True
        if self.fcid and (self.pbytes - self.fcsz) >= self.maxpb:
            self.fcsz += sz
        return False

    def _send_flow_control(self) -> None:
        if not self.is_push:
            return
        rn = random.getrandbits(63)
        suffix = ""
        for _ in range(4):
            rn, r = divmod(rn, 62)
            suffix += _B62[r]
        self.fcid = self.fc_prefix + suffix
        self.fcsz = self.pbytes
        self._send(self.cfg.deliver_subject, self.fcid, status(100, "FlowControl Request"), b"")

    def _on_flow_control(self, sub: Any, msg: "Msg") -> None:
        if self.closed or msg.subject != self.fcid:
            return
        if self.maxpb < self.pblimit:
            self.maxpb = min(self.maxpb * 2, self.pblimit)
        self.pbytes = max(self.pbytes - self.fcsz, 0)
        self.fcid = ""
        self.fcsz = 0
        self._wake()

    def _rate_delay(self, sz: int) -> float:
        """Token bucket in bytes/s (rate_limit_bps / 8), burst = max message size."""
        rate = self.cfg.rate_limit_bps / 8
        if rate <= 0:
            return 0.0
        burst = getattr(self.stream.config, "max_msg_size", 0) or 0
        if burst <= 0:
            burst = self.broker.options.max_payload
        now = self._now()
        if self._rl_last == 0.0:
            self._rl_tokens = float(burst)
        else:
            self._rl_tokens = min(float(burst), self._rl_tokens + (now - self._rl_last) * rate)
        self._rl_last = now
        self._rl_tokens -= sz
        if self._rl_tokens >= 0:
            return 0.0
        return -self._rl_tokens / rate
