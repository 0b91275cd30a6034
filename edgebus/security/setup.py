"""Turn the security options into live objects: TLS context, accounts, mappings, authenticator.

`configure(server)` is called by `Server.run` before any listener opens. It reads the raw blocks
kept in `Options` (`authorization`, `accounts`, `mappings`, `tls`, `operator`, `resolver`,
`resolver_preload`, `system_account`, `no_auth_user`), builds the `AccountManager` (registered
as `broker.subsystems["accounts"]`) and installs a `ServerAuth` as `broker.auth`. `build_auth` is
shared with reload, which builds a fresh authenticator from new options over the same accounts.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..core.permissions import Permissions
from . import tlsconf
from .accounts import AccountConfigError, AccountManager, set_mappings
from .auth import ListenerAuth, ServerAuth, User

log = logging.getLogger("edgebus.security")


class SecurityConfigError(ValueError):
    """Security settings the server cannot start with."""


def _low(d: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in d.items()} if isinstance(d, dict) else {}


def _has_tls(o: Any) -> bool:
    subs = (o.websocket, o.mqtt, o.leafnodes)
    remotes = o.leafnodes.remotes if o.leafnodes is not None else []
    return o.tls is not None or any(getattr(x, "tls", None) is not None for x in subs) \
        or any(r.tls is not None for r in remotes)


def configure(server: Any) -> None:
    o = server.options
    b = server.broker
    if o.tls is not None and (o.tls.cert_file or o.tls.key_file):
        if o.tls.verify_and_map:
            o.tls.verify = True  # nats-server: verify_and_map implies verify
        try:
            server.tls_context = tlsconf.server_context(o.tls)
        except tlsconf.TLSConfigError as e:
            raise SecurityConfigError(str(e)) from e
    if _has_tls(o):  # imported only when some tls{} block could use OCSP
        from . import ocsp
        ocsp.configure(server)
    mgr = AccountManager(b)
    b.subsystems["accounts"] = mgr
    if o.auth_timeout is None and isinstance(o.authorization, dict) and \
            o.authorization.get("timeout") is not None:
        o.auth_timeout = float(o.authorization["timeout"])
    operator_mode = bool(o.operator)
    if operator_mode:
        _configure_operator(server, mgr)
    else:
        # the system and global accounts belong to the manager like any configured account
        mgr.state(b.global_account)
        mgr.state(b.system_account)
        try:
            mgr.configure(o.accounts)
        except AccountConfigError as e:
            raise SecurityConfigError(str(e)) from e
    if o.mappings:
        try:
            set_mappings(b.global_account, o.mappings)
        except ValueError as e:  # transform's MappingError / TransformError
            raise SecurityConfigError(f"mappings: {e}") from e
        mgr.state(b.global_account).mappings = dict(o.mappings)
    b.auth = build_auth(server, mgr)


def build_auth(server: Any, mgr: AccountManager) -> ServerAuth:
    """The authenticator for the current options (used at start and on reload)."""
    o = server.options
    b = server.broker
    auth = _low(o.authorization)
    users: list[User] = []

    def add_user(spec: dict[str, Any], account_name: str) -> None:
        spec = _low(spec)
        acc = b.get_account(account_name, create=True)
        if account_name not in mgr.states:
            mgr.state(acc)
        perms = Permissions.from_config(spec.get("permissions"))
        types = spec.get("allowed_connection_types")
        users.append(User(
            name=str(spec.get("nkey") or spec.get("user") or ""),
            account=acc,
            password=(str(spec["password"]) if spec.get("password") is not None
                      else ("" if not spec.get("nkey") and not o.tls else None)),
            nkey=str(spec["nkey"]) if spec.get("nkey") else None,
            permissions=perms,
            connection_types=frozenset(t.upper() for t in types) if types else None))

    for u in auth.get("users") or []:
        add_user(u, str(_low(u).get("account") or b.global_account.name))
    for name, spec in (o.accounts or {}).items():
        for u in _low(spec).get("users") or []:
            add_user(u, name)
    # authorization{ permissions } = default permissions for $G users
    dp = Permissions.from_config(auth.get("default_permissions"))
    if dp is not None:
        gst = mgr.state(b.global_account)
        if gst.default_permissions is None:
            gst.default_permissions = dp
    no_auth_user = o.no_auth_user
    hidden_nau = False
    if (not o.operator and no_auth_user is None and not o.authorization and users
            and _only_system_account_has_users(o, b)):
        # nats-server: users only in the system account keep $G open to credential-less clients
        no_auth_user = "nats-" + os.urandom(6).hex()
        users.append(User(no_auth_user, b.global_account, password=os.urandom(12).hex()))
        hidden_nau = True
    if no_auth_user and not o.operator and not any(u.name == no_auth_user for u in users):
        raise SecurityConfigError(f'no_auth_user: "{no_auth_user}" not present as user or nkey in '
                                  "authorization block or account configuration")
    listeners: dict[str, ListenerAuth] = {}
    for key, sub in (("websocket", o.websocket), ("mqtt", o.mqtt)):
        if sub is None:
            continue
        sa = _low(getattr(sub, "authorization", None))
        nau = getattr(sub, "no_auth_user", None)
        if sa or nau:
            listeners[key] = ListenerAuth(token=sa.get("token"), username=sa.get("user"),
                                          password=sa.get("password"), no_auth_user=nau,
                                          timeout=sa.get("timeout"))
    callout, server_key = _callout(server, auth.get("auth_callout"))
    if o.operator and server_key is None:
        server_key = _server_key(server)  # account JWTs may delegate to an auth callout
    a = ServerAuth(b, mgr, token=auth.get("token"), username=auth.get("user"),
                   password=auth.get("password"), users=users, no_auth_user=no_auth_user,
                   tls_map=bool(o.tls and o.tls.verify_and_map),
                   operator_mode=bool(o.operator), listeners=listeners,
                   callout=callout, server_key=server_key)
    a.hidden_no_auth_user = hidden_nau
    return a


def _callout(server: Any, spec: Any) -> tuple[Any, Any]:
    """auth_callout{}: its settings, and the server key pair that signs callout requests."""
    if not spec:
        return None, None
    from .auth import CalloutConfig
    s = _low(spec)
    issuer = str(s.get("issuer") or "")
    users = s.get("auth_users") or s.get("users") or []
    if not issuer:
        raise SecurityConfigError("Authorization callouts require an issuer to be specified")
    if not users:
        raise SecurityConfigError("Authorization callouts require authorized users to be specified")
    if s.get("xkey") or s.get("key"):
        raise SecurityConfigError("auth_callout xkey encryption is not supported by edgebus")
    b = server.broker
    kp = _server_key(server)
    account = str(s.get("account") or b.global_account.name)
    b.get_account(account, create=True)
    return CalloutConfig(issuer, frozenset(str(u) for u in users), account), kp


def _server_key(server: Any) -> Any:
    """The server's nkey pair; callout services check request JWTs against the server id,
    so the id becomes that key's public half."""
    from . import nkeys
    kp = getattr(server, "server_key", None)
    if kp is None:
        b = server.broker
        kp = nkeys.create_pair("server")
        server.server_key = kp
        if b.server_name == b.server_id:
            b.server_name = kp.public_key
        b.server_id = kp.public_key
    return kp


