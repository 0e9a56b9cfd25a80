"""Safe cryptographic recipes. The ONLY module that imports PyNaCl or cryptography.

Owns: Ed25519 signing with a DSSE-style pre-authentication encoding (PAE) and a
domain tag; raw Ed25519 for C2SP signed notes (whose format is its own domain
separation); sealing to an X25519 key (ephemeral X25519 + HKDF-SHA256 +
ChaCha20-Poly1305, with caller-bound associated data); SHA-256, keyed
HMAC-SHA256 with a domain tag; constant-time digest comparison; TLS key and
certificate generation and fingerprints.

Does not own: what is signed or sealed (callers pass exact bytes and a tag from
``gateway.domains``), key storage on disk (``gateway.identity``), or trust
decisions.

Failures to verify or open are opaque ``CryptoFailure``; nothing says which
check failed. Randomness can be injected (``rng``) so test vectors are
reproducible; the clock is injected into certificate generation.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from gateway.errors import CryptoFailure, InvalidArgument

Rng = Callable[[int], bytes]

PAE_PREFIX: Final = b"JGWSIGv1"
ED25519_PUBLIC_LEN: Final = 32
ED25519_SIGNATURE_LEN: Final = 64
X25519_KEY_LEN: Final = 32
SEAL_VERSION: Final = b"\x01"
_SEAL_NONCE_LEN: Final = 12
SEAL_OVERHEAD: Final = 1 + X25519_KEY_LEN + _SEAL_NONCE_LEN + 16


# --------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_equal(a: bytes | str, b: bytes | str) -> bool:
    """Constant-time equality for digests, MACs and tokens."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)


def keyed_hash(key: bytes, domain: str, data: bytes) -> bytes:
    """HMAC-SHA256 over (domain, data) with unambiguous framing."""
    if len(key) < 16:
        raise InvalidArgument.expected("HMAC key length", ">= 16 bytes", len(key))
    return hmac.new(key, pae(domain, data), hashlib.sha256).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str = "base64 value") -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidArgument(f"{what}: not valid base64") from exc


# --------------------------------------------------------------------------
# Pre-authentication encoding
# --------------------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE-style PAE: PREFIX SP len(type) SP type SP len(body) SP body.

    Lengths are ASCII decimal; the encoding is injective, so no two
    (type, payload) pairs encode to the same bytes.
    """
    t = payload_type.encode("utf-8")
    return b" ".join([PAE_PREFIX, str(len(t)).encode(), t, str(len(payload)).encode(), payload])


# --------------------------------------------------------------------------
# Ed25519 signatures
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyKey:
    """An Ed25519 public key."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != ED25519_PUBLIC_LEN:
            raise InvalidArgument.expected("Ed25519 public key length", 32, len(self.raw))

    def verify(self, domain: str, payload: bytes, signature: bytes) -> None:
        """Verify a PAE signature; raises opaque CryptoFailure."""
        self.verify_raw(pae(domain, payload), signature)

    def verify_raw(self, message: bytes, signature: bytes) -> None:
        """Verify Ed25519 over exact bytes (C2SP signed notes only)."""
        if len(signature) != ED25519_SIGNATURE_LEN:
            raise CryptoFailure()
        try:
            nacl.signing.VerifyKey(self.raw).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
            raise CryptoFailure() from exc

    def b64(self) -> str:
        return b64(self.raw)


class SigningKey:
    """An Ed25519 private key. Never printed, never logged."""

    __slots__ = ("_key",)

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise InvalidArgument.expected("Ed25519 seed length", 32, len(seed))
        self._key = nacl.signing.SigningKey(seed)

    @classmethod
    def generate(cls, rng: Rng = os.urandom) -> SigningKey:
        return cls(rng(32))

    def seed(self) -> bytes:
        return bytes(self._key)

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(bytes(self._key.verify_key))

    def sign(self, domain: str, payload: bytes) -> bytes:
        """Sign PAE(domain, payload): the exact bytes the verifier will see."""
        return self.sign_raw(pae(domain, payload))

    def sign_raw(self, message: bytes) -> bytes:
        """Ed25519 over exact bytes. Only for formats that carry their own
        domain separation (C2SP signed notes and cosignatures)."""
        return bytes(self._key.sign(message).signature)

    def __repr__(self) -> str:
        return "SigningKey(<redacted>)"


# --------------------------------------------------------------------------
# Sealing to an X25519 key
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SealPublicKey:
    """An X25519 public key that payloads are sealed to."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != X25519_KEY_LEN:
            raise InvalidArgument.expected("X25519 public key length", 32, len(self.raw))

    def b64(self) -> str:
        return b64(self.raw)


class SealPrivateKey:
    """An X25519 private key. Never printed, never logged."""

    __slots__ = ("_public", "_raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != X25519_KEY_LEN:
            raise InvalidArgument.expected("X25519 private key length", 32, len(raw))
        self._raw = raw
        self._public: SealPublicKey | None = None

    @classmethod
    def generate(cls, rng: Rng = os.urandom) -> SealPrivateKey:
        return cls(rng(32))

    def raw(self) -> bytes:
        return self._raw

    @property
    def public_key(self) -> SealPublicKey:
        if self._public is None:
            self._public = SealPublicKey(nacl.bindings.crypto_scalarmult_base(self._raw))
        return self._public

    def __repr__(self) -> str:
        return "SealPrivateKey(<redacted>)"


def _seal_key(domain: str, shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=eph_pub + recipient_pub,
        info=pae(domain, b""),
    ).derive(shared)


def seal(
    recipient: SealPublicKey,
    domain: str,
    plaintext: bytes,
    associated_data: bytes,
    rng: Rng = os.urandom,
) -> bytes:
    """Encrypt to ``recipient`` with a fresh ephemeral key.

    Output: version(1) || ephemeral public key(32) || nonce(12) || ciphertext+tag.
    ``associated_data`` (e.g. sender, recipient, request id) is authenticated
    but not encrypted; the opener must present the same bytes.
    """
    eph = SealPrivateKey(rng(32))
    eph_pub = eph.public_key.raw
    shared = nacl.bindings.crypto_scalarmult(eph.raw(), recipient.raw)
    key = _seal_key(domain, shared, eph_pub, recipient.raw)
    nonce = rng(_SEAL_NONCE_LEN)
    ct = ChaCha20Poly1305(key).encrypt(nonce, plaintext, pae(domain, associated_data))
    return SEAL_VERSION + eph_pub + nonce + ct


def open_sealed(private: SealPrivateKey, domain: str, blob: bytes, associated_data: bytes) -> bytes:
    """Open a sealed blob; raises opaque CryptoFailure on any problem."""
    if len(blob) < SEAL_OVERHEAD or blob[:1] != SEAL_VERSION:
        raise CryptoFailure()
    eph_pub = blob[1 : 1 + X25519_KEY_LEN]
    nonce = blob[1 + X25519_KEY_LEN : 1 + X25519_KEY_LEN + _SEAL_NONCE_LEN]
    ct = blob[1 + X25519_KEY_LEN + _SEAL_NONCE_LEN :]
    try:
        shared = nacl.bindings.crypto_scalarmult(private.raw(), eph_pub)
    except nacl.exceptions.RuntimeError as exc:  # low-order point
        raise CryptoFailure() from exc
    if shared == bytes(32):
        raise CryptoFailure()
    key = _seal_key(domain, shared, eph_pub, private.public_key.raw)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ct, pae(domain, associated_data))
    except InvalidTag as exc:
        raise CryptoFailure() from exc


# --------------------------------------------------------------------------
# TLS identities
# --------------------------------------------------------------------------


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
