"""Evidence bundles: trusted only through signatures and proofs; range bundles prove completeness.

Mutation tests in the style of transparency-dev/merkle: each mutation is
re-sealed (canonical JSON and checksum recomputed), so only the signatures,
proofs and the trust bundle can catch it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import crypto
from gateway.cli import main
from gateway.errors import NotFound, VerificationFailed
from gateway.ledger.bundle import export_bundle, seal, verify_bundle_bytes
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.merkle import TreeHasher
from gateway.ledger.trustkeys import TrustedKeys
from tests.ledger.ledger_testkit import (
    federation_keys,
    make_event,
    witness_round,
    write_trust_bundle,
)

NewLedger = Callable[..., SqliteLedger]
T0 = 1_700_000_000_000


@pytest.fixture
def cosigned(new_ledger: NewLedger, tmp_path: Path) -> SqliteLedger:
    """40 entries, checkpoints every 8, the newest cosigned by 120000 and 130000."""
    ledger = new_ledger(n=40, every=8)
    witness_round(ledger, "120000", tmp_path / "w120.db")
    witness_round(ledger, "130000", tmp_path / "w130.db")
    return ledger


def content(data: bytes) -> dict[str, Any]:
    return json.loads(data)["content"]  # type: ignore[no-any-return]


def test_export_by_request_id_verifies_against_the_trust_bundle(
    cosigned: SqliteLedger, keys: TrustedKeys
) -> None:
    data = export_bundle(cosigned, keys, request_id="req-000005", require_witnesses=2)
    report = verify_bundle_bytes(data, keys)
    assert report.entries == 1 and report.tree_size == 40
    assert report.cosigners == ("120000", "130000") and report.key_source == "test federation"
    assert "NOT independently trusted" in verify_bundle_bytes(data).key_source


def test_range_bundle_includes_the_neighbours_and_says_it_is_complete(
    cosigned: SqliteLedger, keys: TrustedKeys
) -> None:
    data = export_bundle(cosigned, keys, since_ms=T0 + 3000, until_ms=T0 + 7000)
    report = verify_bundle_bytes(data, keys)
    assert (
        report.entries == 4 and report.context == 2 and report.completeness.startswith("complete")
    )
    assert [e["index"] for e in content(data)["entries"]] == [2, 3, 4, 5, 6, 7]


def test_range_bundle_at_the_start_of_the_ledger_needs_no_left_neighbour(
    cosigned: SqliteLedger, keys: TrustedKeys
) -> None:
    data = export_bundle(cosigned, keys, since_ms=0, until_ms=T0 + 2000)
    assert [e["index"] for e in content(data)["entries"]] == [0, 1, 2]
    assert verify_bundle_bytes(data, keys).entries == 2


def test_range_bundle_at_the_export_limit_is_complete_or_refused_never_clipped(
    new_ledger: NewLedger, keys: TrustedKeys
) -> None:
    """Export fetched the range plus its two neighbours through a read capped at
    max_export_entries: a range of exactly that many entries lost its last ones and its
    right neighbour, and the evidence could not verify. Verification bounds the entries
    it reads by the same limit (plus the two neighbours)."""
    from gateway.limits import Limits

    at_limit = Limits(max_export_entries=4)
    ledger = new_ledger("limit.db", n=40, every=8, limits=at_limit)
    data = export_bundle(ledger, keys, since_ms=T0 + 3000, until_ms=T0 + 7000, limits=at_limit)
    assert [e["index"] for e in content(data)["entries"]] == [2, 3, 4, 5, 6, 7]
    ok = verify_bundle_bytes(data, keys, require_witnesses=0, limits=at_limit)
    assert ok.entries == 4 and ok.completeness.startswith("complete")
    with pytest.raises(VerificationFailed, match="more than 3 entries"):
        verify_bundle_bytes(data, keys, require_witnesses=0, limits=Limits(max_export_entries=3))


def test_every_flipped_byte_fails_verification(cosigned: SqliteLedger, keys: TrustedKeys) -> None:
    data = export_bundle(cosigned, keys, request_id="req-000002")
    verify_bundle_bytes(data, keys)
    for pos in range(0, len(data), 7):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(VerificationFailed):
            verify_bundle_bytes(bytes(bad), keys)


def test_uncovered_entry_cannot_be_exported(new_ledger: NewLedger, keys: TrustedKeys) -> None:
    ledger = new_ledger(n=5, every=4)
    with pytest.raises(NotFound, match="checkpoint"):
        export_bundle(ledger, keys, request_id="req-000004")


def test_export_refuses_a_checkpoint_without_enough_witnesses(
    new_ledger: NewLedger, keys: TrustedKeys
) -> None:
    ledger = new_ledger(n=8, every=4)
    with pytest.raises(NotFound, match="cosigned by 1 witness"):
        export_bundle(ledger, keys, request_id="req-000001", require_witnesses=1)


# --------------------------------------------------------------------------
# Re-sealed mutations
# --------------------------------------------------------------------------


def _member(c: dict[str, Any], j: str) -> dict[str, Any]:
    return next(m for m in c["members"] if m["jurisdiction"] == j)


def _fake_key(c: dict[str, Any]) -> str:
    """Another valid key of the bundle's own suite (not a suite mismatch)."""
    return crypto.suite(c["suite"]).generate_signing_key().verify_key.encode()


