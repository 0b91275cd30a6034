"""Configuration reload (SIGHUP, `$SYS.REQ.SERVER.<id>.RELOAD`): apply new settings to a live server.

`reload(server, new_options)` validates the new security settings first (on a scratch broker,
so a bad file changes nothing), then swaps in the new TLS context, accounts, exports/imports,
mappings and authenticator, and re-authenticates every connected client with the CONNECT it
sent: a client whose user is gone (or now belongs to another account) is closed with
`Authorization Violation`; narrowed permissions apply at once, and subscriptions no longer
permitted are removed with a `Permissions Violation` error, as nats-server does.
"""

from __future__ import annotations

import logging
from typing import Any

from ..options import Options

log = logging.getLogger("edgebus.reload")

# settings that take effect without restarting listeners
_SECURITY_FIELDS = ("authorization", "auth_timeout", "no_auth_user", "accounts", "system_account",
                    "operator", "resolver", "resolver_preload", "mappings", "tls", "allow_non_tls")
_RUNTIME_FIELDS = ("debug", "trace", "logtime", "ping_interval", "ping_max", "write_deadline",
                   "max_connections", "max_subscriptions", "max_pending", "max_sub_tokens",
                   "lame_duck_duration", "lame_duck_grace_period", "server_tags")


class ReloadError(ValueError):
    """The new configuration was refused; the running one is unchanged."""


def reload_from_file(server: Any, path: str | None = None) -> list[str]:
    """Re-read the config file the server was started with and apply it."""
    path = path or server.options.config_file
    if not path:
        raise ReloadError("no configuration file to reload")
    from ..conf import load_config
    loaded = load_config(path)
    new = loaded[0] if isinstance(loaded, tuple) else loaded
    new.config_file = path
    return reload(server, new)


def _validate(server: Any, new: Options) -> None:
    from ..core.broker import Broker
    from . import setup

    class _Scratch:
        pass

    scratch = _Scratch()
    scratch.options = new  # type: ignore[attr-defined]
    scratch.broker = Broker(new)  # type: ignore[attr-defined]
    scratch.tls_context = None  # type: ignore[attr-defined]
    try:
        setup.configure(scratch)
    except Exception as e:
        raise ReloadError(str(e)) from e


def reload(server: Any, new_options: Options) -> list[str]:
    """Apply `new_options` to the running server; returns the names of the changed settings."""
    import copy
    _validate(server, copy.deepcopy(new_options))
    o = server.options
    b = server.broker
    changed = [f for f in _SECURITY_FIELDS + _RUNTIME_FIELDS
               if getattr(o, f, None) != getattr(new_options, f, None)]
    for f in _SECURITY_FIELDS + _RUNTIME_FIELDS:
        if hasattr(new_options, f):
            setattr(o, f, copy.deepcopy(getattr(new_options, f)))
    from . import setup
    from .accounts import set_mappings
    mgr = b.subsystems.get("accounts")
    if o.tls is not None and (o.tls.cert_file or o.tls.key_file):
        from . import tlsconf
        if o.tls.verify_and_map:
            o.tls.verify = True
        server.tls_context = tlsconf.server_context(o.tls)
    from .ocsp import on_reload
    on_reload(server)
    if mgr is None or o.operator:
        if o.operator:
            setup._configure_operator(server, mgr)
            _refresh_jwt_accounts(server, mgr)
    else:
        for st in list(mgr.states.values()):
            mgr.unlink(st)
            st.exports.clear()
            st.imports.clear()
            st.default_permissions = None
            if st.account is not b.global_account:
                set_mappings(st.account, None)
        if o.system_account and o.system_account != b.system_account.name:
            b.system_account.is_system = False
            b.system_account = b.get_account(o.system_account, create=True)
            b.system_account.is_system = True
        mgr.configure(o.accounts)
    set_mappings(b.global_account, o.mappings)
    if mgr is not None:
        mgr.state(b.global_account).mappings = dict(o.mappings or {})
    auth = setup.build_auth(server, mgr)
    b.auth = auth
    svc = b.subsystems.get("system")
    if svc is not None and hasattr(svc, "rebind_system_account"):
        svc.rebind_system_account()
        for acc in list(b.accounts.values()):
            svc.install_account(acc)
    reauthenticate_all(server)
    log.info("Reloaded: %s", ", ".join(changed) or "no changes")
    return changed


def _refresh_jwt_accounts(server: Any, mgr: Any) -> None:
    """MEMORY resolver: loaded accounts take their (new) preloaded JWT, or are dropped when it
    is gone (their users then fail re-authentication), as nats-server's reload does."""
    from .sysacct import enforce_account
    b = server.broker
    for name, st in list(mgr.states.items()):
        if st.claims is None or st.account is b.global_account:
            continue
        token = mgr.resolver.fetch(name) if mgr.resolver is not None else None
        if not token:
            log.info("Reloaded: deleting account [removed]: %r", name)
            st.claims = None
            continue
        if token != st.account.jwt:
            try:
                enforce_account(b, mgr.apply_jwt(token))
            except Exception as e:
                log.warning("Reloaded: deleting account [bad claims]: %r: %s", name, e)
                st.claims = None


def reauthenticate_all(server: Any) -> None:
    """Run every connected client through the (new) authenticator again."""
    b = server.broker
    auth = b.auth
    for c in list(getattr(server, "connections", ()) or b.clients.values()):
        if c.kind != "Client" or getattr(c, "closing", False) or not hasattr(c, "apply_auth"):
            continue
        c.auth = auth
        listener = getattr(c, "listener", "client")
        required = auth.required_for(listener)
        c.auth_required = required
        if not getattr(c, "connected", False):
            continue
        opts = c.connect_opts if required else {}
        res = auth.authenticate(c, opts, c.nonce, c.auth_context(), blocking=True)
        if hasattr(res, "wait"):
            continue  # decided by the callout service at connect time; kept as it is
        if not required and (res is None or isinstance(res, str)):
            continue
        if res is None or isinstance(res, str) or res.account is not c.account:
            c.close("Authentication Failure", "Authorization Violation")
            continue
        c.apply_auth(res)
        _prune_subscriptions(c)


def _prune_subscriptions(c: Any) -> None:
    from ..codec.nats import err_frame
    perms = c.permissions
    if perms is None:
        return
    for sub in list(c.subs.values()):
        if not perms.can_subscribe(sub.subject, sub.queue):
            c.remove_sub(sub)
            c.enqueue(err_frame(f'Permissions Violation for Subscription to "{sub.subject}"'))
