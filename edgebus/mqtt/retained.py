"""Retained messages: nats-server's stored record format and an in-memory subject index.

nats-server keeps one record per subject in stream `$MQTT_rmsgs` at `$MQTT.rmsgs.<subject>`
(max one message per subject). Since 2.11 a record is a NATS message whose headers carry the
metadata and whose body is the MQTT payload:

    NATS/1.0\\r\\n
    Nmqtt-RTopic:<mqtt topic>\\r\\n
    Nmqtt-RFlags:<publish flags, hex>\\r\\n        ('-' before the value marks a delete)
    Nmqtt-ROrigin:<server hash>\\r\\n               (optional)
    Nmqtt-RSource:<publisher user name>\\r\\n       (optional)
    \\r\\n

2.10 stored a JSON body `{"origin","subject","topic","msg":<base64>,"flags","source"}` with no
headers; `decode` reads both. The topic and subject of a decoded record are rebuilt from the
stream subject, as nats-server does.

`RetainedIndex` answers "which retained messages match this subscription subject" with a token
trie, so a wildcard SUBSCRIBE costs the size of the matching part of the tree.
"""

from __future__ import annotations

import base64
import binascii
from typing import Iterator

from ..codec.json_depth import loads
from ..codec.mqtt_topics import subject_to_topic

__all__ = ["RETAINED_PREFIX", "RetainedMsg", "RetainedIndex", "decode", "encode", "topic_field"]

#: Subject prefix of retained records (stream `$MQTT_rmsgs`).
RETAINED_PREFIX = "$MQTT.rmsgs."

_H_TOPIC = b"Nmqtt-RTopic"
_H_FLAGS = b"Nmqtt-RFlags"
_H_ORIGIN = b"Nmqtt-ROrigin"
_H_SOURCE = b"Nmqtt-RSource"


def topic_field(topic: str) -> bytes:
    """The length-prefixed UTF-8 topic as it appears in a PUBLISH packet."""
    raw = topic.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


class RetainedMsg:
    """One retained message. `flags` are the PUBLISH flags it was stored with (QoS, RETAIN)."""

    __slots__ = ("subject", "topic", "data", "flags", "origin", "source", "tf")

    def __init__(self, subject: str, topic: str, data: bytes, flags: int,
                 origin: str = "", source: str = "") -> None:
        self.subject = subject
        self.topic = topic
        self.data = data
        self.flags = flags
        self.origin = origin
        self.source = source
        self.tf = topic_field(topic)

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    def __repr__(self) -> str:
        return f"<RetainedMsg {self.topic!r} qos={self.qos} {len(self.data)}B>"


def encode(rm: RetainedMsg) -> tuple[bytes, bytes]:
    """(header block, body) of the stored record; an empty body encodes a delete marker."""
    parts = [b"NATS/1.0\r\n", _H_TOPIC, b":", rm.topic.encode("utf-8"), b"\r\n",
             _H_FLAGS, b":", b"-" if not rm.data else b"", format(rm.flags, "x").encode(), b"\r\n"]
    if rm.origin:
        parts += (_H_ORIGIN, b":", rm.origin.encode(), b"\r\n")
    if rm.source:
        parts += (_H_SOURCE, b":", rm.source.encode(), b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), rm.data


