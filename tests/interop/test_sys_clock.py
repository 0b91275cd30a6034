"""The system account's timers under virtual time: the `$SYS.SERVER.<id>.STATSZ` heartbeat
every 10 s and an account JWT's expiry both follow the server clock, and the service sleeps
until the next of them is due instead of waking every second (a test that jumps a virtual hour
used to cost 3,600 wake-ups of this one task)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import trio

from edgebus.core.client import InternalClient
from test_auth_jwt import Org

pytest.importorskip("nkeys")

ORG = Org(None)
# the application account expires an hour (plus a little) after this module is imported;
# the server's wall clock starts near now and then advances with the virtual clock
EXPIRES = int(time.time()) + 3600
ORG.acc_jwt = ORG.account_jwt(exp=EXPIRES)

pytestmark = [pytest.mark.trio, pytest.mark.edgebus(config=ORG.config())]


class _Steps(trio.abc.Instrument):
    """Counts the steps of the tasks whose name contains `needle`."""

    def __init__(self, needle: str) -> None:
        self.needle = needle
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.needle in task.name:
            self.steps += 1


async def test_statsz_heartbeat_and_account_expiry_in_virtual_time(
        edgebus_trio_server: Any, autojump_clock: Any) -> None:
    b = edgebus_trio_server.broker
    beats: list[float] = []
    watcher = InternalClient(b, b.system_account, name="watcher")
    watcher.subscribe(f"$SYS.SERVER.{b.server_id}.STATSZ",
                      lambda sub, msg: beats.append(trio.current_time()))
    # a real client of the application account, over a socket
    app = await trio.open_tcp_stream("127.0.0.1", edgebus_trio_server.port)
    got = b""
    while not got.endswith(b"\r\n"):
        got += await app.receive_some(4096)
    nonce = json.loads(got[5:])["nonce"]
    kp, tok = ORG.user()
    sig = base64.urlsafe_b64encode(kp.sign(nonce.encode())).decode().rstrip("=")
    await app.send_all(b"CONNECT " + json.dumps({"jwt": tok, "sig": sig, "verbose": False,
                                                 "pedantic": False}).encode() + b"\r\nPING\r\n")
    got = b""
    while b"PONG\r\n" not in got:
        got += await app.receive_some(4096)
    # the client answers the server's keepalive PINGs (one every 2 minutes) and keeps the rest
    heard = bytearray()
    ended = trio.Event()

    async def read() -> None:
        buf = b""
        while chunk := await app.receive_some(4096):
            buf += chunk
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                if line == b"PING":
                    await app.send_all(b"PONG\r\n")
                else:
                    heard.extend(line + b"\r\n")
        ended.set()

    steps = _Steps("SystemService.run")
    trio.lowlevel.add_instrument(steps)
    t0 = trio.current_time()
    try:
        async with trio.open_nursery() as n:
            n.start_soon(read)
            # an hour of server time, less than the account's life left
            await trio.sleep(EXPIRES - b.clock.now_ns() / 1e9 - 5)
            hour = trio.current_time() - t0
            assert not ended.is_set() and heard == b""
            await trio.sleep(10)  # past `exp`: the account's clients are told and dropped
            assert ended.is_set()
            assert heard == b"-ERR 'Account Authentication Expired'\r\n"
    finally:
        trio.lowlevel.remove_instrument(steps)
    # a heartbeat every 10 s of server time, none missed or doubled
    assert len(beats) >= int(hour // 10)
    gaps = {round(b2 - b1, 3) for b1, b2 in zip(beats, beats[1:])}
    assert gaps == {10.0}
    # the service woke for the heartbeats and the expiry, not once a second
    assert steps.steps <= len(beats) + 10, steps.steps
