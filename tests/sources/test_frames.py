"""Statistics frames kept as Arrow files that OpenDP scans (``gateway.sources.frames``).

A frame held in memory was serialised across OpenDP's boundary on every query
(about four times the query's own cost at a million rows); a scan of a file
written once only names it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from gateway.catalogue import load_catalogue
from gateway.demo.setup import REPO_POLICIES, build_federation
from gateway.limits import Limits
from gateway.sources import Sources
from gateway.sources import frames as frames_mod
from gateway.sources.frames import FrameCache


def _df(n: int) -> pl.DataFrame:
    return pl.DataFrame({"a": list(range(n)), "b": [str(i) for i in range(n)]})


def test_a_frame_is_a_scan_of_a_file_in_a_private_folder_not_rows_in_memory() -> None:
    cache = FrameCache(entries=4, grace_seconds=60, rows_per_file=2)
    try:
        parts = [_df(5).select("b", "a")[i : i + 1] for i in range(5)]
        frame = cache.put("ds", ["b", "a"], 1, parts, lambda s: s == 1)
        assert "SCAN" in frame.explain()
        assert frame.collect().equals(_df(5).select("b", "a"))  # parts in order, 3 files
        again = cache.get("ds", ["a", "b"], lambda s: s == 1)  # the same set, another order
        assert again is not None and again.collect().columns == ["a", "b"]
        folder = frames_mod.frame_dir()
        assert len(list(folder.glob("*/*.arrow"))) >= 3
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert str(folder).startswith("/dev/shm/") or not Path("/dev/shm").is_dir()
    finally:
        cache.close()


def test_a_query_scanning_a_replaced_frame_finishes_on_the_data_it_started_with() -> None:
    """A new version of a dataset replaces its frame while a query holds the old
    scan: the old file stays until the grace has passed, then goes."""
    now = [0.0]
    cache = FrameCache(entries=4, grace_seconds=60, rows_per_file=100, clock=lambda: now[0])
    try:
        old = cache.put("ds", ["a"], 1, [_df(3).select("a")], lambda s: s == 1)
        cache.put("ds", ["a"], 2, [_df(7).select("a")], lambda s: s == 2)
        assert old.collect().height == 3  # still there
        now[0] = 61.0
        cache.put("other", ["a"], 3, [_df(1).select("a")], lambda s: True)  # sweeps
        with pytest.raises(Exception):  # noqa: B017 - polars' own file-not-found error
            old.collect()
    finally:
        cache.close()


def test_closing_a_source_deletes_its_frame_files(tmp_path: Path) -> None:
    fed = build_federation(tmp_path / "fed", rows=20)
    site = fed.sites["110000"]
    catalogue = load_catalogue(REPO_POLICIES / "110000")
    sources = Sources(site.data_source, catalogue, Limits())
    before = set(frames_mod.frame_dir().glob("*/*.arrow"))
    ds = catalogue.dataset("si_contributions")
    frame = sources.frame(ds, ["person_id"])
    assert "Ipc SCAN" in frame.explain() or "SCAN" in frame.explain()
    made = set(frames_mod.frame_dir().glob("*/*.arrow")) - before
    assert len(made) == 1
    sources.close()
    assert not any(p.exists() for p in made)


def test_frame_folders_of_gateways_killed_before_removing_them_are_removed_by_the_next(
    tmp_path: Path,
) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    gone = tmp_path / f"{frames_mod._PREFIX}{int(dead.stdout)}-x1"
    alive = tmp_path / f"{frames_mod._PREFIX}{os.getpid()}-x2"
    for folder in (gone, alive):
        folder.mkdir()
        (folder / "0.arrow").write_bytes(b"rows of a register")
    frames_mod._remove_orphans(tmp_path)
    assert not gone.exists() and alive.exists()


def test_a_frame_whose_source_fails_midway_leaves_no_files_and_no_frame() -> None:
    """A misfit value in the third batch: the files of the first two go, and the
    cache holds nothing half-written."""
    from gateway.errors import StorageFailure

    def parts():  # type: ignore[no-untyped-def]
        yield _df(2).select("a")
        yield _df(2).select("a")
        raise StorageFailure("dataset ds: the source's values do not fit (ValueError)")

    cache = FrameCache(entries=4, grace_seconds=60, rows_per_file=1)
    before = set(frames_mod.frame_dir().iterdir())
    with pytest.raises(StorageFailure):
        cache.put("ds", ["a"], 1, parts(), lambda s: True)
    assert set(frames_mod.frame_dir().iterdir()) == before
    assert cache.get("ds", ["a"], lambda s: True) is None
    cache.close()
