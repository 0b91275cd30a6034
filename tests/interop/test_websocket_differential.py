"""edgebus's WebSocket listener next to the real nats-server: the same bytes in, the same
answers out (HTTP refusals byte for byte apart from Date, upgrade headers, origin decisions,
INFO fields, control frames, compressed traffic and close codes).

Both servers get the same websocket{} config text; the hand-driven client in
tests/interop/ws/wsclient.py talks to each in turn.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest
import trio

from conftest import free_port

sys.path.insert(0, str(Path(__file__).parent / "ws"))
from wsclient import (BINARY, CLOSE, CONT, PING, RawWebSocket, deflate, new_key,  # noqa: E402
                      upgrade_request)

PMD = ("Sec-WebSocket-Extensions", "permessage-deflate")
BROWSER = ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36")


@contextmanager
def both(real_nats_server, ws_block: str, extra: str = "") -> Iterator[dict[str, int]]:
    """{"nats-server": ws_port, "edgebus": ws_port} for servers running the same config."""
    from edgebus.testing.embedded import EmbeddedServer
    port = free_port()
    real = real_nats_server(config=f"websocket {{ port: {port}\n{ws_block} }}\n{extra}")
    with EmbeddedServer(config=f"port: -1\nwebsocket {{ port: -1\n{ws_block} }}\n{extra}") as eb:
        yield {"nats-server": port, "edgebus": eb.call(lambda s: s.ws_port)}
    real.stop()


def on_each(ports: dict[str, int], scenario: Callable[[int], Awaitable[Any]]) -> dict[str, Any]:
    return {name: trio.run(scenario, port) for name, port in ports.items()}


def same(results: dict[str, Any]) -> Any:
    assert results["edgebus"] == results["nats-server"], results
    return results["edgebus"]


def normalized(resp) -> tuple:
    return resp.status_line, [(k, "<date>" if k == "Date" else v) for k, v in resp.headers], resp.body


async def opened(port: int, headers=None) -> tuple[RawWebSocket, dict]:
    ws = await RawWebSocket.connect("127.0.0.1", port)
    with trio.fail_after(10):
        resp = await ws.handshake(upgrade_request(headers=headers))
        assert resp.status == 101, resp
        data = await ws.recv_data_until(b"\r\n")
    return ws, json.loads(data[5:data.index(b"\r\n")])


async def until_close(ws: RawWebSocket) -> list[tuple]:
    """(opcode, fin, rsv1, payload) of each frame until the close frame or EOF."""
    out = []
    with trio.fail_after(10):
        while True:
            f = await ws.recv_frame()
            if f is None:
                return out + [("EOF",)]
            out.append((f.opcode, f.fin, f.rsv1, f.payload))
            if f.opcode == CLOSE:
                return out


KEY = new_key()
NOISE = os.urandom(10000).hex().encode()  # the same incompressible-ish bytes for both servers
REQUESTS = {
    "post": upgrade_request(method="POST", key=KEY),
    "no upgrade headers": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "no Connection: Upgrade": upgrade_request(key=KEY).replace(b"Connection: Upgrade",
                                                               b"Connection: keep-alive"),
    "no key": upgrade_request(key=KEY).replace(f"Sec-WebSocket-Key: {KEY}\r\n".encode(), b""),
    "short key": upgrade_request(key="c2hvcnQ="),
    "version 8": upgrade_request(key=KEY).replace(b"Version: 13", b"Version: 8"),
    "mqtt path, MQTT off": upgrade_request("/mqtt", key=KEY),
    "http/1.0 without host": upgrade_request(key=KEY).replace(b"Host: 127.0.0.1\r\n", b"")
                                                     .replace(b"HTTP/1.1", b"HTTP/1.0"),
    "connection close": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "upgrade": upgrade_request(key=KEY),
    "upgrade, token list": upgrade_request(key=KEY).replace(b"Connection: Upgrade",
                                                            b"Connection: keep-alive, Upgrade"),
    "upgrade, deflate offered": upgrade_request(key=KEY, headers=[PMD]),
    "upgrade, no masking": upgrade_request(key=KEY, headers=[("Nats-No-Masking", "true")]),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_http_answers_match(real_nats_server, name):
    with both(real_nats_server, "no_tls: true\ncompression: true") as ports:
        async def scenario(port: int) -> tuple:
            ws = await RawWebSocket.connect("127.0.0.1", port)
            with trio.fail_after(10):
                resp = await ws.handshake(REQUESTS[name])
            await ws.aclose()
            return normalized(resp)
        same(on_each(ports, scenario))


@pytest.mark.parametrize("raw", [b"HELLO\r\n\r\n", upgrade_request().replace(b"Host: 127.0.0.1\r\n", b"")])
def test_unparsable_requests_match(real_nats_server, raw):
    with both(real_nats_server, "no_tls: true") as ports:
        async def scenario(port: int) -> bytes:
            ws = await RawWebSocket.connect("127.0.0.1", port)
            await ws.send(raw)
            with trio.fail_after(10):
                return await ws.read_rest()
        same(on_each(ports, scenario))


def test_connection_kept_after_a_refusal(real_nats_server):
    with both(real_nats_server, "no_tls: true") as ports:
        async def scenario(port: int) -> list[int]:
            ws = await RawWebSocket.connect("127.0.0.1", port)
            with trio.fail_after(10):
                first = await ws.handshake(upgrade_request(method="PUT"))
                second = await ws.handshake(upgrade_request())
            await ws.aclose()
            return [first.status, second.status]
        assert same(on_each(ports, scenario)) == [405, 101]


ORIGINS = ["http://good.example", "http://GOOD.example:80", "https://good.example",
           "http://good.example:8080", "http://evil.example", "null", "::nope", "http://127.0.0.1:{port}",
           "https://127.0.0.1:{port}", None]


@pytest.mark.parametrize("block", [
    'no_tls: true\nallowed_origins: ["http://good.example", "https://other.example:8443"]',
    "no_tls: true\nsame_origin: true",
    'no_tls: true\nsame_origin: true\nallowed_origins: ["http://127.0.0.1"]',
])
def test_origin_decisions_match(real_nats_server, block):
    with both(real_nats_server, block) as ports:
        async def scenario(port: int) -> list[tuple[str | None, int]]:
            out = []
            for origin in ORIGINS:
                o = origin.format(port=port) if origin else None
                ws = await RawWebSocket.connect("127.0.0.1", port)
                headers = [("Origin", o)] if o else []
                with trio.fail_after(10):
                    resp = await ws.handshake(upgrade_request(host=f"127.0.0.1:{port}", headers=headers))
                await ws.aclose()
                out.append((origin, resp.status))
            return out
        decisions = same(on_each(ports, scenario))
        assert {s for _, s in decisions} == {101, 403}


def test_info_describes_the_websocket_listener(real_nats_server):
    with both(real_nats_server, "no_tls: true") as ports:
        async def scenario(port: int) -> dict:
            ws, info = await opened(port, headers=[("X-Forwarded-For", "10.9.8.7")])
            await ws.aclose()
            return {"host": info["host"], "port_is_ws": info["port"] == port,
                    "client_ip": info["client_ip"], "headers": info["headers"],
                    "tls": [k for k in ("tls_required", "tls_available", "auth_required") if k in info]}
        assert same(on_each(ports, scenario)) == {"host": "0.0.0.0", "port_is_ws": True,
                                                  "client_ip": "127.0.0.1", "headers": True, "tls": []}


def test_control_frames_and_split_ops_match(real_nats_server):
    with both(real_nats_server, "no_tls: true") as ports:
        async def scenario(port: int) -> list:
            out = []
            ws, _ = await opened(port)
            await ws.send_frame(PING, b"hello")
            out.append(await ws.recv_frame())
            # CONNECT and PING cut in odd places, over text, continuation and binary frames
            await ws.send_frame(1, b'CONNECT {"verb', fin=False)
            await ws.send_frame(CONT, b'ose":true}\r\nPI')
            await ws.send_frame(BINARY, b"NG\r\n")
            out.append(await ws.recv_data_until(b"PONG\r\n"))
            await ws.send_frame(CLOSE, struct.pack("!H", 1001) + b"later")
            out += await until_close(ws)
            ws, _ = await opened(port)
            await ws.send_frame(CLOSE)
            out += await until_close(ws)
            return [(f.opcode, f.payload) if hasattr(f, "opcode") else f for f in out]
        assert same(on_each(ports, scenario))[0] == (10, b"hello")


def test_compressed_traffic_matches(real_nats_server):
    with both(real_nats_server, "no_tls: true\ncompression: true") as ports:
        async def scenario(port: int) -> dict:
            ws, _ = await opened(port, headers=[PMD])
            info_compressed = ws.frames_seen[0].rsv1
            z = deflate(b'CONNECT {"verbose":false}\r\nSUB a 1\r\nPING\r\n')
            await ws.send_frame(BINARY, z[:3], rsv1=True, fin=False)
            await ws.send_frame(CONT, z[3:])
            await ws.recv_data_until(b"PONG\r\n")
            pong_frame = ws.frames_seen[-1]
            body = b"0123456789" * 1000
            await ws.send_frame(BINARY, b"PUB a 10000\r\n" + body + b"\r\n")
            got = await ws.recv_data_until(body + b"\r\n")
            big = ws.frames_seen[-1]
            await ws.aclose()
            # a browser with compression: fragments of at most 4 KiB, RSV1 on the first
            ws, _ = await opened(port, headers=[PMD, BROWSER])
            noise = NOISE
            await ws.send_frame(BINARY, b'CONNECT {"verbose":false}\r\nSUB a 1\r\nPUB a %d\r\n' % len(noise)
                                + noise + b"\r\n")
            got2 = await ws.recv_data_until(noise + b"\r\n")
            frames = ws.frames_seen[1:]
            await ws.aclose()
            return {"info_compressed": info_compressed, "pong": (pong_frame.rsv1, pong_frame.payload),
                    "big": (big.opcode, big.rsv1, big.fin),
                    "data": got, "browser_data": got2,
                    "browser_first": (frames[0].opcode, frames[0].rsv1),
                    "browser_rest": {(f.opcode, f.rsv1) for f in frames[1:]},
                    "browser_max": max(len(f.payload) for f in frames) <= 4096}
        r = same(on_each(ports, scenario))
        assert r["info_compressed"] and r["pong"] == (False, b"PONG\r\n")


def test_max_payload_close_matches(real_nats_server):
    with both(real_nats_server, "no_tls: true", extra="max_payload: 1024") as ports:
        async def scenario(port: int) -> list:
            ws, _ = await opened(port)
            await ws.send_frame(BINARY, b'CONNECT {"verbose":false}\r\nPUB a 5000\r\n')
            return await until_close(ws)
        frames = same(on_each(ports, scenario))
        close = struct.pack("!H", 1009) + b"Maximum Message Payload Exceeded"
        assert frames[-1][:4] == (CLOSE, True, False, close)


@pytest.mark.parametrize("conf", [
    "websocket { port: -1 }",
    "websocket { port: -1, no_tls: true, no_auth_user: zed }",
    "authorization { users = [{user: a, password: b}] }\n"
    "websocket { port: -1, no_tls: true, no_auth_user: zed }",
    "authorization { users = [{user: a, password: b}] }\n"
    "websocket { port: -1, no_tls: true, authorization { token: t } }",
    'websocket { port: -1, no_tls: true, allowed_origins: ["http://"] }',
    'websocket { port: -1, no_tls: true, allowed_origins: ["ws://x.example"] }',
])
def test_startup_refusals_match(tmp_path, conf):
    import subprocess

    from conftest import NATS_SERVER
    if not NATS_SERVER:
        pytest.skip("nats-server binary not installed")
    path = tmp_path / "ws.conf"
    path.write_text(f"port: -1\n{conf}\n")
    real = subprocess.run([NATS_SERVER, "-c", str(path)], capture_output=True, text=True, timeout=20)
    assert real.returncode == 1, real.stderr
    from edgebus.conf import parse_string
    from edgebus.conf.options_map import options_from_config
    from edgebus.transport.websocket import validate_websocket_options
    with pytest.raises(ValueError) as ei:
        validate_websocket_options(options_from_config(parse_string(path.read_text()), filename=str(path)))
    assert f"nats-server: {ei.value}" == real.stderr.strip()


def test_ports_file_websocket_entry_matches(real_nats_server, tmp_path):
    """nats-server's ports file lists the listener as ws://host:port; edgebus's server.ports
    (what its ports_file_dir file is written from) says the same."""
    from edgebus.testing.embedded import EmbeddedServer
    port = free_port()
    # the fixture's nats-server writes its ports file (ports_file_dir) into its directory
    real = real_nats_server(config=f"websocket {{ port: {port}, host: 127.0.0.1, no_tls: true }}\n")
    files = list(Path(real.dir).glob("*.ports"))
    assert len(files) == 1
    real_ports = json.loads(files[0].read_text())
    assert real_ports["websocket"] == [f"ws://127.0.0.1:{port}"]
    with EmbeddedServer(config="port: -1\nwebsocket { port: -1, host: 127.0.0.1, no_tls: true }") as eb:
        ports = eb.call(lambda s: dict(s.ports))
        ws_port = eb.call(lambda s: s.ws_port)
    assert ports["websocket"] == [f"ws://127.0.0.1:{ws_port}"]
    assert set(real_ports) >= set(ports)
