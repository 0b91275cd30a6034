"""Accounts from configuration or JWTs, and the import/export wiring between them.

`AccountManager` owns the account set the security layer configures: it creates `Account`s from
the `accounts {}` block (or from account JWTs in operator mode, through a resolver), records their
exports, and wires each import as an internal forwarding subscription, so `Account.route` stays
the one delivery path:

- stream import: a forwarder in the exporting account subscribes to the imported subject and
  re-routes each message into the importer under the prefixed / renamed subject;
- service import: a forwarder in the importer subscribes to the local subject and re-routes
  requests into the exporter under the exported subject, with the reply replaced by a tracked
  `_R_.` subject; the exporter's response tracker sends responses back to the original reply
  (once for `Singleton`, until the threshold passes for `Stream` / `Chunked`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..core.account import Account
from ..core.client import ACCOUNT, InternalClient, Msg
from ..core.subject import subjects_collide, subset_match, valid_subject

if TYPE_CHECKING:
    from ..core.broker import Broker
    from ..core.sublist import Subscription

log = logging.getLogger("edgebus.accounts")

RESP_SINGLETON = "Singleton"
RESP_STREAM = "Stream"
RESP_CHUNKED = "Chunked"
DEFAULT_RESP_THRESHOLD = 120.0  # seconds a tracked reply stays mapped (nats-server 2 min)
_MAX_HOPS = 8  # forwarding depth guard against import cycles
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class AccountConfigError(ValueError):
    """An accounts{} block (or account JWT) that nats-server would refuse."""


def _low(d: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in d.items()} if isinstance(d, dict) else {}


def _rand62(n: int) -> str:
    return "".join(_B62[b % 62] for b in os.urandom(n))


def map_subject(subject: str, src: str, dst: str) -> str:
    """Rename `subject` (matched by pattern `src`) to pattern `dst`: `*` and `$n` in `dst` take
    the `*` tokens of `src` in order / by position, a trailing `>` takes the rest."""
    if src == dst:
        return subject
    st, pt = subject.split("."), src.split(".")
    wild: list[str] = []
    rest: list[str] = []
    for i, p in enumerate(pt):
        if p == ">":
            rest = st[i:]
            break
        if p == "*" and i < len(st):
            wild.append(st[i])
    out: list[str] = []
    k = 0
    for t in dst.split("."):
        if t == ">":
            out += rest
        elif t == "*":
            out.append(wild[k] if k < len(wild) else t)
            k += 1
        elif t.startswith("$") and t[1:].isdigit() and 0 < int(t[1:]) <= len(wild):
            out.append(wild[int(t[1:]) - 1])
        else:
            out.append(t)
    return ".".join(out)


@dataclass
class Export:
    subject: str
    service: bool
    accounts: set[str] | None = None  # None = public
    response_type: str = RESP_SINGLETON
    threshold: float = DEFAULT_RESP_THRESHOLD
    token_req: bool = False
    name: str = ""
    revocations: dict[str, int] = field(default_factory=dict)  # importer -> activations before

    def allows(self, importer: str) -> bool:
        return self.accounts is None or importer in self.accounts

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"subject": self.subject, "type": "service" if self.service else "stream"}
        if self.service:
            d["response_type"] = self.response_type
            if self.threshold != DEFAULT_RESP_THRESHOLD:
                d["response_threshold"] = int(self.threshold * 1e9)
        if self.accounts is not None:
            d["token_req"] = True
        if self.name:
            d["name"] = self.name
        return d


@dataclass
class Import:
    account: str  # the exporting account
    subject: str  # subject in the exporter
    local: str  # subject in the importer (stream: delivered as; service: published on)
    service: bool
    name: str = ""
    forwarder: InternalClient | None = None
    sub: Any = None
    listener: Any = None  # (sublist, callback) watching the importer's interest
    error: str = ""
    token: str = ""  # activation token for a token_req export (JWT mode)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"subject": self.subject, "account": self.account,
                             "local_subject": self.local,
                             "type": "service" if self.service else "stream"}
        if self.name:
            d["name"] = self.name
        if self.error:
            d["invalid"] = True
        return d


@dataclass
class _Pending:
    account: Account
    reply: str
    reply_b: bytes
    rtype: str
    expires: float
    requester: Any = None


@dataclass
class AccountState:
    """The security layer's view of one account: exports, imports, response tracking."""

    account: Account
    exports: list[Export] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    replies: dict[str, _Pending] = field(default_factory=dict)
    reply_prefix: str = ""
    reply_client: InternalClient | None = None
    claims: Any = None  # jwt.AccountClaims in operator mode
    users: dict[str, Any] = field(default_factory=dict)
    default_permissions: Any = None
    limits: dict[str, Any] = field(default_factory=dict)
    mappings: dict[str, Any] = field(default_factory=dict)  # as configured, for /accountz
    updated: float = 0.0  # wall seconds (server clock) of the last config/JWT change


