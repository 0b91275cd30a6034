"""Hostile JetStream names: every name that could become a path is answered as nats-server
answers it, and nothing is ever created or removed outside the store directory.

Three checks:
- a differential over a fixed list of hostile names (path separators, `.`/`..`, NUL, control
  bytes, unicode, too long) in every place a name enters (consumer `name` and `durable_name`
  in the body and in the subject, stream names, mirror and source names), sent to edgebus and
  to the real nats-server, comparing error codes and descriptions;
- an attack scenario: absolute and relative paths as consumer names, then DELETE with them,
  must leave a victim directory beside the store untouched;
- a property test (hypothesis) over generated names: the answer is OK or one of nats-server's
  name errors, carries no path or Python exception text, and the filesystem outside the store
  directory never changes.

The requests go through a small blocking client of the test's own (raw socket) so that
hypothesis can drive it example by example.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebus import EmbeddedServer
from rawclient import RawSocket

NAME_ERRORS = {
    10127: "Consumer name can not contain path separators",
    10052: "consumer name can not contain '.', '*', '>', '\\', '/'",
    10012: "error creating store for consumer",
    10102: "consumer name is too long, maximum allowed is 255",
    10020: "consumer expected to be ephemeral but a durable name was set in request",
}


class Requester(RawSocket):
    """A blocking NATS request client over a raw socket: enough for JSON API requests."""

    def __init__(self, url: str) -> None:
        host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
        super().__init__(host, int(port), timeout=10)
        self.n = 0
        self.line()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n'
                          b"SUB _R.> 1\r\nPING\r\n")
        while self.line() != b"PONG":
            pass

    def request(self, subject: str, body: Any) -> dict[str, Any]:
        self.n += 1
        reply = f"_R.{self.n}"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.sock.sendall(f"PUB {subject} {reply} {len(data)}\r\n".encode() + data + b"\r\n")
        while True:
            line = self.line()
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
                continue
            parts = line.split()
            if parts[:1] == [b"MSG"]:
                payload = self.read(int(parts[-1]))
                if parts[1] == reply.encode():
                    return json.loads(payload)
            elif parts[:1] == [b"HMSG"]:
                self.read(int(parts[-1]))
                raise AssertionError(f"no responders for {subject}")
            elif parts[:1] == [b"-ERR"]:
                raise AssertionError(line.decode())


def answer(resp: dict[str, Any]) -> str:
    e = resp.get("error")
    return f"{e['err_code']}:{e['description']}" if e else "OK"


def subject_safe(name: str) -> bool:
    """Names that can stand as one subject token (the tests put only those in subjects)."""
    return bool(name) and name not in ("*", ">") \
        and all(c.isprintable() and not c.isspace() and c != "." for c in name)


def setup_streams(r: Requester) -> None:
    for name, storage in (("S", "file"), ("M", "memory")):
        resp = r.request(f"$JS.API.STREAM.CREATE.{name}",
                         {"name": name, "subjects": [f"{name.lower()}.>"], "storage": storage})
        assert "error" not in resp, resp


def consumer_cases(name: str) -> list[tuple[str, dict[str, Any]]]:
    """Every way a consumer name reaches the API, for one name."""
    cases: list[tuple[str, dict[str, Any]]] = []
    for stream in ("S", "M"):
        cases.append((f"$JS.API.CONSUMER.CREATE.{stream}", {"name": name}))
        if subject_safe(name):
            cases += [
                (f"$JS.API.CONSUMER.CREATE.{stream}.{name}", {"name": name}),
                (f"$JS.API.CONSUMER.CREATE.{stream}.{name}", {"durable_name": name}),
                (f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{name}", {"durable_name": name}),
            ]
    return cases


def run_consumer_case(r: Requester, subject: str, cfg: dict[str, Any]) -> str:
    stream = subject.split(".")[5 if ".DURABLE." in subject else 4]
    resp = r.request(subject, {"stream_name": stream, "config": cfg})
    if "error" not in resp:
        created = resp["name"]
        if subject_safe(created):
            r.request(f"$JS.API.CONSUMER.DELETE.{stream}.{created}", b"")
    return answer(resp)


HOSTILE = ["/some/abs/dir", "a/b/c", "//x", "a\\b", "../x", "a.b/c", "a b/c", "..", ".",
           "a..b", "x" * 300, "x" * 256, "x" * 255, "a\x00b", "a\x01b", "tab\tx", "a\nb",
           "uni\u00e9", "\u200b", "a b", "a*b", "a>b", "ok-name"]


def test_names_answered_as_nats_server(real_nats_server: Any, tmp_path: Path) -> None:
    ref = real_nats_server(jetstream=True)
    with EmbeddedServer(jetstream=True, store_dir=str(tmp_path / "store")) as srv:
        answers: dict[str, dict[str, str]] = {}
        for label, url in (("nats-server", ref.client_url), ("edgebus", srv.client_url)):
            r = Requester(url)
            try:
                setup_streams(r)
                got: dict[str, str] = {}
                for name in HOSTILE:
                    for subject, cfg in consumer_cases(name):
                        got[f"{subject} {cfg!r}"] = run_consumer_case(r, subject, cfg)
                    for kind in ("mirror", "sources"):
                        spec: Any = {"name": name}
                        cfg = {"name": "D", "storage": "memory",
                               kind: spec if kind == "mirror" else [spec]}
                        if kind == "sources":
                            cfg["subjects"] = ["d.>"]
                        resp = r.request("$JS.API.STREAM.CREATE.D", cfg)
                        got[f"{kind} {name!r}"] = answer(resp)
                        if "error" not in resp:
                            r.request("$JS.API.STREAM.DELETE.D", b"")
                    if subject_safe(name):
                        resp = r.request(f"$JS.API.STREAM.CREATE.{name}",
                                         {"name": name, "subjects": ["n.>"], "storage": "file"})
                        got[f"stream {name!r}"] = answer(resp)
                        if "error" not in resp:
                            r.request(f"$JS.API.STREAM.DELETE.{name}", b"")
                answers[label] = got
            finally:
                r.close()
    diffs = {k: (v, answers["edgebus"].get(k)) for k, v in answers["nats-server"].items()
             if answers["edgebus"].get(k) != v}
    assert not diffs, "\n".join(f"{k}: nats-server {a!r}, edgebus {b!r}" for k, (a, b) in diffs.items())


def tree(root: Path, skip: Path) -> set[str]:
    """Every path below `root` except those inside `skip`."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        p = Path(dirpath)
        if p == skip or skip in p.parents:
            dirnames[:] = []
            continue
        out.update(str(p / n) for n in dirnames + filenames)
    return out


