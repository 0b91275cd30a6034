"""The nats-server command line: flag forms, actions, errors and precedence over the file."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from edgebus.cliargs import CliError, apply_overrides, build_options, help_text, parse_args, usage
from edgebus.conf import ConfigError
from edgebus.options import Options


@pytest.mark.parametrize(
    "argv",
    [
        ["-p", "4333"],
        ["-p=4333"],
        ["--p", "4333"],
        ["-port", "4333"],
        ["--port", "4333"],
        ["--port=4333"],
    ],
)
def test_value_flag_forms(argv: list[str]) -> None:
    assert parse_args(argv).overrides == {"port": 4333}


@pytest.mark.parametrize(
    "argv,overrides",
    [
        (["-p", "-1"], {"port": -1}),
        (["-a", "127.0.0.1"], {"host": "127.0.0.1"}),
        (["--addr", "::1"], {"host": "::1"}),
        (["--net", "::"], {"host": "::"}),
        (["-a", "localhost"], {"host": "localhost"}),
        (["-n", "srv"], {"server_name": "srv"}),
        (["--name", "srv"], {"server_name": "srv"}),
        (["--server_name", "srv"], {"server_name": "srv"}),
        (["-m", "8222"], {"http_port": 8222}),
        (["--http_port", "-1"], {"http_port": -1}),
        (["-ms", "8443"], {"https_port": 8443}),
        (["-P", "/tmp/x.pid"], {"pid_file": "/tmp/x.pid"}),
        (["--pid", "/tmp/x.pid"], {"pid_file": "/tmp/x.pid"}),
        (["--ports_file_dir", "/tmp"], {"ports_file_dir": "/tmp"}),
        (["-l", "/tmp/l"], {"log_file": "/tmp/l"}),
        (["--log", "/tmp/l"], {"log_file": "/tmp/l"}),
        (["-D"], {"debug": True}),
        (["--debug"], {"debug": True}),
        (["-V"], {"trace": True}),
        (["--trace"], {"trace": True}),
        (["-DV"], {"debug": True, "trace": True}),
        (["-VV"], {"trace": True, "trace_verbose": True}),
        (["-DVV"], {"debug": True, "trace": True, "trace_verbose": True}),
        (["-DV=false"], {"debug": False, "trace": False}),
        (["-T"], {"logtime": True}),
        (["-T=false"], {"logtime": False}),
        (["--logtime=0"], {"logtime": False}),
        (["--logtime_utc"], {"logtime_utc": True}),
        (["-s"], {"syslog": True}),
        (["-r", "udp://h:514"], {"remote_syslog": "udp://h:514"}),
        (["-js"], {"jetstream.enabled": True}),
        (["--jetstream"], {"jetstream.enabled": True}),
        (["-sd", "/tmp/js"], {"jetstream.store_dir": "/tmp/js"}),
        (["-sd=/tmp/js"], {"jetstream.store_dir": "/tmp/js"}),
        (["--store_dir", "/tmp/js"], {"jetstream.store_dir": "/tmp/js"}),
        (["--user", "u", "--pass", "p"], {"authorization.user": "u", "authorization.password": "p"}),
        (["--auth", "tok"], {"authorization.token": "tok"}),
        (["--tls", "--tlsverify"], {"tls.enabled": True, "tls.verify": True}),
        (["--tlscert", "c", "--tlskey", "k", "--tlscacert", "ca"], {"tls.cert_file": "c", "tls.key_file": "k", "tls.ca_file": "ca"}),
        (["--cluster", "nats://0.0.0.0:6222"], {"cluster.listen": "nats://0.0.0.0:6222"}),
        (["--cluster_listen", "nats://0.0.0.0:6222"], {"cluster.listen": "nats://0.0.0.0:6222"}),
        (["--cluster_name", "c"], {"cluster.name": "c"}),
        (["--routes", "nats://a:1"], {"cluster.routes": "nats://a:1"}),
        (["--no_advertise"], {"cluster.no_advertise": True}),
        (["--connect_retries", "3"], {"cluster.connect_retries": 3}),
        (["--cluster_advertise", "x:1"], {"cluster.advertise": "x:1"}),
        (["--client_advertise", "x:1"], {"client_advertise": "x:1"}),
        (["--log_size_limit", "1000"], {"log_size_limit": 1000}),
        (["--max_traced_msg_len", "64"], {"max_traced_msg_len": 64}),
        (["--profile", "6060"], {"prof_port": 6060}),
        (["-p", "0x1000"], {"port": 4096}),
        (["-p", "010"], {"port": 8}),
        (["-p", "1", "--port", "2"], {"port": 2}),
        (["-D", "--", "-p", "1"], None),
    ],
)
def test_flags(argv: list[str], overrides: dict | None) -> None:
    if overrides is None:
        with pytest.raises(CliError, match='unrecognized command: "-p"'):
            parse_args(argv)
        return
    assert parse_args(argv).overrides == overrides


def test_actions() -> None:
    r = parse_args(["-c", "x.conf", "-t"])
    assert r.config_file == "x.conf" and r.actions.test_config
    assert parse_args(["--config=y.conf"]).config_file == "y.conf"
    assert parse_args(["-v"]).actions.show_version
    assert parse_args(["--version"]).actions.show_version
    assert parse_args(["version"]).actions.show_version
    assert parse_args(["-h"]).actions.show_help
    assert parse_args(["--help"]).actions.show_help
    assert parse_args(["help"]).actions.show_help
    assert parse_args(["--help_tls"]).actions.show_tls_help
    assert parse_args(["-p", "1", "-D"]).flags == ["p", "D"]


@pytest.mark.parametrize(
    "spec,command,sig,pid",
    [
        ("reload", "reload", signal.SIGHUP, None),
        ("ldm=123", "ldm", signal.SIGUSR2, 123),
        ("stop", "stop", signal.SIGKILL, None),
        ("quit=7", "quit", signal.SIGINT, 7),
        ("term", "term", signal.SIGTERM, None),
        ("reopen", "reopen", signal.SIGUSR1, None),
    ],
)
def test_signal(spec: str, command: str, sig: signal.Signals, pid: int | None) -> None:
    req = parse_args(["--signal", spec]).actions.signal
    assert req and (req.command, req.signal, req.pid) == (command, sig, pid)
    assert parse_args(["-sl", spec]).actions.signal == req


def test_signal_pid_from_file(tmp_path: Path) -> None:
    pidfile = tmp_path / "s.pid"
    pidfile.write_text("4242\n")
    req = parse_args([f"--signal=reload={pidfile}"]).actions.signal
    assert req and req.pid == 4242


@pytest.mark.parametrize(
    "argv,message",
    [
        (["-p", "abc"], 'invalid value "abc" for flag -p: parse error'),
        (["--port", "abc"], 'invalid value "abc" for flag -port: parse error'),
        (["-p", "70000"], 'invalid value "70000" for flag -p'),
        (["-m", "x"], 'invalid value "x" for flag -m: parse error'),
        (["-a", "999.999.999.999"], 'invalid value "999.999.999.999" for flag -a'),
        (["-a", "bad host"], 'invalid value "bad host" for flag -a'),
        (["-p"], "flag needs an argument: -p"),
        (["--bogus"], "flag provided but not defined: -bogus"),
        (["---p"], "bad flag syntax: ---p"),
        (["-D=maybe"], 'invalid boolean value "maybe" for -D: parse error'),
        (["-D", "false"], 'unrecognized command: "false"'),
        (["foo"], 'unrecognized command: "foo"'),
        (["--signal", "bogus"], 'unknown signal "bogus"'),
        (["--signal", "reload=abc"], "invalid pid: abc"),
        (["--signal", "reload=1=2"], "invalid signal parameters: [2]"),
    ],
)
def test_bad_arguments(argv: list[str], message: str) -> None:
    with pytest.raises(CliError) as info:
        parse_args(argv)
    assert message in str(info.value)
    assert info.value.exit_code != 0


# -- building options ---------------------------------------------------------------------


def test_flags_win_over_config(tmp_path: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text(
        "port: 4333\nhost: 127.0.0.1\ndebug: false\nhttp_port: 8222\n"
        "jetstream { store_dir: /from/file, max_mem: 1M }\n"
        "authorization { user: file, password: filepw }\n"
    )
    o, actions = build_options(["-c", str(conf), "-p", "5555", "-D", "-sd", "/from/flag", "--user", "flag"])
    assert o.config_file == str(conf)
    assert o.port == 5555 and o.host == "127.0.0.1"
    assert o.debug is True and o.http_port == 8222
    assert o.jetstream.store_dir == "/from/flag" and o.jetstream.max_memory_store == 1_000_000
    assert o.authorization == {"user": "flag", "password": "filepw"}
    assert not actions.test_config


def test_flag_order_does_not_matter(tmp_path: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text("port: 4333\n")
    o1, _ = build_options(["-p", "1", "-c", str(conf)])
    o2, _ = build_options(["-c", str(conf), "-p", "1"])
    assert o1.port == o2.port == 1


def test_boolean_flag_can_turn_config_off(tmp_path: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text("logtime: true\njetstream: enabled\n")
    o, _ = build_options(["-c", str(conf), "-T=false", "-js=false"])
    assert o.logtime is False and o.jetstream.enabled is False


def test_no_config() -> None:
    o, actions = build_options(["-js", "-m", "-1"])
    assert o.jetstream.enabled and o.http_port == -1 and o.config_file is None


def test_test_config_requires_file() -> None:
    with pytest.raises(CliError, match=r"must specify \[-c, --config\]"):
        build_options(["-t"])


def test_test_config_fails_on_warnings(tmp_path: Path) -> None:
    conf = tmp_path / "w.conf"
    conf.write_text("ping_interval: 5\n")
    o, actions = build_options(["-c", str(conf)])
    assert o.ping_interval == 5.0 and len(actions.config_warnings) == 1
    with pytest.raises(ConfigError, match="should be converted to a duration") as info:
        build_options(["-c", str(conf), "-t"])
    assert str(info.value).startswith(f"{conf}:1:1: Parse error: ")


def test_bad_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("port: 1\nnope: 2\n")
    with pytest.raises(ConfigError) as info:
        build_options(["-c", str(conf)])
    assert "Parse error" in str(info.value) and f"{conf}:2:1" in str(info.value)
    with pytest.raises(ConfigError, match="no such file or directory"):
        build_options(["-c", str(tmp_path / "missing.conf")])


def test_help_version_signal_skip_config(tmp_path: Path) -> None:
    for argv in (["-h"], ["-v"], ["--signal", "reload"]):
        o, actions = build_options(["-c", str(tmp_path / "missing.conf"), *argv])
        assert isinstance(o, Options)


def test_tls_flags(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    o, _ = build_options(["--tlscert", str(cert), "--tlskey", str(key), "--tlsverify"])
    assert o.tls and o.tls.cert_file == str(cert) and o.tls.verify
    with pytest.raises(CliError, match="TLS Server private key must be present"):
        build_options(["--tls", "--tlscert", str(cert)])
    with pytest.raises(CliError, match="TLS Server certificate must be present"):
        build_options(["--tlsverify"])
    conf = tmp_path / "tls.conf"
    conf.write_text("port: 1\n")
    o = Options()
    apply_overrides(o, {"tls.enabled": False, "tls.cert_file": "x"})
    assert o.tls is None


def test_cluster_flags_are_accepted(tmp_path: Path) -> None:
    o, actions = build_options(["--cluster", "nats://127.0.0.1:6222", "--routes", "nats://a:1, nats://b:2", "--cluster_name", "c"])
    assert o.cluster == {"listen": "nats://127.0.0.1:6222", "name": "c", "routes": ["nats://a:1", "nats://b:2"]}
    assert any("routes" in n for n in actions.notices)
    with pytest.raises(CliError, match="solicited routes require cluster capabilities"):
        build_options(["--routes", "nats://a:1"])
    conf = tmp_path / "c.conf"
    conf.write_text("cluster { listen: 0.0.0.0:6222 }\n")
    o, _ = build_options(["-c", str(conf), "--routes", "nats://a:1"])
    assert o.cluster and o.cluster["routes"] == ["nats://a:1"]


def test_help_text_lists_flags() -> None:
    text = help_text()
    for flag in ("--port", "--addr", "--config", "-t", "--jetstream", "--store_dir", "--signal",
                 "--ports_file_dir", "--tlscert", "--routes", "--user", "--auth", "-DV", "--http_port",
                 "--pid", "--log", "--logtime", "--version", "--help"):
        assert flag in text, flag


def test_actions_mapping_access() -> None:
    actions = parse_args(["--signal", "ldm=42", "-t"]).actions
    assert actions["signal"] == "ldm=42" and actions.get("signal") == "ldm=42"
    assert actions.get("test_config") is True and actions.get("help") is None
    assert actions.get("nonsense", "d") == "d"
    with pytest.raises(KeyError):
        actions["nonsense"]
    assert parse_args(["-h"]).actions.get("help") is True
    assert usage() == help_text()
