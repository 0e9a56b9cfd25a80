"""The national suite (``gm``, 国密): SM2 with SM3, SM4-GCM, SM3, HMAC-SM3.

Owns, over GmSSL 3 (the ``gmssl-pyx`` binding, statically linked) for SM2, SM3
and HMAC-SM3, and OpenSSL (through pyca/cryptography) for SM4-GCM and
incremental SM3 (GmSSL's binding refuses empty GCM plaintexts and is half as
fast on large ones):

- signatures: SM2 (GB/T 32918.2) with SM3 over PAE(domain, payload), with the
  standard's Z value ``Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)``
  and the default user id ``1234567812345678`` (GB/T 35276) unless a key is
  given another; the signature is the DER ``SEQUENCE { r, s }`` of GB/T 35276;
- sealing (a digital envelope in the manner of GB/T 35275): a fresh 32-byte
  secret is SM2-encrypted (GB/T 32918.4, C1C3C2, DER) to the recipient; the
  SM4 key is HMAC-SM3(secret, PAE(domain, capsule || recipient key)); the
  payload is SM4-GCM (GB/T 32907, 12-byte nonce, 16-byte tag) with PAE(domain,
  associated data) as its associated data, so sender, recipient and request id
  stay bound exactly as in the intl suite;
- SM3 digests (GB/T 32905), HMAC-SM3 keyed hashes with a domain tag.

Keys encode as ``sm2:`` + base64 of the uncompressed point ``04 || x || y``;
private key files hold ``sm2:`` + base64(d || 04 || x || y) (GmSSL derives no
public key from ``d``, so the file keeps both and loading checks they match).
GmSSL draws its own randomness for SM2 keys and signatures; ``rng`` feeds only
the seal secret and nonce. Failures to verify or open are opaque
``CryptoFailure``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import ClassVar, Final, Self

import gmssl_pyx as _g
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.crypto.base import (
    GM_KEY_PREFIX,
    HashObject,
    KeyText,
    Rng,
    b64,
    pae,
)
from gateway.errors import CryptoFailure, InvalidArgument

NAME: Final = "gm"
DEFAULT_USER_ID: Final = b"1234567812345678"
SM2_PUBLIC_LEN: Final = 65  # 04 || x || y
SM2_PRIVATE_LEN: Final = 32
_TEXT: Final = KeyText(NAME, GM_KEY_PREFIX, SM2_PRIVATE_LEN + SM2_PUBLIC_LEN)
SM2_MAX_SIGNATURE_LEN: Final = 72  # DER SEQUENCE of two INTEGERs of <= 33 bytes
SEAL_VERSION: Final = b"\x02"
_SEAL_SECRET_LEN: Final = 32
_SEAL_NONCE_LEN: Final = 12
_SEAL_TAG_LEN: Final = 16
_SEAL_KEY_DOMAIN: Final = "cn.dataexchange.gateway.v1.gm.seal-key"
_PROBE: Final = b"cn.dataexchange.gateway.v1.gm.key-pair-probe"

# Recommended curve parameters (GB/T 32918.5), as they enter the Z value.
_A: Final = bytes.fromhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
_B: Final = bytes.fromhex("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
_GX: Final = bytes.fromhex("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7")
_GY: Final = bytes.fromhex("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")
_N: Final = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)


sm3: Final[Callable[[bytes], bytes]] = _g.sm3_hash  # GmSSL, called directly: hot path


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    return bytes(_g.sm3_hmac(key, data))


def keyed_hash(key: bytes, domain: str, data: bytes) -> bytes:
    """HMAC-SM3 over (domain, data) with unambiguous framing."""
    if len(key) < 16:
        raise InvalidArgument.expected("HMAC key length", ">= 16 bytes", len(key))
    return hmac_sm3(key, pae(domain, data))


def sm2_encrypt(public: bytes, plaintext: bytes) -> bytes:
    """GB/T 32918.4 SM2 encryption to an uncompressed public key; DER C1C3C2
    (GB/T 35276). At most 255 bytes: only ever a key."""
    return bytes(_g.sm2_encrypt(public[1:], plaintext))


def sm2_decrypt(private: bytes, ciphertext: bytes) -> bytes:
    try:
        return bytes(_g.sm2_decrypt(private, ciphertext))
    except _g.GmsslInnerError as exc:
        raise CryptoFailure() from exc


def sm4_gcm_encrypt(key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """SM4-GCM (OpenSSL's, through pyca/cryptography); returns ciphertext || 16-byte tag."""
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    ct = enc.update(plaintext) + enc.finalize()
    return ct + enc.tag


def sm4_gcm_decrypt(key: bytes, nonce: bytes, aad: bytes, sealed: bytes) -> bytes:
    if len(sealed) < _SEAL_TAG_LEN:
        raise CryptoFailure()
    mode = modes.GCM(nonce, sealed[-_SEAL_TAG_LEN:])
    dec = Cipher(algorithms.SM4(key), mode).decryptor()
    dec.authenticate_additional_data(aad)
    try:
        return dec.update(sealed[:-_SEAL_TAG_LEN]) + dec.finalize()
    except InvalidTag as exc:
        raise CryptoFailure() from exc


def z_value(public: bytes, user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """GB/T 32918.2 Z_A for an uncompressed public key and a user id."""
    if len(user_id) >= 8192:
        raise InvalidArgument.expected("SM2 user id length", "< 8192 bytes", len(user_id))
    entl = (len(user_id) * 8).to_bytes(2, "big")
    return sm3(entl + user_id + _A + _B + _GX + _GY + public[1:])


def _check_point(raw: bytes, what: str) -> None:
    if len(raw) != SM2_PUBLIC_LEN or raw[0] != 4:
        raise InvalidArgument.expected(f"{what} length", "65 bytes (04 || x || y)", len(raw))
    try:
        _g.normalize_sm2_public_key(raw)  # refuses points off the curve
    except _g.InvalidValueError as exc:
        raise InvalidArgument(f"{what}: not a point on the SM2 curve") from exc


class _Sm3Hash:
    """Incremental SM3 (OpenSSL's, through pyca/cryptography) as a hashlib-like object."""

    __slots__ = ("_h",)

    def __init__(self, h: hashes.Hash) -> None:
        self._h = h

    def update(self, data: bytes, /) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.copy().finalize()

    def copy(self) -> _Sm3Hash:
        return _Sm3Hash(self._h.copy())


# --------------------------------------------------------------------------
# SM2 signatures
# --------------------------------------------------------------------------


class Sm2VerifyKey:
    """An SM2 public key with the user id its Z value is computed from."""

    __slots__ = ("_raw", "_user_id", "_z")

    def __init__(self, raw: bytes, user_id: bytes = DEFAULT_USER_ID) -> None:
        _check_point(raw, "SM2 public key")
        self._raw = bytes(raw)
        self._user_id = bytes(user_id)
        self._z = z_value(self._raw, self._user_id)

    @property
    def suite(self) -> str:
        return NAME

    @property
    def raw(self) -> bytes:
        return self._raw

    @property
    def user_id(self) -> bytes:
        return self._user_id

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Sm2VerifyKey)
            and other._raw == self._raw
            and other._user_id == self._user_id
        )

    def __hash__(self) -> int:
        return hash((self._raw, self._user_id))

    def __repr__(self) -> str:
        return f"Sm2VerifyKey({self.encode()!r})"

    def verify(self, domain: str, payload: bytes, signature: bytes) -> None:
        self.verify_raw(pae(domain, payload), signature)

    def verify_raw(self, message: bytes, signature: bytes) -> None:
        if not 8 <= len(signature) <= SM2_MAX_SIGNATURE_LEN or signature[0] != 0x30:
            raise CryptoFailure()
        e = sm3(self._z + message)
        try:
            ok = _g.sm2_verify_sm3_digest(self._raw[1:], e, signature)
        except _g.GmsslInnerError as exc:
            raise CryptoFailure() from exc
        if not ok:
            raise CryptoFailure()

    def b64(self) -> str:
        return b64(self._raw)

    def encode(self) -> str:
        return _TEXT.encode(self._raw)

    def with_user_id(self, user_id: bytes) -> Sm2VerifyKey:
        return Sm2VerifyKey(self._raw, user_id)


