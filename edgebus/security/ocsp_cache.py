"""The OCSP peer response cache (`ocsp_cache`), as nats-server's server/ocsp_responsecache.go.

Responses are kept by certificate fingerprint. Type `local` (the default once any tls{} block
verifies peers with OCSP) keeps them in memory and saves them, when changed, every
`save_interval` and at shutdown to `<local_store>/cache.json` (default `_rc_` in the working
directory), loading that file at start; type `none` keeps nothing. `preserve_revoked` keeps a
revoked response even when it is stale, so an unreachable responder cannot un-revoke a peer.

The file holds one entry per fingerprint with nats-server's field names; the response itself
is stored as plain base64 DER (nats-server s2-compresses it), so the two servers' files are not
interchangeable: an entry edgebus cannot read is dropped and fetched again.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
from datetime import datetime, timezone
from typing import Any, Callable

import trio

from ..core.blocking import run_blocking
from ..options import OCSPCacheOptions

log = logging.getLogger("edgebus.security")

CACHE_FILE = "cache.json"


def _rfc3339(t: datetime | None) -> str:
    if t is None:
        return "0001-01-01T00:00:00Z"
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ResponseCache:
    """Raw OCSP responses by certificate fingerprint, with nats-server's counters."""

    def __init__(self, cfg: OCSPCacheOptions, now: Callable[[], datetime]) -> None:
        self.cfg = cfg
        self.now = now
        self.items: dict[str, dict[str, Any]] = {}
        self.hits = 0
        self.misses = 0
        self.dirty = False
        self.online = False

    @property
    def type(self) -> str:
        return self.cfg.type

    @property
    def path(self) -> str:
        return os.path.abspath(os.path.join(self.cfg.local_store or "_rc_", CACHE_FILE))

    # -- entries --------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        if self.type == "none" or not self.online:
            return None
        item = self.items.get(key)
        if item is None:
            self.misses += 1
            log.debug("OCSP peer cache miss for key [%s]", key)
            return None
        self.hits += 1
        log.debug("OCSP peer cache hit for key [%s]", key)
        try:
            return base64.b64decode(item["resp"])
        except (KeyError, ValueError, TypeError):
            return None

    def put(self, key: str, raw: bytes, status: str, expires: datetime | None,
            subject: str) -> None:
        if self.type == "none" or not self.online:
            return
        log.debug("Caching OCSP response for [%s], key [%s]", subject, key)
        self.items[key] = {
            "subject": subject,
            "cached_at": _rfc3339(self.now()),
            "resp_status": status,
            "resp_expires": _rfc3339(expires),
            "resp": base64.b64encode(raw).decode(),
        }
        self.dirty = True

    def delete(self, key: str, was_miss: bool = False) -> None:
        """Drop an entry found stale or bogus; `was_miss` turns the hit just counted into a miss."""
        item = self.items.get(key)
        if self.type == "none" or item is None:
            return
        if was_miss:
            self.hits -= 1
            self.misses += 1
        if item.get("resp_status") == "revoked" and self.cfg.preserve_revoked:
            log.debug("Revoked OCSP response for key [%s] preserved by cache policy", key)
            return
        log.debug("Deleting OCSP peer cached response for key [%s]", key)
        del self.items[key]
        self.dirty = True

    def stats(self) -> dict[str, Any]:
        """/varz `ocsp_peer_cache`."""
        counts = {"good": 0, "revoked": 0, "unknown": 0}
        for item in self.items.values():
            s = item.get("resp_status", "unknown")
            counts[s if s in counts else "unknown"] += 1
        return {"cache_type": self.type, "cache_hits": self.hits, "cache_misses": self.misses,
                "cached_responses": len(self.items), "cached_revoked_responses": counts["revoked"],
                "cached_good_responses": counts["good"],
                "cached_unknown_responses": counts["unknown"]}

    # -- persistence ----------------------------------------------------------------------
    def load(self) -> None:
        """Read the saved cache (at start, before any connection is accepted), then go online."""
        if self.type == "local":
            self.items = self._read()
        self.online = True
        log.info("OCSP peer cache online, type [%s]", self.type)

    def _read(self) -> dict[str, dict[str, Any]]:
        log.debug("Loading OCSP peer cache [%s]", self.path)
        try:
            with open(self.path, "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            log.debug("No OCSP peer cache found, starting with empty cache")
            return {}
        except (OSError, ValueError) as e:
            log.warning("Unable to load OCSP peer cache: %s", e)
            self.dirty = True  # the next save replaces the unreadable file
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)}

    def snapshot(self) -> bytes | None:
        """The file's contents if it needs saving (taken on the event loop, written elsewhere)."""
        if self.type != "local" or not self.dirty:
            return None
        self.dirty = False
        return json.dumps(self.items, indent=1).encode()

    def write(self, data: bytes) -> None:
        """Write a snapshot: a temporary file, synced, renamed over the old one."""
        d = self.cfg.local_store or "_rc_"
        log.debug("Saving OCSP peer cache [%s]", self.path)
        tmp = None
        try:
            os.makedirs(d, mode=0o750, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix="ocsprc-", dir=d)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            tmp = None
        except OSError as e:
            log.error("Unable to save OCSP peer cache: %s", e)
            self.dirty = True
            return
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        log.debug("Saved OCSP peer cache successfully (%d bytes)", len(data))

    def save(self) -> None:
        data = self.snapshot()
        if data is not None:
            self.write(data)

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Load, then save every `save_interval` while the server runs (a task of the server's
        nursery, started before the listeners accept anyone)."""
        await run_blocking(self.load)
        task_status.started()
        if self.type != "local":
            await trio.sleep_forever()
        while True:
            await trio.sleep(max(1.0, self.cfg.save_interval))
            data = self.snapshot()
            if data is not None:
                await run_blocking(self.write, data)

    def stop(self) -> None:
        self.save()
        self.online = False
        log.info("OCSP peer cache offline, type [%s]", self.type)