def _swap_signing_key(c: dict[str, Any]) -> None:
    _member(c, "120000")["signing_key"] = [_fake_key(c)]


def _swap_log_key(c: dict[str, Any]) -> None:
    _member(c, "110000")["ledger_key"] = [_fake_key(c)]


def _swap_witness_key(c: dict[str, Any]) -> None:
    _member(c, "130000")["witness_key"] = [_fake_key(c)]


def _remove_counterparty(c: dict[str, Any]) -> None:
    c["members"] = [m for m in c["members"] if m["jurisdiction"] != "120000"]


def _remove_witness_member(c: dict[str, Any]) -> None:
    c["members"] = [m for m in c["members"] if m["jurisdiction"] != "130000"]


def _strip_cosignatures(c: dict[str, Any]) -> None:
    text, _, sigs = c["checkpoint"].partition("\n\n")
    first = sigs.splitlines()[0]
    c["checkpoint"] = f"{text}\n\n{first}\n"


def _strip_cosignatures_and_witnesses(c: dict[str, Any]) -> None:
    _strip_cosignatures(c)
    c["members"] = [m for m in c["members"] if m["jurisdiction"] in ("110000", "120000")]


def _flip_cosignature(c: dict[str, Any]) -> None:
    lines = c["checkpoint"].split("\n")
    i = next(n for n, ln in enumerate(lines) if "/witness " in ln)
    name, blob = lines[i].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    lines[i] = f"{name} {base64.b64encode(bytes(raw)).decode()}"
    c["checkpoint"] = "\n".join(lines)


def _truncate_proof(c: dict[str, Any]) -> None:
    c["entries"][0]["proof"] = c["entries"][0]["proof"][:-1]


def _extend_proof(c: dict[str, Any]) -> None:
    c["entries"][0]["proof"].append(c["entries"][0]["proof"][0])


def _drop_middle_entry(c: dict[str, Any]) -> None:
    del c["entries"][2]


def _drop_left_neighbour(c: dict[str, Any]) -> None:
    del c["entries"][0]


def _drop_right_neighbour(c: dict[str, Any]) -> None:
    del c["entries"][-1]


def _reorder_entries(c: dict[str, Any]) -> None:
    c["entries"][1], c["entries"][2] = c["entries"][2], c["entries"][1]


def _widen_range(c: dict[str, Any]) -> None:
    c["selection"]["until_ms"] += 1000  # the right neighbour now falls inside


def _narrow_range(c: dict[str, Any]) -> None:
    c["selection"]["since_ms"] += 1000  # an entry now counts as a neighbour: two on the left


def _repeat_entry(c: dict[str, Any]) -> None:
    c["entries"].insert(1, dict(c["entries"][1]))


RANGE_MUTATIONS = [
    _swap_signing_key,
    _swap_log_key,
    _swap_witness_key,
    _remove_counterparty,
    _remove_witness_member,
    _strip_cosignatures_and_witnesses,
    _flip_cosignature,
    _truncate_proof,
    _extend_proof,
    _drop_middle_entry,
    _drop_left_neighbour,
    _drop_right_neighbour,
    _reorder_entries,
    _widen_range,
    _narrow_range,
    _repeat_entry,
]


@pytest.mark.parametrize("mutate", RANGE_MUTATIONS, ids=lambda f: f.__name__.strip("_"))
def test_resealed_mutation_of_a_range_bundle_fails_with_the_trust_bundle(
    cosigned: SqliteLedger, keys: TrustedKeys, mutate: Callable[[dict[str, Any]], None]
) -> None:
    data = export_bundle(cosigned, keys, since_ms=T0 + 3000, until_ms=T0 + 7000)
    c = content(data)
    mutate(c)
    forged = seal(c)
    assert forged != data
    with pytest.raises(VerificationFailed):
        verify_bundle_bytes(forged, keys)


