"""Crypto recipes: round trips (hypothesis), tampering, domain separation, vectors."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import crypto
from gateway.errors import CryptoFailure, InvalidArgument

KEY = crypto.SigningKey(bytes(range(32)))
SEAL = crypto.SealPrivateKey(bytes(range(32, 64)))


def _counter_rng() -> crypto.Rng:
    state = {"n": 0}

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(state["n"].to_bytes(8, "big")).digest()
            state["n"] += 1
        return out[:n]

    return rng


def test_pae_vector_is_exact() -> None:
    assert crypto.pae("t", b"hello") == b"JGWSIGv1 1 t 5 hello"
    assert crypto.pae("", b"") == b"JGWSIGv1 0  0 "


@given(st.text(max_size=20), st.binary(max_size=40), st.text(max_size=20), st.binary(max_size=40))
def test_pae_is_injective(t1: str, p1: bytes, t2: str, p2: bytes) -> None:
    if (t1, p1) != (t2, p2):
        assert crypto.pae(t1, p1) != crypto.pae(t2, p2)


def test_ed25519_signature_vector_is_deterministic() -> None:
    # RFC 8032 Ed25519 is deterministic: the same key and message give the same bytes.
    sig = KEY.sign("domain", b"payload")
    assert sig == KEY.sign("domain", b"payload")
    KEY.verify_key.verify("domain", b"payload", sig)


@given(st.binary(max_size=256))
def test_signature_round_trip(payload: bytes) -> None:
    KEY.verify_key.verify("d", payload, KEY.sign("d", payload))


def test_signature_for_one_domain_fails_in_another() -> None:
    sig = KEY.sign("cn.a", b"x")
    with pytest.raises(CryptoFailure):
        KEY.verify_key.verify("cn.b", b"x", sig)


@pytest.mark.parametrize("flip", [0, 31, 63])
def test_flipped_signature_bit_fails_opaquely(flip: int) -> None:
    sig = bytearray(KEY.sign("d", b"x"))
    sig[flip] ^= 1
    with pytest.raises(CryptoFailure) as err:
        KEY.verify_key.verify("d", b"x", bytes(sig))
    assert str(err.value) == "message authentication failed"


def test_truncated_signature_fails() -> None:
    with pytest.raises(CryptoFailure):
        KEY.verify_key.verify("d", b"x", KEY.sign("d", b"x")[:63])


@settings(max_examples=50)
@given(st.binary(max_size=2048), st.binary(max_size=64))
def test_seal_open_round_trip(plaintext: bytes, aad: bytes) -> None:
    blob = crypto.seal(SEAL.public_key, "dom", plaintext, aad)
    assert crypto.open_sealed(SEAL, "dom", blob, aad) == plaintext


def test_seal_is_reproducible_with_injected_rng() -> None:
    a = crypto.seal(SEAL.public_key, "dom", b"records", b"ctx", rng=_counter_rng())
    b = crypto.seal(SEAL.public_key, "dom", b"records", b"ctx", rng=_counter_rng())
    assert a == b and len(a) == crypto.SEAL_OVERHEAD + len(b"records")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-1],  # truncated tag
        lambda b: b[:10] + bytes([b[10] ^ 1]) + b[11:],  # ephemeral key changed
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # tag changed
        lambda b: b"\x7f" + b[1:],  # unknown version
        lambda b: b"",
    ],
)
def test_tampered_sealed_blob_fails(mutate) -> None:  # type: ignore[no-untyped-def]
    blob = crypto.seal(SEAL.public_key, "dom", b"secret", b"ctx")
    with pytest.raises(CryptoFailure):
        crypto.open_sealed(SEAL, "dom", mutate(blob), b"ctx")


def test_sealed_blob_bound_to_associated_data_domain_and_recipient() -> None:
    blob = crypto.seal(SEAL.public_key, "dom", b"secret", b"110000\n130000\nid")
    with pytest.raises(CryptoFailure):
        crypto.open_sealed(SEAL, "dom", blob, b"110000\n120000\nid")  # other recipient
    with pytest.raises(CryptoFailure):
        crypto.open_sealed(SEAL, "other", blob, b"110000\n130000\nid")
    with pytest.raises(CryptoFailure):
        crypto.open_sealed(crypto.SealPrivateKey.generate(), "dom", blob, b"110000\n130000\nid")


def test_low_order_ephemeral_point_is_refused() -> None:
    blob = b"\x01" + bytes(32) + bytes(12) + bytes(32)
    with pytest.raises(CryptoFailure):
        crypto.open_sealed(SEAL, "dom", blob, b"")


def test_keyed_hash_needs_a_real_key_and_separates_domains() -> None:
    with pytest.raises(InvalidArgument):
        crypto.keyed_hash(b"short", "d", b"x")
    k = bytes(32)
    assert crypto.keyed_hash(k, "a", b"x") != crypto.keyed_hash(k, "b", b"x")


def test_private_keys_never_print() -> None:
    assert "redacted" in repr(KEY) and "redacted" in repr(SEAL)
    assert KEY.seed().hex() not in repr(KEY)


def test_tls_identity_fingerprint_matches_certificate() -> None:
    ident = crypto.make_tls_identity("gw-110000", ["gw-110000", "localhost"])
    fp = crypto.cert_fingerprint(ident.cert_pem)
    assert len(fp) == 64 and fp == crypto.cert_fingerprint(ident.cert_pem)
    with pytest.raises(InvalidArgument):
        crypto.cert_fingerprint(b"not a cert")
