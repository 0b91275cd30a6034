"""Token-level behaviour of the config lexer, including nats-server's quirks."""

from __future__ import annotations

import pytest

from edgebus.conf import ConfigError
from edgebus.conf.lexer import Kind, tokenize


def kinds(text: str) -> list[tuple[Kind, str]]:
    return [(t.kind, t.value) for t in tokenize(text) if t.kind is not Kind.EOF]


def scalar(text: str) -> tuple[Kind, str]:
    toks = kinds(f"k: {text}\n")
    assert toks[0] == (Kind.KEY, "k")
    assert len(toks) == 2, toks
    return toks[1]


@pytest.mark.parametrize("sep", [": ", " = ", " ", ":", "=", "\t", " : "])
def test_key_separators(sep: str) -> None:
    assert kinds(f"port{sep}4222") == [(Kind.KEY, "port"), (Kind.INTEGER, "4222")]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("4222", (Kind.INTEGER, "4222")),
        ("-1", (Kind.INTEGER, "-1")),
        ("64MB", (Kind.INTEGER, "64MB")),
        ("1Gb", (Kind.INTEGER, "1Gb")),
        ("1G", (Kind.INTEGER, "1G")),
        ("10KiB", (Kind.INTEGER, "10KiB")),
        ("2m", (Kind.INTEGER, "2m")),
        ("-2k", (Kind.INTEGER, "-2k")),
        ("1.5", (Kind.FLOAT, "1.5")),
        ("-0.25", (Kind.FLOAT, "-0.25")),
        ("127.0.0.1", (Kind.STRING, "127.0.0.1")),
        ("127.0.0.1:4222", (Kind.STRING, "127.0.0.1:4222")),
        ("10s", (Kind.STRING, "10s")),
        ("100ms", (Kind.STRING, "100ms")),
        ("1h30m", (Kind.STRING, "1h30m")),
        ("3secret", (Kind.STRING, "3secret")),
        ("nats://host:4222", (Kind.STRING, "nats://host:4222")),
        ("héllo→wörld", (Kind.STRING, "héllo→wörld")),
        ("true", (Kind.BOOL, "true")),
        ("FALSE", (Kind.BOOL, "FALSE")),
        ("Yes", (Kind.BOOL, "Yes")),
        ("no", (Kind.BOOL, "no")),
        ("on", (Kind.BOOL, "on")),
        ("off", (Kind.BOOL, "off")),
        ("enabled", (Kind.STRING, "enabled")),
        ("$VAR", (Kind.VARIABLE, "VAR")),
        ('"quoted # not a comment"', (Kind.STRING, "quoted # not a comment")),
        ("'single \\n raw'", (Kind.STRING, "single \\n raw")),
        ('"tab\\there"', (Kind.STRING, "tab\there")),
        ('"q\\"uote\\\\"', (Kind.STRING, 'q"uote\\')),
        ('"\\x41\\x42"', (Kind.STRING, "AB")),
        ('"\\xe2\\x82\\xac"', (Kind.STRING, "€")),
        ('"true"', (Kind.STRING, "true")),
        ("bare\\tesc", (Kind.STRING, "bare\tesc")),
        ("2021-06-01T10:20:30Z", (Kind.DATETIME, "2021-06-01T10:20:30Z")),
        ("a#b", (Kind.STRING, "a#b")),
    ],
)
def test_scalars(text: str, expected: tuple[Kind, str]) -> None:
    assert scalar(text) == expected


def test_comments_everywhere() -> None:
    text = """
    # hash comment
    // slash comment
    a: 1 # trailing
    b: 2 // trailing
    m {  # after brace
      c: 3  // in map
      # own line
    }
    l [ # after bracket
      1 # in array
      // own line
      2
    ]
    """
    assert kinds(text) == [
        (Kind.KEY, "a"),
        (Kind.INTEGER, "1"),
        (Kind.KEY, "b"),
        (Kind.INTEGER, "2"),
        (Kind.KEY, "m"),
        (Kind.MAP_START, "{"),
        (Kind.KEY, "c"),
        (Kind.INTEGER, "3"),
        (Kind.MAP_END, "}"),
        (Kind.KEY, "l"),
        (Kind.ARRAY_START, "["),
        (Kind.INTEGER, "1"),
        (Kind.INTEGER, "2"),
        (Kind.ARRAY_END, "]"),
    ]


def test_positions_are_one_based() -> None:
    toks = tokenize("a: 1\n  bb = 'x'\n")
    assert [(t.value, t.line, t.col) for t in toks[:4]] == [
        ("a", 1, 1),
        ("1", 1, 4),
        ("bb", 2, 3),
        ("x", 2, 8),
    ]


