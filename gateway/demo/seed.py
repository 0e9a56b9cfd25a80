"""Realistic synthetic data for the demo and tests (Faker, zh_CN locale).

Owns: creating a jurisdiction's SQLite data source with one table per
catalogue dataset it knows how to synthesise (si_contributions,
population_core, hf_accounts, ent_qualifications). Column names and types come
from the catalogue; ID numbers carry the district's area code and a valid
check digit (Faker's zh_CN ``ssn``). Deterministic for a given seed.

Does not own: the catalogue (policies/<code>/catalogue.yaml) or serving data
(``gateway.sources``).
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from faker import Faker

from gateway.catalogue import Catalogue, Dataset

REFERENCE_DATE = dt.date(2026, 1, 1)

# Reference data: administrative division code -> name (GB/T 2260).
DISTRICTS: dict[str, str] = {
    "110101": "北京市东城区", "110102": "北京市西城区", "110105": "北京市朝阳区",
    "110106": "北京市丰台区", "110108": "北京市海淀区", "110114": "北京市昌平区",
    "120101": "天津市和平区", "120102": "天津市河东区", "120103": "天津市河西区",
    "120104": "天津市南开区", "120116": "天津市滨海新区",
    "130102": "河北省石家庄市长安区", "130104": "河北省石家庄市桥西区",
    "130602": "河北省保定市竞秀区", "131002": "河北省廊坊市安次区",
    "131003": "河北省廊坊市广阳区", "131082": "河北省廊坊市三河市",
}  # fmt: skip

AGE_BANDS = ("16-24", "25-34", "35-44", "45-54", "55-64", "65+")


def age_band(birth: dt.date, today: dt.date = REFERENCE_DATE) -> str:
    age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
    for band in AGE_BANDS[:-1]:
        lo, hi = (int(x) for x in band.split("-"))
        if lo <= age <= hi:
            return band
    return "65+" if age >= 65 else "16-24"


def birth_from_id(person_id: str) -> dt.date:
    return dt.date(int(person_id[6:10]), int(person_id[10:12]), int(person_id[12:14]))


class _Synth:
    def __init__(self, holder: str, seed: int) -> None:
        self.holder = holder
        self.fake = Faker("zh_CN")
        self.fake.seed_instance(seed)
        self.rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
        self.districts = [c for c in DISTRICTS if c[:2] == holder[:2]]

    def person(self, district: str, min_age: int = 18, max_age: int = 70) -> dict[str, object]:
        f = self.fake
        pid = f.ssn(min_age=min_age, max_age=max_age, area_code=district)  # type: ignore[call-arg]  # zh_CN provider
        birth = birth_from_id(pid)
        return {
            "person_id": pid,
            "name": f.name(),
            "phone": f.phone_number(),
            "birth_date": birth.isoformat(),
            "gender": "男" if int(pid[16]) % 2 else "女",
            "address": DISTRICTS[district] + f.street_address(),
            "age_band": age_band(birth),
        }

    def si_contributions(self, n: int) -> Iterator[dict[str, object]]:
        # Most cross-boundary commuters live in Hebei (e.g. 燕郊/三河 to Beijing).
        others = sorted(
            (j for j in ("110000", "120000", "130000") if j != self.holder),
            key=lambda j: j != "130000",
        )
        for _ in range(n):
            district = self.rng.choice(self.districts)
            p = self.person(district)
            r = self.rng.random()
            # Commuters: people insured here who live in a neighbouring jurisdiction.
            residence = self.holder if r < 0.75 else others[0] if r < 0.92 else others[1]
            if residence != self.holder:
                home = self.rng.choice([c for c in DISTRICTS if c[:2] == residence[:2]])
                p["address"] = DISTRICTS[home] + self.fake.street_address()
            birth = dt.date.fromisoformat(str(p["birth_date"]))
            start = max(birth + dt.timedelta(days=18 * 366), dt.date(1995, 1, 1))
            span = max(1, (REFERENCE_DATE - start).days)
            since = start + dt.timedelta(days=self.rng.randrange(span))
            months = max(1, (REFERENCE_DATE - since).days // 30)
            yield {
                **p,
                "district_code": district,
                "residence_jurisdiction": residence,
                "employer": self.fake.company(),
                "insured_since": since.isoformat(),
                "months_contributed": min(months, 600),
                "monthly_base": round(min(40000.0, self.rng.lognormvariate(8.9, 0.45)), 2),
                "status": self.rng.choices(["正常参保", "暂停缴费", "终止"], [0.86, 0.1, 0.04])[0],
            }

    def population_core(self, n: int) -> Iterator[dict[str, object]]:
        for _ in range(n):
            p = self.person(self.rng.choice(self.districts), 0, 90)
            yield {k: p[k] for k in ("person_id", "name", "birth_date", "address")}

    def hf_accounts(self, n: int) -> Iterator[dict[str, object]]:
        for _ in range(n):
            district = self.rng.choice(self.districts)
            p = self.person(district, 20, 65)
            yield {
                **{k: p[k] for k in ("person_id", "name", "phone", "birth_date", "age_band")},
                "district_code": district,
                "account_no": f"{self.holder[:2]}{self.rng.randrange(10**11, 10**12)}",
                "account_status": self.rng.choices(["正常", "封存", "销户"], [0.8, 0.15, 0.05])[0],
                "balance": round(self.rng.lognormvariate(10.5, 0.9), 2),
                "months_paid": self.rng.randrange(1, 360),
                "employer": self.fake.company(),
            }

    def ent_qualifications(self, n: int) -> Iterator[dict[str, object]]:
        quals = ["建筑工程施工总承包", "市政公用工程施工总承包", "工程监理", "工程造价咨询", "测绘"]
        for _ in range(n):
            district = self.rng.choice(self.districts)
            yield {
                "credit_code": _credit_code(self.rng, district),
                "enterprise_name": self.fake.company(),
                "legal_rep": self.fake.name(),
                "district_code": district,
                "qualification": self.rng.choice(quals),
                "qualification_level": self.rng.choice(["特级", "一级", "二级", "三级"]),
                "valid_until": (
                    REFERENCE_DATE + dt.timedelta(days=self.rng.randrange(-200, 1800))
                ).isoformat(),
                "registered_capital": round(self.rng.lognormvariate(7, 1.2), 2),
            }


_CREDIT_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def _credit_code(rng: random.Random, district: str) -> str:
    """18-character unified social credit code (GB 32100-2015) with check character."""
    body = "91" + district + "".join(rng.choice(_CREDIT_CHARS) for _ in range(9))
    total = sum(_CREDIT_CHARS.index(c) * w for c, w in zip(body, _CREDIT_WEIGHTS, strict=True))
    return body + _CREDIT_CHARS[(31 - total % 31) % 31]


_SQL_TYPES = {"string": "TEXT", "date": "TEXT", "integer": "INTEGER", "float": "REAL"}


def synthetic_tables(
    catalogue: Catalogue, rows: int, seed: int
) -> Iterator[tuple[Dataset, int, Iterator[dict[str, object]]]]:
    """(dataset, row count, rows) for each catalogue dataset the synthesiser knows."""
    synth = _Synth(catalogue.holder, seed)
    makers: dict[str, Callable[[int], Iterator[dict[str, object]]]] = {
        "si_contributions": synth.si_contributions,
        "population_core": synth.population_core,
        "hf_accounts": synth.hf_accounts,
        "ent_qualifications": synth.ent_qualifications,
    }
    for ds in catalogue.datasets:
        if ds.code in makers:
            n = rows if ds.code != "ent_qualifications" else max(50, rows // 10)
            yield ds, n, makers[ds.code](n)


def seed_database(
    path: Path, catalogue: Catalogue, rows: int = 2000, seed: int = 20260101
) -> dict[str, int]:
    """Create (replace) ``path`` with synthetic tables; returns rows per dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    counts: dict[str, int] = {}
    with sqlite3.connect(path) as conn:
        for ds, n, made in synthetic_tables(catalogue, rows, seed):
            _create(conn, ds)
            cols = ds.column_names
            marks = ", ".join("?" for _ in cols)
            conn.executemany(
                f'INSERT INTO "{ds.code}" ({", ".join(cols)}) VALUES ({marks})',
                ([r[c] for c in cols] for r in made),
            )
            # One row per subject: the database enforces the catalogue's privacy unit.
            conn.execute(
                f'CREATE UNIQUE INDEX "{ds.code}_subject" ON "{ds.code}" ({ds.subject_column})'
            )
            counts[ds.code] = n
    return counts


def _create(conn: sqlite3.Connection, ds: Dataset) -> None:
    cols = ", ".join(f"{c.name} {_SQL_TYPES[c.type]}" for c in ds.columns)
    conn.execute(f'CREATE TABLE "{ds.code}" ({cols})')
