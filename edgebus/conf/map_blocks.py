"""Subsystem blocks: TLS, JetStream, websocket, MQTT, leaf nodes and cluster.

Each is read into its `Options` sub-dataclass with nats-server's key aliases, type checks
and error texts. Settings nats-server knows but edgebus does not act on are reported as
notices; ``cluster`` is accepted (and checked for unknown fields) but edgebus forms no routes.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

from ..options import LeafOptions, LeafRemote, LeafUplink, MQTTOptions, TLSOptions, WebsocketOptions
from .durations import parse_duration
from .errors import Position
from .map_base import Skip, go_type
from .map_ocsp import OCSPMapper
from .validate import is_public_nkey, storage_size

__all__ = ["BlocksMapper"]


class BlocksMapper(OCSPMapper):
    # -- TLS ------------------------------------------------------------------------------

    _TLS_IGNORED = frozenset(
        "verify_cert_and_check_known_urls allow_insecure_cipher_suites cipher_suites "
        "curve_preferences connection_rate_limit pinned_certs cert_store cert_match_by "
        "cert_match ca_certs_match cert_match_skip_invalid certs certificates "
        "min_version".split()
    )

    def tls(self, v: Any, pos: Position, key: str, side: str = "client") -> TLSOptions:
        """A tls{} block; `side` says whose it is: "client", "websocket", "mqtt" (listeners
        for clients), "leaf" (leaf nodes dialing in) or "remote" (the hub a leaf remote dials)."""
        if not isinstance(v, Mapping):
            raise self.fail(pos, f"error parsing tls config, expected a map, got {go_type(v)}")
        t = TLSOptions()
        first_error = len(self.errors)
        for low, k, val, p in self.entries(v):
            try:
                if low in ("cert_file", "key_file", "ca_file"):
                    if not isinstance(val, str):
                        raise self.fail(p, f"error parsing tls config, expected '{low}' to be filename")
                    setattr(t, low, val)
                elif low in ("insecure", "verify", "verify_and_map"):
                    if not isinstance(val, bool):
                        raise self.fail(p, f"error parsing tls config, expected '{low}' to be a boolean")
                    if low == "verify_and_map":
                        t.verify_and_map = val
                        t.verify = t.verify or val
                    else:
                        setattr(t, low, val)
                elif low == "timeout":
                    t.timeout = self.seconds(val, p, "tls config")
                elif low in ("handshake_first", "first", "immediate"):
                    t.handshake_first = self.handshake_first(val, p, k)
                elif low == "ocsp_peer":
                    t.ocsp_peer = self.ocsp_peer(val, p, k)
                elif low in self._TLS_IGNORED:
                    self.notice(p, f"tls.{k}")
                else:
                    raise self.fail(p, f'error parsing tls config, unknown field "{k}"')
            except Skip:
                pass
        if len(self.errors) == first_error:
            self.check_tls_files(t, pos)
            self.check_ocsp_peer(t, pos, side)
        return t

    def handshake_first(self, v: Any, pos: Position, key: str) -> bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, str):
            low = v.lower()
            if low in ("true", "on", "auto", "auto_fallback"):
                return True
            if low in ("false", "off"):
                return False
            try:
                parse_duration(v)
                return True
            except ValueError:
                raise self.fail(pos, f'field "{key}"\'s value "{v}" is invalid') from None
        raise self.fail(pos, f'field "{key}" should be a boolean or a string, got {go_type(v)}')

    def check_tls_files(self, t: TLSOptions, pos: Position) -> None:
        """What nats-server's GenTLSConfig verifies while reading the config."""
        if t.cert_file and not t.key_file:
            raise self.fail(pos, "missing 'key_file' in TLS configuration")
        if t.key_file and not t.cert_file:
            raise self.fail(pos, "missing 'cert_file' in TLS configuration")
        if t.cert_file and t.key_file:
            for path in (t.cert_file, t.key_file):
                if not os.path.exists(path):
                    raise self.fail(
                        pos,
                        "error parsing X509 certificate/key pair: "
                        f"open {path}: no such file or directory",
                    )
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(t.cert_file, t.key_file)
            except (ssl.SSLError, OSError) as e:
                raise self.fail(pos, f"error parsing X509 certificate/key pair: {e}") from None
        if t.ca_file:
            try:
                with open(t.ca_file, "rb") as f:
                    pem = f.read()
            except OSError:
                raise self.fail(pos, f"open {t.ca_file}: no such file or directory") from None
            if b"-----BEGIN CERTIFICATE-----" not in pem:
                raise self.fail(pos, "failed to parse root ca certificate")

    # -- JetStream ------------------------------------------------------------------------

    _JS_IGNORED = frozenset(
        "key ek encryption_key prev_key prev_ek prev_encryption_key cipher extension_hint "
        "limits tpm max_outstanding_catchup max_buffered_size max_buffered_msgs "
        "request_queue_limit info_queue_limit meta_compact meta_compact_size "
        "meta_compact_sync max_concurrent_io".split()
    )

    def top_jetstream(self, v: Any, pos: Position, key: str) -> None:
        js = self.o.jetstream
        if isinstance(v, bool):
            js.enabled = v
            return
        if isinstance(v, str):
            low = v.lower()
            if low in ("enabled", "enable"):
                js.enabled = True
            elif low in ("disabled", "disable"):
                js.enabled = False
            else:
                raise self.fail(pos, f"Expected 'enabled' or 'disabled' for string value, got '{v}'")
            return
        if not isinstance(v, Mapping):
            raise self.fail(
                pos, f"Expected map, bool or string to define JetStream, got {go_type(v)}"
            )
        enable = True
        for low, k, val, p in self.entries(v):
            try:
                if low == "strict":
                    if not isinstance(val, bool):
                        raise self.fail(p, f"Expected 'true' or 'false' for bool value, got '{val}'")
                    js.strict = val
                elif low in ("store", "store_dir", "storedir"):
                    self.set_store_dir(self.str_(val, p, k), p)
                elif low in ("sync", "sync_interval"):
                    if isinstance(val, str) and val.lower() == "always":
                        js.sync_always = True
                        js.sync_interval = "always"
                    else:
                        js.sync_interval = self.duration(val, p, k)
                elif low in ("max_memory_store", "max_mem_store", "max_mem"):
                    js.max_memory_store = self.size(val, p, "max_mem_store")
                elif low in ("max_file_store", "max_file"):
                    js.max_file_store = self.size(val, p, "max_file_store")
                elif low == "domain":
                    js.domain = self.str_(val, p, k)
                elif low in ("enable", "enabled"):
                    enable = self.bool_(val, p, k)
                elif low == "unique_tag":
                    js.unique_tag = self.str_(val, p, k).strip().lower()
                elif low in self._JS_IGNORED:
                    self.notice(p, f"jetstream.{k}")
                elif not self.is_var(v, k):
                    self.unknown(p, k)
            except Skip:
                pass
        js.enabled = enable

    def set_store_dir(self, d: str, pos: Position) -> None:
        if self.store_dir_set:
            raise self.fail(pos, "Duplicate 'store_dir' configuration")
        self.store_dir_set = True
        self.o.jetstream.store_dir = d

    def size(self, v: Any, pos: Position, name: str) -> int:
        try:
            return storage_size(v)
        except ValueError as e:
            raise self.fail(pos, f"{name} {e}") from None

    # -- websocket / mqtt -----------------------------------------------------------------

    def simple_auth(self, v: Any, pos: Position, key: str) -> dict[str, Any]:
        m = self.map_(v, pos, key)
        out: dict[str, Any] = {}
        for low, k, val, p in self.entries(m):
            try:
                if low in ("user", "username"):
                    out["user"] = self.str_(val, p, k)
                elif low in ("pass", "password"):
                    out["password"] = self.str_(val, p, k)
                elif low == "token":
                    out["token"] = self.str_(val, p, k)
                elif low == "timeout":
                    # nats-server reads only numbers here; anything else means 1 second
                    ok = isinstance(val, (int, float)) and not isinstance(val, bool)
                    out["timeout"] = float(val) if ok else 1.0
                elif not self.is_var(m, k):
                    self.unknown(p, k)
            except Skip:
                pass
        return out

    def listener_key(self, target: Any, low: str, k: str, val: Any, p: Position) -> bool:
        """`listen`, `port`, `host`/`net` of a front-end block (websocket, mqtt, leafnodes)
        onto its options' host and port; False for any other key."""
        if low == "listen":
            host, port = self.listen(val, p)
            if host:
                target.host = host
            target.port = port
        elif low == "port":
            target.port = self.int_(val, p, k)
        elif low in ("host", "net"):
            target.host = self.str_(val, p, k)
        else:
            return False
        return True

    def top_websocket(self, v: Any, pos: Position, key: str) -> None:
        m = self.map_(v, pos, key)
        ws = self.o.websocket or WebsocketOptions()
        self.o.websocket = ws
        for low, k, val, p in self.entries(m):
            try:
                if self.listener_key(ws, low, k, val, p):
                    continue
                if low == "no_tls":
                    ws.no_tls = self.bool_(val, p, k)
                elif low == "tls":
                    ws.tls = self.tls(val, p, k, side="websocket")
                elif low == "same_origin":
                    ws.same_origin = self.bool_(val, p, k)
                elif low in (
                    "allowed_origins",
                    "allowed_origin",
                    "allow_origins",
                    "allow_origin",
                    "origins",
                    "origin",
                ):
                    ws.allowed_origins = self.strings(val, p, k, "allowed origins")
                elif low == "handshake_timeout":
                    if isinstance(val, int) and not isinstance(val, bool):
                        ws.handshake_timeout = float(val)
                    elif isinstance(val, str):
                        try:
                            ws.handshake_timeout = parse_duration(val)
                        except ValueError as e:
                            raise self.fail(p, str(e)) from None
                    else:
                        raise self.fail(
                            p, f"error parsing handshake timeout: unsupported type {go_type(val)}"
                        )
                elif low in ("compress", "compression"):
                    ws.compression = self.bool_(val, p, k)
                elif low in ("authorization", "authentication"):
                    ws.authorization = self.simple_auth(val, p, k)
                elif low == "jwt_cookie":
                    ws.jwt_cookie = self.str_(val, p, k)
                elif low == "no_auth_user":
                    ws.no_auth_user = self.str_(val, p, k)
                elif low in ("user_cookie", "pass_cookie", "token_cookie", "advertise"):
                    setattr(ws, low, self.str_(val, p, k))
                elif low == "headers":
                    headers = self.map_(val, p, k)
                    for hk, hv in headers.items():
                        if not isinstance(hv, str):
                            self.error(
                                self.where(headers, hk),
                                f"error parsing header key {hk}: unsupported type {go_type(hv)}",
                            )
                    ws.headers = {str(hk): str(hv) for hk, hv in headers.items()}
                elif low == "ping_interval":
                    ws.ping_interval = self.duration(val, p, k)
                elif not self.is_var(m, k):
                    self.unknown(p, k)
            except Skip:
                pass

    def top_mqtt(self, v: Any, pos: Position, key: str) -> None:
        m = self.map_(v, pos, key)
        mq = self.o.mqtt or MQTTOptions()
        self.o.mqtt = mq
        for low, k, val, p in self.entries(m):
            try:
                if self.listener_key(mq, low, k, val, p):
                    continue
                if low == "tls":
                    mq.tls = self.tls(val, p, k, side="mqtt")
                elif low in ("authorization", "authentication"):
                    mq.authorization = self.simple_auth(val, p, k)
                elif low == "no_auth_user":
                    mq.no_auth_user = self.str_(val, p, k)
                elif low in ("ack_wait", "ackwait"):
                    mq.ack_wait = self.duration(val, p, k, "ack_wait")
                elif low in ("max_ack_pending", "max_pending", "max_inflight"):
                    n = self.int_(val, p, k)
                    if not 0 <= n <= 0xFFFF:
                        raise self.fail(p, f"invalid value {n}, should in [0..65535] range")
                    mq.max_ack_pending = n
                elif low == "js_domain":
                    mq.js_domain = self.str_(val, p, k)
                elif low == "stream_replicas":
                    mq.stream_replicas = self.int_(val, p, k)
                elif low == "consumer_replicas":
                    self.warn(p, k, "consumer replicas setting ignored in this server version")
                elif low in ("js_api_timeout", "api_timeout"):
                    self.duration(val, p, k, "js_api_timeout")
                    self.notice(p, f"mqtt.{k}")
                elif low in ("consumer_inactive_threshold", "consumer_auto_cleanup"):
                    self.duration(val, p, k, "consumer_inactive_threshold")
                    self.notice(p, f"mqtt.{k}")
                elif low in ("reject_qos2_publish", "downgrade_qos2_subscribe"):
                    setattr(mq, low, self.bool_(val, p, k))
                elif low == "consumer_memory_storage":
                    self.bool_(val, p, k)
                    self.notice(p, f"mqtt.{k}")
                elif not self.is_var(m, k):
                    self.unknown(p, k)
            except Skip:
                pass

    # -- leaf nodes -----------------------------------------------------------------------

    _LEAF_IGNORED = frozenset(
        "dial_timeout compression "
        "isolate_leafnode_interest isolate write_deadline write_timeout".split()
    )
    _REMOTE_IGNORED = frozenset(
        "ws_compress ws_compression websocket_compress websocket_compression "
        "jetstream_cluster_migrate js_cluster_migrate isolate_leafnode_interest isolate "
        "request_isolation compression dial_timeout disabled proxy "
        "ignore_discovered_servers".split()
    )

    def top_leafnodes(self, v: Any, pos: Position, key: str) -> None:
        if not isinstance(v, Mapping):
            raise self.fail(pos, f"Expected map to define a leafnode, got {go_type(v)}")
        leaf = self.o.leafnodes or LeafOptions()
        self.o.leafnodes = leaf
        for low, k, val, p in self.entries(v):
            try:
                if self.listener_key(leaf, low, k, val, p):
                    continue
                if low == "authorization":
                    leaf.authorization = self.leaf_authorization(val, p, k)
                elif low == "remotes":
                    leaf.remotes = self.remotes(val, p)
                elif low == "tls":
                    leaf.tls = self.tls(val, p, k, side="leaf")
                elif low in ("reconnect", "reconnect_delay", "reconnect_interval"):
                    leaf.reconnect = self.seconds(val, p, k)
                elif low in ("advertise", "leafnode_advertise"):
                    leaf.advertise = self.str_(val, p, k)
                elif low == "no_advertise":
                    leaf.no_advertise = self.bool_(val, p, k)
                elif low in ("min_version", "minimum_version"):
                    leaf.min_version = self.str_(val, p, k)
                elif low in self._LEAF_IGNORED:
                    self.notice(p, f"leafnodes.{k}")
                elif not self.is_var(v, k):
                    self.unknown(p, k)
            except Skip:
                pass

    def leaf_authorization(self, v: Any, pos: Position, key: str) -> dict[str, Any]:
        m = self.map_(v, pos, key)
        out: dict[str, Any] = {}
        for low, k, val, p in self.entries(m):
            try:
                if low in ("user", "username"):
                    out["user"] = self.str_(val, p, k)
                elif low in ("pass", "password"):
                    out["password"] = self.str_(val, p, k)
                elif low == "nkey":
                    nk = self.str_(val, p, k)
                    if not is_public_nkey(nk, "U"):
                        raise self.fail(p, "Not a valid public nkey for leafnode authorization")
                    out["nkey"] = nk
                elif low == "timeout":
                    out["timeout"] = self.seconds(val, p, "leafnode authorization config")
                elif low == "users":
                    out["users"] = self.leaf_users(val, p)
                elif low == "account":
                    out["account"] = self.str_(val, p, k)
                elif low == "proxy_required":
                    out["proxy_required"] = self.bool_(val, p, k)
                elif not self.is_var(m, k):
                    self.unknown(p, k)
            except Skip:
                pass
        return out

    def leaf_users(self, v: Any, pos: Position) -> list[dict[str, Any]]:
        if not isinstance(v, list):
            raise self.fail(pos, f"Expected users field to be an array, got {v!r}")
        out = []
        for i, entry in enumerate(v):
            epos = self.where(v, i)
            if not isinstance(entry, Mapping):
                self.error(epos, f"Expected user entry to be a map/struct, got {entry!r}")
                continue
            user: dict[str, Any] = {}
            for low, k, val, p in self.entries(entry):
                try:
                    if low in ("user", "username"):
                        user["user"] = self.str_(val, p, k)
                    elif low in ("pass", "password"):
                        user["password"] = self.str_(val, p, k)
                    elif low == "account":
                        user["account"] = self.str_(val, p, k)
                    elif low == "proxy_required":
                        user["proxy_required"] = self.bool_(val, p, k)
                    elif not self.is_var(entry, k):
                        self.unknown(p, k)
                except Skip:
                    pass
            out.append(user)
        return out

    def remotes(self, v: Any, pos: Position) -> list[LeafRemote]:
        if not isinstance(v, list):
            raise self.fail(pos, f"Expected remotes field to be an array, got {go_type(v)}")
        out = []
        for i, entry in enumerate(v):
            epos = self.where(v, i)
            if not isinstance(entry, Mapping):
                self.error(epos, f"Expected remote leafnode entry to be a map/struct, got {entry!r}")
                continue
            r = LeafRemote()
            for low, k, val, p in self.entries(entry):
                try:
                    if low in ("url", "urls"):
                        r.urls = self.remote_urls(val, p)
                    elif low in ("account", "local"):
                        r.account = self.str_(val, p, k)
                    elif low in ("creds", "credentials"):
                        r.credentials = os.path.expanduser(self.str_(val, p, k))
                    elif low == "tls":
                        r.tls = self.tls(val, p, k, side="remote")
                    elif low in ("deny_imports", "deny_import"):
                        r.deny_imports = self.strings(val, p, k, "deny imports")
                    elif low in ("deny_exports", "deny_export"):
                        r.deny_exports = self.strings(val, p, k, "deny exports")
                    elif low in ("nkey", "seed"):
                        r.nkey = self.str_(val, p, k)
                    elif low in ("no_randomize", "dont_randomize"):
                        r.no_randomize = self.bool_(val, p, k)
                    elif low == "hub":
                        r.hub = self.bool_(val, p, k)
                    elif low == "first_info_timeout":
                        r.first_info_timeout = self.seconds(val, p, k)
                    elif low in ("ws_no_masking", "websocket_no_masking"):
                        r.ws_no_masking = self.bool_(val, p, k)
                    elif low == "uplinks":
                        r.uplinks = self.uplinks(val, p)
                    elif low in self._REMOTE_IGNORED:
                        self.notice(p, f"leafnodes.remotes.{k}")
                    elif not self.is_var(entry, k):
                        self.unknown(p, k)
                except Skip:
                    pass
            out.append(r)
        return out

    def uplinks(self, v: Any, pos: Position) -> list[LeafUplink]:
        """edgebus's `uplinks` of a remote (firmware-notes/leaf-sync.md)."""
        if not isinstance(v, list):
            raise self.fail(pos, f"Expected uplinks field to be an array, got {go_type(v)}")
        out = []
        for i, entry in enumerate(v):
            epos = self.where(v, i)
            if not isinstance(entry, Mapping):
                self.error(epos, f"Expected uplink entry to be a map/struct, got {entry!r}")
                continue
            u = LeafUplink()
            for low, k, val, p in self.entries(entry):
                try:
                    if low == "stream":
                        u.stream = self.str_(val, p, k)
                    elif low == "subject_prefix":
                        u.subject_prefix = self.str_(val, p, k).strip(".")
                    elif low == "hub_stream":
                        u.hub_stream = self.str_(val, p, k)
                    elif low == "max_pending":
                        u.max_pending = max(1, self.int_(val, p, k))
                    elif low == "ack_wait":
                        u.ack_wait = self.seconds(val, p, k)
                    elif not self.is_var(entry, k):
                        self.unknown(p, k)
                except Skip:
                    pass
            if not u.stream or not u.subject_prefix:
                self.error(epos, "an uplink needs both 'stream' and 'subject_prefix'")
                continue
            out.append(u)
        return out

    def remote_urls(self, v: Any, pos: Position) -> list[str]:
        if isinstance(v, str):
            return [v.strip()]
        if not isinstance(v, list):
            raise self.fail(
                pos, f"Expected remote leafnode url to be an array or string, got {v!r}"
            )
        urls: list[str] = []
        for i, u in enumerate(v):
            p = self.where(v, i)
            if not isinstance(u, str):
                self.error(p, f"Expected remote leafnode url to be a string, got {go_type(u)}")
            elif u in urls:
                self.warn(p, u, "Duplicate leafnode entry detected")
            else:
                urls.append(u.strip())
        return urls

    # -- cluster --------------------------------------------------------------------------

    _CLUSTER_KEYS = frozenset(
        "name listen port host net authorization routes tls cluster_advertise advertise "
        "no_advertise connect_retries connect_backoff permissions pool_size accounts "
        "compression ping_interval ping_max write_deadline write_timeout".split()
    )

    def top_cluster(self, v: Any, pos: Position, key: str) -> None:
        m = self.map_(v, pos, key)
        for low, k, val, p in self.entries(m):
            if low not in self._CLUSTER_KEYS and not self.is_var(m, k):
                self.unknown(p, k)
            elif low == "listen":
                try:
                    self.listen(val, p)
                except Skip:
                    pass
            elif low == "routes" and not isinstance(val, (list, str)):
                self.error(p, f"error parsing routes: unsupported type {go_type(val)}")
        self.o.cluster = dict(m)
        self.notice(pos, key, "accepted but edgebus does not form routes (scale out with leaf nodes)")