def _headers(hdr: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    if not hdr.startswith(b"NATS/1.0"):
        return out
    for line in hdr.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        key = key.rstrip(b" ")
        if sep and key:
            out.setdefault(key, value.lstrip(b" "))
    return out


def decode(stream_subject: str, hdr: bytes | None, body: bytes) -> tuple[RetainedMsg | None, bool]:
    """Decode a stored record -> (message, is_delete_marker). (None, False) if unreadable."""
    subject = stream_subject[len(RETAINED_PREFIX):] if stream_subject.startswith(RETAINED_PREFIX) \
        else stream_subject
    if not subject:
        return None, False
    h = _headers(hdr) if hdr else {}
    flags_raw = h.get(_H_FLAGS)
    origin = source = ""
    delete = False
    if flags_raw:
        if len(flags_raw) > 1 and flags_raw[:1] == b"-":
            flags_raw = flags_raw[1:]
            delete = True
        try:
            flags = int(flags_raw, 16)
        except ValueError:
            return None, False
        origin = h.get(_H_ORIGIN, b"").decode("utf-8", "replace")
        source = h.get(_H_SOURCE, b"").decode("utf-8", "replace")
        data = body
    else:  # 2.10 JSON record
        try:
            obj = loads(body)
            flags = int(obj.get("flags", 0))
            data = base64.b64decode(obj.get("msg") or "")
            origin = str(obj.get("origin") or "")
            source = str(obj.get("source") or "")
        except (ValueError, TypeError, AttributeError, binascii.Error):
            return None, False
    if flags >= 0x0F or (flags >> 1) & 3 > 2:
        return None, False
    if not data:
        delete = True
    try:
        topic = subject_to_topic(subject)
    except Exception:
        return None, False
    return RetainedMsg(subject, topic, data, flags, origin, source), delete


class _Node:
    __slots__ = ("children", "msg")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.msg: RetainedMsg | None = None


class RetainedIndex:
    """Retained messages of one account, by NATS subject."""

    def __init__(self) -> None:
        self._root = _Node()
        self._by_subject: dict[str, RetainedMsg] = {}

    def __len__(self) -> int:
        return len(self._by_subject)

    def get(self, subject: str) -> RetainedMsg | None:
        return self._by_subject.get(subject)

    def set(self, rm: RetainedMsg) -> None:
        node = self._root
        for tok in rm.subject.split("."):
            nxt = node.children.get(tok)
            if nxt is None:
                nxt = node.children[tok] = _Node()
            node = nxt
        node.msg = rm
        self._by_subject[rm.subject] = rm

    def remove(self, subject: str) -> RetainedMsg | None:
        rm = self._by_subject.pop(subject, None)
        if rm is None:
            return None
        path: list[tuple[_Node, str]] = []
        node = self._root
        for tok in subject.split("."):
            path.append((node, tok))
            node = node.children[tok]
        node.msg = None
        # prune empty branches so the trie does not grow with churn
        for parent, tok in reversed(path):
            child = parent.children[tok]
            if child.msg is None and not child.children:
                del parent.children[tok]
            else:
                break
        return rm

    def all(self) -> Iterator[RetainedMsg]:
        return iter(list(self._by_subject.values()))

    def match(self, filter_subject: str) -> list[RetainedMsg]:
        """Retained messages whose subject matches the (wildcard) subscription subject, in
        subject order. Only whole `*` / `>` tokens are wildcards, as in the sublist."""
        if filter_subject in self._by_subject and "*" not in filter_subject \
                and ">" not in filter_subject:
            return [self._by_subject[filter_subject]]
        out: list[RetainedMsg] = []
        self._walk(self._root, filter_subject.split("."), out)
        out.sort(key=lambda m: m.subject)
        return out

    def _walk(self, root: _Node, toks: list[str], out: list[RetainedMsg]) -> None:
        # iterative: a filter may have ~2,000 levels, deeper than Python's recursion limit
        last = len(toks)
        stack: list[tuple[_Node, int]] = [(root, 0)]
        while stack:
            node, i = stack.pop()
            if i == last:
                if node.msg is not None:
                    out.append(node.msg)
                continue
            tok = toks[i]
            if tok == ">":
                for child in node.children.values():
                    self._collect(child, out)
            elif tok == "*":
                stack.extend((child, i + 1) for child in node.children.values())
            else:
                child = node.children.get(tok)
                if child is not None:
                    stack.append((child, i + 1))

    def _collect(self, node: _Node, out: list[RetainedMsg]) -> None:
        stack = [node]
        while stack:
            n = stack.pop()
            if n.msg is not None:
                out.append(n.msg)
            stack.extend(n.children.values())
