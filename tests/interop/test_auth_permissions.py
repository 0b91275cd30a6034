"""Per-user permissions over real sockets: allow/deny matrices (deny wins), queue permissions,
allow_responses, default_permissions, wildcard subscriptions over denied subjects, and the
same -ERR lines as the real nats-server for a matrix of publishes and subscriptions."""

from __future__ import annotations

import json

import nats
import pytest

from conftest import flushed, run_async
from edgebus.testing.embedded import EmbeddedServer
from rawclient import RawSocket

PERMS_CONF = """
authorization {
  users: [
    { user: alice, password: a, permissions: {
        publish: { allow: ["orders.>", "logs.*"], deny: ["orders.secret", "logs.audit"] }
        subscribe: { allow: ["orders.*", "events.>", "jobs workers", "tasks.> w.*"], deny: ["events.private.>", "jobs evil"] }
    } }
    { user: bob, password: b, permissions: { publish: "only.this", subscribe: ["a", "b.*"] } }
    { user: svc, password: s, permissions: { subscribe: "req.>", allow_responses: true } }
    { user: svc2, password: s, permissions: { subscribe: "req.>", allow_responses: { max: 2, expires: "1m" } } }
    { user: free, password: f }
  ]
  default_permissions: { publish: { deny: "forbidden.>" } }
}
"""


