"""The international suite (``intl``, the default): Ed25519, X25519, SHA-256.

Owns: Ed25519 signing over the PAE with a domain tag; raw Ed25519 for C2SP
signed notes (whose format is its own domain separation); sealing to an X25519
key (ephemeral X25519 + HKDF-SHA256 + ChaCha20-Poly1305, with caller-bound
associated data); SHA-256 and HMAC-SHA256 with a domain tag.

Keys encode as plain base64 of their 32 raw bytes (the format every intl trust
bundle has always used). Failures to verify or open are opaque
``CryptoFailure``. Randomness can be injected (``rng``) so test vectors are
reproducible.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.crypto.base import PAE_PREFIX, HashObject, KeyText, Rng, b64, pae
from gateway.errors import CryptoFailure, InvalidArgument

NAME: Final = "intl"
_TEXT: Final = KeyText(NAME, "", 32)
ED25519_PUBLIC_LEN: Final = 32
ED25519_SIGNATURE_LEN: Final = 64
X25519_KEY_LEN: Final = 32
SEAL_VERSION: Final = b"\x01"
_SEAL_NONCE_LEN: Final = 12
SEAL_OVERHEAD: Final = 1 + X25519_KEY_LEN + _SEAL_NONCE_LEN + 16


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def keyed_hash(key: bytes, domain: str, data: bytes) -> bytes:
    """HMAC-SHA256 over (domain, data) with unambiguous framing."""
    if len(key) < 16:
        raise InvalidArgument.expected("HMAC key length", ">= 16 bytes", len(key))
    return hmac.new(key, pae(domain, data), hashlib.sha256).digest()


def keyed_hashes(key: bytes, domain: str, items: Sequence[bytes]) -> list[bytes]:
    """``keyed_hash(key, domain, item)`` for each item, fast: HMAC-SHA256 (RFC 2104)
    from inner and outer SHA-256 states prepared once (key pads and the PAE head
    hashed once), two state copies per item. The bulk path's pseudonyms."""
    if len(key) < 16:
        raise InvalidArgument.expected("HMAC key length", ">= 16 bytes", len(key))
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\x00")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    t = domain.encode("utf-8")
    inner.update(b" ".join([PAE_PREFIX, str(len(t)).encode(), t, b""]))
    new_inner, new_outer = inner.copy, outer.copy
    out: list[bytes] = []
    add = out.append
    for item in items:
        i = new_inner()
        i.update(b"%d %b" % (len(item), item))
        o = new_outer()
        o.update(i.digest())
        add(o.digest())
    return out


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

    @property
    def suite(self) -> str:
        return NAME

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

    def encode(self) -> str:
        return _TEXT.encode(self.raw)

    def with_user_id(self, user_id: bytes) -> VerifyKey:
        return self  # Ed25519 has no signer id


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

    @property
    def suite(self) -> str:
        return NAME

    def seed(self) -> bytes:
        return bytes(self._key)

    def secret(self) -> bytes:
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

    def with_user_id(self, user_id: bytes) -> SigningKey:
        return self

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

    @property
    def suite(self) -> str:
        return NAME

    def b64(self) -> str:
        return b64(self.raw)

    def encode(self) -> str:
        return _TEXT.encode(self.raw)

    def seal(
        self, domain: str, plaintext: bytes, associated_data: bytes, rng: Rng = os.urandom
    ) -> bytes:
        return seal(self, domain, plaintext, associated_data, rng)


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

    @property
    def suite(self) -> str:
        return NAME

    def raw(self) -> bytes:
        return self._raw

    def secret(self) -> bytes:
        return self._raw

    @property
    def public_key(self) -> SealPublicKey:
        if self._public is None:
            self._public = SealPublicKey(nacl.bindings.crypto_scalarmult_base(self._raw))
        return self._public

    def open(self, domain: str, blob: bytes, associated_data: bytes) -> bytes:
        return open_sealed(self, domain, blob, associated_data)

    def __repr__(self) -> str:
        return "SealPrivateKey(<redacted>)"


def _seal_key(domain: str, shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=eph_pub + recipient_pub,
        info=pae(domain, b""),
    ).derive(shared)


class SealSession:
    """One ephemeral X25519 agreement with a recipient, usable for several seals.

    Each seal derives the domain's key from the agreement (HKDF-SHA256, salt
    ephemeral || recipient public key, info PAE(domain)) and draws a fresh
    random 96-bit nonce, so the output is exactly ``seal``'s format. How many
    seals one session may serve, and for how long, is the caller's policy
    (``gateway.sealing``); ``seal`` uses a session once.
    """

    __slots__ = ("_aeads", "_eph_pub", "_recipient", "_shared")

    def __init__(self, recipient: SealPublicKey, rng: Rng = os.urandom) -> None:
        eph = SealPrivateKey(rng(32))
        self._eph_pub = eph.public_key.raw
        self._recipient = recipient.raw
        self._shared = nacl.bindings.crypto_scalarmult(eph.raw(), recipient.raw)
        self._aeads: dict[str, ChaCha20Poly1305] = {}

    @property
    def session_id(self) -> bytes:
        """What the opener keys its cache by: version || ephemeral public key."""
        return SEAL_VERSION + self._eph_pub

    def _aead(self, domain: str) -> ChaCha20Poly1305:
        aead = self._aeads.get(domain)
        if aead is None:
            key = _seal_key(domain, self._shared, self._eph_pub, self._recipient)
            aead = self._aeads[domain] = ChaCha20Poly1305(key)
        return aead

    def seal(
        self, domain: str, plaintext: bytes, associated_data: bytes, rng: Rng = os.urandom
    ) -> bytes:
        nonce = rng(_SEAL_NONCE_LEN)
        ct = self._aead(domain).encrypt(nonce, plaintext, pae(domain, associated_data))
        return SEAL_VERSION + self._eph_pub + nonce + ct

    def __repr__(self) -> str:
        return "SealSession(<redacted>)"


