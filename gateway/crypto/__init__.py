"""Safe cryptographic recipes: the ONLY package that imports crypto libraries.

One module per cipher suite behind the ``Suite`` Protocol (``base``):
``intl`` (Ed25519, X25519 + HKDF-SHA256 + ChaCha20-Poly1305, SHA-256; the
default) and ``gm`` (SM2 with SM3, SM2 encryption + SM4-GCM, SM3, HMAC-SM3);
``tls`` makes the standard TLS 1.3 identities both suites use for transport.

A federation picks its suite once (the trust bundle names it); every key
carries its suite, so ``key.sign``/``key.verify``/``seal``/``open_sealed`` are
suite-neutral and callers never branch on the suite. Failures to verify or
open are opaque ``CryptoFailure``; a key or message of the other suite is a
``SuiteMismatch`` that says so.

Does not own: what is signed or sealed (callers pass exact bytes and a tag from
``gateway.domains``), key storage on disk (``gateway.identity``), or trust
decisions.
"""

from __future__ import annotations

import os
from typing import Final, Protocol

from gateway.crypto import gm, intl
from gateway.crypto.base import (
    PAE_PREFIX,
    SUITE_NAMES,
    AnySealPrivateKey,
    AnySealPublicKey,
    AnySigningKey,
    AnyVerifyKey,
    HashObject,
    Rng,
    Suite,
    b64,
    check_suite_name,
    digest_equal,
    pae,
    require_suite,
    suite_of_text,
    unb64,
)
from gateway.crypto.intl import (
    ED25519_PUBLIC_LEN,
    ED25519_SIGNATURE_LEN,
    SEAL_OVERHEAD,
    SEAL_VERSION,
    X25519_KEY_LEN,
    SealPrivateKey,
    SealPublicKey,
    SigningKey,
    VerifyKey,
    keyed_hash,
    sha256,
    sha256_hex,
)
from gateway.crypto.tls import (
    TlsIdentity,
    cert_dns_names,
    cert_fingerprint,
    cert_not_after,
    issue_client_certificate,
    make_ca_identity,
    make_tls_identity,
    tls_key_matches_cert,
)
from gateway.errors import CryptoFailure

INTL: Final[Suite] = intl.SUITE
GM: Final[Suite] = gm.SUITE
DEFAULT_SUITE: Final = "intl"
_SUITES: Final[dict[str, Suite]] = {"intl": INTL, "gm": GM}
_BY_SEAL_VERSION: Final = {s.seal_version: s.name for s in _SUITES.values()}


def suite(name: str) -> Suite:
    """The suite called ``name`` (``intl`` or ``gm``); InvalidArgument otherwise."""
    return _SUITES[check_suite_name(name)]


def suite_of(key: AnyVerifyKey | AnySigningKey | AnySealPublicKey | AnySealPrivateKey) -> Suite:
    return _SUITES[key.suite]


def _der_shaped(signature: bytes) -> bool:
    """A DER SEQUENCE of exactly two short INTEGERs (an SM2 signature's shape)."""
    if len(signature) < 8 or signature[0] != 0x30 or signature[1] != len(signature) - 2:
        return False
    at = 2
    for _ in range(2):
        if at + 2 > len(signature) or signature[at] != 0x02:
            return False
        at += 2 + signature[at + 1]
    return at == len(signature)


def require_signature_suite(key: AnyVerifyKey, signature: bytes, what: str) -> None:
    """Refuse a signature whose *format* is the other suite's (a 64-byte raw
    Ed25519 signature for an SM2 key, a DER SM2 signature for an Ed25519 key)
    with a SuiteMismatch, before any verification. Says nothing about keys:
    the verification that follows stays opaque."""
    der = _der_shaped(signature)
    if der and len(signature) == ED25519_SIGNATURE_LEN:
        return  # both shapes (a random Ed25519 signature can parse as DER): no verdict
    if der:
        shaped = "gm"
    elif len(signature) == ED25519_SIGNATURE_LEN:
        shaped = "intl"
    else:
        return
    require_suite(what, shaped, key.suite)


