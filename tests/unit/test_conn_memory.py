"""The NATS connection driver over in-memory trio streams, with a virtual clock: liveness
(PING/PONG, stale connections), the auth timer, verbose/pedantic/echo, UNSUB max, slow
consumers (pending bytes, write deadline), and the 2.12+ wire additions.

The broker, the authenticator and the driver are the real ones; only the socket is replaced
by trio's memory streams, and `autojump_clock` makes minutes of timers pass instantly."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from edgebus.codec.nats import OP_ERR, OP_INFO, OP_MSG, OP_OK, OP_PING, OP_PONG, ClientParser
from edgebus.core.broker import Broker
from edgebus.options import Options
from edgebus.server import Server
from edgebus.transport import nats_conn
from edgebus.transport.nats_conn import NatsConnection

pytestmark = pytest.mark.trio


class Peer:
    """The client end: write raw bytes, read parsed server operations."""

    def __init__(self, stream: trio.abc.Stream, conn: NatsConnection) -> None:
        self.stream = stream
        self.conn = conn
        self.parser = ClientParser()
        self.ops: list[tuple] = []
        self.eof = False

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _more(self) -> bool:
        if self.eof:
            return False
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
            return False
        self.ops += self.parser.feed(data)
        return True

    async def op(self) -> tuple:
        while not self.ops:
            if not await self._more():
                raise EOFError("server closed")
        return self.ops.pop(0)

    async def ops_until_closed(self) -> list[tuple]:
        while await self._more():
            pass
        out, self.ops = self.ops, []
        return out

    async def sync(self) -> list[tuple]:
        """Send PING; return everything before the PONG."""
        await self.send(b"PING\r\n")
        before = []
        while True:
            o = await self.op()
            if o == (OP_PONG,):
                return before
            before.append(o)


async def connect(nursery: trio.Nursery, broker: Broker, *, lockstep: bool = False,
                  hello: bytes | None = b'CONNECT {"verbose":false,"pedantic":false}\r\n') -> Peer:
    client, server = (trio.testing.lockstep_stream_pair() if lockstep
                      else trio.testing.memory_stream_pair())
    conn = NatsConnection(broker, server)
    nursery.start_soon(conn.run)
    peer = Peer(client, conn)
    info = await peer.op()
    assert info[0] == OP_INFO
    peer.info = json.loads(info[1])
    if hello:
        await peer.send(hello)
    return peer


def broker(**opts) -> Broker:
    o = Options()
    for k, v in opts.items():
        setattr(o, k, v)
    return Broker(o)


# -- basics ---------------------------------------------------------------------------------

async def test_info_first_then_ping_pong():
    b = broker()
    async with trio.open_nursery() as n:
        p = await connect(n, b, hello=None)
        assert p.info["max_payload"] == 1048576 and p.info["headers"] is True
        assert p.info["client_id"] == p.conn.cid
        await p.send(b"PING\r\n")
        assert await p.op() == (OP_PONG,)
        n.cancel_scope.cancel()


async def test_verbose_and_pedantic_are_on_by_default():
    b = broker()
    async with trio.open_nursery() as n:
        p = await connect(n, b, hello=b"CONNECT {}\r\n")
        assert await p.op() == (OP_OK,)
        await p.send(b"SUB foo.> 1\r\nPUB foo.* 1\r\nx\r\n")
        assert await p.op() == (OP_OK,)  # SUB
        assert await p.op() == (OP_ERR, b"Invalid Publish Subject")
        assert await p.op() == (OP_OK,)  # the PUB is still accepted ...
        assert await p.op() == (OP_MSG, b"foo.*", b"1", None, None, b"x")  # ... and routed
        n.cancel_scope.cancel()


async def test_echo_off_and_on():
    b = broker()
    async with trio.open_nursery() as n:
        quiet = await connect(n, b, hello=b'CONNECT {"verbose":false,"echo":false}\r\n')
        loud = await connect(n, b)
        for p in (quiet, loud):
            await p.send(b"SUB e 1\r\n")
            await p.sync()
        await quiet.send(b"PUB e 1\r\nq\r\n")
        await loud.send(b"PUB e 1\r\nl\r\n")
        assert await quiet.sync() == [(OP_MSG, b"e", b"1", None, None, b"l")]
        assert await loud.sync() == [(OP_MSG, b"e", b"1", None, None, b"q"),
                                     (OP_MSG, b"e", b"1", None, None, b"l")]
        n.cancel_scope.cancel()


async def test_unsub_max_delivers_exactly_n():
    b = broker()
    async with trio.open_nursery() as n:
        p = await connect(n, b)
        await p.send(b"SUB s 7\r\nUNSUB 7 3\r\n" + b"PUB s 1\r\nx\r\n" * 5)
        got = await p.sync()
        assert got == [(OP_MSG, b"s", b"7", None, None, b"x")] * 3
        assert p.conn.subs == {} and b.global_account.sublist.count == 0
        n.cancel_scope.cancel()


async def test_runs_of_identical_pubs_keep_per_message_semantics():
    """Back-to-back identical PUB lines are routed as a run; the result must be what one by
    one routing gives: per-message order across one connection's subscriptions, exact
    auto-unsubscribe counts, echo, queue groups (one member per message), internal clients."""
    from edgebus.core.client import InternalClient
    b = broker()
    seen = []
    internal = InternalClient(b)
    internal.subscribe("r.*", lambda sub, msg: seen.append(msg.data))
    async with trio.open_nursery() as n:
        p = await connect(n, b)
        other = await connect(n, b, hello=b'CONNECT {"verbose":false,"echo":false}\r\n')
        await p.send(b"SUB r.x 1\r\nSUB r.* 2\r\nSUB r.x 3\r\nUNSUB 3 2\r\n"
                     b"SUB r.x q 4\r\nSUB r.x q 5\r\n")
        await other.send(b"SUB r.> 9\r\n")
        await p.sync()
        await other.sync()
        await p.send(b"PUB r.x 2\r\nab\r\n" * 3)
        got = await p.sync()
        plain = [(o[2], o[5]) for o in got if o[2] in (b"1", b"2", b"3")]
        # (nats-server's order for r.x: the literal node's subscriptions, then r.*)
        assert plain == [(b"1", b"ab"), (b"3", b"ab"), (b"2", b"ab")] * 2 + \
            [(b"1", b"ab"), (b"2", b"ab")]
        assert len([o for o in got if o[2] in (b"4", b"5")]) == 3  # one member per message
        assert await other.sync() == [(OP_MSG, b"r.x", b"9", None, None, b"ab")] * 3
        # echo off: the publisher's own run is not delivered back to it
        await other.send(b"PUB r.y 1\r\nz\r\n" * 4)
        assert await other.sync() == []
        assert [o[5] for o in await p.sync()] == [b"z"] * 4  # only r.* (sid 2) matches r.y
        assert seen == [b"ab"] * 3 + [b"z"] * 4
        n.cancel_scope.cancel()


async def test_connect_applies_to_ops_in_the_same_read():
    b = broker()
    async with trio.open_nursery() as n:
        p = await connect(n, b, hello=b'CONNECT {"verbose":false,"headers":true}\r\n'
                                      b'SUB h 1\r\nHPUB h 12 13\r\nNATS/1.0\r\n\r\nx\r\n')
        assert await p.sync() == [(OP_MSG, b"h", b"1", None, b"NATS/1.0\r\n\r\n", b"x")]
        n.cancel_scope.cancel()


async def test_protocol_error_sends_err_then_closes():
    b = broker()
    async with trio.open_nursery() as n:
        p = await connect(n, b)
        await p.send(b"PING\r\nBOGUS\r\n")
        assert await p.ops_until_closed() == [(OP_PONG,), (OP_ERR, b"Unknown Protocol Operation")]
        assert p.conn.closed and p.conn.close_reason == "Protocol Violation"


async def test_client_close_cleans_up():
    b = broker()
    async with trio.open_nursery() as n:
        p = await connect(n, b)
        await p.send(b"SUB a 1\r\nSUB b 2\r\n")
        await p.sync()
        assert b.global_account.sublist.count == 2
        await p.stream.aclose()
        while not p.conn.closed:
            await trio.sleep(0.01)
        assert b.global_account.sublist.count == 0
        assert p.conn.cid not in b.clients


# -- liveness ---------------------------------------------------------------------------------

async def test_stale_connection_after_ping_max_unanswered(autojump_clock):
    b = broker(ping_interval=10.0, ping_max=2)
    async with trio.open_nursery() as n:
        p = await connect(n, b)  # CONNECT sent at virtual time `start`
        start = trio.current_time()
        assert await p.op() == (OP_PING,)
        # the first PING comes early after CONNECT (2 s + up to 20 %) for an RTT sample
        assert 2.0 <= trio.current_time() - start <= 2.4
        assert await p.ops_until_closed() == [(OP_PING,), (OP_ERR, b"Stale Connection")]
        assert 22.0 <= trio.current_time() - start <= 22.4  # then one PING per interval
        assert p.conn.close_reason == "Stale Connection"


async def test_no_early_ping_before_connect(autojump_clock):
    """Before CONNECT the first PING waits a whole interval (nats-server's accept timer)."""
    b = broker(ping_interval=30.0, ping_max=2)
    async with trio.open_nursery() as n:
        p = await connect(n, b, hello=None)
        start = trio.current_time()
        assert await p.op() == (OP_PING,)
        assert 30.0 <= trio.current_time() - start < 30.1
        n.cancel_scope.cancel()


async def test_answering_pings_keeps_the_connection(autojump_clock):
    b = broker(ping_interval=10.0, ping_max=2)
    async with trio.open_nursery() as n:
        p = await connect(n, b)
        for _ in range(6):  # a minute of virtual time
            assert await p.op() == (OP_PING,)
            await p.send(b"PONG\r\n")
        assert not p.conn.closing and p.conn.rtt_ns >= 0
        n.cancel_scope.cancel()


async def test_busy_client_is_not_pinged(autojump_clock):
    """A client that keeps publishing is alive: after the first RTT sample the server skips
    its PINGs (and so never calls it stale), as nats-server does."""
    b = broker(ping_interval=10.0, ping_max=2)
    async with trio.open_nursery() as n:
        p = await connect(n, b)
        assert await p.op() == (OP_PING,)
        await p.send(b"PONG\r\n")
        for _ in range(20):
            await trio.sleep(3)
            await p.send(b"PUB x 0\r\n\r\n")
        assert not p.conn.closing
        assert p.ops == [] and not await _pending_ops(p)
        n.cancel_scope.cancel()


async def _pending_ops(p: Peer) -> list[tuple]:
    with trio.move_on_after(0.001):
        await p._more()
    out, p.ops = p.ops, []
    return out


# -- authentication ---------------------------------------------------------------------------

def secured_broker(**opts) -> Broker:
    """A broker with the real token authenticator installed, as Server.run does."""
    from edgebus.security.setup import configure
    o = Options()
    o.authorization = {"token": "s3cret"}
    for k, v in opts.items():
        setattr(o, k, v)
    srv = Server(o)
    configure(srv)
    return srv.broker


async def test_auth_timeout(autojump_clock):
    b = secured_broker(auth_timeout=0.5)
    async with trio.open_nursery() as n:
        p = await connect(n, b, hello=None)
        assert p.info["auth_required"] is True
        start = trio.current_time()
        assert await p.ops_until_closed() == [(OP_ERR, b"Authentication Timeout")]
        assert 0.5 <= trio.current_time() - start < 1.0
        assert p.conn.close_reason == "Authentication Timeout"


async def test_auth_default_timeout_is_two_seconds(autojump_clock):
    b = secured_broker()
    async with trio.open_nursery() as n:
        p = await connect(n, b, hello=None)
        start = trio.current_time()
        assert await p.ops_until_closed() == [(OP_ERR, b"Authentication Timeout")]
        assert 2.0 <= trio.current_time() - start < 2.5


async def test_auth_ok_cancels_the_timer(autojump_clock):
    b = secured_broker(auth_timeout=0.5)
    async with trio.open_nursery() as n:
        p = await connect(n, b, hello=b'CONNECT {"verbose":false,"auth_token":"s3cret"}\r\n')
        await trio.sleep(5)
        assert await p.sync() == [(OP_PING,)]  # the keep-alive, no -ERR
        assert not p.conn.closing and p.conn.authed
        n.cancel_scope.cancel()


async def test_op_before_connect_with_auth_is_a_violation():
    b = secured_broker()
    async with trio.open_nursery() as n:
        p = await connect(n, b, hello=b"SUB foo 1\r\n")
        assert await p.ops_until_closed() == [(OP_ERR, b"Authorization Violation")]


async def test_wrong_token():
    b = secured_broker()
    async with trio.open_nursery() as n:
        p = await connect(n, b, hello=b'CONNECT {"auth_token":"nope"}\r\n')
        assert await p.ops_until_closed() == [(OP_ERR, b"Authorization Violation")]


# -- slow consumers ---------------------------------------------------------------------------

async def test_slow_consumer_by_max_pending():
    """A subscriber that stops reading is cut off once its pending output exceeds
    max_pending; no -ERR is sent (nats-server closes silently); the publisher is unharmed."""
    b = broker(max_pending=64 * 1024)
    async with trio.open_nursery() as n:
        sub = await connect(n, b, lockstep=True)
        await sub.send(b"SUB slow 1\r\nPING\r\n")
        assert await sub.op() == (OP_PONG,)
        pub = await connect(n, b)
        chunk = b"PUB slow 1000\r\n" + b"z" * 1000 + b"\r\n"
        for _ in range(200):  # 200 kB for a reader that reads nothing
            await pub.send(chunk)
            if sub.conn.closed:
                break
        assert await pub.sync() == []
        while not sub.conn.closed:
            await trio.sleep(0.01)
        assert sub.conn.close_reason == "Slow Consumer (Pending Bytes)"
        assert b.slow_consumers == 1 and b.global_account.slow_consumers == 1
        assert b.global_account.sublist.count == 0
        # what the slow reader still gets is whole messages, then EOF, never an -ERR
        rest = await sub.ops_until_closed()
        assert rest and all(o[0] == OP_MSG for o in rest)
        n.cancel_scope.cancel()


async def test_slow_consumer_by_write_deadline(autojump_clock):
    b = broker(write_deadline=2.0)
    async with trio.open_nursery() as n:
        sub = await connect(n, b, lockstep=True)
        await sub.send(b"SUB s 1\r\nPING\r\n")
        assert await sub.op() == (OP_PONG,)
        pub = await connect(n, b)
        await pub.send(b"PUB s 1\r\nx\r\n")
        await pub.sync()
        start = trio.current_time()
        while not sub.conn.closed:
            await trio.sleep(0.1)
        assert 2.0 <= trio.current_time() - start < 3.0
        assert sub.conn.close_reason == "Slow Consumer (Write Deadline)"
        n.cancel_scope.cancel()


# -- no responders and the 2.12 additions -----------------------------------------------------

async def test_no_responders_goes_to_own_plain_subscription(monkeypatch):
    monkeypatch.setattr(nats_conn, "PROTO_2_12", False)
    b = broker()
    async with trio.open_nursery() as n:
        p = await connect(n, b, hello=b'CONNECT {"verbose":false,"headers":true,'
                                      b'"no_responders":true}\r\n')
        await p.send(b"SUB _INBOX.q x q1\r\nSUB _INBOX.* 9\r\nPUB svc _INBOX.q 0\r\n\r\n")
        assert await p.sync() == [(OP_MSG, b"_INBOX.q", b"9", None, b"NATS/1.0 503\r\n\r\n", b"")]
        n.cancel_scope.cancel()


async def test_2_12_wire_additions(monkeypatch):
    monkeypatch.setattr(nats_conn, "PROTO_2_12", True)
    b = broker()
    async with trio.open_nursery() as n:
        p = await connect(n, b, hello=b'CONNECT {"verbose":false,"headers":true,'
                                      b'"no_responders":true,"protocol":1}\r\n')
        await p.send(b"PING\r\n")
        assert await p.op() == (OP_PONG,)
        info = await p.op()
        assert info[0] == OP_INFO
        info = json.loads(info[1])
        assert info["connect_info"] is True and info["remote_account"] == "$G"
        assert info["client_id"] == p.conn.cid
        await p.send(b"SUB in.* 1\r\nPUB svc.a in.1 0\r\n\r\n")
        assert await p.sync() == [(OP_MSG, b"in.1", b"1", None,
                                   b"NATS/1.0 503\r\nNats-Subject: svc.a\r\n\r\n", b"")]
        n.cancel_scope.cancel()




async def test_mixed_subjects_in_one_read_match_message_by_message(monkeypatch):
    """A read's PUBs with nothing to check go to the router together (core.router.route_msgs),
    handed to the subscriptions they share as batches. Every client must get exactly what
    message-by-message routing gives (a pedantic publisher's PUBs go one at a time): order
    across subjects and across a PING, headers (and a client without them), echo off, UNSUB
    max reached in the middle of a read, a queue group, a client with two matching
    subscriptions, delivery permissions, an in-process subscriber, a PUB with a reply and a
    reserved subject in between."""
    from edgebus.core.client import InternalClient
    from edgebus.core.permissions import Permissions
    batches = []
    real = NatsConnection.deliver_batch

    def counting(self, sub, batch, src):
        batches.append(len(batch.msgs))
        real(self, sub, batch, src)

    monkeypatch.setattr(NatsConnection, "deliver_batch", counting)
    hdr = b"NATS/1.0\r\nA: 1\r\n\r\n"
    read = (b"PUB m.1 2\r\nab\r\nPUB m.2 2\r\ncd\r\nHPUB m.3 %d %d\r\n%sh\r\n"
            % (len(hdr), len(hdr) + 1, hdr) +
            b"PUB m.x 1\r\nx\r\nPUB m.4 0\r\n\r\nPUB m.q 1\r\nq\r\nPUB m.5 1\r\n5\r\nPING\r\n"
            b"PUB m.i 1\r\ni\r\nPUB m.6 1\r\n6\r\nPUB m.7 1\r\n7\r\nPUB m.8 r.1 1\r\n8\r\n"
            b"PUB m.9 1\r\n9\r\nPUB _GR_.x 1\r\ng\r\nPUB m.10 2\r\n10\r\n" +
            b"".join(b"PUB m.%d 3\r\nn%02d\r\n" % (i % 7, i) for i in range(40)))

    async def scenario(pedantic: bool) -> list[list[tuple]]:
        b = broker()
        seen = []
        InternalClient(b).subscribe("m.i", lambda sub, msg: seen.append((msg.subject, msg.data)))
        async with trio.open_nursery() as n:
            pub = await connect(n, b, hello=b'CONNECT {"verbose":false,"pedantic":%s,'
                                b'"headers":true,"echo":false}\r\n' % (b"true" if pedantic else b"false"))
            s1 = await connect(n, b, hello=b'CONNECT {"verbose":false,"headers":true}\r\n')
            s2 = await connect(n, b)  # no headers
            s3 = await connect(n, b)
            s4 = await connect(n, b, hello=b'CONNECT {"verbose":false,"headers":true}\r\n')
            await pub.send(b"SUB m.* 1\r\n")
            await s1.send(b"SUB m.* 1\r\nSUB m.x 2\r\n")
            await s2.send(b"SUB m.> 7\r\nUNSUB 7 5\r\n")
            await s3.send(b"SUB m.q g 1\r\nSUB m.* 2\r\n")
            await s4.send(b"SUB m.* 4\r\n")
            for p in (pub, s1, s2, s3, s4):
                await p.sync()
            s4.conn.permissions = Permissions.from_config({"subscribe": {"deny": ["m.3", "m.5"]}})
            s4.conn.deny_filter = True
            await pub.send(read)
            # (the publisher's PING in the read answers the first sync)
            got = [await pub.sync() + [(OP_PONG,)] + await pub.sync()]
            got += [await p.sync() for p in (s1, s2, s3, s4)]
            n.cancel_scope.cancel()
        return got + [seen]

    one_by_one = await scenario(True)
    assert not batches
    together = await scenario(False)
    assert batches and max(batches) > 10
    assert together == one_by_one
    pub, s1, s2, s3, s4, seen = together
    assert pub == [(OP_PONG,), (OP_ERR, b'Permissions Violation for Publish to "_GR_.x"')]
    assert [o[5] for o in s2] == [b"ab", b"cd", b"h", b"x", b""]  # max 5; no headers
    assert s2[2][4] is None and [o for o in s1 if o[1] == b"m.3"][0][4] == hdr
    assert [o[2] for o in s1 if o[1] == b"m.x"] == [b"2", b"1"]  # (the literal first)
    assert not [o for o in s4 if o[1] in (b"m.3", b"m.5")] and len(s4) == 40
    assert seen == [("m.i", b"i")]
