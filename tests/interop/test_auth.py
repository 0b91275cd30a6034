"""Authentication with nats-py over real sockets: tokens, users, bcrypt, nkeys, no_auth_user,
auth timeout and the protocol-level refusals (raw sockets where nats-py cannot misbehave)."""

from __future__ import annotations

import base64
import json
import os

import nats
import pytest

from conftest import flushed, run_async
from edgebus.security import nkeys as nk
from edgebus.security.passwords import hash_password
from edgebus.testing.embedded import EmbeddedServer
from rawclient import RawSocket


# -- helpers ------------------------------------------------------------------------------
async def _connect(url: str, **kw):
    return await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                              connect_timeout=3, **kw)


def connects(url: str, **kw) -> bool:
    """True when nats-py gets a session (CONNECT+PING answered), False on an auth error."""
    async def go() -> bool:
        try:
            nc = await _connect(url, **kw)
        except nats.errors.Error as e:
            assert "authorization violation" in str(e).lower(), e
            return False
        await nc.close()
        return True
    return run_async(go)


class Raw(RawSocket):
    """A raw client-protocol socket for what nats-py will not send."""

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port, timeout=5)
        line = self.line()
        assert line.startswith(b"INFO ")
        self.info = json.loads(line[5:])

    def connect(self, **opts) -> None:
        opts.setdefault("verbose", False)
        opts.setdefault("pedantic", False)
        self.send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")

    def closed_after(self) -> list[bytes]:
        """Every line until the server closes the connection."""
        out = []
        try:
            while True:
                out.append(self.line())
        except (ConnectionError, OSError):
            return out


def seed_file(tmp_path, kp) -> str:
    p = tmp_path / f"{kp.public_key[:8]}.nk"
    p.write_text(kp.seed)
    return str(p)


# -- token --------------------------------------------------------------------------------
def test_token_accept_and_refuse():
    with EmbeddedServer(config="authorization { token: s3cr3t }", port=-1) as s:
        assert connects(s.client_url, token="s3cr3t")
        assert not connects(s.client_url, token="wrong")
        assert not connects(s.client_url)
        r = Raw(s.port)
        assert r.info["auth_required"] is True
        assert "nonce" not in r.info
        r.close()


def test_bcrypted_token():
    h = hash_password("tok-123", cost=4)
    with EmbeddedServer(config=f"authorization {{ token: '{h}' }}", port=-1) as s:
        assert connects(s.client_url, token="tok-123")
        assert not connects(s.client_url, token=h)  # the hash itself is not the secret


def test_auth_token_option_as_cli_flag_equivalent():
    # `--auth` sets authorization.token; Options built directly as the CLI does
    from edgebus.options import Options
    o = Options(port=-1, authorization={"token": "flag-token"})
    with EmbeddedServer(o) as s:
        assert connects(s.client_url, token="flag-token")
        assert not connects(s.client_url, token="nope")


# -- users --------------------------------------------------------------------------------
def test_single_user_password():
    with EmbeddedServer(config="authorization { user: alice, password: pw }", port=-1) as s:
        assert connects(s.client_url, user="alice", password="pw")
        assert not connects(s.client_url, user="alice", password="bad")
        assert not connects(s.client_url, user="bob", password="pw")
        assert not connects(s.client_url)


def test_users_list_with_bcrypt_passwords():
    h = hash_password("s3cret", cost=4)
    conf = f"""authorization {{ users: [
        {{user: plain, password: p1}},
        {{user: hashed, password: "{h}"}}
    ] }}"""
    with EmbeddedServer(config=conf, port=-1) as s:
        assert connects(s.client_url, user="plain", password="p1")
        assert connects(s.client_url, user="hashed", password="s3cret")
        assert not connects(s.client_url, user="hashed", password=h)
        assert not connects(s.client_url, user="plain", password="s3cret")
        assert not connects(s.client_url, user="ghost", password="p1")


def test_credentials_in_url():
    with EmbeddedServer(config="authorization { users: [{user: u, password: p}] }", port=-1) as s:
        assert connects(f"nats://u:p@127.0.0.1:{s.port}")
        assert not connects(f"nats://u:x@127.0.0.1:{s.port}")


