"""The embedded SQLite source follows the file the bureau keeps up to date.

A bureau refreshes ``data_source`` either in place (often in WAL mode, whose
commits leave the main file untouched until a checkpoint) or by writing a new
file and renaming it over the old one. Records and statistics must both show
the data as it is now: rows removed from the register must stop being
released and counted.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from gateway.catalogue import load_catalogue
from gateway.demo.seed import seed_database
from gateway.sources import SqliteSource
from tests.sources.source_testkit import assert_each_unavailable

ROOT = Path(__file__).resolve().parents[2]
CAT = load_catalogue(ROOT / "policies" / "110000")
DS = CAT.dataset("si_contributions")


def test_a_source_file_replaced_by_rename_is_read_from_the_next_query_on(tmp_path: Path) -> None:
    """An open connection kept reading the old (unlinked) file: fetch, scan and
    statistics went on serving rows the bureau had removed, until a restart."""
    path = tmp_path / "source.sqlite"
    seed_database(path, CAT, rows=50, seed=1)
    src = SqliteSource(path)
    old_ids = [str(r["person_id"]) for r in src.scan(DS, ["person_id"], 100)]
    assert len(old_ids) == 50 and src.frame(DS, ["age_band"]).collect().height == 50
    assert len(src.fetch(DS, old_ids[:3], ["person_id"], 10)) == 3

    seed_database(tmp_path / "new.sqlite", CAT, rows=20, seed=2)
    os.replace(tmp_path / "new.sqlite", path)

    new_ids = {str(r["person_id"]) for r in src.scan(DS, ["person_id"], 100)}
    assert len(new_ids) == 20
    assert src.frame(DS, ["age_band"]).collect().height == 20
    gone = [i for i in old_ids if i not in new_ids][:3]
    assert gone and src.fetch(DS, gone, ["person_id"], 10) == []


def test_statistics_see_commits_a_wal_mode_writer_has_not_checkpointed(tmp_path: Path) -> None:
    """The statistics frame was reused while the main file's size and mtime were
    unchanged; a WAL-mode writer's commits do not change them, so statistics kept
    counting deleted rows that records no longer showed."""
    path = tmp_path / "source.sqlite"
    seed_database(path, CAT, rows=50, seed=1)
    writer = sqlite3.connect(path)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")  # commits stay in the WAL
        src = SqliteSource(path)
        assert src.frame(DS, ["age_band"]).collect().height == 50
        with writer:
            writer.execute("DELETE FROM si_contributions WHERE rowid % 2 = 0")
        assert len(src.scan(DS, ["person_id"], 100)) == 25
        assert src.frame(DS, ["age_band"]).collect().height == 25
    finally:
        writer.close()


def test_a_removed_source_file_answers_unavailable_for_statistics_and_records(
    tmp_path: Path,
) -> None:
    """Statistics stat()ed the file unguarded: FileNotFoundError, i.e. INTERNAL."""

    path = tmp_path / "source.sqlite"
    seed_database(path, CAT, rows=5, seed=1)
    src = SqliteSource(path)
    assert len(src.scan(DS, ["person_id"], 10)) == 5
    path.unlink()
    assert_each_unavailable(
        (lambda: src.frame(DS, ["age_band"]), lambda: src.scan(DS, ["person_id"], 10)),
        "unavailable",
    )


def test_statistics_frames_kept_stay_bounded_however_requesters_vary_their_columns(
    tmp_path: Path,
) -> None:
    """One frame was kept per (dataset, column tuple) ever queried, never dropped:
    a requester varying group_by and filters (each order a new tuple) made the
    holder keep one copy of the dataset per combination."""
    from itertools import permutations

    from gateway.limits import Limits

    path = tmp_path / "source.sqlite"
    seed_database(path, CAT, rows=50, seed=1)
    limits = Limits(source_frame_cache_entries=4)
    src = SqliteSource(path, limits)
    measured = ["age_band", "gender", "district_code", "status"]
    for k in (1, 2, 3):
        for cols in permutations(measured, k):
            df = src.frame(DS, list(cols)).collect()
            assert df.columns == list(cols) and df.height == 50
            assert len(src._frames) <= limits.source_frame_cache_entries
    # The same columns in another order reuse the frame.
    loads = len(src._frames)
    src.frame(DS, ["status", "gender"]).collect()
    src.frame(DS, ["gender", "status"]).collect()
    assert len(src._frames) <= max(loads, 1) + 1


def test_a_peer_asking_a_dataset_whose_sqlite_file_is_broken_learns_no_path(
    tmp_path: Path,
) -> None:
    """SQLite failures answered "data source query failed: <sqlite text>" and
    "cannot open data source <full path>": the holder's file layout went to every
    caller, other jurisdictions included. Callers get the dataset and
    "unavailable"; the operator's log gets the path."""
    import logging

    import grpc
    import pytest

    from tests.conftest import start_federation, stop_federation

    rf = start_federation(tmp_path / "fed", rows=20)
    try:
        source = rf.site("110000").data_source
        commuter = rf.commuter()
        broken = source.with_name("broken.sqlite")
        broken.write_bytes(b"this is not a database" * 200)
        os.replace(broken, source)  # the bureau replaced the file with garbage
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logging.getLogger("gateway.sources").addHandler(handler)
        try:
            with rf.client("130000", "hebei-housing-fund") as c:
                with pytest.raises(grpc.RpcError) as err:
                    c.get_records(
                        holder_jurisdiction="110000",
                        dataset="si_contributions",
                        purpose="housing_fund_transfer",
                        subject_ids=[commuter],
                    )
        finally:
            logging.getLogger("gateway.sources").removeHandler(handler)
        message = err.value.details() or ""
        assert "si_contributions" in message and "unavailable" in message, message
        assert str(tmp_path) not in message and "sqlite" not in message.lower(), message
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert any(str(source) in r.getMessage() for r in records)  # the operator's log
    finally:
        stop_federation(rf)


