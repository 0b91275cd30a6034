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

`authenticate(client, connect_opts, nonce, ctx)` returns an `AuthResult`, a string (an -ERR
text such as an account connection limit), None (refused: `Authorization Violation`), or an
object with `async wait(timeout)` giving one of those: bcrypt checks run in a worker thread
(`DeferredAuth`) and auth callouts ask a service (`CalloutPending`). Front-ends that are not
`NatsConnection` (MQTT, leaf) must await such objects too.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.broker import AuthResult
from ..core.permissions import Permissions
from . import passwords, tlsconf

if TYPE_CHECKING:
    from ..core.account import Account
    from ..core.broker import Broker
    from .accounts import AccountManager

log = logging.getLogger("edgebus.auth")

def _nkeys() -> Any:
    """The nkeys module, imported on first use: it loads cryptography (several MiB), which
    servers without nkey, JWT or callout authentication never need."""
    from . import nkeys
    return nkeys


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
        return _nkeys().verify(public_key, nonce.encode(), raw)
    except Exception:
        return False


class ServerAuth:
    """The server's authenticator (config users, nkeys, tokens, TLS map, operator JWTs)."""

    def __init__(self, broker: "Broker", accounts: "AccountManager", *,
                 token: str | None = None, username: str | None = None,
                 password: str | None = None, users: list[User] | None = None,
                 no_auth_user: str | None = None, tls_map: bool = False,
                 operator_mode: bool = False, always_nonce: bool = False,
                 listeners: dict[str, ListenerAuth] | None = None,
                 callout: "CalloutConfig | None" = None, server_key: Any = None) -> None:
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
        # nats-server's generated no_auth_user (users only in the system account): it keeps
        # $G open but INFO still advertises auth_required
        self.hidden_no_auth_user = False
        self.callout = callout
        self.server_key = server_key  # _nkeys().KeyPair of the server (signs callout requests)
        self.required = bool(operator_mode or self.users or self.nkeys or token or username
                             or callout)
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
        if lo is not None and lo.no_auth_user:
            return False
        return not self.no_auth_user or self.hidden_no_auth_user

    def bind_user(self, name: str) -> AuthResult | None:
        u = self.users.get(name) or self.nkeys.get(name)
        if u is None:
            return None
        return self._result(u.account, u.name, u.permissions)

    # -- authenticate ---------------------------------------------------------------------
    def authenticate(self, client: Any, opts: dict[str, Any], nonce: str | None,
                     ctx: dict[str, Any] | None = None, *, blocking: bool = False) -> Any:
        """AuthResult, an -ERR text, None (refused), or an object with `async wait(timeout)`
        when the decision needs a thread (bcrypt) or a callout service. `blocking=True`
        decides bcrypt inline (reload) instead."""
        ctx = ctx or {}
        try:
            res = self._authenticate(client, opts, nonce, ctx)
        except Exception:  # malformed input must never take the connection driver down
            log.exception("authentication error")
            res = None
        if isinstance(res, _BcryptCheck):
            if not blocking:
                return DeferredAuth(self, client, opts, nonce, ctx, res)
            res = res.result if res.check() else None
        return self._post(res, client, opts, nonce, ctx)

    def _post(self, res: Any, client: Any, opts: dict[str, Any], nonce: str | None,
              ctx: dict[str, Any]) -> Any:
        """Callout delegation, failure events, account limits: after the credentials check."""
        if self.operator_mode and isinstance(res, AuthResult):
            ext = self._external_auth(res.account)
            if ext is not None and res.user not in ext:
                return CalloutPending(self, client, opts, nonce, ctx, account=res.account)
        if self.callout is not None and not self.operator_mode:
            raw_user = _s(opts.get("nkey")) or _s(opts.get("user"))
            if not (res is not None and raw_user in self.callout.auth_users):
                # everyone but the callout's own users is decided by the callout service
                return CalloutPending(self, client, opts, nonce, ctx)
        if res is None:
            log.debug("authentication failed for cid=%s", getattr(client, "cid", "?"))
            self._auth_error_event(client, opts, ctx)
            return None
        if isinstance(res, AuthResult):
            err = self._check_account_limits(client, res.account)
            if err:
                return err
            if self.callout is not None and res.account.name == self.callout.account:
                res.permissions = (res.permissions or Permissions()).merged_with_deny(
                    pub_deny=[AUTH_CALLOUT_SUBJECT])
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
            if not c_jwt and conn_type.startswith("mqtt") and c_pass.count(".") == 2:
                # MQTT clients carry a (bearer) user JWT in the password field
                c_jwt = c_pass
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
            return _check(user.password, c_pass,
                          self._result(user.account, user.name, user.permissions))
        if token:
            return _check(token, c_token, self._result(self.broker.global_account, None, None))
        if username:
            if c_user != username:
                return None
            return _check(password or "", c_pass,
                          self._result(self.broker.global_account, username, None))
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

    def _external_auth(self, account: "Account") -> set[str] | None:
        """Operator mode: the account JWT's auth_users when it delegates to an auth callout."""
        st = self.accounts.states.get(account.name)
        claims = st.claims if st is not None else None
        if claims is None:
            return None
        users = (claims.nats.get("authorization") or {}).get("auth_users")
        return set(_as_list(users)) if users else None

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


