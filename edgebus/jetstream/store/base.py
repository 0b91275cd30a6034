"""The message-store contract shared by the memory and file backends.

Defines the value types (`StoredMsg`, `StreamState`, `SimpleState`), the limits a stream hands to
its store (`StoreLimits`), the typed errors, and the `MsgStore` abstract base class. Stores are
synchronous and never read a clock: every time is an int of nanoseconds passed in by the caller.
Semantics follow nats-server's `store.go` / `memstore.go` / `filestore.go` (checked against the
2.11+ sources); differences are called out in the method docstrings.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class StoreError(Exception):
    """Base class of every error a store raises."""


class ErrStoreClosed(StoreError):
    def __init__(self) -> None:
        super().__init__("store is closed")


class LimitError(StoreError):
    """A `discard: new` limit (or max_msg_size) rejected the message. Maps to JS error 10077
    (10054 for `ErrMaxMsgSize`); the str() is nats-server's description."""


class ErrMaxMsgs(LimitError):
    def __init__(self) -> None:
        super().__init__("maximum messages exceeded")


class ErrMaxBytes(LimitError):
    def __init__(self) -> None:
        super().__init__("maximum bytes exceeded")


class ErrMaxMsgsPerSubject(LimitError):
    def __init__(self) -> None:
        super().__init__("maximum messages per subject exceeded")


class ErrMaxMsgSize(LimitError):
    def __init__(self) -> None:
        super().__init__("message size exceeds maximum allowed")


class ErrSequenceMismatch(StoreError):
    def __init__(self) -> None:
        super().__init__("expected sequence does not match store")


class ErrTooManyResults(StoreError):
    def __init__(self) -> None:
        super().__init__("too many matching results for request")


# --------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------


class StoredMsg(NamedTuple):
    """One message as loaded from a store. `hdr` is None when the message had no headers
    (an empty header block is stored as None too). `ts` is nanoseconds since the epoch.

    A named tuple: immutable, and cheap to make in bulk — the stores' read loops build them
    with `new_stored_msg(StoredMsg, (seq, subject, hdr, data, ts))`."""

    seq: int
    subject: str
    hdr: bytes | None
    data: bytes
    ts: int


# tuple.__new__ skips the generated (Python-level) __new__ of StoredMsg
new_stored_msg = tuple.__new__


@dataclass(slots=True)
class SimpleState:
    """Message count and first/last sequence for a subject or a filter (all 0 when empty)."""

    msgs: int = 0
    first: int = 0
    last: int = 0


@dataclass(slots=True)
class StreamState:
    """Store-level stream state. `consumer_count` is the stream layer's business.

    For an empty stream that has had messages, `first_seq == last_seq + 1` and `first_ts == 0`.
    `deleted` is only filled when asked for (`state(deleted_details=True)`)."""

    msgs: int = 0
    bytes: int = 0
    first_seq: int = 0
    first_ts: int = 0
    last_seq: int = 0
    last_ts: int = 0
    num_deleted: int = 0
    deleted: list[int] | None = None
    num_subjects: int = 0


class DiscardPolicy(str, enum.Enum):
    OLD = "old"
    NEW = "new"


@dataclass(slots=True)
class StoreLimits:
    """The part of a StreamConfig a store enforces. Values <= 0 mean unlimited (nats-server
    stores -1); `max_age` is in nanoseconds."""

    max_msgs: int = -1
    max_bytes: int = -1
    max_age: int = 0
    max_msgs_per_subject: int = -1
    max_msg_size: int = -1
    discard: DiscardPolicy = DiscardPolicy.OLD
    discard_new_per_subject: bool = False

    def __post_init__(self) -> None:
        self.discard = DiscardPolicy(self.discard)


# --------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------


