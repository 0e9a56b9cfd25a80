"""`gateway policy check` warns about a database password written into a catalogue."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from gateway.policy.lint import check_path

ROOT = Path(__file__).resolve().parents[2]


def _holder(tmp: Path, url: str) -> Path:
    dst = tmp / "110000"
    shutil.copytree(ROOT / "policies" / "110000", dst)
    doc = yaml.safe_load((dst / "catalogue.yaml").read_text(encoding="utf-8"))
    doc["datasets"][0]["source"] = {"url": url, "table": "shebao.si_contributions"}
    (dst / "catalogue.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return dst


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("postgresql+psycopg://reader:hunter2@db.bj/si", True),
        ("mysql+pymysql://root:p%40ss@db.hb:3306/ent", True),
        ("postgresql+psycopg://reader:${BJ_SI_DB_PASSWORD}@db.bj/si", False),
        ("postgresql+psycopg://reader@db.bj/si", False),
    ],
)
def test_password_literal_in_a_source_url_is_a_lint_warning(
    tmp_path: Path, url: str, warned: bool
) -> None:
    report = check_path(_holder(tmp_path, url), now_ms=int(time.time() * 1000))
    messages = [str(f) for h in report.holders for f in h.findings]
    assert any("carries a password" in m for m in messages) is warned
    assert all("hunter2" not in m and "p%40ss" not in m for m in messages)