def _only_system_account_has_users(o: Any, b: Any) -> bool:
    accs = o.accounts or {}
    return set(accs) == {b.system_account.name}


# -- operator mode ------------------------------------------------------------------------
def _read_jwt(value: str) -> str:
    """An operator / account JWT given inline or as a file (decorated .jwt files too)."""
    from . import jwt as njwt
    v = value.strip()
    if v.count(".") == 2 and " " not in v and not os.path.exists(v):
        return v
    try:
        with open(v, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SecurityConfigError(f"error reading operator JWT {v!r}: {e}") from e
    return njwt.parse_decorated_jwt(text).strip()


def _configure_operator(server: Any, mgr: AccountManager) -> None:
    from . import jwt as njwt
    from .accounts import make_resolver
    o = server.options
    b = server.broker
    ops = []
    for item in o.operator or []:
        try:
            ops.append(njwt.decode_operator(_read_jwt(item)))
        except njwt.JWTError as e:
            raise SecurityConfigError(f"operator JWT not valid: {e}") from e
    mgr.trusted = njwt.trusted_keys(ops)
    server.operators = ops
    try:
        mgr.resolver = make_resolver(o.resolver, o.resolver_preload)
    except ValueError as e:
        raise SecurityConfigError(str(e)) from e
    sys_name = o.system_account
    if not sys_name:
        sys_name = next((op.system_account for op in ops if op.system_account), "")
    # operator mode has no $SYS placeholder: the system account is a real account JWT
    if b.system_account.name == "$SYS" and not b.system_account.clients:
        b.accounts.pop("$SYS", None)
    if sys_name:
        acc = mgr.get(sys_name)
        if acc is None:
            # nats-server runs with a bare system account until its JWT arrives
            acc = b.get_account(sys_name, create=True)
            mgr.state(acc)
        acc.is_system = True
        b.system_account = acc
    mgr.state(b.global_account)
    for pub in (o.resolver_preload or {}):
        if pub not in b.accounts:
            mgr.get(pub)
    if not getattr(mgr, "_js_hook", False):  # configure may run again on reload
        mgr.on_account_update.append(lambda acc: _enable_jetstream(server, acc))
        mgr._js_hook = True  # type: ignore[attr-defined]


def _enable_jetstream(server: Any, acc: Any) -> None:
    """An account JWT that arrives while JetStream runs and grants it: turn it on there."""
    js = getattr(server, "services", {}).get("jetstream")
    if js is None or acc.js_limits is None or acc.jetstream is not None:
        return
    nursery = getattr(js, "nursery", None)
    if nursery is None:
        return
    try:
        from ..jetstream.service import limits_from_config
    except ImportError:
        return
    nursery.start_soon(js.enable_account, acc, limits_from_config(acc.js_limits))
