"""The gm suite against independent SM2/SM3/SM4 implementations, both ways.

Tongsuo (``tongsuopy``, the OpenSSL-derived national-crypto fork; its SM2 is
OpenSSL's SM2 with the default user id in the Z value) and the pure-Python
``gmssl`` package (its own big-integer SM2, SM3 and KDF) check what our GmSSL
based suite makes, and our suite checks what they make: SM2 signatures, SM2
ciphertexts, SM4-GCM, and a whole sealed envelope opened (and built) with no
line of GmSSL.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

import pytest
from gmssl import sm2 as pysm2
from tongsuopy.crypto import hashes as ts_hashes
from tongsuopy.crypto import serialization as ts_ser
from tongsuopy.crypto.asymciphers import ec as ts_ec
from tongsuopy.crypto.ciphers.aead import SM4GCM as TsSm4Gcm
from tongsuopy.crypto.exceptions import InvalidSignature

from gateway import crypto
from gateway.crypto import gm
from gateway.errors import CryptoFailure

DOMAIN = "cn.dataexchange.gateway.v1.seal.RecordPayload"
AD = b"130000\n110000\n5b0c7a7e-1d1f-4c43-9f5e-6a3c2a9b7e10"


def _ts_key_pair() -> tuple[Any, bytes]:
    key = ts_ec.generate_private_key(ts_ec.SM2())
    pub = key.public_key().public_bytes(ts_ser.Encoding.X962, ts_ser.PublicFormat.UncompressedPoint)
    return key, pub


def _py(private: bytes | None, public: bytes) -> pysm2.CryptSM2:
    c = pysm2.CryptSM2(private_key=private.hex() if private else "", public_key="00", mode=1)
    c.public_key = public[1:].hex()  # bypass its lstrip("04") of the prefix
    return c


def _der_len(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else b"\x81" + bytes([n])


def _der_seq(body: bytes) -> bytes:
    return b"\x30" + _der_len(len(body)) + body


def _der_ints(der: bytes) -> list[bytes]:
    """The INTEGER/OCTET STRING contents of a small DER SEQUENCE (test helper)."""
    assert der[0] == 0x30
    i = 3 if der[1] == 0x81 else 2
    out = []
    while i < len(der):
        n = der[i + 1]
        out.append(der[i + 2 : i + 2 + n])
        i += 2 + n
    return out


def _der_int(b: bytes) -> bytes:
    b = b.lstrip(b"\x00") or b"\x00"
    if b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + bytes([len(b)]) + b


class _TsSm3:
    """Tongsuo's SM3 shaped for the standard library's hmac module."""

    digest_size = 32
    block_size = 64
    name = "sm3"

    def __init__(self, data: bytes = b"", h: Any = None) -> None:
        self._h = h or ts_hashes.Hash(ts_hashes.SM3())
        if data:
            self._h.update(data)

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def copy(self) -> _TsSm3:
        return _TsSm3(h=self._h.copy())

    def digest(self) -> bytes:
        return bytes(self._h.copy().finalize())


def _ts_hmac_sm3(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, _TsSm3).digest()


# --------------------------------------------------------------------------
# SM2 signatures
# --------------------------------------------------------------------------


def test_tongsuo_verifies_our_sm2_signature_and_rejects_a_changed_message() -> None:
    key = gm.Sm2SigningKey.generate()
    sig = key.sign_raw(b"checkpoint body\n")
    pub = ts_ec.EllipticCurvePublicKey.from_encoded_point(ts_ec.SM2(), key.verify_key.raw)
    pub.verify(sig, b"checkpoint body\n", ts_ec.ECDSA(ts_hashes.SM3()))
    with pytest.raises(InvalidSignature):
        pub.verify(sig, b"checkpoint body!", ts_ec.ECDSA(ts_hashes.SM3()))


def test_we_verify_tongsuo_sm2_signature_and_reject_a_changed_message() -> None:
    ts_key, pub = _ts_key_pair()
    sig = ts_key.sign(crypto.pae("dom", b"payload"), ts_ec.ECDSA(ts_hashes.SM3()))
    ours = gm.Sm2VerifyKey(pub)
    ours.verify("dom", b"payload", sig)
    with pytest.raises(CryptoFailure):
        ours.verify("other-domain", b"payload", sig)


def test_pure_python_gmssl_verifies_our_sm2_signature() -> None:
    key = gm.Sm2SigningKey.generate()
    msg = crypto.pae("dom", b"an envelope payload")
    r, s = _der_ints(key.sign_raw(msg))
    rs = int.from_bytes(r, "big").to_bytes(32, "big") + int.from_bytes(s, "big").to_bytes(32, "big")
    assert _py(None, key.verify_key.raw).verify_with_sm3(rs.hex(), msg)
    assert not _py(None, key.verify_key.raw).verify_with_sm3(rs.hex(), msg + b"x")


def test_we_verify_pure_python_gmssl_signature_with_the_standard_k() -> None:
    # Its signing is deterministic given k: GM/T 0003.5's k reproduces the
    # published (r, s), so its Z and signing equation are the standard's.
    from tests.crypto.test_gm_vectors import D_A, P_A, SIG_R, SIG_S

    k = "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21"
    rs = bytes.fromhex(_py(D_A, P_A).sign_with_sm3(b"message digest", k))
    assert rs == SIG_R + SIG_S
    der = _der_int(rs[:32]) + _der_int(rs[32:])
    gm.Sm2VerifyKey(P_A).verify_raw(b"message digest", b"\x30" + bytes([len(der)]) + der)


# --------------------------------------------------------------------------
# SM2 encryption and SM4-GCM
# --------------------------------------------------------------------------


def test_pure_python_gmssl_decrypts_our_sm2_ciphertext() -> None:
    key = gm.Sm2SealPrivateKey.generate()
    d = key.secret()[:32]
    x, y, c3, c2 = _der_ints(gm.sm2_encrypt(key.public_key.raw, b"a 32-byte sealing secret......!"))
    raw = x.rjust(33, b"\0")[-32:] + y.rjust(33, b"\0")[-32:] + c3 + c2
    assert _py(d, key.public_key.raw).decrypt(raw) == b"a 32-byte sealing secret......!"


def test_we_decrypt_pure_python_gmssl_sm2_ciphertext() -> None:
    key = gm.Sm2SealPrivateKey.generate()
    raw = _py(None, key.public_key.raw).encrypt(b"sixteen byte key")
    x, y, c3, c2 = raw[:32], raw[32:64], raw[64:96], raw[96:]
    body = _der_int(x) + _der_int(y) + b"\x04\x20" + c3 + b"\x04" + bytes([len(c2)]) + c2
    der = _der_seq(body)
    assert gm.sm2_decrypt(key.secret()[:32], der) == b"sixteen byte key"


def test_tongsuo_and_we_open_each_others_sm4_gcm() -> None:
    key, nonce, aad, pt = os.urandom(16), os.urandom(12), b"bound", os.urandom(1000)
    ours = gm.sm4_gcm_encrypt(key, nonce, aad, pt)
    assert TsSm4Gcm(key).decrypt(nonce, ours, aad) == pt
    theirs = TsSm4Gcm(key).encrypt(nonce, pt, aad)
    assert theirs == ours
    assert gm.sm4_gcm_decrypt(key, nonce, aad, theirs) == pt


def test_hmac_sm3_matches_tongsuo_sm3_in_the_standard_hmac() -> None:
    key, msg = os.urandom(32), os.urandom(300)
    assert gm.hmac_sm3(key, msg) == _ts_hmac_sm3(key, msg)


# --------------------------------------------------------------------------
# Whole sealed envelopes
# --------------------------------------------------------------------------


def _independent_seal_key(secret: bytes, capsule: bytes, recipient: bytes) -> bytes:
    inner = crypto.pae(DOMAIN, capsule + recipient)
    return _ts_hmac_sm3(secret, crypto.pae("cn.dataexchange.gateway.v1.gm.seal-key", inner))[:16]


def test_independent_implementations_open_our_sealed_envelope() -> None:
    key = gm.Sm2SealPrivateKey.generate()
    blob = crypto.seal(key.public_key, DOMAIN, b"records of one subject", AD)
    assert blob[:1] == b"\x02"
    n = int.from_bytes(blob[1:3], "big")
    capsule, nonce, sealed = blob[3 : 3 + n], blob[3 + n : 15 + n], blob[15 + n :]
    x, y, c3, c2 = _der_ints(capsule)
    raw = x.rjust(33, b"\0")[-32:] + y.rjust(33, b"\0")[-32:] + c3 + c2
    secret = _py(key.secret()[:32], key.public_key.raw).decrypt(raw)
    k = _independent_seal_key(secret, capsule, key.public_key.raw)
    assert TsSm4Gcm(k).decrypt(nonce, sealed, crypto.pae(DOMAIN, AD)) == b"records of one subject"


def test_we_open_an_envelope_sealed_by_independent_implementations() -> None:
    key = gm.Sm2SealPrivateKey.generate()
    secret = os.urandom(32)
    raw = _py(None, key.public_key.raw).encrypt(secret)
    x, y, c3, c2 = raw[:32], raw[32:64], raw[64:96], raw[96:]
    body = _der_int(x) + _der_int(y) + b"\x04\x20" + c3 + b"\x04" + bytes([len(c2)]) + c2
    capsule = _der_seq(body)
    k = _independent_seal_key(secret, capsule, key.public_key.raw)
    nonce = os.urandom(12)
    sealed = TsSm4Gcm(k).encrypt(nonce, b"answer", crypto.pae(DOMAIN, AD))
    blob = b"\x02" + len(capsule).to_bytes(2, "big") + capsule + nonce + sealed
    assert crypto.open_sealed(key, DOMAIN, blob, AD) == b"answer"
    with pytest.raises(CryptoFailure):  # bound to sender, recipient and request id
        crypto.open_sealed(key, DOMAIN, blob, AD.replace(b"130000", b"120000"))


def test_gmssl_and_we_open_each_others_sm4_gcm() -> None:
    import gmssl_pyx

    key, nonce, aad, pt = os.urandom(16), os.urandom(12), b"bound", os.urandom(777)
    ours = gm.sm4_gcm_encrypt(key, nonce, aad, pt)
    assert bytes(gmssl_pyx.sm4_gcm_decrypt(key, nonce, aad, ours[:-16], ours[-16:])) == pt
    ct, tag = gmssl_pyx.sm4_gcm_encrypt(key, nonce, aad, pt)
    assert gm.sm4_gcm_decrypt(key, nonce, aad, bytes(ct) + bytes(tag)) == pt
