"""Every server setting in one place, named and defaulted as nats-server names and defaults them.

`Options` is what the command line, the config file and the Python API all produce; the server
reads nothing else. Durations are float seconds, sizes are int bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_PORT = 4222
DEFAULT_HOST = "0.0.0.0"
MAX_PAYLOAD = 1024 * 1024
MAX_PENDING = 64 * 1024 * 1024
MAX_CONTROL_LINE = 4096
MAX_CONNECTIONS = 64 * 1024
PING_INTERVAL = 120.0
PING_MAX = 2
WRITE_DEADLINE = 10.0
AUTH_TIMEOUT = 2.0
LAME_DUCK_DURATION = 120.0
LAME_DUCK_GRACE = 10.0
DEFAULT_HTTP_PORT = 8222
DEFAULT_LEAF_PORT = 7422


@dataclass
class TLSOptions:
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None
    verify: bool = False
    verify_and_map: bool = False
    handshake_first: bool = False
    timeout: float = 2.0
    insecure: bool = False


@dataclass
class WebsocketOptions:
    port: int | None = None  # None = off; 0 or -1 = pick a free port
    host: str = DEFAULT_HOST
    no_tls: bool = False
    tls: TLSOptions | None = None
    compression: bool = False
    same_origin: bool = False
    allowed_origins: list[str] = field(default_factory=list)
    jwt_cookie: str | None = None
    user_cookie: str | None = None
    pass_cookie: str | None = None
    token_cookie: str | None = None
    no_auth_user: str | None = None
    handshake_timeout: float = 0.0  # 0 = no timeout, as nats-server
    authorization: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ping_interval: float | None = None  # overrides the server's for WebSocket clients
    advertise: str | None = None


@dataclass
class MQTTOptions:
    port: int | None = None  # None = off
    host: str = DEFAULT_HOST
    tls: TLSOptions | None = None
    no_auth_user: str | None = None
    authorization: dict[str, Any] | None = None
    ack_wait: float = 30.0
    max_ack_pending: int = 1024
    js_domain: str | None = None
    stream_replicas: int = 1
    reject_qos2_publish: bool = False
    downgrade_qos2_subscribe: bool = False


@dataclass
class JetStreamOptions:
    enabled: bool = False
    store_dir: str | None = None
    max_memory_store: int = -1
    max_file_store: int = -1
    domain: str | None = None
    sync_interval: float | str = 120.0  # seconds, or "always"
    sync_always: bool = False
    strict: bool = False
    unique_tag: str | None = None


@dataclass
class LeafRemote:
    urls: list[str] = field(default_factory=list)
    credentials: str | None = None
    account: str | None = None
    tls: TLSOptions | None = None
    deny_imports: list[str] = field(default_factory=list)
    deny_exports: list[str] = field(default_factory=list)
    nkey: str | None = None  # user nkey seed signing the hub's nonce
    no_randomize: bool = False
    hub: bool = False  # the remote side takes the spoke role
    first_info_timeout: float = 1.0
    ws_no_masking: bool = False


@dataclass
class LeafOptions:
    port: int | None = None
    host: str = DEFAULT_HOST
    remotes: list[LeafRemote] = field(default_factory=list)
    authorization: dict[str, Any] | None = None
    tls: TLSOptions | None = None
    reconnect: float = 1.0  # seconds between attempts to reach a remote
    advertise: str | None = None
    no_advertise: bool = False
    min_version: str | None = None


@dataclass
class Options:
    # identity and listeners
    server_name: str = ""
    server_tags: list[str] = field(default_factory=list)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # -1 or 0 = pick a free port
    http_host: str = ""  # empty: the client `host`, as nats-server defaults it
    http_port: int | None = None  # None = monitoring off; -1/0 = free port
    https_port: int | None = None
    ports_file_dir: str | None = None
    pid_file: str | None = None
    client_advertise: str | None = None  # URL given to clients in connect_urls
    http_base_path: str = ""
    prof_port: int = 0  # accepted for compatibility; edgebus has no profiler
    # logging
    log_file: str | None = None
    debug: bool = False
    trace: bool = False
    trace_verbose: bool = False
    logtime: bool = True
    logtime_utc: bool = False
    syslog: bool = False
    remote_syslog: str | None = None
    log_size_limit: int = 0  # bytes; 0 = no rotation
    log_max_num: int = 0  # rotated files to keep; 0 = all
    max_traced_msg_len: int = 0  # 0 = unlimited
    # limits
    max_payload: int = MAX_PAYLOAD
    max_pending: int = MAX_PENDING
    max_control_line: int = MAX_CONTROL_LINE
    max_connections: int = MAX_CONNECTIONS
    max_subscriptions: int = 0
    max_sub_tokens: int = 0
    ping_interval: float = PING_INTERVAL
    ping_max: int = PING_MAX
    write_deadline: float = WRITE_DEADLINE
    no_header_support: bool = False
    lame_duck_duration: float = LAME_DUCK_DURATION
    lame_duck_grace_period: float = LAME_DUCK_GRACE
    # security: the raw config blocks are kept; security/ turns them into authenticators
    authorization: dict[str, Any] | None = None  # {token|user,password|users|timeout|...}
    auth_timeout: float | None = None
    no_auth_user: str | None = None
    accounts: dict[str, Any] | None = None
    system_account: str | None = None
    no_system_account: bool = False
    operator: list[str] | None = None
    resolver: Any = None
    resolver_preload: dict[str, str] | None = None
    mappings: dict[str, Any] | None = None
    tls: TLSOptions | None = None
    allow_non_tls: bool = False
    # subsystems
    jetstream: JetStreamOptions = field(default_factory=JetStreamOptions)
    websocket: WebsocketOptions | None = None
    mqtt: MQTTOptions | None = None
    leafnodes: LeafOptions | None = None
    cluster: dict[str, Any] | None = None  # accepted, routes not supported
    # where the config came from, for reload
    config_file: str | None = None
