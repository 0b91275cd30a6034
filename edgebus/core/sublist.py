"""The subject index: a token trie of subscriptions with a cache of match results.

Modelled on nats-server's sublist: plain subscriptions and queue subscriptions (grouped by queue
name) hang off trie nodes; `*` and `>` have their own child slots. A match result is cached per
literal subject; inserting or removing a subscription drops only the cache entries it affects.

A token holding `*` or `>` inside a *published* subject is opaque: it matches only wildcard
positions in subscriptions, never a literal token, as in nats-server. A published subject with
an empty token (leading, trailing or double dot) matches nothing.

The cache is keyed by the subject's bytes, so a publish straight off the wire needs no decode.
Results list matches in nats-server's order: at each level the `>` subscriptions first, then
those below `*`, then the literal token's; at the last level the literal before the `*`.

What the router uses: `match_bytes` (a `MatchResult`, shared and never changed by callers:
`solo` for the lone-subscriber path, `fanout_of` for handing several messages at once), the
read-only `cache` view for a hit without a call (counted in `cache_hits`), and the
exact-prefix registry (`prefixed`, `prefix_match`).
"""

from __future__ import annotations

import re
import weakref
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping

if TYPE_CHECKING:
    from .contract import Subscriber


CACHE_MAX = 4096
# longer subjects are matched afresh each time instead of cached: a wildcard SUB or UNSUB walks
# every cached subject, and 4,096 cached subjects of ~2,000 tokens made each walk take half a
# second (a client could stall the server with them); the trie walk itself is linear
CACHE_SUBJECT_MAX = 512


class Subscription:
    """One interest: the client it belongs to, its subject, optional queue, and sid."""

    __slots__ = ("client", "subject", "queue", "sid", "max", "delivered", "sid_b", "extra", "raw", "raw_run")

    def __init__(self, client: "Subscriber", subject: str, queue: str | None = None,
                 sid: bytes = b"", max_msgs: int = 0) -> None:
        self.client = client
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self.sid_b = sid
        self.max = max_msgs
        self.delivered = 0
        self.extra: Any = None
        # an in-process subscription may take messages as parts, with no Msg made:
        # raw(sub, subject_b, reply_b, hdr, data, src) (see core.client.InternalClient)
        self.raw: Any = None
        # and a run of payloads without headers in one call:
        # raw_run(sub, subject_b, reply_b, payloads, src)
        self.raw_run: Any = None

    def __repr__(self) -> str:
        q = f" q={self.queue}" if self.queue else ""
        return f"<Subscription {self.subject}{q} sid={self.sid!r}>"


class _Node:
    __slots__ = ("children", "pwc", "fwc", "psubs", "qsubs")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.pwc: _Node | None = None
        self.fwc: _Node | None = None
        self.psubs: list[Subscription] = []
        self.qsubs: dict[str, list[Subscription]] = {}

    def empty(self) -> bool:
        return not (self.children or self.pwc or self.fwc or self.psubs or self.qsubs)


class _Unknown(Enum):
    UNKNOWN = 0


# `MatchResult.fanout` before `Sublist.fanout_of` has looked at the result
UNKNOWN = _Unknown.UNKNOWN


class Fanout:
    """The plain subscriptions of match results that the router may hand several messages at
    once (`MatchResult.fanout`), one object per set of subscriptions in a sublist."""

    __slots__ = ("subs", "__weakref__")

    def __init__(self, subs: tuple[Subscription, ...]) -> None:
        self.subs = subs


