"""HTTP monitoring (h11): /varz, /connz, /subsz, /healthz, /routez, /gatewayz, /leafz, /jsz,
/accountz, /accstatz with nats-server's JSON field names, edgebus's /dashz and /logz
(monitor_edgebus.py), and at / the status page (transport/dashboard; a plain index of the
endpoints with `--no-dashboard`). Query strings are checked as nats-server checks them
(monitor_query.py).

Each endpoint is a plain function `(server, query) -> (status, body dict)` so the same data
can be served over `$SYS.REQ.SERVER.*` by the system account.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import h11
import trio

from .. import NATS_VERSION, RUNTIME, logring
from ..core.clock import rfc3339
from ..core.subject import valid_literal_subject
from . import dashboard, listen
from .monitor_edgebus import dashz, logz
from .monitor_query import QueryError, check as check_query, go_quote, parse as parse_query

log = logging.getLogger("edgebus")


def _uptime(seconds: float) -> str:
    """nats-server's compact uptime: largest non-zero unit first, then every smaller unit."""
    s = int(seconds)
    y, s = divmod(s, 365 * 86400)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if y:
        return f"{y}y{d}d{h}h{m}m{s}s"
    if d:
        return f"{d}d{h}h{m}m{s}s"
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _q(query: dict[str, list[str]], key: str, default: str = "") -> str:
    v = query.get(key)
    return v[0] if v else default


def _qbool(query: dict[str, list[str]], key: str) -> bool:
    # lenient: HTTP queries were checked by monitor_query already; $SYS options come from JSON
    return _q(query, key).lower() in ("1", "t", "true", "yes")


def _qint(query: dict[str, list[str]], key: str, default: int) -> int:
    try:
        return int(_q(query, key, str(default)))
    except ValueError:
        return default


