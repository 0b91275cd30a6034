"""TLS for the client listener: an `ssl.SSLContext` from `TLSOptions`, and certificate identities.

`server_context` mirrors nats-server's `tls {}` block: server certificate and key, optional CA for
client certificates, `verify` (client certificate required) and `verify_and_map` (required, and
the certificate names the user). `cert_identities` lists the names a client certificate offers in
the order nats-server tries them for `verify_and_map` (`checkClientTLSCertSubject`): e-mail SANs,
DNS SANs, URI SANs, then the subject DN as an RFC 2253 string; `dn_equal` compares a configured
user name, read as a DN, with the certificate subject ignoring RDN order.
"""

from __future__ import annotations

import ssl
from typing import Any

from ..options import TLSOptions


class TLSConfigError(ValueError):
    """The tls{} block cannot be turned into a working context."""


def server_context(tls: TLSOptions) -> ssl.SSLContext:
    """Build the server-side context; raises TLSConfigError with a readable reason."""
    if not tls.cert_file or not tls.key_file:
        raise TLSConfigError("missing 'cert_file' or 'key_file' in TLS configuration")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # nats-server's minimum is TLS 1.2
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as e:
        raise TLSConfigError(f"error parsing X509 certificate/key pair: {e}") from e
    verify = tls.verify or tls.verify_and_map
    if tls.ca_file:
        # The CA verifies client certificates, so it joins the context's store only when
        # they are asked for: OpenSSL completes a server chain from that store when cert_file
        # holds no chain of its own, and nats-server sends cert_file's certificates only (a
        # client that does not trust the CA must see "unable to get local issuer certificate",
        # not a self-signed certificate in the chain). With `verify` the store needs the CA,
        # and Python's ssl cannot turn the completion off (SSL_MODE_NO_AUTO_CHAIN).
        try:
            (ctx if verify else ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)).load_verify_locations(
                cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise TLSConfigError(f"failed to parse root ca certificate: {e}") from e
    elif verify:
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    if tls.insecure:  # skip verification of client certs (testing only, as nats-server)
        ctx.verify_mode = ssl.CERT_OPTIONAL if verify else ssl.CERT_NONE
    return ctx


def _load(der: bytes) -> Any:
    from cryptography import x509
    return x509.load_der_x509_certificate(der)


def subject_dn(der: bytes) -> str:
    """The certificate subject as RFC 2253 text (last RDN first), e.g. `CN=app,O=Acme`."""
    return _load(der).subject.rfc4514_string()


def cert_identities(der: bytes | None) -> list[str]:
    """Candidate user names for verify_and_map, in the order nats-server tries them."""
    if not der:
        return []
    from cryptography import x509
    cert = _load(der)
    out: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        out += san.get_values_for_type(x509.RFC822Name)
        out += san.get_values_for_type(x509.DNSName)
        out += san.get_values_for_type(x509.UniformResourceIdentifier)
    dn = cert.subject.rfc4514_string()
    if dn:
        out.append(dn)
    return out


def _rdn_set(name: Any) -> set[tuple[str, str]]:
    return {(a.oid.dotted_string, str(a.value)) for a in name}


def dn_equal(user: str, der: bytes | None) -> bool:
    """Is `user`, parsed as a DN, the certificate subject (same attributes, any RDN order)?"""
    if not der or "=" not in user:
        return False
    from cryptography import x509
    try:
        want = x509.Name.from_rfc4514_string(user)
    except ValueError:
        return False
    return _rdn_set(want) == _rdn_set(_load(der).subject)
