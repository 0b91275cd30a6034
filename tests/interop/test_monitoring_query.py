"""Malformed monitoring queries: edgebus answers each as the real nats-server does (same status,
same body), side by side. nats-server decodes an endpoint's typed parameters in a fixed order
and answers the first bad one with a plain-text 400 (monitor.go `decodeBool`, `decodeInt`, ...)."""

import json
import urllib.error
import urllib.request

import nats
import pytest

from conftest import run_async

# (path and query, what it probes); each one is sent to both servers
CASES = [
    "/connz?limit=99999999999999999999",
    "/connz?limit=abc",
    "/connz?limit=+5",
    "/connz?limit=1_0",
    "/connz?offset=0x10",
    "/connz?cid=abc",
    "/connz?cid=-1",
    "/connz?cid=18446744073709551616",
    "/connz?state=bogus",
    "/connz?auth=yes",
    "/connz?auth=%E2%82%AC",
    "/connz?auth=a%00b",
    "/connz?auth=%7F%C3%28",  # not UTF-8: Go quotes the bytes
    "/connz?limit=99999999999999999999x",  # Go reports the overflow before the bad digit
    "/connz?subs=sometimes",
    "/connz?sort=bogus",
    "/connz?sort=bogus&auth=x",  # the typed parameters are decoded before the sort
    "/connz?auth=x&limit=y",  # the first bad one in nats-server's order is reported
    "/connz?sort=stop",
    "/connz?sort=reason&state=any",
    "/connz?auth=%ZZ",  # a pair with a bad escape is dropped, as Go's url.ParseQuery does
    "/connz?auth=a;b",  # so is a pair holding ';'
    "/connz?auth=&limit=",
    "/connz?subs=DETAIL&auth=T&state=ALL&offset=-4&limit=-3&cid=0",
    "/routez?subs=x",
    "/gatewayz?subs=x",
    "/gatewayz?accs=2",
    "/leafz?subs=maybe",
    "/subsz?subs=x",
    "/subsz?offset=1.5",
    "/subsz?limit=--1",
    "/subsz?test=a..b",
    "/subsz?test=a.*",
    "/subsz?test=a.>",
    "/subsz?test=a.b&subs=1",
    "/subscriptionsz?limit=z",
    "/accountz?acc=nope",
    "/accountz?acc=$G",
    "/accstatz?unused=x",
    "/jsz?accounts=x",
    "/jsz?streams=1&consumers=nope",
    "/jsz?limit=9223372036854775808",
    "/jsz?leader-only=true",
    "/jsz?raft=?",
    "/jsz?stream-leader-only=2",
    "/healthz?js-enabled=x",
    "/healthz?details=nah",
    "/healthz?stream=s",
    "/healthz?stream=s&details=true",
    "/healthz?consumer=c&account=a",
    "/healthz",  # the healthy answers are compared whole too (below)
    "/healthz?js-enabled-only=true",  # JetStream off in the config: healthy
    "/healthz?details=true",
    "/varz?limit=whatever",  # /varz takes no parameters
    "/varz/",  # paths are exact
    "/connz/x",
    "/nope",
]


def fetch(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


@pytest.mark.edgebus(http_port=-1)
def test_malformed_queries_answered_as_nats_server(edgebus_server, real_nats_server):
    ref = real_nats_server()
    diffs = []
    for path in CASES:
        theirs = fetch(ref.http_port, path)
        ours = fetch(edgebus_server.server.http_port, path)
        if theirs[0] != ours[0]:
            diffs.append((path, "status", theirs[0], ours[0], theirs[2][:120], ours[2][:120]))
        elif theirs[0] != 200 or path.startswith("/healthz"):
            if theirs[1].startswith("application/json"):
                same = json.loads(theirs[2]) == json.loads(ours[2])
            else:
                same = theirs[2] == ours[2]
            if not same or theirs[1] != ours[1]:
                diffs.append((path, "body", theirs[1], ours[1], theirs[2], ours[2]))
    assert diffs == []


SYS_CONFIG = """
accounts { SYS { users [ { user: sys, password: sys } ] }, APP { users [ { user: a, password: a } ] } }
system_account: SYS
"""


@pytest.mark.edgebus(config="port: -1\n" + SYS_CONFIG)
def test_bad_sys_request_options_answered_as_nats_server(edgebus_server, real_nats_server):
    """The same checks answer `$SYS.REQ.SERVER.PING.CONNZ` (an error object, code 500)."""
    ref = real_nats_server(config=SYS_CONFIG)

    async def ask(url: str) -> dict:
        nc = await nats.connect(url, user="sys", password="sys")
        try:
            msg = await nc.request("$SYS.REQ.SERVER.PING.CONNZ", b'{"sort": "bogus"}', timeout=5)
            return json.loads(msg.data)
        finally:
            await nc.close()

    theirs = run_async(ask, ref.client_url)
    ours = run_async(ask, edgebus_server.client_url)
    assert theirs["error"] == {"code": 500, "description": "invalid sorting option: bogus"}
    assert ours.get("error") == theirs["error"]


JS_CASES = [
    "/healthz?account=nope",
    "/healthz?account=$G",  # an account without streams is not found either
    "/healthz?account=$G&stream=nope",
    "/healthz?account=$G&stream=nope&details=true",
    "/healthz?account=$G&stream=S",
    "/healthz?account=$G&stream=S&consumer=nope",
    "/healthz?account=$G&stream=S&consumer=nope&details=1",
    "/healthz?account=$G&stream=S&consumer=C",
    "/healthz?details=true&account=nope",
    "/healthz?js-enabled-only=true&account=nope",  # only asks whether JetStream is on
    "/healthz?js-server-only=true&account=nope",
    "/jsz?leader-only=true",  # a single server leads its JetStream
]


@pytest.mark.edgebus(http_port=-1, jetstream=True)
def test_healthz_assets_answered_as_nats_server(edgebus_server, real_nats_server):
    """/healthz's `account`, `stream` and `consumer`: 404 for what does not exist."""
    ref = real_nats_server(jetstream=True)

    async def make(url: str) -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="S", subjects=["s.>"])
        await js.add_consumer("S", durable_name="C")
        await nc.close()

    run_async(make, ref.client_url)
    run_async(make, edgebus_server.client_url)
    diffs = []
    for path in JS_CASES:
        theirs = fetch(ref.http_port, path)
        ours = fetch(edgebus_server.server.http_port, path)
        if theirs[0] != ours[0]:
            diffs.append((path, "status", theirs[0], ours[0], theirs[2][:160], ours[2][:160]))
        elif theirs[0] != 200 and json.loads(theirs[2]) != json.loads(ours[2]):
            diffs.append((path, "body", theirs[2], ours[2]))
    assert diffs == []
