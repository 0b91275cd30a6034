"""One configured remote: its URL pool, its credentials, and dialing it.

Follows nats-server's `leafNodeCfg`: the configured URLs are shuffled once (unless
`no_randomize`); each attempt takes the next URL; URLs the hub announces in `leafnode_urls`
join the pool in front of the configured ones; user and password found in any configured URL
are kept for announced URLs that carry none. After a loop, a same-cluster-name refusal or a
permission violation the next attempt waits longer (`connect_delay`).

Schemes: `nats-leaf://`, `nats://` and `tls://` are TCP (TLS when the scheme is `tls`, the
remote has a `tls {}` block, or the hub's INFO requires it); `ws://` and `wss://` are
WebSocket to `<path>/leafnode`.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import trio

from ..options import LeafRemote, TLSOptions

log = logging.getLogger("edgebus.leaf")

DEFAULT_PORTS = {"nats-leaf": 7422, "nats": 7422, "tls": 7422, "ws": 80, "wss": 443}
DIAL_TIMEOUT = 2.0  # nats-server uses the route dial timeout for leaf remotes


def is_ws(u: SplitResult) -> bool:
    return u.scheme in ("ws", "wss")


def hostport(u: SplitResult) -> tuple[str, int]:
    return u.hostname or "127.0.0.1", u.port or DEFAULT_PORTS.get(u.scheme, 7422)


class RemoteCfg:
    """State kept for one `remotes` entry across connections."""

    def __init__(self, opts: LeafRemote, index: int = 0) -> None:
        self.opts = opts
        self.index = index
        # for the status page (/dashz): failed dials in a row, the last dial error, and when
        # the last link to this remote went down (0: never connected)
        self.attempts = 0
        self.last_error = ""
        self.down_since_ns = 0
        self.configured = [urlsplit(u if "://" in u else "nats-leaf://" + u) for u in opts.urls]
        self.urls = list(self.configured)
        if not opts.no_randomize:
            random.shuffle(self.urls)
        self.cur: SplitResult | None = None
        self.username = ""
        self.password = ""
        self.tls_name = ""
        self.tls = opts.tls is not None
        for u in self.urls:
            self._remember(u)
            if u.scheme in ("wss", "tls"):
                self.tls = True
        self.connect_delay = 0.0
        self.perms: Any = None  # set from remote deny lists by the link
        # async check(ssl_stream) of the hub's certificate chain (tls.ocsp_peer), set by the
        # service; raises ssl.SSLError when the hub is refused
        self.peer_check: Any = None

    @property
    def account_name(self) -> str | None:
        return self.opts.account

    def _remember(self, u: SplitResult) -> None:
        if not self.tls_name and u.hostname and not _is_ip(u.hostname):
            self.tls_name = u.hostname
        if not self.username and u.username is not None:
            self.username = unquote(u.username)
            self.password = unquote(u.password) if u.password is not None else ""

    def pick_next(self) -> SplitResult:
        """nats-server's pickNextURL: the current URL, if first, goes to the end of the pool."""
        if self.cur is not None and len(self.urls) > 1 and _same(self.cur, self.urls[0]):
            self.urls.append(self.urls.pop(0))
        self.cur = self.urls[0]
        return self.cur

    def update_urls(self, announced: list[str]) -> None:
        """The hub's `leafnode_urls` (or `ws_connect_urls` for WebSocket remotes)."""
        ws = bool(self.configured) and is_ws(self.configured[0])
        scheme = ("wss" if self.tls else "ws") if ws else "nats-leaf"
        urls = []
        for hp in announced:
            try:
                u = urlsplit(f"{scheme}://{hp}")
                _ = u.port
            except ValueError:
                continue
            if any(u.hostname == c.hostname and u.port == c.port for c in self.configured):
                continue
            urls.append(u)
            self._remember(u)
        self.urls = urls + list(self.configured)

    def credentials_for(self, u: SplitResult) -> tuple[str, str, bool]:
        """(user, password, password given) for CONNECT: the URL's own, else remembered."""
        if u.username is not None:
            return unquote(u.username), unquote(u.password or ""), u.password is not None
        if self.username:
            return self.username, self.password, bool(self.password)
        return "", "", False

    def describe(self) -> str:
        u = self.cur or (self.urls[0] if self.urls else None)
        if u is None:
            return "<no url>"
        h, p = hostport(u)
        return f"{h}:{p}"


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False


def _same(a: SplitResult, b: SplitResult) -> bool:
    return a.hostname == b.hostname and a.port == b.port and a.scheme == b.scheme


def client_tls_context(tls: TLSOptions | None) -> ssl.SSLContext:
    """The context for dialing a hub: its CA (or the system's), our certificate if any."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                     cafile=tls.ca_file if tls and tls.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is not None and tls.cert_file and tls.key_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls is not None and tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def dial(u: SplitResult, timeout: float = DIAL_TIMEOUT) -> trio.SocketStream:
    host, port = hostport(u)
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(host, port)
    try:
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    except OSError:
        pass
    return stream


async def start_tls(stream: trio.abc.Stream, cfg: RemoteCfg, u: SplitResult) -> trio.SSLStream:
    """Client-side TLS handshake (verifying the hub against the remembered host name)."""
    tls = cfg.opts.tls
    ctx = client_tls_context(tls)
    name = cfg.tls_name or u.hostname or None  # an address is checked against IP SANs
    ssl_stream = trio.SSLStream(stream, ctx, server_hostname=name)
    with trio.fail_after(tls.timeout if tls else 2.0):
        await ssl_stream.do_handshake()
    if cfg.peer_check is not None:
        await cfg.peer_check(ssl_stream, f"Leafnode {cfg.describe()}: ")
    return ssl_stream