class MatchResult:
    """Plain subscriptions and one list per queue group, as `Sublist.match_bytes` found them
    (results are shared through the cache: callers never change them).

    `solo` is the one subscription interested when there is exactly one and no queue group
    (the router's lone-subscriber path). `fanout` is what lets the router hand several
    messages at once to the same subscriptions (`core.router.route_msgs`): a `Fanout`, shared
    by the results (of different subjects) with the same subscriptions, so `is` tells that
    consecutive messages go to the same subscribers; or None when messages must go one at a
    time (queue groups, a client with two of the subscriptions, a subscriber whose deliveries
    act beyond its own output); UNKNOWN until `Sublist.fanout_of(result)` has decided it (once
    per result)."""

    __slots__ = ("psubs", "qsubs", "solo", "fanout", "_runs")

    def __init__(self, psubs: list[Subscription] | None = None,
                 qsubs: list[list[Subscription]] | None = None) -> None:
        self.psubs: list[Subscription] = psubs if psubs is not None else []
        self.qsubs: list[list[Subscription]] = qsubs if qsubs is not None else []
        self.solo: Subscription | None = \
            self.psubs[0] if not self.qsubs and len(self.psubs) == 1 else None
        self.fanout: Fanout | None | Literal[_Unknown.UNKNOWN] = UNKNOWN
        self._runs: bool | None = None

    def __bool__(self) -> bool:
        return bool(self.psubs or self.qsubs)

    @property
    def runs_ok(self) -> bool:
        """Can a run of messages go to each subscriber in one piece? Yes when there are no
        queue groups (a member is picked per message) and no connection has two of these
        subscriptions (it must see message 1 on both before message 2)."""
        r = self._runs
        if r is None:
            r = self._runs = not self.qsubs and \
                len({id(s.client) for s in self.psubs}) == len(self.psubs)
        return r


# the one result for "no interest": `match(...) is EMPTY_RESULT` is the cheap test
EMPTY_RESULT = MatchResult()
EMPTY_RESULT.fanout = None


def _encode(subject: str) -> bytes:
    return subject.encode("utf-8", "surrogateescape")


def _filter_matcher(filt: bytes, n: int) -> Callable[[bytes], Any]:
    """Would a subscription on `filt` receive a publish on a subject (both bytes)? For a walk
    over `n` cached subjects: beyond a few dozen, one regex compiled for the filter (~50 us)
    makes each entry cost C speed rather than two splits."""
    if n < _REGEX_FROM:
        ftoks = filt.split(b".")
        return lambda subject: _matches_toks(subject, filt, ftoks)
    if filt == b">":
        return lambda subject: True
    parts = []
    for tok in filt.split(b"."):
        if tok == b">":
            parts.append(b".*")       # at least one more token (perhaps empty): "a.>" needs "a."
            break
        parts.append(b"[^.]*" if tok == b"*" else re.escape(tok))
    return re.compile(b"\\.".join(parts), re.DOTALL).fullmatch


_REGEX_FROM = 48


def _matches_toks(subject: bytes, filt: bytes, ftoks: list[bytes]) -> bool:
    if filt == subject or filt == b">":
        return True
    st = subject.split(b".")
    ls = len(st)
    for i, f in enumerate(ftoks):
        if f == b">":
            return ls > i
        if i >= ls:
            return False
        if f != b"*" and f != st[i]:
            return False
    return ls == len(ftoks)


