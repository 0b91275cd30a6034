"""The `edgebus` command: a drop-in for the `nats-server` process.

Flags and config come from `cliargs` (Go-style flags over the config file); this module runs the
process around the server: nats-server's log line format on stderr (or the log file), the
readiness lines harnesses wait for, the ports and pid files, signals (TERM/INT stop, HUP reload,
USR1 reopen log, USR2 lame duck), `--signal` to send them, and `[FTL]` exits.

What it says to people is edgebus's own: messages are prefixed `edgebus:`, the banner and
`--version` name edgebus (and the nats-server version it speaks), and every start-up failure is
one line naming its cause (the file and line, the listener and port, the path) with no
traceback. The protocol-facing parts (INFO, readiness lines, ports file) stay nats-server's.

Start-up order matters to client test harnesses, which start many servers at once and give each
about a second to write its ports file: the listeners are bound (transport/listen.py, standard
library only) and the ports and pid files written before trio and the server are imported;
clients that connect meanwhile wait in the listen backlog until the accept loops run. Only what
the configuration uses is imported afterwards (services.py).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from typing import Any, NoReturn

from . import NATS_VERSION, __version__
from .options import Options
from .transport import listen  # standard library only: binds before the server is imported

log = logging.getLogger("edgebus")
PROG = "edgebus"


def _say(msg: str) -> None:
    """A message to the operator on stderr, outside the log (nats-server's `PrintAndDie`)."""
    print(f"{PROG}: {msg}", file=sys.stderr)

_LEVELS = {logging.DEBUG: "DBG", logging.INFO: "INF", logging.WARNING: "WRN",
           logging.ERROR: "ERR", logging.CRITICAL: "FTL", 5: "TRC"}


class NatsFormatter(logging.Formatter):
    """`[pid] 2006/01/02 15:04:05.000000 [INF] text`, as nats-server logs."""

    def __init__(self, logtime: bool = True) -> None:
        super().__init__()
        self.logtime = logtime
        self.pid = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        level = _LEVELS.get(record.levelno, "INF")
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        if self.logtime:
            t = record.created
            stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1e6):06d}"
            return f"[{self.pid}] {stamp} [{level}] {msg}"
        return f"[{self.pid}] [{level}] {msg}"


