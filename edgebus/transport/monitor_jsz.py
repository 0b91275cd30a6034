"""`/jsz`: JetStream monitoring data, shaped like nats-server's `JSInfo` (monitor.go `Jsz`).

`jsz(server, query)` takes the already flattened query string (`acc`, `accounts`, `streams`,
`consumers`, `direct-consumers`, `config`, `leader-only`, `offset`, `limit`, `raft`) and returns
the JSON object; the HTTP layer (monitor.py) serves it.
"""

from __future__ import annotations

from typing import Any

from ..core.clock import rfc3339

DEFAULT_LIMIT = 1024


def _bool(query: dict[str, Any], key: str) -> bool:
    v = query.get(key)
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    return str(v).lower() in ("1", "true", "t", "yes", "on", "")


def _int(query: dict[str, Any], key: str) -> int:
    try:
        return int(query.get(key) or 0)
    except (TypeError, ValueError):
        return 0


def jsz(server: Any, query: dict[str, Any]) -> dict[str, Any]:
    """The /jsz document for `server`; `query` maps option name -> value (strings ok)."""
    b = server.broker
    out: dict[str, Any] = {"server_id": b.server_id, "now": rfc3339(b.clock.now_ns())}
    svc = server.services.get("jetstream")
    if svc is None:
        out["disabled"] = True
        return out
    acc_name = query.get("acc") or ""
    consumers = _bool(query, "consumers")
    streams = _bool(query, "streams") or consumers
    accounts = _bool(query, "accounts") or (streams and not acc_name)
    direct = _bool(query, "direct-consumers")
    config = _bool(query, "config")
    offset = max(_int(query, "offset"), 0)
    limit = _int(query, "limit") or DEFAULT_LIMIT

    out.update(svc.stats_json())
    out["config"] = svc.config_json()
    out["limits"] = {}
    n_streams = n_consumers = n_msgs = n_bytes = 0
    for js in svc.accounts.values():
        for s in js.streams.values():
            st = s.store.state()
            n_streams += 1
            n_msgs += st.msgs
            n_bytes += st.bytes
            n_consumers += len(s.consumers)
    out["streams"] = n_streams
    out["consumers"] = n_consumers
    out["messages"] = n_msgs
    out["bytes"] = n_bytes
    out["total"] = len(svc.accounts)

    selected = []
    if acc_name and acc_name in svc.accounts:
        selected = [svc.accounts[acc_name]]
    elif accounts:
        ordered = sorted(svc.accounts.values(), key=lambda j: j.account.name)
        selected = ordered[min(offset, len(ordered)):][:limit]
    if selected:
        out["account_details"] = [_account_detail(svc, js, streams, consumers, direct, config)
                                  for js in selected]
    return out


def _account_detail(svc: Any, js: Any, streams: bool, consumers: bool, direct: bool,
                    config: bool) -> dict[str, Any]:
    mem, store = js.usage()
    d: dict[str, Any] = {
        "name": js.account.name,
        "id": js.account.name,
        "memory": mem,
        "storage": store,
        "reserved_memory": max(js.limits.max_memory, 0),
        "reserved_storage": max(js.limits.max_storage, 0),
        "accounts": 0,
        "ha_assets": 0,
        "api": {"level": svc.stats_json()["api"]["level"], "total": js.api_total,
                "errors": js.api_errors},
    }
    if streams:
        leaf = svc.server.services.get("leaf") if hasattr(svc, "server") else None
        uplinks = list(getattr(leaf, "uplinks", ()))
        details = []
        for s in sorted(js.streams.values(), key=lambda x: x.name):
            sd: dict[str, Any] = {"name": s.name, "created": rfc3339(s.created),
                                  "cluster": {"leader": svc.server_name}}
            if config:
                sd["config"] = s.config.to_json()
            sd["state"] = s.state_dict()
            if consumers:
                # public consumers, then (on request) the direct ones a mirror or source made
                # here, e.g. a hub's source of this stream: nats-server's two lists
                infos: list[dict[str, Any]] = []
                dinfos: list[dict[str, Any]] = []
                for c in list(s.consumers.values()):
                    if getattr(c, "closed", False):
                        continue
                    is_direct = getattr(getattr(c, "cfg", None), "direct", False)
                    if is_direct and not direct:
                        continue
                    info_fn = getattr(c, "info", None)
                    if info_fn is None:
                        continue
                    ci = dict(info_fn())
                    ci.pop("type", None)
                    if not config:
                        ci.pop("config", None)
                    (dinfos if is_direct else infos).append(ci)
                if infos:
                    sd["consumer_detail"] = infos
                if dinfos:
                    sd["direct_consumer_detail"] = dinfos
            sourcing = getattr(s, "sourcing", None)
            if sourcing is not None:
                sd.update(sourcing.info_json())  # mirror / sources with lag and active
            ups = [u.info() for u in uplinks if u.stream is s]
            if ups:
                sd["uplinks"] = ups  # edgebus's edge-driven uplinks of this stream
            details.append(sd)
        if details:
            d["stream_detail"] = details
    return d
