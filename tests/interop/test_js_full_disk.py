"""A full or failing disk under a file stream, with nats-py: the publisher gets nats-server's
store-failed error (503, 10077, the errno's text) and never a PubAck for what was not written;
reads and memory streams keep serving; publishing resumes by itself when space returns; a retry
with the same Nats-Msg-Id is stored, not called a duplicate; nothing acknowledged is lost, also
across a SIGKILL while the disk is full (a real size-limited tmpfs, when this machine lets the
test mount one). With `sync_interval: always` a PubAck leaves only after the fsync that covers
the message (a failing fsync turns it into the error); by default a PubAck means the message
was written to the file, and the sync task syncs it within `sync_interval` (server clock)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import trio
import trio.testing
from nats.js.errors import APIError

from conftest import free_port, run_async
from edgebus.jetstream.store.fileio import FAULTS
from edgebus.testing.embedded import EmbeddedServer
from rawclient import wait_for_info
from test_js_consumers_clock import InProc
from test_js_streams_restart import _start_child, _wait_for_stream

ENOSPC_TEXT = "no space left on device"


@pytest.fixture(autouse=True)
def _faults_off() -> Iterator[None]:
    FAULTS.reset()
    yield
    FAULTS.reset()


def _blocks(store_dir: str, stream: str) -> list[str]:
    out = []
    for root, _dirs, files in os.walk(store_dir):
        if root.endswith(os.path.join("streams", stream, "msgs")):
            out += [os.path.join(root, f) for f in sorted(files) if f.endswith(".blk")]
    return out


def _is_store_failed(e: APIError, text: str) -> bool:
    return (e.code, e.err_code, e.description) == (503, 10077, text)


def test_full_disk_answers_errors_keeps_serving_and_resumes(tmp_path: Path) -> None:
    srv = EmbeddedServer(jetstream=True, store_dir=str(tmp_path)).start()
    try:
        async def main() -> None:
            nc = await nats.connect(srv.client_url, allow_reconnect=False)
            js = nc.jetstream(timeout=5)
            await js.add_stream(name="F", subjects=["f.>"])
            await js.add_stream(name="M", subjects=["m.>"], storage="memory")
            acked = [(await js.publish("f.a", b"ok%d" % i)).seq for i in range(5)]
            push = await js.subscribe("f.>")  # a live consumer all along: no phantom deliveries

            FAULTS.fail_writes = errno.ENOSPC
            with pytest.raises(APIError) as ei:
                await js.publish("f.a", b"lost", headers={"Nats-Msg-Id": "id-1"})
            assert _is_store_failed(ei.value, ENOSPC_TEXT)
            # a pipelining publisher: every one of its publishes gets the error, none an ack
            got = await asyncio.gather(*(js.publish("f.b", b"lost%d" % i) for i in range(20)),
                                       return_exceptions=True)
            assert all(isinstance(g, APIError) and _is_store_failed(g, ENOSPC_TEXT) for g in got)
            FAULTS.fail_writes = errno.EIO
            with pytest.raises(APIError) as ei:
                await js.publish("f.a", b"lost")
            assert _is_store_failed(ei.value, "input/output error")
            # reads and memory streams keep serving
            assert (await js.get_msg("F", acked[-1])).data == b"ok4"
            assert (await js.publish("m.x", b"mem")).seq == 1
            assert (await js.stream_info("F")).state.messages == 5
            assert nc.is_connected

            FAULTS.fail_writes = 0
            # same Nats-Msg-Id as the failed publish: stored now, not a duplicate
            ack = await js.publish("f.a", b"retry", headers={"Nats-Msg-Id": "id-1"})
            assert not ack.duplicate
            acked.append(ack.seq)
            acked.append((await js.publish("f.a", b"after")).seq)
            sub = await js.pull_subscribe("f.>", "c")
            msgs = await sub.fetch(len(acked), timeout=5)
            assert [m.metadata.sequence.stream for m in msgs] == acked
            assert [m.data for m in msgs] == [b"ok%d" % i for i in range(5)] + [b"retry", b"after"]
            with pytest.raises(nats.errors.TimeoutError):
                await sub.fetch(1, timeout=0.5)  # nothing un-acked slipped in
            pushed = [await push.next_msg(5) for _ in range(len(acked))]
            assert [m.data for m in pushed] == [m.data for m in msgs]
            assert push.pending_msgs == 0
            await nc.close()
        run_async(main)
    finally:
        srv.close()
    # and after a restart: exactly the acknowledged messages
    srv = EmbeddedServer(jetstream=True, store_dir=str(tmp_path)).start()
    try:
        async def after() -> None:
            nc = await nats.connect(srv.client_url, allow_reconnect=False)
            si = await nc.jetstream().stream_info("F")
            assert si.state.messages == 7
            await nc.close()
        run_async(after)
    finally:
        srv.close()


def test_sync_always_acks_only_what_was_synced(tmp_path: Path) -> None:
    store = str(tmp_path / "js")
    srv = EmbeddedServer(config=f'jetstream {{ store_dir: {json.dumps(store)}, '
                                f'sync_interval: always }}').start()
    try:
        async def main() -> None:
            nc = await nats.connect(srv.client_url, allow_reconnect=False)
            js = nc.jetstream(timeout=5)
            await js.add_stream(name="S", subjects=["s.>"])
            FAULTS.counting = True
            for i in range(5):
                await js.publish("s.x", b"m%d" % i)
                # at the PubAck every byte written to the stream's block had been synced
                for path in _blocks(store, "S"):
                    assert FAULTS.synced.get(path, 0) == FAULTS.written[path] > 0, path
            FAULTS.fail_syncs = errno.EIO
            with pytest.raises(APIError) as ei:
                await js.publish("s.x", b"unsynced")
            assert _is_store_failed(ei.value, "input/output error")
            FAULTS.fail_syncs = 0
            assert (await js.publish("s.x", b"later")).seq == 7
            await nc.close()
        run_async(main)
    finally:
        srv.close()


@pytest.mark.trio
@pytest.mark.edgebus(jetstream=True)
async def test_default_sync_interval_syncs_acked_messages_in_time(edgebus_trio_server: Any,
                                                                  mock_clock: Any) -> None:
    """Default `sync_interval` (2 minutes): the PubAck means the message is in the file; the
    sync task, on the server clock, fsyncs it when the interval is over. The clock moves only
    when the test jumps it."""
    srv = edgebus_trio_server
    interval = srv.services["jetstream"].sync_interval
    c = InProc(srv)
    r = await c.api("STREAM.CREATE.S", {"name": "S", "subjects": ["foo.>"], "storage": "file"})
    assert "error" not in r, r
    FAULTS.counting = True
    ack = await c.request("foo.1", b"durable")
    assert json.loads(ack.data)["seq"] == 1
    (path,) = _blocks(srv.options.jetstream.store_dir, "S")
    with open(path, "rb") as f:
        assert b"durable" in f.read()       # written before the ack
    mock_clock.jump(interval - 1)
    await trio.testing.wait_all_tasks_blocked()
    assert FAULTS.synced.get(path, 0) < FAULTS.written[path]  # not synced before its time
    mock_clock.jump(1)
    # the sync runs in a worker thread: wait for it in real time (the clock stays put)
    deadline = time.monotonic() + 10
    while FAULTS.synced.get(path, 0) < FAULTS.written[path] and time.monotonic() < deadline:
        await trio.to_thread.run_sync(time.sleep, 0.01)
    assert FAULTS.synced.get(path, 0) == FAULTS.written[path], "not synced when the interval ended"


_CHILD = """
import sys, trio
from edgebus.options import Options
from edgebus.server import Server
o = Options()
o.port = int(sys.argv[1])
o.jetstream.enabled = True
o.jetstream.store_dir = sys.argv[2]
trio.run(Server(o).run)
"""


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of the test's own (needs the right to mount: root in this sandbox)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _child(port: int, store: str, log: str) -> subprocess.Popen:
    with open(log, "ab") as fh:  # the log lives off the full disk
        p = subprocess.Popen([sys.executable, "-c", _CHILD, str(port), store],
                             stdout=subprocess.DEVNULL, stderr=fh)
    return wait_for_info(p, port)


def test_real_full_disk_and_sigkill_lose_no_acked_message(small_fs: Path, tmp_path: Path) -> None:
    port = free_port()
    store = str(small_fs / "js")
    log = str(tmp_path / "child.log")
    filler = small_fs / "filler"
    acked: dict[int, bytes] = {}
    refused: list[tuple[int, int, str]] = []
    child = _child(port, store, log)
    try:
        async def fill_and_kill() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
            js = nc.jetstream(timeout=5)
            await js.add_stream(name="F", subjects=["f.>"])
            st = os.statvfs(small_fs)
            filler.write_bytes(bytes(st.f_bavail * st.f_frsize - 64 * 1024))

            async def worker(w: int) -> None:
                for i in range(200):
                    payload = b"w%d-%d;" % (w, i) * 60
                    try:
                        acked[(await js.publish(f"f.{w}", payload)).seq] = payload
                    except APIError as e:
                        refused.append((e.code, e.err_code, e.description))
                        if len(refused) == 40:   # well into the full state, publishers busy
                            os.kill(child.pid, signal.SIGKILL)
                    except Exception:
                        return  # the server died under us
            await asyncio.gather(*(worker(w) for w in range(4)))
        run_async(fill_and_kill)
        child.wait(10)
        assert acked and len(refused) >= 40, (len(acked), len(refused))
        assert set(refused) == {(503, 10077, ENOSPC_TEXT)}

        async def check(space_back: bool) -> None:
            await _wait_for_stream(port, "F")
            nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
            js = nc.jetstream(timeout=5)
            for seq, payload in acked.items():
                assert (await js.get_msg("F", seq)).data == payload, seq
            try:
                ack = await js.publish("f.more", b"more")
                acked[ack.seq] = b"more"
            except APIError as e:
                assert not space_back and _is_store_failed(e, ENOSPC_TEXT)
            assert (await js.stream_info("F")).state.messages == len(acked)
            await nc.close()

        child = _child(port, store, log)  # restarted while the disk is still full
        run_async(check, False)
        filler.unlink()
        run_async(check, True)
        assert acked[max(acked)] == b"more"
    finally:
        child.kill()
        child.wait(10)


def test_consumer_acks_made_while_full_are_saved_when_space_returns(small_fs: Path,
                                                                     tmp_path: Path) -> None:
    port = free_port()
    store = str(small_fs / "js")
    filler = small_fs / "filler"
    log = str(tmp_path / "child.log")
    child = _child(port, store, log)
    try:
        async def main() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
            js = nc.jetstream(timeout=5)
            await js.add_stream(name="F", subjects=["f.>"])
            for i in range(10):
                await js.publish("f.x", b"m%d" % i)
            sub = await js.pull_subscribe("f.>", "c")
            st = os.statvfs(small_fs)
            filler.write_bytes(bytes(st.f_bavail * st.f_frsize))
            for m in await sub.fetch(10, timeout=5):
                await m.ack_sync()       # the state write behind these acks fails
            deadline = time.monotonic() + 10
            while b"writing consumer state for F > c failed" not in Path(log).read_bytes():
                assert time.monotonic() < deadline, "the state write did not fail"
                await asyncio.sleep(0.05)
            filler.unlink()
            (odat,) = [os.path.join(r, "o.dat") for r, _d, f in os.walk(store) if "o.dat" in f]
            deadline = time.monotonic() + 10
            floor = 0
            while time.monotonic() < deadline:  # no further ack: the retry alone must save it
                try:
                    with open(odat, "rb") as fh:
                        floor = json.loads(fh.read())["ack_floor"]["stream_seq"]
                except (OSError, ValueError):
                    pass
                if floor == 10:
                    break
                await asyncio.sleep(0.05)
            assert floor == 10
            await nc.close()
        run_async(main)
    finally:
        child.kill()
        child.wait(10)
