"""The subject index: wildcards, queue groups, opaque wildcard tokens in published subjects,
cache maintenance, pruning, nats-server's result order, and a hypothesis model test against
brute-force matching."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from edgebus.core import sublist as sl_mod
from edgebus.core.subject import (is_literal, subject_matches, subjects_collide, subset_match,
                                  valid_literal_subject, valid_subject)
from edgebus.core.sublist import EMPTY_RESULT, Sublist, Subscription


def sub(subject: str, queue: str | None = None, sid: str = "") -> Subscription:
    return Subscription(object(), subject, queue, (sid or subject).encode())


def names(subs) -> list[str]:
    return [s.sid.decode() for s in subs]


def index(*subs: Subscription) -> Sublist:
    s = Sublist()
    for x in subs:
        s.insert(x)
    return s


def ref_match(subject: str, filt: str) -> bool:
    """Brute force: does a subscription on `filt` receive a publish on `subject`?"""
    st_ = subject.split(".")
    if "" in st_:
        return False  # an empty token matches nothing
    ft = filt.split(".")
    for i, f in enumerate(ft):
        if f == ">":
            return len(st_) > i
        if i >= len(st_):
            return False
        if f != "*" and f != st_[i]:  # a '*'/'>' token in st_ equals no literal f
            return False
    return len(st_) == len(ft)


# -- wildcards ------------------------------------------------------------------------------

def test_wildcards():
    s = index(sub("a.b.c", sid="lit"), sub("a.*.c", sid="pwc"), sub("a.>", sid="fwc"),
              sub(">", sid="all"), sub("*.*", sid="two"), sub("a.*", sid="a1"))
    assert sorted(names(s.match("a.b.c").psubs)) == ["all", "fwc", "lit", "pwc"]
    assert sorted(names(s.match("a.b").psubs)) == ["a1", "all", "fwc", "two"]
    assert sorted(names(s.match("a").psubs)) == ["all"]  # a.> needs at least one more token
    assert sorted(names(s.match("x.y.z.w").psubs)) == ["all"]
    assert s.match("b") is not EMPTY_RESULT
    assert Sublist().match("anything") is EMPTY_RESULT


def test_tokens_containing_wildcard_characters_are_literal():
    s = index(sub("foo*", sid="1"), sub("a>b.c", sid="2"), sub("*", sid="3"))
    assert sorted(names(s.match("foo*").psubs)) == ["1", "3"]
    assert names(s.match("a>b.c").psubs) == ["2"]
    assert names(s.match("foox").psubs) == ["3"]


def test_opaque_wildcard_tokens_in_published_subjects():
    """nats.go publishes e.g. `$JS.API.CONSUMER.CREATE.S.c.$KV.b.>`: the '>' there is one
    opaque token, matched only by wildcard positions of subscriptions."""
    s = index(sub("foo.bar", sid="lit"), sub("foo.*", sid="pwc"), sub("foo.>", sid="fwc"),
              sub("foo.*.x", sid="deep"))
    assert sorted(names(s.match("foo.*").psubs)) == ["fwc", "pwc"]
    assert sorted(names(s.match("foo.>").psubs)) == ["fwc", "pwc"]
    assert sorted(names(s.match("foo.>.x").psubs)) == ["deep", "fwc"]
    api = index(sub("$JS.API.CONSUMER.CREATE.*.*.>", sid="api"),
                sub("$JS.API.CONSUMER.CREATE.KV_b.c.$KV.b.k", sid="key"))
    assert names(api.match("$JS.API.CONSUMER.CREATE.KV_b.c.$KV.b.>").psubs) == ["api"]


def test_empty_tokens_match_nothing():
    s = index(sub(">", sid="all"), sub("foo.>", sid="fwc"), sub("foo.*", sid="pwc"))
    for subj in ("foo.", ".foo", "foo..bar", "", ".", "foo.bar."):
        assert s.match(subj) is EMPTY_RESULT, subj
    assert subj not in s.cache  # not cached either


# -- queue groups ---------------------------------------------------------------------------

def test_queue_groups_are_grouped_by_name_across_nodes():
    s = index(sub("jobs.a", "w", "1"), sub("jobs.*", "w", "2"), sub("jobs.>", "v", "3"),
              sub("jobs.a", None, "4"), sub("jobs.a", "w", "5"))
    r = s.match("jobs.a")
    assert names(r.psubs) == ["4"]
    groups = {g[0].queue: sorted(names(g)) for g in r.qsubs}
    assert groups == {"w": ["1", "2", "5"], "v": ["3"]}
    assert s.match("jobs.b").qsubs and {g[0].queue for g in s.match("jobs.b").qsubs} == {"w", "v"}


def test_queue_member_removal():
    a, b = sub("q", "g", "a"), sub("q", "g", "b")
    s = index(a, b)
    assert sorted(names(s.match("q").qsubs[0])) == ["a", "b"]
    assert s.remove(a)
    assert names(s.match("q").qsubs[0]) == ["b"]
    assert s.remove(b)
    assert s.match("q") is EMPTY_RESULT
    assert not s.remove(b)  # already gone


# -- cache ----------------------------------------------------------------------------------

def test_cache_follows_inserts_and_removes():
    s = Sublist()
    assert s.match("a.b") is EMPTY_RESULT  # cached as "no interest"
    x = sub("a.*", sid="x")
    s.insert(x)
    assert names(s.match("a.b").psubs) == ["x"]
    y = sub("a.b", sid="y")
    s.insert(y)
    assert names(s.match("a.b").psubs) == ["x", "y"]
    s.remove(x)
    assert names(s.match("a.b").psubs) == ["y"]
    s.remove(y)
    assert s.match("a.b") is EMPTY_RESULT
    assert s.stats()["num_subscriptions"] == 0
    assert s.cache_hits > 0


def test_cached_result_is_not_mutated_in_place():
    s = index(sub("a", sid="1"))
    r1 = s.match("a")
    s.insert(sub("a", sid="2"))
    assert names(r1.psubs) == ["1"]  # a caller iterating r1 is unaffected
    assert names(s.match("a").psubs) == ["1", "2"]


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(sl_mod, "CACHE_MAX", 64)
    s = index(sub(">", sid="all"))
    for i in range(1000):
        assert names(s.match(f"s.{i}").psubs) == ["all"]
        assert len(s.cache) <= 64
    assert s.stats()["num_cache"] <= 64


def test_match_bytes_and_str_agree():
    s = index(sub("ü.*", sid="u"))
    assert names(s.match("ü.x").psubs) == ["u"]
    assert names(s.match_bytes("ü.x".encode()).psubs) == ["u"]


# -- order (what a connection with several matching subscriptions sees) ------------------

def test_fresh_result_order_is_nats_server_order():
    """Per level: '>' first, then what is below '*', then the literal token; at the last
    level the literal before the '*'."""
    s = index(sub("a.*.c", sid="1"), sub("a.>", sid="2"), sub(">", sid="3"),
              sub("a.b.c", sid="4"), sub("a.b.*", sid="5"), sub("*.b.c", sid="6"))
    assert names(s.match("a.b.c").psubs) == ["3", "6", "2", "1", "4", "5"]


def test_cached_result_order_is_arrival_order():
    """If the subject was looked up before, new subscriptions are appended to its cached
    result (nats-server's addToCache), so they come in the order they were made."""
    s = Sublist()
    s.match("a.b.c")
    for sid, subj in (("1", "a.*.c"), ("2", "a.>"), ("3", ">")):
        s.insert(sub(subj, sid=sid))
    assert names(s.match("a.b.c").psubs) == ["1", "2", "3"]
    s2 = index(sub("a.*.c", sid="1"), sub("a.>", sid="2"), sub(">", sid="3"))
    assert names(s2.match("a.b.c").psubs) == ["3", "2", "1"]


# -- removal and pruning ------------------------------------------------------------------

def test_removal_prunes_empty_nodes():
    s = Sublist()
    subs = [sub(f"_INBOX.{i}.x.y", sid=str(i)) for i in range(100)]
    subs += [sub("a.*.>", sid="w"), sub("a.*", "q", "q")]
    for x in subs:
        s.insert(x)
    for x in subs:
        assert s.remove(x)
    root = s.root
    assert not root.children and root.pwc is None and root.fwc is None
    assert root.empty() and s.count == 0


def test_remove_unknown_and_foreign_subscriptions():
    a = sub("a.b", sid="a")
    s = index(a)
    assert not s.remove(sub("a.b", sid="other"))
    assert not s.remove(sub("x.y", sid="x"))
    assert not s.remove(sub("a.b", "q", sid="a"))
    assert names(s.match("a.b").psubs) == ["a"]


def test_listeners_see_interest_changes():
    seen = []
    s = Sublist()
    s.listeners.append(lambda x, added: seen.append((x.sid, added)))
    a = sub("a", sid="a")
    s.insert(a)
    s.remove(a)
    assert seen == [(b"a", True), (b"a", False)]


# -- subject rules --------------------------------------------------------------------------

def test_subject_validity():
    for good in ("a", "a.b", "a.*", "a.>", ">", "*", "foo*", "a>b", "$JS.API.>", "ü.ö"):
        assert valid_subject(good), good
    for bad in ("", ".", "a.", ".a", "a..b", "a.>.b", ">.a", "a b", "a\tb"):
        assert not valid_subject(bad), bad
    assert valid_literal_subject("a.b") and valid_literal_subject("foo*")
    assert not valid_literal_subject("a.*") and not valid_literal_subject("a.>")
    assert not valid_literal_subject("a..b")
    assert is_literal("a.b") and not is_literal("a.*")


def test_subject_relations():
    assert subject_matches("a.b", "a.*") and subject_matches("a.b.c", "a.>")
    assert not subject_matches("a", "a.>") and subject_matches("x", ">")
    assert subset_match("a.b", "a.*") and subset_match("a.*", "a.>")
    assert not subset_match("a.>", "a.*") and not subset_match("a.*", "a.b")
    assert subjects_collide("a.*", "*.b") and subjects_collide("a.>", "a.b.c")
    assert not subjects_collide("a.*", "b.*") and not subjects_collide("a.*", "a.b.c")


# -- model test: the index against brute force ------------------------------------------

TOKENS = ["a", "b", "c", "*", ">"]
sub_subjects = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=4).map(".".join).filter(
    valid_subject)
