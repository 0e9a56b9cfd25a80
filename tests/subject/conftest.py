"""Fixtures of the subject-access tests: a holder's ledger and index store in a temp folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.subject.subject_testkit import Holder, open_holder


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    h = open_holder(tmp_path)
    yield h
    h.close()
