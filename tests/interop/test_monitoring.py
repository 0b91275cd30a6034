"""HTTP monitoring: nats-server's endpoints, field names and counters, read over real HTTP."""

import asyncio
import json
import urllib.error
import urllib.request

import nats
import pytest

from conftest import flushed, run_async


def get(base: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(base + path, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        if not e.headers.get("Content-Type", "").startswith("application/json"):
            return e.code, {"text": body.decode()}  # nats-server answers bad requests in text
        return e.code, json.loads(body or b"{}")


@pytest.fixture
def mon(edgebus_server):
    return edgebus_server


@pytest.mark.edgebus(http_port=-1)
def test_varz_connz_subsz_counters(mon):
    base = mon.http_url

    async def traffic():
        nc = await nats.connect(mon.client_url, name="monitored")
        await nc.subscribe("m.*")
        await nc.subscribe("q", queue="workers")
        for _ in range(3):
            await nc.publish("m.x", b"12345")
        await flushed(nc)
        await asyncio.sleep(0.05)
        status, connz = await asyncio.to_thread(get, base, "/connz?subs=1")
        status_d, detail = await asyncio.to_thread(get, base, "/connz?subs=detail&auth=true")
        status_v, varz = await asyncio.to_thread(get, base, "/varz")
        status_s, subsz = await asyncio.to_thread(get, base, "/subsz?subs=1&test=m.y")
        await nc.close()
        return (status, connz), (status_d, detail), (status_v, varz), (status_s, subsz)

    (s1, connz), (s2, detail), (s3, varz), (s4, subsz) = run_async(traffic)
    assert s1 == s2 == s3 == s4 == 200
    [c] = [c for c in connz["connections"] if c["name"] == "monitored"]
    assert c["in_msgs"] == 3 and c["in_bytes"] == 15
    assert c["out_msgs"] == 3 and c["out_bytes"] == 15
    assert c["subscriptions"] == 2 and sorted(c["subscriptions_list"]) == ["m.*", "q"]
    [d] = [c for c in detail["connections"] if c["name"] == "monitored"]
    assert {s["subject"] for s in d["subscriptions_list_detail"]} == {"m.*", "q"}
    assert d["account"] == "$G"
    assert varz["connections"] >= 1 and varz["in_msgs"] >= 3 and varz["max_payload"] == 1048576
    assert varz["server_id"].startswith("N") and varz["http_port"] == mon.server.http_port
    assert subsz["num_subscriptions"] >= 2
    assert [s["subject"] for s in subsz["subscriptions_list"]] == ["m.*"]


@pytest.mark.edgebus(http_port=-1)
def test_healthz_closed_connz_and_errors(mon):
    base = mon.http_url
    # as nats-server 2.15: no status_code in the HTTP document, and JetStream switched off in
    # the config is healthy even for js-enabled-only
    assert get(base, "/healthz") == (200, {"status": "ok"})
    assert get(base, "/healthz?js-enabled-only=true") == (200, {"status": "ok"})

    async def connect_and_close():
        nc = await nats.connect(mon.client_url, name="gone")
        await nc.close()
        await asyncio.sleep(0.1)

    run_async(connect_and_close)
    status, closed = get(base, "/connz?state=closed")
    assert status == 200
    assert any(c["name"] == "gone" and c["reason"] == "Client Closed" for c in closed["connections"])
    assert get(base, "/connz?sort=nonsense")[0] == 400
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/nope", timeout=5)
    assert e.value.code == 404
    for path in ("/routez", "/gatewayz", "/leafz", "/accountz", "/accstatz", "/jsz"):
        assert get(base, path)[0] == 200, path


@pytest.mark.edgebus(http_port=-1)
def test_varz_field_names_cover_nats_server(mon, real_nats_server):
    """Every top-level /varz key a real nats-server reports is there in ours too."""
    ref = real_nats_server()
    _, theirs = get(f"http://127.0.0.1:{ref.http_port}", "/varz")
    _, ours = get(mon.http_url, "/varz")
    ignore = {"git_commit", "ip", "connect_urls", "ws_connect_urls", "tls_required", "tls_verify",
              "pinned_account_fails", "ocsp_peer_cache", "system_account", "trusted_operators_jwt",
              "trusted_operators_claim", "config_digest", "proxies"}
    missing = sorted(k for k in theirs if k not in ours and k not in ignore)
    assert missing == []


@pytest.mark.edgebus(http_port=-1, config="port: -1\nhttp_port: -1\nleafnodes { port: -1 }\n")
def test_leaf_connection_counted_in_leafz_and_accstatz(mon, real_nats_server):
    import time
    leaf_port = mon.server.leaf_port
    real_nats_server(config=f'leafnodes {{ remotes = [ {{ url: "nats-leaf://127.0.0.1:{leaf_port}" }} ] }}\n')
    deadline = time.monotonic() + 10
    leafz: dict = {}
    while time.monotonic() < deadline:
        _, leafz = get(mon.http_url, "/leafz")
        if leafz.get("leafnodes") == 1:
            break
        time.sleep(0.05)
    assert leafz["leafnodes"] == 1 and leafz["leafs"][0]["account"] == "$G"
    _, acc = get(mon.http_url, "/accstatz?unused=1")
    [g] = [a for a in acc["account_statz"] if a["acc"] == "$G"]
    assert g["leafnodes"] == 1 and g["total_conns"] == g["conns"] + 1