pub_subjects = st.one_of(
    st.lists(st.sampled_from(TOKENS + [""]), min_size=1, max_size=5).map(".".join),
    st.sampled_from(["a.", ".a", "a..b"]))


class SublistModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sl = Sublist()
        self.live: list[Subscription] = []
        self.n = 0

    @rule(subject=sub_subjects, queue=st.sampled_from([None, None, "q1", "q2"]))
    def insert(self, subject, queue):
        self.n += 1
        x = Subscription(object(), subject, queue, str(self.n).encode())
        self.sl.insert(x)
        self.live.append(x)

    @rule(i=st.integers(min_value=0, max_value=10_000))
    def remove(self, i):
        if self.live:
            x = self.live.pop(i % len(self.live))
            assert self.sl.remove(x)

    @rule(subject=pub_subjects)
    def match(self, subject):
        r = self.sl.match(subject)
        want = [x for x in self.live if ref_match(subject, x.subject)]
        assert sorted(names(r.psubs)) == sorted(names(x for x in want if x.queue is None))
        groups = {}
        for x in want:
            if x.queue is not None:
                groups.setdefault(x.queue, []).append(x.sid.decode())
        got = {g[0].queue: sorted(names(g)) for g in r.qsubs}
        assert got == {q: sorted(v) for q, v in groups.items()}
        # each subscription at most once
        assert len(r.psubs) == len(set(map(id, r.psubs)))

    @invariant()
    def counts(self):
        assert self.sl.count == len(self.live)
        if not self.live:
            assert self.sl.root.empty()


