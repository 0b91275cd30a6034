"""Subject transforms and account subject mappings, as nats-server implements them.

``SubjectTransform`` is the engine behind account/server ``mappings``, stream
``subject_transform``, source/mirror ``subject_transforms`` and ``republish``:
a source pattern (``*`` and a trailing ``>`` allowed) and a destination whose
tokens are literals, legacy ``$n`` or mustache functions::

    {{wildcard(n)}}  {{partition(k, n...)}}  {{partition(k)}}  {{split(n, sep)}}
    {{splitFromLeft(n, pos)}}  {{splitFromRight(n, pos)}}
    {{sliceFromLeft(n, size)}}  {{sliceFromRight(n, size)}}
    {{left(n, len)}}  {{right(n, len)}}  {{random(k)}}

Wildcard numbers are 1-based positions among the source's ``*`` tokens.
``partition`` hashes the listed wildcard tokens concatenated without separator
(or the whole subject joined by ``.`` in the one-argument form) with 32-bit
FNV-1a, modulo ``k``.  String functions work on UTF-8 bytes, like Go.

``Mappings`` is an account's ``mappings {}`` block: per-source weighted
destinations (optionally cluster scoped) chosen at random per publish, with the
source itself filling any weight left below 100%.  ``Mappings.apply`` is called
on every publish, so results for deterministic rules are cached per subject.

Semantics and error texts follow nats-server ``subject_transform.go``,
``sublist.go: ValidateMapping`` and ``accounts.go: AddWeightedMappings /
selectMappedSubject`` (2.10 behaviour plus the later ``random`` and one-argument
``partition`` additions).
"""

from __future__ import annotations

import enum
import random as _random
import re
from dataclasses import dataclass
from typing import Any, Final, Iterable, Mapping, Sequence

__all__ = [
    "TransformError",
    "MappingError",
    "SubjectTransform",
    "Mappings",
    "MapDest",
    "validate_mapping",
    "is_subset_match",
    "fnv1a32",
]

# --------------------------------------------------------------------- errors

ERR_BAD_SUBJECT: Final = "invalid subject"
ERR_NO_TRANSFORMS: Final = "no matching transforms available"
_ERR_DEST: Final = "invalid mapping destination"
ERR_INVALID_DEST_SUBJECT: Final = f"{_ERR_DEST}: invalid transform"
ERR_NOT_USING_ALL_WILDCARDS: Final = f"{_ERR_DEST}: not using all of the token wildcard(s)"
ERR_UNKNOWN_FUNCTION: Final = f"{_ERR_DEST}: unknown function"
ERR_INDEX_OUT_OF_RANGE: Final = f"{_ERR_DEST}: wildcard index out of range"
ERR_NOT_ENOUGH_ARGS: Final = f"{_ERR_DEST}: not enough arguments passed to the function"
ERR_INVALID_ARG: Final = f"{_ERR_DEST}: function argument is invalid or in the wrong format"
ERR_TOO_MANY_ARGS: Final = f"{_ERR_DEST}: too many arguments passed to the function"
ERR_NOT_SUPPORTED_FOR_IMPORT: Final = (
    f"{_ERR_DEST}: the only mapping function allowed for import transforms is {{{{Wildcard()}}}}"
)


class TransformError(ValueError):
    """Invalid transform; ``str()`` is nats-server's message."""


class MappingError(ValueError):
    """Invalid ``mappings`` configuration; ``str()`` is nats-server's message."""


def _dest_error(err: str, token: str = "") -> TransformError:
    # mappingDestinationErr.Error(): "<err> in <token>" (or just err).
    return TransformError(f"{err} in {token}" if token else err)


# ----------------------------------------------------------- Go-compat helpers

_INT32_MAX: Final = 2**31 - 1
_DIGITS_RE: Final = re.compile(r"[+-]?[0-9]+")


def _atoi(text: str, bits: int = 64) -> int:
    """Go ``strconv.Atoi``/``ParseInt(s, 10, bits)``: ASCII digits, optional sign."""
    if not _DIGITS_RE.fullmatch(text):
        raise ValueError(text)
    value = int(text)
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise ValueError(text)
    return value


def _int32(value: int) -> int:
    """Go ``int32(x)`` conversion (wraps)."""
    return ((value + 2**31) % 2**32) - 2**31


