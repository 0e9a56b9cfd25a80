"""Shared fixtures for the ledger tests: deterministic keys, events, clocks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import crypto
from gateway.crypto import AnySigningKey
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.merkle import TreeHasher
from gateway.ledger.trustkeys import TrustedKeys
from tests.ledger.ledger_testkit import (
    ORIGIN,
    FakeClock,
    federation_keys,
    fixed_key,
    ledger_key,
    make_event,
    use_suite,
)


@pytest.fixture(params=["intl", "gm"])
def suite(request: pytest.FixtureRequest) -> Iterator[crypto.Suite]:
    """Every ledger test runs for both cipher suites (the testkit signs with it)."""
    use_suite(request.param)
    yield crypto.suite(request.param)
    use_suite("intl")


@pytest.fixture
def tree(suite: crypto.Suite) -> TreeHasher:
    return TreeHasher.for_suite(suite)


def suite_key(suite: crypto.Suite, seed: bytes) -> AnySigningKey:
    """A fixed intl key for ``seed``; gm keys come from GmSSL's own randomness (one per
    seed and run)."""
    return fixed_key(suite.name, seed)


@pytest.fixture
def log_key(suite: crypto.Suite) -> AnySigningKey:
    """110000's ledger key, as the test federation's trust bundle lists it."""
    return ledger_key("110000", suite.name)


@pytest.fixture
def keys(suite: crypto.Suite) -> TrustedKeys:
    """The test federation's keys, as a trust bundle would list them."""
    return federation_keys(suite.name)  # type: ignore[no-any-return]


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
