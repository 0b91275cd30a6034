"""NATS JWT (nats-io/jwt v2) decoding, verification, minting and chain of trust.

A NATS JWT is ``base64url(header) . base64url(payload) . base64url(sig)``
(raw, unpadded), header ``{"typ":"JWT","alg":"ed25519-nkey"}``; the signature
is an Ed25519 signature over ``header.payload`` by the issuer's nkey (v1
tokens, ``alg: ed25519``, signed only the payload segment).  Payloads hold the
registered claims (``iss sub iat exp nbf jti name aud``) plus a ``nats`` object
whose shape depends on ``nats.type`` (operator / account / user ...).

This module is pure: it decodes and verifies tokens, exposes typed views of
operator/account/user claims, mints tokens (used by tests and tooling), parses
``.creds`` files and implements the checks nats-server performs when a user JWT
is presented (trusted operator -> account -> user, signing keys, scoped
signing-key templates, expiry, revocations, bearer tokens).  Nonce signature
verification, allowed connection types and source-IP checks belong to the
connection layer.

Error texts mirror the Go library / server wording where one exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Final, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from . import nkeys
from .nkeys import KeyPair, PrefixByte

__all__ = [
    "JWTError",
    "AuthError",
    "Claims",
    "OperatorClaims",
    "AccountClaims",
    "UserClaims",
    "GenericClaims",
    "UserScope",
    "UserAuthorization",
    "Creds",
    "decode",
    "decode_operator",
    "decode_account",
    "decode_user",
    "encode",
    "new_operator_claims",
    "new_account_claims",
    "new_user_claims",
    "validate_claims",
    "trusted_keys",
    "check_account",
    "check_user",
    "is_revoked",
    "expand_scope_template",
    "is_valid_subject",
    "parse_creds",
    "parse_decorated_jwt",
    "parse_decorated_nkey",
    "format_user_config",
    "decorate_jwt",
    "decorate_seed",
]

TOKEN_TYPE: Final = "JWT"
ALGORITHM_V1: Final = "ed25519"
ALGORITHM: Final = "ed25519-nkey"
LIB_VERSION: Final = 2
MAX_TOKEN_SIZE: Final = 1024 * 1024
NO_LIMIT: Final = -1
ALL: Final = "*"  # revocation wildcard: every key issued at/before the timestamp

OPERATOR_CLAIM: Final = "operator"
ACCOUNT_CLAIM: Final = "account"
USER_CLAIM: Final = "user"
ACTIVATION_CLAIM: Final = "activation"
AUTH_REQUEST_CLAIM: Final = "authorization_request"
AUTH_RESPONSE_CLAIM: Final = "authorization_response"

# Which issuer kinds may sign each claim type (jwt ``ExpectedPrefixes``).
_EXPECTED_ISSUERS: Final[dict[str, tuple[PrefixByte, ...]]] = {
    OPERATOR_CLAIM: (PrefixByte.OPERATOR,),
    ACCOUNT_CLAIM: (PrefixByte.ACCOUNT, PrefixByte.OPERATOR),
    USER_CLAIM: (PrefixByte.ACCOUNT,),
    ACTIVATION_CLAIM: (PrefixByte.ACCOUNT, PrefixByte.OPERATOR),
    AUTH_REQUEST_CLAIM: (PrefixByte.SERVER,),
    AUTH_RESPONSE_CLAIM: (PrefixByte.ACCOUNT,),
}
# Subject kind a typed claim must carry when minted.
_SUBJECT_KINDS: Final[dict[str, tuple[PrefixByte, str]]] = {
    OPERATOR_CLAIM: (PrefixByte.OPERATOR, "expected subject to be an operator public key"),
    ACCOUNT_CLAIM: (PrefixByte.ACCOUNT, "expected subject to be account public key"),
    USER_CLAIM: (PrefixByte.USER, "expected subject to be user public key"),
}
# Registered claims in Go struct order (``ClaimsData``); used for encoding and jti.
_STD_CLAIMS: Final = ("aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub")
_INT_CLAIMS: Final = frozenset({"exp", "iat", "nbf"})


class JWTError(ValueError):
    """A token could not be decoded, verified or minted."""


class AuthError(JWTError):
    """A decoded token failed a chain-of-trust / authorization check."""


# ----------------------------------------------------------------------- helpers


def _now(now: int | float | None) -> int:
    return int(time.time()) if now is None else int(now)


_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")


def _b64url_decode(segment: str) -> bytes:
    # Go RawURLEncoding: URL alphabet, no padding; CR/LF are skipped.
    s = segment.replace("\r", "").replace("\n", "")
    if not _B64URL_RE.fullmatch(s) or len(s) % 4 == 1:
        raise JWTError("illegal base64 data")
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        raise JWTError("illegal base64 data") from None


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _go_json(obj: Any) -> str:
    """Compact JSON like Go's ``json.Marshal`` (HTML-escaped <, >, &, U+2028/9)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _claims_hash(payload: Mapping[str, Any]) -> str:
    # jti = base32(sha512/256(json(ClaimsData with jti cleared))), as the Go lib.
    data = {}
    for key in _STD_CLAIMS:
        if key == "jti":
            continue
        value = payload.get(key)
        if value:
            data[key] = value
    digest = hashlib.new("sha512_256", _go_json(data).encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").rstrip("=")


def _as_str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


_WS: Final = frozenset("\t\n\f\r ")


def is_valid_subject(subject: str) -> bool:
    """nats-server ``IsValidSubject``: non-empty tokens, ``>`` last, no whitespace."""
    if not subject:
        return False
    sfwc = False
    for tok in subject.split("."):
        if not tok or sfwc:
            return False
        if len(tok) > 1:
            if any(c in _WS for c in tok):
                return False
            continue
        if tok == ">":
            sfwc = True
        elif tok in _WS:
            return False
    return True


# ------------------------------------------------------------------------ claims


class Claims:
    """Decoded JWT payload with typed accessors; ``payload`` is the raw dict."""

    claim_kind: str = ""

    def __init__(self, payload: dict[str, Any], token: str = "", version: int = LIB_VERSION) -> None:
        self.payload = payload
        self.token = token
        self.version = version

    # -- registered claims
    @property
    def issuer(self) -> str:
        return str(self.payload.get("iss") or "")

    @property
    def subject(self) -> str:
        return str(self.payload.get("sub") or "")

    @property
    def issued_at(self) -> int:
        return int(self.payload.get("iat") or 0)

    @property
    def expires(self) -> int:
        return int(self.payload.get("exp") or 0)

    @property
    def not_before(self) -> int:
        return int(self.payload.get("nbf") or 0)

    @property
    def jti(self) -> str:
        return str(self.payload.get("jti") or "")

    @property
    def name(self) -> str:
        return str(self.payload.get("name") or "")

    @property
    def audience(self) -> str:
        return str(self.payload.get("aud") or "")

    # -- nats section
    @property
    def nats(self) -> dict[str, Any]:
        value = self.payload.get("nats")
        return value if isinstance(value, dict) else {}

    @property
    def claim_type(self) -> str:
        return str(self.payload.get("type") or self.nats.get("type") or "")

    @property
    def tags(self) -> list[str]:
        return _as_str_list(self.nats.get("tags"))

    def is_expired(self, now: int | float | None = None) -> bool:
        """jwt ``Validate`` semantics: expired when ``now > exp`` (exp 0 = never)."""
        return self.expires > 0 and _now(now) > self.expires

    def is_not_yet_valid(self, now: int | float | None = None) -> bool:
        return self.not_before > 0 and self.not_before > _now(now)

    def is_self_signed(self) -> bool:
        return self.issuer == self.subject

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sub={self.subject!r}, iss={self.issuer!r}, name={self.name!r})"


