"""StreamConfig: the stream configuration with nats-server's JSON names, defaults and checks.

Three steps, each mirroring nats-server (`stream.go`):

- `StreamConfig.from_json(obj)` decodes a request body the way Go's `json.Unmarshal` does:
  unknown keys are ignored, but a value of the wrong JSON type (a string for `max_msgs`, a
  float for an integer, an unknown enum word) fails with 10025 "invalid JSON".
- `check_stream_config(cfg, ...)` is `checkStreamCfg`: it applies the server defaults
  (`max_msgs: 0` -> -1, duplicate window 2m, subjects `[name]`, ...) and validates, raising the
  exact JetStream error nats-server raises.
- `check_update(old, new, ...)` is `configUpdateCheck`: what an UPDATE may and may not change.

`to_json()` emits the config as nats-server does (Go `omitempty` rules). Durations are int
nanoseconds throughout.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from ..core.subject import subjects_collide, subset_match, valid_subject
from .names import MAX_NAME_LEN, STREAM_NAME_INVALID, valid_name
from .errors import (
    MAX_CONSUMERS,
    MEMORY_RESOURCES_EXCEEDED,
    PEDANTIC,
    REPLICAS_NEGATIVE,
    STORAGE_RESOURCES_EXCEEDED,
    STREAM_INVALID_CONFIG,
    STREAM_MAX_BYTES_REQUIRED,
    STREAM_MAX_STREAM_BYTES_EXCEEDED,
    STREAM_MIRROR_NOT_UPDATABLE,
    STREAM_TRANSFORM_INVALID_DEST,
    STREAM_TRANSFORM_INVALID_SOURCE,
    INVALID_JSON,
    JSError,
    js_err,
)

MS = 1_000_000
SECOND = 1_000_000_000
DEFAULT_DUPLICATE_WINDOW = 120 * SECOND
MAX_DESCRIPTION_LEN = 4 * 1024
MAX_METADATA_LEN = 128 * 1024
MAX_REPLICAS = 5
API_LEVEL = 1

# Versioning metadata (ADR-44): the required level is stored, the other two only shown.
META_REQUIRED_LEVEL = "_nats.req.level"
META_SERVER_VERSION = "_nats.ver"
META_SERVER_LEVEL = "_nats.level"

RETENTIONS = ("limits", "interest", "workqueue")
STORAGES = ("file", "memory")
COMPRESSIONS = ("none", "s2")

_INT_RANGES = {
    "int64": (-(2**63), 2**63 - 1),
    "int": (-(2**63), 2**63 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint64": (0, 2**64 - 1),
}


def invalid_config(reason: str) -> JSError:
    return js_err(STREAM_INVALID_CONFIG, err=reason)


# ---------------------------------------------------------------------------------------------
# Go-json-like decoding
# ---------------------------------------------------------------------------------------------

def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


class _Decoder:
    """Type-checks one request object field by field; `where` names the Go struct for errors."""

    def __init__(self, struct: str) -> None:
        self.struct = struct

    def fail(self, path: str, v: Any, gotype: str) -> JSError:
        what = _json_kind(v)
        if what == "number" and isinstance(v, float):
            what = f"number {v!r}"
        return js_err(INVALID_JSON, err=f"json: cannot unmarshal {what} into Go struct field "
                                        f"{self.struct}.{path} of type {gotype}")

    def int_(self, v: Any, path: str, gotype: str = "int64") -> int:
        if v is None:
            return 0
        if type(v) is not int:
            raise self.fail(path, v, gotype)
        lo, hi = _INT_RANGES[gotype]
        if not lo <= v <= hi:
            raise self.fail(path, v, gotype)
        return v

    def str_(self, v: Any, path: str) -> str:
        if v is None:
            return ""
        if not isinstance(v, str):
            raise self.fail(path, v, "string")
        return v

    def bool_(self, v: Any, path: str) -> bool:
        if v is None:
            return False
        if not isinstance(v, bool):
            raise self.fail(path, v, "bool")
        return v

    def strs(self, v: Any, path: str) -> list[str]:
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.fail(path, v, "[]string")
        return [self.str_(x, path) for x in v]

    def obj(self, v: Any, path: str, gotype: str) -> dict[str, Any] | None:
        if v is None:
            return None
        if not isinstance(v, dict):
            raise self.fail(path, v, gotype)
        return v

    def enum(self, v: Any, path: str, allowed: tuple[str, ...], *, fold: bool = False) -> str:
        # Go's custom UnmarshalJSON sees the raw token, so `null` fails like any unknown word;
        # its error is fmt's %q of that token: can not unmarshal "\"foo\""
        s = v.lower() if fold and isinstance(v, str) else v
        if isinstance(s, str) and s in allowed:
            return s
        if isinstance(v, str):
            raw = '"' + (v.lower() if fold else v) + '"'
        else:
            raw = "null" if v is None else json.dumps(v)
        raise js_err(INVALID_JSON, err=f'can not unmarshal "{_go_quote(raw)}"')


def _go_quote(raw: str) -> str:
    # fmt %q of the raw JSON token: escape backslashes and quotes
    return raw.replace("\\", "\\\\").replace('"', '\\"')


def _decode_transform(d: _Decoder, v: Any, path: str) -> dict[str, str] | None:
    o = d.obj(v, path, "server.SubjectTransformConfig")
    if o is None:
        return None
    return {"src": d.str_(o.get("src"), path + ".src"), "dest": d.str_(o.get("dest"), path + ".dest")}


def _decode_source(d: _Decoder, v: Any, path: str) -> dict[str, Any] | None:
    o = d.obj(v, path, "server.StreamSource")
    if o is None:
        return None
    src: dict[str, Any] = {"name": d.str_(o.get("name"), path + ".name")}
    if o.get("opt_start_seq") is not None:
        src["opt_start_seq"] = d.int_(o.get("opt_start_seq"), path + ".opt_start_seq", "uint64")
    if o.get("opt_start_time") is not None:
        src["opt_start_time"] = d.str_(o.get("opt_start_time"), path + ".opt_start_time")
    src["filter_subject"] = d.str_(o.get("filter_subject"), path + ".filter_subject")
    trs = o.get("subject_transforms")
    if trs is not None:
        if not isinstance(trs, list):
            raise d.fail(path + ".subject_transforms", trs, "[]server.SubjectTransformConfig")
        src["subject_transforms"] = [_decode_transform(d, t, path + ".subject_transforms") or
                                     {"src": "", "dest": ""} for t in trs]
    ext = d.obj(o.get("external"), path + ".external", "server.ExternalStream")
    if ext is not None:
        src["external"] = {"api": d.str_(ext.get("api"), path + ".external.api"),
                           "deliver": d.str_(ext.get("deliver"), path + ".external.deliver")}
    for k, val in o.items():  # keep anything else a sourcing implementation may need
        src.setdefault(k, val)
    return src


def _source_json(s: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": s.get("name", "")}
    for k in ("opt_start_seq", "opt_start_time", "filter_subject", "subject_transforms", "external"):
        if s.get(k):
            out[k] = s[k]
    return out


def source_index_name(s: Mapping[str, Any]) -> str:
    """nats-server's `composeIName`: identifies one source for duplicate detection."""
    iname = s.get("name", "")
    ext = s.get("external")
    if ext:
        iname += ":" + server_hash(ext.get("api", ""))
    trs = s.get("subject_transforms") or []
    if not trs:
        source, dest = s.get("filter_subject") or ">", ">"
    else:
        source = "\f".join(t.get("src") or ">" for t in trs)
        dest = "\f".join(t.get("dest") or ">" for t in trs)
    return " ".join((iname, source, dest))


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def server_hash(s: str) -> str:
    """nats-server `getHash`: first 8 bytes of SHA-256, each mapped to base62."""
    return "".join(_B62[b % 62] for b in hashlib.sha256(s.encode()).digest()[:8])


