"""The NATS client-protocol connection driver, for any trio byte stream.

One `NatsConnection` per accepted TCP, TLS or WebSocket connection (or an in-memory stream in
tests). It owns a nursery with three tasks: the reader (parse many operations per read and act
on them synchronously), the writer (`send_all` of everything pending in the outbound buffer)
and the pinger. Deliveries from other clients append to the outbound buffer; nothing on the
message path creates a task or sends on a channel.

The hot path, in order: the reader reads the socket directly on plain TCP; the parser hands over
runs of identical PUB lines as one operation, routed as a run (`core.router.route` with several
payloads, one formatted append per subscriber); at the end of the read the reader writes the output it caused
straight to each idle receiver's socket, waking a writer task only for what the kernel did not
take. Pending output counts against `max_pending` (slow consumer), and a publisher whose
receivers are over 3/4 of it waits up to 10 ms per read for them (nats-server's stall).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import socket
import ssl
from operator import itemgetter
from typing import Any, Sequence

import trio

from .. import NATS_VERSION
from ..codec import nats as proto
from ..codec.nats import (OP_CONNECT, OP_ERR, OP_INFO, OP_PING, OP_PONG, OP_PUB, OP_PUBS, OP_SUB,
                          OP_UNSUB, append_msgs, batch_frames, err_frame, run_frames)
from ..core.client import CLIENT, Client
from ..core.contract import Batch, deliver_each
from ..core.outbox import Outbox, ReadBatch
from ..core.router import route, route_msgs
from ..core.subject import valid_literal_subject, valid_subject
from ..core.sublist import Subscription

log = logging.getLogger("edgebus.conn")


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("-")[0].split(".")[:3])


# Wire behaviours nats-server added in 2.12, used when the version we advertise has them:
# the INFO (connect_info) after a protocol-1 client's first PONG, and Nats-Subject in the
# no-responders status. A server that says it is 2.11 behaves like 2.11.
PROTO_2_12 = _version(NATS_VERSION) >= (2, 12, 0)

_NO_RESPONDERS_HDR = b"NATS/1.0 503\r\n\r\n"
# reply prefixes a client may not use: service-import replies, JetStream acks, gateway replies
_RESERVED_REPLY_PREFIXES = (b"_R_.", b"$JS.ACK.", b"_GR_.")
# subjects a client may not publish to: gateway-routed replies, raft (outside $SYS)
_RESERVED_SUBJECT_PREFIXES = (b"_GR_.", b"$NRG.")
# their first bytes: a subject that starts otherwise needs no closer look (a PUB's subject is
# never empty)
_RESERVED_FIRST = frozenset(p[0] for p in _RESERVED_SUBJECT_PREFIXES)
# a PUB operation's headers and payload (codec.nats: (OP_PUB, subject, reply, hdr, payload))
_hdr_of = itemgetter(3)
_payload_of = itemgetter(4)
# Batch.framed keys of the NATS framing, with and without headers
_FRAMED = ("nats", "nats-headers")


class NatsConnection(Client, Outbox):
    kind = CLIENT

    def __init__(self, broker: Any, stream: trio.abc.Stream, *, conn_type: str = "nats",
                 remote: tuple[str, int] = ("", 0), tls: dict[str, Any] | None = None,
                 listener: str = "client", auth: Any = None, no_auth_user: str | None = None,
                 tls_context: Any = None, tls_first: bool = False, tls_timeout: float = 2.0,
                 cookie_creds: dict[str, str] | None = None, tls_peer_check: Any = None) -> None:
        super().__init__(broker)
        # WebSocket cookies (jwt/user/pass/auth_token) that fill CONNECT fields left empty
        self.cookie_creds = cookie_creds
        o = broker.options
        self.type = conn_type
        self.stream = stream
        self.remote = remote
        self.tls = tls or {}
        self.listener = listener
        self.auth = auth or broker.auth
        self.no_auth_user = no_auth_user
        self.parser = proto.ServerParser(o.max_payload, o.max_control_line)
        self.parser.batch = True  # runs of identical PUB lines arrive as one OP_PUBS
        # the outbox; fast-producer stall, as nats-server: a subscriber with more than 3/4 of
        # max_pending queued makes the publishing connection wait (at most 10 ms per read)
        self._outbox_init(o.max_pending)
        self.verbose = True
        self.pedantic = True
        self.headers = False
        self.protocol = 0
        self.connected = False
        self.auth_required = self.auth.required_for(listener)
        self.authed = not self.auth_required
        self.nonce: str | None = None
        self.pings_out = 0
        self.rtt_ns = 0
        self._ping_sent_at = 0.0
        self.last_rx = 0.0
        self.closing = False
        self._scope: trio.CancelScope | None = None
        self.resp_perms: dict[str, list] = {}  # reply subject -> [remaining, expires_at]
        self.auth_expires: float | None = None
        self.jwt: str | None = None
        self.nkey: str | None = None
        self.tls_context = tls_context
        self.tls_first = tls_first
        self.tls_timeout = tls_timeout
        # async check(ssl_stream, log_prefix) run after the handshake (ocsp_peer); raises SSLError
        self.tls_peer_check = tls_peer_check
        self.peer_cert: Any = None
        self.connect_opts: dict[str, Any] = {}  # kept for re-authentication on reload
        self.auth_extra: Any = None  # authenticator's identity details ($SYS events, USER.INFO)
        self.deny_filter = False  # a wildcard sub overlaps a subscribe deny entry
        self._peer_gone = False  # the client closed (seen with its last data): write nothing more
        # the end of each read the reader handles (core.outbox): output it caused is sent then
        self.read_batch = ReadBatch()

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        b = self.broker
        b.register(self)
        try:
            info = self.make_info()
            if self.tls_context is not None:
                if not await self._start_tls(proto.info_frame(info)):
                    return
            else:
                self.enqueue(proto.info_frame(info))
            if b.num_client_connections() > b.options.max_connections:
                self.close("Maximum Connections Exceeded", proto.ERR_MAX_CONNECTIONS)
            if self.authed:
                self._bind_default_account()
            async with trio.open_nursery() as n:
                self._scope = n.cancel_scope
                self._nursery = n
                n.start_soon(self._writer)
                if self._pending_expiry is not None:
                    n.start_soon(self._pending_expiry)
                if not self.closing:
                    n.start_soon(self._reader)
                    n.start_soon(self._pinger)
                    if self.auth_required:
                        n.start_soon(self._auth_timer)
        finally:
            self.closed = True
            self.stop_ns = b.clock.now_ns()
            if not self.close_reason:
                self.close_reason = "Server Shutdown" if b.shutting_down else "Client Closed"
            self.drop_all_subs()
            b.unregister(self, self.close_reason)
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1):
                    try:
                        await self.stream.aclose()
                    except Exception:
                        pass

    async def _start_tls(self, info: bytes) -> bool:
        """Upgrade to TLS: INFO goes first in plain text unless handshake_first is set."""
        raw = self.stream
        try:
            if not self.tls_first:
                await raw.send_all(info)
                if self.broker.options.allow_non_tls and not await self._client_starts_tls(raw):
                    return True  # plain-text client on a TLS-optional listener
            ssl_stream = trio.SSLStream(raw, self.tls_context, server_side=True)
            with trio.move_on_after(self.tls_timeout) as cs:
                await ssl_stream.do_handshake()
            if cs.cancelled_caught:
                self.close_reason = "TLS Handshake Error"
                if not self.tls_first:
                    try:
                        await raw.send_all(err_frame(proto.ERR_TLS_REQUIRED))
                    except Exception:
                        pass
                return False
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.debug("cid=%d TLS handshake failed: %s", self.cid, e)
            self.close_reason = "TLS Handshake Error"
            return False
        if self.tls_peer_check is not None:
            prefix = f"{self.remote[0]}:{self.remote[1]} - cid:{self.cid} - "
            try:
                await self.tls_peer_check(ssl_stream, prefix)
            except OSError:  # ssl.SSLError, logged by the check: refused as by the handshake
                self.close_reason = "TLS Handshake Error"
                return False
        self.stream = ssl_stream
        try:
            self.peer_cert = ssl_stream.getpeercert(binary_form=True)  # DER, for verify_and_map
        except Exception:
            self.peer_cert = None
        if self.tls_first:
            self.enqueue(info)
        return True

    async def _client_starts_tls(self, raw: Any) -> bool:
        """allow_non_tls: peek at the first byte; 0x16 opens a TLS handshake."""
        import socket as _socket
        sock = getattr(raw, "socket", None)
        if sock is None:
            return True
        try:
            first = await sock.recv(1, _socket.MSG_PEEK)
        except OSError:
            return True
        return bool(first[:1] == b"\x16")

    def make_info(self) -> dict[str, Any]:
        info = self.broker.info_base()
        info["client_id"] = self.cid
        if self.remote[0]:
            info["client_ip"] = self.remote[0]
        if self.auth_required:
            advertise = getattr(self.auth, "advertise_for", None)
            if advertise is None or advertise(self.listener):
                info["auth_required"] = True
        if getattr(self.auth, "nonce", False):
            self.nonce = base64.urlsafe_b64encode(os.urandom(11)).decode().rstrip("=")
            info["nonce"] = self.nonce
        info.update(self.tls)
        if self.tls_context is not None and self.broker.options.allow_non_tls:
            # TLS is offered, not required: the client picks by starting a handshake or not
            info.pop("tls_required", None)
            info["tls_available"] = True
        if self.broker.lame_duck:
            info["ldm"] = True
        return info

    def close(self, reason: str = "Client Closed", err: str | None = None) -> None:
        """Close after flushing what is pending (and `err` as -ERR, if given)."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        if err:
            self.out += err_frame(err)
        # the writer flushes and then cancels the nursery
        self._release_writer()

    def kill(self, reason: str) -> None:
        """Close at once, dropping pending output (slow consumer, shutdown)."""
        self.closing = True
        if not self.close_reason:
            self.close_reason = reason
        self.out = bytearray()
        if self._scope is not None:
            self._scope.cancel()
        self._release_writer()

    # -- output (core.outbox.Outbox: buffer, slow consumer rule, wake-up, writer loop) -----
    def enqueue(self, data: bytes) -> None:
        self.out += data
        self.wake()

    def _stop_writing(self) -> bool:  # (core.outbox.Outbox hook)
        return self._peer_gone  # nothing may follow the client's close_notify

    async def _ready_to_write(self) -> bool:  # (core.outbox.Outbox hook)
        if type(self.stream) is trio.SSLStream and _tls_input_waiting(self.stream):
            # the client sent something meanwhile, maybe its close_notify: let the reader
            # see it first (a few turns at most: a busy client must not stall us)
            for _ in range(3):
                await trio.lowlevel.checkpoint()
                if self._peer_gone or not _tls_input_waiting(self.stream):
                    break
            if self._peer_gone or not self.out:
                return False
        return True

    # -- delivery (the core.contract.Subscriber method, called by core.router.route) -------
    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None, hdr: bytes | None,
                payloads: Sequence[bytes], src: Any, on: bytes | None) -> None:
        """MSG/HMSG frames for `sub` (codec.nats.append_msgs) into the outbound buffer."""
        if self.closing:
            return
        perms = self.permissions
        if perms is not None and self.deny_filter and perms.delivery_denied(
                subject.decode("utf-8", "surrogateescape"), sub.queue):
            return
        out = self.out
        heads = sub.extra  # (a NATS subscription's extra: its MSG heads per subject)
        if heads is None:
            heads = sub.extra = {}
        self.out_bytes += append_msgs(out, subject, sub.sid, reply,
                                      hdr if self.headers else None, payloads, heads)
        self.out_msgs += len(payloads)
        if reply and perms is not None and perms.resp_max:
            self._grant_response(reply.decode("utf-8", "surrogateescape"))
        if len(out) + self.inflight > self._stall_at:
            self._after_append()  # the slow consumer rule and the stall (core.outbox)
        elif self._parked and not self._flush_queued:
            self._wake()

    takes_batches = True  # (core.contract.Subscriber: a delivery only frames into `out`)

    def deliver_batch(self, sub: Subscription, batch: Batch, src: Any) -> None:
        """The frames of `batch` (codec.nats.batch_frames, made once for all the NATS
        subscriptions that get the batch) joined with the sid of `sub`."""
        if self.closing:
            return
        perms = self.permissions
        if perms is not None and (self.deny_filter or (batch.replies and perms.resp_max)):
            # delivery permissions, or replies this client may answer: message by message
            deliver_each(self, sub, batch, src)
            return
        headers = self.headers
        key = _FRAMED[headers]
        framed = batch.framed.get(key)
        if framed is None:
            run = batch.run
            framed = batch.framed[key] = run_frames(*run) if run is not None \
                else batch_frames(batch.msgs, headers)
        pieces, nbytes = framed
        out = self.out
        out += sub.sid.join(pieces)
        self.out_bytes += nbytes
        self.out_msgs += len(batch.msgs)
        if len(out) + self.inflight > self._stall_at:
            self._after_append()  # the slow consumer rule and the stall (core.outbox)
        elif self._parked and not self._flush_queued:
            self._wake()

    def _grant_response(self, reply: str) -> None:
        p = self.permissions
        # negative max / expires mean unlimited (nats-server ResponsePermission)
        exp = trio.current_time() + p.resp_expires if p.resp_expires > 0 else float("inf")
        self.resp_perms[reply] = [p.resp_max, exp]
        if len(self.resp_perms) > 10_000:
            now = trio.current_time()
            for k in [k for k, v in self.resp_perms.items() if v[1] < now]:
                del self.resp_perms[k]

    # -- reader ---------------------------------------------------------------------------
    async def _reader(self) -> None:
        stream = self.stream
        size = 65536
        # a busy publisher is read more at a time, but one read's deliveries must not be able
        # to push a subscriber past max_pending before the fast-producer stall can act
        top = min(524288, max(65536, self.max_pending // 8))
        raw = self._raw_socket()
        waited = True
        try:
            while not self.closing:
                if raw is None:
                    data = await stream.receive_some(size)
                    if data and type(stream) is trio.SSLStream:
                        data = self._read_on_tls(stream, data, size)
                else:
                    # plain TCP: read the socket directly (trio's stream layers cost a few
                    # microseconds per read); wait only when it has nothing, and yield once per
                    # read while it keeps having data, so a busy publisher cannot starve others
                    try:
                        data = raw.recv(size)
                    except (BlockingIOError, InterruptedError):
                        await trio.lowlevel.wait_readable(raw)
                        waited = True
                        continue
                    if not waited:
                        await trio.lowlevel.checkpoint()
                    waited = False
                if not data:
                    if type(stream) is trio.SSLStream:
                        # close_notify: nothing may follow it (the client's TLS stack would
                        # report an error), so what is pending is dropped
                        self.kill("Client Closed")
                    else:
                        self.close("Client Closed")  # a half-closed client still reads
                    return
                if len(data) == size and size < top:
                    size *= 2
                self.last_activity_ns = self.broker.clock.now_ns()
                batch = self.read_batch
                batch.begin()
                try:
                    stop = await self._handle(data)
                finally:
                    batch.end()
                    self.settle()
                if stop:
                    return
                if self._peer_gone:
                    self.kill("Client Closed")
                    return
                if batch.stall:
                    await batch.wait_stalled()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.close("Client Closed")

    def _read_on_tls(self, stream: Any, data: Any, size: int) -> Any:
        """Take the complete records the client has already sent after this read, without
        waiting for more. A client that publishes and closes sends its last PUBs and its
        close_notify together: seeing the close_notify before handling the PUBs lets the
        deliveries back to it be dropped (`_peer_gone`) instead of written after it, which
        the client's TLS stack reports as an error (APPLICATION_DATA_AFTER_CLOSE_NOTIFY).
        trio's SSLStream has no non-blocking read, so this reads its (private) SSLObject and
        feeds its receive buffer from the kernel's; a partial record stays for the next read."""
        obj = getattr(stream, "_ssl_object", None)
        incoming = getattr(stream, "_incoming", None)
        sock = _raw_of(getattr(stream, "transport_stream", None))
        # a busy publisher's full reads are left as they are (the read size bounds what one
        # read may deliver before the fast-producer stall acts)
        while obj is not None and incoming is not None and len(data) < size:
            try:
                more = obj.read(size)
            except ssl.SSLWantReadError:
                chunk = _recv_now(sock)
                if not chunk:
                    break  # nothing more arrived (EOF included: the normal read meets it)
                incoming.write(chunk)
                continue
            except ssl.SSLZeroReturnError:
                self._peer_gone = True
                break
            except ssl.SSLError:
                break  # the next receive_some meets it and closes
            if not more:
                self._peer_gone = True
                break
            data += more
        return data

    async def _handle(self, data: bytes | bytearray) -> bool:
        """Parse and act on one read; True when the connection is done reading."""
        parser = self.parser
        while True:
            ops: list[tuple] = []
            err = parser.feed_into(data, ops)
            if ops and (ops[0][0] != OP_PONG or len(ops) > 1):
                # activity that spares the client a PING (a lone PONG is not)
                self.last_rx = trio.current_time()
            pub = self._pub
            # PUBs with nothing to check or answer go straight to the router, all those in a
            # row at once (core.router.route_msgs: the per-message path of mixed subjects);
            # `plain` holds until an operation other than PUB (a CONNECT) may change what the
            # connection checks
            plain = self._plain_pubs()
            reserved = _RESERVED_SUBJECT_PREFIXES
            special = _RESERVED_FIRST
            run: list[tuple] = []
            for op in ops:
                code = op[0]
                if code == OP_PUB and plain and op[2] is None and \
                        not (op[1][0] in special and op[1].startswith(reserved)):
                    run.append(op)
                    continue
                if run:
                    self._route_plain(run)
                    run = []
                    if self.closing:
                        return True
                if code == OP_PUB:
                    if self.authed:
                        pub(op[1], op[2], op[3], op[4])
                    else:
                        self._process(op)
                elif code == OP_PUBS and self.authed:
                    self._pub_run(op[1], op[2], op[3])
                else:
                    self._process(op)
                    plain = self._plain_pubs()
                if self.closing:
                    return True
            if run:
                self._route_plain(run)
                if self.closing:
                    return True
            if self._pending_auth is not None:
                # other tasks run meanwhile: what this read made so far is sent first
                batch = self.read_batch
                active = batch.active
                if active:
                    batch.suspend()
                await self._await_auth()
                if active:
                    batch.resume()
                if self.closing:
                    return True
            if err is not None:
                if err.err:
                    log.debug("cid=%d protocol error: %s", self.cid, err)
                self.close(err.reason, err.err)
                return True
            if not parser.more:
                return False
            data = b""  # the parser paused after CONNECT: parse the rest now

    def _process(self, op: tuple) -> None:
        code = op[0]
        if code != OP_CONNECT and not self.authed and self.auth_required:
            # authentication pending: the first operation must be CONNECT (even PONG or +OK
            # is a violation, as in nats-server)
            self._auth_violation()
            return
        if code == OP_PUB:
            if not self.authed:
                self._auth_violation()
                return
            self._pub(op[1], op[2], op[3], op[4])
        elif code == OP_PING:
            if not self.authed and self.auth_required:
                self._auth_violation()
                return
            self.enqueue(proto.PONG)
            if self.connected and not self._first_pong_sent:
                self._first_pong_sent = True
                if self.protocol >= 1 and PROTO_2_12:
                    self.enqueue(proto.info_frame(self._connect_info()))
        elif code == OP_PONG:
            self.pings_out = 0
            if self._ping_sent_at:
                # at least 1 ns: a measured RTT is never "none yet" (computeRTT)
                self.rtt_ns = max(1, int((trio.current_time() - self._ping_sent_at) * 1e9))
                self._ping_sent_at = 0.0
        elif code == OP_SUB:
            if not self.authed:
                self._auth_violation()
                return
            self._sub(op[1], op[2], op[3])
        elif code == OP_UNSUB:
            if not self.authed:
                self._auth_violation()
                return
            self.unsubscribe_sid(op[1], op[2])
            if self.verbose:
                self.enqueue(proto.OK)
        elif code == OP_CONNECT:
            self._connect(op[1])
        elif code == OP_INFO:
            try:
                json.loads(op[1])
            except ValueError:
                self.close("Protocol Violation")
        elif code == OP_ERR:
            log.info("cid=%d client sent -ERR %s", self.cid, op[1][:200])
            self.close("Client Closed")
        # OP_OK is ignored

    _first_pong_sent = False

    def _connect_info(self) -> dict[str, Any]:
        """The INFO that answers a protocol-1 client's first PING: who the server thinks the
        client is (its account), without a fresh nonce."""
        nonce = self.nonce
        info = self.make_info()
        self.nonce = nonce
        info.pop("nonce", None)
        info["connect_info"] = True
        info["remote_account"] = self.account.name
        if self.account.is_system:
            info["acc_is_sys"] = True
        return info

    def _auth_violation(self) -> None:
        self.close("Authentication Failure", proto.ERR_AUTH_VIOLATION)

    def _plain_pubs(self) -> bool:
        """Whether a PUB without reply needs nothing per message but routing: no pedantic
        subject check, no +OK, no publish permissions (reserved subjects aside)."""
        return self.authed and not (self.pedantic or self.verbose) and self.permissions is None

    def _pub(self, subject_b: bytes, reply_b: bytes | None, hdr: bytes | None, data: bytes) -> None:
        size = len(data) if hdr is None else len(data) + len(hdr)
        self.in_msgs += 1
        self.in_bytes += size
        if self.pedantic and not valid_literal_subject(subject_b.decode("utf-8", "surrogateescape")):
            self.enqueue(err_frame(proto.ERR_INVALID_PUB_SUBJECT))
        acc = self.account
        if subject_b.startswith(_RESERVED_SUBJECT_PREFIXES) and (
                subject_b.startswith(b"_GR_.") and len(subject_b) > 5 or
                subject_b.startswith(b"$NRG.") and not acc.is_system):
            # gateway-routed replies and raft subjects are not for clients
            self._pub_violation(subject_b)
            return
        perms = self.permissions
        if perms is not None and perms.has_pub_rules:
            subject = subject_b.decode("utf-8", "surrogateescape")
            if not perms.can_publish(subject) and not self._use_response(subject):
                self._pub_violation(subject_b)
                return
        if reply_b is not None and reply_b.startswith(_RESERVED_REPLY_PREFIXES):
            for pre in _RESERVED_REPLY_PREFIXES:
                # "_R_." is reserved even alone; the others only with something after them
                if reply_b.startswith(pre) and (len(reply_b) > len(pre) or pre == b"_R_."):
                    # reserved for service-import reply tracking and JetStream acks
                    self.enqueue(err_frame('Permissions Violation for Publish with Reply of "%s"'
                                           % reply_b.decode("utf-8", "surrogateescape")))
                    return
        if self.verbose:
            self.enqueue(proto.OK)  # before any delivery, as nats-server orders it
        n = route(acc, subject_b, reply_b, hdr, (data,), self)
        if n == 0 and reply_b is not None and self.no_responders:
            self._send_no_responders(None, reply_b, subject_b)

    def _pub_run(self, subject_b: bytes, reply_b: bytes | None, payloads: list[bytes]) -> None:
        """Several PUBs with the same subject, reply and size, back to back. In the common
        case (no verbose/pedantic/permissions/no-responders work per message, nothing
        reserved) they are routed as a run; otherwise one by one, exactly as `_pub` does."""
        if len(payloads) == 1:
            self._pub(subject_b, reply_b, None, payloads[0])
            return
        if self.verbose or self.pedantic or self.permissions is not None or \
                (reply_b is not None and (self.no_responders or
                                          reply_b.startswith(_RESERVED_REPLY_PREFIXES))) or \
                subject_b.startswith(_RESERVED_SUBJECT_PREFIXES):
            pub = self._pub
            for p in payloads:
                pub(subject_b, reply_b, None, p)
                if self.closing:
                    return
            return
        k = len(payloads)
        size = k * len(payloads[0])
        self.in_msgs += k
        self.in_bytes += size
        route(self.account, subject_b, reply_b, None, payloads, self)

    def _route_plain(self, msgs: list[tuple]) -> None:
        """PUBs in a row with nothing to check or answer (no reply, nothing reserved, no
        verbose/pedantic/permissions work): counted, and routed together
        (core.router.route_msgs)."""
        self.in_msgs += len(msgs)
        self.in_bytes += sum(map(len, map(_payload_of, msgs))) + \
            sum(map(len, filter(None, map(_hdr_of, msgs))))
        route_msgs(self.account, msgs, self)

    def _pub_violation(self, subject_b: bytes) -> None:
        self.enqueue(err_frame('Permissions Violation for Publish to "%s"'
                               % subject_b.decode("utf-8", "surrogateescape")))

    def _use_response(self, subject: str) -> bool:
        r = self.resp_perms.get(subject)
        if r is None:
            return False
        if r[1] < trio.current_time():
            del self.resp_perms[subject]
            return False
        if r[0] > 0:
            r[0] -= 1
            if r[0] == 0:
                del self.resp_perms[subject]
        return True

    def _send_no_responders(self, reply: str | None, reply_b: bytes,
                            subject_b: bytes | None = None) -> None:
        """Status 503 to this client's own plain subscription on the reply subject, if any
        (nats-server 2.12+ names the request's subject in Nats-Subject)."""
        r = self.account.sublist.match_bytes(reply_b)
        for sub in r.psubs:
            if sub.client is self:
                if subject_b and PROTO_2_12:
                    hdr = b"NATS/1.0 503\r\nNats-Subject: %s\r\n\r\n" % subject_b
                else:
                    hdr = _NO_RESPONDERS_HDR
                self.deliver(sub, reply_b, None, hdr, (b"",), None, None)
                return

    def _sub(self, subject_b: bytes, queue_b: bytes | None, sid: bytes) -> None:
        subject = subject_b.decode("utf-8", "surrogateescape")
        queue = queue_b.decode("utf-8", "surrogateescape") if queue_b else None
        perms = self.permissions
        if queue == "_sys_" or (perms is not None and not perms.can_subscribe(subject, queue)):
            if queue:
                self.enqueue(err_frame(
                    f'Permissions Violation for Subscription to "{subject}" using queue "{queue}"'))
            else:
                self.enqueue(err_frame(f'Permissions Violation for Subscription to "{subject}"'))
            return
        o = self.broker.options
        if o.max_sub_tokens and subject.count(".") + 1 > o.max_sub_tokens:
            self.enqueue(err_frame(f'Permissions Violation for Subscription to "{subject}", too many tokens'))
            return
        if self.max_subs >= 0 and len(self.subs) >= self.max_subs:
            self.enqueue(err_frame(proto.ERR_MAX_SUBS))
            return
        if sid in self.subs:
            # an existing sid: nothing changes, but it is acknowledged like a new one
            if self.verbose:
                self.enqueue(proto.OK)
            return
        if not valid_subject(subject):
            self.enqueue(err_frame(proto.ERR_INVALID_SUBJECT))
            return
        self.add_sub(subject, queue, sid)
        if perms is not None and not self.deny_filter and perms.needs_delivery_filter(subject, queue):
            self.deny_filter = True
        if self.verbose:
            self.enqueue(proto.OK)

    def _connect(self, raw: bytes) -> None:
        self._first_ping_soon()
        try:
            opts = proto.connect_options(raw)  # JSON object, nats-server's field types
        except ValueError:
            self.close("Protocol Violation")
            return
        # a second CONNECT is decoded over the first: what it leaves out keeps its value
        opts = {**self.connect_opts, **opts}
        for k, v in (self.cookie_creds or {}).items():
            if not opts.get(k):
                opts[k] = v
        self.verbose = bool(opts.get("verbose", True))
        self.pedantic = bool(opts.get("pedantic", True))
        self.echo = bool(opts.get("echo", True))
        self.headers = bool(opts.get("headers", False)) and not self.broker.options.no_header_support
        self.parser.headers = self.headers
        self.no_responders = bool(opts.get("no_responders", False))
        self.name = str(opts.get("name") or "")
        self.lang = str(opts.get("lang") or "")
        self.version = str(opts.get("version") or "")
        try:
            self.protocol = int(opts.get("protocol", 0) or 0)
        except (TypeError, ValueError):
            self.protocol = -1
        if self.protocol < 0 or self.protocol > 1:
            self.close("Protocol Violation", proto.ERR_INVALID_PROTOCOL)
            return
        if self.no_responders and not self.headers:
            self.close("Protocol Violation", proto.ERR_NO_RESPONDERS_HEADERS)
            return
        if "account" in opts or "new_account" in opts:
            self._auth_violation()
            return
        self.connect_opts = opts
        if self.auth_required or self.connected:
            res = self.auth.authenticate(self, opts, self.nonce, self.auth_context())
            if hasattr(res, "wait"):
                # decided by an external service (auth callout): the reader awaits it before
                # parsing anything after this CONNECT
                self._pending_auth = res
                return
            self._finish_connect(res)
            return
        self._finish_connect(None)

    def _finish_connect(self, res: Any) -> None:
        if self.auth_required or self.connected:
            if res is None:
                self._auth_violation()
                return
            if isinstance(res, str):  # a refusal with its own -ERR text (e.g. account limits)
                self.close("Authentication Failure", res)
                return
            self.apply_auth(res)
        self.authed = True
        first = not self.connected
        self.connected = True
        if self.verbose:
            self.enqueue(proto.OK)
        if first:
            for cb in self.broker.on_connect:
                cb(self)

    _pending_auth: Any = None

    async def _await_auth(self) -> None:
        """Finish a CONNECT whose authentication is asynchronous (bounded by the auth timeout)."""
        pending, self._pending_auth = self._pending_auth, None
        o = self.broker.options
        timeout = o.auth_timeout if o.auth_timeout is not None else 2.0
        try:
            res = await pending.wait(timeout)
        except Exception:
            log.exception("cid=%d asynchronous authentication failed", self.cid)
            res = None
        if not self.closing:
            self._finish_connect(res)

    def auth_context(self) -> dict[str, Any]:
        """What an authenticator may look at besides CONNECT: peer, TLS, listener, type."""
        return {"remote": self.remote, "tls": self.tls, "listener": self.listener,
                "conn_type": self.type, "stream": self.stream, "peer_cert": self.peer_cert}

    def apply_auth(self, res: Any) -> None:
        """Bind the connection to an AuthResult (CONNECT, or re-authentication on reload)."""
        if self.subs and res.account is not self.account:
            self.drop_all_subs()
        self.broker.move_account(self, res.account)
        self.user = res.user
        self.permissions = res.permissions
        self.auth_extra = res.extra
        self.resp_perms.clear()
        self.deny_filter = False
        if res.permissions is not None:
            for s in self.subs.values():
                if res.permissions.needs_delivery_filter(s.subject, s.queue):
                    self.deny_filter = True
                    break
        self.auth_expires = res.expires
        if res.expires is not None:
            self._expire_at(res.expires)
        # JWT limits of the user and its account: the smallest one set wins (nats-server)
        o = self.broker.options
        ul = res.extra.get("limits") or {} if isinstance(res.extra, dict) else {}
        al = getattr(res.account, "limits", None) or {}
        self.parser.max_payload = _min_limit(o.max_payload, ul.get("payload"), al.get("payload"))
        self.max_subs = _min_limit(o.max_subscriptions or -1, ul.get("subs"), al.get("subs"))

    @property
    def max_subs(self) -> int:
        """Subscription limit for this connection (-1 = unlimited)."""
        v = self.__dict__.get("_max_subs")
        return v if v is not None else (self.broker.options.max_subscriptions or -1)

    @max_subs.setter
    def max_subs(self, v: int) -> None:
        self.__dict__["_max_subs"] = v

    def _bind_default_account(self) -> None:
        """No auth required on this listener: a no_auth_user (if any) decides the account."""
        user = self.no_auth_user
        if user and hasattr(self.auth, "bind_user"):
            res = self.auth.bind_user(user)
            if res is not None:
                self.broker.move_account(self, res.account)
                self.user = res.user
                self.permissions = res.permissions

    def _expire_at(self, wall_seconds: float) -> None:
        delay = max(0.0, wall_seconds - self.broker.clock.now_ns() / 1e9)
        if self._expiry_scope is not None:
            self._expiry_scope.cancel()  # re-authenticated: only the newest expiry counts
        scope = self._expiry_scope = trio.CancelScope()

        async def expire() -> None:
            with scope:
                await trio.sleep(delay)
                self.close("Authentication Expired", "User Authentication Expired")

        if self._nursery is not None:
            self._nursery.start_soon(expire)
        else:
            self._pending_expiry = expire

    _nursery: Any = None
    _expiry_scope: Any = None
    _pending_expiry: Any = None


    # -- timers ---------------------------------------------------------------------------
    async def _pinger(self) -> None:
        """Keep-alive, as nats-server times it: the first PING a full interval after accept,
        but soon (at most 2 s, plus up to 20 %) after each CONNECT, for an RTT sample; then
        every interval, skipped while the client shows activity (after the first sample);
        `ping_max` unanswered PINGs make the connection stale."""
        o = self.broker.options
        interval = self.ping_interval
        first = self._early_ping  # a CONNECT may have come before this task ran
        self._ping_scope = trio.CancelScope(deadline=first or trio.current_time() + interval)
        while not self.closing:
            with self._ping_scope:
                await trio.sleep_forever()
            self._ping_scope = trio.CancelScope(deadline=trio.current_time() + interval)
            if self.closing:
                return
            if self.rtt_ns and trio.current_time() - self.last_rx < interval:
                continue  # the client was active recently: no need to ask
            if self.pings_out + 1 > o.ping_max:
                self.close("Stale Connection", proto.ERR_STALE)
                return
            self.pings_out += 1
            self._ping_sent_at = trio.current_time()
            self.enqueue(proto.PING)

    _ping_scope: Any = None
    _early_ping = 0.0

    @property
    def ping_interval(self) -> float:
        """Seconds between keep-alive PINGs (a front-end may override the server's)."""
        return self.broker.options.ping_interval

    def _first_ping_soon(self) -> None:
        """After CONNECT the next PING comes early, for an RTT sample (setFirstPingTimer)."""
        d = min(2.0, self.ping_interval)
        at = trio.current_time() + d + random.random() * d / 5
        if self._ping_scope is not None:
            self._ping_scope.deadline = at
        else:
            self._early_ping = at

    async def _auth_timer(self) -> None:
        o = self.broker.options
        timeout = o.auth_timeout
        if timeout is None:
            timeout = (o.tls.timeout + 1) if o.tls else 2.0
        await trio.sleep(timeout)
        if not self.authed:
            self.close("Authentication Timeout", proto.ERR_AUTH_TIMEOUT)

    # -- monitoring -----------------------------------------------------------------------
    def info_for_connz(self) -> dict[str, Any]:
        from ..core.clock import rfc3339
        return {
            "cid": self.cid,
            "kind": self.kind,
            "type": self.type,
            "ip": self.remote[0],
            "port": self.remote[1],
            "start": rfc3339(self.start_ns),
            "last_activity": rfc3339(self.last_activity_ns),
            "stop": rfc3339(self.stop_ns) if self.closed else None,
            "reason": self.close_reason if self.closed else None,
            "rtt": f"{self.rtt_ns / 1e6:.3f}ms" if self.rtt_ns else "0s",
            "pending_bytes": len(self.out),
            "in_msgs": self.in_msgs,
            "out_msgs": self.out_msgs,
            "in_bytes": self.in_bytes,
            "out_bytes": self.out_bytes,
            "subscriptions": len(self.subs),
            "name": self.name,
            "lang": self.lang,
            "version": self.version,
            "authorized_user": self.user or "",
            "account": self.account.name,
            "subs": [s.subject for s in self.subs.values()],
            "subs_detail": [{"account": self.account.name, "subject": s.subject,
                             "qgroup": s.queue or "", "sid": s.sid.decode(errors="replace"),
                             "msgs": s.delivered, "max": s.max, "cid": self.cid}
                            for s in self.subs.values()],
        }


def _min_limit(base: int, *limits: Any) -> int:
    """The smallest of the limits that are set (negative or None = unlimited)."""
    out = base
    for v in limits:
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            out = v if out < 0 else min(out, v)
    return out


def _tls_input_waiting(stream: Any) -> bool:
    """Has the TLS client sent more than the stream has decrypted: records in its receive
    buffer (trio keeps them in a private MemoryBIO) or bytes (or EOF) in the kernel?"""
    incoming = getattr(stream, "_incoming", None)
    if incoming is not None and incoming.pending:
        return True
    sock = _raw_of(getattr(stream, "transport_stream", None))
    if sock is None:
        return False
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True  # an error to read: let the reader meet it
    return True  # data, or b"" (EOF)


def _raw_of(transport: Any) -> Any:
    """The stdlib socket under a trio SocketStream, or None."""
    return getattr(getattr(transport, "socket", None), "_sock", None)


def _recv_now(sock: Any) -> bytes | None:
    """What the kernel holds for `sock` right now (b"" at EOF), or None if nothing."""
    if sock is None:
        return None
    try:
        return sock.recv(65536, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return None  # the normal read meets the error