def fnv1a32(data: bytes) -> int:
    """32-bit FNV-1a (Go ``hash/fnv.New32a``)."""
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _s(b: bytes) -> str:
    # A byte split inside a multi-byte character yields invalid UTF-8 in Go;
    # surrogateescape keeps those bytes exactly.
    return b.decode("utf-8", "surrogateescape")


def _trim_spaces(s: str) -> str:
    return s.strip(" ")  # Go strings.Trim(s, " "): spaces only


def _subject_info(subject: str) -> tuple[bool, list[str], int, bool]:
    """server ``subjectInfo``: (valid, tokens, number of ``*``, has ``>``)."""
    if not subject:
        return False, [], 0, False
    npwcs = 0
    sfwc = False
    tokens = subject.split(".")
    for t in tokens:
        if not t or sfwc:
            return False, [], 0, False
        if t == ">":
            sfwc = True
        elif t == "*":
            npwcs += 1
    return True, tokens, npwcs, sfwc


_WS_CHARS: Final = frozenset("\t\n\f\r ")


def _is_valid_subject(subject: str) -> bool:
    """server ``IsValidSubject``."""
    if not subject:
        return False
    sfwc = False
    for t in subject.split("."):
        if not t or sfwc:
            return False
        if len(t) > 1:
            if not _WS_CHARS.isdisjoint(t):
                return False
            continue
        if t == ">":
            sfwc = True
        elif t in _WS_CHARS:
            return False
    return True


def _has_wildcard(subject: str) -> bool:
    """server ``subjectHasWildcard``: a whole ``*`` or ``>`` token."""
    return any(t in ("*", ">") for t in subject.split("."))


def _is_valid_literal(tokens: Sequence[str]) -> bool:
    for t in tokens:
        if not t or t == "*" or t == ">":
            return False
    return True


def is_subset_match(tokens: Sequence[str], test: Sequence[str]) -> bool:
    """server ``isSubsetMatchTokenized``: is subject ``tokens`` within pattern ``test``.

    A literal ``*`` token in ``tokens`` only matches a ``*`` in ``test``; a ``>``
    token in ``tokens`` never matches (unless an earlier ``>`` in ``test`` does).
    """
    n = len(tokens)
    for i, t2 in enumerate(test):
        if i >= n:
            return False
        if not t2:
            return False
        if t2 == ">":
            return True
        t1 = tokens[i]
        if not t1 or t1 == ">":
            return False
        if t1 == "*":
            if t2 != "*":
                return False
            continue
        if t2 != "*" and t1 != t2:
            return False
    return n == len(test)


# ------------------------------------------------------- destination functions


class Fn(enum.IntEnum):
    """Destination token kinds (nats-server's enum order)."""

    NONE = 0
    BAD = 1
    PARTITION = 2
    WILDCARD = 3
    SPLIT_FROM_LEFT = 4
    SPLIT_FROM_RIGHT = 5
    SLICE_FROM_LEFT = 6
    SLICE_FROM_RIGHT = 7
    SPLIT = 8
    LEFT = 9
    RIGHT = 10
    RANDOM = 11


_S: Final = r"[\t\n\f\r ]*"  # Go's \s is ASCII whitespace only


def _fn_re(name: str) -> re.Pattern[str]:
    # e.g. splitFromLeft -> [sS]plit[fF]rom[lL]eft: only word initials are case-free.
    parts = re.findall(r"[a-z]+|[A-Z][a-z]*", name)
    body = "".join(f"[{p[0].lower()}{p[0].upper()}]{p[1:].lower()}" for p in parts)
    return re.compile(r"\{\{" + _S + body + _S + r"\((.*)\)" + _S + r"\}\}")


_RE_PARTITION: Final = _fn_re("partition")
_RE_WILDCARD: Final = _fn_re("wildcard")
_RE_SPLIT_FROM_LEFT: Final = _fn_re("splitFromLeft")
_RE_SPLIT_FROM_RIGHT: Final = _fn_re("splitFromRight")
_RE_SLICE_FROM_LEFT: Final = _fn_re("sliceFromLeft")
_RE_SLICE_FROM_RIGHT: Final = _fn_re("sliceFromRight")
_RE_SPLIT: Final = _fn_re("split")
_RE_LEFT: Final = _fn_re("left")
_RE_RIGHT: Final = _fn_re("right")
_RE_RANDOM: Final = _fn_re("random")
_COMMA_RE: Final = re.compile(r"," + _S)

