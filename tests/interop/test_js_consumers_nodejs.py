"""nats.js (npm `nats`) against edgebus and the real nats-server: consumers, KV, Object Store.

Each scenario is a script in tests/interop/js/ that prints one JSON object of what it saw; the
same expectations hold for both servers. Skipped when node or the npm package is missing
(`npm install` in tests/interop/js, which .ci/run does).
"""

from __future__ import annotations

import pytest

from js.jshelpers import JSServer, run_node, server_fixture


@pytest.fixture(params=["edgebus", "nats-server"])
def srv(request: pytest.FixtureRequest, tmp_path) -> JSServer:
    yield from server_fixture(request, tmp_path)


def test_nodejs_consumers(srv: JSServer) -> None:
    r = run_node("consumers.mjs", srv.url)
    assert r["fetch"] == [["m0", 1, 9, 1], ["m1", 2, 8, 1], ["m2", 3, 7, 1]]
    assert r["redelivered"] == ["m1", 2, 4]          # NAK: delivery count 2, new consumer seq
    assert r["ackAck"] is True
    assert r["info"] == {"delivered": 3, "floor": 3, "ack_pending": 0, "pending": 7}
    assert r["consumed"] == [4, 5, 6, 7, 8, 9, 10]
    assert r["ordered"] == [2, 5, 8]
    assert r["queue"] == 10
    assert r["pushOrdered"] == ["m2", "m5", "m8"]
    assert {"P", "Q"} <= set(r["names"]) and len(r["names"]) == 4
    assert r["deleted"] == 10014 and r["badCreate"] == 10094


def test_nodejs_kv(srv: JSServer) -> None:
    r = run_node("kv.mjs", srv.url)
    assert r["get"] == ["2", 2, 1]
    assert r["dupCreate"] == "error" and r["badUpdate"] == "error"
    assert r["keys"] == ["a", "b", "c.d"]
    assert r["history"] == ["1", "2"]
    assert r["afterDelete"] == "DEL" and r["afterPurge"] == "PURGE"
    assert r["watch"] == [["w.1", "PUT"], ["w.2", "PUT"], ["w.1", "DEL"]]
    assert r["initial"] == [["w.2", "PUT", 1], ["w.1", "DEL", 0]]
    assert r["status"] == ["B", 5, 8]


def test_nodejs_object_store(srv: JSServer) -> None:
    r = run_node("os.mjs", srv.url, "2000000")
    assert r["put"] == [2000000, 16] and r["roundtrip"] is True
    assert r["info"] == [2, "s"]
    assert r["link"] == ["small-link", "small"] and r["viaLink"] == "hi"
    assert r["list"] == ["blob", "small", "small-link", "store-link"]
    assert r["watch"] == ["blob", "small", "small-link", "store-link"]
    assert r["afterDelete"] == [True, None]
    assert r["status"] == ["O", "objs", False]
