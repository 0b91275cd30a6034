"""One leaf connection: a Client of kind Leafnode bound to one account on each end.

The same class serves both roles. Dialing a hub (`remote` given, normally the spoke role):
read the hub's first INFO (sanity checks, TLS if asked), send CONNECT, and finish connecting
when the INFO answering CONNECT (`connect_info`) arrives — or give up after 2 s. Accepting a
leaf (the hub role): send INFO with a nonce, authenticate the CONNECT, bind the account, answer
with the `connect_info` INFO carrying the leaf's permissions. Finishing, in both roles: register,
add nats-server's JetStream denies, and send LS+ for all interest the peer may see.

Afterwards:
- interest: `update_smap` is called (by the service's sublist listener) for every subscription
  change in the account; it keeps per-key counts and sends LS+ / LS- as nats-server's
  `updateSmap` does. A spoke announces only local interest (and interest of leaves that dial
  it), never what it learned from its hub. LS+ / LS- from the peer become `LeafSub`s in the
  account's sublist, so local publishes reach `deliver`.
- messages out: `core.router.route` calls `deliver` once per matching subscription of this
  link; the calls for one message (the same payloads object) are gathered into one LMSG/HMSG
  with the chosen queue groups, built when the writer runs (route is synchronous, so all calls
  for a message come before it).
- messages in: LMSG/HMSG go through `core.router.route` with this link as source and the queue
  groups it named, so the leaf origin rules apply and nothing returns over the link it came in
  on.

Tasks: reader, writer (one send of everything pending), pinger; nothing per message.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
from typing import TYPE_CHECKING, Any, Sequence

import trio

from .. import NATS_VERSION
from ..codec import leaf as proto
from ..codec.json_depth import loads
from ..codec.leaf import (OP_CONNECT, OP_ERR, OP_INFO, OP_LMSG, OP_LSUB, OP_LUNSUB, OP_PING,
                          OP_PONG, LeafParser)
from ..codec.nats import ProtocolError, info_frame
from ..core.client import LEAF, Client
from ..core.outbox import Outbox
from ..core.router import route
from ..core.permissions import Permissions, SubjectRules
from ..core.subject import valid_subject
from ..core.sublist import Subscription
from .auth import authorize
from .remote import RemoteCfg, start_tls
from .interest import LDS_PREFIX, InterestMap
from .routing import LeafSub, js_ack_deliver_idx, sub_key, weight

if TYPE_CHECKING:
    from .service import LeafService

log = logging.getLogger("edgebus.leaf")

# nats-server's denyAllClientJs / denyAllJs: each side's JetStream API stays private
DENY_CLIENT_JS = ["$JS.API.>", "$KV.>", "$OBJ.>"]
DENY_ALL_JS = ["$JSC.>", "$NRG.>", "$JS.API.>", "$KV.>", "$OBJ.>"]
# subjects received without permission checks (service replies, JetStream acks)
_EXEMPT_IN = ("_R_.", "$JS.ACK.")
_EXEMPT_SUB = (LDS_PREFIX, "_GR_.", "$GR.")

LOOP_DELAY = 30.0
PERM_VIOLATION_DELAY = 30.0
SAME_CLUSTER_DELAY = 30.0
MIN_VERSION_DELAY = 5.0
CONNECT_PROCESS_TIMEOUT = 2.0  # CONNECT sent, waiting for the connect_info INFO
FIRST_PING = 1.0

ERR_AUTH = "Authorization Violation"
ERR_STALE_LEAF = "Stale Leaf Node Connection - Closing"
ERR_WRONG_PORT = "attempted to connect to wrong port"
ERR_CLIENT_ON_LEAF_PORT = "attempted to connect to leaf node port"
ERR_CLUSTER_SPACES = "cluster name cannot contain spaces"
ERR_SAME_CLUSTER = "remote leafnode has same cluster name"
ERR_MIN_VERSION = "connection rejected since minimum version required is"
ERR_DUPLICATE = "Duplicate Remote LeafNode Connection"


def go_duration(ns: int) -> str:
    """A duration as Go's time.Duration.String() prints the small ones /leafz shows."""
    if ns <= 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:g}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:g}ms"
    return f"{ns / 1e9:g}s"


