"""edgebus: a pure-Python, trio-based broker that speaks NATS.

Public face: `Server`, `Options`, `serve()` (an async context manager for trio code; its
`await server.connect()` gives the in-process client of `edgebus.client`) and
`EmbeddedServer` (a thread-backed server usable from any code).
"""

import sys as _sys

__version__ = "0.1.0"
# The nats-server version we emulate and advertise: clients gate features on it. 2.11, not
# 2.12: the client-visible 2.12 features (atomic batch publish, message schedules, counters,
# mirror promotion, persist_mode) are not implemented, and a client told 2.12 would use them.
NATS_VERSION = "2.11.0"
# What runs the server, where nats-server names its Go runtime (/varz "go"): not protocol.
RUNTIME = f"edgebus {__version__} (Python {'.'.join(map(str, _sys.version_info[:3]))})"

from .options import Options  # noqa: E402


def __getattr__(name: str):
    # lazy so that `import edgebus.codec` stays free of trio and the server
    if name in ("Server", "serve"):
        from . import server
        return getattr(server, name)
    if name == "EmbeddedServer":
        from .testing.embedded import EmbeddedServer
        return EmbeddedServer
    raise AttributeError(name)


__all__ = ["Options", "Server", "serve", "EmbeddedServer", "__version__", "NATS_VERSION", "RUNTIME"]
