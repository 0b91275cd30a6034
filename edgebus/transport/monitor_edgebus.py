"""Monitoring endpoints edgebus adds to nats-server's: `/dashz` and `/logz`.

nats-server has no page and no endpoint for these figures; the status page (transport/dashboard)
reads them beside `/varz`, `/jsz` and `/leafz`. Both are plain `(server, query) -> (status,
body)` functions like the others in monitor.py, computed only when asked: nothing here runs
per message or on a timer.

`/dashz`: connections by kind (`nats`, `websocket`, `mqtt`, `leaf`), the process's CPU time
(the page turns two readings into a percentage), the MQTT figures (connected clients,
sessions, persistent sessions, retained messages) and each configured leaf remote with its
state (`connected`, `connecting`, `retrying`), since when, RTT and the bytes waiting to go up.

`/logz?limit=n`: the last warning and error log lines (edgebus.logring), oldest first.
"""

from __future__ import annotations

import time
from typing import Any

from .. import NATS_VERSION, __version__
from .. import logring
from ..core.clock import rfc3339


def _kinds(b: Any) -> dict[str, int]:
    counts = {"nats": 0, "websocket": 0, "mqtt": 0, "leaf": 0}
    for c in b.clients.values():
        if c.kind == "Leafnode":
            counts["leaf"] += 1
        elif c.kind == "Client":
            t = getattr(c, "type", "nats")
            counts[t if t in counts else "nats"] += 1
    return counts


def _mqtt(server: Any) -> dict[str, int] | None:
    svc = server.services.get("mqtt")
    if svc is None:
        return None
    managers = list(svc.managers.values())
    sessions = [s for m in managers for s in m.sessions.values()]
    return {"clients": len(svc.connections), "sessions": len(sessions),
            "persistent_sessions": sum(1 for s in sessions if not s.clean),
            "retained": sum(len(m.retained) for m in managers)}


def _remote_url(u: Any) -> str:
    """scheme://host:port of a remote, never its user or password."""
    if u is None:
        return ""
    host = u.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{u.scheme}://{host}" + (f":{u.port}" if u.port else "")


def _leaf_remotes(server: Any) -> list[dict[str, Any]]:
    svc = server.services.get("leaf")
    if svc is None:
        return []
    from ..leaf.link import go_duration
    b = server.broker
    links = {id(ln.remote): ln for ln in svc.connected() if ln.remote is not None}
    out = []
    for cfg in svc.remotes:
        ln = links.get(id(cfg))
        d: dict[str, Any] = {
            "url": _remote_url(cfg.cur or (cfg.urls[0] if cfg.urls else None)),
            "account": cfg.account_name or b.global_account.name,
            "attempts": getattr(cfg, "attempts", 0),
            "last_error": getattr(cfg, "last_error", ""),
        }
        if ln is not None:
            d.update(state="connected", since=rfc3339(ln.start_ns), rtt=go_duration(ln.rtt_ns),
                     backlog_bytes=ln.pending_bytes, hub=ln.remote_server)
        else:
            ever_up = getattr(cfg, "down_since_ns", 0)
            d.update(state="retrying" if ever_up or d["attempts"] else "connecting",
                     since=rfc3339(ever_up or b.start_ns), rtt="", backlog_bytes=0, hub="")
        out.append(d)
    return out


def dashz(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    b = server.broker
    return 200, {
        "server_id": b.server_id,
        "now": rfc3339(b.clock.now_ns()),
        "now_ns": b.clock.now_ns(),
        "edgebus_version": __version__,
        "version": NATS_VERSION,
        "cpu_ns": time.process_time_ns(),  # user + system time of the whole process
        "connections": _kinds(b),
        "jetstream": server.services.get("jetstream") is not None,
        "mqtt": _mqtt(server),
        "leaf_remotes": _leaf_remotes(server),
    }


def logz(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    ring = logring.install()
    v = query.get("limit")
    try:
        limit = max(int(v[0]), 0) if v else 0
    except ValueError:  # HTTP queries were checked already; be lenient for other callers
        limit = 0
    lines = []
    for line in ring.recent(limit):
        d = {k: v for k, v in line.items() if k != "time_ns"}
        d["time"] = rfc3339(line["time_ns"])
        lines.append(d)
    return 200, {"server_id": server.broker.server_id, "now": rfc3339(server.broker.clock.now_ns()),
                 "total": ring.total, "lines": lines}
