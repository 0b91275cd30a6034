"""Small pieces every part of the consumer uses: limits, status replies, the logger."""

from __future__ import annotations

import logging
from typing import Iterable

from ...codec.headers import build_headers

log = logging.getLogger("edgebus.jetstream.consumer")

FLOW_CONTROL_MAX_PENDING = 32 * 1024 * 1024   # JsFlowControlMaxPending
ACK_WAIT_DELAY_NS = 1_000_000                  # ackWaitDelay: let bursts expire together
FLUSH_INTERVAL = 0.1                           # seconds between consumer state writes
STATE_RETRY = 1.0                              # ... and before retrying one that failed

PENDING_MSGS_HDR = "Nats-Pending-Messages"
PENDING_BYTES_HDR = "Nats-Pending-Bytes"

TERM_LIMITS_REASON = "Message deleted by stream limits"
TERM_UNACKED_LIMITS_REASON = "Unacknowledged message was deleted"

# the subjects of consumer acks: $JS.ACK.<stream>.<consumer>.<5 tokens> (the 2 after the head
# name the consumer; see Sublist.set_prefix_family)
ACK_FAMILY = b"$JS.ACK."


def status(code: int, text: str, extra: Iterable[tuple[str, str]] = ()) -> bytes:
    """A status-only header block (`NATS/1.0 <code> <text>` plus `extra` headers)."""
    return build_headers(list(extra), status=code, description=text)


def pending_status(code: int, text: str, n: int, b: int) -> bytes:
    """A pull request's end status, with the messages and bytes it still wanted."""
    return status(code, text, [(PENDING_MSGS_HDR, str(n)), (PENDING_BYTES_HDR, str(b))])
