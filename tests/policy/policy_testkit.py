"""Helpers for the policy-engine tests: agreement documents and holder folders in tmp_path."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import yaml

from gateway.policy.model import valid_from_ms

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
SECRET = bytes(range(32))
# 2026-06-15 12:00 UTC+8: inside every shipped agreement's validity.
NOW_MS = valid_from_ms(dt.date(2026, 6, 15)) + 12 * 3600 * 1000


def base_agreement(**over: Any) -> dict[str, Any]:
    """A valid Beijing si_contributions agreement; override any key."""
    doc: dict[str, Any] = {
        "kind": "sharing-agreement",
        "id": "test-agreement",
        "holder": "110000",
        "dataset": "si_contributions",
        "sharing_class": "conditional",
        "grade": "general",
        "requesters": [{"jurisdiction": "130000", "service_systems": ["hebei-housing-fund"]}],
        "purposes": ["housing_fund_transfer"],
        "legal_basis": "《住房公积金管理条例》",
        "fields": [
            {"name": "person_id", "transform": "mask", "keep_first": 6, "keep_last": 4},
            {"name": "name", "transform": "mask", "keep_first": 1},
            {"name": "employer", "transform": "pass"},
        ],
        "row_scope": "named",
        "max_records_per_request": 10,
        "quota_per_day": 1000,
        "valid_from": dt.date(2025, 1, 1),
        "valid_until": dt.date(2028, 12, 31),
        "approval": {"id": "APPROVAL-1", "approver": "北京市大数据中心"},
    }
    doc.update(over)
    return doc


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


class HolderDir:
    """A writable holder folder built from the shipped catalogue."""

    def __init__(self, root: Path, holder: str = "110000") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(POLICIES / holder / "catalogue.yaml", root / "catalogue.yaml")
        (root / "agreements").mkdir(exist_ok=True)

    def write(self, name: str, doc: dict[str, Any] | str) -> Path:
        p = self.root / "agreements" / name
        p.write_text(doc if isinstance(doc, str) else dump(doc), encoding="utf-8")
        return p
