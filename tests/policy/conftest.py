"""Fixtures for the policy-engine tests (helpers live in policy_testkit)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.policy.policy_testkit import HolderDir


@pytest.fixture
def holder_dir(tmp_path: Path) -> Callable[..., HolderDir]:
    def make(holder: str = "110000", name: str = "h") -> HolderDir:
        return HolderDir(tmp_path / name / holder, holder)

    return make
