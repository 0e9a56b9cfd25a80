"""The standards' own test vectors for the gm suite's primitives.

SM3: GB/T 32905-2016 Annex A (the 3-byte and the 64-byte message). SM4:
GB/T 32907-2016 Annex A.1 (one block). SM4-GCM: RFC 8998 Appendix A.1. SM2:
GM/T 0003.5-2012 (GB/T 32918.5) Annex A, the signature and encryption
examples on the recommended curve: the published Z value, the published
signature verifies (and a flipped bit does not), the published ciphertext
decrypts to the published message.
"""

from __future__ import annotations

import pytest

from gateway.crypto import gm
from gateway.errors import CryptoFailure, InvalidArgument

# GM/T 0003.5-2012 Annex A: key pair, message, Z_A, signature.
D_A = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
P_A = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
Z_A = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
SIG_R = bytes.fromhex("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3")
SIG_S = bytes.fromhex("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA")
# Encryption example: C1 = (x1, y1), C3, C2 of "encryption standard".
ENC_X1 = bytes.fromhex("04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73")
ENC_Y1 = bytes.fromhex("E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0")
ENC_C3 = bytes.fromhex("59983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766")
ENC_C2 = bytes.fromhex("21886CA989CA9C7D58087307CA93092D651EFA")


def _der_int(b: bytes) -> bytes:
    b = b.lstrip(b"\x00")
    if b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + bytes([len(b)]) + b


def _der_seq(*parts: bytes) -> bytes:
    body = b"".join(parts)
    return b"\x30" + bytes([len(body)]) + body


def test_sm3_of_abc_is_the_published_digest() -> None:
    assert gm.sm3(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )


def test_sm3_of_the_64_byte_message_is_the_published_digest() -> None:
    assert gm.sm3(b"abcd" * 16).hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )


def test_incremental_sm3_hasher_matches_one_shot() -> None:
    h = gm.SUITE.hasher(b"ab")
    h2 = h.copy()
    h.update(b"c")
    assert h.digest() == gm.sm3(b"abc")
    assert h2.digest() == gm.sm3(b"ab")


def test_sm4_block_is_the_gbt_32907_example() -> None:
    # GCM's first keystream block for a 12-byte IV is E_K(IV || 0x00000002): check
    # the bare block cipher instead through CTR, whose first block is E_K(counter).
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    from gmssl_pyx import sm4_ctr_encrypt

    block = bytes(sm4_ctr_encrypt(key, key, bytes(16)))
    assert block.hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm4_gcm_is_the_rfc_8998_example() -> None:
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    ct = bytes.fromhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    tag = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")
    assert gm.sm4_gcm_encrypt(key, iv, aad, pt) == ct + tag
    assert gm.sm4_gcm_decrypt(key, iv, aad, ct + tag) == pt
    with pytest.raises(CryptoFailure):
        gm.sm4_gcm_decrypt(key, iv, aad + b"\x00", ct + tag)


def test_sm2_z_value_is_the_published_one_for_the_default_user_id() -> None:
    assert gm.z_value(P_A, gm.DEFAULT_USER_ID) == Z_A


def test_published_sm2_signature_verifies_and_a_flipped_bit_does_not() -> None:
    key = gm.Sm2VerifyKey(P_A)
    sig = _der_seq(_der_int(SIG_R), _der_int(SIG_S))
    key.verify_raw(b"message digest", sig)
    with pytest.raises(CryptoFailure):
        key.verify_raw(b"message digesT", sig)
    bad = _der_seq(_der_int(SIG_R), _der_int(SIG_S[:-1] + bytes([SIG_S[-1] ^ 1])))
    with pytest.raises(CryptoFailure):
        key.verify_raw(b"message digest", bad)
    with pytest.raises(CryptoFailure):  # another user id gives another Z
        gm.Sm2VerifyKey(P_A, user_id=b"ALICE123@YAHOO.COM").verify_raw(b"message digest", sig)


def test_published_sm2_ciphertext_decrypts_to_the_published_message() -> None:
    der = _der_seq(
        _der_int(ENC_X1),
        _der_int(ENC_Y1),
        b"\x04\x20" + ENC_C3,
        b"\x04" + bytes([len(ENC_C2)]) + ENC_C2,
    )
    assert gm.sm2_decrypt(D_A, der) == b"encryption standard"
    tampered = der[:-1] + bytes([der[-1] ^ 1])  # C3 no longer matches
    with pytest.raises(CryptoFailure):
        gm.sm2_decrypt(D_A, tampered)


def test_signing_key_of_the_published_pair_signs_what_its_public_key_verifies() -> None:
    key = gm.Sm2SigningKey.from_secret(D_A + P_A)
    assert key.verify_key.raw == P_A
    key.verify_key.verify("dom", b"payload", key.sign("dom", b"payload"))


def test_key_file_whose_public_half_belongs_to_another_key_is_refused() -> None:
    other = gm.Sm2SigningKey.generate().verify_key.raw
    with pytest.raises(InvalidArgument, match="does not match"):
        gm.Sm2SigningKey.from_secret(D_A + other)
    with pytest.raises(InvalidArgument, match="does not match"):
        gm.Sm2SealPrivateKey.from_secret(D_A + other)


def test_public_key_off_the_curve_is_refused() -> None:
    off = P_A[:-1] + bytes([P_A[-1] ^ 1])
    with pytest.raises(InvalidArgument, match="not a point on the SM2 curve"):
        gm.Sm2VerifyKey(off)
    with pytest.raises(InvalidArgument, match="not a point on the SM2 curve"):
        gm.Sm2SealPublicKey(off)
