"""``edgebus nk`` / ``edgebus passwd`` CLI (keygen.main)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from edgebus.security import keygen, nkeys
from edgebus.security.passwords import compare_passwords


def run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    code = keygen.main(argv, stdout=out, stdin=io.StringIO(stdin))
    return code, out.getvalue()


@pytest.mark.parametrize(("kind", "seed_prefix", "pub_prefix"), [
    ("user", "SU", "U"), ("account", "SA", "A"), ("operator", "SO", "O"),
    ("server", "SN", "N"), ("cluster", "SC", "C"), ("curve", "SX", "X"), ("USER", "SU", "U"),
])
def test_nk_gen(kind: str, seed_prefix: str, pub_prefix: str) -> None:
    code, out = run(["nk", "gen", kind])
    assert code == 0
    lines = out.split()
    assert len(lines) == 1 and lines[0].startswith(seed_prefix)
    code, out = run(["nk", "gen", kind, "--pubout"])
    seed, pub = out.split()
    assert code == 0 and pub.startswith(pub_prefix)
    assert nkeys.from_seed(seed).public_key == pub


def test_nk_gen_bad_kind(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["nk", "gen", "bogus"])
    assert code == 1 and out == ""
    assert "Usage" in capsys.readouterr().err


def test_nk_pub(tmp_path: Path) -> None:
    kp = nkeys.create_pair("account")
    f = tmp_path / "seed.nk"
    f.write_text(f"# my key\n\n{kp.seed}\n")
    assert run(["nk", "pub", str(f)]) == (0, kp.public_key + "\n")
    # a creds-style decorated file works too
    f.write_text(f"-----BEGIN ACCOUNT NKEY SEED-----\n{kp.seed}\n------END ACCOUNT NKEY SEED------\n")
    assert run(["nk", "pub", str(f)]) == (0, kp.public_key + "\n")


def test_nk_pub_errors(tmp_path: Path) -> None:
    f = tmp_path / "nothing"
    f.write_text("no keys here\n")
    assert run(["nk", "pub", str(f)])[0] == 1
    assert run(["nk", "pub", str(tmp_path / "missing")])[0] == 1
    pub_only = tmp_path / "pub"
    pub_only.write_text(nkeys.create_pair("user").public_key)
    assert run(["nk", "pub", str(pub_only)])[0] == 1  # a public key is not a seed


def test_nk_sign_verify(tmp_path: Path) -> None:
    kp = nkeys.create_pair("user")
    seed = tmp_path / "seed"
    seed.write_text(kp.seed or "")
    data = tmp_path / "data"
    data.write_bytes(b"payload")
    code, sig = run(["nk", "sign", str(data), "--inkey", str(seed)])
    assert code == 0
    sigfile = tmp_path / "sig"
    sigfile.write_text(sig)
    assert run(["nk", "verify", str(data), "--sigfile", str(sigfile), "--inkey", str(seed)]) == (0, "Verified OK\n")
    pub = tmp_path / "pub"
    pub.write_text(kp.public_key)
    assert run(["nk", "verify", str(data), "--sigfile", str(sigfile), "--pubin", str(pub)])[0] == 0
    data.write_bytes(b"tampered")
    assert run(["nk", "verify", str(data), "--sigfile", str(sigfile), "--pubin", str(pub)])[0] == 1


def test_passwd_from_flag_arg_and_stdin() -> None:
    pw = "correct-horse-battery-staple"
    for argv, stdin in [(["passwd", "--cost", "4", "--pass", pw], ""),
                        (["passwd", "-c", "4", pw], ""),
                        (["passwd", "-c", "4"], pw + "\n")]:
        code, out = run(argv, stdin)
        assert code == 0
        hashed = out.strip()
        assert hashed.startswith("$2a$04$")
        assert compare_passwords(hashed, pw)


def test_passwd_default_cost() -> None:
    code, out = run(["passwd", "-p", "x" * 22])
    assert code == 0 and out.startswith("$2a$11$")


def test_passwd_generate() -> None:
    code, out = run(["passwd", "-g", "-c", "4"])
    assert code == 0
    first, second = out.splitlines()
    password = first.split("Generated password: ", 1)[1]
    hashed = second.split("bcrypt hash: ", 1)[1]
    assert len(password) == 22 and compare_passwords(hashed, password)


def test_passwd_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PASSWORD", raising=False)
    assert run(["passwd", "-c", "4", "short"])[0] == 1
    assert run(["passwd", "-c", "3", "x" * 22])[0] == 1
    assert run(["passwd", "-c", "32", "x" * 22])[0] == 1
    assert run(["passwd", "-c", "4"], "")[0] == 1  # empty stdin
    assert run(["passwd", "--bogus"])[0] == 1


def test_passwd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSWORD", "y" * 30)
    code, out = run(["passwd", "-c", "4"])
    assert code == 0 and compare_passwords(out.strip(), "y" * 30)


def test_unknown_command() -> None:
    assert run(["frob"])[0] == 1
    assert run([])[0] == 2
