"""Tests for MQTT topic/filter <-> NATS subject mapping (edgebus.codec.mqtt_topics).

Unless marked otherwise, every expected value in these tables was observed on
a live nats-server v2.15.1 (MQTT publisher -> NATS ``SUB >`` subscriber for
topics, NATS ``PUB`` -> MQTT ``#`` subscriber for subjects, SUBACK codes and
per-filter deliveries for filters).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.codec.mqtt_topics import (
    PARENT_SID_SUFFIX,
    RESERVED_SUBJECT_PREFIX,
    FilterSubjects,
    TopicError,
    filter_to_subject,
    is_spec_valid_filter,
    is_wildcard_first,
    parent_subject,
    subject_to_topic,
    subscription_subjects,
    topic_to_subject,
)

# MQTT topic -> NATS subject (PUBLISH).
TOPIC_TO_SUBJECT = [
    ("foo", "foo"),
    ("foo/bar", "foo.bar"),
    ("/foo", "/.foo"),
    ("foo/", "foo./"),
    ("foo//bar", "foo./.bar"),
    ("/", "/./"),
    ("//", "/././"),
    ("///", "/./././"),
    ("a//", "a././"),
    ("foo.bar", "foo//bar"),
    ("a..b", "a////b"),
    (".", "//"),
    ("./", "//./"),
    ("/.", "/.//"),
    ("a/./b", "a.//.b"),
    ("a.//b", "a//./.b"),
    ("a/b.c/d", "a.b//c.d"),
    ("é/ü", "é.ü"),
    ("x/$y", "x.$y"),
    ("$SYS/x", "$SYS.x"),
    ("a*b", "a*b"),  # NATS wildcard characters pass through inside a token
    ("a>b", "a>b"),
    ("a\\b", "a\\b"),
    ("a\x01b", "a\x01b"),  # only whitespace and DEL are refused
]

REJECTED_TOPICS = [
    "",
    "a+b",
    "a#b",
    "+",
    "a/#",
    "a b",
    " ",
    "a\tb",
    "a\x7fb",
    # Not tried live; same `case` in mqttToNATSSubjectConversion as '\t'.
    "a\nb",
    "a\rb",
    "a\fb",
]

# NATS subject -> MQTT topic (delivery to MQTT subscribers).
SUBJECT_TO_TOPIC = [
    ("a.b", "a/b"),
    ("a/b", "ab"),  # a lone '/' is dropped
    ("a/.b", "a/b"),
    ("a//b", "a.b"),
    ("a.//.b", "a/./b"),
    ("/./", "/"),
    ("a./", "a/"),
    ("/.a", "/a"),
    ("a/", "a"),
    ("/", ""),
    ("//", "."),
    ("a.b/", "a/b"),
    ("/a", "a"),
    ("a///b", "a.b"),
    ("$foo.bar", "$foo/bar"),
    ("a>b", "a>b"),
    ("a#", "a#"),
    ("foo", "foo"),
]


@pytest.mark.parametrize(("topic", "subject"), TOPIC_TO_SUBJECT)
def test_topic_to_subject(topic: str, subject: str) -> None:
    assert topic_to_subject(topic) == subject
    assert filter_to_subject(topic) == subject


@pytest.mark.parametrize(("topic", "subject"), TOPIC_TO_SUBJECT)
def test_subject_to_topic_reverses_topics(topic: str, subject: str) -> None:
    assert subject_to_topic(subject) == topic


@pytest.mark.parametrize("topic", REJECTED_TOPICS)
def test_rejected_publish_topics(topic: str) -> None:
    with pytest.raises(TopicError):
        topic_to_subject(topic)


@pytest.mark.parametrize(("subject", "topic"), SUBJECT_TO_TOPIC)
def test_subject_to_topic(subject: str, topic: str) -> None:
    assert subject_to_topic(subject) == topic


@pytest.mark.parametrize(
    ("topic_filter", "subject"),
    [
        ("#", ">"),
        ("+", "*"),
        ("a/+/c", "a.*.c"),
        ("a/#", "a.>"),
        ("+/#", "*.>"),
        ("/#", "/.>"),
        ("+/", "*./"),
        ("a+", "a*"),  # character-wise, as nats-server
        ("a/b#", "a.b>"),
        ("a.b/#", "a//b.>"),
        ("#/", ">./"),
    ],
)
def test_filter_to_subject(topic_filter: str, subject: str) -> None:
    assert filter_to_subject(topic_filter) == subject


@pytest.mark.parametrize("topic_filter", ["", "a b", "a\t#", "#\x7f", "a/\n"])
def test_filter_conversion_errors(topic_filter: str) -> None:
    with pytest.raises(TopicError):
        filter_to_subject(topic_filter)


# SUBSCRIBE: True when nats-server grants the filter, False for SUBACK 0x80.
SUBACK = [
    ("#", True),
    ("+", True),
    ("+/#", True),
    ("a/#", True),
    ("/#", True),
    ("+/", True),
    ("a/", True),
    ("a//c", True),
    ("$foo/#", True),
    ("$MQTT", True),  # "$MQTT" is not under "$MQTT."
    ("$MQTX/#", True),
    ("a#", True),  # literal subject "a>"
    ("a+", True),  # literal subject "a*"
    ("a/b#", True),
    ("a/#/b", False),  # '>' not last
    ("#/a", False),
    ("#/", False),
    ("$MQTT/msgs/#", False),  # internal subjects
    ("$MQTT/sub/x", False),
    ("a b", False),
    ("a\tb", False),
]


@pytest.mark.parametrize(("topic_filter", "granted"), SUBACK)
def test_subscription_subjects_matches_nats_server_suback(topic_filter: str, granted: bool) -> None:
    if granted:
        assert isinstance(subscription_subjects(topic_filter), FilterSubjects)
    else:
        with pytest.raises(TopicError):
            subscription_subjects(topic_filter)


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("#", FilterSubjects(">", None, True)),
        ("+", FilterSubjects("*", None, True)),
        ("+/#", FilterSubjects("*.>", "*", True)),
        ("+/a", FilterSubjects("*.a", None, True)),
        ("a/#", FilterSubjects("a.>", "a", False)),
        ("a/+/#", FilterSubjects("a.*.>", "a.*", False)),
        ("/#", FilterSubjects("/.>", "/", False)),
        ("$SYS/#", FilterSubjects("$SYS.>", "$SYS", False)),
        ("a/+", FilterSubjects("a.*", None, False)),
        ("a", FilterSubjects("a", None, False)),
    ],
)
def test_subscription_subjects_details(topic_filter: str, expected: FilterSubjects) -> None:
    assert subscription_subjects(topic_filter) == expected


def test_constants() -> None:
    assert PARENT_SID_SUFFIX == " fwc"
    assert RESERVED_SUBJECT_PREFIX == "$MQTT."


@pytest.mark.parametrize(
    ("subject", "parent"),
    [("a.>", "a"), ("*.>", "*"), ("/.>", "/"), ("a.b.>", "a.b"), (">", None), ("a>", None), ("a.*", None), (".>", None)],
)
def test_parent_subject(subject: str, parent: str | None) -> None:
    assert parent_subject(subject) == parent


@pytest.mark.parametrize(
    ("subject", "expected"),
    [(">", True), ("*", True), ("*.a", True), ("*.>", True), ("*a", False), ("a.*", False), ("a.>", False), ("$x", False)],
)
def test_is_wildcard_first(subject: str, expected: bool) -> None:
    assert is_wildcard_first(subject) is expected


def test_delivers_hides_dollar_subjects_from_wildcard_first_filters() -> None:
    assert not subscription_subjects("#").delivers("$SYS.x")
    assert not subscription_subjects("+/x").delivers("$SYS.x")
    assert subscription_subjects("#").delivers("SYS.x")
    assert subscription_subjects("$SYS/#").delivers("$SYS.x")
    assert subscription_subjects("a/+").delivers("a.$y")


# --------------------------------------------------------------------------
# Which filters receive which topics, end to end.  Observed on nats-server
# with one MQTT subscriber per filter and MQTT publishes of each topic.
# --------------------------------------------------------------------------

MATRIX_FILTERS = [
    "#", "+", "+/#", "+/y", "a/#", "a/+", "a", "a/+/c", "/#", "+/+", "$x/#", "$x/+",
    "a/b/#", "a.b/#", "/+", "+/", "a/", "a//c", "a/+/+",
]  # fmt: skip

DELIVERIES = {
    "a": ["#", "+", "+/#", "a/#", "a"],
    "a/b": ["#", "+/#", "a/#", "a/+", "+/+", "a/b/#"],
    "a/b/c": ["#", "+/#", "a/#", "a/+/c", "a/b/#", "a/+/+"],
    "a/$y": ["#", "+/#", "a/#", "a/+", "+/+"],
    "$x": ["$x/#"],
    "$x/y": ["$x/#", "$x/+"],
    "/a": ["#", "+/#", "/#", "+/+", "/+"],
    "/": ["#", "+/#", "/#", "+/+", "/+", "+/"],
    "a/": ["#", "+/#", "a/#", "a/+", "+/+", "+/", "a/"],
    "a//c": ["#", "+/#", "a/#", "a/+/c", "a//c", "a/+/+"],
    "x/y": ["#", "+/#", "+/y", "+/+"],
    "a.b": ["#", "+", "+/#", "a.b/#"],
    "a.b/c": ["#", "+/#", "+/+", "a.b/#"],
    "y": ["#", "+", "+/#"],
    "x/y/z": ["#", "+/#"],
    "//": ["#", "+/#", "/#"],
}


def nats_match(pattern: str, subject: str) -> bool:
    """NATS sublist semantics: '*' one token, '>' one or more trailing tokens."""
    ptoks, stoks = pattern.split("."), subject.split(".")
    for i, ptok in enumerate(ptoks):
        if ptok == ">":
            return len(stoks) > i
        if i >= len(stoks) or (ptok != "*" and ptok != stoks[i]):
            return False
    return len(ptoks) == len(stoks)


def delivered_via_nats(topic_filter: str, topic: str) -> bool:
    """Model of nats-server: main + parent subscription, then the '$' rule."""
    subs = subscription_subjects(topic_filter)
    subject = topic_to_subject(topic)
    matched = nats_match(subs.subject, subject) or (
        subs.parent is not None and nats_match(subs.parent, subject)
    )
    return matched and subs.delivers(subject)


def spec_match(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 section 4.7 matching, straight from the spec."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False  # [MQTT-4.7.2-1]
    flevels, tlevels = topic_filter.split("/"), topic.split("/")
    for i, flevel in enumerate(flevels):
        if flevel == "#":
            return True  # also matches the parent level
        if i >= len(tlevels) or (flevel != "+" and flevel != tlevels[i]):
            return False
    return len(flevels) == len(tlevels)


@pytest.mark.parametrize("topic", sorted(DELIVERIES))
def test_delivery_matrix_matches_nats_server(topic: str) -> None:
    got = [f for f in MATRIX_FILTERS if delivered_via_nats(f, topic)]
    assert got == DELIVERIES[topic]
    # The spec says the same for all of these filters.
    assert [f for f in MATRIX_FILTERS if spec_match(f, topic)] == DELIVERIES[topic]


@pytest.mark.parametrize(
    ("topic_filter", "valid"),
    [
        ("#", True),
        ("+", True),
        ("a/#", True),
        ("+/+/#", True),
        ("/", True),
        ("a//+", True),
        ("", False),
        ("a#", False),
        ("a/#/b", False),
        ("#/", False),
        ("a+", False),
        ("a/+b", False),
        ("++", False),
    ],
)
def test_is_spec_valid_filter(topic_filter: str, valid: bool) -> None:
    assert is_spec_valid_filter(topic_filter) is valid


# --------------------------------------------------------------------------
# Properties.
# --------------------------------------------------------------------------

_level_chars = st.sampled_from(["a", "b", ".", "$", "é", "x"])
_level = st.lists(_level_chars, max_size=3).map("".join)
_topic = st.lists(_level, min_size=1, max_size=5).map("/".join).filter(bool)
_filter_level = st.one_of(_level, st.just("+"))


@st.composite
def _spec_filter(draw: st.DrawFn) -> str:
    levels = draw(st.lists(_filter_level, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    text = "/".join(levels)
    return text or "#"


@settings(max_examples=500)
@given(topic=_topic)
def test_round_trip_property(topic: str) -> None:
    subject = topic_to_subject(topic)
    assert subject_to_topic(subject) == topic
    # Levels map one to one onto non-empty tokens.
    tokens = subject.split(".")
    assert len(tokens) == len(topic.split("/"))
    assert all(tokens)


@settings(max_examples=1000)
@given(topic_filter=_spec_filter(), topic=_topic)
def test_nats_mapping_implements_mqtt_matching(topic_filter: str, topic: str) -> None:
    assert is_spec_valid_filter(topic_filter)
    assert delivered_via_nats(topic_filter, topic) == spec_match(topic_filter, topic)


@settings(max_examples=500)
@given(text=st.text(max_size=12))
def test_conversion_never_raises_anything_but_topic_error(text: str) -> None:
    for convert in (topic_to_subject, filter_to_subject, subscription_subjects):
        try:
            convert(text)
        except TopicError:
            pass
    subject_to_topic(text)
