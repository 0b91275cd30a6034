r"""Raw-socket transcripts of the NATS client protocol: parse, replay, record.

The transcript format is described in protocols/nats/README.md. In short:

    # comment
    OPT: max_payload=64          server option (both servers)
    C: PUB foo 2\r\nhi\r\n       one write by the client (escapes: \r \n \t \\ \xHH, {{a*N}})
    S: +OK\r\n                   bytes the server sends in answer to the writes so far
    END: open | closed           the connection's state after the last step

Replay is deterministic without sleeping: after each group of C writes the runner reads exactly
the bytes the S lines announce; at the end it proves the state (open: PING gets PONG with
nothing unexpected before it; closed: EOF with nothing unexpected before it).
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

TRANSCRIPT_DIR = Path(__file__).resolve().parents[2] / "protocols" / "nats"

# The initial INFO: fields every server must send, and fields only nats-server has (its build,
# JetStream API level, auth-callout key) that a transcript comparison ignores.
INFO_REQUIRED = {"server_id", "server_name", "version", "proto", "go", "host", "port",
                 "headers", "max_payload", "client_id"}
INFO_NATS_ONLY = {"git_commit", "api_lvl", "xkey"}

_REPEAT = re.compile(r"\{\{(.)\*(\d+)\}\}")


def unescape(text: str) -> bytes:
    """Transcript text -> bytes: \\r \\n \\t \\\\ \\xHH escapes and {{c*N}} repeats."""
    text = _REPEAT.sub(lambda m: m.group(1) * int(m.group(2)), text)
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt == "r":
            out += b"\r"
        elif nxt == "n":
            out += b"\n"
        elif nxt == "t":
            out += b"\t"
        elif nxt == "\\":
            out += b"\\"
        elif nxt == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 2
        else:
            raise ValueError(f"bad escape \\{nxt} in {text!r}")
        i += 2
    return bytes(out)


def escape(data: bytes) -> str:
    """Bytes -> transcript text (inverse of unescape, without repeats)."""
    out = []
    for b in data:
        c = chr(b)
        if c == "\r":
            out.append("\\r")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\\":
            out.append("\\\\")
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


@dataclass
class Step:
    writes: list[tuple[int, bytes]] = field(default_factory=list)  # (connection, bytes)
    expect: dict[int, bytes] = field(default_factory=dict)  # connection -> bytes


@dataclass
class Transcript:
    name: str
    title: str
    options: dict[str, int | str | bool]
    steps: list[Step]
    end: dict[int, str]  # connection -> "open" | "closed"
    lines: list[str]

    @property
    def conns(self) -> list[int]:
        return sorted(self.end)

    def expected(self, conn: int = 1) -> bytes:
        return b"".join(s.expect.get(conn, b"") for s in self.steps)


def _opt_value(v: str) -> Any:
    if v in ("true", "false"):
        return v == "true"
    if v[:1] in ("{", "["):
        return json.loads(v)  # a block, e.g. authorization={"token":"x"}
    try:
        return int(v)
    except ValueError:
        return v


_TAG = re.compile(r"^(C|S|END)(\d*)$")


def parse(text: str, name: str = "") -> Transcript:
    steps: list[Step] = []
    options: dict[str, int | str | bool] = {}
    title = ""
    end: dict[int, str] = {}
    cur: Step | None = None
    seen: set[int] = set()
    lines = text.splitlines()
    for ln in lines:
        if not ln.strip():
            continue
        if ln.startswith("#"):
            if not title:
                title = ln.lstrip("# ").strip()
            continue
        tag, sep, rest = ln.partition(": ")
        if not sep:
            tag, rest = ln.rstrip(":"), ""
        if tag == "OPT":
            k, _, v = rest.partition("=")
            options[k.strip()] = _opt_value(v.strip())
            continue
        m = _TAG.match(tag)
        if not m:
            raise ValueError(f"{name}: unknown line {ln!r}")
        kind, conn = m.group(1), int(m.group(2) or 1)
        seen.add(conn)
        if kind == "C":
            if cur is None or cur.expect:
                cur = Step()
                steps.append(cur)
            cur.writes.append((conn, unescape(rest)))
        elif kind == "S":
            if cur is None:
                cur = Step()
                steps.append(cur)
            cur.expect[conn] = cur.expect.get(conn, b"") + unescape(rest)
        else:
            end[conn] = rest.strip()
    for c in seen:
        if end.get(c) not in ("open", "closed"):
            raise ValueError(f"{name}: connection {c} needs END{'' if c == 1 else c}: open|closed")
    return Transcript(name, title, options, steps, end, lines)


def load_all() -> list[Transcript]:
    return [parse(p.read_text(), p.stem) for p in sorted(TRANSCRIPT_DIR.glob("*.txt"))]


# -- talking to a server ------------------------------------------------------------------

class Wire:
    """A blocking raw connection that reads exactly what it is told to expect."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.info = self._read_info()

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        except socket.timeout:
            raise TimeoutError(f"server sent nothing more after {self.buf!r}") from None
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _read_info(self) -> dict:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError("closed before INFO")
        line, _, self.buf = self.buf.partition(b"\r\n")
        assert line.startswith(b"INFO "), line
        return json.loads(line[5:])

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def read_n(self, n: int) -> bytes:
        """Up to n bytes (fewer only if the server closed)."""
        while len(self.buf) < n and self._fill():
            pass
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self) -> bytes:
        """The next whole frame (a MSG/HMSG with its payload); b"" or a partial one at EOF."""
        while True:
            f = frames(self.buf)[:1]
            if f and f[0].endswith(b"\n") and self._frame_complete(f[0]):
                self.buf = self.buf[len(f[0]):]
                return f[0]
            if not self._fill():
                out, self.buf = self.buf, b""
                return out

    @staticmethod
    def _frame_complete(f: bytes) -> bool:
        nl = f.find(b"\n")
        if f[:4] in (b"MSG ", b"HMSG"):
            try:
                return len(f) >= nl + 1 + int(f[:nl].split()[-1]) + 2
            except ValueError:
                return True
        return True

    def read_expected(self, n: int) -> bytes:
        """Whole frames until their normalized form is at least n bytes (or EOF)."""
        got = b""
        while len(normalize(got)) < n:
            f = self.read_frame()
            if not f:
                break
            got += f
        return got

    def read_until(self, marker: bytes) -> bytes:
        while not self.buf.endswith(marker) and marker not in self.buf:
            if not self._fill():
                break
        i = self.buf.find(marker)
        if i < 0:
            out, self.buf = self.buf, b""
            return out
        out, self.buf = self.buf[:i + len(marker)], self.buf[i + len(marker):]
        return out

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def read_idle(self, idle: float) -> bytes:
        """Whatever arrives until the line is quiet for `idle` seconds (recording only)."""
        self.sock.settimeout(idle)
        try:
            while self._fill():
                pass
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(self.timeout)
        out, self.buf = self.buf, b""
        return out

    def close(self) -> None:
        self.sock.close()


