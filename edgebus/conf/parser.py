"""Turns config tokens into Python values, resolving variables and includes.

Result types: `ConfigMap` (a dict) for maps, `ConfigList` (a list) for arrays, and `str`,
`int`, `float`, `bool`, `datetime` for scalars. Durations stay strings (``"2m"``); see
`edgebus.conf.durations`. Both container types remember where each entry came from
(`Position`) so the options mapper can point at the offending line; a map also records
which of its keys were referenced as ``$variables`` (nats-server does not report those as
unknown fields).

Semantics follow nats-server's conf/parse.go:

* size suffixes: ``k``=10^3, ``kb``/``ki``/``kib``=2^10, likewise m, g, t, p, e (any case);
* ``$name`` looks through the enclosing maps (innermost first, only keys already seen)
  and then the environment, whose value is itself parsed as a config value;
* ``include path`` parses another file (relative to the including file's directory, with
  Go's ``filepath.Join`` semantics, so even ``/abs`` is joined) in a fresh variable scope
  and splices its top-level keys into the current map;
* a duplicate key replaces the earlier value.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from .errors import ConfigError, Position
from .lexer import Kind, Lexer, Token

__all__ = ["ConfigMap", "ConfigList", "parse_file", "parse_string", "SIZE_MULTIPLIERS"]

_K = 1000
_KI = 1024
SIZE_MULTIPLIERS: dict[str, int] = {"": 1}
for _i, _letter in enumerate("kmgtpe", start=1):
    SIZE_MULTIPLIERS[_letter] = _K**_i
    for _suffix in ("b", "i", "ib"):
        SIZE_MULTIPLIERS[_letter + _suffix] = _KI**_i

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# bcrypt hashes ("$2a$11$...") look like variable references but are taken literally
_BCRYPT_PREFIX = "2a$"


class ConfigMap(dict):  # type: ignore[type-arg]
    """A parsed map: a plain dict plus where each key was defined."""

    def __init__(self, position: Position | None = None) -> None:
        super().__init__()
        self.position = position
        self.positions: dict[str, Position] = {}
        self.used_variables: set[str] = set()

    def position_of(self, key: str) -> Position | None:
        """Where `key` was written (its key, not its value), or the map's own position."""
        return self.positions.get(key, self.position)

    def is_used_variable(self, key: str) -> bool:
        """True if `key` was referenced as ``$key`` after being defined here."""
        return key in self.used_variables


class ConfigList(list):  # type: ignore[type-arg]
    """A parsed array: a plain list plus where each element was written."""

    def __init__(self, position: Position | None = None) -> None:
        super().__init__()
        self.position = position
        self.positions: list[Position | None] = []

    def position_of(self, index: int) -> Position | None:
        try:
            return self.positions[index] or self.position
        except IndexError:
            return self.position


def go_join(base: str, path: str) -> str:
    """Go's ``filepath.Join``: concatenate then clean (an absolute `path` is not special)."""
    joined = posixpath.normpath(f"{base}/{path}") if base else posixpath.normpath(path)
    return joined


def _open_error(path: str, exc: OSError) -> str:
    # mirror the wording of Go's os errors, which nats-server passes through
    if isinstance(exc, FileNotFoundError):
        return f"open {path}: no such file or directory"
    if isinstance(exc, IsADirectoryError):
        return f"read {path}: is a directory"
    if isinstance(exc, PermissionError):
        return f"open {path}: permission denied"
    return f"open {path}: {exc.strerror or exc}"