def test_consumer_names_never_reach_outside_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    rel = os.path.relpath(victim, store / "jetstream" / "$G" / "streams" / "S" / "obs")
    names = [str(victim), str(victim / "sub"), rel, rel + "/sub", "../" * 12 + "tmp",
             str(victim).replace("/", "\\"), "//" + str(victim)]
    with EmbeddedServer(jetstream=True, store_dir=str(store)) as srv:
        r = Requester(srv.client_url)
        try:
            setup_streams(r)
            before = tree(tmp_path, store)
            for name in names:
                for body in ({"name": name}, {"durable_name": name}):
                    resp = r.request("$JS.API.CONSUMER.CREATE.S", {"stream_name": "S", "config": body})
                    assert resp.get("error", {}).get("err_code") in (10127, 10020), (name, resp)
                if subject_safe(name):
                    resp = r.request(f"$JS.API.CONSUMER.CREATE.S.{name}",
                                     {"stream_name": "S", "config": {"durable_name": name}})
                    assert resp["error"]["err_code"] == 10127, (name, resp)
                    resp = r.request(f"$JS.API.CONSUMER.DELETE.S.{name}", b"")
                    assert resp["error"]["err_code"] == 10014, (name, resp)
            assert tree(tmp_path, store) == before
            assert (victim / "keep.txt").read_text() == "precious"
        finally:
            r.close()


