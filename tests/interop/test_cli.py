"""The `edgebus` process as harnesses drive nats-server: flags, readiness lines, ports and pid
files, signals, config test mode and fatal errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port

CMD = [sys.executable, "-m", "edgebus"]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(CMD + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_line(proc: subprocess.Popen, needle: str, timeout: float = 15) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen; got {lines!r}")


def read_info(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        data = b""
        while not data.endswith(b"\r\n"):
            data += s.recv(4096)
    assert data.startswith(b"INFO ")
    return json.loads(data[5:])


def test_ready_lines_ports_file_and_sigterm(tmp_path: Path) -> None:
    p = start(["-p", "-1", "-m", "-1", "--ports_file_dir", str(tmp_path), "-n", "edge1"], tmp_path)
    try:
        lines = wait_line(p, "Server is ready")
        assert any("Listening for client connections on" in ln for ln in lines)
        assert all(ln.startswith(f"[{p.pid}] ") for ln in lines)
        ports_file = tmp_path / f"nats-server_{p.pid}.ports"
        for _ in range(100):
            if ports_file.exists():
                break
            time.sleep(0.02)
        ports = json.loads(ports_file.read_text())
        url = ports["nats"][0]
        port = int(url.rsplit(":", 1)[1])
        info = read_info(port)
        assert info["server_name"] == "edge1" and info["port"] == port and info["proto"] == 1
        assert ports["monitoring"][0].startswith("http://")
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        assert not ports_file.exists()
    finally:
        p.kill()


def test_config_file_flags_override_and_pid_file(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "s.conf"
    conf.write_text(f"port: 1\nserver_name: from_conf\nmax_payload: 2KB\n")
    pid_file = tmp_path / "s.pid"
    p = start(["-c", str(conf), "--port", str(port), f"-P={pid_file}"], tmp_path)
    try:
        wait_line(p, "Server is ready")
        info = read_info(port)
        assert info["server_name"] == "from_conf" and info["max_payload"] == 2048
        for _ in range(100):
            if pid_file.exists():
                break
            time.sleep(0.02)
        assert int(pid_file.read_text()) == p.pid
        # --signal quit with the pid file stops it
        rc = subprocess.run(CMD + ["--signal", f"quit={pid_file}"], capture_output=True, text=True)
        assert rc.returncode == 0, rc.stderr
        assert p.wait(10) == 0
    finally:
        p.kill()


def test_test_config_mode(tmp_path: Path) -> None:
    good = tmp_path / "good.conf"
    good.write_text("port: 4333\nauthorization { user: a, password: b }\n")
    r = subprocess.run(CMD + ["-t", "-c", str(good)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "is valid" in r.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text("port: 4333\nauthorization {\n  user: \"unterminated\n}\n")
    r = subprocess.run(CMD + ["-t", "-c", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "Parse error" in r.stderr or "parse error" in r.stderr.lower()
    assert "bad.conf:" in r.stderr


def test_port_in_use_is_fatal(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(CMD + ["-p", str(port)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "[FTL]" in r.stderr and "port" in r.stderr


def test_store_dir_that_is_a_file_is_fatal(tmp_path: Path) -> None:
    f = tmp_path / "notadir"
    f.write_text("x")
    r = subprocess.run(CMD + ["-js", "-sd", str(f), "-p", "-1"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    assert "storage directory is not a directory" in r.stderr


def test_cluster_flags_start_with_a_warning(tmp_path: Path) -> None:
    p = start(["-p", "-1", "--cluster", "nats://127.0.0.1:-1", "--routes", "nats://127.0.0.1:6222"],
              tmp_path)
    try:
        lines = wait_line(p, "Server is ready")
        assert any("not supported" in ln.lower() and "[WRN]" in ln for ln in lines)
    finally:
        p.kill()


def test_lame_duck_signal_informs_clients_then_exits(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "ldm.conf"
    conf.write_text(f"port: {port}\nlame_duck_grace_period: \"100ms\"\nlame_duck_duration: \"30s\"\n")
    p = start(["-c", str(conf)], tmp_path)
    try:
        wait_line(p, "Server is ready")
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b'CONNECT {"protocol":1,"verbose":false}\r\nPING\r\n')
        buf = b""
        while b"PONG" not in buf:
            buf += s.recv(4096)
        p.send_signal(signal.SIGUSR2)
        buf = b""
        s.settimeout(10)
        while b'"ldm":true' not in buf:
            chunk = s.recv(4096)
            assert chunk, buf
            buf += chunk
        assert p.wait(15) == 0
        s.close()
    finally:
        p.kill()


def test_sighup_reload_keeps_serving(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "r.conf"
    conf.write_text(f"port: {port}\n")
    p = start(["-c", str(conf)], tmp_path)
    try:
        wait_line(p, "Server is ready")
        p.send_signal(signal.SIGHUP)
        lines = wait_line(p, "eload")
        assert not any("Traceback" in ln for ln in lines)
        assert read_info(port)["port"] == port
    finally:
        p.kill()


def test_version_and_help() -> None:
    r = subprocess.run(CMD + ["--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("edgebus: v")  # edgebus speaks as itself
    r = subprocess.run(CMD + ["-h"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--port" in r.stdout + r.stderr
