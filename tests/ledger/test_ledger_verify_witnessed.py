"""`ledger verify` checks cosignatures and outside checkpoints; verify and export agree.

Attacks: a flipped or removed cosignature, a deleted newest checkpoint, entries
cut together with their checkpoints, a fork shown to a witness.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.storage import SqliteLedgerStore
from gateway.ledger.trustkeys import TrustedKeys
from gateway.ledger.verify import LedgerReport, verify_store
from tests.ledger.ledger_testkit import (
    ORIGIN,
    make_event,
    witness_round,
    write_trust_bundle,
)

NewLedger = Callable[..., SqliteLedger]


@pytest.fixture
def path(new_ledger: NewLedger, tmp_path: Path) -> Path:
    ledger = new_ledger(n=40, every=8)
    witness_round(ledger, "120000", tmp_path / "w120.db")
    witness_round(ledger, "130000", tmp_path / "w130.db")
    ledger.close()
    return tmp_path / "ledger.db"


def run(path: Path, keys: TrustedKeys, **kw: object) -> LedgerReport:
    store = SqliteLedgerStore(path, readonly=True)
    try:
        return verify_store(store, ORIGIN, keys, **kw)  # type: ignore[arg-type]
    finally:
        store.close()


def newest_note(path: Path) -> str:
    db = sqlite3.connect(path)
    (note,) = db.execute("SELECT note FROM ledger_checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
    db.close()
    return str(note)


def set_newest_note(path: Path, note: str) -> None:
    db = sqlite3.connect(path)
    db.execute(
        "UPDATE ledger_checkpoints SET note = ? WHERE seq = "
        "(SELECT MAX(seq) FROM ledger_checkpoints)",
        (note,),
    )
    db.commit()
    db.close()


def flip_cosignature(note: str) -> str:
    lines = note.split("\n")
    i = next(n for n, ln in enumerate(lines) if "/witness " in ln)
    name, blob = lines[i].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    lines[i] = f"{name} {base64.b64encode(bytes(raw)).decode()}"
    return "\n".join(lines)


def remove_cosignatures(note: str) -> str:
    return "".join(ln + "\n" for ln in note.splitlines() if "/witness " not in ln)


def test_report_names_who_cosigned_each_checkpoint(path: Path, keys: TrustedKeys) -> None:
    r = run(path, keys)
    assert r.ok and r.witnesses_checked
    assert r.stored[-1].cosigners == ("120000", "130000")
    assert all(c.cosigners == () for c in r.stored[:-1])


def test_flipped_cosignature_fails(path: Path, keys: TrustedKeys) -> None:
    set_newest_note(path, flip_cosignature(newest_note(path)))
    r = run(path, keys)
    assert r.problem is not None and r.problem.kind == "cosignature-invalid"
    assert r.entries == 40 and r.checkpoints == 5  # the counts stay right on failure


def test_removed_cosignature_fails_the_witness_requirement(path: Path, keys: TrustedKeys) -> None:
    assert run(path, keys, require_witnesses=2).ok
    set_newest_note(path, remove_cosignatures(newest_note(path)))
    r = run(path, keys, require_witnesses=1)
    assert r.problem is not None and r.problem.kind == "witnesses-missing"


def test_witness_note_covering_every_entry_excludes_truncation_without_warning(
    path: Path, keys: TrustedKeys
) -> None:
    note = newest_note(path)
    r = run(path, keys, trusted=[("witness 120000", note)])
    assert r.ok and r.truncation_excluded_below == 40 and not r.warnings
    assert r.outside[0].cosigners == ("120000", "130000")


def test_deleted_newest_checkpoint_is_caught_by_the_witness_note(
    path: Path, keys: TrustedKeys
) -> None:
    note = newest_note(path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM ledger_checkpoints WHERE seq = 4")
    db.execute("DELETE FROM ledger_entries WHERE idx >= 32")
    db.commit()
    db.close()
    alone = run(path, keys)
    assert alone.ok and alone.truncation_excluded_below == 0  # the file alone cannot tell
    r = run(path, keys, trusted=[note])
    assert r.problem is not None and r.problem.kind == "truncated" and r.problem.index == 32


def test_fork_shown_to_a_witness_is_named(
    path: Path, keys: TrustedKeys, new_ledger: NewLedger
) -> None:
    other = new_ledger("fork.db", n=0, every=8)
    other.append_many(make_event(i, reason="another history") for i in range(40))
    forked = other.latest_checkpoint()
    assert forked is not None and forked.checkpoint.size == 40
    r = run(path, keys, trusted=[forked.note])
    assert r.problem is not None and r.problem.kind == "fork"


def test_cli_verify_and_export_accept_and_refuse_the_same_files(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = write_trust_bundle(tmp_path / "trust")
    verify = ["ledger", "verify", str(path), "--bundle", str(trust)]
    export = ["ledger", "export", "--ledger", str(path), "--bundle", str(trust),
              "--request-id", "req-000003", "-o", str(tmp_path / "e.json")]  # fmt: skip
    assert main(verify) == 0 and main(export) == 0
    out = capsys.readouterr().out
    assert "checkpoint #4 (size 40): cosigned by 120000, 130000" in out
    assert "truncation: CANNOT be excluded" in out
    set_newest_note(path, flip_cosignature(newest_note(path)))
    assert main(verify) == 1 and main(export) == 1
    out = capsys.readouterr().out
    assert "ledger 110000.gateway.dataexchange.cn/ledger: 40 entries, 5 checkpoints" in out
    assert "FAILED (cosignature-invalid)" in out


def test_cli_verify_with_a_witness_database_excludes_truncation(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = write_trust_bundle(tmp_path / "trust")
    args = ["ledger", "verify", str(path), "--bundle", str(trust),
            "--witness-db", str(tmp_path / "w120.db"), "--require-witnesses", "2"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "truncation: excluded below size 40" in out and "warning" not in out


def test_cli_output_has_no_progress_bar_lines_when_not_on_a_terminal(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.cli.ledger as cli_ledger

    monkeypatch.setattr(cli_ledger, "PROGRESS_THRESHOLD", 1)  # a "long" ledger
    trust = write_trust_bundle(tmp_path / "trust")
    assert main(["ledger", "verify", str(path), "--bundle", str(trust)]) == 0
    out, err = capsys.readouterr()
    assert all(line.startswith(("ledger ", "  ")) for line in out.splitlines()), out
    assert "verifying" not in out + err


def test_retired_witness_key_cosigning_with_a_far_future_time_fails(
    path: Path, keys: TrustedKeys
) -> None:
    """A witness key retired (e.g. after a compromise) must not cosign again by stamping
    its cosignature with a time too large for milliseconds: that time is still checked
    against the key's validity interval, not read as "any time"."""
    import dataclasses

    from gateway.ledger.note import cosign, parse_note
    from gateway.ledger.trustkeys import KeyEntry
    from tests.ledger.ledger_testkit import fixed_key, ledger_key, witness_name

    retired_at = 1_000_000_000_000  # long before the ledger's entries
    new_key = fixed_key(ledger_key("120000").verify_key.suite, bytes([77]) * 32).verify_key
    rotated = TrustedKeys(
        keys.signers,
        (
            *(
                dataclasses.replace(e, valid_until_ms=retired_at)
                if (e.jurisdiction, e.kind) == ("120000", "witness")
                else e
                for e in keys.entries
            ),
            KeyEntry("120000", "witness", new_key, valid_from_ms=retired_at),
        ),
        keys.source,
    )
    note = newest_note(path)
    text, sigs = parse_note(note)
    forged = cosign(text, witness_name("120000"), ledger_key("120000"), 2**60)
    lines = [s.line() for s in sigs if s.name != witness_name("120000")]
    set_newest_note(path, text + "\n" + "".join([*lines, forged.line()]))
    r = run(path, rotated)
    assert r.problem is not None and r.problem.kind == "cosignature-invalid", r


def test_signed_empty_tree_with_a_non_empty_root_fails(path: Path, keys: TrustedKeys) -> None:
    """A checkpoint of size 0 has exactly one valid root (the empty tree's); one signing
    any other root was accepted because size-0 roots were never compared."""
    from gateway.ledger.note import Checkpoint, sign_checkpoint
    from tests.ledger.ledger_testkit import ledger_key

    bogus = sign_checkpoint(Checkpoint(ORIGIN, 0, b"\x01" * 32), ledger_key("110000"))
    r = run(path, keys, trusted=[("outside checkpoint 0", bogus)])
    assert r.problem is not None and r.problem.kind == "trusted-checkpoint-invalid", r.problem
    assert "size 0" in r.problem.detail
