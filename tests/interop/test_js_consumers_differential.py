"""The same consumer-create requests sent to edgebus and to the real nats-server must come back
with the same defaulted config, the same ConsumerInfo shape and the same errors.

Values that are meant to differ are masked: timestamps, generated names, and the server
version metadata (`_nats.ver`, `_nats.level`).
"""

from __future__ import annotations

import json
from typing import Any

import nats
import pytest

from conftest import NATS_SERVER
from js.jshelpers import api, run, start_server, stop_server

CREATES: list[tuple[str, dict[str, Any]]] = [
    ("CONSUMER.CREATE.S", {}),
    ("CONSUMER.DURABLE.CREATE.S.D1", {"durable_name": "D1", "ack_policy": "explicit", "filter_subject": "foo.a"}),
    ("CONSUMER.CREATE.S.D2", {"durable_name": "D2", "deliver_subject": "dl.2", "deliver_group": "g",
                              "idle_heartbeat": 1_000_000_000, "flow_control": True, "ack_policy": "none"}),
    ("CONSUMER.CREATE.S.D3", {"ack_policy": "explicit", "backoff": [1_000_000_000, 2_000_000_000],
                              "max_deliver": 5}),
    ("CONSUMER.CREATE.S.D4", {"ack_policy": "all", "max_batch": 10, "max_expires": 5_000_000_000,
                              "max_bytes": 1024, "max_waiting": 7, "max_ack_pending": 3}),
    ("CONSUMER.CREATE.S.D5", {"ack_policy": "explicit", "headers_only": True, "sample_freq": "50%",
                              "description": "d", "metadata": {"k": "v"}, "inactive_threshold": 9_000_000_000}),
    ("CONSUMER.CREATE.S.D6", {"deliver_policy": "by_start_sequence", "opt_start_seq": 3,
                              "filter_subjects": ["foo.a", "foo.c"], "replay_policy": "original"}),
    ("CONSUMER.CREATE.S.D7", {"deliver_policy": "last_per_subject", "filter_subject": "foo.*",
                              "deliver_subject": "dl.7", "rate_limit_bps": 1000}),
    ("CONSUMER.CREATE.S.D8", {"deliver_policy": "new", "mem_storage": True, "num_replicas": 1}),
    ("CONSUMER.CREATE.S.D9", {"ack_policy": "explicit", "ack_wait": 5_000_000_000, "backoff": [1, 2],
                              "max_deliver": 3}),
    ("CONSUMER.CREATE.S.E1", {"deliver_policy": "last", "opt_start_seq": 1}),
    ("CONSUMER.CREATE.S.E2", {"ack_policy": "explicit", "max_ack_pending": -1}),
    ("CONSUMER.CREATE.S.E3", {"deliver_subject": "dl.e3", "max_waiting": 5}),
    ("CONSUMER.CREATE.S.E4", {"deliver_subject": "dl.e4", "ack_policy": "none", "max_ack_pending": 5}),
    ("CONSUMER.CREATE.S.E5", {"sample_freq": "x%"}),
    ("CONSUMER.CREATE.S.E6", {"description": "x" * 5000}),
    ("CONSUMER.CREATE.S.E7", {"num_replicas": 3}),
    ("CONSUMER.CREATE.S.E8", {"filter_subjects": ["foo.a", ""]}),
    ("CONSUMER.CREATE.S.E9", {"filter_subject": "foo.a", "filter_subjects": ["foo.b"]}),
]
UPDATES: list[tuple[str, dict[str, Any]]] = [
    ("CONSUMER.DURABLE.CREATE.S.D1", {"durable_name": "D1", "ack_policy": "explicit", "filter_subject": "foo.b",
                                      "max_deliver": 9, "description": "updated"}),
    ("CONSUMER.CREATE.S.D2", {"durable_name": "D2", "deliver_subject": "dl.2x", "deliver_group": "g",
                              "idle_heartbeat": 1_000_000_000, "flow_control": True, "ack_policy": "none"}),
    ("CONSUMER.CREATE.S.D4", {"ack_policy": "all", "max_waiting": 8}),
    ("CONSUMER.CREATE.S.D3", {"ack_policy": "explicit", "deliver_policy": "new"}),
    ("CONSUMER.CREATE.S.D8", {"deliver_policy": "new", "deliver_subject": "now.push"}),
]


def _mask(r: dict[str, Any]) -> dict[str, Any]:
    r = json.loads(json.dumps(r))
    for k in ("created", "ts"):
        if k in r:
            r[k] = "<time>"
    for k in ("delivered", "ack_floor"):
        if k in r:
            r[k].pop("last_active", None)
    cfg = r.get("config")
    if cfg is not None:
        md = cfg.get("metadata") or {}
        for key in ("_nats.ver", "_nats.level"):
            md.pop(key, None)
        if not md:
            cfg.pop("metadata", None)
        if len(r.get("name", "")) == 8 and not cfg.get("durable_name") and "name" not in cfg:
            r["name"] = "<generated>"
    r.pop("cluster", None)   # clustered-only in 2.11; absent either way standalone
    return r


async def _scenario(url: str) -> list[dict[str, Any]]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="S", subjects=["foo.*"])
    for i, s in enumerate(["foo.a", "foo.b", "foo.a", "foo.c", "foo.b"]):
        await js.publish(s, b"%d" % i)
    out = []
    for subj, cfg in CREATES + UPDATES:
        out.append(_mask(await api(nc, subj, {"stream_name": "S", "config": cfg})))
    out.append(_mask(await api(nc, "CONSUMER.NAMES.S")))
    # state after a filtered scan, acks and a NAK
    await api(nc, "CONSUMER.CREATE.S.F", {"stream_name": "S", "config": {
        "durable_name": "F", "filter_subject": "foo.a", "ack_policy": "explicit"}})
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish("$JS.API.CONSUMER.MSG.NEXT.S.F", b'{"batch": 5, "no_wait": true}', reply=inbox)
    got = [await sub.next_msg(2) for _ in range(3)]      # two messages and the 404
    await nc.request(got[1].reply, b"-NAK", timeout=2)
    await nc.request(got[0].reply, b"+ACK", timeout=2)
    out.append(_mask(await api(nc, "CONSUMER.INFO.S.F")))
    await nc.publish("$JS.API.CONSUMER.MSG.NEXT.S.F", b'{"batch": 5, "no_wait": true}', reply=inbox)
    again = [await sub.next_msg(2) for _ in range(2)]
    await nc.request(again[0].reply, b"+ACK", timeout=2)
    out.append(_mask(await api(nc, "CONSUMER.INFO.S.F")))
    await nc.close()
    return out


@pytest.mark.skipif(not NATS_SERVER, reason="nats-server binary not installed")
def test_create_responses_match_nats_server(tmp_path) -> None:
    results = {}
    for kind in ("nats-server", "edgebus"):
        srv = start_server(kind, tmp_path / kind)
        try:
            results[kind] = run(_scenario, srv.url)
        finally:
            stop_server(srv)
    ref, got = results["nats-server"], results["edgebus"]
    labels = [s for s, _ in CREATES + UPDATES] + ["NAMES", "INFO after nak", "INFO after ack"]
    for label, a, b in zip(labels, ref, got):
        if label == "NAMES":
            a["consumers"] = sorted(c for c in a["consumers"] if len(c) != 8)
            b["consumers"] = sorted(c for c in b["consumers"] if len(c) != 8)
        assert b == a, label
