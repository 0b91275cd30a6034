"""edgebus as a leaf node of a real nats-server hub, with nats-py clients on both sides.

Pub/sub and headers both ways, request/reply across, queue groups across (each message to
exactly one member), interest removal, hub restart (the leaf reconnects and announces its
interest again), two leaves on one hub (nothing delivered twice), deny_imports/deny_exports,
loop detection, a WebSocket remote, and /leafz on both ends.

Nothing here waits a fixed time for something to happen: tests wait for the state they need
(interest visible in /leafz, a sentinel message arriving after the ones under test).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from typing import Any, Callable

import nats
import pytest

from conftest import NATS_SERVER, RealNatsServer, free_port, run_async
from edgebus.testing.embedded import EmbeddedServer

pytestmark = pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")

WAIT = 15.0  # upper bound for a state to appear (reconnects take about a second)


# -- helpers shared by the test_leaf_*.py modules ----------------------------------------------
class Hub(RealNatsServer):
    """A real nats-server that can be started again on the same ports (a hub restart)."""

    def __init__(self, config: str, *, port: int = 0, http_port: int = 0) -> None:
        super().__init__(config)
        if port:
            self.port, self.http_port = port, http_port
            with open(self.conf_path, "w") as f:
                f.write(f"port: {port}\nhttp_port: {http_port}\n" + config)
        self.config = config

    def restarted(self) -> "Hub":
        self.stop()
        return Hub(self.config, port=self.port, http_port=self.http_port).start()

    def leafz(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/leafz?subs=1", timeout=5) as r:
            return json.loads(r.read())["leafs"]


def wait_until(pred: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def edge_leafz(srv: EmbeddedServer) -> list[dict[str, Any]]:
    return srv.call(lambda s: s.services["leaf"].leafz({"subs": ["1"]}))


def subs_of(leafs: list[dict[str, Any]]) -> list[set[str]]:
    return [set(ln.get("subscriptions_list") or ()) for ln in leafs]


def hub_sees(hub: Hub, subject: str, present: bool = True, links: int = 1) -> None:
    """Wait until `links` leaf connections on the hub carry (or no longer carry) `subject`."""
    def ok() -> bool:
        subs = subs_of(hub.leafz())
        n = sum(1 for s in subs if subject in s)
        return n >= links if present else (len(subs) >= 1 and n == 0)
    wait_until(ok, f"hub interest {subject!r} present={present}")


def edge_sees(srv: EmbeddedServer, subject: str, present: bool = True) -> None:
    """Wait until the edgebus leaf knows (or forgot) the hub's interest in `subject`."""
    def ok() -> bool:
        subs = subs_of(edge_leafz(srv))
        return any(subject in s for s in subs) if present else (subs and not any(subject in s for s in subs))
    wait_until(ok, f"edgebus interest {subject!r} present={present}")


def connected(srv: EmbeddedServer, n: int = 1) -> None:
    wait_until(lambda: len(edge_leafz(srv)) >= n, f"{n} leaf connection(s) on edgebus")


def leaf_conf(hub_leaf_port: int, extra_remote: str = "", extra: str = "",
              scheme: str = "nats-leaf", name: str = "EDGE") -> str:
    sep = ", " if extra_remote else ""
    return (f"server_name: {name}\nport: -1\n{extra}\n"
            f'leafnodes {{ remotes: [ {{ url: "{scheme}://127.0.0.1:{hub_leaf_port}"{sep}{extra_remote} }} ] }}\n')


def start_hub(extra: str = "", name: str = "HUB") -> tuple[Hub, int]:
    lp = free_port()
    hub = Hub(f'server_name: {name}\nleafnodes {{ listen: "127.0.0.1:{lp}" }}\n{extra}\n').start()
    return hub, lp