class _BcryptCheck:
    """A password check that costs bcrypt time: done off the event loop."""

    __slots__ = ("hashed", "given", "result")

    def __init__(self, hashed: str, given: str, result: AuthResult) -> None:
        self.hashed = hashed
        self.given = given
        self.result = result

    def check(self) -> bool:
        return passwords.compare_passwords(self.hashed, self.given)


def _check(secret: str, given: str, result: AuthResult) -> "AuthResult | _BcryptCheck | None":
    if passwords.is_bcrypt(secret):
        return _BcryptCheck(secret, given, result)
    return result if passwords.compare_passwords(secret, given) else None


class DeferredAuth:
    """A bcrypt comparison run in a worker thread; the connection awaits `wait()`."""

    def __init__(self, auth: "ServerAuth", client: Any, opts: dict[str, Any], nonce: str | None,
                 ctx: dict[str, Any], check: _BcryptCheck) -> None:
        self.auth = auth
        self.args = (client, opts, nonce, ctx)
        self.bcrypt = check

    async def wait(self, timeout: float) -> Any:
        import trio

        from ..core.blocking import run_blocking
        ok = False
        with trio.move_on_after(timeout):
            ok = await run_blocking(self.bcrypt.check, abandon_on_cancel=True)
        res = self.auth._post(self.bcrypt.result if ok else None, *self.args)
        if hasattr(res, "wait"):  # then the callout decides
            res = await res.wait(timeout)
        return res


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


# -- auth callout (nats-server 2.10 auth_callout, config mode) ---------------------------
AUTH_CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
AUTH_REQUEST_AUDIENCE = "nats-authorization-request"


@dataclass
class CalloutConfig:
    """`authorization { auth_callout { issuer, auth_users, account } }`."""

    issuer: str
    auth_users: frozenset[str]
    account: str = "$G"
    xkey: str | None = None


class TokenError(ValueError):
    """A JWT whose signature or shape is not acceptable."""


class CalloutError(TokenError):
    """The callout service's answer cannot be used."""