# ---------------------------------------------------------------------------------------------
# The config
# ---------------------------------------------------------------------------------------------

@dataclass
class StreamConfig:
    """A stream's configuration; field names are nats-server's JSON names."""

    name: str = ""
    description: str = ""
    subjects: list[str] = field(default_factory=list)
    retention: str = "limits"
    max_consumers: int = 0
    max_msgs: int = 0
    max_bytes: int = 0
    max_age: int = 0  # ns
    max_msgs_per_subject: int = 0
    max_msg_size: int = 0
    discard: str = "old"
    storage: str = "file"
    num_replicas: int = 0
    no_ack: bool = False
    template_owner: str = ""
    duplicate_window: int = 0  # ns
    placement: dict[str, Any] | None = None  # {cluster, tags, preferred}
    mirror: dict[str, Any] | None = None  # StreamSource
    sources: list[dict[str, Any]] = field(default_factory=list)
    compression: str = "none"
    first_seq: int = 0
    subject_transform: dict[str, str] | None = None  # {src, dest}
    republish: dict[str, Any] | None = None  # {src, dest, headers_only}
    allow_direct: bool = False
    mirror_direct: bool = False
    discard_new_per_subject: bool = False
    sealed: bool = False
    deny_delete: bool = False
    deny_purge: bool = False
    allow_rollup_hdrs: bool = False
    consumer_limits: dict[str, int] = field(default_factory=dict)  # {inactive_threshold, max_ack_pending}
    allow_msg_ttl: bool = False
    subject_delete_marker_ttl: int = 0  # ns
    metadata: dict[str, str] | None = None

    # -- decoding ------------------------------------------------------------------------
    @classmethod
    def from_json(cls, obj: Any, struct: str = "StreamConfigRequest") -> "StreamConfig":
        """Decode a JSON object (already parsed) as Go would; raises JSError 10025."""
        d = _Decoder(struct)
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise js_err(INVALID_JSON, err=f"json: cannot unmarshal {_json_kind(obj)} into Go value "
                                           f"of type server.{struct}")
        c = cls()
        g = obj.get
        c.name = d.str_(g("name"), "name")
        c.description = d.str_(g("description"), "description")
        c.subjects = d.strs(g("subjects"), "subjects")
        if "retention" in obj:
            c.retention = d.enum(g("retention"), "retention", RETENTIONS)
        c.max_consumers = d.int_(g("max_consumers"), "max_consumers", "int")
        c.max_msgs = d.int_(g("max_msgs"), "max_msgs")
        c.max_bytes = d.int_(g("max_bytes"), "max_bytes")
        c.max_age = d.int_(g("max_age"), "max_age", "int64")
        c.max_msgs_per_subject = d.int_(g("max_msgs_per_subject"), "max_msgs_per_subject")
        c.max_msg_size = d.int_(g("max_msg_size"), "max_msg_size", "int32")
        if "discard" in obj:
            c.discard = d.enum(g("discard"), "discard", ("old", "new"), fold=True)
        if "storage" in obj:
            c.storage = d.enum(g("storage"), "storage", STORAGES)
        c.num_replicas = d.int_(g("num_replicas"), "num_replicas", "int")
        c.no_ack = d.bool_(g("no_ack"), "no_ack")
        c.template_owner = d.str_(g("template_owner"), "template_owner")
        c.duplicate_window = d.int_(g("duplicate_window"), "duplicate_window")
        p = d.obj(g("placement"), "placement", "server.Placement")
        if p is not None:
            c.placement = {"cluster": d.str_(p.get("cluster"), "placement.cluster"),
                           "tags": d.strs(p.get("tags"), "placement.tags"),
                           "preferred": d.str_(p.get("preferred"), "placement.preferred")}
        c.mirror = _decode_source(d, g("mirror"), "mirror")
        srcs = g("sources")
        if srcs is not None:
            if not isinstance(srcs, list):
                raise d.fail("sources", srcs, "[]*server.StreamSource")
            # a JSON null entry stays None so the config check can reject it (10141)
            c.sources = [_decode_source(d, s, "sources") for s in srcs]  # type: ignore[misc]
        if "compression" in obj:
            v = g("compression")
            if v is not None and not isinstance(v, str):
                raise d.fail("compression", v, "string")
            if v not in COMPRESSIONS:
                raise js_err(INVALID_JSON, err="unknown compression algorithm")
            c.compression = v
        c.first_seq = d.int_(g("first_seq"), "first_seq", "uint64")
        c.subject_transform = _decode_transform(d, g("subject_transform"), "subject_transform")
        rp = d.obj(g("republish"), "republish", "server.RePublish")
        if rp is not None:
            c.republish = {"src": d.str_(rp.get("src"), "republish.src"),
                           "dest": d.str_(rp.get("dest"), "republish.dest"),
                           "headers_only": d.bool_(rp.get("headers_only"), "republish.headers_only")}
        c.allow_direct = d.bool_(g("allow_direct"), "allow_direct")
        c.mirror_direct = d.bool_(g("mirror_direct"), "mirror_direct")
        c.discard_new_per_subject = d.bool_(g("discard_new_per_subject"), "discard_new_per_subject")
        c.sealed = d.bool_(g("sealed"), "sealed")
        c.deny_delete = d.bool_(g("deny_delete"), "deny_delete")
        c.deny_purge = d.bool_(g("deny_purge"), "deny_purge")
        c.allow_rollup_hdrs = d.bool_(g("allow_rollup_hdrs"), "allow_rollup_hdrs")
        cl = d.obj(g("consumer_limits"), "consumer_limits", "server.StreamConsumerLimits")
        c.consumer_limits = {}
        if cl is not None:
            it = d.int_(cl.get("inactive_threshold"), "consumer_limits.inactive_threshold")
            mp = d.int_(cl.get("max_ack_pending"), "consumer_limits.max_ack_pending", "int")
            if it:
                c.consumer_limits["inactive_threshold"] = it
            if mp:
                c.consumer_limits["max_ack_pending"] = mp
        c.allow_msg_ttl = d.bool_(g("allow_msg_ttl"), "allow_msg_ttl")
        c.subject_delete_marker_ttl = d.int_(g("subject_delete_marker_ttl"), "subject_delete_marker_ttl")
        md = g("metadata")
        if md is not None:
            if not isinstance(md, dict):
                raise d.fail("metadata", md, "map[string]string")
            c.metadata = {k: d.str_(v, "metadata") for k, v in md.items()}
        return c

    # -- encoding ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """nats-server's JSON for this config (fields in declaration order, omitempty kept)."""
        o: dict[str, Any] = {"name": self.name}
        if self.description:
            o["description"] = self.description
        if self.subjects:
            o["subjects"] = list(self.subjects)
        o["retention"] = self.retention
        o["max_consumers"] = self.max_consumers
        o["max_msgs"] = self.max_msgs
        o["max_bytes"] = self.max_bytes
        o["max_age"] = self.max_age
        o["max_msgs_per_subject"] = self.max_msgs_per_subject
        if self.max_msg_size:
            o["max_msg_size"] = self.max_msg_size
        o["discard"] = self.discard
        o["storage"] = self.storage
        o["num_replicas"] = self.num_replicas
        if self.no_ack:
            o["no_ack"] = True
        if self.template_owner:
            o["template_owner"] = self.template_owner
        if self.duplicate_window:
            o["duplicate_window"] = self.duplicate_window
        if self.placement is not None:
            p = {k: v for k, v in self.placement.items() if v}
            o["placement"] = p
        if self.mirror is not None:
            o["mirror"] = _source_json(self.mirror)
        if self.sources:
            o["sources"] = [_source_json(s) for s in self.sources]
        o["compression"] = self.compression
        if self.first_seq:
            o["first_seq"] = self.first_seq
        if self.subject_transform is not None:
            o["subject_transform"] = dict(self.subject_transform)
        if self.republish is not None:
            r: dict[str, Any] = {}
            if self.republish.get("src"):
                r["src"] = self.republish["src"]
            r["dest"] = self.republish.get("dest", "")
            if self.republish.get("headers_only"):
                r["headers_only"] = True
            o["republish"] = r
        o["allow_direct"] = self.allow_direct
        o["mirror_direct"] = self.mirror_direct
        if self.discard_new_per_subject:
            o["discard_new_per_subject"] = True
        o["sealed"] = self.sealed
        o["deny_delete"] = self.deny_delete
        o["deny_purge"] = self.deny_purge
        o["allow_rollup_hdrs"] = self.allow_rollup_hdrs
        o["consumer_limits"] = {k: v for k, v in self.consumer_limits.items() if v}
        o["allow_msg_ttl"] = self.allow_msg_ttl
        if self.subject_delete_marker_ttl:
            o["subject_delete_marker_ttl"] = self.subject_delete_marker_ttl
        if self.metadata:
            o["metadata"] = dict(self.metadata)
        return o

    def to_info_json(self, server_version: str) -> dict[str, Any]:
        """The config as shown in StreamInfo: stored metadata plus the dynamic version keys."""
        o = self.to_json()
        md = dict(self.metadata or {})
        md[META_SERVER_VERSION] = server_version
        md[META_SERVER_LEVEL] = str(API_LEVEL)
        o["metadata"] = md
        return o

    def copy(self) -> "StreamConfig":
        return copy.deepcopy(self)

    @property
    def is_mirror(self) -> bool:
        return self.mirror is not None


