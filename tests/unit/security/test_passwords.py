"""Password checks: bcrypt detection and comparison as nats-server does them."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from edgebus.security.passwords import compare_passwords, hash_password, is_bcrypt
from conftest import NATS_SERVER, start_nats_server


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("$2a$11$3kIDaCxw.Glsl1.u5nKa6eUnNDLV5HV9tIuUp7EHhMt6Nm9myW1aS", True),
        ("$2b$04$abc", True),
        ("$2x$10$", True),
        ("$2y$10$whatever", True),
        ("$2z$10$abc", False),
        ("$2a$1$abc", False),
        ("$2a$aa$abc", False),
        ("$2a$10", False),
        ("$2", False),
        ("$3a$10$abc", False),
        ("2a$10$abc", False),
        ("plain", False),
        ("", False),
        ("$2a$١٢$abc", False),  # non-ASCII digits are not Go's \d
    ],
)
def test_is_bcrypt(secret: str, expected: bool) -> None:
    assert is_bcrypt(secret) is expected


def test_bcrypt_compare() -> None:
    h = hash_password("s3cret-password", cost=4)
    assert h.startswith("$2a$04$") and len(h) == 60
    assert compare_passwords(h, "s3cret-password")
    assert compare_passwords(h, b"s3cret-password")
    assert not compare_passwords(h, "s3cret-passwore")
    assert not compare_passwords(h, "")
    # every minor version uses the same algorithm (Go x/crypto/bcrypt)
    for minor in "bxy":
        assert compare_passwords(f"$2{minor}" + h[3:], "s3cret-password")


def test_bcrypt_long_passwords_use_first_72_bytes() -> None:
    h = hash_password("a" * 72, cost=4)
    assert compare_passwords(h, "a" * 72 + "extra")
    assert not compare_passwords(h, "a" * 71)
    with pytest.raises(ValueError):
        hash_password("a" * 73, cost=4)


def test_malformed_bcrypt_hash_never_matches() -> None:
    assert not compare_passwords("$2a$10$tooshort", "tooshort")
    assert not compare_passwords("$2a$10$" + "!" * 53, "x")


def test_plain_compare() -> None:
    assert compare_passwords("pass", "pass")
    assert not compare_passwords("pass", "Pass")
    assert not compare_passwords("pass", "pass ")
    assert compare_passwords("", "")
    # looks bcrypt-ish but fails the server's pattern: compared as text
    assert compare_passwords("$2q$notbcrypt", "$2q$notbcrypt")
    assert compare_passwords("pässwörd", "pässwörd".encode())


def test_hash_password_cost_bounds() -> None:
    with pytest.raises(ValueError):
        hash_password("x", cost=3)
    with pytest.raises(ValueError):
        hash_password("x", cost=32)


# ----------------------------------------------------- differential vs nats-server


@pytest.mark.skipif(NATS_SERVER is None, reason="nats-server not installed")
@pytest.mark.parametrize(
    "secret",
    [hash_password("b" * 72, cost=4), "$2y" + hash_password("b" * 72, cost=4)[3:], "$2q$plain-secret"],
)
def test_server_agrees(secret: str) -> None:
    import nats

    users = [{"user": "u", "password": secret}]
    proc, url, d = start_nats_server(f"authorization {{ users: {json.dumps(users)} }}")

    async def attempt(pw: str) -> bool:
        try:
            nc = await nats.connect(url, user="u", password=pw, allow_reconnect=False,
                                    max_reconnect_attempts=0, connect_timeout=3)
        except Exception:
            return False
        await nc.close()
        return True

    try:
        for pw in ["b" * 72, "b" * 72 + "tail", "b" * 71, "$2q$plain-secret", "wrong"]:
            assert asyncio.run(attempt(pw)) == compare_passwords(secret, pw), pw
    finally:
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(d, ignore_errors=True)
