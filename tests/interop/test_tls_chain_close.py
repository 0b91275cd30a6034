"""TLS as client test suites meet it: the certificate chain the server sends, and what it
sends after a client's close_notify.

- With `tls { cert_file, key_file, ca_file }` and no client verification, the chain is what
  cert_file holds, as nats-server sends it: a client that does not trust the CA sees the leaf
  alone ("unable to get local issuer certificate"), not the CA in the chain.
- A client that publishes to its own subscription and closes sends its PUBs and its
  close_notify together; the deliveries back to it must not be written after that
  close_notify (the client's TLS stack reports APPLICATION_DATA_AFTER_CLOSE_NOTIFY), and its
  messages still reach the other subscribers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl

import nats
import pytest

from conftest import NATS_SERVER, run_async
from edgebus.testing.embedded import EmbeddedServer

pytest.importorskip("cryptography.x509")
from test_tls import PKI, _name, x509  # noqa: E402


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = PKI(tmp_path_factory.mktemp("pki"))
    p.server = p.issue("server", _name("localhost"),
                       [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                       server=True)
    return p


def tls_conf(pki) -> str:
    return f"tls {{ cert_file: '{pki.server[0]}', key_file: '{pki.server[1]}', ca_file: '{pki.ca_file}' }}\n"


def read_info(sock: socket.socket) -> dict:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        assert chunk, "closed before INFO"
        buf += chunk
    return json.loads(buf[5:])


def untrusting_verdict(port: int) -> str:
    """The verification error of a client that trusts no CA at all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        read_info(sock)
        with pytest.raises(ssl.SSLCertVerificationError) as e:
            ctx.wrap_socket(sock, server_hostname="localhost")
    return e.value.verify_message


def test_chain_is_cert_file_only(pki, real_nats_server):
    with EmbeddedServer(config=tls_conf(pki), port=-1) as s:
        ours = untrusting_verdict(s.port)
    if NATS_SERVER:
        assert ours == untrusting_verdict(real_nats_server(config=tls_conf(pki)).port)
    assert ours == "unable to get local issuer certificate"


class TLSClient:
    """A raw TLS client over memory BIOs, so the test decides what goes in one TCP write."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        read_info(self.sock)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._pump()
        self.sock.sendall(self.out.read())

    def _pump(self) -> bytes:
        if self.out.pending:
            self.sock.sendall(self.out.read())
        data = self.sock.recv(65536)
        if data:
            self.inc.write(data)
        else:
            self.inc.write_eof()
        return data

    def send(self, data: bytes) -> None:
        self.obj.write(data)
        self.sock.sendall(self.out.read())

    def read_until(self, marker: bytes) -> bytes:
        got = b""
        while marker not in got:
            try:
                got += self.obj.read(65536)
            except ssl.SSLWantReadError:
                assert self._pump(), "closed early"
        return got

    def publish_and_close(self, frames: bytes) -> None:
        """`frames` and the close_notify in one TCP write, then read until the server is done;
        raises ssl.SSLError if the server sent application data after the close_notify."""
        self.obj.write(frames)
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self.sock.sendall(self.out.read())
        while True:
            try:
                self.obj.unwrap()  # reads what arrives; app data now is a protocol error
                return
            except ssl.SSLWantReadError:
                if not self._pump():
                    return
            except ssl.SSLEOFError:
                return


def test_nothing_follows_the_clients_close_notify(pki):
    ctx = pki.client_ctx()
    ctx.check_hostname = False
    with EmbeddedServer(config=tls_conf(pki), port=-1) as s:
        url = f"tls://127.0.0.1:{s.port}"

        async def other_subscriber_then(fn):
            nc = await nats.connect(url, tls=pki.client_ctx())
            sub = await nc.subscribe("x")
            await nc.flush()
            await asyncio.to_thread(fn)  # the raw clients block: off the event loop
            got = [(await sub.next_msg(timeout=30)).data for _ in range(3 * 50)]
            await nc.close()
            return got

        def three_clients() -> None:
            for _ in range(3):
                c = TLSClient(s.port, ctx)
                c.send(b'CONNECT {"verbose":false}\r\nSUB x 1\r\nPING\r\n')
                c.read_until(b"PONG\r\n")
                c.publish_and_close(b"PUB x 5\r\nhello\r\n" * 50)
                c.sock.close()

        got = run_async(other_subscriber_then, three_clients)
        assert got == [b"hello"] * 150
