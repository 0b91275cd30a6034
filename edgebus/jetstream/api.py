"""The `$JS.API.>` router and the account / stream API handlers.

Each JetStream account's internal client subscribes to `$JS.API.>` (and, with a JetStream
domain, `$JS.<domain>.API.>`, forwarded the way nats-server's domain mappings do). Requests are
queued from the (synchronous) subscription callback to one worker task, which runs the
handler registered for the subject pattern and publishes its JSON reply:
`{"type": "io.nats.jetstream.api.v1.<x>_response", ...}` or, when the handler raises a
`JSError`, `{"type": ..., "error": {"code", "err_code", "description"}}`.

Other modules add handlers with `register(pattern, handler, response_type)`; the consumer
layer registers CONSUMER.* this way from `consumer_api.py`. A handler is
`async def handler(req: ApiRequest) -> dict | None` (None = send nothing).

`DIRECT.GET` and `CONSUMER.MSG.NEXT` are answered by the stream/consumer's own subscriptions,
never here; when nothing else is subscribed the router answers like nats-server would have
(no responders) instead of "bad request".
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import trio

from ..codec.json_depth import loads
from ..core.client import Msg
from ..core.clock import parse_rfc3339, rfc3339
from ..core.subject import subject_matches, subjects_collide
from .config import _Decoder, StreamConfig, check_update, set_static_metadata
from .errors import (
    BAD_REQUEST,
    INVALID_JSON,
    JSError,
    NO_MESSAGE_FOUND,
    NOT_EMPTY_REQUEST,
    NOT_ENABLED_FOR_ACCOUNT,
    SEQUENCE_NOT_FOUND,
    STREAM_CREATE,
    STREAM_GENERAL,
    STREAM_INVALID_CONFIG,
    STREAM_MISMATCH,
    STREAM_MSG_DELETE_FAILED,
    STREAM_NAME_PATH_SEPARATORS,
    STREAM_NOT_FOUND,
    STREAM_PURGE_FAILED,
    STREAM_REPLICAS_NOT_SUPPORTED,
    STREAM_SEALED,
    STREAM_UPDATE,
    js_err,
)
from .store.base import StoreError
from .store.fileio import describe
from .stream import Stream, seq_from_time

if TYPE_CHECKING:
    from .service import JetStreamService, JSAccount

log = logging.getLogger("edgebus.jetstream")

API_PREFIX = "$JS.API."
TYPE_PREFIX = "io.nats.jetstream.api.v1."
SYSTEM_RESPONSE = TYPE_PREFIX + "system_response"
NAMES_LIMIT = 1024
LIST_LIMIT = 256
MAX_SUBJECT_DETAILS = 100_000
REQUEST_QUEUE_LIMIT = 10_000
_NO_RESPONDERS = b"NATS/1.0 503\r\n\r\n"
# answered by stream / consumer subscriptions, not by the router (nats-server client.go)
_NOT_ROUTED = ("$JS.API.DIRECT.GET", "$JS.API.CONSUMER.MSG.NEXT.")
# system-account-only requests that nats-server's router ignores in other accounts
_IGNORED = ("$JS.API.META.LEADER.STEPDOWN", "$JS.API.SERVER.REMOVE")
_IGNORED_PREFIX = "$JS.API.ACCOUNT."


@dataclass
class ApiRequest:
    """One API request as handlers see it. `subject` is always the `$JS.API.…` form."""

    js: "JSAccount"
    subject: str
    tokens: list[str]
    reply: str | None
    hdr: bytes | None
    data: bytes
    client: Any = None  # the publishing Client, if any
    reply_hdr: bytes | None = None  # headers a handler wants on its answer (a stream identity)

    def token(self, i: int) -> str:
        """The i-th dot-separated token (0-based) or ''."""
        return self.tokens[i] if i < len(self.tokens) else ""

    def is_empty(self) -> bool:
        """nats-server `isEmptyRequest`: no body, `{}` or a JSON object without keys."""
        d = self.data
        if not d or d == b"{}":
            return True
        try:
            v = loads(d)
        except ValueError:
            return False
        return isinstance(v, dict) and not v

    def is_json_object(self) -> bool:
        """nats-server `isJSONObjectOrArray`: first non-blank byte is `{` or `[`."""
        s = self.data.lstrip(b" \t\r\n")
        return bool(s) and s[:1] in (b"{", b"[")

    def json(self) -> Any:
        """The parsed body (None when empty); malformed -> JSError 10025."""
        if not self.data.strip():
            return None
        try:
            return loads(self.data)
        except (ValueError, UnicodeDecodeError) as e:
            raise js_err(INVALID_JSON, err=_json_error_text(e)) from None


def _json_error_text(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at offset {e.pos}"
    return str(e)


Handler = Callable[[ApiRequest], Awaitable["dict[str, Any] | None"]]


@dataclass
class _Route:
    pattern: str
    handler: Handler
    response_type: str
    error_fields: dict[str, Any] | None = None


_ROUTES: list[_Route] = []


def register(pattern: str, handler: Handler, response_type: str,
             error_fields: dict[str, Any] | None = None) -> None:
    """Route `$JS.API.<pattern>` (tokens may be `*` / trailing `>`) to `handler`.

    `response_type` is the full `type` string, e.g.
    `io.nats.jetstream.api.v1.consumer_create_response`; `error_fields` are keys nats-server
    also sends next to an error (its non-omitempty zero values, e.g. `{"purged": 0}`). A later
    registration of the same pattern replaces the earlier one; the most specific (longest)
    pattern wins on overlap."""
    for r in _ROUTES:
        if r.pattern == pattern:
            r.handler, r.response_type, r.error_fields = handler, response_type, error_fields
            return
    _ROUTES.append(_Route(pattern, handler, response_type, error_fields))
    _ROUTES.sort(key=lambda r: (-len(r.pattern.split(".")), r.pattern.count("*") + r.pattern.count(">")))


def _find_route(rest: str) -> _Route | None:
    for r in _ROUTES:
        if subject_matches(rest, r.pattern):
            return r
    return None


def to_json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class ApiRouter:
    """Per-account API subscriptions and the worker that runs handlers in order."""

    def __init__(self, service: "JetStreamService") -> None:
        self.service = service
        self._send, self._recv = trio.open_memory_channel[tuple["JSAccount", Msg, str]](REQUEST_QUEUE_LIMIT)
        self._subs: dict[str, list[Any]] = {}

    def attach(self, js: "JSAccount") -> None:
        c = js.client
        subs = [c.subscribe("$JS.API.>", lambda sub, msg: self._on_request(js, msg, msg.subject))]
        dom = self.service.domain
        if dom:
            pre = f"$JS.{dom}.API."
            subs.append(c.subscribe(pre + ">", lambda sub, msg: self._on_domain(js, msg, pre)))
        self._subs[js.account.name] = subs

    def detach(self, js: "JSAccount") -> None:
        for s in self._subs.pop(js.account.name, []):
            js.client.unsubscribe(s)

    # -- intake (synchronous, on the publisher's task) ------------------------------------
    def _on_domain(self, js: "JSAccount", msg: Msg, pre: str) -> None:
        """`$JS.<domain>.API.X` behaves as nats-server's mapping to `$JS.API.X` (and
        `$JS.<domain>.API.$KV.>` / `$OBJ.>` to `$KV.>` / `$OBJ.>`)."""
        rest = msg.subject[len(pre):]
        if rest.startswith("$KV.") or rest.startswith("$OBJ."):
            target = rest
        else:
            target = API_PREFIX + rest
        n = js.account.route(Msg(target, msg.reply, msg.hdr, msg.data, msg.src))
        if n == 0:
            self._no_responders(js, msg)

    def _no_responders(self, js: "JSAccount", msg: Msg) -> None:
        src = msg.src
        if msg.reply and src is not None and getattr(src, "no_responders", False):
            js.client.publish(msg.reply, None, _NO_RESPONDERS, b"")

    def _on_request(self, js: "JSAccount", msg: Msg, subject: str) -> None:
        if subject.startswith(_NOT_ROUTED):
            # only the router heard it: nobody serves this stream/consumer
            r = js.account.sublist.match(subject)
            if len(r.psubs) + len(r.qsubs) <= 1:
                self._no_responders(js, msg)
            return
        if subject in _IGNORED or subject.startswith(_IGNORED_PREFIX):
            return
        try:
            self._send.send_nowait((js, msg, subject))
        except trio.WouldBlock:
            log.warning("JetStream API queue limit reached, dropping request on %s", subject)

    def not_enabled(self, sub: Any, msg: Msg) -> None:
        """Any `$JS.API.…` request in an account without JetStream: 503/10039."""
        subject = msg.subject
        client = sub.client
        if subject.startswith(_NOT_ROUTED):
            r = client.account.sublist.match(subject)
            if len(r.psubs) + len(r.qsubs) <= 1 and msg.reply and msg.src is not None \
                    and getattr(msg.src, "no_responders", False):
                client.publish(msg.reply, None, _NO_RESPONDERS, b"")
            return
        if subject in _IGNORED or subject.startswith(_IGNORED_PREFIX) or not msg.reply:
            return
        route = _find_route(subject[len(API_PREFIX):])
        body = {"type": route.response_type if route else SYSTEM_RESPONSE,
                "error": js_err(NOT_ENABLED_FOR_ACCOUNT).to_json()}
        client.publish(msg.reply, None, None, to_json_bytes(body))

    # -- the worker ----------------------------------------------------------------------
    async def worker(self) -> None:
        async for js, msg, subject in self._recv:
            try:
                await self._dispatch(js, msg, subject)
            except Exception:
                log.exception("JetStream API handler failed for %s", subject)

    async def _dispatch(self, js: "JSAccount", msg: Msg, subject: str) -> None:
        svc = self.service
        rest = subject[len(API_PREFIX):]
        route = _find_route(rest)
        req = ApiRequest(js, subject, subject.split("."), msg.reply, msg.hdr, msg.data, msg.src)
        if route is None:
            body: dict[str, Any] | None = {"type": SYSTEM_RESPONSE, "error": js_err(BAD_REQUEST).to_json()}
        else:
            try:
                res = route.handler(req)
                if inspect.isawaitable(res):
                    res = await res
                if res is None:
                    return
                body = {"type": route.response_type}
                body.update(res)
            except JSError as e:
                body = {"type": route.response_type, "error": e.to_json()}
                if route.error_fields:
                    body.update(route.error_fields)
        # counted once answered, as nats-server does (INFO shows the requests before it)
        js.api_total += 1
        svc.api_total += 1
        if "error" in body:
            js.api_errors += 1
            svc.api_errors += 1
        if msg.reply:
            hdr = req.reply_hdr if "error" not in body else None
            js.client.publish(msg.reply, None, hdr, to_json_bytes(body))


# ---------------------------------------------------------------------------------------------
# Request decoding helpers
# ---------------------------------------------------------------------------------------------

def _obj(req: ApiRequest, struct: str) -> tuple[_Decoder, dict[str, Any]]:
    v = req.json()
    if v is None:
        return _Decoder(struct), {}
    if not isinstance(v, dict):
        raise js_err(INVALID_JSON, err=f"json: cannot unmarshal {type(v).__name__} into Go value "
                                       f"of type server.{struct}")
    return _Decoder(struct), v


def _paged(req: ApiRequest, struct: str, subject_key: str | None) -> tuple[int, str]:
    if not req.is_json_object():
        return 0, ""
    d, o = _obj(req, struct)
    offset = max(d.int_(o.get("offset"), "offset", "int"), 0)
    subj = d.str_(o.get(subject_key), subject_key) if subject_key else ""
    return offset, subj


def _stream_or_404(req: ApiRequest, name: str) -> Stream:
    s = req.js.lookup(name)
    if s is None:
        raise js_err(STREAM_NOT_FOUND)
    return s


# ---------------------------------------------------------------------------------------------
# Account and stream handlers
# ---------------------------------------------------------------------------------------------

async def account_info(req: ApiRequest) -> dict[str, Any]:
    return req.js.stats_json()


async def stream_create(req: ApiRequest) -> dict[str, Any]:
    svc = req.js.service
    d, o = _obj(req, "StreamConfigRequest")
    cfg = StreamConfig.from_json(o)
    pedantic = d.bool_(o.get("pedantic"), "pedantic")
    set_static_metadata(cfg)
    name = req.token(4)
    if name != cfg.name:
        raise js_err(STREAM_MISMATCH)
    if "/" in name or "\\" in name:
        raise js_err(STREAM_NAME_PATH_SEPARATORS)
    if cfg.sealed:
        raise js_err(STREAM_INVALID_CONFIG, err="stream configuration for create can not be sealed")
    if cfg.mirror_direct and cfg.mirror is None:
        raise js_err(STREAM_INVALID_CONFIG, err="stream has no mirror but does have mirror direct")
    ncfg, existing = svc.check_new_stream(req.js, cfg, pedantic)
    if existing is None:
        try:
            stream = await svc.create_stream(req.js, ncfg)
        except JSError:
            raise
        except Exception as e:
            log.warning("Stream create failed for '%s > %s': %s", req.js.account.name, name, e,
                        exc_info=True)
            raise js_err(STREAM_CREATE, err="error creating store for stream") from e
        stream_advisory(req.js, stream.name, "create")
    else:
        stream = existing
    info = stream.info()
    info.pop("cluster", None)
    info.pop("domain", None)
    info["did_create"] = True
    return info


async def stream_update(req: ApiRequest) -> dict[str, Any]:
    js = req.js
    d, o = _obj(req, "StreamConfigRequest")
    ncfg = StreamConfig.from_json(o)
    pedantic = d.bool_(o.get("pedantic"), "pedantic")
    from .config import check_stream_config
    checked = check_stream_config(ncfg, pedantic=pedantic, lookup=js.lookup_config, limits=js.limits)
    name = req.token(4)
    if name != checked.name:
        raise js_err(STREAM_MISMATCH)
    stream = _stream_or_404(req, name)
    if checked.num_replicas > 1:
        raise js_err(STREAM_REPLICAS_NOT_SUPPORTED)
    set_static_metadata(ncfg)
    cfg = check_update(stream.config, ncfg, pedantic=pedantic, lookup=js.lookup_config,
                       limits=js.limits,
                       reserved=lambda c, add: js.check_reservation(c, add, exclude=c.name))
    old = stream.config
    if (old.consumer_limits != cfg.consumer_limits):
        bad = _consumers_violating(stream, cfg)
        if bad:
            raise js_err(STREAM_UPDATE, err="change to limits violates consumers: " + ", ".join(bad))
    js.service.check_overlap(js, cfg.subjects, stream.name)
    stream.apply_config(cfg)
    await stream.persist_config()
    stream_advisory(js, stream.name, "modify")
    info = stream.info()
    info.pop("cluster", None)
    return info


_ACTION_SUBJECTS = {"create": "CREATED", "modify": "UPDATED", "delete": "DELETED"}


def stream_advisory(js: "JSAccount", stream: str, action: str) -> None:
    """`$JS.EVENT.ADVISORY.STREAM.{CREATED,UPDATED,DELETED}.<stream>`, only when someone listens."""
    subject = f"$JS.EVENT.ADVISORY.STREAM.{_ACTION_SUBJECTS[action]}.{stream}"
    if not js.account.sublist.has_interest(subject):
        return
    try:
        from .advisories import nuid
        event_id = nuid()
    except ImportError:  # pragma: no cover - advisories ship with the consumer layer
        import secrets
        event_id = secrets.token_hex(11)
    body: dict[str, Any] = {"type": "io.nats.jetstream.advisory.v1.stream_action", "id": event_id,
                            "timestamp": rfc3339(js.service.clock.now_ns()), "stream": stream,
                            "action": action}
    if js.service.domain:
        body["domain"] = js.service.domain
    js.client.publish(subject, None, None, to_json_bytes(body))


def _consumers_violating(stream: Stream, cfg: StreamConfig) -> list[str]:
    lim_it = cfg.consumer_limits.get("inactive_threshold", 0)
    lim_map = cfg.consumer_limits.get("max_ack_pending", 0)
    bad = []
    for name, c in stream.consumers.items():
        cc = getattr(c, "cfg", None) or getattr(c, "config", None)
        it = getattr(cc, "inactive_threshold", 0) or 0
        mp = getattr(cc, "max_ack_pending", 0) or 0
        if it > lim_it or mp > lim_map:
            bad.append(name)
    return sorted(bad)


async def stream_delete(req: ApiRequest) -> dict[str, Any]:
    if not req.is_empty():
        raise js_err(NOT_EMPTY_REQUEST)
    stream = _stream_or_404(req, req.token(4))
    await req.js.service.delete_stream(stream)
    stream_advisory(req.js, stream.name, "delete")
    return {"success": True}


async def stream_info(req: ApiRequest) -> dict[str, Any]:
    details = False
    subjects = ""
    offset = 0
    if req.is_json_object():
        d, o = _obj(req, "JSApiStreamInfoRequest")
        details = d.bool_(o.get("deleted_details"), "deleted_details")
        subjects = d.str_(o.get("subjects_filter"), "subjects_filter")
        offset = max(d.int_(o.get("offset"), "offset", "int"), 0)
    stream = _stream_or_404(req, req.token(4))
    info = stream.info(details)
    paged = {"total": 0, "offset": 0, "limit": 0}
    if subjects:
        totals = stream.store.subjects_totals(subjects)
        n = len(totals)
        if n:
            paged = {"total": n, "offset": offset, "limit": MAX_SUBJECT_DETAILS}
            if offset == 0 and n <= MAX_SUBJECT_DETAILS:
                info["state"]["subjects"] = totals
            else:
                names = sorted(totals)
                start = min(offset, n)
                page = names[start:start + MAX_SUBJECT_DETAILS]
                if page:
                    info["state"]["subjects"] = {k: totals[k] for k in page}
    out: dict[str, Any] = dict(paged)
    out.update(info)
    return out


def _filtered_streams(req: ApiRequest, subject: str) -> list[Stream]:
    streams = list(req.js.streams.values())
    if subject:
        streams = [s for s in streams if any(subjects_collide(subject, x) for x in s.config.subjects)]
    streams.sort(key=lambda s: s.name)
    return streams


async def stream_names(req: ApiRequest) -> dict[str, Any]:
    offset, subject = _paged(req, "JSApiStreamNamesRequest", "subject")
    streams = _filtered_streams(req, subject)
    offset = min(offset, len(streams))
    names = [s.name for s in streams[offset:offset + NAMES_LIMIT]]
    return {"total": len(streams), "offset": offset, "limit": NAMES_LIMIT, "streams": names or None}


async def stream_list(req: ApiRequest) -> dict[str, Any]:
    offset, subject = _paged(req, "JSApiStreamListRequest", "subject")
    streams = _filtered_streams(req, subject)
    offset = min(offset, len(streams))
    infos = []
    for s in streams[offset:offset + LIST_LIMIT]:
        i = s.info()
        i.pop("cluster", None)
        infos.append(i)
    return {"total": len(streams), "offset": offset, "limit": LIST_LIMIT, "streams": infos}


async def stream_purge(req: ApiRequest) -> dict[str, Any]:
    full = True
    filt, seq, keep = "", 0, 0
    if req.is_json_object():
        d, o = _obj(req, "JSApiStreamPurgeRequest")
        seq = d.int_(o.get("seq"), "seq", "uint64")
        filt = d.str_(o.get("filter"), "filter")
        keep = d.int_(o.get("keep"), "keep", "uint64")
        if seq > 0 and keep > 0:
            raise js_err(BAD_REQUEST)
        full = False
    stream = _stream_or_404(req, req.token(4))
    if stream.config.sealed:
        raise js_err(STREAM_SEALED)
    if stream.config.deny_purge:
        raise js_err(STREAM_PURGE_FAILED, err="stream purge not permitted")
    try:
        n = stream.purge(filt, seq, keep, full=full)
    except Exception as e:
        raise js_err(STREAM_GENERAL, err=_failure_text(e, "purge")) from e
    return {"success": True, "purged": n}


def _failure_text(e: Exception, what: str) -> str:
    """What a client is told of a failure inside the store: the store's own errors (which
    name no path) or the errno's text; anything else goes to the log, never to the client."""
    if isinstance(e, StoreError):
        return str(e)
    if isinstance(e, OSError):
        return describe(e)
    log.exception("stream %s failed", what)
    return f"{what} failed"


