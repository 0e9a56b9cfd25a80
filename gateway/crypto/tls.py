"""TLS identities: the transport stays standard TLS 1.3 with ECDSA P-256 in both suites.

Owns: self-signed gateway certificates (pinned in the trust bundle), client
certificates for local service systems, key/certificate matching and SHA-256
certificate fingerprints. gRPC's TLS stack has no TLCP (GB/T 38636), so the gm
suite protects the message layer end to end with SM2/SM3/SM4 instead.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.crypto.base import digest_equal
from gateway.errors import InvalidArgument


@dataclass(frozen=True)
class TlsIdentity:
    key_pem: bytes
    cert_pem: bytes


def _key_usage(*, sign: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem_identity(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> TlsIdentity:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return TlsIdentity(key_pem=key_pem, cert_pem=cert.public_bytes(serialization.Encoding.PEM))


def _self_signed(
    key: ec.EllipticCurvePrivateKey, common_name: str, now: _dt.datetime, days: int
) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
    )


def make_tls_identity(
    common_name: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = ("127.0.0.1", "::1"),
    now: _dt.datetime | None = None,
    days: int = 825,
) -> TlsIdentity:
    """Self-signed ECDSA P-256 *leaf* certificate (CA:false, digitalSignature,
    serverAuth + clientAuth): a gateway's peer identity, pinned in the trust
    bundle. It can issue nothing, so pinning it trusts exactly this one key."""
    now = now or _dt.datetime.now(_dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    cert = (
        _self_signed(key, common_name, now, days)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem_identity(key, cert)


def make_ca_identity(
    common_name: str, now: _dt.datetime | None = None, days: int = 3650
) -> TlsIdentity:
    """A local certificate authority (CA:true, path length 0, keyCertSign and
    cRLSign only) that issues service systems' client certificates. Only a
    gateway's service port trusts it; its peer port never does."""
    now = now or _dt.datetime.now(_dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _self_signed(key, common_name, now, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem_identity(key, cert)


def cert_dns_names(cert_pem: bytes) -> list[str]:
    """The DNS subject alternative names of a PEM certificate."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise InvalidArgument("certificate: no DNS names") from exc
    return list(san.get_values_for_type(x509.DNSName))


def cert_not_after(cert_pem: bytes) -> _dt.datetime:
    """The end of a PEM certificate's validity (UTC)."""
    try:
        return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc
    except ValueError as exc:
        raise InvalidArgument("certificate: not valid PEM") from exc


def issue_client_certificate(
    issuer: TlsIdentity,
    common_name: str,
    now: _dt.datetime | None = None,
    days: int = 397,
) -> TlsIdentity:
    """A client certificate (CA:false, digitalSignature, clientAuth) for a local
    service system, signed by the gateway's service-system CA
    (:func:`make_ca_identity`), never by its peer certificate."""
    now = now or _dt.datetime.now(_dt.UTC)
    ca_cert = x509.load_pem_x509_certificate(issuer.cert_pem)
    ca_key = serialization.load_pem_private_key(issuer.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise InvalidArgument("issuer TLS key: expected an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _pem_identity(key, cert)


def tls_key_matches_cert(key_pem: bytes, cert_pem: bytes) -> bool:
    """True if ``key_pem`` is the private key of the certificate ``cert_pem``."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument("TLS key or certificate: not valid PEM") from exc
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return digest_equal(
        key.public_key().public_bytes(enc, fmt), cert.public_key().public_bytes(enc, fmt)
    )


def cert_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 over the certificate's DER encoding, lowercase hex."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise InvalidArgument("TLS certificate: not a PEM X.509 certificate") from exc
    return cert.fingerprint(hashes.SHA256()).hex()
