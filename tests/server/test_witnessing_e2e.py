"""Peer witnessing over real mTLS: cosigned checkpoints, fork and rollback detection."""

from __future__ import annotations

import dataclasses

import pytest

from gateway import domains
from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, peer_pb2
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.note import parse_note
from gateway.ledger.witness import make_witness_request
from tests.conftest import SUITES, RunningFederation, start_federation, stop_federation
from tests.helpers import ledger_events


@pytest.fixture(params=SUITES)
def own_federation(tmp_path, request):  # type: ignore[no-untyped-def]
    """A fresh federation per test, once per cipher suite."""
    rf = start_federation(tmp_path, rows=60, suite=request.param)
    yield rf
    stop_federation(rf)


def _exchange(fed: RunningFederation) -> None:
    with fed.client("130000", "hebei-housing-fund") as c:
        c.get_records(
            holder_jurisdiction="110000", dataset="si_contributions",
            purpose="housing_fund_transfer", subject_ids=[fed.commuter()],
        )  # fmt: skip


def test_checkpoints_are_cosigned_by_every_peer(
    own_federation: RunningFederation, tmp_path
) -> None:
    _exchange(own_federation)
    bj = own_federation.gateways["110000"]
    outcomes = bj.checkpoint_and_witness()
    assert all(o.startswith("cosigned") for o in outcomes.values()), outcomes
    _, sigs = parse_note(bj.ledger.latest_checkpoint().note)
    names = {s.name for s in sigs}
    assert names == {
        bj.ledger.origin,
        "120000.gateway.dataexchange.cn/witness",
        "130000.gateway.dataexchange.cn/witness",
    }
    # A witness's copy proves the ledger file was not truncated afterwards.
    from gateway.cli import main

    note = tmp_path / "seen-by-120000.note"
    db = own_federation.site("120000").root / "data" / "witness.sqlite"
    assert (
        main(
            ["ledger", "witnessed", str(db), "--origin", bj.ledger.origin, "--note-out", str(note)]
        )
        == 0
    )
    ledger_file = str(own_federation.site("110000").root / "data" / "ledger.sqlite")
    bundle = str(own_federation.fed.bundle)
    assert (
        main(["ledger", "verify", ledger_file, "--bundle", bundle, "--checkpoint", str(note)]) == 0
    )


def _send_forged(
    fed: RunningFederation, forged: SqliteLedger, seen: int
) -> ledger_pb2.PeerWitnessResponse:
    bj = fed.gateways["110000"]
    req = make_witness_request(forged, peer_pb2.PeerHeader(recipient="120000"), peer_seen_size=seen)
    reply = bj.caller.call(
        "120000", "Witness", req, domains.PEER_WITNESS_REQUEST,
        domains.PEER_WITNESS_RESPONSE, ledger_pb2.PeerWitnessResponse,
    )  # fmt: skip
    return reply.response


def test_forked_ledger_is_detected_by_the_witness_and_evidence_kept(
    own_federation: RunningFederation, tmp_path
) -> None:
    fed = own_federation
    _exchange(fed)
    bj = fed.gateways["110000"]
    bj.checkpoint_and_witness()
    seen = bj.ledger.latest_checkpoint().checkpoint.size
    # Beijing rewrites its history: same key and origin, different entries.
    forged = SqliteLedger(tmp_path / "forged.sqlite", bj.keys.ledger, bj.ledger.origin)
    events = ledger_events(bj)
    forged.append_many([dataclasses.replace(e, reason="rewritten") for e in events])
    forged.append_many([dataclasses.replace(events[0], request_id=events[0].request_id)])
    forged.checkpoint_now()
    resp = _send_forged(fed, forged, seen)
    assert resp.status in (ledger_pb2.WITNESS_STATUS_INCONSISTENT, ledger_pb2.WITNESS_STATUS_FORK)
    assert fed.gateways["120000"].witness_store.evidence(), "both checkpoints must be kept"
    forged.close()
    # The compliance officer's view of the witness: the evidence is reported (exit 1).
    from gateway.cli import main

    db = fed.site("120000").root / "data" / "witness.sqlite"
    assert main(["ledger", "witnessed", str(db)]) == 1


def test_rolled_back_ledger_is_detected(own_federation: RunningFederation, tmp_path) -> None:
    fed = own_federation
    _exchange(fed)
    _exchange(fed)
    bj = fed.gateways["110000"]
    bj.checkpoint_and_witness()
    assert bj.ledger.latest_checkpoint().checkpoint.size == 2
    # Beijing shows a smaller tree than the witness already cosigned.
    truncated = SqliteLedger(tmp_path / "short.sqlite", bj.keys.ledger, bj.ledger.origin)
    truncated.append_many(ledger_events(bj)[:1])
    truncated.checkpoint_now()
    resp = _send_forged(fed, truncated, 0)
    assert resp.status != ledger_pb2.WITNESS_STATUS_COSIGNED
    assert fed.gateways["120000"].witness_store.evidence()
    truncated.close()


