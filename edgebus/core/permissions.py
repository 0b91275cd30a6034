"""Per-user publish/subscribe permissions with nats-server's exact allow/deny semantics.

Built from the config forms nats-server accepts (a string, a list = allow, or a map with
`allow`/`deny`; subscribe entries may carry a queue, `"foo queue"`) or from a user JWT's
`pub`/`sub`/`resp`. The rules, as `client.go` applies them:

- publish: allowed if some allow entry matches (no allow list = everything), then denied if some
  deny entry matches. Results are cached per subject.
- subscribe: the subscription subject is matched *as a literal* against the entries (so `foo.*`
  is covered by `foo.*` or `foo.>`, never by `foo.bar`). Queue-qualified entries decide for queue
  subscriptions when any of them match.
- a plain deny entry wins over any queue entry (nats-server 2.12+ semantics, what current
  servers do); a wildcard or queue subscription that can overlap a deny entry is allowed, but
  deliveries on denied subjects (or to denied queues) are filtered out (`delivery_denied`).
- `allow_responses` grants `resp_max` publishes to the reply subject of each received request
  for `resp_expires` seconds; it also turns a missing publish allow list into an empty one.
"""

from __future__ import annotations

from typing import Any, Iterable

from .subject import subject_matches, subjects_collide

_CACHE_MAX = 4096
DEFAULT_RESP_MAX = 1
DEFAULT_RESP_EXPIRES = 120.0


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


def _split(entry: str) -> tuple[str, str | None]:
    subj, _, q = entry.strip().partition(" ")
    q = q.strip()
    return subj, (q or None)


def _has_wildcard(subject: str) -> bool:
    return any(t == "*" or t == ">" for t in subject.split("."))


def _queue_matches(queue: str, qnames: list[str]) -> bool:
    # nats-server queueMatches: literal name first, then wildcard queue names
    for q in qnames:
        if queue == q or (_has_wildcard(q) and subject_matches(queue, q)):
            return True
    return False


class SubjectRules:
    """One direction (publish or subscribe): optional allow list and optional deny list."""

    __slots__ = ("allow", "deny", "_allow_p", "_allow_q", "_deny_p", "_deny_q")

    def __init__(self, allow: Iterable[str] | None = None, deny: Iterable[str] | None = None) -> None:
        self.allow: list[str] | None = list(allow) if allow is not None else None
        self.deny: list[str] | None = list(deny) if deny is not None else None
        self._allow_p, self._allow_q = self._index(self.allow)
        self._deny_p, self._deny_q = self._index(self.deny)

    @staticmethod
    def _index(entries: list[str] | None) -> tuple[list[str], list[tuple[str, str]]]:
        plain: list[str] = []
        queued: list[tuple[str, str]] = []
        for e in entries or ():
            subj, q = _split(e)
            if q is None:
                plain.append(subj)
            else:
                queued.append((subj, q))
        return plain, queued

    @classmethod
    def from_spec(cls, spec: Any) -> "SubjectRules":
        """Config value: string / list (allow) or {allow, deny} (keys case-insensitive)."""
        if spec is None:
            return cls()
        if isinstance(spec, dict):
            low = {str(k).lower(): v for k, v in spec.items()}
            allow = _as_list(low["allow"]) if low.get("allow") is not None else None
            deny = _as_list(low["deny"]) if low.get("deny") is not None else None
            return cls(allow, deny)
        return cls(_as_list(spec), None)

    @property
    def empty(self) -> bool:
        return self.allow is None and self.deny is None

    def to_dict(self) -> dict[str, list[str]]:
        d: dict[str, list[str]] = {}
        if self.allow is not None:
            d["allow"] = list(self.allow)
        if self.deny is not None:
            d["deny"] = list(self.deny)
        return d

    # -- publish --------------------------------------------------------------------------
    def permits_literal(self, subject: str) -> bool:
        """Publish rule: plain entries only (queue entries are not valid for publish)."""
        ok = True
        if self.allow is not None:
            ok = any(subject_matches(subject, p) for p in self._allow_p)
        if ok and self.deny:
            ok = not any(subject_matches(subject, p) for p in self._deny_p)
        return ok

    # -- subscribe ------------------------------------------------------------------------
    def permits_sub(self, subject: str, queue: str | None) -> bool:
        ok = True
        if self.allow is not None:
            ok = any(subject_matches(subject, p) for p in self._allow_p)
            if queue:
                qn = [q for s, q in self._allow_q if subject_matches(subject, s)]
                if qn:
                    # a matching queue entry decides: this queue must be one of those named
                    ok = _queue_matches(queue, qn)
        if ok and self.deny:
            # a plain deny entry wins whatever the queue (nats-server 2.12+; 2.11 let a
            # non-matching queue entry override it)
            ok = not any(subject_matches(subject, p) for p in self._deny_p)
            if ok and queue:
                qn = [q for s, q in self._deny_q if subject_matches(subject, s)]
                if qn:
                    ok = not _queue_matches(queue, qn)
        return ok

    def overlaps_deny(self, subject: str, queue: str | None = None) -> bool:
        """Can deliveries to this subscription hit a deny entry (so they must be filtered)?
        Checked for wildcard and queue subscriptions, as nats-server's delivery-time filter."""
        if not self.deny or not (queue or _has_wildcard(subject)):
            return False
        return any(subjects_collide(d, subject) for d in self._deny_p) or \
            any(subjects_collide(d, subject) for d, _ in self._deny_q)

    def denies(self, subject: str, queue: str | None = None) -> bool:
        if any(subject_matches(subject, p) for p in self._deny_p):
            return True
        if queue:
            qn = [q for s, q in self._deny_q if subject_matches(subject, s)]
            return bool(qn) and _queue_matches(queue, qn)
        return False


