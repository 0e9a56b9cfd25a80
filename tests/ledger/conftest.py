"""Shared fixtures for the ledger tests: deterministic keys, events, clocks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import crypto
from gateway.crypto import AnySigningKey, SigningKey
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.merkle import TreeHasher
from tests.ledger.ledger_testkit import ORIGIN, FakeClock, make_event


@pytest.fixture(params=["intl", "gm"])
def suite(request: pytest.FixtureRequest) -> crypto.Suite:
    """Every ledger test runs for both cipher suites."""
    return crypto.suite(request.param)


@pytest.fixture
def tree(suite: crypto.Suite) -> TreeHasher:
    return TreeHasher.for_suite(suite)


def suite_key(suite: crypto.Suite, seed: bytes) -> AnySigningKey:
    """A fixed intl key for ``seed``; gm keys come from GmSSL's own randomness."""
    if suite.name == "intl":
        return SigningKey(seed)
    return suite.generate_signing_key()


@pytest.fixture
def log_key(suite: crypto.Suite) -> AnySigningKey:
    return suite_key(suite, bytes(range(32)))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def new_ledger(
    tmp_path: Path, log_key: AnySigningKey, clock: FakeClock
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
