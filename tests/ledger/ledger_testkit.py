"""Plain helpers shared by the ledger tests (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

from gateway.crypto import b64
from gateway.ledger.events import LedgerEvent

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
