"""What every cipher suite shares: the suite Protocol, key Protocols, encodings.

Owns: the ``Suite`` Protocol (the primitives a suite provides), the key
Protocols callers type against (``AnyVerifyKey``, ``AnySigningKey``,
``AnySealPublicKey``, ``AnySealPrivateKey``), the DSSE-style pre-authentication
encoding both suites sign and seal over, base64 helpers, constant-time
comparison, and the suite-mismatch check.

Does not own: any primitive (``gateway.crypto.intl``, ``gateway.crypto.gm``).
This module imports no crypto library.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Sequence
from typing import Final, Protocol, TypeVar

from gateway.errors import InvalidArgument, SuiteMismatch

Rng = Callable[[int], bytes]

PAE_PREFIX: Final = b"JGWSIGv1"
SUITE_NAMES: Final = ("intl", "gm")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE-style PAE: PREFIX SP len(type) SP type SP len(body) SP body.

    Lengths are ASCII decimal; the encoding is injective, so no two
    (type, payload) pairs encode to the same bytes.
    """
    t = payload_type.encode("utf-8")
    return b" ".join([PAE_PREFIX, str(len(t)).encode(), t, str(len(payload)).encode(), payload])


def digest_equal(a: bytes | str, b: bytes | str) -> bool:
    """Constant-time equality for digests, MACs and tokens."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str = "base64 value") -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidArgument(f"{what}: not valid base64") from exc


def check_suite_name(name: object) -> str:
    if name not in SUITE_NAMES:
        raise InvalidArgument.expected("cipher suite", " or ".join(SUITE_NAMES), name)
    return str(name)


GM_KEY_PREFIX: Final = "sm2:"


def suite_of_text(text: str) -> str:
    """Which suite a key's text form belongs to: gm keys say ``sm2:``, intl keys
    are plain base64 (as every intl bundle has always written them)."""
    return "gm" if text.startswith(GM_KEY_PREFIX) else "intl"


def require_suite(what: str, actual: str, expected: str) -> None:
    """Refuse a key or message of the other suite, saying which is which."""
    if actual != expected:
        raise SuiteMismatch(
            f"{what}: is a suite {actual} key or message, but this federation uses "
            f"suite {expected}; every member key and message must be of the federation's suite"
        )


K = TypeVar("K")


class KeyText:
    """One suite's key text form: a prefix (``sm2:`` for gm, none for intl), then
    base64. Decoding checks the suite first, so the other suite's key is a
    SuiteMismatch, and names ``what`` in every error."""

    def __init__(self, suite: str, prefix: str, secret_len: int) -> None:
        self.suite, self.prefix, self.secret_len = suite, prefix, secret_len

    def encode(self, raw: bytes) -> str:
        return self.prefix + b64(raw)

    def raw(self, text: str, what: str) -> bytes:
        require_suite(what, suite_of_text(text), self.suite)
        return unb64(text[len(self.prefix) :], what)

    def decode(self, text: str, what: str, make: Callable[[bytes], K]) -> K:
        raw = self.raw(text, what)
        try:
            return make(raw)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{what}: {exc}") from exc

    def decode_secret(self, text: str, what: str) -> bytes:
        raw = self.raw(text, what)
        if len(raw) != self.secret_len:
            raise InvalidArgument.expected(f"{what}: decoded key length", self.secret_len, len(raw))
        return raw


class AnyVerifyKey(Protocol):
    """A public signature key of some suite."""

    @property
    def suite(self) -> str: ...

    @property
    def raw(self) -> bytes: ...

    def verify(self, domain: str, payload: bytes, signature: bytes) -> None:
        """Verify a signature over PAE(domain, payload); opaque CryptoFailure."""

    def verify_raw(self, message: bytes, signature: bytes) -> None:
        """Verify over exact bytes (C2SP signed notes only)."""

    def encode(self) -> str:
        """Suite-tagged text form (trust bundle, public.json)."""

    def b64(self) -> str: ...

    def with_user_id(self, user_id: bytes) -> AnyVerifyKey:
        """The same key with another signer id in its Z value (gm; intl keys have
        none and return themselves)."""


class AnySigningKey(Protocol):
    """A private signature key of some suite. Never printed, never logged."""

    @property
    def suite(self) -> str: ...

    @property
    def verify_key(self) -> AnyVerifyKey: ...

    def sign(self, domain: str, payload: bytes) -> bytes: ...

    def sign_raw(self, message: bytes) -> bytes: ...

    def secret(self) -> bytes:
        """The bytes the key file stores."""

    def with_user_id(self, user_id: bytes) -> AnySigningKey: ...


class AnySealPublicKey(Protocol):
    """A public key that payloads are sealed to."""

    @property
    def suite(self) -> str: ...

    @property
    def raw(self) -> bytes: ...

    def encode(self) -> str: ...

    def b64(self) -> str: ...

    def seal(self, domain: str, plaintext: bytes, associated_data: bytes, rng: Rng) -> bytes: ...


class AnySealPrivateKey(Protocol):
    """A private key that opens sealed payloads. Never printed, never logged."""

    @property
    def suite(self) -> str: ...

    @property
    def public_key(self) -> AnySealPublicKey: ...

    def open(self, domain: str, blob: bytes, associated_data: bytes) -> bytes: ...

    def secret(self) -> bytes: ...


class HashObject(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...

    def copy(self) -> HashObject: ...


class Suite(Protocol):
    """The primitives one cipher suite provides. Two implementations: intl, gm."""

    @property
    def name(self) -> str:
        """``intl`` or ``gm``: what the trust bundle names."""

    @property
    def hash_name(self) -> str:
        """The hash's name as documents show it (``SHA-256``, ``SM3``)."""

    @property
    def seal_version(self) -> bytes:
        """First byte of every blob this suite seals."""

    def digest(self, data: bytes) -> bytes:
        """The suite's 32-byte hash."""

    def hasher(self, prefix: bytes = b"") -> HashObject:
        """An incremental hash object already fed ``prefix``."""

    def keyed_hash(self, key: bytes, domain: str, data: bytes) -> bytes:
        """HMAC with the suite's hash over PAE(domain, data)."""

    def keyed_hashes(self, key: bytes, domain: str, items: Sequence[bytes]) -> list[bytes]:
        """``keyed_hash`` of each item, with the key prepared once (bulk transforms)."""

    def generate_signing_key(self, rng: Rng) -> AnySigningKey: ...

    def signing_key(self, secret: bytes) -> AnySigningKey: ...

    def verify_key(self, raw: bytes) -> AnyVerifyKey: ...

    def generate_seal_key(self, rng: Rng) -> AnySealPrivateKey: ...

    def seal_private_key(self, secret: bytes) -> AnySealPrivateKey: ...

    def seal_public_key(self, raw: bytes) -> AnySealPublicKey: ...

    def decode_verify_key(self, text: str, what: str) -> AnyVerifyKey:
        """Parse the suite-tagged text form; SuiteMismatch for the other suite's."""

    def decode_seal_public_key(self, text: str, what: str) -> AnySealPublicKey: ...

    def decode_secret(self, text: str, what: str) -> bytes:
        """Parse a private key file's one line."""

    def encode_secret(self, secret: bytes) -> str: ...