def _check_private(d: bytes, what: str) -> None:
    if len(d) != SM2_PRIVATE_LEN or not 1 <= int.from_bytes(d, "big") <= _N - 2:
        raise InvalidArgument(f"{what}: not an SM2 private key")


def _generate() -> tuple[bytes, bytes]:
    """A fresh SM2 key pair from GmSSL: (d, 04 || x || y)."""
    public, private = _g.sm2_key_generate()
    return bytes(private), b"\x04" + bytes(public)


def _split_secret(secret: bytes, what: str) -> tuple[bytes, bytes]:
    """A key file's d || 04 || x || y as (d, public point)."""
    if len(secret) != SM2_PRIVATE_LEN + SM2_PUBLIC_LEN:
        raise InvalidArgument.expected(
            f"{what}: length", SM2_PRIVATE_LEN + SM2_PUBLIC_LEN, len(secret)
        )
    return secret[:SM2_PRIVATE_LEN], secret[SM2_PRIVATE_LEN:]


class _Sm2PrivateKey:
    """What both SM2 private keys share: the scalar ``d`` kept with its public
    point (GmSSL derives no point from ``d``), loaded from ``d || 04 || x || y``
    only when the two halves are checked to belong together."""

    __slots__ = ("_d",)
    _WHAT: ClassVar[str]

    def __init__(self, d: bytes, public: bytes) -> None:
        """Checks ``d``; the subclass keeps ``public`` as its public key type."""
        _check_private(d, self._WHAT)
        self._d = bytes(d)

    @classmethod
    def from_secret(cls, secret: bytes, what: str = "") -> Self:
        what = what or cls._WHAT
        key = cls(*_split_secret(secret, what))
        if not key._halves_match():
            raise InvalidArgument(f"{what}: public half does not match the private key")
        return key

    def _halves_match(self) -> bool:
        raise NotImplementedError

    def _public_raw(self) -> bytes:
        raise NotImplementedError

    @property
    def suite(self) -> str:
        return NAME

    def secret(self) -> bytes:
        return self._d + self._public_raw()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"


