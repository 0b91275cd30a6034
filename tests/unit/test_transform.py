"""Subject transforms / mappings: unit cases plus a differential run against nats-server.

The differential tests start the real ``nats-server`` (loopback only) with a
``mappings {}`` block, publish many subjects with nats-py and compare the
subjects the server delivers with ``Mappings.apply``; config errors are
compared with ``nats-server -t``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from typing import Any, Iterator

import pytest

from edgebus.core.transform import (
    MapDest,
    MappingError,
    Mappings,
    SubjectTransform,
    TransformError,
    fnv1a32,
    is_subset_match,
    validate_mapping,
)

from conftest import NATS_SERVER


def T(src: str, dest: str, **kw: Any) -> SubjectTransform:
    return SubjectTransform.compile(src, dest, **kw)


# ----------------------------------------------------------------- primitives


def test_fnv1a32_vectors() -> None:
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(b"foobar") == 0xBF9CF968


def test_subset_match() -> None:
    assert is_subset_match(["foo", "bar"], ["foo", "*"])
    assert is_subset_match(["foo", "bar", "baz"], ["foo", ">"])
    assert not is_subset_match(["foo"], ["foo", ">"])
    assert not is_subset_match(["foo", "bar"], ["foo"])
    # A literal '*' token only matches a '*' in the pattern; '>' never does.
    assert is_subset_match(["foo", "*"], ["foo", "*"])
    assert not is_subset_match(["foo", "*"], ["foo", "bar"])
    assert not is_subset_match(["foo", ">"], ["foo", "*"])
    assert is_subset_match(["foo", ">"], [">"])


# --------------------------------------------------------------- transforms


@pytest.mark.parametrize(
    ("src", "dest", "subject", "expected"),
    [
        ("foo", "bar", "foo", "bar"),
        ("foo.*", "bar.$1", "foo.x", "bar.x"),
        ("foo.*.*", "bar.$2.$1", "foo.a.b", "bar.b.a"),
        ("foo.*.*", "bar.{{wildcard(2)}}.{{ Wildcard( 1 ) }}", "foo.a.b", "bar.b.a"),
        ("foo.>", "bar.>", "foo.a.b.c", "bar.a.b.c"),
        ("foo.*.>", "bar.$1.baz.>", "foo.a.b.c", "bar.a.baz.b.c"),
        (">", "pre.>", "a.b", "pre.a.b"),
        ("", "pre.>", "a.b", "pre.a.b"),
        ("*.>", ">", "a.b.c", "b.c"),
        ("foo.*", "bar", "foo.x", "bar"),
        ("foo.*", "{{split(1,-)}}", "foo.a-b--c-", "a.b.c"),
        ("foo.*", "x.{{split(1,-)}}.y", "foo.-a", "x.a.y"),
        ("foo.*", "x.{{split(1,ab)}}", "foo.1ab2ab3", "x.1.2.3"),
        ("foo.*", "x.{{splitFromLeft(1,2)}}", "foo.abcde", "x.ab.cde"),
        ("foo.*", "x.{{splitFromLeft(1,5)}}", "foo.abcde", "x.abcde"),
        ("foo.*", "x.{{splitFromLeft(1,0)}}", "foo.abcde", "x.abcde"),
        ("foo.*", "x.{{SplitFromRight(1,2)}}", "foo.abcde", "x.abc.de"),
        ("foo.*", "x.{{sliceFromLeft(1,2)}}", "foo.abcde", "x.ab.cd.e"),
        ("foo.*", "x.{{sliceFromLeft(1,2)}}", "foo.abcd", "x.ab.cd"),
        ("foo.*", "x.{{sliceFromRight(1,2)}}", "foo.abcde", "x.a.bc.de"),
        ("foo.*", "x.{{sliceFromRight(1,2)}}", "foo.abcd", "x.ab.cd"),
        ("foo.*", "x.{{sliceFromRight(1,9)}}", "foo.abcd", "x.abcd"),
        ("foo.*", "x.{{left(1,2)}}", "foo.abcd", "x.ab"),
        ("foo.*", "x.{{right(1,3)}}", "foo.abcd", "x.bcd"),
        ("foo.*", "x.{{right(1,4)}}", "foo.abcd", "x.abcd"),
        # nats-server legacy quirk: $0 / wildcard(0) resolve to the first token.
        ("foo.*", "x.$0", "foo.abcd", "x.foo"),
    ],
)
def test_transform_cases(src: str, dest: str, subject: str, expected: str) -> None:
    assert T(src, dest).match(subject) == expected


def test_partition() -> None:
    tr = T("foo.*.*", "p.{{partition(10,1,2)}}.$1.$2")
    for a, b in [("a", "b"), ("hello", "world"), ("x", "")]:
        if not b:
            continue
        want = fnv1a32((a + b).encode()) % 10
        assert tr.match(f"foo.{a}.{b}") == f"p.{want}.{a}.{b}"
    # one-argument form hashes the whole subject joined by '.'
    tr = T("foo.>", "p.{{partition(7)}}.>")
    assert tr.match("foo.a.b") == f"p.{fnv1a32(b'foo.a.b') % 7}.a.b"
    # literal source with partition(n) is allowed
    assert T("lit", "p.{{partition(5)}}").match("lit") == f"p.{fnv1a32(b'lit') % 5}"
    # zero partitions -> "0" (the server guards the division)
    assert T("foo.*", "p.{{partition(0,1)}}").match("foo.a") == "p.0"


def test_partition_hashes_utf8_bytes() -> None:
    tr = T("k.*", "p.{{partition(1000,1)}}")
    assert tr.match("k.日本") == f"p.{fnv1a32('日本'.encode()) % 1000}"


def test_byte_semantics_for_string_functions() -> None:
    # Go slices bytes: 'é' is two bytes, so left(…, 2) of "éa" keeps just 'é'.
    assert T("k.*", "x.{{left(1,2)}}").match("k.éa") == "x.é"
    assert T("k.*", "x.{{splitFromLeft(1,2)}}").match("k.éab") == "x.é.ab"


def test_random_is_bounded_and_seedable() -> None:
    tr = T("foo.*", "r.{{random(3)}}.$1", rng=random.Random(1))
    seen = {tr.match("foo.x") for _ in range(200)}
    assert seen == {"r.0.x", "r.1.x", "r.2.x"}
    assert not tr.is_deterministic
    assert T("foo.*", "r.{{random(0)}}").match("foo.x") == "r.0"


def test_match_rejects_non_matching_and_non_literal() -> None:
    tr = T("foo.*", "bar.$1")
    assert tr.match("foo") is None
    assert tr.match("foo.a.b") is None
    assert tr.match("baz.a") is None
    assert tr.match("foo.*") is None
    assert tr.match("foo.>") is None
    assert tr.match("foo..") is None
    # the full-wildcard identity transform passes everything through
    assert T(">", ">").match("a.*") == "a.*"


def test_empty_dest_is_a_filter() -> None:
    tr = T("foo.*", "")
    assert tr.match("foo.a") == "foo.a"
    assert tr.match("bar.a") is None


@pytest.mark.parametrize(
    ("src", "dest", "message"),
    [
        ("foo.*", "bar.*", "invalid subject"),
        ("foo.>", "bar", "invalid subject"),
        ("foo", "bar.>", "invalid subject"),
        ("foo..bar", "baz", "invalid subject"),
        ("foo.*", "bar..baz", "invalid mapping destination: invalid transform"),
        ("foo.*", "bar.>.baz", "invalid mapping destination: invalid transform in baz"),
        ("foo.*", "bar.a b", "invalid mapping destination: invalid transform"),
        ("foo.*", "bar.$2", "invalid mapping destination: wildcard index out of range in $2: [2]"),
        (
            "foo.*",
            "bar.{{wildcard(2)}}",
            "invalid mapping destination: wildcard index out of range in {{wildcard(2)}}: [2]",
        ),
        ("foo.*", "bar.{{wildcard()}}", "invalid mapping destination: not enough arguments passed to the function in {{wildcard()}}"),
        ("foo.*", "bar.{{wildcard(1,2)}}", "invalid mapping destination: too many arguments passed to the function in {{wildcard(1,2)}}"),
        ("foo.*", "bar.{{wildcard(x)}}", "invalid mapping destination: function argument is invalid or in the wrong format in {{wildcard(x)}}"),
        ("foo.*", "bar.{{nope(1)}}", "invalid mapping destination: unknown function in {{nope(1)}}"),
        ("foo.*", "bar.{{partition(a,1)}}", "invalid mapping destination: function argument is invalid or in the wrong format in {{partition(a,1)}}"),
        ("foo.*", "bar.{{partition(3,x)}}", "invalid mapping destination: function argument is invalid or in the wrong format in {{partition(3,x)}}"),
        ("foo.*", "bar.{{split(1)}}", "invalid mapping destination: not enough arguments passed to the function in {{split(1)}}"),
        ("foo.*", "bar.{{split(1,a,b)}}", "invalid mapping destination: too many arguments passed to the function in {{split(1,a,b)}}"),
        ("foo.*", "bar.{{splitFromLeft(1)}}", "invalid mapping destination: not enough arguments passed to the function in {{splitFromLeft(1)}}"),
        ("foo.*", "bar.{{sliceFromRight(1,99999999999)}}", "invalid mapping destination: function argument is invalid or in the wrong format in {{sliceFromRight(1,99999999999)}}"),
        ("foo.*", "bar.{{random(1,2)}}", "invalid mapping destination: not enough arguments passed to the function in {{random(1,2)}}"),
        ("foo", "bar.{{wildcard(1)}}", "invalid mapping destination: wildcard index out of range in {{wildcard(1)}}"),
        ("foo", "bar.{{split(1,-)}}", "invalid mapping destination: wildcard index out of range in {{split(1,-)}}"),
    ],
)
def test_compile_errors(src: str, dest: str, message: str) -> None:
    with pytest.raises(TransformError) as exc:
        T(src, dest)
    assert str(exc.value) == message


def test_strict_mode() -> None:
    assert T("foo.*.*", "bar.$2.$1", strict=True).match("foo.a.b") == "bar.b.a"
    with pytest.raises(TransformError, match="only mapping function allowed for import"):
        T("foo.*", "bar.{{partition(3,1)}}", strict=True)
    with pytest.raises(TransformError, match="not using all of the token wildcard"):
        T("foo.*.*", "bar.$1", strict=True)


def test_reverse() -> None:
    tr = T("foo.*.bar.*", "baz.$2.$1")
    rev = tr.reverse()
    assert rev is not None
    out = tr.match("foo.a.bar.b")
    assert out == "baz.b.a"
    assert rev.match(out) == "foo.a.bar.b"


def test_validate_mapping_direct() -> None:
    validate_mapping("foo.*", "bar.$1")
    validate_mapping("foo.*", "")
    with pytest.raises(TransformError):
        validate_mapping("foo.*", "bar.{{bogus(1)}}")


# ----------------------------------------------------------------- mappings


def test_mappings_basic() -> None:
    m = Mappings({"foo": "bar", "a.*": "b.$1", "x.>": "y.>"})
    assert m.apply("foo") == "bar"
    assert m.apply("a.q") == "b.q"
    assert m.apply("x.1.2") == "y.1.2"
    assert m.apply("nomatch") is None
    assert m.apply("foo.bar") is None
    # not recursive
    assert Mappings({"a": "b", "b": "c"}).apply("a") == "b"
    assert len(m) == 3 and m.sources == ["foo", "a.*", "x.>"]


def test_mappings_empty_is_cheap() -> None:
    m = Mappings()
    assert not m and m.apply("foo") is None


def test_mappings_cache_is_bounded() -> None:
    m = Mappings({"a.*": "b.$1"}, cache_size=8)
    for i in range(100):
        assert m.apply(f"a.{i}") == f"b.{i}"
        assert m.apply(f"z.{i}") is None
    assert len(m._cache) <= 8


def test_mappings_add_remove_replace() -> None:
    m = Mappings()
    m.add_mapping("foo", "bar")
    assert m.apply("foo") == "bar"
    m.add_mapping("foo", "baz")  # replaces, cache invalidated
    assert m.apply("foo") == "baz" and len(m) == 1
    assert m.remove("foo") and not m.remove("foo")
    assert m.apply("foo") is None


def test_weighted_remainder_keeps_original() -> None:
    m = Mappings(
        {"w.*": [{"destination": "a.$1", "weight": "30%"}, {"destination": "b.$1", "weight": 20}]},
        rng=random.Random(7),
    )
    counts = collections.Counter(m.apply("w.x") for _ in range(4000))
    assert set(counts) == {"a.x", "b.x", "w.x"}
    assert abs(counts["a.x"] / 4000 - 0.30) < 0.04
    assert abs(counts["b.x"] / 4000 - 0.20) < 0.04
    assert abs(counts["w.x"] / 4000 - 0.50) < 0.04


def test_weighted_with_explicit_source_drops_rest() -> None:
    # Listing the source itself disables the auto-remainder: the gap maps to "" (dropped).
    m = Mappings(
        {"w": [{"destination": "a", "weight": 30}, {"destination": "w", "weight": 20}]},
        rng=random.Random(3),
    )
    counts = collections.Counter(m.apply("w") for _ in range(3000))
    assert set(counts) == {"a", "w", ""}
    assert abs(counts[""] / 3000 - 0.5) < 0.05


def test_cluster_scoped_destinations() -> None:
    cfg = {
        "c.*": [
            {"destination": "east.$1", "weight": 100, "cluster": "east"},
            {"destination": "main.$1", "weight": 100},
        ],
        "only.*": [{"destination": "east.$1", "weight": "100%", "cluster": "east"}],
    }
    assert Mappings(cfg).apply("c.x") == "main.x"
    assert Mappings(cfg, cluster="west").apply("c.x") == "main.x"
    assert Mappings(cfg, cluster="east").apply("c.x") == "east.x"
    # only cluster-scoped entries: ignored without that cluster (subject kept)
    assert Mappings(cfg).apply("only.x") == "only.x"
    assert Mappings(cfg, cluster="east").apply("only.x") == "east.x"


def test_from_jwt() -> None:
    m = Mappings.from_jwt({"foo.*": [{"subject": "bar.$1"}], "w": [{"subject": "x", "weight": 100}]})
    assert m.apply("foo.a") == "bar.a"
    assert m.apply("w") == "x"


def test_mapdest_api() -> None:
    m = Mappings()
    m.add("s.*", [MapDest("t.$1", 100)])
    assert m.apply("s.1") == "t.1"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"foo.*": "bar.{{wildcard(3)}}"}, 'Error adding mapping for "foo.*" to "bar.{{wildcard(3)}}" : invalid mapping destination: wildcard index out of range in {{wildcard(3)}}: [3]'),
        ({"foo": [{"destination": "a", "weight": "60%"}, {"destination": "b", "weight": "50%"}]}, 'Error adding mapping for "foo" : total weight needs to be <= 100'),
        ({"foo": [{"destination": "a"}]}, 'Missing weight for mapping destination "a"'),
        ({"foo": [{"destination": "a", "weight": "x%"}]}, 'Invalid weight "x" for mapping destination'),
        ({"foo": [{"destination": "a", "weight": 101}]}, "Invalid weight 101 for mapping destination"),
        ({"fo o": "x"}, 'Subject "fo o" is not a valid subject'),
        ({"foo": [{"destination": "a", "weight": 50, "bogus": 1}]}, 'Unknown field "bogus" for mapping destination'),
        ({"foo": [{"destination": "a", "weight": 50}, {"destination": "a", "weight": 10}]}, 'Error adding mapping for "foo" : duplicate entry for "a"'),
        ({"foo.*": "bar.{{split(1, a b)}}"}, 'Error adding mapping for "foo.*" to "bar.{{split(1, a b)}}" : invalid mapping destination: function argument is invalid or in the wrong format in {{split(1, a b)}}'),
        ({"foo.*": "bar.{{nope(1)}}"}, 'Error adding mapping for "foo.*" to "bar.{{nope(1)}}" : invalid mapping destination: unknown function in {{nope(1)}}'),
        ({"foo.*": "bar.*"}, 'Error adding mapping for "foo.*" to "bar.*" : invalid subject'),
        ({"foo.>": [{"destination": "bar", "weight": 100}]}, 'Error adding mapping for "foo.>" : invalid subject'),
    ],
)
def test_config_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError) as exc:
        Mappings(config)
    assert str(exc.value) == message


# ---------------------------------------------------- differential vs nats-server

needs_server = pytest.mark.skipif(NATS_SERVER is None, reason="nats-server binary not installed")


class _Server:
    """A throw-away nats-server on a loopback ephemeral port."""

    def __init__(self, config: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="eb-transform-")
        path = os.path.join(self.dir, "server.conf")
        with open(path, "w") as fh:
            fh.write(f'listen: "127.0.0.1:-1"\nports_file_dir: {json.dumps(self.dir)}\n{config}\n')
        self.proc = subprocess.Popen(
            [NATS_SERVER or "nats-server", "-c", path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            ports = [f for f in os.listdir(self.dir) if f.endswith(".ports")]
            if ports:
                try:
                    with open(os.path.join(self.dir, ports[0])) as fh:
                        self.url = json.load(fh)["nats"][0]
                    break
                except (ValueError, KeyError, IndexError):
                    pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("nats-server did not start")
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _server_mapped(url: str, subjects: list[str]) -> list[str]:
    import nats

    async def run() -> list[str]:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            sub = await nc.subscribe(">")
            await nc.flush()
            for s in subjects:
                await nc.publish(s, b"")
            await nc.flush()
            return [(await sub.next_msg(5)).subject for _ in subjects]
        finally:
            await nc.close()

    return asyncio.run(asyncio.wait_for(run(), 60))


@pytest.fixture
def mapped_server() -> Iterator[Any]:
    servers: list[_Server] = []

    def start(mappings: dict[str, Any]) -> str:
        srv = _Server(f"mappings: {json.dumps(mappings)}")
        servers.append(srv)
        return srv.url

    yield start
    for srv in servers:
        srv.close()


_DIFF_RULES: dict[str, Any] = {
    "part.*.*": "p.{{partition(10,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}",
    "part1.*": "p1.{{Partition(7, 1)}}.$1",
    "part21.*.*": "p21.{{partition(1000,2,1)}}",
    "partall.*.>": "pa.{{partition(5)}}.$1.>",
    "split.*": "s.{{split(1,-)}}.end",
    "sfl.*": "sfl.{{splitFromLeft(1,3)}}",
    "sfr.*": "sfr.{{SplitFromRight(1,3)}}",
    "slfl.*": "slfl.{{sliceFromLeft(1,2)}}",
    "slfr.*": "slfr.{{sliceFromRight(1,3)}}",
    "lr.*.*": "lr.{{left(1,2)}}.{{right(2,2)}}",
    "wc.*.*.>": "wc.$2.{{ wildcard(1) }}.>",
    "lit.a": "lit.b",
    "fwc.>": "fwcd.>",
    "cl.*": [{"destination": "cl1.$1", "weight": "100%", "cluster": "east"}],
}


def _random_token(rnd: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_-éü日本"
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 12)))


def _diff_subjects(seed: int, n: int) -> list[str]:
    rnd = random.Random(seed)
    prefixes = ["part", "part1", "part21", "partall", "split", "sfl", "sfr", "slfl", "slfr", "lr", "wc", "fwc", "cl", "other"]
    arity = {"part": 2, "part1": 1, "part21": 2, "partall": 2, "split": 1, "sfl": 1, "sfr": 1, "slfl": 1, "slfr": 1, "lr": 2, "wc": 3, "fwc": 2, "cl": 1, "other": 1}
    out = ["lit.a", "lit.c", "part.*.x", "nothing"]
    for _ in range(n):
        p = rnd.choice(prefixes)
        k = arity[p] + (rnd.randint(0, 2) if p in ("partall", "wc", "fwc") else 0)
        tokens = [_random_token(rnd) for _ in range(k)]
        if p in ("sfl", "sfr", "slfl", "slfr", "lr"):
            # keep byte-splitting functions on ASCII so nats-py can decode the result
            tokens = ["".join(c for c in t if c.isascii()) or "z" for t in tokens]
        out.append(".".join([p, *tokens]))
    return out


@needs_server
def test_differential_deterministic_mappings(mapped_server: Any) -> None:
    url = mapped_server(_DIFF_RULES)
    ours = Mappings(_DIFF_RULES)
    subjects = _diff_subjects(1234, 400)
    got = _server_mapped(url, subjects)
    expected = [(lambda r: s if r is None else r)(ours.apply(s)) for s in subjects]
    mismatches = [(s, g, e) for s, g, e in zip(subjects, got, expected) if g != e]
    assert not mismatches, mismatches[:10]


@needs_server
def test_differential_single_literal_partition(mapped_server: Any) -> None:
    # The server hashes "" here (no tokenization happened before the literal
    # rule matched); with other rules checked first it hashes the subject, but
    # nats-server's rule order is random, so only the single-rule case is compared.
    rules = {"lit": "p.{{partition(7)}}"}
    url = mapped_server(rules)
    assert _server_mapped(url, ["lit"]) == [Mappings(rules).apply("lit")] == [f"p.{fnv1a32(b'') % 7}"]
    two = Mappings({"other": "x", "lit": "p.{{partition(7)}}"})
    assert two.apply("lit") == f"p.{fnv1a32(b'lit') % 7}"


@needs_server
def test_differential_weighted_and_random(mapped_server: Any) -> None:
    rules = {
        "wt.*": [{"destination": "a.$1", "weight": "30%"}, {"destination": "b.$1", "weight": "20%"}],
        "rnd.*": "r.{{random(3)}}.$1",
    }
    url = mapped_server(rules)
    subjects = ["wt.x"] * 600 + ["rnd.y"] * 60
    got = collections.Counter(_server_mapped(url, subjects))
    ours = Mappings(rules, rng=random.Random(5))
    mine = collections.Counter(ours.apply(s) for s in subjects)
    assert set(got) == set(mine) == {"a.x", "b.x", "wt.x", "r.0.y", "r.1.y", "r.2.y"}
    for key, share in (("a.x", 0.3), ("b.x", 0.2), ("wt.x", 0.5)):
        assert abs(got[key] / 600 - share) < 0.08
        assert abs(mine[key] / 600 - share) < 0.08


_ERROR_CASES = [
    {"foo.*": "bar.{{wildcard(3)}}"},
    {"foo": [{"destination": "a", "weight": "60%"}, {"destination": "b", "weight": "50%"}]},
    {"foo": [{"destination": "a", "weight": "x%"}]},
    {"foo": [{"destination": "a", "weight": 101}]},
    {"foo": [{"destination": "a", "weight": 50}, {"destination": "a", "weight": 10}]},
    {"foo.*": "bar.{{split(1, a b)}}"},
    {"foo.*": "bar.{{partition(a,1)}}"},
    {"foo.*": "bar.{{nope(1)}}"},
    {"foo.*": "bar.{{wildcard()}}"},
    {"foo.*": "bar.{{random(1,2)}}"},
    {"foo": "bar.{{wildcard(1)}}"},
    {"foo.*": "bar.*"},
    {"foo.*": "bar..baz"},
]


@needs_server
@pytest.mark.parametrize("config", _ERROR_CASES, ids=[json.dumps(c) for c in _ERROR_CASES])
def test_differential_config_errors(config: dict[str, Any], tmp_path: Any) -> None:
    path = tmp_path / "c.conf"
    path.write_text(f'listen: "127.0.0.1:-1"\nmappings: {json.dumps(config)}\n')
    res = subprocess.run([NATS_SERVER or "nats-server", "-t", "-c", str(path)], capture_output=True, text=True, timeout=30)
    output = (res.stdout + res.stderr).strip()
    assert res.returncode != 0, output
    # "nats-server: <file>:<line>:<col>: <message>"
    server_msg = output.splitlines()[-1].split(": ", 2)[-1] if ".conf:" in output else output
    with pytest.raises(MappingError) as exc:
        Mappings(config)
    assert str(exc.value) == server_msg.strip()


@needs_server
def test_differential_valid_configs_accepted(tmp_path: Any) -> None:
    path = tmp_path / "c.conf"
    path.write_text(f'listen: "127.0.0.1:-1"\nmappings: {json.dumps(_DIFF_RULES)}\n')
    res = subprocess.run([NATS_SERVER or "nats-server", "-t", "-c", str(path)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    Mappings(_DIFF_RULES)


@needs_server
def test_differential_stream_subject_transform() -> None:
    """Stream ingest transforms use ``SubjectTransform.match`` (non-matching subjects stay)."""
    import nats
    from nats.js.api import StreamConfig
    from nats.js.api import SubjectTransform as JsTransform

    src, dest = "in.*.*.>", "out.{{partition(4,1,2)}}.{{splitFromLeft(2,2)}}.$1.>"
    store = tempfile.mkdtemp(prefix="eb-js-")
    srv = _Server(f"jetstream {{ store_dir: {json.dumps(store)} }}")
    rnd = random.Random(99)
    subjects = [f"in.{_random_token(rnd)}.{''.join(c for c in _random_token(rnd) if c.isascii()) or 'q'}.{i}"
                for i in range(60)] + ["in.short", "in.a.b"]

    async def run() -> list[str]:
        nc = await nats.connect(srv.url, allow_reconnect=False)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="T", subjects=["in.>"],
                                             subject_transform=JsTransform(src=src, dest=dest)))
            for s in subjects:
                await js.publish(s, b"")
            return [(await js.get_msg("T", seq)).subject for seq in range(1, len(subjects) + 1)]
        finally:
            await nc.close()

    try:
        stored = asyncio.run(asyncio.wait_for(run(), 60))
    finally:
        srv.close()
        shutil.rmtree(store, ignore_errors=True)
    tr = SubjectTransform.compile(src, dest)
    expected = [(lambda r: s if r is None else r)(tr.match(s)) for s in subjects]
    assert stored == expected


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_slices_rejoin_to_token(size: int) -> None:
    rnd = random.Random(size)
    for _ in range(200):
        token = "".join(rnd.choice("abcdefgh") for _ in range(rnd.randint(1, 20)))
        for fn in ("sliceFromLeft", "sliceFromRight", "splitFromLeft", "splitFromRight"):
            out = T("k.*", f"{{{{{fn}(1,{size})}}}}").match(f"k.{token}")
            assert out is not None and out.replace(".", "") == token
            pieces = out.split(".")
            assert all(pieces)
            if fn == "sliceFromLeft":
                assert all(len(p) == size for p in pieces[:-1])
            if fn == "sliceFromRight":
                assert all(len(p) == size for p in pieces[1:])
