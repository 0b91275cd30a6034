"""Parsing config text into values: every syntax form, sizes, variables, includes, JSON."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.conf import ConfigError, ConfigList, ConfigMap, parse_file, parse_string


def parse(text: str, **env: str) -> dict:
    return parse_string(text, filename="t.conf", env=env)


# -- assignment and structure -------------------------------------------------------------


@pytest.mark.parametrize("line", ["port: 4222", "port = 4222", "port 4222", "port:4222", "port=4222"])
def test_assignment_forms(line: str) -> None:
    assert parse(line) == {"port": 4222}


def test_semicolons_and_commas_end_values() -> None:
    assert parse("a: 1; b: 2, c: 3\n") == {"a": 1, "b": 2, "c": 3}


def test_quoted_keys() -> None:
    assert parse('"my key": 1\n\'other key\' = 2\n') == {"my key": 1, "other key": 2}


def test_keys_keep_case_and_duplicates_replace() -> None:
    assert parse("Port: 1\nport: 2\nport: 3\n") == {"Port": 1, "port": 3}


@pytest.mark.parametrize(
    "text",
    [
        "jetstream { store_dir: /data, domain: hub }",
        "jetstream {\n  store_dir: /data\n  domain: hub\n}",
        "jetstream\n{\n  store_dir: /data\n  domain: hub\n}",
        "jetstream: {store_dir: /data; domain: hub}",
        "jetstream = {\n store_dir = /data\n domain = hub\n}",
        "jetstream {\n store_dir:\n   /data\n domain hub\n}",
    ],
)
def test_map_forms(text: str) -> None:
    assert parse(text) == {"jetstream": {"store_dir": "/data", "domain": "hub"}}


@pytest.mark.parametrize(
    "text",
    [
        "l: [a, b, c]",
        "l [a, b, c]",
        "l: [\n  a\n  b\n  c\n]",
        "l: [\n  a,\n  b,\n  c,\n]",
        "l\n[\n a, b\n c\n]",
        "l = [ a # one\n b // two\n c ]",
    ],
)
def test_array_forms(text: str) -> None:
    assert parse(text) == {"l": ["a", "b", "c"]}


def test_nested_and_mixed() -> None:
    text = """
    users = [
      {user: alice, password: "s3cr3t", permissions: {publish: ["a.>", "b"], subscribe: ">"}}
      {user: bob, nums: [1, 2.5, true, "x" ], empty: {}, none: []}
    ]
    """
    assert parse(text) == {
        "users": [
            {
                "user": "alice",
                "password": "s3cr3t",
                "permissions": {"publish": ["a.>", "b"], "subscribe": ">"},
            },
            {"user": "bob", "nums": [1, 2.5, True, "x"], "empty": {}, "none": []},
        ]
    }


def test_result_types_keep_positions() -> None:
    d = parse_string("a: 1\nm {\n  b: [x,\n  y]\n}\n", filename="p.conf")
    assert isinstance(d, ConfigMap) and isinstance(d["m"], ConfigMap)
    assert isinstance(d["m"]["b"], ConfigList)
    assert str(d.position_of("a")) == "p.conf:1:1"
    assert str(d.position_of("m")) == "p.conf:2:1"
    assert str(d["m"].position_of("b")) == "p.conf:3:3"
    assert str(d["m"]["b"].position_of(1)) == "p.conf:4:3"


# -- scalars ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,value",
    [
        ("1", 1),
        ("-1", -1),
        ("0", 0),
        ("1k", 1000),
        ("1K", 1000),
        ("1kb", 1024),
        ("1KB", 1024),
        ("1Ki", 1024),
        ("1KiB", 1024),
        ("10KB", 10240),
        ("64MB", 64 * 1024 * 1024),
        ("8mb", 8 * 1024 * 1024),
        ("2m", 2_000_000),
        ("1G", 1_000_000_000),
        ("1Gb", 1024**3),
        ("1GB", 1024**3),
        ("1GiB", 1024**3),
        ("2T", 2 * 10**12),
        ("2TB", 2 * 1024**4),
        ("1P", 10**15),
        ("1PB", 1024**5),
        ("1E", 10**18),
        ("-2k", -2000),
        ("1.5", 1.5),
        ("-0.5", -0.5),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("No", False),
        ("OFF", False),
        ('"true"', "true"),
        ("enabled", "enabled"),
        ("disabled", "disabled"),
        ('"100ms"', "100ms"),
        ("10s", "10s"),
        ("1h30m", "1h30m"),
        ("127.0.0.1:4222", "127.0.0.1:4222"),
        ("0.0.0.0", "0.0.0.0"),
        ("nats://user:pw@host:4222", "nats://user:pw@host:4222"),
        ('"[::1]:4222"', "[::1]:4222"),
        ("ünïcødé-名前", "ünïcødé-名前"),
        ('"emoji 🚀"', "emoji 🚀"),
        ("'C:\\path\\x'", "C:\\path\\x"),
        ('"a\\nb"', "a\nb"),
        ("$2a$11$abcdefghijk", "$2a$11$abcdefghijk"),
    ],
)
def test_scalar_values(text: str, value: object) -> None:
    got = parse(f"v: {text}\n")["v"]
    assert got == value and type(got) is type(value)


def test_datetime() -> None:
    assert parse("d: 2023-02-03T04:05:06Z")["d"] == datetime(2023, 2, 3, 4, 5, 6, tzinfo=timezone.utc)


def test_invalid_datetime_value() -> None:
    with pytest.raises(ConfigError, match="expected Zulu formatted DateTime"):
        parse("d: 2023-13-03T04:05:06Z")


def test_integer_out_of_range() -> None:
    with pytest.raises(ConfigError, match="out of the range"):
        parse("n: 99999999999999999999")


def test_block_string_for_pem() -> None:
    text = "cert: (\n-----BEGIN X-----\nabc\n-----END X-----\n)\nport: 1\n"
    assert parse(text) == {"cert": "\n-----BEGIN X-----\nabc\n-----END X-----\n", "port": 1}


# -- JSON -------------------------------------------------------------------------------


def test_json_files(tmp_path: Path) -> None:
    doc = {"port": 4567, "server_name": "js", "jetstream": {"max_mem": 1024, "store_dir": "/x"}}
    f = tmp_path / "c.json"
    f.write_text(json.dumps(doc, indent=2))
    assert parse_file(f) == doc
    f.write_text(json.dumps(doc))
    assert parse_file(f) == doc


def test_json_array_of_strings() -> None:
    assert parse('{"tags": ["a", "b"], "flag": false}') == {"tags": ["a", "b"], "flag": False}


# -- variables --------------------------------------------------------------------------


def test_variable_from_earlier_key() -> None:
    d = parse("TOKEN: abc\nauthorization { token: $TOKEN }\n")
    assert d["authorization"] == {"token": "abc"}
    assert d.is_used_variable("TOKEN")


def test_variable_block_scoping() -> None:
    text = """
    X: outer
    a {
      X: inner
      v: $X
      b { v: $X }
    }
    c { v: $X }
    """
    d = parse(text)
    assert d["a"]["v"] == "inner"
    assert d["a"]["b"]["v"] == "inner"
    assert d["c"]["v"] == "outer"
    assert d["a"].is_used_variable("X")


def test_variable_inside_block_is_not_visible_outside() -> None:
    with pytest.raises(ConfigError, match="variable reference for 'PERM' on line 2 can not be found"):
        parse("authorization { PERM: {publish: a} }\nx: $PERM\n")


def test_variable_must_be_defined_before_use() -> None:
    with pytest.raises(ConfigError, match="can not be found"):
        parse("a: $B\nB: 1\n")


def test_variable_holding_a_map() -> None:
    text = """
    authorization {
      PERM { publish: "req.>", subscribe: "_INBOX.>" }
      users: [ { user: a, password: b, permission: $PERM } ]
    }
    """
    auth = parse(text)["authorization"]
    assert auth["users"][0]["permission"] == {"publish": "req.>", "subscribe": "_INBOX.>"}
    assert auth.is_used_variable("PERM")


def test_variable_in_array() -> None:
    assert parse("A: 1\nl: [$A, 2 ]\n")["l"] == [1, 2]


def test_environment_variables_are_parsed_as_values() -> None:
    d = parse("port: $PORT\nname: $NAME\nsize: $SIZE\nflag: $FLAG\n", PORT="8222", NAME="edge-1", SIZE="1MB", FLAG="true")
    assert d == {"port": 8222, "name": "edge-1", "size": 1024 * 1024, "flag": True}


def test_config_keys_shadow_environment() -> None:
    assert parse("PORT: 1\nport: $PORT\n", PORT="2")["port"] == 1


def test_environment_chains_and_cycles() -> None:
    assert parse("v: $A\n", A="$B", B="deep")["v"] == "deep"
    with pytest.raises(ConfigError, match="variable reference cycle for 'A'"):
        parse("v: $A\n", A="$B", B="$A")


def test_variables_are_not_expanded_in_quotes() -> None:
    assert parse('A: 1\nv: "$A"\n')["v"] == "$A"


def test_unknown_variable_error_has_location() -> None:
    with pytest.raises(ConfigError) as info:
        parse_string("a: 1\n  b: $MISSING\n", filename="vars.conf", env={})
    assert str(info.value).startswith("vars.conf:2:6: Parse error: ")
    assert "variable reference for 'MISSING' on line 2 can not be found" in str(info.value)


# -- includes ---------------------------------------------------------------------------


def test_include_relative_to_including_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "main.conf").write_text(
        "port: 1\nauthorization {\n  include auth.conf\n}\ninclude '../top.conf'\n"
    )
    # auth.conf lives in sub/, so its ../more.conf is tmp_path/more.conf
    (tmp_path / "sub" / "auth.conf").write_text("user: a\npassword: b\ninclude ../more.conf\n")
    (tmp_path / "more.conf").write_text("timeout: 3\n")
    (tmp_path / "top.conf").write_text("server_name: inc\n")
    d = parse_file(tmp_path / "sub" / "main.conf")
    assert d == {
        "port": 1,
        "authorization": {"user": "a", "password": "b", "timeout": 3},
        "server_name": "inc",
    }
    # positions of included keys point into the included file
    assert d.position_of("server_name").file.endswith("top.conf")


def test_included_keys_become_variables(tmp_path: Path) -> None:
    (tmp_path / "vars.conf").write_text("SECRET: hunter2\n")
    (tmp_path / "main.conf").write_text("include vars.conf\nauthorization { token: $SECRET }\n")
    assert parse_file(tmp_path / "main.conf")["authorization"] == {"token": "hunter2"}


def test_included_file_has_its_own_scope(tmp_path: Path) -> None:
    (tmp_path / "inc.conf").write_text("v: $OUTER\n")
    (tmp_path / "main.conf").write_text("OUTER: 1\ninclude inc.conf\n")
    with pytest.raises(ConfigError, match="OUTER"):
        parse_file(tmp_path / "main.conf", env={})


def test_missing_include(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("port: 1\ninclude ./nope.conf\n")
    with pytest.raises(ConfigError) as info:
        parse_file(tmp_path / "main.conf")
    msg = str(info.value)
    assert "Parse error" in msg and "main.conf:2:9" in msg
    assert "error parsing include file './nope.conf'" in msg
    assert "no such file or directory" in msg


def test_error_inside_include_names_both_files(tmp_path: Path) -> None:
    (tmp_path / "bad.conf").write_text("a: 1\nb: \"open\n")
    (tmp_path / "main.conf").write_text("include bad.conf\n")
    with pytest.raises(ConfigError) as info:
        parse_file(tmp_path / "main.conf")
    msg = str(info.value)
    assert "main.conf:1:9" in msg and "bad.conf:3:1" in msg and "Unexpected EOF" in msg


def test_include_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("include b.conf\n")
    (tmp_path / "b.conf").write_text("include a.conf\n")
    with pytest.raises(ConfigError, match="include cycle"):
        parse_file(tmp_path / "a.conf")


def test_absolute_include_is_joined_like_go(tmp_path: Path) -> None:
    # nats-server joins even absolute include paths onto the including file's directory
    (tmp_path / "x.conf").write_text("a: 1\n")
    (tmp_path / "main.conf").write_text(f"include {tmp_path}/x.conf\n")
    with pytest.raises(ConfigError, match="no such file or directory"):
        parse_file(tmp_path / "main.conf")


def test_parse_string_base_dir(tmp_path: Path) -> None:
    (tmp_path / "x.conf").write_text("a: 1\n")
    assert parse_string("include x.conf", base_dir=str(tmp_path)) == {"a": 1}


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such file or directory"):
        parse_file("/nonexistent/edgebus.conf")


# -- structural errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,message,line",
    [
        ("port: 4222\nfoo\n", "config is invalid", 3),
        ("port\n", "config is invalid", 2),
        ("m { a: 1, b }\n", "missing value for key 'b'", 1),
    ],
)
def test_structural_errors(text: str, message: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_string(text, filename="s.conf")
    assert message in str(info.value) and info.value.line == line
    assert "Parse error" in str(info.value)


def test_trailing_brace_key_is_tolerated() -> None:
    assert parse("port: 1\n}\n") == {"port": 1}


def test_empty_and_comment_only() -> None:
    assert parse("") == {}
    assert parse("# nothing\n// here\n\n") == {}


# -- round trip property ------------------------------------------------------------------

_keys = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda k: k not in ("true", "false", "yes", "no", "on", "off", "include")
)
_scalars = st.one_of(
    st.integers(min_value=-(2**62), max_value=2**62),
    st.booleans(),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'),
        max_size=20,
    ),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)
    ),
    max_leaves=12,
)


def _render(v: object, indent: str = "") -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        # a space before "]" keeps a trailing number a number (nats-server quirk)
        return "[" + ", ".join(_render(x, indent) for x in v) + " ]"
    assert isinstance(v, dict)
    inner = indent + "  "
    body = "".join(f"{inner}{k}: {_render(x, inner)}\n" for k, x in v.items())
    return "{\n" + body + indent + "}"


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_round_trip(doc: dict) -> None:
    text = "".join(f"{k} = {_render(v)}\n" for k, v in doc.items())
    assert parse_string(text, env={}) == doc
