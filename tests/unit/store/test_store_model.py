"""Hypothesis state machine: MemoryStore and FileStore against a deliberately naive model.

The model is a dict seq -> message with every rule written out the slow, obvious way
(nats-server semantics). Each backend is checked against its own model instance because byte
accounting (and so max_bytes eviction) differs between memory and file, as in nats-server.
The file store is also restarted at random, cleanly (index.db) or as after a crash (replay).
"""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from edgebus.jetstream.store.base import (
    DiscardPolicy,
    ErrMaxBytes,
    ErrMaxMsgs,
    ErrMaxMsgSize,
    ErrMaxMsgsPerSubject,
    LimitError,
    SimpleState,
    StoreLimits,
    StreamState,
)
from edgebus.jetstream.store.file import FileStore
from edgebus.jetstream.store.memory import MemoryStore
from edgebus.jetstream.store.subjects import subject_matches

S = 1_000_000_000
SUBJECTS = ["a", "b", "c.d", "c.e", "c.d.f"]
FILTERS = [">", "a", "c.*", "c.>", "*", "c.d.*", "nope"]
ROLLUP = b"NATS/1.0\r\nNats-Rollup: sub\r\n\r\n"


def mem_size(subj, hlen, dlen):
    return len(subj) + hlen + dlen + 16


def file_size(subj, hlen, dlen):
    return 30 + len(subj) + dlen + (4 + hlen if hlen else 0)