class AccountManager:
    """Creates accounts, keeps their exports/imports, and wires the forwarding between them."""

    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        self.states: dict[str, AccountState] = {}
        self.resolver: Any = None  # operator mode: object with fetch(pubkey) -> jwt | None
        self.trusted: set[str] | None = None  # operator mode: keys that may sign account JWTs
        self.on_account_update: list[Callable[[Account], None]] = []
        self._hops = 0

    def _wall(self) -> float:
        """Wall-clock seconds from the server clock (MockClock moves it too)."""
        return self.broker.clock.now_ns() / 1e9

    # -- registry -------------------------------------------------------------------------
    def state(self, acc: Account | str) -> AccountState:
        name = acc if isinstance(acc, str) else acc.name
        st = self.states.get(name)
        if st is None:
            account = self.broker.get_account(name, create=True)
            st = AccountState(account, updated=self._wall())
            self.states[name] = st
            account.exports = st.exports
            account.imports = st.imports
        return st

    def get(self, name: str) -> Account | None:
        """An account by name; in operator mode an unknown public key is resolved and loaded."""
        acc = self.broker.accounts.get(name)
        st = self.states.get(name)
        if acc is not None and (self.resolver is None or (st is not None and st.claims is not None)):
            return acc
        if self.resolver is not None and name.startswith("A") and len(name) == 56:
            token = self.resolver.fetch(name)
            if token:
                try:
                    return self.apply_jwt(token)
                except Exception as e:
                    log.warning("account %s: JWT refused: %s", name, e)
        return acc

    # -- configuration (accounts {} block) ------------------------------------------------
    def configure(self, accounts: dict[str, Any] | None) -> None:
        """Create every account of an accounts{} block and wire their imports."""
        accounts = accounts or {}
        for name, spec in accounts.items():
            st = self.state(name)
            self._load_account_block(st, _low(spec))
        for name, spec in accounts.items():
            st = self.states[name]
            for imp in _low(spec).get("imports") or []:
                self._add_config_import(st, _low(imp))
        self.link_all(strict=True)

    def _load_account_block(self, st: AccountState, spec: dict[str, Any]) -> None:
        from ..core.permissions import Permissions
        st.exports.clear()
        for e in spec.get("exports") or []:
            e = _low(e)
            if "stream" in e:
                subj, service = str(e["stream"]), False
            elif "service" in e:
                subj, service = str(e["service"]), True
            else:
                raise AccountConfigError(f"export needs 'stream' or 'service': {e}")
            if not valid_subject(subj):
                raise AccountConfigError(f"invalid export subject {subj!r}")
            accs = e.get("accounts")
            rtype = str(e.get("response_type", e.get("response", RESP_SINGLETON)) or RESP_SINGLETON)
            rtype = {"singleton": RESP_SINGLETON, "stream": RESP_STREAM,
                     "chunked": RESP_CHUNKED}.get(rtype.lower())
            if rtype is None:
                raise AccountConfigError(f"unknown response type {e.get('response_type')!r}")
            thr = e.get("threshold", e.get("response_threshold"))
            st.exports.append(Export(subj, service, set(accs) if accs is not None else None,
                                     rtype, _seconds(thr) if thr else DEFAULT_RESP_THRESHOLD))
        st.default_permissions = Permissions.from_config(spec.get("default_permissions"))
        st.imports.clear()
        mappings = spec.get("mappings") or spec.get("maps")
        try:
            set_mappings(st.account, mappings)
        except ValueError as e:  # transform's MappingError / TransformError
            raise AccountConfigError(f"account {st.account.name!r} mappings: {e}") from e
        st.mappings = dict(mappings or {})
        limits = _low(spec.get("limits"))
        st.limits = {k: int(v) for k, v in limits.items() if isinstance(v, int)}
        # config-mode names -> the JWT limit names the connection layer enforces
        for names, key in ((("max_connections", "max_conn"), "conn"),
                           (("max_subscriptions", "max_subs"), "subs"),
                           (("max_payload",), "payload"), (("max_leafnodes",), "leaf")):
            for n in names:
                if isinstance(limits.get(n), int):
                    st.limits[key] = int(limits[n])
        st.account.limits = st.limits
        st.updated = self._wall()

    def _add_config_import(self, st: AccountState, imp: dict[str, Any]) -> None:
        if "stream" in imp:
            src = _low(imp["stream"])
            subj = str(src.get("subject", ""))
            local = subj
            if imp.get("to"):
                local = str(imp["to"])
            elif imp.get("prefix"):
                local = f"{imp['prefix']}.{subj}"
            st.imports.append(Import(str(src.get("account", "")), subj, local, False))
        elif "service" in imp:
            src = _low(imp["service"])
            subj = str(src.get("subject", ""))
            st.imports.append(Import(str(src.get("account", "")), subj,
                                     str(imp.get("to") or subj), True))
        else:
            raise AccountConfigError(f"import needs 'stream' or 'service': {imp}")

    # -- wiring ---------------------------------------------------------------------------
    def link_all(self, strict: bool = False) -> None:
        for st in list(self.states.values()):
            for imp in st.imports:
                if imp.forwarder is None:
                    self._link(st, imp, strict)

    def unlink(self, st: AccountState) -> None:
        for imp in st.imports:
            if imp.listener is not None:
                sl, cb = imp.listener
                if cb in sl.listeners:
                    sl.listeners.remove(cb)
                imp.listener = None
            if imp.forwarder is not None:
                imp.forwarder.close()
                imp.forwarder = None
                imp.sub = None

    def _link(self, st: AccountState, imp: Import, strict: bool) -> None:
        imp.error = ""
        exporter = self.get(imp.account)
        err = ""
        if exporter is None:
            err = f"account {imp.account!r} not found"
        else:
            ex = self.states[exporter.name] if exporter.name in self.states else None
            export = None
            for e in (ex.exports if ex else []):
                if e.service == imp.service and subset_match(imp.subject, e.subject):
                    export = e
                    break
            if export is None:
                err = (f"{'service' if imp.service else 'stream'} import of {imp.subject!r} from "
                       f"{imp.account!r}: no matching export")
            elif not export.allows(st.account.name) and not (
                    export.token_req and self._activation_ok(imp, st.account, ex, export)):
                err = f"import of {imp.subject!r} from {imp.account!r} not authorized"
        if err:
            imp.error = err
            if strict:
                raise AccountConfigError(err)
            log.warning("account %s: %s", st.account.name, err)
            return
        assert exporter is not None
        if imp.service:
            self._link_service(st, imp, exporter, export)  # type: ignore[arg-type]
        else:
            self._link_stream(st, imp, exporter)

    def _activation_ok(self, imp: Import, importer: Account, ex: "AccountState | None",
                       export: Export) -> bool:
        """A private JWT export: the import's activation token must be issued by the exporter
        (or one of its signing keys) to this importer, for a subject covering the import."""
        if not imp.token or ex is None or ex.claims is None:
            return False
        from .auth import TokenError, verify_token
        try:
            act = verify_token(imp.token)
        except TokenError as e:
            log.warning("activation token refused: %s", e)
            return False
        nats = act.get("nats") if isinstance(act.get("nats"), dict) else {}
        if nats.get("type", act.get("type")) != "activation":
            return False
        if act.get("sub") != importer.name:
            return False
        iss = str(act.get("iss") or "")
        issuer_acc = str(nats.get("issuer_account") or "")
        if iss != ex.account.name and not (issuer_acc == ex.account.name
                                           and ex.claims.scope_for(iss)[0]):
            return False
        subj = str(nats.get("subject") or "")
        if not subj or not subset_match(imp.subject, subj):
            return False
        from .jwt import is_revoked
        return not is_revoked(export.revocations, importer.name, int(act.get("iat") or 0))

    def _link_stream(self, st: AccountState, imp: Import, exporter: Account) -> None:
        importer = st.account
        fwd = InternalClient(self.broker, exporter, kind=ACCOUNT,
                             name=f"stream import {exporter.name}>{importer.name}")
        fwd.is_forwarder = True  # type: ignore[attr-defined]
        src, dst = imp.subject, imp.local

        def forward(sub: "Subscription", msg: Msg) -> None:
            if self._hops >= _MAX_HOPS:
                return
            self._hops += 1
            try:
                if msg.deliver is not None:
                    # a JetStream delivery: it keeps its stored subject; what the import maps
                    # is the deliver subject it is routed on
                    importer.route(Msg(msg.subject, msg.reply, msg.hdr, msg.data, None,
                                       deliver=map_subject(msg.deliver, src, dst)))
                else:
                    importer.route(Msg(map_subject(msg.subject, src, dst), msg.reply, msg.hdr,
                                       msg.data, None))
            finally:
                self._hops -= 1

        imp.forwarder = fwd
        # interest-driven, like nats-server's shadow subscriptions: the exporter is only
        # subscribed while some subscription in the importer can receive the stream
        interest = [0]

        def relevant(sub: "Subscription") -> bool:
            return not getattr(sub.client, "is_forwarder", False) and \
                subjects_collide(sub.subject, dst)

        def on_change(sub: "Subscription", added: bool) -> None:
            if not relevant(sub):
                return
            interest[0] += 1 if added else -1
            if added and interest[0] == 1 and imp.sub is None and not fwd.closed:
                imp.sub = fwd.subscribe(src, forward)
            elif not added and interest[0] <= 0 and imp.sub is not None:
                interest[0] = 0
                fwd.unsubscribe(imp.sub)
                imp.sub = None

        interest[0] = sum(1 for sub in importer.sublist.all_subs() if relevant(sub))
        if interest[0]:
            imp.sub = fwd.subscribe(src, forward)
        importer.sublist.listeners.append(on_change)
        imp.listener = (importer.sublist, on_change)

    def _link_service(self, st: AccountState, imp: Import, exporter: Account, export: Export) -> None:
        importer = st.account
        ex_state = self.state(exporter)
        self._ensure_reply_tracker(ex_state)
        fwd = InternalClient(self.broker, importer, kind=ACCOUNT,
                             name=f"service import {importer.name}>{exporter.name}")
        fwd.is_forwarder = True  # type: ignore[attr-defined]
        local, remote = imp.local, imp.subject

        def forward(sub: "Subscription", msg: Msg) -> None:
            if self._hops >= _MAX_HOPS:
                return
            reply = None
            if msg.reply:
                reply = f"{ex_state.reply_prefix}{_rand62(10)}"
                thr = export.threshold
                ex_state.replies[reply] = _Pending(importer, msg.reply, msg.reply_b or msg.reply.encode(),
                                                   export.response_type, self.broker.clock.monotonic() + thr,
                                                   msg.src)
                if len(ex_state.replies) > 4096:
                    _prune(ex_state.replies, self.broker.clock.monotonic())
            self._hops += 1
            try:
                n = exporter.route(Msg(map_subject(msg.subject, local, remote), reply, msg.hdr,
                                       msg.data, None))
            finally:
                self._hops -= 1
            if n == 0 and reply is not None:
                ex_state.replies.pop(reply, None)
                src_client = msg.src
                if src_client is not None and getattr(src_client, "no_responders", False) and \
                        msg.reply_b is not None and hasattr(src_client, "_send_no_responders"):
                    src_client._send_no_responders(msg.reply, msg.reply_b)

        imp.sub = fwd.subscribe(local, forward)
        imp.forwarder = fwd

    def _ensure_reply_tracker(self, st: AccountState) -> None:
        if st.reply_client is not None:
            return
        st.reply_prefix = f"_R_.{_rand62(6)}."
        rc = InternalClient(self.broker, st.account, kind=ACCOUNT,
                            name=f"service replies {st.account.name}")

        def respond(sub: "Subscription", msg: Msg) -> None:
            p = st.replies.get(msg.subject)
            if p is None:
                return
            if p.expires < self.broker.clock.monotonic():
                del st.replies[msg.subject]
                return
            if p.rtype == RESP_SINGLETON:
                del st.replies[msg.subject]
            if self._hops >= _MAX_HOPS:
                return
            self._hops += 1
            try:
                p.account.route(Msg(p.reply, msg.reply, msg.hdr, msg.data, None, None, None))
            finally:
                self._hops -= 1

        rc.subscribe(st.reply_prefix + ">", respond)
        st.reply_client = rc

    # -- operator mode --------------------------------------------------------------------
    def apply_jwt(self, token: str) -> Account:
        """Create or update an account from its JWT (checked against the trusted keys)."""
        from . import jwt as njwt
        claims = njwt.decode_account(token)
        njwt.check_account(claims, self.trusted)
        for issue in njwt.validate_claims(claims):
            raise njwt.AuthError(issue)
        name = claims.subject
        st = self.state(name)
        old = st.claims
        if old is not None and old.issued_at > claims.issued_at:
            raise njwt.JWTError("jwt is older than the one in use")
        st.claims = claims
        acc = st.account
        acc.jwt = token
        acc.nkey = name
        self._apply_claims(st, claims)
        for cb in self.on_account_update:
            cb(acc)
        return acc

    def _apply_claims(self, st: AccountState, claims: Any) -> None:
        from ..core.permissions import Permissions
        self.unlink(st)
        st.exports.clear()
        for e in claims.exports:
            e = _low(e)
            service = str(e.get("type", "stream")).lower() == "service"
            rtype = str(e.get("response_type") or RESP_SINGLETON)
            thr = e.get("response_threshold")
            st.exports.append(Export(str(e.get("subject", "")), service,
                                     set() if e.get("token_req") else None, rtype,
                                     float(thr) / 1e9 if thr else DEFAULT_RESP_THRESHOLD,
                                     bool(e.get("token_req")), str(e.get("name", "")),
                                     {str(k): int(v) for k, v in (e.get("revocations") or {}).items()}))
        st.imports.clear()
        for i in claims.imports:
            i = _low(i)
            service = str(i.get("type", "stream")).lower() == "service"
            subj = str(i.get("subject", ""))
            if i.get("local_subject"):
                local = str(i["local_subject"])
            elif service:
                local, subj = subj, str(i.get("to") or subj)
            else:
                local = f"{i['to']}.{subj}" if i.get("to") else subj
            st.imports.append(Import(str(i.get("account", "")), subj, local, service,
                                     str(i.get("name", "")), token=str(i.get("token") or "")))
        dp = claims.default_permissions
        st.default_permissions = Permissions.from_jwt(dp) if dp else None
        st.limits = dict(claims.limits)
        st.account.limits = st.limits
        st.account.js_limits = _js_limits_from_jwt(st.limits)
        try:
            set_mappings(st.account, None)
            st.mappings = dict(claims.mappings or {})
            if claims.mappings:
                from ..core.transform import Mappings
                st.account.mappings = Mappings.from_jwt(claims.mappings)
        except Exception as e:
            log.warning("account %s: bad mappings: %s", claims.subject, e)
        st.updated = self._wall()
        self.link_all(strict=False)
        # importers of this account may now link (or must re-link to the new exports)
        for other in self.states.values():
            if other is not st and any(i.account == st.account.name for i in other.imports):
                self.unlink(other)
        self.link_all(strict=False)