class GenericClaims(Claims):
    """Claims of a type this module does not model (activation, auth callout, ...)."""


class OperatorClaims(Claims):
    claim_kind = OPERATOR_CLAIM

    @property
    def signing_keys(self) -> list[str]:
        return _as_str_list(self.nats.get("signing_keys"))

    @property
    def strict_signing_key_usage(self) -> bool:
        return bool(self.nats.get("strict_signing_key_usage"))

    @property
    def system_account(self) -> str:
        return str(self.nats.get("system_account") or "")

    @property
    def account_server_url(self) -> str:
        return str(self.nats.get("account_server_url") or "")

    @property
    def operator_service_urls(self) -> list[str]:
        return _as_str_list(self.nats.get("operator_service_urls"))

    @property
    def assert_server_version(self) -> str:
        return str(self.nats.get("assert_server_version") or "")

    def trusted_keys(self) -> list[str]:
        """Keys the server trusts for account JWTs (server ``processTrustedKeys``)."""
        keys = [] if self.strict_signing_key_usage else [self.subject]
        return keys + self.signing_keys

    def did_sign(self, claims: Claims) -> bool:
        issuer = claims.issuer
        if issuer == self.subject:
            return not self.strict_signing_key_usage or claims.subject == self.subject
        return issuer in self.signing_keys


@dataclass(frozen=True)
class UserScope:
    """A scoped account signing key: users it signs get ``template`` permissions."""

    key: str
    role: str = ""
    template: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    kind: str = "user_scope"


def _parse_signing_keys(value: Any) -> dict[str, UserScope | None]:
    keys: dict[str, UserScope | None] = {}
    if value is None:
        return keys
    if not isinstance(value, list):
        raise JWTError("signing_keys must be an array")
    for item in value:
        if isinstance(item, str):
            keys[item] = None
        elif isinstance(item, dict):
            if item.get("kind") != "user_scope":
                raise JWTError(f"unknown signing key scope {item.get('type')!r}")
            template = dict(item.get("template") or {})
            # NewUserScope pre-sets the nats limits to unlimited before unmarshal.
            for lim in ("subs", "data", "payload"):
                template.setdefault(lim, NO_LIMIT)
            key = str(item.get("key") or "")
            keys[key] = UserScope(
                key=key,
                role=str(item.get("role") or ""),
                template=template,
                description=str(item.get("description") or ""),
            )
        # Other JSON types are ignored, as the Go unmarshaller does.
    return keys


