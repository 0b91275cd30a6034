"""Small value checks the options mapper needs: host:port splitting, storage sizes, nkeys.

Each mirrors the nats-server (Go) behaviour it stands in for, including error wording,
so messages line up with what operators know from nats-server.
"""

from __future__ import annotations

import base64
import ipaddress
import re

__all__ = [
    "split_host_port",
    "go_atoi",
    "storage_size",
    "is_public_nkey",
    "is_valid_host",
    "is_valid_subject",
]


def split_host_port(hostport: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``: ``"h:p"``, ``"[::1]:p"``; raises ValueError."""
    colon = hostport.rfind(":")
    if colon < 0:
        raise ValueError(f"address {hostport}: missing port in address")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError(f"address {hostport}: missing ']' in address")
        if end + 1 == len(hostport):
            raise ValueError(f"address {hostport}: missing port in address")
        if end + 1 != colon:
            if hostport[end + 1] == ":":
                raise ValueError(f"address {hostport}: too many colons in address")
            raise ValueError(f"address {hostport}: missing port in address")
        host = hostport[1:end]
        if "[" in hostport[1:] or "]" in hostport[end + 1 :]:
            raise ValueError(f"address {hostport}: unexpected '[' or ']' in address")
    else:
        host = hostport[:colon]
        if ":" in host:
            raise ValueError(f"address {hostport}: too many colons in address")
        if "[" in hostport or "]" in hostport:
            raise ValueError(f"address {hostport}: unexpected '[' or ']' in address")
    return host, hostport[colon + 1 :]


_ATOI = re.compile(r"[+-]?[0-9]+\Z")


def go_atoi(text: str) -> int:
    """Go's ``strconv.Atoi`` (decimal, optional sign, 64-bit); raises ValueError."""
    if not _ATOI.match(text):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f'strconv.Atoi: parsing "{text}": value out of range')
    return value


_SIZE_SHIFT = {"K": 10, "M": 20, "G": 30, "T": 40}


def storage_size(value: object) -> int:
    """A JetStream storage limit: an integer (lexer sizes already applied) or a string.

    Strings use binary units and only the upper-case letters K, M, G, T (``"10G"`` is
    10 GiB), unlike bare ``10G`` which the lexer reads as 10**10. Raises ValueError with
    nats-server's wording.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError("must be int64 or string")
    if value == "":
        return 0
    prefix, suffix = value[:-1], value[-1:]
    if not re.fullmatch(r"[+-]?[0-9]+", prefix):
        raise ValueError(f'strconv.ParseInt: parsing "{prefix}": invalid syntax')
    if suffix not in _SIZE_SHIFT:
        raise ValueError("sizes defined as strings must end in K, M, G, T")
    return int(prefix) << _SIZE_SHIFT[suffix]


# nkey public keys: base32(prefix byte + 32 byte ed25519 key + crc16), 56 characters
_NKEY_PREFIX = {"U": 20 << 3, "A": 0, "O": 14 << 3, "N": 13 << 3}


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def is_public_nkey(key: str, kind: str) -> bool:
    """True if `key` is a well-formed public nkey of `kind` ("U" user, "A" account, ...)."""
    if len(key) != 56 or key[:1] != kind:
        return False
    try:
        raw = base64.b32decode(key)
    except ValueError:  # binascii.Error is a ValueError
        return False
    body, crc = raw[:-2], int.from_bytes(raw[-2:], "little")
    return body[0] == _NKEY_PREFIX[kind] and _crc16(body) == crc


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")


def is_valid_host(host: str) -> bool:
    """An IPv4/IPv6 literal or a syntactically valid DNS name.

    Names made only of digits and dots must be real IPv4 addresses, so
    ``999.999.999.999`` is refused rather than sent to the resolver.
    """
    if not host:
        return False
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or re.fullmatch(r"[0-9.]+", name):
        return False
    return all(_HOSTNAME.match(label) for label in name.split("."))


def is_valid_subject(subject: str) -> bool:
    """A NATS subject (wildcards allowed): dot-separated non-empty tokens without
    whitespace, ``>`` only as the last token."""
    if not subject:
        return False
    tokens = subject.split(".")
    for i, token in enumerate(tokens):
        if not token or any(c in " \t\n\r\f" for c in token):
            return False
        if token == ">" and i != len(tokens) - 1:
            return False
    return True