INFO_LINE = re.compile(rb"INFO \{.*?\} ?\r\n")


def frames(data: bytes) -> list[bytes]:
    """Split what a server sent into whole frames (a MSG/HMSG frame includes its payload)."""
    out = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            out.append(data[pos:])
            break
        line = data[pos:nl + 1]
        end = nl + 1
        if line[:4] in (b"MSG ", b"HMSG"):
            try:
                end += int(line.split()[-1]) + 2
            except ValueError:
                pass
        out.append(data[pos:end])
        pos = end
    return out


def normalize(data: bytes) -> bytes:
    """Replace INFO lines (server ids, client ids, versions differ) by a placeholder and drop
    the server's keep-alive PINGs (a server may send its first one after about 2 s)."""
    kept = [f for f in frames(data) if f != b"PING\r\n"]
    return INFO_LINE.sub(b"INFO {...}\r\n", b"".join(kept))


@dataclass
class Outcome:
    got: dict[int, bytes]
    end: dict[int, str]
    info: dict[int, dict]


def replay(t: Transcript, port: int, view: Any = None) -> Outcome:
    """Run a transcript's writes against a server; return what it sent and the final states.

    `view(expected_bytes)` adapts each step's expectation (how much to read) for a server that
    is known to answer differently (another protocol version)."""
    wires = {c: Wire(port) for c in t.conns}
    got = {c: b"" for c in wires}
    end: dict[int, str] = {}
    try:
        for step in t.steps:
            for c, data in step.writes:
                wires[c].send(data)
            for c, exp in step.expect.items():
                got[c] += wires[c].read_expected(len(view(exp) if view else exp))
        for c, w in wires.items():
            # prove the final state
            if t.end[c] == "open" and not w.eof and w.send(b"PING\r\n"):
                tail = w.read_until(b"PONG\r\n")
                if tail.endswith(b"PONG\r\n"):
                    got[c] += tail[:-6]
                    end[c] = "open"
                    continue
                got[c] += tail
                end[c] = "closed" if w.eof else "open?"
                continue
            got[c] += w.read_to_eof()
            end[c] = "closed"
        return Outcome(got, end, {c: w.info for c, w in wires.items()})
    finally:
        for w in wires.values():
            w.close()


