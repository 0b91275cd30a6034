"""The MQTT 3.1.1 front-end: the listener, TLS, and the per-account MQTT state.

`MQTTService(server)` is started by `services.py` when `mqtt.port` is set (`-1` picks a free
port). It opens the listener (TLS when `mqtt.tls` is configured), logs
`Listening for MQTT clients on mqtt://host:port` (`tls://` with TLS) like nats-server, and
records `server.mqtt_port` (the server lists it in `server.ports`). Every accepted connection,
and every MQTT client that arrives over WebSocket (`handle_stream`, called by the WebSocket
front-end for URL paths ending in `/mqtt`), runs an `edgebus.mqtt.connection.MQTTConnection` in
the server's connection nursery.

Per account, an `edgebus.mqtt.manager.AccountSessions` holds sessions and retained messages; it
is opened on the first CONNECT in the account, or at start when an earlier run left state
(so persistent sessions collect QoS 1/2 messages from the moment the server is up).

Difference from nats-server: nats-server refuses to start MQTT without JetStream ("mqtt requires
JetStream to be enabled if running in standalone mode"). edgebus runs MQTT either way: with
JetStream in the account, sessions and retained messages live in the JetStream streams
`$MQTT_sess` / `$MQTT_rmsgs` as in nats-server; without it, in message stores under
`<store_dir>/mqtt/` (in memory when no store directory is configured).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import trio

from ..codec.mqtt_topics import topic_to_subject
from ..mqtt import persist
from ..mqtt.connection import MQTTConnection
from ..mqtt.manager import AccountSessions
from . import listen
from .nats_tcp import peer_of
from ..core.blocking import run_blocking

log = logging.getLogger("edgebus")

_PUB_CACHE_MAX = 50_000


class MQTTService:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.broker = server.broker
        self.options = server.options.mqtt
        mq = self.options
        aw = float(getattr(mq, "ack_wait", 0) or 0)
        self.ack_wait = aw if aw > 0 else 30.0
        self.managers: dict[str, AccountSessions] = {}
        self._opening: dict[str, trio.Event] = {}
        self.connections: set[MQTTConnection] = set()
        # publish topic -> (subject, subject bytes); shared by all connections
        self.pub_subjects: dict[str, tuple[str, bytes]] = {}
        self.tls_context: Any = None
        self.tls_peer_check: Any = None
        self.port = 0
        self.nursery: trio.Nursery | None = None
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        server = self.server
        mq = self.options
        tls = getattr(mq, "tls", None)
        if tls is not None and (tls.cert_file or tls.key_file):
            from ..security import tlsconf
            self.tls_context = tlsconf.server_context(tls)
            from ..security.ocsp import peer_check  # tls.ocsp_peer, checked after the handshake
            self.tls_peer_check = peer_check(server, tls, peer_is_server=False)
        listeners = listen.trio_listeners(listen.take(server, listen.MQTT))
        self.port = listeners[0].socket.getsockname()[1]
        server.mqtt_port = self.port
        scheme = "tls" if self.tls_context is not None else "mqtt"
        host = listen.addresses(server.options)[listen.MQTT][0]
        await self._restore()
        async with trio.open_nursery() as n:
            self.nursery = n
            server.listener_scopes.append(n.cancel_scope)
            for ln in listeners:
                n.start_soon(self._accept_loop, ln)
            n.start_soon(self._sync_loop)
            log.info("Listening for MQTT clients on %s://%s:%d", scheme, host, self.port)
            task_status.started(self)
        # the listener scope is cancelled at shutdown; connections live in conn_nursery

    async def _restore(self) -> None:
        """Open the accounts that have MQTT state from an earlier run."""
        names: set[str] = set()
        dirs = set(persist.existing_account_dirs(self.server))
        for acc in list(self.broker.accounts.values()):
            if persist.account_dir_name(acc.name) in dirs:
                names.add(acc.name)
        js = self.server.services.get("jetstream")
        for name, jsa in (getattr(js, "accounts", None) or {}).items():
            try:
                if jsa.lookup(persist.SESS_STREAM) is not None or \
                        jsa.lookup(persist.RMSGS_STREAM) is not None:
                    names.add(name)
            except Exception:
                continue
        for name in sorted(names):
            acc = self.broker.accounts.get(name)
            if acc is not None:
                try:
                    await self.manager_for(acc)
                except Exception:
                    log.exception("MQTT: restoring account %r failed", name)

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        conn_nursery = self.server.conn_nursery
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:
                    log.error("MQTT accept failed: %s", e)
                    await trio.sleep(0.1)
                    continue
                conn_nursery.start_soon(self._handle_tcp, stream)

    async def _handle_tcp(self, stream: trio.SocketStream) -> None:
        try:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        except OSError:
            pass
        tls = getattr(self.options, "tls", None)
        await self._serve(MQTTConnection(self, stream, remote=peer_of(stream),
                                         tls_context=self.tls_context,
                                         tls_timeout=(tls.timeout if tls else 2.0)))

    async def handle_stream(self, stream: trio.abc.Stream, remote: tuple[str, int] = ("", 0),
                            conn_type: str = "websocket") -> None:
        """Run an MQTT connection over an already established stream (WebSocket `/mqtt`)."""
        await self._serve(MQTTConnection(self, stream, remote=remote,
                                         websocket=conn_type in ("websocket", "ws", "mqtt_ws")))

    async def _serve(self, conn: MQTTConnection) -> None:
        if self._stopping:
            await conn.stream.aclose()
            return
        self.server.connections.add(conn)
        self.connections.add(conn)
        try:
            await conn.run()
        except Exception:  # a bug in one connection must not take the server down
            log.exception("MQTT connection %d failed", conn.cid)
        finally:
            self.server.connections.discard(conn)
            self.connections.discard(conn)

    async def _sync_loop(self) -> None:
        """Periodic fsync of file-backed MQTT stores (JetStream's sync_interval)."""
        o = self.server.options.jetstream
        try:
            interval = float(o.sync_interval)
        except (TypeError, ValueError):
            interval = 120.0
        if interval <= 0:
            interval = 120.0
        while True:
            await trio.sleep(interval)
            for mgr in list(self.managers.values()):
                if mgr.storage is not None:
                    await run_blocking(mgr.storage.sync)

    async def stop(self) -> None:
        """Server shutdown: close MQTT clients (Wills go out), then flush and close stores."""
        self._stopping = True
        for c in list(self.connections):
            c.close("Server Shutdown")
        with trio.move_on_after(2):
            while self.connections:
                await trio.sleep(0.01)
        for c in list(self.connections):
            c.kill("Server Shutdown")
        with trio.move_on_after(1):
            while self.connections:
                await trio.sleep(0.01)
        for mgr in list(self.managers.values()):
            try:
                await run_blocking(mgr.close)
            except Exception:
                log.exception("MQTT: closing account %r failed", mgr.account.name)
        self.managers.clear()

    # -- accounts -------------------------------------------------------------------------
    async def manager_for(self, account: Any) -> AccountSessions:
        """The account's MQTT state, opened (once, even under concurrent CONNECTs) on demand."""
        name = account.name
        while True:
            mgr = self.managers.get(name)
            if mgr is not None:
                return mgr
            ev = self._opening.get(name)
            if ev is None:
                break
            await ev.wait()
        ev = self._opening[name] = trio.Event()
        try:
            mgr = AccountSessions(self, account)
            await mgr.open()
            self.managers[name] = mgr
            return mgr
        finally:
            del self._opening[name]
            ev.set()

    # -- caches ---------------------------------------------------------------------------
    def pub_subject(self, topic: str) -> tuple[str, bytes]:
        """NATS subject of a PUBLISH topic (raises TopicError), cached."""
        subject = topic_to_subject(topic)
        ent = (subject, subject.encode("utf-8", "surrogateescape"))
        if len(self.pub_subjects) >= _PUB_CACHE_MAX:
            self.pub_subjects.clear()
        self.pub_subjects[topic] = ent
        return ent
