"""Sans-IO codec for the leaf-node protocol spoken between two servers.

A leaf connection carries INFO, CONNECT, PING, PONG, +OK and -ERR as the client protocol does,
plus the server-to-server operations of nats-server's `leafnode.go`:

    LS+ <subject>\r\n                          interest in a subject
    LS+ <subject> <queue> <weight>\r\n         queue interest; weight = members behind it
    LS- <subject>[ <queue>]\r\n                interest gone
    LMSG <subject> [<reply>] <size>\r\n<payload>\r\n
    LMSG <subject> + <reply> <q1> [<q2> ...] <size>\r\n...   reply and queue groups
    LMSG <subject> | <q1> [<q2> ...] <size>\r\n...           queue groups, no reply
    HMSG <same arguments as LMSG> <hdr-size> <total-size>\r\n<hdr><payload>\r\n

No account token appears: each end binds the connection to exactly one account. The queue list
tells the receiver which of its queue groups the message was meant for; a message without one
is for plain subscriptions only (see edgebus/leaf/routing.py).

`LeafParser` turns bytes from the peer into operation tuples (resumable at any byte); the
`ls_plus`, `ls_minus` and `lmsg` functions build frames. Nothing here does I/O or imports trio
or the core. Operations:

    (OP_INFO, json: bytes)          (OP_CONNECT, json: bytes)
    (OP_PING,) (OP_PONG,) (OP_OK,)  (OP_ERR, text: bytes)          # quotes removed
    (OP_LSUB, subject: bytes, queue: bytes | None, weight: int)   # weight 1 without a queue,
                                                                  # -1 if not a valid number
    (OP_LUNSUB, subject: bytes, queue: bytes | None)
    (OP_LMSG, subject, reply | None, queues: list[bytes] | None, hdr | None, payload)
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from .nats import (ERR_MAX_CONTROL_LINE, ERR_MAX_PAYLOAD, ERR_UNKNOWN_OP, ProtocolError,
                   parse_size)

OP_PING = 4
OP_PONG = 5
OP_CONNECT = 6
OP_INFO = 7
OP_OK = 8
OP_ERR = 9
OP_LSUB = 20
OP_LUNSUB = 21
OP_LMSG = 22

CRLF = b"\r\n"
PING = b"PING\r\n"
PONG = b"PONG\r\n"

# nats-server lets a server peer's control line be 16 times the client limit (queue lists,
# long replies): 64 KiB with the default max_control_line of 4096
LEAF_CONTROL_LINE_FACTOR = 16


def _args(arg: bytes) -> list[bytes]:
    """Split on runs of spaces, tabs, CR and LF, as nats-server's leaf argument parsers do."""
    if b"\t" in arg or b"\r" in arg or b"\n" in arg:
        arg = arg.replace(b"\t", b" ").replace(b"\r", b" ").replace(b"\n", b" ")
    return [a for a in arg.split(b" ") if a]


def _msg_args(args: list[bytes], headers: bool) -> tuple[bytes, bytes | None, list[bytes] | None,
                                                        int, int]:
    """(subject, reply, queues, header size or -1, total size) from LMSG/HMSG arguments."""
    nsz = 2 if headers else 1  # trailing size fields
    la = len(args)
    if la < 1 + nsz:
        raise ProtocolError(None, detail="wrong number of message arguments")
    reply: bytes | None = None
    queues: list[bytes] | None = None
    if la == 1 + nsz:
        pass
    elif la == 2 + nsz:
        reply = args[1]
    else:
        ind = args[1]
        if ind == b"+":
            reply = args[2]
            queues = args[3:la - nsz]
        elif ind == b"|":
            queues = args[2:la - nsz]
        else:
            raise ProtocolError(None, detail=f"bad or missing reply indicator {ind[:32]!r}")
    size = parse_size(args[-1])
    if size < 0:
        raise ProtocolError(None, detail="bad or missing size")
    hsize = -1
    if headers:
        hsize = parse_size(args[-2])
        if hsize < 0:
            raise ProtocolError(None, detail="bad or missing header size")
        if hsize > size:
            raise ProtocolError(None, detail="header size larger than total size")
    return args[0], reply, queues, hsize, size


