"""MQTT topic names/filters <-> NATS subjects, with nats-server's exact rules.

nats-server (``server/mqtt.go``: ``mqttToNATSSubjectConversion``,
``natsSubjectToMQTTTopic``, ``mqttNeedSubForLevelUp``,
``isMQTTReservedSubscription``) maps MQTT onto NATS subjects so MQTT and NATS
clients share one subject space.  Forward mapping, level by level:

==================  =====================  ===============================
MQTT                NATS                   why
==================  =====================  ===============================
``a/b``             ``a.b``                ``/`` separates levels, ``.`` tokens
empty level         ``/`` token            NATS tokens cannot be empty
``.`` in a level    ``//``                 ``.`` is the NATS separator
``+``               ``*``                  (filters only; any ``+`` char)
``#``               ``>``                  (filters only; any ``#`` char)
space, ``\\t``,      error                  would corrupt NATS control lines
``\\n``, ``\\r``,
``\\f``, DEL
==================  =====================  ===============================

So ``/foo`` -> ``/.foo``, ``foo/`` -> ``foo./``, ``foo//bar`` ->
``foo./.bar``, ``/`` -> ``/./`` and ``foo.bar`` -> ``foo//bar``.  The reverse
(used when a NATS message is delivered to an MQTT subscriber) works on
characters: ``.`` -> ``/``, ``/.`` -> ``/``, ``//`` -> ``.``, and any other
``/`` is dropped (so a NATS subject ``a/b`` reaches MQTT as topic ``ab``).

Subscriptions add two wrinkles, both modelled by :func:`subscription_subjects`:

* ``a/#`` must also match ``a`` itself, so nats-server makes a second
  subscription on the parent subject (sid ``"<parent> fwc"``);
* filters whose first level is a wildcard (``#``, ``+``, ``+/...``) must not
  match topics starting with ``$`` [MQTT-4.7.2-1].

Every table entry in the tests was checked against nats-server v2.15.1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "PARENT_SID_SUFFIX",
    "RESERVED_SUBJECT_PREFIX",
    "FilterSubjects",
    "TopicError",
    "filter_to_subject",
    "is_spec_valid_filter",
    "is_wildcard_first",
    "parent_subject",
    "subject_to_topic",
    "subscription_subjects",
    "topic_to_subject",
]

#: Appended to the parent subject to form the sid of the extra subscription
#: nats-server creates for ``.../#`` filters (also the key of its JetStream
#: consumer in persisted session records).
PARENT_SID_SUFFIX = " fwc"
#: nats-server's internal MQTT subjects; filters mapping under it are refused.
RESERVED_SUBJECT_PREFIX = "$MQTT."


class TopicError(ValueError):
    """The topic or filter cannot be used with NATS.

    For a PUBLISH (or Will) topic nats-server closes the connection; for a
    SUBSCRIBE filter it answers that filter with SUBACK 0x80."""


# Characters nats-server refuses anywhere in a topic or filter.
_UNSUPPORTED = re.compile(r"[ \t\n\r\f\x7f]")
_NEEDS_WORK = re.compile(r"[/.+#]")
_REVERSE = re.compile(r"/[./]?|\.")
_REVERSE_MAP = {".": "/", "/.": "/", "//": ".", "/": ""}


def _convert(mqtt: str, wildcards: bool, what: str) -> str:
    if not mqtt:
        raise TopicError(f"{what} cannot be empty")
    bad = _UNSUPPORTED.search(mqtt)
    if bad is not None:
        raise TopicError(f"character {bad.group()!r} not supported for MQTT topics: {mqtt!r}")
    if not wildcards and ("+" in mqtt or "#" in mqtt):
        raise TopicError(f"wildcards not allowed in publish's topic: {mqtt!r}")
    if _NEEDS_WORK.search(mqtt) is None:
        return mqtt
    tokens = []
    for level in mqtt.split("/"):
        if not level:
            tokens.append("/")
            continue
        # Character-wise, like nats-server: '+'/'#' inside a level (e.g.
        # "a+") become literal '*'/'>' characters in a longer NATS token.
        level = level.replace(".", "//")
        if wildcards:
            level = level.replace("+", "*").replace("#", ">")
        tokens.append(level)
    return ".".join(tokens)


def topic_to_subject(topic: str) -> str:
    """NATS subject for an MQTT topic *name* (PUBLISH, Will).

    Raises :class:`TopicError` for empty topics, wildcards and unsupported
    characters."""
    return _convert(topic, False, "topic")


def filter_to_subject(topic_filter: str) -> str:
    """Plain character conversion of an MQTT topic *filter*.

    No structural validation: use :func:`subscription_subjects` to learn
    whether nats-server would accept the subscription."""
    return _convert(topic_filter, True, "topic filter")


def subject_to_topic(subject: str) -> str:
    """MQTT topic under which a message published on ``subject`` is delivered."""
    if "/" not in subject:
        return subject.replace(".", "/")
    return _REVERSE.sub(lambda m: _REVERSE_MAP[m.group()], subject)


def parent_subject(subject: str) -> str | None:
    """Subject of the extra subscription for ``x.>`` (MQTT ``x/#`` also matches
    ``x``), or ``None`` when no extra subscription is needed."""
    if len(subject) >= 3 and subject.endswith(".>"):
        return subject[:-2]
    return None


def is_wildcard_first(subject: str) -> bool:
    """Whether a subscription subject starts with a wildcard level.

    Such subscriptions must not receive messages whose subject starts with
    ``$`` [MQTT-4.7.2-1]; nats-server calls them reserved subscriptions."""
    return subject in ("*", ">") or subject.startswith("*.")


def _is_valid_subscription_subject(subject: str) -> bool:
    # What nats-server's sublist accepts: no empty token, nothing after '>'.
    # (Empty MQTT levels never produce empty tokens, they become '/'.)
    tokens = subject.split(".")
    for index, token in enumerate(tokens):
        if not token:
            return False
        if token == ">" and index != len(tokens) - 1:
            return False
    return True


@dataclass(frozen=True, slots=True)
class FilterSubjects:
    """The NATS subscriptions backing one MQTT filter."""

    #: Main subject (its sid in nats-server is the subject itself).
    subject: str
    #: Extra subject for ``.../#`` filters, else ``None``.  Its sid is
    #: ``parent + PARENT_SID_SUFFIX``; it shares QoS and ``wildcard_first``.
    parent: str | None
    #: Both subscriptions skip subjects starting with ``$``.
    wildcard_first: bool

    def delivers(self, subject: str) -> bool:
        """Whether a message on ``subject`` (matched by the sublist) may be
        delivered through this filter."""
        return not (self.wildcard_first and subject.startswith("$"))


def subscription_subjects(topic_filter: str) -> FilterSubjects:
    """Map a SUBSCRIBE filter the way nats-server does.

    Raises :class:`TopicError` exactly when nats-server answers the filter
    with SUBACK 0x80 for syntactic reasons: unsupported characters, a ``#``
    level that is not last (``a/#/b``, ``#/``), or a filter that maps under
    ``$MQTT.`` (internal subjects).  Note that nats-server is laxer than the
    spec: ``a+`` or ``a/b#`` are accepted as *literal* subjects ``a*`` and
    ``a.b>``; see :func:`is_spec_valid_filter` for the strict rule.
    """
    subject = filter_to_subject(topic_filter)
    if not _is_valid_subscription_subject(subject):
        raise TopicError(f"invalid subject {subject!r} for topic filter {topic_filter!r}")
    if subject.startswith(RESERVED_SUBJECT_PREFIX):
        raise TopicError(f"topic filter {topic_filter!r} maps to reserved subject {subject!r}")
    return FilterSubjects(subject, parent_subject(subject), is_wildcard_first(subject))


def is_spec_valid_filter(topic_filter: str) -> bool:
    """MQTT 3.1.1 section 4.7.1 filter syntax: non-empty, ``+`` fills a whole
    level, ``#`` fills the last level.  nats-server does not enforce this."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if level in ("+", "#"):
            if level == "#" and index != last:
                return False
        elif "+" in level or "#" in level:
            return False
    return True
