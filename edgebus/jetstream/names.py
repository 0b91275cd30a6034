"""The one place for JetStream name rules: which stream, consumer, mirror and source names are
valid, and which of them may become a directory in the file store.

nats-server's rules, as its API answers them (checked against nats-server 2.15 in
tests/interop/test_js_names.py):

- a name is valid (`isValidName`) when it is not empty and holds no whitespace, `.`, `*`, `>`,
  `\\` or `/`;
- a name with a path separator is answered first with its own error (10127 for consumers,
  10128 for streams);
- names are at most 255 characters (10102 for durables, 10052 for streams); an ephemeral
  consumer's name is not length-checked by the API, its store creation fails instead, answered
  with 10012 `error creating store for consumer` and nothing more.

Every name that the file store turns into a path also goes through `store_child`, the
second guard: a name that is not a single, plain path component never reaches the disk,
whatever the API checks above it let through.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_NAME_LEN = 255
# Linux's NAME_MAX: a longer component cannot be created (ENAMETOOLONG)
MAX_FILE_NAME_BYTES = 255

_INVALID_CHARS = frozenset(" \t\r\n\f.*>\\/")
_PATH_SEPARATORS = frozenset("/\\")

# Prefix of a deleted consumer's directory while it waits to be removed: a valid name never
# starts with '.', so it can neither collide with a consumer nor be restored as one.
TRASH_PREFIX = ".deleted-"

STREAM_NAME_INVALID = "stream name is required and can not contain '.', '*', '>', '\\', '/'"
CONSUMER_NAME_INVALID = "consumer name can not contain '.', '*', '>', '\\', '/'"
CONSUMER_STORE_FAILED = "error creating store for consumer"


def valid_name(name: object) -> bool:
    """nats-server `isValidName`: a non-empty string with no whitespace, '.', '*', '>', '\\'
    or '/'."""
    return isinstance(name, str) and bool(name) and _INVALID_CHARS.isdisjoint(name)


def has_path_separator(name: str) -> bool:
    return not _PATH_SEPARATORS.isdisjoint(name)


def fits_file_name(name: str) -> bool:
    """True when `name` can be one directory entry: no NUL, not `.`/`..`, at most
    NAME_MAX bytes. Names failing this are valid NATS names the disk cannot hold."""
    if not name or "\0" in name or name in (".", ".."):
        return False
    try:
        return len(name.encode("utf-8", "surrogateescape")) <= MAX_FILE_NAME_BYTES
    except UnicodeEncodeError:
        return False


class UnsafePathError(ValueError):
    """A name that would not stay one plain component inside the store directory."""


def store_child(base: Path | str, name: str) -> Path:
    """`base / name`, refused unless `name` is a single plain component that resolves inside
    `base`. The store's last line of defence against a name used as a path."""
    if not fits_file_name(name) or has_path_separator(name) or os.sep in name \
            or (os.altsep is not None and os.altsep in name):
        raise UnsafePathError("name is not a plain file name")
    base_p = Path(base)
    child = base_p / name
    # resolve without requiring existence: a symlinked base resolves the same on both sides
    if child.resolve(strict=False).parent != base_p.resolve(strict=False):
        raise UnsafePathError("name does not stay inside the store directory")
    return child
