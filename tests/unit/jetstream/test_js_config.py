"""StreamConfig decoding, defaults and validation (checkStreamCfg / configUpdateCheck rules)."""

from __future__ import annotations

import pytest

from edgebus.jetstream.config import (
    AccountLimits,
    StreamConfig,
    check_stream_config,
    check_update,
    set_static_metadata,
)
from edgebus.jetstream.errors import ERRORS, JSError, js_err

SECOND = 1_000_000_000


def cfg(**kw: object) -> StreamConfig:
    return StreamConfig.from_json({"name": "S", **kw})


def code_of(fn, *a, **kw) -> int:
    with pytest.raises(JSError) as ei:
        fn(*a, **kw)
    return ei.value.err_code


def test_error_table_and_templates() -> None:
    assert len(ERRORS) >= 170
    assert js_err(10059).to_json() == {"code": 404, "err_code": 10059, "description": "stream not found"}
    assert js_err(10043, seq=7).description == "sequence 7 not found"
    assert js_err(10052, err="boom").to_json() == {"code": 500, "err_code": 10052, "description": "boom"}
    inner = js_err(10065)
    assert js_err(10049, err=inner) is inner  # Unless(): keep the specific error


def test_defaults_applied() -> None:
    c = check_stream_config(cfg())
    j = c.to_json()
    assert j["subjects"] == ["S"]
    assert (j["max_msgs"], j["max_bytes"], j["max_msgs_per_subject"], j["max_consumers"]) == (-1, -1, -1, -1)
    assert j["max_msg_size"] == -1 and j["num_replicas"] == 1
    assert j["duplicate_window"] == 120 * SECOND and j["storage"] == "file" and j["discard"] == "old"
    assert j["consumer_limits"] == {} and j["compression"] == "none"
    # max_age below 2m shrinks the duplicate window to it
    assert check_stream_config(cfg(max_age=30 * SECOND)).duplicate_window == 30 * SECOND
    # delete markers switch on TTLs and rollups (unless pedantic)
    c = check_stream_config(cfg(subject_delete_marker_ttl=5 * SECOND))
    assert c.allow_msg_ttl and c.allow_rollup_hdrs
    assert code_of(check_stream_config, cfg(subject_delete_marker_ttl=5 * SECOND), pedantic=True) == 10052


@pytest.mark.parametrize("obj", [
    {"name": 5}, {"max_msgs": "1"}, {"max_msgs": 1.0}, {"max_msg_size": 2**31},
    {"first_seq": -1}, {"no_ack": "yes"}, {"subjects": "a"}, {"retention": "Limits"},
    {"discard": "newest"}, {"storage": None}, {"compression": ""}, {"metadata": {"a": 1}},
    {"placement": []}, {"republish": {"dest": 3}},
])
def test_decode_type_errors_are_invalid_json(obj: dict) -> None:
    with pytest.raises(JSError) as ei:
        StreamConfig.from_json({"name": "S", **obj})
    assert ei.value.err_code == 10025 and ei.value.description.startswith("invalid JSON: ")


def test_decode_tolerates_unknown_fields_and_case() -> None:
    c = StreamConfig.from_json({"name": "S", "discard": "NEW", "unknown": {"x": 1}, "max_age": None})
    assert c.discard == "new" and c.max_age == 0


@pytest.mark.parametrize("kw,reason", [
    ({"name": "a.b"}, "stream name is required"),
    ({"name": "x" * 256}, "stream name is too long"),
    ({"description": "d" * 5000}, "description is too long"),
    ({"max_age": 50_000_000}, "max age needs to be >= 100ms"),
    ({"duplicate_window": -1}, "duplicates window can not be negative"),
    ({"duplicate_window": 10 * SECOND, "max_age": SECOND}, "can not be larger then max age"),
    ({"duplicate_window": 1000}, "duplicates window needs to be >= 100ms"),
    ({"subjects": ["a", "a"]}, "duplicate subjects detected"),
    ({"subjects": ["a.>", "a.b"]}, 'subject "a.>" overlaps with "a.b"'),
    ({"subjects": ["a b"]}, "invalid subject"),
    ({"subjects": [">"]}, "capturing all subjects requires no-ack"),
    ({"subjects": ["$SYS.x"]}, "overlap with system api"),
    ({"subjects": ["$JSC.x"]}, "overlap with jetstream api"),
    ({"discard_new_per_subject": True, "discard": "new"}, "requires max msgs per subject > 0"),
    ({"subject_delete_marker_ttl": -1}, "must not be negative"),
    ({"republish": {"src": ">", "dest": "S"}}, "forms a cycle"),
    ({"num_replicas": 6}, "maximum replicas is 5"),
])
def test_invalid_configs(kw: dict, reason: str) -> None:
    with pytest.raises(JSError) as ei:
        check_stream_config(cfg(**kw))
    assert ei.value.err_code == 10052
    assert reason in ei.value.description


def test_allowed_special_subjects() -> None:
    check_stream_config(cfg(subjects=["$JS.EVENT.ADVISORY.>"]))
    check_stream_config(cfg(subjects=["$SYS.ACCOUNT.x"]))
    check_stream_config(cfg(subjects=[">"], no_ack=True))
    c = check_stream_config(cfg(placement={}))
    assert c.placement is None


def test_account_limits() -> None:
    lim = AccountLimits(max_bytes_required=True, storage_max_stream_bytes=1000)
    assert code_of(check_stream_config, cfg(), limits=lim) == 10113
    assert code_of(check_stream_config, cfg(max_bytes=5000), limits=lim) == 10122
    check_stream_config(cfg(max_bytes=500), limits=lim)


def test_update_rules() -> None:
    old = check_stream_config(cfg(subjects=["a"], deny_delete=True, allow_msg_ttl=True))
    ok = check_update(old, cfg(subjects=["a", "b"], deny_delete=True, allow_msg_ttl=True, max_msgs=5))
    assert ok.subjects == ["a", "b"] and ok.max_msgs == 5
    for change, text in [
        ({"storage": "memory"}, "can not change storage type"),
        ({"retention": "workqueue"}, "to/from workqueue"),
        ({"deny_delete": False}, "cancel deny message deletes"),
        ({"allow_msg_ttl": False}, "message TTL status can not be disabled"),
    ]:
        base = {"subjects": ["a"], "deny_delete": True, "allow_msg_ttl": True}
        base.update(change)
        with pytest.raises(JSError) as ei:
            check_update(old, cfg(**base))
        assert text in ei.value.description
    sealed = check_update(old, cfg(subjects=["a"], deny_delete=True, allow_msg_ttl=True, sealed=True,
                                   max_age=60 * SECOND))
    assert sealed.max_age == 0 and sealed.discard == "new" and sealed.deny_purge


def test_static_metadata_level() -> None:
    c = cfg(allow_msg_ttl=True, metadata={"_nats.ver": "x", "k": "v"})
    set_static_metadata(c)
    assert c.metadata == {"k": "v", "_nats.req.level": "1"}
    info = c.to_info_json("2.11.0")
    assert info["metadata"]["_nats.level"] == "1" and info["metadata"]["_nats.ver"] == "2.11.0"
