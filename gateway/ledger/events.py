"""What the rest of the gateway hands the ledger: one event to record.

Owns: the ``LedgerEvent`` value and the ``LedgerWriter`` protocol the exchange
and statistics paths append through. Does not own: how events are encoded,
chained, stored or proven (the rest of ``gateway.ledger``).

Events hold metadata and digests only, never personal data: no subject ids,
no record values. ``details`` carries kind-specific metadata (e.g. epsilon and
delta for a statistics release) as sorted (key, value) string pairs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from gateway.limits import Limits

# audit_read: a local auditor read the ledger through the Ledger API
# (service_system = the auditor, purpose = the method, reason = what was read).
# subject_access: a portal asked for a person's access history (never the id).
# receipt: the requester's signed acknowledgement of an answer, in the holder's ledger.
EventKind = Literal[
    "transfer",
    "refusal",
    "stats_release",
    "stats_refusal",
    "receipt",
    "audit_read",
    "subject_access",
]
Role = Literal["holder", "requester"]
Decision = Literal["allow", "deny"]


@dataclass(frozen=True)
class LedgerEvent:
    kind: EventKind
    role: Role
    request_id: str
    timestamp_ms: int
    # This gateway's jurisdiction and the other side's.
    local: str
    counterparty: str
    # The requesting service system (at the requester's side).
    service_system: str
    dataset: str
    purpose: str
    # "allow" or "deny", and the human-readable reason / agreement.
    decision: Decision
    reason: str
    record_count: int = 0
    agreement_id: str = ""
    agreement_digest: str = ""
    policy_set_digest: str = ""
    # Hex SHA-256 of the released plaintext payload ("" if nothing released).
    payload_digest: str = ""
    # Hex SHA-256 of the request envelope's PAE bytes.
    request_digest: str = ""
    # Base64 Ed25519 signatures: requester's over the request envelope,
    # holder's over the response envelope ("" where none exists, e.g. the
    # holder never answered).
    requester_signature: str = ""
    holder_signature: str = ""
    details: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # Hex SHA-256 of the response envelope's PAE bytes: with ``request_digest``
    # what the two signatures are made over (``gateway.envelope``), so both
    # verify offline from the entry alone.
    response_digest: str = ""
    # Why the transfer was lawful, from the agreement that decided it.
    legal_basis: str = ""
    approval_id: str = ""


@dataclass(frozen=True)
class AppendReceipt:
    index: int
    entry_hash: str  # hex


class LedgerWriter(Protocol):
    def append(self, event: LedgerEvent) -> AppendReceipt:
        """Durably append one event, atomically; raise StorageFailure on failure."""
        ...


class RiderLedgerWriter(Protocol):
    def append(self, event: LedgerEvent, rider: object | None = None) -> AppendReceipt:
        """``LedgerWriter.append``, with ``rider``: rows the store writes in the
        entry's own transaction, with its index (``gateway.ledger.storage``;
        only for a store that writes riders)."""
        ...


# --------------------------------------------------------------------------
# Making text from a peer safe to record (entries refuse control characters
# and over-long strings; a refusal must still be recordable).
# --------------------------------------------------------------------------

INVALID = "(invalid)"

# A holder ledgers a streamed bulk transfer in two entries with the same request
# id: ``stream_phase=started`` (the request, the decision and the holder's signed
# start) before the first chunk leaves, then ``stream_phase=closed`` (rows sent,
# chain head, the holder's signed end) when it ends, complete or interrupted.
STREAM_PHASE = "stream_phase"
STREAM_STARTED = "started"
STREAM_CLOSED = "closed"
# A holder's record-transfer entry: the units it charged to the requester's daily
# quota (a named request: the distinct subject ids asked; a bulk one: the records
# released). The start-up check adds these up (``gateway.ops.spent``); an entry
# without it was charged its record count.
QUOTA_CHARGED = "quota_charged"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean_reason(text: str, limits: Limits) -> str:
    """Free text for ``LedgerEvent.reason``: no control characters, at most
    ``limits.max_reason_chars`` characters."""
    text = _CONTROL.sub(" ", text)
    cap = limits.max_reason_chars
    return text if len(text) <= cap else text[: cap - 1] + "…"


def list_details(key: str, items: Sequence[str], limits: Limits) -> dict[str, str]:
    """``items`` comma-joined as ``details`` under ``key``. A details value holds at
    most ``limits.max_identifier_len`` characters, so a longer list continues under
    ``key_2``, ``key_3``, ... (an item is never split): e.g. the 64 jurisdictions a
    federated statistic may name are all recorded instead of the entry being refused.
    Read such a list back with ``read_list_details``."""
    cap = limits.max_identifier_len
    parts: list[str] = []
    part = ""
    for item in items:
        joined = f"{part},{item}" if part else item
        if part and len(joined) > cap:
            parts.append(part)
            part = item
        else:
            part = joined
    parts.append(part)
    return {key if i == 0 else f"{key}_{i + 1}": p for i, p in enumerate(parts)}


def read_list_details(details: Iterable[tuple[str, str]], key: str) -> tuple[str, ...]:
    """The items ``list_details`` recorded under ``key``, continuations included, in
    their order (an entry keeps its details sorted by key, so ``key_10`` comes before
    ``key_2`` there: reading by prefix or in stored order would scramble or cut the
    list). Empty when ``key`` is absent or recorded an empty list."""
    d = dict(details)
    items: list[str] = []
    n = 1
    while (name := key if n == 1 else f"{key}_{n}") in d:
        items += (item for item in d[name].split(",") if item)
        n += 1
    return tuple(items)


def safe_identifier(value: str, valid: Callable[[object], bool]) -> str:
    """An identifier from a peer, or ``(invalid)`` when ``valid`` (an ``is_*``
    predicate of ``gateway.identifiers``) refuses it."""
    return value if valid(value) else INVALID
