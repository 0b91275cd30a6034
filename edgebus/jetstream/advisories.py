"""Consumer advisories and ack-sample metrics on `$JS.EVENT.>`, as nats-server publishes them.

Each event is a JSON object starting with the TypedEvent header (`type`, `id`, `timestamp`).
Like nats-server, an advisory is only encoded and published when someone in the account is
subscribed to its subject, so the cost on the hot path is one sublist lookup (cached).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from ..core.clock import rfc3339

ADVISORY_PREFIX = "$JS.EVENT.ADVISORY"
CONSUMER_CREATED = f"{ADVISORY_PREFIX}.CONSUMER.CREATED"
CONSUMER_DELETED = f"{ADVISORY_PREFIX}.CONSUMER.DELETED"
CONSUMER_PAUSE = f"{ADVISORY_PREFIX}.CONSUMER.PAUSE"
MAX_DELIVERIES = f"{ADVISORY_PREFIX}.CONSUMER.MAX_DELIVERIES"
MSG_NAKED = f"{ADVISORY_PREFIX}.CONSUMER.MSG_NAKED"
MSG_TERMINATED = f"{ADVISORY_PREFIX}.CONSUMER.MSG_TERMINATED"
ACK_METRIC = "$JS.EVENT.METRIC.CONSUMER.ACK"
PINNED = f"{ADVISORY_PREFIX}.CONSUMER.PINNED"
UNPINNED = f"{ADVISORY_PREFIX}.CONSUMER.UNPINNED"

TYPE_ACTION = "io.nats.jetstream.advisory.v1.consumer_action"
TYPE_PAUSE = "io.nats.jetstream.advisory.v1.consumer_pause"
TYPE_MAX_DELIVER = "io.nats.jetstream.advisory.v1.max_deliver"
TYPE_NAK = "io.nats.jetstream.advisory.v1.nak"
TYPE_TERMINATED = "io.nats.jetstream.advisory.v1.terminated"
TYPE_ACK_METRIC = "io.nats.jetstream.metric.v1.consumer_ack"
TYPE_PINNED = "io.nats.jetstream.advisory.v1.consumer_group_pinned"
TYPE_UNPINNED = "io.nats.jetstream.advisory.v1.consumer_group_unpinned"

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def nuid() -> str:
    """A 22-character base62 unique id (the shape of github.com/nats-io/nuid)."""
    n = secrets.randbits(131)
    out = []
    for _ in range(22):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(out)


class Advisories:
    """Publishes one consumer's events through the JetStream internal client of its account."""

    __slots__ = ("client", "account", "stream", "consumer", "domain", "clock")

    def __init__(self, client: Any, account: Any, stream: str, consumer: str,
                 domain: str | None, clock: Any) -> None:
        self.client = client
        self.account = account
        self.stream = stream
        self.consumer = consumer
        self.domain = domain
        self.clock = clock

    def _send(self, prefix: str, type_: str, body: dict[str, Any], with_account: bool = False) -> bool:
        subject = f"{prefix}.{self.stream}.{self.consumer}"
        if not self.account.sublist.match(subject):
            return False
        event: dict[str, Any] = {"type": type_, "id": nuid(),
                                 "timestamp": rfc3339(self.clock.now_ns())}
        if with_account:
            event["account"] = self.account.name
        event["stream"] = self.stream
        event["consumer"] = self.consumer
        event.update(body)
        if self.domain:
            event["domain"] = self.domain
        self.client.publish(subject, None, None, json.dumps(event, separators=(",", ":")).encode())
        return True

    def created(self) -> bool:
        return self._send(CONSUMER_CREATED, TYPE_ACTION, {"action": "create"})

    def deleted(self) -> bool:
        return self._send(CONSUMER_DELETED, TYPE_ACTION, {"action": "delete"})

    def pause(self, paused: bool, pause_until: int | None) -> bool:
        body: dict[str, Any] = {"paused": paused}
        if pause_until:
            body["pause_until"] = rfc3339(pause_until)
        return self._send(CONSUMER_PAUSE, TYPE_PAUSE, body)

    def max_deliveries(self, stream_seq: int, deliveries: int) -> bool:
        return self._send(MAX_DELIVERIES, TYPE_MAX_DELIVER,
                          {"stream_seq": stream_seq, "deliveries": deliveries})

    def nak(self, consumer_seq: int, stream_seq: int, deliveries: int) -> bool:
        return self._send(MSG_NAKED, TYPE_NAK, {"consumer_seq": consumer_seq,
                                                "stream_seq": stream_seq,
                                                "deliveries": deliveries})

    def terminated(self, consumer_seq: int, stream_seq: int, deliveries: int, reason: str) -> bool:
        body: dict[str, Any] = {"consumer_seq": consumer_seq, "stream_seq": stream_seq,
                                "deliveries": deliveries}
        if reason:
            body["reason"] = reason
        return self._send(MSG_TERMINATED, TYPE_TERMINATED, body)

    def ack_metric(self, consumer_seq: int, stream_seq: int, ack_time_ns: int, deliveries: int) -> bool:
        return self._send(ACK_METRIC, TYPE_ACK_METRIC, {"consumer_seq": consumer_seq,
                                                        "stream_seq": stream_seq,
                                                        "ack_time": ack_time_ns,
                                                        "deliveries": deliveries})

    def pinned(self, group: str, pin_id: str) -> bool:
        return self._send(PINNED, TYPE_PINNED, {"group": group, "pinned_id": pin_id}, True)

    def unpinned(self, group: str, reason: str) -> bool:
        return self._send(UNPINNED, TYPE_UNPINNED, {"group": group, "reason": reason}, True)