class OpenSession:
    """The recipient's side of one ``SealSession``: the agreement, done once."""

    __slots__ = ("_aeads", "_eph_pub", "_public", "_shared")

    def __init__(self, private: SealPrivateKey, session_id: bytes) -> None:
        if len(session_id) != 1 + X25519_KEY_LEN or session_id[:1] != SEAL_VERSION:
            raise CryptoFailure()
        self._eph_pub = session_id[1:]
        try:
            shared = nacl.bindings.crypto_scalarmult(private.raw(), self._eph_pub)
        except nacl.exceptions.RuntimeError as exc:  # low-order point
            raise CryptoFailure() from exc
        if shared == bytes(32):
            raise CryptoFailure()
        self._shared = shared
        self._public = private.public_key.raw
        self._aeads: dict[str, ChaCha20Poly1305] = {}

    def open(self, domain: str, blob: bytes, associated_data: bytes) -> bytes:
        """Open a blob of this session; opaque CryptoFailure on any problem."""
        if len(blob) < SEAL_OVERHEAD or not hmac.compare_digest(
            blob[: 1 + X25519_KEY_LEN], SEAL_VERSION + self._eph_pub
        ):
            raise CryptoFailure()
        aead = self._aeads.get(domain)
        if aead is None:
            key = _seal_key(domain, self._shared, self._eph_pub, self._public)
            aead = self._aeads[domain] = ChaCha20Poly1305(key)
        nonce = blob[1 + X25519_KEY_LEN : 1 + X25519_KEY_LEN + _SEAL_NONCE_LEN]
        ct = blob[1 + X25519_KEY_LEN + _SEAL_NONCE_LEN :]
        try:
            return aead.decrypt(nonce, ct, pae(domain, associated_data))
        except InvalidTag as exc:
            raise CryptoFailure() from exc

    def __repr__(self) -> str:
        return "OpenSession(<redacted>)"


def sealed_session_id(blob: bytes) -> bytes:
    """The session a sealed blob belongs to (version || ephemeral public key)."""
    if len(blob) < SEAL_OVERHEAD or blob[:1] != SEAL_VERSION:
        raise CryptoFailure()
    return blob[: 1 + X25519_KEY_LEN]


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
    return SealSession(recipient, rng).seal(domain, plaintext, associated_data, rng)


def open_sealed(private: SealPrivateKey, domain: str, blob: bytes, associated_data: bytes) -> bytes:
    """Open a sealed blob; raises opaque CryptoFailure on any problem."""
    return OpenSession(private, sealed_session_id(blob)).open(domain, blob, associated_data)


# --------------------------------------------------------------------------
# The suite object
# --------------------------------------------------------------------------


class IntlSuite:
    """Ed25519 / X25519 + HKDF-SHA256 + ChaCha20-Poly1305 / SHA-256."""

    name: Final = NAME
    hash_name: Final = "SHA-256"
    seal_version: Final = SEAL_VERSION

    def digest(self, data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def hasher(self, prefix: bytes = b"") -> HashObject:
        return hashlib.sha256(prefix)

    def keyed_hash(self, key: bytes, domain: str, data: bytes) -> bytes:
        return keyed_hash(key, domain, data)

    def keyed_hashes(self, key: bytes, domain: str, items: Sequence[bytes]) -> list[bytes]:
        return keyed_hashes(key, domain, items)

    def generate_signing_key(self, rng: Rng = os.urandom) -> SigningKey:
        return SigningKey.generate(rng)

    def signing_key(self, secret: bytes) -> SigningKey:
        return SigningKey(secret)

    def verify_key(self, raw: bytes) -> VerifyKey:
        return VerifyKey(raw)

    def generate_seal_key(self, rng: Rng = os.urandom) -> SealPrivateKey:
        return SealPrivateKey.generate(rng)

    def seal_private_key(self, secret: bytes) -> SealPrivateKey:
        return SealPrivateKey(secret)

    def seal_public_key(self, raw: bytes) -> SealPublicKey:
        return SealPublicKey(raw)

    def decode_verify_key(self, text: str, what: str) -> VerifyKey:
        return _TEXT.decode(text, what, VerifyKey)

    def decode_seal_public_key(self, text: str, what: str) -> SealPublicKey:
        return _TEXT.decode(text, what, SealPublicKey)

    def decode_secret(self, text: str, what: str) -> bytes:
        return _TEXT.decode_secret(text, what)

    def encode_secret(self, secret: bytes) -> str:
        return _TEXT.encode(secret)


SUITE: Final = IntlSuite()
