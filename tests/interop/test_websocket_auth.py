"""WebSocket authentication: the websocket{} authorization override, no_auth_user, and the
jwt/user/pass/token cookies that fill in CONNECT fields a browser client cannot send.

Each scenario runs on edgebus and, where the real nats-server is installed, on nats-server with
the same websocket{} settings; the outcomes (PONG, or -ERR and the close frame) must agree.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from conftest import NATS_SERVER, free_port
from edgebus.options import WebsocketOptions

sys.path.insert(0, str(Path(__file__).parent / "ws"))
from wsclient import BINARY, CLOSE, RawWebSocket, upgrade_request  # noqa: E402

USERS_CONF = """
authorization {
  users = [
    {user: alice, password: wonderland, permissions: {publish: "alice.>", subscribe: "_INBOX.>"}}
    {user: bob, password: builder, permissions: {publish: "bob.>", subscribe: "_INBOX.>"}}
  ]
}
"""


def ws_options(**extra: Any) -> WebsocketOptions:
    """WebsocketOptions; the *_cookie settings are attributes the listener reads when present."""
    fields = {k: v for k, v in extra.items() if k in WebsocketOptions.__dataclass_fields__}
    wo = WebsocketOptions(port=-1, host="127.0.0.1", no_tls=True, **fields)
    for k, v in extra.items():
        if k not in fields:
            setattr(wo, k, v)
    return wo


def ws_block(port: int, **extra: Any) -> str:
    """The same settings as nats-server config text."""
    lines = [f"port: {port}", "no_tls: true"]
    for k, v in extra.items():
        if k == "authorization":
            inner = " ".join(f"{a}: {json.dumps(b)}" for a, b in v.items())
            lines.append(f"authorization {{ {inner} }}")
        else:
            lines.append(f"{k}: {json.dumps(v)}")
    return "websocket {\n  " + "\n  ".join(lines) + "\n}\n"


async def attempt(port: int, connect: dict, cookie: str | None = None, ops: bytes = b"PING\r\n",
                  signer: Any = None) -> tuple:
    """Upgrade (with a Cookie header), CONNECT (signing the INFO nonce with `signer`), run
    `ops`; returns what came back, in short: ("ok", auth_required, -ERR lines) or
    ("refused", auth_required, -ERR lines, close status, close text)."""
    ws = await RawWebSocket.connect("127.0.0.1", port)
    headers = [("Cookie", cookie)] if cookie else []
    with trio.fail_after(10):
        resp = await ws.handshake(upgrade_request(headers=headers))
        assert resp.status == 101
        info = await ws.recv_data_until(b"\r\n")
        info_obj = json.loads(info[5:info.index(b"\r\n")])
        auth_required = info_obj.get("auth_required", False)
        if signer is not None:
            sig = signer.sign(info_obj["nonce"].encode())
            connect = {**connect, "sig": base64.urlsafe_b64encode(sig).decode().rstrip("=")}
        await ws.send_frame(BINARY, b"CONNECT " + json.dumps({"verbose": False, **connect}).encode()
                            + b"\r\n" + ops)
        data = b""
        while True:
            f = await ws.recv_frame()
            if f is None:
                return ("closed", data)
            if f.opcode == CLOSE:
                err = [ln for ln in data.split(b"\r\n") if ln.startswith(b"-ERR")]
                return ("refused", auth_required, err, f.close_status, f.close_text)
            data += f.payload
            if data.endswith(b"PONG\r\n"):
                await ws.aclose()
                return ("ok", auth_required, [ln for ln in data.split(b"\r\n") if ln.startswith(b"-ERR")])


def run_edgebus(scenarios, config: str = "", **ws: Any) -> list:
    from edgebus.testing.embedded import EmbeddedServer
    kw: dict[str, Any] = {"websocket": ws_options(**ws)}
    if config:
        kw["config"] = config
    with EmbeddedServer(**kw) as srv:
        port = srv.call(lambda s: s.ws_port)
        return [trio.run(attempt, port, *sc) for sc in scenarios]


def run_nats_server(real_nats_server, scenarios, config: str = "", **ws: Any) -> list:
    port = free_port()
    real = real_nats_server(config=config + ws_block(port, **ws))
    try:
        return [trio.run(attempt, port, *sc) for sc in scenarios]
    finally:
        real.stop()


def check(real_nats_server, scenarios, expected, config: str = "", **ws: Any) -> None:
    got = run_edgebus(scenarios, config, **ws)
    assert got == expected
    if NATS_SERVER:
        assert run_nats_server(real_nats_server, scenarios, config, **ws) == expected


VIOLATION = [b"-ERR 'Authorization Violation'"]
REFUSED = ("refused", True, VIOLATION, 1008, "Authentication Failure")


@pytest.mark.parametrize("cookie_setting", [False, True])
def test_token_override_and_token_cookie(real_nats_server, cookie_setting):
    ws: dict[str, Any] = {"authorization": {"token": "s3cr3t"}}
    if cookie_setting:
        ws["token_cookie"] = "nats_token"
    scenarios = [
        ({}, None),                                        # no credentials
        ({"auth_token": "s3cr3t"}, None),                  # CONNECT token
        ({}, "a=1; nats_token=s3cr3t; b=2"),               # token from the cookie only
        ({"auth_token": "s3cr3t"}, "nats_token=wrong"),   # CONNECT wins over the cookie
        ({"auth_token": "wrong"}, "nats_token=s3cr3t"),   # ... even when it is the wrong one
        ({}, 'nats_token="s3cr3t"'),                       # a quoted cookie value
    ]
    ok = ("ok", True, [])
    cookie_ok = ok if cookie_setting else REFUSED
    expected = [REFUSED, ok, cookie_ok, ok, REFUSED, cookie_ok]
    check(real_nats_server, scenarios, expected, **ws)


def test_token_override_leaves_the_nats_port_open():
    from edgebus.testing.embedded import EmbeddedServer

    async def tcp_info(port: int) -> dict:
        s = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(10):
            data = await s.receive_some(65536)
        await s.aclose()
        return json.loads(data[5:data.index(b"\r\n")])

    with EmbeddedServer(websocket=ws_options(authorization={"token": "s3cr3t"})) as srv:
        assert "auth_required" not in trio.run(tcp_info, srv.port)


def test_user_and_pass_cookies_with_configured_users(real_nats_server):
    ws = {"user_cookie": "u", "pass_cookie": "p"}
    scenarios = [
        ({}, "u=alice; p=wonderland", b"PUB alice.x 0\r\n\r\nPING\r\n"),
        ({}, "u=alice; p=wonderland", b"PUB bob.x 0\r\n\r\nPING\r\n"),   # alice's permissions apply
        ({}, "u=alice; p=builder", b"PING\r\n"),
        ({"user": "bob"}, "u=alice; p=builder", b"PING\r\n"),         # CONNECT user + cookie pass
        ({"user": "bob", "pass": "builder"}, "u=alice; p=wonderland", b"PUB bob.x 0\r\n\r\nPING\r\n"),
        ({}, None, b"PING\r\n"),
    ]
    ok = ("ok", True, [])
    expected = [ok, ("ok", True, [b"-ERR 'Permissions Violation for Publish to \"bob.x\"'"]), REFUSED, ok,
                ok, REFUSED]
    check(real_nats_server, scenarios, expected, config=USERS_CONF, **ws)


def test_websocket_no_auth_user(real_nats_server):
    ws = {"no_auth_user": "bob"}
    scenarios = [
        ({}, None, b"PUB bob.x 0\r\n\r\nPING\r\n"),
        ({}, None, b"PUB alice.x 0\r\n\r\nPING\r\n"),
        ({"user": "alice", "pass": "wonderland"}, None, b"PUB alice.x 0\r\n\r\nPING\r\n"),
    ]
    # the listener's no_auth_user stands in for a client without credentials; unlike on the
    # NATS port, INFO still says auth_required (nats-server's createWSClient)
    expected = [("ok", True, []),
                ("ok", True, [b"-ERR 'Permissions Violation for Publish to \"alice.x\"'"]),
                ("ok", True, [])]
    check(real_nats_server, scenarios, expected, config=USERS_CONF, **ws)


@pytest.mark.trio
@pytest.mark.edgebus(websocket=WebsocketOptions(port=-1, host="127.0.0.1", no_tls=True,
                                                authorization={"token": "s3cr3t"}))
async def test_auth_timeout_on_websocket_closes_with_1008(edgebus_trio_server, autojump_clock):
    ws = await RawWebSocket.connect("127.0.0.1", edgebus_trio_server.ws_port)
    assert (await ws.handshake(upgrade_request())).status == 101
    data = b""
    while True:
        f = await ws.recv_frame()  # the autojump clock runs the auth timer out
        if f is None or f.opcode == CLOSE:
            break
        data += f.payload
    assert b"-ERR 'Authentication Timeout'" in data
    assert (f.close_status, f.close_text) == (1008, "Authentication Timeout")


def test_jwt_cookie_in_operator_mode(real_nats_server):
    from edgebus.security import jwt as J
    from edgebus.security import nkeys as nk
    op, sys_acc, acc = nk.create_pair("operator"), nk.create_pair("account"), nk.create_pair("account")
    opc = J.new_operator_claims(op.public_key, name="OP")
    opc["nats"]["system_account"] = sys_acc.public_key
    acc_jwt = J.encode(J.new_account_claims(acc.public_key, name="APP"), op)
    sys_jwt = J.encode(J.new_account_claims(sys_acc.public_key, name="SYS"), op)
    config = (f"operator: {J.encode(opc, op)}\nsystem_account: {sys_acc.public_key}\nresolver: MEMORY\n"
              f"resolver_preload: {{\n {acc.public_key}: {acc_jwt}\n {sys_acc.public_key}: {sys_jwt}\n}}\n")

    def user(**fields: Any) -> tuple[Any, str]:
        kp = nk.create_pair("user")
        c = J.new_user_claims(kp.public_key, name="u")
        c["nats"].update(fields)
        return kp, J.encode(c, acc)

    _, bearer = user(bearer_token=True)
    kp, signed = user()
    scenarios = [
        ({}, f"jwt={bearer}"),                      # a bearer JWT from the cookie alone
        ({}, f"jwt={signed}", b"PING\r\n", kp),    # cookie JWT, CONNECT signs the nonce
        ({}, f"jwt={signed}"),                      # ... and without the signature
        ({}, None),                                  # no JWT at all
        ({"jwt": "not.a.jwt"}, f"jwt={bearer}"),     # CONNECT's own (bad) JWT wins
    ]
    ok = ("ok", True, [])
    check(real_nats_server, scenarios, [ok, ok, REFUSED, REFUSED, REFUSED], config=config, jwt_cookie="jwt")


@pytest.mark.trio
@pytest.mark.edgebus(websocket=WebsocketOptions(port=-1, host="127.0.0.1", no_tls=True,
                                                authorization={"token": "s3cr3t", "timeout": 0.5}))
async def test_websocket_authorization_timeout_overrides_the_server_one(edgebus_trio_server,
                                                                        autojump_clock):
    start = trio.current_time()
    ws = await RawWebSocket.connect("127.0.0.1", edgebus_trio_server.ws_port)
    assert (await ws.handshake(upgrade_request())).status == 101
    while True:
        f = await ws.recv_frame()
        if f is None or f.opcode == CLOSE:
            break
    # virtual time (autojump clock): the 0.5 s websocket timeout, not the server's 2 s
    assert 0.5 <= trio.current_time() - start < 2
    assert (f.close_status, f.close_text) == (1008, "Authentication Timeout")