class LeafParser:
    """Parses what a leaf peer sends. `max_payload` is checked on the control line, before the
    payload is read (nats-server: `Maximum Payload Violation`, then close)."""

    __slots__ = ("buf", "max_payload", "max_control_line", "_pending")

    def __init__(self, max_payload: int = 1024 * 1024, max_control_line: int = 4096) -> None:
        self.buf = b""
        self.max_payload = max_payload
        self.max_control_line = max_control_line * LEAF_CONTROL_LINE_FACTOR
        # (subject, reply, queues, hdr size or -1, total size) of a message awaiting its payload
        self._pending: tuple[Any, ...] | None = None

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        """Every complete operation in the bytes seen so far; raises ProtocolError (after
        which the parser must not be used again: the connection closes)."""
        ops: list[tuple[Any, ...]] = []
        err = self.feed_into(data, ops)
        if err is not None:
            raise err
        return ops

    def feed_into(self, data: bytes | bytearray, ops: list[tuple[Any, ...]]) -> ProtocolError | None:
        """Append complete operations to `ops`; return a ProtocolError instead of raising, so
        the operations parsed before the violation still reach the caller."""
        # (bytes(data) is data itself when it is bytes, as a socket read gives)
        buf = self.buf + data if self.buf else bytes(data)
        n = len(buf)
        pos = 0
        append = ops.append
        try:
            while pos < n:
                pend = self._pending
                if pend is not None:
                    subject, reply, queues, hsize, size = pend
                    end = pos + size
                    if n < end + 2:
                        break
                    if buf[end] != 13 or buf[end + 1] != 10:
                        raise ProtocolError(ERR_UNKNOWN_OP, "Parse Error", "payload not followed by CRLF")
                    if hsize < 0:
                        append((OP_LMSG, subject, reply, queues, None, buf[pos:end]))
                    else:
                        append((OP_LMSG, subject, reply, queues, buf[pos:pos + hsize],
                                buf[pos + hsize:end]))
                    self._pending = None
                    pos = end + 2
                    continue
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if n - pos > self.max_control_line:
                        raise ProtocolError(ERR_MAX_CONTROL_LINE, "Maximum Control Line Exceeded")
                    break
                if nl - pos > self.max_control_line:
                    raise ProtocolError(ERR_MAX_CONTROL_LINE, "Maximum Control Line Exceeded")
                line = buf[pos:nl - 1] if nl > pos and buf[nl - 1] == 13 else buf[pos:nl]
                pos = nl + 1
                self._line(line, append)
        except ProtocolError as e:
            self.buf = b""
            self._pending = None
            return e
        self.buf = buf[pos:] if pos < n else b""
        return None

    def _line(self, line: bytes, append: Callable[[tuple[Any, ...]], None]) -> None:
        # the operation name ends at the first space or tab; names are case-insensitive
        i = 0
        ln = len(line)
        while i < ln and line[i] not in (32, 9):
            i += 1
        op = line[:i].upper()
        rest = line[i:].lstrip(b" \t")
        if op == b"LMSG" or op == b"HMSG":
            if i == ln:
                raise ProtocolError(ERR_UNKNOWN_OP, "Parse Error")
            subject, reply, queues, hsize, size = _msg_args(_args(rest), op == b"HMSG")
            if size > self.max_payload:
                raise ProtocolError(ERR_MAX_PAYLOAD, "Maximum Message Payload Exceeded")
            self._pending = (subject, reply, queues, hsize, size)
        elif op == b"LS+":
            a = _args(rest)
            if len(a) == 1:
                append((OP_LSUB, a[0], None, 1))
            elif len(a) == 3:
                append((OP_LSUB, a[0], a[1], parse_size(a[2])))
            else:
                raise ProtocolError(None, detail="wrong number of LS+ arguments")
        elif op == b"LS-":
            a = _args(rest)
            if len(a) == 1:
                append((OP_LUNSUB, a[0], None))
            elif len(a) == 2:
                append((OP_LUNSUB, a[0], a[1]))
            else:
                raise ProtocolError(None, detail="wrong number of LS- arguments")
        elif op == b"PING":
            append((OP_PING,))
        elif op == b"PONG":
            append((OP_PONG,))
        elif op == b"INFO":
            append((OP_INFO, rest))
        elif op == b"CONNECT":
            append((OP_CONNECT, rest))
        elif op == b"-ERR":
            append((OP_ERR, rest.strip().strip(b"'")))
        elif op == b"+OK":
            append((OP_OK,))
        else:
            raise ProtocolError(ERR_UNKNOWN_OP, "Parse Error")


# -- serializers ----------------------------------------------------------------------------
def ls_plus(subject: bytes, queue: bytes | None = None, weight: int = 1) -> bytes:
    if queue:
        return b"LS+ %s %s %d\r\n" % (subject, queue, weight)
    return b"LS+ " + subject + CRLF


def ls_minus(subject: bytes, queue: bytes | None = None) -> bytes:
    if queue:
        return b"LS- " + subject + b" " + queue + CRLF
    return b"LS- " + subject + CRLF


def lmsg(subject: bytes, reply: bytes | None, queues: Iterable[bytes] | None,
         hdr: bytes | None, payload: bytes) -> bytes:
    """LMSG (or HMSG when `hdr` is given: the caller drops headers the peer cannot take)."""
    parts = [b"HMSG " if hdr is not None else b"LMSG ", subject, b" "]
    if queues:
        if reply:
            parts += (b"+ ", reply, b" ")
        else:
            parts.append(b"| ")
        for q in queues:
            parts += (q, b" ")
    elif reply:
        parts += (reply, b" ")
    if hdr is not None:
        hl = len(hdr)
        parts += (b"%d %d\r\n" % (hl, hl + len(payload)), hdr, payload, CRLF)
    else:
        parts += (b"%d\r\n" % len(payload), payload, CRLF)
    return b"".join(parts)


def err_frame(text: str) -> bytes:
    return b"-ERR '" + text.encode() + b"'\r\n"


def connect_frame(json_bytes: bytes) -> bytes:
    return b"CONNECT " + json_bytes + CRLF
