"""Shared bits for the examples: pick the server URL, or start an embedded edgebus."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def server(jetstream: bool = False, config: str | None = None) -> Iterator[Any]:
    """`--server URL` (default nats://127.0.0.1:4222), or `--embedded`: an in-process edgebus
    with the given options, yielded itself (its `.client_url`, `.mqtt_url`...)."""
    p = argparse.ArgumentParser()
    p.add_argument("--server", default="nats://127.0.0.1:4222")
    p.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="MQTT listener (mqtt examples)")
    p.add_argument("--embedded", action="store_true", help="start an in-process edgebus")
    args = p.parse_args()
    if args.embedded:
        from edgebus import EmbeddedServer
        with EmbeddedServer(jetstream=jetstream, config=config) as srv:
            yield srv
    else:
        yield argparse.Namespace(client_url=args.server, mqtt_url=args.mqtt)


@contextlib.contextmanager
def server_url(jetstream: bool = False) -> Iterator[str]:
    with server(jetstream) as srv:
        yield srv.client_url
