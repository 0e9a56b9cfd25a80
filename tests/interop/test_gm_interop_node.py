"""The gm suite against sm-crypto (JavaScript, its own big-integer SM2 and SM3), both ways.

A third implementation beside Tongsuo and pure-Python gmssl, in another
language: what a Node service or auditor would use. Needs node and npm;
sm-crypto is installed from the committed lockfile into
tests/interop/sm_node/node_modules on first run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway import crypto
from gateway.crypto import gm
from gateway.errors import CryptoFailure
from tests.crypto.test_gm_vectors import P_A, SIG_R, SIG_S, _der_int, _der_seq
from tests.interop.npm import ensure_node_modules

NODE_DIR = Path(__file__).resolve().parent / "sm_node"
DOMAIN = "cn.dataexchange.gateway.v1.seal.RecordPayload"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="node/npm not installed"
)


def _node(*ops: dict[str, Any]) -> list[dict[str, Any]]:
    ensure_node_modules(NODE_DIR)
    out = subprocess.run(
        ["node", "gm.mjs"], cwd=NODE_DIR, input=json.dumps(list(ops)),
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def _raw_c1c3c2(der: bytes) -> bytes:
    """Our DER SM2 ciphertext (GB/T 35276) as the raw C1C3C2 sm-crypto reads."""
    i, parts = (3 if der[1] == 0x81 else 2), []
    while i < len(der):
        n = der[i + 1]
        parts.append(der[i + 2 : i + 2 + n])
        i += 2 + n
    x, y, c3, c2 = parts
    return x.rjust(33, b"\0")[-32:] + y.rjust(33, b"\0")[-32:] + c3 + c2


def _der_c1c3c2(raw: bytes) -> bytes:
    x, y, c3, c2 = raw[:32], raw[32:64], raw[64:96], raw[96:]
    body = _der_int(x) + _der_int(y) + b"\x04\x20" + c3 + b"\x04" + bytes([len(c2)]) + c2
    return (
        b"\x30" + (bytes([len(body)]) if len(body) < 128 else b"\x81" + bytes([len(body)])) + body
    )


def test_sm_crypto_verifies_our_signatures_and_refuses_changed_ones() -> None:
    key = gm.Sm2SigningKey.generate()
    msg = crypto.pae("cn.dataexchange.gateway.v1.PeerRecordRequest", b"\x0a\x06130000")
    sig = key.sign_raw(msg)
    pub = key.verify_key.raw.hex()
    good, changed, published = _node(
        {"op": "verify", "msg": msg.hex(), "sig": sig.hex(), "pub": pub},
        {"op": "verify", "msg": (msg + b"!").hex(), "sig": sig.hex(), "pub": pub},
        {"op": "verify", "msg": b"message digest".hex(),
         "sig": _der_seq(_der_int(SIG_R), _der_int(SIG_S)).hex(), "pub": P_A.hex()},
    )  # fmt: skip
    assert good["ok"] is True and changed["ok"] is False
    assert published["ok"] is True  # and it agrees with us on the GM/T 0003.5 example


def test_we_verify_sm_crypto_signatures() -> None:
    msg = crypto.pae("dom", b"an answer")
    (kp,) = _node({"op": "keypair"})
    (signed,) = _node({"op": "sign", "msg": msg.hex(), "priv": kp["priv"], "pub": kp["pub"]})
    key = gm.Sm2VerifyKey(bytes.fromhex(kp["pub"]))
    key.verify("dom", b"an answer", bytes.fromhex(signed["sig"]))
    with pytest.raises(CryptoFailure):
        key.verify("dom", b"another answer", bytes.fromhex(signed["sig"]))


def test_sm_crypto_opens_the_sm2_capsule_of_our_sealed_envelope() -> None:
    key = gm.Sm2SealPrivateKey.generate()
    blob = crypto.seal(key.public_key, DOMAIN, b"records", b"130000\n110000\nid")
    n = int.from_bytes(blob[1:3], "big")
    capsule = blob[3 : 3 + n]
    (opened,) = _node(
        {"op": "decrypt", "c": _raw_c1c3c2(capsule).hex(), "priv": key.secret()[:32].hex()}
    )
    secret = bytes.fromhex(opened["m"])
    assert len(secret) == 32
    # ...and with that secret and sm-crypto's HMAC-SM3 derives the same SM4 key we used.
    inner = crypto.pae(DOMAIN, capsule + key.public_key.raw)
    (mac,) = _node({"op": "hmac", "key": secret.hex(),
                    "msg": crypto.pae("cn.dataexchange.gateway.v1.gm.seal-key", inner).hex()})  # fmt: skip
    assert bytes.fromhex(mac["mac"]) == gm.hmac_sm3(
        secret, crypto.pae("cn.dataexchange.gateway.v1.gm.seal-key", inner)
    )
    k = bytes.fromhex(mac["mac"])[:16]
    rest = blob[3 + n :]
    aad = crypto.pae(DOMAIN, b"130000\n110000\nid")
    assert gm.sm4_gcm_decrypt(k, rest[:12], aad, rest[12:]) == b"records"


def test_we_decrypt_sm_crypto_sm2_ciphertexts() -> None:
    key = gm.Sm2SealPrivateKey.generate()
    (enc,) = _node(
        {"op": "encrypt", "msg": b"sixteen byte key".hex(), "pub": key.public_key.raw.hex()}
    )
    raw = bytes.fromhex(enc["c"])
    if len(raw) % 2 and raw[:1] == b"\x04":  # some versions prefix C1 with 04
        raw = raw[1:]
    assert gm.sm2_decrypt(key.secret()[:32], _der_c1c3c2(raw)) == b"sixteen byte key"


def test_sm3_and_hmac_sm3_agree_with_sm_crypto() -> None:
    msg, key = os.urandom(200), os.urandom(32)
    d, m = _node(
        {"op": "sm3", "msg": msg.hex()}, {"op": "hmac", "key": key.hex(), "msg": msg.hex()}
    )
    assert bytes.fromhex(d["digest"]) == gm.sm3(msg)
    assert bytes.fromhex(m["mac"]) == gm.hmac_sm3(key, msg)
