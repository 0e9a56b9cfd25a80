"""Evidence bundles: export, verify offline, fail on any changed byte; CLI with a trust bundle."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import crypto
from gateway._proto.dataexchange.gateway.v1 import peer_pb2
from gateway.cli import main
from gateway.crypto import SigningKey, cert_fingerprint, make_tls_identity
from gateway.errors import NotFound, VerificationFailed
from gateway.ledger.bundle import MemberKeys, export_bundle, verify_bundle_bytes
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.merkle import TreeHasher
from gateway.ledger.witness import (
    SqliteWitnessStore,
    apply_witness_response,
    handle_witness_request,
    make_witness_request,
)
from tests.ledger.conftest import suite_key
from tests.ledger.ledger_testkit import ORIGIN, make_event

NewLedger = Callable[..., SqliteLedger]
WITNESS = "120000.gateway.dataexchange.cn/witness"


@pytest.fixture
def cosigned(
    new_ledger: NewLedger, log_key: SigningKey, tmp_path: Path
) -> tuple[SqliteLedger, SigningKey]:
    ledger = new_ledger(n=12, every=4)
    wkey = suite_key(crypto.suite_of(log_key), bytes([5]) * 32)
    store = SqliteWitnessStore(tmp_path / "w.db")
    req = make_witness_request(ledger, peer_pb2.PeerHeader(sender="110000", recipient="120000"))
    resp = handle_witness_request(req, "110000", log_key.verify_key, wkey, WITNESS, store, 1.7e9)
    apply_witness_response(ledger, req, resp, "120000", WITNESS, wkey.verify_key)
    return ledger, wkey


def test_export_by_request_id_verifies_offline(cosigned: tuple[SqliteLedger, SigningKey]) -> None:
    ledger, wkey = cosigned
    data = export_bundle(ledger, request_id="req-000005", witness_keys={WITNESS: wkey.verify_key})
    report = verify_bundle_bytes(data)
    assert report.entries == 1 and report.tree_size == 12 and report.cosigners == (WITNESS,)
    pinned = verify_bundle_bytes(data, {ORIGIN: ledger.public_key})  # type: ignore[dict-item]
    assert pinned.key_source == "trust bundle"


def test_export_by_time_range(cosigned: tuple[SqliteLedger, SigningKey]) -> None:
    ledger, _ = cosigned
    t0 = 1_700_000_000_000
    data = export_bundle(ledger, since_ms=t0 + 3000, until_ms=t0 + 7000)
    assert verify_bundle_bytes(data).entries == 4


def test_every_flipped_byte_fails_verification(cosigned: tuple[SqliteLedger, SigningKey]) -> None:
    ledger, wkey = cosigned
    data = export_bundle(
        ledger,
        request_id="req-000002",
        witness_keys={WITNESS: wkey.verify_key},
        members=[MemberKeys("110000", ORIGIN, ledger.public_key)],
    )  # type: ignore[arg-type]
    verify_bundle_bytes(data)
    for pos in range(len(data)):
        for bit in (0x01, 0x20):
            bad = bytearray(data)
            bad[pos] ^= bit
            with pytest.raises(VerificationFailed):
                verify_bundle_bytes(bytes(bad))


def test_bundle_with_another_log_key_fails_against_trust(
    cosigned: tuple[SqliteLedger, SigningKey],
) -> None:
    ledger, _ = cosigned
    data = export_bundle(ledger, request_id="req-000001")
    with pytest.raises(VerificationFailed, match="differs from the trust bundle"):
        verify_bundle_bytes(data, {ORIGIN: SigningKey(bytes(32)).verify_key})


def test_uncovered_entry_cannot_be_exported(new_ledger: NewLedger) -> None:
    ledger = new_ledger(n=5, every=4)
    with pytest.raises(NotFound, match="checkpoint"):
        export_bundle(ledger, request_id="req-000004")


def _trust_bundle(tmp_path: Path, ledger_key: SigningKey) -> Path:
    from gateway.trust import AUTHORITY_PUB_FILE, BUNDLE_FILE, Member, sign_bundle

    suite = crypto.suite_of(ledger_key)
    authority = suite_key(suite, bytes([1]) * 32)
    tls = make_tls_identity("bj", ["bj.example"])
    member = Member(
        jurisdiction="110000",
        name="Beijing",
        endpoint="127.0.0.1:9000",
        signing_key=suite_key(suite, bytes([2]) * 32).verify_key,
        ledger_key=ledger_key.verify_key,
        seal_key=suite.generate_seal_key(lambda n: bytes([3]) * n).public_key,
        tls_cert_pem=tls.cert_pem,
        tls_fingerprint=cert_fingerprint(tls.cert_pem),
        datasets=("household_register",),
        origin=ORIGIN,
    )
    now = dt.datetime.now(dt.UTC)
    folder = tmp_path / "trust"
    folder.mkdir()
    (folder / BUNDLE_FILE).write_bytes(
        sign_bundle("demo", 1, now, now + dt.timedelta(days=1), [member], authority)
    )
    (folder / AUTHORITY_PUB_FILE).write_text(authority.verify_key.encode() + "\n")
    return folder / BUNDLE_FILE


def test_cli_export_and_verify_with_trust_bundle(
    cosigned: tuple[SqliteLedger, SigningKey],
    log_key: SigningKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger, _ = cosigned
    ledger.close()
    trust = _trust_bundle(tmp_path, log_key)
    out = tmp_path / "evidence.json"
    db = str(tmp_path / "ledger.db")
    assert (
        main(
            [
                "ledger",
                "export",
                "--ledger",
                db,
                "--request-id",
                "req-000003",
                "--bundle",
                str(trust),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert main(["ledger", "verify", str(out), "--bundle", str(trust)]) == 0
    assert "log key from: trust bundle" in capsys.readouterr().out
    assert main(["ledger", "verify", db, "--bundle", str(trust)]) == 0
    (tmp_path / "x").mkdir()
    other = _trust_bundle(tmp_path / "x", SigningKey(bytes(32)))  # pins a different log key
    assert main(["ledger", "verify", str(out), "--bundle", str(other)]) == 1
    assert main(["ledger", "verify", db, "--bundle", str(other)]) == 1
    bad = bytearray(out.read_bytes())
    bad[len(bad) // 2] ^= 1
    out.write_bytes(bytes(bad))
    assert main(["ledger", "verify", str(out), "--bundle", str(trust)]) == 1


def test_cli_checkpoint_and_proofs(
    new_ledger: NewLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str], tree: TreeHasher
) -> None:
    import base64
    import json

    from gateway.ledger.merkle import verify_consistency, verify_inclusion
    from gateway.ledger.note import Checkpoint, parse_note

    new_ledger(n=10, every=5).close()
    db = str(tmp_path / "ledger.db")
    assert main(["ledger", "checkpoint", db]) == 0
    note = capsys.readouterr().out
    cp = Checkpoint.parse(parse_note(note)[0])
    assert cp.size == 10
    assert main(["ledger", "proof", "inclusion", db, "--request-id", "req-000007"]) == 0
    p = json.loads(capsys.readouterr().out)
    d = base64.b64decode
    verify_inclusion(
        p["index"], p["tree_size"], d(p["leaf_hash"]), [d(x) for x in p["proof"]], cp.root, tree
    )
    assert main(["ledger", "proof", "consistency", db, "--old", "5"]) == 0
    c = json.loads(capsys.readouterr().out)
    verify_consistency(5, 10, [d(x) for x in c["proof"]], d(c["root1"]), cp.root, tree)
    assert make_event(0).request_id == "req-000000"
