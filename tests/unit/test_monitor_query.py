"""Monitoring query parsing as Go's net/url and strconv do it (the texts nats-server 2.15.1
answers were taken from the real binary; the differential test compares the rest live)."""

import pytest

from edgebus.transport import monitor_query as q


def test_query_string_as_go_parses_it():
    assert q.parse("a=1&a=2&b=%E2%82%AC&c=x+y&d=%ZZ&e=f;g&h=&=k") == {
        "a": ["1", "2"], "b": ["€"], "c": ["x y"], "h": [""], "": ["k"]}


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("+7", 7), ("-7", -7), ("9223372036854775807", 2**63 - 1),
    ("-9223372036854775808", -(2**63)), ("007", 7),
])
def test_atoi_accepts(text, value):
    assert q.atoi(text) == value


@pytest.mark.parametrize("text, why", [
    ("9223372036854775808", "value out of range"), ("-9223372036854775809", "value out of range"),
    ("99999999999999999999x", "value out of range"),  # Go reports the overflow first
    ("", "invalid syntax"), ("+", "invalid syntax"), ("1_000", "invalid syntax"),
    ("0x10", "invalid syntax"), (" 1", "invalid syntax"), ("1.5", "invalid syntax"),
])
def test_atoi_refuses_with_gos_text(text, why):
    with pytest.raises(ValueError) as e:
        q.atoi(text)
    assert str(e.value) == f"strconv.Atoi: parsing {q.go_quote(text)}: {why}"


def test_uint64_and_bool_errors():
    with pytest.raises(q.QueryError) as e:
        q.decode_uint64({"cid": ["18446744073709551616"]}, "cid")
    assert e.value.text == ("Error decoding uint64 for 'cid': strconv.ParseUint: parsing "
                            '"18446744073709551616": value out of range')
    assert q.decode_uint64({"cid": ["18446744073709551615"]}, "cid") == 2**64 - 1
    for yes in ("1", "t", "T", "TRUE", "true", "True"):
        assert q.decode_bool({"x": [yes]}, "x") is True
    with pytest.raises(q.QueryError) as e:
        q.decode_bool({"x": ["tRUE"]}, "x")
    assert e.value.text == ("Error decoding boolean for 'x': strconv.ParseBool: parsing "
                            '"tRUE": invalid syntax')


def test_go_quote():
    assert q.go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert q.go_quote("\x00\t\x7f€\u2028") == '"\\x00\\t\\x7f€\\u2028"'
    assert q.go_quote(b"\xff".decode("utf-8", "surrogateescape")) == '"\\xff"'
