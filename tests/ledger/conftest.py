"""Shared fixtures for the ledger tests: deterministic keys, events, clocks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.crypto import SigningKey, b64
from gateway.ledger.events import LedgerEvent
from gateway.ledger.ledger import SqliteLedger

ORIGIN = "110000.gateway.dataexchange.cn/ledger"


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_event(i: int = 0, **kw: Any) -> LedgerEvent:
    base: dict[str, Any] = dict(
        kind="transfer",
        role="holder",
        request_id=f"req-{i:06d}",
        timestamp_ms=1_700_000_000_000 + i * 1000,
        local="110000",
        counterparty="120000",
        service_system="tj-social-security",
        dataset="household_register",
        purpose="benefit_eligibility",
        decision="allow",
        reason="agreement bj-tj-007 allows",
        record_count=i % 7,
        agreement_id="bj-tj-007",
        agreement_digest="a" * 64,
        policy_set_digest="b" * 64,
        payload_digest=f"{i:064x}",
        request_digest="d" * 64,
        requester_signature=b64(bytes([i % 256]) * 64),
        holder_signature=b64(bytes([(i + 1) % 256]) * 64),
        details=(("fields", "name,dob"),),
    )
    base.update(kw)
    return LedgerEvent(**base)


@pytest.fixture
def log_key() -> SigningKey:
    return SigningKey(bytes(range(32)))


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