class Model:
    def __init__(self, size_fn):
        self.size_fn = size_fn
        self.msgs: dict[int, tuple[str, bytes | None, bytes, int, int]] = {}
        self.last = 0
        self.last_ts = 0
        self.efirst = 0
        self.limits = StoreLimits()

    # -- helpers
    def size(self, m):
        return self.size_fn(m[0], len(m[1] or b""), len(m[2]))

    @property
    def first(self):
        return min(self.msgs) if self.msgs else self.efirst

    def settle(self):
        if not self.msgs and self.last > 0:
            self.efirst = self.last + 1

    def bytes(self):
        return sum(self.size(m) for m in self.msgs.values())

    def subj_seqs(self, subj):
        return sorted(s for s, m in self.msgs.items() if m[0] == subj)

    def enforce(self):
        lim = self.limits
        if lim.discard != DiscardPolicy.OLD:
            return
        while lim.max_msgs > 0 and len(self.msgs) > lim.max_msgs:
            del self.msgs[min(self.msgs)]
        while lim.max_bytes > 0 and self.bytes() > lim.max_bytes and self.msgs:
            del self.msgs[min(self.msgs)]

    def enforce_subject(self, subj, maxp):
        seqs = self.subj_seqs(subj)
        for s in seqs[: max(0, len(seqs) - maxp)]:
            del self.msgs[s]

    # -- operations
    def store(self, subj, hdr, data, ts, ttl):
        lim = self.limits
        hdr = hdr or None
        m = (subj, hdr, data, ts, ttl)
        if lim.max_msg_size > 0 and len(hdr or b"") + len(data) > lim.max_msg_size:
            raise ErrMaxMsgSize()
        maxp = lim.max_msgs_per_subject
        seqs = self.subj_seqs(subj)
        asl = maxp > 0 and len(seqs) >= maxp
        if lim.discard == DiscardPolicy.NEW:
            if asl and lim.discard_new_per_subject and not (hdr and b"\r\nNats-Rollup:" in hdr):
                raise ErrMaxMsgsPerSubject()
            if lim.max_msgs > 0 and len(self.msgs) >= lim.max_msgs and not asl:
                raise ErrMaxMsgs()
            if lim.max_bytes > 0 and self.bytes() + self.size(m) > lim.max_bytes:
                if not asl or self.size(self.msgs[seqs[0]]) < self.size(m):
                    raise ErrMaxBytes()
        self.last += 1
        self.last_ts = ts
        self.msgs[self.last] = m
        if maxp > 0:
            self.enforce_subject(subj, maxp)
        self.enforce()
        self.settle()
        return self.last

    def remove(self, seq):
        ok = self.msgs.pop(seq, None) is not None
        self.settle()
        return ok

    def purge(self):
        n = len(self.msgs)
        self.msgs.clear()
        self.efirst = self.last + 1
        return n

    def compact(self, seq):
        if seq == 0:
            return self.purge()
        if self.first > seq:
            return 0
        if seq <= self.last:
            victims = [s for s in self.msgs if s < seq]
            for s in victims:
                del self.msgs[s]
            self.settle()
            return len(victims)
        n = len(self.msgs)
        self.msgs.clear()
        self.last = seq - 1
        self.efirst = seq
        return n

    def purge_ex(self, filt, seq, keep):
        if seq == 1:
            return 0
        if filt in ("", ">"):
            if keep == 0 and seq == 0:
                return self.purge()
            if seq > 1:
                return self.compact(seq)
        match = sorted(s for s, m in self.msgs.items() if subject_matches(m[0], filt or ">"))
        if keep:
            match = match[: max(0, len(match) - keep)]
        if seq:
            match = [s for s in match if s < seq]
        for s in match:
            del self.msgs[s]
        self.settle()
        return len(match)

    def truncate(self, seq):
        if seq == 0:
            self.msgs.clear()
            self.last = self.last_ts = self.efirst = 0
            return
        if seq >= self.last:
            return
        for s in [s for s in self.msgs if s > seq]:
            del self.msgs[s]
        if seq in self.msgs:
            self.last_ts = self.msgs[seq][3]
        self.last = seq
        if not self.msgs:
            self.efirst = seq + 1

    def skip(self, num):
        self.last += num
        self.settle()

    def expire(self, now):
        removed = []
        if self.limits.max_age > 0:
            for s in sorted(self.msgs):
                m = self.msgs[s]
                if m[3] > now - self.limits.max_age:
                    break
                if m[4] < 0:
                    continue
                removed.append(s)
        for s in removed:
            del self.msgs[s]
        ttl = [s for s, m in self.msgs.items() if m[4] > 0 and m[3] + m[4] * S <= now]
        for s in ttl:
            del self.msgs[s]
        self.settle()
        return sorted(removed + ttl)

    def next_expiry(self):
        cands = [m[3] + m[4] * S for m in self.msgs.values() if m[4] > 0]
        if self.limits.max_age > 0:
            for s in sorted(self.msgs):
                if self.msgs[s][4] < 0:
                    continue
                cands.append(self.msgs[s][3] + self.limits.max_age)
                break
        return min(cands) if cands else None

    def update(self, limits):
        old = self.limits
        self.limits = limits
        self.enforce()
        maxp = limits.max_msgs_per_subject
        if maxp > 0 and (old.max_msgs_per_subject <= 0 or maxp < old.max_msgs_per_subject):
            for subj in {m[0] for m in self.msgs.values()}:
                self.enforce_subject(subj, maxp)
        self.settle()

    # -- queries
    def state(self):
        first = self.first
        st = StreamState(msgs=len(self.msgs), bytes=self.bytes(), first_seq=first, last_seq=self.last, last_ts=self.last_ts)
        st.first_ts = self.msgs[first][3] if self.msgs else 0
        st.num_subjects = len({m[0] for m in self.msgs.values()})
        st.deleted = [s for s in range(first, self.last + 1) if s not in self.msgs] if self.msgs else []
        st.num_deleted = len(st.deleted)
        return st

    def contents(self):
        return [(s, m[0], m[1], m[2], m[3]) for s, m in sorted(self.msgs.items())]

    def matching(self, filt, start=0):
        return sorted(s for s, m in self.msgs.items() if s >= start and subject_matches(m[0], filt))

    def filtered_state(self, filt, start):
        seqs = self.matching(filt, start)
        return SimpleState(len(seqs), seqs[0], seqs[-1]) if seqs else SimpleState()

    def subjects_state(self):
        out = {}
        for s, m in sorted(self.msgs.items()):
            ss = out.setdefault(m[0], SimpleState(0, s, s))
            ss.msgs += 1
            ss.last = s
        return out

    def num_pending_lps(self, filt, start):
        return sum(1 for subj, ss in self.subjects_state().items() if subject_matches(subj, filt) and ss.last >= start)

    def multi_last(self, filters, max_seq):
        max_seq = max_seq or self.last
        out = set()
        for subj in self.subjects_state():
            if any(subject_matches(subj, f) for f in filters):
                seqs = [s for s in self.subj_seqs(subj) if s <= max_seq]
                if seqs:
                    out.add(seqs[-1])
        return sorted(out)


