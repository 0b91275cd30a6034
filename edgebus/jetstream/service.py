"""JetStreamService: JetStream for the whole server — accounts, their streams, the store dir.

`JetStreamService(server)` is started by `services.py` when JetStream is enabled. `run()`:

1. checks/creates the store directory (`<store_dir>/jetstream/<account>/streams/<name>/`),
2. enables JetStream in every account that should have it (only `$G` when no accounts are
   configured, else the accounts whose config has `jetstream: enabled | {limits}`), giving each
   a `JSAccount` with its internal client and the `$JS.API.>` router subscription,
3. recovers each account's file streams from disk (memory streams do not survive a restart,
   as in nats-server standalone), and their consumers via `consumer_api.restore(stream)`,
4. answers `$JS.API.…` with 503/10039 in accounts without JetStream.

Server-wide and per-account resource limits (max_memory/max_file, max_streams,
max_consumers, ...) are checked here; the stream layer asks `limits_exceeded` and
`JSAccount.would_exceed_limits` on every publish.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import trio

from .. import NATS_VERSION
from ..core.client import JETSTREAM, InternalClient
from ..core.subject import subjects_collide
from .config import (
    API_LEVEL,
    AccountLimits,
    StreamConfig,
    check_bytes_limits,
    check_stream_config,
    copy_required_level,
)
from .errors import (
    MAX_STREAMS,
    STREAM_NAME_EXIST,
    STREAM_REPLICAS_NOT_SUPPORTED,
    STREAM_SUBJECT_OVERLAP,
    js_err,
)
from .names import store_child
from .stream import META_NAME, Stream, store_limits_for
from .store.base import MsgStore
from ..core.blocking import run_blocking

log = logging.getLogger("edgebus.jetstream")

SYSTEM_ACCOUNT = "$SYS"
GLOBAL_ACCOUNT = "$G"


def limits_from_config(value: Any) -> AccountLimits | None:
    """An account's `jetstream:` setting -> its limits (None = JetStream off for it).

    Accepts what the config file allows (`enabled`, true, or a map with nats-server's keys and
    aliases) and an `AccountLimits` as-is."""
    if value is None or value is False:
        return None
    if isinstance(value, AccountLimits):
        return value
    if value is True:
        return AccountLimits()
    if isinstance(value, str):
        return AccountLimits() if value.lower() in ("enabled", "enable") else None
    if not isinstance(value, Mapping):
        return None
    lim = AccountLimits()
    from ..conf.validate import storage_size
    for k, v in value.items():
        key = str(k).lower()
        if key in ("max_memory", "max_mem", "mem", "memory"):
            lim.max_memory = storage_size(v)
        elif key in ("max_store", "max_file", "max_disk", "store", "disk", "max_storage"):
            lim.max_storage = storage_size(v)
        elif key in ("max_streams", "streams"):
            lim.max_streams = int(v)
        elif key in ("max_consumers", "consumers"):
            lim.max_consumers = int(v)
        elif key in ("max_bytes_required", "max_stream_bytes", "max_bytes"):
            lim.max_bytes_required = bool(v)
        elif key in ("mem_max_stream_bytes", "memory_max_stream_bytes"):
            lim.memory_max_stream_bytes = storage_size(v)
        elif key in ("disk_max_stream_bytes", "store_max_stream_bytes", "storage_max_stream_bytes"):
            lim.storage_max_stream_bytes = storage_size(v)
        elif key == "max_ack_pending":
            lim.max_ack_pending = int(v)
    return lim


class JSAccount:
    """JetStream state of one account: streams, limits, API counters, internal client."""

    def __init__(self, service: "JetStreamService", account: Any, limits: AccountLimits) -> None:
        self.service = service
        self.account = account
        self.limits = limits
        self.client = InternalClient(service.broker, account, kind=JETSTREAM, name="JetStream")
        self.streams: dict[str, Stream] = {}
        self.api_total = 0
        self.api_errors = 0
        self.dir: Path = service.store_root / account.name / "streams"
        # set once recovery is done and the API answers: stream sourcing waits for it
        self.ready = trio.Event()

    def __repr__(self) -> str:
        return f"<JSAccount {self.account.name} streams={len(self.streams)}>"

    def lookup(self, name: str) -> Stream | None:
        return self.streams.get(name)

    def lookup_config(self, name: str) -> StreamConfig | None:
        s = self.streams.get(name)
        return s.config if s is not None else None

    # -- usage ----------------------------------------------------------------------------
    def usage(self) -> tuple[int, int]:
        """(memory bytes, file bytes) stored by this account's streams."""
        mem = store = 0
        for s in self.streams.values():
            try:
                b = s.store.state().bytes
            except Exception:
                continue
            if s.config.storage == "memory":
                mem += b
            else:
                store += b
        return mem, store

    def reserved(self, exclude: str | None = None) -> tuple[int, int]:
        """(memory, file) bytes reserved by streams with max_bytes set."""
        mem = store = 0
        for s in self.streams.values():
            if s.name == exclude or s.config.max_bytes <= 0:
                continue
            if s.config.storage == "memory":
                mem += s.config.max_bytes
            else:
                store += s.config.max_bytes
        return mem, store

    def num_consumers(self) -> int:
        return sum(len(s.consumers) for s in self.streams.values())

    def would_exceed_limits(self, storage: str, subject: str, hdr: bytes | None, data: bytes) -> bool:
        """nats-server `wouldExceedLimits`: would one more message break the account limits?"""
        lim = self.limits
        if storage == "memory":
            if lim.max_memory < 0 and lim.memory_max_stream_bytes <= 0:
                return False
            mem, _ = self.usage()
            total = mem + len(subject) + (len(hdr) if hdr else 0) + len(data) + 16
            return (0 < lim.memory_max_stream_bytes < total) or (0 <= lim.max_memory < total)
        if lim.max_storage < 0 and lim.storage_max_stream_bytes <= 0:
            return False
        _, store = self.usage()
        total = store + 22 + len(subject) + len(data) + 8 + (4 + len(hdr) if hdr else 0)
        return (0 < lim.storage_max_stream_bytes < total) or (0 <= lim.max_storage < total)

    def check_reservation(self, cfg: StreamConfig, add_bytes: int | None = None,
                          exclude: str | None = None) -> None:
        """Account and server byte limits for a stream's max_bytes reservation."""
        mem, store = self.reserved(exclude)
        svc = self.service
        if cfg.storage == "memory":
            check_bytes_limits(self.limits, "memory", cfg.max_bytes if add_bytes is None else add_bytes,
                               mem, svc.max_memory)
        else:
            check_bytes_limits(self.limits, "file", cfg.max_bytes if add_bytes is None else add_bytes,
                               store, svc.max_store)

    def stats_json(self) -> dict[str, Any]:
        """JetStreamAccountStats as `$JS.API.INFO` returns it (type added by the API)."""
        mem, store = self.usage()
        rmem, rstore = self.reserved()
        d: dict[str, Any] = {
            "memory": mem,
            "storage": store,
            "reserved_memory": rmem,
            "reserved_storage": rstore,
            "streams": len(self.streams),
            "consumers": self.num_consumers(),
            "limits": self.limits.to_json(),
        }
        if self.service.domain:
            d["domain"] = self.service.domain
        d["api"] = {"level": API_LEVEL, "total": self.api_total, "errors": self.api_errors}
        return d


