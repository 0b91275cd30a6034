"""Password / token comparison the way nats-server does it.

A configured secret is a bcrypt hash when it matches nats-server's
``validBcryptPrefix`` (``^\\$2[abxy]\\$\\d{2}\\$.*``); anything else — including
other strings that merely start with ``$2`` — is compared as plain text, in
constant time.  bcrypt variants 2a/2b/2x/2y are all checked with the same
algorithm, as Go's ``x/crypto/bcrypt`` does, and only the first 72 bytes of the
client password matter (Go ignores the rest; python-bcrypt would refuse them).
"""

from __future__ import annotations

import hmac
import re
from typing import Final


__all__ = ["is_bcrypt", "compare_passwords", "hash_password", "DEFAULT_COST", "MIN_COST", "MAX_COST"]

DEFAULT_COST: Final = 11  # natscli ``nats server passwd`` default
MIN_COST: Final = 4  # golang.org/x/crypto/bcrypt MinCost
MAX_COST: Final = 31  # golang.org/x/crypto/bcrypt MaxCost
_MAX_BCRYPT_PASSWORD: Final = 72

# Go's ``\d`` is ASCII-only and ``.`` stops at newline, hence the explicit classes.
_BCRYPT_RE: Final = re.compile(r"\$2[abxy]\$[0-9]{2}\$[^\n]*")


def is_bcrypt(password: str) -> bool:
    """True if nats-server would treat the configured secret as a bcrypt hash."""
    return password.startswith("$") and _BCRYPT_RE.match(password) is not None


def _to_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def compare_passwords(server_password: str, client_password: str | bytes) -> bool:
    """Check ``client_password`` against the configured secret (bcrypt or plain)."""
    client = _to_bytes(client_password)
    if is_bcrypt(server_password):
        try:
            import bcrypt  # loaded on first use: most configs carry no bcrypt hash

            return bcrypt.checkpw(client[:_MAX_BCRYPT_PASSWORD], server_password.encode("utf-8"))
        except ValueError:
            return False  # malformed hash: Go's CompareHashAndPassword errors too
    return hmac.compare_digest(_to_bytes(server_password), client)


def hash_password(password: str | bytes, cost: int = DEFAULT_COST) -> str:
    """bcrypt hash in Go's format (``$2a$<cost>$...``)."""
    if not MIN_COST <= cost <= MAX_COST:
        raise ValueError(f"bcrypt cost should be between {MIN_COST} and {MAX_COST}")
    data = _to_bytes(password)
    if len(data) > _MAX_BCRYPT_PASSWORD:
        # Go's GenerateFromPassword refuses these (ErrPasswordTooLong).
        raise ValueError("bcrypt: password length exceeds 72 bytes")
    import bcrypt

    return bcrypt.hashpw(data, bcrypt.gensalt(rounds=cost, prefix=b"2a")).decode("ascii")
