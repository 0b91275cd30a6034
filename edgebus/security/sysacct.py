"""The system account service: `$SYS` events and request handlers, as nats-server `events.go`.

Events (published in the system account): `$SYS.ACCOUNT.<acc>.CONNECT` / `.DISCONNECT` (client
connect/disconnect advisories), `$SYS.ACCOUNT.<acc>.SERVER.CONNS` (account connection counts),
`$SYS.SERVER.<id>.CLIENT.AUTH.ERR` (failed authentication).

Requests (answered with `{"server": {...}, "data": ...}` or `{"server", "error": {code,
description}}`): `$SYS.REQ.SERVER.PING[.<Z>]` and `$SYS.REQ.SERVER.<id>.<Z>` for STATSZ, VARZ,
CONNZ, SUBSZ, JSZ, HEALTHZ, ACCOUNTZ, IDZ, LEAFZ, ROUTEZ, GATEWAYZ and RELOAD;
`$SYS.REQ.ACCOUNT.<acc>.<Z>` for SUBSZ, CONNZ, JSZ, INFO, STATZ, CONNS; the nats account
resolver's `$SYS.REQ.CLAIMS.UPDATE|LIST|DELETE` and `$SYS.REQ.ACCOUNT.<acc>.CLAIMS.UPDATE|LOOKUP`.
Every account can ask `$SYS.REQ.USER.INFO` about its own connection and
`$SYS.REQ.ACCOUNT.PING.CONNZ|STATZ` about itself (nats-server's system imports).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from typing import TYPE_CHECKING, Any, Callable

import trio

from ..codec.json_depth import loads
from ..core.client import InternalClient, Msg
from ..core.clock import rfc3339

if TYPE_CHECKING:
    from ..core.account import Account
    from ..core.sublist import Subscription

log = logging.getLogger("edgebus.sys")

CONNECT_EVENT = "io.nats.server.advisory.v1.client_connect"
DISCONNECT_EVENT = "io.nats.server.advisory.v1.client_disconnect"
ACCOUNT_CONNS_EVENT = "io.nats.server.advisory.v1.account_connections"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
STATSZ_INTERVAL = 10  # seconds between $SYS.SERVER.<id>.STATSZ heartbeats
_SERVER_Z = ("STATSZ", "VARZ", "CONNZ", "SUBSZ", "JSZ", "HEALTHZ", "ACCOUNTZ", "IDZ", "LEAFZ",
             "ROUTEZ", "GATEWAYZ")
# request-body option names (nats-server JSON) -> monitoring query names
_OPT_NAMES = {"account": "acc", "accounts": "accounts", "subscriptions": "subs",
              "subscriptions_detail": "subs", "username": "auth", "details": "details"}


def nuid() -> str:
    return "".join(_B62[b % 62] for b in os.urandom(22))


class SystemService:
    """Runs under the server's root nursery; started by services.py when this module exists."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.broker = server.broker
        self.seq = 0
        self.client: InternalClient | None = None
        self._account_clients: dict[str, InternalClient] = {}
        self._sys_subs: list[Any] = []
        self._changed = trio.Event()  # set when account claims change (see run)
        self.broker.subsystems["system"] = self

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        self.install()
        mgr = self.broker.subsystems.get("accounts")
        if mgr is not None:
            mgr.on_account_update.append(self._account_updated)
        task_status.started()
        clock = self.broker.clock
        next_statsz = clock.monotonic() + STATSZ_INTERVAL
        try:
            while True:
                # Sleep until the next thing due (a heartbeat, an account's expiry), not in
                # one-second ticks: under MockClock a test that jumps an hour then costs a
                # few hundred wake-ups instead of thousands.
                deadline = next_statsz
                exp = self._next_account_expiry()
                if exp is not None:
                    deadline = min(deadline, clock.monotonic() + max(0.0, exp - clock.now_ns() / 1e9))
                with trio.move_on_at(deadline):
                    await self._changed.wait()
                if self._changed.is_set():
                    self._changed = trio.Event()
                self._check_account_expiry()
                if clock.monotonic() >= next_statsz:
                    next_statsz += STATSZ_INTERVAL
                    if self.client is not None:
                        # nats-server's periodic server heartbeat
                        self.send(f"$SYS.SERVER.{self.broker.server_id}.STATSZ",
                                  {"server": self.server_info(), "statsz": self.statsz()})
        finally:
            if mgr is not None and self._account_updated in mgr.on_account_update:
                mgr.on_account_update.remove(self._account_updated)
            if self.client is not None:
                self.send(f"$SYS.SERVER.{self.broker.server_id}.SHUTDOWN", self.server_info())
            self.stop()

    def _account_updated(self, acc: "Account") -> None:
        """New claims may expire sooner than what the loop sleeps for: look again."""
        self._changed.set()

    def _now_rfc3339(self) -> str:
        return rfc3339(self.broker.clock.now_ns())

    def install(self) -> None:
        b = self.broker
        if self.client is not None:
            return
        if self.server.options.no_system_account and not self.server.options.operator:
            return
        self.client = InternalClient(b, b.system_account, name="$SYS")
        self._subscribe_system()
        for acc in list(b.accounts.values()):
            self.install_account(acc)
        mgr = b.subsystems.get("accounts")
        if mgr is not None:
            mgr.on_account_update.append(self.install_account)
        b.on_connect.append(self._on_connect)
        b.on_disconnect.append(self._on_disconnect)

    def stop(self) -> None:
        b = self.broker
        if self._on_connect in b.on_connect:
            b.on_connect.remove(self._on_connect)
        if self._on_disconnect in b.on_disconnect:
            b.on_disconnect.remove(self._on_disconnect)
        for c in self._account_clients.values():
            c.close()
        self._account_clients.clear()
        if self.client is not None:
            self.client.close()
            self.client = None

    def rebind_system_account(self) -> None:
        """After reload/claims changes: move our subscriptions if the system account changed."""
        if self.client is not None and self.client.account is not self.broker.system_account:
            self.stop()
            self.install()

    # -- publishing -----------------------------------------------------------------------
    def server_info(self) -> dict[str, Any]:
        b = self.broker
        o = self.server.options
        self.seq += 1
        info: dict[str, Any] = {"name": b.server_name, "host": self.server.client_host,
                                "id": b.server_id, "ver": b.info_base()["version"],
                                "jetstream": bool(o.jetstream.enabled),
                                "flags": 1 if o.jetstream.enabled else 0,
                                "seq": self.seq, "time": rfc3339(b.clock.now_ns())}
        if o.server_tags:
            info["tags"] = list(o.server_tags)
        if o.jetstream.domain:
            info["domain"] = o.jetstream.domain
        return info

    def send(self, subject: str, body: Any, account: "Account | None" = None) -> None:
        """Publish JSON into the system account (or `account`)."""
        data = json.dumps(body, separators=(",", ":")).encode()
        c = self.client if account is None else self._account_client(account)
        if c is None:
            return
        c.publish(subject, None, None, data)

    def _respond(self, msg: Msg, data: Any = None, error: tuple[int, str] | None = None,
                 account: "Account | None" = None) -> None:
        if not msg.reply:
            return
        body: dict[str, Any] = {"server": self.server_info()}
        if error is not None:
            body["error"] = {"code": error[0], "description": error[1]}
        else:
            body["data"] = data
        self.send(msg.reply, body, account)

    # -- events ---------------------------------------------------------------------------
    def client_info(self, c: Any, stopped: bool = False) -> dict[str, Any]:
        ci: dict[str, Any] = {"start": rfc3339(c.start_ns), "host": c.remote[0] if getattr(c, "remote", None) else "",
                              "id": c.cid, "acc": c.account.name, "user": c.user or "",
                              "name": c.name, "lang": c.lang, "ver": c.version,
                              "rtt": int(getattr(c, "rtt_ns", 0)),
                              "name_tag": self.name_tag(c.account), "kind": c.kind, "client_type": "websocket" if c.type == "websocket"
                              else ("mqtt" if c.type == "mqtt" else "nats")}
        extra = getattr(c, "auth_extra", None) or {}
        if extra.get("jwt"):
            ci["jwt"] = extra["jwt"]
            ci["issuer_key"] = extra.get("issuer", "")
        if extra.get("tags"):
            ci["tags"] = extra["tags"]
        if stopped:
            ci["stop"] = rfc3339(c.stop_ns or self.broker.clock.now_ns())
        return {k: v for k, v in ci.items() if v not in ("", None, 0) or k in ("acc",)}

    def name_tag(self, acc: "Account") -> str:
        """nats-server getNameTag: the account JWT's name, else the account name."""
        mgr = self.broker.subsystems.get("accounts")
        st = mgr.states.get(acc.name) if mgr is not None else None
        claims = st.claims if st is not None else None
        return (claims.name if claims is not None and claims.name else acc.name)

    def _on_connect(self, c: Any) -> None:
        if self.client is None or c.kind != "Client":
            return
        acc = c.account.name
        self.send(f"$SYS.ACCOUNT.{acc}.CONNECT",
                  {"type": CONNECT_EVENT, "id": nuid(), "timestamp": self._now_rfc3339(),
                   "server": self.server_info(), "client": self.client_info(c)})
        self._account_conns(c.account)

    def _on_disconnect(self, c: Any, reason: str) -> None:
        if self.client is None or c.kind != "Client" or not getattr(c, "connected", True):
            return
        acc = c.account.name
        self.send(f"$SYS.ACCOUNT.{acc}.DISCONNECT",
                  {"type": DISCONNECT_EVENT, "id": nuid(), "timestamp": self._now_rfc3339(),
                   "server": self.server_info(), "client": self.client_info(c, stopped=True),
                   "sent": {"msgs": c.out_msgs, "bytes": c.out_bytes},
                   "received": {"msgs": c.in_msgs, "bytes": c.in_bytes},
                   "reason": reason})
        self._account_conns(c.account)

    def _account_conns(self, acc: "Account") -> None:
        body = {"type": ACCOUNT_CONNS_EVENT, "id": nuid(), "timestamp": self._now_rfc3339(),
                "server": self.server_info(), **self._account_stat(acc)}
        self.send(f"$SYS.ACCOUNT.{acc.name}.SERVER.CONNS", body)

    def auth_error_event(self, c: Any, opts: dict[str, Any], ctx: dict[str, Any]) -> None:
        if self.client is None:
            return
        ci = {"start": rfc3339(c.start_ns), "host": (ctx.get("remote") or ("", 0))[0],
              "id": c.cid, "user": str(opts.get("user") or opts.get("nkey") or ""),
              "name": str(opts.get("name") or ""), "lang": str(opts.get("lang") or ""),
              "ver": str(opts.get("version") or ""), "server": self.broker.server_name,
              "kind": "Client", "client_type": "nats"}
        self.send(f"$SYS.SERVER.{self.broker.server_id}.CLIENT.AUTH.ERR",
                  {"type": DISCONNECT_EVENT, "id": nuid(), "timestamp": self._now_rfc3339(),
                   "server": self.server_info(), "client": {k: v for k, v in ci.items() if v},
                   "sent": {"msgs": 0, "bytes": 0}, "received": {"msgs": 0, "bytes": 0},
                   "reason": "Authentication Failure"})

    # -- stats ----------------------------------------------------------------------------
    def _account_stat(self, acc: "Account") -> dict[str, Any]:
        conns = acc.num_connections()
        leafs = acc.num_leafnodes()
        zero = {"msgs": 0, "bytes": 0}
        return {"acc": acc.name, "name": self.name_tag(acc), "conns": conns, "leafnodes": leafs,
                "total_conns": conns + leafs, "num_subscriptions": acc.sublist.count,
                "sent": {"msgs": acc.out_msgs, "bytes": acc.out_bytes, "gateways": zero,
                         "routes": zero, "leafs": zero},
                "received": {"msgs": acc.in_msgs, "bytes": acc.in_bytes, "gateways": zero,
                             "routes": zero, "leafs": zero},
                "slow_consumers": acc.slow_consumers}

    def statsz(self) -> dict[str, Any]:
        b = self.broker
        clients = [c for c in b.clients.values() if c.kind == "Client"]
        sent = sum(c.out_msgs for c in clients), sum(c.out_bytes for c in clients)
        recv = sum(c.in_msgs for c in clients), sum(c.in_bytes for c in clients)
        return {"start": rfc3339(b.start_ns), "mem": _rss(), "cores": os.cpu_count() or 1,
                "cpu": 0.0, "connections": len(clients),
                "total_connections": b.total_connections,
                "active_accounts": sum(1 for a in b.accounts.values() if a.num_connections()),
                "subscriptions": sum(a.sublist.count for a in b.accounts.values()),
                "sent": {"msgs": sent[0], "bytes": sent[1]},
                "sent_to_clients": {"msgs": sent[0], "bytes": sent[1]},
                "received": {"msgs": recv[0], "bytes": recv[1]},
                "received_from_clients": {"msgs": recv[0], "bytes": recv[1]},
                "slow_consumers": b.slow_consumers, "active_servers": 1}

    # -- subscriptions --------------------------------------------------------------------
    def _subscribe_system(self) -> None:
        c = self.client
        assert c is not None
        sid = self.broker.server_id
        c.subscribe("$SYS.REQ.SERVER.PING", self._statsz_ping)
        for z in _SERVER_Z:
            c.subscribe(f"$SYS.REQ.SERVER.PING.{z}", self._make_z(z))
            c.subscribe(f"$SYS.REQ.SERVER.{sid}.{z}", self._make_z(z))
        c.subscribe(f"$SYS.REQ.SERVER.{sid}.RELOAD", self._reload)
        c.subscribe(f"$SYS.REQ.SERVER.{sid}.KICK", self._kick)
        c.subscribe("$SYS.REQ.ACCOUNT.*.*", self._account_req)
        c.subscribe("$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE", self._claims_update)
        c.subscribe("$SYS.ACCOUNT.*.CLAIMS.UPDATE", self._claims_update)
        c.subscribe("$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP", self._claims_lookup)
        c.subscribe("$SYS.REQ.CLAIMS.UPDATE", self._claims_update)
        c.subscribe("$SYS.REQ.CLAIMS.LIST", self._claims_list)
        c.subscribe("$SYS.REQ.CLAIMS.DELETE", self._claims_delete)
        c.subscribe("$SYS.REQ.USER.INFO", self._user_info)

    def _account_client(self, acc: "Account") -> InternalClient | None:
        c = self._account_clients.get(acc.name)
        if c is None or c.account is not acc:
            c = InternalClient(self.broker, acc, name=f"$SYS import {acc.name}")
            self._account_clients[acc.name] = c
        return c

    def install_account(self, acc: "Account") -> None:
        """nats-server's system imports: every non-system account may ask about itself."""
        if acc.is_system or acc is self.broker.system_account or self.client is None:
            return
        old = self._account_clients.get(acc.name)
        if old is not None and old.account is acc and old.subs:
            return
        c = self._account_client(acc)
        assert c is not None
        c.subscribe("$SYS.REQ.USER.INFO", self._user_info)
        for subj in ("$SYS.REQ.ACCOUNT.PING.CONNZ", "$SYS.REQ.SERVER.PING.CONNZ"):
            c.subscribe(subj, lambda s, m, a=acc: self._account_z(a, "CONNZ", m, a))
        c.subscribe("$SYS.REQ.ACCOUNT.PING.STATZ",
                    lambda s, m, a=acc: self._account_z(a, "STATZ", m, a))

    # -- handlers -------------------------------------------------------------------------
    def _statsz_ping(self, sub: "Subscription", msg: Msg) -> None:
        if msg.reply:
            self.send(msg.reply, {"server": self.server_info(), "statsz": self.statsz()})

    def _make_z(self, name: str) -> Callable[["Subscription", Msg], None]:
        def handler(sub: "Subscription", msg: Msg) -> None:
            try:
                data = self.z(name, _opts(msg.data))
            except Exception as e:  # report, never crash the delivering publisher
                from ..transport.monitor_query import QueryError
                if not isinstance(e, QueryError):  # a bad option is the requester's, not a bug
                    log.exception("$SYS %s request failed", name)
                self._respond(msg, error=(500, str(e)))
                return
            if name == "STATSZ" and msg.reply:
                self.send(msg.reply, {"server": self.server_info(), "statsz": data})
                return
            self._respond(msg, data)
        return handler

    def z(self, name: str, query: dict[str, str]) -> Any:
        """One monitoring document by its $SYS name."""
        if name == "STATSZ":
            return self.statsz()
        if name == "IDZ":
            return {"server_id": self.broker.server_id, "server_name": self.broker.server_name}
        if name == "ACCOUNTZ":
            from .monitor_acc import accountz
            return accountz(self.server, query)
        try:
            from ..transport import monitor
        except ImportError:
            monitor = None  # type: ignore[assignment]
        fn = getattr(monitor, name.lower(), None) if monitor is not None else None
        if fn is None:
            return {"server_id": self.broker.server_id, "now": self._now_rfc3339()}
        _status, doc = fn(self.server, {k: [v] for k, v in query.items()})
        return doc

    def _reload(self, sub: "Subscription", msg: Msg) -> None:
        from . import reload as rl
        try:
            rl.reload_from_file(self.server)
        except Exception as e:
            self._respond(msg, error=(500, f"reload failed: {e}"))
            return
        self._respond(msg, None)

    def _kick(self, sub: "Subscription", msg: Msg) -> None:
        """Disconnect a client by id (`{"cid": n}`), as nats-server's KICK request."""
        try:
            cid = int(json.loads(msg.data or b"{}").get("cid", 0))
        except (ValueError, TypeError, AttributeError):
            cid = 0
        c = self.broker.clients.get(cid)
        if c is None or c.kind != "Client":
            self._respond(msg, error=(404, f"client {cid} not found"))
            return
        c.close("Kicked")
        self._respond(msg, {})

    def _account_req(self, sub: "Subscription", msg: Msg) -> None:
        toks = msg.subject.split(".")
        if len(toks) != 5:
            return
        name, kind = toks[3], toks[4]
        if name == "PING":
            return  # handled by the per-account imports
        acc = self.broker.accounts.get(name)
        if acc is None:
            mgr = self.broker.subsystems.get("accounts")
            acc = mgr.get(name) if mgr is not None else None
        self._account_z(acc, kind, msg, None, name)

    def _account_z(self, acc: "Account | None", kind: str, msg: Msg,
                   respond_in: "Account | None", name: str = "") -> None:
        if acc is None:
            if kind in ("STATZ",):
                return
            self._respond(msg, error=(400, f"account {name!r} not found"), account=respond_in)
            return
        q = _opts(msg.data)
        try:
            if kind == "CONNZ":
                q["acc"] = acc.name
                data = self.z("CONNZ", q)
            elif kind == "SUBSZ":
                q["acc"] = acc.name
                q.setdefault("subs", "true")
                data = self.z("SUBSZ", q)
            elif kind == "JSZ":
                q["acc"] = acc.name
                data = self.z("JSZ", q)
            elif kind == "INFO":
                from .monitor_acc import account_detail
                data = account_detail(self.server, acc)
            elif kind in ("STATZ", "CONNS"):
                stat = self._account_stat(acc)
                if kind == "CONNS":
                    if msg.reply:
                        self.send(msg.reply, {"type": ACCOUNT_CONNS_EVENT, "id": nuid(),
                                              "timestamp": self._now_rfc3339(),
                                              "server": self.server_info(), **stat}, respond_in)
                    return
                data = {"server_id": self.broker.server_id, "now": self._now_rfc3339(),
                        "account_statz": [stat]}
            else:
                return
        except Exception as e:
            log.exception("$SYS account request failed")
            self._respond(msg, error=(500, str(e)), account=respond_in)
            return
        self._respond(msg, data, account=respond_in)

    def _user_info(self, sub: "Subscription", msg: Msg) -> None:
        c = msg.src
        if c is None or not msg.reply:
            return
        data: dict[str, Any] = {"user": c.user or "", "account": c.account.name}
        extra = getattr(c, "auth_extra", None) or {}
        data["account_name"] = self.name_tag(c.account)
        if extra.get("name_tag"):
            data["user_name"] = extra["name_tag"]
        if c.permissions is not None:
            data["permissions"] = c.permissions.to_dict()
        exp = getattr(c, "auth_expires", None)
        if exp:
            data["expires"] = max(0, int(exp * 1e9) - self.broker.clock.now_ns())
        self._respond(msg, data, account=sub.client.account)

    # -- account resolver (nats resolver) -------------------------------------------------
    def _claim_reply(self, msg: Msg, acc: str, message: str, err: str | None = None) -> None:
        if not msg.reply:
            return
        body: dict[str, Any] = {"server": self.server_info()}
        if err is None:
            body["data"] = {"account": acc, "code": 200, "message": message}
        else:
            body["error"] = {"account": acc, "code": 500, "description": f"{message} - {err}"}
        self.send(msg.reply, body)

    def _resolver(self) -> Any:
        mgr = self.broker.subsystems.get("accounts")
        return (mgr, mgr.resolver) if mgr is not None else (None, None)

    def _claims_update(self, sub: "Subscription", msg: Msg) -> None:
        from . import jwt as njwt
        mgr, res = self._resolver()
        if res is None:
            return
        token = msg.data.decode(errors="replace").strip()
        toks = msg.subject.split(".")
        subj_acc = toks[3] if len(toks) == 6 and toks[1] == "REQ" else (
            toks[2] if len(toks) == 5 else "")
        if not getattr(res, "accepts_updates", False):
            # MEMORY resolver: only per-account pushes, applied to accounts already loaded
            if subj_acc:
                self._memory_update(msg, mgr, res, subj_acc, token)
            return
        try:
            claims = njwt.decode_account(token)
        except njwt.JWTError as e:
            self._claim_reply(msg, "n/a", "jwt update resulted in error", str(e))
            return
        if subj_acc and claims.subject != subj_acc:
            self._claim_reply(msg, subj_acc, "jwt update resulted in error",
                              "subject does not match jwt content")
            return
        try:
            njwt.check_account(claims, mgr.trusted)
            issues = njwt.validate_claims(claims)
            if issues:
                raise njwt.AuthError("; ".join(issues))
        except njwt.JWTError as e:
            self._claim_reply(msg, claims.subject, "jwt validation failed", str(e))
            return
        try:
            res.store(claims.subject, token)
            if claims.subject in self.broker.accounts or claims.subject in mgr.states:
                acc = mgr.apply_jwt(token)
                enforce_account(self.broker, acc)
        except Exception as e:
            self._claim_reply(msg, claims.subject, "jwt update resulted in error", str(e))
            return
        self._claim_reply(msg, claims.subject, "jwt updated")

    def _memory_update(self, msg: Msg, mgr: Any, res: Any, pub: str, token: str) -> None:
        from . import jwt as njwt
        if not token:
            self._claim_reply(msg, pub, "jwt update error", "request body is empty")
            return
        try:
            claims = njwt.decode_account(token)
            if claims.subject != pub:
                raise njwt.JWTError("subject does not match jwt content")
        except njwt.JWTError as e:
            self._claim_reply(msg, pub, "jwt update error", str(e))
            return
        st = mgr.states.get(pub)
        if st is None or st.claims is None:
            self._claim_reply(msg, pub, "jwt update skipped")
            return
        try:
            acc = mgr.apply_jwt(token)
            res.store(pub, token)
            enforce_account(self.broker, acc)
        except Exception as e:
            self._claim_reply(msg, pub, "jwt update error", str(e))
            return
        self._claim_reply(msg, pub, "jwt updated")

    def _claims_lookup(self, sub: "Subscription", msg: Msg) -> None:
        mgr, res = self._resolver()
        if res is None or not msg.reply:
            return
        token = res.fetch(msg.subject.split(".")[3]) or ""
        self.client.publish(msg.reply, None, None, token.encode())  # type: ignore[union-attr]

    def _claims_list(self, sub: "Subscription", msg: Msg) -> None:
        mgr, res = self._resolver()
        if res is None or not msg.reply:
            return
        self.send(msg.reply, {"server": self.server_info(), "data": res.list()})

    def _claims_delete(self, sub: "Subscription", msg: Msg) -> None:
        from . import jwt as njwt
        mgr, res = self._resolver()
        if res is None or not getattr(res, "allow_delete", False):
            if msg.reply:
                self._claim_reply(msg, "", "delete accounts request failed", "delete not allowed")
            return
        try:
            gen = njwt.decode(msg.data.decode(errors="replace").strip())
            accs = gen.nats.get("accounts") or []
            if gen.issuer not in (mgr.trusted or set()):
                raise njwt.AuthError("not signed by a trusted operator")
        except njwt.JWTError as e:
            self._claim_reply(msg, "", "delete accounts request failed", str(e))
            return
        for a in accs:
            res.delete(str(a))
        self._claim_reply(msg, "", f"deleted {len(accs)} accounts")

    # -- account expiry -------------------------------------------------------------------
    def _next_account_expiry(self) -> float | None:
        """The earliest `exp` (epoch seconds) among the accounts' claims, if any has one."""
        mgr = self.broker.subsystems.get("accounts")
        if mgr is None:
            return None
        now = self.broker.clock.now_ns() / 1e9
        # past ones were handled when they fell due (clients of an expired account are
        # refused at connect)
        exps = [st.claims.expires for st in mgr.states.values()
                if st.claims is not None and st.claims.expires and st.claims.expires > now]
        return min(exps) if exps else None

    def _check_account_expiry(self) -> None:
        mgr = self.broker.subsystems.get("accounts")
        if mgr is None:
            return
        now = self.broker.clock.now_ns() / 1e9
        for st in list(mgr.states.values()):
            cl = st.claims
            if cl is not None and cl.expires and cl.expires <= now:
                for c in list(st.account.clients):
                    if c.kind == "Client" and hasattr(c, "close"):
                        try:
                            c.close("Authentication Expired", "Account Authentication Expired")
                        except TypeError:
                            c.close("Authentication Expired")


