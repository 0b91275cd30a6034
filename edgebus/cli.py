"""The `edgebus` command: a drop-in for the `nats-server` process.

Flags and config come from `cliargs` (Go-style flags over the config file); this module runs the
process around the server: nats-server's log line format on stderr (or the log file), the
readiness lines harnesses wait for, the ports and pid files, signals (TERM/INT stop, HUP reload,
USR1 reopen log, USR2 lame duck), `--signal` to send them, and `[FTL]` exits.

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


def _find_pids() -> list[int]:
    """Running edgebus processes other than this one (for --signal without a pid)."""
    me = os.getpid()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"edgebus") for a in argv[:2]) or (len(argv) > 2 and argv[1:3] == [b"-m", b"edgebus"]):
            pids.append(int(d))
    return pids


_SIGNALS = {"stop": signal.SIGKILL, "kill": signal.SIGKILL, "quit": signal.SIGINT,
            "term": signal.SIGTERM, "reopen": signal.SIGUSR1, "reload": signal.SIGHUP,
            "ldm": signal.SIGUSR2}


def send_signal(spec: str, pid_file: str | None) -> int:
    name, _, pid_s = spec.partition("=")
    sig = _SIGNALS.get(name.lower())
    if sig is None:
        print(f"nats-server: unknown signal {name!r}", file=sys.stderr)
        return 1
    pids: list[int]
    if pid_s:
        if os.path.exists(pid_s):
            pid_s = open(pid_s).read().strip()
        try:
            pids = [int(pid_s)]
        except ValueError:
            print(f"nats-server: invalid pid {pid_s!r}", file=sys.stderr)
            return 1
    elif pid_file and os.path.exists(pid_file):
        pids = [int(open(pid_file).read().strip())]
    else:
        pids = _find_pids()
        if not pids:
            print("nats-server: no nats-server processes running", file=sys.stderr)
            return 1
        if len(pids) > 1:
            print("nats-server: multiple nats-server processes running:\n"
                  + "\n".join(map(str, pids)), file=sys.stderr)
            return 1
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError as e:
            print(f"nats-server: {e}", file=sys.stderr)
            return 1
    return 0


def _check_store_dir(o: Options) -> None:
    sd = o.jetstream.store_dir
    if o.jetstream.enabled and sd and os.path.exists(sd) and not os.path.isdir(sd):
        fatal(f"Error: storage directory is not a directory: {sd}")


async def _run(o: Options, handler: logging.Handler, bound: dict[str, list[Any]]) -> None:
    import trio

    from .server import Server
    server = Server(o)
    server.prebound = bound
    log.info("Starting nats-server")
    log.info("  Version:  %s", NATS_VERSION)
    log.info("  Git:      [edgebus %s]", __version__)
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
            return
        await _serve_until_stopped(server, o, handler, receiver)


async def _serve_until_stopped(server: Any, o: Options, handler: logging.Handler, receiver: Any) -> None:
    import trio
    async with trio.open_nursery() as n:
        try:
            await n.start(server.run)
        except (OSError, ValueError, BaseExceptionGroup) as eg:
            fatal(f"Error starting server: {_leaf_exception(eg)}")
        n.start_soon(_signals, server, handler, receiver)
        try:
            await _wait_stopped(server)
        finally:
            n.cancel_scope.cancel()
    log.info("Server Exiting..")


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
        host = e.host if ":" not in e.host else f"[{e.host.strip('[]')}]"
        hp = f"{host}:{listen.normalize_port(e.port)}"
        why = f"listen tcp {hp}: bind: {_go_error_text(e)}"
        if e.name == listen.NATS:
            fatal(f'Error listening on port: {hp}, "{why}"')
        if e.name == listen.MONITORING:
            fatal(f"Can't start monitoring: can't listen to the monitor port: {why}")
        if e.name == listen.LEAFNODES:
            fatal(f"Error listening on leafnode port: {listen.normalize_port(e.port)} - {why}")
        kind = "websocket" if e.name == listen.WEBSOCKET else "MQTT"
        fatal(f"Unable to listen for {kind} connections: {why}")


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("nk", "passwd"):
        from .security import keygen
        return int(keygen.main(argv) or 0)
    from .cliargs import build_options
    try:
        o, actions = build_options(argv)
    except Exception as e:  # bad flags or config: nats-server prints and exits 1
        print(f"nats-server: {e}", file=sys.stderr)
        return 1
    o._argv = argv  # type: ignore[attr-defined]  # for reload
    if actions.get("help"):
        from .cliargs import usage
        print(usage())
        return 0
    if actions.get("version"):
        print(f"nats-server: v{NATS_VERSION} (edgebus {__version__})")
        return 0
    if actions.get("signal"):
        return send_signal(actions["signal"], o.pid_file)
    if actions.get("test_config"):
        print(f"nats-server: configuration file {o.config_file} is valid")
        return 0
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
        trio.run(_run, o, handler, bound)
    except KeyboardInterrupt:
        pass
    finally:
        listen.close_all(bound)  # any the server never took (it failed first)
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass
    return 0


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