def set_static_metadata(cfg: StreamConfig) -> None:
    """nats-server `setStaticStreamMetadata`: drop the dynamic keys, store the required API level
    (1 when per-message TTLs or delete markers are used)."""
    md = dict(cfg.metadata or {})
    md.pop(META_SERVER_VERSION, None)
    md.pop(META_SERVER_LEVEL, None)
    level = 1 if (cfg.allow_msg_ttl or cfg.subject_delete_marker_ttl > 0) else 0
    md[META_REQUIRED_LEVEL] = str(level)
    cfg.metadata = md


def copy_required_level(cfg: StreamConfig, prev: StreamConfig) -> None:
    """nats-server `copyStreamMetadata`: take the stored level from `prev` so an otherwise equal
    config compares equal (used by CREATE on an existing stream)."""
    md = dict(cfg.metadata or {})
    md.pop(META_SERVER_VERSION, None)
    md.pop(META_SERVER_LEVEL, None)
    pv = (prev.metadata or {}).get(META_REQUIRED_LEVEL)
    if pv is not None:
        md[META_REQUIRED_LEVEL] = pv
    else:
        md.pop(META_REQUIRED_LEVEL, None)
    cfg.metadata = md or None


# ---------------------------------------------------------------------------------------------
# Account limits (the subset stream checks need)
# ---------------------------------------------------------------------------------------------

