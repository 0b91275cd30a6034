"""The consumer's one delivery task and its timers; inactivity deletion.

Everything that arrives on the wire (acks, pull requests, flow-control replies, interest
changes, new-message signals) is handled synchronously and only *kicks* this task, which
delivers a burst, runs due timers (ack wait, heartbeats, pull expiry, pause, pin, inactivity,
state flush) and sleeps on one trio Event until kicked or the nearest timer. No task or channel
send happens per message.
"""

from __future__ import annotations

import random
from typing import Any

import trio

from ...core.blocking import run_blocking
from .common import STATE_RETRY, log


class TaskMixin:
    """The delivery task, timers and inactivity of `Consumer`."""

    def _wake(self) -> None:
        self._kick = True
        ev = self._event
        if ev is not None:
            ev.set()

    signal = _wake   # what the stream calls: a new message may be deliverable

    async def _run(self) -> None:
        assert self._scope is not None and self._done is not None
        try:
            with self._scope:
                while not self.closed:
                    try:
                        await self._loop()
                    except Exception:
                        # a bug must not leave a registered consumer that silently stopped
                        log.exception("consumer %s > %s failed; resuming", self.stream_name, self.name)
                        self._event = None
                        await trio.sleep(1.0)
        finally:
            self._done.set()

    async def _loop(self) -> None:
        while not self.closed:
            self._kick = False
            self._check_stream_config()
            self._check_store_changes()
            reason = await self._deliver_burst()
            if self.closed:
                return
            if reason == "yield":
                await trio.sleep(0)
                continue
            if self._replay and self.st.sseq > self._replay_lseq:
                self._replay = False
            if self.is_pull:
                self._process_waiting(eos=reason != "maxack")
            self._run_timers()
            if self._dirty and self._flush_at and self._now() >= self._flush_at:
                await self._flush()
                continue
            if self._kick:
                continue
            deadline = self._next_deadline()
            now = self._now()
            if deadline <= now:
                # timers just ran, so this is float rounding: never spin without yielding time
                deadline = now + 1e-6
            self._event = ev = trio.Event()
            with trio.move_on_at(deadline):
                await ev.wait()
            self._event = None
            self._run_timers()

    async def _flush(self) -> None:
        self._flush_at = 0.0
        if not self._dirty:
            return
        self._dirty = False
        if not self._persistent():
            return
        with_meta = self._cfg_dirty
        self._cfg_dirty = False
        snap = self._state_snapshot()
        try:
            await run_blocking(self._write_state_blocking, snap, with_meta)
        except OSError as e:
            # disk full or failing: the state stays dirty and is tried again in a second
            # (logged once per failing spell)
            if not self._state_write_failing:
                log.error("writing consumer state for %s > %s failed: %s", self.stream_name,
                          self.name, e.strerror or e)
            self._state_write_failing = True
            self._cfg_dirty = self._cfg_dirty or with_meta
            self._dirty = True
            self._flush_at = self._now() + STATE_RETRY
            self._wake()
        except Exception:
            log.exception("writing consumer state for %s > %s failed", self.stream_name, self.name)
        else:
            self._state_write_failing = False

    def _next_deadline(self) -> float:
        d = float("inf")
        for t in (self._ptmr_at, self._hb_at, self._dtmr_at, self._pause_at, self._flush_at, self._pin_at):
            if t and t < d:
                d = t
        if self.is_pull and self.waiting:
            for wr in self.waiting:
                if wr.expires and wr.expires < d:
                    d = wr.expires
                if wr.hbt and wr.hbt < d:
                    d = wr.hbt
        return d

    def _run_timers(self) -> None:
        if self.closed:
            return
        now = self._now()
        if self._ptmr_at and now >= self._ptmr_at:
            self._ptmr_at = 0.0
            self._check_pending()
        if self._hb_at and now >= self._hb_at:
            if self.active:
                self._send_idle_heartbeat(self.cfg.deliver_subject)
            self._hb_at = now + self.cfg.idle_heartbeat / 1e9
        if self._pin_at and now >= self._pin_at:
            self._pin_at = 0.0
            if self.pin_id:
                self.pin_id = ""
                self.advisories.unpinned(self._group_name(), "timeout")
                self._kick = True
        if self._pause_at and now >= self._pause_at:
            self._pause_at = 0.0
            self.advisories.pause(False, self.cfg.pause_until)
            self._kick = True
        if self.is_pull and self.waiting:
            # a request's expiry or heartbeat time came: nats-server's request timer then runs
            # processWaiting with eos, which ends a no_wait request (404) even while delivery
            # is stalled on max_ack_pending
            due = any((wr.expires and now >= wr.expires) or (wr.hbt and now >= wr.hbt)
                      for wr in self.waiting)
            self._process_waiting(eos=due)
        if self._dtmr_at and now >= self._dtmr_at:
            self._dtmr_at = 0.0
            self._delete_not_active()

    def _update_inactive_threshold(self) -> None:
        cfg = self.cfg
        if not cfg.durable_name and cfg.inactive_threshold <= 0:
            self.dthresh = 5.0 + 0.1 + random.random() * 0.9
            cfg.inactive_threshold = 5_000_000_000
        elif cfg.inactive_threshold > 0:
            t = cfg.inactive_threshold / 1e9
            self.dthresh = t + 0.1 + random.random() * 0.9 if self.is_pull else t
        else:
            self.dthresh = 0.0

    def _suppress_deletion(self) -> None:
        if self.dthresh <= 0:
            return
        now = self._now()
        if self.is_push:
            if self._dtmr_at:
                self._dtmr_at = now + self.dthresh
        else:
            self.waiting_last = now
            if self._dtmr_at:
                self._dtmr_at = now + self.dthresh

    def _delete_not_active(self) -> None:
        """deleteNotActive."""
        if self.closed:
            return
        now = self._now()
        if self.is_push:
            if self.active:
                return
        else:
            deadline = self.waiting_last + self.dthresh
            if now < deadline:
                self._dtmr_at = deadline
                return
            self._process_waiting(eos=True)
            if self.waiting:
                self._dtmr_at = now + self.dthresh
                return
            now_ns = self.clock.now_ns()
            delay = 0
            for seq, p in self.st.pending.items():
                ts = p[1] + self._ack_wait_for(seq) + int(self.dthresh * 1e9)
                if ts > now_ns:
                    delay = max(delay, ts - now_ns)
            if delay > 0:
                self._dtmr_at = now + delay / 1e9
                return
        log.debug("deleting inactive consumer %s > %s", self.stream_name, self.name)
        self.delete(advisory=True)
