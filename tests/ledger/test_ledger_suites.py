"""The ledger in the gm suite: an SM3 RFC 9162 tree, SM2 signed notes and cosignatures.

The parametrised ledger tests run every behaviour in both suites; these pin
what is specific to gm: the tree hash is SM3 (recomputed here from the
RFC 9162 definition with SM3 directly), the note key type and id scheme, and
refusals across suites.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import crypto
from gateway.crypto import gm
from gateway.errors import SuiteMismatch, VerificationFailed
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.note import (
    SIG_COSIGNATURE_V1,
    SIG_GM_COSIGNATURE,
    SIG_GM_NOTE,
    Checkpoint,
    NoteVerifier,
    cosign,
    open_checkpoint,
    parse_note,
    parse_vkey,
    verify_cosignature,
    vkey,
)
from tests.ledger.ledger_testkit import ORIGIN, FakeClock, make_event

NewLedger = Callable[..., SqliteLedger]


def _mth_sm3(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1 MTH with SM3, straight from the definition."""
    if not leaves:
        return gm.sm3(b"")
    if len(leaves) == 1:
        return gm.sm3(b"\x00" + leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return gm.sm3(b"\x01" + _mth_sm3(leaves[:k]) + _mth_sm3(leaves[k:]))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 13])
def test_gm_ledger_root_is_the_rfc_9162_tree_with_sm3(tmp_path: Path, n: int) -> None:
    ledger = SqliteLedger(tmp_path / "gm.db", crypto.GM.generate_signing_key(), ORIGIN)
    ledger.append_many(make_event(i) for i in range(n))
    entries = [ledger.entry(i).entry for i in range(n)]
    assert ledger.root_at(n) == _mth_sm3(entries)
    assert ledger.root_at(n) != hashlib.sha256(b"\x00" + entries[0]).digest() or n > 1
    assert ledger.entry(0).entry_hash == gm.sm3(b"\x00" + entries[0])
    ledger.close()


def test_gm_checkpoint_key_uses_the_0xff_type_and_the_spec_key_id() -> None:
    key = crypto.GM.generate_signing_key()
    text = vkey(ORIGIN, key.verify_key)
    name, kid, material = text.split("+", 2)
    raw = base64.b64decode(material)
    assert name == ORIGIN and raw == SIG_GM_NOTE + key.verify_key.raw
    expected = hashlib.sha256(ORIGIN.encode() + b"\n" + SIG_GM_NOTE + key.verify_key.raw)
    assert kid == expected.digest()[:4].hex()
    parsed = parse_vkey(text)
    assert parsed.key == key.verify_key and parsed.sig_type != SIG_COSIGNATURE_V1
    witness = parse_vkey(vkey("w.example/witness", key.verify_key, SIG_COSIGNATURE_V1))
    assert witness.sig_type == SIG_COSIGNATURE_V1
    assert base64.b64decode(
        vkey("w", key.verify_key, SIG_COSIGNATURE_V1).split("+", 2)[2]
    ).startswith(SIG_GM_COSIGNATURE)


def test_gm_checkpoint_signature_is_sm2_and_fails_for_an_intl_key(
    tmp_path: Path,
) -> None:
    key = crypto.GM.generate_signing_key()
    ledger = SqliteLedger(tmp_path / "gm.db", key, ORIGIN, checkpoint_every=2, clock=FakeClock())
    ledger.append_many(make_event(i) for i in range(4))
    note = ledger.latest_checkpoint().note  # type: ignore[union-attr]
    cp = open_checkpoint(note, ORIGIN, key.verify_key)
    assert cp.size == 4
    text, sigs = parse_note(note)
    key.verify_key.verify_raw(text.encode(), sigs[0].signature)  # plain SM2-with-SM3
    with pytest.raises(VerificationFailed, match="no verifiable signatures"):
        open_checkpoint(note, ORIGIN, crypto.INTL.generate_signing_key().verify_key)
    ledger.close()


def test_gm_cosignature_verifies_and_a_moved_timestamp_does_not() -> None:
    wkey = crypto.GM.generate_signing_key()
    body = Checkpoint(ORIGIN, 3, bytes(32)).body()
    sig = cosign(body, "w.example/witness", wkey, 1_700_000_000)
    w = NoteVerifier("w.example/witness", wkey.verify_key, SIG_COSIGNATURE_V1)
    assert verify_cosignature(body, sig, w) == 1_700_000_000
    moved = type(sig)(sig.name, sig.key_id, (1_700_000_001).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(VerificationFailed):
        verify_cosignature(body, moved, w)


def test_ledger_file_of_the_other_suite_is_refused(tmp_path: Path) -> None:
    SqliteLedger(tmp_path / "gm.db", crypto.GM.generate_signing_key(), ORIGIN).close()
    with pytest.raises(SuiteMismatch, match="suite gm"):
        SqliteLedger(tmp_path / "gm.db", crypto.INTL.generate_signing_key(), ORIGIN)
    ro = SqliteLedger.open_readonly(tmp_path / "gm.db")
    assert ro.suite.name == "gm"
    ro.close()


def test_verifying_a_gm_ledger_with_an_intl_key_names_the_suites(tmp_path: Path) -> None:
    from gateway.ledger.storage import SqliteLedgerStore
    from gateway.ledger.verify import verify_store

    ledger = SqliteLedger(tmp_path / "gm.db", crypto.GM.generate_signing_key(), ORIGIN)
    ledger.append_many(make_event(i) for i in range(3))
    ledger.checkpoint_now()
    ledger.close()
    store = SqliteLedgerStore(tmp_path / "gm.db", readonly=True)
    try:
        report = verify_store(store, ORIGIN, crypto.INTL.generate_signing_key().verify_key)
    finally:
        store.close()
    assert report.problem is not None and report.problem.kind == "suite-mismatch"
    assert "suite gm ledger" in report.problem.detail and "suite intl" in report.problem.detail
