"""NKey encoding, decoding, signing and verification (nats-io/nkeys compatible).

An nkey is the base32 (RFC 4648 alphabet, no padding) encoding of
``prefix byte(s) + raw key + CRC16`` where the CRC is CRC-16/XMODEM
(polynomial 0x1021, initial value 0, no reflection) of everything before it,
stored little-endian.  Public keys carry one prefix byte whose top five bits
select the first base32 letter (``U`` user, ``A`` account, ``O`` operator,
``N`` server, ``C`` cluster, ``X`` curve).  Seeds carry two prefix bytes that
pack the seed marker ``S`` followed by the public kind letter, hence ``SU...``,
``SA...``, ``SO...``.

Ed25519 keys (everything but curve keys) sign and verify; the 32-byte raw
seed is the Ed25519 private seed.  Curve (``X``) keys are X25519 keys: they can
be created, encoded and decoded, but not used to sign (as in nkeys).

Error messages reproduce the nkeys library's wording (``nkeys: invalid
checksum`` etc.) because callers may surface them to users.
"""

from __future__ import annotations

import base64
import binascii
import enum
import os
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

__all__ = [
    "NKeyError",
    "PrefixByte",
    "KeyPair",
    "crc16",
    "encode",
    "encode_seed",
    "decode",
    "decode_seed",
    "prefix_of",
    "is_valid_encoding",
    "is_valid_public_key",
    "create_pair",
    "from_seed",
    "from_raw_seed",
    "from_public_key",
    "verify",
    "kind_prefix",
]

SEED_LEN: Final = 32  # ed25519 seed / x25519 private key length


class NKeyError(ValueError):
    """Raised for malformed keys; ``str()`` is the nkeys library message."""


# Messages as the Go nkeys library words them.
ERR_INVALID_PREFIX = "nkeys: invalid prefix byte"
ERR_INVALID_PUBLIC_KEY = "nkeys: invalid public key"
ERR_INVALID_SEED_LEN = "nkeys: invalid seed length"
ERR_INVALID_SEED = "nkeys: invalid seed"
ERR_INVALID_ENCODING = "nkeys: invalid encoded key"
ERR_INVALID_CHECKSUM = "nkeys: invalid checksum"
ERR_CANNOT_SIGN = "nkeys: can not sign, no private key available"
ERR_PUBLIC_KEY_ONLY = "nkeys: no seed or private key available"
ERR_CURVE_OPERATION = "nkeys: curve key is not valid for sign/verify"


class PrefixByte(enum.IntEnum):
    """Lead byte values; the comment is the base32 letter they produce."""

    SEED = 18 << 3  # 'S'
    PRIVATE = 15 << 3  # 'P'
    SERVER = 13 << 3  # 'N'
    CLUSTER = 2 << 3  # 'C'
    OPERATOR = 14 << 3  # 'O'
    ACCOUNT = 0  # 'A'
    USER = 20 << 3  # 'U'
    CURVE = 23 << 3  # 'X'
    UNKNOWN = 25 << 3  # 'Z'

    @property
    def label(self) -> str:
        """Lower-case kind name as nkeys' ``PrefixByte.String()``."""
        return _LABELS.get(self, "unknown")


_LABELS: Final[dict[PrefixByte, str]] = {
    PrefixByte.OPERATOR: "operator",
    PrefixByte.SERVER: "server",
    PrefixByte.CLUSTER: "cluster",
    PrefixByte.ACCOUNT: "account",
    PrefixByte.USER: "user",
    PrefixByte.SEED: "seed",
    PrefixByte.PRIVATE: "private",
    PrefixByte.CURVE: "x25519",
}

