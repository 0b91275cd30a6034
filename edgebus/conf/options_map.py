"""Maps a parsed config (see `edgebus.conf.parser`) onto `edgebus.options.Options`.

The rules are nats-server's (server/opts.go, ``processConfigFileLine`` and friends):

* option names are case-insensitive and have aliases (``net``/``host``, ``ws``/``websocket``);
* an unknown key is an error (``unknown field "x"``) unless the key was only defined to be
  referenced as a ``$variable``;
* wrong value types are errors; every problem found is reported, each with file:line:col;
* some forms only earn a *warning* (a plain number where a duration string is expected, a
  duplicate leafnode URL, an empty file). nats-server starts despite warnings but
  ``nats-server -t`` fails on them; callers get them in `ConfigReport.warnings`.

Keys nats-server knows but edgebus does not implement (``gateway``, ``ocsp``, ``cluster``
routes, ...) are accepted and listed in `ConfigReport.notices` so the server can log that it
ignores them. Authorization and account blocks are checked and kept as dicts with
canonical key names (``user``, ``password``, ``permissions``, ``publish``...) for
`edgebus.security` to interpret.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..options import (
    LeafOptions,
    LeafRemote,
    MQTTOptions,
    Options,
    TLSOptions,
    WebsocketOptions,
)
from .durations import format_duration, parse_duration
from .errors import ConfigError, Position
from .parser import ConfigList, ConfigMap, parse_file
from .validate import (
    go_atoi,
    is_public_nkey,
    is_valid_subject,
    split_host_port,
    storage_size,
)

__all__ = ["ConfigReport", "ConfigWarning", "options_from_config", "load_config"]


class ConfigWarning(str):
    """A warning's text (``file:line:col: invalid use of field ...``) that also knows
    its `position` and bare `reason`, so it can be turned into a `ConfigError`."""

    position: Position
    reason: str

    def __new__(cls, position: Position, reason: str) -> ConfigWarning:
        self = super().__new__(cls, f"{position}: {reason}")
        self.position = position
        self.reason = reason
        return self

    def as_error(self) -> ConfigError:
        return ConfigError(self.reason, self.position)


@dataclass
class ConfigReport:
    """What the mapper noticed besides errors.

    `warnings` are nats-server's own warnings (``file:line:col: invalid use of field ...``);
    `notices` name settings edgebus accepts but does not act on.
    """

    warnings: list[ConfigWarning] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


class _Skip(Exception):
    """Abandon the current key after its error was recorded."""


_CONNECTION_TYPES = frozenset(
    {"STANDARD", "WEBSOCKET", "LEAFNODE", "LEAFNODE_WS", "MQTT", "MQTT_WS", "IN_PROCESS"}
)
_RESERVED_ACCOUNTS = frozenset({"$G"})
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")


def _go_type(v: Any) -> str:
    """The Go type nats-server would see for a parsed value (used in messages)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, datetime):
        return "time.Time"
    return type(v).__name__


def _show(v: Any) -> str:
    text = f'"{v}"' if isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


_WANT_NAMES = {
    "int64": "an integer",
    "bool": "a boolean",
    "string": "a string",
    "float64": "a number",
    "map[string]interface {}": "a map",
    "[]interface {}": "an array",
}