# Functions ValidateMapping recognises.  nats-server 2.10/2.11 (and the 2.14
# sources) omit left/right here; the 2.15 server accepts them in config, and so
# do we (checked against the real binary in the differential tests).
_VALIDATE_FNS: Final = (
    _RE_PARTITION,
    _RE_WILDCARD,
    _RE_SPLIT_FROM_LEFT,
    _RE_SPLIT_FROM_RIGHT,
    _RE_SLICE_FROM_LEFT,
    _RE_SLICE_FROM_RIGHT,
    _RE_SPLIT,
    _RE_LEFT,
    _RE_RIGHT,
    _RE_RANDOM,
)


def _fn_args(regex: re.Pattern[str], token: str) -> list[str] | None:
    m = regex.search(token)
    if m is None:
        return None
    return _COMMA_RE.split(m.group(1))


@dataclass(frozen=True)
class _Placeholder:
    kind: Fn
    indexes: tuple[int, ...] = ()  # wildcard numbers (1-based) as written
    int_arg: int = -1
    str_arg: str = ""


def _index_int_args(token: str, args: list[str], kind: Fn) -> _Placeholder:
    if len(args) < 2:
        raise _dest_error(ERR_NOT_ENOUGH_ARGS, token)
    if len(args) > 2:
        raise _dest_error(ERR_TOO_MANY_ARGS, token)
    try:
        index = _atoi(_trim_spaces(args[0]))
        value = _atoi(_trim_spaces(args[1]), bits=32)
    except ValueError:
        raise _dest_error(ERR_INVALID_ARG, token) from None
    return _Placeholder(kind, (index,), value)


def _placeholder(token: str) -> _Placeholder:
    """server ``indexPlaceHolders``: classify one destination token."""
    length = len(token)
    if length <= 1:
        return _Placeholder(Fn.NONE)
    if token[0] == "$":  # legacy $n
        try:
            return _Placeholder(Fn.WILDCARD, (_atoi(token[1:]),))
        except ValueError:
            return _Placeholder(Fn.NONE)  # other things use $-tokens: keep literal
    if not (length > 4 and token.startswith("{{") and token.endswith("}}")):
        return _Placeholder(Fn.NONE)

    args = _fn_args(_RE_WILDCARD, token)
    if args is not None:
        if len(args) == 1 and args[0] == "":
            raise _dest_error(ERR_NOT_ENOUGH_ARGS, token)
        if len(args) != 1:
            raise _dest_error(ERR_TOO_MANY_ARGS, token)
        try:
            return _Placeholder(Fn.WILDCARD, (_atoi(_trim_spaces(args[0])),))
        except ValueError:
            raise _dest_error(ERR_INVALID_ARG, token) from None

    args = _fn_args(_RE_PARTITION, token)
    if args is not None:
        try:
            count = _atoi(_trim_spaces(args[0]))
            if count > _INT32_MAX:
                raise ValueError(args[0])
            indexes = tuple(_atoi(_trim_spaces(a)) for a in args[1:])
        except ValueError:
            raise _dest_error(ERR_INVALID_ARG, token) from None
        return _Placeholder(Fn.PARTITION, indexes, _int32(count))

    for regex, kind in (
        (_RE_SPLIT_FROM_LEFT, Fn.SPLIT_FROM_LEFT),
        (_RE_SPLIT_FROM_RIGHT, Fn.SPLIT_FROM_RIGHT),
        (_RE_SLICE_FROM_LEFT, Fn.SLICE_FROM_LEFT),
        (_RE_SLICE_FROM_RIGHT, Fn.SLICE_FROM_RIGHT),
        (_RE_RIGHT, Fn.RIGHT),
        (_RE_LEFT, Fn.LEFT),
    ):
        args = _fn_args(regex, token)
        if args is not None:
            return _index_int_args(token, args, kind)

    args = _fn_args(_RE_SPLIT, token)
    if args is not None:
        if len(args) < 2:
            raise _dest_error(ERR_NOT_ENOUGH_ARGS, token)
        if len(args) > 2:
            raise _dest_error(ERR_TOO_MANY_ARGS, token)
        try:
            index = _atoi(_trim_spaces(args[0]))
        except ValueError:
            raise _dest_error(ERR_INVALID_ARG, token) from None
        if " " in args[1] or "." in args[1]:
            raise _dest_error(ERR_INVALID_ARG, token)
        return _Placeholder(Fn.SPLIT, (index,), -1, args[1])

    args = _fn_args(_RE_RANDOM, token)
    if args is not None:
        if len(args) != 1:
            raise _dest_error(ERR_NOT_ENOUGH_ARGS, token)
        try:
            ceiling = _atoi(_trim_spaces(args[0]))
            if ceiling > _INT32_MAX:
                raise ValueError(args[0])
        except ValueError:
            raise _dest_error(ERR_INVALID_ARG, token) from None
        return _Placeholder(Fn.RANDOM, (), _int32(ceiling))

    raise _dest_error(ERR_UNKNOWN_FUNCTION, token)


