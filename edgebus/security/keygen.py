"""``edgebus nk ...`` and ``edgebus passwd ...``: key and password tooling.

Mirrors the Go ``nk`` tool and natscli's ``nats server passwd``::

    edgebus nk gen user|account|operator|server|cluster|curve [--pubout]
    edgebus nk pub SEEDFILE            # '-' reads stdin
    edgebus nk sign FILE --inkey SEEDFILE
    edgebus nk verify FILE --sigfile SIGFILE (--inkey SEEDFILE | --pubin PUBFILE)
    edgebus passwd [-p PASS] [-c COST] [-g]   # else PASSWORD env, or stdin

``main(argv)`` takes the arguments after ``edgebus`` (so ``argv[0]`` is ``nk``
or ``passwd``) and returns a process exit code; it never calls ``sys.exit``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import os
import secrets
import string
import sys
from typing import Sequence, TextIO

from . import nkeys, passwords

__all__ = ["main"]

MIN_PASSWORD_LEN = 22  # natscli refuses shorter passwords
_GEN_ALPHABET = string.ascii_letters + string.digits + "!#$%&()*+,-./:;<=>?@[]^_{|}~"


class _CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    # Raise instead of exiting so main() can return an exit code.
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _CliError(f"{self.prog}: {message}")


def _read_key_file(path: str) -> str:
    """First line that is a valid nkey encoding (as ``nk``'s readKeyFile)."""
    try:
        if path == "-":
            contents = sys.stdin.read()
        else:
            with open(path, encoding="utf-8", errors="replace") as fh:
                contents = fh.read()
    except OSError as exc:
        raise _CliError(str(exc)) from None
    for line in contents.split("\n"):
        line = line.strip()
        if line and nkeys.is_valid_encoding(line):
            return line
    raise _CliError("Could not find a valid key")


def _nk_parser() -> _Parser:
    parser = _Parser(prog="edgebus nk", description="NKey tooling")
    sub = parser.add_subparsers(dest="cmd", required=True)
    gen = sub.add_parser("gen", help="generate a key pair, print its seed")
    gen.add_argument("kind", help="user|account|operator|server|cluster|curve|x25519")
    gen.add_argument("--pubout", action="store_true", help="also print the public key")
    pub = sub.add_parser("pub", help="print the public key of a seed file")
    pub.add_argument("seedfile")
    sign = sub.add_parser("sign", help="sign a file (base64url raw signature)")
    sign.add_argument("file")
    sign.add_argument("--inkey", required=True)
    ver = sub.add_parser("verify", help="verify a file signature")
    ver.add_argument("file")
    ver.add_argument("--sigfile", required=True)
    ver.add_argument("--inkey")
    ver.add_argument("--pubin")
    return parser


def _nk(argv: Sequence[str], out: TextIO) -> int:
    # Subparsers are built with the same error-raising class.
    args = _nk_parser().parse_args(list(argv))
    if args.cmd == "gen":
        try:
            kp = nkeys.create_pair(args.kind)
        except nkeys.NKeyError:
            raise _CliError("Usage: edgebus nk gen [user|account|server|cluster|operator|curve|x25519]") from None
        print(kp.seed, file=out)
        if args.pubout:
            print(kp.public_key, file=out)
        return 0
    if args.cmd == "pub":
        kp = _keypair_from(_read_key_file(args.seedfile))
        print(kp.public_key, file=out)
        return 0
    if args.cmd == "sign":
        kp = _keypair_from(_read_key_file(args.inkey))
        data = _read_bytes(args.file)
        try:
            sig = kp.sign(data)
        except nkeys.NKeyError as exc:
            raise _CliError(str(exc)) from None
        print(base64.urlsafe_b64encode(sig).decode().rstrip("="), file=out)
        return 0
    # verify
    if not args.inkey and not args.pubin:
        raise _CliError("Verify requires a seed key via --inkey or a public key via --pubin")
    key = _read_key_file(args.inkey or args.pubin)
    kp = _keypair_from(key) if args.inkey else _public_from(key)
    sig_text = _read_bytes(args.sigfile).decode("ascii", "replace").strip()
    try:
        sig = base64.urlsafe_b64decode(sig_text + "=" * (-len(sig_text) % 4))
    except (binascii.Error, ValueError):
        raise _CliError("illegal base64 data in signature file") from None
    if not kp.verify(_read_bytes(args.file), sig):
        raise _CliError("nkeys: signature verification failed")
    print("Verified OK", file=out)
    return 0


def _keypair_from(seed: str) -> nkeys.KeyPair:
    try:
        return nkeys.from_seed(seed)
    except nkeys.NKeyError as exc:
        raise _CliError(str(exc)) from None


def _public_from(key: str) -> nkeys.KeyPair:
    try:
        return nkeys.from_public_key(key)
    except nkeys.NKeyError as exc:
        raise _CliError(str(exc)) from None


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise _CliError(str(exc)) from None


def _passwd_parser() -> _Parser:
    parser = _Parser(prog="edgebus passwd", description="Creates bcrypt passwords for use in the server config")
    parser.add_argument("password", nargs="?", help="the password (else --pass, $PASSWORD or stdin)")
    parser.add_argument("-p", "--pass", dest="pass_", help="the password to encrypt")
    parser.add_argument("-c", "--cost", type=int, default=passwords.DEFAULT_COST, help="bcrypt cost (default 11)")
    parser.add_argument("-g", "--generate", action="store_true", help="generate a secure password and encrypt it")
    return parser


def _ask_password(stdin: TextIO) -> str:
    if stdin.isatty():
        first = getpass.getpass("Enter password: ")
        second = getpass.getpass("Reenter password: ")
        if first != second:
            raise _CliError("passwords do not match")
        return first
    line = stdin.readline()
    return line.rstrip("\r\n")


def _passwd(argv: Sequence[str], out: TextIO, stdin: TextIO) -> int:
    args = _passwd_parser().parse_args(list(argv))
    if not passwords.MIN_COST <= args.cost <= passwords.MAX_COST:
        raise _CliError(f"bcrypt cost should be between {passwords.MIN_COST} and {passwords.MAX_COST}")
    password = args.pass_ or args.password or os.environ.get("PASSWORD", "")
    if not password and args.generate:
        password = "".join(secrets.choice(_GEN_ALPHABET) for _ in range(MIN_PASSWORD_LEN))
        print(f"Generated password: {password}", file=out)
    elif not password:
        password = _ask_password(stdin)
    if len(password) < MIN_PASSWORD_LEN:
        raise _CliError(f"password should be at least {MIN_PASSWORD_LEN} characters long")
    try:
        hashed = passwords.hash_password(password, args.cost)
    except ValueError as exc:
        raise _CliError(f"error producing bcrypt hash: {exc}") from None
    if args.generate:
        print(f"       bcrypt hash: {hashed}", file=out)
    else:
        print(hashed, file=out)
    return 0


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stdin: TextIO | None = None) -> int:
    """Run ``nk ...`` or ``passwd ...``; return the exit code (errors go to stderr)."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = stdout or sys.stdout
    try:
        if not args or args[0] in ("-h", "--help"):
            print(__doc__, file=out)
            return 0 if args else 2
        command, rest = args[0], args[1:]
        if command == "nk":
            return _nk(rest, out)
        if command in ("passwd", "mkpasswd"):
            return _passwd(rest, out, stdin or sys.stdin)
        raise _CliError(f"unknown command {command!r} (expected 'nk' or 'passwd')")
    except _CliError as exc:
        print(f"edgebus: error: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # argparse --help
        return int(exc.code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
