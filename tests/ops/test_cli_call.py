"""`gateway call`: a first exchange and a statistic with no code, against real gateways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from tests.conftest import RunningFederation


def _token_file(tmp_path: Path, fed: RunningFederation, code: str, service: str) -> Path:
    f = tmp_path / f"{service}.token"
    f.write_text(fed.site(code).tokens[service] + "\n")
    return f


def test_call_records_performs_a_first_exchange_from_the_command_line_with_json(
    federation: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = federation.site("130000")
    token = _token_file(tmp_path, federation, "130000", "hebei-housing-fund")
    rc = main(
        ["call", "records", "--config", str(site.config), "--token-file", str(token),
         "--holder", "110000", "--dataset", "si_contributions",
         "--purpose", "housing_fund_transfer", "--subject", federation.commuter(), "--json"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    reply = json.loads(out)
    assert reply["holder_jurisdiction"] == "110000" and len(reply["records"]) == 1
    assert reply["decision"]["allowed"] is True
    assert reply["receipt"]["jurisdiction"] == "130000"


def test_call_records_prints_a_readable_table_and_reads_the_token_from_the_environment(
    federation: RunningFederation,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = federation.site("130000")
    monkeypatch.setenv("GATEWAY_TOKEN", site.tokens["hebei-housing-fund"])
    subjects = tmp_path / "subjects.txt"
    subjects.write_text(federation.commuter() + "\n")
    rc = main(
        ["call", "records", "--address", site.service_address, "--cert", str(site.tls_cert),
         "--jurisdiction", "130000", "--holder", "110000", "--dataset", "si_contributions",
         "--purpose", "housing_fund_transfer", "--subjects-file", str(subjects)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "1 record(s) from 110000 si_contributions" in out
    assert "ledger receipt: 130000 entry #" in out and "employer" in out


def test_call_records_refusal_prints_status_and_holder_reason_and_exits_3(
    federation: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = federation.site("130000")
    token = _token_file(tmp_path, federation, "130000", "hebei-housing-fund")
    rc = main(
        ["call", "records", "--config", str(site.config), "--token-file", str(token),
         "--holder", "110000", "--dataset", "si_contributions", "--purpose", "marketing",
         "--subject", federation.commuter()]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 3
    assert err.startswith("gateway call: PERMISSION_DENIED: holder 110000 refused")


def test_call_without_a_token_is_a_usage_error_not_an_unauthenticated_call(
    federation: RunningFederation,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GATEWAY_TOKEN", raising=False)
    rc = main(["call", "datasets", "--config", str(federation.site("130000").config)])
    assert rc == 2 and "no token" in capsys.readouterr().err


def test_call_stats_dry_run_spends_nothing_then_query_releases_with_intervals(
    federation: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = federation.site("120000")
    gw = federation.gateways["110000"]
    spent_before = sum(r.epsilon for r in gw.statistics.budget.totals())
    token = _token_file(tmp_path, federation, "120000", "tianjin-planning")
    args = ["call", "stats", "--config", str(site.config), "--token-file", str(token),
            "--holders", "110000", "--dataset", "si_contributions",
            "--purpose", "commuter_planning", "--statistic", "count", "--epsilon", "0.25",
            "--group-by", "age_band", "--filter", "residence_jurisdiction=130000"]  # fmt: skip
    assert main([*args, "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True
    assert sum(r.epsilon for r in gw.statistics.budget.totals()) == spent_before
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "released" in out and "95% interval" in out and "age_band" in out
    assert sum(r.epsilon for r in gw.statistics.budget.totals()) == pytest.approx(
        spent_before + 0.25
    )


def test_call_datasets_and_health(
    federation: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = federation.site("110000")
    token = _token_file(tmp_path, federation, "110000", "beijing-housing-fund")
    assert main(["call", "datasets", "--config", str(site.config), "--token-file", str(token)]) == 0
    out = capsys.readouterr().out
    assert "120000" in out and "hf_accounts" in out
    assert main(["call", "health", "--config", str(site.config)]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"


def test_call_bulk_streams_a_pseudonymised_extract_to_json_lines_and_reports_the_commitment(
    federation: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = federation.site("120000")
    token = _token_file(tmp_path, federation, "120000", "tianjin-planning")
    out = tmp_path / "extract.jsonl"
    rc = main(
        ["call", "bulk", "--config", str(site.config), "--token-file", str(token),
         "--holder", "110000", "--dataset", "si_contributions",
         "--purpose", "commuter_planning", "--out", str(out), "--json"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    summary = json.loads(err.strip().splitlines()[-1])
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert summary["rows"] == len(rows) > 0
    assert summary["commitment"] and summary["agreement_id"] == "bj-si-to-tianjin-planning"
    # The agreement releases a pseudonym, never the resident ID number.
    assert all(
        set(r) <= {"person_id", "age_band", "district_code", "residence_jurisdiction"} for r in rows
    )
    assert not any(r["person_id"] == federation.commuter() for r in rows)


def test_call_bulk_refused_for_an_undeclared_purpose_exits_3_and_writes_no_rows(
    federation: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = federation.site("120000")
    token = _token_file(tmp_path, federation, "120000", "tianjin-planning")
    out = tmp_path / "extract.jsonl"
    rc = main(
        ["call", "bulk", "--config", str(site.config), "--token-file", str(token),
         "--holder", "110000", "--dataset", "si_contributions",
         "--purpose", "marketing", "--out", str(out)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 3
    assert err.startswith("gateway call: PERMISSION_DENIED")
    assert out.read_text(encoding="utf-8") == ""
