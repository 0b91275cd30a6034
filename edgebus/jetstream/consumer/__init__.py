"""A JetStream consumer: push/pull delivery from the stream's store, acks, redelivery, timers.

One `Consumer` per stream consumer; its state machine follows nats-server's `consumer.go`. The
parts, each a module of this package:

- `main`         the `Consumer` class: construction, start position, lifecycle, persistence,
                 config update, ConsumerInfo; it combines the mixins below
- `state`        `ConsumerState`, the persisted position: delivered / ack-floor sequences, the
                 pending map, redelivery counts (nats-server's ConsumerState)
- `delivery`     taking the next message and delivering it: the general path and the bulk path,
                 which share their bookkeeping (`ACK_REPLY`, `_took_from`/`_took_many`,
                 `ConsumerState.track`, `_settle_delivered`)
- `readahead`    batched store reads ahead of delivery
- `pull`         `PullRequest`, `parse_next_request`, the waiting list of a pull consumer
- `push`         deliver-subject interest, idle heartbeats, flow control, rate limit
- `acks`         ack handling, the redelivery queue, AckWait / BackOff / MaxDeliver
- `stream_hooks` what the stream tells us (new, removed, purged messages), num_pending
- `task`         the single delivery task, its timers, inactivity deletion
- `common`       limits, status headers, the logger
"""

from .acks import parse_go_duration
from .main import Consumer
from .pull import PullRequest, parse_next_request
from .state import ConsumerState

__all__ = ["Consumer", "ConsumerState", "PullRequest", "parse_go_duration", "parse_next_request"]