class Collector:
    """Messages a subscription received; `until` waits for a payload to show up."""

    def __init__(self) -> None:
        self.msgs: list[Any] = []
        self.event = asyncio.Event()

    async def cb(self, m: Any) -> None:
        self.msgs.append(m)
        self.event.set()

    def datas(self) -> list[bytes]:
        return [m.data for m in self.msgs]

    async def until(self, data: bytes, count: int = 1, timeout: float = WAIT) -> None:
        """Wait until `data` has arrived `count` times."""
        async def wait() -> None:
            while self.datas().count(data) < count:
                self.event.clear()
                await self.event.wait()
        await asyncio.wait_for(wait(), timeout)


async def eventually(pred: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
    """wait_until for asyncio code (the client's callbacks keep running meanwhile)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def hub_waits(hub: Hub, subject: str, present: bool = True, links: int = 1) -> None:
    await asyncio.to_thread(hub_sees, hub, subject, present, links)


async def edge_waits(srv: EmbeddedServer, subject: str, present: bool = True) -> None:
    await asyncio.to_thread(edge_sees, srv, subject, present)


@pytest.fixture
def hub_and_leaf():
    hub, lp = start_hub()
    leaf = EmbeddedServer(config=leaf_conf(lp)).start()
    try:
        connected(leaf)
        yield hub, leaf
    finally:
        leaf.close()
        hub.stop()


# -- tests ------------------------------------------------------------------------------------
def test_pubsub_both_ways_with_headers(hub_and_leaf):
    hub, leaf = hub_and_leaf

    async def go():
        h = await nats.connect(hub.client_url)
        e = await nats.connect(leaf.client_url)
        on_edge, on_hub = Collector(), Collector()
        await e.subscribe("down.>", cb=on_edge.cb)
        await h.subscribe("up.*", cb=on_hub.cb)
        await hub_waits(hub, "down.>")
        await edge_waits(leaf, "up.*")
        await h.publish("down.a", b"1")
        await h.publish("down.b.c", b"2", headers={"X-Trace": "abc", "Multi": "v"})
        await h.publish("down.end", b"end")
        await e.publish("up.x", b"3", reply="my.reply")
        await e.publish("up.y", b"4", headers={"Nats-Msg-Id": "m1"})
        await e.publish("up.end", b"end")
        await on_edge.until(b"end")
        await on_hub.until(b"end")
        assert [(m.subject, m.data) for m in on_edge.msgs] == [
            ("down.a", b"1"), ("down.b.c", b"2"), ("down.end", b"end")]
        assert on_edge.msgs[1].headers == {"X-Trace": "abc", "Multi": "v"}
        assert [(m.subject, m.data, m.reply) for m in on_hub.msgs] == [
            ("up.x", b"3", "my.reply"), ("up.y", b"4", ""), ("up.end", b"end", "")]
        assert on_hub.msgs[1].headers == {"Nats-Msg-Id": "m1"}
        await h.close()
        await e.close()
    run_async(go)


def test_request_reply_across(hub_and_leaf):
    hub, leaf = hub_and_leaf

    async def go():
        h = await nats.connect(hub.client_url)
        e = await nats.connect(leaf.client_url)

        async def echo(prefix: bytes):
            async def cb(m):
                await m.respond(prefix + m.data)
            return cb
        await h.subscribe("svc.hub", cb=await echo(b"hub:"))
        await e.subscribe("svc.edge", cb=await echo(b"edge:"), queue="workers")
        await edge_waits(leaf, "svc.hub")
        await hub_waits(hub, "svc.edge")
        for i in range(5):
            r = await e.request("svc.hub", b"%d" % i, timeout=5)
            assert r.data == b"hub:%d" % i
            r = await h.request("svc.edge", b"%d" % i, timeout=5, headers={"K": str(i)})
            assert r.data == b"edge:%d" % i
        await h.close()
        await e.close()
    run_async(go)


def test_queue_groups_across_exactly_once(hub_and_leaf):
    hub, leaf = hub_and_leaf
    n = 40

    async def go():
        h = await nats.connect(hub.client_url)
        e = await nats.connect(leaf.client_url)
        # members only behind the link, in two groups: every message once per group
        e1, e2, e3, plain = Collector(), Collector(), Collector(), Collector()
        await e.subscribe("jobs", queue="A", cb=e1.cb)
        await e.subscribe("jobs", queue="A", cb=e2.cb)
        await e.subscribe("jobs", queue="B", cb=e3.cb)
        await e.subscribe("jobs", cb=plain.cb)
        await hub_waits(hub, "jobs")
        for i in range(n):
            await h.publish("jobs", b"%d" % i)
        await h.publish("jobs", b"end")
        await plain.until(b"end")
        await e3.until(b"end")
        await eventually(lambda: b"end" in e1.datas() + e2.datas(), "end in group A")
        got_a = e1.datas() + e2.datas()
        assert sorted(got_a) == sorted([b"%d" % i for i in range(n)] + [b"end"])
        assert len(e3.datas()) == n + 1 and len(plain.datas()) == n + 1

        # members on both sides of the link: a leaf publish reaches each group once
        h1 = Collector()
        await h.subscribe("work", queue="W", cb=h1.cb)
        l1 = Collector()
        await e.subscribe("work", queue="W", cb=l1.cb)
        await edge_waits(leaf, "work")
        for i in range(n):
            await e.publish("work", b"%d" % i)
        await e.publish("work", b"end")
        await eventually(lambda: b"end" in h1.datas() + l1.datas(), "end in group W")
        got = h1.datas() + l1.datas()
        assert sorted(got) == sorted([b"%d" % i for i in range(n)] + [b"end"])
        # nats-server prefers local members: the hub's publishes stay on the hub
        for i in range(n):
            await h.publish("work", b"h%d" % i)
        await h.publish("work", b"hend")
        await eventually(lambda: b"hend" in h1.datas() + l1.datas(), "hend in group W")
        assert len([d for d in h1.datas() if d.startswith(b"h")]) == n + 1
        assert not [d for d in l1.datas() if d.startswith(b"h")]
        await h.close()
        await e.close()
    run_async(go)


def test_interest_removal_stops_flow(hub_and_leaf):
    hub, leaf = hub_and_leaf

    async def go():
        h = await nats.connect(hub.client_url)
        e = await nats.connect(leaf.client_url)
        got, sentinel = Collector(), Collector()
        sub = await e.subscribe("temp", cb=got.cb)
        await e.subscribe("sentinel", cb=sentinel.cb)
        await hub_waits(hub, "temp")
        await hub_waits(hub, "sentinel")
        await h.publish("temp", b"before")
        await got.until(b"before")
        await sub.unsubscribe()
        await hub_waits(hub, "temp", present=False)
        await h.publish("temp", b"after")
        await h.publish("sentinel", b"s")
        await sentinel.until(b"s")
        assert got.datas() == [b"before"]

        # and the other way: a hub subscription going away is forgotten by the leaf
        hs = await h.subscribe("hubtemp")
        await edge_waits(leaf, "hubtemp")
        await hs.unsubscribe()
        await edge_waits(leaf, "hubtemp", present=False)
        await h.close()
        await e.close()
    run_async(go)


def test_hub_restart_leaf_reconnects_and_resends_interest():
    hub, lp = start_hub()
    leaf = EmbeddedServer(config=leaf_conf(lp)).start()
    try:
        connected(leaf)

        async def go():
            nonlocal hub
            e = await nats.connect(leaf.client_url)
            got, q = Collector(), Collector()
            await e.subscribe("after.restart", cb=got.cb)
            await e.subscribe("qwork", queue="Q", cb=q.cb)
            await hub_waits(hub, "after.restart")
            hub = await asyncio.to_thread(hub.restarted)
            await hub_waits(hub, "after.restart")
            await hub_waits(hub, "qwork")
            h = await nats.connect(hub.client_url)
            for i in range(10):
                await h.publish("after.restart", b"%d" % i)
                await h.publish("qwork", b"%d" % i)
            await h.publish("after.restart", b"end")
            await h.publish("qwork", b"end")
            await got.until(b"end")
            await q.until(b"end")
            assert got.datas() == [b"%d" % i for i in range(10)] + [b"end"]
            assert q.datas() == [b"%d" % i for i in range(10)] + [b"end"]
            # the leaf side still reaches the hub too
            hc = Collector()
            await h.subscribe("from.edge", cb=hc.cb)
            await edge_waits(leaf, "from.edge")
            await e.publish("from.edge", b"x")
            await hc.until(b"x")
            await h.close()
            await e.close()
        run_async(go)
    finally:
        leaf.close()
        hub.stop()


def test_two_leaves_nothing_doubled():
    hub, lp = start_hub()
    l1 = EmbeddedServer(config=leaf_conf(lp, name="EDGE1")).start()
    l2 = EmbeddedServer(config=leaf_conf(lp, name="EDGE2")).start()
    n = 25
    try:
        connected(l1)
        connected(l2)

        async def go():
            h = await nats.connect(hub.client_url)
            c1 = await nats.connect(l1.client_url)
            c2 = await nats.connect(l2.client_url)
            on_h, on_1, on_2 = Collector(), Collector(), Collector()
            await h.subscribe("news.*", cb=on_h.cb)
            await c1.subscribe("news.*", cb=on_1.cb)
            await c2.subscribe("news.>", cb=on_2.cb)
            await hub_waits(hub, "news.*", links=1)
            await hub_waits(hub, "news.>", links=1)
            await edge_waits(l1, "news.*")
            await edge_waits(l1, "news.>")   # leaf 2's interest, relayed by the hub
            await edge_waits(l2, "news.*")
            for i in range(n):
                await h.publish("news.hub", b"h%d" % i)
                await c1.publish("news.one", b"a%d" % i)
                await c2.publish("news.two", b"b%d" % i)
            for c in (h, c1, c2):
                await c.publish("news.end", b"end")
            for col in (on_h, on_1, on_2):
                await col.until(b"end", count=3)
            # one more round through every path before counting
            for c in (h, c1, c2):
                await c.publish("news.fin", b"fin")
            for col in (on_h, on_1, on_2):
                await col.until(b"fin", count=3)
            expected = sorted([b"h%d" % i for i in range(n)] + [b"a%d" % i for i in range(n)]
                              + [b"b%d" % i for i in range(n)] + [b"end"] * 3 + [b"fin"] * 3)
            for col in (on_h, on_1, on_2):
                assert sorted(col.datas()) == expected
            for c in (h, c1, c2):
                await c.close()
        run_async(go)
    finally:
        l1.close()
        l2.close()
        hub.stop()


def test_leafz_on_both_ends(hub_and_leaf):
    hub, leaf = hub_and_leaf
    (mine,) = edge_leafz(leaf)
    assert mine["name"] == "HUB" and mine["is_spoke"] is True and mine["account"] == "$G"
    assert any(s.startswith("$LDS.") for s in mine["subscriptions_list"])
    (theirs,) = hub.leafz()
    assert theirs["name"] == "EDGE" and theirs["is_spoke"] is False and theirs["account"] == "$G"
    assert any(s.startswith("$LDS.") for s in theirs["subscriptions_list"])
    with urllib.request.urlopen(f"http://127.0.0.1:{hub.http_port}/varz", timeout=5) as r:
        assert json.loads(r.read())["leafnodes"] == 1


def test_deny_imports_and_exports():
    hub, lp = start_hub()
    leaf = EmbeddedServer(config=leaf_conf(
        lp, 'deny_imports: ["private.>"], deny_exports: ["secret.>"]')).start()
    try:
        connected(leaf)

        async def go():
            h = await nats.connect(hub.client_url)
            e = await nats.connect(leaf.client_url)
            on_edge, on_hub = Collector(), Collector()
            await e.subscribe("private.x", cb=on_edge.cb)
            await e.subscribe("open.x", cb=on_edge.cb)
            await h.subscribe("secret.x", cb=on_hub.cb)
            await h.subscribe("open.y", cb=on_hub.cb)
            await hub_waits(hub, "open.x")
            await edge_waits(leaf, "open.y")
            # denied imports are not even announced to the hub
            assert not any("private.x" in s for s in subs_of(hub.leafz()))
            await h.publish("private.x", b"no")
            await h.publish("open.x", b"end")
            await e.publish("secret.x", b"no")
            await e.publish("open.y", b"end")
            await on_edge.until(b"end")
            await on_hub.until(b"end")
            assert on_edge.datas() == [b"end"] and on_hub.datas() == [b"end"]
            await h.close()
            await e.close()
        run_async(go)
    finally:
        leaf.close()
        hub.stop()


def test_loop_detected_when_leaf_and_hub_dial_each_other(caplog):
    """edgebus dials the hub and the hub dials edgebus: each side's $LDS subject comes back
    to it over the other link, and the loop is reported with nats-server's error (the side
    that dialed then waits 30 s before trying again)."""
    elp = free_port()
    lp = free_port()
    hub = Hub(f'server_name: HUB\nleafnodes {{ listen: "127.0.0.1:{lp}", remotes: '
              f'[ {{ url: "nats-leaf://127.0.0.1:{elp}" }} ] }}\n').start()
    caplog.set_level(logging.ERROR, logger="edgebus.leaf")
    leaf = EmbeddedServer(config=(
        f'server_name: LOOPY\nport: -1\nleafnodes {{ listen: "127.0.0.1:{elp}", '
        f'remotes: [ {{ url: "nats-leaf://127.0.0.1:{lp}" }} ] }}\n')).start()
    try:
        wait_until(lambda: 'Loop detected for leafnode account="$G"' in caplog.text,
                   "loop detection")
    finally:
        leaf.close()
        hub.stop()


def test_websocket_remote():
    wp = free_port()
    hub, lp = start_hub(f"websocket {{ listen: \"127.0.0.1:{wp}\", no_tls: true }}")
    leaf = EmbeddedServer(config=leaf_conf(wp, scheme="ws")).start()
    try:
        connected(leaf)

        async def go():
            h = await nats.connect(hub.client_url)
            e = await nats.connect(leaf.client_url)
            on_edge, on_hub = Collector(), Collector()
            await e.subscribe("ws.down", cb=on_edge.cb)
            await h.subscribe("ws.up", cb=on_hub.cb)
            await hub_waits(hub, "ws.down")
            await edge_waits(leaf, "ws.up")
            big = bytes(range(256)) * 300
            await h.publish("ws.down", big)
            await e.publish("ws.up", b"hello", headers={"H": "1"})
            await on_edge.until(big)
            await on_hub.until(b"hello")
            assert on_hub.msgs[0].headers == {"H": "1"}
            await h.close()
            await e.close()
        run_async(go)
    finally:
        leaf.close()
        hub.stop()


def test_wrong_port_refused_and_late_hub_reached(caplog):
    """A remote pointing at the hub's client port is given up ("wrong port", as nats-server);
    a remote whose hub is not up yet keeps dialing and connects once it is."""
    caplog.set_level(logging.ERROR, logger="edgebus.leaf")
    hub, lp = start_hub()
    wrong = EmbeddedServer(config=leaf_conf(hub.port, name="WRONG")).start()
    try:
        wait_until(lambda: "attempted to connect to wrong port" in caplog.text, "wrong port")
        assert edge_leafz(wrong) == [] and hub.leafz() == []
    finally:
        wrong.close()
        hub.stop()
    late_port, late_http = free_port(), free_port()
    late_lp = free_port()
    leaf = EmbeddedServer(config=leaf_conf(late_lp)).start()
    try:
        wait_until(lambda: "Error trying to connect as leafnode" in caplog.text, "a failed dial")
        hub = Hub(f'server_name: HUB\nleafnodes {{ listen: "127.0.0.1:{late_lp}" }}\n',
                  port=late_port, http_port=late_http).start()
        connected(leaf)
        assert hub.leafz()[0]["name"] == "EDGE"
    finally:
        leaf.close()
        hub.stop()
