"""Decentralized JWT auth (operator mode) with nats-py `.creds` files over real sockets:
chain of trust, signing keys, scoped keys, expiry, revocation, bearer tokens, account limits,
the nats resolver's `$SYS.REQ.CLAIMS.UPDATE`, and the same verdicts from the real nats-server."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import nats
import pytest

from conftest import flushed, run_async
from edgebus.security import jwt as J
from edgebus.security import nkeys as nk
from edgebus.testing.embedded import EmbeddedServer
from rawclient import RawSocket

pytest.importorskip("nkeys")  # nats-py signs nonces with the `nkeys` package


class Org:
    """An operator with a system account and an application account, minted here."""

    def __init__(self, tmp_path, *, acc_fields=None, acc_limits=None, revocations=None):
        self.tmp = tmp_path
        self.op = nk.create_pair("operator")
        self.sys = nk.create_pair("account")
        self.acc = nk.create_pair("account")
        self.acc_sk = nk.create_pair("account")
        self.scope_sk = nk.create_pair("account")
        opc = J.new_operator_claims(self.op.public_key, name="OP")
        opc["nats"]["system_account"] = self.sys.public_key
        self.op_jwt = J.encode(opc, self.op)
        self.sys_jwt = J.encode(J.new_account_claims(self.sys.public_key, name="SYS"), self.op)
        self.acc_fields = acc_fields or {}
        self.acc_limits = acc_limits or {}
        self.revocations = revocations or {}
        self.acc_jwt = self.account_jwt()

    def account_jwt(self, **extra) -> str:
        c = J.new_account_claims(self.acc.public_key, name="APP")
        c["nats"]["signing_keys"] = [
            self.acc_sk.public_key,
            {"kind": "user_scope", "key": self.scope_sk.public_key, "role": "limited",
             "template": {"pub": {"allow": ["scoped.{{name()}}.>"]}, "sub": {"allow": ["_INBOX.>", "scoped.>"]}}},
        ]
        c["nats"]["limits"].update(self.acc_limits)
        c["nats"].update(self.acc_fields)
        revs = extra.pop("revocations", self.revocations)
        if revs:
            c["nats"]["revocations"] = revs
        c.update(extra)
        return J.encode(c, self.op)

    def config(self, resolver: str = "MEMORY") -> str:
        return (f"operator: {self.op_jwt}\nsystem_account: {self.sys.public_key}\n"
                f"resolver: {resolver}\n"
                f"resolver_preload: {{\n {self.acc.public_key}: {self.acc_jwt}\n"
                f" {self.sys.public_key}: {self.sys_jwt}\n}}\n")

    def user(self, name="u", signer=None, account=None, scoped=False, **nats_fields):
        kp = nk.create_pair("user")
        c = J.new_user_claims(kp.public_key, scoped=scoped, name=name)
        signer = signer or self.acc
        if signer is not self.acc and account is None:
            c["nats"]["issuer_account"] = self.acc.public_key
        elif account is not None:
            c["nats"]["issuer_account"] = account.public_key
        exp = nats_fields.pop("exp", None)
        iat = nats_fields.pop("iat", None)
        if exp is not None:
            c["exp"] = exp
        c["nats"].update(nats_fields)
        tok = J.encode(c, signer, issued_at=iat)
        return kp, tok

    def sys_user(self):
        kp = nk.create_pair("user")
        tok = J.encode(J.new_user_claims(kp.public_key, name="sys"), self.sys)
        return kp, tok

    def creds(self, kp, tok) -> str:
        p = self.tmp / f"{kp.public_key[:10]}.creds"
        p.write_text(J.format_user_config(tok, kp.seed))
        return str(p)


async def _connect(url, **kw):
    return await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                              connect_timeout=3, **kw)


def verdict(url: str, creds: str) -> bool:
    async def go():
        try:
            nc = await _connect(url, user_credentials=creds)
        except nats.errors.Error as e:
            assert "authorization violation" in str(e).lower(), e
            return False
        await nc.close()
        return True
    return run_async(go)


class Raw(RawSocket):
    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port, timeout=10)
        self.info = json.loads(self.line()[5:])

    def connect(self, **opts) -> None:
        opts.update(verbose=False, pedantic=False, protocol=1)
        self.sock.sendall(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")

    def sign(self, kp) -> str:
        return base64.urlsafe_b64encode(kp.sign(self.info["nonce"].encode())).decode().rstrip("=")

    def until_error(self) -> bytes:
        while True:
            line = self.line()
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                return line


@pytest.fixture
def org(tmp_path):
    return Org(tmp_path)


def test_user_creds_accepted_and_traffic_flows(org):
    kp, tok = org.user("alice")
    with EmbeddedServer(config=org.config(), port=-1) as s:
        r = Raw(s.port)
        assert r.info["auth_required"] and r.info["nonce"]

        async def go():
            nc = await _connect(s.client_url, user_credentials=org.creds(kp, tok))
            sub = await nc.subscribe("hello")
            await nc.publish("hello", b"world")
            assert (await sub.next_msg(timeout=2)).data == b"world"
            info = json.loads((await nc.request("$SYS.REQ.USER.INFO", b"", timeout=2)).data)
            assert info["data"]["user"] == kp.public_key
            assert info["data"]["account"] == org.acc.public_key
            await nc.close()
        run_async(go)


def test_chain_of_trust_refusals(org, tmp_path):
    with EmbeddedServer(config=org.config(), port=-1) as s:
        # signed by a registered signing key: fine
        assert verdict(s.client_url, org.creds(*org.user("sk", signer=org.acc_sk)))
        # signed by an unknown account key claiming to be the account
        rogue = nk.create_pair("account")
        assert not verdict(s.client_url, org.creds(*org.user("rogue", signer=rogue, account=org.acc)))
        # an account that is not signed by our operator
        other_op = nk.create_pair("operator")
        foreign = nk.create_pair("account")
        J.encode(J.new_account_claims(foreign.public_key), other_op)
        assert not verdict(s.client_url, org.creds(*org.user("f", signer=foreign)))
        # an expired user
        assert not verdict(s.client_url, org.creds(*org.user("old", exp=int(time.time()) - 10)))


def test_scoped_signing_key_applies_template(org):
    kp, tok = org.user("bob", signer=org.scope_sk, scoped=True)
    with EmbeddedServer(config=org.config(), port=-1) as s:
        errors = []

        async def go():
            async def err_cb(e):
                errors.append(str(e))
            nc = await _connect(s.client_url, user_credentials=org.creds(kp, tok), error_cb=err_cb)
            sub = await nc.subscribe("scoped.bob.x")
            await nc.publish("scoped.bob.x", b"ok")
            assert (await sub.next_msg(timeout=2)).data == b"ok"
            await nc.publish("scoped.eve.x", b"no")
            await flushed(nc)
            for _ in range(50):
                if errors:
                    break
                await asyncio.sleep(0.02)
            await nc.close()
        run_async(go)
        assert any('publish to "scoped.eve.x"' in e.lower() for e in errors), errors
        # a scoped key may not sign users that carry their own permissions
        assert not verdict(s.client_url, org.creds(*org.user(
            "bad", signer=org.scope_sk, pub={"allow": [">"]})))


def test_revoked_user_refused(tmp_path):
    o = Org(tmp_path)
    kp, tok = o.user("revoked", iat=int(time.time()) - 100)
    o.revocations = {kp.public_key: int(time.time())}
    o.acc_jwt = o.account_jwt()
    with EmbeddedServer(config=o.config(), port=-1) as s:
        assert not verdict(s.client_url, o.creds(kp, tok))
        assert verdict(s.client_url, o.creds(*o.user("fresh", iat=int(time.time()) + 5)))


def test_user_jwt_expiry_disconnects(org):
    kp, tok = org.user("short", exp=int(time.time()) + 2)
    with EmbeddedServer(config=org.config(), port=-1) as s:
        r = Raw(s.port)
        r.connect(jwt=tok, sig=r.sign(kp))
        assert r.line() == b"PONG"
        assert r.until_error() == b"-ERR 'User Authentication Expired'"


def test_bearer_token_needs_no_signature(org):
    kp, bearer = org.user("bearer", bearer_token=True)
    kp2, plain = org.user("plain")
    with EmbeddedServer(config=org.config(), port=-1) as s:
        r = Raw(s.port)
        r.connect(jwt=bearer)
        assert r.line() == b"PONG"
        r2 = Raw(s.port)
        r2.connect(jwt=plain)
        assert r2.until_error() == b"-ERR 'Authorization Violation'"
        r3 = Raw(s.port)
        r3.connect(jwt=plain, sig=r.sign(kp2))  # signed someone else's nonce
        assert r3.until_error() == b"-ERR 'Authorization Violation'"


def test_bearer_refused_when_account_disallows(tmp_path):
    o = Org(tmp_path, acc_limits={"disallow_bearer": True})
    kp, bearer = o.user("bearer", bearer_token=True)
    with EmbeddedServer(config=o.config(), port=-1) as s:
        r = Raw(s.port)
        r.connect(jwt=bearer)
        assert r.until_error() == b"-ERR 'Authorization Violation'"


@pytest.mark.parametrize("bad", [
    "not-a-jwt", "a.b.c", "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.AAAA", "", "." * 3,
])
def test_malformed_user_jwt(org, bad):
    with EmbeddedServer(config=org.config(), port=-1) as s:
        r = Raw(s.port)
        r.connect(jwt=bad, sig="AAAA")
        assert r.until_error() == b"-ERR 'Authorization Violation'"


def test_tampered_user_jwt(org):
    kp, tok = org.user("t")
    h, p, sig = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    claims["nats"]["pub"] = {"allow": [">"]}
    p2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with EmbeddedServer(config=org.config(), port=-1) as s:
        r = Raw(s.port)
        r.connect(jwt=f"{h}.{p2}.{sig}", sig=r.sign(kp))
        assert r.until_error() == b"-ERR 'Authorization Violation'"


def test_account_connection_limit(tmp_path):
    o = Org(tmp_path, acc_limits={"conn": 1})
    kp, tok = o.user("one")
    with EmbeddedServer(config=o.config(), port=-1) as s:
        r1 = Raw(s.port)
        r1.connect(jwt=tok, sig=r1.sign(kp))
        assert r1.line() == b"PONG"
        r2 = Raw(s.port)
        r2.connect(jwt=tok, sig=r2.sign(kp))
        assert r2.until_error() == b"-ERR 'maximum account active connections exceeded'"


def test_jwt_user_permissions(org):
    kp, tok = org.user("perm", pub={"allow": ["ok.>"]}, sub={"deny": ["secret.>"]})
    with EmbeddedServer(config=org.config(), port=-1) as s:
        r = Raw(s.port)
        r.connect(jwt=tok, sig=r.sign(kp))
        assert r.line() == b"PONG"
        r.sock.sendall(b"PUB bad 0\r\n\r\nSUB secret.x 1\r\nPUB ok.1 0\r\n\r\nPING\r\n")
        lines = [r.line() for _ in range(3)]
        assert lines == [b"-ERR 'Permissions Violation for Publish to \"bad\"'",
                         b"-ERR 'Permissions Violation for Subscription to \"secret.x\"'",
                         b"PONG"]


def test_nats_resolver_claims_update_revokes_live_user(tmp_path):
    o = Org(tmp_path)
    kp, tok = o.user("victim", iat=int(time.time()) - 60)
    skp, stok = o.sys_user()
    jwt_dir = tmp_path / "jwt"
    conf = o.config(resolver=f"{{ type: full, dir: '{jwt_dir}' }}")
    with EmbeddedServer(config=conf, port=-1) as s:
        r = Raw(s.port)
        r.connect(jwt=tok, sig=r.sign(kp))
        assert r.line() == b"PONG"

        async def push():
            sysc = await _connect(s.client_url, user_credentials=o.creds(skp, stok))
            new = o.account_jwt(revocations={kp.public_key: int(time.time())})
            resp = json.loads((await sysc.request("$SYS.REQ.CLAIMS.UPDATE", new.encode(), timeout=3)).data)
            bad = json.loads((await sysc.request("$SYS.REQ.CLAIMS.UPDATE", b"garbage", timeout=3)).data)
            listed = json.loads((await sysc.request("$SYS.REQ.CLAIMS.LIST", b"", timeout=3)).data)
            looked = (await sysc.request(f"$SYS.REQ.ACCOUNT.{o.acc.public_key}.CLAIMS.LOOKUP", b"",
                                         timeout=3)).data
            await sysc.close()
            return resp, bad, listed, looked, new
        resp, bad, listed, looked, new = run_async(push)
        assert resp["data"] == {"account": o.acc.public_key, "code": 200, "message": "jwt updated"}
        assert bad["error"]["code"] == 500
        assert o.acc.public_key in listed["data"]
        assert looked.decode() == new
        assert r.until_error() == b"-ERR 'User Authentication Revoked'"
        assert (jwt_dir / f"{o.acc.public_key}.jwt").read_text() == new
        assert not verdict(s.client_url, o.creds(kp, tok))


def test_same_verdicts_as_real_nats_server(tmp_path, real_nats_server):
    o = Org(tmp_path)
    kp_rev, tok_rev = o.user("rev", iat=int(time.time()) - 100)
    o.revocations = {kp_rev.public_key: int(time.time())}
    o.acc_jwt = o.account_jwt()
    rogue = nk.create_pair("account")
    cases = {
        "plain": o.user("plain"),
        "signing_key": o.user("sk", signer=o.acc_sk),
        "scoped": o.user("sc", signer=o.scope_sk, scoped=True),
        "scoped_with_perms": o.user("scp", signer=o.scope_sk, pub={"allow": [">"]}),
        "expired": o.user("exp", exp=int(time.time()) - 5),
        "revoked": (kp_rev, tok_rev),
        "rogue_signer": o.user("rg", signer=rogue, account=o.acc),
    }
    creds = {k: o.creds(*v) for k, v in cases.items()}
    real = real_nats_server(config=o.config())
    with EmbeddedServer(config=o.config(), port=-1) as s:
        ours = {k: verdict(s.client_url, c) for k, c in creds.items()}
    theirs = {k: verdict(real.client_url, c) for k, c in creds.items()}
    assert ours == theirs
    assert ours["plain"] and not ours["revoked"]


def test_jwt_payload_and_subscription_limits(tmp_path):
    o = Org(tmp_path, acc_limits={"payload": 100})
    kp, tok = o.user("lim", subs=1)
    with EmbeddedServer(config=o.config(), port=-1) as s:
        r = Raw(s.port)
        r.connect(jwt=tok, sig=r.sign(kp))
        assert r.line() == b"PONG"
        r.sock.sendall(b"SUB a 1\r\nSUB b 2\r\nPING\r\n")
        assert r.line() == b"-ERR 'maximum subscriptions exceeded'"
        assert r.line() == b"PONG"
        r.sock.sendall(b"PUB a 200\r\n" + b"x" * 200 + b"\r\n")
        assert r.until_error() == b"-ERR 'Maximum Payload Violation'"


def test_memory_resolver_accepts_account_pushes_and_account_expiry(tmp_path):
    o = Org(tmp_path)
    kp, tok = o.user("m", iat=int(time.time()) - 60)
    skp, stok = o.sys_user()
    with EmbeddedServer(config=o.config(), port=-1) as s:
        r = Raw(s.port)
        r.connect(jwt=tok, sig=r.sign(kp))
        assert r.line() == b"PONG"

        async def push(token: str, subject: str):
            sysc = await _connect(s.client_url, user_credentials=o.creds(skp, stok))
            resp = json.loads((await sysc.request(subject, token.encode(), timeout=3)).data)
            await sysc.close()
            return resp
        # an account that expires shortly: its users are told and dropped
        short = o.account_jwt(exp=int(time.time()) + 2)
        resp = run_async(push, short, f"$SYS.REQ.ACCOUNT.{o.acc.public_key}.CLAIMS.UPDATE")
        assert resp["data"]["message"] == "jwt updated"
        assert r.until_error() == b"-ERR 'Account Authentication Expired'"
        # unknown accounts are skipped by the MEMORY resolver
        other = nk.create_pair("account")
        tok2 = J.encode(J.new_account_claims(other.public_key), o.op)
        resp = run_async(push, tok2, f"$SYS.REQ.ACCOUNT.{other.public_key}.CLAIMS.UPDATE")
        assert resp["data"]["message"] == "jwt update skipped"


def test_operator_jwt_from_file_and_system_account_from_operator(org, tmp_path):
    op_file = tmp_path / "op.jwt"
    op_file.write_text(J.decorate_jwt(org.op_jwt, "operator"))
    conf = (f"operator: '{op_file}'\nresolver: MEMORY\n"
            f"resolver_preload: {{\n {org.acc.public_key}: {org.acc_jwt}\n"
            f" {org.sys.public_key}: {org.sys_jwt}\n}}\n")
    skp, stok = org.sys_user()
    with EmbeddedServer(config=conf, port=-1) as s:
        assert s.call(lambda srv: srv.broker.system_account.name) == org.sys.public_key
        assert verdict(s.client_url, org.creds(*org.user("f")))

        async def ping():
            nc = await _connect(s.client_url, user_credentials=org.creds(skp, stok))
            r = json.loads((await nc.request("$SYS.REQ.SERVER.PING", b"", timeout=2)).data)
            await nc.close()
            return r
        assert "statsz" in run_async(ping)


def test_jetstream_enabled_by_account_jwt(tmp_path):
    o = Org(tmp_path, acc_limits={"mem_storage": -1, "disk_storage": -1, "streams": -1,
                                  "consumer": -1})
    no_js = nk.create_pair("account")
    no_js_jwt = J.encode(J.new_account_claims(no_js.public_key, name="NOJS"), o.op)
    conf = o.config().rstrip().rstrip("}") + f" {no_js.public_key}: {no_js_jwt}\n}}\n" + \
        f"jetstream {{ store_dir: '{tmp_path / 'js'}' }}\n"
    kp_nojs = nk.create_pair("user")
    tok_nojs = J.encode(J.new_user_claims(kp_nojs.public_key), no_js)
    with EmbeddedServer(config=conf, port=-1) as s:
        async def go():
            nc = await _connect(s.client_url, user_credentials=o.creds(*o.user("js")))
            js = nc.jetstream()
            await js.add_stream(name="S", subjects=["s.>"])
            ack = await js.publish("s.1", b"x")
            assert ack.seq == 1
            await nc.close()
            nc2 = await _connect(s.client_url, user_credentials=o.creds(kp_nojs, tok_nojs))
            with pytest.raises(Exception):
                await nc2.jetstream().add_stream(name="T", subjects=["t.>"])
            await nc2.close()
        run_async(go)


def test_private_export_with_activation_token(tmp_path, real_nats_server):
    o = Org(tmp_path)
    exp, imp, imp2 = (nk.create_pair("account") for _ in range(3))
    ec = J.new_account_claims(exp.public_key, name="EXP")
    ec["nats"]["exports"] = [{"name": "priv", "subject": "priv.>", "type": "stream", "token_req": True}]
    act = {"sub": imp.public_key, "name": "priv",
           "nats": {"subject": "priv.>", "kind": "stream", "type": "activation", "version": 2}}
    act_tok = J.encode(act, exp)
    ic = J.new_account_claims(imp.public_key, name="IMP")
    ic["nats"]["imports"] = [{"name": "priv", "subject": "priv.>", "account": exp.public_key,
                              "type": "stream", "token": act_tok}]
    i2 = J.new_account_claims(imp2.public_key, name="IMP2")
    i2["nats"]["imports"] = [{"name": "priv", "subject": "priv.>", "account": exp.public_key,
                              "type": "stream"}]
    jwts = {exp.public_key: J.encode(ec, o.op), imp.public_key: J.encode(ic, o.op),
            imp2.public_key: J.encode(i2, o.op)}
    conf = o.config().rstrip().rstrip("}") + "".join(f" {k}: {v}\n" for k, v in jwts.items()) + "}\n"

    def user_of(acc, name):
        kp = nk.create_pair("user")
        return o.creds(kp, J.encode(J.new_user_claims(kp.public_key, name=name), acc))
    creds = {"exp": user_of(exp, "e"), "imp": user_of(imp, "i"), "imp2": user_of(imp2, "i2")}

    async def go(url):
        e = await _connect(url, user_credentials=creds["exp"])
        i = await _connect(url, user_credentials=creds["imp"])
        i2 = await _connect(url, user_credentials=creds["imp2"])
        s1 = await i.subscribe("priv.>")
        s2 = await i2.subscribe("priv.>")
        await flushed(i)
        await flushed(i2)
        await e.publish("priv.x", b"secret")
        await flushed(e)
        got = (await s1.next_msg(timeout=2)).data
        try:
            await s2.next_msg(timeout=0.3)
            leaked = True
        except nats.errors.TimeoutError:
            leaked = False
        for c in (e, i, i2):
            await c.close()
        return got, leaked

    real = real_nats_server(config=conf)
    assert run_async(go, real.client_url) == (b"secret", False)
    with EmbeddedServer(config=conf, port=-1) as s:
        assert run_async(go, s.client_url) == (b"secret", False)


def test_jwt_service_import_and_mappings_match_real_nats_server(tmp_path, real_nats_server):
    o = Org(tmp_path)
    svc, cli = nk.create_pair("account"), nk.create_pair("account")
    sc = J.new_account_claims(svc.public_key, name="SVC")
    sc["nats"]["exports"] = [{"name": "echo", "subject": "echo.*", "type": "service",
                              "response_type": "Stream"}]
    cc = J.new_account_claims(cli.public_key, name="CLI")
    cc["nats"]["imports"] = [{"name": "echo", "subject": "echo.*", "account": svc.public_key,
                              "type": "service", "local_subject": "call.*"}]
    cc["nats"]["mappings"] = {"old.*": [{"subject": "new.$1", "weight": 100}]}
    jwts = {svc.public_key: J.encode(sc, o.op), cli.public_key: J.encode(cc, o.op)}
    conf = o.config().rstrip().rstrip("}") + "".join(f" {k}: {v}\n" for k, v in jwts.items()) + "}\n"

    def user_of(acc, name):
        kp = nk.create_pair("user")
        return o.creds(kp, J.encode(J.new_user_claims(kp.public_key, name=name), acc))
    s_creds, c_creds = user_of(svc, "s"), user_of(cli, "c")

    async def go(url):
        s = await _connect(url, user_credentials=s_creds)
        c = await _connect(url, user_credentials=c_creds)

        async def echo(m):
            await m.respond(m.subject.encode() + b":" + m.data)
            await m.respond(b"second")
        await s.subscribe("echo.*", cb=echo)
        await flushed(s)
        inbox = c.new_inbox()
        sub = await c.subscribe(inbox)
        await c.publish("call.hi", b"x", reply=inbox)
        got = [(await sub.next_msg(timeout=2)).data for _ in range(2)]
        mapped = await c.subscribe("new.*")
        await c.publish("old.a", b"m")
        got.append((await mapped.next_msg(timeout=2)).subject.encode())
        await s.close()
        await c.close()
        return got

    real = real_nats_server(config=conf)
    theirs = run_async(go, real.client_url)
    with EmbeddedServer(config=conf, port=-1) as srv:
        ours = run_async(go, srv.client_url)
    assert ours == theirs == [b"echo.hi:x", b"second", b"new.a"]
