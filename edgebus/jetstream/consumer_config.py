"""ConsumerConfig: the JSON shape, nats-server's defaults, validation and update rules.

Everything here is pure data work (no trio, no broker): `ConsumerConfig.from_json` decodes a
request's `config` object the way Go's encoding/json would (unknown keys ignored, nulls leave the
zero value, wrong types rejected), `apply_defaults` fills in what `setConsumerConfigDefaults`
does, `check_config` is `checkConsumerCfg` and `check_update` is `checkNewConsumerConfig`.
Errors are raised as errors.JSError, from the shared table.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from ..core.clock import parse_rfc3339, rfc3339
from ..core.subject import subjects_collide, valid_subject
from .errors import BY_NAME, JSError, js_err
from .names import MAX_NAME_LEN  # noqa: F401  (re-exported for the consumer API)

# -- enumerations (JSON strings, as nats-server marshals them) -------------------------------
DELIVER_POLICIES = ("all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject")
ACK_POLICIES = ("none", "all", "explicit")
REPLAY_POLICIES = ("instant", "original")
PRIORITY_POLICIES = ("none", "overflow", "pinned_client")

# -- limits and defaults (jetstream_api.go / consumer.go) ------------------------------------
ACK_WAIT_DEFAULT = 30_000_000_000           # JsAckWaitDefault
DELETE_WAIT_DEFAULT = 5_000_000_000         # JsDeleteWaitTimeDefault (ephemeral inactivity)
MAX_ACK_PENDING_DEFAULT = 1000              # JsDefaultMaxAckPending
WAIT_QUEUE_DEFAULT_MAX = 512                # JSWaitQueueDefaultMax
PINNED_TTL_DEFAULT = 120_000_000_000        # JsDefaultPinnedTTL
MAX_DESCRIPTION_LEN = 4 * 1024
MAX_METADATA_LEN = 128 * 1024
MIN_HEARTBEAT = 100_000_000                 # 100ms
MIN_MAX_EXPIRES = 1_000_000                 # 1ms

# 2.11 versioning metadata (jetstream_versioning.go)
REQ_LEVEL_KEY = "_nats.req.level"
SERVER_VERSION_KEY = "_nats.ver"
SERVER_LEVEL_KEY = "_nats.level"
API_LEVEL = 1

_GROUP_NAME_RE = re.compile(r"^[a-zA-Z0-9/_=-]{1,16}$")


# -- errors ------------------------------------------------------------------------------------
# All consumer errors come from the one table in errors.py, looked up by nats-server's constant
# name so call sites read like consumer.go. `consumer_errors` would hold any the table lacked.
consumer_errors: dict[str, tuple[int, int, str]] = {}

ConsumerError = JSError


def err(name: str, **kw: Any) -> JSError:
    """The error nats-server calls `name` (e.g. "JSConsumerNotFoundErr"), template filled."""
    extra = consumer_errors.get(name)
    if extra is not None:
        code, err_code, tmpl = extra
        return JSError(code, err_code, tmpl.format(**kw) if kw else tmpl)
    return js_err(BY_NAME[name].err_code, **kw)


def _policy_error(text: str) -> ConsumerError:
    return err("JSConsumerInvalidPolicyErrF", err=text)


# -- the config --------------------------------------------------------------------------------

@dataclass
class ConsumerConfig:
    """A consumer's configuration. Durations are int nanoseconds; times are int ns since the
    epoch or None when unset (Go's nil *time.Time)."""

    durable_name: str = ""
    name: str = ""
    description: str = ""
    deliver_policy: str = "all"
    opt_start_seq: int = 0
    opt_start_time: int | None = None
    ack_policy: str = "none"
    ack_wait: int = 0
    max_deliver: int = 0
    backoff: list[int] = field(default_factory=list)
    filter_subject: str = ""
    filter_subjects: list[str] = field(default_factory=list)
    replay_policy: str = "instant"
    rate_limit_bps: int = 0
    sample_freq: str = ""
    max_waiting: int = 0
    max_ack_pending: int = 0
    flow_control: bool = False
    headers_only: bool = False
    max_batch: int = 0
    max_expires: int = 0
    max_bytes: int = 0
    deliver_subject: str = ""
    deliver_group: str = ""
    idle_heartbeat: int = 0
    inactive_threshold: int = 0
    num_replicas: int = 0
    mem_storage: bool = False
    direct: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    pause_until: int | None = None
    priority_groups: list[str] = field(default_factory=list)
    priority_policy: str = "none"
    priority_timeout: int = 0

    # -- derived -----------------------------------------------------------------------------
    @property
    def is_push(self) -> bool:
        return bool(self.deliver_subject)

    @property
    def is_pull(self) -> bool:
        return not self.deliver_subject

    @property
    def is_durable(self) -> bool:
        return bool(self.durable_name)

    @property
    def filters(self) -> list[str]:
        """gatherSubjectFilters: the single filter or the list (empty = everything)."""
        if self.filter_subject:
            return [self.filter_subject]
        return list(self.filter_subjects)

    def copy(self) -> "ConsumerConfig":
        return copy.deepcopy(self)

    # -- JSON --------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, d: Any) -> "ConsumerConfig":
        """Decode like Go's encoding/json: raises ValueError (-> 10025) on a type mismatch."""
        cfg = cls()
        if d is None:
            return cfg
        if not isinstance(d, dict):
            raise ValueError(f"json: cannot unmarshal {_json_kind(d)} into Go value of type "
                             "server.ConsumerConfig")
        for key, value in d.items():
            spec = _FIELDS.get(key)
            if spec is None or value is None:
                continue  # unknown keys ignored; null leaves the zero value
            attr, kind = spec
            setattr(cfg, attr, _decode(kind, key, value))
        return cfg

    def to_json(self) -> dict[str, Any]:
        """The JSON object nats-server marshals (omitempty rules applied)."""
        out: dict[str, Any] = {}
        if self.durable_name:
            out["durable_name"] = self.durable_name
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        out["deliver_policy"] = self.deliver_policy
        if self.opt_start_seq:
            out["opt_start_seq"] = self.opt_start_seq
        if self.opt_start_time is not None:
            out["opt_start_time"] = rfc3339(self.opt_start_time)
        out["ack_policy"] = self.ack_policy
        if self.ack_wait:
            out["ack_wait"] = self.ack_wait
        if self.max_deliver:
            out["max_deliver"] = self.max_deliver
        if self.backoff:
            out["backoff"] = list(self.backoff)
        if self.filter_subject:
            out["filter_subject"] = self.filter_subject
        if self.filter_subjects:
            out["filter_subjects"] = list(self.filter_subjects)
        out["replay_policy"] = self.replay_policy
        if self.rate_limit_bps:
            out["rate_limit_bps"] = self.rate_limit_bps
        if self.sample_freq:
            out["sample_freq"] = self.sample_freq
        if self.max_waiting:
            out["max_waiting"] = self.max_waiting
        if self.max_ack_pending:
            out["max_ack_pending"] = self.max_ack_pending
        if self.flow_control:
            out["flow_control"] = True
        if self.headers_only:
            out["headers_only"] = True
        if self.max_batch:
            out["max_batch"] = self.max_batch
        if self.max_expires:
            out["max_expires"] = self.max_expires
        if self.max_bytes:
            out["max_bytes"] = self.max_bytes
        if self.deliver_subject:
            out["deliver_subject"] = self.deliver_subject
        if self.deliver_group:
            out["deliver_group"] = self.deliver_group
        if self.idle_heartbeat:
            out["idle_heartbeat"] = self.idle_heartbeat
        if self.inactive_threshold:
            out["inactive_threshold"] = self.inactive_threshold
        out["num_replicas"] = self.num_replicas
        if self.mem_storage:
            out["mem_storage"] = True
        if self.direct:
            out["direct"] = True
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        if self.pause_until is not None:
            out["pause_until"] = rfc3339(self.pause_until)
        if self.priority_groups:
            out["priority_groups"] = list(self.priority_groups)
        if self.priority_policy and self.priority_policy != "none":
            out["priority_policy"] = self.priority_policy
        if self.priority_timeout:
            out["priority_timeout"] = self.priority_timeout
        return out


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
    return "value"


_GO_TYPES = {"str": "string", "int": "int", "uint": "uint64", "dur": "time.Duration",
             "bool": "bool", "time": "time.Time", "durs": "[]time.Duration",
             "strs": "[]string", "map": "map[string]string", "deliver": "server.DeliverPolicy",
             "ack": "server.AckPolicy", "replay": "server.ReplayPolicy",
             "priority": "server.PriorityPolicy"}


def _type_error(kind: str, key: str, value: Any) -> ValueError:
    return ValueError(f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                      f"ConsumerConfig.{key} of type {_GO_TYPES.get(kind, kind)}")


def _as_int(kind: str, key: str, value: Any, unsigned: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(kind, key, value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"json: cannot unmarshal number {value!r} into Go struct field "
                             f"ConsumerConfig.{key} of type {_GO_TYPES.get(kind, kind)}")
        value = int(value)
    if unsigned and value < 0:
        raise ValueError(f"json: cannot unmarshal number {value} into Go struct field "
                         f"ConsumerConfig.{key} of type {_GO_TYPES.get(kind, kind)}")
    return value


def _decode(kind: str, key: str, value: Any) -> Any:
    if kind == "str":
        if not isinstance(value, str):
            raise _type_error(kind, key, value)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _type_error(kind, key, value)
        return value
    if kind in ("int", "dur"):
        return _as_int(kind, key, value)
    if kind == "uint":
        return _as_int(kind, key, value, unsigned=True)
    if kind == "time":
        if not isinstance(value, str):
            raise _type_error(kind, key, value)
        try:
            return parse_rfc3339(value)
        except Exception:
            raise ValueError(f'parsing time "\\"{value}\\"" as "\\"2006-01-02T15:04:05Z07:00\\"": '
                             "cannot parse") from None
    if kind == "durs":
        if not isinstance(value, list):
            raise _type_error(kind, key, value)
        return [_as_int("dur", key, v) for v in value if v is not None]
    if kind == "strs":
        if not isinstance(value, list):
            raise _type_error(kind, key, value)
        out = []
        for v in value:
            if v is None:
                v = ""
            if not isinstance(v, str):
                raise _type_error("str", key, v)
            out.append(v)
        return out
    if kind == "map":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values() if v is not None):
            raise _type_error(kind, key, value)
        return {k: (v or "") for k, v in value.items()}
    enum = {"deliver": DELIVER_POLICIES, "ack": ACK_POLICIES, "replay": REPLAY_POLICIES,
            "priority": PRIORITY_POLICIES}[kind]
    if kind == "deliver" and value == "undefined":
        return "all"
    if kind == "priority" and value == "":
        return "none"
    if not isinstance(value, str) or value not in enum:
        raise ValueError(f'can not unmarshal "{value}"' if isinstance(value, str)
                         else f"can not unmarshal {value!r}")
    return value


# JSON key -> (attribute, decoder kind)
_FIELDS: dict[str, tuple[str, str]] = {
    "durable_name": ("durable_name", "str"),
    "name": ("name", "str"),
    "description": ("description", "str"),
    "deliver_policy": ("deliver_policy", "deliver"),
    "opt_start_seq": ("opt_start_seq", "uint"),
    "opt_start_time": ("opt_start_time", "time"),
    "ack_policy": ("ack_policy", "ack"),
    "ack_wait": ("ack_wait", "dur"),
    "max_deliver": ("max_deliver", "int"),
    "backoff": ("backoff", "durs"),
    "filter_subject": ("filter_subject", "str"),
    "filter_subjects": ("filter_subjects", "strs"),
    "replay_policy": ("replay_policy", "replay"),
    "rate_limit_bps": ("rate_limit_bps", "uint"),
    "sample_freq": ("sample_freq", "str"),
    "max_waiting": ("max_waiting", "int"),
    "max_ack_pending": ("max_ack_pending", "int"),
    "flow_control": ("flow_control", "bool"),
    "headers_only": ("headers_only", "bool"),
    "max_batch": ("max_batch", "int"),
    "max_expires": ("max_expires", "dur"),
    "max_bytes": ("max_bytes", "int"),
    "deliver_subject": ("deliver_subject", "str"),
    "deliver_group": ("deliver_group", "str"),
    "idle_heartbeat": ("idle_heartbeat", "dur"),
    "inactive_threshold": ("inactive_threshold", "dur"),
    "num_replicas": ("num_replicas", "int"),
    "mem_storage": ("mem_storage", "bool"),
    "direct": ("direct", "bool"),
    "metadata": ("metadata", "map"),
    "pause_until": ("pause_until", "time"),
    "priority_groups": ("priority_groups", "strs"),
    "priority_policy": ("priority_policy", "priority"),
    "priority_timeout": ("priority_timeout", "dur"),
}

assert {a for a, _ in _FIELDS.values()} == {f.name for f in fields(ConsumerConfig)}


# -- stream facts we need (read defensively: the stream config is another module's type) -------

def _stream_attr(stream_cfg: Any, name: str, default: Any) -> Any:
    if stream_cfg is None:
        return default
    if isinstance(stream_cfg, dict):
        return stream_cfg.get(name, default)
    return getattr(stream_cfg, name, default)


def stream_consumer_limits(stream_cfg: Any) -> tuple[int, int]:
    """(inactive_threshold ns, max_ack_pending) from the stream's `consumer_limits`."""
    lim = _stream_attr(stream_cfg, "consumer_limits", None)
    if lim is None:
        return 0, 0
    return int(_stream_attr(lim, "inactive_threshold", 0) or 0), int(_stream_attr(lim, "max_ack_pending", 0) or 0)


def stream_retention(stream_cfg: Any) -> str:
    r = _stream_attr(stream_cfg, "retention", "limits")
    return getattr(r, "value", r) or "limits"


def stream_replicas(stream_cfg: Any) -> int:
    return int(_stream_attr(stream_cfg, "num_replicas", 1) or 1)


def stream_subjects(stream_cfg: Any) -> list[str]:
    return list(_stream_attr(stream_cfg, "subjects", None) or [])


# -- defaults ----------------------------------------------------------------------------------

def apply_defaults(cfg: ConsumerConfig, stream_cfg: Any = None, pedantic: bool = False,
                   server_max_ack_pending: int = 0, server_max_request_batch: int = 0) -> None:
    """setConsumerConfigDefaults, in place."""
    lim_inactive, lim_max_ack = stream_consumer_limits(stream_cfg)
    if not cfg.deliver_subject and cfg.max_waiting == 0:
        cfg.max_waiting = WAIT_QUEUE_DEFAULT_MAX
    if cfg.ack_wait == 0 and cfg.ack_policy in ("explicit", "all"):
        cfg.ack_wait = ACK_WAIT_DEFAULT
    if cfg.max_deliver == 0:
        cfg.max_deliver = -1
    if cfg.backoff:
        if pedantic and cfg.ack_wait != cfg.backoff[0]:
            raise err("JSPedanticErrF", err="first backoff value has to equal batch AckWait")
        cfg.ack_wait = cfg.backoff[0]
    if cfg.max_ack_pending == 0:
        if pedantic and lim_max_ack > 0:
            raise err("JSPedanticErrF", err="max_ack_pending must be set if it's configured in stream limits")
        cfg.max_ack_pending = lim_max_ack
    if cfg.inactive_threshold == 0:
        if pedantic and lim_inactive > 0:
            raise err("JSPedanticErrF", err="inactive_threshold must be set if it's configured in stream limits")
        cfg.inactive_threshold = lim_inactive
    if cfg.ack_policy in ("explicit", "all") and cfg.max_ack_pending == 0:
        pending = MAX_ACK_PENDING_DEFAULT
        if 0 < server_max_ack_pending < pending:
            pending = server_max_ack_pending
        cfg.max_ack_pending = pending
    if not cfg.deliver_subject and cfg.max_batch == 0 and server_max_request_batch > 0:
        if pedantic:
            raise err("JSPedanticErrF", err="max_request_batch must be set if it's JetStream limits are set")
        cfg.max_batch = server_max_request_batch
    if cfg.priority_policy == "pinned_client" and cfg.priority_timeout == 0:
        cfg.priority_timeout = PINNED_TTL_DEFAULT


def finalize_ephemeral_threshold(cfg: ConsumerConfig) -> None:
    """Ephemerals always get an inactive threshold (the config shows 5s, sans jitter)."""
    if not cfg.durable_name and cfg.inactive_threshold <= 0:
        cfg.inactive_threshold = DELETE_WAIT_DEFAULT


# -- validation --------------------------------------------------------------------------------

def delivery_forms_cycle(stream_cfg: Any, deliver_subject: str) -> bool:
    from ..core.subject import subject_matches
    for s in stream_subjects(stream_cfg):
        if subject_matches(deliver_subject, s):
            return True
    return False


def check_config(cfg: ConsumerConfig, stream_cfg: Any = None, is_recovering: bool = False,
                 server_max_ack_pending: int = 0, server_max_request_batch: int = 0) -> None:
    """checkConsumerCfg: raise the first ConsumerError nats-server would report."""
    from ..core.subject import is_literal
    s_replicas = stream_replicas(stream_cfg)
    retention = stream_retention(stream_cfg)
    lim_inactive, lim_max_ack = stream_consumer_limits(stream_cfg)

    if cfg.num_replicas > 0 and cfg.num_replicas > s_replicas:
        raise err("JSConsumerReplicasExceedsStream")
    if cfg.num_replicas < 0:
        raise err("JSReplicasCountCannotBeNegative")
    if retention in ("interest", "workqueue"):
        if not is_recovering and cfg.num_replicas != 0 and cfg.num_replicas != s_replicas:
            raise err("JSConsumerReplicasShouldMatchStream")
    if cfg.backoff and cfg.max_deliver != -1 and len(cfg.backoff) > cfg.max_deliver:
        raise err("JSConsumerMaxDeliverBackoffErr")
    if len(cfg.description.encode()) > MAX_DESCRIPTION_LEN:
        raise err("JSConsumerDescriptionTooLongErrF", max=MAX_DESCRIPTION_LEN)

    if cfg.deliver_subject:
        if not is_literal(cfg.deliver_subject):
            raise err("JSConsumerDeliverToWildcardsErr")
        if not valid_subject(cfg.deliver_subject):
            raise err("JSConsumerInvalidDeliverSubject")
        if delivery_forms_cycle(stream_cfg, cfg.deliver_subject):
            raise err("JSConsumerDeliverCycleErr")
        if cfg.max_waiting != 0:
            raise err("JSConsumerPushMaxWaitingErr")
        if cfg.max_ack_pending > 0 and cfg.ack_policy == "none":
            raise err("JSConsumerMaxPendingAckPolicyRequiredErr")
        if 0 < cfg.idle_heartbeat < MIN_HEARTBEAT:
            raise err("JSConsumerSmallHeartbeatErr")
    else:
        if cfg.ack_policy == "none" and retention == "workqueue":
            raise err("JSConsumerPullRequiresAckErr")
        if cfg.rate_limit_bps > 0:
            raise err("JSConsumerPullWithRateLimitErr")
        if cfg.max_waiting < 0:
            raise err("JSConsumerMaxWaitingNegativeErr")
        if cfg.idle_heartbeat > 0:
            raise err("JSConsumerHBRequiresPushErr")
        if cfg.flow_control:
            raise err("JSConsumerFCRequiresPushErr")
        if cfg.max_batch < 0:
            raise err("JSConsumerMaxRequestBatchNegativeErr")
        if cfg.max_expires != 0 and cfg.max_expires < MIN_MAX_EXPIRES:
            raise err("JSConsumerMaxRequestExpiresToSmall")
        if server_max_request_batch > 0 and cfg.max_batch > server_max_request_batch:
            raise js_err(10125, limit=server_max_request_batch)
    if server_max_ack_pending > 0 and cfg.max_ack_pending > server_max_ack_pending:
        raise err("JSConsumerMaxPendingAckExcessErrF", limit=server_max_ack_pending)
    if lim_max_ack > 0 and cfg.max_ack_pending > lim_max_ack:
        raise err("JSConsumerMaxPendingAckExcessErrF", limit=lim_max_ack)
    if lim_inactive > 0 and cfg.inactive_threshold > lim_inactive:
        raise err("JSConsumerInactiveThresholdExcess", limit=_go_duration(lim_inactive))

    if cfg.direct:
        if not cfg.deliver_subject:
            raise err("JSConsumerDirectRequiresPushErr")
        if cfg.durable_name:
            raise err("JSConsumerDirectRequiresEphemeralErr")

    if cfg.filter_subject and cfg.filter_subjects:
        raise err("JSConsumerDuplicateFilterSubjects")
    if cfg.filter_subject and not valid_subject(cfg.filter_subject):
        raise err("JSStreamInvalidConfigF", err="invalid subject")
    for f in cfg.filter_subjects:
        if f == "":
            raise err("JSConsumerEmptyFilter")
    filters = cfg.filters
    for i, a in enumerate(filters):
        if not valid_subject(a):
            raise err("JSStreamInvalidConfigF", err="invalid subject")
        for j, b in enumerate(filters):
            if i != j and subjects_collide(a, b):
                raise err("JSConsumerOverlappingSubjectFilters")

    dp = cfg.deliver_policy
    has_seq = cfg.opt_start_seq > 0
    has_time = cfg.opt_start_time is not None
    names = {"all": "all", "last": "last", "last_per_subject": "last per subject", "new": "new"}
    if dp in names:
        label = names[dp]
        if has_seq:
            raise _policy_error(f"consumer delivery policy is deliver {label}, but optional start sequence is also set")
        if has_time:
            raise _policy_error(f"consumer delivery policy is deliver {label}, but optional start time is also set")
        if dp == "last_per_subject" and not filters:
            raise _policy_error("consumer delivery policy is deliver last per subject, but optional filter subject is not set")
    elif dp == "by_start_sequence":
        if not has_seq:
            raise _policy_error("consumer delivery policy is deliver by start sequence, but optional start sequence is not set")
        if has_time:
            raise _policy_error("consumer delivery policy is deliver by start sequence, but optional start time is also set")
    elif dp == "by_start_time":
        if not has_time:
            raise _policy_error("consumer delivery policy is deliver by start time, but optional start time is not set")
        if cfg.opt_start_seq != 0:
            raise _policy_error("consumer delivery policy is deliver by start time, but optional start sequence is also set")

    if cfg.sample_freq:
        s = cfg.sample_freq[:-1] if cfg.sample_freq.endswith("%") else cfg.sample_freq
        try:
            v = int(s)
        except ValueError:
            raise err("JSConsumerInvalidSamplingErrF",
                      err=f'strconv.Atoi: parsing "{s}": invalid syntax') from None
        if v < 0:
            raise err("JSConsumerInvalidSamplingErrF", err="<nil>")

    if cfg.flow_control and cfg.idle_heartbeat == 0:
        raise err("JSConsumerWithFlowControlNeedsHeartbeats")
    if cfg.durable_name and cfg.name and cfg.name != cfg.durable_name:
        raise err("JSConsumerCreateDurableAndNameMismatch")
    if sum(len(k) + len(v) for k, v in cfg.metadata.items()) > MAX_METADATA_LEN:
        raise err("JSConsumerMetadataLengthErrF", limit=f"{MAX_METADATA_LEN // 1024}KB")

    if cfg.priority_policy != "none":
        if cfg.deliver_subject:
            raise err("JSConsumerPushWithPriorityGroupErr")
        if not cfg.priority_groups:
            raise err("JSConsumerPriorityPolicyWithoutGroup")
        for g in cfg.priority_groups:
            if g == "":
                raise err("JSConsumerEmptyGroupName")
            if not _GROUP_NAME_RE.match(g):
                raise err("JSConsumerInvalidGroupNameErr")


def sample_frequency(cfg: ConsumerConfig) -> int:
    if not cfg.sample_freq:
        return 0
    try:
        return int(cfg.sample_freq.rstrip("%"))
    except ValueError:
        return 0


def check_update(old: ConsumerConfig, new: ConsumerConfig,
                 deliver_has_interest: Callable[[str], bool]) -> None:
    """checkNewConsumerConfig: what an update may not change. Raises ConsumerError 10012 with
    the reason (or 10013 when the old push subject is still bound)."""
    if old == new:
        return

    def bad(text: str) -> ConsumerError:
        return err("JSConsumerCreateErrF", err=text)

    if old.deliver_policy != new.deliver_policy:
        raise bad("deliver policy can not be updated")
    if old.mem_storage != new.mem_storage:
        raise bad("storage type can not be updated")
    if old.direct != new.direct:
        raise bad("direct can not be updated")
    if old.opt_start_seq != new.opt_start_seq:
        raise bad("start sequence can not be updated")
    if old.opt_start_time != new.opt_start_time:
        raise bad("start time can not be updated")
    if old.ack_policy != new.ack_policy:
        raise bad("ack policy can not be updated")
    if old.replay_policy != new.replay_policy:
        raise bad("replay policy can not be updated")
    if old.idle_heartbeat != new.idle_heartbeat:
        raise bad("heart beats can not be updated")
    if old.flow_control != new.flow_control:
        raise bad("flow control can not be updated")
    if old.deliver_subject != new.deliver_subject:
        if not old.deliver_subject:
            raise bad("can not update pull consumer to push based")
        if not new.deliver_subject:
            raise bad("can not update push consumer to pull based")
        if deliver_has_interest(old.deliver_subject):
            raise err("JSConsumerNameExistErr")
    if old.max_waiting != new.max_waiting:
        raise bad("max waiting can not be updated")
    if new.backoff and new.max_deliver != -1 and len(new.backoff) > new.max_deliver:
        raise err("JSConsumerMaxDeliverBackoffErr")


# -- versioning metadata (2.11) ----------------------------------------------------------------

def _delete_dynamic(md: dict[str, str]) -> None:
    md.pop(SERVER_VERSION_KEY, None)
    md.pop(SERVER_LEVEL_KEY, None)


def set_static_metadata(cfg: ConsumerConfig) -> None:
    """setStaticConsumerMetadata: store `_nats.req.level`, drop dynamic keys."""
    _delete_dynamic(cfg.metadata)
    level = 0
    if cfg.pause_until:
        level = 1
    if cfg.priority_policy != "none" or cfg.priority_timeout or cfg.priority_groups:
        level = 1
    cfg.metadata[REQ_LEVEL_KEY] = str(level)


def copy_versioning_metadata(cfg: ConsumerConfig, prev: ConsumerConfig) -> None:
    """copyConsumerMetadata: make `cfg` carry `prev`'s req level so equality ignores it."""
    _delete_dynamic(cfg.metadata)
    if REQ_LEVEL_KEY in prev.metadata:
        cfg.metadata[REQ_LEVEL_KEY] = prev.metadata[REQ_LEVEL_KEY]
    else:
        cfg.metadata.pop(REQ_LEVEL_KEY, None)


def config_json_with_dynamic_metadata(cfg: ConsumerConfig, server_version: str) -> dict[str, Any]:
    """The config as responses show it: stored metadata plus `_nats.ver` / `_nats.level`."""
    out = cfg.to_json()
    md = dict(cfg.metadata)
    md[SERVER_VERSION_KEY] = server_version
    md[SERVER_LEVEL_KEY] = str(API_LEVEL)
    out["metadata"] = md
    return out


# -- Go durations (for error texts) ------------------------------------------------------------

def _go_duration(ns: int) -> str:
    """time.Duration.String() for the values we print (e.g. 5s, 1m30s, 500ms)."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    ns = abs(ns)
    if ns < 1_000:
        s = f"{ns}ns"
    elif ns < 1_000_000:
        s = _trim(ns / 1_000) + "µs"
    elif ns < 1_000_000_000:
        s = _trim(ns / 1_000_000) + "ms"
    else:
        h, rem = divmod(ns, 3_600_000_000_000)
        m, rem = divmod(rem, 60_000_000_000)
        sec = _trim(rem / 1_000_000_000)
        s = (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + sec + "s"
    return ("-" if neg else "") + s


def _trim(x: float) -> str:
    t = f"{x:.9f}".rstrip("0").rstrip(".")
    return t or "0"


go_duration = _go_duration