def check(t: Transcript, out: Outcome) -> list[str]:
    """Differences between a transcript and an outcome (empty list = match)."""
    problems = []
    for c in t.conns:
        got = normalize(out.got[c])
        if got != t.expected(c):
            problems.append(f"connection {c} bytes differ:\n  expected {t.expected(c)!r}\n"
                            f"  got      {got!r}")
        if out.end[c] != t.end[c]:
            problems.append(f"connection {c} is {out.end[c]}, expected {t.end[c]}")
    return problems


def record(t: Transcript, port: int, idle: float = 0.15) -> str:
    """Re-run a transcript's writes against a (reference) server and rewrite its S/END lines."""
    wires = {c: Wire(port) for c in t.conns}

    def tag(kind: str, c: int) -> str:
        return kind if c == 1 else f"{kind}{c}"

    out_lines = [ln for ln in t.lines if ln.startswith("#") or ln.startswith("OPT:")]
    try:
        for step in t.steps:
            for c, data in step.writes:
                # each write is its own step when recording: answers follow what caused them
                out_lines.append(f"{tag('C', c)}: " + _escape_write(data))
                wires[c].send(data)
                for c2, w in wires.items():
                    got = normalize(w.read_idle(idle))
                    for piece in re.split(rb"(?<=\n)", got):
                        if piece:
                            out_lines.append(f"{tag('S', c2)}: " + _escape_write(piece))
        for c, w in wires.items():
            if w.eof:
                e = "closed"
            else:
                w.send(b"PING\r\n")
                tail = w.read_until(b"PONG\r\n")
                e = "open" if tail.endswith(b"PONG\r\n") else "closed"
            out_lines.append(f"{tag('END', c)}: {e}")
    finally:
        for w in wires.values():
            w.close()
    return "\n".join(out_lines) + "\n"


def _escape_write(data: bytes) -> str:
    # keep long runs compact with the {{c*N}} form
    s = escape(data)
    return re.sub(r"(.)\1{31,}", lambda m: "{{%s*%d}}" % (m.group(1), len(m.group(0))), s)


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def nats_config(options: dict) -> str:
    """nats-server config lines for transcript options."""
    lines = []
    for k, v in options.items():
        lines.append(f"{k}: {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.differential.wire [--record] NAME...`: replay (or re-record) transcripts
    against a fresh nats-server and print the differences."""
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for conftest
    from conftest import RealNatsServer

    ap = argparse.ArgumentParser()
    ap.add_argument("--record", action="store_true", help="rewrite S/END lines from nats-server")
    ap.add_argument("--port", type=int, help="use this running server instead")
    ap.add_argument("--edgebus", action="store_true", help="replay against edgebus")
    ap.add_argument("names", nargs="*")
    a = ap.parse_args(argv)
    paths = [TRANSCRIPT_DIR / f"{n}.txt" for n in a.names] or sorted(TRANSCRIPT_DIR.glob("*.txt"))
    bad = 0
    for p in paths:
        t = parse(p.read_text(), p.stem)
        srv = None
        port = a.port
        if port is None and a.edgebus:
            from edgebus.testing.embedded import EmbeddedServer
            srv = EmbeddedServer(**t.options).start()
            port = srv.port
        elif port is None:
            srv = RealNatsServer(nats_config(t.options)).start()
            port = srv.port
        try:
            if a.record:
                p.write_text(record(t, port))
                print("recorded", p.name)
            else:
                try:
                    probs = check(t, replay(t, port))
                except (TimeoutError, OSError) as e:
                    probs = [f"{type(e).__name__}: {e}"]
                print(("FAIL " if probs else "ok   ") + p.stem, *probs, sep="\n  " if probs else "")
                bad += bool(probs)
        finally:
            if srv is not None:
                srv.stop()
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