def test_a_source_file_that_cannot_be_opened_is_named_in_the_log_not_the_answer(
    tmp_path: Path,
) -> None:
    import pytest

    from gateway.errors import StorageFailure

    path = tmp_path / "source.sqlite"
    seed_database(path, CAT, rows=5, seed=1)
    src = SqliteSource(path)
    path.write_bytes(b"garbage" * 100)
    for read in (
        lambda: src.scan(DS, ["person_id"], 10),
        lambda: list(src.stream(DS, ["person_id"], 0, 10, 5)),
        lambda: src.guarantees_unique(DS, "person_id"),
        lambda: src.frame(DS, ["age_band"]),
    ):
        with pytest.raises(StorageFailure, match="si_contributions is unavailable") as err:
            read()
        assert str(tmp_path) not in str(err.value) and "not a database" not in str(err.value)


def test_a_fraction_in_a_catalogue_integer_column_of_sqlite_answers_unavailable_without_the_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite released raw values: REAL 1.5 in a column the catalogue calls integer
    went out as 1.5 (the database sources refuse it), and an integer stored as
    text went out as text. Values now pass the same normalisation."""
    import logging

    secret = "110101199001011234"
    ds = DS.model_copy(
        update={
            "columns": tuple(c for c in DS.columns if c.name in ("person_id", "months_contributed"))
        }
    )
    assert ds.column("months_contributed").type == "integer"
    cols = ["person_id", "months_contributed"]

    def register(name: str, rows: list[tuple[object, object]]) -> SqliteSource:
        path = tmp_path / name
        conn = sqlite3.connect(path)
        with conn:
            # No declared types: SQLite keeps each value's own storage class.
            conn.execute("CREATE TABLE si_contributions (person_id, months_contributed)")
            conn.executemany("INSERT INTO si_contributions VALUES (?, ?)", rows)
        conn.close()
        return SqliteSource(path)

    bad = register("bad.sqlite", [("2", 2), (secret, 1.5)])
    with caplog.at_level(logging.DEBUG):
        reads = (
            lambda: bad.fetch(ds, [secret], cols, 5),
            lambda: bad.scan(ds, cols, 5),
            lambda: [b for b in bad.stream(ds, cols, 0, 5, 5)],
        )
        assert_each_unavailable(reads, "si_contributions", ["1.5", secret], no_cause=True)
    assert "do not fit" in caplog.text and "1.5" not in caplog.text

    good = register("good.sqlite", [("2", 2.0), ("3", "7"), ("4", None)])
    want = [
        {"person_id": "2", "months_contributed": 2},
        {"person_id": "3", "months_contributed": 7},
        {"person_id": "4", "months_contributed": None},
    ]
    for rows in (
        good.scan(ds, cols, 5),
        good.fetch(ds, ["2", "3", "4"], cols, 5),
        [r for b in good.stream(ds, cols, 0, 5, 2) for r in b.rows()],
    ):
        assert rows == want
        assert [type(r["months_contributed"]) for r in rows[:2]] == [int, int]
