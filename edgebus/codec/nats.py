"""Sans-IO codec for the NATS client protocol.

`ServerParser` turns bytes a client sends into operation tuples (many per feed, resumable at any
byte); `ClientParser` does the same for what a server sends (used by the leaf link and tests).
Serializers build the server's frames. No I/O, no trio, no core imports.

Operations are plain tuples, first element an int opcode, because they are built on the hot path:
    (OP_PUB, subject: bytes, reply: bytes | None, hdr: bytes | None, payload: bytes)
    (OP_SUB, subject: bytes, queue: bytes | None, sid: bytes)
    (OP_UNSUB, sid: bytes, max: int | None)
    (OP_CONNECT, json_bytes) / (OP_INFO, json_bytes)
    (OP_PING,) (OP_PONG,) (OP_OK,) (OP_ERR, text: bytes)
    (OP_MSG, subject, sid, reply, hdr, payload)            # ClientParser only
    (OP_PUBS, subject, reply, [payload, ...])               # ServerParser with batch=True:
                                                            # consecutive PUBs, same subject,
                                                            # reply and size
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from .json_depth import loads

OP_PUB = 1
OP_SUB = 2
OP_UNSUB = 3
OP_PING = 4
OP_PONG = 5
OP_CONNECT = 6
OP_INFO = 7
OP_OK = 8
OP_ERR = 9
OP_MSG = 10

CRLF = b"\r\n"
PING = b"PING\r\n"
PONG = b"PONG\r\n"
OK = b"+OK\r\n"

# -ERR texts exactly as nats-server sends them.
ERR_UNKNOWN_OP = "Unknown Protocol Operation"
ERR_AUTH_VIOLATION = "Authorization Violation"
ERR_AUTH_TIMEOUT = "Authentication Timeout"
ERR_MAX_PAYLOAD = "Maximum Payload Violation"
ERR_MAX_CONTROL_LINE = "maximum control line exceeded"
ERR_MAX_CONNECTIONS = "maximum connections exceeded"
ERR_MAX_SUBS = "maximum subscriptions exceeded"
ERR_STALE = "Stale Connection"
ERR_INVALID_SUBJECT = "Invalid Subject"
ERR_INVALID_PUB_SUBJECT = "Invalid Publish Subject"
ERR_INVALID_PROTOCOL = "invalid client protocol"
ERR_NO_RESPONDERS_HEADERS = "no responders requires headers support"
ERR_TLS_REQUIRED = "Secure Connection - TLS Required"
ERR_LEAF_PORT = "attempted to connect to leaf node port"


class ProtocolError(Exception):
    """The peer broke the protocol; the connection must close.

    `err` is the -ERR text to send first, or None when nats-server closes silently.
    `reason` is the closed-connection reason shown in /connz.
    """

    def __init__(self, err: str | None, reason: str = "Protocol Violation", detail: str = ""):
        super().__init__(detail or err or reason)
        self.err = err
        self.reason = reason


def err_frame(text: str) -> bytes:
    return b"-ERR '" + text.encode() + b"'\r\n"


def info_frame(info: dict[str, Any]) -> bytes:
    # nats-server ends the JSON with a space before CRLF; clients accept either
    return b"INFO " + json.dumps(info, separators=(",", ":")).encode() + b" \r\n"


def msg_frame(subject: bytes, sid: bytes, reply: bytes | None, hdr: bytes | None, payload: bytes) -> bytes:
    """MSG or HMSG frame (caller strips headers for clients without header support)."""
    if hdr is None:
        if reply:
            return b"".join((b"MSG ", subject, b" ", sid, b" ", reply, b" ",
                             str(len(payload)).encode(), CRLF, payload, CRLF))
        return b"".join((b"MSG ", subject, b" ", sid, b" ", str(len(payload)).encode(), CRLF, payload, CRLF))
    hl = len(hdr)
    if reply:
        head = b"".join((b"HMSG ", subject, b" ", sid, b" ", reply, b" ", str(hl).encode(), b" ",
                         str(hl + len(payload)).encode(), CRLF))
    else:
        head = b"".join((b"HMSG ", subject, b" ", sid, b" ", str(hl).encode(), b" ",
                         str(hl + len(payload)).encode(), CRLF))
    return b"".join((head, hdr, payload, CRLF))


# b"<n>\r\n" for the payload sizes most messages have: a table lookup, not a format
_SIZE_LINES = [b"%d\r\n" % i for i in range(4096)]
_HEADS_MAX = 1024  # control-line heads remembered per subscription


def append_msgs(out: bytearray, subject: bytes, sid: bytes, reply: bytes | None,
                hdr: bytes | None, payloads: Sequence[bytes],
                heads: dict[bytes, bytes] | None = None) -> int:
    """Append one MSG (HMSG with `hdr`) per payload to `out`, all with the same subject, sid
    and reply: the delivery framing of every NATS client connection. `heads`, when given,
    remembers the `MSG <subject> <sid> ` head per subject for replyless messages (a
    subscription sees the same few subjects again and again). A run of payloads of one size is
    formatted once and joined. Returns the bytes counted as delivered (headers and payloads,
    as nats-server counts out_bytes)."""
    if hdr is None:
        if reply:
            if len(payloads) == 1:  # (replies differ per message: one format, no head kept)
                data = payloads[0]
                out += b"MSG %s %s %s %d\r\n%s\r\n" % (subject, sid, reply, len(data), data)
                return len(data)
            head = b"MSG %s %s %s " % (subject, sid, reply)
        elif heads is not None:
            h = heads.get(subject)
            if h is None:
                if len(heads) >= _HEADS_MAX:
                    heads.clear()
                h = heads[subject] = b"MSG %s %s " % (subject, sid)
            head = h
        else:
            head = b"MSG %s %s " % (subject, sid)
        if len(payloads) == 1:
            data = payloads[0]
            n = len(data)
            out += head + (_SIZE_LINES[n] if n < 4096 else b"%d\r\n" % n) + data + b"\r\n"
            return n
        size = len(payloads[0])
        k = len(payloads)
        total = sum(map(len, payloads))
        if total == k * size:
            line = head + b"%d\r\n" % size
            out += line
            out += (b"\r\n" + line).join(payloads)
            out += b"\r\n"
            return total
        for data in payloads:
            n = len(data)
            out += b"".join((head, b"%d\r\n" % n, data, b"\r\n"))
        return total
    hl = len(hdr)
    total = 0
    for data in payloads:
        size = hl + len(data)
        if reply:
            out += b"HMSG %s %s %s %d %d\r\n%s%s\r\n" % (subject, sid, reply, hl, size, hdr, data)
        else:
            out += b"HMSG %s %s %d %d\r\n%s%s\r\n" % (subject, sid, hl, size, hdr, data)
        total += size
    return total


_SP_SIZE_LINES = [b" %d\r\n" % i for i in range(4096)]


def batch_frames(msgs: Sequence[tuple[Any, bytes, bytes | None, bytes | None, bytes]],
                 headers: bool) -> tuple[list[bytes], int]:
    """The MSG frames (HMSG for a message with headers, when `headers`; otherwise its headers
    are left out) of messages (code, subject, reply, hdr, payload), as the parser hands a
    PUB over, for any subscription: `sid.join(pieces)` is the frames for subscription id
    `sid` (each piece runs from one frame's sid to the next's), so they are made once for all
    the subscriptions that get the same messages (core.contract.Batch). Returns the pieces
    and the bytes counted as delivered (headers and payloads)."""
    sizes = _SP_SIZE_LINES
    pieces: list[bytes] = []
    append = pieces.append
    total = 0
    # the rest of the frame before (what follows its sid), then this frame's start
    size_line = hdr_b = data = end = b""
    for m in msgs:
        hdr = m[3]
        if hdr is None or not headers:
            append(b"".join((size_line, hdr_b, data, end, b"MSG ", m[1], b" ")))
            data = m[4]
            n = len(data)
            total += n
            size_line = sizes[n] if n < 4096 else b" %d\r\n" % n
            hdr_b = b""
        else:
            append(b"".join((size_line, hdr_b, data, end, b"HMSG ", m[1], b" ")))
            data = m[4]
            hl = len(hdr)
            n = hl + len(data)
            total += n
            size_line = b" %d %d\r\n" % (hl, n)
            hdr_b = hdr
        reply = m[2]
        if reply:
            size_line = b" " + reply + size_line
        end = b"\r\n"
    append(b"".join((size_line, hdr_b, data, b"\r\n")))
    return pieces, total


def run_frames(subject: bytes, replies: Sequence[bytes], payloads: Sequence[bytes]) -> tuple[list[bytes], int]:
    """`batch_frames` (either `headers`) of messages that all have `subject`, no headers and
    each its reply (`replies[i]` for `payloads[i]`; a JetStream consumer's run): one join per
    message, nothing read from per-message tuples."""
    sizes = _SP_SIZE_LINES
    mid = b"\r\nMSG " + subject + b" "
    pieces = [mid[2:]]
    pieces += [b"".join((b" ", r, sizes[len(d)] if len(d) < 4096 else b" %d\r\n" % len(d), d, mid))
               for r, d in zip(replies, payloads)]
    if len(pieces) > 1:
        pieces[-1] = pieces[-1][: 2 - len(mid)]   # the last frame ends at its CRLF
    return pieces, sum(map(len, payloads))


def pub_frame(subject: bytes, reply: bytes | None, hdr: bytes | None, payload: bytes) -> bytes:
    """PUB or HPUB frame, as a client sends it."""
    r = b" " + reply if reply else b""
    if hdr is None:
        return b"PUB " + subject + r + b" " + str(len(payload)).encode() + CRLF + payload + CRLF
    return (b"HPUB " + subject + r + b" " + str(len(hdr)).encode() + b" "
            + str(len(hdr) + len(payload)).encode() + CRLF + hdr + payload + CRLF)


# CONNECT fields and their JSON types, as nats-server's ClientOpts declares them.
_CONNECT_FIELDS: dict[str, type] = {
    "echo": bool, "verbose": bool, "pedantic": bool, "tls_required": bool, "nkey": str,
    "jwt": str, "sig": str, "auth_token": str, "user": str, "pass": str, "name": str,
    "lang": str, "version": str, "protocol": int, "account": str, "new_account": bool,
    "headers": bool, "no_responders": bool, "remote_account": str, "proxy_sig": str,
}


def connect_options(raw: bytes) -> dict[str, Any]:
    """The options of a CONNECT, decoded the way nats-server decodes them: a JSON object whose
    known fields have their declared types (a value of another type is an error, null means
    "not given"), field names matched case-insensitively. Raises ValueError otherwise."""
    opts = loads(raw)
    if not isinstance(opts, dict):
        raise ValueError("CONNECT options are not a JSON object")
    out: dict[str, Any] = {}
    for key, value in opts.items():
        name = key if key in _CONNECT_FIELDS else key.lower()
        want = _CONNECT_FIELDS.get(name)
        if want is None:
            out[key] = value  # not a ClientOpts field (routes, leafs, tools): kept as is
            continue
        if value is None:
            continue
        if type(value) is not want:  # (bool is not int, 1.0 is not int)
            raise ValueError(f"CONNECT field {key!r} must be {want.__name__}")
        out[name] = value
    return out


def parse_size(tok: bytes) -> int:
    """A size as nats-server reads it: 1 to 9 ASCII digits, else -1."""
    if 0 < len(tok) <= 9 and tok.isdigit():
        return int(tok)
    return -1


def _size(tok: bytes, what: str) -> int:
    n = parse_size(tok)
    if n < 0:
        raise ProtocolError(None, detail=f"bad or missing {what} {tok[:32]!r}")
    return n


def _split_ws(arg: bytes) -> list[bytes]:
    """Split on runs of spaces and tabs only (PUB/HPUB arguments)."""
    if b"\t" in arg:
        arg = arg.replace(b"\t", b" ")
    if b"  " in arg or arg[:1] == b" " or arg[-1:] == b" ":
        return [a for a in arg.split(b" ") if a]
    return arg.split(b" ") if arg else []


def _split_args(arg: bytes) -> list[bytes]:
    """Split on spaces, tabs, CR and LF (SUB/UNSUB arguments)."""
    return _split_ws(arg.replace(b"\r", b" ").replace(b"\n", b" ")) if b"\r" in arg or b"\n" in arg \
        else _split_ws(arg)


class _Base:
    """Buffer and limits shared by both directions."""

    __slots__ = ("buf", "max_control_line", "_pending")

    def __init__(self, max_control_line: int = 4096) -> None:
        self.buf = b""
        self.max_control_line = max_control_line
        self._pending: tuple[Any, ...] | None = None


# How the bytes after an operation's name are read (nats-server's parser states):
_NEEDS_SPACE = 1   # PUB HPUB SUB UNSUB -ERR: a space or tab must follow, then the arguments
_TAKES_REST = 2    # CONNECT INFO: spaces and tabs are skipped, everything else is the argument
_IGNORES_REST = 3  # PING PONG +OK: anything up to the end of the line is ignored

OP_HPUB = 11  # internal: HPUB control line (becomes OP_PUB with headers)
# batch mode only: consecutive PUBs with the same subject, reply and size, as one operation
OP_PUBS = 12  # (OP_PUBS, subject, reply, [payload, ...])

_CLIENT_OPS = (
    (b"PUB", OP_PUB, _NEEDS_SPACE),
    (b"PING", OP_PING, _IGNORES_REST),
    (b"PONG", OP_PONG, _IGNORES_REST),
    (b"SUB", OP_SUB, _NEEDS_SPACE),
    (b"UNSUB", OP_UNSUB, _NEEDS_SPACE),
    (b"HPUB", OP_HPUB, _NEEDS_SPACE),
    (b"CONNECT", OP_CONNECT, _TAKES_REST),
    (b"INFO", OP_INFO, _TAKES_REST),
    (b"+OK", OP_OK, _IGNORES_REST),
    (b"-ERR", OP_ERR, _NEEDS_SPACE),
)


# exact upper-case openings -> _classify's answer; UNSUB is told by its next two bytes
_QUICK = {
    b"PUB ": (OP_PUB, 3, _NEEDS_SPACE),
    b"SUB ": (OP_SUB, 3, _NEEDS_SPACE),
    b"UNSU": (OP_UNSUB, 5, _NEEDS_SPACE),
    b"PING": (OP_PING, 4, _IGNORES_REST),
    b"PONG": (OP_PONG, 4, _IGNORES_REST),
}


def _classify(buf: bytes, pos: int, limit: int, complete: bool) -> tuple[Any, ...] | None:
    """Which client operation starts at `pos`?

    `limit` is the index of the line's '\n' (complete line) or the end of the data so far.
    Returns (opcode, name length, mode), None when more bytes are needed to tell, and raises
    ProtocolError('Unknown Protocol Operation') as soon as no operation can match, as the
    server's byte-wise state machine does (so 'PUX' fails before any newline arrives).
    """
    if pos + 6 <= limit:
        # the usual spellings, in one look-up (SUB/UNSUB floods, PINGs, PUBs with a reply)
        q = _QUICK.get(buf[pos:pos + 4])
        if q is not None and (q[0] != OP_UNSUB or buf[pos + 4:pos + 6] == b"B "):
            return q
    head = buf[pos:min(limit, pos + 8)].upper()
    lh = len(head)
    for name, code, mode in _CLIENT_OPS:
        ln = len(name)
        if lh < ln:
            if name.startswith(head):
                if complete:
                    break  # the line ended inside the name
                return None
            continue
        if not head.startswith(name):
            continue
        if mode == _NEEDS_SPACE:
            if lh == ln:
                if complete:
                    break
                return None
            if head[ln] not in b" \t":
                break
        return code, ln, mode
    raise ProtocolError(ERR_UNKNOWN_OP)


class ServerParser(_Base):
    """Parses what a client sends to the server, with nats-server's rules.

    `max_payload` is checked on the control line, before the payload is read, as nats-server
    does; `headers` says whether HPUB is allowed (set after CONNECT with headers:true).

    The parser stops right after a CONNECT (setting `more`), so the connection can apply it
    (headers, limits) before the operations that follow it are parsed: call `feed_into(b"")`
    again while `more` is true.
    """

    __slots__ = ("max_payload", "headers", "more", "batch", "_chunks", "_have", "_need", "_carry",
                 "_lines")

    def __init__(self, max_payload: int = 1024 * 1024, max_control_line: int = 4096) -> None:
        super().__init__(max_control_line)
        self.max_payload = max_payload
        self.headers = False
        self.more = False
        # batch: runs of identical PUB control lines come out as one OP_PUBS operation
        self.batch = False
        self._chunks: list[bytes] | None = None  # a large payload arriving over many reads
        self._have = 0
        self._need = 0
        self._carry = b""
        self._lines: dict[bytes, tuple[Any, ...]] = {}  # recent PUB control lines, parsed

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        """Every complete operation in the bytes seen so far; raises ProtocolError.

        Operations before a violation are lost to the caller; connections use `feed_into`.
        """
        ops: list[tuple[Any, ...]] = []
        err = self.feed_into(data, ops)
        while err is None and self.more:
            err = self.feed_into(b"", ops)
        if err is not None:
            raise err
        return ops

    def feed_into(self, data: bytes | bytearray, ops: list[tuple[Any, ...]]) -> ProtocolError | None:
        """Append complete operations to `ops`; return the first ProtocolError instead of raising."""
        self.more = False
        if type(data) is not bytes:
            data = bytes(data)  # memory/TLS streams may hand over a bytearray or memoryview
        chunks = self._chunks
        pos = 0
        append = ops.append
        try:
            if chunks is not None:
                # collecting a payload bigger than one read: join only once it is all here
                if data:
                    chunks.append(data)
                    self._have += len(data)
                if self._have < self._need:
                    return None
                buf = b"".join(chunks)
                self._chunks = None
            elif self.buf and self._pending is not None and \
                    0 < self._pending[0] + 2 - len(self.buf) <= len(data):
                # a frame straddles the two reads: finish it from the start of this read,
                # then go on in the read itself, rather than copying the whole read
                need = self._pending[0] + 2 - len(self.buf)
                first = self.buf + data[:need]
                self.buf = b""
                self._loop(first, 0, append)  # exactly the rest of that one frame
                buf = data
                pos = need
            else:
                buf = self.buf + data if self.buf else data
            pos = self._loop(buf, pos, append)
        except ProtocolError as e:
            self.buf = b""
            self._pending = None
            self._chunks = None
            return e
        if pos < 0:
            return None  # switched to collecting a large payload
        if self._carry:
            self.buf, self._carry = self._carry, b""
        else:
            self.buf = buf[pos:] if pos < len(buf) else b""
        return None

    def _loop(self, buf: bytes, pos: int, append: Any) -> int:
        """Parse operations from `pos`; return where parsing stopped (-1: the rest of `buf` went
        into the large-payload collector)."""
        n = len(buf)
        fast = True
        while pos < n:
            pend = self._pending
            if pend is not None:
                size, subject, reply, hlen = pend
                end = pos + size
                if n < end + 2:
                    if n > end and buf[end] != 13:
                        raise ProtocolError(ERR_UNKNOWN_OP, detail="payload not followed by CRLF")
                    if size - (n - pos) > 65536:
                        self._chunks = [buf[pos:]]
                        self._have = n - pos
                        self._need = size + 2
                        self.buf = b""
                        return -1
                    break
                if buf[end] != 13 or buf[end + 1] != 10:
                    raise ProtocolError(ERR_UNKNOWN_OP, detail="payload not followed by CRLF")
                if hlen is None:
                    append((OP_PUB, subject, reply, None, buf[pos:end]))
                else:
                    append((OP_PUB, subject, reply, buf[pos:pos + hlen], buf[pos + hlen:end]))
                pos = end + 2
                self._pending = None
                continue
            if fast and buf.startswith(b"PUB ", pos):
                npos, count = self._fast_pubs(buf, pos, append)
                # after a short run, stay on the slow path: re-splitting would cost more
                fast = count >= 16
                if npos != pos:
                    pos = npos
                    continue
            npos = self._one(buf, pos, n, append)
            if npos == pos:
                break  # incomplete: wait for more bytes
            if npos < 0:
                pos = -npos
                if pos < n:
                    self.more = True  # stopped after CONNECT
                break
            pos = npos
        return pos

    def _pub_line(self, ctl: bytes) -> tuple[Any, ...] | None:
        """(subject, reply, size) of a plain `PUB` control line (without CRLF), or None when
        it is anything else or anything unusual — the precise path then decides. Lines without
        a reply are remembered: publishers tend to repeat a few of them."""
        hit = self._lines.get(ctl)
        if hit is not None:
            return hit
        args = ctl.split(b" ")
        la = len(args)
        if la == 3:
            op, subject, sz = args
            reply = None
        elif la == 4:
            op, subject, reply, sz = args
            if not reply:
                return None
        else:
            return None
        if op != b"PUB" or not subject or not sz.isdigit() or len(sz) > 9 or \
                len(ctl) - 4 > self.max_control_line or \
                b"\t" in ctl or b"\r" in ctl or b"\n" in ctl:
            return None  # tabs, a bare LF or a stray CR: the precise path knows the rules
        hit = (subject, reply, int(sz))
        if reply is None:
            if len(self._lines) >= 256:
                self._lines.clear()
            self._lines[ctl] = hit
        return hit

    def _fast_pubs(self, buf: bytes, pos: int, append: Any) -> tuple[int, int]:
        """Consume a run of plain, well-formed `PUB` frames at C speed (one split of the buffer).

        Stops at the first frame it is not sure about (other ops, tabs, payloads containing
        CRLF, limits, partial data); the precise path takes over from there. In `batch` mode a
        PUB whose control line repeats the previous one joins it in one
        (OP_PUBS, subject, reply, [payload, ...]) operation.
        """
        nl = buf.find(b"\r\n", pos, pos + 80)
        if nl > 0:
            sz = buf[buf.rfind(b" ", pos, nl) + 1:nl]
            if sz.isdigit() and 128 <= int(sz[:10]):
                # big payloads: splitting would scan (and copy) every payload byte; jump over
                # them by their size instead
                return self._fast_pubs_sized(buf, pos, append)
        region = buf[pos:] if pos else buf
        parts = region.split(b"\r\n")
        npairs = (len(parts) - 1) >> 1  # (control line, payload) pairs followed by CRLF
        mp = self.max_payload
        batch = self.batch
        ops = append.__self__
        line = self._pub_line
        known = self._lines  # (what _pub_line remembers, looked up here without a call)
        prev = None
        size = 0
        subject = reply = None
        run: list[bytes] | None = None
        count = 0
        for ctl, payload in zip(parts[0:2 * npairs:2], parts[1:2 * npairs:2]):
            if ctl != prev:
                hit = known.get(ctl) or line(ctl)
                if hit is None:
                    break
                subject, reply, size = hit
                if size > mp or len(payload) != size:
                    break
                prev = ctl
                run = None
                append((OP_PUB, subject, reply, None, payload))
            elif len(payload) != size:
                break
            elif not batch:
                append((OP_PUB, subject, reply, None, payload))
            elif run is None:  # a repeat: the PUB before becomes a run
                run = [ops[-1][4], payload]
                ops[-1] = (OP_PUBS, subject, reply, run)
            else:
                run.append(payload)
            count += 1
        if not count:
            return pos, 0
        used = parts[:2 * count]
        return pos + sum(map(len, used)) + 2 * len(used), count

    def _fast_pubs_sized(self, buf: bytes, pos: int, append: Any) -> tuple[int, int]:
        """`_fast_pubs` for large payloads: find each control line, take the payload by its
        size; a control line equal to the previous one is recognised with one comparison."""
        n = len(buf)
        mp = self.max_payload
        lim = self.max_control_line + 6
        batch = self.batch
        ops = append.__self__
        prev = b""  # the previous control line with its CRLF
        lp = 0
        size = 0
        subject = reply = None
        run: list[bytes] | None = None
        count = 0
        p = pos
        while True:
            if lp and buf.startswith(prev, p):
                start = p + lp
                fresh = False
            else:
                nl = buf.find(b"\r\n", p, p + lim)
                if nl < 0:
                    break
                hit = self._pub_line(buf[p:nl])
                if hit is None:
                    break
                subject, reply, size = hit
                if size > mp:
                    break
                prev = buf[p:nl + 2]
                lp = len(prev)
                start = nl + 2
                fresh = True
            end = start + size
            if end + 2 > n or buf[end] != 13 or buf[end + 1] != 10:
                break
            payload = buf[start:end]
            if fresh or not batch:
                run = None
                append((OP_PUB, subject, reply, None, payload))
            elif run is None:
                run = [ops[-1][4], payload]
                ops[-1] = (OP_PUBS, subject, reply, run)
            else:
                run.append(payload)
            p = end + 2
            count += 1
        return p, count

    def _one(self, buf: bytes, pos: int, n: int, append: Any) -> int:
        """Parse one operation at `pos`; return the new position (negated after CONNECT), or
        `pos` itself when the operation is not complete yet."""
        nl = buf.find(b"\n", pos)
        complete = nl >= 0
        limit = nl if complete else n
        cls = _classify(buf, pos, limit, complete)
        if cls is None:
            return pos
        code, ln, mode = cls
        if mode == _IGNORES_REST:
            if not complete:
                if n - pos > 64:
                    # the server ignores the rest of a PING/PONG/+OK line: keep only the name,
                    # so a client cannot grow our buffer without bound that way
                    self._carry = buf[pos:pos + ln]
                    return n
                return pos
            if code == OP_PING:
                append((OP_PING,))
            elif code == OP_PONG:
                append((OP_PONG,))
            else:
                append((OP_OK,))
            return nl + 1
        j = pos + ln
        while j < limit and buf[j] in (32, 9):
            j += 1
        if not complete:
            if limit - j > self.max_control_line:
                raise ProtocolError(ERR_MAX_CONTROL_LINE, "Maximum Control Line Exceeded")
            return pos
        arg = buf[j:nl]
        if b"\r" in arg:
            arg = arg[:-1]  # nats-server drops one byte when the line had a CR
        if len(arg) > self.max_control_line:
            raise ProtocolError(ERR_MAX_CONTROL_LINE, "Maximum Control Line Exceeded")
        nxt = nl + 1
        if code == OP_PUB:
            args = _split_ws(arg)
            la = len(args)
            if la == 2:
                subject, reply, size = args[0], None, _size(args[1], "size")
            elif la == 3:
                subject, reply, size = args[0], args[1], _size(args[2], "size")
            else:
                raise ProtocolError(None, detail="wrong number of PUB arguments")
            return self._payload(buf, nxt, subject, reply, None, size, append)
        if code == OP_HPUB:
            if not self.headers:
                raise ProtocolError(None, "Protocol Violation", "message headers not supported")
            args = _split_ws(arg)
            la = len(args)
            if la == 3:
                subject, reply = args[0], None
            elif la == 4:
                subject, reply = args[0], args[1]
            else:
                raise ProtocolError(None, detail="wrong number of HPUB arguments")
            hlen = _size(args[-2], "header size")
            size = _size(args[-1], "total size")
            if hlen > size:
                raise ProtocolError(None, detail="header size larger than total size")
            # an empty header block is no header block: delivered as a plain MSG
            return self._payload(buf, nxt, subject, reply, hlen or None, size, append)
        if code == OP_SUB:
            args = _split_args(arg)
            if len(args) == 2:
                append((OP_SUB, args[0], None, args[1]))
            elif len(args) == 3:
                append((OP_SUB, args[0], args[1], args[2]))
            else:
                raise ProtocolError(None, detail="wrong number of SUB arguments")
            return nxt
        if code == OP_UNSUB:
            args = _split_args(arg)
            if len(args) == 1:
                append((OP_UNSUB, args[0], None))
            elif len(args) == 2:
                # a max that is not a plain decimal means "no max": removed at once
                append((OP_UNSUB, args[0], parse_size(args[1])))
            else:
                raise ProtocolError(None, detail="wrong number of UNSUB arguments")
            return nxt
        if code == OP_CONNECT:
            append((OP_CONNECT, arg))
            return -nxt
        if code == OP_INFO:
            append((OP_INFO, arg))
            return nxt
        append((OP_ERR, arg))
        return nxt

    def _payload(self, buf: bytes, nxt: int, subject: bytes, reply: bytes | None,
                 hlen: int | None, size: int, append: Any) -> int:
        if size > self.max_payload:
            raise ProtocolError(ERR_MAX_PAYLOAD, "Maximum Message Payload Exceeded")
        end = nxt + size
        n = len(buf)
        if n >= end + 2:
            if buf[end] != 13 or buf[end + 1] != 10:
                raise ProtocolError(ERR_UNKNOWN_OP, detail="payload not followed by CRLF")
            if hlen is None:
                append((OP_PUB, subject, reply, None, buf[nxt:end]))
            else:
                append((OP_PUB, subject, reply, buf[nxt:nxt + hlen], buf[nxt + hlen:end]))
            return end + 2
        self._pending = (size, subject, reply, hlen)
        return nxt


class ClientParser(_Base):
    """Parses what a server sends to a client: INFO, MSG, HMSG, PING, PONG, +OK, -ERR.

    Used by the leaf link and by tests; raises ProtocolError (and nothing else) on bad input.
    """

    __slots__ = ()

    def __init__(self, max_control_line: int = 64 * 1024) -> None:
        super().__init__(max_control_line)

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        if type(data) is not bytes:
            data = bytes(data)
        buf = self.buf + data if self.buf else data
        pos = 0
        n = len(buf)
        ops: list[tuple[Any, ...]] = []
        try:
            while pos < n:
                pend = self._pending
                if pend is not None:
                    need, subject, sid, reply, hlen = pend
                    end = pos + need
                    if n < end + 2:
                        break
                    if buf[end] != 13 or buf[end + 1] != 10:
                        raise ProtocolError(ERR_UNKNOWN_OP, detail="payload not followed by CRLF")
                    hdr = buf[pos:pos + hlen] if hlen is not None else None
                    ops.append((OP_MSG, subject, sid, reply, hdr, buf[pos + (hlen or 0):end]))
                    pos = end + 2
                    self._pending = None
                    continue
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if n - pos > self.max_control_line:
                        raise ProtocolError(ERR_MAX_CONTROL_LINE, "Maximum Control Line Exceeded")
                    break
                if nl - pos > self.max_control_line:
                    raise ProtocolError(ERR_MAX_CONTROL_LINE, "Maximum Control Line Exceeded")
                line_end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
                line = buf[pos:line_end]
                op, _, rest = line.partition(b" ")
                op = op.upper()
                pos = nl + 1
                if op == b"MSG":
                    a = _split_ws(rest)
                    if len(a) == 3:
                        self._pending = (_size(a[2], "size"), a[0], a[1], None, None)
                    elif len(a) == 4:
                        self._pending = (_size(a[3], "size"), a[0], a[1], a[2], None)
                    else:
                        raise ProtocolError(None, detail="wrong number of MSG arguments")
                elif op == b"HMSG":
                    a = _split_ws(rest)
                    if len(a) not in (4, 5):
                        raise ProtocolError(None, detail="wrong number of HMSG arguments")
                    hlen, total = _size(a[-2], "header size"), _size(a[-1], "total size")
                    if hlen > total:
                        raise ProtocolError(None, detail="header size larger than total size")
                    self._pending = (total, a[0], a[1], a[2] if len(a) == 5 else None, hlen)
                elif op == b"PING":
                    ops.append((OP_PING,))
                elif op == b"PONG":
                    ops.append((OP_PONG,))
                elif op == b"+OK":
                    ops.append((OP_OK,))
                elif op == b"-ERR":
                    ops.append((OP_ERR, rest.strip().strip(b"'")))
                elif op == b"INFO":
                    ops.append((OP_INFO, rest.strip()))
                else:
                    raise ProtocolError(ERR_UNKNOWN_OP)
        except ProtocolError:
            self.buf = b""
            self._pending = None
            raise
        self.buf = buf[pos:] if pos < n else b""
        return ops