async def msg_delete(req: ApiRequest) -> dict[str, Any]:
    if req.is_empty():
        raise js_err(BAD_REQUEST)
    d, o = _obj(req, "JSApiMsgDeleteRequest")
    seq = d.int_(o.get("seq"), "seq", "uint64")
    no_erase = d.bool_(o.get("no_erase"), "no_erase")
    stream = _stream_or_404(req, req.token(5))
    if stream.config.sealed:
        raise js_err(STREAM_SEALED)
    if stream.config.deny_delete:
        raise js_err(STREAM_MSG_DELETE_FAILED, err="message delete not permitted")
    if stream.is_file:
        # nats-server's file store reports these as store errors rather than "not found"
        st = stream.store.state()
        if seq == 0 or seq < st.first_seq:
            raise js_err(STREAM_MSG_DELETE_FAILED, err="no message found")
        if seq > st.last_seq:
            raise js_err(STREAM_MSG_DELETE_FAILED, err="stream store EOF")
    try:
        removed = stream.delete_msg(seq, erase=not no_erase)
    except Exception as e:
        raise js_err(STREAM_MSG_DELETE_FAILED, err=_failure_text(e, "message delete")) from e
    if not removed:
        raise js_err(SEQUENCE_NOT_FOUND, seq=seq)
    return {"success": True}