def verify_token(token: str) -> dict[str, Any]:
    """Decode a NATS JWT of any type (activation, authorization response ...), checking its
    ed25519 signature by `iss` (v2: header.payload, v1: payload) and its expiry."""
    import json as _json
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("expected 3 chunks")

    def b64(x: str) -> bytes:
        return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
    try:
        payload = _json.loads(b64(parts[1]))
        sig = b64(parts[2])
    except (ValueError, binascii.Error) as e:
        raise TokenError(f"invalid token: {e}") from None
    if not isinstance(payload, dict):
        raise TokenError("invalid payload")
    iss = str(payload.get("iss") or "")
    try:
        ok = _nkeys().verify(iss, f"{parts[0]}.{parts[1]}".encode(), sig) or \
            _nkeys().verify(iss, parts[1].encode(), sig)
    except Exception:
        ok = False
    if not ok:
        raise TokenError("claim failed signature verification")
    exp = payload.get("exp")
    if isinstance(exp, int) and exp and time.time() > exp:
        raise TokenError("claim is expired")
    return payload


class CalloutPending:
    """An authentication decided by the callout service; the connection awaits `wait()`."""

    def __init__(self, auth: ServerAuth, client: Any, opts: dict[str, Any], nonce: str | None,
                 ctx: dict[str, Any], account: "Account | None" = None) -> None:
        self.auth = auth
        self.client = client
        self.opts = opts
        self.nonce = nonce
        self.ctx = ctx
        # operator mode: the account of the (sentinel) user JWT runs the callout
        self.account = account

    @property
    def subject_key(self) -> str:
        """`sub` of the request: the configured issuer, or the calling account's key."""
        if self.account is not None:
            return self.account.name
        assert self.auth.callout is not None
        return self.auth.callout.issuer

    def _request(self, user_pub: str, timeout: float) -> str:
        from . import jwt as njwt
        a = self.auth
        b = a.broker
        c = self.client
        o = self.opts
        remote = self.ctx.get("remote") or ("", 0)
        conn = {k: o[k] for k in ("jwt", "nkey", "sig", "auth_token", "user", "pass", "name", "lang",
                                  "version") if isinstance(o.get(k), str) and o.get(k)}
        conn["protocol"] = int(o.get("protocol", 0) or 0)
        ci = {"host": remote[0], "id": getattr(c, "cid", 0), "user": _s(o.get("user")) or _s(o.get("nkey")),
              "name": _s(o.get("name")), "kind": "Client",
              "type": "websocket" if self.ctx.get("conn_type") == "websocket" else "nats"}
        if conn.get("sig") and self.nonce:
            ci["nonce"] = self.nonce
        server = {"name": b.server_name, "host": b.client_host, "id": b.server_id,
                  "version": b.info_base()["version"]}
        if b.options.server_tags:
            server["tags"] = list(b.options.server_tags)
        claims = {"sub": self.subject_key, "aud": AUTH_REQUEST_AUDIENCE,
                  "exp": int(time.time() + timeout),
                  "nats": {"server_id": server, "user_nkey": user_pub,
                           "client_info": {k: v for k, v in ci.items() if v},
                           "connect_opts": conn, "type": "authorization_request", "version": 2}}
        return njwt.encode(claims, a.server_key)

    async def wait(self, timeout: float) -> AuthResult | str | None:
        import trio

        from ..core.client import InternalClient
        a = self.auth
        b = a.broker
        if self.account is not None:
            acc = self.account
        else:
            assert a.callout is not None
            acc = b.accounts.get(a.callout.account)
        if acc is None or a.server_key is None:
            return None
        ukp = _nkeys().create_pair("user")
        user_pub = ukp.public_key
        done = trio.Event()
        box: list[bytes] = []
        ic = InternalClient(b, acc, name="auth callout")
        inbox = "$SYS._INBOX." + base64.b32encode(os.urandom(10)).decode().rstrip("=")

        def on_reply(sub: Any, msg: Any) -> None:
            if not box:
                box.append(bytes(msg.data))
                done.set()
        ic.subscribe(inbox, on_reply)
        try:
            ic.publish(AUTH_CALLOUT_SUBJECT, inbox, None, self._request(user_pub, timeout).encode())
            with trio.move_on_after(timeout):
                await done.wait()
        finally:
            ic.close()
        if not box:
            log.debug("authorization callout response not received in time")
            return None
        try:
            return self._decide(box[0], user_pub)
        except (CalloutError, ValueError) as e:
            log.warning("auth callout: %s", e)
            return None

    def _decide(self, data: bytes, user_pub: str) -> AuthResult | str | None:
        from . import jwt as njwt
        a = self.auth
        token = data.decode(errors="replace").strip()
        if not token:
            raise CalloutError("no reason supplied")
        resp = verify_token(token)
        nats = resp.get("nats") if isinstance(resp.get("nats"), dict) else {}
        if resp.get("sub") != user_pub:
            raise CalloutError("auth callout response is not for expected user")
        if resp.get("aud") != a.broker.server_id:
            raise CalloutError("auth callout response is not for server")
        if nats.get("error"):
            raise CalloutError(f"auth callout service returned an error: {nats['error']}")
        try:
            uc = njwt.decode_user(str(nats.get("jwt") or ""))
        except njwt.JWTError as e:
            raise CalloutError(f"bad user JWT: {e}") from None
        issues = njwt.validate_claims(uc)
        if issues:
            raise CalloutError(f"Error validating user JWT: {issues[0]}")
        if uc.subject != user_pub:
            raise CalloutError("authorized user is not the one requested")
        if self.account is not None:
            return self._decide_operator(resp, nats, uc)
        cfg = a.callout
        assert cfg is not None
        if uc.issuer_account:
            raise CalloutError("attempted to use issuer_account in non operator mode")
        if uc.issuer != cfg.issuer:
            raise CalloutError("wrong issuer for auth callout response")
        target = a.broker.accounts.get(uc.audience)
        if target is None:
            raise CalloutError(f"no valid account {uc.audience!r} for auth callout response")
        limits = uc.permission_limits()
        perms = Permissions.from_jwt(limits)
        if target.name == cfg.account:
            # users placed in the callout account may not impersonate the server
            perms = (perms or Permissions()).merged_with_deny(pub_deny=[AUTH_CALLOUT_SUBJECT])
        expires = float(uc.expires) if uc.expires else None
        name = uc.name or _s(self.opts.get("user")) or None
        extra = {"nkey": uc.subject, "name_tag": uc.name, "tags": list(uc.tags), "limits": limits}
        return a._result(target, name, perms, expires, extra)

    def _decide_operator(self, resp: dict[str, Any], nats: dict[str, Any], uc: Any) -> AuthResult:
        """Operator mode: the response and the user are checked against the account JWTs."""
        from . import jwt as njwt
        a = self.auth
        acc = self.account
        assert acc is not None
        mgr = a.accounts
        st = mgr.states.get(acc.name)
        claims = st.claims if st is not None else None
        if claims is None:
            raise CalloutError("callout account has no JWT")
        signer = str(nats.get("issuer_account") or resp.get("iss") or "")
        if signer != acc.name and not claims.scope_for(str(resp.get("iss") or ""))[0]:
            raise CalloutError("auth callout signing key is unknown")
        placement = uc.issuer_account or uc.issuer
        allowed = set(_as_list((claims.nats.get("authorization") or {}).get("allowed_accounts")))
        if placement != acc.name and placement not in allowed and "*" not in allowed:
            raise CalloutError(f"account {placement!r} not permitted for auth callout")
        target = mgr.get(placement)
        tst = mgr.states.get(placement) if target is not None else None
        if target is None or tst is None or tst.claims is None:
            raise CalloutError(f"no valid account {placement!r} for auth callout response")
        try:
            ua = njwt.check_user(uc, tst.claims, trusted=mgr.trusted)
        except njwt.JWTError as e:
            raise CalloutError(str(e)) from None
        perms = Permissions.from_jwt(ua.permissions)
        expires = float(uc.expires) if uc.expires else None
        extra = {"nkey": uc.subject, "name_tag": uc.name, "tags": list(uc.tags),
                 "limits": ua.permissions, "issuer": uc.issuer}
        return a._result(target, uc.name or uc.subject, perms, expires, extra)


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]
