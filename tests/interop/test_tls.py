"""TLS with nats-py over real sockets, with a CA and certificates generated here: server-only
TLS, `verify` (client certificates required), `verify_and_map` (certificate names the user:
e-mail SAN, DNS SAN, subject DN), `handshake_first`, `allow_non_tls` and the INFO flags."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import ssl

import nats
import pytest

from conftest import run_async
from edgebus.testing.embedded import EmbeddedServer

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _name(cn: str, org: str | None = None) -> "x509.Name":
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


class PKI:
    """A throw-away CA that issues server and client certificates into a directory."""

    def __init__(self, d) -> None:
        self.dir = d
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.name = _name("edgebus test CA")
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.ca_file = self._write("ca.pem", self.cert.public_bytes(serialization.Encoding.PEM))

    def _write(self, name: str, data: bytes) -> str:
        p = self.dir / name
        p.write_bytes(data)
        return str(p)

    def issue(self, stem: str, subject: "x509.Name", sans: list, server: bool = False) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1)))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        cf = self._write(f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM))
        kf = self._write(f"{stem}-key.pem", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return cf, kf

    def client_ctx(self, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if cert:
            ctx.load_cert_chain(*cert)
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = PKI(tmp_path_factory.mktemp("pki"))
    import ipaddress
    p.server = p.issue("server", _name("localhost"), [x509.DNSName("localhost"),
                                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                       server=True)
    p.alice = p.issue("alice", _name("alice"), [x509.RFC822Name("alice@example.com")])
    p.bob = p.issue("bob", _name("bob", "Acme"), [])
    p.dev = p.issue("dev", _name("device-7"), [x509.DNSName("dev7.example.com")])
    p.nobody = p.issue("nobody", _name("nobody"), [])
    return p


def tls_block(pki, extra: str = "") -> str:
    return (f"tls {{\n cert_file: '{pki.server[0]}'\n key_file: '{pki.server[1]}'\n"
            f" ca_file: '{pki.ca_file}'\n {extra}\n}}\n")


def raw_info(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        buf = b""
        while b"\r\n" not in buf:
            buf += s.recv(4096)
    return json.loads(buf.split(b"\r\n")[0][5:])


def tls_connects(url: str, ctx: ssl.SSLContext, **kw) -> bool | str:
    async def go():
        try:
            nc = await nats.connect(url, tls=ctx, allow_reconnect=False, max_reconnect_attempts=0,
                                    connect_timeout=3, **kw)
        except Exception as e:  # TLS alerts and auth errors both count as refusals
            return f"refused: {type(e).__name__}"
        try:
            # with TLS 1.3 a refused client certificate surfaces only after the handshake
            sub = await nc.subscribe("t")
            await nc.publish("t", b"secure")
            data = (await sub.next_msg(timeout=2)).data
        except Exception as e:
            return f"refused: {type(e).__name__}"
        finally:
            await nc.close()
        return data == b"secure"
    return run_async(go)


def test_server_tls_without_client_certs(pki):
    with EmbeddedServer(config=tls_block(pki), port=-1) as s:
        info = raw_info(s.port)
        assert info["tls_required"] is True and "tls_verify" not in info
        assert tls_connects(f"tls://127.0.0.1:{s.port}", pki.client_ctx()) is True
        # a plain-text client gets nowhere
        assert tls_connects(f"nats://127.0.0.1:{s.port}", None) is not True


def test_verify_requires_client_certificate(pki):
    with EmbeddedServer(config=tls_block(pki, "verify: true"), port=-1) as s:
        info = raw_info(s.port)
        assert info["tls_required"] and info["tls_verify"]
        assert tls_connects(f"tls://127.0.0.1:{s.port}", pki.client_ctx(pki.alice)) is True
        assert tls_connects(f"tls://127.0.0.1:{s.port}", pki.client_ctx()) is not True


def test_verify_and_map_users_from_certificates(pki):
    conf = tls_block(pki, "verify_and_map: true") + """
    authorization { users: [
      {user: "alice@example.com", permissions: {publish: "t", subscribe: "t"}}
      {user: "O=Acme,CN=bob"}
      {user: "dev7.example.com"}
    ] }"""
    with EmbeddedServer(config=conf, port=-1) as s:
        assert raw_info(s.port)["tls_verify"] is True
        url = f"tls://127.0.0.1:{s.port}"
        assert tls_connects(url, pki.client_ctx(pki.alice)) is True  # e-mail SAN
        assert tls_connects(url, pki.client_ctx(pki.bob)) is True  # subject DN, RDN order ignored
        assert tls_connects(url, pki.client_ctx(pki.dev)) is True  # DNS SAN
        assert tls_connects(url, pki.client_ctx(pki.nobody)) is not True  # valid cert, no user

        async def who(cert):
            nc = await nats.connect(url, tls=pki.client_ctx(cert), allow_reconnect=False)
            r = json.loads((await nc.request("$SYS.REQ.USER.INFO", b"", timeout=2)).data)
            await nc.close()
            return r["data"]["user"]
        assert run_async(who, pki.dev) == "dev7.example.com"
        assert run_async(who, pki.bob) == "O=Acme,CN=bob"


def test_handshake_first(pki):
    with EmbeddedServer(config=tls_block(pki, "handshake_first: true"), port=-1) as s:
        assert tls_connects(f"tls://127.0.0.1:{s.port}", pki.client_ctx(),
                            tls_handshake_first=True) is True


def test_allow_non_tls(pki):
    with EmbeddedServer(config=tls_block(pki) + "allow_non_tls: true", port=-1) as s:
        info = raw_info(s.port)
        assert info.get("tls_available") is True and not info.get("tls_required")
        assert tls_connects(f"nats://127.0.0.1:{s.port}", None) is True
        assert tls_connects(f"tls://127.0.0.1:{s.port}", pki.client_ctx()) is True


def test_tls_context_reports_bad_files(tmp_path):
    from edgebus.options import TLSOptions
    from edgebus.security.tlsconf import TLSConfigError, server_context
    with pytest.raises(TLSConfigError):
        server_context(TLSOptions(cert_file=str(tmp_path / "missing.pem"),
                                  key_file=str(tmp_path / "missing-key.pem")))
    with pytest.raises(TLSConfigError):
        server_context(TLSOptions())


def test_cert_identities_order(pki):
    from edgebus.security.tlsconf import cert_identities, dn_equal
    der = x509.load_pem_x509_certificate(open(pki.alice[0], "rb").read()).public_bytes(
        serialization.Encoding.DER)
    assert cert_identities(der) == ["alice@example.com", "CN=alice"]
    bob = x509.load_pem_x509_certificate(open(pki.bob[0], "rb").read()).public_bytes(
        serialization.Encoding.DER)
    assert cert_identities(bob) == ["O=Acme,CN=bob"]
    assert dn_equal("CN=bob,O=Acme", bob) and dn_equal("O=Acme,CN=bob", bob)
    assert not dn_equal("CN=bob", bob)


@pytest.mark.parametrize("extra,tail", [("", ""), ("verify: true", ""), ("verify_and_map: true", ""),
                                        ("", "allow_non_tls: true")])
def test_info_tls_fields_match_real_nats_server(pki, real_nats_server, extra, tail):
    conf = tls_block(pki, extra) + tail
    real = real_nats_server(config=conf)
    with EmbeddedServer(config=conf, port=-1) as s:
        ours = raw_info(s.port)
    theirs = raw_info(real.port)
    for key in ("tls_required", "tls_verify", "tls_available", "auth_required"):
        assert ours.get(key) == theirs.get(key), (key, ours.get(key), theirs.get(key))


def test_tls_from_command_line_flags(pki):
    from edgebus.cliargs import build_options
    opts, _ = build_options(["-p", "-1", "--tlsverify", "--tlscert", pki.server[0],
                             "--tlskey", pki.server[1], "--tlscacert", pki.ca_file])
    with EmbeddedServer(opts) as s:
        info = raw_info(s.port)
        assert info["tls_required"] and info["tls_verify"]
        assert tls_connects(f"tls://127.0.0.1:{s.port}", pki.client_ctx(pki.alice)) is True
        assert tls_connects(f"tls://127.0.0.1:{s.port}", pki.client_ctx()) is not True


def _presented_cn(port: int, ctx: ssl.SSLContext) -> str:
    """The common name of the certificate the server presents (INFO first, then TLS)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        buf = b""
        while b"\r\n" not in buf:
            buf += raw.recv(4096)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            subject = dict(x[0] for x in s.getpeercert()["subject"])
            return subject["commonName"]


