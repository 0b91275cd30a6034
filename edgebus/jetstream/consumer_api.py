"""The `$JS.API.CONSUMER.*` handlers, consumer creation rules, and restoring durables at start.

Handlers follow nats-server's `jetstream_api.go` (request forms, checks and error order) and
`addConsumerWithAssignment` in `consumer.go` (defaults, validation, create vs update, work-queue
rules, naming). Each handler takes the account's JetStream state, the request subject and body,
and returns the response JSON or raises `JSError`; `register(api)` plugs them into the router.
MSG.NEXT is not here: every consumer subscribes to its own next-message subject, so a request
for a missing consumer gets "no responders", as with nats-server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

from ..codec.json_depth import loads
from ..core.clock import parse_rfc3339, rfc3339
from ..core.subject import subjects_collide
from .advisories import nuid
from .consumer import Consumer
from .consumer_config import (
    MAX_NAME_LEN,
    ConsumerConfig,
    apply_defaults,
    check_config,
    check_update,
    copy_versioning_metadata,
    err,
    set_static_metadata,
)
from .errors import JSError
from .names import (
    CONSUMER_NAME_INVALID,
    CONSUMER_STORE_FAILED,
    TRASH_PREFIX,
    UnsafePathError,
    fits_file_name,
    has_path_separator,
    valid_name,
)

log = logging.getLogger("edgebus.jetstream.consumer_api")

API_PREFIX = "$JS.API"
NAMES_LIMIT = 1024   # JSApiNamesLimit
LIST_LIMIT = 256     # JSApiListLimit

T_CREATE = "io.nats.jetstream.api.v1.consumer_create_response"
T_INFO = "io.nats.jetstream.api.v1.consumer_info_response"
T_DELETE = "io.nats.jetstream.api.v1.consumer_delete_response"
T_NAMES = "io.nats.jetstream.api.v1.consumer_names_response"
T_LIST = "io.nats.jetstream.api.v1.consumer_list_response"
T_PAUSE = "io.nats.jetstream.api.v1.consumer_pause_response"
T_UNPIN = "io.nats.jetstream.api.v1.consumer_unpin_response"
T_STEPDOWN = "io.nats.jetstream.api.v1.consumer_leader_stepdown_response"

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def server_hash(s: str) -> str:
    """getHash: first 8 bytes of SHA-256, each mapped into base62."""
    d = hashlib.sha256(s.encode()).digest()[:8]
    return "".join(_B62[b % 62] for b in d)


def _is_empty_request(data: bytes) -> bool:
    """isEmptyRequest: nothing, or an empty JSON object."""
    data = data.strip()
    if not data:
        return True
    try:
        v = loads(data)
    except ValueError:
        return False
    return isinstance(v, dict) and not v


def _json_body(data: bytes) -> Any:
    try:
        return loads(data)
    except ValueError as e:
        raise err("JSInvalidJSONErr", err=str(e)) from None


def _lookup_stream(js: Any, name: str) -> Any:
    stream = js.streams.get(name) if js is not None else None
    if stream is None or getattr(stream, "closed", False):
        raise err("JSStreamNotFoundErr")
    return stream


def _lookup_consumer(stream: Any, name: str) -> Consumer:
    o = stream.consumers.get(name)
    if o is None or o.closed:
        raise err("JSConsumerNotFoundErr")
    return o


# -- creation ---------------------------------------------------------------------------------

def add_consumer(stream: Any, cfg: ConsumerConfig, action: str = "", pedantic: bool = False,
                 account_limits: Any = None) -> Consumer:
    """addConsumerWithAssignment (standalone): create, or update an existing consumer."""
    if getattr(stream, "closed", False):
        raise err("JSStreamInvalidErr")
    scfg = stream.config
    acc_max_ack = int(getattr(account_limits, "max_ack_pending", 0) or 0)
    apply_defaults(cfg, scfg, pedantic, server_max_ack_pending=acc_max_ack)
    check_config(cfg, scfg, server_max_ack_pending=acc_max_ack)
    retention = getattr(scfg, "retention", "limits")
    retention = getattr(retention, "value", retention)

    cname = cfg.durable_name or cfg.name
    if cname:
        existing: Consumer | None = stream.consumers.get(cname)
        if existing is not None and not existing.closed:
            if action == "create":
                ocfg = existing.cfg
                cmp = cfg.copy()
                copy_versioning_metadata(cmp, ocfg)
                if cmp != ocfg:
                    raise err("JSConsumerAlreadyExists")
            if retention == "workqueue" and not _partition_unique(stream, cname, cfg.filters):
                raise err("JSConsumerWQConsumerNotUniqueErr")
            update_consumer(existing, cfg)
            return existing
    if action == "update":
        raise err("JSConsumerDoesNotExist")

    maxc = int(getattr(scfg, "max_consumers", 0) or 0)
    lim_maxc = int(getattr(account_limits, "max_consumers", 0) or 0)
    if maxc <= 0 or (0 < lim_maxc < maxc):
        maxc = lim_maxc
    if maxc > 0 and sum(1 for c in stream.consumers.values() if not c.cfg.direct) >= maxc:
        raise err("JSMaximumConsumersLimitErr")

    if retention == "workqueue" and not cfg.direct:
        if cfg.ack_policy != "explicit":
            raise err("JSConsumerWQRequiresExplicitAckErr")
        if stream.consumers:
            filters = cfg.filters
            if not filters:
                raise err("JSConsumerWQMultipleUnfilteredErr")
            if not _partition_unique(stream, cname, filters):
                raise err("JSConsumerWQConsumerNotUniqueErr")
        if cfg.deliver_policy != "all":
            raise err("JSConsumerWQConsumerNotDeliverAllErr")

    if cfg.durable_name:
        if len(cfg.durable_name) > MAX_NAME_LEN:
            raise err("JSConsumerNameTooLongErrF", max=MAX_NAME_LEN)
        name = cfg.durable_name
    elif cfg.name:
        name = cfg.name
    else:
        while True:
            name = server_hash(nuid())
            if name not in stream.consumers:
                break
        # nats-server names the consumer but keeps the generated name out of its config
    check_consumer_name(name)

    o = Consumer(stream, cfg, name)
    if o._persistent() and not fits_file_name(name):
        # a valid NATS name the disk cannot hold (too long, NUL): nats-server's store
        # creation fails and it answers with this text alone
        raise err("JSConsumerCreateErrF", err=CONSUMER_STORE_FAILED)
    try:
        o.write_meta_now()
    except (OSError, UnsafePathError) as e:
        # the cause (with the store's path) is for the operator's log, never for the client
        log.warning("Consumer create failed for '%s > %s': %s", stream.name, name, e)
        raise err("JSConsumerCreateErrF", err=CONSUMER_STORE_FAILED) from None
    stream.consumers[name] = o
    o.start()
    o.advisories.created()
    return o


def check_consumer_name(name: str) -> None:
    """nats-server's consumer name rules, in its order: path separators first (10127), then
    the characters `isValidName` refuses (10052)."""
    if has_path_separator(name):
        raise err("JSConsumerNameContainsPathSeparatorsErr")
    if not valid_name(name):
        raise err("JSStreamInvalidConfigF", err=CONSUMER_NAME_INVALID)


def _partition_unique(stream: Any, name: str, partitions: list[str]) -> bool:
    for p in partitions:
        for n, o in stream.consumers.items():
            if n == name or o.closed:
                continue
            filters = o.cfg.filters
            if not filters:
                return False
            for f in filters:
                if subjects_collide(p, f):
                    return False
    return True


def update_consumer(o: Consumer, cfg: ConsumerConfig) -> None:
    """updateConfig with nats-server's rules (errors wrapped as 10012 unless already API errors)."""
    if o.closed:
        raise err("JSConsumerDoesNotExist")
    # an ephemeral's stamped threshold / a durable's name are not part of what clients resend
    if not cfg.durable_name and cfg.inactive_threshold <= 0:
        cfg.inactive_threshold = o.cfg.inactive_threshold
    check_update(o.cfg, cfg, lambda subj: bool(o.account.sublist.match(subj)))
    if cfg == o.cfg:
        return
    o.update_config(cfg)