def test_no_auth_user_binds_credential_less_clients():
    conf = """
    accounts {
      A { users: [{user: a, password: a}] }
      B { users: [{user: b, password: b}] }
    }
    no_auth_user: b
    """
    with EmbeddedServer(config=conf, port=-1) as s:
        r = Raw(s.port)
        assert "auth_required" not in r.info  # nats-server hides it when no_auth_user is set
        r.close()

        async def go():
            anon = await _connect(s.client_url)
            b = await _connect(s.client_url, user="b", password="b")
            a = await _connect(s.client_url, user="a", password="a")
            sb = await b.subscribe("x")
            sa = await a.subscribe("x")
            await flushed(b)
            await flushed(a)
            await anon.publish("x", b"from-anon")
            await flushed(anon)
            got = await sb.next_msg(timeout=2)
            assert got.data == b"from-anon"  # anon is in account B
            with pytest.raises(nats.errors.TimeoutError):
                await sa.next_msg(timeout=0.3)
            for c in (anon, a, b):
                await c.close()
        run_async(go)
        assert not connects(s.client_url, user="a", password="wrong")


def server_from(conf: str):
    from edgebus.conf import options_from_config, parse_string
    from edgebus.server import Server
    return Server(options_from_config(parse_string(conf), filename="<test>"))


def test_no_auth_user_must_exist():
    from edgebus.security.setup import SecurityConfigError, configure
    srv = server_from("authorization { users: [{user: a, password: a}] }\nno_auth_user: zz")
    with pytest.raises(SecurityConfigError, match="no_auth_user"):
        configure(srv)


# -- protocol refusals ----------------------------------------------------------------------
def test_operation_before_connect_is_auth_violation():
    with EmbeddedServer(config="authorization { token: t }", port=-1) as s:
        r = Raw(s.port)
        r.send(b"SUB foo 1\r\n")
        lines = r.closed_after()
        assert lines == [b"-ERR 'Authorization Violation'"]


def test_wrong_credentials_error_and_close():
    with EmbeddedServer(config="authorization { token: t }", port=-1) as s:
        r = Raw(s.port)
        r.connect(auth_token="bad")
        assert r.closed_after() == [b"-ERR 'Authorization Violation'"]


def test_auth_timeout():
    with EmbeddedServer(config="authorization { token: t, timeout: 0.3 }", port=-1) as s:
        r = Raw(s.port)
        # send nothing: the server gives up on us
        assert r.closed_after() == [b"-ERR 'Authentication Timeout'"]


def test_malformed_connect_json_closes():
    with EmbeddedServer(config="authorization { token: t }", port=-1) as s:
        r = Raw(s.port)
        r.send(b'CONNECT {"auth_token": "t",\r\n')
        lines = r.closed_after()
        assert all(b"PONG" not in x for x in lines)


def test_huge_connect_payload_is_refused_and_server_survives():
    with EmbeddedServer(config="authorization { token: t }", port=-1) as s:
        r = Raw(s.port)
        big = json.dumps({"auth_token": "t", "name": "x" * 200_000}).encode()
        try:
            r.send(b"CONNECT " + big + b"\r\nPING\r\n")
        except OSError:
            pass
        lines = r.closed_after()
        assert b"PONG" not in lines
        assert connects(s.client_url, token="t")


def test_legacy_account_field_in_connect_is_refused():
    with EmbeddedServer(config="authorization { token: t }", port=-1) as s:
        r = Raw(s.port)
        r.connect(auth_token="t", account="$G")
        assert r.closed_after() == [b"-ERR 'Authorization Violation'"]


# -- nkeys --------------------------------------------------------------------------------
def test_nkey_users(tmp_path):
    pytest.importorskip("nkeys")  # nats-py signs nonces with the `nkeys` package
    good = nk.create_pair("user")
    other = nk.create_pair("user")
    conf = f"authorization {{ users: [{{nkey: {good.public_key}}}] }}"
    with EmbeddedServer(config=conf, port=-1) as s:
        r = Raw(s.port)
        assert r.info["auth_required"] and len(r.info["nonce"]) >= 11
        r.close()
        assert connects(s.client_url, nkeys_seed=seed_file(tmp_path, good))
        assert not connects(s.client_url, nkeys_seed=seed_file(tmp_path, other))