@dataclass(frozen=True)
class _DestToken:
    kind: Fn
    text: str  # literal text (for NONE) / original token
    src_indexes: tuple[int, ...]  # indexes into the subject's tokens
    int_arg: int
    str_arg: str


# -------------------------------------------------------------- the transform


def validate_mapping(src: str, dest: str) -> None:
    """server ``ValidateMapping``: check a configured destination; raise ``TransformError``."""
    if dest == "":
        return
    sfwc = False
    for t in dest.split("."):
        length = len(t)
        if length == 0 or sfwc:
            raise _dest_error(ERR_INVALID_DEST_SUBJECT, t)
        if length > 4 and t.startswith("{{") and t.endswith("}}"):
            if not any(r.search(t) for r in _VALIDATE_FNS):
                raise _dest_error(ERR_UNKNOWN_FUNCTION, t)
            continue
        if t == ">":
            sfwc = True
        elif not _WS_CHARS.isdisjoint(t):
            raise TransformError(ERR_INVALID_DEST_SUBJECT)
    SubjectTransform.compile(src, dest, validate=False)


class SubjectTransform:
    """A compiled ``src -> dest`` transform (server ``subjectTransform``)."""

    __slots__ = ("src", "dest", "strict", "_stoks", "_dtoks", "_dest_fwc", "_rng", "_literal_only")

    def __init__(
        self,
        src: str,
        dest: str,
        stoks: list[str],
        dtoks: list[_DestToken],
        strict: bool,
        rng: _random.Random | None,
    ) -> None:
        self.src = src
        self.dest = dest
        self.strict = strict
        self._stoks = stoks
        self._dtoks = dtoks
        self._dest_fwc = bool(dtoks) and dtoks[-1].kind is Fn.NONE and dtoks[-1].text == ">"
        self._rng = rng or _random.Random()
        self._literal_only = all(d.kind is Fn.NONE for d in dtoks) and not self._dest_fwc

    # -- construction
    @classmethod
    def compile(
        cls,
        src: str,
        dest: str,
        *,
        strict: bool = False,
        validate: bool = True,
        rng: _random.Random | None = None,
    ) -> "SubjectTransform":
        """Build a transform; raise ``TransformError`` (nats-server wording).

        ``validate`` first applies ``ValidateMapping`` (what every config path
        — account mappings, stream/source transforms, republish — does).  ``strict`` is the import-mapping mode:
        only ``$n``/``wildcard`` and every source ``*`` used.  An empty ``src``
        means ``>``.  An empty ``dest`` (nats-server: no transform) yields a
        filter-only transform whose ``match`` returns matching subjects as-is.
        """
        if validate:
            validate_mapping(src or ">", dest)
        if src == "":
            src = ">"
        if dest == "":
            ok, stokens, _, _ = _subject_info(src)
            if not ok:
                raise TransformError(ERR_BAD_SUBJECT)
            return cls(src, dest, stokens, [], strict, rng)

        sv, stokens, npwcs, has_fwc = _subject_info(src)
        dv, dtokens, dnpwcs, d_has_fwc = _subject_info(dest)
        if not sv or not dv or dnpwcs > 0 or has_fwc != d_has_fwc:
            raise TransformError(ERR_BAD_SUBJECT)

        out: list[_DestToken] = []
        if npwcs > 0 or has_fwc:
            # Wildcard number (1-based) -> token index in the source.
            sti: dict[int, int] = {}
            for i, tok in enumerate(stokens):
                if tok == "*":
                    sti[len(sti) + 1] = i
            nphs = 0
            for token in dtokens:
                ph = _placeholder(token)
                if strict and ph.kind not in (Fn.NONE, Fn.WILDCARD):
                    raise _dest_error(ERR_NOT_SUPPORTED_FOR_IMPORT, token)
                if ph.kind is Fn.NONE:
                    out.append(_DestToken(Fn.NONE, token, (), -1, ""))
                elif ph.kind is Fn.RANDOM:
                    out.append(_DestToken(Fn.RANDOM, token, (), ph.int_arg, ""))
                else:
                    nphs += len(ph.indexes)
                    stis = []
                    for wi in ph.indexes:
                        if wi > npwcs:
                            raise _dest_error(ERR_INDEX_OUT_OF_RANGE, f"{token}: [{wi}]")
                        # Go map lookup: numbers < 1 resolve to token 0.
                        stis.append(sti.get(wi, 0))
                    out.append(_DestToken(ph.kind, token, tuple(stis), ph.int_arg, ph.str_arg))
            if strict and nphs < npwcs:
                raise _dest_error(ERR_NOT_USING_ALL_WILDCARDS, dest)
        else:
            for token in dtokens:
                ph = _placeholder(token)
                if ph.kind is Fn.NONE:
                    out.append(_DestToken(Fn.NONE, token, (), -1, ""))
                elif ph.kind in (Fn.RANDOM, Fn.PARTITION):
                    out.append(_DestToken(ph.kind, token, (), ph.int_arg, ""))
                else:
                    raise _dest_error(ERR_INDEX_OUT_OF_RANGE, token)
        return cls(src, dest, stokens, out, strict, rng)

    # -- properties
    @property
    def is_deterministic(self) -> bool:
        """False when the destination uses ``random()``."""
        return all(d.kind is not Fn.RANDOM for d in self._dtoks)

    @property
    def source_tokens(self) -> list[str]:
        return list(self._stoks)

    def __repr__(self) -> str:
        return f"SubjectTransform({self.src!r} -> {self.dest!r})"

    # -- application
    def match(self, subject: str) -> str | None:
        """server ``Match``: the transformed subject, or None if ``subject`` does
        not match the source or is not a valid literal subject."""
        if self.src == ">" and self.dest in (">", ""):
            return subject
        tokens = subject.split(".")
        if not _is_valid_literal(tokens):
            return None
        if self.src != ">" and not is_subset_match(tokens, self._stoks):
            return None
        if not self.dest:
            return subject
        return self.transform_tokens(tokens)

    def transform(self, subject: str) -> str:
        """Apply the destination to ``subject`` without matching (``TransformSubject``)."""
        return self.transform_tokens(subject.split("."))

    def transform_tokens(self, tokens: Sequence[str]) -> str:
        """server ``TransformTokenizedSubject`` (``tokens`` must match the source)."""
        if not self._dtoks:
            return self.dest
        if self._literal_only:
            return self.dest
        parts: list[str] = []
        for d in self._dtoks:
            kind = d.kind
            if kind is Fn.NONE:
                if d.text == ">":
                    break
                parts.append(d.text)
            elif kind is Fn.WILDCARD:
                idx = d.src_indexes[0] if d.src_indexes else -1
                parts.append(tokens[idx] if 0 <= idx < len(tokens) else "")
            elif kind is Fn.PARTITION:
                if d.src_indexes:
                    key = b"".join(_b(tokens[i]) for i in d.src_indexes)
                else:
                    key = _b(".".join(tokens))
                parts.append(_partition(key, d.int_arg))
            elif kind is Fn.RANDOM:
                parts.append(self._random(d.int_arg))
            else:
                parts.append(_string_fn(kind, tokens[d.src_indexes[0]], d.int_arg, d.str_arg))
        out = ".".join(parts)
        if self._dest_fwc:
            # Copy the tokens matched by the source's trailing '>'.
            rest = ".".join(tokens[len(self._stoks) - 1 :])
            out = f"{out}.{rest}" if parts else rest
        return out

    def _random(self, ceiling: int) -> str:
        if ceiling == 0:
            return "0"
        # Go: int(rand.Int31()) % ceiling, remainder takes the dividend's sign.
        return str(self._rng.getrandbits(31) % abs(ceiling))

    def reverse(self) -> "SubjectTransform | None":
        """The inverse transform for import mappings (server ``reverse``)."""
        if not self._dtoks:
            try:
                return SubjectTransform.compile(self.dest, self.src, strict=True, validate=False)
            except TransformError:
                return None
        nsrc_toks: list[str] = []
        phs: list[str] = []
        for token in self.dest.split("."):
            args = _fn_args(_RE_WILDCARD, token)
            legacy = len(token) > 1 and token[0] == "$" and "1" <= token[1] <= "9"
            if legacy or (args is not None and len(args) == 1 and args[0] != ""):
                phs.append(token)
                nsrc_toks.append("*")
            else:
                nsrc_toks.append(token)
        nda: list[str] = []
        for token in self._stoks:
            if token == "*":
                if not phs:
                    return None
                nda.append(phs.pop(0))
            else:
                nda.append(token)
        try:
            return SubjectTransform.compile(".".join(nsrc_toks), ".".join(nda), strict=True, validate=False)
        except TransformError:
            return None