def varz(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    b = server.broker
    o = server.options
    now = b.clock.now_ns()
    # what clients published and were sent, kept by the accounts (so it outlives the clients;
    # the server's own traffic — JetStream, $SYS — is not counted, as in nats-server)
    accs = b.accounts.values()
    in_msgs = sum(a.in_msgs for a in accs)
    out_msgs = sum(a.out_msgs for a in accs)
    in_bytes = sum(a.in_bytes for a in accs)
    out_bytes = sum(a.out_bytes for a in accs)
    subs = sum(a.sublist.count for a in b.accounts.values())
    d: dict[str, Any] = {
        "server_id": b.server_id,
        "server_name": b.server_name,
        "version": NATS_VERSION,
        "proto": 1,
        "go": RUNTIME,  # not protocol: what runs this server (nats-server puts its Go here)
        "host": o.host,
        "port": server.port,
        "auth_required": bool(b.auth.required),
        "max_connections": o.max_connections,
        "max_subscriptions": o.max_subscriptions,
        "ping_interval": int(o.ping_interval * 1e9),
        "ping_max": o.ping_max,
        "http_host": o.http_host or o.host,
        "http_port": server.http_port,
        "http_base_path": "",
        "https_port": 0,
        "auth_timeout": o.auth_timeout if o.auth_timeout is not None else 2.0,
        "max_control_line": o.max_control_line,
        "max_payload": o.max_payload,
        "max_pending": o.max_pending,
        "cluster": {},
        "gateway": {},
        "leaf": {},
        "mqtt": {},
        "websocket": {},
        "jetstream": {},
        "tls_timeout": o.tls.timeout if o.tls else 2.0,
        "write_deadline": int(o.write_deadline * 1e9),
        "start": rfc3339(b.start_ns),
        "now": rfc3339(now),
        "uptime": _uptime((now - b.start_ns) / 1e9),
        "mem": _rss(),
        "cores": os.cpu_count() or 1,
        "gomaxprocs": os.cpu_count() or 1,
        "cpu": 0,
        "connections": b.num_client_connections(),
        "total_connections": b.total_connections,
        "routes": 0,
        "remotes": 0,
        "leafnodes": sum(1 for c in b.clients.values() if c.kind == "Leafnode"),
        "in_msgs": in_msgs,
        "in_bytes": in_bytes,
        "in_client_msgs": in_msgs,
        "in_client_bytes": in_bytes,
        "out_msgs": out_msgs,
        "out_bytes": out_bytes,
        "out_client_msgs": out_msgs,
        "out_client_bytes": out_bytes,
        "slow_consumers": b.slow_consumers,
        "stale_connections": getattr(b, "stale_connections", 0),
        "stalled_clients": 0,
        "slow_consumer_stats": {"clients": b.slow_consumers, "routes": 0, "gateways": 0, "leafs": 0},
        "stale_connection_stats": {"clients": getattr(b, "stale_connections", 0), "routes": 0,
                                   "gateways": 0, "leafs": 0},
        "disk_io_wait_stats": {"waiters": 0, "waits": 0, "wait_time": 0, "max_wait_time": 0},
        "feature_flags": {},
        "subscriptions": subs,
        "http_req_stats": dict(server.http_req_stats) if hasattr(server, "http_req_stats") else {},
        "config_load_time": rfc3339(b.config_load_ns or b.start_ns),
        "tags": list(o.server_tags),
        "system_account": b.system_account.name,
    }
    if o.tls:
        d["tls_required"] = True
        if o.tls.verify:
            d["tls_verify"] = True
    if o.websocket and o.websocket.port is not None:
        d["websocket"] = {"host": o.websocket.host, "port": getattr(server, "ws_port", o.websocket.port),
                          "no_tls": o.websocket.no_tls, "compression": o.websocket.compression,
                          "same_origin": o.websocket.same_origin,
                          "allowed_origins": list(o.websocket.allowed_origins)}
    if o.mqtt and o.mqtt.port is not None:
        d["mqtt"] = {"host": o.mqtt.host, "port": getattr(server, "mqtt_port", o.mqtt.port),
                     "no_auth_user": o.mqtt.no_auth_user or "",
                     "ack_wait": int(o.mqtt.ack_wait * 1e9), "max_ack_pending": o.mqtt.max_ack_pending}
    if o.leafnodes:
        d["leaf"] = {"host": o.leafnodes.host, "port": getattr(server, "leaf_port", o.leafnodes.port or 0)}
    if getattr(server, "ocsp_verifier", None) is not None:
        from ..security.ocsp import varz as ocsp_varz
        ocsp_varz(server, d)
    js = server.services.get("jetstream")
    if js is not None and hasattr(js, "varz"):
        d["jetstream"] = js.varz()
    elif o.jetstream.enabled:
        d["jetstream"] = {"config": {"max_memory": o.jetstream.max_memory_store,
                                     "max_storage": o.jetstream.max_file_store,
                                     "store_dir": o.jetstream.store_dir or "",
                                     "domain": o.jetstream.domain or ""}}
    return 200, d


_SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "cid": lambda c: c["cid"],
    "start": lambda c: c["start"],
    "subs": lambda c: -c["subscriptions"],
    "pending": lambda c: -c["pending_bytes"],
    "msgs_to": lambda c: -c["out_msgs"],
    "msgs_from": lambda c: -c["in_msgs"],
    "bytes_to": lambda c: -c["out_bytes"],
    "bytes_from": lambda c: -c["in_bytes"],
    "last": lambda c: c["last_activity"],
    "idle": lambda c: c["last_activity"],
    "uptime": lambda c: c["start"],
    "stop": lambda c: c.get("stop") or "",
    "reason": lambda c: c.get("reason") or "",
    "rtt": lambda c: c.get("rtt", ""),
}


