"""Monitoring query strings read as nats-server reads them (Go's `net/url` and `strconv`).

nats-server decodes each documented parameter of an endpoint in a fixed order and answers the
first malformed one with `400` and a plain-text line such as
`Error decoding int for 'limit': strconv.Atoi: parsing "x": invalid syntax` (monitor.go
`decodeBool` / `decodeInt` / `decodeUint64` / `decodeState`). `check(path, query)` does the same
for every endpoint in `PARAMS`, raising `QueryError` with nats-server's text; the endpoint
functions then read the values leniently (they also serve `$SYS` requests, whose options come
from JSON). Pure functions: no trio, no server.
"""

from __future__ import annotations

import re
from typing import Callable

#: Go's `strconv.ParseBool` spellings.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1

#: Per endpoint, its typed parameters in the order nats-server's handler decodes them.
#: Kinds: bool, int (Go `int`), uint64, state (open/closed/any/all), subs (bool or "detail").
PARAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "/connz": (("auth", "bool"), ("subs", "subs"), ("offset", "int"), ("limit", "int"),
               ("cid", "uint64"), ("state", "state")),
    "/routez": (("subs", "subs"),),
    "/gatewayz": (("subs", "subs"), ("accs", "bool")),
    "/leafz": (("subs", "bool"),),
    "/subsz": (("subs", "bool"), ("offset", "int"), ("limit", "int")),
    "/subscriptionsz": (("subs", "bool"), ("offset", "int"), ("limit", "int")),
    "/accstatz": (("unused", "bool"),),
    "/jsz": (("accounts", "bool"), ("streams", "bool"), ("consumers", "bool"),
             ("direct-consumers", "bool"), ("config", "bool"), ("offset", "int"),
             ("limit", "int"), ("leader-only", "bool"), ("raft", "bool"),
             ("stream-leader-only", "bool")),
    "/logz": (("limit", "int"),),  # edgebus's own
    "/healthz": (("js-enabled", "bool"), ("js-enabled-only", "bool"), ("js-server-only", "bool"),
                 ("js-meta-only", "bool"), ("details", "bool")),
}


class QueryError(Exception):
    """A malformed monitoring request: HTTP 400 with `text` as the plain-text body."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


_HEX = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _unescape(s: str) -> str | None:
    """Go's `url.QueryUnescape` of one key or value of a request target read as latin-1;
    None where Go reports an error (a `%` not followed by two hex digits)."""
    if _HEX.search(s):
        return None
    b = s.encode("latin-1", "replace")
    out = bytearray()
    i = 0
    while i < len(b):
        c = b[i]
        if c == 0x25:  # %XX
            out.append(int(b[i + 1:i + 3], 16))
            i += 3
            continue
        out.append(0x20 if c == 0x2B else c)  # '+' is a space in a query
        i += 1
    return out.decode("utf-8", "surrogateescape")


def parse(raw: str) -> dict[str, list[str]]:
    """Go's `url.ParseQuery` (as `URL.Query()` uses it): `&`-separated pairs; a pair holding a
    `;` or a bad escape is dropped; an empty value is kept."""
    out: dict[str, list[str]] = {}
    for pair in raw.split("&"):
        if not pair or ";" in pair:
            continue
        key, _, value = pair.partition("=")
        k, v = _unescape(key), _unescape(value)
        if k is None or v is None:
            continue
        out.setdefault(k, []).append(v)
    return out


def get(query: dict[str, list[str]], key: str) -> str:
    """Go's `Values.Get`: the first value, or ''."""
    v = query.get(key)
    return v[0] if v else ""


def go_quote(s: str) -> str:
    """Go's `strconv.Quote` (how `NumError` shows the text it could not parse)."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0xDC80 <= o <= 0xDCFF:  # an undecodable byte kept by surrogateescape
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == " " or (ch.isprintable() and o != 0x7F):
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                        "\t": "\\t", "\v": "\\v"}[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def _num_error(fn: str, s: str, what: str) -> str:
    return f"strconv.{fn}: parsing {go_quote(s)}: {what}"


def parse_uint64(s: str, fn: str = "ParseUint") -> int:
    """Go's `strconv.ParseUint(s, 10, 64)`; ValueError carries Go's message."""
    if not s:
        raise ValueError(_num_error(fn, s, "invalid syntax"))
    n = 0
    for ch in s:
        if not "0" <= ch <= "9":
            raise ValueError(_num_error(fn, s, "invalid syntax"))
        n = n * 10 + (ord(ch) - 48)
        if n > _UINT64_MAX:  # Go stops at the first overflow, before later bad digits
            raise ValueError(_num_error(fn, s, "value out of range"))
    return n


def atoi(s: str) -> int:
    """Go's `strconv.Atoi` on a 64-bit platform."""
    body = s[1:] if s[:1] in ("+", "-") else s
    try:
        n = parse_uint64(body, "Atoi")
    except ValueError as e:
        if "out of range" in str(e):
            raise ValueError(_num_error("Atoi", s, "value out of range")) from None
        raise ValueError(_num_error("Atoi", s, "invalid syntax")) from None
    if s[:1] == "-":
        if n > _INT64_MAX + 1:
            raise ValueError(_num_error("Atoi", s, "value out of range"))
        return -n
    if n > _INT64_MAX:
        raise ValueError(_num_error("Atoi", s, "value out of range"))
    return n


def decode_bool(query: dict[str, list[str]], param: str) -> bool:
    s = get(query, param)
    if not s:
        return False
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise QueryError(f"Error decoding boolean for '{param}': "
                     + _num_error("ParseBool", s, "invalid syntax"))


def decode_int(query: dict[str, list[str]], param: str) -> int:
    s = get(query, param)
    if not s:
        return 0
    try:
        return atoi(s)
    except ValueError as e:
        raise QueryError(f"Error decoding int for '{param}': {e}") from None


def decode_uint64(query: dict[str, list[str]], param: str) -> int:
    s = get(query, param)
    if not s:
        return 0
    try:
        return parse_uint64(s)
    except ValueError as e:
        raise QueryError(f"Error decoding uint64 for '{param}': {e}") from None


def decode_state(query: dict[str, list[str]], param: str = "state") -> str:
    """'open', 'closed' or 'any'."""
    s = get(query, param)
    if not s:
        return "open"
    low = s.lower()
    if low in ("open", "closed"):
        return low
    if low in ("any", "all"):
        return "any"
    raise QueryError(f"Error decoding state for {s}")


def decode_subs(query: dict[str, list[str]], param: str = "subs") -> str:
    """'detail', 'list' or '' (nats-server's `decodeSubs`)."""
    if get(query, param).lower() == "detail":
        return "detail"
    return "list" if decode_bool(query, param) else ""


_DECODERS: dict[str, Callable[[dict[str, list[str]], str], object]] = {
    "bool": decode_bool, "int": decode_int, "uint64": decode_uint64,
    "state": decode_state, "subs": decode_subs}


def check(path: str, query: dict[str, list[str]]) -> None:
    """Raise QueryError for the first malformed typed parameter of `path`, as nats-server."""
    for param, kind in PARAMS.get(path, ()):
        _DECODERS[kind](query, param)
