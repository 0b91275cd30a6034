"""JetStream message storage: one `MsgStore` contract, two backends.

`MemoryStore` keeps messages in RAM; `FileStore` keeps them in append-only, checksummed block
files with crash recovery. Both are synchronous, never read a clock (times are nanosecond ints
passed in) and share all limit/purge/query semantics through `core.StoreCore`.
"""

from .base import (
    DiscardPolicy,
    ErrMaxBytes,
    ErrMaxMsgs,
    ErrMaxMsgSize,
    ErrMaxMsgsPerSubject,
    ErrSequenceMismatch,
    ErrStoreClosed,
    ErrTooManyResults,
    LimitError,
    MsgStore,
    SimpleState,
    StoredMsg,
    StoreError,
    StoreLimits,
    StreamState,
)
from .file import FileStore
from .fileio import StoreWriteError
from .memory import MemoryStore
from .subjects import subject_matches

__all__ = [
    "DiscardPolicy",
    "ErrMaxBytes",
    "ErrMaxMsgs",
    "ErrMaxMsgSize",
    "ErrMaxMsgsPerSubject",
    "ErrSequenceMismatch",
    "ErrStoreClosed",
    "ErrTooManyResults",
    "FileStore",
    "LimitError",
    "MemoryStore",
    "MsgStore",
    "SimpleState",
    "StoreError",
    "StoreLimits",
    "StoreWriteError",
    "StoredMsg",
    "StreamState",
    "subject_matches",
]
