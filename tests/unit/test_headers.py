"""NATS/1.0 header blocks (ADR-4): lookups as nats-server does them (key right after CRLF,
case-sensitive, first occurrence wins), status lines, building and editing blocks — and what
the server puts on the wire for them (checked against a real server in test_core_natspy)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgebus.codec.headers import (EMPTY_HEADERS, build_headers, get_header, get_header_str,
                                   parse_headers, remove_header, set_header)

BLOCK = (b"NATS/1.0\r\n"
         b"Nats-Msg-Id: abc\r\n"
         b"X-Multi: one\r\n"
         b"X-Multi: two\r\n"
         b"x-multi: lower\r\n"
         b"Spaced:    v  w\r\n"
         b"Empty:\r\n"
         b"\r\n")


def test_lookup_rules():
    assert get_header(BLOCK, "Nats-Msg-Id") == b"abc"
    assert get_header(BLOCK, b"Nats-Msg-Id") == b"abc"
    assert get_header(BLOCK, "X-Multi") == b"one"  # first occurrence wins
    assert get_header(BLOCK, "x-multi") == b"lower"  # case-sensitive
    assert get_header(BLOCK, "Spaced") == b"v  w"  # leading spaces skipped
    assert get_header(BLOCK, "Empty") == b""
    assert get_header(BLOCK, "Missing") is None
    assert get_header(None, "X") is None and get_header(b"", "X") is None
    assert get_header_str(BLOCK, "Nats-Msg-Id") == "abc"
    assert get_header_str(BLOCK, "Missing") is None


def test_key_must_start_a_line_and_end_at_colon():
    hdr = b"NATS/1.0\r\nXNats-Msg-Id: no\r\nNats-Msg-Id-2: no\r\nNats-Msg-Id: yes\r\n\r\n"
    assert get_header(hdr, "Nats-Msg-Id") == b"yes"
    # a key mentioned inside a value is not a key
    hdr = b"NATS/1.0\r\nA: Nats-Msg-Id: fake\r\n\r\n"
    assert get_header(hdr, "Nats-Msg-Id") is None
    # the version line is not a header
    assert get_header(b"NATS/1.0\r\n\r\n", "NATS/1.0") is None


def test_status_lines():
    assert parse_headers(b"NATS/1.0 503\r\n\r\n") == (503, "", [])
    assert parse_headers(b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n") == \
        (408, "Request Timeout", [("Nats-Pending-Messages", "1")])
    assert parse_headers(b"NATS/1.0 100 Idle Heartbeat\r\n\r\n")[:2] == (100, "Idle Heartbeat")
    assert parse_headers(b"NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n") == (None, "", [("A", "1"), ("A", "2")])
    assert parse_headers(None) == (None, "", [])


def test_build_headers():
    assert build_headers() == EMPTY_HEADERS == b"NATS/1.0\r\n\r\n"
    assert len(EMPTY_HEADERS) == 12
    assert build_headers(status=503) == b"NATS/1.0 503\r\n\r\n"
    assert build_headers({"A": "1"}, status=404, description="No Messages") == \
        b"NATS/1.0 404 No Messages\r\nA: 1\r\n\r\n"
    assert build_headers([("A", "1"), ("A", "2")]) == b"NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n"


def test_edit_headers():
    hdr = build_headers([("A", "1"), ("B", "2"), ("A", "3")])
    assert remove_header(hdr, "A") == b"NATS/1.0\r\nB: 2\r\n\r\n"
    assert remove_header(b"NATS/1.0\r\nA: 1\r\n\r\n", "A") is None
    assert remove_header(None, "A") is None
    assert set_header(hdr, "A", "x") == b"NATS/1.0\r\nB: 2\r\nA: x\r\n\r\n"
    assert set_header(None, "K", "v") == b"NATS/1.0\r\nK: v\r\n\r\n"
    assert set_header(b"NATS/1.0 503\r\n\r\n", "K", "v") == b"NATS/1.0 503\r\nK: v\r\n\r\n"
    assert get_header(set_header(BLOCK, "Nats-Msg-Id", "new"), "Nats-Msg-Id") == b"new"


keys = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,10}\Z")
values = st.from_regex(r"\A[!-~]([ -~]{0,10}[!-~])?\Z")


@given(st.lists(st.tuples(keys, values), max_size=8))
def test_build_then_parse_round_trip(items):
    hdr = build_headers(items)
    assert hdr.startswith(b"NATS/1.0\r\n") and hdr.endswith(b"\r\n\r\n")
    assert parse_headers(hdr) == (None, "", items)
    for k, v in items:
        first = next(val for kk, val in items if kk == k)
        assert get_header_str(hdr, k) == first


def test_get_header_keeps_tabs_and_trailing_blanks_like_nats_server() -> None:
    from edgebus.codec.headers import get_header
    hdr = b"NATS/1.0\r\nA:   x y \r\nB:\tz\r\n\r\n"
    assert get_header(hdr, "A") == b"x y "
    assert get_header(hdr, "B") == b"\tz"
