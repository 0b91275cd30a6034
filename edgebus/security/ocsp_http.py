"""A small HTTP(S) GET client on trio and h11, for asking OCSP responders.

No blocking I/O on the event loop: the caller bounds the whole exchange (`trio.fail_after`
with the `ca_timeout`). Redirects are followed as Go's HTTP client (which nats-server uses)
follows them; a body larger than `MAX_RESPONSE` is refused. Failures are OSError.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urljoin, urlsplit

import trio

MAX_RESPONSE = 1 << 20  # an OCSP response is a few KB; refuse to buffer more than this
MAX_REDIRECTS = 10  # as Go's http.Client, which nats-server uses


async def http_get(url: str) -> bytes:
    """GET `url` (http or https), following redirects, and return the body of the 200
    answer; raises OSError."""
    for _ in range(MAX_REDIRECTS + 1):
        status, location, body = await _get_once(url)
        if status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise OSError(f"bad OCSP responder http status: [{status}]")
        return body
    raise OSError(f"stopped after {MAX_REDIRECTS} redirects")


async def _get_once(url: str) -> tuple[int, str, bytes]:
    """One GET: (status, Location header, body)."""
    import h11
    u = urlsplit(url)
    https = u.scheme == "https"
    host = u.hostname or ""
    port = u.port or (443 if https else 80)
    stream: Any = await trio.open_tcp_stream(host, port)
    try:
        if https:
            stream = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=host)
        conn = h11.Connection(h11.CLIENT)
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        await stream.send_all(conn.send(h11.Request(
            method="GET", target=target,
            headers=[("Host", u.netloc.rpartition("@")[2]), ("User-Agent", "edgebus"),
                     ("Accept", "application/ocsp-response"), ("Connection", "close")]))
            + conn.send(h11.EndOfMessage()))
        body = bytearray()
        status = 0
        location = ""
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if isinstance(ev, h11.Response):
                status = ev.status_code
                location = dict(ev.headers).get(b"location", b"").decode("latin-1")
            elif isinstance(ev, h11.Data):
                body += ev.data
                if len(body) > MAX_RESPONSE:
                    raise OSError("OCSP response too large")
            elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        return status, location, bytes(body)
    except h11.RemoteProtocolError as e:
        raise OSError(f"bad HTTP answer: {e}") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
        raise OSError(str(e) or "connection lost") from None
    finally:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(1):  # a TLS close_notify to a dead responder must not hang
                await stream.aclose()