class _Mapper:
    def __init__(
        self, o: Options, filename: str, report: ConfigReport, allow_unknown: bool = False
    ) -> None:
        self.o = o
        self.filename = filename
        self.report = report
        self.allow_unknown = allow_unknown
        self.errors: list[ConfigError] = []
        self.store_dir_set = False
        self.accounts_pos: Position | None = None

    # -- reporting ------------------------------------------------------------------------

    def where(self, container: Any, key: Any) -> Position:
        pos = None
        if isinstance(container, (ConfigMap, ConfigList)):
            pos = container.position_of(key)
        return pos or Position(self.filename, 0, 0)

    def error(self, pos: Position, reason: str) -> None:
        self.errors.append(ConfigError(reason, pos))

    def fail(self, pos: Position, reason: str) -> _Skip:
        self.error(pos, reason)
        return _Skip()

    def warn(self, pos: Position, fieldname: str, reason: str) -> None:
        self.report.warnings.append(
            ConfigWarning(pos, f'invalid use of field "{fieldname}": {reason}')
        )

    def notice(self, pos: Position, key: str, what: str = "not supported by edgebus") -> None:
        self.report.notices.append(f'{pos}: "{key}" is {what}; ignored')

    def unknown(self, pos: Position, key: str) -> None:
        self.error(pos, f'unknown field "{key}"')

    def entries(self, m: Mapping[str, Any]) -> Iterator[tuple[str, str, Any, Position]]:
        """(lower-cased key, key, value, position) for each entry of `m`."""
        for key, value in m.items():
            yield key.lower(), key, value, self.where(m, key)

    def is_var(self, m: Mapping[str, Any], key: str) -> bool:
        return isinstance(m, ConfigMap) and m.is_used_variable(key)

    def run_block(
        self,
        m: Mapping[str, Any],
        handlers: Mapping[str, Callable[[Any, Position, str], None]],
        *,
        ignored: frozenset[str] = frozenset(),
        unknown: Callable[[Position, str], None] | None = None,
        block: str = "",
    ) -> None:
        """Dispatch each entry of `m` to its handler; errors in one entry don't stop others."""
        for low, key, value, pos in self.entries(m):
            try:
                handler = handlers.get(low)
                if handler is not None:
                    handler(value, pos, key)
                elif low in ignored:
                    self.notice(pos, f"{block}.{key}" if block else key)
                elif not self.is_var(m, key):
                    (unknown or self.unknown)(pos, key)
            except _Skip:
                pass

    # -- typed access ---------------------------------------------------------------------

    def want(self, v: Any, kind: str, pos: Position, key: str) -> Any:
        if _go_type(v) != kind:
            raise self.fail(
                pos,
                f'invalid value for "{key}": expected {_WANT_NAMES.get(kind, kind)}, '
                f"got {_go_type(v)} {_show(v)}",
            )
        return v

    def int_(self, v: Any, pos: Position, key: str) -> int:
        return int(self.want(v, "int64", pos, key))

    def str_(self, v: Any, pos: Position, key: str) -> str:
        return str(self.want(v, "string", pos, key))

    def bool_(self, v: Any, pos: Position, key: str) -> bool:
        return bool(self.want(v, "bool", pos, key))

    def map_(self, v: Any, pos: Position, key: str) -> Mapping[str, Any]:
        return self.want(v, "map[string]interface {}", pos, key)  # type: ignore[no-any-return]

    def strings(self, v: Any, pos: Position, key: str, what: str) -> list[str]:
        """A string or an array of strings (nats-server's parseStringArray)."""
        if isinstance(v, str):
            return [v]
        if isinstance(v, list):
            out = []
            for i, item in enumerate(v):
                if isinstance(item, str):
                    out.append(item)
                else:
                    self.error(
                        self.where(v, i),
                        f"error parsing {what}: unsupported type in array {_go_type(item)}",
                    )
            return out
        raise self.fail(pos, f"error parsing {what}: unsupported type {_go_type(v)}")

    def duration(self, v: Any, pos: Position, key: str, name: str | None = None) -> float:
        """nats-server's parseDuration: a Go duration string, or (with a warning) seconds."""
        name = name or key
        if isinstance(v, str):
            try:
                return parse_duration(v)
            except ValueError as e:
                raise self.fail(pos, f"error parsing {name}: {e}") from None
        if isinstance(v, int) and not isinstance(v, bool):
            self.warn(pos, name, f"{name} should be converted to a duration")
            return float(v)
        raise self.fail(pos, f"error parsing {name}: expected a duration string, got {_go_type(v)}")

    def strict_duration(self, v: Any, pos: Position, name: str) -> float:
        """A Go duration string and nothing else."""
        s = self.want(v, "string", pos, name)
        try:
            return parse_duration(s)
        except ValueError as e:
            raise self.fail(pos, f"error parsing {name}: {e}") from None

    def seconds(self, v: Any, pos: Position, what: str) -> float:
        """Timeouts given as int/float seconds or a duration string (auth and TLS timeouts)."""
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise self.fail(pos, f"error parsing {what}, 'timeout' wrong type")
        if isinstance(v, str):
            try:
                return parse_duration(v)
            except ValueError as e:
                raise self.fail(pos, f"error parsing {what}, 'timeout' {e}") from None
        return float(v)

    def listen(self, v: Any, pos: Position) -> tuple[str | None, int]:
        """``port`` or ``"host:port"`` (nats-server's parseListen)."""
        if isinstance(v, int) and not isinstance(v, bool):
            return None, v
        if isinstance(v, str):
            try:
                host, port = split_host_port(v)
            except ValueError:
                raise self.fail(pos, f'could not parse address string "{v}"') from None
            try:
                return host, go_atoi(port)
            except ValueError:
                raise self.fail(pos, f'could not parse port "{port}"') from None
        raise self.fail(pos, f"expected port or host:port, got {_go_type(v)}")

    # -- top level ------------------------------------------------------------------------

    def top(self, d: Mapping[str, Any]) -> None:
        o = self.o
        if not d:
            self.report.warnings.append(
                ConfigWarning(Position(self.filename, 1, 1), "config has no values or is empty")
            )
        s = self
        h: dict[str, Callable[[Any, Position, str], None]] = {}

        def setter(attr: str, conv: Callable[[Any, Position, str], Any]) -> Callable[..., None]:
            return lambda v, p, k: setattr(o, attr, conv(v, p, k))

        for keys, attr, conv in (
            (("client_advertise",), "client_advertise", s.str_),
            (("port",), "port", s.int_),
            (("host", "net"), "host", s.str_),
            (("debug",), "debug", s.bool_),
            (("trace",), "trace", s.bool_),
            (("logtime",), "logtime", s.bool_),
            (("logtime_utc",), "logtime_utc", s.bool_),
            (("http_port", "monitor_port"), "http_port", s.int_),
            (("https_port",), "https_port", s.int_),
            (("http_base_path",), "http_base_path", s.str_),
            (("logfile", "log_file"), "log_file", s.str_),
            (("logfile_size_limit", "log_size_limit"), "log_size_limit", s.int_),
            (("logfile_max_num", "log_max_num"), "log_max_num", s.int_),
            (("syslog",), "syslog", s.bool_),
            (("remote_syslog",), "remote_syslog", s.str_),
            (("pidfile", "pid_file"), "pid_file", s.str_),
            (("ports_file_dir",), "ports_file_dir", s.str_),
            (("prof_port",), "prof_port", s.int_),
            (("max_pending",), "max_pending", s.int_),
            (("max_traced_msg_len",), "max_traced_msg_len", s.int_),
            (("max_subscriptions", "max_subs"), "max_subscriptions", s.int_),
            (("ping_max",), "ping_max", s.int_),
            (("allow_non_tls",), "allow_non_tls", s.bool_),
            (("no_auth_user",), "no_auth_user", s.str_),
            (("no_system_account", "no_system", "no_sys_acc"), "no_system_account", s.bool_),
            (("no_header_support",), "no_header_support", s.bool_),
            (("ping_interval",), "ping_interval", s.duration),
            (("write_deadline",), "write_deadline", s.duration),
        ):
            for key in keys:
                h[key] = setter(attr, conv)

        h["listen"] = self.top_listen
        h["server_name"] = self.top_server_name
        h["trace_verbose"] = self.top_trace_verbose
        h["trace_headers"] = lambda v, p, k: setattr(o, "trace", s.bool_(v, p, k))
        h["http"] = self.top_http
        h["https"] = self.top_https
        for key in ("max_control_line", "max_payload"):
            h[key] = self.top_int32
        for key in ("max_connections", "max_conn"):
            h[key] = self.top_max_conn
        for key in ("max_sub_tokens", "max_subscription_tokens"):
            h[key] = self.top_max_sub_tokens
        h["lame_duck_duration"] = self.top_lame_duck_duration
        h["lame_duck_grace_period"] = self.top_lame_duck_grace
        h["server_tags"] = self.top_server_tags
        for key in ("system_account", "system"):
            h[key] = self.top_system_account
        for key in ("operator", "operators", "roots", "root", "root_operators", "root_operator"):
            h[key] = self.top_operator
        for key in ("resolver", "account_resolver", "accounts_resolver"):
            h[key] = self.top_resolver
        h["resolver_preload"] = self.top_resolver_preload
        for key in ("mappings", "maps"):
            h[key] = self.top_mappings
        h["authorization"] = self.top_authorization
        h["accounts"] = self.top_accounts
        h["tls"] = lambda v, p, k: setattr(o, "tls", self.tls(v, p, k))
        h["jetstream"] = self.top_jetstream
        for key in ("store_dir", "storedir"):
            h[key] = self.top_store_dir
        for key in ("websocket", "ws"):
            h[key] = self.top_websocket
        h["mqtt"] = self.top_mqtt
        for key in ("leaf", "leafnodes"):
            h[key] = self.top_leafnodes
        h["cluster"] = self.top_cluster
        h["write_timeout"] = self.write_timeout

        ignored = frozenset(
            {
                "gateway",
                "disable_sublist_cache",
                "no_sublist_cache",
                "default_sentinel",
                "prof_block_rate",
                "proxy_protocol",
                "ocsp",
                "ocsp_cache",
                "resolver_tls",
                "resolver_pinned_accounts",
                "trusted",
                "trusted_keys",
                "connect_error_reports",
                "reconnect_error_reports",
                "server_metadata",
                "feature_flags",
                "default_js_domain",
                "no_fast_producer_stall",
                "max_closed_clients",
                "proxies",
            }
        )
        self.run_block(d, h, ignored=ignored, unknown=self.top_unknown)
        self.cross_checks()

    def top_unknown(self, pos: Position, key: str) -> None:
        if self.allow_unknown:
            self.notice(pos, key, "not a known setting")
        else:
            self.unknown(pos, key)

    def top_listen(self, v: Any, pos: Position, key: str) -> None:
        host, port = self.listen(v, pos)
        if host:
            self.o.host = host
        self.o.port = port

    def top_server_name(self, v: Any, pos: Position, key: str) -> None:
        name = self.str_(v, pos, key)
        if " " in name:
            raise self.fail(pos, "server name cannot contain spaces")
        self.o.server_name = name

    def top_trace_verbose(self, v: Any, pos: Position, key: str) -> None:
        self.o.trace_verbose = self.o.trace = self.bool_(v, pos, key)

    def top_http(self, v: Any, pos: Position, key: str) -> None:
        host, port = self.listen(v, pos)
        if host:
            self.o.http_host = host
        self.o.http_port = port

    def top_https(self, v: Any, pos: Position, key: str) -> None:
        host, port = self.listen(v, pos)
        if host:
            self.o.http_host = host
        self.o.https_port = port

    def top_int32(self, v: Any, pos: Position, key: str) -> None:
        n = self.int_(v, pos, key)
        if n > 2**31 - 1:
            raise self.fail(pos, f"{key} value is too big")
        setattr(self.o, key.lower(), n)

    def top_max_conn(self, v: Any, pos: Position, key: str) -> None:
        n = self.int_(v, pos, key)
        # nats-server turns 0 into -1 (no connections accepted)
        self.o.max_connections = -1 if n == 0 else n

    def top_max_sub_tokens(self, v: Any, pos: Position, key: str) -> None:
        n = self.int_(v, pos, key)
        if n > 255:
            raise self.fail(pos, f"{key} value is too big")
        if n <= 0:
            raise self.fail(pos, f"{key} value can not be negative")
        self.o.max_sub_tokens = n

    def top_lame_duck_duration(self, v: Any, pos: Position, key: str) -> None:
        d = self.strict_duration(v, pos, "lame_duck_duration")
        if d < 30:
            raise self.fail(
                pos,
                f"invalid lame_duck_duration of {format_duration(d)}, minimum is 30 seconds",
            )
        self.o.lame_duck_duration = d

    def top_lame_duck_grace(self, v: Any, pos: Position, key: str) -> None:
        d = self.strict_duration(v, pos, "lame_duck_grace_period")
        if d < 0:
            raise self.fail(pos, "invalid lame_duck_grace_period, needs to be positive")
        self.o.lame_duck_grace_period = d

    def top_server_tags(self, v: Any, pos: Position, key: str) -> None:
        tags = self.strings(v, pos, key, "tags")
        self.o.server_tags = list(dict.fromkeys(self.o.server_tags + tags))

    def top_system_account(self, v: Any, pos: Position, key: str) -> None:
        if not isinstance(v, str):
            raise self.fail(pos, "system account name must be a string")
        self.o.system_account = v

    def top_operator(self, v: Any, pos: Position, key: str) -> None:
        if isinstance(v, str):
            ops = [v]
        elif isinstance(v, list):
            ops = self.strings(v, pos, key, "operators")
        else:
            raise self.fail(pos, f"error parsing operators: unsupported type {_go_type(v)}")
        for op in ops:
            # a file path, or the JWT itself inline (JWTs start with "eyJ"); the claims
            # are decoded and checked by edgebus.security when the server starts
            if not op.startswith("eyJ") and not os.path.isfile(op):
                self.error(
                    pos, f"error parsing operator JWT: open {op}: no such file or directory"
                )
        self.o.operator = ops

    def top_resolver(self, v: Any, pos: Position, key: str) -> None:
        if isinstance(v, str):
            if re.search(r"(?i)(MEM|MEMORY)\s*", v) or re.search(
                r'(?i)URL\(\s*"?[^\s"]*"?\s*\)', v
            ):
                self.o.resolver = v
                return
        elif isinstance(v, Mapping):
            kind = str(v.get("type", "")).upper()
            if kind in ("FULL", "CACHE") and not v.get("dir"):
                raise self.fail(pos, "dir has no value and needs to point to a directory")
            if kind in ("FULL", "CACHE", "MEM", "MEMORY"):
                self.o.resolver = dict(v)
                return
        else:
            raise self.fail(
                pos, f"error parsing operator resolver, wrong type {_go_type(v)}"
            )
        raise self.fail(
            pos,
            'error parsing account resolver, should be MEM or  URL("url") or a map '
            "containing dir and type state=[FULL|CACHE])",
        )

    def top_resolver_preload(self, v: Any, pos: Position, key: str) -> None:
        if not isinstance(v, Mapping):
            raise self.fail(pos, "preload should be a map of account_public_key:account_jwt")
        out: dict[str, str] = {}
        for k, jwt in v.items():
            p = self.where(v, k)
            if not isinstance(jwt, str):
                self.error(p, "preload map value should be a string JWT")
            elif not _JWT.match(jwt):
                self.error(p, "invalid account JWT")
            else:
                out[k] = jwt
        self.o.resolver_preload = out

    def top_mappings(self, v: Any, pos: Position, key: str) -> None:
        self.o.mappings = self.mappings(v, pos, key)

    def write_timeout(self, v: Any, pos: Position, key: str) -> None:
        if v not in ("default", "close", "retry"):
            raise self.fail(pos, "write_timeout must be 'default', 'close' or 'retry'")
        self.notice(pos, key)

    def top_store_dir(self, v: Any, pos: Position, key: str) -> None:
        d = self.str_(v, pos, key)
        self.set_store_dir(d, pos)

    def set_store_dir(self, d: str, pos: Position) -> None:
        if self.store_dir_set:
            raise self.fail(pos, "Duplicate 'store_dir' configuration")
        self.store_dir_set = True
        self.o.jetstream.store_dir = d

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
                self.error(p, f"Unknown type {_go_type(dest)} for mapping destination")
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
            except _Skip:
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
                f"got {_go_type(v)}",
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
            except _Skip:
                pass
        return out

    # -- accounts -------------------------------------------------------------------------

    def top_accounts(self, v: Any, pos: Position, key: str) -> None:
        accounts: dict[str, Any] = {}
        if isinstance(v, list):
            for i, name in enumerate(v):
                p = self.where(v, i)
                if not isinstance(name, str):
                    self.error(p, f"account name must be a string, got {_go_type(name)}")
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
            raise self.fail(pos, f"Expected map or array for accounts, got {_go_type(v)}")
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
                raise self.fail(p, f"{k} should be an array, got {_go_type(val)}")
            for i, item in enumerate(val):
                if not isinstance(item, Mapping):
                    self.error(self.where(val, i), f"{k} entry should be a map, got {_go_type(item)}")
            return list(val)

        def jetstream(val: Any, p: Position, k: str) -> Any:
            if isinstance(val, str) and val.lower() not in ("enabled", "enable", "disabled", "disable"):
                raise self.fail(p, f"Expected 'enabled' or 'disabled' for string value, got '{val}'")
            if not isinstance(val, (bool, str, Mapping)):
                raise self.fail(
                    p, f"Expected map, bool or string to define JetStream, got {_go_type(val)}"
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

    # -- TLS ------------------------------------------------------------------------------

    _TLS_IGNORED = frozenset(
        {
            "verify_cert_and_check_known_urls",
            "allow_insecure_cipher_suites",
            "cipher_suites",
            "curve_preferences",
            "connection_rate_limit",
            "pinned_certs",
            "cert_store",
            "cert_match_by",
            "cert_match",
            "ca_certs_match",
            "cert_match_skip_invalid",
            "ocsp_peer",
            "certs",
            "certificates",
            "min_version",
        }
    )

    def tls(self, v: Any, pos: Position, key: str) -> TLSOptions:
        if not isinstance(v, Mapping):
            raise self.fail(pos, f"error parsing tls config, expected a map, got {_go_type(v)}")
        t = TLSOptions()
        first_error = len(self.errors)
        for low, k, val, p in self.entries(v):
            try:
                if low in ("cert_file", "key_file", "ca_file"):
                    if not isinstance(val, str):
                        raise self.fail(p, f"error parsing tls config, expected '{low}' to be filename")
                    setattr(t, low, val)
                elif low in ("insecure", "verify", "verify_and_map"):
                    if not isinstance(val, bool):
                        raise self.fail(p, f"error parsing tls config, expected '{low}' to be a boolean")
                    if low == "verify_and_map":
                        t.verify_and_map = val
                        t.verify = t.verify or val
                    else:
                        setattr(t, low, val)
                elif low == "timeout":
                    t.timeout = self.seconds(val, p, "tls config")
                elif low in ("handshake_first", "first", "immediate"):
                    t.handshake_first = self.handshake_first(val, p, k)
                elif low in self._TLS_IGNORED:
                    self.notice(p, f"tls.{k}")
                else:
                    raise self.fail(p, f'error parsing tls config, unknown field "{k}"')
            except _Skip:
                pass
        if len(self.errors) == first_error:
            self.check_tls_files(t, pos)
        return t

    def handshake_first(self, v: Any, pos: Position, key: str) -> bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, str):
            low = v.lower()
            if low in ("true", "on", "auto", "auto_fallback"):
                return True
            if low in ("false", "off"):
                return False
            try:
                parse_duration(v)
                return True
            except ValueError:
                raise self.fail(pos, f'field "{key}"\'s value "{v}" is invalid') from None
        raise self.fail(pos, f'field "{key}" should be a boolean or a string, got {_go_type(v)}')

    def check_tls_files(self, t: TLSOptions, pos: Position) -> None:
        """What nats-server's GenTLSConfig verifies while reading the config."""
        if t.cert_file and not t.key_file:
            raise self.fail(pos, "missing 'key_file' in TLS configuration")
        if t.key_file and not t.cert_file:
            raise self.fail(pos, "missing 'cert_file' in TLS configuration")
        if t.cert_file and t.key_file:
            for path in (t.cert_file, t.key_file):
                if not os.path.exists(path):
                    raise self.fail(
                        pos,
                        "error parsing X509 certificate/key pair: "
                        f"open {path}: no such file or directory",
                    )
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(t.cert_file, t.key_file)
            except (ssl.SSLError, OSError) as e:
                raise self.fail(pos, f"error parsing X509 certificate/key pair: {e}") from None
        if t.ca_file:
            try:
                with open(t.ca_file, "rb") as f:
                    pem = f.read()
            except OSError:
                raise self.fail(pos, f"open {t.ca_file}: no such file or directory") from None
            if b"-----BEGIN CERTIFICATE-----" not in pem:
                raise self.fail(pos, "failed to parse root ca certificate")

    # -- JetStream ------------------------------------------------------------------------

    _JS_IGNORED = frozenset(
        {
            "key",
            "ek",
            "encryption_key",
            "prev_key",
            "prev_ek",
            "prev_encryption_key",
            "cipher",
            "extension_hint",
            "limits",
            "tpm",
            "max_outstanding_catchup",
            "max_buffered_size",
            "max_buffered_msgs",
            "request_queue_limit",
            "info_queue_limit",
            "meta_compact",
            "meta_compact_size",
            "meta_compact_sync",
            "max_concurrent_io",
        }
    )

    def top_jetstream(self, v: Any, pos: Position, key: str) -> None:
        js = self.o.jetstream
        if isinstance(v, bool):
            js.enabled = v
            return
        if isinstance(v, str):
            low = v.lower()
            if low in ("enabled", "enable"):
                js.enabled = True
            elif low in ("disabled", "disable"):
                js.enabled = False
            else:
                raise self.fail(pos, f"Expected 'enabled' or 'disabled' for string value, got '{v}'")
            return
        if not isinstance(v, Mapping):
            raise self.fail(
                pos, f"Expected map, bool or string to define JetStream, got {_go_type(v)}"
            )
        enable = True
        for low, k, val, p in self.entries(v):
            try:
                if low == "strict":
                    if not isinstance(val, bool):
                        raise self.fail(p, f"Expected 'true' or 'false' for bool value, got '{val}'")
                    js.strict = val
                elif low in ("store", "store_dir", "storedir"):
                    self.set_store_dir(self.str_(val, p, k), p)
                elif low in ("sync", "sync_interval"):
                    if isinstance(val, str) and val.lower() == "always":
                        js.sync_always = True
                        js.sync_interval = "always"
                    else:
                        js.sync_interval = self.duration(val, p, k)
                elif low in ("max_memory_store", "max_mem_store", "max_mem"):
                    js.max_memory_store = self.size(val, p, "max_mem_store")
                elif low in ("max_file_store", "max_file"):
                    js.max_file_store = self.size(val, p, "max_file_store")
                elif low == "domain":
                    js.domain = self.str_(val, p, k)
                elif low in ("enable", "enabled"):
                    enable = self.bool_(val, p, k)
                elif low == "unique_tag":
                    js.unique_tag = self.str_(val, p, k).strip().lower()
                elif low in self._JS_IGNORED:
                    self.notice(p, f"jetstream.{k}")
                elif not self.is_var(v, k):
                    self.unknown(p, k)
            except _Skip:
                pass
        js.enabled = enable

    def size(self, v: Any, pos: Position, name: str) -> int:
        try:
            return storage_size(v)
        except ValueError as e:
            raise self.fail(pos, f"{name} {e}") from None

    # -- websocket / mqtt -----------------------------------------------------------------

    def simple_auth(self, v: Any, pos: Position, key: str) -> dict[str, Any]:
        m = self.map_(v, pos, key)
        out: dict[str, Any] = {}
        for low, k, val, p in self.entries(m):
            try:
                if low in ("user", "username"):
                    out["user"] = self.str_(val, p, k)
                elif low in ("pass", "password"):
                    out["password"] = self.str_(val, p, k)
                elif low == "token":
                    out["token"] = self.str_(val, p, k)
                elif low == "timeout":
                    # nats-server reads only numbers here; anything else means 1 second
                    ok = isinstance(val, (int, float)) and not isinstance(val, bool)
                    out["timeout"] = float(val) if ok else 1.0
                elif not self.is_var(m, k):
                    self.unknown(p, k)
            except _Skip:
                pass
        return out

    def top_websocket(self, v: Any, pos: Position, key: str) -> None:
        m = self.map_(v, pos, key)
        ws = self.o.websocket or WebsocketOptions()
        self.o.websocket = ws
        for low, k, val, p in self.entries(m):
            try:
                if low == "listen":
                    host, port = self.listen(val, p)
                    if host:
                        ws.host = host
                    ws.port = port
                elif low == "port":
                    ws.port = self.int_(val, p, k)
                elif low in ("host", "net"):
                    ws.host = self.str_(val, p, k)
                elif low == "no_tls":
                    ws.no_tls = self.bool_(val, p, k)
                elif low == "tls":
                    ws.tls = self.tls(val, p, k)
                elif low == "same_origin":
                    ws.same_origin = self.bool_(val, p, k)
                elif low in (
                    "allowed_origins",
                    "allowed_origin",
                    "allow_origins",
                    "allow_origin",
                    "origins",
                    "origin",
                ):
                    ws.allowed_origins = self.strings(val, p, k, "allowed origins")
                elif low == "handshake_timeout":
                    if isinstance(val, int) and not isinstance(val, bool):
                        ws.handshake_timeout = float(val)
                    elif isinstance(val, str):
                        try:
                            ws.handshake_timeout = parse_duration(val)
                        except ValueError as e:
                            raise self.fail(p, str(e)) from None
                    else:
                        raise self.fail(
                            p, f"error parsing handshake timeout: unsupported type {_go_type(val)}"
                        )
                elif low in ("compress", "compression"):
                    ws.compression = self.bool_(val, p, k)
                elif low in ("authorization", "authentication"):
                    ws.authorization = self.simple_auth(val, p, k)
                elif low == "jwt_cookie":
                    ws.jwt_cookie = self.str_(val, p, k)
                elif low == "no_auth_user":
                    ws.no_auth_user = self.str_(val, p, k)
                elif low in ("user_cookie", "pass_cookie", "token_cookie", "advertise"):
                    self.str_(val, p, k)
                    self.notice(p, f"websocket.{k}")
                elif low == "headers":
                    headers = self.map_(val, p, k)
                    for hk, hv in headers.items():
                        if not isinstance(hv, str):
                            self.error(
                                self.where(headers, hk),
                                f"error parsing header key {hk}: unsupported type {_go_type(hv)}",
                            )
                    self.notice(p, f"websocket.{k}")
                elif low == "ping_interval":
                    self.duration(val, p, k)
                    self.notice(p, f"websocket.{k}")
                elif not self.is_var(m, k):
                    self.unknown(p, k)
            except _Skip:
                pass

    def top_mqtt(self, v: Any, pos: Position, key: str) -> None:
        m = self.map_(v, pos, key)
        mq = self.o.mqtt or MQTTOptions()
        self.o.mqtt = mq
        for low, k, val, p in self.entries(m):
            try:
                if low == "listen":
                    host, port = self.listen(val, p)
                    if host:
                        mq.host = host
                    mq.port = port
                elif low == "port":
                    mq.port = self.int_(val, p, k)
                elif low in ("host", "net"):
                    mq.host = self.str_(val, p, k)
                elif low == "tls":
                    mq.tls = self.tls(val, p, k)
                elif low in ("authorization", "authentication"):
                    mq.authorization = self.simple_auth(val, p, k)
                elif low == "no_auth_user":
                    mq.no_auth_user = self.str_(val, p, k)
                elif low in ("ack_wait", "ackwait"):
                    mq.ack_wait = self.duration(val, p, k, "ack_wait")
                elif low in ("max_ack_pending", "max_pending", "max_inflight"):
                    n = self.int_(val, p, k)
                    if not 0 <= n <= 0xFFFF:
                        raise self.fail(p, f"invalid value {n}, should in [0..65535] range")
                    mq.max_ack_pending = n
                elif low == "js_domain":
                    mq.js_domain = self.str_(val, p, k)
                elif low == "stream_replicas":
                    mq.stream_replicas = self.int_(val, p, k)
                elif low == "consumer_replicas":
                    self.warn(p, k, "consumer replicas setting ignored in this server version")
                elif low in ("js_api_timeout", "api_timeout"):
                    self.duration(val, p, k, "js_api_timeout")
                    self.notice(p, f"mqtt.{k}")
                elif low in ("consumer_inactive_threshold", "consumer_auto_cleanup"):
                    self.duration(val, p, k, "consumer_inactive_threshold")
                    self.notice(p, f"mqtt.{k}")
                elif low in (
                    "consumer_memory_storage",
                    "reject_qos2_publish",
                    "downgrade_qos2_subscribe",
                ):
                    self.bool_(val, p, k)
                    self.notice(p, f"mqtt.{k}")
                elif not self.is_var(m, k):
                    self.unknown(p, k)
            except _Skip:
                pass

    # -- leaf nodes -----------------------------------------------------------------------

    _LEAF_IGNORED = frozenset(
        {
            "reconnect",
            "reconnect_delay",
            "reconnect_interval",
            "dial_timeout",
            "leafnode_advertise",
            "advertise",
            "no_advertise",
            "min_version",
            "minimum_version",
            "compression",
            "isolate_leafnode_interest",
            "isolate",
            "write_deadline",
            "write_timeout",
        }
    )
    _REMOTE_IGNORED = frozenset(
        {
            "no_randomize",
            "dont_randomize",
            "nkey",
            "seed",
            "hub",
            "ws_compress",
            "ws_compression",
            "websocket_compress",
            "websocket_compression",
            "ws_no_masking",
            "websocket_no_masking",
            "jetstream_cluster_migrate",
            "js_cluster_migrate",
            "isolate_leafnode_interest",
            "isolate",
            "request_isolation",
            "compression",
            "first_info_timeout",
            "dial_timeout",
            "disabled",
            "proxy",
            "ignore_discovered_servers",
        }
    )

    def top_leafnodes(self, v: Any, pos: Position, key: str) -> None:
        if not isinstance(v, Mapping):
            raise self.fail(pos, f"Expected map to define a leafnode, got {_go_type(v)}")
        leaf = self.o.leafnodes or LeafOptions()
        self.o.leafnodes = leaf
        for low, k, val, p in self.entries(v):
            try:
                if low == "listen":
                    host, port = self.listen(val, p)
                    if host:
                        leaf.host = host
                    leaf.port = port
                elif low == "port":
                    leaf.port = self.int_(val, p, k)
                elif low in ("host", "net"):
                    leaf.host = self.str_(val, p, k)
                elif low == "authorization":
                    leaf.authorization = self.leaf_authorization(val, p, k)
                elif low == "remotes":
                    leaf.remotes = self.remotes(val, p)
                elif low == "tls":
                    leaf.tls = self.tls(val, p, k)
                elif low in self._LEAF_IGNORED:
                    self.notice(p, f"leafnodes.{k}")
                elif not self.is_var(v, k):
                    self.unknown(p, k)
            except _Skip:
                pass

    def leaf_authorization(self, v: Any, pos: Position, key: str) -> dict[str, Any]:
        m = self.map_(v, pos, key)
        out: dict[str, Any] = {}
        for low, k, val, p in self.entries(m):
            try:
                if low in ("user", "username"):
                    out["user"] = self.str_(val, p, k)
                elif low in ("pass", "password"):
                    out["password"] = self.str_(val, p, k)
                elif low == "nkey":
                    nk = self.str_(val, p, k)
                    if not is_public_nkey(nk, "U"):
                        raise self.fail(p, "Not a valid public nkey for leafnode authorization")
                    out["nkey"] = nk
                elif low == "timeout":
                    out["timeout"] = self.seconds(val, p, "leafnode authorization config")
                elif low == "users":
                    out["users"] = self.leaf_users(val, p)
                elif low == "account":
                    out["account"] = self.str_(val, p, k)
                elif low == "proxy_required":
                    out["proxy_required"] = self.bool_(val, p, k)
                elif not self.is_var(m, k):
                    self.unknown(p, k)
            except _Skip:
                pass
        return out

    def leaf_users(self, v: Any, pos: Position) -> list[dict[str, Any]]:
        if not isinstance(v, list):
            raise self.fail(pos, f"Expected users field to be an array, got {v!r}")
        out = []
        for i, entry in enumerate(v):
            epos = self.where(v, i)
            if not isinstance(entry, Mapping):
                self.error(epos, f"Expected user entry to be a map/struct, got {entry!r}")
                continue
            user: dict[str, Any] = {}
            for low, k, val, p in self.entries(entry):
                try:
                    if low in ("user", "username"):
                        user["user"] = self.str_(val, p, k)
                    elif low in ("pass", "password"):
                        user["password"] = self.str_(val, p, k)
                    elif low == "account":
                        user["account"] = self.str_(val, p, k)
                    elif low == "proxy_required":
                        user["proxy_required"] = self.bool_(val, p, k)
                    elif not self.is_var(entry, k):
                        self.unknown(p, k)
                except _Skip:
                    pass
            out.append(user)
        return out

    def remotes(self, v: Any, pos: Position) -> list[LeafRemote]:
        if not isinstance(v, list):
            raise self.fail(pos, f"Expected remotes field to be an array, got {_go_type(v)}")
        out = []
        for i, entry in enumerate(v):
            epos = self.where(v, i)
            if not isinstance(entry, Mapping):
                self.error(epos, f"Expected remote leafnode entry to be a map/struct, got {entry!r}")
                continue
            r = LeafRemote()
            for low, k, val, p in self.entries(entry):
                try:
                    if low in ("url", "urls"):
                        r.urls = self.remote_urls(val, p)
                    elif low in ("account", "local"):
                        r.account = self.str_(val, p, k)
                    elif low in ("creds", "credentials"):
                        r.credentials = os.path.expanduser(self.str_(val, p, k))
                    elif low == "tls":
                        r.tls = self.tls(val, p, k)
                    elif low in ("deny_imports", "deny_import"):
                        r.deny_imports = self.strings(val, p, k, "deny imports")
                    elif low in ("deny_exports", "deny_export"):
                        r.deny_exports = self.strings(val, p, k, "deny exports")
                    elif low in self._REMOTE_IGNORED:
                        self.notice(p, f"leafnodes.remotes.{k}")
                    elif not self.is_var(entry, k):
                        self.unknown(p, k)
                except _Skip:
                    pass
            out.append(r)
        return out

    def remote_urls(self, v: Any, pos: Position) -> list[str]:
        if isinstance(v, str):
            return [v.strip()]
        if not isinstance(v, list):
            raise self.fail(
                pos, f"Expected remote leafnode url to be an array or string, got {v!r}"
            )
        urls: list[str] = []
        for i, u in enumerate(v):
            p = self.where(v, i)
            if not isinstance(u, str):
                self.error(p, f"Expected remote leafnode url to be a string, got {_go_type(u)}")
            elif u in urls:
                self.warn(p, u, "Duplicate leafnode entry detected")
            else:
                urls.append(u.strip())
        return urls

    # -- cluster --------------------------------------------------------------------------

    _CLUSTER_KEYS = frozenset(
        {
            "name",
            "listen",
            "port",
            "host",
            "net",
            "authorization",
            "routes",
            "tls",
            "cluster_advertise",
            "advertise",
            "no_advertise",
            "connect_retries",
            "connect_backoff",
            "permissions",
            "pool_size",
            "accounts",
            "compression",
            "ping_interval",
            "ping_max",
            "write_deadline",
            "write_timeout",
        }
    )

    def top_cluster(self, v: Any, pos: Position, key: str) -> None:
        m = self.map_(v, pos, key)
        for low, k, val, p in self.entries(m):
            if low not in self._CLUSTER_KEYS and not self.is_var(m, k):
                self.unknown(p, k)
            elif low == "listen":
                try:
                    self.listen(val, p)
                except _Skip:
                    pass
            elif low == "routes" and not isinstance(val, (list, str)):
                self.error(p, f"error parsing routes: unsupported type {_go_type(val)}")
        self.o.cluster = dict(m)
        self.notice(pos, key, "accepted but edgebus does not form routes (scale out with leaf nodes)")


def options_from_config(
    d: Mapping[str, Any],
    *,
    filename: str = "<config>",
    options: Options | None = None,
    report: ConfigReport | None = None,
    allow_unknown: bool = False,
) -> Options:
    """Build `Options` from a parsed config dict.

    Settings are applied onto `options` (a fresh `Options()` by default). Raises
    `ConfigError` listing every error found; warnings and notices go to `report`.
    `allow_unknown` turns unknown *top-level* keys from errors into notices (what
    nats-server's ``NoErrOnUnknownFields`` does for embedders).
    """
    o = options if options is not None else Options()
    mapper = _Mapper(o, filename, report if report is not None else ConfigReport(), allow_unknown)
    mapper.top(d)
    if mapper.errors:
        raise ConfigError.collect(mapper.errors)
    o.config_file = filename if filename != "<config>" else o.config_file
    return o


def load_config(
    path: str | os.PathLike[str],
    *,
    options: Options | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Options, ConfigReport]:
    """Parse the file at `path` and map it onto `Options`; returns the options and report."""
    path = os.fspath(path)
    report = ConfigReport()
    opts = options_from_config(parse_file(path, env=env), filename=path, options=options, report=report)
    opts.config_file = path
    return opts, report