TestSublistModel = SublistModel.TestCase
TestSublistModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@pytest.mark.parametrize("pattern,could", [
    ("$JS.ACK.S.C.*.*.*.*.*", True), ("$JS.ACK.>", True), ("$JS.>", True), (">", True),
    ("*.>", True), ("*.*.*.*.*.*.*.*.*", True), ("$JS.*.a.b.c.d.e.f.g", True),
    ("$JS.API.>", False), ("*.*.*", False), ("$JS.ACK.S.C.1.2.3.4.5.6", False),
    ("foo.>", False), ("$JS.ACK.S.C.*.*.*.*", False), ("$KV.ACK.>", False),
])
def test_family_interest_counts_what_could_match_a_subject_of_the_family(pattern, could):
    # the family JetStream declares for its acks: $JS.ACK.<stream>.<consumer>.<5 tokens>
    sl = Sublist()
    sl.set_prefix_family(b"$JS.ACK.", 2, 5)
    s = Subscription(object(), pattern, None, b"1")  # type: ignore[arg-type]
    sl.insert(s)
    assert sl.family_interest == (1 if could else 0)
    sl.remove(s)
    assert sl.family_interest == 0


def test_family_declared_late_counts_existing_subscriptions():
    sl = Sublist()
    sl.insert(Subscription(object(), ">", None, b"1"))  # type: ignore[arg-type]
    sl.set_prefix_family(b"$JS.ACK.", 2, 5)
    assert sl.family_interest == 1


def test_prefix_match_only_while_nothing_else_could_match():
    sl = Sublist()
    sl.set_prefix_family(b"$JS.ACK.", 2, 5)
    own = Subscription(object(), "$JS.ACK.S.C.*.*.*.*.*", None, b"1")  # type: ignore[arg-type]
    sl.insert(own)
    sl.add_prefix(b"$JS.ACK.S.C.", own)
    assert sl.prefix_match(b"$JS.ACK.S.C.1.2.3.4.5") is own
    for miss in (b"$JS.ACK.S.C.1.2.3.4", b"$JS.ACK.S.C.1.2.3.4.5.6", b"$JS.ACK.S.D.1.2.3.4.5",
                 b"$JS.ACK.S.C.1..3.4.5", b"$JS.ACK.S.C.1.2.3.4.", b"foo.bar"):
        assert sl.prefix_match(miss) is None, miss
    other = Subscription(object(), "$JS.ACK.>", None, b"2")  # type: ignore[arg-type]
    sl.insert(other)
    assert sl.prefix_match(b"$JS.ACK.S.C.1.2.3.4.5") is None  # now two are interested
    sl.remove(other)
    assert sl.prefix_match(b"$JS.ACK.S.C.1.2.3.4.5") is own
    sl.remove_prefix(b"$JS.ACK.S.C.", own)
    assert sl.prefix_match(b"$JS.ACK.S.C.1.2.3.4.5") is None
