"""`codec.nats._classify`'s one-look-up openings (`_QUICK`) give exactly what the general
byte-wise classification gives, for every opening and every place the line may end."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from edgebus.codec import nats as codec

ProtocolError = codec.ProtocolError

OPENINGS = [b"PUB ", b"SUB ", b"UNSUB ", b"UNSUB\t", b"UNSUBX", b"UNSUX ", b"PING", b"PINGX",
            b"PONG", b"PUB\t", b"SUBX", b"HPUB ", b"sub ", b"unsub ", b"Ping", b"+OK", b"-ERR ",
            b"CONNECT {}", b"INFO {}", b"PUX", b"SU", b"UNS", b""]
TAILS = [b"", b"a 1", b"a 1\r\n", b"\r\n", b"\n", b" a b 1\r\nPING\r\n"]


def answer(buf: bytes, limit: int, complete: bool) -> Any:
    try:
        return codec._classify(buf, 0, limit, complete)
    except ProtocolError as e:
        return ("error", e.args)


@pytest.mark.parametrize("opening,tail", list(itertools.product(OPENINGS, TAILS)))
def test_quick_openings_agree_with_the_general_path(opening: bytes, tail: bytes,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    buf = opening + tail
    nl = buf.find(b"\n")
    cases = [(nl, True)] if nl >= 0 else [(len(buf), False)]
    # every shorter prefix as data so far, too (the line not ended yet)
    cases += [(k, False) for k in range(len(buf)) if nl < 0 or k <= nl]
    for limit, complete in cases:
        data = buf if complete else buf[:limit]
        quick = answer(data, limit, complete)
        monkeypatch.setattr(codec, "_QUICK", {})
        general = answer(data, limit, complete)
        monkeypatch.undo()
        assert quick == general, (data, limit, complete)


def test_the_quick_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []

    class Spy(dict):  # type: ignore[type-arg]
        def get(self, k: Any, default: Any = None) -> Any:
            seen.append(k)
            return super().get(k, default)

    monkeypatch.setattr(codec, "_QUICK", Spy(codec._QUICK))
    buf = b"SUB foo 1\r\n"
    assert codec._classify(buf, 0, buf.index(b"\n"), True) == (codec.OP_SUB, 3, codec._NEEDS_SPACE)
    assert seen == [b"SUB "]
