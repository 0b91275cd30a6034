"""The `edgebus` process as client test harnesses start it, and where its listeners bind.

Harnesses (nats.js, nats.ws) start a server per test, many at once, and wait about a second for
its ports file: the command binds its listeners and writes that file before it imports trio and
the server, and imports only what the configuration uses. Listening addresses follow nats-server
(checked side by side with the real binary, from the kernel's socket tables): a wildcard host is
every address, IPv6 included; monitoring follows the client host; WebSocket, MQTT and leaf
listeners default to every address.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import NATS_SERVER, run_async

EDGEBUS = [sys.executable, "-m", "edgebus"]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_V6 = _has_ipv6_loopback()

# The child runs the real command with an import gate: importing trio blocks until the test
# creates the `release` file. Whatever happens while it blocks happened before trio was imported.
GATED = textwrap.dedent("""
    import os, sys, time
    release = sys.argv[1]

    class Gate:
        def find_spec(self, name, path=None, target=None):
            if name == "trio":
                while not os.path.exists(release):
                    time.sleep(0.005)
            return None

    sys.meta_path.insert(0, Gate())
    from edgebus.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def wait_for(cond, what: str, proc: subprocess.Popen, limit: float = 30.0):
    """Poll `cond` until it returns something truthy; fail if the process dies or after `limit`
    seconds (a hang detector on a loaded machine, not a speed check)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before {what}")
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def ports_file(d: Path, proc: subprocess.Popen) -> dict | None:
    f = d / f"nats-server_{proc.pid}.ports"
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def url_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def read_info(host: str, port: int) -> dict:
    with socket.create_connection((host, port), timeout=30) as s:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(4096)
            assert chunk, "closed before INFO"
            data += chunk
    assert data.startswith(b"INFO ")
    return json.loads(data[5:])


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()


# -- start-up order ---------------------------------------------------------------------------

def test_ports_file_and_listeners_before_trio_is_imported(tmp_path: Path) -> None:
    release = tmp_path / "release"
    p = subprocess.Popen([sys.executable, "-c", GATED, str(release), "-p", "-1", "-m", "-1",
                          "--ports_file_dir", str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ports = wait_for(lambda: ports_file(tmp_path, p), "the ports file", p)
        port = url_port(ports["nats"][0])
        assert ports["monitoring"][0].startswith("http://127.0.0.1:")
        # the kernel accepts the connection already; INFO comes once the server runs
        early = socket.create_connection(("127.0.0.1", port), timeout=30)
        release.touch()
        with early:
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = early.recv(4096)
                assert chunk, "closed before INFO"
                data += chunk
        assert data.startswith(b"INFO ") and json.loads(data[5:])["port"] == port
        assert stop(p) == 0
        assert ports_file(tmp_path, p) is None
    finally:
        release.touch()
        p.kill()


def test_sigterm_while_starting_exits_cleanly(tmp_path: Path) -> None:
    release = tmp_path / "release"
    p = subprocess.Popen([sys.executable, "-c", GATED, str(release), "-p", "-1",
                          "--ports_file_dir", str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ports = wait_for(lambda: ports_file(tmp_path, p), "the ports file", p)
        p.send_signal(signal.SIGTERM)  # trio is not imported yet: no receiver of trio's is open
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert ports_file(tmp_path, p) is None
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", url_port(ports["nats"][0])), timeout=5).close()
    finally:
        release.touch()
        p.kill()


def imported_modules(args: list[str], tmp_path: Path) -> set[str]:
    """Every module the real command imports from start until it has served a client."""
    tmp_path.mkdir()
    p = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "edgebus", "-p", "-1",
                          "--ports_file_dir", str(tmp_path), *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ports = wait_for(lambda: ports_file(tmp_path, p), "the ports file", p)
        read_info("127.0.0.1", url_port(ports["nats"][0]))
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()
    return {line.rsplit("|", 1)[1].strip() for line in err.splitlines()
            if line.startswith("import time:") and "|" in line}


OPTIONAL = ("cryptography", "bcrypt", "h11", "nacl", "edgebus.jetstream", "edgebus.mqtt",
            "edgebus.leaf", "edgebus.transport.websocket", "edgebus.transport.mqtt",
            "edgebus.transport.monitor", "edgebus.security.jwt", "edgebus.conf.parser")


def test_a_plain_start_imports_only_what_it_uses(tmp_path: Path) -> None:
    mods = imported_modules([], tmp_path / "plain")
    assert "edgebus.server" in mods and "trio" in mods
    assert sorted(m for m in mods if m.startswith(OPTIONAL)) == []
    # the same probe sees a configured subsystem
    mods = imported_modules(["-js", "-sd", str(tmp_path / "js"), "-m", "-1"], tmp_path / "js")
    assert "edgebus.jetstream.service" in mods and "edgebus.transport.monitor" in mods


# -- listening addresses, side by side with nats-server --------------------------------------

def _listening_of(pid: int) -> dict[int, str]:
    """port -> local address of each listening TCP socket the process holds ("*" = dual-stack
    wildcard, "0.0.0.0", "127.0.0.1", "::1"...), from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out: dict[int, str] = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        with open(table) as fh:
            next(fh)
            for line in fh:
                f = line.split()
                if f[3] != "0A" or f[9] not in inodes:  # 0A = LISTEN
                    continue
                hexaddr, hexport = f[1].split(":")
                raw = bytes.fromhex(hexaddr)
                # /proc prints the address as 32-bit words in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                addr = socket.inet_ntop(socket.AF_INET6 if v6 else socket.AF_INET, raw)
                out[int(hexport, 16)] = "*" if addr == "::" else addr
    return out


