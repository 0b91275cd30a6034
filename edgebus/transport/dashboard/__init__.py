"""The status page served at `/` on the monitoring port: static HTML, CSS and a small script
shipped in this package (no build step, nothing fetched from outside: the gateway may have no
internet).

Polling, not server-sent events: the script fetches `/varz`, `/dashz`, `/leafz`, `/logz` and
(with JetStream) `/jsz?streams=true&consumers=true` once a second. Each answer comes from the
same handler a `curl` gets, so the page shows exactly what the JSON says; the server keeps no
per-viewer task, no open stream and no history (the rate plots live in the page), so it does
nothing at all while no one looks, and a phone that sleeps or a proxy that buffers costs
nothing either. SSE would save a few requests a second per viewer, at the price of a
long-lived response per viewer, a timer task per viewer on the server, and a second way to
produce the same figures.

`--no-dashboard` (or `dashboard: false` in the config) turns the page off: `/` is then the
plain list of endpoints and the assets answer 404; every JSON endpoint stays.
"""

from __future__ import annotations

from importlib import resources

#: URL path -> (file in this package, content type)
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
}

#: Sent with the page: only this origin's own scripts, styles and fetches.
SECURITY_HEADERS: list[tuple[str, str]] = [
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
     "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-cache"),
]

_cache: dict[str, bytes] = {}


def asset(path: str) -> tuple[str, bytes] | None:
    """(content type, body) of the page file served at `path`, or None."""
    entry = ASSETS.get(path)
    if entry is None:
        return None
    name, ctype = entry
    body = _cache.get(name)
    if body is None:
        body = _cache[name] = resources.files(__name__).joinpath(name).read_bytes()
    return ctype, body
