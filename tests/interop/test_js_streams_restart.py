"""Streams across restarts: config and state survive a clean restart, deleting removes the files,
and every acknowledged message survives SIGKILL (with `sync_interval: always` and by default)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
import pytest

from conftest import free_port, run_async
from edgebus.testing.embedded import EmbeddedServer
from rawclient import wait_for_info


async def _api(nc: Any, subject: str, body: Any = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else b""
    return json.loads((await nc.request(subject, data, timeout=5)).data)


def test_config_and_state_survive_restart(tmp_path: Path) -> None:
    srv = EmbeddedServer(jetstream=True, store_dir=str(tmp_path))
    srv.start()
    try:
        async def before() -> tuple[dict[str, Any], dict[str, Any]]:
            nc = await nats.connect(srv.client_url, allow_reconnect=False)
            js = nc.jetstream()
            await _api(nc, "$JS.API.STREAM.CREATE.KEEP", {
                "name": "KEEP", "subjects": ["keep.*"], "max_msgs_per_subject": 3,
                "description": "kept", "metadata": {"team": "edge"}, "allow_direct": True,
                "duplicate_window": 3_600_000_000_000})
            await js.add_stream(name="MEM", subjects=["mem"], storage="memory")
            for i in range(10):
                await js.publish(f"keep.{i % 2}", b"%d" % i, headers={"Nats-Msg-Id": f"id{i}"})
            await js.delete_msg("KEEP", 9)
            info = await _api(nc, "$JS.API.STREAM.INFO.KEEP", {"deleted_details": True, "subjects_filter": ">"})
            await nc.close()
            return info["config"], info["state"]

        cfg, state = run_async(before)
        srv.restart()

        async def after() -> None:
            nc = await nats.connect(srv.client_url, allow_reconnect=False)
            js = nc.jetstream()
            info = await _api(nc, "$JS.API.STREAM.INFO.KEEP", {"deleted_details": True, "subjects_filter": ">"})
            assert info["config"] == cfg
            for k in ("messages", "bytes", "first_seq", "last_seq", "deleted", "subjects", "first_ts", "last_ts"):
                assert info["state"][k] == state[k], k
            # the duplicate window survived too (rebuilt from the stored Nats-Msg-Id headers)
            ack = await js.publish("keep.1", b"again", headers={"Nats-Msg-Id": "id7"})
            assert ack.duplicate and ack.seq == 8
            ack = await js.publish("keep.0", b"new", headers={"Nats-Msg-Id": "id10"})
            assert ack.seq == 11 and not ack.duplicate
            m = await js.get_msg("KEEP", 10, direct=True)
            assert m.data == b"9"
            # memory streams do not survive a restart (as in standalone nats-server)
            names = await _api(nc, "$JS.API.STREAM.NAMES")
            assert names["streams"] == ["KEEP"]
            assert await js.delete_stream("KEEP")
            await nc.close()

        run_async(after)
        assert not (tmp_path / "jetstream" / "$G" / "streams" / "KEEP").exists()
        srv.restart()

        async def gone() -> None:
            nc = await nats.connect(srv.client_url, allow_reconnect=False)
            assert (await _api(nc, "$JS.API.STREAM.NAMES"))["total"] == 0
            await nc.close()
        run_async(gone)
    finally:
        srv.close()


_CHILD = """
import logging, sys, trio
logging.basicConfig(level=logging.INFO)
from edgebus.options import Options
from edgebus.server import Server
o = Options()
o.port = int(sys.argv[1])
o.jetstream.enabled = True
o.jetstream.store_dir = sys.argv[2]
if sys.argv[3] == "always":
    o.jetstream.sync_interval = "always"
    o.jetstream.sync_always = True
trio.run(Server(o).run)
"""


def _start_child(port: int, store: str, sync: str = "always") -> subprocess.Popen:
    # the child's log goes next to (not into) the store, for post-mortems
    with open(store + ".log", "ab") as log:
        p = subprocess.Popen([sys.executable, "-c", _CHILD, str(port), store, sync],
                             stdout=subprocess.DEVNULL, stderr=log)
    return wait_for_info(p, port)


async def _wait_for_stream(port: int, name: str) -> None:
    nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
    try:
        for _ in range(200):
            try:
                await nc.jetstream().stream_info(name)
                return
            except Exception:
                await asyncio.sleep(0.05)
        raise AssertionError(f"stream {name} not recovered")
    finally:
        await nc.close()


@pytest.mark.parametrize("sync", ["always", "default"])
def test_acked_messages_survive_sigkill(tmp_path: Path, sync: str) -> None:
    """SIGKILL loses no acknowledged message: with `sync_interval: always` (fsync before the
    PubAck), and by default too, where a read's appends are written in one go before its
    PubAcks leave (the page cache outlives the process)."""
    port = free_port()
    store = str(tmp_path / "store")
    acked: dict[int, bytes] = {}
    child = _start_child(port, store, sync)
    try:
        async def setup() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
            await nc.jetstream().add_stream(name="CRASH", subjects=["crash.>"])
            await nc.close()
        run_async(setup)

        for round_no in range(3):
            async def publish(proc: subprocess.Popen = child, round_no: int = round_no) -> None:
                nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False,
                                        max_reconnect_attempts=0)
                js = nc.jetstream(timeout=2)
                n = 0
                errors: list[str] = []

                async def worker(w: int) -> None:
                    nonlocal n
                    i = 0
                    while True:
                        payload = b"r%d-w%d-%d" % (round_no, w, i)
                        try:
                            ack = await js.publish(f"crash.{w}", payload)
                        except Exception as e:
                            errors.append(repr(e))
                            return  # the server died under us
                        acked[ack.seq] = payload
                        n += 1
                        i += 1
                        if n == 150:  # kill while 4 publishers are mid-flight
                            os.kill(proc.pid, signal.SIGKILL)

                await asyncio.gather(*(worker(w) for w in range(4)))
                if n < 150:
                    proc.kill()
                    raise AssertionError(f"publishing stopped after {n} acks: {errors}")
                try:
                    await nc.close()
                except Exception:
                    pass
            run_async(publish)
            child.wait(10)
            child = _start_child(port, store, sync)
            # the listener opens before JetStream has recovered the stream from disk
            run_async(_wait_for_stream, port, "CRASH")

        async def verify() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
            js = nc.jetstream()
            si = await js.stream_info("CRASH")
            assert si.state.messages >= len(acked)
            for seq, payload in acked.items():
                m = await js.get_msg("CRASH", seq)
                assert m.data == payload, seq
            await nc.close()
        assert len(acked) >= 450
        run_async(verify)
    finally:
        child.kill()
        child.wait(10)
