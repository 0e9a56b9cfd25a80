"""Peer witnessing: cosign, remember the newest size, catch forks and rollbacks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import crypto
from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, peer_pb2
from gateway.crypto import AnySigningKey, SigningKey
from gateway.errors import VerificationFailed
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.note import (
    Checkpoint,
    NoteVerifier,
    cosignatures_in,
    open_note,
    sign_checkpoint,
)
from gateway.ledger.witness import (
    SqliteWitnessStore,
    WitnessState,
    apply_witness_response,
    handle_witness_request,
    make_witness_request,
)
from tests.ledger.conftest import suite_key
from tests.ledger.ledger_testkit import ORIGIN, make_event

S = ledger_pb2.WitnessStatus
WITNESS = "120000.gateway.dataexchange.cn/witness"
NewLedger = Callable[..., SqliteLedger]


def header() -> peer_pb2.PeerHeader:
    return peer_pb2.PeerHeader(sender="110000", recipient="120000", request_id="w-1")


@pytest.fixture
def wkey(suite: crypto.Suite) -> AnySigningKey:
    return suite_key(suite, bytes([9]) * 32)


@pytest.fixture
def wstore(tmp_path: Path) -> SqliteWitnessStore:
    return SqliteWitnessStore(tmp_path / "witness.db")


def witness(req, log_key: SigningKey, wkey: SigningKey, wstore) -> ledger_pb2.PeerWitnessResponse:  # type: ignore[no-untyped-def]
    return handle_witness_request(
        req, "110000", log_key.verify_key, wkey, WITNESS, wstore, 1_700_000_100.0
    )


def round_trip(ledger: SqliteLedger, log_key: SigningKey, wkey: SigningKey, wstore) -> int:  # type: ignore[no-untyped-def]
    req = make_witness_request(ledger, header())
    resp = witness(req, log_key, wkey, wstore)
    return apply_witness_response(ledger, req, resp, "120000", WITNESS, wkey.verify_key)


def test_cosign_then_extend_with_consistency_proof(
    new_ledger: NewLedger, log_key, wkey, wstore
) -> None:  # type: ignore[no-untyped-def]
    ledger = new_ledger(n=8, every=8)
    assert round_trip(ledger, log_key, wkey, wstore) == 8
    ledger.append_many(make_event(i) for i in range(8, 21))
    ledger.checkpoint_now()
    req = make_witness_request(ledger, header())
    assert req.old_size == 8 and len(req.consistency_proof) > 0
    resp = witness(req, log_key, wkey, wstore)
    assert resp.status == S.WITNESS_STATUS_COSIGNED
    apply_witness_response(ledger, req, resp, "120000", WITNESS, wkey.verify_key)
    assert wstore.latest(ORIGIN).size == 21  # type: ignore[union-attr]
    note = ledger.latest_checkpoint().note  # type: ignore[union-attr]
    assert cosignatures_in(note, {WITNESS: wkey.verify_key}) == {WITNESS: 1_700_000_100}
    # The cosigned checkpoint still opens with a standard verifier holding only the log key.
    open_note(note, [NoteVerifier(ORIGIN, log_key.verify_key)])


def test_log_witnessed_while_empty_is_cosigned_once_it_grows_not_called_inconsistent(
    new_ledger: NewLedger, log_key, wkey, wstore
) -> None:  # type: ignore[no-untyped-def]
    """A fresh gateway's witnessing round can come before its first entry: the
    witness cosigns the empty tree, and the grown log is then consistent with it
    (no proof from size 0), not evidence of a forked log."""
    ledger = new_ledger(every=8)
    assert round_trip(ledger, log_key, wkey, wstore) == 0
    assert wstore.latest(ORIGIN).size == 0  # type: ignore[union-attr]
    ledger.append_many(make_event(i) for i in range(5))
    ledger.checkpoint_now()
    req = make_witness_request(ledger, header())
    assert (req.old_size, list(req.consistency_proof)) == (0, [])
    resp = witness(req, log_key, wkey, wstore)
    assert resp.status == S.WITNESS_STATUS_COSIGNED, resp.detail
    apply_witness_response(ledger, req, resp, "120000", WITNESS, wkey.verify_key)
    assert wstore.latest(ORIGIN).size == 5  # type: ignore[union-attr]
    assert wstore.evidence() == []


def test_size_zero_checkpoint_with_another_root_is_refused_and_not_cosigned(
    new_ledger: NewLedger, log_key, wkey, wstore
) -> None:  # type: ignore[no-untyped-def]
    """A log signing "size 0" over a root that is not the empty tree's would have
    a later, real tree accepted without proof: refused, nothing stored."""
    ledger = new_ledger(every=8)
    req = make_witness_request(ledger, header())
    forged = Checkpoint(ORIGIN, 0, bytes(32))
    req.checkpoint = sign_checkpoint(forged, log_key)  # re-sealed with the log's own key
    resp = witness(req, log_key, wkey, wstore)
    assert resp.status == S.WITNESS_STATUS_BAD_REQUEST and "empty tree" in resp.detail
    assert not resp.cosignature
    assert wstore.latest(ORIGIN) is None


def test_size_zero_state_with_another_root_kept_by_an_earlier_build_is_evidence(
    new_ledger: NewLedger, log_key, wkey, wstore
) -> None:  # type: ignore[no-untyped-def]
    """A witness store written before size-0 roots were checked may hold a forged
    "size 0" root: the grown log is not taken on trust, it is kept as evidence."""
    ledger = new_ledger(every=8)
    forged_note = sign_checkpoint(Checkpoint(ORIGIN, 0, bytes(32)), log_key)
    wstore.advance(None, WitnessState(ORIGIN, 0, bytes(32), forged_note, 1_700_000_000_000))
    ledger.append_many(make_event(i) for i in range(3))
    ledger.checkpoint_now()
    resp = witness(make_witness_request(ledger, header(), peer_seen_size=0), log_key, wkey, wstore)
    assert resp.status == S.WITNESS_STATUS_INCONSISTENT and not resp.cosignature
    assert [e.kind for e in wstore.evidence()] == ["inconsistent"]
    assert wstore.latest(ORIGIN).size == 0  # type: ignore[union-attr]


def test_proof_sent_from_size_zero_is_refused(new_ledger: NewLedger, log_key, wkey, wstore) -> None:  # type: ignore[no-untyped-def]
    ledger = new_ledger(every=8)
    round_trip(ledger, log_key, wkey, wstore)
    ledger.append_many(make_event(i) for i in range(4))
    ledger.checkpoint_now()
    req = make_witness_request(ledger, header())
    req.consistency_proof.append(bytes(32))
    resp = witness(req, log_key, wkey, wstore)
    assert resp.status == S.WITNESS_STATUS_BAD_REQUEST and resp.detail == "proof must be empty"
    assert wstore.latest(ORIGIN).size == 0  # type: ignore[union-attr]


def test_wrong_old_size_gets_conflict_and_sender_learns(
    new_ledger: NewLedger, log_key, wkey, wstore
) -> None:  # type: ignore[no-untyped-def]
    ledger = new_ledger(n=8, every=8)
    round_trip(ledger, log_key, wkey, wstore)
    ledger.append_many(make_event(i) for i in range(8, 16))
    req = make_witness_request(ledger, header(), peer_seen_size=0)
    resp = witness(req, log_key, wkey, wstore)
    assert resp.status == S.WITNESS_STATUS_CONFLICT and resp.known_size == 8
    with pytest.raises(VerificationFailed, match="conflict"):
        apply_witness_response(ledger, req, resp, "120000", WITNESS, wkey.verify_key)
    assert round_trip(ledger, log_key, wkey, wstore) == 16


def test_fork_same_size_different_root_is_kept_as_evidence(
    new_ledger: NewLedger,
    log_key,
    wkey,
    wstore,  # type: ignore[no-untyped-def]
) -> None:
    honest = new_ledger(name="a.db", n=8, every=8)
    round_trip(honest, log_key, wkey, wstore)
    forked = new_ledger(name="b.db", every=8)
    forked.append_many(make_event(i, reason="rewritten history") for i in range(8))
    req = make_witness_request(forked, header(), peer_seen_size=8)
    resp = witness(req, log_key, wkey, wstore)
    assert resp.status == S.WITNESS_STATUS_FORK
    ev = wstore.evidence(ORIGIN)
    assert [e.kind for e in ev] == ["fork"]
    assert honest.latest_checkpoint().note.startswith(ev[0].held_note)  # type: ignore[union-attr]
    assert ev[0].shown_note == forked.latest_checkpoint().note  # type: ignore[union-attr]
    assert wstore.latest(ORIGIN).size == 8  # type: ignore[union-attr]


def test_fork_at_larger_size_fails_consistency_and_is_kept(
    new_ledger: NewLedger, log_key, wkey, wstore
) -> None:  # type: ignore[no-untyped-def]
    honest = new_ledger(name="a.db", n=8, every=8)
    round_trip(honest, log_key, wkey, wstore)
    forked = new_ledger(name="b.db", every=16)
    forked.append_many(make_event(i, reason="rewritten") for i in range(16))
    req = make_witness_request(forked, header(), peer_seen_size=8)
    resp = witness(req, log_key, wkey, wstore)
    assert resp.status == S.WITNESS_STATUS_INCONSISTENT
    assert [e.kind for e in wstore.evidence()] == ["inconsistent"]


def test_rollback_to_smaller_tree_is_detected(new_ledger: NewLedger, log_key, wkey, wstore) -> None:  # type: ignore[no-untyped-def]
    ledger = new_ledger(n=16, every=8)
    first = ledger.checkpoints()[0]
    round_trip(ledger, log_key, wkey, wstore)
    replay = ledger_pb2.PeerWitnessRequest(header=header(), old_size=16, checkpoint=first.note)
    resp = witness(replay, log_key, wkey, wstore)
    assert resp.status == S.WITNESS_STATUS_ROLLBACK and resp.known_size == 16
    (ev,) = wstore.evidence(ORIGIN)
    assert ev.kind == "rollback" and ev.shown_note == first.note


def test_checkpoint_not_signed_by_sender_is_refused(
    new_ledger: NewLedger, log_key, wkey, wstore
) -> None:  # type: ignore[no-untyped-def]
    impostor = new_ledger(n=4, every=4, signer=SigningKey(bytes(32)))
    req = make_witness_request(impostor, header())
    assert witness(req, log_key, wkey, wstore).status == S.WITNESS_STATUS_BAD_SIGNATURE
    assert wstore.latest(ORIGIN) is None


def test_other_logs_origin_is_refused(new_ledger: NewLedger, log_key, wkey, wstore) -> None:  # type: ignore[no-untyped-def]
    other = new_ledger(n=4, every=4, origin="130000.gateway.dataexchange.cn/ledger")
    req = make_witness_request(other, header())
    assert witness(req, log_key, wkey, wstore).status == S.WITNESS_STATUS_UNKNOWN_LOG


def test_tampered_cosignature_is_not_stored(new_ledger: NewLedger, log_key, wkey, wstore) -> None:  # type: ignore[no-untyped-def]
    ledger = new_ledger(n=4, every=4)
    req = make_witness_request(ledger, header())
    resp = witness(req, log_key, wkey, wstore)
    resp.cosignature = resp.cosignature[:-6] + "AAAA=\n"
    with pytest.raises(VerificationFailed):
        apply_witness_response(ledger, req, resp, "120000", WITNESS, wkey.verify_key)
    assert ledger.latest_checkpoint().note.count("\u2014") == 1  # type: ignore[union-attr]


def test_restoring_an_old_backup_keeps_the_newer_cosigned_size_so_a_rollback_to_it_is_still_caught(
    new_ledger: NewLedger, log_key, wkey, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The attack: this gateway, as a witness, cosigned a peer's log at size 8,
    was backed up, then cosigned it at 21. An operator restores the backup; if
    its witness.sqlite (size 8) replaced the one in place, the peer could roll
    its log back to size 8 (or fork after it) and this witness would cosign it
    again. Restore keeps the newer state per log and every piece of evidence."""
    import hashlib
    import shutil

    from gateway.ops.backup import FORMAT, BackupManifest, install_backup

    data, old = tmp_path / "data", tmp_path / "old"
    data.mkdir()
    old.mkdir()
    store = SqliteWitnessStore(data / "witness.sqlite")
    ledger = new_ledger(n=8, every=8)
    assert round_trip(ledger, log_key, wkey, store) == 8
    at_8 = make_witness_request(ledger, header())
    store.close()
    shutil.copy2(data / "witness.sqlite", old / "witness.sqlite")  # the backup
    store = SqliteWitnessStore(data / "witness.sqlite")
    ledger.append_many(make_event(i) for i in range(8, 21))
    ledger.checkpoint_now()
    assert round_trip(ledger, log_key, wkey, store) == 21
    at_8.old_size = 21  # the rolled-back log claims what the witness last cosigned
    assert witness(at_8, log_key, wkey, store).status == S.WITNESS_STATUS_ROLLBACK
    evidence = store.evidence()
    store.close()

    digest = hashlib.sha256((old / "witness.sqlite").read_bytes()).hexdigest()
    manifest = BackupManifest(
        FORMAT, "120000", "2026-01-01T00:00:00Z", 0, {"witness.sqlite": digest}
    )
    done = install_backup(old, manifest, data, data / "pre-restore")

    store = SqliteWitnessStore(data / "witness.sqlite")
    try:
        assert store.latest(ORIGIN).size == 21  # type: ignore[union-attr]
        assert store.evidence() == evidence
        resp = witness(at_8, log_key, wkey, store)
        assert resp.status == S.WITNESS_STATUS_ROLLBACK and not resp.cosignature
        assert len(store.evidence()) == len(evidence) + 1
    finally:
        store.close()
    assert any(
        n.startswith("witness.sqlite: the backup's merged") and ORIGIN in n for n in done.notes
    ), done.notes
