"""Record exchange: the values and helpers both sides share.

Owns: ``RecordsQuery`` (what a service system asks for, validated with
expected-versus-actual messages), ``RecordsResult``, the associated data that
binds a sealed blob to sender, recipient and request, turning a policy
``Decision`` into its protobuf and into refusals, and making peer-supplied
text safe for a ledger entry. The two sides live in
``gateway.exchange.requester`` (the requesting gateway) and
``gateway.exchange.holder`` (the holding gateway).

Does not own: transport, TLS, policy evaluation, ledger storage, protobuf
conversion for service systems (``gateway.server.servicers``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from gateway import identifiers
from gateway._proto.dataexchange.gateway.v1 import common_pb2
from gateway.errors import (
    InvalidArgument,
    NotFound,
    PolicyDenied,
    QuotaExceeded,
    Rejected,
    class_for_status_name,
    clip,
    status_name,
)
from gateway.ledger.events import AppendReceipt
from gateway.limits import Limits
from gateway.policy.api import Decision
from gateway.trust import Member, TrustBundle

log = logging.getLogger(__name__)

# What a holder's signed refusal may be at the requester; any other
# ``error_code`` is a policy refusal.
HOLDER_REFUSALS: tuple[type[Rejected], ...] = (
    PolicyDenied,
    NotFound,
    QuotaExceeded,
    InvalidArgument,
)


def refusal_class(error_code: str) -> type[Rejected]:
    """The error a holder's signed refusal (its status name) raises at the requester."""
    cls = class_for_status_name(error_code)
    for allowed in HOLDER_REFUSALS:
        if cls is allowed:
            return allowed
    return PolicyDenied


@dataclass(frozen=True)
class RecordsQuery:
    """What a service system asks its own gateway for."""

    holder: str
    dataset: str
    purpose: str
    subject_ids: tuple[str, ...]
    fields: tuple[str, ...]
    client_reference: str = ""

    def validate(self, limits: Limits) -> None:
        """Structural checks; each failure says expected vs actual."""
        identifiers.jurisdiction(self.holder, "holder_jurisdiction")
        identifiers.code(self.dataset, "dataset")
        identifiers.purpose(self.purpose, "purpose")
        if len(self.subject_ids) > limits.max_subject_ids:
            raise InvalidArgument.expected(
                "subject_ids",
                f"at most {limits.max_subject_ids} ids",
                f"{len(self.subject_ids)} ids",
            )
        for sid in self.subject_ids:
            identifiers.subject_id_as_given(sid, "subject_ids")
        if len(set(self.subject_ids)) != len(self.subject_ids):
            raise InvalidArgument("subject_ids: an id is repeated")
        if len(self.fields) > limits.max_fields:
            raise InvalidArgument.expected(
                "fields", f"at most {limits.max_fields}", len(self.fields)
            )
        for f in self.fields:
            identifiers.code(f, "fields")
        if len(set(self.fields)) != len(self.fields):
            raise InvalidArgument("fields: a field is repeated")
        identifiers.client_reference(self.client_reference)


@dataclass(frozen=True)
class RecordsResult:
    request_id: str
    holder: str
    dataset: str
    records: tuple[common_pb2.Record, ...]  # as the holder sealed them (verified)
    decision: common_pb2.PolicyDecision
    receipt: AppendReceipt
    local: str
    truncated: bool = False


# The digests a holder's answer may carry (the rule is ``gateway.identifiers``'s).
HEX64_OR_EMPTY = identifiers.HEX64_OR_EMPTY


def offering_member(bundle: TrustBundle, me: str, holder: str, dataset: str) -> Member:
    """The federation member a request goes to, if it is another jurisdiction
    that offers ``dataset`` (InvalidArgument or NotFound naming what it offers)."""
    if holder == me:
        raise InvalidArgument(
            f"holder_jurisdiction {me} is this gateway's own jurisdiction; "
            "the gateway exchanges data across boundaries only"
        )
    member = bundle.member(holder)
    if dataset not in member.datasets:
        raise NotFound(
            f"jurisdiction {holder} ({member.name}) offers no dataset {clip(repr(dataset))}; "
            f"it offers: {', '.join(member.datasets) or 'none'}"
        )
    return member


def seal_context(sender: str, recipient: str, request_id: str) -> bytes:
    """Associated data binding a sealed blob to who sent it, to whom, for which request."""
    return f"{sender}\n{recipient}\n{request_id}".encode()


def decision_to_proto(d: Decision) -> common_pb2.PolicyDecision:
    return common_pb2.PolicyDecision(
        allowed=d.allowed,
        reason=d.reason,
        agreement_id=d.agreement_id,
        agreement_digest=d.agreement_digest,
        policy_set_digest=d.policy_set_digest,
        fields=[common_pb2.FieldRelease(name=f.name, transform=f.transform) for f in d.fields],
        legal_basis=d.legal_basis,
        approval_id=d.approval_id,
    )


def refusal_from(decision: Decision, exc: Rejected) -> Decision:
    """``decision`` turned into a refusal for ``exc``: its agreement is kept, nothing released."""
    return replace(
        decision,
        allowed=False,
        reason=str(exc),
        error_code=status_name(exc),
        fields=(),
        max_records=0,
    )


def refusal(policy_set_digest: str, exc: Rejected) -> Decision:
    """A refusal under no agreement."""
    return refusal_from(Decision(False, "", "", "", "", policy_set_digest, (), 0), exc)