class Sm2SigningKey(_Sm2PrivateKey):
    """An SM2 private key. Never printed, never logged."""

    __slots__ = ("_public",)
    _WHAT = "SM2 signing key"

    def __init__(self, d: bytes, public: bytes, user_id: bytes = DEFAULT_USER_ID) -> None:
        super().__init__(d, public)
        self._public = Sm2VerifyKey(public, user_id)

    @classmethod
    def generate(cls, user_id: bytes = DEFAULT_USER_ID) -> Sm2SigningKey:
        return cls(*_generate(), user_id)

    def _halves_match(self) -> bool:
        try:
            self._public.verify_raw(_PROBE, self.sign_raw(_PROBE))
        except CryptoFailure:
            return False
        return True

    def _public_raw(self) -> bytes:
        return self._public.raw

    @property
    def verify_key(self) -> Sm2VerifyKey:
        return self._public

    def sign(self, domain: str, payload: bytes) -> bytes:
        return self.sign_raw(pae(domain, payload))

    def sign_raw(self, message: bytes) -> bytes:
        e = sm3(self._public._z + message)
        return bytes(_g.sm2_sign_sm3_digest(self._d, e))

    def with_user_id(self, user_id: bytes) -> Sm2SigningKey:
        return Sm2SigningKey(self._d, self._public.raw, user_id)


# --------------------------------------------------------------------------
# Sealing: SM2 encryption of a secret + SM4-GCM
# --------------------------------------------------------------------------


