"""The `edgebus` command: a drop-in for the `nats-server` process.

Flags and config come from `cliargs` (Go-style flags over the config file); this module runs the
process around the server: nats-server's log line format on stderr (or the log file), the
readiness lines harnesses wait for, the ports and pid files, signals (TERM/INT stop, HUP reload,
USR1 reopen log, USR2 lame duck), `--signal` to send them, and `[FTL]` exits.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
import time
from typing import Any, NoReturn

import trio

from . import NATS_VERSION, __version__
from .options import Options

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


def write_ports_file(server: Any, directory: str) -> str:
    path = ports_file_path(directory)
    data = {k: v for k, v in server.ports.items() if v}
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


async def _run(o: Options, handler: logging.Handler) -> None:
    from .server import Server
    server = Server(o)
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
        await _serve_until_stopped(server, o, handler, receiver)


async def _serve_until_stopped(server: Any, o: Options, handler: logging.Handler, receiver: Any) -> None:
    paths: list[str] = []

    def write_files() -> None:
        # before "Server is ready": harnesses read these as soon as they see that line
        if o.ports_file_dir:
            paths.append(write_ports_file(server, o.ports_file_dir))
        if o.pid_file:
            with open(o.pid_file, "w") as f:
                f.write(str(os.getpid()))
            paths.append(o.pid_file)

    server.before_ready.append(write_files)
    async with trio.open_nursery() as n:
        try:
            await n.start(server.run)
        except (OSError, ValueError, BaseExceptionGroup) as eg:
            e = _leaf_exception(eg)
            if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
                fatal(f'Error listening on port: {o.host}:{o.port}, "address already in use"')
            fatal(f"Error starting server: {e}")
        n.start_soon(_signals, server, handler, receiver)
        try:
            await _wait_stopped(server)
        finally:
            n.cancel_scope.cancel()
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass
    log.info("Server Exiting..")


def _leaf_exception(e: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


async def _wait_stopped(server: Any) -> None:
    while server._stop is None or not server._stop.is_set():
        await trio.sleep(0.05)
    while server.running:
        await trio.sleep(0.01)


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
    try:
        trio.run(_run, o, handler)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