limits_st = st.builds(
    StoreLimits,
    max_msgs=st.sampled_from([-1, -1, 3, 8]),
    max_bytes=st.sampled_from([-1, -1, 200, 600]),
    max_age=st.sampled_from([0, 0, 5 * S, 20 * S]),
    max_msgs_per_subject=st.sampled_from([-1, -1, 1, 2]),
    max_msg_size=st.sampled_from([-1, -1, 12]),
    discard=st.sampled_from([DiscardPolicy.OLD, DiscardPolicy.NEW]),
    discard_new_per_subject=st.booleans(),
)


class StoreMachine(RuleBasedStateMachine):
    @initialize(limits=limits_st)
    def setup(self, limits):
        self.dir = tempfile.mkdtemp(prefix="edgebus-store-model-")
        self.now = 1_700_000_000 * S
        self.mem = MemoryStore(limits)
        self.file = FileStore(self.dir, limits, block_size=256)
        self.models = {"mem": Model(mem_size), "file": Model(file_size)}
        for m in self.models.values():
            m.limits = limits

    def teardown(self):
        try:
            self.file.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def pairs(self):
        return [(self.mem, self.models["mem"]), (self.file, self.models["file"])]

    @rule(subj=st.sampled_from(SUBJECTS), hdr=st.sampled_from([None, b"", b"NATS/1.0\r\n\r\n", ROLLUP]), data=st.binary(max_size=12),
          ttl=st.sampled_from([0, 0, 0, 3, 30, -1]), dt=st.integers(0, 3 * S))
    def store(self, subj, hdr, data, ttl, dt):
        self.now += dt
        for store, model in self.pairs():
            try:
                want = model.store(subj, hdr, data, self.now, ttl)
            except LimitError as e:
                want = type(e)
            try:
                got = store.store_msg(subj, hdr, data, self.now, ttl)[0]
            except LimitError as e:
                got = type(e)
            assert got == want

    @rule(items=st.lists(st.tuples(st.sampled_from(SUBJECTS), st.sampled_from([None, b"", b"NATS/1.0\r\n\r\n", ROLLUP]),
                                   st.binary(max_size=12), st.sampled_from([0, 0, 0, 3, -1]), st.integers(0, S)),
                         min_size=1, max_size=8))
    def store_batch(self, items):
        """A client read's worth of messages: the file store holds their records back and
        writes them in one go (as a stream does), which is the per-message `_append` path."""
        self.file.defer_writes = True
        try:
            for subj, hdr, data, ttl, dt in items:
                self.store(subj, hdr, data, ttl, dt)
        finally:
            self.file.defer_writes = False
        self.file.flush_writes()

    @rule(data=st.data(), erase=st.booleans())
    def remove(self, data, erase):
        seq = data.draw(st.integers(0, self.models["mem"].last + 2))
        for store, model in self.pairs():
            assert (store.erase_msg(seq) if erase else store.remove_msg(seq)) == model.remove(seq)

    @rule()
    def purge(self):
        for store, model in self.pairs():
            assert store.purge() == model.purge()

    @rule(data=st.data(), filt=st.sampled_from(FILTERS + [""]), mode=st.sampled_from(["seq", "keep", "none"]))
    def purge_ex(self, data, filt, mode):
        seq = data.draw(st.integers(0, self.models["mem"].last + 2)) if mode == "seq" else 0
        keep = data.draw(st.integers(0, 4)) if mode == "keep" else 0
        for store, model in self.pairs():
            assert store.purge_ex(filt, seq, keep) == model.purge_ex(filt, seq, keep)

    @rule(data=st.data())
    def compact(self, data):
        m = self.models["mem"]
        seq = data.draw(st.integers(0, m.last + 3))
        for store, model in self.pairs():
            assert store.compact(seq) == model.compact(seq)

    @rule(data=st.data())
    def truncate(self, data):
        seq = data.draw(st.integers(0, self.models["mem"].last))
        for store, model in self.pairs():
            store.truncate(seq)
            model.truncate(seq)

    @rule(num=st.integers(1, 3))
    def skip(self, num):
        for store, model in self.pairs():
            store.skip_msgs(0, num)
            model.skip(num)

    @rule(dt=st.integers(0, 40 * S))
    def expire(self, dt):
        self.now += dt
        for store, model in self.pairs():
            assert store.expire(self.now) == model.expire(self.now)

    @rule(limits=limits_st)
    def update_config(self, limits):
        for store, model in self.pairs():
            store.update_config(limits)
            model.update(limits)

    @rule(how=st.sampled_from(["clean", "crash", "replay", "sync"]))
    def restart_file(self, how):
        f = self.file
        if how == "sync":
            f.sync()
            return
        if how == "crash":
            with f._lock:
                f._close_fds()
                f._closed = True
        else:
            f.stop()
            if how == "replay":
                os.unlink(os.path.join(self.dir, "index.db"))
        self.file = FileStore(self.dir, f.limits, block_size=256)

    @rule(filt=st.sampled_from(FILTERS), data=st.data())
    def load_next(self, filt, data):
        start = data.draw(st.integers(0, self.models["mem"].last + 1))
        for store, model in self.pairs():
            m, nxt = store.load_next_msg(filt, start)
            want = model.matching(filt, start)
            if want:
                assert (m.seq, nxt) == (want[0], want[0] + 1)
                assert (m.subject, m.hdr, m.data, m.ts) == model.contents()[[c[0] for c in model.contents()].index(want[0])][1:]
            else:
                assert (m, nxt) == (None, model.last + 1)
            prev = store.load_prev_msg(filt, start)
            wantp = [s for s in model.matching(filt) if s <= start]
            assert (prev.seq if prev else None) == (wantp[-1] if wantp else None)

    @invariant()
    def agree(self):
        if not hasattr(self, "mem"):
            return
        for store, model in self.pairs():
            assert store.state(True) == model.state()
            assert [(m[0], m[1], m[2] or None, m[3], m[4]) for m in _contents(store)] == model.contents()
            assert store.subjects_state() == model.subjects_state()
            assert store.next_expiry() == model.next_expiry()
            start = model.first + 1
            for f in FILTERS:
                assert store.filtered_state(f, start) == model.filtered_state(f, start)
                assert store.num_pending(start, f) == len(model.matching(f, start))
                assert store.num_pending(start, f, last_per_subject=True) == model.num_pending_lps(f, start)
                last = store.load_last_msg(f)
                want = model.matching(f)
                assert (last.seq if last else None) == (want[-1] if want else None)
            assert store.multi_last_seqs(["c.>", "a"], model.last - 1) == model.multi_last(["c.>", "a"], model.last - 1)


def _contents(store):
    out, seq = [], 0
    while True:
        m, seq = store.load_next_msg(">", seq)
        if m is None:
            return out
        out.append((m.seq, m.subject, m.hdr, m.data, m.ts))


StoreMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=35,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_store_state_machine = StoreMachine.TestCase