_VALID_PREFIXES: Final = frozenset(
    {
        PrefixByte.OPERATOR,
        PrefixByte.SERVER,
        PrefixByte.CLUSTER,
        PrefixByte.ACCOUNT,
        PrefixByte.USER,
        PrefixByte.SEED,
        PrefixByte.PRIVATE,
        PrefixByte.CURVE,
    }
)
_PUBLIC_PREFIXES: Final = frozenset(
    {
        PrefixByte.OPERATOR,
        PrefixByte.SERVER,
        PrefixByte.CLUSTER,
        PrefixByte.ACCOUNT,
        PrefixByte.USER,
        PrefixByte.CURVE,
    }
)

# Names accepted by ``create_pair`` / the ``nk gen`` CLI (as the Go ``nk`` tool).
_KIND_NAMES: Final[dict[str, PrefixByte]] = {
    "user": PrefixByte.USER,
    "account": PrefixByte.ACCOUNT,
    "server": PrefixByte.SERVER,
    "cluster": PrefixByte.CLUSTER,
    "operator": PrefixByte.OPERATOR,
    "curve": PrefixByte.CURVE,
    "x25519": PrefixByte.CURVE,
}


def kind_prefix(kind: str | PrefixByte | int) -> PrefixByte:
    """Map ``"user"``/``"account"``/... (or a prefix byte) to a public PrefixByte."""
    if isinstance(kind, str):
        try:
            return _KIND_NAMES[kind.lower()]
        except KeyError:
            raise NKeyError(ERR_INVALID_PREFIX) from None
    try:
        prefix = PrefixByte(kind)
    except ValueError:
        raise NKeyError(ERR_INVALID_PREFIX) from None
    if prefix not in _PUBLIC_PREFIXES:
        raise NKeyError(ERR_INVALID_PREFIX)
    return prefix


# --------------------------------------------------------------------------- crc16


def _make_crc_table() -> tuple[int, ...]:
    # Table-driven CRC-16/XMODEM (poly 0x1021, MSB first), the table nkeys ships.
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE: Final = _make_crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM of ``data`` (the nkeys checksum)."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


# ------------------------------------------------------------------------ encoding


