"""The ``nats-server`` command line, parsed the way Go's ``flag`` package does it.

`parse_args` understands every flag nats-server 2.10+ accepts (one or two dashes,
``-p 4222`` / ``-p=4222`` / ``--port 4222``, value-less booleans, ``-DV``, ``-js``...) and
returns the explicit overrides, the config path and the requested actions (test the
config, print version/help, send a signal). `build_options` loads the config file and
lays the overrides on top, so flags win over the file, as in nats-server.

Invalid input raises `CliError`; its message follows nats-server's wording
(``invalid value "abc" for flag -p: parse error``). Unlike nats-server, which exits 0
after printing usage for a bad flag, `CliError.exit_code` is 1 so scripts notice.
"""

from __future__ import annotations

import os
import re
import signal as _signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .conf.errors import ConfigError
from .conf.validate import is_valid_host
from .options import Options, TLSOptions

__all__ = [
    "CliError",
    "CliActions",
    "CliResult",
    "SignalRequest",
    "parse_args",
    "build_options",
    "apply_overrides",
    "help_text",
    "usage",
    "SIGNAL_COMMANDS",
]


class CliError(Exception):
    """Bad command line. `show_usage` says whether printing the help text would help."""

    def __init__(self, message: str, *, show_usage: bool = False, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.show_usage = show_usage
        self.exit_code = exit_code


# --signal commands and what they send (nats-server's CommandToSignal)
SIGNAL_COMMANDS: dict[str, _signal.Signals] = {
    "stop": _signal.SIGKILL,
    "quit": _signal.SIGINT,
    "reopen": _signal.SIGUSR1,
    "reload": _signal.SIGHUP,
    "ldm": _signal.SIGUSR2,
    "term": _signal.SIGTERM,
}


@dataclass
class SignalRequest:
    """``--signal COMMAND[=PID|=PIDFILE]``; `pid` None means "find the running server"."""

    command: str
    signal: _signal.Signals
    pid: int | None = None
    pid_glob: bool = False  # "123*": every server whose pid starts with 123


@dataclass
class CliActions:
    """What the command line asks for besides running the server.

    `config_warnings` are nats-server's config warnings (the server starts anyway, but
    `build_options` raises for them under ``-t``); `notices` name accepted-but-ignored
    settings (routes, gateways...) the server should log.
    """

    test_config: bool = False
    show_version: bool = False
    show_help: bool = False
    show_tls_help: bool = False
    signal: SignalRequest | None = None
    signal_spec: str | None = None  # the --signal value as given ("reload=123")
    config_warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    # dict-style access with short names, for callers that treat actions as a mapping;
    # "signal" gives the raw spec string there
    _ALIASES = {
        "help": "show_help",
        "version": "show_version",
        "tls_help": "show_tls_help",
        "help_tls": "show_tls_help",
        "test_config": "test_config",
        "signal": "signal_spec",
        "config_warnings": "config_warnings",
        "notices": "notices",
    }

    def get(self, key: str, default: Any = None) -> Any:
        attr = self._ALIASES.get(key)
        if attr is None:
            return default
        value = getattr(self, attr)
        return value if value else default

    def __getitem__(self, key: str) -> Any:
        if key not in self._ALIASES:
            raise KeyError(key)
        return getattr(self, self._ALIASES[key])


@dataclass
class CliResult:
    """The parsed command line.

    `overrides` maps setting names to the values given explicitly on the command line:
    Options attribute paths (``port``, ``jetstream.store_dir``) plus the grouped settings
    ``authorization.user/password/token``, ``tls.enabled/verify/cert_file/key_file/ca_file``
    and ``cluster.listen/name/advertise/no_advertise/connect_retries/routes``.
    """

    config_file: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    actions: CliActions = field(default_factory=CliActions)
    flags: list[str] = field(default_factory=list)  # flag names in the order given


# -- the flag table ----------------------------------------------------------------------

# (names, kind, destination). Destinations starting with "@" are actions, not settings.
_FLAG_SPECS: list[tuple[tuple[str, ...], str, str]] = [
    (("h", "help"), "bool", "@help"),
    (("v", "version"), "bool", "@version"),
    (("help_tls",), "bool", "@help_tls"),
    (("c", "config"), "str", "@config"),
    (("t",), "bool", "@test"),
    (("sl", "signal"), "str", "@signal"),
    (("p", "port"), "port", "port"),
    (("a", "addr", "net"), "host", "host"),
    (("n", "name", "server_name"), "str", "server_name"),
    (("client_advertise",), "str", "client_advertise"),
    (("m", "http_port"), "port", "http_port"),
    (("ms", "https_port"), "port", "https_port"),
    (("no-dashboard", "no_dashboard"), "bool", "@no_dashboard"),
    (("P", "pid"), "str", "pid_file"),
    (("ports_file_dir",), "str", "ports_file_dir"),
    (("l", "log"), "str", "log_file"),
    (("log_size_limit",), "int", "log_size_limit"),
    (("max_traced_msg_len",), "int", "max_traced_msg_len"),
    (("T", "logtime"), "bool", "logtime"),
    (("logtime_utc",), "bool", "logtime_utc"),
    (("s", "syslog"), "bool", "syslog"),
    (("r", "remote_syslog"), "str", "remote_syslog"),
    (("D", "debug"), "bool", "debug"),
    (("V", "trace"), "bool", "trace"),
    (("VV",), "bool", "@VV"),
    (("DV",), "bool", "@DV"),
    (("DVV",), "bool", "@DVV"),
    (("js", "jetstream"), "bool", "jetstream.enabled"),
    (("sd", "store_dir"), "str", "jetstream.store_dir"),
    (("user",), "str", "authorization.user"),
    (("pass",), "str", "authorization.password"),
    (("auth",), "str", "authorization.token"),
    (("tls",), "bool", "tls.enabled"),
    (("tlsverify",), "bool", "tls.verify"),
    (("tlscert",), "str", "tls.cert_file"),
    (("tlskey",), "str", "tls.key_file"),
    (("tlscacert",), "str", "tls.ca_file"),
    (("routes",), "str", "cluster.routes"),
    (("cluster", "cluster_listen"), "str", "cluster.listen"),
    (("cluster_name",), "str", "cluster.name"),
    (("cluster_advertise",), "str", "cluster.advertise"),
    (("no_advertise",), "bool", "cluster.no_advertise"),
    (("connect_retries",), "int", "cluster.connect_retries"),
    (("profile",), "port", "prof_port"),
]
_FLAGS: dict[str, tuple[str, str]] = {
    name: (kind, dest) for names, kind, dest in _FLAG_SPECS for name in names
}

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_GO_INT = re.compile(
    r"[+-]?(0[xX](_?[0-9a-fA-F])+|0[bB](_?[01])+|0[oO]?(_?[0-7])+|[1-9](_?[0-9])*|0)\Z"
)


def _go_int(text: str) -> int:
    """Go's ``strconv.ParseInt(s, 0, 64)``: decimal, 0x, 0o/leading 0 octal, 0b, underscores."""
    if not _GO_INT.match(text):
        raise ValueError("parse error")
    body = text.lstrip("+-").replace("_", "")
    sign = -1 if text.startswith("-") else 1
    if len(body) > 1 and body[0] == "0" and body[1].isdigit():
        value = int(body, 8)  # Go reads a leading zero as octal
    else:
        value = int(body, 0)
    value *= sign
    if not -(2**63) <= value < 2**63:
        raise ValueError("value out of range")
    return value


def _convert(kind: str, flag: str, raw: str) -> Any:
    if kind == "bool":
        if raw in _GO_TRUE:
            return True
        if raw in _GO_FALSE:
            return False
        raise CliError(f'invalid boolean value "{raw}" for -{flag}: parse error', show_usage=True)
    if kind in ("int", "port"):
        try:
            value = _go_int(raw)
        except ValueError as e:
            raise CliError(f'invalid value "{raw}" for flag -{flag}: {e}', show_usage=True) from None
        if kind == "port" and not -1 <= value <= 65535:
            raise CliError(
                f'invalid value "{raw}" for flag -{flag}: port must be -1..65535', show_usage=True
            )
        return value
    if kind == "host" and not is_valid_host(raw):
        raise CliError(
            f'invalid value "{raw}" for flag -{flag}: not a valid IP address or host name',
            show_usage=True,
        )
    return raw


def parse_signal(spec: str) -> SignalRequest:
    """``COMMAND[=PID]`` where PID may also be the path of a pid file (or ``123*``)."""
    parts = spec.split("=")
    if len(parts) > 2:
        raise CliError(f"invalid signal parameters: [{' '.join(parts[2:])}]")
    command = parts[0]
    if command not in SIGNAL_COMMANDS:
        raise CliError(f'unknown signal "{command}"')
    request = SignalRequest(command, SIGNAL_COMMANDS[command])
    if len(parts) == 2:
        pid_text = parts[1]
        try:
            # the value may name a pid file; nats-server reads it if it can
            with open(pid_text, encoding="utf-8") as f:
                pid_text = f.read()
        except OSError:
            pass
        pid_text = pid_text.strip()
        request.pid_glob = pid_text.endswith("*")
        digits = pid_text.rstrip("*")
        if digits:
            if not digits.isdigit():
                raise CliError(f"invalid pid: {digits}")
            request.pid = int(digits)
    return request


def parse_args(argv: Sequence[str]) -> CliResult:
    """Parse nats-server style arguments (without the program name)."""
    result = CliResult()
    actions = result.actions
    composite: list[tuple[str, bool]] = []  # -DV/-VV/-DVV, applied after plain -D/-V
    args = list(argv)
    while args:
        arg = args[0]
        if len(arg) < 2 or arg[0] != "-":
            break
        if arg == "--":
            args.pop(0)
            break
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if not name or name[0] in "-=":
            raise CliError(f"bad flag syntax: {arg}", show_usage=True)
        args.pop(0)
        value: str | None = None
        if "=" in name[1:]:
            name, value = name.split("=", 1)
        spec = _FLAGS.get(name)
        if spec is None:
            raise CliError(f"flag provided but not defined: -{name}", show_usage=True)
        kind, dest = spec
        if kind == "bool":
            converted = _convert(kind, name, value) if value is not None else True
        else:
            if value is None:
                if not args:
                    raise CliError(f"flag needs an argument: -{name}", show_usage=True)
                value = args.pop(0)
            converted = _convert(kind, name, value)
        result.flags.append(name)
        if dest == "@help":
            actions.show_help = bool(converted)
        elif dest == "@version":
            actions.show_version = bool(converted)
        elif dest == "@help_tls":
            actions.show_tls_help = bool(converted)
        elif dest == "@config":
            result.config_file = converted or None
        elif dest == "@test":
            actions.test_config = bool(converted)
        elif dest == "@signal":
            actions.signal = parse_signal(converted) if converted else None
            actions.signal_spec = converted or None
        elif dest == "@no_dashboard":
            result.overrides["dashboard"] = not converted
        elif dest in ("@DV", "@VV", "@DVV"):
            composite.append((dest[1:], bool(converted)))
        else:
            result.overrides[dest] = converted
    for which, on in composite:
        if "D" in which:
            result.overrides["debug"] = on
        result.overrides["trace"] = on
        if which.endswith("VV"):
            result.overrides["trace_verbose"] = on
    if args:
        # like nats-server, the only positional words understood are "version" and "help"
        word = args[0].lower()
        if word == "version":
            actions.show_version = True
        elif word == "help":
            actions.show_help = True
        else:
            raise CliError(f'unrecognized command: "{args[0]}"')
    return result


# -- applying ----------------------------------------------------------------------------


def apply_overrides(opts: Options, overrides: dict[str, Any]) -> list[str]:
    """Lay command-line `overrides` over `opts` in place; returns notices to log.

    Raises CliError for combinations nats-server refuses (TLS flags without a
    certificate and key, routes without a cluster listener).
    """
    notices: list[str] = []
    tls_flags: dict[str, Any] = {}
    cluster_flags: dict[str, Any] = {}
    for dest, value in overrides.items():
        group, _, attr = dest.partition(".")
        if group == "authorization":
            auth = dict(opts.authorization or {})
            auth[attr] = value
            opts.authorization = auth
        elif group == "tls":
            tls_flags[attr] = value
        elif group == "cluster":
            cluster_flags[attr] = value
        elif group == "jetstream":
            setattr(opts.jetstream, attr, value)
        else:
            setattr(opts, dest, value)
    if tls_flags:
        _apply_tls(opts, tls_flags)
    if cluster_flags:
        notices.extend(_apply_cluster(opts, cluster_flags))
    return notices


def _apply_tls(opts: Options, flags: dict[str, Any]) -> None:
    if flags.get("enabled") is False:
        # "-tls=false" switches TLS off and makes the other TLS flags moot
        opts.tls = None
        return
    cert, key = flags.get("cert_file"), flags.get("key_file")
    if not cert:
        raise CliError("TLS Server certificate must be present and valid")
    if not key:
        raise CliError("TLS Server private key must be present and valid")
    for path in (cert, key):
        if not os.path.exists(path):
            raise CliError(
                f"error parsing X509 certificate/key pair: open {path}: no such file or directory"
            )
    opts.tls = TLSOptions(
        cert_file=cert,
        key_file=key,
        ca_file=flags.get("ca_file"),
        verify=bool(flags.get("verify", False)),
    )


def _apply_cluster(opts: Options, flags: dict[str, Any]) -> list[str]:
    cluster = dict(opts.cluster or {})
    if "listen" in flags:
        if flags["listen"]:
            cluster["listen"] = flags["listen"]
        else:
            cluster.pop("listen", None)
    for attr in ("name", "advertise", "no_advertise", "connect_retries"):
        if attr in flags:
            cluster[attr] = flags[attr]
    routes = flags.get("routes")
    if routes:
        cluster["routes"] = [r.strip() for r in routes.split(",") if r.strip()]
        if not any(k in cluster for k in ("listen", "port", "host", "net")):
            raise CliError("solicited routes require cluster capabilities, e.g. --cluster")
    opts.cluster = cluster
    return ["cluster flags accepted but edgebus does not form routes (scale out with leaf nodes)"]


def build_options(argv: Sequence[str]) -> tuple[Options, CliActions]:
    """Parse `argv`, load the config file it names and apply the flags on top.

    For help/version/signal requests the config is not read (nothing will run) and
    default Options are returned. Raises CliError for bad arguments and ConfigError for
    a bad config file; with ``-t`` config warnings are errors too, as in nats-server.
    """
    result = parse_args(argv)
    actions = result.actions
    if actions.show_help or actions.show_version or actions.show_tls_help or actions.signal:
        return Options(), actions
    if actions.test_config and not result.config_file:
        raise CliError("must specify [-c, --config] option to check configuration file syntax")
    opts = Options()
    if result.config_file:
        from .conf.options_map import load_config  # only a start with a config file needs it
        opts, report = load_config(result.config_file)
        if actions.test_config and report.warnings:
            raise ConfigError.collect([w.as_error() for w in report.warnings])
        actions.config_warnings.extend(report.warnings)
        actions.notices.extend(report.notices)
    actions.notices.extend(apply_overrides(opts, result.overrides))
    return opts, actions


def help_text(program: str = "edgebus") -> str:
    """Usage text listing every flag."""
    return f"""\
Usage: {program} [options]

A NATS-compatible broker; accepts nats-server's command line and config files.
Flags take one or two dashes; values follow as the next argument or after "=".

Server:
    -a, --addr, --net <host>          Interface to listen on (default: 0.0.0.0)
    -p, --port <port>                 Client port (default: 4222; -1 picks a free one)
    -n, --name, --server_name <name>  Server name (default: generated)
    -m, --http_port <port>            Serve monitoring (/varz, /connz, ...) on this port
    -ms, --https_port <port>          Same, over HTTPS
    --no-dashboard                    Monitoring port serves JSON only, no status page at /
    -c, --config <file>               Read settings from this config file
    -t                                Check the config file and exit
    -P, --pid <file>                  Write the process id to this file
    --ports_file_dir <dir>            Write <dir>/{program}_<pid>.ports once listening
    --client_advertise <url>          URL to advertise to clients
    -sl, --signal <cmd>[=<pid>]       Signal a running server and exit; <cmd> is one of
                                      ldm, stop, quit, term, reopen, reload; <pid> may be
                                      a process id or a pid file

Logging:
    -l, --log <file>                  Log to this file instead of stderr
    -T, --logtime[=false]             Timestamp log lines (default: true)
    --logtime_utc                     Timestamps in UTC
    -s, --syslog                      Log to syslog
    -r, --remote_syslog <addr>        Remote syslog address (udp://host:514)
    -D, --debug                       Debug output
    -V, --trace                       Trace protocol traffic
    -VV                               Verbose trace (includes the system account)
    -DV                               Debug and trace
    -DVV                              Debug and verbose trace
    --log_size_limit <bytes>          Rotate the log file at this size
    --max_traced_msg_len <n>          Truncate traced payloads to n bytes

JetStream:
    -js, --jetstream                  Enable JetStream
    -sd, --store_dir <dir>            Where JetStream keeps its data

Authorization:
    --user <user>                     Username clients must present
    --pass <password>                 Password clients must present
    --auth <token>                    Token clients must present

TLS:
    --tls                             Serve clients over TLS
    --tlscert <file>                  Server certificate
    --tlskey <file>                   Server private key
    --tlsverify                       Require and verify client certificates
    --tlscacert <file>                CA bundle for verifying clients

Clustering (accepted for compatibility; {program} does not form routes, use leaf nodes):
    --routes <url,url>                --cluster, --cluster_listen <url>
    --cluster_name <name>             --cluster_advertise <url>
    --no_advertise                    --connect_retries <n>

Config file only (-c <file>; same format and blocks as nats-server):
    mqtt {{ port: 1883 }}               MQTT 3.1.1 for sensors (needs jetstream {{}} too)
    websocket {{ port: 8080 }}          NATS and MQTT over WebSocket (tls {{}} or no_tls: true)
    leafnodes {{ remotes: [...] }}      Leaf link to a NATS hub/cloud; leafnodes {{ port }} to accept
    accounts {{ A: {{ users: [...] }} }}  Accounts, users, imports/exports; also operator JWTs
    authorization, tls, mappings, jetstream {{ store_dir, domain, max_file_store }}, ...
  Reference: https://docs.nats.io/running-a-nats-service/configuration
  What {program} implements of it: README.md ("What works"); examples/gateway.conf

Other:
    --profile <port>                  Accepted for compatibility (no profiler)
    -h, --help                        Show this text
    -v, --version                     Show the version
    --help_tls                        TLS help
"""


usage = help_text  # the name edgebus.cli uses