class Sublist:
    """Subject index with match cache and the counters /subsz reports."""

    def __init__(self) -> None:
        self.root = _Node()
        self.count = 0
        self._cache: dict[bytes, MatchResult] = {}
        # the cached results by subject, read-only for callers: the router looks a subject up
        # here without a call, and counts what it found in `cache_hits` (a miss goes to
        # `match_bytes`, which caches and counts it)
        self.cache: Mapping[bytes, MatchResult] = self._cache
        self.inserts = 0
        self.removes = 0
        self.misses = 0
        self.cache_hits = 0
        # the fanouts of the results (MatchResult.fanout), one per set of subscriptions; an
        # entry goes with the last result that uses it (a result that held a subscription
        # that left is dropped from the cache)
        self._fanouts: weakref.WeakValueDictionary[tuple[Subscription, ...], Fanout] = \
            weakref.WeakValueDictionary()
        # called with (sub, added: bool) when interest changes; the leaf link listens here
        self.listeners: list[Any] = []
        # the exact-prefix registry (see set_prefix_family): prefix -> its one subscription
        self.prefixed: dict[bytes, Subscription] = {}
        self._fam_head = b""
        self._fam_template: tuple[str | None, ...] = ()
        self._fam_prefix_tokens = 0
        self._fam_tail_dots = 0
        # subscriptions that could match some subject of the family: while they are exactly
        # the registered ones, a subject of the family is routed by its prefix alone
        self.family_interest = 0

    def insert(self, sub: Subscription) -> None:
        node = self.root
        for tok in sub.subject.split("."):
            if tok == "*":
                if node.pwc is None:
                    node.pwc = _Node()
                node = node.pwc
            elif tok == ">":
                if node.fwc is None:
                    node.fwc = _Node()
                node = node.fwc
            else:
                nxt = node.children.get(tok)
                if nxt is None:
                    nxt = node.children[tok] = _Node()
                node = nxt
        if sub.queue is None:
            node.psubs.append(sub)
        else:
            node.qsubs.setdefault(sub.queue, []).append(sub)
        self.count += 1
        self.inserts += 1
        if self._fam_template and _could_match(sub.subject, self._fam_template):
            self.family_interest += 1
        self._add_to_cache(sub)
        for cb in self.listeners:
            cb(sub, True)

    def remove(self, sub: Subscription) -> bool:
        path: list[tuple[_Node, str]] = []
        node: _Node | None = self.root
        for tok in sub.subject.split("."):
            assert node is not None
            path.append((node, tok))
            if tok == "*":
                node = node.pwc
            elif tok == ">":
                node = node.fwc
            else:
                node = node.children.get(tok)
            if node is None:
                return False
        assert node is not None  # (a subject has at least one token)
        if sub.queue is None:
            try:
                node.psubs.remove(sub)
            except ValueError:
                return False
        else:
            q = node.qsubs.get(sub.queue)
            if not q or sub not in q:
                return False
            q.remove(sub)
            if not q:
                del node.qsubs[sub.queue]
        # prune empty nodes so churn of unique subjects (inboxes) does not leak
        for parent, tok in reversed(path):
            child = parent.pwc if tok == "*" else parent.fwc if tok == ">" else parent.children.get(tok)
            if child is None or not child.empty():
                break
            if tok == "*":
                parent.pwc = None
            elif tok == ">":
                parent.fwc = None
            else:
                del parent.children[tok]
        self.count -= 1
        self.removes += 1
        if self._fam_template and _could_match(sub.subject, self._fam_template):
            self.family_interest -= 1
        self._invalidate(sub.subject)
        for cb in self.listeners:
            cb(sub, False)
        return True

    @property
    def matches(self) -> int:
        """Subjects matched so far (cache hits and misses), as /subsz reports them."""
        return self.cache_hits + self.misses

    def _add_to_cache(self, sub: Subscription) -> None:
        """Append a new subscription to the cached results it matches (copy on write), as
        nats-server does: the order of a cached result is the order of arrival, which is
        the order a connection with several matching subscriptions sees its messages in."""
        cache = self._cache
        if not cache:
            return
        sb = _encode(sub.subject)
        if b"*" not in sb and b">" not in sb:
            r = cache.get(sb)
            if r is not None:
                cache[sb] = _with_sub(r, sub)
            return
        matches = _filter_matcher(sb, len(cache))
        for key, r in list(cache.items()):
            if matches(key):
                cache[key] = _with_sub(r, sub)

    def _invalidate(self, subject: str) -> None:
        cache = self._cache
        if not cache:
            return
        sb = _encode(subject)
        if b"*" not in sb and b">" not in sb:
            cache.pop(sb, None)
            return
        matches = _filter_matcher(sb, len(cache))
        for key in [k for k in cache if matches(k)]:
            del cache[key]

    def match(self, subject: str) -> MatchResult:
        return self.match_bytes(_encode(subject))

    def match_bytes(self, subject: bytes) -> MatchResult:
        """Everything interested in a published subject; EMPTY_RESULT when nothing is."""
        r = self._cache.get(subject)
        if r is not None:
            self.cache_hits += 1
            return r
        self.misses += 1
        toks = subject.decode("utf-8", "surrogateescape").split(".")
        if "" in toks:
            return EMPTY_RESULT  # an empty token matches nothing (and is not cached)
        psubs: list[Subscription] = []
        qmap: dict[str, list[Subscription]] = {}
        _match_level(self.root, toks, psubs, qmap)
        if psubs or qmap:
            r = MatchResult(psubs, list(qmap.values()))
        else:
            r = EMPTY_RESULT
        if len(subject) > CACHE_SUBJECT_MAX:
            return r
        cache = self._cache
        if len(cache) >= CACHE_MAX:
            # drop the older half rather than everything, keeping hot entries likely
            for k in list(cache)[: CACHE_MAX // 2]:
                del cache[k]
        cache[subject] = r
        return r

    def fanout_of(self, r: MatchResult) -> Fanout | None:
        """Decide `r.fanout` (see MatchResult): its plain subscriptions, interned, when the
        router may hand them several messages at once — no queue group, each subscription of
        another client, every client `takes_batches` — else None."""
        f = r.fanout
        if f is not UNKNOWN:
            return f
        psubs = r.psubs
        if r.qsubs or not psubs or not r.runs_ok or \
                not all(s.client.takes_batches for s in psubs):
            r.fanout = None
            return None
        t = tuple(psubs)
        f = self._fanouts.get(t)
        if f is None:
            f = self._fanouts[t] = Fanout(t)
        r.fanout = f
        return f

    # -- the exact-prefix registry ---------------------------------------------------------
    # Some subjects are all different (acknowledgements carry sequence numbers), so each one
    # misses the match cache and walks the trie. A subsystem whose subscriptions each own a
    # literal prefix and every subject just below it (`<prefix>*.*...`) registers them here:
    # while nothing else could match a subject of the family, such a subject is routed to its
    # prefix's subscription with one dict lookup. The core knows no family by name.
    def set_prefix_family(self, head: bytes, prefix_tokens: int, tail_tokens: int) -> None:
        """Declare the family: subjects `head` + `prefix_tokens` tokens (the registered
        prefix) + `tail_tokens` tokens. One family per sublist; declaring it again is a no-op."""
        if self._fam_template:
            if self._fam_head != head:
                raise ValueError("the sublist already has another prefix family")
            return
        head_toks = head.decode("utf-8", "surrogateescape").rstrip(".").split(".")
        self._fam_head = head
        self._fam_prefix_tokens = prefix_tokens
        self._fam_tail_dots = tail_tokens - 1
        self._fam_template = tuple(head_toks) + (None,) * (prefix_tokens + tail_tokens)
        self.family_interest = sum(1 for s in self.all_subs()
                                   if _could_match(s.subject, self._fam_template))

    @property
    def family_head(self) -> bytes | None:
        """What every subject of the prefix family starts with, None without a family."""
        return self._fam_head if self._fam_template else None

    def add_prefix(self, prefix: bytes, sub: Subscription) -> None:
        """Register `sub` (already inserted, on `<prefix>*.*...`) as the owner of `prefix`."""
        self.prefixed[prefix] = sub

    def remove_prefix(self, prefix: bytes, sub: Subscription) -> None:
        if self.prefixed.get(prefix) is sub:
            del self.prefixed[prefix]

    def prefix_match(self, subject: bytes) -> Subscription | None:
        """The registered subscription that alone matches `subject`, or None (then match)."""
        head = self._fam_head
        if not subject.startswith(head) or self.family_interest != len(self.prefixed):
            return None
        i = len(head)
        for _ in range(self._fam_prefix_tokens):
            j = subject.find(b".", i)
            if j <= i:
                return None
            i = j + 1
        sub = self.prefixed.get(subject[:i])
        if sub is None:
            return None
        rest = subject[i:]
        if rest.count(b".") != self._fam_tail_dots or b".." in rest or rest[:1] == b"." \
                or rest[-1:] == b".":
            return None
        return sub

    def has_interest(self, subject: str) -> bool:
        return bool(self.match(subject))

    def all_subs(self) -> Iterator[Subscription]:
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield from node.psubs
            for q in node.qsubs.values():
                yield from q
            stack.extend(node.children.values())
            if node.pwc:
                stack.append(node.pwc)
            if node.fwc:
                stack.append(node.fwc)

    def stats(self) -> dict[str, Any]:
        fanouts = [len(r.psubs) + len(r.qsubs) for r in self._cache.values()]
        return {
            "num_subscriptions": self.count,
            "num_cache": len(self._cache),
            "num_inserts": self.inserts,
            "num_removes": self.removes,
            "num_matches": self.matches,
            "cache_hit_rate": (self.cache_hits / self.matches) if self.matches else 0.0,
            "max_fanout": max(fanouts, default=0),
            "avg_fanout": (sum(fanouts) / len(fanouts)) if fanouts else 0.0,
        }


def _with_sub(r: MatchResult, sub: Subscription) -> MatchResult:
    if sub.queue is None:
        return MatchResult(r.psubs + [sub], r.qsubs)
    qsubs = list(r.qsubs)
    for i, group in enumerate(qsubs):
        if group[0].queue == sub.queue:
            qsubs[i] = group + [sub]
            break
    else:
        qsubs.append([sub])
    return MatchResult(r.psubs, qsubs)


def _could_match(pattern: str, template: tuple[str | None, ...]) -> bool:
    """Whether subscription subject `pattern` can match some subject of `template` (a literal
    token per position, None for any token)."""
    toks = pattern.split(".")
    for i, t in enumerate(toks):
        if t == ">":
            return i < len(template)
        if i >= len(template):
            return False
        want = template[i]
        if want is not None and t != "*" and t != want:
            return False
    return len(toks) == len(template)


def _match_level(root: _Node, toks: list[str], psubs: list[Subscription],
                 qmap: dict[str, list[Subscription]]) -> None:
    """nats-server's matchLevel over our nodes (a node is also the level of its children).

    Iterative, with an explicit stack of pending branches: a subject may have ~2,000 tokens
    within the control-line limit, and a `*` at each level would recurse as deep. The stack
    is LIFO so a `*` branch is walked completely before the literal branch beside it, which
    keeps nats-server's result order (at each level `>`, then under `*`, then the literal)."""
    last = len(toks) - 1
    stack: list[tuple[_Node | None, int]] = []
    level: _Node | None = root
    i = 0
    while True:
        while level is not None:
            if level.fwc is not None:
                _collect(level.fwc, psubs, qmap)
            pwc = level.pwc
            # a '*' or '>' token never names a child (those live in pwc/fwc): it stays opaque
            n = level.children.get(toks[i])
            if i == last:
                if n is not None:
                    _collect(n, psubs, qmap)
                if pwc is not None:
                    _collect(pwc, psubs, qmap)
                break
            i += 1
            if pwc is None:
                level = n
            else:
                stack.append((n, i))    # the literal branch, resumed once the '*' one is done
                level = pwc
        if not stack:
            return
        level, i = stack.pop()


def _collect(node: _Node, psubs: list[Subscription],
             qmap: dict[str, list[Subscription]]) -> None:
    if node.psubs:
        psubs.extend(node.psubs)
    for q, subs in node.qsubs.items():
        if subs:
            lst = qmap.get(q)
            if lst is None:
                qmap[q] = list(subs)
            else:
                lst.extend(subs)
