"""MaxAge, per-message TTL and subject delete markers on the server clock (trio MockClock).

The server runs in the test's own trio loop (`edgebus_trio_server`) with `autojump_clock`, so an
hour of stream time passes instantly. Requests and publishes go through an in-process client.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import trio

from edgebus.core.client import InternalClient

pytestmark = [pytest.mark.trio, pytest.mark.edgebus(jetstream=True)]
SECOND = 1_000_000_000
_inbox = itertools.count()


class Client:
    """Request/reply and publish over an InternalClient in the global account."""

    def __init__(self, server: Any) -> None:
        b = server.broker
        self.c = InternalClient(b, b.global_account, name="test")

    async def request(self, subject: str, body: Any = None, headers: bytes | None = None,
                      data: bytes | None = None) -> tuple[bytes | None, bytes]:
        inbox = f"_INBOX.t.{next(_inbox)}"
        got: list[tuple[bytes | None, bytes]] = []
        ev = trio.Event()

        def cb(sub: Any, msg: Any) -> None:
            got.append((msg.hdr, msg.data))
            ev.set()

        sub = self.c.subscribe(inbox, cb)
        payload = data if data is not None else (json.dumps(body).encode() if body is not None else b"")
        self.c.publish(subject, inbox, headers, payload)
        # mock time: a generous bound that still ends a hang (the clock jumps while the
        # server works in threads, so a short one would fire spuriously)
        with trio.fail_after(10**6):
            await ev.wait()
        self.c.unsubscribe(sub)
        return got[0]

    async def api(self, subject: str, body: Any = None) -> dict[str, Any]:
        _, data = await self.request("$JS.API." + subject, body)
        return json.loads(data)

    async def pub(self, subject: str, data: bytes = b"x", **headers: str) -> dict[str, Any]:
        hdr = None
        if headers:
            lines = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
            hdr = ("NATS/1.0\r\n" + lines + "\r\n").encode()
        _, body = await self.request(subject, headers=hdr, data=data)
        return json.loads(body)


def stream_state(server: Any, name: str) -> Any:
    return server.services["jetstream"].accounts["$G"].streams[name].store.state()


async def test_max_age_expires_on_mock_clock(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    cl = Client(edgebus_trio_server)
    r = await cl.api("STREAM.CREATE.AGE", {"name": "AGE", "subjects": ["age.*"], "storage": "memory",
                                           "max_age": 3600 * SECOND})
    assert "error" not in r
    for i in range(3):
        assert (await cl.pub("age.a"))["seq"] == i + 1
        await trio.sleep(600)
    await trio.sleep(3600 - 1500)  # first message is 1h old now, the others younger
    assert stream_state(edgebus_trio_server, "AGE").msgs == 2
    await trio.sleep(3600)
    info = await cl.api("STREAM.INFO.AGE")
    assert info["state"]["messages"] == 0 and info["state"]["first_seq"] == 4


async def test_file_stream_max_age(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    cl = Client(edgebus_trio_server)
    await cl.api("STREAM.CREATE.F", {"name": "F", "subjects": ["f"], "max_age": 60 * SECOND})
    await cl.pub("f")
    await trio.sleep(61)
    assert stream_state(edgebus_trio_server, "F").msgs == 0


async def test_message_ttl_and_never(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    cl = Client(edgebus_trio_server)
    await cl.api("STREAM.CREATE.T", {"name": "T", "subjects": ["t.*"], "storage": "memory",
                                     "allow_msg_ttl": True, "max_age": 7200 * SECOND})
    await cl.pub("t.short", Nats_TTL="30s")
    await cl.pub("t.long", Nats_TTL="1h")
    await cl.pub("t.never", Nats_TTL="never")
    await cl.pub("t.plain")
    await trio.sleep(31)
    assert stream_state(edgebus_trio_server, "T").msgs == 3
    await trio.sleep(3600)
    assert stream_state(edgebus_trio_server, "T").msgs == 2
    await trio.sleep(7200)  # max_age removes the plain one; "never" is exempt
    st = stream_state(edgebus_trio_server, "T")
    assert st.msgs == 1 and st.first_seq == 3


async def test_subject_delete_markers(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    cl = Client(edgebus_trio_server)
    await cl.api("STREAM.CREATE.KV", {"name": "KV", "subjects": ["kv.>"], "storage": "memory",
                                      "allow_direct": True, "max_age": 600 * SECOND,
                                      "subject_delete_marker_ttl": 60 * SECOND})
    await cl.pub("kv.a", b"1")
    await cl.pub("kv.a", b"2")
    r = await cl.pub("kv.b", b"3", Nats_TTL="5s")
    assert r["seq"] == 3
    await trio.sleep(1)
    hdr, _ = await cl.request("$JS.API.DIRECT.GET.KV.kv.b")
    # the TTL was raised to the marker TTL and rewritten as seconds
    assert b"Nats-TTL: 60\r\n" in hdr
    await trio.sleep(60)
    hdr, data = await cl.request("$JS.API.DIRECT.GET.KV.kv.b")
    assert data == b""
    assert b"Nats-Marker-Reason: MaxAge\r\n" in hdr and b"Nats-TTL: 1m0s\r\n" in hdr
    assert b"Nats-Sequence: 4\r\n" in hdr
    await trio.sleep(540)
    # t=601: kv.a aged out, both its messages went and one marker replaced them; kv.b's
    # marker (written at t=61) expired by itself
    info = await cl.api("STREAM.INFO.KV", {"subjects_filter": ">"})
    assert info["state"]["subjects"] == {"kv.a": 1}
    hdr, _ = await cl.request("$JS.API.DIRECT.GET.KV.kv.a")
    assert b"Nats-Marker-Reason: MaxAge" in hdr and b"Nats-Sequence: 5\r\n" in hdr
    await trio.sleep(61)
    info = await cl.api("STREAM.INFO.KV")
    assert info["state"]["messages"] == 0 and info["state"]["last_seq"] == 5


async def test_duplicate_window_on_mock_clock(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    cl = Client(edgebus_trio_server)
    await cl.api("STREAM.CREATE.D", {"name": "D", "subjects": ["d"], "storage": "memory",
                                     "duplicate_window": 10 * SECOND})
    assert (await cl.pub("d", Nats_Msg_Id="a"))["seq"] == 1
    await trio.sleep(5)
    assert (await cl.pub("d", Nats_Msg_Id="a")).get("duplicate") is True
    await trio.sleep(6)
    assert (await cl.pub("d", Nats_Msg_Id="a")) == {"stream": "D", "seq": 2}
