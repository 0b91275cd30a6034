"""The `/accountz` and `/accstatz` documents (nats-server `monitor.go`), as plain functions.

`accountz(server, query)` lists accounts, or with `acc=<name>` returns `account_detail` for one
(exports, imports, mappings, JWT, counts); `accstatz(server, query)` returns per-account traffic
counters, for accounts with connections unless `unused` is true. Queries are flat dicts of
strings; the HTTP layer (transport/monitor.py) and `$SYS` requests both call these.
"""

from __future__ import annotations

from typing import Any

from ..core.clock import rfc3339


def _truthy(v: str | None) -> bool:
    return str(v or "").lower() in ("1", "true", "yes", "on")


def accountz(server: Any, query: dict[str, str]) -> dict[str, Any]:
    b = server.broker
    out: dict[str, Any] = {"server_id": b.server_id, "now": rfc3339(b.clock.now_ns()),
                           "system_account": b.system_account.name}
    name = query.get("acc") or query.get("account")
    if name:
        acc = b.accounts.get(name)
        if acc is None:
            mgr = b.subsystems.get("accounts")
            acc = mgr.get(name) if mgr is not None else None
        if acc is not None:
            out["account_detail"] = account_detail(server, acc)
        return out
    out["accounts"] = sorted(b.accounts)
    return out


def account_detail(server: Any, acc: Any) -> dict[str, Any]:
    b = server.broker
    mgr = b.subsystems.get("accounts")
    st = mgr.states.get(acc.name) if mgr is not None else None
    claims = st.claims if st is not None else None
    now_ns = b.clock.now_ns()
    d: dict[str, Any] = {
        "account_name": acc.name,
        "update_time": rfc3339(int(st.updated * 1e9) if st else now_ns),
        "is_system": acc is b.system_account,
        "expired": bool(claims is not None and claims.expires and claims.expires * 1e9 <= now_ns),
        "complete": True,
        "jetstream_enabled": acc.jetstream is not None,
        "leafnode_connections": acc.num_leafnodes(),
        "client_connections": acc.num_connections(),
        "subscriptions": acc.sublist.count,
        "sublist_stats": acc.sublist.stats() if hasattr(acc.sublist, "stats") else {},
    }
    if st is not None and st.mappings:
        d["mappings"] = {src: _dests(v) for src, v in st.mappings.items()}
    if st is not None:
        if st.exports:
            d["exports"] = [e.to_dict() for e in st.exports]
        if st.imports:
            d["imports"] = [i.to_dict() for i in st.imports]
        if st.replies:
            d["responses"] = [{"subject": k, "type": p.rtype} for k, p in st.replies.items()]
    if claims is not None:
        d["jwt"] = acc.jwt
        d["issuer_key"] = claims.issuer
        d["name_tag"] = claims.name
        if claims.tags:
            d["tags"] = claims.tags
        d["decoded_jwt"] = claims.payload
        if claims.revocations:
            d["revoked_user"] = {k: rfc3339(int(v) * 1_000_000_000)
                                 for k, v in claims.revocations.items()}
    return d


def _dests(value: Any) -> list[dict[str, Any]]:
    """A mapping's destinations in /accountz form (`destination`, `weight`, `cluster`)."""
    items = value if isinstance(value, list) else [value]
    out = []
    for it in items:
        if isinstance(it, str):
            out.append({"destination": it, "weight": 100})
        elif isinstance(it, dict):
            dest = it.get("destination", it.get("dest", it.get("subject", "")))
            d = {"destination": dest, "weight": int(str(it.get("weight", 100) or 100).rstrip("%"))}
            if it.get("cluster"):
                d["cluster"] = it["cluster"]
            out.append(d)
    return out


def accstatz(server: Any, query: dict[str, str]) -> dict[str, Any]:
    b = server.broker
    unused = _truthy(query.get("unused"))
    wanted = [a for a in (query.get("accounts") or query.get("acc") or "").split(",") if a]
    stats = []
    for a in sorted(b.accounts.values(), key=lambda a: a.name):
        if wanted and a.name not in wanted:
            continue
        conns = a.num_connections()
        leafs = a.num_leafnodes()
        if not conns and not leafs and not unused:
            continue
        stats.append({"acc": a.name, "name": a.name, "conns": conns, "leafnodes": leafs,
                      "total_conns": conns + leafs, "num_subscriptions": a.sublist.count,
                      "sent": {"msgs": a.out_msgs, "bytes": a.out_bytes},
                      "received": {"msgs": a.in_msgs, "bytes": a.in_bytes},
                      "slow_consumers": a.slow_consumers})
    return {"server_id": b.server_id, "now": rfc3339(b.clock.now_ns()), "account_statz": stats}