@dataclass
class AccountLimits:
    """JetStreamAccountLimits; -1 = unlimited. JSON names as `$JS.API.INFO` shows them."""

    max_memory: int = -1
    max_storage: int = -1
    max_streams: int = -1
    max_consumers: int = -1
    max_ack_pending: int = -1
    memory_max_stream_bytes: int = -1
    storage_max_stream_bytes: int = -1
    max_bytes_required: bool = False

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---------------------------------------------------------------------------------------------
# checkStreamCfg
# ---------------------------------------------------------------------------------------------

def _validate_transform(src: str, dest: str) -> str | None:
    """None when `src -> dest` is a valid mapping, else nats-server's error text."""
    try:
        from ..core.transform import validate_mapping
    except ImportError:  # transform module not available: accept literal/wildcard forms
        return None if valid_subject(src or ">") else "invalid subject"
    try:
        validate_mapping(src or ">", dest)
    except ValueError as e:
        return str(e)
    return None


def _can_transform(src: str, dest: str) -> bool:
    try:
        from ..core.transform import SubjectTransform
    except ImportError:
        return True
    try:
        SubjectTransform.compile(src, dest)
    except ValueError:
        return False
    return True


StreamLookup = Callable[[str], "StreamConfig | None"]


def check_stream_config(config: StreamConfig, *, pedantic: bool = False,
                        lookup: StreamLookup | None = None,
                        limits: AccountLimits | None = None) -> StreamConfig:
    """Apply nats-server's defaults to a copy of `config` and validate it (`checkStreamCfg`).

    `lookup(name)` returns the config of another stream in the account (mirror/source checks
    and cycle detection); `limits` are the account's JetStream limits.
    """
    lookup = lookup or (lambda name: None)
    if not valid_name(config.name):
        raise invalid_config(STREAM_NAME_INVALID)
    if len(config.name) > MAX_NAME_LEN:
        raise invalid_config(f"stream name is too long, maximum allowed is {MAX_NAME_LEN}")
    if len(config.description.encode()) > MAX_DESCRIPTION_LEN:
        raise invalid_config(f"stream description is too long, maximum allowed is {MAX_DESCRIPTION_LEN}")
    md_len = sum(len(k.encode()) + len(v.encode()) for k, v in (config.metadata or {}).items())
    if md_len > MAX_METADATA_LEN:
        raise invalid_config(f"stream metadata exceeds maximum size of {MAX_METADATA_LEN} bytes")

    cfg = config.copy()
    if cfg.num_replicas == 0:
        cfg.num_replicas = 1
    if cfg.num_replicas > MAX_REPLICAS:
        raise invalid_config(f"maximum replicas is {MAX_REPLICAS}")
    if cfg.num_replicas < 0:
        raise js_err(REPLICAS_NEGATIVE)
    for attr in ("max_msgs", "max_msgs_per_subject", "max_bytes", "max_msg_size", "max_consumers"):
        if getattr(cfg, attr) == 0:
            setattr(cfg, attr, -1)
    if cfg.duplicate_window == 0 and cfg.mirror is None:
        window = DEFAULT_DUPLICATE_WINDOW
        if cfg.max_age != 0 and cfg.max_age < window:
            if pedantic:
                raise js_err(PEDANTIC, err="pedantic mode: duplicate window cannot be bigger than max age")
            cfg.duplicate_window = cfg.max_age
        else:
            cfg.duplicate_window = window
    if 0 < cfg.max_age < 100 * MS:
        raise invalid_config("max age needs to be >= 100ms")
    if cfg.duplicate_window < 0:
        raise invalid_config("duplicates window can not be negative")
    if cfg.max_age != 0 and cfg.duplicate_window > cfg.max_age:
        raise invalid_config("duplicates window can not be larger then max age")
    if 0 < cfg.duplicate_window < 100 * MS:
        raise invalid_config("duplicates window needs to be >= 100ms")
    if cfg.deny_purge and cfg.allow_rollup_hdrs:
        raise invalid_config("roll-ups require the purge permission")
    if cfg.discard_new_per_subject:
        if cfg.discard != "new":
            raise invalid_config("discard new per subject requires discard new policy to be set")
        if cfg.max_msgs_per_subject <= 0:
            raise invalid_config("discard new per subject requires max msgs per subject > 0")
    if cfg.subject_delete_marker_ttl > 0:
        if cfg.subject_delete_marker_ttl < SECOND:
            raise invalid_config("subject delete marker TTL must be at least 1 second")
        if not cfg.allow_msg_ttl:
            if pedantic:
                raise invalid_config("subject delete marker cannot be set if message TTLs are disabled")
            cfg.allow_msg_ttl = True
        if not cfg.allow_rollup_hdrs:
            if pedantic:
                raise invalid_config("subject delete marker cannot be set if roll-ups are disabled")
            cfg.allow_rollup_hdrs, cfg.deny_purge = True, False
    elif cfg.subject_delete_marker_ttl < 0:
        raise invalid_config("subject delete marker TTL must not be negative")

    stream_subs: list[str] = []
    deliver_prefixes: list[str] = []
    api_prefixes: list[str] = []
    m = cfg.mirror
    if m is not None:
        if cfg.first_seq > 0:
            raise js_err(10143)
        if cfg.subjects:
            raise js_err(10034)
        if cfg.sources:
            raise js_err(10031)
        if m.get("filter_subject") and m.get("subject_transforms"):
            raise js_err(10150)
        if cfg.subject_delete_marker_ttl > 0:
            raise invalid_config("subject delete markers forbidden on mirrors")
        trs = m.get("subject_transforms") or []
        for i, tr in enumerate(trs):
            if tr["src"] and not valid_subject(tr["src"]):
                raise js_err(10151, err=f"invalid subject {tr['src']}")
            err = _validate_transform(tr["src"], tr["dest"])
            if err:
                raise js_err(10154, err=err)
            for j, other in enumerate(trs):
                if i != j and subjects_collide(tr["src"] or ">", other["src"] or ">"):
                    raise js_err(10152)
        if not valid_name(m.get("name", "")):
            raise js_err(10142)
        ext = m.get("external")
        if not ext:
            origin = lookup(m["name"])
            if origin is not None:
                stream_subs.extend(origin.subjects)
                if cfg.max_msg_size > 0 and origin.max_msg_size > 0 and cfg.max_msg_size < origin.max_msg_size:
                    raise js_err(10030)
                if pedantic and cfg.mirror_direct != origin.allow_direct:
                    raise js_err(PEDANTIC, err="origin stream has direct get set, mirror has it disabled")
                cfg.mirror_direct = origin.allow_direct
        else:
            if ext.get("deliver"):
                deliver_prefixes.append(ext["deliver"])
            if ext.get("api"):
                api_prefixes.append(ext["api"])

    inames: set[str] = set()
    for src in cfg.sources:
        if src is None or not valid_name(src.get("name", "")):
            raise js_err(10141)
        iname = source_index_name(src)
        if iname in inames:
            raise js_err(10140)
        inames.add(iname)
        ext = src.get("external")
        if not ext:
            origin = lookup(src["name"])
            if origin is not None:
                stream_subs.extend(origin.subjects)
                if cfg.max_msg_size > 0 and origin.max_msg_size > 0 and cfg.max_msg_size < origin.max_msg_size:
                    raise js_err(10046)
            trs = src.get("subject_transforms") or []
            if src.get("filter_subject") and trs:
                raise js_err(10144)
            for tr in trs:
                if tr["src"] and not valid_subject(tr["src"]):
                    raise js_err(10145, err=f"invalid subject {tr['src']}")
                err = _validate_transform(tr["src"], tr["dest"])
                if err:
                    raise js_err(10146, err=err)
            for i, tr in enumerate(trs):
                for j, other in enumerate(trs):
                    if i != j and subset_match(tr["src"] or ">", other["src"] or ">"):
                        raise js_err(10147)
        else:
            if ext.get("deliver"):
                deliver_prefixes.append(ext["deliver"])
            if ext.get("api"):
                api_prefixes.append(ext["api"])

    for pfx in deliver_prefixes:
        if not _valid_publish_subject(pfx):
            raise js_err(10024, prefix=pfx)
        for sub in stream_subs:
            if subjects_collide(sub, f"{pfx}.{sub}"):
                raise js_err(10022, prefix=pfx, subject=sub)
    for pfx in api_prefixes:
        if not _valid_publish_subject(pfx):
            raise invalid_config(f'stream external api prefix "{pfx}" must be a valid subject without wildcards')
        if subjects_collide(pfx, "$JS.API"):
            raise js_err(10021, prefix=pfx, subject="$JS.API")

    _check_cycles(cfg, lookup)

    if not cfg.subjects:
        if cfg.mirror is None and not cfg.sources:
            cfg.subjects = [cfg.name]
    else:
        if cfg.mirror is not None:
            raise js_err(10034)
        seen: set[str] = set()
        for subj in cfg.subjects:
            if not valid_subject(subj):
                raise invalid_config("invalid subject")
            if subj in seen:
                raise invalid_config("duplicate subjects detected")
            if subj == ">":
                if not cfg.no_ack:
                    raise invalid_config("capturing all subjects requires no-ack to be true")
                if cfg.num_replicas != 1:
                    raise invalid_config("capturing all subjects requires replicas of 1")
            if not cfg.no_ack:
                for ns in ("$JS.>", "$JSC.>", "$NRG.>"):
                    if subjects_collide(subj, ns) and not subset_match(subj, "$JS.EVENT.>"):
                        raise invalid_config("subjects that overlap with jetstream api require no-ack to be true")
                if subjects_collide(subj, "$SYS.>") and not subset_match(subj, "$SYS.ACCOUNT.>"):
                    raise invalid_config("subjects that overlap with system api require no-ack to be true")
            seen.add(subj)

    if not cfg.subjects and not cfg.sources and cfg.mirror is None:
        raise invalid_config("stream needs at least one configured subject or be a source/mirror")

    if limits is not None:
        stream_limit = (limits.memory_max_stream_bytes if cfg.storage == "memory"
                        else limits.storage_max_stream_bytes)
        if limits.max_bytes_required and cfg.max_bytes <= 0:
            raise js_err(STREAM_MAX_BYTES_REQUIRED)
        if stream_limit > 0 and cfg.max_bytes > stream_limit:
            raise js_err(STREAM_MAX_STREAM_BYTES_EXCEEDED)

    if len(cfg.subjects) > 1:
        for subj in cfg.subjects:
            for other in cfg.subjects:
                if other != subj and subjects_collide(other, subj):
                    raise invalid_config(f'subject "{subj}" overlaps with "{other}"')

    st = cfg.subject_transform
    if st is not None:
        if st["src"] and not valid_subject(st["src"]):
            raise js_err(STREAM_TRANSFORM_INVALID_SOURCE, err=f"invalid subject {st['src']}")
        err = _validate_transform(st["src"], st["dest"])
        if err:
            raise js_err(STREAM_TRANSFORM_INVALID_DEST, err=err)

    rp = cfg.republish
    if rp is not None:
        rp = cfg.republish = dict(rp)
        if not rp.get("src"):
            if pedantic:
                raise js_err(PEDANTIC, err="pedantic mode: republish source can not be empty")
            rp["src"] = ">"
        if (rp.get("dest") == ">" and rp["src"] == ">" and st is not None and len(cfg.subjects) == 1
                and st["src"] == cfg.subjects[0]):
            if pedantic:
                raise js_err(PEDANTIC, err="implicit republish based on subject transform")
            rp["src"] = rp["dest"] = st["dest"]
        if any(subjects_collide(rp.get("dest", ""), s) for s in cfg.subjects if rp.get("dest")):
            raise invalid_config("stream configuration for republish destination forms a cycle")
        if not _can_transform(rp["src"], rp.get("dest", "")):
            raise invalid_config(f"stream configuration for republish with transform from "
                                 f"'{rp['src']}' to '{rp.get('dest', '')}' not valid")

    if cfg.placement is not None and not any(cfg.placement.values()):
        cfg.placement = None
    if cfg.placement is not None and cfg.placement.get("preferred"):
        raise invalid_config("preferred server not permitted in placement")
    return cfg