def _version_at_least(version: str, minimum: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in v.lstrip("v").split("-")[0].split(".")[:3])
        except ValueError:
            return (0,)
    return parts(version or "0") >= parts(minimum)


def _has_wildcard(subject: str) -> bool:
    return any(t == "*" or t == ">" for t in subject.split("."))


def _is_literal(subject: str) -> bool:
    return not _has_wildcard(subject)


def _rules_json(rules: SubjectRules | None) -> dict[str, list[str]] | None:
    if rules is None or rules.empty:
        return None
    return rules.to_dict()


class LeafLink(Client, Outbox):
    kind = LEAF
    type = "leafnode"

    def __init__(self, service: "LeafService", stream: trio.abc.Stream, *, account: Any,
                 remote: RemoteCfg | None = None, url: Any = None,
                 peer: tuple[str, int] = ("", 0), ws: bool = False) -> None:
        super().__init__(service.broker, account)
        o = self.broker.options
        self.service = service
        self.stream = stream
        self.remote = remote
        self.url = url
        self.solicited = remote is not None
        self.is_spoke = self.solicited and not remote.opts.hub  # type: ignore[union-attr]
        self.peer = peer
        self.ws = ws
        self.echo = False  # never back to the sender (core.router.route honours echo)
        self.headers = False
        self.parser = LeafParser(o.max_payload, o.max_control_line)
        self._outbox_init(o.max_pending)
        # what the writer will send, in order: protocol bytes and gathered messages
        self._items: list[Any] = []
        self._index: dict[int, list[Any]] = {}  # id(payloads) -> its gathered entry
        self.closing = False
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.authed = self.solicited
        self.connected = False
        self.smap: InterestMap | None = None  # set once connected
        self.perms: Permissions | None = None
        if remote is not None and (remote.opts.deny_exports or remote.opts.deny_imports):
            self.perms = Permissions().merged_with_deny(remote.opts.deny_exports,
                                                         remote.opts.deny_imports)
        self.export_acl: SubjectRules | None = None  # hub role: what the leaf user may publish
        self.nonce: str | None = None
        self.remote_server = ""
        self.remote_id = ""
        self.remote_cluster = ""
        self.remote_domain = ""
        self.remote_account = ""
        self.compression = "not supported"
        self.pings_out = 0
        self.rtt_ns = 0
        self._ping_at = 0.0
        self._early_ops: list[tuple] = []  # read with the first INFO, handled by the reader
        self._early_err: ProtocolError | None = None
        self.close_reason = ""

    def __repr__(self) -> str:
        role = "spoke" if self.is_spoke else "hub"
        return f"<LeafLink cid={self.cid} {role} {self.remote_server or self.peer} acc={self.account.name}>"

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with trio.open_nursery() as n:
                self._scope = n.cancel_scope
                self._nursery = n
                ok = await (self._solicit_start() if self.solicited else self._accept_start())
                if not ok:
                    await self._flush_now()
                    n.cancel_scope.cancel()
                    return
                n.start_soon(self._writer)
                n.start_soon(self._reader)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.debug("leaf cid=%d: %s", self.cid, e)
        finally:
            self.closing = True
            self.closed = True
            self.stop_ns = self.broker.clock.now_ns()
            if not self.close_reason:
                self.close_reason = "Server Shutdown" if self.broker.shutting_down else "Client Closed"
            was_up = self.service.remove_link(self)
            self.drop_all_subs()
            if was_up:
                self.service.link_gone(self)
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1):
                    try:
                        await self.stream.aclose()
                    except Exception:
                        pass
            if self.connected:
                log.info("Leafnode connection closed: %s account: %s - %s",
                         self.remote_server or self.peer, self.account.name, self.close_reason)

    def close(self, reason: str = "Client Closed", err: str | None = None) -> None:
        """Close after flushing what is pending (and `err` as -ERR, if given)."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        if err:
            self._items.append(proto.err_frame(err))
        self._release_writer()

    def kill(self, reason: str) -> None:
        """Close at once, dropping pending output."""
        self.closing = True
        if not self.close_reason:
            self.close_reason = reason
        self._items = []
        self._index = {}
        self.out = bytearray()
        if self._scope is not None:
            self._scope.cancel()
        self._release_writer()

    async def _flush_now(self) -> None:
        """Send what is pending without the writer task (handshake failures)."""
        self._serialize()
        if self.out:
            data, self.out = self.out, bytearray()
            with trio.move_on_after(1):
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    # -- output (core.outbox.Outbox: buffer, wake-up, writer loop) -------------------------
    _write_error_reason = "Write Error"

    def enqueue(self, data: bytes) -> None:
        self._items.append(data)
        self.wake()

    def _before_send(self) -> None:  # (core.outbox.Outbox: just before the writer sends)
        self._serialize()

    def _serialize(self) -> None:
        items = self._items
        if not items:
            return
        self._items = []
        self._index = {}
        out = self.out
        headers = self.headers
        lmsg = proto.lmsg
        n = nb = 0
        for it in items:
            if isinstance(it, (bytes, bytearray)):
                out += it
                continue
            payloads, subject, reply, queues, hdr = it
            if hdr is not None and not headers:
                hdr = None  # the peer takes no headers: payload only, as nats-server strips them
            hl = len(hdr) if hdr else 0
            for data in payloads:
                out += lmsg(subject, reply, queues, hdr, data)
                n += 1
                nb += len(data) + hl
        self.out_msgs += n
        self.out_bytes += nb

    # -- delivery of local messages (core.contract.Subscriber, called by core.router.route)
    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None, hdr: bytes | None,
                payloads: Sequence[bytes], src: Any, on: bytes | None) -> None:
        if self.closing or not self.connected:
            return
        queue = sub.queue
        if on is not None:
            # A JetStream delivery: routed on its deliver subject (a pull request's inbox, a
            # push deliver subject) while it carries its stored subject. Across a link
            # nats-server sends it on the deliver subject with the stored subject after '@' in
            # the reply ($JS.ACK...@orders.1); the receiving server restores it.
            if reply and js_ack_deliver_idx(reply) < 0:
                reply = reply + b"@" + subject
            subject = on
        key = id(payloads)
        e = self._index.get(key)
        if e is not None and e[0] is payloads and e[1] == subject:
            # another subscription of this link matched the same message: one LMSG, more queues
            if queue is not None:
                qb = queue.encode()
                if qb not in e[3]:
                    e[3].append(qb)
            return
        perms = self.perms
        if perms is not None and not perms.can_publish(subject.decode("utf-8", "surrogateescape")):
            return
        e = [payloads, subject, reply, [queue.encode()] if queue is not None else [], hdr]
        self._index[key] = e
        self._items.append(e)
        self.wake()

    # -- reader ---------------------------------------------------------------------------
    async def _reader(self) -> None:
        stream = self.stream
        parser = self.parser
        try:
            ops = self._early_ops
            self._early_ops = []
            err, self._early_err = self._early_err, None
            while True:
                for op in ops:
                    if op[0] == OP_CONNECT:
                        await self._on_connect(op[1])
                    else:
                        self._process(op)
                    if self.closing:
                        return
                self.settle()  # this read's traffic into the account's figures
                if err is not None:
                    log.debug("leaf cid=%d protocol error: %s", self.cid, err)
                    self.close(err.reason if err.err else "Protocol Violation", err.err)
                    return
                data = await stream.receive_some(65536)
                if not data:
                    self.close("Client Closed")
                    return
                self.last_activity_ns = self.broker.clock.now_ns()
                ops = []
                err = parser.feed_into(data, ops)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.close("Read Error")

    def _process(self, op: tuple) -> None:
        code = op[0]
        if not self.authed:
            # an accepted leaf must start with CONNECT
            self.close("Authentication Failure", ERR_AUTH)
            return
        if code == OP_LMSG:
            self._on_msg(op)
        elif code == OP_LSUB:
            self._on_lsub(op)
        elif code == OP_LUNSUB:
            self._on_lunsub(op)
        elif code == OP_PING:
            self.enqueue(proto.PONG)
        elif code == OP_PONG:
            self.pings_out = 0
            if self._ping_at:
                self.rtt_ns = int((trio.current_time() - self._ping_at) * 1e9)
                self._ping_at = 0.0
        elif code == OP_INFO:
            self._on_info(op[1])
        elif code == OP_ERR:
            self._on_err(op[1].decode("utf-8", "replace"))
        # +OK is ignored

    # -- dialing side ---------------------------------------------------------------------
    async def _solicit_start(self) -> bool:
        cfg = self.remote
        assert cfg is not None
        ops: list[tuple] = []
        try:
            with trio.fail_after(max(cfg.opts.first_info_timeout, 0.1)):
                while not ops:
                    data = await self.stream.receive_some(65536)
                    if not data:
                        self.close_reason = "Read Error"
                        return False
                    err = self.parser.feed_into(data, ops)
                    if err is not None:
                        if not ops:
                            raise err
                        self._early_err = err  # after the operations before it
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.error("Leafnode %s: %s", cfg.describe(), e)
            self.close_reason = "Read Error"
            return False
        except trio.TooSlowError:
            log.error("Leafnode %s: timeout waiting for the first INFO", cfg.describe())
            self.close_reason = "Read Error"
            return False
        except ProtocolError as e:
            log.error("Leafnode %s: %s", cfg.describe(), ERR_WRONG_PORT if e.err else e)
            self.close_reason = "Parse Error"
            return False
        if ops[0][0] != OP_INFO:
            log.error("Leafnode %s: %s", cfg.describe(), ERR_WRONG_PORT)
            self.close_reason = "Wrong Port"
            return False
        try:
            info = loads(ops[0][1])
            if not isinstance(info, dict):
                raise ValueError("not an object")
        except ValueError:
            self.close_reason = "Parse Error"
            return False
        if not await self._first_info(info):
            return False
        self._early_ops = ops[1:]
        if not self._send_connect():
            return False
        if info.get("info_on_connect"):
            assert self._nursery is not None
            self._nursery.start_soon(self._connect_process_timer)
        else:
            self._finish_solicit()  # an old hub sends no INFO after CONNECT
        return True

    async def _first_info(self, info: dict[str, Any]) -> bool:
        cfg = self.remote
        assert cfg is not None
        if not info.get("client_id") or info.get("leafnode_urls") is None:
            log.error("Leafnode %s: %s", cfg.describe(), ERR_WRONG_PORT)
            self.close_reason = "Wrong Port"
            return False
        cluster = str(info.get("cluster") or "")
        if " " in cluster:
            self.enqueue(proto.err_frame(ERR_CLUSTER_SPACES))
            self.close_reason = "Protocol Violation"
            return False
        if info.get("tls_required"):
            cfg.tls = True
        if cfg.tls and not self.ws and not (cfg.opts.tls and cfg.opts.tls.handshake_first):
            try:
                self.stream = await start_tls(self.stream, cfg, self.url)
            except (trio.TooSlowError, trio.BrokenResourceError, OSError, ValueError) as e:
                log.error("Leafnode %s: TLS handshake error: %s", cfg.describe(), e)
                self.close_reason = "TLS Handshake Error"
                return False
        self.nonce = info.get("nonce") or None
        self.headers = bool(info.get("headers")) and not self.broker.options.no_header_support
        self.remote_id = str(info.get("server_id") or "")
        self.remote_server = str(info.get("server_name") or self.remote_id)
        self.remote_domain = str(info.get("domain") or "")
        self.remote_cluster = cluster
        self.compression = "off" if info.get("compression") else "not supported"
        self._update_from_info(info)
        return True

    def _update_from_info(self, info: dict[str, Any]) -> None:
        """What any INFO from the hub may change: the URL pool and our permissions."""
        cfg = self.remote
        assert cfg is not None
        urls = info.get("ws_connect_urls") if self.ws else info.get("leafnode_urls")
        if urls:
            cfg.update_urls([str(u) for u in urls])
        if info.get("import") is not None or info.get("export") is not None:
            # the hub's view of our user: export = what we may send, import = what we may get
            perms = Permissions(SubjectRules.from_spec(info.get("export")),
                                SubjectRules.from_spec(info.get("import")))
            self.perms = perms.merged_with_deny(cfg.opts.deny_exports, cfg.opts.deny_imports)

    def _send_connect(self) -> bool:
        cfg = self.remote
        assert cfg is not None
        b = self.broker
        o = b.options
        ro = cfg.opts
        ci: dict[str, Any] = {"version": NATS_VERSION}
        nonce = (self.nonce or "").encode()
        try:
            if ro.credentials:
                from ..security.jwt import parse_creds
                with open(ro.credentials, "rb") as f:
                    creds = parse_creds(f.read())
                ci["jwt"] = creds.jwt
                ci["sig"] = _sig(creds.key_pair.sign(nonce))
            elif ro.nkey:
                from ..security import nkeys
                kp = nkeys.from_seed(ro.nkey)
                ci["nkey"] = kp.public_key
                ci["sig"] = _sig(kp.sign(nonce))
        except Exception as e:  # unreadable or malformed credentials: retry later
            log.error("Leafnode %s: credentials error: %s", cfg.describe(), e)
            self.close_reason = "Authentication Failure"
            return False
        user, pw, has_pw = cfg.credentials_for(self.url)
        if user:
            ci["user"] = user
            if has_pw:
                ci["pass"] = pw
            else:
                ci["auth_token"] = user  # a user part alone is also a token (nats-server)
        ci["server_id"] = b.server_id
        if o.jetstream.enabled and o.jetstream.domain:
            ci["domain"] = o.jetstream.domain
        ci["name"] = b.server_name
        if ro.hub:
            ci["is_hub"] = True
        cluster = (o.cluster or {}).get("name")
        if cluster:
            ci["cluster"] = str(cluster)
        if self.headers:
            ci["headers"] = True
        if self.account.jetstream is not None:
            ci["jetstream"] = True
        if ro.deny_imports:
            ci["deny_pub"] = list(ro.deny_imports)
        ci["remote_account"] = self.account.name
        ci["protocol"] = 1
        self.enqueue(proto.connect_frame(json.dumps(ci, separators=(",", ":")).encode()))
        return True

    async def _connect_process_timer(self) -> None:
        await trio.sleep(CONNECT_PROCESS_TIMEOUT)
        if not self.connected and not self.closing:
            self.close("Stale Connection", ERR_STALE_LEAF)

    def _finish_solicit(self) -> None:
        if self.connected or self.closing:
            return
        self._add_connection()
        log.info("Leafnode connection created for account: %s %s", self.account.name,
                 self.remote_server)

    def _on_info(self, raw: bytes) -> None:
        try:
            info = loads(raw)
            if not isinstance(info, dict):
                return
        except ValueError:
            return
        if not self.solicited:
            return  # the accepting side expects no INFO (no compression negotiation here)
        self._update_from_info(info)
        if info.get("remote_account"):
            self.remote_account = str(info["remote_account"])
        if info.get("connect_info"):
            self._finish_solicit()

    # -- accepting side -------------------------------------------------------------------
    async def _accept_start(self) -> bool:
        svc = self.service
        self.nonce = base64.urlsafe_b64encode(os.urandom(11)).decode().rstrip("=")
        frame = info_frame(svc.leaf_info(self, nonce=self.nonce))
        ctx = None if self.ws else svc.tls_context
        if ctx is not None:
            try:
                await self.stream.send_all(frame)
                ssl_stream = trio.SSLStream(self.stream, ctx, server_side=True)
                lo = self.broker.options.leafnodes
                with trio.fail_after(lo.tls.timeout if lo and lo.tls else 2.0):
                    await ssl_stream.do_handshake()
                self.stream = ssl_stream
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError,
                    OSError) as e:
                log.debug("leaf cid=%d TLS handshake failed: %s", self.cid, e)
                self.close_reason = "TLS Handshake Error"
                return False
        else:
            self.enqueue(frame)
        assert self._nursery is not None
        self._nursery.start_soon(self._auth_timer)
        return True

    def _auth_timeout(self) -> float:
        lo = self.broker.options.leafnodes
        t = (lo.authorization or {}).get("timeout") if lo else None
        if t:
            return float(t)
        o = self.broker.options
        return o.auth_timeout if o.auth_timeout is not None else 2.0

    async def _auth_timer(self) -> None:
        await trio.sleep(self._auth_timeout())
        if not self.authed and not self.closing:
            self.close("Authentication Timeout", "Authentication Timeout")

    async def _on_connect(self, raw: bytes) -> None:
        if self.solicited or self.authed:
            return  # nothing to do with a CONNECT on this side, or a second one
        b = self.broker
        o = b.options
        try:
            opts = loads(raw)
            if not isinstance(opts, dict):
                raise ValueError("not an object")
        except ValueError:
            self.close("Protocol Violation")
            return
        if opts.get("lang"):
            self.close("Wrong Port", ERR_CLIENT_ON_LEAF_PORT)
            return
        cluster = str(opts.get("cluster") or "")
        if " " in cluster:
            self.close("Protocol Violation", ERR_CLUSTER_SPACES)
            return
        mine = (o.cluster or {}).get("name")
        if mine and cluster == mine:
            self.close("Cluster Name Conflict", ERR_SAME_CLUSTER)
            return
        if opts.get("gateway"):
            text = f'Rejecting connection from gateway "{opts["gateway"]}" on the leafnode port'
            log.error(text)
            self.close("Wrong Gateway", text)
            return
        lo = o.leafnodes
        mv = lo.min_version if lo else None
        if mv and not _version_at_least(str(opts.get("version") or ""), mv):
            self.enqueue(info_frame(self._connect_info(None)))
            self.close("Minimum Version Required", f'{ERR_MIN_VERSION} "{mv}"')
            return
        ctx = {"remote": self.peer, "listener": "leaf",
               "conn_type": "leafnode_ws" if self.ws else "leafnode", "stream": self.stream}
        res = authorize(b, lo.authorization if lo else None, opts, self.nonce, self, ctx)
        if hasattr(res, "wait"):
            try:
                res = await res.wait(self._auth_timeout())
            except Exception:
                log.exception("leaf cid=%d asynchronous authentication failed", self.cid)
                res = None
            if self.closing:
                return
        if res is None:
            log.error("leaf cid=%d authentication error", self.cid)
            self.close("Authentication Failure", ERR_AUTH)
            return
        if isinstance(res, str):
            self.close("Authentication Failure", res)
            return
        self.authed = True
        self.account = res.account  # registered with it once connected (add_link)
        self.user = res.user
        self.headers = bool(opts.get("headers")) and not o.no_header_support
        self.remote_server = str(opts.get("name") or "")
        self.remote_id = str(opts.get("server_id") or "")
        self.remote_account = str(opts.get("remote_account") or "")
        self.version = str(opts.get("version") or "")
        if opts.get("is_hub"):
            self.is_spoke = True  # the dialer declared itself the hub: we take the spoke role
        self.remote_cluster = cluster
        self.remote_domain = str(opts.get("domain") or "")
        self.compression = str(opts.get("compress_mode") or "not supported")
        up = res.permissions
        if up is not None:
            # the leaf user's permissions, reversed: what it may subscribe to is what we send
            self.export_acl = up.pub if not up.pub.empty else None
            self.perms = Permissions(up.sub, up.pub)
        deny_pub = opts.get("deny_pub") or []
        if deny_pub:
            self.perms = (self.perms or Permissions()).merged_with_deny(pub_deny=list(deny_pub))
        self.service.evict_duplicate(self)
        self.enqueue(info_frame(self._connect_info(up)))
        self._add_connection()
        log.info("Leafnode connection created for account: %s %s", self.account.name,
                 self.remote_server)

    def _connect_info(self, up: Any) -> dict[str, Any]:
        """The INFO that answers CONNECT: the account we bound and the leaf's permissions."""
        extra: dict[str, Any] = {"connect_info": True, "remote_account": self.account.name}
        if self.account.is_system:
            extra["acc_is_sys"] = True
        if up is not None:
            imp, exp = _rules_json(up.sub), _rules_json(up.pub)
            if imp is not None:
                extra["import"] = imp
            if exp is not None:
                extra["export"] = exp
        return self.service.leaf_info(self, extra=extra)

    # -- both sides: registration and interest --------------------------------------------
    def _add_connection(self) -> None:
        self._apply_js_denies()
        self.service.add_link(self)
        self.connected = True
        self._init_smap()
        assert self._nursery is not None
        self._nursery.start_soon(self._pinger)
        self.service.link_ready(self)

    def _apply_js_denies(self) -> None:
        """nats-server's addLeafNodeConnection: keep each side's JetStream API private, and
        never forward requests for our own domain."""
        o = self.broker.options
        local = o.jetstream.domain or ""
        acc = self.account
        sys_acc = self.broker.system_account
        block_outgoing = True
        if local != self.remote_domain or (not o.jetstream.enabled and not local) or sys_acc is None:
            deny = DENY_ALL_JS if acc is sys_acc else DENY_CLIENT_JS
        elif acc is sys_acc:
            # nats-server would extend one JetStream across the link here; edgebus does not
            log.warning("Leafnode binds the system account with the same JetStream domain %r: "
                        "JetStream is not extended across leaf nodes by edgebus", local)
            deny = DENY_ALL_JS
        else:
            deny = DENY_CLIENT_JS
            block_outgoing = False
        pub_deny = list(deny)
        if local and o.jetstream.enabled and block_outgoing:
            pub_deny.append(f"$JS.{local}.API.>")
        self.perms = (self.perms or Permissions()).merged_with_deny(pub_deny, deny)

    def _init_smap(self) -> None:
        acc = self.account
        perms = self.perms
        extra = []
        if acc.mappings is not None:
            # mapped subjects are interest too: the mapping's destination may have listeners
            extra = [src for src in getattr(acc.mappings, "sources", ())
                     if perms is None or not self.is_spoke or perms.can_subscribe(src)]
        extra.append(self.service.lds(acc))
        smap = InterestMap(self)
        frames = smap.snapshot(acc.sublist.all_subs(), extra)
        self.smap = smap
        if frames:
            self.enqueue(frames)

    def update_smap(self, sub: Subscription, delta: int) -> None:
        """A subscription in our account changed by `delta` members (from the service's
        sublist listener): tell the peer if that changes what it should know."""
        if self.smap is None or self.closing:
            return
        frame = self.smap.update(sub, delta)
        if frame:
            self.enqueue(frame)

    def _on_lsub(self, op: tuple) -> None:
        _, subject_b, queue_b, w = op
        subject = subject_b.decode("utf-8", "surrogateescape")
        queue = queue_b.decode("utf-8", "surrogateescape") if queue_b else None
        acc = self.account
        if subject.startswith(LDS_PREFIX) and subject == self.service.lds(acc):
            self._loop_detected(send_err=True)
            return
        if not subject.startswith(_EXEMPT_SUB) and self.perms is not None and \
                _is_literal(subject) and not self.perms.can_publish(subject):
            self._perm_violation(False, subject)
            return
        if not valid_subject(subject) or (queue is not None and not valid_subject(queue)):
            self.enqueue(proto.err_frame("Invalid Subscription"))
            return
        key = sub_key(subject, queue).encode("utf-8", "surrogateescape")
        old = self.subs.get(key)
        if old is None:
            sub = LeafSub(self, subject, queue, key, w if queue is not None else 0)
            self.subs[key] = sub
            acc.sublist.insert(sub)  # the service's listener tells the other links
        elif queue is not None and isinstance(old, LeafSub):
            before = weight(old)
            old.qw = w
            delta = weight(old) - before
            if delta:
                self.service.propagate(acc, old, delta)

    def _on_lunsub(self, op: tuple) -> None:
        _, subject_b, queue_b = op
        key = subject_b + b" " + queue_b if queue_b else subject_b
        sub = self.subs.pop(key, None)
        if sub is not None:
            self.account.sublist.remove(sub)

    # -- messages in ----------------------------------------------------------------------
    def _on_msg(self, op: tuple) -> None:
        _, subject_b, reply_b, queues, hdr, data = op
        size = len(data) + (len(hdr) if hdr is not None else 0)
        self.in_msgs += 1
        self.in_bytes += size
        if self.perms is not None or self.export_acl is not None:
            subject = subject_b.decode("utf-8", "surrogateescape")
            if not subject.startswith(_EXEMPT_IN) and not self._receive_allowed(subject):
                self._perm_violation(True, subject)
                return
        on = None
        if reply_b is not None:
            at = js_ack_deliver_idx(reply_b)
            if at >= 0:
                # a JetStream delivery sent on its deliver subject with `reply@stored-subject`:
                # routed on the deliver subject, seen under the stored subject and plain reply
                on = subject_b
                subject_b, reply_b = reply_b[at + 1:], reply_b[:at]
        route(self.account, subject_b, reply_b, hdr, (data,), self, on, queues)

    def _receive_allowed(self, subject: str) -> bool:
        if self.is_spoke:
            # what the hub told us we may import, minus our deny_imports and the JS denies
            return self.perms is None or self.perms.can_subscribe(subject)
        # hub role: the leaf user's own publish permissions decide
        return self.export_acl is None or self.export_acl.permits_literal(subject)

    # -- errors, loops, permissions --------------------------------------------------------
    def _on_err(self, text: str) -> None:
        log.error("Leafnode Error %s (%s)", text, self.remote_server or self.peer)
        if ERR_SAME_CLUSTER in text:
            self._delay(SAME_CLUSTER_DELAY)
        elif ERR_MIN_VERSION in text:
            self._delay(MIN_VERSION_DELAY)
        elif "Loop detected" in text:
            self._loop_detected(send_err=False)
        # other errors: the peer closes the connection itself

    def _delay(self, seconds: float) -> None:
        if self.remote is not None:
            self.remote.connect_delay = seconds

    def _loop_detected(self, send_err: bool) -> None:
        self._delay(LOOP_DELAY)
        text = (f'Loop detected for leafnode account="{self.account.name}". '
                f"Delaying attempt to reconnect for {int(LOOP_DELAY)}s")
        log.error(text)
        self.close("Protocol Violation", text if send_err else None)

    def _perm_violation(self, pub: bool, subject: str) -> None:
        if self.is_spoke:
            return  # the hub told us our permissions: we just do not take it
        self._delay(PERM_VIOLATION_DELAY)
        what = "Publish" if pub else "Subscription"
        log.error("%s Violation on %r - Check other side configuration", what, subject)
        self.close("Protocol Violation", f'Permissions Violation for {what} to "{subject}"')

    # -- liveness -------------------------------------------------------------------------
    async def _pinger(self) -> None:
        o = self.broker.options
        first = min(FIRST_PING, o.ping_interval)
        await trio.sleep(first + random.uniform(0, first / 5))
        while not self.closing:
            if self.pings_out + 1 > o.ping_max:
                self.close("Stale Connection", "Stale Connection")
                return
            self.pings_out += 1
            self._ping_at = trio.current_time()
            self.enqueue(proto.PING)
            await trio.sleep(o.ping_interval)

    # -- monitoring -----------------------------------------------------------------------
    def leafz(self, subs: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.cid,
            "name": self.remote_server,
            "is_spoke": self.is_spoke,
            "account": self.account.name,
            "ip": self.peer[0],
            "port": self.peer[1],
            "rtt": go_duration(self.rtt_ns),
            "in_msgs": self.in_msgs,
            "out_msgs": self.out_msgs,
            "in_bytes": self.in_bytes,
            "out_bytes": self.out_bytes,
            "subscriptions": len(self.subs),
        }
        if subs:
            d["subscriptions_list"] = [s.subject for s in self.subs.values()]
        if self.compression:
            d["compression"] = self.compression
        return d

    def info_for_connz(self) -> dict[str, Any]:
        return {}


def _sig(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