# -- handlers -----------------------------------------------------------------------------------

def handle_create(js: Any, subject: str, data: bytes) -> dict[str, Any] | None:
    """CONSUMER.CREATE.<s>[.<c>[.<filter>]] and CONSUMER.DURABLE.CREATE.<s>.<c>."""
    toks = subject.split(".")
    n = len(toks)
    if n < 5:
        return None  # nats-server logs and drops it
    try:
        req = loads(data) if data.strip() else None
        if req is None:
            raise ValueError("unexpected end of JSON input")
        if not isinstance(req, dict):
            raise ValueError("json: cannot unmarshal into Go value of type server.CreateConsumerRequest")
        action = req.get("action") or ""
        if action not in ("", "create", "update"):
            raise ValueError(f'unknown consumer action: "{action}"')
        stream_in_req = req.get("stream_name") or ""
        if not isinstance(stream_in_req, str):
            raise ValueError("json: cannot unmarshal into Go struct field CreateConsumerRequest.stream_name of type string")
        cfg = ConsumerConfig.from_json(req.get("config"))
        pedantic = bool(req.get("pedantic") or False)
    except ValueError as e:
        raise err("JSInvalidJSONErr", err=str(e)) from None

    filtered = ""
    consumer_name = ""
    legacy_durable = False
    legacy_ephemeral = n == 5
    if legacy_ephemeral:
        stream_name = toks[4]
    elif toks[3] == "DURABLE":
        legacy_durable = True
        if n != 7:
            raise err("JSConsumerDurableNameNotInSubjectErr")
        stream_name, consumer_name = toks[5], toks[6]
    else:
        stream_name, consumer_name = toks[4], toks[5]
        if n > 6:
            filtered = ".".join(toks[6:])

    if stream_name != stream_in_req:
        raise err("JSStreamMismatchErr")
    for n in (consumer_name, cfg.name, cfg.durable_name):
        if n and has_path_separator(n):
            raise err("JSConsumerNameContainsPathSeparatorsErr")
    if legacy_durable:
        if not cfg.durable_name:
            raise err("JSConsumerDurableNameNotSetErr")
        if consumer_name != cfg.durable_name:
            raise err("JSConsumerDurableNameNotMatchSubjectErr")
        cfg.name = consumer_name   # as nats-server 2.12+ does (2.11 left it empty)
    elif not legacy_ephemeral:
        if cfg.durable_name and consumer_name != cfg.durable_name:
            raise err("JSConsumerDurableNameNotMatchSubjectErr")
        cfg.name = consumer_name
    if legacy_ephemeral and cfg.durable_name:
        raise err("JSConsumerEphemeralWithDurableNameErr")
    if filtered and cfg.filter_subjects:
        raise err("JSConsumerMultipleFiltersNotAllowed")
    if filtered and cfg.filter_subject != filtered:
        raise err("JSConsumerCreateFilterSubjectMismatchErr")
    if cfg.num_replicas > 1:
        raise err("JSStreamReplicasNotSupportedErr")

    stream = _lookup_stream(js, stream_name)
    cname = cfg.durable_name or cfg.name
    existing = stream.consumers.get(cname) if cname else None
    if existing is not None and not existing.closed:
        # create/update never changes pause_until: that is CONSUMER.PAUSE's job
        cfg.pause_until = existing.cfg.pause_until
    set_static_metadata(cfg)
    try:
        o = add_consumer(stream, cfg, action, pedantic, getattr(js, "limits", None))
    except JSError:
        raise
    except Exception:  # anything unexpected becomes nats-server's generic create error
        log.exception("consumer create failed")
        raise err("JSConsumerCreateErrF", err="consumer create failed") from None
    resp = {"type": T_CREATE, **o.info()}
    if o._paused():
        o.advisories.pause(True, o.cfg.pause_until)
    return resp


