"""The seam between the exchange path and the policy engine.

Owns: the request the exchange path asks about (``AccessRequest``), the answer
(``Decision``), a charge to the daily quota (``QuotaCharge``) and the
``PolicyGate`` protocol. Does not own: agreement files, evaluation or transforms
(the rest of ``gateway.policy``).

Quota units: a named request is charged one unit per distinct subject id it
asks for, found or not, before the source is read (so asking costs the same
whether or not a person is in the register); a bulk request one unit per
record released. A charge is given back (``refund``) only when the exchange
fails before anything leaves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.policy.quota import QuotaKey


@dataclass(frozen=True)
class AccessRequest:
    requester: str  # requesting jurisdiction code
    service_system: str  # requesting service system id
    holder: str  # holding jurisdiction code (this gateway)
    dataset: str
    purpose: str
    fields: tuple[str, ...]  # requested fields; () means all allowed
    subject_count: int  # 0 means a bulk request
    request_id: str
    timestamp_ms: int


@dataclass(frozen=True)
class FieldRule:
    name: str
    transform: str  # "pass" | "mask" | "pseudonymise" | "generalise"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    # gRPC status name to surface on refusal ("PERMISSION_DENIED", "NOT_FOUND",
    # "RESOURCE_EXHAUSTED"); "" when allowed.
    error_code: str
    agreement_id: str
    agreement_digest: str
    policy_set_digest: str
    fields: tuple[FieldRule, ...]  # released fields, in order
    max_records: int
    # Why a transfer under this agreement is lawful ("" without an agreement).
    legal_basis: str = ""
    approval_id: str = ""


@dataclass(frozen=True)
class QuotaCharge:
    """Units charged to one requester's daily quota (what ``refund`` gives back)."""

    key: QuotaKey
    units: int


class PolicyGate(Protocol):
    def decide(self, request: AccessRequest) -> Decision:
        """Evaluate; deny by default. Pure apart from reading quota usage."""
        ...

    def charge(self, decision: Decision, request: AccessRequest, units: int) -> QuotaCharge:
        """Charge ``units`` to the requester's daily quota under the decision's
        agreement (re-checked as in force): atomically, or QuotaExceeded and
        nothing charged. Charge before anything is released."""
        ...

    def refund(self, charge: QuotaCharge) -> None:
        """Give back a charge whose exchange failed before anything was released."""
        ...

    def release(
        self, decision: Decision, request: AccessRequest, rows: Sequence[Mapping[str, object]]
    ) -> list[dict[str, str]]:
        """Apply the decision's transforms to rows and keep only its fields (the
        caller charges the quota: ``charge``)."""
        ...

    def release_columns(
        self,
        decision: Decision,
        request: AccessRequest,
        columns: Mapping[str, Sequence[object]],
        n_rows: int,
    ) -> list[tuple[str, list[str]]]:
        """``release`` of ``n_rows`` rows given column by column: (field, values in
        row order) for each released field, transforms applied over the batch.
        Same checks; the caller charges the quota too."""
        ...

    def quota_left(self, decision: Decision, request: AccessRequest) -> int:
        """Units the requester may still be charged today under the decision's
        agreement (0 if none; streamed transfers size their chunks by it)."""
        ...

    @property
    def policy_set_digest(self) -> str: ...
