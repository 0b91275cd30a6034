"""Token-wise matching of a literal NATS subject against a filter that may hold `*` and `>`.

Pure functions only; the stores use them to answer filtered queries. A token is `*` or `>` only
when it is the whole token (`a*b` is a literal token), as in nats-server.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

FULL_WILDCARD = ">"
PARTIAL_WILDCARD = "*"


def is_all(filter_subject: str | None) -> bool:
    """True when the filter selects every subject (`>` or empty/None)."""
    return not filter_subject or filter_subject == FULL_WILDCARD


def has_wildcard(filter_subject: str) -> bool:
    """True when some token of the filter is exactly `*` or `>`."""
    if "*" not in filter_subject and ">" not in filter_subject:
        return False  # fast path: no wildcard character at all
    return any(t == "*" or t == ">" for t in filter_subject.split("."))


def subject_matches(subject: str, filter_subject: str) -> bool:
    """Does the literal `subject` match `filter_subject` (which may contain `*` / `>`)?"""
    if filter_subject == subject:
        return True
    if is_all(filter_subject):
        return bool(subject)
    if "*" not in filter_subject and ">" not in filter_subject:
        return False
    st = subject.split(".")
    ft = filter_subject.split(".")
    n = len(st)
    for i, f in enumerate(ft):
        if f == ">":
            return n > i  # `>` needs at least one remaining token
        if i >= n:
            return False
        if f != "*" and f != st[i]:
            return False
    return n == len(ft)


def literal_prefix(filter_subject: str) -> str:
    """The literal leading tokens of a wildcard filter, joined and ending with '.'.

    Every subject matching the filter starts with this string, so a sorted subject list can be
    range-scanned instead of fully scanned. Returns '' when the first token is a wildcard.
    """
    out = []
    for t in filter_subject.split("."):
        if t == "*" or t == ">":
            break
        out.append(t)
    return ".".join(out) + "." if out else ""


@lru_cache(maxsize=1024)
def compile_filter(filter_subject: str | None) -> Callable[[str], bool]:
    """A fast predicate for one filter; cached because consumers reuse the same few filters."""
    if is_all(filter_subject):
        return bool
    assert filter_subject is not None
    if not has_wildcard(filter_subject):
        return filter_subject.__eq__
    ft = tuple(filter_subject.split("."))
    if ">" in ft[:-1]:
        # Malformed (`>` not last): keep the reference semantics rather than guess.
        return lambda subject: subject_matches(subject, filter_subject)
    n_ft = len(ft)
    tail = ft[-1] == ">"
    fixed = [(i, t) for i, t in enumerate(ft) if t != "*" and t != ">"]

    def match(subject: str) -> bool:
        st = subject.split(".")
        n = len(st)
        if tail:
            if n < n_ft:
                return False
        elif n != n_ft:
            return False
        for i, t in fixed:
            if st[i] != t:
                return False
        return True

    return match
