"""Sourcing across accounts on one server (ADR-59 "Cross-Account Access"), edgebus and the real
nats-server alike: account A exports `$JS.API.CONSUMER.CREATE.>` and `$JS.FC.>` as services and
`deliver.>` as a stream; account B imports them (the API under the prefix `JS.A.API`) and
mirrors/sources A's stream with `external: {api: "JS.A.API", deliver: "deliver"}`. Enough data
flows for flow-control replies to cross the service import.
"""

from __future__ import annotations

from typing import Any

import nats
import pytest

from conftest import NATS_SERVER, run_async
from edgebus.jetstream.config import server_hash
from edgebus.testing.embedded import EmbeddedServer
from test_js_sources_helpers import create, info, messages, source_fields, view, wait_count, wait_last_seq

ACCOUNTS = """
accounts {
  A: { jetstream: enabled, users: [{user: a, password: a}],
       exports: [ {service: "$JS.API.CONSUMER.CREATE.>"}, {service: "$JS.FC.>"}, {stream: "deliver.>"} ] }
  B: { jetstream: enabled, users: [{user: b, password: b}],
       imports: [ {service: {account: A, subject: "$JS.API.CONSUMER.CREATE.>"}, to: "JS.A.API.CONSUMER.CREATE.>"},
                  {service: {account: A, subject: "$JS.FC.>"}},
                  {stream: {account: A, subject: "deliver.>"}} ] }
}
"""
EXT = {"api": "JS.A.API", "deliver": "deliver"}


@pytest.fixture(params=["edgebus", "nats-server"])
def host(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param.startswith("edgebus"):
        srv = EmbeddedServer(config="port: -1\n" + ACCOUNTS, jetstream=True,
                             store_dir=str(tmp_path / "js")).start()
        try:
            yield f"127.0.0.1:{srv.port}"
        finally:
            srv.close()
    else:
        if not NATS_SERVER:
            pytest.skip("nats-server binary not installed")
        yield "127.0.0.1:%d" % request.getfixturevalue("real_nats_server")(ACCOUNTS, jetstream=True).port


def test_mirror_and_source_from_another_account(host: str) -> None:
    async def go() -> None:
        a = await nats.connect(f"nats://a:a@{host}")
        b = await nats.connect(f"nats://b:b@{host}")
        ajs = a.jetstream()
        await create(a, {"name": "ORDERS", "subjects": ["orders.>"]})
        for i in range(5):
            await ajs.publish(f"orders.{i % 2}", b"o%d" % i)
        await create(b, {"name": "S", "sources": [{"name": "ORDERS", "external": EXT}]})
        await create(b, {"name": "M", "mirror": {"name": "ORDERS", "external": EXT}})
        await wait_count(b, "S", 5, timeout=10)
        await wait_last_seq(b, "M", 5, timeout=10)
        for i in range(5, 305):
            await ajs.publish(f"orders.{i % 2}", b"x" * 8192)
        await wait_count(b, "S", 305)
        await wait_last_seq(b, "M", 305)
        origin = await messages(a, "ORDERS")
        assert view(await messages(b, "M"), "seq", "subject", "data", "time") == \
            view(origin, "seq", "subject", "data", "time")
        src = await messages(b, "S")
        iname = "ORDERS:" + server_hash("JS.A.API")
        assert [source_fields(m) for m in src] == [[iname, str(m["seq"]), ">", ">", m["subject"]]
                                                   for m in origin]
        si = (await info(b, "S"))["sources"][0]
        assert si["external"] == EXT and si["lag"] == 0 and "error" not in si
        # B's own JetStream API stays B's: A's stream is not visible there
        r = await b.request("$JS.API.STREAM.INFO.ORDERS", b"", timeout=5)
        assert b'"err_code":10059' in r.data.replace(b" ", b"")
        await a.close()
        await b.close()
    run_async(go, timeout=60)
