"""Security setup without sockets: configuration errors nats-server would refuse, resolvers,
and the authenticator's decisions for CONNECT options (real Broker and AccountManager)."""

from __future__ import annotations

import base64

import pytest

from edgebus.conf import options_from_config, parse_string
from edgebus.core.broker import AuthResult
from edgebus.security import jwt as J
from edgebus.security import nkeys as nk
from edgebus.security.accounts import DirResolver, MemoryResolver, make_resolver
from edgebus.security.setup import SecurityConfigError, configure
from edgebus.server import Server


def server_for(conf: str) -> Server:
    import trio
    srv = Server(options_from_config(parse_string(conf), filename="<test>"))

    async def main() -> None:  # configure runs inside the server's trio loop
        configure(srv)
    trio.run(main)
    return srv


def auth(srv: Server, nonce: str | None = None, **opts):
    return srv.broker.auth.authenticate(None, opts, nonce, {"conn_type": "nats"})


@pytest.mark.parametrize("conf,match", [
    ("accounts { B { imports: [{stream: {account: A, subject: x}}] } }", "not found"),
    ("accounts { A {}, B { imports: [{stream: {account: A, subject: x}}] } }", "no matching export"),
    ("accounts { A { exports: [{service: x}] }, B { imports: [{stream: {account: A, subject: x}}] } }",
     "no matching export"),
    ("accounts { A { exports: [{stream: 'x.>', accounts: [C]}] }, B { imports: [{stream: {account: A, subject: x.y}}] } }",
     "not authorized"),
    ("accounts { A { exports: [{service: x, response_type: bogus}] } }", "response type"),
    ("authorization { users: [{user: a, password: b}] }\nno_auth_user: c", "no_auth_user"),
    ("authorization { auth_callout { auth_users: [a] } }", "issuer"),
])
def test_config_errors(conf, match):
    with pytest.raises(SecurityConfigError, match=match):
        server_for(conf)


def test_import_narrower_than_export_is_fine():
    srv = server_for("accounts { A { exports: [{stream: 'x.>'}] }, "
                     "B { imports: [{stream: {account: A, subject: 'x.y.*'}, prefix: p}] } }")
    st = srv.broker.subsystems["accounts"].states["B"]
    assert st.imports[0].local == "p.x.y.*" and st.imports[0].forwarder is not None


def test_authenticate_decisions():
    srv = server_for("""accounts {
        A { users: [{user: a, password: pa, permissions: {publish: "x"}}]
            default_permissions: {subscribe: {deny: "secret"}} }
        B { users: [{user: b, password: pb}] }
    }""")
    r = auth(srv, user="a", **{"pass": "pa"})
    assert isinstance(r, AuthResult) and r.account.name == "A" and r.user == "a"
    assert r.permissions.can_publish("x") and not r.permissions.can_publish("y")
    r = auth(srv, user="b", **{"pass": "pb"})
    assert r.account.name == "B"
    assert r.permissions is None  # B has no default permissions
    assert auth(srv, user="b", **{"pass": "pa"}) is None
    assert auth(srv) is None
    assert auth(srv, user=123) is None  # wrong JSON types are refusals, not crashes


def test_default_permissions_for_account_users_without_their_own():
    srv = server_for("""accounts { A { users: [{user: a, password: p}]
                          default_permissions: {publish: {deny: "no.>"}} } }""")
    r = auth(srv, user="a", **{"pass": "p"})
    assert not r.permissions.can_publish("no.x") and r.permissions.can_publish("yes")


def test_nkey_decisions():
    kp = nk.create_pair("user")
    srv = server_for(f"authorization {{ users: [{{nkey: {kp.public_key}}}] }}")
    assert srv.broker.auth.nonce is True
    nonce = "abcdefghijklmno"
    sig = base64.urlsafe_b64encode(kp.sign(nonce.encode())).decode().rstrip("=")
    assert isinstance(auth(srv, nonce, nkey=kp.public_key, sig=sig), AuthResult)
    assert auth(srv, "other-nonce-xyz", nkey=kp.public_key, sig=sig) is None
    assert auth(srv, nonce, nkey=kp.public_key) is None
    assert auth(srv, nonce, nkey="UNOTAKEY", sig=sig) is None