def setup_logging(o: Options) -> logging.Handler:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    if o.log_file:
        handler = logging.FileHandler(o.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(NatsFormatter(o.logtime))
    root.addHandler(handler)
    root.setLevel(5 if o.trace else logging.DEBUG if o.debug else logging.INFO)
    from . import logring
    logring.install()  # the status page's recent warnings/errors, from the first line on
    return handler


def fatal(msg: str) -> NoReturn:
    log.critical(msg)
    if not logging.getLogger().handlers:
        print(f"[{os.getpid()}] [FTL] {msg}", file=sys.stderr)
    sys.exit(1)


def ports_file_path(directory: str) -> str:
    return os.path.join(directory, f"nats-server_{os.getpid()}.ports")


def write_ports_file(ports: dict[str, list[str]], directory: str) -> str:
    path = ports_file_path(directory)
    data = {k: v for k, v in ports.items() if v}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return path


def _cmdline(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def _is_edgebus(argv: list[bytes] | None) -> bool:
    """An `edgebus ...` or `python -m edgebus ...` command line."""
    if not argv:
        return False
    if any(os.path.basename(a) == b"edgebus" for a in argv[:2]):
        return True
    return len(argv) > 2 and argv[1:3] == [b"-m", b"edgebus"]


def _find_pids() -> list[int]:
    """Running edgebus processes other than this one (for --signal without a pid). Only
    edgebus: a nats-server on the same machine is someone else's and is never signalled."""
    me = os.getpid()
    return [int(d) for d in os.listdir("/proc")
            if d.isdigit() and int(d) != me and _is_edgebus(_cmdline(int(d)))]


_SIGNALS = {"stop": signal.SIGKILL, "kill": signal.SIGKILL, "quit": signal.SIGINT,
            "term": signal.SIGTERM, "reopen": signal.SIGUSR1, "reload": signal.SIGHUP,
            "ldm": signal.SIGUSR2}


def _read_pid_file(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def send_signal(spec: str, pid_file: str | None) -> int:
    """`--signal CMD[=PID|=PIDFILE]`: the pid given, else the pid file (-P or the config's
    pid_file), else the one running edgebus process. A pid that is not an edgebus process is
    refused: a stale pid file must not make us signal whatever now has that number."""
    name, _, pid_s = spec.partition("=")
    sig = _SIGNALS.get(name.lower())
    if sig is None:
        _say(f"unknown signal {name!r} (one of: {', '.join(sorted(_SIGNALS))})")
        return 1
    pids: list[int]
    if pid_s:
        if os.path.exists(pid_s):
            pid = _read_pid_file(pid_s)
            if pid is None:
                _say(f"pid file {pid_s} does not hold a process id")
                return 1
            pids = [pid]
        else:
            try:
                pids = [int(pid_s)]
            except ValueError:
                _say(f"invalid pid {pid_s!r} (neither a process id nor an existing pid file)")
                return 1
    elif pid_file and os.path.exists(pid_file):
        pid = _read_pid_file(pid_file)
        if pid is None:
            _say(f"pid file {pid_file} does not hold a process id")
            return 1
        pids = [pid]
    else:
        pids = _find_pids()
        if not pids:
            _say("no edgebus processes running")
            return 1
        if len(pids) > 1:
            _say("multiple edgebus processes running (give one: --signal "
                 f"{name}=<pid>):\n" + "\n".join(map(str, pids)))
            return 1
    for p in pids:
        argv = _cmdline(p)
        if argv is None:
            _say(f"no process {p} is running")
            return 1
        if not _is_edgebus(argv):
            cmd = b" ".join(argv).decode(errors="replace").strip()
            _say(f"process {p} is not edgebus ({cmd}); not signalling it")
            return 1
        try:
            os.kill(p, sig)
        except OSError as e:
            _say(f"signalling process {p}: {e.strerror}")
            return 1
    return 0


def _check_store_dir(o: Options) -> None:
    sd = o.jetstream.store_dir
    if o.jetstream.enabled and sd and os.path.exists(sd) and not os.path.isdir(sd):
        fatal(f"Error: storage directory is not a directory: {sd}")


async def _run(o: Options, handler: logging.Handler, bound: dict[str, list[Any]]) -> int:
    import trio

    from .server import Server
    server = Server(o)
    server.prebound = bound
    log.info("Starting edgebus")
    log.info("  Version:  %s (speaks nats-server %s)", __version__, NATS_VERSION)
    log.info("  Name:     %s", server.broker.server_name)
    if o.jetstream.enabled:
        log.info("  Node:     %s", server.broker.server_id[:8])
    log.info("  ID:       %s", server.broker.server_id)
    if o.config_file:
        log.info("Using configuration file: %s", o.config_file)
    if o.cluster or getattr(o, "routes", None):
        log.warning("Cluster routes are not supported by edgebus; scale out through leaf nodes. "
                    "The cluster configuration is ignored.")
    # the receiver is open before "Server is ready" so a harness may signal right after it
    sigs = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2]
    with trio.open_signal_receiver(*sigs) as receiver:
        if _early_stop:  # stopped while starting: nothing to serve, nothing to lose
            log.info("Trapped %r signal", signal.Signals(_early_stop[0]).name.lower().replace("sig", ""))
            return 0
        return await _serve_until_stopped(server, o, handler, receiver)


def startup_error_text(e: BaseException, o: Options) -> str:
    """One line naming why the server could not start."""
    if isinstance(e, listen.BindError):
        return bind_error_text(e)
    text = str(e) or type(e).__name__
    return f"Error starting server: {text}"


async def _serve_until_stopped(server: Any, o: Options, handler: logging.Handler,
                               receiver: Any) -> int:
    import trio
    async with trio.open_nursery() as n:
        try:
            await n.start(server.run)
        except Exception as eg:  # ExceptionGroup included
            # no traceback and no sys.exit() inside trio (it would come out as one): one line
            log.critical("%s", startup_error_text(_leaf_exception(eg), o))
            return 1
        n.start_soon(_signals, server, handler, receiver)
        try:
            await _wait_stopped(server)
        finally:
            n.cancel_scope.cancel()
    log.info("Server Exiting..")
    return 0


# TERM/INT received before trio's signal receiver is open (the ports file is written before
# trio is imported, so a harness may stop us that early): remembered, then honoured as a stop
_early_stop: list[int] = []
_importing = [False]


def _trap_early_stop() -> None:
    def remember(signum: int, frame: Any) -> None:
        _early_stop.append(signum)
        if _importing[0]:  # still importing the server: stop right here (main cleans up)
            raise SystemExit(0)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, remember)


def _bind_listeners(o: Options) -> dict[str, list[Any]]:
    """Bind every listener, or exit with nats-server's `[FTL]` line for the one that failed."""
    try:
        return listen.bind_all(o)
    except listen.BindError as e:
        fatal(bind_error_text(e))


def bind_error_text(e: listen.BindError) -> str:
    """nats-server's line for a listener that could not bind: it names the listener and the
    port (an operator must learn that 1883 is taken, not 4222)."""
    host = e.host if ":" not in e.host else f"[{e.host.strip('[]')}]"
    hp = f"{host}:{listen.normalize_port(e.port)}"
    why = f"listen tcp {hp}: bind: {_go_error_text(e)}"
    if e.name == listen.NATS:
        return f'Error listening on port: {hp}, "{why}"'
    if e.name == listen.MONITORING:
        return f"Can't start monitoring: can't listen to the monitor port: {why}"
    if e.name == listen.LEAFNODES:
        return f"Error listening on leafnode port: {listen.normalize_port(e.port)} - {why}"
    kind = "websocket" if e.name == listen.WEBSOCKET else "MQTT"
    return f"Unable to listen for {kind} connections: {why}"


def _go_error_text(e: OSError) -> str:
    text = e.strerror or str(e)
    return text[:1].lower() + text[1:]


def _write_files(o: Options, bound: dict[str, list[Any]]) -> list[str]:
    """The ports file (once every listener is bound) and the pid file; their paths."""
    paths: list[str] = []
    if o.pid_file:
        try:
            with open(o.pid_file, "w") as f:
                f.write(str(os.getpid()))
        except OSError as e:
            fatal(f"Could not write pidfile: open {o.pid_file}: {_go_error_text(e)}")
        paths.append(o.pid_file)
    if o.ports_file_dir:
        ports = {name: listen.bound_port(socks) for name, socks in bound.items()}
        try:
            paths.append(write_ports_file(listen.port_urls(o, ports), o.ports_file_dir))
        except OSError as e:  # nats-server logs it and runs on
            path = ports_file_path(o.ports_file_dir)
            log.error("Error writing ports file (%s): open %s: %s", path, path, _go_error_text(e))
    return paths


def _leaf_exception(e: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


async def _wait_stopped(server: Any) -> None:
    await server.stopped.wait()


async def _signals(server: Any, handler: logging.Handler, receiver: Any) -> None:
    async for s in receiver:
        if s in (signal.SIGTERM, signal.SIGINT):
            log.info("Trapped %r signal", signal.Signals(s).name.lower().replace("sig", ""))
            server.shutdown()
        elif s == signal.SIGHUP:
            _reload(server)
        elif s == signal.SIGUSR1:
            if isinstance(handler, logging.FileHandler):
                handler.close()  # reopened on next emit
            log.info("Reopened log file")
        elif s == signal.SIGUSR2:
            server.nursery.start_soon(server.lame_duck)


def _reload(server: Any) -> None:
    o = server.options
    if not o.config_file:
        log.error("Failed to reload server configuration: no configuration file")
        return
    try:
        from .cliargs import build_options
        new_opts, _ = build_options(list(getattr(o, "_argv", []) or ["-c", o.config_file]))
    except Exception as e:
        log.error("Failed to reload server configuration: %s", e)
        return
    try:
        from .security.reload import reload as apply_reload
    except ImportError:
        log.warning("Reload: only logging settings can be changed in this build")
        return
    try:
        apply_reload(server, new_opts)
        log.info("Reloaded server configuration")
    except Exception as e:
        log.error("Failed to reload server configuration: %s", e)


def _argument_error(e: Exception) -> str:
    """One line for a bad command line or config file."""
    from .cliargs import CliError
    from .conf.errors import ConfigError
    if isinstance(e, CliError) and e.show_usage:
        return f"{e.message} (see '{PROG} --help')"
    if isinstance(e, ConfigError) and e.position is not None and e.position.line == 0 \
            and e.reason.startswith("open "):
        # the config file itself cannot be opened: say so, not ":0:0: Parse error"
        cause = e.reason.rsplit(": ", 1)[-1]
        what = "not found" if cause == "no such file or directory" else f"cannot be read: {cause}"
        return f"configuration file {e.position.file} {what}"
    return str(e)


def _signal_pid_file(argv: list[str]) -> str | None:
    """The pid file a `--signal` should read: `-P`, else the config file's `pid_file`."""
    from .cliargs import parse_args
    from .conf.options_map import load_config
    res = parse_args(argv)
    pid_file = res.overrides.get("pid_file")
    if pid_file is None and res.config_file:
        try:
            pid_file = load_config(res.config_file)[0].pid_file
        except Exception:  # an unreadable config: fall back to finding the process
            pid_file = None
    return pid_file


def standalone_mqtt_error(o: Options) -> str | None:
    """nats-server refuses MQTT without JetStream on a standalone server: retained messages,
    sessions and QoS 1/2 state would live only in memory and vanish on restart."""
    mq = o.mqtt
    if mq is None or mq.port is None or o.jetstream.enabled:
        return None
    if o.cluster or getattr(o, "routes", None) or (o.leafnodes is not None and o.leafnodes.remotes):
        return None
    return "mqtt requires JetStream to be enabled if running in standalone mode"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("nk", "passwd"):
        from .security import keygen
        return int(keygen.main(argv) or 0)
    from .cliargs import build_options
    try:
        o, actions = build_options(argv)
    except Exception as e:  # bad flags or config: one line, exit 1
        _say(_argument_error(e))
        return 1
    o._argv = argv  # type: ignore[attr-defined]  # for reload
    if actions.get("help"):
        from .cliargs import usage
        print(usage())
        return 0
    if actions.get("version"):
        print(f"{PROG}: v{__version__} (speaks nats-server v{NATS_VERSION})")
        return 0
    if actions.get("signal"):
        return send_signal(actions["signal"], _signal_pid_file(argv))
    if actions.get("test_config"):
        print(f"{PROG}: configuration file {o.config_file} is valid")
        return 0
    refused = standalone_mqtt_error(o)
    if refused:
        _say(refused)
        return 1
    handler = setup_logging(o)
    for w in actions.get("config_warnings") or []:
        log.warning("%s", w)
    for note in actions.get("notices") or []:
        log.warning("%s", note)
    _check_store_dir(o)
    _trap_early_stop()
    bound = _bind_listeners(o)
    paths = _write_files(o, bound)
    try:
        _importing[0] = True
        import trio

        from . import server  # noqa: F401  # (imported here so that a TERM meanwhile exits at once)
        _importing[0] = False
        return trio.run(_run, o, handler, bound)
    except KeyboardInterrupt:
        return 0
    finally:
        listen.close_all(bound)  # any the server never took (it failed first)
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass


def run() -> NoReturn:
    """The process entry point (`edgebus`, `python -m edgebus`): `main()`, then exit at once.

    By the time `main()` returns the server has closed its connections and flushed and closed
    its stores; what is left is the interpreter tearing down the heap, tens of milliseconds a
    test harness that restarts servers all the time would wait for nothing.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
