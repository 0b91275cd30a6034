"""Tokenizer for the nats-server configuration language.

The format is loose: ``key: v``, ``key = v`` and ``key v`` all assign; maps ``{}`` and
arrays ``[]`` nest; values may be quoted or bare; ``#`` and ``//`` start comments. The
lexer turns text into a flat stream of `Token`s (keys, scalars as source text, bracket
markers, variable references and include directives) and leaves their meaning to
`edgebus.conf.parser`.

The rules follow nats-server's own lexer (conf/lex.go) closely, quirks included, because a
drop-in has to accept and reject the same files. The notable ones:

* a value starting with a digit is a number only if it ends at a terminator; otherwise it
  turns into a bare string (``3secret``, ``10s``, ``127.0.0.1:4222``);
* ``2m`` / ``64MB`` are integers with a size suffix, so an *unquoted* ``2m`` is 2,000,000;
* bare ``true/false/yes/no/on/off`` (any case) are booleans, ``$name`` is a variable;
* after ``key:`` the value must be on the same line at top level, but may be on the next
  line inside a map; without a separator a ``{`` or ``[`` may start on the next line;
* ``( ... )`` with the closing parenthesis alone on its own line is a raw multi-line string.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import ConfigError, Position

__all__ = ["Kind", "Token", "Lexer", "tokenize"]


class Kind(enum.Enum):
    KEY = "key"
    STRING = "string"
    BOOL = "bool"
    INTEGER = "integer"  # source text, possibly with a size suffix ("64MB")
    FLOAT = "float"
    DATETIME = "datetime"  # "YYYY-MM-DDTHH:MM:SSZ"
    ARRAY_START = "["
    ARRAY_END = "]"
    MAP_START = "{"
    MAP_END = "}"
    VARIABLE = "variable"  # name without the leading "$"
    INCLUDE = "include"  # path as written
    EOF = "eof"


@dataclass(frozen=True)
class Token:
    kind: Kind
    value: str
    line: int
    col: int


BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off"})
SIZE_LETTERS = frozenset("kKmMgGtTpPeE")
_SEPARATORS = "=:"
# characters that end a bare (unquoted) string
_BARE_END = frozenset("\n\r;,]} \t")
# characters after which a digit run is a finished number; note "]" is absent, as in
# nats-server, which is why "[1,2]" does not lex but "[1, 2 ]" does
_NUMBER_END = frozenset("\n\r};, \t")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}
_DATE_SHAPE = "00-00T00:00:00Z"  # what must follow "YYYY" ("0" = any digit)
_HEX = frozenset("0123456789abcdefABCDEF")


def _quote(c: str) -> str:
    """How a character is shown in an error message."""
    if c == "":
        return "EOF"
    if c == "\n":
        return "\\n"
    return c


class Lexer:
    """Splits one config text into tokens; `tokens()` yields them lazily.

    Errors are raised as `ConfigError` positioned at the offending character.
    """

    def __init__(self, text: str, filename: str = "<string>") -> None:
        self.src = text
        self.filename = filename
        self.i = 0
        self.line = 1
        self.line_start = 0

    # -- low level -----------------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> str:
        j = self.i + ahead
        return self.src[j] if j < len(self.src) else ""

    def _advance(self) -> str:
        c = self._peek()
        if c:
            self.i += 1
            if c == "\n":
                self.line += 1
                self.line_start = self.i
        return c

    def _at_comment(self) -> bool:
        c = self._peek()
        return c == "#" or (c == "/" and self._peek(1) == "/")

    def _skip_comment(self) -> None:
        # a comment runs up to (not including) the end of the line
        while self._peek() not in ("", "\n", "\r"):
            self._advance()

    def _skip_blanks(self) -> None:
        while self._peek() in (" ", "\t") and self._peek():
            self._advance()

    def _skip_space(self) -> None:
        while self._peek() and self._peek().isspace():
            self._advance()

    def _pos(self) -> tuple[int, int]:
        return self.line, self.i - self.line_start + 1

    def _token(self, kind: Kind, value: str, at: tuple[int, int]) -> Token:
        return Token(kind, value, at[0], at[1])

    def error(self, message: str, at: tuple[int, int] | None = None) -> ConfigError:
        line, col = at or self._pos()
        return ConfigError(message, Position(self.filename, line, col))

    # -- document level ------------------------------------------------------------------

    def tokens(self) -> Iterator[Token]:
        # depth counts "{" wrappers around the whole document (JSON style files)
        depth = 0
        while True:
            self._skip_space()
            c = self._peek()
            if c == "":
                yield self._token(Kind.EOF, "", self._pos())
                return
            if self._at_comment():
                self._skip_comment()
                continue
            if c == "{":
                self._advance()
                depth += 1
                continue
            if c == "}" and depth:
                self._advance()
                depth -= 1
                continue
            if c == "/":
                # nats-server reports a lone slash where a key should start this way
                raise self.error("Unexpected EOF.")
            ended = yield from self._top_entry()
            if ended:
                return
            depth -= self._top_value_end(depth > 0)

    def _top_entry(self) -> Iterator[Token]:
        """One ``key value`` (or include) at document level; returns True at EOF."""
        at = self._pos()
        c = self._peek()
        if c in _SEPARATORS:
            raise self.error(f"Unexpected key separator '{c}'")
        if c in ('"', "'"):
            key = self._quoted_key(c, "Unexpected EOF.")
        else:
            key, include = self._bare_key()
            if include:
                yield self._include()
                return False
        yield self._token(Kind.KEY, key, at)
        self._skip_space()
        c = self._peek()
        if c == "":
            yield self._token(Kind.EOF, "", self._pos())
            return True
        if c in _SEPARATORS:
            self._advance()
        yield from self._value()
        return False

    def _top_value_end(self, in_block: bool) -> int:
        """Consume what may follow a document-level value; returns 1 if a "}" closed a wrapper."""
        while True:
            c = self._peek()
            if c in (" ", "\t") and c:
                self._advance()
            elif self._at_comment():
                self._skip_comment()
                return 0
            elif c == "/":
                self._advance()  # nats-server skips a lone slash here
            elif c == "" or c in "\n\r;,":
                self._advance()
                return 0
            elif c == "}":
                self._advance()
                return 1 if in_block else 0
            elif in_block:
                raise self.error(
                    "Expected a block-level value to end with a new line, comment or EOF, "
                    f"but got '{_quote(c)}' instead."
                )
            else:
                raise self.error(
                    "Expected a top-level value to end with a new line, comment or EOF, "
                    f"but got '{_quote(c)}' instead."
                )

    # -- keys -----------------------------------------------------------------------------

    def _quoted_key(self, quote: str, eof_message: str) -> str:
        self._advance()
        start = self.i
        while self._peek() != quote:
            if self._peek() == "":
                raise self.error(eof_message)
            self._advance()
        key = self.src[start : self.i]
        self._advance()
        return key

    def _bare_key(self, eof_message: str | None = None) -> tuple[str, bool]:
        """A bare key runs to whitespace or a separator; ``include`` + space is a directive."""
        start = self.i
        self._advance()  # the first character is taken whatever it is
        while True:
            c = self._peek()
            if c == "":
                if eof_message:
                    raise self.error(eof_message)
                break
            if c.isspace():
                word = self.src[start : self.i]
                return word, word.lower() == "include"
            if c in _SEPARATORS:
                break
            self._advance()
        return self.src[start : self.i], False

    def _include(self) -> Token:
        self._skip_blanks()
        at = self._pos()
        c = self._peek()
        if c in ('"', "'"):
            what = "double quoted include" if c == '"' else "quoted include"
            path = self._quoted_key(c, f"Unexpected EOF in {what}")
            return self._token(Kind.INCLUDE, path, at)
        problems = {
            "[": "start of an array",
            "{": "start of a map",
            "(": "start of a block",
            "\\": "escape sequence",
            "\n": "new line",
            "\r": "new line",
            "-": "start of a number",
        }
        if c in problems or (c and c.isdecimal()):
            found = problems.get(c, "start of a number")
            raise self.error(f"Expected include value but found {found}")
        start = self.i
        while True:
            c = self._peek()
            if c == "" or c in "\n\r;} \t":
                return self._token(Kind.INCLUDE, self.src[start : self.i], at)
            if c == "'":
                path = self.src[start : self.i]
                self._advance()
                return self._token(Kind.INCLUDE, path, at)
            self._advance()

    # -- values ---------------------------------------------------------------------------

    def _value(self) -> Iterator[Token]:
        self._skip_blanks()
        at = self._pos()
        c = self._peek()
        if c == "[":
            self._advance()
            yield self._token(Kind.ARRAY_START, "[", at)
            yield from self._array()
        elif c == "{":
            self._advance()
            yield self._token(Kind.MAP_START, "{", at)
            yield from self._map()
        elif c == "'":
            yield self._single_quoted(at)
        elif c == '"':
            yield self._double_quoted(at)
        elif c == "-":
            yield self._negative(at)
        elif c == "(":
            yield self._block(at)
        elif c and c.isdecimal():
            yield self._number(at)
        elif c == ".":
            raise self.error("Floats must start with a digit")
        elif c in ("\n", "\r") and c:
            raise self.error("Expected value but found new line")
        else:
            yield self._bare(self.i, at)

    def _array(self) -> Iterator[Token]:
        while True:
            self._skip_space()
            c = self._peek()
            if self._at_comment():
                self._skip_comment()
                continue
            if c in (",", "/") and c:
                raise self.error("Unexpected array value terminator ','.")
            if c == "]":
                at = self._pos()
                self._advance()
                yield self._token(Kind.ARRAY_END, "]", at)
                return
            if c == "":
                raise self.error("Unexpected EOF processing array.")
            yield from self._value()
            # between values: a comma or a new line, or the closing bracket
            while True:
                c = self._peek()
                if c in (" ", "\t") and c:
                    self._advance()
                elif self._at_comment():
                    self._skip_comment()
                elif c and c in ",/\n\r":
                    self._advance()
                    break
                elif c == "]":
                    at = self._pos()
                    self._advance()
                    yield self._token(Kind.ARRAY_END, "]", at)
                    return
                else:
                    raise self.error(
                        'Expected an array value terminator "," or an array terminator "]", '
                        f"but got '{_quote(c)}' instead."
                    )

    def _map(self) -> Iterator[Token]:
        while True:
            c = self._peek()
            if c and c in _SEPARATORS:
                raise self.error(f"Unexpected key separator '{c}'.")
            if c == "]":
                raise self.error("Unexpected array end ']' processing map.")
            if c and c.isspace():
                self._advance()
                continue
            if c == "}":
                at = self._pos()
                self._advance()
                yield self._token(Kind.MAP_END, "}", at)
                return
            if self._at_comment():
                self._skip_comment()
                continue
            if c == "":
                raise self.error("Unexpected EOF processing map.")
            at = self._pos()
            if c == "'":
                key = self._quoted_key(c, "Unexpected EOF processing quoted map key.")
            elif c == '"':
                key = self._quoted_key(c, "Unexpected EOF processing double quoted map key.")
            else:
                key, include = self._bare_key("Unexpected EOF processing map key.")
                if include:
                    yield self._include()
                    if (yield from self._map_value_end()):
                        return
                    continue
            yield self._token(Kind.KEY, key, at)
            # inside maps the value may sit on the next line, even after a separator
            self._skip_space()
            if self._peek() and self._peek() in _SEPARATORS:
                self._advance()
            self._skip_space()
            c = self._peek()
            if c == ",":
                raise self.error('Unexpected map value terminator ",".')
            if c == "}":
                at = self._pos()
                self._advance()
                yield self._token(Kind.MAP_END, "}", at)
                return
            yield from self._value()
            if (yield from self._map_value_end()):
                return

    def _map_value_end(self) -> Iterator[Token]:
        """Consume what follows a map value; returns True once the map is closed."""
        while True:
            c = self._peek()
            if c in (" ", "\t") and c:
                self._advance()
            elif self._at_comment():
                self._skip_comment()
            elif c and c in "/;,\n\r":
                self._advance()
                return False
            elif c == "}":
                at = self._pos()
                self._advance()
                yield self._token(Kind.MAP_END, "}", at)
                return True
            else:
                raise self.error(
                    'Expected a map value terminator "," or a map terminator "}", '
                    f"but got '{_quote(c)}' instead."
                )

    # -- scalars --------------------------------------------------------------------------

    def _single_quoted(self, at: tuple[int, int]) -> Token:
        # single quotes are raw: no escapes, new lines allowed
        self._advance()
        start = self.i
        while self._peek() != "'":
            if self._peek() == "":
                raise self.error("Unexpected EOF.")
            self._advance()
        text = self.src[start : self.i]
        self._advance()
        return self._token(Kind.STRING, text, at)

    def _double_quoted(self, at: tuple[int, int]) -> Token:
        self._advance()
        out = bytearray()
        while True:
            c = self._peek()
            if c == "":
                raise self.error("Unexpected EOF.")
            self._advance()
            if c == '"':
                return self._token(Kind.STRING, _decode(out), at)
            if c == "\\":
                out += self._escape()
            else:
                out += c.encode("utf-8", "surrogatepass")

    def _escape(self) -> bytes:
        """The character(s) after a backslash; ``\\xHH`` may produce any byte."""
        c = self._advance()
        if c in _ESCAPES:
            return _ESCAPES[c].encode()
        if c == "x":
            digits = ""
            for _ in range(2):
                d = self._advance()
                if d in ("\n", "\r"):
                    raise self.error(
                        "Expected two hexadecimal digits after '\\x', but hit end of line"
                    )
                digits += d
            if len(digits) != 2 or any(d not in _HEX for d in digits):
                raise self.error(
                    f"Expected two hexadecimal digits after '\\x', but got '{digits}'"
                )
            return bytes.fromhex(digits)
        raise self.error(
            f"Invalid escape character '{_quote(c)}'. Only the following escape characters "
            "are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\."
        )

    def _bare(self, start: int, at: tuple[int, int]) -> Token:
        """An unquoted value: a string, a boolean or a ``$variable``.

        `start` may lie before the current position when a would-be number turned out to
        be text; everything from `start` on is part of the string.
        """
        out = bytearray()
        escaped = False
        seg = start
        while True:
            c = self._peek()
            if c == "\\":
                out += self.src[seg : self.i].encode("utf-8", "surrogatepass")
                self._advance()
                out += self._escape()
                escaped = True
                seg = self.i
                continue
            if c == "" or c in _BARE_END:
                out += self.src[seg : self.i].encode("utf-8", "surrogatepass")
                text = _decode(out)
                if escaped:
                    return self._token(Kind.STRING, text, at)
                if text.lower() in BOOL_WORDS:
                    return self._token(Kind.BOOL, text, at)
                if text.startswith("$"):
                    return self._token(Kind.VARIABLE, text[1:], at)
                return self._token(Kind.STRING, text, at)
            if c == "'":
                # a single quote ends a bare string (and is dropped)
                out += self.src[seg : self.i].encode("utf-8", "surrogatepass")
                self._advance()
                return self._token(Kind.STRING, _decode(out), at)
            self._advance()

    def _digits(self) -> None:
        while self._peek() and self._peek().isdecimal():
            self._advance()

    def _number(self, at: tuple[int, int]) -> Token:
        start = self.i
        self._digits()
        c = self._peek()
        if c == "-":
            if self.i - start != 4:
                raise self.error("All ISO8601 dates must be in full Zulu form.")
            self._advance()
            return self._datetime(start, at)
        if c == ".":
            self._advance()
            return self._fraction(start, at)
        if c and c in SIZE_LETTERS:
            self._advance()
            return self._sized(start, at)
        if c == "" or c in _NUMBER_END:
            return self._token(Kind.INTEGER, self.src[start : self.i], at)
        # not a number after all: the offending character is swallowed into a bare string
        # (so "[1,2]" yields the string "2]", exactly like nats-server)
        self._advance()
        return self._bare(start, at)

    def _negative(self, at: tuple[int, int]) -> Token:
        start = self.i
        self._advance()
        c = self._peek()
        if not (c and c.isdecimal()):
            if c == ".":
                raise self.error("Floats must start with a digit, not '.'.")
            raise self.error(f"Expected a digit but got '{_quote(c)}'.")
        self._digits()
        c = self._peek()
        if c == ".":
            self._advance()
            return self._fraction(start, at)
        if c and c in SIZE_LETTERS:
            self._advance()
            return self._sized(start, at)
        return self._token(Kind.INTEGER, self.src[start : self.i], at)

    def _sized(self, start: int, at: tuple[int, int]) -> Token:
        """After digits and a size letter: ``64M``, ``1Gb``, ``1KiB``... or a string (``100ms``)."""
        while self._peek() and self._peek() in "bBiI":
            self._advance()
        c = self._peek()
        if c == "" or c in _NUMBER_END or c.isdecimal():
            return self._token(Kind.INTEGER, self.src[start : self.i], at)
        return self._bare(start, at)

    def _fraction(self, start: int, at: tuple[int, int]) -> Token:
        c = self._peek()
        if not (c and c.isdecimal()):
            raise self.error(
                f"Floats must have a digit after the '.', but got '{_quote(c)}' instead."
            )
        self._digits()
        if self._peek() != ".":
            return self._token(Kind.FLOAT, self.src[start : self.i], at)
        # a second dot: an IP address such as 127.0.0.1:4222, kept as a string
        while self._peek() and (self._peek().isdecimal() or self._peek() in ".:-"):
            self._advance()
        return self._token(Kind.STRING, self.src[start : self.i], at)

    def _datetime(self, start: int, at: tuple[int, int]) -> Token:
        for want in _DATE_SHAPE:
            c = self._advance()
            if want == "0":
                if not (c and c.isdecimal()):
                    raise self.error(
                        f"Expected digit in ISO8601 datetime, but found '{_quote(c)}' instead."
                    )
            elif c != want:
                raise self.error(
                    f"Expected '{want}' in ISO8601 datetime, but found '{_quote(c)}' instead."
                )
        return self._token(Kind.DATETIME, self.src[start : self.i], at)

    def _block(self, at: tuple[int, int]) -> Token:
        """``(`` raw text up to a ``)`` standing alone on its own line."""
        self._advance()
        start = self.i
        j = start
        src = self.src
        while True:
            j = src.find(")", j)
            if j < 0:
                self._move_to(len(src))
                raise self.error("Unexpected EOF processing block.")
            if j > start and src[j - 1] == "\n":
                if j + 1 < len(src) and src[j + 1] == "\n":
                    text = src[start:j]
                    break
                if j + 1 == len(src):
                    # at end of input nats-server keeps the ")" in the text; so do we
                    text = src[start:]
                    break
            j += 1
        self._move_to(j + 1)
        return self._token(Kind.STRING, text, at)

    def _move_to(self, j: int) -> None:
        while self.i < j:
            self._advance()


def _decode(raw: bytes | bytearray) -> str:
    # \xHH escapes can build any byte sequence; keep invalid UTF-8 losslessly
    return bytes(raw).decode("utf-8", "surrogateescape")


def tokenize(text: str, filename: str = "<string>") -> list[Token]:
    """All tokens of `text` (handy for tests and debugging)."""
    return list(Lexer(text, filename).tokens())