class _Parser:
    def __init__(
        self,
        text: str,
        filename: str,
        base_dir: str,
        env: Mapping[str, str],
        include_chain: tuple[str, ...] = (),
        env_refs: set[str] | None = None,
    ) -> None:
        self.filename = filename
        self.base_dir = base_dir
        self.env = env
        self.include_chain = include_chain
        # names of environment variables being expanded right now, to catch cycles
        self.env_refs: set[str] = env_refs if env_refs is not None else set()
        self.tokens: Iterator[Token] = Lexer(text, filename).tokens()
        self.root = ConfigMap(Position(filename, 1, 1))
        self.stack: list[ConfigMap | ConfigList] = [self.root]
        # pending keys with where they were written; a map remembers how many were
        # pending when it opened so a key left without a value is caught
        self.keys: list[tuple[str, Position]] = []
        self.key_marks: list[int] = []

    def pos(self, tok: Token) -> Position:
        return Position(self.filename, tok.line, tok.col)

    def error(self, reason: str, tok: Token) -> ConfigError:
        return ConfigError(reason, self.pos(tok))

    def run(self) -> ConfigMap:
        prev: Token | None = None
        for tok in self.tokens:
            if tok.kind is Kind.EOF:
                # a trailing "}" key is tolerated so JSON-like files may end with a brace
                if prev is not None and prev.kind is Kind.KEY and prev.value != "}":
                    raise ConfigError(
                        f"config is invalid ({self.filename}:{tok.line}:{tok.col})",
                        self.pos(tok),
                    )
                break
            self.handle(tok)
            prev = tok
        return self.root

    def handle(self, tok: Token) -> None:
        kind = tok.kind
        if kind is Kind.KEY:
            self.keys.append((tok.value, self.pos(tok)))
        elif kind is Kind.MAP_START:
            self.key_marks.append(len(self.keys))
            self.stack.append(ConfigMap(self.pos(tok)))
        elif kind is Kind.ARRAY_START:
            self.stack.append(ConfigList(self.pos(tok)))
        elif kind is Kind.MAP_END:
            if len(self.keys) > self.key_marks.pop():
                key, where = self.keys.pop()
                raise ConfigError(f"missing value for key '{key}'", where)
            self.set_value(self.stack.pop(), tok)
        elif kind is Kind.ARRAY_END:
            self.set_value(self.stack.pop(), tok)
        elif kind is Kind.STRING:
            self.set_value(tok.value, tok)
        elif kind is Kind.BOOL:
            self.set_value(tok.value.lower() in ("true", "yes", "on"), tok)
        elif kind is Kind.INTEGER:
            self.set_value(self.integer(tok), tok)
        elif kind is Kind.FLOAT:
            value = float(tok.value)
            if value in (float("inf"), float("-inf")):
                raise self.error(f"float '{tok.value}' is out of the range", tok)
            self.set_value(value, tok)
        elif kind is Kind.DATETIME:
            try:
                when = datetime.strptime(tok.value, "%Y-%m-%dT%H:%M:%SZ")
            except ValueError:
                raise self.error(
                    f"expected Zulu formatted DateTime, but got '{tok.value}'", tok
                ) from None
            self.set_value(when.replace(tzinfo=timezone.utc), tok)
        elif kind is Kind.VARIABLE:
            self.set_value(self.lookup(tok), tok)
        elif kind is Kind.INCLUDE:
            self.include(tok)

    def integer(self, tok: Token) -> int:
        text = tok.value
        n = 0
        while n < len(text) and (text[n].isdecimal() or text[n] == "-"):
            n += 1
        digits, suffix = text[:n], text[n:].strip().lower()
        try:
            number = int(digits, 10)
        except ValueError:
            raise self.error(f"expected integer, but got '{text}'", tok) from None
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise self.error(f"integer '{text}' is out of the range", tok)
        if suffix not in SIZE_MULTIPLIERS:
            raise self.error(f"invalid size suffix in '{text}'", tok)
        return number * SIZE_MULTIPLIERS[suffix]

    def set_value(self, value: Any, tok: Token) -> None:
        ctx = self.stack[-1]
        if isinstance(ctx, ConfigList):
            ctx.append(value)
            ctx.positions.append(self.pos(tok))
            return
        if not self.keys:
            raise self.error("value without a key", tok)
        key, where = self.keys.pop()
        ctx[key] = value
        ctx.positions[key] = where
        ctx.used_variables.discard(key)

    # -- variables ------------------------------------------------------------------------

    def lookup(self, tok: Token) -> Any:
        name = tok.value
        if name.startswith(_BCRYPT_PREFIX):
            return "$" + name
        for ctx in reversed(self.stack):
            if isinstance(ctx, ConfigMap) and name in ctx:
                ctx.used_variables.add(name)
                return ctx[name]
        if name in self.env_refs:
            raise self.error(
                f"variable reference for '{name}' on line {tok.line} could not be parsed: "
                f"variable reference cycle for '{name}'",
                tok,
            )
        if name not in self.env:
            raise self.error(
                f"variable reference for '{name}' on line {tok.line} can not be found", tok
            )
        # the environment value is read as if written in a config file ("8222" -> 8222)
        self.env_refs.add(name)
        try:
            sub = _Parser(
                f"pk={self.env[name]}",
                f"<env {name}>",
                self.base_dir,
                self.env,
                self.include_chain,
                self.env_refs,
            ).run()
        except ConfigError as e:
            raise self.error(
                f"variable reference for '{name}' on line {tok.line} could not be parsed: "
                f"{e.reason}",
                tok,
            ) from None
        finally:
            self.env_refs.discard(name)
        return sub.get("pk", "")

    # -- includes -------------------------------------------------------------------------

    def include(self, tok: Token) -> None:
        path = go_join(self.base_dir, tok.value)
        real = os.path.realpath(path)
        what = f"error parsing include file '{tok.value}'"
        if real in self.include_chain:
            raise self.error(f"{what}, include cycle through {path}", tok)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as e:
            raise self.error(f"{what}, {_open_error(path, e)}", tok) from None
        try:
            sub = _Parser(
                text, path, posixpath.dirname(path) or ".", self.env, self.include_chain + (real,)
            ).run()
        except ConfigError as e:
            # keep the inner location: it names the included file and line
            raise self.error(f"{what}, {e}", tok) from None
        ctx = self.stack[-1]
        assert isinstance(ctx, ConfigMap)  # includes only appear where keys do
        for key, value in sub.items():
            ctx[key] = value
            ctx.positions[key] = sub.positions.get(key) or self.pos(tok)
            if sub.is_used_variable(key):
                ctx.used_variables.add(key)
            else:
                ctx.used_variables.discard(key)


def parse_string(
    text: str,
    *,
    filename: str = "<string>",
    base_dir: str = ".",
    env: Mapping[str, str] | None = None,
) -> ConfigMap:
    """Parse config `text`; includes are resolved against `base_dir`.

    `env` replaces ``os.environ`` for ``$VAR`` lookups (tests use it).
    """
    return _Parser(text, filename, base_dir, os.environ if env is None else env).run()


def parse_file(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> ConfigMap:
    """Parse the config file at `path` (includes resolve relative to its directory)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(_open_error(path, e), Position(path, 0, 0)) from None
    return _Parser(
        text,
        path,
        posixpath.dirname(path) or ".",
        os.environ if env is None else env,
        (os.path.realpath(path),),
    ).run()
