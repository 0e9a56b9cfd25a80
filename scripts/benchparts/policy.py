"""Policy engine benchmark: decision latency with 1,000 agreements loaded.

Writes 1,000 agreement files (each a distinct requester/service system, 20
purposes, the Beijing catalogue) into a temporary holder folder, loads them
through the real loader, and times ``PolicyEngine.decide`` (allowed and
refused requests; the allowed path reads quota usage from a real SQLite
file) and ``release`` of 10 rows. Baseline in the same run: a bare dict
lookup timed the same way. Targets: p50 decide <= 50 µs.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from benchparts.common import Report, median, percentile, time_calls
from gateway.policy import AccessRequest, PolicyEngine, SqliteQuotaStore, load_policy_set
from gateway.policy.model import valid_from_ms

REPO = Path(__file__).resolve().parents[2]
N_AGREEMENTS = 1000
TARGET_P50_S = 50e-6

FIELDS = [
    {"name": "person_id", "transform": "mask", "keep_first": 6, "keep_last": 4},
    {"name": "name", "transform": "mask", "keep_first": 1},
    {"name": "birth_date", "transform": "generalise", "to": "year"},
    {"name": "address", "transform": "generalise", "to": "district"},
    {"name": "employer", "transform": "pass"},
    {"name": "months_contributed", "transform": "pass"},
    {"name": "district_code", "transform": "pseudonymise"},
]


def _write_folder(root: Path, n: int) -> list[tuple[str, str, str]]:
    import datetime as dt

    (root / "agreements").mkdir(parents=True)
    shutil.copy(REPO / "policies" / "110000" / "catalogue.yaml", root / "catalogue.yaml")
    triples = []
    for i in range(n):
        juris = str(120000 + i)
        system = f"system-{i}"
        purpose = f"purpose_{i % 20}"
        doc = {
            "kind": "sharing-agreement",
            "id": f"bench-{i:04d}",
            "holder": "110000",
            "dataset": "si_contributions",
            "sharing_class": "conditional",
            "grade": "general",
            "requesters": [{"jurisdiction": juris, "service_systems": [system]}],
            "purposes": [purpose],
            "legal_basis": "bench",
            "fields": FIELDS,
            "row_scope": "bulk" if i % 2 else "named",
            "max_records_per_request": 50,
            "quota_per_day": 100_000_000,
            "valid_from": dt.date(2025, 1, 1),
            "valid_until": dt.date(2028, 12, 31),
            "approval": {"id": f"A-{i}", "approver": "bench"},
        }
        (root / "agreements" / f"a{i:04d}.yaml").write_text(
            yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        triples.append((juris, system, purpose))
    return triples


def run(quick: bool) -> Report:
    import datetime as dt

    n_samples = 2_000 if quick else 20_000
    n_agreements = 200 if quick else N_AGREEMENTS
    rng = random.Random(7)
    now = valid_from_ms(dt.date(2026, 6, 15)) + 12 * 3_600_000
    rep = Report(
        title=f"policy: decision latency, {n_agreements} agreements loaded",
        columns=["p50 µs", "p90 µs", "p99 µs", "calls"],
    )
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
        root = Path(tmp) / "110000"
        triples = _write_folder(root, n_agreements)
        t0 = time.perf_counter()
        ps = load_policy_set(root)
        load_s = time.perf_counter() - t0
        assert len(ps.agreements) == n_agreements
        quota = SqliteQuotaStore(Path(tmp) / "quota.sqlite")
        engine = PolicyEngine(ps, quota, bytes(range(32)), clock=lambda: now)

        def make(i: int, purpose: str | None = None) -> AccessRequest:
            juris, system, p = triples[i]
            return AccessRequest(
                juris,
                system,
                "110000",
                "si_contributions",
                purpose or p,
                ("person_id", "employer"),
                5,
                f"r{i}",
                now,
            )

        allowed = [make(rng.randrange(n_agreements)) for _ in range(512)]
        refused = [make(rng.randrange(n_agreements), "marketing") for _ in range(512)]
        assert all(engine.decide(r).allowed for r in allowed[:50])
        assert not any(engine.decide(r).allowed for r in refused[:50])

        it_a = iter(allowed * (n_samples // len(allowed) + 2))
        it_r = iter(refused * (n_samples // len(refused) + 2))
        s_allow = time_calls(lambda: engine.decide(next(it_a)), n_samples)
        s_deny = time_calls(lambda: engine.decide(next(it_r)), n_samples)

        table = {(j, s, p): i for i, (j, s, p) in enumerate(triples)}
        keys = [(r.requester, r.service_system, r.purpose) for r in allowed]
        it_k = iter(keys * (n_samples // len(keys) + 2))
        s_dict = time_calls(lambda: table.get(next(it_k)), n_samples)

        row = {
            "person_id": "110101199003078515",
            "name": "张三丰",
            "birth_date": "1990-03-07",
            "address": "北京市朝阳区建国路88号",
            "employer": "某公司",
            "months_contributed": 152,
            "district_code": "110105",
        }
        juris, system, purpose = triples[1]
        rel_req = AccessRequest(
            juris, system, "110000", "si_contributions", purpose, (), 10, "rel", now
        )
        rel_dec = engine.decide(rel_req)
        rows = [row] * 10

        def charge_and_release() -> object:
            engine.charge(rel_dec, rel_req, len(rows))
            return engine.release(rel_dec, rel_req, rows)

        s_rel = time_calls(charge_and_release, n_samples // 10)
        quota.close()

    def add(label: str, s: list[float]) -> None:
        rep.row(
            label, percentile(s, 50) * 1e6, percentile(s, 90) * 1e6, percentile(s, 99) * 1e6, len(s)
        )

    add("decide (allowed, reads quota)", s_allow)
    add("decide (refused, no agreement)", s_deny)
    add("release 10 rows (7 transforms, quota write)", s_rel)
    add("baseline: dict lookup", s_dict)
    rep.notes.append(f"loaded {n_agreements} agreement files in {load_s * 1e3:.0f} ms")
    rep.notes.append("timer overhead (~0.1 µs) is included in every figure, baseline too")
    p50 = percentile(s_allow, 50)
    rep.ratio("decide p50 / dict lookup p50 (50 µs budget ~ 500x)", p50 / median(s_dict), "<= 500")
    rep.ratio("decide p50 / 50 µs target", p50 / TARGET_P50_S, "<= 1.0")
    return rep
