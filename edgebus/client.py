"""The in-process client for trio code: talk to a `Server` running in the same trio loop.

    async with edgebus.serve(jetstream=True) as server:        # or the edgebus_trio_server fixture
        async with await server.connect() as nc:
            sub = await nc.subscribe("greet.*")
            await nc.publish("greet.joe", b"hello", headers={"X-Id": "1"})
            msg = await sub.next_msg()
            js = nc.jetstream()
            await js.add_stream("ORDERS", subjects=["orders.>"], max_age=60)
            ack = await js.publish("orders.1", b"{}")          # {"stream": "ORDERS", "seq": 1}

No socket and no thread: messages are routed synchronously inside the server, and every timeout
here is a trio timeout, so under `trio.testing.MockClock(autojump_threshold=0)` (pytest-trio's
`autojump_clock`) an hour of MaxAge, AckWait, TTLs or redelivery takes milliseconds.

The client is a thin layer over the core's `InternalClient` (subscribe with a callback, publish,
unsubscribe, close); everything else speaks the public NATS subjects (`$JS.API.…`, `$KV.…`), as
a networked client would, so it sees what nats-py would see.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections import deque
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

import trio

from .codec.headers import build_headers, parse_headers
from .core.client import InternalClient

if TYPE_CHECKING:
    from .core.account import Account
    from .server import Server

__all__ = ["InProcClient", "Msg", "Subscription", "JetStream", "KeyValue", "NoRespondersError",
           "JetStreamError"]

_NS = 1_000_000_000
_client_ids = itertools.count(1)


class NoRespondersError(Exception):
    """A request found no subscriber (nats-server's 503 status)."""


class JetStreamError(Exception):
    """A JetStream API error reply; `.code` and `.err_code` as nats-server sends them."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(f"{error.get('description', 'error')} "
                         f"(code={error.get('code')}, err_code={error.get('err_code')})")
        self.code: int | None = error.get("code")
        self.err_code: int | None = error.get("err_code")
        self.description: str = error.get("description", "")


class Msg:
    """A received message: subject, data, reply, headers, and the status of a status message."""

    __slots__ = ("subject", "data", "reply", "headers", "status", "description", "_client")

    def __init__(self, client: "InProcClient", subject: str, reply: str | None,
                 hdr: bytes | None, data: bytes) -> None:
        self._client = client
        self.subject = subject
        self.data = data
        self.reply = reply
        status, desc, items = parse_headers(hdr)
        self.status: int | None = status
        self.description = desc
        self.headers: dict[str, str] | None = dict(items) if hdr else None

    def __repr__(self) -> str:
        return f"<Msg {self.subject} {self.data[:40]!r} status={self.status}>"

    async def respond(self, data: bytes = b"", *, headers: Mapping[str, str] | None = None) -> None:
        """Reply to a request."""
        if not self.reply:
            raise ValueError("message has no reply subject")
        await self._client.publish(self.reply, data, headers=headers)

    # -- JetStream acknowledgements (on messages a consumer delivered) ---------------------
    async def ack(self) -> None:
        await self.respond(b"+ACK")

    async def nak(self, delay: float | None = None) -> None:
        """Redeliver, after `delay` seconds if given."""
        if delay is None:
            await self.respond(b"-NAK")
        else:
            await self.respond(b"-NAK " + json.dumps({"delay": int(delay * _NS)}).encode())

    async def in_progress(self) -> None:
        """Reset the ack wait timer."""
        await self.respond(b"+WPI")

    async def term(self) -> None:
        """Never redeliver."""
        await self.respond(b"+TERM")

    @property
    def num_delivered(self) -> int:
        """The delivery count of a JetStream message (from its `$JS.ACK` reply subject)."""
        return int(_ack_tokens(self.reply)[-5])

    @property
    def stream_seq(self) -> int:
        return int(_ack_tokens(self.reply)[-4])


def _ack_tokens(reply: str | None) -> list[str]:
    if not reply or not reply.startswith("$JS.ACK."):
        raise ValueError("not a JetStream message")
    return reply.split(".")


class Subscription:
    """Messages on a subject, in order: `async for msg in sub` or `await sub.next_msg()`."""

    def __init__(self, client: "InProcClient", subject: str, queue: str | None) -> None:
        self.subject = subject
        self.queue = queue
        self._client = client
        self._pending: deque[Msg] = deque()
        self._wakeup = trio.lowlevel.ParkingLot()
        self._closed = False
        self._max = 0
        self._received = 0
        self._sub = client._core.subscribe(subject, self._on_msg, queue)

    def _on_msg(self, sub: Any, m: Any) -> None:
        # runs synchronously inside the publisher's call: queue it and wake a waiting reader
        self._received += 1
        self._pending.append(Msg(self._client, m.subject, m.reply, m.hdr, m.data))
        self._wakeup.unpark_all()
        if self._max and self._received >= self._max:
            self._drop()

    @property
    def pending(self) -> int:
        """Messages received and not read yet."""
        return len(self._pending)

    async def next_msg(self, timeout: float | None = 10.0) -> Msg:
        """The next message; `trio.TooSlowError` after `timeout` seconds of trio time."""
        with trio.fail_after(timeout if timeout is not None else float("inf")):
            while not self._pending:
                if self._closed:
                    raise trio.EndOfChannel(f"subscription to {self.subject} closed")
                await self._wakeup.park()
        await trio.lowlevel.checkpoint()
        return self._pending.popleft()

    def __aiter__(self) -> AsyncIterator[Msg]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Msg]:
        while True:
            try:
                yield await self.next_msg(timeout=None)
            except trio.EndOfChannel:
                return

    async def unsubscribe(self, limit: int = 0) -> None:
        """Stop now, or after `limit` messages in all (as UNSUB with a max)."""
        if limit and self._received < limit:
            self._max = limit
        else:
            self._drop()
        await trio.lowlevel.checkpoint()

    def _drop(self) -> None:
        if not self._closed:
            self._closed = True
            self._client._core.unsubscribe(self._sub)
            self._wakeup.unpark_all()


class InProcClient:
    """A client of one account of a server in this trio loop (see the module docstring).

    Get one with `await server.connect()` (the global account, or `account="NAME"`).
    """

    def __init__(self, server: "Server", account: "Account | str | None" = None,
                 name: str = "") -> None:
        broker = server.broker
        if isinstance(account, str):
            account = broker.get_account(account)
        self.server = server
        self.name = name or f"inproc-{next(_client_ids)}"
        self._core = InternalClient(broker, account or broker.global_account, kind="Client",
                                    name=self.name)
        # JetStream's API answers a request nobody serves with a 503, as to a NATS client
        self._core.no_responders = True
        self._inbox_prefix = f"_INBOX.{self.name}."
        self._inboxes = itertools.count(1)

    # -- lifecycle --------------------------------------------------------------------------
    async def close(self) -> None:
        self._core.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> "InProcClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def is_closed(self) -> bool:
        return self._core.closed

    def new_inbox(self) -> str:
        return f"{self._inbox_prefix}{next(self._inboxes)}"

    # -- core NATS --------------------------------------------------------------------------
    async def publish(self, subject: str, data: bytes = b"", *, reply: str | None = None,
                      headers: Mapping[str, str] | None = None) -> None:
        """Publish; subscribers in this server have received it when this returns."""
        self._check_open()
        hdr = build_headers(dict(headers)) if headers is not None else None
        self._core.publish(subject, reply, hdr, data)
        await trio.lowlevel.checkpoint()

    async def subscribe(self, subject: str, queue: str | None = None) -> Subscription:
        self._check_open()
        sub = Subscription(self, subject, queue)
        await trio.lowlevel.checkpoint()
        return sub

    async def request(self, subject: str, data: bytes = b"", *, timeout: float = 10.0,
                      headers: Mapping[str, str] | None = None) -> Msg:
        """Publish with a fresh inbox as reply and wait for the first answer.

        Raises `NoRespondersError` when nothing subscribes to `subject`, `trio.TooSlowError`
        after `timeout` seconds of trio time.
        """
        self._check_open()
        inbox = self.new_inbox()
        sub = Subscription(self, inbox, None)
        try:
            hdr = build_headers(dict(headers)) if headers is not None else None
            if self._core.publish(subject, inbox, hdr, data) == 0:
                raise NoRespondersError(f"no responders on {subject}")
            msg = await sub.next_msg(timeout)
            if msg.status == 503:
                raise NoRespondersError(f"no responders on {subject}")
            return msg
        finally:
            sub._drop()

    async def flush(self) -> None:
        """Let the server's tasks run: publishes are routed synchronously, so a checkpoint is
        all a flush means in-process (work the server queues to its tasks may still be due)."""
        await trio.lowlevel.checkpoint()

    def jetstream(self, *, domain: str | None = None, timeout: float = 10.0) -> "JetStream":
        return JetStream(self, domain=domain, timeout=timeout)

    def _check_open(self) -> None:
        if self._core.closed:
            raise RuntimeError("client closed")


class JetStream:
    """JetStream helpers over `$JS.API`: streams, publish with ack, pull consumers, KV."""

    def __init__(self, nc: InProcClient, *, domain: str | None = None,
                 timeout: float = 10.0) -> None:
        self.nc = nc
        self.prefix = f"$JS.{domain}.API." if domain else "$JS.API."
        self.timeout = timeout

    async def api(self, subject: str, body: Any = None) -> dict[str, Any]:
        """One `$JS.API.<subject>` request; raises JetStreamError on an error reply."""
        data = b"" if body is None else json.dumps(body).encode()
        msg = await self.nc.request(self.prefix + subject, data, timeout=self.timeout)
        reply = json.loads(msg.data)
        if "error" in reply:
            raise JetStreamError(reply["error"])
        return reply

    # -- streams ----------------------------------------------------------------------------
    async def add_stream(self, name: str, subjects: list[str] | None = None, *,
                         storage: str = "file", max_age: float | None = None,
                         **config: Any) -> dict[str, Any]:
        """Create a stream; `max_age` in seconds, other fields as nats-server's JSON config
        (durations there in nanoseconds). File storage is nats-server's default."""
        cfg: dict[str, Any] = {"name": name, "subjects": subjects or [name], "storage": storage,
                               **config}
        if max_age is not None:
            cfg["max_age"] = int(max_age * _NS)
        return await self.api(f"STREAM.CREATE.{name}", cfg)

    async def stream_info(self, name: str) -> dict[str, Any]:
        return await self.api(f"STREAM.INFO.{name}")

    async def delete_stream(self, name: str) -> None:
        await self.api(f"STREAM.DELETE.{name}")

    async def publish(self, subject: str, data: bytes = b"", *,
                      headers: Mapping[str, str] | None = None, msg_id: str | None = None,
                      ttl: int | None = None) -> dict[str, Any]:
        """Publish and wait for the stream's ack: `{"stream": ..., "seq": ...}`. `ttl`: this
        message's TTL in whole seconds (the stream needs `allow_msg_ttl`)."""
        hdrs = dict(headers or {})
        if msg_id is not None:
            hdrs["Nats-Msg-Id"] = msg_id
        if ttl is not None:
            hdrs["Nats-TTL"] = str(int(ttl))
        msg = await self.nc.request(subject, data, headers=hdrs or None, timeout=self.timeout)
        ack = json.loads(msg.data)
        if "error" in ack:
            raise JetStreamError(ack["error"])
        return ack

    # -- consumers --------------------------------------------------------------------------
    async def add_consumer(self, stream: str, durable: str | None = None, *,
                           ack_wait: float | None = None, **config: Any) -> dict[str, Any]:
        """Create a pull consumer (explicit acks unless told); `ack_wait` in seconds."""
        cfg: dict[str, Any] = {"ack_policy": "explicit", **config}
        if durable:
            cfg["durable_name"] = durable
        if ack_wait is not None:
            cfg["ack_wait"] = int(ack_wait * _NS)
        subject = f"CONSUMER.CREATE.{stream}.{durable}" if durable else f"CONSUMER.CREATE.{stream}"
        return await self.api(subject, {"stream_name": stream, "config": cfg})

    async def fetch(self, stream: str, consumer: str, batch: int = 1, *,
                    timeout: float = 5.0) -> list[Msg]:
        """Up to `batch` messages from a pull consumer, waiting at most `timeout` seconds (trio
        time) for them; fewer (possibly none) when the request expires first."""
        inbox = self.nc.new_inbox()
        sub = Subscription(self.nc, inbox, None)
        body = json.dumps({"batch": batch, "expires": int(timeout * _NS)}).encode()
        got: list[Msg] = []
        try:
            self.nc._core.publish(f"{self.prefix}CONSUMER.MSG.NEXT.{stream}.{consumer}", inbox,
                                  None, body)
            # the server ends the request with a status (408 expired, 409 ...) at `timeout`;
            # the margin only guards against a request the server never answers
            with trio.move_on_after(timeout + 1.0):
                while len(got) < batch:
                    msg = await sub.next_msg(timeout=None)
                    if msg.status is None:
                        got.append(msg)
                    elif msg.status != 100:  # 100: heartbeat / flow control
                        break
        finally:
            sub._drop()
        return got

    # -- key-value --------------------------------------------------------------------------
    async def create_key_value(self, bucket: str, *, history: int = 1, ttl: float | None = None,
                               storage: str = "file", **config: Any) -> "KeyValue":
        """Create a KV bucket (the `KV_<bucket>` stream nats-py and nats.js make)."""
        cfg: dict[str, Any] = {
            "subjects": [f"$KV.{bucket}.>"], "max_msgs_per_subject": history,
            "discard": "new", "allow_rollup_hdrs": True, "deny_delete": True,
            "allow_direct": True, "num_replicas": 1, **config}
        await self.add_stream(f"KV_{bucket}", storage=storage, max_age=ttl, **cfg)
        return KeyValue(self, bucket)

    def key_value(self, bucket: str) -> "KeyValue":
        """An existing bucket."""
        return KeyValue(self, bucket)


class KeyValue:
    """get / put / delete / history on a KV bucket."""

    def __init__(self, js: JetStream, bucket: str) -> None:
        self.js = js
        self.bucket = bucket
        self.stream = f"KV_{bucket}"

    async def put(self, key: str, value: bytes) -> int:
        """Store `value`; returns its revision."""
        ack = await self.js.publish(f"$KV.{self.bucket}.{key}", value)
        return int(ack["seq"])

    async def get(self, key: str) -> bytes | None:
        """The current value, or None when the key is absent, deleted or purged."""
        try:
            r = await self.js.api(f"STREAM.MSG.GET.{self.stream}",
                                  {"last_by_subj": f"$KV.{self.bucket}.{key}"})
        except JetStreamError as e:
            if e.err_code == 10037:  # no message found
                return None
            raise
        m = r["message"]
        hdrs = base64.b64decode(m["hdrs"]) if m.get("hdrs") else None
        _, _, items = parse_headers(hdrs)
        if dict(items).get("KV-Operation") in ("DEL", "PURGE"):
            return None
        return base64.b64decode(m.get("data") or "")

    async def delete(self, key: str) -> int:
        ack = await self.js.publish(f"$KV.{self.bucket}.{key}", b"",
                                    headers={"KV-Operation": "DEL"})
        return int(ack["seq"])

    async def history(self, key: str) -> list[bytes]:
        """Every value the bucket still keeps for `key`, oldest first."""
        out: list[bytes] = []
        info = await self.js.stream_info(self.stream)
        seq = info["state"]["first_seq"]
        last = info["state"]["last_seq"]
        subject = f"$KV.{self.bucket}.{key}"
        while seq and seq <= last:
            try:
                r = await self.js.api(f"STREAM.MSG.GET.{self.stream}",
                                      {"seq": seq, "next_by_subj": subject})
            except JetStreamError as e:
                if e.err_code == 10037:
                    break
                raise
            m = r["message"]
            out.append(base64.b64decode(m.get("data") or ""))
            seq = int(m["seq"]) + 1
        return out