def _partition(key: bytes, buckets: int) -> str:
    if buckets == 0:
        return "0"
    # Go: h.Sum32() % uint32(numBuckets) — negative counts wrap to uint32.
    return str(fnv1a32(key) % (buckets & 0xFFFFFFFF))


def _string_fn(kind: Fn, token: str, n: int, sep: str) -> str:
    """The byte-oriented token functions (split/slice/left/right)."""
    if kind is Fn.SPLIT:
        return _split(token, sep)
    raw = _b(token)
    size = len(raw)
    if kind is Fn.SPLIT_FROM_LEFT:
        if 0 < n < size:
            return _s(raw[:n]) + "." + _s(raw[n:])
        return token
    if kind is Fn.SPLIT_FROM_RIGHT:
        if 0 < n < size:
            return _s(raw[: size - n]) + "." + _s(raw[size - n :])
        return token
    if kind is Fn.SLICE_FROM_LEFT:
        if 0 < n < size:
            chunks = [raw[i : i + n] for i in range(0, size, n)]
            return ".".join(_s(c) for c in chunks)
        return token
    if kind is Fn.SLICE_FROM_RIGHT:
        if 0 < n < size:
            rem = size % n
            chunks = [raw[:rem]] if rem else []
            chunks += [raw[i : i + n] for i in range(rem, size, n)]
            return ".".join(_s(c) for c in chunks)
        return token
    if kind is Fn.LEFT:
        return _s(raw[:n]) if 0 < n < size else token
    if kind is Fn.RIGHT:
        return _s(raw[size - n :]) if 0 < n < size else token
    raise AssertionError(kind)  # pragma: no cover