def test_evidence_bundle_carries_cosignatures_and_refuses_a_substituted_witness_key(
    own_federation: RunningFederation, tmp_path
) -> None:
    import json

    from gateway import crypto
    from gateway.cli import main
    from gateway.errors import VerificationFailed
    from gateway.ledger.bundle import seal, verify_bundle_bytes

    fed = own_federation
    _exchange(fed)
    bj = fed.gateways["110000"]
    bj.checkpoint_and_witness()
    rid = ledger_events(bj)[-1].request_id
    out = tmp_path / "evidence.json"
    bundle = str(fed.fed.bundle)
    ledger_path = str(fed.site("110000").root / "data" / "ledger.sqlite")
    assert main(["ledger", "export", "--ledger", ledger_path, "--request-id", rid,
                 "--bundle", bundle, "-o", str(out)]) == 0  # fmt: skip
    assert main(["ledger", "verify", str(out), "--bundle", bundle]) == 0
    report = verify_bundle_bytes(out.read_bytes())
    assert len(report.cosigners) == 2
    # Swap one witness's key for the attacker's and re-seal the bundle's checksum.
    doc = json.loads(out.read_bytes())
    name = report.cosigners[0]
    for m in doc["content"]["members"]:
        if m["jurisdiction"] == name:
            m["witness_key"] = [crypto.b64(crypto.SigningKey.generate().verify_key.raw)]
    forged = tmp_path / "forged.json"
    forged.write_bytes(seal(doc["content"]))
    assert main(["ledger", "verify", str(forged), "--bundle", bundle]) == 1
    with pytest.raises(VerificationFailed):
        verify_bundle_bytes(forged.read_bytes())  # even unpinned: the cosignature fails


def test_reconcile_over_the_gateways_ledger_apis_with_tls_and_tokens(
    own_federation: RunningFederation, tmp_path
) -> None:
    from gateway.cli import main

    fed = own_federation
    _exchange(fed)
    args = ["audit", "reconcile"]
    for code, service in (("110000", "beijing-audit"), ("130000", "hebei-audit")):
        site = fed.site(code)
        token = tmp_path / f"{code}.token"
        token.write_text(site.tokens[service])
        args.append(f"{code}@{site.service_address}")
    for x, code in (("a", "110000"), ("b", "130000")):
        args += [
            f"--cert-{x}",
            str(fed.site(code).tls_cert),
            f"--token-file-{x}",
            str(tmp_path / f"{code}.token"),
        ]
    assert main(args) == 0
    # Without a token the command asks for one; with a token the gateway does not
    # know, the gateway refuses the auditor.
    bad = [a for a in args if not a.startswith("--token-file") and not a.endswith(".token")]
    from gateway.cli.audit import read_side
    from gateway.errors import InvalidArgument, Unauthenticated

    assert main(bad) == 2
    with pytest.raises(InvalidArgument, match="--token-file"):
        read_side(args[2], fed.site("110000").tls_cert, None)
    unknown = tmp_path / "unknown.token"
    unknown.write_text("svc_not-a-registered-token")
    with pytest.raises(Unauthenticated):
        read_side(args[2], fed.site("110000").tls_cert, unknown)


def test_ledger_verify_fetches_witnessed_checkpoints_live_and_excludes_truncation(
    own_federation: RunningFederation, tmp_path, capsys
) -> None:  # type: ignore[no-untyped-def]
    """`ledger verify --from-witness` asks the witnesses' Ledger APIs for the checkpoint they
    cosigned; a ledger file cut short (entries and checkpoints) then fails as truncated."""
    import shutil
    import sqlite3

    from gateway.cli import main

    fed = own_federation
    _exchange(fed)
    bj = fed.gateways["110000"]
    bj.checkpoint_and_witness()
    args = []
    for code, service in (("120000", "tianjin-audit"), ("130000", "hebei-audit")):
        site = fed.site(code)
        token = tmp_path / f"{code}.token"
        token.write_text(site.tokens[service])
        args += ["--from-witness", f"{code}@{site.service_address}",
                 "--witness-cert", str(site.tls_cert), "--witness-token-file", str(token)]  # fmt: skip
    copy = tmp_path / "bj-copy.sqlite"
    shutil.copy(fed.site("110000").root / "data" / "ledger.sqlite", copy)
    for suffix in ("-wal", "-shm"):
        src = fed.site("110000").root / "data" / f"ledger.sqlite{suffix}"
        if src.exists():
            shutil.copy(src, str(copy) + suffix)
    bundle = str(fed.fed.bundle)
    assert main(["ledger", "verify", str(copy), "--bundle", bundle, *args]) == 0
    out = capsys.readouterr().out
    assert "checkpoint witnessed by 120000@" in out and "truncation: excluded below size" in out
    db = sqlite3.connect(copy)
    size = db.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0]
    db.execute("DELETE FROM ledger_entries WHERE idx >= ?", (size - 1,))
    db.execute("DELETE FROM ledger_checkpoints WHERE size >= ?", (size - 1,))
    db.commit()
    db.close()
    assert main(["ledger", "verify", str(copy), "--bundle", bundle]) == 0  # the file alone
    assert main(["ledger", "verify", str(copy), "--bundle", bundle, *args]) == 1
    assert "FAILED (truncated)" in capsys.readouterr().out
