"""The consumer's bulk delivery path gives the same bytes as its general path.

Two consumers with the same config read the same file stream, one allowed the bulk path
(`DeliveryMixin._burst_fast`, with `_took_many` handing a run of messages to the waiting pull
requests at once), one held to the general path (a route per message). Their MSG/HMSG frames,
read raw off the socket, must be identical byte for byte once the consumer name in the ack
reply is swapped (same stream and consumer sequences, stored timestamps, num_pending, subjects,
headers, payloads); and the bulk path must really have delivered the first one's messages.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from edgebus.jetstream.consumer.delivery import DeliveryMixin
from edgebus.jetstream.consumer.pull import PullMixin
from edgebus.transport import nats_conn

N = 600


class Raw:
    """A bare NATS connection (headers on) that collects MSG/HMSG frames whole."""

    def __init__(self, port: int, **auth: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self._line()  # INFO
        opts = {"verbose": False, "pedantic": False, "protocol": 1, "headers": True,
                "no_responders": True, **{("pass" if k == "password" else k): v
                                          for k, v in auth.items()}}
        self.send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
        while self._line() != b"PONG":
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def frames(self, n: int) -> list[bytes]:
        out: list[bytes] = []
        while len(out) < n:
            line = self._line()
            if line == b"PING":
                self.send(b"PONG\r\n")
                continue
            if not line.startswith((b"MSG ", b"HMSG ")):
                continue
            size = int(line.rsplit(b" ", 1)[1])
            while len(self.buf) < size + 2:
                self._fill()
            out.append(line + b"\r\n" + self.buf[:size + 2])
            self.buf = self.buf[size + 2:]
        return out

    def request(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        self.send(b"SUB _INBOX.req 99\r\nPUB %s _INBOX.req %d\r\n%s\r\n" % (subject.encode(), len(data), data))
        frame = self.frames(1)[0]
        while not frame.startswith(b"MSG _INBOX.req "):
            frame = self.frames(1)[0]   # (a push consumer's delivery still on its way)
        self.send(b"UNSUB 99\r\n")
        return json.loads(frame.split(b"\r\n", 1)[1][:-2])

    def close(self) -> None:
        self.sock.close()


def _publish(c: Raw, plain: bool = False) -> None:
    """N messages on S: on three subjects, every fourth with headers; or (`plain`) all on
    s.a without headers (runs the bulk path frames from parallel lists, Batch.run)."""
    r = c.request("$JS.API.STREAM.CREATE.S", {"name": "S", "subjects": ["s.>"], "storage": "file"})
    assert "error" not in r, r
    out = []
    for i in range(N):
        subj = b"s.a" if plain else b"s.%s" % (b"abc"[i % 3:i % 3 + 1])
        data = b"m%d" % i * (1 + i % 5)
        if i % 4 == 1 and not plain:
            hdr = b"NATS/1.0\r\nI: %d\r\n\r\n" % i
            out.append(b"HPUB %s %d %d\r\n%s%s\r\n" % (subj, len(hdr), len(hdr) + len(data), hdr, data))
        else:
            out.append(b"PUB %s %d\r\n%s\r\n" % (subj, len(data), data))
    c.send(b"".join(out) + b"PING\r\n")
    while c._line() != b"PONG":
        pass


def _read(port: int, name: str, config: dict[str, Any], kind: str) -> list[bytes]:
    c = Raw(port)
    try:
        return _read_open(c, name, config, kind, N)
    finally:
        c.close()


def _read_open(c: Raw, name: str, config: dict[str, Any], kind: str, n: int) -> list[bytes]:
    """Create consumer `name` on S and read its first `n` deliveries (pull requests of 100)."""
    if kind == "push":
        config = dict(config, deliver_subject="_INBOX.d")
    c.send(b"SUB _INBOX.a 1\r\nSUB _INBOX.b 2\r\nSUB _INBOX.d 3\r\n")
    r = c.request(f"$JS.API.CONSUMER.CREATE.S.{name}",
                  {"stream_name": "S", "config": dict(config, durable_name=name)})
    assert "error" not in r, r
    if kind != "push":
        reqs = []
        for k in range(n // 100):
            inbox = b"_INBOX.a" if kind == "one-inbox" or k % 2 == 0 else b"_INBOX.b"
            body = b'{"batch":100,"expires":30000000000}'
            reqs.append(b"PUB $JS.API.CONSUMER.MSG.NEXT.S.%s %s %d\r\n%s\r\n"
                        % (name.encode(), inbox, len(body), body))
        c.send(b"".join(reqs))
    return c.frames(n)


@pytest.mark.edgebus(jetstream=True)
@pytest.mark.parametrize("kind,config", [
    ("one-inbox", {"ack_policy": "none"}),           # pull, the run handed out at once
    ("one-inbox", {"ack_policy": "explicit"}),
    ("two-inboxes", {"ack_policy": "none"}),         # pull, a request picked per message
    ("push", {"ack_policy": "none"}),
    ("push", {"ack_policy": "explicit"}),
])
@pytest.mark.parametrize("plain", [False, True])
def test_bulk_path_gives_the_general_paths_bytes(edgebus_server, monkeypatch, kind, config, plain):
    bulk: dict[str, int] = {}
    framed_runs: list[int] = []
    run_frames = nats_conn.run_frames

    def counted_run_frames(*a: Any) -> Any:
        framed_runs.append(len(a[1]))
        return run_frames(*a)

    monkeypatch.setattr(nats_conn, "run_frames", counted_run_frames)
    runs: dict[str, int] = {}
    fast_ok, burst_fast, took_many = (DeliveryMixin._fast_ok, DeliveryMixin._burst_fast,
                                      PullMixin._took_many)

    def gated_fast_ok(self: Any) -> bool:
        return not self.name.startswith("SLOW") and fast_ok(self)

    def counted_burst(self: Any, *a: Any) -> int:
        n = burst_fast(self, *a)
        bulk[self.name] = bulk.get(self.name, 0) + n
        return n

    def counted_took_many(self: Any, *a: Any) -> int:
        runs[self.name] = runs.get(self.name, 0) + 1
        return took_many(self, *a)

    monkeypatch.setattr(DeliveryMixin, "_fast_ok", gated_fast_ok)
    monkeypatch.setattr(DeliveryMixin, "_burst_fast", counted_burst)
    monkeypatch.setattr(PullMixin, "_took_many", counted_took_many)
    port = edgebus_server.port
    c = Raw(port)
    try:
        _publish(c, plain)
    finally:
        c.close()
    fast = _read(port, "FAST", config, kind)
    n_runs = len(framed_runs)
    slow = _read(port, "SLOW", config, kind)
    assert len(framed_runs) == n_runs   # (the general path frames message by message)
    # plain messages handed out a run at a time (not per message: two inboxes) are framed
    # from the run's parallel lists; mixed subjects and headers never are
    if plain and kind != "two-inboxes":
        assert sum(framed_runs) == N
    else:
        assert not framed_runs
    assert bulk.get("FAST") == N and not bulk.get("SLOW")
    if kind == "one-inbox":
        assert runs.get("FAST") and not runs.get("SLOW")
    assert len(fast) == N and fast[0].startswith((b"MSG s.a ", b"HMSG s.a "))
    assert b".FAST.1.1.1." in fast[0] and b".FAST.1.%d.%d." % (N, N) in fast[-1]
    assert [f.replace(b".FAST.", b".SLOW.") for f in fast] == slow


RESPONDER = """
port: -1
jetstream { store_dir: "%s" }
authorization { users: [
  { user: admin, password: a }
  { user: u, password: u, permissions: { publish: { allow: ["$JS.API.>"] }, allow_responses: true } }
] }
"""


@pytest.mark.parametrize("kind", ["push", "one-inbox"])
def test_a_run_to_a_responder_grants_each_ack_subject(tmp_path, monkeypatch, kind):
    """A client whose only right to publish to an ack subject is `allow_responses` gets each
    delivery's reply granted, when the run went through the bulk path: its acks are taken
    (before, one Batch for the run would have skipped the grant and every ack would be a
    Permissions Violation)."""
    from edgebus.testing.embedded import EmbeddedServer
    from edgebus.transport.nats_conn import NatsConnection

    batches: list[int] = []
    deliver_batch = NatsConnection.deliver_batch

    def spied(self: Any, sub: Any, batch: Any, src: Any) -> None:
        if batch.replies:
            batches.append(len(batch.msgs))
        deliver_batch(self, sub, batch, src)

    monkeypatch.setattr(NatsConnection, "deliver_batch", spied)
    srv = EmbeddedServer(config=RESPONDER % tmp_path)
    srv.start()
    try:
        admin = Raw(srv.port, user="admin", password="a")
        _publish(admin)
        admin.close()
        c = Raw(srv.port, user="u", password="u")
        frames = _read_open(c, "ACKED", {"ack_policy": "explicit"}, kind, 100)
        acks = b"".join(b"PUB %s 0\r\n\r\n" % f.split(b"\r\n", 1)[0].split(b" ")[3]
                        for f in frames)
        c.send(acks + b"PING\r\n")
        lines = []
        while (line := c._line()) != b"PONG":
            lines.append(line)
        assert not [x for x in lines if x.startswith(b"-ERR")], lines
        info = c.request("$JS.API.CONSUMER.INFO.S.ACKED", {})
        assert info["ack_floor"]["stream_seq"] == 100, info
        c.close()
    finally:
        srv.close()
    assert batches  # the run did reach the connection as one batch with replies
