"""Maps a parsed config (see `edgebus.conf.parser`) onto `edgebus.options.Options`.

The rules are nats-server's (server/opts.go, ``processConfigFileLine`` and friends):

* option names are case-insensitive and have aliases (``net``/``host``, ``ws``/``websocket``);
* an unknown key is an error (``unknown field "x"``) unless the key was only defined to be
  referenced as a ``$variable``;
* wrong value types are errors; every problem found is reported, each with file:line:col;
* some forms only earn a *warning* (a plain number where a duration string is expected, a
  duplicate leafnode URL, an empty file). nats-server starts despite warnings but
  ``nats-server -t`` fails on them; callers get them in `ConfigReport.warnings`.

Keys nats-server knows but edgebus does not implement (``gateway``, ``cluster``
routes, ...) are accepted and listed in `ConfigReport.notices` so the server can log that it
ignores them. Authorization and account blocks are checked and kept as dicts with
canonical key names (``user``, ``password``, ``permissions``, ``publish``...) for
`edgebus.security` to interpret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..options import Options
from .durations import format_duration
from .errors import ConfigError, Position
from .map_auth import AuthMapper
from .map_base import ConfigReport, ConfigWarning, go_type
from .map_blocks import BlocksMapper
from .parser import parse_file

__all__ = ["ConfigReport", "ConfigWarning", "options_from_config", "load_config"]

_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")


class _Mapper(AuthMapper, BlocksMapper):
    """The top level of a config file; blocks are delegated to the mixed-in mappers."""

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
            (("dashboard",), "dashboard", s.bool_),  # edgebus's own: the status page at /
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
        h["ocsp"] = self.top_ocsp
        h["ocsp_cache"] = self.top_ocsp_cache

        ignored = frozenset(
            "gateway disable_sublist_cache no_sublist_cache default_sentinel prof_block_rate "
            "proxy_protocol resolver_tls resolver_pinned_accounts trusted "
            "trusted_keys connect_error_reports reconnect_error_reports server_metadata "
            "feature_flags default_js_domain no_fast_producer_stall max_closed_clients "
            "proxies".split()
        )
        self.run_block(d, h, ignored=ignored, unknown=self.top_unknown)
        self.cross_checks()
        self.ocsp_checks()

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
            raise self.fail(pos, f"error parsing operators: unsupported type {go_type(v)}")
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
                pos, f"error parsing operator resolver, wrong type {go_type(v)}"
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
