"""The sources' readiness probe: one check at a time, its result reused for
``ready_check_seconds``, a dataset's failure logged once per change of state,
never a sort of the bureau's table."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from gateway.catalogue import Catalogue, Dataset, load_catalogue
from gateway.errors import StorageFailure
from gateway.limits import Limits
from gateway.ops.ready import SourcesProbe

ROOT = Path(__file__).resolve().parents[2]


class SlowSource:
    """Counts probes; a probe takes ``delay`` seconds; ``down`` datasets fail."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.down: set[str] = set()
        self.probes = 0
        self.at_once = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def probe(self, dataset: Dataset) -> None:
        with self._lock:
            self.probes += 1
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            time.sleep(self.delay)
            if dataset.code in self.down:
                raise StorageFailure(f"the data source of dataset {dataset.code} is unavailable")
        finally:
            with self._lock:
                self.at_once -= 1


def _probe(source: SlowSource, clock: list[float]) -> tuple[SourcesProbe, list[str]]:
    cat: Catalogue = load_catalogue(ROOT / "policies" / "110000")
    served = [d.code for d in cat.datasets][:2]
    probe = SourcesProbe(
        source,  # type: ignore[arg-type]
        lambda: cat,
        lambda: served,
        Limits(ready_check_seconds=1.0),
        clock=lambda: clock[0],
    )
    return probe, served


def test_overlapping_readiness_probes_run_one_check_and_reuse_it_for_a_second() -> None:
    """Every probe (load balancers, scrapes) read every dataset again, and probes
    overlapped: a burst of probes was a burst of queries on the bureau's databases."""
    source = SlowSource(delay=0.2)
    clock = [100.0]
    probe, served = _probe(source, clock)
    threads = [threading.Thread(target=probe.check) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert source.most_at_once == 1
    assert source.probes == len(served)  # one check for 16 probes
    for _ in range(50):
        assert probe.check().ok
    assert source.probes == len(served)  # reused within the second
    clock[0] += 1.5
    probe.check()
    assert source.probes == 2 * len(served)


def test_a_source_down_is_logged_once_per_change_not_per_probe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = SlowSource()
    clock = [100.0]
    probe, served = _probe(source, clock)
    source.down.add(served[0])
    with caplog.at_level(logging.INFO, logger="gateway.ops"):
        for _ in range(20):
            result = probe.check()
            clock[0] += 2
            assert result.ok and f"dataset {served[0]}" in result.detail  # the other is served
        downs = [r for r in caplog.records if getattr(r, "event", "") == "source_down"]
        assert len(downs) == 1 and downs[0].levelno == logging.WARNING
        source.down.clear()
        for _ in range(5):
            assert probe.check() == probe.check()
            clock[0] += 2
        ups = [r for r in caplog.records if getattr(r, "event", "") == "source_up"]
        assert len(ups) == 1
        source.down.update(served)
        result = probe.check()
        assert not result.ok and result.detail.startswith("no dataset can be served")
        downs = [r for r in caplog.records if getattr(r, "event", "") == "source_down"]
        assert len(downs) == 3  # once for each dataset going down again