def test_memory_and_dir_resolvers(tmp_path):
    assert isinstance(make_resolver("MEMORY", {"A": "t"}), MemoryResolver)
    assert make_resolver(None, {"A": "t"}).fetch("A") == "t"
    with pytest.raises(ValueError):
        make_resolver('URL("http://x")', None)
    d = make_resolver({"type": "full", "dir": str(tmp_path / "jwt")}, {"P": "pre"})
    assert isinstance(d, DirResolver) and d.accepts_updates
    d.store("ACC", "tok")
    again = DirResolver(str(tmp_path / "jwt"))
    assert again.fetch("ACC") == "tok" and "ACC" in again.list()
    again.delete("ACC")
    assert DirResolver(str(tmp_path / "jwt")).fetch("ACC") is None


def test_operator_mode_refuses_untrusted_accounts():
    op = nk.create_pair("operator")
    other = nk.create_pair("operator")
    acc = nk.create_pair("account")
    op_jwt = J.encode(J.new_operator_claims(op.public_key), op)
    acc_jwt = J.encode(J.new_account_claims(acc.public_key), other)
    srv = server_for(f"operator: {op_jwt}\nresolver: MEMORY\n"
                     f"resolver_preload: {{ {acc.public_key}: {acc_jwt} }}")
    mgr = srv.broker.subsystems["accounts"]
    st = mgr.states.get(acc.public_key)
    assert st is None or st.claims is None
    ukp = nk.create_pair("user")
    utok = J.encode(J.new_user_claims(ukp.public_key), acc)
    r = auth(srv, "n", jwt=utok, sig=base64.urlsafe_b64encode(ukp.sign(b"n")).decode())
    assert r is None


def test_operator_mode_mqtt_password_carries_bearer_jwt():
    op = nk.create_pair("operator")
    acc = nk.create_pair("account")
    op_jwt = J.encode(J.new_operator_claims(op.public_key), op)
    acc_jwt = J.encode(J.new_account_claims(acc.public_key), op)
    srv = server_for(f"operator: {op_jwt}\nresolver: MEMORY\n"
                     f"resolver_preload: {{ {acc.public_key}: {acc_jwt} }}")
    ukp = nk.create_pair("user")
    uc = J.new_user_claims(ukp.public_key)
    uc["nats"]["bearer_token"] = True
    bearer = J.encode(uc, acc)
    r = srv.broker.auth.authenticate(None, {"user": "x", "pass": bearer}, None, {"conn_type": "mqtt"})
    assert isinstance(r, AuthResult) and r.account.name == acc.public_key
    r = srv.broker.auth.authenticate(None, {"user": "x", "pass": bearer}, None, {"conn_type": "nats"})
    assert r is None


def test_bcrypt_is_checked_off_the_event_loop():
    import trio
    from edgebus.security.auth import DeferredAuth
    from edgebus.security.passwords import hash_password
    h = hash_password("pw", cost=4)
    srv = server_for(f'authorization {{ users: [{{user: u, password: "{h}"}}] }}')
    a = srv.broker.auth
    pending = a.authenticate(None, {"user": "u", "pass": "pw"}, None, {})
    assert isinstance(pending, DeferredAuth)
    assert isinstance(trio.run(pending.wait, 5.0), AuthResult)
    wrong = a.authenticate(None, {"user": "u", "pass": "no"}, None, {})
    assert trio.run(wrong.wait, 5.0) is None
    # reload re-authenticates synchronously
    assert isinstance(a.authenticate(None, {"user": "u", "pass": "pw"}, None, {}, blocking=True),
                      AuthResult)
    # plain-text secrets stay synchronous
    srv2 = server_for("authorization { token: plain }")
    assert isinstance(srv2.broker.auth.authenticate(None, {"auth_token": "plain"}, None, {}), AuthResult)


def test_bad_account_mapping_is_a_config_error():
    with pytest.raises(SecurityConfigError, match="mappings"):
        server_for('accounts { A { mappings: { "a.*": "b.{{wildcard(2)}}" } } }')