def _split(token: str, sep: str) -> str:
    # Go strings.Split ("" splits into UTF-8 characters); empty pieces dropped,
    # written exactly as the server's loop does (it never emits empty tokens
    # except when every piece is empty).
    if sep == "":
        pieces = list(token)
    else:
        pieces = token.split(sep)
    out: list[str] = []
    last = len(pieces) - 1
    for j, piece in enumerate(pieces):
        if piece:
            out.append(piece)
        if j < last and pieces[j + 1] and not (j == 0 and piece == ""):
            out.append(".")
    return "".join(out)


# ----------------------------------------------------------------- mappings


@dataclass(frozen=True)
class MapDest:
    """One weighted destination of a mapping (server ``MapDest``)."""

    subject: str
    weight: int = 100
    cluster: str = ""


@dataclass
class _Dest:
    tr: SubjectTransform
    weight: int  # cumulative after processing


class _Mapping:
    __slots__ = ("src", "wc", "stoks", "dests", "cdests")

    def __init__(self, src: str) -> None:
        self.src = src
        self.wc = _has_wildcard(src)
        self.stoks = src.split(".")
        self.dests: list[_Dest] = []
        self.cdests: dict[str, list[_Dest]] = {}

    def destinations(self, cluster: str | None) -> list[_Dest]:
        if self.cdests and cluster is not None:
            return self.cdests.get(cluster) or self.dests
        return self.dests


_MISS: Final = object()


