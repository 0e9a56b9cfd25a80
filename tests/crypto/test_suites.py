"""Both cipher suites behind one Protocol: the same properties hold for intl and gm.

Signatures verify only for their domain, payload and key; sealed blobs open
only with the recipient's key, domain and associated data, and any changed
byte is refused; keys survive their text encoding and refuse the other
suite's; keyed hashes separate domains.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import crypto
from gateway.errors import CryptoFailure, InvalidArgument, SuiteMismatch

SUITES = [crypto.INTL, crypto.GM]
ids = [s.name for s in SUITES]
_KEYS = {
    s.name: (s.generate_signing_key(os.urandom), s.generate_seal_key(os.urandom)) for s in SUITES
}
fast = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("suite", SUITES, ids=ids)
@fast
@given(payload=st.binary(max_size=2048))
def test_signature_verifies_only_for_its_domain_and_payload(
    suite: crypto.Suite, payload: bytes
) -> None:
    key = _KEYS[suite.name][0]
    sig = key.sign("dom.a", payload)
    key.verify_key.verify("dom.a", payload, sig)
    with pytest.raises(CryptoFailure):
        key.verify_key.verify("dom.b", payload, sig)
    with pytest.raises(CryptoFailure):
        key.verify_key.verify("dom.a", payload + b"\x00", sig)
    with pytest.raises(CryptoFailure):
        _KEYS["gm" if suite.name == "intl" else "intl"][0].verify_key.verify("dom.a", payload, sig)


@pytest.mark.parametrize("suite", SUITES, ids=ids)
def test_signature_of_another_key_of_the_same_suite_fails(suite: crypto.Suite) -> None:
    a, b = suite.generate_signing_key(os.urandom), suite.generate_signing_key(os.urandom)
    with pytest.raises(CryptoFailure):
        b.verify_key.verify("d", b"m", a.sign("d", b"m"))


@pytest.mark.parametrize("suite", SUITES, ids=ids)
@fast
@given(plaintext=st.binary(max_size=4096), ad=st.binary(max_size=64))
def test_seal_round_trips_including_empty_payloads(
    suite: crypto.Suite, plaintext: bytes, ad: bytes
) -> None:
    key = _KEYS[suite.name][1]
    blob = crypto.seal(key.public_key, "dom", plaintext, ad)
    assert blob[:1] == suite.seal_version
    assert crypto.open_sealed(key, "dom", blob, ad) == plaintext


@pytest.mark.parametrize("suite", SUITES, ids=ids)
def test_every_changed_byte_of_a_sealed_blob_is_refused(suite: crypto.Suite) -> None:
    key = _KEYS[suite.name][1]
    blob = crypto.seal(key.public_key, "dom", b"records", b"130000\n110000\nid")
    for pos in range(len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises((CryptoFailure, SuiteMismatch)):
            crypto.open_sealed(key, "dom", bytes(bad), b"130000\n110000\nid")
    for cut in (1, 16, len(blob) - 1):
        with pytest.raises(CryptoFailure):
            crypto.open_sealed(key, "dom", blob[:cut], b"130000\n110000\nid")


@pytest.mark.parametrize("suite", SUITES, ids=ids)
def test_sealed_blob_is_bound_to_recipient_domain_and_associated_data(suite: crypto.Suite) -> None:
    key = _KEYS[suite.name][1]
    blob = crypto.seal(key.public_key, "dom", b"x", b"130000\n110000\nid")
    for k, d, ad in (
        (suite.generate_seal_key(os.urandom), "dom", b"130000\n110000\nid"),
        (key, "other", b"130000\n110000\nid"),
        (key, "dom", b"120000\n110000\nid"),
    ):
        with pytest.raises(CryptoFailure):
            crypto.open_sealed(k, d, blob, ad)


@pytest.mark.parametrize("suite", SUITES, ids=ids)
def test_keys_round_trip_their_text_form_and_refuse_the_other_suites(suite: crypto.Suite) -> None:
    sign, seal = _KEYS[suite.name]
    other = crypto.GM if suite.name == "intl" else crypto.INTL
    text = sign.verify_key.encode()
    assert crypto.suite_of_text(text) == suite.name
    assert suite.decode_verify_key(text, "k").raw == sign.verify_key.raw
    assert suite.decode_seal_public_key(seal.public_key.encode(), "k").raw == seal.public_key.raw
    again = suite.signing_key(suite.decode_secret(suite.encode_secret(sign.secret()), "k"))
    again.verify_key.verify("d", b"m", sign.sign("d", b"m"))
    with pytest.raises(SuiteMismatch, match=rf"suite {suite.name}.*suite {other.name}"):
        other.decode_verify_key(text, "signing_key")


@pytest.mark.parametrize("suite", SUITES, ids=ids)
def test_keyed_hash_separates_domains_and_keys(suite: crypto.Suite) -> None:
    k1, k2 = bytes(32), bytes([1]) * 32
    a = suite.keyed_hash(k1, "dom.a", b"value")
    assert len(a) == 32
    assert a != suite.keyed_hash(k1, "dom.b", b"value")
    assert a != suite.keyed_hash(k2, "dom.a", b"value")
    assert a != (crypto.GM if suite.name == "intl" else crypto.INTL).keyed_hash(
        k1, "dom.a", b"value"
    )


def test_private_keys_never_print() -> None:
    for sign, seal in _KEYS.values():
        assert "redacted" in repr(sign) and "redacted" in repr(seal)


def test_ed25519_signature_that_happens_to_parse_as_der_is_not_refused_as_gm() -> None:
    """One Ed25519 signature in 65,536 starts 0x30 0x3E, the header of a 64-byte
    DER SEQUENCE: the suite check must not refuse a valid intl exchange for it."""
    key = _KEYS["intl"][0].verify_key
    der_shaped = bytes([0x30, 0x3E, 0x02, 0x1D]) + bytes(29) + bytes([0x02, 0x1D]) + bytes(29)
    assert len(der_shaped) == 64
    crypto.require_signature_suite(key, der_shaped, "envelope signature")  # no verdict
    header_only = bytes([0x30, 0x3E]) + bytes(62)
    crypto.require_signature_suite(key, header_only, "envelope signature")
    sm2 = _KEYS["gm"][0].sign("d", b"m")
    assert len(sm2) != 64 or sm2[2] == 0x02
    if len(sm2) != 64:
        with pytest.raises(SuiteMismatch):
            crypto.require_signature_suite(key, sm2, "envelope signature")
    gm_key = _KEYS["gm"][0].verify_key
    with pytest.raises(SuiteMismatch):
        crypto.require_signature_suite(
            gm_key, _KEYS["intl"][0].sign("d", b"m")[:1] + bytes(63), "x"
        )


@pytest.mark.parametrize("suite_name", ["intl", "gm"])
def test_batched_keyed_hashes_equal_one_at_a_time_for_every_key_length_and_item(
    suite_name: str,
) -> None:
    """The bulk path's prepared-key HMAC must give the very same pseudonym MACs."""
    import os

    from gateway import crypto

    s = crypto.suite(suite_name)
    items = [b"", b"x", "张三丰".encode(), os.urandom(63), os.urandom(64), os.urandom(1000)]
    for key in (os.urandom(16), os.urandom(32), os.urandom(64), os.urandom(65), os.urandom(200)):
        got = s.keyed_hashes(key, "cn.dataexchange.test", items)
        assert got == [s.keyed_hash(key, "cn.dataexchange.test", i) for i in items]
    with pytest.raises(InvalidArgument):
        s.keyed_hashes(b"short", "cn.dataexchange.test", items)
