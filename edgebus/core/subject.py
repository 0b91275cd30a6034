"""Subject rules: validation and wildcard matching, as nats-server's sublist.go applies them."""

from __future__ import annotations

_WS = frozenset(" \t\r\n\f")


def valid_subject(subject: str) -> bool:
    """A subscription subject: non-empty tokens, `>` only as the whole last token."""
    if not subject:
        return False
    toks = subject.split(".")
    last = len(toks) - 1
    for i, t in enumerate(toks):
        if not t:
            return False
        if t == ">" and i != last:
            return False
        if _WS.intersection(t):
            return False
    return True


def valid_literal_subject(subject: str) -> bool:
    """A publish subject in pedantic mode: valid and no wildcard tokens."""
    if not valid_subject(subject):
        return False
    for t in subject.split("."):
        if t == "*" or t == ">":
            return False
    return True


def is_literal(subject: str) -> bool:
    for t in subject.split("."):
        if t == "*" or t == ">":
            return False
    return True


def match_tokens(subject_toks: list[str], filter_toks: list[str]) -> bool:
    """Does a (literal) subject match a filter with wildcards?"""
    ls = len(subject_toks)
    for i, f in enumerate(filter_toks):
        if f == ">":
            return ls > i
        if i >= ls:
            return False
        if f != "*" and f != subject_toks[i]:
            return False
    return ls == len(filter_toks)


def subject_matches(subject: str, filt: str) -> bool:
    if filt == subject or filt == ">":
        return True
    return match_tokens(subject.split("."), filt.split("."))


def subset_match(sub: str, of: str) -> bool:
    """Is every subject matched by `sub` also matched by `of`? (both may have wildcards)"""
    st = sub.split(".")
    ot = of.split(".")
    for i, o in enumerate(ot):
        if i >= len(st):
            return False
        if o == ">":
            return True
        s = st[i]
        if s == ">":
            return False
        if o == "*":
            continue
        if s == "*" or s != o:
            return False
    return len(st) == len(ot)


def subjects_collide(a: str, b: str) -> bool:
    """Can some literal subject match both filters?"""
    at = a.split(".")
    bt = b.split(".")
    for i in range(max(len(at), len(bt))):
        x = at[i] if i < len(at) else None
        y = bt[i] if i < len(bt) else None
        if x == ">" or y == ">":
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != y and x != "*" and y != "*":
            return False
    return True