@dataclass
class MsgGetRequest:
    """JSApiMsgGetRequest (shared with DIRECT.GET)."""

    seq: int = 0
    last_by_subj: str = ""
    next_by_subj: str = ""
    batch: int = 0
    max_bytes: int = 0
    start_time: int | None = None  # ns
    multi_last: list[str] | None = None
    up_to_seq: int = 0
    up_to_time: int | None = None

    @classmethod
    def decode(cls, o: dict[str, Any]) -> "MsgGetRequest":
        d = _Decoder("JSApiMsgGetRequest")
        r = cls()
        r.seq = d.int_(o.get("seq"), "seq", "uint64")
        r.last_by_subj = d.str_(o.get("last_by_subj"), "last_by_subj")
        r.next_by_subj = d.str_(o.get("next_by_subj"), "next_by_subj")
        r.batch = d.int_(o.get("batch"), "batch", "int")
        r.max_bytes = d.int_(o.get("max_bytes"), "max_bytes", "int")
        r.start_time = _time(d, o.get("start_time"), "start_time")
        ml = o.get("multi_last")
        r.multi_last = d.strs(ml, "multi_last") if ml is not None else None
        r.up_to_seq = d.int_(o.get("up_to_seq"), "up_to_seq", "uint64")
        r.up_to_time = _time(d, o.get("up_to_time"), "up_to_time")
        return r