class JetStreamService:
    """See the module docstring. `server.services["jetstream"]` holds the running instance."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.broker = server.broker
        self.clock = self.broker.clock
        o = server.options.jetstream
        self.options = o
        self.domain: str = o.domain or ""
        self.server_version = NATS_VERSION
        self.sync_always = bool(o.sync_always) or (isinstance(o.sync_interval, str)
                                                    and o.sync_interval.lower() == "always")
        try:
            self.sync_interval = float(o.sync_interval) if not self.sync_always else 120.0
        except (TypeError, ValueError):
            self.sync_interval = 120.0
        if self.sync_interval <= 0:
            self.sync_interval = 120.0
        self.max_memory: int = o.max_memory_store if o.max_memory_store is not None else -1
        self.max_store: int = o.max_file_store if o.max_file_store is not None else -1
        base = o.store_dir or os.path.join(tempfile.gettempdir(), "nats")
        self.store_dir = Path(base)
        self.store_root = self.store_dir / "jetstream"
        self.accounts: dict[str, JSAccount] = {}
        self.nursery: trio.Nursery = None  # type: ignore[assignment]
        self.api_total = 0
        self.api_errors = 0
        self._info_only: dict[str, InternalClient] = {}
        self._stopped = trio.Event()
        self._leaf_hooked = False
        from .api import ApiRouter
        self.router = ApiRouter(self)

    @property
    def server_name(self) -> str:
        return self.broker.server_name

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        if self.store_dir.exists() and not self.store_dir.is_dir():
            raise RuntimeError(f"storage directory is not a directory: {self.store_dir}")
        self.store_root.mkdir(parents=True, exist_ok=True)
        try:  # the consumer layer registers its API handlers when imported
            from . import consumer_api  # noqa: F401
        except ImportError:
            pass
        async with trio.open_nursery() as n:
            self.nursery = n
            n.start_soon(self.router.worker)
            for acc, limits in self._js_accounts():
                if limits is None:
                    self._enable_info_only(acc)
                else:
                    await self.enable_account(acc, limits)
            log.info("Starting JetStream (store %s)", self.store_root)
            task_status.started(self)
            await self._stopped.wait()
            n.cancel_scope.cancel()

    def _js_accounts(self) -> list[tuple[Any, AccountLimits | None]]:
        b = self.broker
        others = [a for a in b.accounts.values()
                  if a is not b.global_account and not a.is_system]
        if not others:
            lim = limits_from_config(b.global_account.js_limits) or AccountLimits()
            return [(b.global_account, lim)]
        conf = self.server.options.accounts or {}
        out: list[tuple[Any, AccountLimits | None]] = []
        for a in b.accounts.values():
            if a.is_system:
                continue
            raw = a.js_limits
            if raw is None:
                entry = conf.get(a.name)
                raw = entry.get("jetstream") if isinstance(entry, Mapping) else None
            out.append((a, limits_from_config(raw)))
        return out

    async def enable_account(self, account: Any, limits: AccountLimits | None = None) -> JSAccount:
        """Turn JetStream on for `account` (also usable later, e.g. by a JWT resolver)."""
        js = self.accounts.get(account.name)
        if js is not None:
            if limits is not None:
                js.limits = limits
            return js
        info_only = self._info_only.pop(account.name, None)
        if info_only is not None:
            info_only.close()
        js = JSAccount(self, account, limits or AccountLimits())
        self.accounts[account.name] = js
        account.jetstream = js
        # recover first, so the API never answers "stream not found" for a stream on disk
        await self._recover(js)
        self.router.attach(js)
        js.ready.set()
        return js

    def _enable_info_only(self, account: Any) -> None:
        """Accounts without JetStream still get answers: 503/10039 (as nats-server replies)."""
        c = InternalClient(self.broker, account, kind=JETSTREAM, name="JetStream")
        self._info_only[account.name] = c
        c.subscribe("$JS.API.>", self.router.not_enabled)

    async def stop(self) -> None:
        """Server shutdown: stop every stream (flushes file stores), then the service."""
        for js in list(self.accounts.values()):
            for s in list(js.streams.values()):
                try:
                    await s.stop(delete=False)
                except Exception:
                    log.exception("stopping stream %s failed", s.name)
            self.router.detach(js)
            js.client.close()
        for c in self._info_only.values():
            c.close()
        self._stopped.set()

    # -- streams --------------------------------------------------------------------------
    async def _recover(self, js: JSAccount) -> None:
        if not js.dir.is_dir():
            return
        from .store.file import FileStore
        for d in sorted(js.dir.iterdir()):
            if not d.is_dir():
                continue
            store: MsgStore | None = None
            try:
                store = await run_blocking(FileStore, str(d))
                blob = store.read_meta(META_NAME)
                if blob is None:
                    log.warning("skipping %s: no stream metadata", d)
                    await run_blocking(store.stop)
                    continue
                meta = json.loads(blob)
                cfg = StreamConfig.from_json(meta["config"])
                if cfg.name != d.name:
                    log.warning("skipping %s: it holds stream '%s'", d, cfg.name)
                    await run_blocking(store.stop)
                    continue
                store.update_config(store_limits_for(cfg))
                stream = Stream(js, cfg, store, int(meta.get("created", 0)), d)
                js.streams[cfg.name] = stream
                await self.nursery.start(stream.run)
                await self._restore_consumers(stream)
                log.info("Restored stream '%s > %s'", js.account.name, cfg.name)
            except Exception:
                log.exception("could not recover stream from %s", d)
                if store is not None:
                    try:
                        store.stop()
                    except Exception:
                        pass

    async def _restore_consumers(self, stream: Stream) -> None:
        try:
            from . import consumer_api
        except ImportError:
            return
        restore = getattr(consumer_api, "restore", None)
        if restore is None:
            return
        r = restore(stream)
        if inspect.isawaitable(r):
            await r

    def check_new_stream(self, js: JSAccount, cfg: StreamConfig, pedantic: bool) -> tuple[StreamConfig, Stream | None]:
        """Everything nats-server checks before creating a stream, in its order.

        Returns the defaulted config and, when a stream of that name already exists with the
        same config, that stream (CREATE is then a no-op success)."""
        lim = js.limits
        if lim.max_streams > 0 and sum(1 for n in js.streams if n != cfg.name) >= lim.max_streams:
            raise js_err(MAX_STREAMS)
        if cfg.max_consumers > 0 and lim.max_consumers > 0 and cfg.max_consumers > lim.max_consumers:
            raise js_err(10026)
        js.check_reservation(cfg, exclude=cfg.name)
        ncfg = check_stream_config(cfg, pedantic=pedantic, lookup=js.lookup_config, limits=lim)
        if ncfg.num_replicas > 1:
            raise js_err(STREAM_REPLICAS_NOT_SUPPORTED)
        existing = js.streams.get(ncfg.name)
        if existing is not None:
            cmp = ncfg.copy()
            copy_required_level(cmp, existing.config)
            if cmp.to_json() == existing.config.to_json():
                return existing.config, existing
            raise js_err(STREAM_NAME_EXIST)
        js.check_reservation(ncfg, exclude=ncfg.name)
        self.check_overlap(js, ncfg.subjects, None)
        return ncfg, None

    @staticmethod
    def check_overlap(js: JSAccount, subjects: list[str], self_name: str | None) -> None:
        for s in js.streams.values():
            if s.name == self_name:
                continue
            for subj in s.config.subjects:
                if any(subjects_collide(t, subj) for t in subjects):
                    raise js_err(STREAM_SUBJECT_OVERLAP)

    async def create_stream(self, js: JSAccount, cfg: StreamConfig) -> Stream:
        """Create a stream from a checked config: store, metadata, tasks, consumers."""
        limits = store_limits_for(cfg)
        if cfg.storage == "file":
            from .store.file import FileStore
            d: Path | None = store_child(js.dir, cfg.name)
            store: MsgStore = await run_blocking(lambda: FileStore(str(d), limits))
        else:
            from .store.memory import MemoryStore
            d = None
            store = MemoryStore(limits)
        if cfg.first_seq > 1:
            store.compact(cfg.first_seq)
        stream = Stream(js, cfg, store, self.clock.now_ns(), d)
        await stream.persist_config()
        js.streams[cfg.name] = stream
        await self.nursery.start(stream.run)
        await self._restore_consumers(stream)
        return stream

    async def delete_stream(self, stream: Stream) -> None:
        js = stream.js
        if js.streams.get(stream.name) is stream:
            del js.streams[stream.name]
        await stream.stop(delete=True)

    # -- leaf links ----------------------------------------------------------------------
    def watch_leaf_links(self) -> None:
        """Once the leaf service exists, tell the account's mirrors/sources when one of its
        leaf links goes down or comes up (nats-server checkInternalSyncConsumers)."""
        if self._leaf_hooked:
            return
        leaf = self.server.services.get("leaf")
        if leaf is None or not hasattr(leaf, "on_link_up"):
            return
        self._leaf_hooked = True
        leaf.on_link_up.append(lambda link: self._leaf_link(link, up=True))
        leaf.on_link_down.append(lambda link: self._leaf_link(link, up=False))

    def _leaf_link(self, link: Any, up: bool) -> None:
        js = self.accounts.get(link.account.name)
        if js is None:
            return
        for s in list(js.streams.values()):
            if s.sourcing is not None:
                if up:
                    s.sourcing.retry_disconnected()
                else:
                    s.sourcing.link_down()

    # -- limits ---------------------------------------------------------------------------
    def usage(self) -> tuple[int, int]:
        mem = store = 0
        for js in self.accounts.values():
            m, s = js.usage()
            mem += m
            store += s
        return mem, store

    def reserved(self) -> tuple[int, int]:
        mem = store = 0
        for js in self.accounts.values():
            m, s = js.reserved()
            mem += m
            store += s
        return mem, store

    def limits_exceeded(self, storage: str) -> bool:
        """Server-wide max_memory_store / max_file_store reached (nats-server 10023)."""
        if storage == "memory":
            if self.max_memory < 0:
                return False
            return self.usage()[0] > self.max_memory
        if self.max_store < 0:
            return False
        return self.usage()[1] > self.max_store

    # -- monitoring -----------------------------------------------------------------------
    def config_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"max_memory": self.max_memory, "max_storage": self.max_store,
                             "store_dir": str(self.store_dir)}
        if not self.sync_always:
            d["sync_interval"] = int(self.sync_interval * 1e9)
        else:
            d["sync_always"] = True
        if self.domain:
            d["domain"] = self.domain
        if self.options.strict:
            d["strict"] = True
        return d

    def stats_json(self) -> dict[str, Any]:
        mem, store = self.usage()
        rmem, rstore = self.reserved()
        return {"memory": mem, "storage": store, "reserved_memory": rmem,
                "reserved_storage": rstore, "accounts": len(self.accounts), "ha_assets": 0,
                "api": {"level": API_LEVEL, "total": self.api_total, "errors": self.api_errors}}

    def varz(self) -> dict[str, Any]:
        return {"config": self.config_json(), "stats": self.stats_json(),
                "limits": {}}

    def healthz(self, query: Any = None) -> str:
        """'' when healthy, else the reason (the monitor turns it into a 503)."""
        return ""
