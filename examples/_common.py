"""Shared bits for the examples: pick the server URL, or start an embedded edgebus."""

from __future__ import annotations

import argparse
import contextlib
from typing import Iterator


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    p = argparse.ArgumentParser()
    p.add_argument("--server", default="nats://127.0.0.1:4222")
    p.add_argument("--embedded", action="store_true", help="start an in-process edgebus")
    args = p.parse_args()
    if args.embedded:
        from edgebus import EmbeddedServer
        with EmbeddedServer() as srv:
            yield srv.client_url
    else:
        yield args.server
