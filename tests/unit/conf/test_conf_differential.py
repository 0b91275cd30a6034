"""Differential check: edgebus and the real ``nats-server -t -c FILE`` agree on which config
files are valid.

Each case is written to disk (with any include files it needs) and checked by both. The
real server runs are started together to keep the test quick; the whole module is skipped
when the binary is not installed.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgebus.cliargs import build_options
from edgebus.conf import ConfigError

from conftest import NATS_SERVER
pytestmark = pytest.mark.skipif(NATS_SERVER is None, reason="nats-server binary not installed")

ENV = {"EB_PORT": "4333", "EB_NAME": "from-env", "EB_SIZE": "2MB", "EB_REF": "$EB_NAME"}

# name -> (main config, {include file name: content}); "{dir}" and "{cert}"/"{key}" are
# filled in with the temporary directory and a generated certificate pair
VALID: dict[str, tuple[str, dict[str, str]]] = {
    "colon": ("port: 4333\n", {}),
    "equals": ("port = 4333\nserver_name = a\n", {}),
    "space": ("port 4333\nhost 127.0.0.1\n", {}),
    "listen": ("listen: 127.0.0.1:4333\n", {}),
    "listen_v6": ('listen: "[::1]:4333"\n', {}),
    "http_string": ('http: "127.0.0.1:-1"\n', {}),
    "http_port": ("http_port: -1\nport: -1\n", {}),
    "json": ('{"port": 4567, "server_name": "j", "jetstream": {"max_mem": 1024}}', {}),
    "json_pretty": ('{\n  "port": 4567,\n  "debug": true\n}\n', {}),
    "trailing_brace": ("port: 4333\n}\n", {}),
    "comments": ("# a\n// b\nport: 4333 # c\ndebug: true // d\n", {}),
    "semicolons": ("port: 4333; debug: true; trace: false\n", {}),
    "map_next_line": ("jetstream\n{\n  store_dir: \"{dir}/js\"\n}\n", {}),
    "map_value_next_line": ("jetstream {\n  store_dir:\n    \"{dir}/js\"\n}\n", {}),
    "sizes": ("max_payload: 1MB\nmax_pending: 64MB\nmax_control_line: 2KB\n", {}),
    "js_true": ("jetstream: true\nstore_dir: \"{dir}/js\"\n", {}),
    "js_enabled": ("jetstream: enabled\n", {}),
    "js_disabled": ("jetstream: disabled\n", {}),
    "js_block": (
        'jetstream { store_dir: "{dir}/js", max_mem: 1G, max_file: "10G", domain: hub, sync_interval: "2m" }\n',
        {},
    ),
    "durations": (
        'ping_interval: "1h30m"\nwrite_deadline: "500ms"\nlame_duck_duration: "2m"\nlame_duck_grace_period: "10s"\n',
        {},
    ),
    "variables": ('PASS: "s3cr3t"\nauthorization { user: a, password: $PASS }\n', {}),
    "block_variable": (
        "authorization {\n  PERM { publish: \"a.>\", subscribe: \">\" }\n"
        "  users: [ { user: a, password: b, permission: $PERM } ]\n}\n",
        {},
    ),
    "env_variable": ("port: $EB_PORT\nserver_name: $EB_NAME\nmax_payload: $EB_SIZE\n", {}),
    "env_chain": ("server_name: $EB_REF\n", {}),
    "include": ("port: 4333\ninclude ./inc.conf\n", {"inc.conf": "debug: true\n"}),
    "include_quoted_in_block": (
        'authorization {\n  include "auth.conf"\n}\n',
        {"auth.conf": "user: a\npassword: b\n"},
    ),
    "include_variable": ("include vars.conf\nserver_name: $NAME\n", {"vars.conf": "NAME: inc\n"}),
    "unicode": ('server_name: "ünïcødé"\nserver_tags: ["région:été", "名前"]\n', {}),
    "bool_words": ("debug: yes\ntrace: off\nlogtime: On\n", {}),
    "authorization_token": ('authorization { token: "t0k", timeout: 2 }\n', {}),
    "authorization_users": (
        "authorization {\n  users: [\n    {user: a, password: b}\n    {user: c, password: d, permissions: {publish: {allow: [\"x\"], deny: \"y\"}}}\n  ]\n}\n",
        {},
    ),
    "accounts": (
        "accounts {\n  A { users: [ {user: a, password: a} ], jetstream: enabled }\n"
        "  B { users: [ {user: b, password: b} ] }\n}\nsystem_account: A\n",
        {},
    ),
    "no_auth_user": ("accounts { A { users: [ {user: a, password: a} ] } }\nno_auth_user: a\n", {}),
    "websocket": ("websocket { port: -1, no_tls: true, compression: true }\n", {}),
    "mqtt": ('server_name: m\njetstream: true\nmqtt { port: -1, ack_wait: "30s" }\n', {}),
    "leafnodes": ("leafnodes { port: -1 }\n", {}),
    "leaf_remotes": (
        'leafnodes { remotes = [ { urls: ["nats-leaf://127.0.0.1:7422"] }, { url: "nats://h:1", account: "$G" } ] }\n',
        {},
    ),
    "tls": ('tls { cert_file: "{cert}", key_file: "{key}", timeout: 2 }\n', {}),
    "cluster": ("cluster { name: c, listen: 127.0.0.1:-1, routes: [nats://127.0.0.1:6222] }\n", {}),
    "mappings": ('mappings { "a.*": "b.$1" }\n', {}),
    "block_string": ("server_name: (\nmulti\n)\n", {}),
    "ip_looking": ("host: 127.0.0.1\n", {}),
    "ws_without_tls_settings": ("websocket { port: 8080 }\n", {}),
    "wrapped": ("{ port: 4222 }\n", {}),
    "json_trailing_comma": ('{\n  "port": 4222,\n}\n', {}),
    "trailing_comma": ("port: 4222,\n", {}),
    "trailing_close": ("port: 4222 }\n", {}),
    "max_conn_zero": ("max_connections: 0\n", {}),
    "zero_duration": ('ping_interval: "0"\n', {}),
    "negative_size": ("jetstream { max_mem: -1 }\n", {}),
    "hex_escape": ('server_name: "a\\x41"\n', {}),
    "resolver_memory": ("resolver: MEMORY\n", {}),
    "duplicate_key": ("debug: true; debug: false\n", {}),
    "quoted_keys": ('"port": 1\n\'debug\' = true\n', {}),
    "lone_slash_after_value": ("port: 1 /\n", {}),
    "spaced_array_end": ("server_tags: [a, b ]\nmax_payload: 1KB\n", {}),
}

INVALID: dict[str, tuple[str, dict[str, str]]] = {
    "unknown_top": ("port: 4333\nfoo: bar\n", {}),
    "unused_variable": ('TOKEN: "abc"\nport: 4333\n', {}),
    "unknown_in_auth": ("authorization {\n  user: a\n  password: b\n  foo: 1\n}\n", {}),
    "unknown_in_js": ("jetstream { bogus: 1 }\n", {}),
    "unknown_in_tls": ('tls { cert_file: "{cert}", key_file: "{key}", bogus: 1 }\n', {}),
    "unknown_in_ws": ("websocket { port: -1, no_tls: true, bogus: 1 }\n", {}),
    "unknown_in_leaf": ("leafnodes { port: -1, bogus: 1 }\n", {}),
    "unterminated_dq": ('port: "abc\n', {}),
    "unterminated_sq": ("server_name: 'abc\n", {}),
    "bad_escape": ('server_name: "a\\qb"\n', {}),
    "sep_then_newline": ("port:\n 4222\n", {}),
    "map_sep_then_newline": ("jetstream:\n{\n}\n", {}),
    "key_without_value": ("port: 4333\nfoo\n", {}),
    "unclosed_map": ("jetstream {\n  store_dir: /x\n", {}),
    "unclosed_array": ("server_tags: [a, b\n", {}),
    "number_touching_bracket": ("server_tags: [1,2]\n", {}),
    "float_with_unit": ("ping_interval: 1.5s\n", {}),
    "missing_variable": ("port: $EB_NOPE\n", {}),
    "missing_include": ("include ./missing.conf\n", {}),
    "bad_include_content": ("include bad.conf\n", {"bad.conf": 'x: "open\n'}),
    "absolute_include": ("include {dir}/abs.conf\n", {"abs.conf": "debug: true\n"}),
    "wrong_type_port": ("port: abc\n", {}),
    "wrong_type_debug": ("debug: 5\n", {}),
    "bad_duration": ('ping_interval: "2x"\n', {}),
    "int_duration_warning": ("ping_interval: 5\n", {}),
    "unquoted_minutes": ("ping_interval: 2m\n", {}),
    "short_lame_duck": ('lame_duck_duration: "5s"\n', {}),
    "bad_js_string": ("jetstream: maybe\n", {}),
    "bad_js_size": ('jetstream { max_file_store: "10X" }\n', {}),
    "duplicate_store_dir": ("store_dir: /a\njetstream { store_dir: /b }\n", {}),
    "user_and_token": ("authorization { user: a, password: b, token: c }\n", {}),
    "user_and_users": ("authorization { user: a, users: [ {user: b} ] }\n", {}),
    "user_without_name": ("authorization { users: [ {password: b} ] }\n", {}),
    "duplicate_users": ("authorization { users: [ {user: a}, {user: a} ] }\n", {}),
    "bad_permission_field": ("authorization { users: [ {user: a, permissions: {pubz: x}} ] }\n", {}),
    "reserved_account": ("accounts { $G { } }\n", {}),
    "bad_connection_type": ("authorization { users: [ {user: a, allowed_connection_types: [BOGUS]} ] }\n", {}),
    "missing_cert": ('tls { cert_file: "{dir}/none.pem", key_file: "{dir}/none.key" }\n', {}),
    "cert_without_key": ('tls { cert_file: "{cert}" }\n', {}),
    "bad_listen": ('listen: "nohostport"\n', {}),
    "server_name_space": ('server_name: "a b"\n', {}),
    "max_payload_too_big": ("max_payload: 3GB\n", {}),
    "empty_file": ("", {}),
    "comment_only": ("# nothing\n", {}),
    "remotes_not_array": ("leafnodes { remotes: { url: x } }\n", {}),
    "mqtt_ack_pending": ("mqtt { port: -1, max_ack_pending: 70000 }\n", {}),
    "bad_date": ("server_name: 2021-13-01T00:00:00Z\n", {}),
    "lone_slash": ("/\n", {}),
    "user_with_account_key": ("authorization { users = [ { user: a, password: b, account: X } ] }\n", {}),
    "duplicate_account_list": ("accounts: [A, A]\n", {}),
    "duplicate_user_across_accounts": (
        "accounts { A { users: [ {user: a} ] }, B { users: [ {user: a} ] } }\n",
        {},
    ),
    "bad_tls_timeout": ('tls { timeout: "2x" }\n', {}),
    "mqtt_int_ack_wait": ("mqtt { ack_wait: 5 }\n", {}),
    "js_size_not_number": ('jetstream { max_mem: "abc" }\n', {}),
    "hex_port": ("port: 0x10\n", {}),
    "underscore_port": ("port: 4_222\n", {}),
    "int_lame_duck": ("lame_duck_duration: 60\n", {}),
    "auth_timeout_high": ("authorization { timeout: 120 }\n", {}),
    "unknown_dollar_variable": ("system_account: $G\n", {}),
    "missing_operator_file": ("operator: {dir}/nope.jwt\n", {}),
}


@pytest.fixture(scope="module")
def case_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diff")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (root / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    fill = {"{dir}": str(root), "{cert}": str(root / "cert.pem"), "{key}": str(root / "key.pem")}

    def render(text: str) -> str:
        for k, v in fill.items():
            text = text.replace(k, v)
        return text

    files: dict[str, Path] = {}
    for name_, (main, extra) in {**VALID, **INVALID}.items():
        d = root / name_
        d.mkdir()
        for fname, content in extra.items():
            (d / fname).write_text(render(content))
        # absolute includes resolve (Go-style) under the including file's directory
        (root / "abs.conf").write_text("debug: true\n")
        path = d / "main.conf"
        path.write_text(render(main))
        files[name_] = path
    return files


@pytest.fixture(scope="module")
def nats_verdicts(case_files: dict[str, Path]) -> dict[str, tuple[bool, str]]:
    env = {**os.environ, **ENV}
    env.pop("EB_NOPE", None)
    procs = {
        name: subprocess.Popen(
            [NATS_SERVER, "-t", "-c", str(path)],  # type: ignore[list-item]
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=path.parent,
        )
        for name, path in case_files.items()
    }
    out = {}
    for name, proc in procs.items():
        text, _ = proc.communicate(timeout=30)
        out[name] = (proc.returncode == 0, text.decode(errors="replace"))
    return out


def edgebus_verdict(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[bool, str]:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("EB_NOPE", raising=False)
    monkeypatch.chdir(path.parent)
    try:
        build_options(["-t", "-c", str(path)])
    except ConfigError as e:
        return False, str(e)
    return True, ""


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_configs_agree(
    name: str,
    case_files: dict[str, Path],
    nats_verdicts: dict[str, tuple[bool, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_ok, real_out = nats_verdicts[name]
    assert real_ok, f"case {name!r} should be valid for nats-server: {real_out}"
    ok, message = edgebus_verdict(case_files[name], monkeypatch)
    assert ok, message


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_configs_agree(
    name: str,
    case_files: dict[str, Path],
    nats_verdicts: dict[str, tuple[bool, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_ok, real_out = nats_verdicts[name]
    assert not real_ok, f"case {name!r} should be rejected by nats-server: {real_out}"
    ok, message = edgebus_verdict(case_files[name], monkeypatch)
    assert not ok
    assert "Parse error" in message and str(case_files[name].parent) in message