class Sm2SealPublicKey:
    """An SM2 public key that payloads are sealed to."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        _check_point(raw, "SM2 seal public key")
        self._raw = bytes(raw)

    @property
    def suite(self) -> str:
        return NAME

    @property
    def raw(self) -> bytes:
        return self._raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sm2SealPublicKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"Sm2SealPublicKey({self.encode()!r})"

    def b64(self) -> str:
        return b64(self._raw)

    def encode(self) -> str:
        return _TEXT.encode(self._raw)

    def seal(
        self, domain: str, plaintext: bytes, associated_data: bytes, rng: Rng = os.urandom
    ) -> bytes:
        """Output: 0x02 || len(capsule) (2, big-endian) || capsule || nonce(12) || ct || tag(16)."""
        secret = rng(_SEAL_SECRET_LEN)
        capsule = sm2_encrypt(self._raw, secret)
        key = _seal_key(domain, secret, capsule, self._raw)
        nonce = rng(_SEAL_NONCE_LEN)
        sealed = sm4_gcm_encrypt(key, nonce, pae(domain, associated_data), plaintext)
        return SEAL_VERSION + len(capsule).to_bytes(2, "big") + capsule + nonce + sealed


def _seal_key(domain: str, secret: bytes, capsule: bytes, recipient: bytes) -> bytes:
    return hmac_sm3(secret, pae(_SEAL_KEY_DOMAIN, pae(domain, capsule + recipient)))[:16]


class Sm2SealPrivateKey(_Sm2PrivateKey):
    """An SM2 decryption key. Never printed, never logged."""

    __slots__ = ("_public",)
    _WHAT = "SM2 seal key"

    def __init__(self, d: bytes, public: bytes) -> None:
        super().__init__(d, public)
        self._public = Sm2SealPublicKey(public)

    @classmethod
    def generate(cls) -> Sm2SealPrivateKey:
        return cls(*_generate())

    def _halves_match(self) -> bool:
        domain = _PROBE.decode()
        try:
            return self.open(domain, self._public.seal(domain, _PROBE, b""), b"") == _PROBE
        except CryptoFailure:
            return False

    def _public_raw(self) -> bytes:
        return self._public.raw

    @property
    def public_key(self) -> Sm2SealPublicKey:
        return self._public

    def open(self, domain: str, blob: bytes, associated_data: bytes) -> bytes:
        """Open a sealed blob; raises opaque CryptoFailure on any problem."""
        if len(blob) < 3 or blob[:1] != SEAL_VERSION:
            raise CryptoFailure()
        n = int.from_bytes(blob[1:3], "big")
        rest = blob[3 + n :]
        if len(rest) < _SEAL_NONCE_LEN + _SEAL_TAG_LEN:
            raise CryptoFailure()
        capsule = blob[3 : 3 + n]
        secret = sm2_decrypt(self._d, capsule)
        if len(secret) != _SEAL_SECRET_LEN:
            raise CryptoFailure()
        key = _seal_key(domain, secret, capsule, self._public.raw)
        nonce, sealed = rest[:_SEAL_NONCE_LEN], rest[_SEAL_NONCE_LEN:]
        return sm4_gcm_decrypt(key, nonce, pae(domain, associated_data), sealed)


# --------------------------------------------------------------------------
# The suite object
# --------------------------------------------------------------------------


class GmSuite:
    """SM2-with-SM3 / SM2 encryption + SM4-GCM / SM3 / HMAC-SM3."""

    name: Final = NAME
    hash_name: Final = "SM3"
    seal_version: Final = SEAL_VERSION

    digest: Final = staticmethod(sm3)  # the ledger's hot path: no wrapper call

    def hasher(self, prefix: bytes = b"") -> HashObject:
        h = hashes.Hash(hashes.SM3())
        h.update(prefix)
        return _Sm3Hash(h)

    def keyed_hash(self, key: bytes, domain: str, data: bytes) -> bytes:
        return keyed_hash(key, domain, data)

    def keyed_hashes(self, key: bytes, domain: str, items: Sequence[bytes]) -> list[bytes]:
        return [keyed_hash(key, domain, item) for item in items]

    def generate_signing_key(self, rng: Rng = os.urandom) -> Sm2SigningKey:
        return Sm2SigningKey.generate()

    def signing_key(self, secret: bytes) -> Sm2SigningKey:
        return Sm2SigningKey.from_secret(secret)

    def verify_key(self, raw: bytes) -> Sm2VerifyKey:
        return Sm2VerifyKey(raw)

    def generate_seal_key(self, rng: Rng = os.urandom) -> Sm2SealPrivateKey:
        return Sm2SealPrivateKey.generate()

    def seal_private_key(self, secret: bytes) -> Sm2SealPrivateKey:
        return Sm2SealPrivateKey.from_secret(secret)

    def seal_public_key(self, raw: bytes) -> Sm2SealPublicKey:
        return Sm2SealPublicKey(raw)

    def decode_verify_key(self, text: str, what: str) -> Sm2VerifyKey:
        return _TEXT.decode(text, what, Sm2VerifyKey)

    def decode_seal_public_key(self, text: str, what: str) -> Sm2SealPublicKey:
        return _TEXT.decode(text, what, Sm2SealPublicKey)

    def decode_secret(self, text: str, what: str) -> bytes:
        return _TEXT.decode_secret(text, what)

    def encode_secret(self, secret: bytes) -> str:
        return _TEXT.encode(secret)


SUITE: Final = GmSuite()