def test_nkey_signature_checks_raw():
    kp = nk.create_pair("user")
    conf = f"authorization {{ users: [{{nkey: {kp.public_key}}}] }}"
    with EmbeddedServer(config=conf, port=-1) as s:
        # a correct signature, in base64url-raw and in std base64
        for enc in (lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="),
                    lambda b: base64.b64encode(b).decode()):
            r = Raw(s.port)
            sig = enc(kp.sign(r.info["nonce"].encode()))
            r.connect(nkey=kp.public_key, sig=sig)
            assert r.line() == b"PONG"
            r.close()
        # a replayed signature (for another connection's nonce) is refused
        r1 = Raw(s.port)
        old_sig = base64.urlsafe_b64encode(kp.sign(r1.info["nonce"].encode())).decode().rstrip("=")
        r1.close()
        r2 = Raw(s.port)
        assert r2.info["nonce"] != r1.info["nonce"]
        r2.connect(nkey=kp.public_key, sig=old_sig)
        assert r2.closed_after() == [b"-ERR 'Authorization Violation'"]
        # missing signature, garbage signature, unknown key
        for opts in ({"nkey": kp.public_key}, {"nkey": kp.public_key, "sig": "!!!"},
                     {"nkey": nk.create_pair("user").public_key, "sig": old_sig}):
            r = Raw(s.port)
            r.connect(**opts)
            assert r.closed_after() == [b"-ERR 'Authorization Violation'"]


def test_nkeys_and_users_side_by_side(tmp_path):
    kp = nk.create_pair("user")
    conf = f"""authorization {{ users: [
        {{nkey: {kp.public_key}}},
        {{user: pw, password: pw}}
    ] }}"""
    with EmbeddedServer(config=conf, port=-1) as s:
        assert connects(s.client_url, user="pw", password="pw")
        r = Raw(s.port)
        r.connect(nkey=kp.public_key,
                  sig=base64.urlsafe_b64encode(kp.sign(r.info["nonce"].encode())).decode())
        assert r.line() == b"PONG"
        r.close()


def test_allowed_connection_types():
    conf = """authorization { users: [
        {user: ws_only, password: p, allowed_connection_types: ["WEBSOCKET"]},
        {user: std, password: p, allowed_connection_types: ["STANDARD"]}
    ] }"""
    with EmbeddedServer(config=conf, port=-1) as s:
        assert connects(s.client_url, user="std", password="p")
        assert not connects(s.client_url, user="ws_only", password="p")


def test_unique_nonce_per_connection():
    kp = nk.create_pair("user")
    with EmbeddedServer(config=f"authorization {{ users: [{{nkey: {kp.public_key}}}] }}", port=-1) as s:
        nonces = set()
        for _ in range(5):
            r = Raw(s.port)
            nonces.add(r.info["nonce"])
            r.close()
        assert len(nonces) == 5


def test_random_bytes_connect_does_not_crash_server():
    with EmbeddedServer(config="authorization { token: t }", port=-1) as s:
        r = Raw(s.port)
        r.send(b"CONNECT " + os.urandom(300).replace(b"\r\n", b"xx") + b"\r\n")
        r.closed_after()
        assert connects(s.client_url, token="t")


@pytest.mark.parametrize("conf", [
    "",
    "authorization { token: t }",
    "authorization { users: [{user: a, password: b}] }",
    "authorization { users: [{user: a, password: b}] }\nno_auth_user: a",
    f"authorization {{ users: [{{nkey: {nk.create_pair('user').public_key}}}] }}",
    "accounts { SYS { users: [{user: s, password: s}] } }\nsystem_account: SYS",
])
def test_info_auth_fields_match_real_nats_server(conf, real_nats_server):
    real = real_nats_server(config=conf)
    with EmbeddedServer(config=conf, port=-1) as s:
        ours = Raw(s.port).info
    theirs = Raw(real.port).info
    for key in ("auth_required", "tls_required", "tls_verify", "tls_available"):
        assert ours.get(key) == theirs.get(key), key
    assert ("nonce" in ours) == ("nonce" in theirs)


@pytest.mark.parametrize("flags,good,bad", [
    (["--auth", "clitoken"], {"token": "clitoken"}, {"token": "x"}),
    (["--user", "u", "--pass", "p"], {"user": "u", "password": "p"}, {"user": "u", "password": "x"}),
])
def test_auth_from_command_line_flags(flags, good, bad):
    from edgebus.cliargs import build_options
    opts, _ = build_options(["-p", "-1", *flags])
    with EmbeddedServer(opts) as s:
        assert connects(s.client_url, **good)
        assert not connects(s.client_url, **bad)
