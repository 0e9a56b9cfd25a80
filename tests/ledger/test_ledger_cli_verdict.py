"""`ledger verify` says exactly what it checked: its OK line never claims a check that was
not made (with `--key` only the log's key is known: no cosignature or exchange signature is
checked), and counts that make no sense are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.note import vkey
from tests.ledger.ledger_testkit import (
    ORIGIN,
    ledger_key,
    make_event,
    witness_round,
    write_trust_bundle,
)


def _ledger(tmp_path: Path, *, forged: bool) -> Path:
    path = tmp_path / ("forged.db" if forged else "ledger.db")
    ledger = SqliteLedger(path, ledger_key("110000", "intl"), ORIGIN)
    genuine = make_event(0)
    second = (
        # The log's operator records a transfer 120000 never asked for: the chain, tree
        # and checkpoint are sound, the requester's signature is not over this digest.
        make_event(1, request_digest="c" * 64, requester_signature=genuine.requester_signature)
        if forged
        else make_event(1)
    )
    ledger.append_many([genuine, second])
    ledger.checkpoint_now()
    witness_round(ledger, "120000", tmp_path / "w120.db")
    ledger.close()
    return path


def _verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["ledger", "verify", *argv])
    out = capsys.readouterr().out
    ok = [line for line in out.splitlines() if line.strip().startswith("OK:")]
    not_checked = [line for line in out.splitlines() if "NOT checked" in line]
    return rc, (ok[0] if ok else ""), (not_checked[0] if not_checked else "")


def test_ledger_with_a_forged_requester_signature_verified_with_key_only_does_not_claim_signatures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(_ledger(tmp_path, forged=True))
    key = vkey(ORIGIN, ledger_key("110000", "intl").verify_key)
    rc, ok, not_checked = _verify(capsys, path, "--key", key)
    assert rc == 0 and ok
    assert "cosignature" not in ok and "exchange signature" not in ok, ok
    assert "hash chain" in ok and "log signatures of 1 checkpoints" in ok, ok
    assert "cosignatures" in not_checked and "exchange signatures" in not_checked, not_checked
    # What --key cannot see, the trust bundle catches.
    trust = str(write_trust_bundle(tmp_path / "trust"))
    assert main(["ledger", "verify", path, "--bundle", trust]) == 1


def test_ok_line_names_each_check_made_and_each_left_out_by_an_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(_ledger(tmp_path, forged=False))
    trust = str(write_trust_bundle(tmp_path / "trust"))
    rc, ok, not_checked = _verify(capsys, path, "--bundle", trust)
    assert rc == 0 and not not_checked
    assert "stored Merkle nodes" in ok
    assert "cosignatures and exchange signatures verify" in ok, ok
    rc, ok, not_checked = _verify(capsys, path, "--bundle", trust, "--no-signatures")
    assert rc == 0 and "cosignatures verify" in ok and "exchange signature" not in ok, ok
    assert "exchange signatures (--no-signatures)" in not_checked
    rc, ok, not_checked = _verify(capsys, path, "--bundle", trust, "--no-nodes")
    assert rc == 0 and "stored Merkle nodes" not in ok
    assert "stored Merkle nodes (--no-nodes)" in not_checked


def test_negative_witness_requirement_is_refused_by_verify_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(_ledger(tmp_path, forged=False))
    trust = str(write_trust_bundle(tmp_path / "trust"))
    out = tmp_path / "evidence.json"
    export = ["ledger", "export", "--ledger", path, "--request-id", "req-000000",
              "--bundle", trust, "-o", str(out)]  # fmt: skip
    for argv in (
        ["ledger", "verify", path, "--bundle", trust, "--require-witnesses", "-1"],
        [*export, "--require-witnesses", "-1"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "--require-witnesses" in err and ">= 0" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert main(export) == 0
    assert main(["ledger", "verify", str(out), "--bundle", trust, "--require-witnesses", "-3"]) == 2
    assert "--require-witnesses" in capsys.readouterr().err


def test_witness_requirement_with_only_the_log_key_is_refused_as_unanswerable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --key no cosignature can be checked, so "N witnesses" could only ever fail
    as "cosigned by 0 trusted witnesses": say what to give instead."""
    path = str(_ledger(tmp_path, forged=False))
    key = vkey(ORIGIN, ledger_key("110000", "intl").verify_key)
    assert main(["ledger", "verify", path, "--key", key, "--require-witnesses", "1"]) == 2
    assert "pass --bundle" in capsys.readouterr().err
