"""Permissions and subject renaming as pure functions: nats-server's allow/deny/queue rules,
allow_responses defaults, JWT permission limits, import subject mapping."""

from __future__ import annotations

import pytest

from edgebus.core.permissions import Permissions, SubjectRules
from edgebus.security.accounts import map_subject


def test_publish_allow_then_deny():
    p = Permissions({"allow": ["a.>", "b"], "deny": ["a.secret"]})
    assert p.can_publish("a.x") and p.can_publish("a.x.y") and p.can_publish("b")
    assert not p.can_publish("a.secret") and not p.can_publish("c") and not p.can_publish("a")
    # cached answers stay right
    assert not p.can_publish("a.secret")


def test_forms_string_list_map_case_insensitive():
    assert Permissions.from_config({"publish": "x"}).can_publish("x")
    assert not Permissions.from_config({"pub": ["x"]}).can_publish("y")
    p = Permissions.from_config({"PUBLISH": {"DENY": "x"}})
    assert p is not None and p.can_publish("y") and not p.can_publish("x")
    assert Permissions.from_config(None) is None and Permissions.from_config({}) is None


def test_subscribe_subject_is_matched_as_literal_tokens():
    r = SubjectRules(["foo.*"])
    assert r.permits_sub("foo.bar", None)
    assert r.permits_sub("foo.*", None)
    assert r.permits_sub("foo.>", None)  # nats-server: a "*" entry covers a ">" token
    assert not r.permits_sub("*.bar", None)
    assert not SubjectRules(["foo.bar"]).permits_sub("foo.*", None)


def test_queue_entries():
    r = SubjectRules(["jobs q1", "jobs.* g.*", "plain"], ["jobs bad"])
    assert r.permits_sub("jobs", "q1")
    assert not r.permits_sub("jobs", None)  # only queue entries cover "jobs"
    assert not r.permits_sub("jobs", "q2")
    assert r.permits_sub("jobs.x", "g.1")
    assert not r.permits_sub("jobs.x", "h")
    assert r.permits_sub("plain", None) and r.permits_sub("plain", "any")
    deny_only = SubjectRules(None, ["x bad"])
    assert deny_only.permits_sub("x", None) and deny_only.permits_sub("x", "good")
    assert not deny_only.permits_sub("x", "bad")


def test_deny_filter_for_wildcard_subscriptions():
    p = Permissions(None, {"deny": ["events.private.>"]})
    assert p.can_subscribe("events.>")
    assert p.needs_delivery_filter("events.>")
    assert not p.needs_delivery_filter("other.>")
    assert not p.needs_delivery_filter("events.public")
    assert p.delivery_denied("events.private.x") and not p.delivery_denied("events.public")


def test_allow_responses_defaults_and_blanket_publish_off():
    p = Permissions(None, None, True)
    assert p.resp_max == 1 and p.resp_expires == 120.0
    assert p.has_pub_rules and not p.can_publish("anything")
    p2 = Permissions.from_config({"allow_responses": {"max": 5, "expires": "1m"},
                                  "publish": {"deny": ["x"]}})
    assert p2.resp_max == 5 and p2.resp_expires == 60.0
    assert not p2.can_publish("y") and p2.pub.deny == ["x"]
    # 0 means the default, negatives mean unlimited
    assert Permissions(None, None, {"max": 0}).resp_max == 1
    assert Permissions(None, None, {"max": -1}).resp_max == -1


def test_from_jwt_limits():
    assert Permissions.from_jwt({"pub": {}, "sub": {}, "subs": -1}) is None
    p = Permissions.from_jwt({"pub": {"allow": ["a"]}, "sub": {"deny": ["b"]},
                              "resp": {"max": 3, "ttl": 5_000_000_000}})
    assert p is not None
    assert p.can_publish("a") and not p.can_publish("c")
    assert not p.can_subscribe("b") and p.can_subscribe("c")
    assert p.resp_max == 3 and p.resp_expires == 5.0
    d = p.to_dict()
    assert d["publish"] == {"allow": ["a"]} and d["subscribe"] == {"deny": ["b"]}
    assert d["responses"] == {"max": 3, "ttl": 5_000_000_000}


@pytest.mark.parametrize("subject,src,dst,out", [
    ("news.eu", "news.>", "ext.news.>", "ext.news.eu"),
    ("a.b.c", "a.*.*", "x.*.*", "x.b.c"),
    ("a.b.c", "a.*.*", "x.$2.$1", "x.c.b"),
    ("svc.ping", "svc.*", "asvc.*", "asvc.ping"),
    ("same", "same", "same", "same"),
    ("a.b.c.d", "a.>", "z.>", "z.b.c.d"),
])
def test_map_subject(subject, src, dst, out):
    assert map_subject(subject, src, dst) == out
