"""A client-protocol socket read by hand, for what nats-py will not send or the tests want to
see line by line; each test file builds its own small client on it (`from rawclient import
RawSocket`). Also `wait_for_info`, for a server started as a child process."""

from __future__ import annotations

import socket
import subprocess
import time


class RawSocket:
    """A TCP connection to a NATS server: lines and payloads as the server sent them."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def line(self) -> bytes:
        """The next protocol line, without its CRLF."""
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read(self, n: int) -> bytes:
        """A payload of `n` bytes (its trailing CRLF read and dropped)."""
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def wait_for_info(p: subprocess.Popen, port: int, what: str = "edgebus child") -> subprocess.Popen:
    """`p` once a connection to 127.0.0.1:`port` gets an INFO line (within 15 s); otherwise
    `p` is killed and RuntimeError raised."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                if s.recv(4096).startswith(b"INFO"):
                    return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"{what} did not start")