def _time(d: _Decoder, v: Any, path: str) -> int | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise d.fail(path, v, "time.Time")
    try:
        return parse_rfc3339(v)
    except ValueError:
        raise js_err(INVALID_JSON, err=f'parsing time "\\"{v}\\"" as "\\"2006-01-02T15:04:05Z07:00\\""') from None


async def msg_get(req: ApiRequest) -> dict[str, Any]:
    if req.is_empty():
        raise js_err(BAD_REQUEST)
    _, o = _obj(req, "JSApiMsgGetRequest")
    r = MsgGetRequest.decode(o)
    if r.batch > 0 or r.max_bytes > 0:
        raise js_err(BAD_REQUEST)
    if ((r.seq > 0 and r.last_by_subj) or
            (r.seq == 0 and not r.last_by_subj and not r.next_by_subj and r.start_time is None) or
            (r.seq > 0 and r.start_time is not None) or
            (r.start_time is not None and r.last_by_subj) or
            (r.last_by_subj and r.next_by_subj)):
        raise js_err(BAD_REQUEST)
    stream = _stream_or_404(req, req.token(5))
    store = stream.store
    seq = seq_from_time(store, r.start_time) if r.start_time is not None else r.seq
    if seq > 0 and not r.next_by_subj:
        m = store.load_msg(seq)
    elif r.next_by_subj:
        m, _ = store.load_next_msg(r.next_by_subj, seq)
    else:
        m = store.load_last_msg(r.last_by_subj)
    if m is None:
        raise js_err(NO_MESSAGE_FOUND)
    out: dict[str, Any] = {"subject": m.subject, "seq": m.seq}
    if m.hdr:
        out["hdrs"] = base64.b64encode(m.hdr).decode()
    if m.data:
        out["data"] = base64.b64encode(m.data).decode()
    out["time"] = rfc3339(m.ts)
    return {"message": out}


