"""SIGTERM as test harnesses send it, in the middle of work: the `edgebus` process exits cleanly
and every publish it acknowledged, and every ack its durable consumer confirmed, is in the file
store when it comes back."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
from nats.js.api import StreamConfig

from conftest import run_async

CMD = [sys.executable, "-m", "edgebus"]


def start(tmp_path: Path, store: Path) -> tuple[subprocess.Popen, str]:
    tmp_path.mkdir(exist_ok=True)
    p = subprocess.Popen([*CMD, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", str(store),
                          "--ports_file_dir", str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ports = tmp_path / f"nats-server_{p.pid}.ports"
    deadline = time.monotonic() + 60  # a hang detector, not a speed check
    while time.monotonic() < deadline:
        try:
            return p, json.loads(ports.read_text())["nats"][0]
        except (OSError, ValueError):
            assert p.poll() is None, "server exited while starting"
            time.sleep(0.01)
    p.kill()
    raise AssertionError("no ports file")


def test_sigterm_while_publishing_keeps_every_acked_message(tmp_path: Path) -> None:
    store = tmp_path / "js"
    p, url = start(tmp_path / "run1", store)
    acked: dict[int, bytes] = {}

    async def publish_until_stopped() -> None:
        gone = asyncio.Event()

        async def on_gone() -> None:
            gone.set()

        nc = await nats.connect(url, max_reconnect_attempts=0, allow_reconnect=False,
                                disconnected_cb=on_gone, closed_cb=on_gone)
        gone_wait = asyncio.ensure_future(gone.wait())
        js = nc.jetstream(timeout=30)
        await js.add_stream(StreamConfig(name="S", subjects=["s.>"]))
        # a durable consumer's acks are state to keep as well
        for i in range(100):
            acked[(await js.publish("s.x", b"m%d" % i)).seq] = b"m%d" % i
        durable = await js.pull_subscribe("s.>", "C", stream="S")
        for m in await durable.fetch(100, timeout=30):
            await m.ack_sync()
        n = 100
        signalled = False
        try:
            while True:
                batch = []
                for _ in range(50):
                    n += 1
                    payload = b"m%d" % n
                    batch.append((payload, await js.publish_async("s.x", payload)))
                for payload, fut in batch:
                    # nats-py leaves the futures of a lost connection pending: stop at that
                    await asyncio.wait({fut, gone_wait}, return_when=asyncio.FIRST_COMPLETED)
                    if not fut.done():
                        return
                    acked[fut.result().seq] = payload
                if not signalled and len(acked) >= 500:
                    p.send_signal(signal.SIGTERM)  # publishing goes on until the server is gone
                    signalled = True
        except Exception:
            pass
        finally:
            gone_wait.cancel()
            try:
                await nc.close()
            except Exception:
                pass

    try:
        run_async(publish_until_stopped)
        assert p.wait(60) == 0
    finally:
        p.kill()
    assert len(acked) >= 500

    p, url = start(tmp_path / "run2", store)

    async def read_back() -> dict[int, bytes]:
        nc = await nats.connect(url)
        js = nc.jetstream(timeout=30)
        got: dict[int, bytes] = {}
        info = await js.consumer_info("S", "C")
        assert (info.ack_floor.stream_seq, info.num_ack_pending) == (100, 0)
        sub = await js.pull_subscribe("s.>", "check", stream="S")
        while (await sub.consumer_info()).num_pending:
            try:
                msgs = await sub.fetch(500, timeout=10)
            except nats.errors.TimeoutError:  # counted but unreadable: reported below
                break
            for m in msgs:
                got[m.metadata.sequence.stream] = m.data
                await m.ack()
        await nc.close()
        return got

    try:
        got = run_async(read_back)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    missing = sorted(seq for seq, data in acked.items() if got.get(seq) != data)
    assert missing == [], f"{len(missing)} of {len(acked)} acked messages lost"