def _valid_publish_subject(s: str) -> bool:
    return valid_subject(s) and all(t not in ("*", ">") for t in s.split("."))


def _check_cycles(cfg: StreamConfig, lookup: StreamLookup) -> None:
    """Source/mirror cycle detection among the account's streams (nats-server's BFS)."""
    to_visit = [cfg]
    visited: set[str] = set()
    while to_visit:
        c = to_visit.pop(0)
        visited.add(c.name)
        for src in c.sources:
            if not src or src.get("external"):
                continue
            if src["name"] in visited:
                filt = src.get("filter_subject", "")
                if not filt or any(subjects_collide(s, filt) for s in c.subjects):
                    raise invalid_config("detected cycle")
            else:
                o = lookup(src["name"])
                if o is not None:
                    to_visit.append(o)
        m = c.mirror
        if m is not None and not m.get("external"):
            if m.get("name") in visited:
                raise invalid_config("detected cycle")
            o = lookup(m.get("name", ""))
            if o is not None:
                to_visit.append(o)


def check_update(old: StreamConfig, new: StreamConfig, *, pedantic: bool = False,
                 lookup: StreamLookup | None = None,
                 limits: AccountLimits | None = None,
                 reserved: Callable[[StreamConfig, int], None] | None = None) -> StreamConfig:
    """nats-server `configUpdateCheck`: the defaulted new config, or the JSError for a change
    that is not allowed. `reserved(cfg, extra_bytes)` may raise for account byte limits."""
    cfg = check_stream_config(new, pedantic=pedantic, lookup=lookup, limits=limits)
    if cfg.name != old.name:
        raise invalid_config("stream configuration name must match original")
    # (2.10/2.11 refused to change max_consumers; 2.12+ allow it, and so do we)
    if cfg.storage != old.storage:
        raise invalid_config("stream configuration update can not change storage type")
    if cfg.retention != old.retention and "workqueue" in (cfg.retention, old.retention):
        raise invalid_config("stream configuration update can not change retention policy to/from workqueue")
    if old.template_owner:
        raise invalid_config("stream configuration update not allowed on template owned stream")
    if cfg.template_owner:
        raise invalid_config("stream configuration update can not be owned by a template")
    if old.sealed and not cfg.sealed:
        raise invalid_config("stream configuration update can not unseal a sealed stream")
    if old.deny_delete and not cfg.deny_delete:
        raise invalid_config("stream configuration update can not cancel deny message deletes")
    if old.deny_purge and not cfg.deny_purge:
        raise invalid_config("stream configuration update can not cancel deny purge")
    if (_source_json(cfg.mirror) if cfg.mirror else None) != (_source_json(old.mirror) if old.mirror else None):
        raise js_err(STREAM_MIRROR_NOT_UPDATABLE)
    if cfg.discard_new_per_subject:
        if cfg.discard != "new":
            raise invalid_config("discard new per subject requires discard new policy to be set")
        if cfg.max_msgs_per_subject <= 0:
            raise invalid_config("discard new per subject requires max msgs per subject > 0")
    if old.allow_msg_ttl and not cfg.allow_msg_ttl:
        raise invalid_config("message TTL status can not be disabled")
    if cfg.sealed:
        # a sealed stream keeps everything it has and takes nothing new
        cfg.max_age = 0
        cfg.discard = "new"
        cfg.deny_delete = cfg.deny_purge = True
        cfg.allow_rollup_hdrs = False
    if limits is not None:
        if cfg.max_consumers > 0 and limits.max_consumers > 0 and cfg.max_consumers > limits.max_consumers:
            raise js_err(MAX_CONSUMERS)
        if reserved is not None:
            reserved(cfg, max(max(cfg.max_bytes, 0) - max(old.max_bytes, 0), 0))
    return cfg


def check_bytes_limits(limits: AccountLimits, storage: str, add_bytes: int, reserved: int,
                       server_max: int) -> None:
    """nats-server `checkBytesLimits` for a new or grown stream reservation."""
    if add_bytes < 0:
        add_bytes = 1
    if storage == "memory":
        if limits.max_memory >= 0 and (reserved > limits.max_memory or add_bytes > limits.max_memory - reserved):
            raise js_err(MEMORY_RESOURCES_EXCEEDED)
        if server_max >= 0 and add_bytes > server_max - reserved:
            raise js_err(MEMORY_RESOURCES_EXCEEDED)
    else:
        if limits.max_storage >= 0 and (reserved > limits.max_storage or add_bytes > limits.max_storage - reserved):
            raise js_err(STORAGE_RESOURCES_EXCEEDED)
        if server_max >= 0 and add_bytes > server_max - reserved:
            raise js_err(STORAGE_RESOURCES_EXCEEDED)
