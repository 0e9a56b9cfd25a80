"""Shared fixtures for the ledger tests: deterministic keys, events, clocks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.crypto import SigningKey
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.trustkeys import TrustedKeys
from tests.ledger.ledger_testkit import ORIGIN, FakeClock, federation_keys, make_event


@pytest.fixture
def log_key() -> SigningKey:
    return SigningKey(bytes(range(32)))


@pytest.fixture
def keys() -> TrustedKeys:
    """The test federation's keys, as a trust bundle would list them."""
    return federation_keys()  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def new_ledger(
    tmp_path: Path, log_key: SigningKey, clock: FakeClock
) -> Callable[..., SqliteLedger]:
    opened: list[SqliteLedger] = []

    def factory(name: str = "ledger.db", n: int = 0, every: int = 4, **kw: Any) -> SqliteLedger:
        ledger = SqliteLedger(
            tmp_path / name,
            kw.pop("signer", log_key),
            kw.pop("origin", ORIGIN),
            checkpoint_every=every,
            checkpoint_interval=kw.pop("interval", 3600.0),
            clock=clock,
            **kw,
        )
        if n:
            ledger.append_many(make_event(i) for i in range(n))
        opened.append(ledger)
        return ledger

    yield factory  # type: ignore[misc]
    for ledger in opened:
        try:
            ledger.close()
        except Exception:  # already closed by the test
            pass