class MsgStore(abc.ABC):
    """What a stream needs from its storage. All methods are synchronous and thread-safe
    (a stream may call `sync()` from a worker thread while using the store elsewhere).

    Sequences start at 1. `ttl` values are whole seconds as carried by the `Nats-TTL` header:
    `> 0` expires at `ts + ttl s`, `< 0` never expires (exempt from max_age), `0` = none.
    """

    limits: StoreLimits

    # -- writing ---------------------------------------------------------------------------
    @abc.abstractmethod
    def store_msg(self, subject: str, hdr: bytes | None, data: bytes, ts: int, ttl: int = 0) -> tuple[int, int]:
        """Append a message; returns (seq, ts). Raises a `LimitError` subclass when a
        discard-new limit or max_msg_size rejects it (nothing is stored, no seq consumed).
        With discard-old the oldest messages are evicted to make room."""

    def store_run(self, subject: str, datas: Sequence[bytes], start: int, ts: int) -> tuple[int, int]:
        """Store `datas[start:]` (no headers, no TTL) stamped `ts`, `ts` + 1 ns, ... as that
        many `store_msg` calls would, as far as it can do so in one go; returns how many it
        stored and the sequence of the last of them ((0, 0): the caller stores
        `datas[start]` with `store_msg`, which also raises what that one would)."""
        return 0, 0

    @abc.abstractmethod
    def skip_msg(self, ts: int | None = None) -> int:
        """Consume the next sequence without storing anything; returns it."""

    @abc.abstractmethod
    def skip_msgs(self, seq: int, num: int, ts: int | None = None) -> None:
        """Consume `num` sequences starting at `seq` (which must be last_seq+1, or 0 for
        "next"). On an empty store this moves first_seq past them (used for `first_seq`)."""

    # -- reading ---------------------------------------------------------------------------
    @abc.abstractmethod
    def load_msg(self, seq: int) -> StoredMsg | None: ...

    @abc.abstractmethod
    def load_next_msg(self, filter_subject: str, start_seq: int) -> tuple[StoredMsg | None, int]:
        """First message with seq >= start_seq whose subject matches the filter.

        Returns `(msg, msg.seq + 1)` when found, else `(None, last_seq + 1)`: the second item is
        always the sequence a consumer should continue from."""

    @abc.abstractmethod
    def load_last_msg(self, subject_filter: str) -> StoredMsg | None:
        """Newest message matching the filter (`>`/'' = newest message in the stream)."""

    @abc.abstractmethod
    def load_prev_msg(self, filter_subject: str, start_seq: int) -> StoredMsg | None:
        """Newest message with seq <= start_seq matching the filter."""

    @abc.abstractmethod
    def load_recent_with_headers(self, since_ts: int) -> list[StoredMsg]:
        """Messages with headers among the newest ones stamped at or after `since_ts`
        (walking back from the last message to the first older one), ascending; messages
        without headers are not read."""

    # -- removing --------------------------------------------------------------------------
    @abc.abstractmethod
    def remove_msg(self, seq: int) -> bool: ...

    @abc.abstractmethod
    def erase_msg(self, seq: int) -> bool:
        """Remove and overwrite the stored bytes (file store); memory store just drops them."""

    @abc.abstractmethod
    def purge(self) -> int:
        """Remove everything; sequences continue after last_seq. Returns the count removed."""

    @abc.abstractmethod
    def purge_ex(self, subject_filter: str = "", seq: int = 0, keep: int = 0) -> int:
        """nats-server PurgeEx: remove messages matching the filter, only those with seq < `seq`
        when `seq` is given (seq=1 purges nothing), keeping the newest `keep` matching ones."""

    @abc.abstractmethod
    def compact(self, seq: int) -> int:
        """Remove every message with seq < `seq`. If `seq` > last_seq the store becomes empty
        with first_seq = seq (the next stored message gets `seq`). seq=0 is purge()."""

    @abc.abstractmethod
    def truncate(self, seq: int) -> None:
        """Remove every message with seq > `seq`; last_seq becomes `seq`. seq=0 resets."""

    @abc.abstractmethod
    def expire(self, now_ns: int) -> list[int]:
        """Remove messages past max_age (ts <= now - max_age, except ttl<0 ones) and messages
        whose own TTL has passed (ts + ttl <= now). Returns the removed seqs, ascending."""

    @abc.abstractmethod
    def next_expiry(self) -> int | None:
        """Earliest time (ns) at which `expire` would remove something, or None."""

    # -- state -----------------------------------------------------------------------------
    @abc.abstractmethod
    def state(self, deleted_details: bool = False) -> StreamState: ...

    @abc.abstractmethod
    def filtered_state(self, subject_filter: str = ">", start_seq: int = 0) -> SimpleState:
        """Count/first/last of matching messages with seq >= start_seq."""

    @abc.abstractmethod
    def subjects_state(self, subject_filter: str = ">") -> dict[str, SimpleState]: ...

    @abc.abstractmethod
    def subjects_totals(self, subject_filter: str = ">") -> dict[str, int]: ...

    @abc.abstractmethod
    def num_pending(self, start_seq: int, filter_subject: str = ">", last_per_subject: bool = False) -> int:
        """Matching messages with seq >= start_seq; with `last_per_subject`, the number of
        matching subjects whose newest message is >= start_seq."""

    @abc.abstractmethod
    def multi_last_seqs(self, filters: Iterable[str], max_seq: int = 0, max_allowed: int = 0) -> list[int]:
        """Sorted newest seq (<= max_seq, 0 = last_seq) of every subject matching any filter.
        Raises ErrTooManyResults when more than `max_allowed` (> 0) would be returned."""

    @abc.abstractmethod
    def subject_for_seq(self, seq: int) -> str | None: ...

    # -- lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    def update_config(self, limits: StoreLimits) -> None:
        """Adopt new limits and enforce count/bytes/per-subject limits at once (max_age is
        enforced by the next `expire(now)`)."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Make everything written so far durable (file store: fsync + deferred compaction)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Flush, persist the index (file store) and close. Further calls raise ErrStoreClosed."""

    @abc.abstractmethod
    def delete(self) -> None:
        """Stop and remove all data (files included)."""

    # -- small metadata blobs (stream config, consumer state) -------------------------------
    @abc.abstractmethod
    def write_meta(self, name: str, data: bytes) -> None:
        """Atomically replace the named blob (file store: temp file + fsync + rename)."""

    @abc.abstractmethod
    def read_meta(self, name: str) -> bytes | None: ...

    @abc.abstractmethod
    def delete_meta(self, name: str) -> bool: ...

    @abc.abstractmethod
    def list_meta(self) -> list[str]: ...


def check_meta_name(name: str) -> None:
    """Metadata names become file names: keep them to one safe path component."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        raise ValueError(f"invalid metadata name {name!r}")
