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


def make_tls_identity(
    common_name: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = ("127.0.0.1", "::1"),
    now: _dt.datetime | None = None,
    days: int = 825,
) -> TlsIdentity:
    """Self-signed ECDSA P-256 certificate usable as server and client cert.

    Each gateway's certificate is pinned in the federation trust bundle, so no
    shared CA is needed.
    """
    now = now or _dt.datetime.now(_dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return TlsIdentity(key_pem=key_pem, cert_pem=cert.public_bytes(serialization.Encoding.PEM))


def issue_client_certificate(
    issuer: TlsIdentity,
    common_name: str,
    now: _dt.datetime | None = None,
    days: int = 397,
) -> TlsIdentity:
    """A client certificate for a local service system, signed by the gateway's
    own (self-signed, CA:true, path length 0) TLS key. The gateway's service
    port trusts only its own certificate as a client root."""
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
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return TlsIdentity(
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
    )


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