def test_reload_rotates_the_server_certificate(pki, tmp_path):
    """Certificate rotation: new files under the same paths, a config reload, and new
    connections get the new certificate while existing ones stay up (as nats-server)."""
    import ipaddress
    import shutil

    from edgebus.conf import load_config
    from edgebus.security.reload import reload_from_file
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert, key = pki.issue("rot-old", _name("localhost old"), sans, server=True)
    new_cert, new_key = pki.issue("rot-new", _name("localhost new"), sans, server=True)
    live_cert, live_key = str(tmp_path / "live.pem"), str(tmp_path / "live-key.pem")
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    path = tmp_path / "server.conf"
    path.write_text(f"port: -1\ntls {{ cert_file: '{live_cert}'\n key_file: '{live_key}' }}\n")
    opts, _ = load_config(str(path))
    with EmbeddedServer(opts) as s:
        ctx = pki.client_ctx()
        assert _presented_cn(s.port, ctx) == "localhost old"

        async def go() -> str:
            nc = await nats.connect(f"tls://127.0.0.1:{s.port}", tls=ctx, allow_reconnect=False)
            sub = await nc.subscribe("t")
            shutil.copy(new_cert, live_cert)
            shutil.copy(new_key, live_key)
            await asyncio.to_thread(s.call, reload_from_file)
            after = await asyncio.to_thread(_presented_cn, s.port, ctx)
            await nc.publish("t", b"still up")
            assert (await sub.next_msg(timeout=2)).data == b"still up"
            await nc.close()
            return after
        assert run_async(go) == "localhost new"
