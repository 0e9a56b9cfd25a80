"""`gateway audit report` opened in real headless Chromium: it renders, with its charts.

Chromium is Debian's ``chromium`` package: CI installs it (scripts/test.sh runs
scripts/install-browser.sh under CI=true); elsewhere this test skips, saying so,
until ``bash scripts/install-browser.sh`` has been run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from gateway.cli import main
from gateway.report import charts
from tests.conftest import RunningFederation
from tests.report.conftest import ledgers

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="headless Chromium not installed: run `bash scripts/install-browser.sh` (CI installs it)",
)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "CI=true but chromium is missing: scripts/install-browser.sh"
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _report(rf: RunningFederation, out: Path) -> None:
    rc = main(
        ["audit", "report", *map(str, ledgers(rf)), "--bundle", str(rf.fed.bundle), "-o", str(out)]
    )
    assert rc == 0


def _colour_pixels(png: Path, hex_colour: str) -> int:
    img = mpimg.imread(png)[..., :3]
    want = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img - want).max(axis=-1) < 0.02).sum())


@needs_chromium
def test_report_renders_in_headless_chromium_with_every_chart_drawn(
    audited: RunningFederation, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    _report(audited, out)
    shot = tmp_path / "report.png"
    r = _chromium(tmp_path, "--window-size=1280,2600", f"--screenshot={shot}", out.as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    # Chart colours appear only inside the embedded chart images: if the browser
    # drew them, the charts rendered (CSS uses none of these colours).
    for outcome in ("transfer", "refusal", "stats_release"):
        assert _colour_pixels(shot, charts.COLOURS[outcome]) > 500, outcome
    dom = _chromium(tmp_path, "--dump-dom", out.as_uri()).stdout
    assert dom.count('class="chart"') == 6
    assert "every ledger verifies and every paired transfer matches" in dom
    assert re.search(r"<b id=\"shown\">(\d+)</b>", dom)


@needs_chromium
def test_report_table_filter_runs_in_the_browser_from_a_link(
    audited: RunningFederation, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    _report(audited, out)
    total = int(re.search(r"<b id='shown'>(\d+)</b>", out.read_text()).group(1))  # type: ignore[union-attr]
    dom = _chromium(
        tmp_path, "--dump-dom", out.as_uri() + "#kind=stats_release&ledger=110000"
    ).stdout
    shown = int(re.search(r'<b id="shown">(\d+)</b>', dom).group(1))  # type: ignore[union-attr]
    rows = re.findall(
        r'<tr class="k-(\w+)" data-kind="\w+" data-ledger="(\d+)"( style="display: none;")?', dom
    )
    visible = [(k, led) for k, led, hidden in rows if not hidden]
    assert 0 < shown < total and len(visible) == shown
    assert set(visible) == {("stats_release", "110000")}