class Mappings:
    """An account's subject mappings (``mappings {}`` / account JWT ``mappings``).

    ``apply(subject)`` returns the mapped subject, ``None`` when no mapping
    matches, or ``""`` when the chosen weight slot maps to nothing (the source
    was listed explicitly with a total below 100%: nats-server drops those).
    Mapping is not recursive.  ``cluster`` selects cluster-scoped destinations;
    without a match (or a cluster) the unscoped destinations apply.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        cluster: str | None = None,
        cache_size: int = 4096,
        rng: _random.Random | None = None,
    ) -> None:
        self.cluster = cluster
        self._rng = rng or _random.Random()
        self._mappings: list[_Mapping] = []
        self._cache: dict[str, Any] = {}
        self._cache_size = max(0, cache_size)
        if config:
            self.load_config(config)

    # -- construction
    @classmethod
    def from_jwt(
        cls,
        mappings: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        cluster: str | None = None,
        rng: _random.Random | None = None,
    ) -> "Mappings":
        """From an account JWT's ``nats.mappings`` (``weight`` 0/absent means 100)."""
        self = cls(cluster=cluster, rng=rng)
        for src, entries in mappings.items():
            dests = [
                MapDest(str(e.get("subject", "")), int(e.get("weight") or 100), str(e.get("cluster") or ""))
                for e in entries
            ]
            try:
                self.add(src, dests)
            except (TransformError, MappingError) as exc:
                raise MappingError(f"Error adding mapping for {src!r} : {exc}") from None
        return self

    def load_config(self, config: Mapping[str, Any]) -> None:
        """Add every entry of a config ``mappings {}`` block (server ``parseAccountMappings``)."""
        for subj, value in config.items():
            if not _is_valid_subject(subj):
                raise MappingError(f"Subject {_q(subj)} is not a valid subject")
            if isinstance(value, str):
                try:
                    self.add(subj, [MapDest(value, 100)])
                except (TransformError, MappingError) as exc:
                    raise MappingError(f"Error adding mapping for {_q(subj)} to {_q(value)} : {exc}") from None
                continue
            if isinstance(value, Mapping):
                dests = [_parse_map_dest(value)]
            elif isinstance(value, (list, tuple)):
                dests = [_parse_map_dest(v) for v in value]
            else:
                raise MappingError(f"Unknown type {type(value).__name__} for mapping destination")
            try:
                self.add(subj, dests)
            except (TransformError, MappingError) as exc:
                raise MappingError(f"Error adding mapping for {_q(subj)} : {exc}") from None

    def add(self, src: str, dests: Iterable[MapDest]) -> None:
        """server ``AddWeightedMappings`` (replaces an existing mapping for ``src``)."""
        if not _is_valid_subject(src):
            raise TransformError(ERR_BAD_SUBJECT)
        m = _Mapping(src)
        seen: set[str] = set()
        totals: dict[str, int] = {}
        for d in dests:
            if d.subject in seen:
                raise MappingError(f"duplicate entry for {_q(d.subject)}")
            seen.add(d.subject)
            if d.weight > 100:
                raise MappingError("individual weights need to be <= 100")
            totals[d.cluster] = totals.get(d.cluster, 0) + d.weight
            if totals[d.cluster] > 100:
                raise MappingError("total weight needs to be <= 100")
            tr = SubjectTransform.compile(src, d.subject, rng=self._rng)  # ValidateMapping first
            if d.cluster:
                m.cdests.setdefault(d.cluster, []).append(_Dest(tr, d.weight))
            else:
                m.dests.append(_Dest(tr, d.weight))
        have_src = src in seen
        m.dests = self._process(m, m.dests, have_src)
        for cluster, cd in m.cdests.items():
            m.cdests[cluster] = self._process(m, cd, have_src)
        for i, existing in enumerate(self._mappings):
            if existing.src == src:
                self._mappings[i] = m
                break
        else:
            self._mappings.append(m)
        self._cache.clear()

    def add_mapping(self, src: str, dest: str) -> None:
        """server ``AddMapping``: a single destination at 100%."""
        self.add(src, [MapDest(dest, 100)])

    def remove(self, src: str) -> bool:
        for i, m in enumerate(self._mappings):
            if m.src == src:
                # Swap-remove like the server (order of the rest may change).
                self._mappings[i] = self._mappings[-1]
                self._mappings.pop()
                self._cache.clear()
                return True
        return False

    def _process(self, m: _Mapping, dests: list[_Dest], have_src: bool) -> list[_Dest]:
        total = sum(d.weight for d in dests)
        if total != 100 and not have_src:
            # The remainder keeps the original subject.
            dest = _tokenize_wildcards(m.src) if m.wc else m.src
            tr = SubjectTransform.compile(m.src, dest, validate=False, rng=self._rng)
            dests = [*dests, _Dest(tr, 100 - total if dests else 100)]
        dests = sorted(dests, key=lambda d: d.weight)  # stable, like Go for small n
        cum = 0
        for d in dests:
            d.weight += cum
            cum = d.weight
        return dests

    # -- queries
    def __len__(self) -> int:
        return len(self._mappings)

    def __bool__(self) -> bool:
        return bool(self._mappings)

    @property
    def sources(self) -> list[str]:
        return [m.src for m in self._mappings]

    def apply(self, subject: str) -> str | None:
        """The mapped subject for a publish to ``subject``; None if unmapped."""
        if not self._mappings:
            return None
        hit = self._cache.get(subject, _MISS)
        if hit is _MISS:
            hit = self._resolve(subject)
            if self._cache_size:
                if len(self._cache) >= self._cache_size:
                    del self._cache[next(iter(self._cache))]
                self._cache[subject] = hit
        if hit is None or type(hit) is str:
            return hit
        m, tokenized = hit
        return self._select(m, subject.split(".") if tokenized else [])

    def _resolve(self, subject: str) -> Any:
        """Find the rule for ``subject``; precompute the result if deterministic."""
        tokens: list[str] | None = None
        for m in self._mappings:
            if not m.wc and m.src == subject:
                break
            if tokens is None:
                tokens = subject.split(".")
            if is_subset_match(tokens, m.stoks):
                break
        else:
            return None
        # Quirk kept from selectMappedSubject: the subject is only tokenized once
        # a rule has to be tested by pattern, so a literal rule that is the first
        # one checked transforms an empty token list.  Visible only with the
        # one-argument partition(), which then hashes "" (verified against the
        # real server).  nats-server's rule order comes from a Go map (random);
        # ours is the configuration order.
        tokenized = tokens is not None
        dests = m.destinations(self.cluster)
        if len(dests) == 1 and dests[0].weight == 100 and dests[0].tr.is_deterministic:
            return dests[0].tr.transform_tokens(tokens if tokens is not None else [])
        return (m, tokenized)

    def _select(self, m: _Mapping, tokens: list[str]) -> str:
        dests = m.destinations(self.cluster)
        chosen: _Dest | None = None
        if len(dests) == 1 and dests[0].weight == 100:
            chosen = dests[0]
        else:
            w = self._rng.randrange(100)
            for d in dests:
                if w < d.weight:
                    chosen = d
                    break
        if chosen is None:
            return ""
        return chosen.tr.transform_tokens(tokens)


