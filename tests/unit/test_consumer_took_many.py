"""`_took_many` (the bulk path handing a run of messages to the waiting pull requests at once)
leaves the requests and the waiting list exactly as that many `_took_from` calls on the head
would: delivered / wanted counts, heartbeat times, order, and which requests are done."""

from __future__ import annotations

import random
from collections import deque

from edgebus.jetstream.consumer.pull import PullMixin, PullRequest


class _Waiting(PullMixin):
    def __init__(self, specs: list[tuple[int, float]]) -> None:
        self.waiting: deque[PullRequest] = deque(
            PullRequest(f"r{i}", n, 0, 0.0, 0.0, hb, False) for i, (n, hb) in enumerate(specs))


def _state(w: _Waiting) -> list[tuple[str, int, int, float]]:
    return [(r.reply, r.n, r.d, r.hbt) for r in w.waiting]


def test_took_many_is_took_from_repeated() -> None:
    rnd = random.Random(5)
    for _ in range(5000):
        specs = [(rnd.randint(1, 12), rnd.choice((0.0, 0.0, 1.5))) for _ in range(rnd.randint(1, 6))]
        k = rnd.randint(0, 80)
        many, one = _Waiting(specs), _Waiting(specs)
        reqs_many, reqs_one = list(many.waiting), list(one.waiting)
        got = many._took_many(k, 100.0)
        n = 0
        while n < k and one.waiting:
            one._took_from(one.waiting[0], 100.0)
            n += 1
        assert got == n
        assert _state(many) == _state(one), (specs, k)
        # the requests that are done (no longer waiting) got the same counts too
        assert [(r.n, r.d, r.hbt) for r in reqs_many] == [(r.n, r.d, r.hbt) for r in reqs_one]
