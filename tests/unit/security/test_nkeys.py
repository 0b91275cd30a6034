"""NKeys: encoding, checksums, prefixes, signing; interop with the ``nkeys`` package and nats-server."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil

import pytest

from edgebus.security import nkeys
from edgebus.security.nkeys import NKeyError, PrefixByte
from conftest import NATS_SERVER, start_nats_server

KINDS = {
    "user": ("U", "SU"),
    "account": ("A", "SA"),
    "operator": ("O", "SO"),
    "server": ("N", "SN"),
    "cluster": ("C", "SC"),
    "curve": ("X", "SX"),
}


def test_crc16_xmodem_vectors() -> None:
    assert nkeys.crc16(b"123456789") == 0x31C3  # CRC-16/XMODEM check value
    assert nkeys.crc16(b"") == 0
    assert nkeys.crc16(b"A") == 0x58E5


@pytest.mark.parametrize("kind", list(KINDS))
def test_create_pair_shapes(kind: str) -> None:
    kp = nkeys.create_pair(kind)
    pub_letter, seed_letters = KINDS[kind]
    assert kp.public_key.startswith(pub_letter) and len(kp.public_key) == 56
    assert kp.seed is not None and kp.seed.startswith(seed_letters) and len(kp.seed) == 58
    again = nkeys.from_seed(kp.seed)
    assert again.public_key == kp.public_key and again.seed == kp.seed
    assert nkeys.prefix_of(kp.public_key) == nkeys.kind_prefix(kind)
    assert nkeys.prefix_of(kp.seed) == PrefixByte.SEED
    assert nkeys.is_valid_public_key(kp.public_key)
    assert nkeys.is_valid_public_key(kp.public_key, kind)
    assert not nkeys.is_valid_public_key(kp.seed)


def test_create_pair_accepts_prefix_bytes() -> None:
    assert nkeys.create_pair(PrefixByte.ACCOUNT).public_key.startswith("A")
    with pytest.raises(NKeyError):
        nkeys.create_pair(PrefixByte.SEED)
    with pytest.raises(NKeyError):
        nkeys.create_pair("bogus")


def test_sign_verify() -> None:
    kp = nkeys.create_pair("user")
    sig = kp.sign(b"nonce")
    assert len(sig) == 64
    assert kp.verify(b"nonce", sig)
    assert nkeys.verify(kp.public_key, b"nonce", sig)
    assert not nkeys.verify(kp.public_key, b"other", sig)
    assert not nkeys.verify(kp.public_key, b"nonce", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not nkeys.verify(kp.public_key, b"nonce", b"short")
    other = nkeys.create_pair("user")
    assert not nkeys.verify(other.public_key, b"nonce", sig)
    # public-only pairs verify but cannot sign
    pub = nkeys.from_public_key(kp.public_key)
    assert pub.verify(b"nonce", sig) and pub.seed is None
    with pytest.raises(NKeyError, match="can not sign"):
        pub.sign(b"x")


def test_raw_seed_roundtrip_and_private_key() -> None:
    raw = bytes(range(32))
    kp = nkeys.from_raw_seed("account", raw)
    prefix, decoded = nkeys.decode_seed(kp.seed or "")
    assert prefix == PrefixByte.ACCOUNT and decoded == raw
    assert nkeys.decode(PrefixByte.ACCOUNT, kp.public_key) == kp.raw_public_key
    priv = nkeys.decode(PrefixByte.PRIVATE, kp.private_key)
    assert priv == raw + kp.raw_public_key
    # deterministic: same raw seed -> same keys
    assert nkeys.from_raw_seed("account", raw).public_key == kp.public_key


def test_curve_keys_cannot_sign() -> None:
    kp = nkeys.create_pair("x25519")
    with pytest.raises(NKeyError, match="curve key"):
        kp.sign(b"x")
    assert not nkeys.verify(kp.public_key, b"x", b"\0" * 64)
    assert nkeys.from_seed(kp.seed or "").public_key == kp.public_key


# ----------------------------------------------------------------- bad input


def _flip(s: str, i: int) -> str:
    c = "B" if s[i] != "B" else "C"
    return s[:i] + c + s[i + 1 :]


def test_bad_checksum() -> None:
    kp = nkeys.create_pair("user")
    bad_pub = _flip(kp.public_key, 10)
    with pytest.raises(NKeyError, match="invalid checksum"):
        nkeys.decode(PrefixByte.USER, bad_pub)
    assert not nkeys.is_valid_public_key(bad_pub)
    assert not nkeys.verify(bad_pub, b"x", kp.sign(b"x"))
    with pytest.raises(NKeyError, match="invalid checksum"):
        nkeys.from_seed(_flip(kp.seed or "", 20))
    assert nkeys.prefix_of(bad_pub) == PrefixByte.UNKNOWN


def test_wrong_prefix() -> None:
    acc = nkeys.create_pair("account")
    with pytest.raises(NKeyError, match="invalid prefix byte"):
        nkeys.decode(PrefixByte.USER, acc.public_key)
    assert not nkeys.is_valid_public_key(acc.public_key, "user")
    with pytest.raises(NKeyError):
        nkeys.from_seed(acc.public_key)  # a public key is not a seed
    with pytest.raises(NKeyError, match="invalid public key"):
        nkeys.from_public_key(acc.seed or "")  # a seed is not a public key
    with pytest.raises(NKeyError, match="invalid prefix byte"):
        nkeys.encode(7, b"x" * 32)
    with pytest.raises(NKeyError, match="invalid prefix byte"):
        nkeys.encode_seed(PrefixByte.SEED, b"x" * 32)


def test_bad_encodings() -> None:
    kp = nkeys.create_pair("user")
    for bad in ["", "U", "UA", kp.public_key.lower(), kp.public_key[:-1], kp.public_key + "=",
                kp.public_key.replace(kp.public_key[5], "1"), "0" * 56, "UÄ" + kp.public_key[2:]]:
        assert not nkeys.is_valid_public_key(bad), bad
        with pytest.raises(NKeyError):
            nkeys.from_public_key(bad)
        assert not nkeys.verify(bad, b"x", b"y" * 64)
    with pytest.raises(NKeyError, match="invalid seed length"):
        nkeys.encode_seed("user", b"short")
    # a well-formed seed with the wrong length payload
    body = bytes([PrefixByte.SEED | (PrefixByte.USER >> 5), (PrefixByte.USER & 31) << 3]) + b"x" * 31
    short_seed = base64.b32encode(body + nkeys.crc16(body).to_bytes(2, "little")).decode().rstrip("=")
    with pytest.raises(NKeyError, match="invalid seed length"):
        nkeys.from_seed(short_seed)
    # a seed whose second byte is not a public kind
    body = bytes([PrefixByte.SEED, 0xF8]) + b"x" * 32
    odd = base64.b32encode(body + nkeys.crc16(body).to_bytes(2, "little")).decode().rstrip("=")
    with pytest.raises(NKeyError, match="invalid seed"):
        nkeys.from_seed(odd)


def test_bytes_and_whitespace_inputs() -> None:
    kp = nkeys.create_pair("user")
    assert nkeys.from_seed((kp.seed or "").encode() + b"\n").public_key == kp.public_key
    assert nkeys.from_seed("  " + (kp.seed or "") + "\r\n").public_key == kp.public_key
    assert nkeys.verify(kp.public_key.encode(), b"m", kp.sign(b"m"))


# ------------------------------------------------- interop: python ``nkeys``


def test_interop_with_nkeys_package() -> None:
    ref = pytest.importorskip("nkeys")
    for kind, pfx in [("user", ref.PREFIX_BYTE_USER), ("account", ref.PREFIX_BYTE_ACCOUNT),
                      ("operator", ref.PREFIX_BYTE_OPERATOR), ("server", ref.PREFIX_BYTE_SERVER),
                      ("cluster", ref.PREFIX_BYTE_CLUSTER)]:
        ours = nkeys.create_pair(kind)
        theirs = ref.from_seed(bytearray((ours.seed or "").encode()))
        assert theirs.public_key.decode() == ours.public_key
        assert bytes(theirs.private_key).decode() == ours.private_key
        assert ours.verify(b"data", theirs.sign(b"data"))
        assert theirs.verify(b"data", ours.sign(b"data"))
        # and the other direction: a seed encoded by the reference implementation
        raw = os.urandom(32)
        their_seed = bytes(ref.encode_seed(raw, pfx)).decode()
        assert nkeys.from_seed(their_seed).public_key == ref.from_seed(bytearray(their_seed.encode())).public_key.decode()
        assert nkeys.from_raw_seed(kind, raw).seed == their_seed


# ---------------------------------------------------- interop: nats-server


@pytest.mark.skipif(NATS_SERVER is None, reason="nats-server not installed")
def test_nats_server_accepts_our_nkey_users() -> None:
    pytest.importorskip("nkeys")  # nats-py signs the nonce with it
    import nats

    good = nkeys.create_pair("user")
    other = nkeys.create_pair("user")
    proc, url, d = start_nats_server(f"authorization {{ users: [ {{ nkey: {good.public_key} }} ] }}")

    async def attempt(seed: str) -> bool:
        try:
            nc = await nats.connect(url, nkeys_seed_str=seed, allow_reconnect=False,
                                    max_reconnect_attempts=0, connect_timeout=3)
        except Exception:
            return False
        await nc.close()
        return True

    try:
        assert asyncio.run(attempt(good.seed or ""))
        assert not asyncio.run(attempt(other.seed or ""))
    finally:
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(d, ignore_errors=True)
