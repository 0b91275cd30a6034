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
"""

from __future__ import annotations

import json
from typing import Any

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
    return b"INFO " + json.dumps(info, separators=(",", ":")).encode() + CRLF


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


def pub_frame(subject: bytes, reply: bytes | None, hdr: bytes | None, payload: bytes) -> bytes:
    """PUB or HPUB frame, as a client sends it."""
    r = b" " + reply if reply else b""
    if hdr is None:
        return b"PUB " + subject + r + b" " + str(len(payload)).encode() + CRLF + payload + CRLF
    return (b"HPUB " + subject + r + b" " + str(len(hdr)).encode() + b" "
            + str(len(hdr) + len(payload)).encode() + CRLF + hdr + payload + CRLF)


def _parse_size(tok: bytes) -> int:
    # nats-server accepts only plain non-negative decimals here.
    if not tok.isdigit() or len(tok) > 18:
        raise ProtocolError(None, detail=f"invalid size {tok!r}")
    return int(tok)


class _Base:
    """Line splitting and payload framing shared by both directions."""

    __slots__ = ("buf", "max_control_line", "_pending")

    def __init__(self, max_control_line: int = 4096) -> None:
        self.buf = b""
        self.max_control_line = max_control_line
        # (need_bytes, completion) while waiting for a payload
        self._pending: tuple | None = None

    def _control_line_too_long(self, line_len: int) -> bool:
        return line_len > self.max_control_line


class ServerParser(_Base):
    """Parses what a client sends to the server.

    `max_payload` is checked on the control line, before the payload is read, as nats-server
    does; `headers` says whether HPUB is allowed (set after CONNECT with headers:true).
    """

    __slots__ = ("max_payload", "headers", "ops_seen")

    def __init__(self, max_payload: int = 1024 * 1024, max_control_line: int = 4096) -> None:
        super().__init__(max_control_line)
        self.max_payload = max_payload
        self.headers = False
        self.ops_seen = 0

    def feed(self, data: bytes) -> list[tuple]:
        """Return every complete operation in the bytes seen so far.

        Raises ProtocolError on a violation; operations before the violation are lost to the
        caller, so callers that must act on them use `feed_until_error`.
        """
        ops: list[tuple] = []
        err = self.feed_into(data, ops)
        if err is not None:
            raise err
        return ops

    def feed_into(self, data: bytes, ops: list[tuple]) -> ProtocolError | None:
        """Append complete operations to `ops`; return the first ProtocolError instead of raising."""
        buf = self.buf + data if self.buf else data
        pos = 0
        n = len(buf)
        append = ops.append
        try:
            while pos < n:
                pend = self._pending
                if pend is not None:
                    need, subject, reply, hlen = pend
                    end = pos + need
                    if n < end + 2:
                        break
                    if buf[end:end + 2] != CRLF:
                        # nats-server insists on CRLF after the payload
                        raise ProtocolError(None, detail="missing CRLF after payload")
                    if hlen is None:
                        append((OP_PUB, subject, reply, None, buf[pos:end]))
                    else:
                        append((OP_PUB, subject, reply, buf[pos:pos + hlen], buf[pos + hlen:end]))
                    pos = end + 2
                    self._pending = None
                    continue
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if n - pos > self.max_control_line:
                        raise ProtocolError(ERR_MAX_CONTROL_LINE, "Maximum Control Line Exceeded")
                    # a partial first word that cannot start a known op fails early, as the
                    # server's byte-wise state machine does
                    self._check_prefix(buf, pos, n)
                    break
                line_end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
                line = buf[pos:line_end]
                c = buf[pos] | 0x20
                if c == 112 and len(line) > 3 and line[:3].upper() == b"PUB" and line[3] in b" \t":  # PUB
                    if line_end - pos > self.max_control_line:
                        raise ProtocolError(ERR_MAX_CONTROL_LINE, "Maximum Control Line Exceeded")
                    args = line[4:].split()
                    la = len(args)
                    if la == 2:
                        subject, size = args[0], _parse_size(args[1])
                        reply = None
                    elif la == 3:
                        subject, reply, size = args[0], args[1], _parse_size(args[2])
                    else:
                        raise ProtocolError(None, detail="wrong number of PUB arguments")
                    if size > self.max_payload:
                        raise ProtocolError(ERR_MAX_PAYLOAD, "Maximum Message Payload Exceeded")
                    pos = nl + 1
                    end = pos + size
                    if n >= end + 2 and buf[end] == 13 and buf[end + 1] == 10:
                        append((OP_PUB, subject, reply, None, buf[pos:end]))
                        pos = end + 2
                    else:
                        self._pending = (size, subject, reply, None)
                    continue
                pos = self._control(buf, pos, nl, line_end, line, append)
        except ProtocolError as e:
            self.buf = b""
            self._pending = None
            return e
        self.buf = buf[pos:] if pos < n else b""
        return None

    _PREFIXES = (b"PUB", b"HPUB", b"SUB", b"UNSUB", b"PING", b"PONG", b"CONNECT", b"INFO", b"+OK", b"-ERR")

    def _check_prefix(self, buf: bytes, pos: int, n: int) -> None:
        word = buf[pos:min(n, pos + 8)].upper()
        if not word:
            return
        for p in self._PREFIXES:
            k = min(len(word), len(p))
            if word[:k] == p[:k] and (len(word) <= len(p) or word[len(p)] in b" \t\r"):
                return
        if word[:1] in b"\r":
            return
        raise ProtocolError(ERR_UNKNOWN_OP)

    def _control(self, buf: bytes, pos: int, nl: int, line_end: int, line: bytes, append) -> int:
        if line_end - pos > self.max_control_line:
            raise ProtocolError(ERR_MAX_CONTROL_LINE, "Maximum Control Line Exceeded")
        parts = line.split(None, 1)
        if not parts:
            raise ProtocolError(ERR_UNKNOWN_OP)
        op = parts[0].upper()
        rest = parts[1] if len(parts) > 1 else b""
        nxt = nl + 1
        if op == b"HPUB":
            if not self.headers:
                raise ProtocolError(None, detail="message headers not supported")
            args = rest.split()
            if len(args) == 3:
                subject, reply, hs, ts = args[0], None, args[1], args[2]
            elif len(args) == 4:
                subject, reply, hs, ts = args
            else:
                raise ProtocolError(None, detail="wrong number of HPUB arguments")
            hlen, total = _parse_size(hs), _parse_size(ts)
            if hlen > total:
                raise ProtocolError(None, detail="header size larger than total")
            if total > self.max_payload:
                raise ProtocolError(ERR_MAX_PAYLOAD, "Maximum Message Payload Exceeded")
            n = len(buf)
            end = nxt + total
            if n >= end + 2 and buf[end:end + 2] == CRLF:
                append((OP_PUB, subject, reply, buf[nxt:nxt + hlen], buf[nxt + hlen:end]))
                return end + 2
            self._pending = (total, subject, reply, hlen)
            return nxt
        if op == b"SUB":
            args = rest.split()
            if len(args) == 2:
                append((OP_SUB, args[0], None, args[1]))
            elif len(args) == 3:
                append((OP_SUB, args[0], args[1], args[2]))
            else:
                raise ProtocolError(None, detail="wrong number of SUB arguments")
            return nxt
        if op == b"PING" and not rest.strip():
            append((OP_PING,))
            return nxt
        if op == b"PONG" and not rest.strip():
            append((OP_PONG,))
            return nxt
        if op == b"UNSUB":
            args = rest.split()
            if len(args) == 1:
                append((OP_UNSUB, args[0], None))
            elif len(args) == 2:
                append((OP_UNSUB, args[0], _parse_size(args[1])))
            else:
                raise ProtocolError(None, detail="wrong number of UNSUB arguments")
            return nxt
        if op == b"CONNECT":
            append((OP_CONNECT, rest))
            return nxt
        if op == b"INFO":
            append((OP_INFO, rest))
            return nxt
        if op == b"+OK":
            append((OP_OK,))
            return nxt
        if op == b"-ERR":
            append((OP_ERR, rest))
            return nxt
        if op == b"PUB":
            raise ProtocolError(None, detail="wrong number of PUB arguments")
        raise ProtocolError(ERR_UNKNOWN_OP)


class ClientParser(_Base):
    """Parses what a server sends to a client: INFO, MSG, HMSG, PING, PONG, +OK, -ERR."""

    __slots__ = ()

    def __init__(self, max_control_line: int = 64 * 1024) -> None:
        super().__init__(max_control_line)

    def feed(self, data: bytes) -> list[tuple]:
        buf = self.buf + data if self.buf else data
        pos = 0
        n = len(buf)
        ops: list[tuple] = []
        while pos < n:
            pend = self._pending
            if pend is not None:
                need, subject, sid, reply, hlen = pend
                end = pos + need
                if n < end + 2:
                    break
                hdr = buf[pos:pos + hlen] if hlen is not None else None
                ops.append((OP_MSG, subject, sid, reply, hdr, buf[pos + (hlen or 0):end]))
                pos = end + 2
                self._pending = None
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            line_end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
            line = buf[pos:line_end]
            parts = line.split(None, 1)
            op = parts[0].upper() if parts else b""
            rest = parts[1] if len(parts) > 1 else b""
            pos = nl + 1
            if op == b"MSG":
                a = rest.split()
                if len(a) == 3:
                    self._pending = (int(a[2]), a[0], a[1], None, None)
                else:
                    self._pending = (int(a[3]), a[0], a[1], a[2], None)
            elif op == b"HMSG":
                a = rest.split()
                if len(a) == 4:
                    self._pending = (int(a[3]), a[0], a[1], None, int(a[2]))
                else:
                    self._pending = (int(a[4]), a[0], a[1], a[2], int(a[3]))
            elif op == b"PING":
                ops.append((OP_PING,))
            elif op == b"PONG":
                ops.append((OP_PONG,))
            elif op == b"+OK":
                ops.append((OP_OK,))
            elif op == b"-ERR":
                ops.append((OP_ERR, rest.strip().strip(b"'")))
            elif op == b"INFO":
                ops.append((OP_INFO, rest))
            else:
                raise ProtocolError(ERR_UNKNOWN_OP)
        self.buf = buf[pos:] if pos < n else b""
        return ops