def _tokenize_wildcards(subject: str) -> str:
    """server ``transformTokenize``: ``foo.*.*`` -> ``foo.$1.$2``."""
    out = []
    n = 1
    for tok in subject.split("."):
        if tok == "*":
            out.append(f"${n}")
            n += 1
        else:
            out.append(tok)
    return ".".join(out)


def _q(s: str) -> str:
    # Go %q for the plain strings we quote.
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_map_dest(value: Any) -> MapDest:
    """server ``parseAccountMapDest``."""
    if not isinstance(value, Mapping):
        raise MappingError("Expected an entry for the mapping destination")
    subject = ""
    weight = 0
    cluster = ""
    have_weight = False
    for key, v in value.items():
        k = str(key).lower()
        if k in ("dest", "destination"):
            subject = str(v)
        elif k == "weight":
            if isinstance(v, str):
                ws = v[:-1] if v.endswith("%") else v
                try:
                    w = _atoi(ws)
                except ValueError:
                    raise MappingError(f"Invalid weight {_q(ws)} for mapping destination") from None
            elif isinstance(v, int) and not isinstance(v, bool):
                w = v
            else:
                raise MappingError(f"Unknown entry type for weight of {v}\n")
            if w > 100 or w < 0:
                raise MappingError(f"Invalid weight {w} for mapping destination")
            weight = w
            have_weight = True
        elif k == "cluster":
            cluster = str(v)
        else:
            raise MappingError(f"Unknown field {_q(str(key))} for mapping destination")
    if not have_weight:
        raise MappingError(f"Missing weight for mapping destination {_q(subject)}")
    return MapDest(subject, weight, cluster)