class Raw(RawSocket):
    def __init__(self, port: int, **connect) -> None:
        super().__init__("127.0.0.1", port, timeout=5)
        self.line()
        opts = {"verbose": False, "pedantic": False, **connect}
        self.sock.sendall(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
        assert self.line() == b"PONG"

    def ask(self, op: bytes) -> bytes | None:
        """Send one operation, then PING; the -ERR it caused (or None if only PONG came)."""
        self.sock.sendall(op + b"PING\r\n")
        errs = []
        while True:
            line = self.line()
            if line == b"PONG":
                break
            if line.startswith(b"MSG "):
                self.line()  # the payload
                if hasattr(self, "got"):
                    self.got.append(tuple(line.split()[1:3]))  # (subject, sid)
                continue
            errs.append(line)
        assert len(errs) <= 1, errs
        return errs[0] if errs else None


def pub(subj: str) -> bytes:
    return f"PUB {subj} 2\r\nhi\r\n".encode()


_sid = iter(range(1, 10**6))


def sub(subj: str, queue: str | None = None) -> bytes:
    q = f" {queue}" if queue else ""
    return f"SUB {subj}{q} {next(_sid)}\r\n".encode()


PUB_ERR = "Permissions Violation for Publish to \"{}\""
SUB_ERR = "Permissions Violation for Subscription to \"{}\""


@pytest.fixture(scope="module")
def server():
    with EmbeddedServer(config=PERMS_CONF, port=-1) as s:
        yield s


@pytest.mark.parametrize("subject,ok", [
    ("orders.new", True), ("orders.eu.new", True), ("orders.secret", False),
    ("logs.app", True), ("logs.audit", False), ("logs.app.x", False), ("other", False),
])
def test_publish_matrix_deny_wins(server, subject, ok):
    r = Raw(server.port, user="alice", **{"pass": "a"})
    err = r.ask(pub(subject))
    assert (err is None) == ok, err
    if not ok:
        assert err == f"-ERR '{PUB_ERR.format(subject)}'".encode()
    # the connection stays usable after a violation
    assert r.ask(pub("orders.after")) is None
    r.close()


@pytest.mark.parametrize("subject,queue,ok", [
    ("orders.new", None, True), ("orders.*", None, True),
    # nats-server matches the subscription subject token by token: "*" also covers ">"
    ("orders.>", None, True), ("*.new", None, False),
    ("events.x.y", None, True), ("events.private.x", None, False), ("events.>", None, True),
    ("jobs", "workers", True), ("jobs", None, False), ("jobs", "evil", False),
    ("jobs", "other", False), ("tasks.1", "w.1", True), ("tasks.1", "x", False),
    ("tasks.1", None, False),
])
def test_subscribe_matrix_with_queues(server, subject, queue, ok):
    r = Raw(server.port, user="alice", **{"pass": "a"})
    err = r.ask(sub(subject, queue))
    assert (err is None) == ok, err
    if not ok:
        text = SUB_ERR.format(subject)
        if queue:
            text += f' using queue "{queue}"'
        assert err == f"-ERR '{text}'".encode()
    r.close()


def test_plain_list_and_string_forms(server):
    r = Raw(server.port, user="bob", **{"pass": "b"})
    assert r.ask(pub("only.this")) is None
    assert r.ask(pub("only.that")) is not None
    assert r.ask(sub("a")) is None
    assert r.ask(sub("b.x")) is None
    assert r.ask(sub("c")) is not None
    r.close()


def test_default_permissions_apply_to_users_without_their_own(server):
    r = Raw(server.port, user="free", **{"pass": "f"})
    assert r.ask(pub("anything")) is None
    assert r.ask(pub("forbidden.x")) == f"-ERR '{PUB_ERR.format('forbidden.x')}'".encode()
    r.close()


def test_wildcard_subscription_does_not_receive_denied_subjects(server):
    async def go():
        nc_a = await nats.connect(server.client_url, user="alice", password="a")
        nc_f = await nats.connect(server.client_url, user="free", password="f")
        s = await nc_a.subscribe("events.>")
        await flushed(nc_a)
        await nc_f.publish("events.private.x", b"hidden")
        await nc_f.publish("events.public.x", b"shown")
        await flushed(nc_f)
        m = await s.next_msg(timeout=2)
        assert m.subject == "events.public.x"
        with pytest.raises(nats.errors.TimeoutError):
            await s.next_msg(timeout=0.3)
        await nc_a.close()
        await nc_f.close()
    run_async(go)


def test_allow_responses(server):
    async def go():
        errors = []

        async def err_cb(e):
            errors.append(str(e))
        svc = await nats.connect(server.client_url, user="svc", password="s", error_cb=err_cb)
        cli = await nats.connect(server.client_url, user="free", password="f")

        async def handler(m):
            await m.respond(b"one")
            await m.respond(b"two")  # beyond the default max of 1
        await svc.subscribe("req.echo", cb=handler)
        await flushed(svc)
        inbox = cli.new_inbox()
        s = await cli.subscribe(inbox)
        await cli.publish("req.echo", b"x", reply=inbox)
        await flushed(cli)
        assert (await s.next_msg(timeout=2)).data == b"one"
        with pytest.raises(nats.errors.TimeoutError):
            await s.next_msg(timeout=0.3)
        # no publish rights other than responses
        await svc.publish("anything", b"x")
        await flushed(svc)
        await svc.close()
        await cli.close()
        return errors
    errors = run_async(go)
    assert any("permissions violation for publish" in e.lower() for e in errors)


def test_allow_responses_max(server):
    async def go():
        svc = await nats.connect(server.client_url, user="svc2", password="s")
        cli = await nats.connect(server.client_url, user="free", password="f")

        async def handler(m):
            for i in range(3):
                await m.respond(str(i).encode())
        await svc.subscribe("req.many", cb=handler)
        await flushed(svc)
        inbox = cli.new_inbox()
        s = await cli.subscribe(inbox)
        await cli.publish("req.many", b"", reply=inbox)
        got = [(await s.next_msg(timeout=2)).data for _ in range(2)]
        with pytest.raises(nats.errors.TimeoutError):
            await s.next_msg(timeout=0.3)
        await svc.close()
        await cli.close()
        return got
    assert run_async(go) == [b"0", b"1"]


def test_reply_to_reserved_prefix_is_refused(server):
    r = Raw(server.port, user="free", **{"pass": "f"})
    err = r.ask(b"PUB x _R_.abc 0\r\n\r\n")
    assert err == b"-ERR 'Permissions Violation for Publish with Reply of \"_R_.abc\"'"
    r.close()


DIFF_OPS = [pub("orders.new"), pub("orders.secret"), pub("logs.a.b"), pub("zzz"),
            sub("orders.*"), sub("orders.>"), sub("events.>"), sub("events.private.x"),
            sub("jobs", "workers"), sub("jobs"), sub("jobs", "evil"), sub("tasks.x", "w.q"),
            sub("tasks.x", "q"), sub("tasks.*", "w.1"), sub("*.new")]


def test_same_errors_as_real_nats_server(real_nats_server):
    real = real_nats_server(config=PERMS_CONF)

    def run(port: int) -> list:
        r = Raw(port, user="alice", **{"pass": "a"})
        out = [r.ask(op.replace(b" 1\r\n", b" 1\r\n")) for op in DIFF_OPS]
        r.close()
        return out

    with EmbeddedServer(config=PERMS_CONF, port=-1) as s:
        ours = run(s.port)
    theirs = run(real.port)
    assert ours == theirs


def test_permissions_from_config_variables():
    conf = """
    ALLOWED = ["vars.>"]
    SECRET = "s3"
    authorization { users: [ {user: v, password: $SECRET, permissions: {publish: $ALLOWED}} ] }
    """
    with EmbeddedServer(config=conf, port=-1) as s:
        r = Raw(s.port, user="v", **{"pass": "s3"})
        assert r.ask(pub("vars.x")) is None
        assert r.ask(pub("other")) == f"-ERR '{PUB_ERR.format('other')}'".encode()
        r.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_permission_matrix_matches_real_nats_server(real_nats_server, tmp_path, seed):
    """Seeded random rules and operations: every -ERR (or its absence), and every delivery to
    the restricted user's subscriptions, as nats-server decides them."""
    import random
    rng = random.Random(seed)
    toks = ["a", "b", "c"]

    def subj(wild: bool) -> str:
        n = rng.randint(1, 3)
        parts = []
        for i in range(n):
            r = rng.random()
            if wild and r < 0.2:
                parts.append("*")
            elif wild and r < 0.3 and i == n - 1:
                parts.append(">")
            else:
                parts.append(rng.choice(toks))
        return ".".join(parts)

    def entries(queue_ok: bool) -> list:
        out = []
        for _ in range(rng.randint(1, 3)):
            e = subj(True)
            if queue_ok and rng.random() < 0.3:
                e += " " + rng.choice(["q1", "q2", "q*"])
            out.append(e)
        return out

    users, ops, conf_of = [], {}, {}
    for u in range(40):
        perms = {}
        for direction, queue_ok in (("publish", False), ("subscribe", True)):
            spec = {}
            if rng.random() < 0.7:
                spec["allow"] = entries(queue_ok)
            if rng.random() < 0.5:
                spec["deny"] = entries(queue_ok)
            if spec:
                perms[direction] = spec
        users.append(f"{{user: u{u}, password: p, permissions: {json.dumps(perms)}}}")
        conf_of[f"u{u}"] = perms
        seq = []
        for _ in range(40):
            if rng.random() < 0.4:
                seq.append(pub(subj(False)))
            else:
                seq.append(sub(subj(True), rng.choice([None, None, "q1", "q2"])))
        ops[f"u{u}"] = seq
    users.append("{user: free, password: p}")
    conf = "authorization { users: [\n" + "\n".join(users) + "\n] }\n"
    probes = sorted({subj(False) for _ in range(60)})

    def run(port: int) -> dict:
        out = {}
        for name, seq in ops.items():
            r = Raw(port, user=name, **{"pass": "p"})
            errs = [r.ask(op) for op in seq]
            r.got = []
            # then an unrestricted publisher: what reaches this user's subscriptions?
            f = Raw(port, user="free", **{"pass": "p"})
            for p in probes:
                f.ask(pub(p))
            r.ask(b"")
            # a queue group picks any member: count deliveries per group, not per sid
            qof = {}
            for op in seq:
                parts = op.split()
                if parts[0] == b"SUB":
                    qof[parts[-1]] = parts[2] if len(parts) == 4 else None
            got = [(subj_, b"q:" + qof[sid] if qof.get(sid) else sid) for subj_, sid in r.got]
            out[name] = (errs, sorted(got))
            f.close()
            r.close()
        return out

    # nats-server logs every violation: to a file, not to a pipe nobody drains
    real = real_nats_server(config=conf, args=["-l", str(tmp_path / "natsd.log")])
    with EmbeddedServer(config=conf, port=-1) as s:
        ours = run(s.port)
    theirs = run(real.port)
    for name in ops:
        if ours[name] != theirs[name]:
            diff = [(o, a, b) for o, a, b in zip(ops[name], ours[name][0], theirs[name][0]) if a != b]
            raise AssertionError((name, conf_of[name], diff,
                                  "ours-only", set(ours[name][1]) - set(theirs[name][1]),
                                  "theirs-only", set(theirs[name][1]) - set(ours[name][1]),
                                  [o for o in ops[name] if o.startswith(b"SUB")]))
