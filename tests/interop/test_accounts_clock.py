"""Service-import reply tracking on the server clock: the reply subject handed to the exporter
expires after the export's `response_threshold` of *server* time, so a MockClock jump expires
it (before, the expiry read the machine's monotonic clock and virtual time had no effect)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from edgebus.core.client import InternalClient

CONFIG = """
accounts {
  A: { users: [{user: a, password: a}],
       exports: [{service: "svc.>", response_type: "stream", response_threshold: "10s"}] }
  B: { users: [{user: b, password: b}], imports: [{service: {account: A, subject: "svc.>"}}] }
}
"""

pytestmark = [pytest.mark.trio, pytest.mark.edgebus(config=CONFIG)]


async def test_service_reply_expiry_follows_the_server_clock(edgebus_trio_server: Any,
                                                             autojump_clock: Any) -> None:
    b = edgebus_trio_server.broker
    exporter = InternalClient(b, b.get_account("A"), kind="Client", name="exporter")
    importer = InternalClient(b, b.get_account("B"), kind="Client", name="importer")
    requests: list[Any] = []
    exporter.subscribe("svc.>", lambda sub, msg: requests.append(msg))
    answers: list[tuple[float, bytes]] = []
    importer.subscribe("_INBOX.t.>", lambda sub, msg: answers.append((trio.current_time(), msg.data)))

    importer.publish("svc.x", "_INBOX.t.1", None, b"q1")
    assert len(requests) == 1 and requests[0].reply.startswith("_R_.")
    reply = requests[0].reply
    exporter.publish(reply, None, None, b"early")       # within the threshold: delivered
    await trio.sleep(9)
    exporter.publish(reply, None, None, b"in time")     # a stream response, still in time
    await trio.sleep(2)                                  # 11 s of server time: expired
    exporter.publish(reply, None, None, b"too late")
    assert [d for _, d in answers] == [b"early", b"in time"]