def handle_info(js: Any, subject: str, data: bytes) -> dict[str, Any]:
    toks = subject.split(".")
    if not _is_empty_request(data):
        raise err("JSNotEmptyRequestErr")
    stream = _lookup_stream(js, toks[4])
    o = _lookup_consumer(stream, toks[5])
    return {"type": T_INFO, **o.info()}


def handle_delete(js: Any, subject: str, data: bytes) -> dict[str, Any]:
    toks = subject.split(".")
    if not _is_empty_request(data):
        raise err("JSNotEmptyRequestErr")
    stream = _lookup_stream(js, toks[4])
    o = _lookup_consumer(stream, toks[5])
    o.delete(advisory=True)
    return {"type": T_DELETE, "success": True}


def _offset(data: bytes) -> int:
    d = data.strip()
    if d[:1] in (b"{", b"["):
        req = _json_body(d)
        if isinstance(req, dict):
            off = req.get("offset") or 0
            if not isinstance(off, int) or isinstance(off, bool):
                raise err("JSInvalidJSONErr", err="json: cannot unmarshal into Go struct field "
                          "JSApiConsumersRequest.offset of type int")
            return max(off, 0)
    return 0


def _public_consumers(stream: Any) -> list[Consumer]:
    return sorted((c for c in stream.consumers.values() if not c.cfg.direct and not c.closed),
                  key=lambda c: c.name)