async def stream_cluster_only(req: ApiRequest) -> dict[str, Any]:
    """Leader stepdown / peer remove: standalone servers answer 10010."""
    raise js_err(10010)


_PAGED_ZERO = {"total": 0, "offset": 0, "limit": 0}
_ERROR_FIELDS: dict[str, dict[str, Any]] = {
    "STREAM.INFO.*": _PAGED_ZERO,
    "STREAM.PURGE.*": {"purged": 0},
    "STREAM.LIST": {**_PAGED_ZERO, "streams": []},
    "STREAM.NAMES": {**_PAGED_ZERO, "streams": None},
}
_TYPES = {
    "INFO": ("account_info_response", account_info),
    "STREAM.CREATE.*": ("stream_create_response", stream_create),
    "STREAM.UPDATE.*": ("stream_update_response", stream_update),
    "STREAM.DELETE.*": ("stream_delete_response", stream_delete),
    "STREAM.INFO.*": ("stream_info_response", stream_info),
    "STREAM.NAMES": ("stream_names_response", stream_names),
    "STREAM.LIST": ("stream_list_response", stream_list),
    "STREAM.PURGE.*": ("stream_purge_response", stream_purge),
    "STREAM.MSG.GET.*": ("stream_msg_get_response", msg_get),
    "STREAM.MSG.DELETE.*": ("stream_msg_delete_response", msg_delete),
    "STREAM.LEADER.STEPDOWN.*": ("stream_leader_stepdown_response", stream_cluster_only),
    "STREAM.PEER.REMOVE.*": ("stream_remove_peer_response", stream_cluster_only),
}
for _pattern, (_t, _h) in _TYPES.items():
    register(_pattern, _h, TYPE_PREFIX + _t, _ERROR_FIELDS.get(_pattern))
