"""Where MQTT state lives: session records, retained messages and queued QoS 1/2 deliveries.

Two record logs follow nats-server's layout exactly, so NATS tools can read them:

- sessions: one JSON record per persistent session at `$MQTT.sess.[<js_domain>.]<hash(id)>`
  (`{"origin","id","clean","subs":{<subject>:<qos>}}`, nats-server's `mqttPersistedSession`);
- retained: one record per subject at `$MQTT.rmsgs.<subject>` (see `retained.py`).

When JetStream runs in the account they are the JetStream streams `$MQTT_sess` and
`$MQTT_rmsgs` (created with nats-server's configs: file storage, limits retention, one message
per subject), written by publishing into the account like nats-server's internal client does,
and read from the stream's store. Otherwise each is a `MsgStore` of its own under
`<store_dir>/mqtt/<account>/` (a `MemoryStore` when there is no store directory).

Queued QoS 1/2 deliveries of persistent sessions are not JetStream consumers here (nats-server
keeps them in `$MQTT_msgs` behind one durable consumer per subscription): a `PendingLog` keeps
one record per queued delivery, per session, in a store of its own, removed on PUBACK/PUBCOMP.
That is one append and one tombstone per message instead of a stream write, a consumer
delivery and an ack round trip, and it lets a reconnecting session resend its unacknowledged
messages at once, as MQTT 3.1.1 §4.4 asks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import trio

from ..jetstream.store.base import MsgStore, StoredMsg, StoreError, StoreLimits
from ..core.blocking import run_blocking

if TYPE_CHECKING:
    from ..core.clock import Clock

log = logging.getLogger("edgebus.mqtt")

SESS_STREAM = "$MQTT_sess"
SESS_PREFIX = "$MQTT.sess."
RMSGS_STREAM = "$MQTT_rmsgs"
RMSGS_PREFIX = "$MQTT.rmsgs."

_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_$-][A-Za-z0-9_.$-]*$")


def get_hash(name: str, size: int = 8) -> str:
    """nats-server's `getHash`: sha256, first `size` bytes mapped onto base62 digits."""
    d = hashlib.sha256(name.encode()).digest()
    return "".join(_DIGITS[b % 62] for b in d[:size])


def nuid() -> str:
    """A 22-character base62 identifier, like nats-server's `nuid.Next()` (assigned ids)."""
    n = int.from_bytes(os.urandom(17), "big")
    out = []
    for _ in range(22):
        n, r = divmod(n, 62)
        out.append(_DIGITS[r])
    return "".join(out)


class RecordLog:
    """One record per subject (sessions, retained messages)."""

    backend = "memory"

    def put(self, subject: str, hdr: bytes | None, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, subject: str) -> None:
        raise NotImplementedError

    def scan(self) -> Iterator[StoredMsg]:
        raise NotImplementedError

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


def _scan_store(store: MsgStore, filt: str = ">") -> Iterator[StoredMsg]:
    seq = 0
    while True:
        m, seq = store.load_next_msg(filt, seq)
        if m is None:
            return
        yield m


class StoreLog(RecordLog):
    """A RecordLog on a MsgStore of its own (limits: one message per subject)."""

    def __init__(self, store: MsgStore, backend: str, clock: Clock) -> None:
        self.store = store
        self.backend = backend
        self.clock = clock

    def put(self, subject: str, hdr: bytes | None, data: bytes) -> None:
        self.store.store_msg(subject, hdr, data, self.clock.now_ns())

    def delete(self, subject: str) -> None:
        self.store.purge_ex(subject)

    def scan(self) -> Iterator[StoredMsg]:
        return _scan_store(self.store)

    def sync(self) -> None:
        self.store.sync()

    def close(self) -> None:
        try:
            self.store.stop()
        except StoreError:
            pass