@pytest.mark.parametrize(
    "mutate",
    [_swap_log_key, _flip_cosignature, _truncate_proof, _drop_middle_entry, _remove_counterparty],
    ids=lambda f: f.__name__.strip("_"),
)
def test_resealed_mutation_fails_even_without_a_trust_bundle(
    cosigned: SqliteLedger, keys: TrustedKeys, mutate: Callable[[dict[str, Any]], None]
) -> None:
    """What the file's own signatures and proofs catch, whatever keys it carries."""
    c = content(export_bundle(cosigned, keys, since_ms=T0 + 3000, until_ms=T0 + 7000))
    mutate(c)
    with pytest.raises(VerificationFailed):
        verify_bundle_bytes(seal(c))


def test_stripped_cosignatures_fail_the_trust_bundles_witness_requirement(
    cosigned: SqliteLedger, keys: TrustedKeys
) -> None:
    c = content(export_bundle(cosigned, keys, request_id="req-000003"))
    _strip_cosignatures(c)
    with pytest.raises(VerificationFailed, match="cosigned by 0 trusted witness"):
        verify_bundle_bytes(seal(c), keys)
    intact = export_bundle(cosigned, keys, request_id="req-000003")
    with pytest.raises(VerificationFailed, match="3 required"):
        verify_bundle_bytes(intact, keys, require_witnesses=3)


def test_entry_swapped_for_another_with_its_own_valid_proof_is_out_of_selection(
    cosigned: SqliteLedger, keys: TrustedKeys
) -> None:
    c = content(export_bundle(cosigned, keys, request_id="req-000003"))
    other = content(export_bundle(cosigned, keys, request_id="req-000009"))
    c["entries"] = other["entries"]
    with pytest.raises(VerificationFailed, match="not in the selection"):
        verify_bundle_bytes(seal(c), keys)


def test_older_format_is_refused_by_name(cosigned: SqliteLedger, keys: TrustedKeys) -> None:
    c = content(export_bundle(cosigned, keys, request_id="req-000003"))
    c["format"] = "jgw-ledger-evidence-v1"
    with pytest.raises(VerificationFailed, match="not supported"):
        verify_bundle_bytes(seal(c), keys)


