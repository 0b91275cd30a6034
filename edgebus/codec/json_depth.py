"""JSON bodies from the network, decoded without letting their nesting reach Python's recursion
limit.

`json.loads` recurses once per nesting level and raises RecursionError near 1,000 levels; an
API request, a CONNECT or a pull request of `[[[[...` would then escape the handlers' `except
ValueError` as a traceback. `loads` turns that into `JSONDepthError` (a ValueError) worded as
Go's encoding/json words its own limit (10,000 levels): `exceeded max depth at offset N`, the
offset being just past the bracket that went one level too deep. (Between ~1,000 and 10,000
levels nats-server still decodes; edgebus refuses with the same words, counting its own limit.)
"""

from __future__ import annotations

import json
from typing import Any

GO_MAX_DEPTH = 10000


class JSONDepthError(ValueError):
    pass


def loads(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise JSONDepthError(f"exceeded max depth at offset {too_deep_at(data)}") from None


def too_deep_at(data: bytes | str, limit: int = GO_MAX_DEPTH) -> int:
    """Offset just past the opening bracket that nests deeper than `limit` (strings skipped);
    for shallower data, past the deepest one."""
    b = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    depth = deepest = deepest_at = 0
    in_str = esc = False
    for i, c in enumerate(b):
        if in_str:
            if esc:
                esc = False
            elif c == 0x5C:      # backslash
                esc = True
            elif c == 0x22:      # closing quote
                in_str = False
        elif c == 0x22:
            in_str = True
        elif c == 0x5B or c == 0x7B:  # [ {
            depth += 1
            if depth > limit:
                return i + 1
            if depth > deepest:
                deepest, deepest_at = depth, i + 1
        elif c == 0x5D or c == 0x7D:  # ] }
            depth -= 1
    return deepest_at
