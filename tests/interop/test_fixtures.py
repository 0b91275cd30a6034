"""The pytest plugin as a user meets it: documented fixtures, every listener's URL, the fault
helpers, and `edgebus_isolated` (a fresh account per test on one shared server)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
import trio

from conftest import run_async
from edgebus.testing import EmbeddedServer, IsolatedAccount, drop_clients

pytest_plugins = ["pytester"]

LISTENERS = """
jetstream {}
mqtt { port: -1 }
websocket { port: -1, no_tls: true }
http_port: -1
"""


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    out = result.stdout.str()
    for name in ("edgebus_server", "edgebus_trio_server", "edgebus_isolated", "edgebus_options",
                 "edgebus_session_server"):
        block = out[out.index(name):].split("\n\n", 1)[0]
        assert "no docstring available" not in block, block


def _reachable(url: str) -> bool:
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=5):
        return True


@pytest.mark.edgebus(config=LISTENERS)
def test_every_listener_has_a_url(edgebus_server: Any) -> None:
    urls = {k: getattr(edgebus_server, k) for k in ("client_url", "ws_url", "mqtt_url", "http_url")}
    assert [urlsplit(u).scheme for u in urls.values()] == ["nats", "ws", "mqtt", "http"]
    assert all(_reachable(u) for u in urls.values())


def test_urls_of_listeners_not_configured_are_none(edgebus_server: Any) -> None:
    assert (edgebus_server.ws_url, edgebus_server.mqtt_url, edgebus_server.http_url) == (None,) * 3


@pytest.mark.trio
@pytest.mark.edgebus(config=LISTENERS)
async def test_trio_server_urls_and_drop_clients(edgebus_trio_server: Any) -> None:
    s = edgebus_trio_server
    assert [urlsplit(u).scheme for u in (s.client_url, s.ws_url, s.mqtt_url, s.http_url)] == \
        ["nats", "ws", "mqtt", "http"]
    u = urlsplit(s.client_url)
    stream = await trio.open_tcp_stream(u.hostname, u.port)
    assert (await stream.receive_some(4096)).startswith(b"INFO ")
    await stream.send_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
    assert await stream.receive_some(4096) == b"PONG\r\n"
    assert drop_clients(s) == 1
    with trio.fail_after(10):
        while await stream.receive_some(4096):
            pass  # until the server closes it


def test_isolated_accounts_do_not_see_each_other() -> None:
    with EmbeddedServer(jetstream=True) as srv:
        a, b = IsolatedAccount.create(srv), IsolatedAccount.create(srv)

        async def scenario() -> tuple[list[bytes], int, int]:
            na, nb = await nats.connect(a.client_url), await nats.connect(b.client_url)
            sub = await nb.subscribe("orders.*")
            await nb.flush()
            await na.publish("orders.1", b"from-a")
            await na.flush()  # a's message is routed (or not) before b publishes
            await nb.publish("orders.2", b"from-b")
            got = [(await sub.next_msg(timeout=10)).data]  # a leak would come first
            await sub.unsubscribe()
            # the same stream name in both accounts: separate JetStream namespaces
            seqs = []
            for nc, n in ((na, 3), (nb, 1)):
                js = nc.jetstream()
                await js.add_stream(name="ORDERS", subjects=["orders.>"])
                for i in range(n):
                    ack = await js.publish("orders.x", b"%d" % i)
                seqs.append(ack.seq)
            await na.close()
            await nb.close()
            return got, seqs[0], seqs[1]

        got, seq_a, seq_b = run_async(scenario)
        assert got == [b"from-b"] and (seq_a, seq_b) == (3, 1)
        a.close(wait=True)

        async def after_close() -> None:
            with pytest.raises(Exception):
                await nats.connect(a.client_url, allow_reconnect=False, max_reconnect_attempts=0,
                                   connect_timeout=5)
            nc = await nats.connect(b.client_url)  # the other test's account is untouched
            assert (await nc.jetstream().stream_info("ORDERS")).state.messages == 1
            await nc.close()

        run_async(after_close)
        b.close(wait=True)

        async def without_credentials() -> bytes:
            # the shared server's own URL still reaches its global account
            nc = await nats.connect(srv.client_url, allow_reconnect=False)
            sub = await nc.subscribe("plain")
            await nc.publish("plain", b"ok")
            msg = await sub.next_msg(timeout=10)
            await nc.close()
            return msg.data

        assert run_async(without_credentials) == b"ok"


def test_isolated_fixture_closes_its_clients(edgebus_isolated: Any) -> None:
    async def scenario() -> int:
        nc = await nats.connect(edgebus_isolated.client_url, allow_reconnect=False)
        await nc.jetstream().add_stream(name="S", subjects=["s"])
        await nc.close()
        return 1

    assert run_async(scenario) == 1
    assert edgebus_isolated.user in edgebus_isolated.server.call(lambda s: s.broker.auth.users)


# bcrypt of "sensor-password-0123456789abc" (edgebus passwd), checked off the loop in a thread
# on the real clock, inline in virtual time
BCRYPT_USER = 'authorization { users: [ { user: s, password: "$2a$11$4NNZ3Pjt4RYRDB4I7hlajuYGxNR7JPJI.PlUwHbbERbozAj2o44jq" } ] }'


@pytest.mark.trio
@pytest.mark.edgebus(config=BCRYPT_USER)
async def test_bcrypt_auth_in_virtual_time(edgebus_trio_server: Any, autojump_clock: Any) -> None:
    # a thread checking the hash let the clock jump past the auth timeout: the client was refused
    u = urlsplit(edgebus_trio_server.client_url)
    stream = await trio.open_tcp_stream(u.hostname, u.port)
    await stream.receive_some(4096)  # INFO
    await stream.send_all(b'CONNECT {"verbose":false,"user":"s",'
                          b'"pass":"sensor-password-0123456789abc"}\r\nPING\r\n')
    assert await stream.receive_some(4096) == b"PONG\r\n"
    await stream.aclose()


def test_isolated_account_after_a_restart_of_the_shared_server() -> None:
    # accounts are made ahead; one made before a restart no longer exists after it
    from edgebus.testing import isolation
    with EmbeddedServer(jetstream=True) as srv:
        IsolatedAccount.create(srv).close()  # makes the next account ahead, in the server
        for _ in range(1000):  # until it is made (each call lets the server's loop run)
            if isolation._ready.get(srv):
                break
            srv.call(lambda s: None)
        assert isolation._ready.get(srv), "no account was made ahead"
        srv.restart()
        iso = IsolatedAccount.create(srv)

        async def accounts_while_connected() -> list[str]:
            nc = await nats.connect(iso.client_url, allow_reconnect=False)
            await nc.flush()
            names = await asyncio.to_thread(
                srv.call, lambda s: [c.account.name for c in s.connections])
            await nc.close()
            return names

        assert run_async(accounts_while_connected) == [iso.account]