def handle_names(js: Any, subject: str, data: bytes) -> dict[str, Any]:
    offset = _offset(data)
    stream = _lookup_stream(js, subject.split(".")[4])
    obs = _public_consumers(stream)
    total = len(obs)
    offset = min(offset, total)
    names = [o.name for o in obs[offset:offset + NAMES_LIMIT]]
    return {"type": T_NAMES, "total": total, "offset": offset, "limit": NAMES_LIMIT,
            "consumers": names}


def handle_list(js: Any, subject: str, data: bytes) -> dict[str, Any]:
    offset = _offset(data)
    stream = _lookup_stream(js, subject.split(".")[4])
    obs = _public_consumers(stream)
    total = len(obs)
    offset = min(offset, total)
    infos = [o.info() for o in obs[offset:offset + LIST_LIMIT]]
    return {"type": T_LIST, "total": total, "offset": offset, "limit": LIST_LIMIT,
            "consumers": infos}


def handle_pause(js: Any, subject: str, data: bytes) -> dict[str, Any]:
    toks = subject.split(".")
    until = 0
    d = data.strip()
    if d[:1] in (b"{", b"["):
        req = _json_body(d)
        if isinstance(req, dict) and req.get("pause_until"):
            v = req["pause_until"]
            if not isinstance(v, str):
                raise err("JSInvalidJSONErr", err="json: cannot unmarshal into Go struct field "
                          "JSApiConsumerPauseRequest.pause_until of type time.Time")
            try:
                until = parse_rfc3339(v)
            except Exception:
                raise err("JSInvalidJSONErr", err=f'parsing time "\\"{v}\\"" as '
                          '"\\"2006-01-02T15:04:05Z07:00\\"": cannot parse') from None
    stream = _lookup_stream(js, toks[4])
    o = _lookup_consumer(stream, toks[5])
    o.pause(until or None)
    now = o.clock.now_ns()
    resp: dict[str, Any] = {"type": T_PAUSE, "paused": bool(until and now < until),
                            "pause_until": rfc3339(until)}
    if until and now < until:
        resp["pause_remaining"] = until - now
    return resp


def handle_leader_stepdown(js: Any, subject: str, data: bytes) -> dict[str, Any]:
    """Standalone servers have no consumer leaders to move: 10010, as nats-server."""
    raise err("JSClusterRequiredErr")


