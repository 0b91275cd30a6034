"""Per-user publish/subscribe permissions: allow and deny lists, deny wins, results cached.

Built from the config forms nats-server accepts: a string, a list (= allow), or a map with
`allow`/`deny`; subscribe entries may carry a queue (`"foo queue"`). `allow_responses` grants a
short-lived right to publish to reply subjects of requests the user received.
"""

from __future__ import annotations

from typing import Any

from .subject import subject_matches

_CACHE_MAX = 1024


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


class _Rules:
    __slots__ = ("allow", "deny", "cache")

    def __init__(self, spec: Any) -> None:
        if isinstance(spec, dict):
            self.allow: list[str] | None = _as_list(spec["allow"]) if "allow" in spec else None
            self.deny = _as_list(spec.get("deny"))
        elif spec is None:
            self.allow = None
            self.deny = []
        else:
            self.allow = _as_list(spec)
            self.deny = []
        self.cache: dict[tuple[str, str | None], bool] = {}

    @staticmethod
    def _match(entries: list[str], subject: str, queue: str | None) -> bool:
        for e in entries:
            subj, _, q = e.partition(" ")
            q = q.strip()
            if q:
                # a queue-qualified entry applies only to queue subscriptions in that queue
                if queue is None or not subject_matches(queue, q):
                    continue
            if subject_matches(subject, subj):
                return True
        return False

    def check(self, subject: str, queue: str | None = None) -> bool:
        key = (subject, queue)
        r = self.cache.get(key)
        if r is not None:
            return r
        ok = True
        if self.allow is not None:
            ok = self._match(self.allow, subject, queue)
        if ok and self.deny:
            # deny entries for a plain subscription apply whatever the queue
            ok = not self._match([d for d in self.deny if " " not in d] if queue is None else self.deny,
                                 subject, queue)
        if len(self.cache) >= _CACHE_MAX:
            self.cache.clear()
        self.cache[key] = ok
        return ok

    def check_sub(self, subject: str, queue: str | None) -> bool:
        """Subscriptions with wildcards: allowed if some allow entry covers them and no deny
        entry covers them (nats-server checks the subscription subject against the lists)."""
        return self.check(subject, queue)


class Permissions:
    def __init__(self, publish: Any = None, subscribe: Any = None,
                 allow_responses: Any = None) -> None:
        self.pub = _Rules(publish)
        self.sub = _Rules(subscribe)
        self.resp_max = 0
        self.resp_expires = 0.0
        if allow_responses:
            self.resp_max = 1
            self.resp_expires = 120.0
            if isinstance(allow_responses, dict):
                self.resp_max = int(allow_responses.get("max", 1) or 1)
                exp = allow_responses.get("expires")
                if exp is not None:
                    from ..conf import parse_duration  # deferred: conf is optional here
                    self.resp_expires = parse_duration(exp)

    @classmethod
    def from_config(cls, d: dict[str, Any] | None) -> "Permissions | None":
        if not d:
            return None
        return cls(d.get("publish", d.get("pub")), d.get("subscribe", d.get("sub")),
                   d.get("allow_responses"))

    def can_publish(self, subject: str) -> bool:
        return self.pub.check(subject)

    def can_subscribe(self, subject: str, queue: str | None = None) -> bool:
        return self.sub.check_sub(subject, queue)