def test_evidence_of_the_other_suite_is_a_named_suite_mismatch(
    cosigned: SqliteLedger, keys: TrustedKeys, suite: crypto.Suite
) -> None:
    """The bundle names its suite (its tree hash and key types); a trust bundle of the
    other suite refuses it by name, and so does a re-sealed file renaming its suite."""
    data = export_bundle(cosigned, keys, request_id="req-000003")
    assert content(data)["suite"] == suite.name
    other = "gm" if suite.name == "intl" else "intl"
    with pytest.raises(VerificationFailed, match=f"suite {suite.name} .* uses suite {other}"):
        verify_bundle_bytes(data, federation_keys(other))
    c = content(data)
    c["suite"] = other
    with pytest.raises(VerificationFailed, match="suite"):
        verify_bundle_bytes(seal(c), keys)
    with pytest.raises(VerificationFailed, match="suite"):
        verify_bundle_bytes(seal(c))  # its embedded keys are not of the suite it names


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def test_cli_export_and_verify_with_trust_bundle(
    cosigned: SqliteLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cosigned.close()
    trust = write_trust_bundle(tmp_path / "trust")
    out = tmp_path / "evidence.json"
    db = str(tmp_path / "ledger.db")
    export = ["ledger", "export", "--ledger", db, "--bundle", str(trust), "-o", str(out)]
    assert main([*export, "--request-id", "req-000003"]) == 0
    assert main(["ledger", "verify", str(out), "--bundle", str(trust)]) == 0
    printed = capsys.readouterr().out
    assert "keys from: trust bundle test v1" in printed
    assert "cosigned by: 120000, 130000" in printed
    assert main(["ledger", "verify", db, "--bundle", str(trust)]) == 0
    other = write_trust_bundle(tmp_path / "x", ledger_seeds={"110000": bytes(32)})
    assert main(["ledger", "verify", str(out), "--bundle", str(other)]) == 1
    assert main(["ledger", "verify", db, "--bundle", str(other)]) == 1
    capsys.readouterr()
    bad = bytearray(out.read_bytes())
    bad[0] ^= 1  # damaged from the first byte on: still recognised as evidence
    out.write_bytes(bytes(bad))
    assert main(["ledger", "verify", str(out), "--bundle", str(trust)]) == 1
    assert f"evidence bundle {out}:" in capsys.readouterr().out


def test_cli_range_export_verifies_and_reports_completeness(
    cosigned: SqliteLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cosigned.close()
    trust = write_trust_bundle(tmp_path / "trust")
    out = tmp_path / "range.json"
    since = "2023-11-14T22:13:23+00:00"  # T0 + 3 s
    until = "2023-11-14T22:13:27+00:00"
    assert main(["ledger", "export", "--ledger", str(tmp_path / "ledger.db"), "--since", since,
                 "--until", until, "--bundle", str(trust), "-o", str(out)]) == 0  # fmt: skip
    assert main(["ledger", "verify", str(out), "--bundle", str(trust)]) == 0
    printed = capsys.readouterr().out
    assert "OK: 4 entries" in printed and "plus 2 neighbouring entries" in printed
    assert "range complete" in printed


def test_cli_checkpoint_and_proofs(
    new_ledger: NewLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str], tree: TreeHasher
) -> None:
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


def test_evidence_whose_requester_key_was_replaced_fails_with_and_without_trust(
    cosigned: SqliteLedger, keys: TrustedKeys
) -> None:
    """The issue's case: requester signing key replaced by random bytes, checksum recomputed."""
    c = content(export_bundle(cosigned, keys, request_id="req-000003"))
    _swap_signing_key(c)  # 120000 is the requester of every test entry
    with pytest.raises(VerificationFailed, match="signing key differs from the trust bundle"):
        verify_bundle_bytes(seal(c), keys)
    with pytest.raises(VerificationFailed, match="requester's signature does not verify"):
        verify_bundle_bytes(seal(c))


def test_entry_recording_a_forged_signature_fails_evidence_and_ledger_verification(
    new_ledger: NewLedger, keys: TrustedKeys, tmp_path: Path
) -> None:
    from gateway.crypto import b64
    from gateway.ledger.verify import verify_store

    ledger = new_ledger("forged.db", n=0, every=4)
    ledger.append_many(
        make_event(i, holder_signature=b64(bytes(64))) if i == 2 else make_event(i)
        for i in range(8)
    )
    witness_round(ledger, "120000", tmp_path / "w.db")
    with pytest.raises(VerificationFailed, match="holder's signature does not verify"):
        verify_bundle_bytes(export_bundle(ledger, keys, request_id="req-000002"), keys)
    r = verify_store(ledger.store, ledger.origin, keys, check_signatures=True)  # type: ignore[arg-type]
    assert r.problem is not None and r.problem.kind == "entry-signature-invalid"
    assert r.problem.index == 2
    ok = verify_store(ledger.store, ledger.origin, keys)  # type: ignore[arg-type]
    assert ok.ok and ok.signatures is None  # structure alone does not see it


def test_cli_verify_refuses_a_forged_ledger_or_evidence_that_vouches_for_itself(
    new_ledger: NewLedger, keys: TrustedKeys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forger writes a whole ledger (and evidence from it) under the real origin with its
    own log key. The files carry that key (the ledger's ``vkey``, the evidence's embedded
    members); verifying with it proves nothing, so without --bundle (or --key) verify must
    not exit 0."""
    import dataclasses

    from tests.ledger.ledger_testkit import fixed_key

    forger = fixed_key(keys.entries[0].key.suite, bytes([66]) * 32)
    ledger = new_ledger("forged.db", n=0, every=4, signer=forger)
    ledger.append_many(make_event(i, reason="history the forger wants") for i in range(8))
    forged_keys = TrustedKeys(
        keys.signers,
        tuple(
            dataclasses.replace(e, key=forger.verify_key)
            if e.jurisdiction == "110000" and e.kind in ("ledger", "witness")
            else e
            for e in keys.entries
        ),
        "the forger's keys",
    )
    evidence = tmp_path / "forged.json"
    evidence.write_bytes(export_bundle(ledger, forged_keys, request_id="req-000003"))
    ledger.close()
    for path in (tmp_path / "forged.db", evidence):
        assert main(["ledger", "verify", str(path)]) != 0
        out, err = capsys.readouterr()
        assert "OK" not in out and "--bundle" in err
    trust = write_trust_bundle(tmp_path / "trust")  # the real federation's keys refuse both
    for path in (tmp_path / "forged.db", evidence):
        assert main(["ledger", "verify", str(path), "--bundle", str(trust)]) == 1