def handle_unpin(js: Any, subject: str, data: bytes) -> dict[str, Any]:
    """CONSUMER.UNPIN (2.11): forget the pinned client of a priority group."""
    toks = subject.split(".")
    group = ""
    if data.strip():
        req = _json_body(data)
        if isinstance(req, dict):
            group = req.get("group") or ""
    if not group:
        raise err("JSInvalidJSONErr", err="consumer group not specified")
    from .consumer_config import _GROUP_NAME_RE
    if not _GROUP_NAME_RE.match(group):
        raise err("JSConsumerInvalidGroupNameErr")
    stream = _lookup_stream(js, toks[4])
    o = _lookup_consumer(stream, toks[5])
    if group not in o.cfg.priority_groups:
        raise err("JSConsumerInvalidPriorityGroupErr")
    o.unpin(group)
    return {"type": T_UNPIN}


# pattern (after "$JS.API.") -> (response type, handler(js, subject, body))
HANDLERS: dict[str, tuple[str, Callable[[Any, str, bytes], dict[str, Any] | None]]] = {
    "CONSUMER.CREATE.>": (T_CREATE, handle_create),
    "CONSUMER.DURABLE.CREATE.>": (T_CREATE, handle_create),
    "CONSUMER.INFO.*.*": (T_INFO, handle_info),
    "CONSUMER.DELETE.*.*": (T_DELETE, handle_delete),
    "CONSUMER.NAMES.*": (T_NAMES, handle_names),
    "CONSUMER.LIST.*": (T_LIST, handle_list),
    "CONSUMER.PAUSE.*.*": (T_PAUSE, handle_pause),
    "CONSUMER.UNPIN.*.*": (T_UNPIN, handle_unpin),
    "CONSUMER.LEADER.STEPDOWN.*.*": (T_STEPDOWN, handle_leader_stepdown),
}


def _adapt(fn: Callable[[Any, str, bytes], dict[str, Any] | None]) -> Callable[[Any], dict[str, Any] | None]:
    def handler(req: Any) -> dict[str, Any] | None:
        return fn(req.js, req.subject, bytes(req.data or b""))
    handler.__name__ = fn.__name__
    return handler


def register(api: Any = None) -> None:
    """Plug the CONSUMER.* handlers into the API router (`api.register(pattern, handler,
    response_type)`; the router adds the response `type`)."""
    if api is None:
        from . import api as api_module
        api = api_module
    for pattern, (rtype, fn) in HANDLERS.items():
        api.register(pattern, _adapt(fn), rtype)


# -- restore at start-up ------------------------------------------------------------------------

def restore(stream: Any) -> None:
    """Reload the stream's persisted consumers (`<stream dir>/obs/<name>/meta.inf + o.dat`)."""
    base = getattr(stream, "dir", None)
    if base is None:
        return
    obs = Path(base) / "obs"
    if not obs.is_dir():
        return
    for d in sorted(obs.iterdir()):
        if d.name.startswith(TRASH_PREFIX):
            # deleted before a stop, not yet removed: finish the job
            shutil.rmtree(d, ignore_errors=True)
            continue
        if not d.is_dir() or d.name in stream.consumers:
            continue
        try:
            meta = json.loads((d / "meta.inf").read_bytes())
            state_path = d / "o.dat"
            state = json.loads(state_path.read_bytes()) if state_path.exists() else None
            cfg = ConsumerConfig.from_json(meta.get("config"))
            name = meta.get("name") or d.name
            if name != d.name or not valid_name(name):
                log.warning("skipping consumer directory %s: its name does not match", d)
                continue
            created = parse_rfc3339(meta.get("created", "")) if meta.get("created") else 0
            o = Consumer(stream, cfg, name, created_ns=created, state=state)
        except Exception:
            log.exception("could not restore consumer from %s", d)
            continue
        stream.consumers[name] = o
        o.start()
        log.info("Restored consumer '%s > %s'", stream.name, name)


# importing this module (the service does, at start) registers the handlers
register()
