"""Mapping parsed configs onto Options: every documented key, errors, warnings, notices."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import nkeys
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgebus.conf import ConfigError, ConfigReport, load_config, options_from_config, parse_string
from edgebus.options import Options


def user_nkey(n: int = 1) -> str:
    seed = nkeys.encode_seed(bytes([n]) * 32, nkeys.PREFIX_BYTE_USER)
    return nkeys.from_seed(seed).public_key.decode()


def account_nkey(n: int = 1) -> str:
    seed = nkeys.encode_seed(bytes([n]) * 32, nkeys.PREFIX_BYTE_ACCOUNT)
    return nkeys.from_seed(seed).public_key.decode()


def opts(text: str, report: ConfigReport | None = None, **env: str) -> Options:
    d = parse_string(text, filename="o.conf", env=env)
    return options_from_config(d, filename="o.conf", report=report)


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        opts(text)
    return info.value


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("certs")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    paths = {"cert": str(d / "cert.pem"), "key": str(d / "key.pem"), "ca": str(d / "ca.pem")}
    Path(paths["cert"]).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(paths["ca"]).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(paths["key"]).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


# -- a realistic large config ---------------------------------------------------------------


def test_realistic_config(tmp_path: Path, certs: dict[str, str]) -> None:
    (tmp_path / "leaf.conf").write_text(
        """
        leafnodes {
          remotes = [
            { urls: ["nats-leaf://hub1:7422", "nats-leaf://hub2:7422"], credentials: "/etc/hub.creds",
              account: APP, deny_imports: ["secret.>"], deny_exports: "local.>" }
            { url: "tls://hub3:7422", tls { ca_file: "%s" } }
          ]
        }
        """
        % certs["ca"]
    )
    (tmp_path / "main.conf").write_text(
        f"""
        # edge broker
        APP_PASS = "s3cr3t"
        listen: 127.0.0.1:4333
        server_name = edge-1
        server_tags: ["region:eu", "edge"]
        http: "127.0.0.1:-1"
        ports_file_dir: "{tmp_path}"
        pid_file: "{tmp_path}/edge.pid"
        log_file: "{tmp_path}/edge.log"
        debug: true
        trace: false
        logtime: false
        max_payload: 8MB
        max_pending: 64MB
        max_control_line: 2KB
        max_connections: 1000
        max_subscriptions: 100
        ping_interval: "30s"
        ping_max: 3
        write_deadline: "5s"
        lame_duck_duration: "2m"
        lame_duck_grace_period: "5s"
        no_auth_user: guest
        system_account: SYS
        mappings {{ "orders.*": "orders.new.$1" }}
        jetstream {{
          store_dir: "{tmp_path}/js"
          max_memory_store: 1G
          max_file_store: "10G"
          domain: edge
          sync_interval: "1m"
        }}
        tls {{
          cert_file: "{certs['cert']}"
          key_file: "{certs['key']}"
          ca_file: "{certs['ca']}"
          verify: true
          timeout: 3
          handshake_first: true
        }}
        websocket {{
          port: -1
          host: 127.0.0.1
          no_tls: true
          compression: true
          same_origin: false
          allowed_origins: ["https://example.com"]
          handshake_timeout: "4s"
        }}
        mqtt {{
          port: 1883
          ack_wait: "1m"
          max_ack_pending: 100
          no_auth_user: guest
        }}
        accounts {{
          SYS {{ users: [ {{ user: sys, password: sys }} ] }}
          APP {{
            jetstream: enabled
            users: [
              {{ user: app, password: $APP_PASS, permissions: {{ publish: ["app.>"], subscribe: {{ allow: ">", deny: "secret.>" }} }} }}
              {{ nkey: {user_nkey()} }}
              {{ user: guest, password: guest, allowed_connection_types: ["STANDARD", "websocket"] }}
            ]
            exports: [ {{ stream: "app.events.>" }}, {{ service: "app.api" }} ]
            imports: [ {{ stream: {{ account: SYS, subject: "sys.>" }}, prefix: sys }} ]
          }}
        }}
        include ./leaf.conf
        cluster {{ name: c1, listen: 0.0.0.0:6222, routes: [nats://a:6222] }}
        """
    )
    o, report = load_config(tmp_path / "main.conf")
    assert o.config_file == str(tmp_path / "main.conf")
    assert (o.host, o.port, o.server_name) == ("127.0.0.1", 4333, "edge-1")
    assert o.server_tags == ["region:eu", "edge"]
    assert (o.http_host, o.http_port) == ("127.0.0.1", -1)
    assert o.ports_file_dir == str(tmp_path)
    assert o.pid_file.endswith("edge.pid") and o.log_file.endswith("edge.log")
    assert (o.debug, o.trace, o.logtime) == (True, False, False)
    assert o.max_payload == 8 * 1024 * 1024
    assert o.max_pending == 64 * 1024 * 1024
    assert o.max_control_line == 2048
    assert (o.max_connections, o.max_subscriptions) == (1000, 100)
    assert (o.ping_interval, o.ping_max, o.write_deadline) == (30.0, 3, 5.0)
    assert (o.lame_duck_duration, o.lame_duck_grace_period) == (120.0, 5.0)
    assert (o.no_auth_user, o.system_account) == ("guest", "SYS")
    assert o.mappings == {"orders.*": "orders.new.$1"}
    js = o.jetstream
    assert js.enabled and js.store_dir == f"{tmp_path}/js" and js.domain == "edge"
    assert js.max_memory_store == 10**9  # bare 1G is decimal
    assert js.max_file_store == 10 * 2**30  # quoted "10G" is binary
    assert js.sync_interval == 60.0
    assert o.tls is not None and o.tls.verify and o.tls.timeout == 3.0 and o.tls.handshake_first
    assert o.tls.cert_file == certs["cert"]
    ws = o.websocket
    assert ws and (ws.port, ws.host, ws.no_tls, ws.compression) == (-1, "127.0.0.1", True, True)
    assert ws.allowed_origins == ["https://example.com"] and ws.handshake_timeout == 4.0
    mq = o.mqtt
    assert mq and (mq.port, mq.ack_wait, mq.max_ack_pending, mq.no_auth_user) == (1883, 60.0, 100, "guest")
    assert set(o.accounts) == {"SYS", "APP"}
    app = o.accounts["APP"]
    assert app["jetstream"] == "enabled"
    assert app["users"][0] == {
        "user": "app",
        "password": "s3cr3t",
        "permissions": {"publish": ["app.>"], "subscribe": {"allow": [">"], "deny": ["secret.>"]}},
    }
    assert app["users"][1] == {"nkey": user_nkey()}
    assert app["users"][2]["allowed_connection_types"] == ["STANDARD", "WEBSOCKET"]
    assert len(app["exports"]) == 2 and app["imports"][0]["prefix"] == "sys"
    leaf = o.leafnodes
    assert leaf and len(leaf.remotes) == 2
    r0, r1 = leaf.remotes
    assert r0.urls == ["nats-leaf://hub1:7422", "nats-leaf://hub2:7422"]
    assert (r0.credentials, r0.account) == ("/etc/hub.creds", "APP")
    assert (r0.deny_imports, r0.deny_exports) == (["secret.>"], ["local.>"])
    assert r1.urls == ["tls://hub3:7422"] and r1.tls and r1.tls.ca_file == certs["ca"]
    assert o.cluster == {"name": "c1", "listen": "0.0.0.0:6222", "routes": ["nats://a:6222"]}
    assert report.warnings == []
    assert any('"cluster"' in n and "routes" in n for n in report.notices)


# -- individual keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,attr,value",
    [
        ("port: -1", "port", -1),
        ("host: 127.0.0.1", "host", "127.0.0.1"),
        ("net: ::1", "host", "::1"),
        ("listen: 4333", "port", 4333),
        ('listen: "[::1]:4555"', "host", "::1"),
        ("http: 8222", "http_port", 8222),
        ("http_port: -1", "http_port", -1),
        ("monitor_port: 8223", "http_port", 8223),
        ("https: 127.0.0.1:8443", "https_port", 8443),
        ("https_port: 8443", "https_port", 8443),
        ("server_name: x1", "server_name", "x1"),
        ("client_advertise: 'a:1'", "client_advertise", "a:1"),
        ("logfile: /tmp/l", "log_file", "/tmp/l"),
        ("pidfile: /tmp/p", "pid_file", "/tmp/p"),
        ("syslog: yes", "syslog", True),
        ("remote_syslog: 'udp://h:514'", "remote_syslog", "udp://h:514"),
        ("logtime_utc: on", "logtime_utc", True),
        ("trace_verbose: true", "trace", True),
        ("log_size_limit: 1MB", "log_size_limit", 1024 * 1024),
        ("max_conn: 0", "max_connections", -1),
        ("max_subs: 5", "max_subscriptions", 5),
        ("max_sub_tokens: 10", "max_sub_tokens", 10),
        ("ping_interval: '100ms'", "ping_interval", 0.1),
        ("ping_interval: '2m'", "ping_interval", 120.0),
        ("allow_non_tls: true", "allow_non_tls", True),
        ("no_header_support: true", "no_header_support", True),
        ("no_sys_acc: true", "no_system_account", True),
        ("system: SYS", "system_account", "SYS"),
        ("operator: eyJhbGciOi.e30.sig", "operator", ["eyJhbGciOi.e30.sig"]),
        ("operators: [eyJa.b.c, eyJd.e.f]", "operator", ["eyJa.b.c", "eyJd.e.f"]),
        ("resolver: MEMORY", "resolver", "MEMORY"),
        ('resolver: URL("http://r:9090/jwt/v1/accounts/")', "resolver", 'URL("http://r:9090/jwt/v1/accounts/")'),
        ("server_tags: solo", "server_tags", ["solo"]),
        ("prof_port: 6060", "prof_port", 6060),
        ("http_base_path: /nats", "http_base_path", "/nats"),
    ],
)
def test_simple_keys(text: str, attr: str, value: object) -> None:
    assert getattr(opts(text + "\n"), attr) == value


def test_keys_are_case_insensitive() -> None:
    o = opts("PORT: 1234\nServer_Name: up\nJetStream: enabled\n")
    assert (o.port, o.server_name, o.jetstream.enabled) == (1234, "up", True)


@pytest.mark.parametrize(
    "text,enabled",
    [
        ("jetstream: true", True),
        ("jetstream: on", True),
        ("jetstream: enabled", True),
        ("jetstream: Enable", True),
        ("jetstream: disabled", False),
        ("jetstream: false", False),
        ("jetstream: {}", True),
        ("jetstream { enabled: false }", False),
    ],
)
def test_jetstream_forms(text: str, enabled: bool) -> None:
    assert opts(text).jetstream.enabled is enabled


def test_jetstream_sizes_and_options() -> None:
    o = opts(
        "jetstream { max_mem: 256MB, max_file: '2T', strict: true, unique_tag: ' AZ ', sync: always }"
    )
    js = o.jetstream
    assert js.max_memory_store == 256 * 2**20
    assert js.max_file_store == 2 * 2**40
    assert js.strict and js.unique_tag == "az"
    assert js.sync_always and js.sync_interval == "always"


def test_top_level_store_dir() -> None:
    o = opts("store_dir: /data\njetstream: true\n")
    assert o.jetstream.store_dir == "/data" and o.jetstream.enabled


def test_duplicate_store_dir() -> None:
    assert "Duplicate 'store_dir' configuration" in str(
        error_of("store_dir: /a\njetstream { store_dir: /b }\n")
    )


def test_authorization_forms() -> None:
    o = opts("authorization { token: 's3cr3t', timeout: 1.5 }")
    assert o.authorization == {"token": "s3cr3t", "timeout": 1.5} and o.auth_timeout == 1.5
    o = opts("authorization { username: a, pass: b }")
    assert o.authorization == {"user": "a", "password": "b"}
    o = opts("authorization { timeout: '3s', users: [ {user: a, password: b} ] }")
    assert o.authorization == {"timeout": 3.0, "users": [{"user": "a", "password": "b"}]}


def test_authorization_block_variable_and_singular_permission() -> None:
    text = """
    authorization {
      PERM { publish: { allow: ["req.>"] }, subscribe: "_INBOX.>", allow_responses: true }
      users: [ { user: a, password: b, permission: $PERM } ]
    }
    """
    auth = opts(text).authorization
    assert "PERM" not in auth
    assert auth["users"][0]["permissions"] == {
        "publish": {"allow": ["req.>"]},
        "subscribe": "_INBOX.>",
        "allow_responses": True,
    }


def test_bcrypt_password_is_not_a_variable() -> None:
    auth = opts("authorization { user: a, password: $2a$11$W2zko751KUvVy59mUTWmpOdWmRuvLBBB6XA2Qb4pSSbV6/Ls8WU3K }").authorization
    assert auth["password"].startswith("$2a$11$")


def test_queue_subscribe_permission() -> None:
    auth = opts("authorization { users: [ {user: a, permissions: {subscribe: ['jobs.* workers']}} ] }").authorization
    assert auth["users"][0]["permissions"]["subscribe"] == ["jobs.* workers"]


def test_allow_responses_map() -> None:
    auth = opts("authorization { users: [ {user: a, permissions: {allow_responses: {max: 5, expires: '1m'}}} ] }").authorization
    assert auth["users"][0]["permissions"]["allow_responses"] == {"max": 5, "expires": 60.0}


def test_accounts_list_form() -> None:
    assert opts("accounts: [A, B]").accounts == {"A": {}, "B": {}}


def test_account_nkey_and_limits() -> None:
    o = opts(f"accounts {{ A {{ nkey: {account_nkey()}, limits: {{max_conn: 5}}, jetstream {{ max_mem: 1M }} }} }}")
    assert o.accounts["A"]["nkey"] == account_nkey()
    assert o.accounts["A"]["jetstream"] == {"max_mem": 1_000_000}


def test_leafnode_listener() -> None:
    o = opts("leafnodes { listen: 0.0.0.0:7422, authorization { user: leaf, password: pw, account: APP } }")
    assert o.leafnodes and (o.leafnodes.host, o.leafnodes.port) == ("0.0.0.0", 7422)
    assert o.leafnodes.authorization == {"user": "leaf", "password": "pw", "account": "APP"}


def test_leaf_alias_and_single_url() -> None:
    o = opts("leaf { remotes: [ { url: 'nats://hub:7422' } ] }")
    assert o.leafnodes and o.leafnodes.remotes[0].urls == ["nats://hub:7422"]


def test_websocket_alias_and_auth() -> None:
    o = opts("ws { listen: '127.0.0.1:8080', authorization { token: t } }")
    assert o.websocket and (o.websocket.host, o.websocket.port) == ("127.0.0.1", 8080)
    assert o.websocket.authorization == {"token": "t"}


def test_tls_verify_and_map(certs: dict[str, str]) -> None:
    o = opts(f"tls {{ cert_file: '{certs['cert']}', key_file: '{certs['key']}', verify_and_map: true, timeout: '500ms' }}")
    assert o.tls and o.tls.verify and o.tls.verify_and_map and o.tls.timeout == 0.5


# -- warnings and notices -------------------------------------------------------------------


def test_integer_duration_warns() -> None:
    report = ConfigReport()
    o = opts("ping_interval: 3\n", report)
    assert o.ping_interval == 3.0
    assert report.warnings == [
        'o.conf:1:1: invalid use of field "ping_interval": ping_interval should be converted to a duration'
    ]


def test_empty_config_warns() -> None:
    report = ConfigReport()
    opts("", report)
    assert report.warnings == ["o.conf:1:1: config has no values or is empty"]
    assert report.warnings[0].as_error().line == 1


def test_duplicate_leaf_url_warns() -> None:
    report = ConfigReport()
    o = opts("leafnodes { remotes: [ { urls: [ 'nats://a:1', 'nats://a:1' ] } ] }", report)
    assert o.leafnodes and o.leafnodes.remotes[0].urls == ["nats://a:1"]
    assert "Duplicate leafnode entry detected" in report.warnings[0]


def test_unsupported_known_keys_are_notices() -> None:
    report = ConfigReport()
    opts("gateway { name: g }\ndisable_sublist_cache: true\njetstream { cipher: aes }\n", report)
    assert len(report.notices) == 3
    assert any('"gateway"' in n for n in report.notices)
    assert any('"jetstream.cipher"' in n for n in report.notices)


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,message,line",
    [
        ("port: 1\nfoo: bar\n", 'unknown field "foo"', 2),
        ("authorization {\n  user: a\n  nope: 1\n}\n", 'unknown field "nope"', 3),
        ("port: abc\n", 'invalid value for "port": expected an integer, got string "abc"', 1),
        ("debug: 1\n", 'invalid value for "debug": expected a boolean', 1),
        ("server_name: 'a b'\n", "server name cannot contain spaces", 1),
        ("listen: 'nohostport'\n", 'could not parse address string "nohostport"', 1),
        ("http: 'h:port'\n", 'could not parse port "port"', 1),
        ("ping_interval: '2x'\n", 'error parsing ping_interval: time: unknown unit "x" in duration "2x"', 1),
        ("ping_interval: 1.5\n", "error parsing ping_interval", 1),
        ("lame_duck_duration: '10s'\n", "invalid lame_duck_duration of 10s, minimum is 30 seconds", 1),
        ("lame_duck_grace_period: '-1s'\n", "invalid lame_duck_grace_period, needs to be positive", 1),
        ("max_payload: 3GB\n", "max_payload value is too big", 1),
        ("max_sub_tokens: 300\n", "max_sub_tokens value is too big", 1),
        ("jetstream: maybe\n", "Expected 'enabled' or 'disabled' for string value, got 'maybe'", 1),
        ("jetstream: 5\n", "Expected map, bool or string to define JetStream, got int64", 1),
        ("jetstream {\n max_file_store: '10X'\n}\n", "max_file_store sizes defined as strings must end in K, M, G, T", 2),
        ("jetstream {\n bogus: 1\n}\n", 'unknown field "bogus"', 2),
        ("authorization { user: a, token: t }\n", "Cannot have a user/pass and token", 1),
        ("authorization { user: a, users: [] }\n", "Can not have a single user/pass and a users array", 1),
        ("authorization {\n users: [ {password: x} ]\n}\n", "User entry requires a user", 2),
        ("authorization {\n users: [ {user: a}, {user: a} ]\n}\n", 'Duplicate user "a" detected', 2),
        ("authorization { users: [ {nkey: UABC} ] }\n", "Not a valid public nkey for a user", 1),
        ("authorization { users: [ {user: a, permissions: {publish: 'a..b'}} ] }\n", 'subject "a..b" is not a valid subject', 1),
        ("authorization { users: [ {user: a, permissions: {pubz: x}} ] }\n", 'Unknown field "pubz" parsing permissions', 1),
        ("authorization { users: [ {user: a, clients: [BOGUS]} ] }\n", 'invalid connection types ["BOGUS"]', 1),
        ("accounts { $G { } }\n", '"$G" is a Reserved Account', 1),
        ("accounts { A: 5 }\n", "Expected map entries for accounts", 1),
        ("accounts { A { nkey: nope } }\n", 'Not a valid public nkey for an account: "nope"', 1),
        ("authorization { user: a }\naccounts { A { users: [ {user: b} ] } }\n", "Can not have a single user/pass and accounts", 2),
        ("accounts { A { users: [ {user: x} ] }, B { users: [ {user: x} ] } }\n", 'Duplicate user "x" detected', 1),
        ("tls { cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem }\n", "open /nonexistent/c.pem: no such file or directory", 1),
        ("tls { cert_file: c.pem }\n", "missing 'key_file' in TLS configuration", 1),
        ("tls { verify: 1 }\n", "expected 'verify' to be a boolean", 1),
        ("tls { bogus: 1 }\n", 'error parsing tls config, unknown field "bogus"', 1),
        ("mqtt { max_ack_pending: 70000 }\n", "invalid value 70000, should in [0..65535] range", 1),
        ("mqtt { nope: 1 }\n", 'unknown field "nope"', 1),
        ("websocket { nope: 1 }\n", 'unknown field "nope"', 1),
        ("leafnodes { remotes: { url: x } }\n", "Expected remotes field to be an array", 1),
        ("leafnodes { remotes: [ { urls: 5 } ] }\n", "Expected remote leafnode url to be an array or string", 1),
        ("leafnodes { remotes: [ { nope: 5 } ] }\n", 'unknown field "nope"', 1),
        ("cluster { nope: 1 }\n", 'unknown field "nope"', 1),
        ("resolver: FOO\n", "error parsing account resolver", 1),
        ("system_account: 5\n", "system account name must be a string", 1),
        ("resolver_preload { ABC: notajwt }\n", "invalid account JWT", 1),
        ("write_timeout: sometimes\n", "write_timeout must be 'default', 'close' or 'retry'", 1),
        ("operator: /nonexistent/op.jwt\n", "error parsing operator JWT: open /nonexistent/op.jwt", 1),
    ],
)
def test_errors(text: str, message: str, line: int) -> None:
    err = error_of(text)
    text_of = str(err)
    assert message in text_of, text_of
    assert "Parse error" in text_of
    assert f"o.conf:{line}:" in text_of


def test_all_errors_reported_together() -> None:
    err = error_of("port: x\nfoo: 1\ndebug: 3\n")
    assert len(err.errors) == 3
    lines = str(err).splitlines()
    assert [ln.split(":")[1] for ln in lines] == ["1", "2", "3"]


def test_unused_top_level_variable_is_unknown_but_used_one_is_fine() -> None:
    assert 'unknown field "TOK"' in str(error_of("TOK: abc\n"))
    assert opts("TOK: abc\nauthorization { token: $TOK }\n").authorization == {"token": "abc"}


def test_plain_dict_input() -> None:
    o = options_from_config({"port": 5, "jetstream": {"max_mem": "1K"}}, filename="api")
    assert o.port == 5 and o.jetstream.max_memory_store == 1024
    with pytest.raises(ConfigError, match="api:0:0"):
        options_from_config({"bogus": 1}, filename="api")


def test_applies_onto_given_options() -> None:
    base = Options(port=9999, debug=True)
    o = options_from_config(parse_string("debug: false"), options=base)
    assert o is base and (o.port, o.debug) == (9999, False)


def test_allow_unknown_top_level_keys() -> None:
    report = ConfigReport()
    o = options_from_config(parse_string("port: 1\ncustom_thing: 2\n"), report=report, allow_unknown=True)
    assert o.port == 1 and '"custom_thing"' in report.notices[0]
    # nested unknown keys are still errors
    with pytest.raises(ConfigError, match='unknown field "x"'):
        options_from_config(parse_string("jetstream { x: 1 }"), allow_unknown=True)


def test_operator_file(tmp_path: Path) -> None:
    f = tmp_path / "op.jwt"
    f.write_text("eyJ...")
    assert opts(f"operator: {f}\n").operator == [str(f)]
