"""DIRECT.GET: read messages straight from a stream, answered as raw NATS messages (ADR-31).

A stream with `allow_direct` (or `mirror_direct`) subscribes, in queue group `_sys_`, to
`$JS.API.DIRECT.GET.<stream>` (JSON request: seq / last_by_subj / next_by_subj, batches,
multi_last) and `$JS.API.DIRECT.GET.<stream>.<subject>` (empty body: newest message on that
subject, which may be a wildcard filter). Replies carry the stored headers plus
`Nats-Stream`, `Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp` (and for batches
`Nats-Num-Pending` = matches left after this one, as nats-server 2.12+ counts,
`Nats-Last-Sequence`, then a `204 EOB` status message); failures are
status-only replies (`408 …`, `404 Message Not Found`). Without `allow_direct` nothing
subscribes, so requesters get "no responders".

Handlers run inline on the requester's task, as nats-server does for client connections.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..core.clock import rfc3339
from .errors import JSError
from .store.base import ErrTooManyResults, StoredMsg
from .stream import seq_from_time

if TYPE_CHECKING:
    from .stream import Stream

MAX_MULTI_RESULTS = 1024
_PREFIX_TOKENS = 5  # $JS.API.DIRECT.GET.<stream>


def _status(stream: "Stream", reply: str, line: bytes) -> None:
    stream.js.client.publish(reply, None, b"NATS/1.0 " + line + b"\r\n\r\n", b"")


def _headers(stream: "Stream", m: StoredMsg, extra: list[tuple[str, str]] | None = None) -> bytes:
    items = [("Nats-Stream", stream.name), ("Nats-Subject", m.subject),
             ("Nats-Sequence", str(m.seq)), ("Nats-Time-Stamp", rfc3339(m.ts))]
    if extra:
        items.extend(extra)
    add = "".join(f"{k}: {v}\r\n" for k, v in items).encode()
    if m.hdr:
        return m.hdr[:-2] + add + b"\r\n"
    return b"NATS/1.0\r\n" + add + b"\r\n"


def on_direct_get(stream: "Stream", msg: Any) -> None:
    """`$JS.API.DIRECT.GET.<stream>` with a JSApiMsgGetRequest body."""
    reply = msg.reply
    if not reply:
        return
    if not msg.data:
        _status(stream, reply, b"408 Empty Request")
        return
    from .api import MsgGetRequest
    try:
        o = json.loads(msg.data)
        if not isinstance(o, dict):
            raise ValueError("not an object")
        req = MsgGetRequest.decode(o)
    except (ValueError, JSError, UnicodeDecodeError):
        _status(stream, reply, b"408 Malformed Request")
        return
    if (req.seq == 0 and not req.last_by_subj and not req.next_by_subj and not req.multi_last
            and req.start_time is None):
        _status(stream, reply, b"408 Empty Request")
        return
    if ((req.seq > 0 and req.last_by_subj) or
            (req.seq > 0 and req.start_time is not None) or
            (req.start_time is not None and req.last_by_subj) or
            (req.last_by_subj and req.next_by_subj) or
            (req.last_by_subj and req.batch > 0) or
            (req.last_by_subj and req.multi_last) or
            (req.next_by_subj and req.multi_last) or
            (req.up_to_seq > 0 and req.up_to_time is not None)):
        _status(stream, reply, b"408 Bad Request")
        return
    serve(stream, req, reply)


def on_direct_get_last(stream: "Stream", msg: Any) -> None:
    """`$JS.API.DIRECT.GET.<stream>.<subject…>`: the newest message on that subject."""
    reply = msg.reply
    if not reply:
        return
    if msg.data:
        _status(stream, reply, b"408 Bad Request")
        return
    parts = msg.subject.split(".", _PREFIX_TOKENS)
    key = parts[_PREFIX_TOKENS] if len(parts) > _PREFIX_TOKENS else ""
    if not key:
        _status(stream, reply, b"408 Bad Request")
        return
    from .api import MsgGetRequest
    serve(stream, MsgGetRequest(last_by_subj=key), reply)


def _max_bytes(stream: "Stream", req: Any) -> int:
    if req.max_bytes:
        return req.max_bytes
    return stream.js.service.server.options.max_pending


def serve(stream: "Stream", req: Any, reply: str) -> None:
    """nats-server `getDirectRequest`: single message, or a batch ending in EOB."""
    if req.multi_last:
        _serve_multi(stream, req, reply)
        return
    store = stream.store
    pub = stream.js.client.publish
    seq = seq_from_time(store, req.start_time) if req.start_time is not None else req.seq
    batch = req.batch if req.batch > 0 else 1
    is_batch = req.batch > 0
    filt = req.next_by_subj
    np = store.num_pending(seq, filt or ">") if is_batch else 0
    mb = _max_bytes(stream, req)
    sent_bytes = 0
    lseq = 0
    for i in range(batch):
        m: StoredMsg | None
        if seq > 0 and not filt:
            if i == 0 and not is_batch:
                m = store.load_msg(seq)
            else:
                m, _ = store.load_next_msg(">", seq)
        elif filt:
            m, _ = store.load_next_msg(filt, seq)
        else:
            m = store.load_last_msg(req.last_by_subj)
        if m is None:
            if batch > 1 and i > 0:
                break
            _status(stream, reply, b"404 Message Not Found")
            return
        seq = m.seq + 1
        if is_batch:
            # messages left after this one (2.12+; 2.11 counted this one too)
            np = max(np - 1, 0)
            hdr = _headers(stream, m, [("Nats-Num-Pending", str(np)), ("Nats-Last-Sequence", str(lseq))])
        else:
            hdr = _headers(stream, m)
        lseq = m.seq
        pub(reply, None, hdr, m.data)
        sent_bytes += len(m.subject) + (len(m.hdr) if m.hdr else 0) + len(m.data)
        if sent_bytes >= mb:
            break
    if is_batch:
        np = max(np, 0)
        pub(reply, None, f"NATS/1.0 204 EOB\r\nNats-Num-Pending: {np}\r\n"
                         f"Nats-Last-Sequence: {lseq}\r\n\r\n".encode(), b"")


def _serve_multi(stream: "Stream", req: Any, reply: str) -> None:
    """nats-server `getDirectMulti`: the newest message of every matching subject."""
    store = stream.store
    pub = stream.js.client.publish
    mb = _max_bytes(stream, req)
    up_to = req.up_to_seq
    if req.up_to_time is not None:
        up_to = seq_from_time(store, req.up_to_time)
        if up_to <= store.state().first_seq:
            _status(stream, reply, b"404 No Results")
            return
        up_to -= 1
    if up_to == 0:
        up_to = store.state().last_seq
    try:
        seqs = store.multi_last_seqs(req.multi_last, up_to, MAX_MULTI_RESULTS)
    except ErrTooManyResults:
        _status(stream, reply, b"413 Too Many Results")
        return
    if not seqs:
        _status(stream, reply, b"404 No Results")
        return
    np, lseq, sent_bytes, sent = len(seqs) - 1, 0, 0, 0
    for seq in seqs:
        if seq < req.seq:
            np = max(np - 1, 0)
            continue
        m = store.load_msg(seq)
        if m is None:
            _status(stream, reply, b"404 Message Not Found")
            return
        hdr = _headers(stream, m, [("Nats-Num-Pending", str(np)), ("Nats-Last-Sequence", str(lseq))])
        np = max(np - 1, 0)
        lseq = m.seq
        pub(reply, None, hdr, m.data)
        sent_bytes += len(m.subject) + (len(m.hdr) if m.hdr else 0) + len(m.data)
        if sent_bytes >= mb:
            break
        sent += 1
        if req.batch > 0 and sent >= req.batch:
            break
    pub(reply, None, f"NATS/1.0 204 EOB\r\nNats-Num-Pending: {np}\r\nNats-Last-Sequence: {lseq}\r\n"
                     f"Nats-UpTo-Sequence: {up_to}\r\n\r\n".encode(), b"")
