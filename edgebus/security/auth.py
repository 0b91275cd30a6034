"""Authenticators: who a connection is, which account it joins, and what it may do.

`ServerAuth` is the one object the broker calls (`Broker.auth`). It follows nats-server's
`processClientOrLeafAuthentication` order:

1. operator mode (trusted operators): a user JWT is required; its account is resolved, the chain
   of trust, scoped signing keys, expiry, revocation, bearer policy and the nonce signature are
   checked (`security.jwt` does the claim checks);
2. nkey users: the nonce signature by the user's nkey;
3. users (config users, or certificate-mapped users with `verify_and_map`);
4. the single `token` or `user`/`password` of the authorization block.

`no_auth_user` stands in for a connection that presents no credentials at all. Users carry the
account they belong to and their permissions (the account's `default_permissions` otherwise).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.broker import AuthResult
from ..core.permissions import Permissions
from . import nkeys, passwords, tlsconf

if TYPE_CHECKING:
    from ..core.account import Account
    from ..core.broker import Broker
    from .accounts import AccountManager

log = logging.getLogger("edgebus.auth")

# client type (NatsConnection.type / listener) -> allowed_connection_types name
_CONN_TYPES = {"nats": "STANDARD", "client": "STANDARD", "websocket": "WEBSOCKET", "ws": "WEBSOCKET",
               "mqtt": "MQTT", "mqtt_ws": "MQTT_WS", "leaf": "LEAFNODE", "leafnode": "LEAFNODE",
               "leafnode_ws": "LEAFNODE_WS", "internal": "IN_PROCESS", "in_process": "IN_PROCESS"}
ERR_ACCOUNT_CONNS = "maximum account active connections exceeded"


@dataclass
class User:
    """A configured identity: a user name (or cert DN / SAN) or an nkey."""

    name: str
    account: "Account"
    password: str | None = None
    nkey: str | None = None
    permissions: Permissions | None = None
    connection_types: frozenset[str] | None = None

    def allows_type(self, conn_type: str) -> bool:
        if not self.connection_types:
            return True
        return _CONN_TYPES.get(conn_type, "STANDARD") in self.connection_types


@dataclass
class ListenerAuth:
    """Per-listener override (websocket{} / mqtt{} authorization): simple credentials only."""

    token: str | None = None
    username: str | None = None
    password: str | None = None
    no_auth_user: str | None = None
    timeout: float | None = None


def _sig_bytes(sig: Any) -> bytes | None:
    if not isinstance(sig, str) or not sig:
        return None
    try:
        return base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except (binascii.Error, ValueError):
        try:
            return base64.b64decode(sig)
        except (binascii.Error, ValueError):
            return None


def verify_nonce(public_key: str, nonce: str | None, sig: Any) -> bool:
    """Ed25519 signature of the INFO nonce by `public_key` (base64url raw, std accepted)."""
    raw = _sig_bytes(sig)
    if raw is None or nonce is None:
        return False
    try:
        return nkeys.verify(public_key, nonce.encode(), raw)
    except Exception:
        return False


class ServerAuth:
    """The server's authenticator (config users, nkeys, tokens, TLS map, operator JWTs)."""

    def __init__(self, broker: "Broker", accounts: "AccountManager", *,
                 token: str | None = None, username: str | None = None,
                 password: str | None = None, users: list[User] | None = None,
                 no_auth_user: str | None = None, tls_map: bool = False,
                 operator_mode: bool = False, always_nonce: bool = False,
                 listeners: dict[str, ListenerAuth] | None = None) -> None:
        self.broker = broker
        self.accounts = accounts
        self.token = token
        self.username = username
        self.password = password
        self.users: dict[str, User] = {}
        self.nkeys: dict[str, User] = {}
        for u in users or ():
            (self.nkeys if u.nkey else self.users)[u.nkey or u.name] = u
        self.no_auth_user = no_auth_user
        self.tls_map = tls_map
        self.operator_mode = operator_mode
        self.listeners = listeners or {}
        self.required = bool(operator_mode or self.users or self.nkeys or token or username)
        self.nonce = bool(operator_mode or self.nkeys or always_nonce)

    # -- what the connection asks ---------------------------------------------------------
    def _listener(self, listener: str) -> ListenerAuth | None:
        return self.listeners.get(listener)

    def required_for(self, listener: str) -> bool:
        lo = self._listener(listener)
        if lo is not None and (lo.token or lo.username or lo.no_auth_user):
            return True
        return self.required

    def advertise_for(self, listener: str) -> bool:
        """INFO auth_required: not advertised when a no_auth_user stands in (nats-server)."""
        lo = self._listener(listener)
        nau = lo.no_auth_user if lo is not None and lo.no_auth_user else self.no_auth_user
        return not nau

    def bind_user(self, name: str) -> AuthResult | None:
        u = self.users.get(name) or self.nkeys.get(name)
        if u is None:
            return None
        return self._result(u.account, u.name, u.permissions)

    # -- authenticate ---------------------------------------------------------------------
    def authenticate(self, client: Any, opts: dict[str, Any], nonce: str | None,
                     ctx: dict[str, Any] | None = None) -> AuthResult | str | None:
        ctx = ctx or {}
        try:
            res = self._authenticate(client, opts, nonce, ctx)
        except Exception:  # malformed input must never take the connection driver down
            log.exception("authentication error")
            res = None
        if res is None:
            log.debug("authentication failed for cid=%s", getattr(client, "cid", "?"))
            self._auth_error_event(client, opts, ctx)
            return None
        if isinstance(res, AuthResult):
            err = self._check_account_limits(client, res.account)
            if err:
                return err
        return res

    def _authenticate(self, client: Any, opts: dict[str, Any], nonce: str | None,
                      ctx: dict[str, Any]) -> AuthResult | str | None:
        listener = str(ctx.get("listener") or "client")
        conn_type = str(ctx.get("conn_type") or "nats")
        lo = self._listener(listener) or self._listener(conn_type)
        if lo is not None and (lo.token or lo.username or lo.no_auth_user):
            token, username, password, nau = lo.token, lo.username, lo.password, lo.no_auth_user
        else:
            token, username, password, nau = self.token, self.username, self.password, self.no_auth_user
        c_user = _s(opts.get("user"))
        c_pass = _s(opts.get("pass"))
        c_token = _s(opts.get("auth_token"))
        c_nkey = _s(opts.get("nkey"))
        c_jwt = _s(opts.get("jwt"))
        no_creds = not (c_user or c_pass or c_token or c_nkey)

        if self.operator_mode:
            if c_jwt:
                return self._jwt_user(c_jwt, opts, nonce, ctx)
            if nau and no_creds and not c_jwt:
                return self.bind_user(nau)
            return None

        nk: User | None = None
        if self.nkeys:
            if nau and no_creds and nau in self.nkeys:
                c_nkey = nau
            if c_nkey:
                nk = self.nkeys.get(c_nkey)
                if nk is None or not nk.allows_type(conn_type):
                    return None
        user: User | None = None
        if self.users and nk is None:
            if self.tls_map:
                # the certificate names the user; CONNECT user/pass are not consulted
                user = self._tls_mapped(ctx.get("peer_cert"), conn_type)
                if user is None:
                    return None
                return self._result(user.account, user.name, user.permissions)
            if nau and no_creds and nau in self.users:
                u = self.users[nau]
                return self._result(u.account, u.name, u.permissions)
            if c_user:
                user = self.users.get(c_user)
                if user is None or not user.allows_type(conn_type):
                    return None
        if nk is not None:
            if nk.name != nau or not no_creds:
                if not verify_nonce(nk.nkey or "", nonce, opts.get("sig")):
                    return None
            return self._result(nk.account, nk.name, nk.permissions, extra={"nkey": nk.nkey})
        if user is not None:
            if user.password is None:
                return None  # a certificate-only identity
            if not passwords.compare_passwords(user.password, c_pass):
                return None
            return self._result(user.account, user.name, user.permissions)
        if token:
            if passwords.compare_passwords(token, c_token):
                return self._result(self.broker.global_account, None, None)
            return None
        if username:
            if c_user != username or not passwords.compare_passwords(password or "", c_pass):
                return None
            return self._result(self.broker.global_account, username, None)
        if not self.required_for(listener):
            return self._result(self.broker.global_account, None, None)
        return None

    def _result(self, account: "Account", user: str | None, perms: Permissions | None,
                expires: float | None = None, extra: Any = None) -> AuthResult:
        if perms is None:
            st = self.accounts.states.get(account.name)
            if st is not None:
                perms = st.default_permissions
        return AuthResult(account, user, perms, expires, extra or {})

    def _tls_mapped(self, der: bytes | None, conn_type: str) -> User | None:
        """verify_and_map: the first certificate identity that names a configured user."""
        if not der:
            return None
        for ident in tlsconf.cert_identities(der):
            u = self.users.get(ident)
            if u is not None and u.allows_type(conn_type):
                return u
        for u in self.users.values():
            if u.allows_type(conn_type) and tlsconf.dn_equal(u.name, der):
                return u
        return None

    # -- operator mode --------------------------------------------------------------------
    def _jwt_user(self, token: str, opts: dict[str, Any], nonce: str | None,
                  ctx: dict[str, Any]) -> AuthResult | None:
        from . import jwt as njwt
        try:
            uc = njwt.decode_user(token)
        except njwt.JWTError as e:
            log.debug("user JWT not valid: %s", e)
            return None
        acc = self.accounts.get(uc.account)
        st = self.accounts.states.get(uc.account) if acc is not None else None
        if acc is None or st is None or st.claims is None:
            log.debug("account JWT lookup error for %s", uc.account)
            return None
        try:
            ua = njwt.check_user(uc, st.claims, trusted=self.accounts.trusted)
        except njwt.JWTError as e:
            log.debug("user JWT refused: %s", e)
            return None
        conn_type = str(ctx.get("conn_type") or "nats")
        types = {t.upper() for t in ua.allowed_connection_types}
        if types:
            known = types & set(_CONN_TYPES.values())
            if not known or _CONN_TYPES.get(conn_type, "STANDARD") not in known:
                return None
        if not ua.bearer_token and not verify_nonce(uc.subject, nonce, opts.get("sig")):
            log.debug("user JWT nonce signature not verified")
            return None
        remote = ctx.get("remote") or ("", 0)
        if uc.src and not _src_allowed(uc.src, str(remote[0])):
            return None
        perms = Permissions.from_jwt(ua.permissions)
        expires = float(uc.expires) if uc.expires else None
        extra = {"nkey": uc.subject, "jwt": token, "issuer": uc.issuer, "name_tag": uc.name,
                 "tags": list(uc.tags), "limits": ua.permissions}
        return self._result(acc, uc.subject, perms, expires, extra)

    # -- limits and events ----------------------------------------------------------------
    def _check_account_limits(self, client: Any, account: "Account") -> str | None:
        limits = getattr(account, "limits", None) or {}
        mx = limits.get("conn", -1)
        if isinstance(mx, int) and mx >= 0:
            n = sum(1 for c in account.clients if c.kind == "Client" and c is not client)
            if n >= mx:
                return ERR_ACCOUNT_CONNS
        return None

    def _auth_error_event(self, client: Any, opts: dict[str, Any], ctx: dict[str, Any]) -> None:
        svc = self.broker.subsystems.get("system")
        if svc is not None and hasattr(svc, "auth_error_event"):
            try:
                svc.auth_error_event(client, opts, ctx)
            except Exception:
                log.exception("auth error event failed")


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _src_allowed(cidrs: list[str], host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    for c in cidrs:
        try:
            if ip in ipaddress.ip_network(c, strict=False):
                return True
        except ValueError:
            continue
    return False


def now() -> float:
    return time.time()
