"""A TCP proxy that cuts a link on demand (for leaf-link outage tests and the flap benchmark).

`LinkProxy(target_port).start()` listens on 127.0.0.1:`port` and relays every connection to
127.0.0.1:`target_port`. `cut()` closes every relayed connection at once (both peers see the
connection drop, as when a cable is pulled and the keepalive or the write fails) and, until
`restore()`, refuses new ones: each is accepted and closed straight away, so a dialer retries
on its own reconnect timer. `connections` counts the connections relayed so far, so a test can
wait for the dialer to be back through the proxy.

One thread with a selector relays everything; this is test scaffolding, not part of edgebus.
"""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Optional


class LinkProxy:
    def __init__(self, target_port: int, port: int = 0, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", port))
        self._lsock.listen(64)
        self._lsock.setblocking(False)
        self.port = self._lsock.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._peer: dict[socket.socket, socket.socket] = {}
        self._pending: dict[socket.socket, bytearray] = {}
        self._lock = threading.Lock()
        self._cut = False
        self._cut_now = False
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.connections = 0
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "LinkProxy":
        self._sel.register(self._lsock, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="link-proxy", daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        """Drop every relayed connection now and refuse new ones until `restore`."""
        with self._lock:
            self._cut = True
            self._cut_now = True
        self._wake()
        # wait until the relay thread has dropped them, so the caller knows the link is down
        while True:
            with self._lock:
                if not self._cut_now:
                    return
            threading.Event().wait(0.005)

    def restore(self) -> None:
        with self._lock:
            self._cut = False
        self._wake()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def close(self) -> None:
        self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        for s in list(self._peer):
            s.close()
        self._lsock.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> "LinkProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- relay thread ---------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drop(self, s: socket.socket) -> None:
        for x in (s, self._peer.get(s)):
            if x is None or x not in self._peer:
                continue
            try:
                self._sel.unregister(x)
            except (KeyError, ValueError):
                pass
            self._peer.pop(x, None)
            self._pending.pop(x, None)
            try:
                x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            x.close()

    def _accept(self) -> None:
        try:
            c, _ = self._lsock.accept()
        except OSError:
            return
        if self._cut:
            c.close()
            return
        try:
            u = socket.create_connection(self.target, timeout=2)
        except OSError:
            c.close()
            return
        for s in (c, u):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._peer[c], self._peer[u] = u, c
        self._sel.register(c, selectors.EVENT_READ, "data")
        self._sel.register(u, selectors.EVENT_READ, "data")
        self.connections += 1

    def _relay(self, s: socket.socket) -> None:
        try:
            data = s.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(s)
            return
        dst = self._peer[s]
        buf = self._pending.get(dst)
        if buf:
            buf += data
            return
        try:
            n = dst.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._drop(s)
            return
        if n < len(data):
            self._pending[dst] = bytearray(data[n:])
            self._sel.modify(dst, selectors.EVENT_READ | selectors.EVENT_WRITE, "data")

    def _flush(self, s: socket.socket) -> None:
        buf = self._pending.get(s)
        if not buf:
            return
        try:
            n = s.send(buf)
        except BlockingIOError:
            return
        except OSError:
            self._drop(s)
            return
        del buf[:n]
        if not buf:
            self._pending.pop(s, None)
            self._sel.modify(s, selectors.EVENT_READ, "data")

    def _run(self) -> None:
        while not self._stop:
            for key, ev in self._sel.select(0.5):
                s = key.fileobj
                if key.data == "wake":
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                elif key.data == "accept":
                    self._accept()
                elif s in self._peer:
                    if ev & selectors.EVENT_WRITE:
                        self._flush(s)  # type: ignore[arg-type]
                    if s in self._peer and ev & selectors.EVENT_READ:
                        self._relay(s)  # type: ignore[arg-type]
            with self._lock:
                if self._cut_now:
                    for s in list(self._peer):
                        self._drop(s)
                    self._cut_now = False