def _b32encode(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def _b32decode(src: str | bytes) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        try:
            text = bytes(src).decode("ascii")
        except UnicodeDecodeError:
            raise NKeyError(ERR_INVALID_ENCODING) from None
    else:
        text = src
    # Go's base32 decoder skips CR/LF; padding characters are illegal with NoPadding.
    text = text.replace("\r", "").replace("\n", "")
    if "=" in text:
        raise NKeyError(ERR_INVALID_ENCODING)
    if len(text) % 8 in (1, 3, 6):
        raise NKeyError(ERR_INVALID_ENCODING)
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise NKeyError(ERR_INVALID_ENCODING) from None


def _with_crc(raw: bytes) -> str:
    return _b32encode(raw + crc16(raw).to_bytes(2, "little"))


def encode(prefix: PrefixByte | int, src: bytes) -> str:
    """Encode ``src`` with a single prefix byte and checksum (public/private keys)."""
    try:
        p = PrefixByte(prefix)
    except ValueError:
        raise NKeyError(ERR_INVALID_PREFIX) from None
    if p not in _VALID_PREFIXES:
        raise NKeyError(ERR_INVALID_PREFIX)
    return _with_crc(bytes([p]) + bytes(src))


def encode_seed(public_prefix: PrefixByte | int, raw_seed: bytes) -> str:
    """Encode a 32-byte raw seed for the given public kind (``S`` + kind letter)."""
    p = kind_prefix(public_prefix)
    if len(raw_seed) != SEED_LEN:
        raise NKeyError(ERR_INVALID_SEED_LEN)
    # Pack the 5-bit seed marker and the 5-bit kind into two bytes so that
    # both letters survive base32's 5-bit grouping.
    b1 = PrefixByte.SEED | (p >> 5)
    b2 = (p & 31) << 3
    return _with_crc(bytes([b1, b2]) + bytes(raw_seed))


def _decode_raw(src: str | bytes) -> bytes:
    raw = _b32decode(src)
    if len(raw) < 4:
        raise NKeyError(ERR_INVALID_ENCODING)
    body, crc = raw[:-2], int.from_bytes(raw[-2:], "little")
    if crc16(body) != crc:
        raise NKeyError(ERR_INVALID_CHECKSUM)
    return body


def decode(expected_prefix: PrefixByte | int, src: str | bytes) -> bytes:
    """Decode a key, check checksum and prefix; return the raw payload."""
    try:
        expected = PrefixByte(expected_prefix)
    except ValueError:
        raise NKeyError(ERR_INVALID_PREFIX) from None
    if expected not in _VALID_PREFIXES:
        raise NKeyError(ERR_INVALID_PREFIX)
    raw = _decode_raw(src)
    if raw[0] & 0xF8 != expected:
        raise NKeyError(ERR_INVALID_PREFIX)
    return raw[1:]


def decode_seed(src: str | bytes) -> tuple[PrefixByte, bytes]:
    """Decode a seed; return ``(public kind prefix, raw 32-byte seed)``."""
    raw = _decode_raw(src)
    b1 = raw[0] & 0xF8
    b2 = ((raw[0] & 0x07) << 5) | ((raw[1] & 0xF8) >> 3)
    if b1 != PrefixByte.SEED or b2 not in _PUBLIC_PREFIXES:
        raise NKeyError(ERR_INVALID_SEED)
    seed = raw[2:]
    if len(seed) != SEED_LEN:
        raise NKeyError(ERR_INVALID_SEED_LEN)
    return PrefixByte(b2), seed


def prefix_of(src: str | bytes) -> PrefixByte:
    """The kind of an encoded key (``SEED`` for seeds, ``UNKNOWN`` if invalid)."""
    try:
        raw = _decode_raw(src)
    except NKeyError:
        return PrefixByte.UNKNOWN
    if raw[0] in _VALID_PREFIXES:
        return PrefixByte(raw[0])
    if raw[0] & 0xF8 == PrefixByte.SEED:
        return PrefixByte.SEED
    return PrefixByte.UNKNOWN


def is_valid_encoding(src: str | bytes) -> bool:
    """True if ``src`` base32-decodes and its checksum is right."""
    try:
        _decode_raw(src)
    except NKeyError:
        return False
    return True


def is_valid_public_key(src: str | bytes, kind: str | PrefixByte | int | None = None) -> bool:
    """True if ``src`` is a valid public key (of ``kind`` when given)."""
    try:
        raw = _decode_raw(src)
    except NKeyError:
        return False
    if kind is None:
        return raw[0] in _PUBLIC_PREFIXES
    try:
        expected = kind_prefix(kind)
    except NKeyError:
        return False
    # Like nkeys' IsValidPublic<Kind>Key (via Decode): the low 3 bits are masked.
    return raw[0] & 0xF8 == expected


# ------------------------------------------------------------------------ key pair


class KeyPair:
    """A decoded nkey: always has a public key, optionally a seed (signing)."""

    __slots__ = ("_prefix", "_public_raw", "_seed_raw", "_signer", "_verifier")

    def __init__(self, prefix: PrefixByte, public_raw: bytes, seed_raw: bytes | None = None) -> None:
        self._prefix = prefix
        self._public_raw = bytes(public_raw)
        self._seed_raw = bytes(seed_raw) if seed_raw is not None else None
        self._signer: Ed25519PrivateKey | None = None
        self._verifier: Ed25519PublicKey | None = None
        if prefix != PrefixByte.CURVE:
            if self._seed_raw is not None:
                self._signer = Ed25519PrivateKey.from_private_bytes(self._seed_raw)
            if len(self._public_raw) == 32:
                self._verifier = Ed25519PublicKey.from_public_bytes(self._public_raw)

    @property
    def prefix(self) -> PrefixByte:
        """The public kind of this key (USER, ACCOUNT, ...)."""
        return self._prefix

    @property
    def public_key(self) -> str:
        """Encoded public key, e.g. ``UD...``."""
        return encode(self._prefix, self._public_raw)

    @property
    def seed(self) -> str | None:
        """Encoded seed (``SU...``), or None for a public-only pair."""
        if self._seed_raw is None:
            return None
        return encode_seed(self._prefix, self._seed_raw)

    @property
    def private_key(self) -> str:
        """Encoded private key (``P...``): 64-byte ed25519 key, or the curve seed."""
        if self._seed_raw is None:
            raise NKeyError(ERR_PUBLIC_KEY_ONLY)
        if self._prefix == PrefixByte.CURVE:
            return encode(PrefixByte.PRIVATE, self._seed_raw)
        return encode(PrefixByte.PRIVATE, self._seed_raw + self._public_raw)

    @property
    def raw_public_key(self) -> bytes:
        """The 32 raw public key bytes."""
        return self._public_raw

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature (64 bytes) over ``data``."""
        if self._prefix == PrefixByte.CURVE:
            raise NKeyError(ERR_CURVE_OPERATION)
        if self._signer is None:
            raise NKeyError(ERR_CANNOT_SIGN)
        return self._signer.sign(bytes(data))

    def verify(self, data: bytes, sig: bytes) -> bool:
        """True if ``sig`` is a valid signature of ``data`` by this key."""
        if self._verifier is None:
            return False
        try:
            self._verifier.verify(bytes(sig), bytes(data))
        except (InvalidSignature, ValueError):
            return False
        return True

    def __repr__(self) -> str:
        return f"KeyPair({self.public_key!r}, seed={'yes' if self._seed_raw else 'no'})"


def _public_from_seed(prefix: PrefixByte, raw_seed: bytes) -> bytes:
    if prefix == PrefixByte.CURVE:
        priv = X25519PrivateKey.from_private_bytes(raw_seed)
    else:
        priv = Ed25519PrivateKey.from_private_bytes(raw_seed)
    return priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def from_raw_seed(kind: str | PrefixByte | int, raw_seed: bytes) -> KeyPair:
    """Key pair of ``kind`` from a raw 32-byte seed."""
    prefix = kind_prefix(kind)
    if len(raw_seed) != SEED_LEN:
        raise NKeyError(ERR_INVALID_SEED_LEN)
    return KeyPair(prefix, _public_from_seed(prefix, bytes(raw_seed)), bytes(raw_seed))


def create_pair(kind: str | PrefixByte | int) -> KeyPair:
    """Generate a fresh key pair: ``create_pair("user")`` or ``create_pair(PrefixByte.USER)``."""
    prefix = kind_prefix(kind)
    if prefix == PrefixByte.CURVE:
        raw = os.urandom(SEED_LEN)
    else:
        raw = Ed25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
    return from_raw_seed(prefix, raw)


def from_seed(seed: str | bytes) -> KeyPair:
    """Key pair from an encoded seed (``SU...``/``SA...``/...); surrounding whitespace ignored."""
    if isinstance(seed, (bytes, bytearray, memoryview)):
        seed = bytes(seed).strip()
    else:
        seed = seed.strip()
    prefix, raw = decode_seed(seed)
    return from_raw_seed(prefix, raw)


def from_public_key(public_key: str | bytes) -> KeyPair:
    """Verify-only key pair from an encoded public key."""
    raw = _decode_raw(public_key)
    if raw[0] not in _PUBLIC_PREFIXES:
        raise NKeyError(ERR_INVALID_PUBLIC_KEY)
    return KeyPair(PrefixByte(raw[0]), raw[1:])


def verify(public_key: str | bytes, data: bytes, sig: bytes) -> bool:
    """True if ``sig`` over ``data`` verifies with ``public_key``; False on any bad input."""
    try:
        kp = from_public_key(public_key)
    except NKeyError:
        return False
    if kp.prefix == PrefixByte.CURVE:
        return False
    return kp.verify(data, sig)