def _js_limits_from_jwt(limits: dict[str, Any]) -> dict[str, Any] | None:
    """JetStream limits of an account JWT (flat or the R1 tier) in the config's key names;
    None when the JWT does not enable JetStream (no memory and no disk storage)."""
    src = limits
    tiers = limits.get("tiered_limits")
    if isinstance(tiers, dict) and isinstance(tiers.get("R1"), dict):
        src = tiers["R1"]
    mem = src.get("mem_storage", 0) or 0
    disk = src.get("disk_storage", 0) or 0
    if not mem and not disk:
        return None
    out: dict[str, Any] = {"max_memory": int(mem), "max_store": int(disk)}
    for jk, ck in (("streams", "max_streams"), ("consumer", "max_consumers"),
                   ("max_bytes_required", "max_bytes_required"),
                   ("mem_max_stream_bytes", "mem_max_stream_bytes"),
                   ("disk_max_stream_bytes", "store_max_stream_bytes"),
                   ("max_ack_pending", "max_ack_pending")):
        if jk in src:
            out[ck] = src[jk]
    return out


def _prune(replies: dict[str, _Pending], now: float) -> None:
    for k in [k for k, v in replies.items() if v.expires < now]:
        del replies[k]


def _seconds(v: Any) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    from ..conf import parse_duration
    return float(parse_duration(v))


