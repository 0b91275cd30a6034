"""Auth callout (nats-server 2.10 `authorization { auth_callout {} }`, config mode): a nats-py
callout service decides who connects, into which account and with which permissions. The same
service is run against the real nats-server to show the request/response JWTs interoperate."""

from __future__ import annotations

import asyncio
import base64
import json

import nats
import pytest

from conftest import flushed, run_async
from edgebus.security import jwt as J
from edgebus.security import nkeys as nk
from edgebus.testing.embedded import EmbeddedServer

ISSUER = nk.create_pair("account")
CONF = f"""
accounts {{
  AUTH {{ users: [ {{user: auth, password: pwd}} ] }}
  APP {{ }}
  SYS {{ }}
}}
system_account: SYS
authorization {{
  auth_callout {{
    issuer: {ISSUER.public_key}
    auth_users: [ auth ]
    account: AUTH
  }}
}}
"""


def _payload(token: str) -> dict:
    h, p, s = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    # the request is signed by the server's nkey (v2: header.payload)
    assert nk.verify(claims["iss"], f"{h}.{p}".encode(), base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    return claims


async def callout_service(url: str, seen: list) -> nats.NATS:
    nc = await nats.connect(url, user="auth", password="pwd", allow_reconnect=False)

    async def handle(msg):
        req = _payload(msg.data.decode())
        seen.append(req)
        n = req["nats"]
        user_nkey = n["user_nkey"]
        server_id = n["server_id"]["id"]
        opts = n["connect_opts"]
        resp = {"sub": user_nkey, "aud": server_id,
                "nats": {"type": "authorization_response", "version": 2}}
        if opts.get("pass") == "good":
            uc = J.new_user_claims(user_nkey, name=opts.get("user", ""), aud="APP")
            uc["nats"]["pub"] = {"allow": ["app.>", "_INBOX.>", "$SYS.REQ.USER.INFO"]}
            uc["nats"]["sub"] = {"allow": ["app.>", "_INBOX.>"]}
            resp["nats"]["jwt"] = J.encode(uc, ISSUER)
        else:
            resp["nats"]["error"] = "bad password"
        await msg.respond(J.encode(resp, ISSUER).encode())
    await nc.subscribe("$SYS.REQ.USER.AUTH", cb=handle)
    await flushed(nc)
    return nc


async def scenario(url: str) -> dict:
    seen: list = []
    svc = await callout_service(url, seen)
    out: dict = {}
    try:
        nc = await nats.connect(url, user="joe", password="good", allow_reconnect=False,
                                max_reconnect_attempts=0)
        errors = []

        async def err_cb(e):
            errors.append(str(e).lower())
        nc2 = await nats.connect(url, user="joe", password="good", allow_reconnect=False,
                                 error_cb=err_cb)
        sub = await nc.subscribe("app.x")
        await flushed(nc)
        await nc2.publish("app.x", b"hello")
        out["delivered"] = (await sub.next_msg(timeout=2)).data
        await nc2.publish("other", b"nope")
        await flushed(nc2)
        for _ in range(50):
            if errors:
                break
            await asyncio.sleep(0.02)
        out["denied"] = any('publish to "other"' in e for e in errors)
        info = json.loads((await nc.request("$SYS.REQ.USER.INFO", b"", timeout=2)).data)
        out["account"] = info["data"]["account"]
        await nc.close()
        await nc2.close()
        try:
            await nats.connect(url, user="joe", password="bad", allow_reconnect=False,
                               max_reconnect_attempts=0)
            out["bad_refused"] = False
        except nats.errors.Error as e:
            out["bad_refused"] = "authorization violation" in str(e).lower()
        # the callout service itself is not called out
        out["svc_connected"] = svc.is_connected
    finally:
        await svc.close()
    req = seen[0]
    out["request_keys"] = sorted(req["nats"])
    out["request_aud"] = req["aud"]
    out["request_sub"] = req["sub"]
    out["connect_user"] = req["nats"]["connect_opts"].get("user")
    out["server_keys"] = sorted(req["nats"]["server_id"])
    return out


def test_auth_callout_places_and_restricts_users():
    with EmbeddedServer(config=CONF, port=-1) as s:
        out = run_async(scenario, s.client_url)
    assert out["delivered"] == b"hello"
    assert out["denied"] and out["bad_refused"] and out["svc_connected"]
    assert out["account"] == "APP"
    assert out["request_aud"] == "nats-authorization-request"
    assert out["request_sub"] == ISSUER.public_key
    assert out["connect_user"] == "joe"


def test_auth_callout_same_behaviour_as_real_nats_server(real_nats_server):
    real = real_nats_server(config=CONF)
    theirs = run_async(scenario, real.client_url)
    with EmbeddedServer(config=CONF, port=-1) as s:
        ours = run_async(scenario, s.client_url)
    assert ours["delivered"] == theirs["delivered"] == b"hello"
    for k in ("denied", "bad_refused", "account", "request_aud", "request_sub", "connect_user"):
        assert ours[k] == theirs[k], k
    assert set(theirs["request_keys"]) <= set(ours["request_keys"])
    assert {"name", "host", "id"} <= set(ours["server_keys"])


def test_auth_callout_timeout_refuses():
    # no service running: the callout times out and the client is refused
    with EmbeddedServer(config=CONF, port=-1, auth_timeout=0.5) as s:
        async def go():
            with pytest.raises(nats.errors.Error):
                await nats.connect(s.client_url, user="joe", password="good", allow_reconnect=False,
                                   max_reconnect_attempts=0, connect_timeout=3)
        run_async(go)


class OperatorCallout:
    """Operator mode: account AUTH delegates to a callout that places users into APP."""

    def __init__(self, tmp_path) -> None:
        self.tmp = tmp_path
        self.op = nk.create_pair("operator")
        self.sys = nk.create_pair("account")
        self.auth = nk.create_pair("account")
        self.app = nk.create_pair("account")
        self.svc = nk.create_pair("user")
        opc = J.new_operator_claims(self.op.public_key)
        opc["nats"]["system_account"] = self.sys.public_key
        self.op_jwt = J.encode(opc, self.op)
        ac = J.new_account_claims(self.auth.public_key, name="AUTH")
        ac["nats"]["authorization"] = {"auth_users": [self.svc.public_key],
                                       "allowed_accounts": [self.app.public_key]}
        self.jwts = {self.sys.public_key: J.encode(J.new_account_claims(self.sys.public_key), self.op),
                     self.auth.public_key: J.encode(ac, self.op),
                     self.app.public_key: J.encode(J.new_account_claims(self.app.public_key, name="APP"),
                                                   self.op)}

    def config(self) -> str:
        pre = "\n".join(f" {k}: {v}" for k, v in self.jwts.items())
        return (f"operator: {self.op_jwt}\nsystem_account: {self.sys.public_key}\n"
                f"resolver: MEMORY\nresolver_preload: {{\n{pre}\n}}\n")

    def creds(self, kp, name: str, bearer: bool = False, deny_all: bool = False) -> str:
        c = J.new_user_claims(kp.public_key, name=name)
        if bearer:
            c["nats"]["bearer_token"] = True
        if deny_all:
            c["nats"]["pub"] = {"deny": [">"]}
            c["nats"]["sub"] = {"deny": [">"]}
        p = self.tmp / f"{name}.creds"
        p.write_text(J.format_user_config(J.encode(c, self.auth), kp.seed))
        return str(p)

    async def scenario(self, url: str) -> dict:
        async def handle(msg):
            req = _payload(msg.data.decode())["nats"]
            resp = {"sub": req["user_nkey"], "aud": req["server_id"]["id"],
                    "nats": {"type": "authorization_response", "version": 2}}
            # nats-py sends either creds or user/password: the decision rides on the name
            if req["connect_opts"].get("name") == "good":
                uc = J.new_user_claims(req["user_nkey"], name="joe")
                resp["nats"]["jwt"] = J.encode(uc, self.app)
            else:
                resp["nats"]["error"] = "no"
            await msg.respond(J.encode(resp, self.auth).encode())
        svc = await nats.connect(url, user_credentials=self.creds(self.svc, "svc"), allow_reconnect=False)
        await svc.subscribe("$SYS.REQ.USER.AUTH", cb=handle)
        await flushed(svc)
        sentinel = self.creds(nk.create_pair("user"), "sentinel", bearer=True, deny_all=True)
        out = {}
        nc = await nats.connect(url, user_credentials=sentinel, name="good", allow_reconnect=False)
        info = json.loads((await nc.request("$SYS.REQ.USER.INFO", b"", timeout=2)).data)
        out["account"] = info["data"]["account"]
        await nc.close()
        try:
            await nats.connect(url, user_credentials=sentinel, name="bad",
                               allow_reconnect=False, max_reconnect_attempts=0)
            out["bad_refused"] = False
        except nats.errors.Error:
            out["bad_refused"] = True
        await svc.close()
        return out


def test_operator_mode_callout_matches_real_nats_server(tmp_path, real_nats_server):
    pytest.importorskip("nkeys")
    oc = OperatorCallout(tmp_path)
    real = real_nats_server(config=oc.config())
    theirs = run_async(oc.scenario, real.client_url)
    with EmbeddedServer(config=oc.config(), port=-1) as s:
        ours = run_async(oc.scenario, s.client_url)
    assert theirs == {"account": oc.app.public_key, "bad_refused": True}
    assert ours == theirs
