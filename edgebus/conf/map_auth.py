"""Authorization, accounts and subject mappings: checked, then kept as canonical dicts.

nats-server accepts many spellings (``username``/``user``, ``pass``/``password``,
``permission``/``permissions``/``authorization``, ``pub``/``publish``/``import``...). These
blocks are validated the way nats-server validates them (unknown fields, user entries
without a name, invalid nkeys and subjects, duplicate users, reserved account names) and
stored in `Options` with one canonical spelling each, for `edgebus.security` to turn into
authenticators and accounts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .durations import parse_duration
from .errors import Position
from .map_base import MapperBase, Skip, go_type
from .validate import is_public_nkey, is_valid_subject

__all__ = ["AuthMapper"]

_CONNECTION_TYPES = frozenset(
    "STANDARD WEBSOCKET LEAFNODE LEAFNODE_WS MQTT MQTT_WS IN_PROCESS".split()
)
_RESERVED_ACCOUNTS = frozenset({"$G"})


class AuthMapper(MapperBase):
    # -- mappings -------------------------------------------------------------------------

    def mappings(self, v: Any, pos: Position, key: str) -> dict[str, Any]:
        m = self.map_(v, pos, key)
        out: dict[str, Any] = {}
        for src, dest in m.items():
            p = self.where(m, src)
            if isinstance(dest, str):
                out[src] = dest
            elif isinstance(dest, list):
                dests = []
                for i, item in enumerate(dest):
                    if not isinstance(item, Mapping):
                        self.error(self.where(dest, i), "Expected an entry for the mapping destination")
                        continue
                    entry: dict[str, Any] = {}
                    for dk, dv in item.items():
                        low = dk.lower()
                        dp = self.where(item, dk)
                        if low in ("dest", "destination"):
                            if isinstance(dv, str):
                                entry["destination"] = dv
                            else:
                                self.error(dp, "mapping destination must be a string")
                        elif low == "weight":
                            w = dv.rstrip("%") if isinstance(dv, str) else dv
                            try:
                                weight = int(w)
                            except (TypeError, ValueError):
                                self.error(dp, f"Invalid weight {dv!r} for mapping destination")
                                continue
                            if not 0 <= weight <= 100:
                                self.error(dp, f"Invalid weight {weight} for mapping destination")
                            entry["weight"] = weight
                        elif low == "cluster":
                            entry["cluster"] = dv
                        elif not self.is_var(item, dk):
                            self.error(dp, f'Unknown field "{dk}" for mapping destination')
                    dests.append(entry)
                out[src] = dests
            elif isinstance(dest, Mapping):
                out[src] = dict(dest)
            else:
                self.error(p, f"Unknown type {go_type(dest)} for mapping destination")
        return out

    # -- authorization --------------------------------------------------------------------

    def top_authorization(self, v: Any, pos: Position, key: str) -> None:
        auth = self.authorization(v, pos, key)
        self.o.authorization = auth
        if "timeout" in auth:
            self.o.auth_timeout = auth["timeout"]

    def authorization(self, v: Any, pos: Position, key: str) -> dict[str, Any]:
        m = self.map_(v, pos, key)
        out: dict[str, Any] = {}
        s = self

        def put(name: str, conv: Callable[[Any, Position, str], Any]) -> Callable[..., None]:
            return lambda val, p, k: out.__setitem__(name, conv(val, p, k))

        h: dict[str, Callable[[Any, Position, str], None]] = {
            "user": put("user", s.str_),
            "username": put("user", s.str_),
            "pass": put("password", s.str_),
            "password": put("password", s.str_),
            "token": put("token", s.str_),
            "timeout": put("timeout", lambda val, p, k: self.auth_timeout(val, p, k)),
            "users": put("users", self.users),
            "default_permission": put("default_permissions", self.permissions),
            "default_permissions": put("default_permissions", self.permissions),
            "permissions": put("default_permissions", self.permissions),
            "auth_callout": put("auth_callout", lambda val, p, k: dict(s.map_(val, p, k))),
            "auth_hook": put("auth_callout", lambda val, p, k: dict(s.map_(val, p, k))),
            "proxy_required": put("proxy_required", s.bool_),
        }
        self.run_block(m, h)
        if ("user" in out or "password" in out) and "token" in out:
            self.error(pos, "Cannot have a user/pass and token")
        elif "users" in out:
            if "user" in out:
                self.error(pos, "Can not have a single user/pass and a users array")
            elif "token" in out:
                self.error(pos, "Can not have a token and a users array")
        return out

    def auth_timeout(self, v: Any, pos: Position, key: str) -> float:
        t = self.seconds(v, pos, "authorization config")
        if t > 60:
            self.warn(
                pos,
                key,
                f"timeout of {v} ({t:f} seconds) is high, consider keeping it under 60 "
                "seconds. possibly caused by unquoted duration; use '1m' instead of 1m, "
                "for example",
            )
        return t

    def users(self, v: Any, pos: Position, key: str) -> list[dict[str, Any]]:
        if not isinstance(v, list):
            raise self.fail(pos, f"Expected users field to be an array, got {v!r}")
        out = []
        seen: set[str] = set()
        for i, entry in enumerate(v):
            epos = self.where(v, i)
            if not isinstance(entry, Mapping):
                self.error(epos, f"Expected user entry to be a map/struct, got {entry!r}")
                continue
            user = self.user_entry(entry, epos)
            if user is None:
                continue
            ident = user.get("nkey") or user.get("user")
            if ident in seen:
                self.error(epos, f'Duplicate user "{ident}" detected')
                continue
            seen.add(ident)
            out.append(user)
        return out

    def user_entry(self, m: Mapping[str, Any], pos: Position) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        s = self

        def put(name: str, conv: Callable[[Any, Position, str], Any]) -> Callable[..., None]:
            return lambda val, p, k: out.__setitem__(name, conv(val, p, k))

        h: dict[str, Callable[[Any, Position, str], None]] = {
            "nkey": put("nkey", s.str_),
            "user": put("user", s.str_),
            "username": put("user", s.str_),
            "pass": put("password", s.str_),
            "password": put("password", s.str_),
            "permission": put("permissions", self.permissions),
            "permissions": put("permissions", self.permissions),
            "authorization": put("permissions", self.permissions),
            "allowed_connection_types": put("allowed_connection_types", self.connection_types),
            "connection_types": put("allowed_connection_types", self.connection_types),
            "clients": put("allowed_connection_types", self.connection_types),
            "proxy_required": put("proxy_required", s.bool_),
        }
        before = len(self.errors)
        self.run_block(m, h)
        if len(self.errors) != before:
            return None
        if not out.get("nkey") and not out.get("user"):
            self.error(pos, "User entry requires a user")
            return None
        if out.get("nkey"):
            if not is_public_nkey(out["nkey"], "U"):
                self.error(pos, "Not a valid public nkey for a user")
                return None
            if out.get("user") or out.get("password"):
                self.error(pos, "Nkey users do not take usernames or passwords")
                return None
        return out

    def connection_types(self, v: Any, pos: Position, key: str) -> list[str]:
        types = [t.upper() for t in self.strings(v, pos, key, "allowed connection types")]
        bad = [t for t in types if t not in _CONNECTION_TYPES]
        if bad:
            raise self.fail(pos, "invalid connection types [" + " ".join(f'"{b}"' for b in bad) + "]")
        return types

    def permissions(self, v: Any, pos: Position, key: str) -> dict[str, Any]:
        if not isinstance(v, Mapping):
            raise self.fail(pos, f"Expected permissions to be a map/struct, got {v!r}")
        out: dict[str, Any] = {}
        for low, k, val, p in self.entries(v):
            try:
                if low in ("pub", "publish", "import"):
                    out["publish"] = self.subject_permission(val, p, queue=False)
                elif low in ("sub", "subscribe", "export"):
                    out["subscribe"] = self.subject_permission(val, p, queue=True)
                elif low in ("publish_allow_responses", "allow_responses"):
                    out["allow_responses"] = self.allow_responses(val, p)
                elif not self.is_var(v, k):
                    self.error(p, f'Unknown field "{k}" parsing permissions')
            except Skip:
                pass
        return out

    def subject_permission(self, v: Any, pos: Position, *, queue: bool) -> Any:
        if isinstance(v, Mapping):
            out: dict[str, list[str]] = {}
            for low, k, val, p in self.entries(v):
                if low in ("allow", "deny"):
                    out[low] = self.subjects(val, p, queue=queue)
                elif not self.is_var(v, k):
                    self.error(
                        p,
                        f'Unknown field name "{k}" parsing subject permissions, only '
                        "'allow' or 'deny' are permitted",
                    )
            return out
        subjects = self.subjects(v, pos, queue=queue)
        # keep the shape the user wrote: a single subject stays a string
        return v if isinstance(v, str) else subjects

    def subjects(self, v: Any, pos: Position, *, queue: bool) -> list[str]:
        if isinstance(v, str):
            items = [v]
        elif isinstance(v, list):
            items = []
            for i, item in enumerate(v):
                if not isinstance(item, str):
                    raise self.fail(
                        self.where(v, i), "Subject in permissions array cannot be cast to string"
                    )
                items.append(item)
        else:
            raise self.fail(
                pos,
                "Expected subject permissions to be a subject, or array of subjects, "
                f"got {go_type(v)}",
            )
        for subject in items:
            if is_valid_subject(subject):
                continue
            parts = subject.split()
            if not queue or len(parts) != 2:
                raise self.fail(pos, f'subject "{subject}" is not a valid subject')
            if not is_valid_subject(parts[0]):
                raise self.fail(pos, f'subject "{parts[0]}" is not a valid subject')
            if not is_valid_subject(parts[1]):
                raise self.fail(pos, f'queue "{parts[1]}" is not a valid queue')
        return items

    def allow_responses(self, v: Any, pos: Position) -> Any:
        if isinstance(v, bool):
            return v
        if not isinstance(v, Mapping):
            raise self.fail(pos, "error parsing response permissions, expected a boolean or a map")
        out: dict[str, Any] = {}
        for low, k, val, p in self.entries(v):
            try:
                if low in ("max", "max_msgs", "max_messages", "max_responses"):
                    out["max"] = self.int_(val, p, k)
                elif low in ("expires", "expiration", "ttl"):
                    if not isinstance(val, str):
                        raise self.fail(p, "error parsing expires, not a duration string")
                    try:
                        out["expires"] = parse_duration(val)
                    except ValueError as e:
                        raise self.fail(p, f"error parsing expires: {e}") from None
                elif not self.is_var(v, k):
                    self.error(p, f'Unknown field "{k}" parsing permissions')
            except Skip:
                pass
        return out

    # -- accounts -------------------------------------------------------------------------

    def top_accounts(self, v: Any, pos: Position, key: str) -> None:
        accounts: dict[str, Any] = {}
        if isinstance(v, list):
            for i, name in enumerate(v):
                p = self.where(v, i)
                if not isinstance(name, str):
                    self.error(p, f"account name must be a string, got {go_type(name)}")
                elif name in _RESERVED_ACCOUNTS:
                    self.error(p, f'"{name}" is a Reserved Account')
                elif name in accounts:
                    self.error(p, f"Duplicate Account Entry: {name}")
                else:
                    accounts[name] = {}
        elif isinstance(v, Mapping):
            for name, body in v.items():
                p = self.where(v, name)
                if self.is_var(v, name):
                    continue
                if not isinstance(body, Mapping):
                    self.error(p, "Expected map entries for accounts")
                    continue
                if name in _RESERVED_ACCOUNTS:
                    self.error(p, f'"{name}" is a Reserved Account')
                    continue
                accounts[name] = self.account(body, p)
        else:
            raise self.fail(pos, f"Expected map or array for accounts, got {go_type(v)}")
        self.o.accounts = accounts
        self.accounts_pos = pos

    def account(self, m: Mapping[str, Any], pos: Position) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def put(name: str, conv: Callable[[Any, Position, str], Any]) -> Callable[..., None]:
            return lambda val, p, k: out.__setitem__(name, conv(val, p, k))

        def nkey(val: Any, p: Position, k: str) -> str:
            if not isinstance(val, str) or not is_public_nkey(val, "A"):
                raise self.fail(p, f'Not a valid public nkey for an account: "{val}"')
            return val

        def listof(val: Any, p: Position, k: str) -> list[Any]:
            if not isinstance(val, list):
                raise self.fail(p, f"{k} should be an array, got {go_type(val)}")
            for i, item in enumerate(val):
                if not isinstance(item, Mapping):
                    self.error(self.where(val, i), f"{k} entry should be a map, got {go_type(item)}")
            return list(val)

        def jetstream(val: Any, p: Position, k: str) -> Any:
            if isinstance(val, str) and val.lower() not in ("enabled", "enable", "disabled", "disable"):
                raise self.fail(p, f"Expected 'enabled' or 'disabled' for string value, got '{val}'")
            if not isinstance(val, (bool, str, Mapping)):
                raise self.fail(
                    p, f"Expected map, bool or string to define JetStream, got {go_type(val)}"
                )
            return dict(val) if isinstance(val, Mapping) else val

        h: dict[str, Callable[[Any, Position, str], None]] = {
            "nkey": put("nkey", nkey),
            "imports": put("imports", listof),
            "exports": put("exports", listof),
            "jetstream": put("jetstream", jetstream),
            "users": put("users", self.users),
            "default_permissions": put("default_permissions", self.permissions),
            "mappings": put("mappings", self.mappings),
            "maps": put("mappings", self.mappings),
            "limits": put("limits", lambda val, p, k: dict(self.map_(val, p, k))),
            "msg_trace": put("msg_trace", lambda val, p, k: val),
            "trace_dest": put("msg_trace", lambda val, p, k: val),
        }
        self.run_block(m, h)
        return out

    def cross_checks(self) -> None:
        """Rules spanning authorization{} and accounts{} (checked once both are read)."""
        auth = self.o.authorization or {}
        accounts = self.o.accounts or {}
        pos = self.accounts_pos or Position(self.filename, 0, 0)
        seen = {u.get("nkey") or u.get("user") for u in auth.get("users", [])}
        for acc in accounts.values():
            users = acc.get("users") or []
            if users and auth.get("user"):
                self.error(pos, "Can not have a single user/pass and accounts")
            elif users and auth.get("token"):
                self.error(pos, "Can not have a token and accounts")
            for u in users:
                ident = u.get("nkey") or u.get("user")
                if ident in seen:
                    self.error(pos, f'Duplicate user "{ident}" detected')
                seen.add(ident)