class StreamLog(RecordLog):
    """A RecordLog that is a JetStream stream: written by publishing into the account (the
    stream stores it, NATS subscribers see it, as with nats-server), read from its store."""

    backend = "jetstream"

    def __init__(self, stream: Any, client: Any) -> None:
        self.stream = stream
        self.client = client

    def put(self, subject: str, hdr: bytes | None, data: bytes) -> None:
        self.client.publish(subject, None, hdr, data)

    def delete(self, subject: str) -> None:
        if not self.stream.closed:
            self.stream.purge(subject)

    def scan(self) -> Iterator[StoredMsg]:
        return _scan_store(self.stream.store)


class PendingLog:
    """Queued QoS 1/2 deliveries and QoS 2 state of persistent sessions, one record each:

    - `<hash>.out`    a PUBLISH to deliver; headers `Nmqtt-Pub:<qos>`, `Nmqtt-Subject`,
                      `Nmqtt-Sid`; body = payload;
    - `<hash>.rel`    a PUBREL awaiting PUBCOMP; header `Nmqtt-PubRel:<pid>`;
    - `<hash>.in`     an inbound QoS 2 PUBLISH awaiting PUBREL; headers `Nmqtt-Pub:2<flags>`,
                      `Nmqtt-Subject`, `Nmqtt-PI`.
    """

    def __init__(self, store: MsgStore, backend: str, clock: Clock) -> None:
        self.store = store
        self.backend = backend
        self.clock = clock

    def add(self, subject: str, hdr: bytes, data: bytes) -> int:
        return self.store.store_msg(subject, hdr, data, self.clock.now_ns())[0]

    def remove(self, seq: int) -> None:
        if seq:
            try:
                self.store.remove_msg(seq)
            except StoreError:
                pass

    def load(self, seq: int) -> StoredMsg | None:
        try:
            return self.store.load_msg(seq)
        except StoreError:
            return None

    def scan(self) -> Iterator[StoredMsg]:
        return _scan_store(self.store)

    def purge_session(self, session_hash: str) -> None:
        try:
            self.store.purge_ex(session_hash + ".>")
        except StoreError:
            pass

    def sync(self) -> None:
        self.store.sync()

    def close(self) -> None:
        try:
            self.store.stop()
        except StoreError:
            pass


def header_block(items: list[tuple[str, str]]) -> bytes:
    return ("NATS/1.0\r\n" + "".join(f"{k}:{v}\r\n" for k, v in items) + "\r\n").encode()