def test_block_string_keeps_lines() -> None:
    toks = kinds("pem: (\nline one\n  line two\n)\nnext: 1\n")
    assert toks[1] == (Kind.STRING, "\nline one\n  line two\n")
    assert toks[2:] == [(Kind.KEY, "next"), (Kind.INTEGER, "1")]


def test_block_string_ignores_inner_parens() -> None:
    toks = kinds("b: (\nf(x) )\n  )\n)\n")
    assert toks[1] == (Kind.STRING, "\nf(x) )\n  )\n")


def test_include_tokens() -> None:
    assert kinds("include ./a.conf\ninclude 'b.conf'\nINCLUDE \"c d.conf\"\n") == [
        (Kind.INCLUDE, "./a.conf"),
        (Kind.INCLUDE, "b.conf"),
        (Kind.INCLUDE, "c d.conf"),
    ]


def test_include_is_only_a_keyword_before_a_space() -> None:
    assert kinds("include: 1") == [(Kind.KEY, "include"), (Kind.INTEGER, "1")]


def test_json_document() -> None:
    assert kinds('{"port": 4567, "list": ["a", "b"], "m": {"x": true}}') == [
        (Kind.KEY, "port"),
        (Kind.INTEGER, "4567"),
        (Kind.KEY, "list"),
        (Kind.ARRAY_START, "["),
        (Kind.STRING, "a"),
        (Kind.STRING, "b"),
        (Kind.ARRAY_END, "]"),
        (Kind.KEY, "m"),
        (Kind.MAP_START, "{"),
        (Kind.KEY, "x"),
        (Kind.BOOL, "true"),
        (Kind.MAP_END, "}"),
    ]


def test_number_touching_bracket_becomes_text() -> None:
    # nats-server reads "2]" as a bare string here, so the array never closes
    with pytest.raises(ConfigError):
        tokenize("a: [1,2]\n")
    assert kinds("a: [1, 2 ]") == [
        (Kind.KEY, "a"),
        (Kind.ARRAY_START, "["),
        (Kind.INTEGER, "1"),
        (Kind.INTEGER, "2"),
        (Kind.ARRAY_END, "]"),
    ]
    # strings end at "]" just fine
    assert kinds("a: [x,y]")[2:4] == [(Kind.STRING, "x"), (Kind.STRING, "y")]


def test_crlf_line_endings() -> None:
    assert kinds("a: 1\r\nb: two\r\n") == [
        (Kind.KEY, "a"),
        (Kind.INTEGER, "1"),
        (Kind.KEY, "b"),
        (Kind.STRING, "two"),
    ]


@pytest.mark.parametrize(
    "text,message,line",
    [
        ('a: "open\n', "Unexpected EOF.", 2),
        ("a: 'open\n", "Unexpected EOF.", 2),
        ('a: "bad \\q"', "Invalid escape character 'q'", 1),
        ('a: "\\xZZ"', "Expected two hexadecimal digits after '\\x', but got 'ZZ'", 1),
        ("a:\n 1\n", "Expected value but found new line", 1),
        ("a: .5", "Floats must start with a digit", 1),
        ("a: 1.x", "Floats must have a digit after the '.'", 1),
        ("a: -x", "Expected a digit but got 'x'", 1),
        ("a: 12-3", "All ISO8601 dates must be in full Zulu form.", 1),
        ("a: 2021-01-01X", "Expected 'T' in ISO8601 datetime", 1),
        ("a: 1 2\n", "Expected a top-level value to end with a new line", 1),
        ("=a: 1", "Unexpected key separator '='", 1),
        ("m { a: 1 b }", 'Expected a map value terminator "," or a map terminator "}"', 1),
        ("m {\n a: 1\n", "Unexpected EOF processing map", 3),
        ("l [1 2]", 'Expected an array value terminator "," or an array terminator "]"', 1),
        ("l [,1]", "Unexpected array value terminator ','.", 1),
        ("b: (\nno end\n", "Unexpected EOF processing block.", 3),
        ("include [x]", "Expected include value but found start of an array", 1),
        ("include 5", "Expected include value but found start of a number", 1),
        ("include 'x", "Unexpected EOF in quoted include", 1),
        ("m { a: 1, ]", "Unexpected array end ']' processing map.", 1),
    ],
)
def test_lexical_errors(text: str, message: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        tokenize(text, "bad.conf")
    err = info.value
    assert message in str(err)
    assert "Parse error" in str(err)
    assert err.file == "bad.conf" and err.line == line
    assert str(err).startswith(f"bad.conf:{line}:")