def enforce_account(broker: Any, acc: "Account") -> None:
    """After an account JWT update: drop revoked users (and bearer users if now disallowed)."""
    mgr = broker.subsystems.get("accounts")
    st = mgr.states.get(acc.name) if mgr is not None else None
    if st is None or st.claims is None:
        return
    from . import jwt as njwt
    for c in list(acc.clients):
        extra = getattr(c, "auth_extra", None) or {}
        token = extra.get("jwt")
        if not token or c.kind != "Client":
            continue
        try:
            uc = njwt.decode_user(token)
        except njwt.JWTError:
            continue
        revoked = st.claims.is_revoked(uc.subject, uc.issued_at)
        bearer = uc.bearer_token and st.claims.disallow_bearer
        if revoked or bearer:
            c.close("Revocation", "User Authentication Revoked")


def _opts(data: bytes) -> dict[str, str]:
    """Request body options (nats-server JSON) as monitoring query parameters."""
    if not data or not data.strip():
        return {}
    try:
        d = loads(data)
    except ValueError:
        return {}
    if not isinstance(d, dict):
        return {}
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, (dict, list)) or v is None:
            continue
        key = _OPT_NAMES.get(k, k)
        out[key] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _rss() -> int:
    try:
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(r * 1024 if platform.system() != "Darwin" else r)
    except Exception:
        return 0
