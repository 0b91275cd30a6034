"""edgebus: a pure-Python, trio-based broker that speaks NATS.

Public face: `Server`, `Options`, `serve()` (an async context manager for trio code) and
`EmbeddedServer` (a thread-backed server usable from any code).
"""

__version__ = "0.1.0"
# The nats-server version we emulate and advertise: clients gate features on it.
NATS_VERSION = "2.11.0"

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


__all__ = ["Options", "Server", "serve", "EmbeddedServer", "__version__", "NATS_VERSION"]