def _start(server: str, conf: Path, args: list[str], d: Path) -> subprocess.Popen:
    cmd = EDGEBUS if server == "edgebus" else [NATS_SERVER]
    return subprocess.Popen([*cmd, "-c", str(conf), "--ports_file_dir", str(d), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _binds(server: str, args: list[str], tmp_path: Path) -> dict:
    """Which address each listener of `server` binds, and the INFO host it announces."""
    d = tmp_path / server
    d.mkdir()
    conf = d / "s.conf"
    conf.write_text(textwrap.dedent(f"""
        server_name: s1
        port: -1
        http_port: -1
        jetstream {{ store_dir: {json.dumps(str(d / "js"))} }}
        websocket {{ port: -1, no_tls: true }}
        mqtt {{ port: -1 }}
        leafnodes {{ port: -1 }}
    """))
    p = _start(server, conf, args, d)
    try:
        ports = wait_for(lambda: ports_file(d, p), f"{server}'s ports file", p)
        nats_port, http_port = url_port(ports["nats"][0]), url_port(ports["monitoring"][0])
        info = read_info("127.0.0.1", nats_port)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/varz", timeout=30) as r:
            varz = json.load(r)
        names = {nats_port: "nats", http_port: "monitoring", varz["websocket"]["port"]: "websocket",
                 varz["mqtt"]["port"]: "mqtt", varz["leaf"]["port"]: "leaf"}
        binds = {names[port]: addr for port, addr in _listening_of(p.pid).items() if port in names}
        return {"binds": binds, "info_host": info["host"], "http_host": varz["http_host"]}
    finally:
        stop(p)


@pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")
@pytest.mark.parametrize("args", [[], ["-a", "127.0.0.1"]], ids=["default", "a-loopback"])
def test_listening_addresses_as_nats_server(args: list[str], tmp_path: Path) -> None:
    got = _binds("edgebus", args, tmp_path)
    want = _binds("nats-server", args, tmp_path)
    assert got == want
    # what the comparison means, spelled out
    if not HAS_V6:
        return  # both fall back to IPv4 sockets
    if args:
        assert want["binds"]["nats"] == want["binds"]["monitoring"] == "127.0.0.1"
        assert want["binds"]["websocket"] == want["binds"]["mqtt"] == want["binds"]["leaf"] == "*"
    else:
        assert set(want["binds"].values()) == {"*"}


@pytest.mark.skipif(not HAS_V6, reason="no IPv6 loopback on this machine")
def test_wildcard_host_answers_on_ipv6_loopback(tmp_path: Path) -> None:
    """With no -a, `[::1]` is served like 127.0.0.1, and an IPv4 client's address is reported
    as IPv4 (not as the v4-mapped IPv6 address the dual-stack socket sees)."""
    import nats

    p = subprocess.Popen([*EDGEBUS, "-p", "-1", "-m", "-1", "--ports_file_dir", str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ports = wait_for(lambda: ports_file(tmp_path, p), "the ports file", p)
        port, http_port = url_port(ports["nats"][0]), url_port(ports["monitoring"][0])

        async def main() -> tuple[bytes, list[str]]:
            nc6 = await nats.connect(f"nats://[::1]:{port}", name="v6")
            nc4 = await nats.connect(f"nats://127.0.0.1:{port}", name="v4")
            sub = await nc6.subscribe("greet")
            await nc6.flush()
            await nc4.publish("greet", b"over v4")
            msg = await sub.next_msg(timeout=30)
            await nc4.flush()
            with urllib.request.urlopen(f"http://[::1]:{http_port}/connz", timeout=30) as r:
                conns = json.load(r)["connections"]
            await nc4.close()
            await nc6.close()
            return msg.data, sorted(c["ip"] for c in conns)

        data, ips = run_async(main)
        assert data == b"over v4"
        assert ips == ["127.0.0.1", "::1"]
    finally:
        stop(p)


def test_unwritable_pid_and_ports_files_are_reported_not_raised(tmp_path: Path) -> None:
    """nats-server's answers: a pid file it cannot write is fatal, a ports file is an error
    it logs before serving on."""
    missing = tmp_path / "missing"
    r = subprocess.run([*EDGEBUS, "-p", "-1", "-P", str(missing / "s.pid")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"[FTL] Could not write pidfile: open {missing / 's.pid'}: no such file or directory" in r.stderr
    assert "Traceback" not in r.stderr
    p = subprocess.Popen([*EDGEBUS, "-p", "-1", "--ports_file_dir", str(missing)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any("Server is ready" in ln for ln in lines):
            line = p.stderr.readline()
            assert line, f"exited: {lines}"
            lines.append(line)
        assert any("[ERR] Error writing ports file" in ln for ln in lines), lines
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    assert "Traceback" not in err


@pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")
@pytest.mark.parametrize("flag", ["-p", "-m"])
def test_port_in_use_is_fatal_with_nats_servers_words(flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["-p", str(port)] if flag == "-p" else ["-p", "-1", "-m", str(port)]
        fatal = {}
        for name, cmd in (("edgebus", EDGEBUS), ("nats-server", [NATS_SERVER])):
            r = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)
            assert r.returncode == 1, r.stderr
            fatal[name] = [ln.split("[FTL] ", 1)[1] for ln in r.stderr.splitlines() if "[FTL] " in ln]
    assert fatal["edgebus"] == fatal["nats-server"]
