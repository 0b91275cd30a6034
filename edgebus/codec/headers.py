"""NATS/1.0 header blocks (ADR-4): parse, look up, and build.

Lookups are case-sensitive and first-occurrence-wins, as nats-server's `getHeader` is.
"""

from __future__ import annotations

HDR_LINE = b"NATS/1.0"
EMPTY_HEADERS = b"NATS/1.0\r\n\r\n"


def get_header(hdr: bytes | None, key: str | bytes) -> bytes | None:
    """Value of the first `key:` line, with leading spaces stripped, or None."""
    if not hdr:
        return None
    k = (key.encode() if isinstance(key, str) else key) + b":"
    i = hdr.find(b"\r\n" + k)
    if i < 0:
        return None
    start = i + 2 + len(k)
    end = hdr.find(b"\r\n", start)
    if end < 0:
        end = len(hdr)
    # nats-server skips leading spaces only; tabs and trailing blanks belong to the value
    return hdr[start:end].lstrip(b" ")


def get_header_str(hdr: bytes | None, key: str) -> str | None:
    v = get_header(hdr, key)
    return None if v is None else v.decode("utf-8", "replace")


def parse_headers(hdr: bytes | None) -> tuple[int | None, str, list[tuple[str, str]]]:
    """(status, description, [(key, value), ...]) of a header block; keys keep their case."""
    if not hdr:
        return None, "", []
    lines = hdr.split(b"\r\n")
    first = lines[0]
    status: int | None = None
    desc = ""
    if first.startswith(HDR_LINE):
        rest = first[len(HDR_LINE):].strip()
        if rest[:3].isdigit():
            status = int(rest[:3])
            desc = rest[3:].strip().decode("utf-8", "replace")
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(b":")
        if not sep:
            continue
        items.append((k.decode("utf-8", "replace"), v.strip(b" \t").decode("utf-8", "replace")))
    return status, desc, items


def build_headers(items: list[tuple[str, str]] | dict[str, str] | None = None, *,
                  status: int | None = None, description: str = "") -> bytes:
    """A header block; `status` makes the first line `NATS/1.0 <status>[ <description>]`."""
    first = HDR_LINE
    if status is not None:
        first += b" %d" % status
        if description:
            first += b" " + description.encode()
    parts = [first]
    if items:
        pairs = items.items() if isinstance(items, dict) else items
        for k, v in pairs:
            parts.append(f"{k}: {v}".encode())
    return b"\r\n".join(parts) + b"\r\n\r\n"


def remove_header(hdr: bytes | None, key: str) -> bytes | None:
    """The block without any `key:` lines; None if nothing but the version line remains."""
    if not hdr:
        return hdr
    k = key.encode() + b":"
    lines = hdr.split(b"\r\n")
    kept = [lines[0]] + [ln for ln in lines[1:] if ln and not ln.startswith(k)]
    if len(kept) == 1 and lines[0] == HDR_LINE:
        return None
    return b"\r\n".join(kept) + b"\r\n\r\n"


def lines_without(hdr: bytes, names: tuple[bytes, ...], prefixes: tuple[bytes, ...]) -> list[bytes]:
    """The block's first line and its non-empty lines whose key is not in `names` and does
    not start with one of `prefixes`."""
    lines = hdr.split(b"\r\n")
    kept = [lines[0]]
    for ln in lines[1:]:
        if not ln:
            continue
        key = ln.split(b":", 1)[0]
        if key in names or key.startswith(prefixes):
            continue
        kept.append(ln)
    return kept


def set_header(hdr: bytes | None, key: str, value: str) -> bytes:
    """The block with `key: value` replacing any existing `key:` lines (appended at the end)."""
    base = remove_header(hdr, key) if hdr else None
    if not base:
        base = EMPTY_HEADERS if not hdr else hdr.split(b"\r\n", 1)[0] + b"\r\n\r\n"
    return base[:-2] + f"{key}: {value}".encode() + b"\r\n\r\n"
