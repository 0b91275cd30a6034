"""The leaf-node subsystem: remotes we dial, the listener leaves dial, and what links share.

`LeafService(server)` is started by edgebus/services.py when `leafnodes` is configured.

- Each `remotes` entry gets one task that dials its URL pool, runs a `LeafLink` while the
  connection lasts, and dials again `leafnodes.reconnect` (1 s) later, or after the longer
  delay a link asked for (loop detected, permission violation, same cluster name).
- `leafnodes { listen }` accepts leaf connections (TLS when `leafnodes.tls` is set);
  WebSocket leaves arrive through `handle_stream` from the WebSocket listener (`/leafnode`).
- Per account: the connected links, one sublist listener that turns every subscription
  change into `LeafLink.update_smap` calls, and the `$LDS.<id>` loop-detection subject.
- `leafz(query)` answers /leafz.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import ssl
from functools import partial
from typing import Any, Callable

import trio

from .. import NATS_VERSION
from ..core.sublist import Subscription
from ..transport import listen
from ..transport.nats_tcp import peer_of
from . import wsclient
from .interest import LDS_PREFIX
from .link import ERR_DUPLICATE, LeafLink
from .remote import RemoteCfg, dial, hostport, is_ws, start_tls
from .routing import weight

log = logging.getLogger("edgebus.leaf")

_B62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
REPORT_ATTEMPTS = 60  # log a failing remote at error level once per this many attempts


def _nuid() -> str:
    return bytes(_B62[b % 62] for b in os.urandom(22)).decode()


class LeafService:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.broker = server.broker
        self.lo = server.options.leafnodes
        self.remotes = [RemoteCfg(r, i) for i, r in enumerate(self.lo.remotes)]
        self.tls_context: ssl.SSLContext | None = None
        if self.lo.tls is not None and self.lo.tls.cert_file:
            from ..security.tlsconf import server_context
            self.tls_context = server_context(self.lo.tls)
        self.port = 0
        self.links: set[LeafLink] = set()  # every link, connected or still in its handshake
        self.by_account: dict[str, list[LeafLink]] = {}
        self._listening: dict[int, Any] = {}  # id(sublist) -> sublist we listen on
        self._lds: dict[str, str] = {}
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        # called with the link when one finishes its handshake / goes away (after its
        # interest is withdrawn): e.g. JetStream retrying stream sources across the link
        self.on_link_up: list[Callable[[LeafLink], None]] = []
        self.on_link_down: list[Callable[[LeafLink], None]] = []

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        lo = self.lo
        async with trio.open_nursery() as n:
            self._nursery = n
            if lo.port is not None and lo.port != 0:
                listeners = listen.trio_listeners(listen.take(self.server, listen.LEAFNODES))
                self.port = listeners[0].socket.getsockname()[1]
                self.server.leaf_port = self.port
                log.info("Listening for leafnode connections on %s:%d", lo.host, self.port)
                for ln in listeners:
                    n.start_soon(self._accept_loop, ln)
            for cfg in self.remotes:
                n.start_soon(self._solicit, cfg)
            task_status.started()

    async def stop(self) -> None:
        """Server shutdown: close every link (each flushes what it has), then stop dialing."""
        self._stopping = True
        for link in list(self.links):
            link.close("Server Shutdown")
        with trio.move_on_after(0.5):
            while self.links:
                await trio.sleep(0.01)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _run_link(self, link: LeafLink) -> None:
        self.links.add(link)
        if hasattr(link.stream, "close_reason"):
            link.stream.close_reason = lambda: link.close_reason  # WebSocket close status
        try:
            await link.run()
        except Exception:  # a bug in one link must not take the server down
            log.exception("leaf connection %d failed", link.cid)
        finally:
            self.links.discard(link)

    # -- accepting ------------------------------------------------------------------------
    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        assert self._nursery is not None
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:
                    log.error("leafnode accept failed: %s", e)
                    await trio.sleep(0.1)
                    continue
                try:
                    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
                except OSError:
                    pass
                link = LeafLink(self, stream, account=self.broker.global_account,
                                peer=peer_of(stream))
                self._nursery.start_soon(self._run_link, link)

    async def handle_stream(self, stream: trio.abc.Stream, remote: tuple[str, int] = ("", 0)) -> None:
        """A leaf that arrived over WebSocket (`/leafnode`)."""
        await self._run_link(LeafLink(self, stream, account=self.broker.global_account,
                                      peer=remote, ws=True))

    def leaf_info(self, link: LeafLink, *, nonce: str | None = None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The INFO of the leaf port, fields in nats-server's order: sent first (with the
        nonce) and again in answer to CONNECT (`extra`: connect_info, remote_account, import,
        export)."""
        b = self.broker
        o = b.options
        lo = self.lo
        host, port = lo.host, self.port
        if lo.advertise:
            h, _, p = lo.advertise.rpartition(":")
            host, port = (h, int(p)) if h and p.isdigit() else (lo.advertise, port)
        if host in ("", "0.0.0.0", "::"):
            sock = getattr(link.stream, "socket", None)
            try:
                host = sock.getsockname()[0] if sock is not None else "127.0.0.1"
            except OSError:
                host = "127.0.0.1"
        info: dict[str, Any] = {
            "server_id": b.server_id,
            "server_name": b.server_name,
            "version": NATS_VERSION,
            "proto": 1,
            "go": b.info_base().get("go", ""),
            "host": host,
            "port": port,
            "headers": not o.no_header_support,
            "auth_required": True,  # always on the leaf port: CONNECT binds the account
        }
        if self.tls_context is not None and not link.ws:
            info["tls_required"] = True
            if lo.tls is not None and lo.tls.verify:
                info["tls_verify"] = True
        info["max_payload"] = o.max_payload
        if o.jetstream.enabled:
            info["jetstream"] = True
        info["ip"] = f"{host}:{port}"
        info["client_id"] = link.cid
        if nonce:
            info["nonce"] = nonce
        cluster = (o.cluster or {}).get("name")
        if cluster:
            info["cluster"] = str(cluster)
        if o.jetstream.domain:
            info["domain"] = o.jetstream.domain
        if extra:
            info.update(extra)
        info["info_on_connect"] = True
        info["leafnode_urls"] = [f"{host}:{port}"]
        return info

    # -- dialing --------------------------------------------------------------------------
    async def _solicit(self, cfg: RemoteCfg) -> None:
        lo = self.lo
        attempts = 0
        while not self._stopping:
            if cfg.connect_delay > 0:
                delay, cfg.connect_delay = cfg.connect_delay, 0.0
                await trio.sleep(delay)
            if not cfg.urls:
                log.debug("Empty remote leafnode definition, nothing to connect")
                return
            u = cfg.pick_next()
            acc_name = cfg.account_name or self.broker.global_account.name
            acc = self.broker.accounts.get(acc_name)
            if acc is None:
                log.error("Unable to lookup account %s for solicited leafnode connection", acc_name)
                await trio.sleep(lo.reconnect)
                continue
            try:
                stream = await self._dial(cfg, u)
            except (OSError, trio.TooSlowError, trio.BrokenResourceError) as e:
                attempts += 1
                level = logging.ERROR if attempts == 1 or attempts % REPORT_ATTEMPTS == 0 else logging.DEBUG
                log.log(level, "Error trying to connect as leafnode to remote server %r (attempt %d): %s",
                        "%s:%d" % hostport(u), attempts, e)
                await trio.sleep(lo.reconnect + random.uniform(0, lo.reconnect))
                continue
            attempts = 0
            link = LeafLink(self, stream, account=acc, remote=cfg, url=u, peer=hostport(u),
                            ws=is_ws(u))
            await self._run_link(link)
            if not self._stopping:
                await trio.sleep(lo.reconnect)

    async def _dial(self, cfg: RemoteCfg, u: Any) -> trio.abc.Stream:
        stream: trio.abc.Stream = await dial(u)
        try:
            tls_opts = cfg.opts.tls
            if is_ws(u):
                if cfg.tls:
                    stream = await start_tls(stream, cfg, u)
                host, port = hostport(u)
                ws, rest = await wsclient.handshake(stream, f"{host}:{port}", u.path,
                                                    no_masking=cfg.opts.ws_no_masking,
                                                    timeout=max(cfg.opts.first_info_timeout, 1.0))
                ws.feed(rest)
                return ws
            if tls_opts is not None and tls_opts.handshake_first:
                stream = await start_tls(stream, cfg, u)
            return stream
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            raise

    # -- per-account registry ------------------------------------------------------------
    def lds(self, account: Any) -> str:
        """This server's loop-detection subject for an account."""
        s = self._lds.get(account.name)
        if s is None:
            s = self._lds[account.name] = LDS_PREFIX + _nuid()
        return s

    def add_link(self, link: LeafLink) -> None:
        acc = link.account
        self.by_account.setdefault(acc.name, []).append(link)
        sl = acc.sublist
        if id(sl) not in self._listening:
            self._listening[id(sl)] = sl
            sl.listeners.append(partial(self._on_interest, acc.name))
        self.broker.register(link)

    def link_ready(self, link: LeafLink) -> None:
        self._notify(self.on_link_up, link)

    def remove_link(self, link: LeafLink) -> bool:
        """Forget a closing link; True if it had finished connecting."""
        lst = self.by_account.get(link.account.name)
        if lst is not None and link in lst:
            lst.remove(link)
            self.broker.unregister(link, link.close_reason)
            return True
        return False

    def link_gone(self, link: LeafLink) -> None:
        self._notify(self.on_link_down, link)

    @staticmethod
    def _notify(cbs: list[Callable[[LeafLink], None]], link: LeafLink) -> None:
        for cb in list(cbs):
            try:
                cb(link)
            except Exception:
                log.exception("leaf link hook failed")

    def evict_duplicate(self, link: LeafLink) -> None:
        """The same remote server (name, cluster, account) dialing again: the new connection
        wins, the old one is closed (it is most likely stale)."""
        if not link.remote_server or not link.remote_account:
            return
        for other in list(self.by_account.get(link.account.name, ())):
            if (other is not link and not other.solicited
                    and other.remote_server == link.remote_server
                    and other.remote_cluster == link.remote_cluster
                    and other.remote_account == link.remote_account):
                log.warning("Replacing connection from same server %s", link.remote_server)
                other.close(ERR_DUPLICATE, ERR_DUPLICATE)

    def _on_interest(self, account_name: str, sub: Subscription, added: bool) -> None:
        # runs inside Sublist.insert/remove for whoever subscribed: never let a link's
        # trouble break that subscriber
        links = self.by_account.get(account_name)
        if links:
            w = weight(sub)
            self._update(links, sub, w if added else -w)

    def propagate(self, account: Any, sub: Subscription, delta: int) -> None:
        """A leaf queue subscription's weight changed (LS+ with a new weight)."""
        self._update(self.by_account.get(account.name, []), sub, delta)

    @staticmethod
    def _update(links: list[LeafLink], sub: Subscription, delta: int) -> None:
        for link in list(links):
            try:
                link.update_smap(sub, delta)
            except Exception:
                log.exception("leaf cid=%d: interest update failed", link.cid)
                link.close("Internal Error")

    # -- monitoring -----------------------------------------------------------------------
    def leafz(self, query: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        q = query or {}
        subs = (q.get("subs") or [""])[0].lower() in ("1", "true", "detail")
        acc = (q.get("acc") or [""])[0]
        out = []
        for name, links in self.by_account.items():
            if acc and name != acc:
                continue
            out += [ln.leafz(subs) for ln in links]
        out.sort(key=lambda d: d["id"])
        return out

    def connected(self, account: str | None = None) -> list[LeafLink]:
        """Links that finished their handshake (for tests and tools)."""
        return [ln for name, lst in self.by_account.items() if account in (None, name) for ln in lst]