def set_mappings(account: Account, mappings: dict[str, Any] | None) -> None:
    """Install a mappings{} block on an account (None clears), through core/transform."""
    if not mappings:
        account.mappings = None
        return
    from ..core.transform import Mappings
    account.mappings = Mappings(mappings)


# -- account resolvers (operator mode) ----------------------------------------------------
class MemoryResolver:
    """`resolver: MEMORY` with `resolver_preload`: account JWTs held in memory."""

    kind = "MEMORY"

    def __init__(self, preload: dict[str, str] | None = None) -> None:
        self.jwts: dict[str, str] = dict(preload or {})

    def fetch(self, pubkey: str) -> str | None:
        return self.jwts.get(pubkey)

    def store(self, pubkey: str, token: str) -> None:
        self.jwts[pubkey] = token

    def delete(self, pubkey: str) -> None:
        self.jwts.pop(pubkey, None)

    def list(self) -> list[str]:
        return sorted(self.jwts)

    @property
    def accepts_updates(self) -> bool:
        return False


class DirResolver(MemoryResolver):
    """The `nats` resolver (`type: full|cache`): JWTs kept as `<dir>/<pubkey>.jwt` files and
    updated through `$SYS.REQ.CLAIMS.UPDATE` / `$SYS.REQ.ACCOUNT.<acc>.CLAIMS.UPDATE`."""

    kind = "FULL"

    def __init__(self, directory: str, preload: dict[str, str] | None = None,
                 allow_delete: bool = False, kind: str = "FULL") -> None:
        super().__init__()
        self.dir = directory
        self.allow_delete = allow_delete
        self.kind = kind
        os.makedirs(directory, exist_ok=True)
        for fn in os.listdir(directory):
            if fn.endswith(".jwt"):
                try:
                    with open(os.path.join(directory, fn), encoding="utf-8") as f:
                        self.jwts[fn[:-4]] = f.read().strip()
                except OSError:
                    continue
        for k, v in (preload or {}).items():
            self.jwts.setdefault(k, v)

    def store(self, pubkey: str, token: str) -> None:
        super().store(pubkey, token)
        tmp = os.path.join(self.dir, f".{pubkey}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(token)
        os.replace(tmp, os.path.join(self.dir, f"{pubkey}.jwt"))

    def delete(self, pubkey: str) -> None:
        super().delete(pubkey)
        try:
            os.remove(os.path.join(self.dir, f"{pubkey}.jwt"))
        except OSError:
            pass

    @property
    def accepts_updates(self) -> bool:
        return True


def make_resolver(spec: Any, preload: dict[str, str] | None) -> MemoryResolver:
    """From the `resolver` option: "MEMORY", {type: full|cache, dir: ...}; URL() is refused."""
    if spec is None or (isinstance(spec, str) and spec.strip().upper().startswith("MEM")):
        return MemoryResolver(preload)
    if isinstance(spec, dict):
        s = _low(spec)
        kind = str(s.get("type", "")).upper()
        if kind in ("MEM", "MEMORY"):
            return MemoryResolver(preload)
        if kind in ("FULL", "CACHE"):
            return DirResolver(str(s.get("dir") or "./jwt"), preload,
                               bool(s.get("allow_delete")), kind)
    raise ValueError(f"account resolver {spec!r} is not supported (use MEMORY or a nats resolver)")