def test_store_failure_answer_carries_no_path(tmp_path: Path) -> None:
    """A valid name the disk cannot hold is answered as nats-server answers it: no path, no
    Python exception text."""
    with EmbeddedServer(jetstream=True, store_dir=str(tmp_path / "store")) as srv:
        r = Requester(srv.client_url)
        try:
            setup_streams(r)
            for name in ("y" * 300, "nul\x00name"):
                resp = r.request("$JS.API.CONSUMER.CREATE.S", {"stream_name": "S", "config": {"name": name}})
                assert resp["error"] == {"code": 500, "err_code": 10012,
                                         "description": "error creating store for consumer"}
                # a memory stream has no store files: the same name is fine there
                resp = r.request("$JS.API.CONSUMER.CREATE.M", {"stream_name": "M", "config": {"name": name}})
                assert "error" not in resp, resp
        finally:
            r.close()


def test_consumer_recreated_right_after_delete_keeps_its_files(tmp_path: Path) -> None:
    """Delete and re-create under one name, back to back: the old directory's removal must not
    take the new consumer's files with it (it did: the removal ran later, in a thread)."""
    store = tmp_path / "store"
    with EmbeddedServer(jetstream=True, store_dir=str(store)) as srv:
        r = Requester(srv.client_url)
        try:
            setup_streams(r)
            obs = store / "jetstream" / "$G" / "streams" / "S" / "obs"
            for i in range(30):
                resp = r.request("$JS.API.CONSUMER.DURABLE.CREATE.S.dur",
                                 {"stream_name": "S", "config": {"durable_name": "dur",
                                                                 "description": str(i)}})
                assert "error" not in resp, (i, resp)
                assert r.request("$JS.API.CONSUMER.DELETE.S.dur", b"").get("success") is True
            resp = r.request("$JS.API.CONSUMER.DURABLE.CREATE.S.dur",
                             {"stream_name": "S", "config": {"durable_name": "dur"}})
            assert "error" not in resp, resp
            # flush the API worker, then let any pending removal run out
            r.request("$JS.API.INFO", b"")
            r.request("$JS.API.CONSUMER.INFO.S.dur", b"")
        finally:
            r.close()
    assert (obs / "dur" / "meta.inf").exists()


names_strategy = st.one_of(
    st.text(alphabet=st.sampled_from(list("ab/\\.*> \t\x00\x01\x7f\u00e9\u200b\U0001F600")), max_size=12),
    st.text(max_size=20),
    st.builds(lambda pre, n, post: pre + "x" * n + post,
              st.sampled_from(["", "/", "../", "./", "\\"]), st.integers(240, 300),
              st.sampled_from(["", "/", "/..", "\x00"])),
    st.builds(lambda parts: "/".join(parts), st.lists(st.sampled_from(["..", ".", "", "x", "tmp"]),
                                                      min_size=1, max_size=6)),
)


@pytest.fixture(scope="module")
def hostile_target(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("names")
    store = root / "store"
    victim = root / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    with EmbeddedServer(jetstream=True, store_dir=str(store)) as srv:
        r = Requester(srv.client_url)
        setup_streams(r)
        try:
            yield root, store, r, tree(root, store)
        finally:
            r.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names_strategy)
def test_property_any_name_gets_an_answer_and_stays_in_the_store(hostile_target: Any, name: str) -> None:
    root, store, r, before = hostile_target
    for subject, cfg in consumer_cases(name):
        got = run_consumer_case(r, subject, cfg)
        if got != "OK":
            code, _, desc = got.partition(":")
            assert NAME_ERRORS.get(int(code)) == desc, (name, subject, got)
        assert str(store) not in got and "Errno" not in got
    assert tree(root, store) == before
    assert (root / "victim" / "keep.txt").read_text() == "precious"
