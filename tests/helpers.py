"""Small helpers shared by tests."""

from __future__ import annotations

from typing import Any

from gateway.ledger.events import LedgerEvent


def ledger_events(gw: Any) -> list[LedgerEvent]:
    """Decoded events of a gateway's ledger, oldest first."""
    return [r.event for r in gw.ledger.entries(0, gw.ledger.size)]