def connz(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    b = server.broker
    now = b.clock.now_ns()
    state = _q(query, "state", "open").lower()
    sort = _q(query, "sort", "cid")
    if sort not in _SORT_KEYS:
        raise QueryError(f"invalid sorting option: {sort}")
    if sort in ("stop", "reason") and state != "closed":
        raise QueryError(f"sort by {sort} only valid on closed connections")
    infos: list[dict[str, Any]] = []
    if state in ("open", "any", "all"):
        infos += [c.info_for_connz() for c in b.clients.values() if c.kind == "Client"]
    if state in ("closed", "any", "all"):
        infos += list(b.closed_clients)
    offset = max(_qint(query, "offset", 0), 0)
    limit = _qint(query, "limit", 0)
    if limit <= 0:
        limit = 1024
    cid = _qint(query, "cid", 0)
    if cid > 0:
        infos = [i for i in infos if i.get("cid") == cid]
        limit = 1
    acc = _q(query, "acc")
    if acc:
        infos = [i for i in infos if i.get("account") == acc]
    user = _q(query, "user")
    if user:
        infos = [i for i in infos if i.get("authorized_user") == user]
    mqtt_client = _q(query, "mqtt_client")
    if mqtt_client:
        infos = [i for i in infos if i.get("mqtt_client") == mqtt_client]
    infos.sort(key=_SORT_KEYS[sort])
    total = len(infos)
    page = infos[offset:offset + limit]
    subs_q = _q(query, "subs").lower()
    auth = _qbool(query, "auth")
    out = []
    for i in page:
        i = dict(i)
        subs = i.pop("subs", [])
        detail = i.pop("subs_detail", [])
        start_ns = 0
        i["uptime"] = i.get("uptime") or ""
        if subs_q == "detail":
            i["subscriptions_list_detail"] = detail
        elif subs_q in ("1", "t", "true", "yes"):
            i["subscriptions_list"] = subs
        if not auth:
            i.pop("authorized_user", None)
            i.pop("account", None)
        if i.get("stop") is None:
            i.pop("stop", None)
            i.pop("reason", None)
        del start_ns
        out.append(i)
    for i in out:
        c = b.clients.get(i["cid"])
        if c is not None:
            i["uptime"] = _uptime((now - c.start_ns) / 1e9)
            i["idle"] = _uptime((now - c.last_activity_ns) / 1e9)
    return 200, {
        "server_id": b.server_id,
        "now": rfc3339(now),
        "num_connections": len(out),
        "total": total,
        "offset": offset,
        "limit": limit,
        "connections": out,
    }


def subsz(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    b = server.broker
    acc_name = _q(query, "acc")
    accounts = [b.accounts[acc_name]] if acc_name in b.accounts else list(b.accounts.values())
    stats = {"num_subscriptions": 0, "num_cache": 0, "num_inserts": 0, "num_removes": 0,
             "num_matches": 0, "cache_hit_rate": 0.0, "max_fanout": 0, "avg_fanout": 0.0}
    hits = 0
    for a in accounts:
        s = a.sublist.stats()
        for k in ("num_subscriptions", "num_cache", "num_inserts", "num_removes", "num_matches"):
            stats[k] += s[k]
        hits += a.sublist.cache_hits
        stats["max_fanout"] = max(stats["max_fanout"], s["max_fanout"])
    if stats["num_matches"]:
        stats["cache_hit_rate"] = hits / stats["num_matches"]
    d: dict[str, Any] = {"server_id": b.server_id, "now": rfc3339(b.clock.now_ns()), **stats}
    offset = max(_qint(query, "offset", 0), 0)
    limit = _qint(query, "limit", 0)
    if limit <= 0:
        limit = 1024
    test = _q(query, "test")
    if test and not valid_literal_subject(test):
        raise QueryError(f"invalid test subject, must be valid publish subject: {test}")
    if _qbool(query, "subs"):
        lst = []
        for a in accounts:
            if test:
                r = a.sublist.match(test)
                subs = list(r.psubs) + [s for g in r.qsubs for s in g]
            else:
                subs = list(a.sublist.all_subs())
            for s in subs:
                lst.append({"account": a.name, "account_tag": a.name, "subject": s.subject,
                            "qgroup": s.queue or "", "sid": s.sid.decode(errors="replace"),
                            "msgs": s.delivered, "max": s.max,
                            "cid": getattr(s.client, "cid", 0)})
        d["total"] = len(lst)
        d["offset"] = offset
        d["limit"] = limit
        d["subscriptions_list"] = lst[offset:offset + limit]
    else:
        d["total"] = 0
        d["offset"] = offset
        d["limit"] = limit
    return 200, d


def healthz(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    o = server.options
    # nats-server's request checks come first, answered 400 in the health document's shape
    bad = ""
    if _q(query, "stream") and not _q(query, "account"):
        bad = '"account" must not be empty when checking stream health'
    elif _q(query, "consumer") and not _q(query, "stream"):
        bad = '"stream" must not be empty when checking consumer health'
    if bad:
        if _qbool(query, "details"):
            return 400, {"status": "error", "errors": [{"type": "BAD_REQUEST", "error": bad}]}
        return 400, {"status": "error", "error": bad}
    js_only = _qbool(query, "js-enabled-only") or _qbool(query, "js-enabled")
    if not server.running:
        return 500, {"status": "unavailable", "status_code": 500,
                     "error": "server not ready for connections"}
    # nats-server: JetStream off in the config is healthy, even for js-enabled-only
    js = server.services.get("jetstream") if o.jetstream.enabled else None
    if js is not None and not js_only and not _qbool(query, "js-server-only"):
        missing = _missing_asset(js, _q(query, "account"), _q(query, "stream"), _q(query, "consumer"))
        if missing:
            if _qbool(query, "details"):
                return 404, {"status": "error", "errors": [missing]}
            return 404, {"status": "unavailable", "error": missing["error"]}
    if js is not None and hasattr(js, "healthz"):
        err = js.healthz(query)
        if err:
            return 503, {"status": "unavailable", "status_code": 503, "error": err}
    return 200, {"status": "ok", "status_code": 200}


def _missing_asset(js: Any, account: str, stream: str, consumer: str) -> dict[str, str] | None:
    """nats-server's 404 for a /healthz `account`, `stream` or `consumer` that does not exist
    (as a HealthzError); an account counts once it has a stream, as nats-server finds accounts
    by their directories in the store."""
    if not account:
        return None
    jsa = js.accounts.get(account)
    if jsa is None or not jsa.streams:
        return {"type": "ACCOUNT", "account": account,
                "error": f"JetStream account {go_quote(account)} not found"}
    s = jsa.streams.get(stream) if stream else None
    if stream and s is None:
        return {"type": "STREAM", "account": account, "stream": stream,
                "error": f"JetStream stream {go_quote(stream)} not found on account "
                         f"{go_quote(account)}"}
    if consumer and s is not None and consumer not in s.consumers:
        return {"type": "CONSUMER", "account": account, "stream": stream, "consumer": consumer,
                "error": f"JetStream consumer {go_quote(consumer)} not found for stream "
                         f"{go_quote(stream)} on account {go_quote(account)}"}
    return None


def routez(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    b = server.broker
    return 200, {"server_id": b.server_id, "server_name": b.server_name,
                 "now": rfc3339(b.clock.now_ns()), "num_routes": 0, "routes": []}


def gatewayz(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    b = server.broker
    return 200, {"server_id": b.server_id, "now": rfc3339(b.clock.now_ns()), "name": "",
                 "host": "", "port": 0, "outbound_gateways": {}, "inbound_gateways": {}}


def leafz(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    b = server.broker
    leaf = server.services.get("leaf")
    leafs = leaf.leafz(query) if leaf is not None and hasattr(leaf, "leafz") else []
    out = {"server_id": b.server_id, "now": rfc3339(b.clock.now_ns()),
           "leafnodes": len(leafs), "leafs": leafs}
    if leaf is not None and getattr(leaf, "remotes", None):
        out["remotes"] = leaf.remotez()  # edgebus: remotes and their stream sync, even when down
    return 200, out


def jsz(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    try:
        from .monitor_jsz import jsz as _jsz
    except ImportError:
        _jsz = None  # type: ignore[assignment]
    b = server.broker
    if _jsz is None or not server.options.jetstream.enabled:
        if _qbool(query, "leader-only"):  # no JetStream, so not its leader (nats-server)
            raise QueryError("filtered response: not leader")
        return 200, {"server_id": b.server_id, "now": rfc3339(b.clock.now_ns()),
                     "disabled": not server.options.jetstream.enabled}
    flat = {k: v[0] for k, v in query.items() if v}
    return 200, _jsz(server, flat)


def accountz(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    from ..security.monitor_acc import accountz as _accountz
    doc = _accountz(server, {k: v[0] for k, v in query.items() if v})
    name = _q(query, "acc")
    if name and "account_detail" not in doc:
        raise QueryError(f"Account {name} does not exist")
    return 200, doc


def accstatz(server: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
    from ..security.monitor_acc import accstatz as _accstatz
    return 200, _accstatz(server, {k: v[0] for k, v in query.items() if v})


ENDPOINTS: dict[str, Callable[[Any, dict[str, list[str]]], tuple[int, dict[str, Any]]]] = {
    "/varz": varz,
    "/connz": connz,
    "/subsz": subsz,
    "/subscriptionsz": subsz,
    "/healthz": healthz,
    "/routez": routez,
    "/gatewayz": gatewayz,
    "/leafz": leafz,
    "/jsz": jsz,
    "/accountz": accountz,
    "/accstatz": accstatz,
    "/dashz": dashz,  # edgebus's own (monitor_edgebus.py)
    "/logz": logz,
}

_INDEX = """<html><head><title>edgebus monitoring</title></head><body>
<h1>edgebus</h1><p>NATS-compatible monitoring endpoints:</p><ul>
{links}
</ul></body></html>"""


def handle_request(server: Any, target: str) -> tuple[int, str, bytes]:
    """(status, content type, body) for one GET; the h11 loop below only moves bytes."""
    parts = urlsplit(target)
    path = parts.path or "/"  # exact, as nats-server's mux: "/varz/" is not "/varz"
    # Go's Values.Get: an empty first value is no value
    query = {k: v for k, v in parse_query(parts.query).items() if v[0]}
    stats = server.__dict__.setdefault("http_req_stats", {})
    page = dashboard.asset(path) if getattr(server.options, "dashboard", True) else None
    if page is not None:
        if path == "/":
            stats["/"] = stats.get("/", 0) + 1
        return 200, page[0], page[1]
    if path == "/":
        stats["/"] = stats.get("/", 0) + 1
        links = "\n".join(f'<li><a href="{p}">{p}</a></li>' for p in ENDPOINTS)
        return 200, "text/html; charset=utf-8", _INDEX.format(links=links).encode()
    fn = ENDPOINTS.get(path)
    if fn is None:
        return 404, "text/plain; charset=utf-8", b"404 page not found\n"
    stats[path] = stats.get(path, 0) + 1
    try:
        check_query(path, query)
        status, body = fn(server, query)
    except QueryError as e:  # nats-server answers these in plain text
        return 400, "text/plain; charset=utf-8", e.text.encode("utf-8", "surrogateescape")
    except Exception as e:  # a monitoring bug must not break the server
        log.exception("monitoring %s failed", path)
        status, body = 500, {"error": str(e)}
    if path == "/healthz":
        # over HTTP nats-server leaves the status out of the document (it is the response's)
        # and writes it compact; $SYS answers keep it
        body.pop("status_code", None)
        text = json.dumps(body, separators=(",", ":"))
    else:
        text = json.dumps(body, indent=2)
    cb = _q(query, "callback")
    if cb:
        return status, "application/javascript", f"{cb}({text})".encode()
    return status, "application/json", text.encode()


async def _serve_http_conn(server: Any, stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                with trio.move_on_after(30) as cs:
                    data = await stream.receive_some(65536)
                if cs.cancelled_caught:
                    return
                conn.receive_data(data)
                if not data:
                    return
                continue
            if isinstance(event, h11.Request):
                target = event.target.decode("latin-1")
                if event.method not in (b"GET", b"HEAD"):
                    status, ctype, body = 405, "text/plain", b"method not allowed\n"
                else:
                    status, ctype, body = handle_request(server, target)
                headers = [("Content-Type", ctype), ("Content-Length", str(len(body))),
                           ("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))]
                if ctype == "application/json":
                    headers.append(("Access-Control-Allow-Origin", "*"))  # as nats-server
                elif ctype.startswith(("text/html", "text/css", "text/javascript")):
                    headers += dashboard.SECURITY_HEADERS
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
                if event.method != b"HEAD":
                    await stream.send_all(conn.send(h11.Data(data=body)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                continue
            if isinstance(event, (h11.ConnectionClosed,)) or event is h11.PAUSED:
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    try:
                        conn.start_next_cycle()
                        continue
                    except h11.LocalProtocolError:
                        return
                return
            # Data / EndOfMessage of the request: nothing to do
    except (h11.RemoteProtocolError, h11.LocalProtocolError):
        try:
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        except Exception:
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        with trio.CancelScope(shield=True):
            try:
                await stream.aclose()
            except Exception:
                pass


async def serve_monitor(server: Any, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
    o = server.options
    host = listen.addresses(o)[listen.MONITORING][0]
    listeners = listen.trio_listeners(listen.take(server, listen.MONITORING))
    server.http_port = listen.bound_port([ln.socket for ln in listeners])
    log.info("Starting http monitor on %s:%d", host, server.http_port)
    logring.install()  # recent warnings/errors for /logz (the CLI installs it earlier)
    async with trio.open_nursery() as n:
        task_status.started()
        await trio.serve_listeners(lambda s: _serve_http_conn(server, s), listeners, handler_nursery=n)