def parse_headers(hdr: bytes | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if not hdr:
        return out
    for line in hdr.decode("utf-8", "surrogateescape").split("\r\n")[1:]:
        k, sep, v = line.partition(":")
        if sep and k:
            out.setdefault(k.strip(), v.strip())
    return out


def session_record(origin: str, client_id: str, clean: bool, subs: dict[str, int]) -> bytes:
    """nats-server's `mqttPersistedSession` JSON (consumer configs are not kept: see above)."""
    rec: dict[str, Any] = {"origin": origin, "id": client_id}
    if clean:
        rec["clean"] = True
    if subs:
        rec["subs"] = dict(subs)
    return json.dumps(rec, separators=(",", ":")).encode()


class AccountStorage:
    """The three logs of one account and where they live."""

    def __init__(self, sessions: RecordLog, retained: RecordLog, pending: PendingLog,
                 domain_token: str) -> None:
        self.sessions = sessions
        self.retained = retained
        self.pending = pending
        self.domain_token = domain_token  # "<js_domain>." or ""

    @property
    def backend(self) -> str:
        return self.retained.backend

    def session_subject(self, session_hash: str) -> str:
        return SESS_PREFIX + self.domain_token + session_hash

    def sync(self) -> None:
        for x in (self.sessions, self.retained, self.pending):
            try:
                x.sync()
            except Exception:
                log.exception("MQTT store sync failed")

    def close(self) -> None:
        for x in (self.sessions, self.retained, self.pending):
            try:
                x.close()
            except Exception:
                log.exception("closing MQTT store failed")


def account_dir_name(name: str) -> str:
    return name if _SAFE_NAME.match(name) and name not in (".", "..") else "acc_" + get_hash(name, 16)


def store_root(server: Any) -> Path | None:
    """`<store_dir>/mqtt`, or None when there is no store directory (memory only)."""
    js = server.services.get("jetstream")
    d = getattr(js, "store_dir", None) or server.options.jetstream.store_dir
    return Path(d) / "mqtt" if d else None


async def _open_store(path: Path | None, limits: StoreLimits, sync_always: bool) -> tuple[MsgStore, str]:
    if path is None:
        from ..jetstream.store.memory import MemoryStore
        return MemoryStore(limits), "memory"
    from ..jetstream.store.file import FileStore
    p = str(path)
    store = await run_blocking(lambda: FileStore(p, limits, sync_always=sync_always))
    return store, "file"


async def _jetstream_stream(server: Any, account: Any, name: str, subject: str) -> Any | None:
    """The account's stream `name` (created with nats-server's config if missing), or None when
    JetStream does not run in this account."""
    svc = server.services.get("jetstream")
    js = getattr(svc, "accounts", {}).get(account.name) if svc is not None else None
    if js is None:
        return None
    stream = js.lookup(name)
    if stream is not None:
        return stream
    from ..jetstream.config import StreamConfig
    mq = server.options.mqtt
    replicas = max(1, int(getattr(mq, "stream_replicas", 1) or 1))
    cfg = StreamConfig.from_json({"name": name, "subjects": [subject + ">"], "storage": "file",
                                  "retention": "limits", "max_msgs_per_subject": 1,
                                  "num_replicas": min(replicas, 1)})
    cfg, existing = svc.check_new_stream(js, cfg, False)
    if existing is not None:
        return existing
    return await svc.create_stream(js, cfg)


async def open_account_storage(server: Any, account: Any, client: Any) -> AccountStorage:
    """Open (or create) the MQTT storage of `account`; `client` publishes into the account."""
    o = server.options
    clock = server.broker.clock
    mq = o.mqtt
    domain = (getattr(mq, "js_domain", None) or "") if mq is not None else ""
    dtok = domain + "." if domain else ""
    root = store_root(server)
    adir = root / account_dir_name(account.name) if root is not None else None
    sync_always = bool(o.jetstream.sync_always) or str(o.jetstream.sync_interval).lower() == "always"
    one = StoreLimits(max_msgs_per_subject=1)

    sessions: RecordLog | None = None
    retained: RecordLog | None = None
    try:
        s_stream = await _jetstream_stream(server, account, SESS_STREAM, SESS_PREFIX + dtok)
        r_stream = await _jetstream_stream(server, account, RMSGS_STREAM, RMSGS_PREFIX)
        if s_stream is not None and r_stream is not None:
            sessions = StreamLog(s_stream, client)
            retained = StreamLog(r_stream, client)
    except Exception as e:  # JetStream refused (limits, ...): keep MQTT working on our own store
        log.warning("MQTT: JetStream streams unavailable in account %r (%s); using the MQTT "
                    "store", account.name, e)
    if sessions is None or retained is None:
        st, kind = await _open_store(adir / "sess" if adir else None, one, sync_always)
        sessions = StoreLog(st, kind, clock)
        st, kind = await _open_store(adir / "rmsgs" if adir else None, one, sync_always)
        retained = StoreLog(st, kind, clock)
    elif adir is not None:
        # JetStream was off in an earlier run: move its records into the streams
        for name, log_ in (("sess", sessions), ("rmsgs", retained)):
            if (adir / name).is_dir():
                await _migrate(adir / name, log_, one)
    st, kind = await _open_store(adir / "pending" if adir else None, StoreLimits(), sync_always)
    return AccountStorage(sessions, retained, PendingLog(st, kind, clock), dtok)


async def _migrate(path: Path, dest: RecordLog, limits: StoreLimits) -> None:
    import shutil
    store, _ = await _open_store(path, limits, False)
    n = 0
    try:
        for m in _scan_store(store):
            dest.put(m.subject, m.hdr, m.data)
            n += 1
    finally:
        await run_blocking(store.stop)
    await run_blocking(shutil.rmtree, str(path))
    log.info("MQTT: moved %d record(s) from %s into JetStream", n, path)


def existing_account_dirs(server: Any) -> list[str]:
    """Account directory names that hold MQTT state from an earlier run."""
    root = store_root(server)
    if root is None or not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir())
