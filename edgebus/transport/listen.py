"""Listening sockets: where each listener binds, and binding it with the standard library.

This module imports neither trio nor the rest of the server, so the `edgebus` command can bind
every configured listener and write its ports file before it imports the server (a client
test harness waits for that file; connections made meanwhile wait in the kernel's backlog until
the accept loops run). The services then adopt those sockets (`take`), or bind here themselves
when the server runs embedded.

Addresses follow nats-server: a wildcard host ("0.0.0.0", "::" or empty) listens on every
address, IPv6 included, as Go's `net.Listen` does (one dual-stack socket); a host name listens on
its first address, IPv4 preferred; monitoring binds to `http_host`, which defaults to the client
`host`; WebSocket, MQTT and leaf listeners default to every address whatever `host` says.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")
# the listener names, as nats-server's ports file names them (mqtt and leafnodes are ours)
NATS, MONITORING, WEBSOCKET, MQTT, LEAFNODES = "nats", "monitoring", "websocket", "mqtt", "leafnodes"
_BACKLOG = 0xFFFF  # the kernel caps it at somaxconn


def normalize_port(port: int | None) -> int:
    """nats-server's -1 ("any free port") is the socket API's 0."""
    return 0 if port is None or port < 0 else port


def addresses(o: Any) -> dict[str, tuple[str, int]]:
    """The listeners the options ask for: name -> (host, port) as configured (port may be -1)."""
    out: dict[str, tuple[str, int]] = {NATS: (o.host, o.port)}
    if o.http_port is not None:
        out[MONITORING] = (o.http_host or o.host, o.http_port)
    ws = o.websocket
    if ws is not None and ws.port is not None:
        out[WEBSOCKET] = (ws.host or "0.0.0.0", ws.port)
    mq = o.mqtt
    if mq is not None and mq.port is not None:
        out[MQTT] = (mq.host or "0.0.0.0", mq.port)
    lo = o.leafnodes
    if lo is not None and lo.port is not None and lo.port != 0:
        out[LEAFNODES] = (lo.host or "0.0.0.0", lo.port)
    return out


def bind_tcp(host: str, port: int | None) -> list[socket.socket]:
    """Bind and listen (non-blocking) on host:port; raises OSError (EADDRINUSE...)."""
    port = normalize_port(port)
    if host in WILDCARD_HOSTS:
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        except OSError:  # no IPv6 in this kernel
            return [_listen(socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("0.0.0.0", port))]
        try:
            # one socket for both families, as Go listens on "*"
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            return [_listen(sock, ("::", port))]
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise
            # IPv6 switched off (disable_ipv6): IPv4 only, as Go falls back
            return [_listen(socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("0.0.0.0", port))]
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    # Go listens on one address of a host name, the first IPv4 one if there is one
    fam, typ, proto, _, addr = next((i for i in infos if i[0] == socket.AF_INET), infos[0])
    return [_listen(socket.socket(fam, typ, proto), addr)]


def _listen(sock: socket.socket, addr: Any) -> socket.socket:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_all(o: Any) -> dict[str, list[socket.socket]]:
    """Bind every configured listener; on an error close what was bound and raise
    `BindError` naming the listener."""
    bound: dict[str, list[socket.socket]] = {}
    try:
        for name, (host, port) in addresses(o).items():
            try:
                bound[name] = bind_tcp(host, port)
            except OSError as e:
                raise BindError(name, host, port, e) from e
    except BaseException:
        close_all(bound)
        raise
    return bound


def close_all(bound: dict[str, list[socket.socket]]) -> None:
    for socks in bound.values():
        for s in socks:
            s.close()
    bound.clear()


class BindError(OSError):
    """A listener could not bind; `name` says which (nats, monitoring, websocket...)."""

    def __init__(self, name: str, host: str, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.name, self.host, self.port = name, host, port


def bound_port(socks: list[socket.socket]) -> int:
    return int(socks[0].getsockname()[1])


def take(server: Any, name: str) -> list[socket.socket]:
    """The sockets for listener `name`: those the command bound before the server started, or
    freshly bound ones."""
    pre = getattr(server, "prebound", None)
    if pre and name in pre:
        return pre.pop(name)
    host, port = addresses(server.options)[name]
    return bind_tcp(host, port)


def trio_listeners(socks: list[socket.socket]) -> list[Any]:
    """Wrap bound sockets as trio listeners (trio is imported here, not at module load)."""
    import trio
    return [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in socks]


def url_host(host: str) -> str:
    """The host to put in a URL for a listener on `host` (wildcards: the loopback address)."""
    if host in WILDCARD_HOSTS:
        return "127.0.0.1"
    host = host.strip("[]")
    return f"[{host}]" if ":" in host else host


def port_urls(o: Any, ports: dict[str, int]) -> dict[str, list[str]]:
    """The ports file's content (and `Server.ports`): listener name -> its URLs."""
    addrs = addresses(o)
    out: dict[str, list[str]] = {}
    for name, port in ports.items():
        if not port or name not in addrs:
            continue
        out[name] = [f"{_scheme(o, name)}://{url_host(addrs[name][0])}:{port}"]
    return out


def _scheme(o: Any, name: str) -> str:
    if name == NATS:
        return "nats"
    if name == MONITORING:
        return "http"
    if name == WEBSOCKET:
        return "wss" if o.websocket.tls is not None else "ws"
    if name == MQTT:
        tls = getattr(o.mqtt, "tls", None)
        return "tls" if tls is not None and (tls.cert_file or tls.key_file) else "mqtt"
    return "nats-leaf"


def unmap_v4(addr: str) -> str:
    """A client's address as nats-server reports it: IPv4 clients of a dual-stack listener
    arrive as ::ffff:a.b.c.d."""
    return addr[7:] if addr.startswith("::ffff:") and "." in addr else addr
