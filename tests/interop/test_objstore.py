"""Object Store buckets through nats-py, against edgebus and the real nats-server.

An object is chunk messages plus a meta message; reading it back is an ordered push consumer
(flow control, heartbeats) that stops when the ack subject says nothing is pending, so a big
object exercises the push path and the `num_pending` token hard.
"""

from __future__ import annotations

import hashlib
import io
import os

import nats
import pytest
from nats.js.api import ObjectMeta
from nats.js.errors import NotFoundError, ObjectNotFoundError

from js.jshelpers import JSServer, run, server_fixture

BIG = 50 * 1024 * 1024


@pytest.fixture(params=["edgebus", "nats-server"])
def srv(request: pytest.FixtureRequest, tmp_path) -> JSServer:
    yield from server_fixture(request, tmp_path)


def test_objstore_50mb_object(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        obs = await js.create_object_store(bucket="BIG")
        data = os.urandom(1024 * 1024) * (BIG // (1024 * 1024))
        info = await obs.put("blob.bin", data)
        assert info.size == BIG and info.chunks == BIG // (128 * 1024)
        sink = io.BytesIO()
        res = await obs.get("blob.bin", writeinto=sink)
        assert res.info.size == BIG
        got = sink.getvalue()
        assert len(got) == BIG and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        await nc.close()

    run(main, srv.url, timeout=90)


def test_objstore_info_list_watch_delete_status(srv: JSServer) -> None:
    async def main(url: str) -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        obs = await js.create_object_store(bucket="OS", description="things")
        w = await obs.watch()
        assert await w.updates(timeout=3) is None        # empty store: initial marker only
        await obs.put("a.txt", b"hello", meta=ObjectMeta(name="a.txt", description="A"))
        await obs.put("b.txt", b"x" * 300_000)
        await obs.put("empty", b"")
        seen = []
        for _ in range(3):
            seen.append((await w.updates(timeout=3)).name)
        assert seen == ["a.txt", "b.txt", "empty"]
        await w.stop()

        ia = await obs.get_info("a.txt")
        assert (ia.size, ia.chunks, ia.description) == (5, 1, "A")
        assert ia.digest.startswith("SHA-256=")
        assert (await obs.get("a.txt")).data == b"hello"
        assert (await obs.get("empty")).data == b""
        assert len((await obs.get("b.txt")).data) == 300_000
        # overwrite: the old chunks are purged, the new object is read back
        await obs.put("a.txt", b"hello again")
        assert (await obs.get("a.txt")).data == b"hello again"
        names = sorted(i.name for i in await obs.list())
        assert names == ["a.txt", "b.txt", "empty"]
        await obs.delete("b.txt")
        with pytest.raises((ObjectNotFoundError, NotFoundError)):
            await obs.get_info("b.txt")
        assert sorted(i.name for i in await obs.list(ignore_deletes=True)) == ["a.txt", "empty"]
        st = await obs.status()
        assert st.bucket == "OS" and st.description == "things" and not st.sealed
        await obs.seal()
        assert (await obs.status()).sealed
        await nc.close()

    run(main, srv.url)