class Permissions:
    """A user's permissions; shared by all of that user's connections (caches are pure)."""

    def __init__(self, publish: Any = None, subscribe: Any = None,
                 allow_responses: Any = None) -> None:
        self.pub = publish if isinstance(publish, SubjectRules) else SubjectRules.from_spec(publish)
        self.sub = (subscribe if isinstance(subscribe, SubjectRules)
                    else SubjectRules.from_spec(subscribe))
        self.resp_max = 0
        self.resp_expires = 0.0
        if allow_responses:
            self.resp_max = DEFAULT_RESP_MAX
            self.resp_expires = DEFAULT_RESP_EXPIRES
            if isinstance(allow_responses, dict):
                low = {str(k).lower(): v for k, v in allow_responses.items()}
                mx = next((low[k] for k in ("max", "max_msgs", "max_messages", "max_responses")
                           if k in low), None)
                if mx:  # 0 means the default; negative means unlimited
                    self.resp_max = int(mx)
                exp = next((low[k] for k in ("expires", "expiration", "ttl") if k in low), None)
                if exp:
                    self.resp_expires = _duration(exp)
            if self.pub.allow is None:
                # response permissions switch off the blanket publish allow (validateResponsePermissions)
                self.pub = SubjectRules([], self.pub.deny)
        self._pcache: dict[str, bool] = {}

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, d: dict[str, Any] | None) -> "Permissions | None":
        """A `permissions {}` block; None when absent."""
        if not d:
            return None
        low = {str(k).lower(): v for k, v in d.items()}
        pub = next((low[k] for k in ("publish", "pub", "import") if k in low), None)
        sub = next((low[k] for k in ("subscribe", "sub", "export") if k in low), None)
        resp = next((low[k] for k in ("allow_responses", "publish_allow_responses") if k in low),
                    None)
        return cls(pub, sub, resp)

    @classmethod
    def from_jwt(cls, limits: dict[str, Any]) -> "Permissions | None":
        """From a user JWT's permission limits (`pub`, `sub`, `resp`); None when unrestricted."""
        pub = limits.get("pub") or {}
        sub = limits.get("sub") or {}
        resp = limits.get("resp")
        pub_r = SubjectRules(pub.get("allow"), pub.get("deny")) if (pub.get("allow") or pub.get("deny")) \
            else SubjectRules()
        sub_r = SubjectRules(sub.get("allow"), sub.get("deny")) if (sub.get("allow") or sub.get("deny")) \
            else SubjectRules()
        if pub_r.empty and sub_r.empty and not resp:
            return None
        ar: Any = None
        if resp:
            # JWT: max msgs, ttl in nanoseconds
            ar = {"max": int(resp.get("max", 0) or 0)}
            ttl = resp.get("ttl") or 0
            if ttl:
                ar["expires"] = float(ttl) / 1e9
            ar = ar or True
        return cls(pub_r, sub_r, ar)

    def merged_with_deny(self, pub_deny: Iterable[str] = (), sub_deny: Iterable[str] = ()) -> "Permissions":
        """A copy with extra deny entries (used for reserved subjects such as auth callout)."""
        p = Permissions(SubjectRules(self.pub.allow, (self.pub.deny or []) + list(pub_deny)),
                        SubjectRules(self.sub.allow, (self.sub.deny or []) + list(sub_deny)))
        p.resp_max, p.resp_expires = self.resp_max, self.resp_expires
        return p

    def to_dict(self) -> dict[str, Any]:
        """The shape nats-server reports in /connz and $SYS.REQ.USER.INFO."""
        d: dict[str, Any] = {}
        if not self.pub.empty:
            d["publish"] = self.pub.to_dict()
        if not self.sub.empty:
            d["subscribe"] = self.sub.to_dict()
        if self.resp_max:
            d["responses"] = {"max": self.resp_max, "ttl": int(self.resp_expires * 1e9)}
        return d

    # -- checks ---------------------------------------------------------------------------
    @property
    def has_pub_rules(self) -> bool:
        return not self.pub.empty

    def can_publish(self, subject: str) -> bool:
        r = self._pcache.get(subject)
        if r is None:
            r = self.pub.permits_literal(subject)
            if len(self._pcache) >= _CACHE_MAX:
                self._pcache.clear()
            self._pcache[subject] = r
        return r

    def can_subscribe(self, subject: str, queue: str | None = None) -> bool:
        return self.sub.permits_sub(subject, queue)

    def needs_delivery_filter(self, subject: str, queue: str | None = None) -> bool:
        return self.sub.overlaps_deny(subject, queue)

    def delivery_denied(self, subject: str, queue: str | None = None) -> bool:
        return self.sub.denies(subject, queue)


def _duration(v: Any) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    try:
        from ..conf import parse_duration  # deferred: conf is optional for core
        return float(parse_duration(v))
    except ImportError:  # pragma: no cover - conf always ships with the server
        s = str(v).strip()
        for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
            if s.endswith(suffix):
                return float(s[: -len(suffix)]) * mult
        return float(s)