class AccountClaims(Claims):
    claim_kind = ACCOUNT_CLAIM

    def __init__(self, payload: dict[str, Any], token: str = "", version: int = LIB_VERSION) -> None:
        super().__init__(payload, token, version)
        self._signing_keys = _parse_signing_keys(self.nats.get("signing_keys"))

    @property
    def signing_keys(self) -> dict[str, UserScope | None]:
        """Signing key -> scope (None for an unscoped key)."""
        return dict(self._signing_keys)

    @property
    def revocations(self) -> dict[str, int]:
        raw = self.nats.get("revocations") or {}
        return {str(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

    @property
    def limits(self) -> dict[str, Any]:
        value = self.nats.get("limits")
        return value if isinstance(value, dict) else {}

    @property
    def imports(self) -> list[dict[str, Any]]:
        return list(self.nats.get("imports") or [])

    @property
    def exports(self) -> list[dict[str, Any]]:
        return list(self.nats.get("exports") or [])

    @property
    def default_permissions(self) -> dict[str, Any]:
        value = self.nats.get("default_permissions")
        return value if isinstance(value, dict) else {}

    @property
    def mappings(self) -> dict[str, list[dict[str, Any]]]:
        """``{src: [{"subject", "weight", "cluster"}]}`` (weight 0 means 100)."""
        value = self.nats.get("mappings")
        return value if isinstance(value, dict) else {}

    @property
    def disallow_bearer(self) -> bool:
        return bool(self.limits.get("disallow_bearer"))

    def scope_for(self, issuer: str) -> tuple[bool, UserScope | None]:
        """Server ``hasIssuer``: the account key itself or one of its signing keys."""
        if issuer == self.subject:
            # The server registers the account key last, always unscoped.
            return True, None
        if issuer in self._signing_keys:
            return True, self._signing_keys[issuer]
        return False, None

    def did_sign(self, claims: Claims) -> bool:
        issuer = claims.issuer
        if issuer == self.subject:
            return True
        if isinstance(claims, UserClaims) and claims.issuer_account == self.subject:
            return issuer in self._signing_keys
        if claims.claim_type == ACTIVATION_CLAIM and claims.nats.get("issuer_account") == self.subject:
            return issuer in self._signing_keys
        return False

    def is_revoked(self, public_key: str, issued_at: int) -> bool:
        return is_revoked(self.revocations, public_key, issued_at)

    def is_claim_revoked(self, user: UserClaims) -> bool:
        """jwt ``IsClaimRevoked``: also true for claims without subject or iat."""
        if not user.issued_at or not user.subject:
            return True
        return self.is_revoked(user.subject, user.issued_at)


# Keys of ``UserPermissionLimits`` (flattened into ``nats`` of a user JWT).
_PERMISSION_LIMIT_KEYS: Final = (
    "pub",
    "sub",
    "resp",
    "src",
    "times",
    "times_location",
    "subs",
    "data",
    "payload",
    "bearer_token",
    "proxy_required",
    "allowed_connection_types",
)


class UserClaims(Claims):
    claim_kind = USER_CLAIM

    @property
    def issuer_account(self) -> str:
        return str(self.nats.get("issuer_account") or "")

    @property
    def account(self) -> str:
        """The account this user belongs to (``issuer_account`` or ``iss``)."""
        return self.issuer_account or self.issuer

    @property
    def pub(self) -> dict[str, list[str]]:
        return _permission(self.nats.get("pub"))

    @property
    def sub(self) -> dict[str, list[str]]:
        return _permission(self.nats.get("sub"))

    @property
    def resp(self) -> dict[str, int] | None:
        value = self.nats.get("resp")
        return dict(value) if isinstance(value, dict) else None

    @property
    def bearer_token(self) -> bool:
        return bool(self.nats.get("bearer_token"))

    @property
    def proxy_required(self) -> bool:
        return bool(self.nats.get("proxy_required"))

    @property
    def allowed_connection_types(self) -> list[str]:
        return _as_str_list(self.nats.get("allowed_connection_types"))

    @property
    def src(self) -> list[str]:
        return _cidr_list(self.nats.get("src"))

    @property
    def times(self) -> list[dict[str, str]]:
        return list(self.nats.get("times") or [])

    @property
    def times_location(self) -> str:
        return str(self.nats.get("times_location") or "")

    def permission_limits(self) -> dict[str, Any]:
        """The ``UserPermissionLimits`` part of the ``nats`` section (a copy)."""
        nats = self.nats
        return {k: json.loads(json.dumps(nats[k])) for k in _PERMISSION_LIMIT_KEYS if k in nats}

    def has_empty_permissions(self) -> bool:
        """jwt ``HasEmptyPermissions`` (required for users of scoped signing keys).

        Go compares the decoded struct with its zero value, so any list that is
        present (even ``[]``), any non-zero number and any true flag count.
        """
        nats = self.nats
        for key in ("pub", "sub"):
            perm = nats.get(key)
            if isinstance(perm, dict) and any(perm.get(k) is not None for k in ("allow", "deny")):
                return False
        if nats.get("resp") is not None:
            return False
        for key in ("src", "times", "allowed_connection_types"):
            if nats.get(key) is not None:
                return False
        for key in ("times_location", "subs", "data", "payload", "bearer_token", "proxy_required"):
            if nats.get(key):
                return False
        return True


def _permission(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        return {}
    out: dict[str, list[str]] = {}
    for key in ("allow", "deny"):
        if value.get(key) is not None:
            out[key] = _as_str_list(value[key])
    return out


def _cidr_list(value: Any) -> list[str]:
    # CIDRList accepts an array or a comma separated string (lower-cased, trimmed).
    if value is None:
        return []
    if isinstance(value, str):
        out: list[str] = []
        for item in value.lower().split(","):
            item = item.strip().lower()
            if item and item not in out:
                out.append(item)
        return out
    return _as_str_list(value)


_CLAIM_CLASSES: Final[dict[str, type[Claims]]] = {
    OPERATOR_CLAIM: OperatorClaims,
    ACCOUNT_CLAIM: AccountClaims,
    USER_CLAIM: UserClaims,
}


# ------------------------------------------------------------------------ decode


def _parse_header(segment: str) -> dict[str, Any]:
    try:
        header = json.loads(_b64url_decode(segment).decode("utf-8", "replace"))
    except json.JSONDecodeError as exc:
        raise JWTError(f"invalid header: {exc}") from None
    if not isinstance(header, dict):
        raise JWTError("invalid header")
    # Go's json matches struct fields case-insensitively.
    lowered = {str(k).lower(): v for k, v in header.items()}
    typ, alg = lowered.get("typ", ""), lowered.get("alg", "")
    if not isinstance(typ, str) or typ.upper() != TOKEN_TYPE:
        raise JWTError(f"not supported type {typ!r}")
    if not isinstance(alg, str) or alg.lower() not in (ALGORITHM_V1, ALGORITHM):
        raise JWTError(f"unexpected {alg!r} algorithm")
    return header


def _check_payload_types(payload: dict[str, Any]) -> None:
    for key in _STD_CLAIMS:
        if key not in payload or payload[key] is None:
            continue
        value = payload[key]
        if key in _INT_CLAIMS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise JWTError(f"json: cannot unmarshal {key!r} into int64")
        elif not isinstance(value, str):
            raise JWTError(f"json: cannot unmarshal {key!r} into string")
    nats = payload.get("nats")
    if nats is not None and not isinstance(nats, dict):
        raise JWTError("json: cannot unmarshal 'nats' into object")


def decode(token: str) -> Claims:
    """Decode and verify a JWT (signature by ``iss``, issuer kind); no time checks.

    Returns an ``OperatorClaims``/``AccountClaims``/``UserClaims`` (or
    ``GenericClaims`` for other types).  Raises ``JWTError``.
    """
    if not isinstance(token, str):
        raise JWTError("token must be a string")
    if len(token) > MAX_TOKEN_SIZE:
        raise JWTError(f"token size {len(token)} exceeds maximum of {MAX_TOKEN_SIZE} bytes: token too large")
    chunks = token.split(".")
    if len(chunks) != 3:
        raise JWTError("expected 3 chunks")
    _parse_header(chunks[0])
    try:
        payload = json.loads(_b64url_decode(chunks[1]).decode("utf-8", "replace"))
    except json.JSONDecodeError as exc:
        raise JWTError(f"invalid payload: {exc}") from None
    if not isinstance(payload, dict):
        raise JWTError("invalid payload")
    _check_payload_types(payload)
    nats = payload.get("nats") or {}
    top_type = payload.get("type")
    if top_type:  # v1 tokens carried the type at the top level
        kind, version = str(top_type), 1
    else:
        kind = str(nats.get("type") or "")
        version = nats.get("version") or 0
        if isinstance(version, bool) or not isinstance(version, int):
            raise JWTError("json: cannot unmarshal 'version' into int")
    if version > LIB_VERSION:
        raise JWTError("JWT was generated by a newer version ")
    if kind in ("cluster", "server"):
        raise JWTError(f"{kind.capitalize()}Claims are not supported")
    cls = _CLAIM_CLASSES.get(kind)
    if cls is None:
        cls = GenericClaims
        if kind not in _EXPECTED_ISSUERS:
            # Unknown types load as Go's GenericClaims, verified like v1
            # (signature over the payload only).  Activation / auth-callout
            # claims keep their version and v2 verification.
            version = -1
    sig = _b64url_decode(chunks[2])
    claims = cls(payload, token, version)
    if version <= 1:
        signed, label = chunks[1], "V1"
    else:
        signed, label = token[: len(chunks[0]) + len(chunks[1]) + 1], "V2"
    if not nkeys.verify(claims.issuer, signed.encode("ascii"), sig):
        raise JWTError(f"claim failed {label} signature verification")
    expected = _EXPECTED_ISSUERS.get(kind)
    if expected is not None and not any(
        nkeys.is_valid_public_key(claims.issuer, p) for p in expected
    ):
        names = " ".join(p.label for p in expected)
        raise JWTError(f"unable to validate expected prefixes - [{names}]")
    return claims


def _decode_as(token: str, cls: type[Claims], kind: str) -> Any:
    claims = decode(token)
    if not isinstance(claims, cls):
        raise JWTError(f"not {kind} claim")
    return claims


def decode_operator(token: str) -> OperatorClaims:
    return _decode_as(token, OperatorClaims, "operator")  # type: ignore[no-any-return]


def decode_account(token: str) -> AccountClaims:
    return _decode_as(token, AccountClaims, "account")  # type: ignore[no-any-return]


def decode_user(token: str) -> UserClaims:
    return _decode_as(token, UserClaims, "user")  # type: ignore[no-any-return]


# ------------------------------------------------------------------------ encode


def new_operator_claims(subject: str, **fields: Any) -> dict[str, Any]:
    """Payload template as jwt ``NewOperatorClaims`` (extra registered claims via kwargs)."""
    return {"sub": subject, **fields, "nats": {"type": OPERATOR_CLAIM, "version": LIB_VERSION}}


def new_account_claims(subject: str, **fields: Any) -> dict[str, Any]:
    """Payload template as jwt ``NewAccountClaims`` (unlimited, JetStream disabled)."""
    return {
        "sub": subject,
        **fields,
        "nats": {
            "limits": {
                "subs": NO_LIMIT,
                "data": NO_LIMIT,
                "payload": NO_LIMIT,
                "imports": NO_LIMIT,
                "exports": NO_LIMIT,
                "wildcards": True,
                "conn": NO_LIMIT,
                "leaf": NO_LIMIT,
            },
            "default_permissions": {"pub": {}, "sub": {}},
            "authorization": {},
            "type": ACCOUNT_CLAIM,
            "version": LIB_VERSION,
        },
    }


def new_user_claims(subject: str, *, scoped: bool = False, **fields: Any) -> dict[str, Any]:
    """Payload template as jwt ``NewUserClaims`` (``scoped=True``: ``SetScoped(true)``)."""
    nats: dict[str, Any] = {"pub": {}, "sub": {}}
    if not scoped:
        nats.update({"subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT})
    nats.update({"type": USER_CLAIM, "version": LIB_VERSION})
    return {"sub": subject, **fields, "nats": nats}


def encode(
    payload: Mapping[str, Any] | Claims,
    signer: KeyPair,
    *,
    issued_at: int | None = None,
) -> str:
    """Sign ``payload`` with ``signer`` as jwt ``Claims.Encode`` does.

    Sets ``iss`` (signer public key), ``iat`` (now, or ``issued_at``), ``jti``
    (hash of the registered claims) and ``nats.version = 2``.  The payload must
    have ``sub`` and a ``nats.type``; typed claims get their subject kind and the
    signer kind checked.  Returns the compact token.
    """
    source = payload.payload if isinstance(payload, Claims) else payload
    data: dict[str, Any] = json.loads(json.dumps(dict(source)))
    nats = data.get("nats")
    if nats is None:
        nats = data["nats"] = {}
    if not isinstance(nats, dict):
        raise JWTError("nats section must be an object")
    kind = str(nats.get("type") or "")
    if not data.get("sub"):
        raise JWTError("subject is not set")
    if kind in _SUBJECT_KINDS:
        want, msg = _SUBJECT_KINDS[kind]
        if not nkeys.is_valid_public_key(data["sub"], want):
            raise JWTError(msg)
    issuer = signer.public_key
    expected = _EXPECTED_ISSUERS.get(kind)
    if expected is not None and not any(nkeys.is_valid_public_key(issuer, p) for p in expected):
        names = " ".join(p.label for p in expected)
        raise JWTError(f"unable to validate expected prefixes - [{names}]")
    data["iss"] = issuer
    data["iat"] = int(time.time()) if issued_at is None else int(issued_at)
    data["jti"] = ""
    data["jti"] = _claims_hash(data)
    nats["version"] = LIB_VERSION
    # Registered claims first in Go struct order (omitempty), then the rest.
    ordered: dict[str, Any] = {}
    for key in _STD_CLAIMS:
        if data.get(key):
            ordered[key] = data[key]
    for key, value in data.items():
        if key not in _STD_CLAIMS and key != "nats":
            ordered[key] = value
    ordered["nats"] = nats
    header = _b64url_encode(_go_json({"typ": TOKEN_TYPE, "alg": ALGORITHM}).encode())
    body = _b64url_encode(_go_json(ordered).encode("utf-8"))
    to_sign = f"{header}.{body}"
    return f"{to_sign}.{_b64url_encode(signer.sign(to_sign.encode('ascii')))}"


# -------------------------------------------------------------------- validation


def _validate_subject(subject: Any, errors: list[str]) -> None:
    # jwt ``Subject.Validate``.
    v = str(subject)
    if v == "":
        errors.append("subject cannot be empty")
        return
    if " " in v:
        errors.append(f"subject {v!r} cannot have spaces")
    if v[0] == "." or v[-1] == ".":
        errors.append(f"subject {v!r} cannot start or end with a `.`")
    if ".." in v:
        errors.append(f"subject {v!r} cannot contain consecutive `.`")


def _validate_permission(perm: Mapping[str, Any], permit_queue: bool, errors: list[str]) -> None:
    for key in ("allow", "deny"):
        for subj in _as_str_list(perm.get(key)):
            parts = subj.split(" ")
            if len(parts) == 1:
                _validate_subject(parts[0], errors)
            elif len(parts) == 2:
                _validate_subject(parts[0], errors)
                _validate_subject(parts[1], errors)
                if not permit_queue:
                    errors.append(f'Permission Subject "{subj}" is not allowed to contain queue')
            else:
                errors.append(f'Permission Subject "{subj}" contains too many spaces')


# Go ``time.Parse("15:04:05")``: hour may be one or two digits, 0-23.
_TIME_RE: Final = re.compile(r"([01]?\d|2[0-3]):[0-5]\d:[0-5]\d")


def _validate_user_limits(nats: Mapping[str, Any], errors: list[str]) -> None:
    for cidr in _cidr_list(nats.get("src")):
        try:
            ipaddress.ip_network(cidr, strict=False)
            if "/" not in cidr:
                raise ValueError(cidr)
        except ValueError:
            errors.append(f"invalid cidr {cidr!r} in user src limits")
    for tr in nats.get("times") or []:
        start, end = (tr or {}).get("start", ""), (tr or {}).get("end", "")
        if not start:
            errors.append("time ranges start must contain a start")
        elif not _TIME_RE.fullmatch(str(start)):
            errors.append(f"start in time range is invalid {start!r}")
        if not end:
            errors.append("time ranges end must contain an end")
        elif not _TIME_RE.fullmatch(str(end)):
            errors.append(f"end in time range is invalid {end!r}")
    loc = nats.get("times_location")
    if loc:
        try:
            ZoneInfo(str(loc))
        except Exception:
            errors.append(f"could not parse iana time zone by name: unknown time zone {loc}")


def validate_claims(claims: Claims, now: int | float | None = None) -> list[str]:
    """Blocking issues as jwt ``Validate`` + ``IsBlocking(true)`` (time checks included).

    An empty list means valid.  Covers time checks for every claim type and the
    user-specific permission / limit / issuer_account checks.
    """
    issues: list[str] = []
    if claims.is_expired(now):
        issues.append("claim is expired")
    if claims.is_not_yet_valid(now):
        issues.append("claim is not yet valid")
    if isinstance(claims, UserClaims):
        nats = claims.nats
        _validate_permission(nats.get("sub") or {}, True, issues)
        _validate_permission(nats.get("pub") or {}, False, issues)
        _validate_user_limits(nats, issues)
        if claims.issuer_account and not nkeys.is_valid_public_key(claims.issuer_account, PrefixByte.ACCOUNT):
            issues.append("account_id is not an account public key")
    return issues


def is_revoked(revocations: Mapping[str, int], public_key: str, issued_at: int) -> bool:
    """Server ``isRevoked``: revoked if ``rev[key] >= iat`` or ``rev["*"] >= iat``."""
    if not revocations:
        return False
    ts = revocations.get(public_key)
    if ts is not None and ts >= issued_at:
        return True
    ts = revocations.get(ALL)
    return ts is not None and ts >= issued_at


# --------------------------------------------------------------- chain of trust


def trusted_keys(operators: Iterable[OperatorClaims | str]) -> set[str]:
    """Keys trusted to sign account JWTs, from operator JWTs (tokens or claims)."""
    keys: set[str] = set()
    for op in operators:
        claims = decode_operator(op) if isinstance(op, str) else op
        keys.update(claims.trusted_keys())
    return keys


def check_account(
    account: AccountClaims,
    trusted: Iterable[str] | None,
    now: int | float | None = None,
) -> None:
    """Raise ``AuthError`` unless the account is signed by a trusted key and not expired.

    ``trusted=None`` skips the issuer check (no operator configured).
    Account expiry uses the server's ``exp <= now`` rule.
    """
    if trusted is not None and account.issuer not in set(trusted):
        raise AuthError("Account JWT not signed by trusted operator")
    if account.expires and account.expires <= _now(now):
        raise AuthError("Account JWT has expired")


@dataclass(frozen=True)
class UserAuthorization:
    """Effective user settings after the chain-of-trust checks."""

    user: str
    account: str
    name: str
    permissions: dict[str, Any]  # the UserPermissionLimits (scoped template applied)
    bearer_token: bool
    allowed_connection_types: list[str]
    expires: int
    scoped: bool
    signing_key: str
    tags: list[str] = field(default_factory=list)


def check_user(
    user: UserClaims,
    account: AccountClaims,
    *,
    trusted: Iterable[str] | None = None,
    now: int | float | None = None,
) -> UserAuthorization:
    """Run nats-server's user-JWT checks against its account; raise ``AuthError``.

    Order and messages follow ``processClientOrLeafAuthentication``: claim
    validity, account match, trusted account issuer, known signing key, scoped
    signer rules + template, account expiry, bearer policy, revocation.  The
    nonce signature, connection type and source address are not checked here.
    """
    issues = validate_claims(user, now)
    if issues:
        raise AuthError(f"User JWT no longer valid: {'; '.join(issues)}")
    if user.account != account.subject:
        raise AuthError("Account JWT lookup error: user does not belong to this account")
    if trusted is not None and account.issuer not in set(trusted):
        raise AuthError("Account JWT not signed by trusted operator")
    known, scope = account.scope_for(user.issuer)
    if not known:
        raise AuthError("User JWT issuer is not known")
    limits = user.permission_limits()
    if scope is not None:
        if user.issuer != scope.key:
            raise AuthError("User JWT is not valid: issuer not the scoped signer")
        if not user.has_empty_permissions():
            raise AuthError("User JWT is not valid: scoped users require no permissions or limits set")
        try:
            limits = expand_scope_template(scope.template, user, account.name, account.tags)
        except JWTError:
            raise AuthError("User JWT generated invalid permissions") from None
    if account.expires and account.expires <= _now(now):
        raise AuthError("Account JWT has expired")
    bearer = bool(limits.get("bearer_token"))
    if bearer and account.disallow_bearer:
        raise AuthError("Account does not allow bearer tokens")
    if account.is_revoked(user.subject, user.issued_at):
        raise AuthError("User authentication revoked")
    return UserAuthorization(
        user=user.subject,
        account=account.subject,
        name=user.name,
        permissions=limits,
        bearer_token=bearer,
        allowed_connection_types=_as_str_list(limits.get("allowed_connection_types")),
        expires=user.expires,
        scoped=scope is not None,
        signing_key=user.issuer,
        tags=user.tags,
    )


# -------------------------------------------------------------------- templates

_MUSTACHE_RE: Final = re.compile(r"\{\{([^}]+)\}\}")
MAX_TEMPLATE_EXPANSIONS: Final = 4096


def _tag_op(op: str) -> tuple[str, str] | None:
    # Mirrors the server's isTag: case-insensitive match, case-sensitive trim.
    if len(op) >= 4 and op[:4].lower() == "tag(" and op.endswith(")"):
        v = op[4:] if op.startswith("tag(") else op
        return "tag", v[:-1] if v.endswith(")") else v
    if len(op) >= 12 and op[:12].lower() == "account-tag(" and op.endswith(")"):
        v = op[12:] if op.startswith("account-tag(") else op
        return "account-tag", v[:-1] if v.endswith(")") else v
    return None


def _apply_template(
    subjects: list[str],
    fail_on_bad: bool,
    user: UserClaims,
    account_name: str,
    account_tags: Sequence[str],
) -> list[str]:
    if not any(_MUSTACHE_RE.search(s) for s in subjects):
        return subjects
    emitted: list[str] = []
    for entry in subjects:
        srcs = [m.group(0) for m in _MUSTACHE_RE.finditer(entry)]
        values: list[list[str]] = []
        has_tags = False
        for tk in srcs:
            op = tk[2:-2].strip()
            low = op.lower()
            if low == "name()":
                values.append([user.name])
            elif low == "subject()":
                values.append([user.subject])
            elif low == "account-name()":
                values.append([account_name])
            elif low == "account-subject()":
                values.append([user.issuer_account])
            elif (tag := _tag_op(op)) is not None:
                has_tags = True
                tags = account_tags if tag[0] == "account-tag" else user.tags
                prefix = f"{tag[1].lower()}:"
                found = [t[len(prefix):] for t in tags if t.startswith(prefix)]
                if found:
                    values.append(found)
                elif fail_on_bad:
                    raise JWTError(f"generated invalid subject {entry!r}: {tag[1]!r} is not defined")
                else:
                    values.append([" "])  # yields an invalid subject that is dropped
            else:
                raise JWTError(f"template operation in {entry!r}: {op!r} is not defined")
        if has_tags:
            count = 1
            for v in values:
                count *= len(v)
            if count > MAX_TEMPLATE_EXPANSIONS or len(emitted) > MAX_TEMPLATE_EXPANSIONS - count:
                raise JWTError(f"template expansion exceeds limit: {MAX_TEMPLATE_EXPANSIONS}")
            combos: Iterable[Sequence[str]] = itertools.product(*values)
        else:
            combos = [[v[0] for v in values]]
        for combo in combos:
            subj = entry
            for src, value in zip(srcs, combo):
                subj = subj.replace(src, value)
            if is_valid_subject(subj):
                emitted.append(subj)
            elif fail_on_bad:
                raise JWTError("generated invalid subject")
    return emitted


def expand_scope_template(
    template: Mapping[str, Any],
    user: UserClaims,
    account_name: str = "",
    account_tags: Sequence[str] = (),
) -> dict[str, Any]:
    """Apply a scoped signing key's template to ``user`` (server ``processUserPermissionsTemplate``).

    Supports ``{{name()}}``, ``{{subject()}}``, ``{{account-name()}}``,
    ``{{account-subject()}}``, ``{{tag(x)}}`` and ``{{account-tag(x)}}`` (tags of
    the form ``x:value``; several values expand to several subjects).  Invalid
    results are dropped from allow lists and are errors in deny lists; an allow
    list emptied by expansion adds ``>`` to the matching deny list.
    """
    limits: dict[str, Any] = json.loads(json.dumps(dict(template)))
    for direction in ("sub", "pub"):
        perm = limits.get(direction)
        perm = dict(perm) if isinstance(perm, dict) else {}
        allow = _as_str_list(perm.get("allow"))
        deny = _as_str_list(perm.get("deny"))
        new_allow = _apply_template(allow, False, user, account_name, account_tags)
        new_deny = _apply_template(deny, True, user, account_name, account_tags)
        if allow and not new_allow and ">" not in new_deny:
            new_deny = [*new_deny, ">"]
        if new_allow or "allow" in perm:
            perm["allow"] = new_allow
        if new_deny or "deny" in perm:
            perm["deny"] = new_deny
        limits[direction] = perm
    return limits


# ------------------------------------------------------------------------ creds

# jwt v2 ``userConfigRE``: a ``---...---`` line, the payload line, a closing line.
_DECORATED_RE: Final = re.compile(
    r"\s*(?:(?:[-]{3,}.*[-]{3,}\r?\n)([\w\-.=]+)(?:\r?\n[-]{3,}.*[-]{3,}(\r?\n|\Z)))",
    re.ASCII,
)


@dataclass(frozen=True)
class Creds:
    """A parsed ``.creds`` file: the user JWT and the user's key pair."""

    jwt: str
    key_pair: KeyPair

    @property
    def seed(self) -> str:
        return self.key_pair.seed or ""


def _text(contents: str | bytes) -> str:
    return contents.decode("utf-8", "replace") if isinstance(contents, (bytes, bytearray)) else contents


def parse_decorated_jwt(contents: str | bytes) -> str:
    """The first decorated block (the JWT); the whole input if undecorated."""
    text = _text(contents)
    m = _DECORATED_RE.search(text)
    return m.group(1) if m else text


def parse_decorated_nkey(contents: str | bytes) -> KeyPair:
    """The seed from the second decorated block, else the first ``SO/SA/SU`` line."""
    text = _text(contents)
    items = list(_DECORATED_RE.finditer(text))
    seed: str | None = None
    if len(items) > 1:
        seed = items[1].group(1)
    else:
        for line in text.split("\n"):
            if line.strip()[:2] in ("SO", "SA", "SU"):
                seed = line
                break
    if seed is None:
        raise JWTError("no nkey seed found")
    if seed[:2] not in ("SO", "SA", "SU"):
        raise JWTError("doesn't contain a seed nkey")
    try:
        return nkeys.from_seed(seed)
    except nkeys.NKeyError as exc:
        raise JWTError(str(exc)) from None


def parse_creds(contents: str | bytes) -> Creds:
    """Parse a ``.creds`` file (``-----BEGIN NATS USER JWT-----`` + user seed)."""
    token = parse_decorated_jwt(contents).strip()
    kp = parse_decorated_nkey(contents)
    if kp.prefix != PrefixByte.USER:
        raise JWTError("doesn't contain an user seed nkey")
    return Creds(jwt=token, key_pair=kp)


def decorate_jwt(token: str, kind: str = USER_CLAIM) -> str:
    kind = kind.upper()
    return f"-----BEGIN NATS {kind} JWT-----\n{token}\n------END NATS {kind} JWT------\n\n"


def decorate_seed(seed: str) -> str:
    seed = seed.strip()
    kinds = {"SU": "USER", "SA": "ACCOUNT", "SO": "OPERATOR"}
    if seed[:2] not in kinds:
        raise JWTError("seed is not an operator, account or user seed")
    kind = kinds[seed[:2]]
    return (
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        f"-----BEGIN {kind} NKEY SEED-----\n{seed}\n------END {kind} NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def format_user_config(token: str, seed: str) -> str:
    """A ``.creds`` file body as jwt ``FormatUserConfig`` writes it."""
    claims = decode(token)
    if claims.claim_type != USER_CLAIM:
        raise JWTError(f"{claims.claim_type!r} cannot be serialized as a user config")
    if not seed.strip().startswith("SU"):
        raise JWTError("nkey seed is not an user seed")
    if nkeys.from_seed(seed).public_key != claims.subject:
        raise JWTError("nkey seed does not match the jwt subject")
    return decorate_jwt(token, USER_CLAIM) + decorate_seed(seed)
