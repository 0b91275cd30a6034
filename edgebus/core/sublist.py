"""The subject index: a token trie of subscriptions with a cache of match results.

Modelled on nats-server's sublist: plain subscriptions and queue subscriptions (grouped by queue
name) hang off trie nodes; `*` and `>` have their own child slots. A match result is cached per
literal subject; inserting or removing a subscription drops only the cache entries it affects.

A token holding `*` or `>` inside a *published* subject is opaque: it matches only wildcard
positions in subscriptions, never a literal token, as in nats-server.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from .subject import subject_matches

CACHE_MAX = 4096


class Subscription:
    """One interest: the client it belongs to, its subject, optional queue, and sid."""

    __slots__ = ("client", "subject", "queue", "sid", "max", "delivered", "sid_b", "extra")

    def __init__(self, client: Any, subject: str, queue: str | None = None, sid: bytes = b"",
                 max_msgs: int = 0) -> None:
        self.client = client
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self.sid_b = sid
        self.max = max_msgs
        self.delivered = 0
        self.extra: Any = None

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


class MatchResult:
    """Plain subscriptions and one list per queue group."""

    __slots__ = ("psubs", "qsubs")

    def __init__(self) -> None:
        self.psubs: list[Subscription] = []
        self.qsubs: list[list[Subscription]] = []

    def __bool__(self) -> bool:
        return bool(self.psubs or self.qsubs)


EMPTY_RESULT = MatchResult()


class Sublist:
    """Subject index with match cache and the counters /subsz reports."""

    def __init__(self) -> None:
        self.root = _Node()
        self.count = 0
        self.cache: dict[str, MatchResult] = {}
        self.inserts = 0
        self.removes = 0
        self.matches = 0
        self.cache_hits = 0
        # called with (sub, added: bool) when interest changes; the leaf link listens here
        self.listeners: list[Any] = []

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
        self._invalidate(sub.subject)
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
        self._invalidate(sub.subject)
        for cb in self.listeners:
            cb(sub, False)
        return True

    def _invalidate(self, subject: str) -> None:
        cache = self.cache
        if not cache:
            return
        if "*" not in subject and ">" not in subject:
            cache.pop(subject, None)
            return
        for key in [k for k in cache if subject_matches(k, subject)]:
            del cache[key]

    def match(self, subject: str) -> MatchResult:
        self.matches += 1
        r = self.cache.get(subject)
        if r is not None:
            self.cache_hits += 1
            return r
        r = MatchResult()
        qmap: dict[str, list[Subscription]] = {}
        self._match(self.root, subject.split("."), 0, r, qmap)
        if qmap:
            r.qsubs = list(qmap.values())
        if len(self.cache) >= CACHE_MAX:
            # drop an arbitrary half rather than everything, keeping hot entries likely
            for k in list(self.cache)[: CACHE_MAX // 2]:
                del self.cache[k]
        self.cache[subject] = r
        return r

    def _match(self, node: _Node, toks: list[str], i: int, r: MatchResult,
               qmap: dict[str, list[Subscription]]) -> None:
        n = len(toks)
        while True:
            if node.fwc is not None and i < n:
                _collect(node.fwc, r, qmap)
            if i == n:
                _collect(node, r, qmap)
                return
            if node.pwc is not None:
                self._match(node.pwc, toks, i + 1, r, qmap)
            tok = toks[i]
            if tok == "*" or tok == ">":
                # an opaque wildcard token in a published subject: only wildcard subs match it
                return
            nxt = node.children.get(tok)
            if nxt is None:
                return
            node = nxt
            i += 1

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

    def remove_batch(self, subs: Iterable[Subscription]) -> None:
        for s in list(subs):
            self.remove(s)

    def stats(self) -> dict[str, Any]:
        fanouts = [len(r.psubs) + len(r.qsubs) for r in self.cache.values()]
        return {
            "num_subscriptions": self.count,
            "num_cache": len(self.cache),
            "num_inserts": self.inserts,
            "num_removes": self.removes,
            "num_matches": self.matches,
            "cache_hit_rate": (self.cache_hits / self.matches) if self.matches else 0.0,
            "max_fanout": max(fanouts, default=0),
            "avg_fanout": (sum(fanouts) / len(fanouts)) if fanouts else 0.0,
        }


def _collect(node: _Node, r: MatchResult, qmap: dict[str, list[Subscription]]) -> None:
    if node.psubs:
        r.psubs.extend(node.psubs)
    for q, subs in node.qsubs.items():
        if subs:
            lst = qmap.get(q)
            if lst is None:
                qmap[q] = list(subs)
            else:
                lst.extend(subs)
