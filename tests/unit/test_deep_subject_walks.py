"""Subjects as deep as a control line allows (nats-server's max_control_line, 4096 bytes, fits
about 2,000 tokens): every walk over tokens — the subject index, the MQTT retained index, subject
transforms, permissions, MQTT topic conversion, the leaf interest map — must handle them without
running into Python's recursion limit (1,000 frames)."""

from __future__ import annotations

import sys

from edgebus.codec import mqtt_topics
from edgebus.core.permissions import Permissions
from edgebus.core.sublist import Sublist, Subscription
from edgebus.core.transform import SubjectTransform
from edgebus.mqtt.retained import RetainedIndex, RetainedMsg

# a PUB control line "PUB <subject> 1" of 4,096 bytes carries 2,045 one-byte tokens
DEPTH = 2045
assert DEPTH > sys.getrecursionlimit()


def deep(first: str = "a", tok: str = "a", n: int = DEPTH) -> str:
    return ".".join([first] + [tok] * (n - 1))


def sub(subject: str, sid: str, queue: str | None = None) -> Subscription:
    return Subscription(object(), subject, queue, sid.encode())


def test_sublist_matches_deep_wildcard_subscriptions():
    s = Sublist()
    subs = [
        sub(".".join(["*"] * (DEPTH - 1) + [">"]), "stars-fwc"),
        sub(".".join(["*"] * DEPTH), "stars"),
        sub(deep(), "literal"),
        sub(".".join(["a"] * (DEPTH // 2) + ["*"] * (DEPTH - DEPTH // 2)), "half"),
        sub(".".join(["*"] * DEPTH), "q1", queue="q"),
        sub(deep(n=DEPTH + 1), "longer"),
    ]
    for x in subs:
        s.insert(x)
    r = s.match(deep())
    # nats-server's order: '>' first, then what lies under '*', then the literal branch
    assert [x.sid for x in r.psubs] == [b"stars-fwc", b"stars", b"half", b"literal"]
    assert [[x.sid for x in g] for g in r.qsubs] == [[b"q1"]]
    assert [x.sid for x in s.match(deep(tok="b")).psubs] == [b"stars-fwc", b"stars"]
    assert [x.sid for x in s.match(deep(n=DEPTH + 1)).psubs] == [b"stars-fwc", b"longer"]
    for x in subs:
        assert s.remove(x)
    assert s.count == 0 and s.root.empty()


def test_sublist_deep_branching_trie():
    """`*` and a literal at every level: the walk visits each node of the trie once."""
    s = Sublist()
    for k in range(0, DEPTH, 97):
        s.insert(sub(".".join(["a"] * k + ["*"] * (DEPTH - k)), f"s{k}"))
    got = s.match(deep())
    assert len(got.psubs) == len(range(0, DEPTH, 97))


def test_retained_index_matches_deep_filters():
    idx = RetainedIndex()
    subj = deep()
    idx.set(RetainedMsg(subj, subj.replace(".", "/"), b"x", 1))
    assert [m.subject for m in idx.match(".".join(["*"] * (DEPTH - 1) + [">"]))] == [subj]
    assert [m.subject for m in idx.match(".".join(["*"] * DEPTH))] == [subj]
    assert idx.match(".".join(["*"] * (DEPTH + 1))) == []
    assert idx.remove(subj) is not None


def test_transform_of_deep_subjects():
    t = SubjectTransform.compile(deep(tok="*"), ".".join(f"{{{{wildcard({i})}}}}"
                                                          for i in range(DEPTH - 1, 0, -1)))
    src = ".".join(["a"] + [str(i) for i in range(1, DEPTH)])
    assert t.match(src) == ".".join(str(i) for i in range(DEPTH - 1, 0, -1))
    fwc = SubjectTransform.compile("a.>", "b.>")
    assert fwc.match(deep()) == deep(first="b")


def test_permissions_on_deep_subjects():
    p = Permissions({"allow": [">"], "deny": [".".join(["a"] + ["*"] * (DEPTH - 1))]},
                    {"deny": [deep(tok="*")]})
    assert not p.can_publish(deep())
    assert p.can_publish(deep(n=DEPTH + 1))
    assert not p.can_subscribe(deep())
    assert p.needs_delivery_filter(".".join(["*"] * (DEPTH - 1) + [">"]))
    assert p.delivery_denied(deep())


def test_mqtt_topic_conversion_of_deep_topics():
    topic = "/".join(["a"] * DEPTH)
    assert mqtt_topics.topic_to_subject(topic) == deep()
    assert mqtt_topics.subject_to_topic(deep()) == topic
    fs = mqtt_topics.subscription_subjects("/".join(["+"] * (DEPTH - 1) + ["#"]))
    assert fs.subject == ".".join(["*"] * (DEPTH - 1) + [">"])
    assert fs.parent == ".".join(["*"] * (DEPTH - 1))


def test_deep_subjects_are_matched_afresh_not_cached():
    """A wildcard SUB/UNSUB walks every cached subject; subjects this long are not cached, so
    4,096 of them cannot make each SUB cost a walk over megabytes (it took ~0.6 s)."""
    s = Sublist()
    first = sub(".".join(["*"] * (DEPTH - 1) + [">"]), "first")
    s.insert(first)
    for i in range(50):
        assert [x.sid for x in s.match(deep(tok=str(i))).psubs] == [b"first"]
    assert not s.cache
    late = sub(".".join(["a"] + ["*"] * (DEPTH - 1)), "late")
    s.insert(late)
    assert [x.sid for x in s.match(deep(tok="7")).psubs] == [b"first", b"late"]
    s.remove(first)
    assert [x.sid for x in s.match(deep(tok="7")).psubs] == [b"late"]
    s.match("short.subject")
    assert list(s.cache) == [b"short.subject"]
