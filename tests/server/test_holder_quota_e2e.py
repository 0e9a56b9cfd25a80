"""The holder's daily quota on record exchanges: what it charges, when, and what a
failure gives back; and whom a named exchange's entry names.

A named request is charged one unit per distinct subject id it asks for, found or
not, and refused before the source is read when that does not fit (asking for ids
not in the register used to cost nothing: a free membership oracle). Only a
released exchange stays charged (a failure at the reply-key check or at the ledger
append used to burn the requester's quota), racing requests never pass the quota,
and the start-up check adds up exactly what the ledger says was charged. Against a
number subject column, ``0012345`` releases person 12345: the entry must be in
person 12345's history (it used to be indexed as ``0012345``).
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
import yaml

from gateway._proto.dataexchange.gateway.v1 import service_pb2
from gateway.config import load_config
from gateway.demo.setup import CLUSTER, REPO_POLICIES, build_federation
from gateway.demo.sqlseed import _type, _value, create_schema
from gateway.errors import CommitUnknown, InvalidArgument, StorageFailure, VerificationFailed
from gateway.ledger.entry import decode_entry
from gateway.ledger.events import LedgerEvent
from gateway.limits import DEFAULT_LIMITS
from gateway.ops.spent import quota_shortfalls
from gateway.policy.quota import QuotaKey, SqliteQuotaStore, utc_day
from gateway.server.app import Gateway
from tests.conftest import RunningFederation, running
from tests.dbs import ENGINES, scratch_schema
from tests.helpers import ledger_events

BJ, HB = "110000", "130000"
HEBEI = tuple(m for m in CLUSTER if m.code in (BJ, HB))
AGREEMENT = "agreements/si-contributions-to-hebei-housing-fund.yaml"
DATASET = "si_contributions"
QUOTA = 6
ROWS = 20
# Well-formed ids no register here holds (generated ones start with 11).
UNKNOWN = [f"99000000000000{i:04d}" for i in range(20)]


def _policies(root: Path, quota: int = QUOTA) -> Path:
    policies = root / "policies"
    shutil.copytree(REPO_POLICIES, policies)
    agreement = policies / BJ / AGREEMENT
    text = agreement.read_text(encoding="utf-8")
    assert "quota_per_day: 1000" in text
    agreement.write_text(text.replace("quota_per_day: 1000", f"quota_per_day: {quota}"))
    return policies


@contextmanager
def _running(fed_root: Path, policies: Path, prepare: Any = None) -> Iterator[RunningFederation]:
    """Beijing and Hebei on loopback (``prepare(fed)`` runs before they start)."""
    fed = build_federation(fed_root, rows=ROWS, policies=policies, members=HEBEI)
    if prepare is not None:
        prepare(fed)
    with running(fed) as rf:
        yield rf


def _ask(rf: RunningFederation, ids: Sequence[str]) -> service_pb2.GetRecordsResponse:
    with rf.client(HB, "hebei-housing-fund") as c:
        return c.get_records(
            holder_jurisdiction=BJ,
            dataset=DATASET,
            purpose="housing_fund_transfer",
            subject_ids=list(ids),
        )


def _refused(rf: RunningFederation, ids: Sequence[str]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        _ask(rf, ids)
    return err.value


def _key() -> QuotaKey:
    return QuotaKey(BJ, DATASET, HB, "hebei-housing-fund", utc_day(time.time_ns() // 1_000_000))


def _used(rf: RunningFederation) -> int:
    return rf.gateways[BJ].quota.used(_key())


def _transfers(rf: RunningFederation) -> list[LedgerEvent]:
    return [e for e in ledger_events(rf.gateways[BJ]) if e.kind == "transfer"]


def test_asking_for_ids_not_in_the_register_costs_one_unit_each_so_membership_is_no_free_oracle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _running(tmp_path / "fed", _policies(tmp_path)) as rf:
        bj = rf.gateways[BJ]
        reads: list[int] = []
        fetch = bj.source.fetch

        def counted(*args: Any) -> Any:
            reads.append(1)
            return fetch(*args)

        monkeypatch.setattr(bj.source, "fetch", counted)
        assert len(_ask(rf, UNKNOWN[:5]).records) == 0
        assert _used(rf) == 5 and len(reads) == 1
        [entry] = _transfers(rf)
        assert entry.record_count == 0 and dict(entry.details)["quota_charged"] == "5"

        # Two more subjects do not fit (5 + 2 > 6): refused before the source is read.
        commuter = rf.commuter()
        err = _refused(rf, [commuter, UNKNOWN[5]])
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        message = err.details() or ""
        assert "quota" in message and "5 of 6" in message, message
        assert len(message) <= 1000 and commuter not in message
        assert _used(rf) == 5 and len(reads) == 1

        # One more fits: the last unit.
        assert len(_ask(rf, [commuter]).records) == 1
        assert _used(rf) == QUOTA
        assert [dict(e.details)["quota_charged"] for e in _transfers(rf)] == ["5", "1"]


def test_restart_adds_up_exactly_the_quota_the_ledger_says_was_charged_for_ids_not_found(
    tmp_path: Path,
) -> None:
    with _running(tmp_path / "fed", _policies(tmp_path)) as rf:
        assert len(_ask(rf, UNKNOWN[:4]).records) == 0
        assert _used(rf) == 4
    config = rf.site(BJ).config
    Gateway(load_config(config)).stop(grace=0.1)  # the store covers the ledger
    store = SqliteQuotaStore(rf.site(BJ).root / "data" / "quota.sqlite")
    assert store.refund(_key(), 1) == 3  # one unit short of what the ledger shows
    store.close()
    with pytest.raises(
        VerificationFailed, match="ledger shows 4 quota units spent, the store only 3"
    ) as err:
        Gateway(load_config(config))
    # What to do when nothing was restored: the ledger is right, raise the store to it.
    assert "If no store was restored" in str(err.value) and "quota_usage row" in str(err.value)


def test_exchange_failing_at_the_ledger_append_leaves_the_quota_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _running(tmp_path / "fed", _policies(tmp_path)) as rf:
        bj = rf.gateways[BJ]

        def broken(event: LedgerEvent, concerned: object = None) -> object:
            raise StorageFailure("ledger store unavailable (test)")

        with monkeypatch.context() as m:
            m.setattr(bj.indexer, "append", broken)
            err = _refused(rf, [rf.commuter(), UNKNOWN[0]])
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert _used(rf) == 0 and _transfers(rf) == []
        assert len(_ask(rf, [rf.commuter()]).records) == 1
        assert _used(rf) == 1


def test_ledger_commit_of_unknown_outcome_keeps_the_quota_charge_the_entry_may_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Failure: any failed append gave the charge back, even a COMMIT whose
    # confirmation was lost but which was in fact stored: the quota store then
    # held less than the ledger says was charged, and the next start refused.
    with _running(tmp_path / "fed", _policies(tmp_path)) as rf:
        bj = rf.gateways[BJ]
        append = bj.indexer.append

        def lost_confirmation(event: LedgerEvent, concerned: Any = None) -> Any:
            append(event, concerned)  # stored ...
            raise CommitUnknown("connection lost at COMMIT (test)")  # ... but not confirmed

        with monkeypatch.context() as m, caplog.at_level("ERROR", "gateway.exchange.holder"):
            m.setattr(bj.indexer, "append", lost_confirmation)
            err = _refused(rf, [rf.commuter(), UNKNOWN[0]])
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        [entry] = _transfers(rf)
        assert dict(entry.details)["quota_charged"] == "2"
        assert _used(rf) == 2  # kept: the ledger says it was charged
        assert quota_shortfalls(bj.stores.ledger, BJ, bj.quota, time.time_ns() // 10**6) == []
        [line] = [r for r in caplog.records if "outcome is unknown" in r.getMessage()]
        assert "kept" in line.getMessage() and line.exc_info is None


def test_exchange_refused_at_the_reply_key_check_leaves_the_quota_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _running(tmp_path / "fed", _policies(tmp_path)) as rf:
        bj = rf.gateways[BJ]

        def no_key(requester: str, named: bytes) -> object:
            raise InvalidArgument("reply_seal_key is not a sealing key the bundle lists (test)")

        monkeypatch.setattr(bj.holder, "_reply_key", no_key)
        err = _refused(rf, [rf.commuter()])
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _used(rf) == 0
        assert [e.kind for e in ledger_events(bj)] == ["refusal"]


def test_racing_exchanges_never_pass_the_quota_and_failed_ones_give_their_charge_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _running(tmp_path / "fed", _policies(tmp_path)) as rf:
        bj = rf.gateways[BJ]
        append = bj.indexer.append
        calls = itertools.count()
        lock = threading.Lock()

        def flaky(event: LedgerEvent, concerned: Any = None) -> Any:
            with lock:
                fail = event.kind == "transfer" and next(calls) % 3 == 0
            if fail:
                raise StorageFailure("ledger store unavailable (test)")
            return append(event, concerned)

        monkeypatch.setattr(bj.indexer, "append", flaky)

        def attempt(subject: str) -> str:
            try:
                _ask(rf, [subject])
            except grpc.RpcError as exc:
                return exc.code().name
            return "released"

        with ThreadPoolExecutor(12) as pool:
            outcomes = list(pool.map(attempt, UNKNOWN[:12]))
        released = outcomes.count("released")
        assert set(outcomes) <= {"released", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}, outcomes
        assert "UNAVAILABLE" in outcomes and 0 < released <= QUOTA, outcomes
        # The store holds exactly what released exchanges were charged, as the ledger says.
        assert _used(rf) == released
        assert sum(int(dict(e.details)["quota_charged"]) for e in _transfers(rf)) == released


# -- whom a named entry names, against a number subject column -------------------

PERSON = 12345


def _number_subjects(policies: Path, mapping: dict[str, object] | None = None) -> None:
    """Beijing's si_contributions identified by a number column (and read from a
    database when ``mapping`` is given)."""
    path = policies / BJ / "catalogue.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    [ds] = [d for d in doc["datasets"] if d["code"] == DATASET]
    [col] = [c for c in ds["columns"] if c["name"] == "person_id"]
    col["type"] = "integer"
    if mapping is not None:
        ds["source"] = mapping
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _person_row(source: Path) -> dict[str, object]:
    """A commuter to Hebei numbered ``PERSON``, its other values from a seeded row."""
    with sqlite3.connect(source) as conn:
        conn.row_factory = sqlite3.Row
        row = dict(conn.execute(f"SELECT * FROM {DATASET} LIMIT 1").fetchone())
    return {**row, "person_id": PERSON, "residence_jurisdiction": HB}


def _add_person_to_sqlite(source: Path) -> None:
    row = _person_row(source)
    with sqlite3.connect(source) as conn:
        marks = ", ".join("?" for _ in row)
        conn.execute(
            f"INSERT INTO {DATASET} ({', '.join(row)}) VALUES ({marks})", list(row.values())
        )


def _add_person_to_database(url: str, schema: str, policies: Path, source: Path) -> None:
    """A table in ``schema`` holding only ``PERSON`` (a BIGINT id), mapped in the catalogue."""
    from gateway.catalogue import load_catalogue

    _number_subjects(policies)
    ds = load_catalogue(policies / BJ).dataset(DATASET)
    create_schema(url, schema, replace=True)
    meta = sa.MetaData(schema=schema)
    table = sa.Table(
        DATASET,
        meta,
        *(
            sa.Column(c, sa.BigInteger() if c == "person_id" else _type(ds, c), nullable=True)
            for c in ds.column_names
        ),
        sa.UniqueConstraint("person_id"),
    )
    engine = sa.create_engine(url)
    try:
        meta.create_all(engine)
        row = _person_row(source)
        with engine.begin() as conn:
            conn.execute(table.insert(), [{c: _value(ds, c, row[c]) for c in ds.column_names}])
    finally:
        engine.dispose()
    _number_subjects(policies, {"url": url, "table": f"{schema}.{DATASET}"})


@contextmanager
def _number_federation(root: Path, engine: str) -> Iterator[RunningFederation]:
    policies = _policies(root)
    if engine == "sqlite":
        _number_subjects(policies)
        with _running(
            root / "fed", policies, lambda fed: _add_person_to_sqlite(fed.sites[BJ].data_source)
        ) as rf:
            yield rf
        return
    with scratch_schema(engine) as (url, prefix):
        with _running(
            root / "fed",
            policies,
            lambda fed: _add_person_to_database(
                url, f"{prefix}_bj", policies, fed.sites[BJ].data_source
            ),
        ) as rf:
            yield rf


def _history(rf: RunningFederation, subject: str) -> list[str]:
    """Request ids of the entries Beijing's subject access lists for ``subject``."""
    bj = rf.gateways[BJ]
    proofs, _ = bj.history.answer(subject)
    return [decode_entry(p.entry, DEFAULT_LIMITS).event.request_id for p in proofs.entries]


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_padded_id_against_a_number_column_is_in_the_released_persons_history(
    tmp_path: Path, engine: str
) -> None:
    with _number_federation(tmp_path, engine) as rf:
        resp = _ask(rf, [f"00{PERSON}"])
        assert len(resp.records) == 1  # the register matches 0012345 to person 12345
        assert _history(rf, str(PERSON)) == [resp.request_id]
        assert _history(rf, f"00{PERSON}") == []
        # An id a number column can match nothing by is refused before the source is
        # read (PostgreSQL would fail the query, MariaDB match its leading digits).
        err = _refused(rf, [f"{PERSON}A"])
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        message = err.details() or ""
        assert "by number" in message and f"{PERSON}A" not in message and len(message) <= 1000
        assert _used(rf) == 1