def seal(
    recipient: AnySealPublicKey,
    domain: str,
    plaintext: bytes,
    associated_data: bytes,
    rng: Rng = os.urandom,
) -> bytes:
    """Encrypt to ``recipient`` with its suite's construction; ``associated_data``
    (e.g. sender, recipient, request id) is authenticated, not encrypted."""
    return recipient.seal(domain, plaintext, associated_data, rng)


class SealSessionLike(Protocol):
    """What ``gateway.sealing`` seals with: one agreement for several payloads."""

    def seal(
        self, domain: str, plaintext: bytes, associated_data: bytes, rng: Rng = os.urandom
    ) -> bytes: ...


class _OneShot:
    """A suite without reusable agreements (gm: SM2 encryption) seals each payload afresh."""

    def __init__(self, recipient: AnySealPublicKey) -> None:
        self._recipient = recipient

    def seal(
        self, domain: str, plaintext: bytes, associated_data: bytes, rng: Rng = os.urandom
    ) -> bytes:
        return bytes(self._recipient.seal(domain, plaintext, associated_data, rng))


def seal_session(recipient: AnySealPublicKey, rng: Rng = os.urandom) -> SealSessionLike:
    """A new agreement with ``recipient`` for several seals, where its suite has one
    (intl: an ephemeral X25519 agreement); else each seal is a one-off."""
    if isinstance(recipient, intl.SealPublicKey):
        return intl.SealSession(recipient, rng)
    return _OneShot(recipient)


def sealed_session_id(blob: bytes) -> bytes | None:
    """The agreement a sealed blob names (intl: version || ephemeral key), or None."""
    if blob[:1] == intl.SEAL_VERSION:
        return intl.sealed_session_id(blob)
    return None


def open_session(private: AnySealPrivateKey, session_id: bytes) -> intl.OpenSession:
    """The agreement ``session_id`` names, computed with ``private`` (intl keys only);
    CryptoFailure for an invalid id or a key of the other suite."""
    if not isinstance(private, intl.SealPrivateKey):
        raise CryptoFailure()
    return intl.OpenSession(private, session_id)


def open_sealed(
    private: AnySealPrivateKey, domain: str, blob: bytes, associated_data: bytes
) -> bytes:
    """Open a sealed blob. A blob sealed by the other suite is a SuiteMismatch;
    any other problem is an opaque CryptoFailure."""
    sealed_by = _BY_SEAL_VERSION.get(blob[:1])
    if sealed_by is None:
        raise CryptoFailure()
    require_suite("sealed payload", sealed_by, private.suite)
    return private.open(domain, blob, associated_data)


__all__ = [
    "DEFAULT_SUITE",
    "ED25519_PUBLIC_LEN",
    "ED25519_SIGNATURE_LEN",
    "GM",
    "INTL",
    "PAE_PREFIX",
    "SEAL_OVERHEAD",
    "SEAL_VERSION",
    "SUITE_NAMES",
    "X25519_KEY_LEN",
    "AnySealPrivateKey",
    "AnySealPublicKey",
    "AnySigningKey",
    "AnyVerifyKey",
    "HashObject",
    "Rng",
    "SealPrivateKey",
    "SealPublicKey",
    "SigningKey",
    "Suite",
    "TlsIdentity",
    "VerifyKey",
    "b64",
    "cert_dns_names",
    "cert_fingerprint",
    "cert_not_after",
    "check_suite_name",
    "digest_equal",
    "issue_client_certificate",
    "keyed_hash",
    "make_ca_identity",
    "make_tls_identity",
    "open_sealed",
    "open_session",
    "pae",
    "require_signature_suite",
    "require_suite",
    "seal",
    "seal_session",
    "sealed_session_id",
    "sha256",
    "sha256_hex",
    "suite",
    "suite_of",
    "suite_of_text",
    "tls_key_matches_cert",
    "unb64",
]
