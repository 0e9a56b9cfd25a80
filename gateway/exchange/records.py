"""Record exchange: the path a record takes from holder to requesting service system.

Owns: ``RecordRequester`` (validate a service system's request, seal the
subject ids to the holder, call it, verify and open the answer, ledger the
outcome) and ``RecordHolder`` (authenticate the peer request, ask the policy
gate, read the local source, apply the agreement's transforms, seal the
records to the requester, ledger, sign the answer).

Every authenticated request ends in exactly one ledger entry on each side,
whether it was served or refused; a refusal is signed by the holder like a
transfer. Ledger entries carry digests and signatures, never records or
subject ids.

Does not own: transport, TLS, policy evaluation, ledger storage, protobuf
conversion for service systems (``gateway.server.servicers``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway import crypto, domains
from gateway._proto.dataexchange.gateway.v1 import common_pb2, peer_pb2
from gateway.catalogue import CODE_RE, Catalogue, is_jurisdiction_code
from gateway.config import SERVICE_ID_RE
from gateway.envelope import new_request_id
from gateway.errors import (
    CryptoFailure,
    GatewayError,
    InvalidArgument,
    NotFound,
    PolicyDenied,
    QuotaExceeded,
    Rejected,
)
from gateway.exchange.peer import PeerCaller, PeerRequest, PeerResponder
from gateway.ledger.events import AppendReceipt, LedgerEvent, LedgerWriter
from gateway.limits import Limits
from gateway.policy.api import AccessRequest, Decision, PolicyGate
from gateway.sources import DataSource
from gateway.trust import TrustBundle

log = logging.getLogger(__name__)

_CODE = re.compile(CODE_RE)
_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_CLIENT_REF = re.compile(r"^[A-Za-z0-9._:-]{0,64}$")
_SUBJECT = re.compile(r"^[0-9A-Za-z]{1,64}$")

_ERROR_CLASSES: dict[str, type[Rejected]] = {
    "PERMISSION_DENIED": PolicyDenied,
    "NOT_FOUND": NotFound,
    "RESOURCE_EXHAUSTED": QuotaExceeded,
    "INVALID_ARGUMENT": InvalidArgument,
}


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
        if not is_jurisdiction_code(self.holder):
            raise InvalidArgument.expected(
                "holder_jurisdiction",
                "a six-digit administrative division code like 110000",
                self.holder,
            )
        if not _CODE.fullmatch(self.dataset):
            raise InvalidArgument.expected(
                "dataset", "a catalogue code like si_contributions", self.dataset
            )
        if not _PURPOSE.fullmatch(self.purpose):
            raise InvalidArgument.expected(
                "purpose", "a purpose code like housing_fund_transfer", self.purpose
            )
        if len(self.subject_ids) > limits.max_subject_ids:
            raise InvalidArgument.expected(
                "subject_ids",
                f"at most {limits.max_subject_ids} ids",
                f"{len(self.subject_ids)} ids",
            )
        for sid in self.subject_ids:
            if not _SUBJECT.fullmatch(sid):
                raise InvalidArgument(
                    "subject_ids: each id must be 1-64 letters or digits (e.g. an 18-character ID number)"
                )
        if len(set(self.subject_ids)) != len(self.subject_ids):
            raise InvalidArgument("subject_ids: an id is repeated")
        if len(self.fields) > limits.max_fields:
            raise InvalidArgument.expected(
                "fields", f"at most {limits.max_fields}", len(self.fields)
            )
        for f in self.fields:
            if not _CODE.fullmatch(f):
                raise InvalidArgument.expected("fields", "column names like months_contributed", f)
        if len(set(self.fields)) != len(self.fields):
            raise InvalidArgument("fields: a field is repeated")
        if not _CLIENT_REF.fullmatch(self.client_reference):
            raise InvalidArgument.expected(
                "client_reference",
                "at most 64 characters of [A-Za-z0-9._:-]",
                self.client_reference,
            )


@dataclass(frozen=True)
class RecordsResult:
    request_id: str
    holder: str
    dataset: str
    records: tuple[dict[str, str], ...]
    decision: common_pb2.PolicyDecision
    receipt: AppendReceipt
    local: str
    truncated: bool = False


_SERVICE_ID = re.compile(SERVICE_ID_RE)
_HEX64_OR_EMPTY = re.compile(r"^(?:[0-9a-f]{64})?$")
_AGREEMENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{0,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_REASON = 1000
INVALID = "(invalid)"


def clean_reason(text: str) -> str:
    """Text from a peer, made safe for a ledger entry: no control characters, bounded."""
    text = _CONTROL.sub(" ", text)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _safe(value: str, pattern: re.Pattern[str]) -> str:
    """An identifier from a peer, or a placeholder when it is not one."""
    return value if pattern.fullmatch(value) else INVALID


def _aad(sender: str, recipient: str, request_id: str) -> bytes:
    """Associated data binding a sealed blob to who sent it, to whom, for which request."""
    return f"{sender}\n{recipient}\n{request_id}".encode()


def _decision_pb(d: Decision) -> common_pb2.PolicyDecision:
    return common_pb2.PolicyDecision(
        allowed=d.allowed,
        reason=d.reason,
        agreement_id=d.agreement_id,
        agreement_digest=d.agreement_digest,
        policy_set_digest=d.policy_set_digest,
        fields=[common_pb2.FieldRelease(name=f.name, transform=f.transform) for f in d.fields],
    )


class RecordRequester:
    """Requesting gateway's side of a record exchange."""

    def __init__(
        self,
        caller: PeerCaller,
        bundle: Callable[[], TrustBundle],
        ledger: LedgerWriter,
        seal_key: crypto.SealPrivateKey,
        clock_ms: Callable[[], int],
        limits: Limits,
        rng: crypto.Rng = os.urandom,
    ) -> None:
        self._caller = caller
        self._seal_key = seal_key
        self._bundle = bundle
        self._ledger = ledger
        self._clock = clock_ms
        self._limits = limits
        self._rng = rng

    def get_records(self, service_system: str, query: RecordsQuery) -> RecordsResult:
        query.validate(self._limits)
        me = self._caller.me
        if query.holder == me:
            raise InvalidArgument(
                f"holder_jurisdiction {me} is this gateway's own jurisdiction; "
                "the gateway exchanges data across boundaries only"
            )
        bundle = self._bundle()
        member = bundle.member(query.holder)
        if query.dataset not in member.datasets:
            raise NotFound(
                f"jurisdiction {query.holder} ({member.name}) offers no dataset {query.dataset!r}; "
                f"it offers: {', '.join(member.datasets) or 'none'}"
            )
        request_id = new_request_id()
        msg = peer_pb2.PeerRecordRequest(
            service_system=service_system,
            dataset=query.dataset,
            purpose=query.purpose,
            fields=query.fields,
            subject_count=len(query.subject_ids),
            client_reference=query.client_reference,
            sealed_query=crypto.seal(
                member.seal_key,
                domains.SEAL_RECORD_PAYLOAD,
                peer_pb2.RecordQuery(subject_ids=query.subject_ids).SerializeToString(
                    deterministic=True
                ),
                _aad(me, query.holder, request_id),
                self._rng,
            ),
        )
        envelope = self._caller.prepare(query.holder, msg, domains.PEER_RECORD_REQUEST, request_id)
        base = {
            "role": "requester",
            "request_id": request_id,
            "local": me,
            "counterparty": query.holder,
            "service_system": service_system,
            "dataset": query.dataset,
            "purpose": query.purpose,
            "request_digest": crypto.sha256_hex(
                crypto.pae(envelope.payload_type, envelope.payload)
            ),
            "requester_signature": crypto.b64(envelope.signature),
        }
        details = (("client_reference", query.client_reference),) if query.client_reference else ()
        try:
            reply = self._caller.send(
                query.holder,
                "FetchRecords",
                envelope,
                request_id,
                domains.PEER_RECORD_RESPONSE,
                peer_pb2.PeerRecordResponse,
            )
        except GatewayError as exc:
            self._append(
                base, "refusal", "deny", clean_reason(f"exchange failed: {exc}"), details=details
            )
            raise
        resp = reply.response
        holder_sig = crypto.b64(reply.response_envelope.signature)
        d = resp.decision
        if not (
            _AGREEMENT_ID.fullmatch(d.agreement_id)
            and _HEX64_OR_EMPTY.fullmatch(d.agreement_digest)
            and _HEX64_OR_EMPTY.fullmatch(d.policy_set_digest)
        ):
            reason = "holder's signed answer is malformed (agreement id or digests)"
            self._append(
                base | {"holder_signature": holder_sig}, "refusal", "deny", reason, details=details
            )
            raise CryptoFailure("holder's answer failed verification")
        decided = {
            "agreement_id": d.agreement_id,
            "agreement_digest": d.agreement_digest,
            "policy_set_digest": d.policy_set_digest,
            "holder_signature": holder_sig,
        }
        if not d.allowed:
            self._append(base | decided, "refusal", "deny", clean_reason(d.reason), details=details)
            cls = _ERROR_CLASSES.get(resp.error_code, PolicyDenied)
            raise cls(f"holder {query.holder} refused: {d.reason}")
        try:
            plaintext = crypto.open_sealed(
                self._seal_key,
                domains.SEAL_RECORD_PAYLOAD,
                resp.sealed_records,
                _aad(query.holder, me, request_id),
            )
            if not crypto.digest_equal(crypto.sha256(plaintext), resp.payload_digest):
                raise CryptoFailure()
            batch = peer_pb2.RecordBatch()
            batch.ParseFromString(plaintext)
            allowed = {f.name for f in d.fields}
            if len(batch.records) != resp.record_count or any(
                set(r.fields) - allowed for r in batch.records
            ):
                raise CryptoFailure("holder's records do not match its signed decision")
        except (GatewayError, ValueError) as exc:
            reason = clean_reason(f"holder's answer failed verification: {exc}")
            self._append(base | decided, "refusal", "deny", reason, details=details)
            raise CryptoFailure("holder's answer failed verification") from exc
        receipt = self._append(
            base | decided,
            "transfer",
            "allow",
            clean_reason(d.reason),
            record_count=resp.record_count,
            payload_digest=resp.payload_digest.hex(),
            details=details + ((("truncated", "true"),) if resp.truncated else ()),
        )
        return RecordsResult(
            request_id=request_id,
            holder=query.holder,
            dataset=query.dataset,
            records=tuple(dict(r.fields) for r in batch.records),
            decision=d,
            receipt=receipt,
            local=me,
            truncated=resp.truncated,
        )

    def _append(
        self,
        base: dict[str, str],
        kind: str,
        decision: str,
        reason: str,
        record_count: int = 0,
        payload_digest: str = "",
        details: tuple[tuple[str, str], ...] = (),
    ) -> AppendReceipt:
        event = LedgerEvent(
            kind=kind,  # type: ignore[arg-type]
            decision=decision,  # type: ignore[arg-type]
            reason=reason,
            timestamp_ms=self._clock(),
            record_count=record_count,
            payload_digest=payload_digest,
            details=details,
            **base,  # type: ignore[arg-type]
        )
        return self._ledger.append(event)


class RecordHolder:
    """Holding gateway's side of a record exchange."""

    def __init__(
        self,
        responder: PeerResponder,
        bundle: Callable[[], TrustBundle],
        catalogue: Callable[[], Catalogue],
        served: Callable[[], Sequence[str]],
        policy: PolicyGate,
        source: DataSource,
        ledger: LedgerWriter,
        seal_key: crypto.SealPrivateKey,
        clock_ms: Callable[[], int],
        limits: Limits,
        rng: crypto.Rng = os.urandom,
    ) -> None:
        self._responder = responder
        self._bundle = bundle
        self._catalogue = catalogue
        self._served = served
        self._policy = policy
        self._source = source
        self._ledger = ledger
        self._seal_key = seal_key
        self._clock = clock_ms
        self._limits = limits
        self._rng = rng

    def fetch_records(
        self, envelope: peer_pb2.SignedEnvelope, tls_identity: str | None
    ) -> peer_pb2.SignedEnvelope:
        # Unauthenticated input: errors propagate as gRPC statuses, nothing is ledgered.
        request = self._responder.open(
            envelope, domains.PEER_RECORD_REQUEST, peer_pb2.PeerRecordRequest, tls_identity
        )
        # From here the request is authenticated: every outcome is signed and ledgered.
        msg = request.message
        access = AccessRequest(
            requester=request.sender,
            service_system=msg.service_system,
            holder=self._responder.me,
            dataset=msg.dataset,
            purpose=msg.purpose,
            fields=tuple(msg.fields),
            subject_count=msg.subject_count,
            request_id=request.request_id,
            timestamp_ms=msg.header.timestamp_ms,
        )
        response = peer_pb2.PeerRecordResponse()
        problem = self._check_request(msg)
        decision = (
            _refusal_for(self._policy.policy_set_digest, problem)
            if problem
            else self._decide(access)
        )
        if decision.allowed:
            try:
                self._serve(request, access, decision, response)
            except Rejected as exc:
                decision = _refusal(decision, exc)
                response.Clear()
        response.decision.CopyFrom(_decision_pb(decision))
        if not decision.allowed:
            response.error_code = decision.error_code or "PERMISSION_DENIED"
        out = self._responder.respond(request, response, domains.PEER_RECORD_RESPONSE)
        # Ledger before release: if this fails the records never leave.
        self._ledger.append(
            LedgerEvent(
                kind="transfer" if decision.allowed else "refusal",
                role="holder",
                request_id=request.request_id,
                timestamp_ms=self._clock(),
                local=self._responder.me,
                counterparty=request.sender,
                service_system=_safe(msg.service_system, _SERVICE_ID),
                dataset=_safe(msg.dataset, _CODE),
                purpose=_safe(msg.purpose, _PURPOSE),
                decision="allow" if decision.allowed else "deny",
                reason=clean_reason(decision.reason),
                record_count=response.record_count,
                agreement_id=decision.agreement_id,
                agreement_digest=decision.agreement_digest,
                policy_set_digest=decision.policy_set_digest,
                payload_digest=response.payload_digest.hex(),
                request_digest=request.digest_hex,
                requester_signature=request.signature_b64,
                holder_signature=crypto.b64(out.signature),
                details=tuple(
                    kv
                    for kv in (
                        ("client_reference", _safe(msg.client_reference, _CLIENT_REF)),
                        ("truncated", "true" if response.truncated else ""),
                    )
                    if kv[1]
                ),
            )
        )
        return out

    def _check_request(self, msg: peer_pb2.PeerRecordRequest) -> InvalidArgument | None:
        """Structural checks of an authenticated request (the peer may be buggy)."""
        if not _SERVICE_ID.fullmatch(msg.service_system):
            return InvalidArgument.expected(
                "service_system",
                "an id like hebei-housing-fund",
                _safe(msg.service_system, _SERVICE_ID),
            )
        try:
            RecordsQuery(
                self._responder.me,
                msg.dataset,
                msg.purpose,
                (),
                tuple(msg.fields),
                msg.client_reference,
            ).validate(self._limits)
        except InvalidArgument as exc:
            return exc
        return None

    def _decide(self, access: AccessRequest) -> Decision:
        if access.dataset not in self._served():
            return Decision(
                allowed=False,
                reason=f"jurisdiction {access.holder} serves no dataset {access.dataset!r}",
                error_code="NOT_FOUND",
                agreement_id="",
                agreement_digest="",
                policy_set_digest=self._policy.policy_set_digest,
                fields=(),
                max_records=0,
            )
        if len(access.fields) > self._limits.max_fields:
            return _refusal_for(
                self._policy.policy_set_digest,
                InvalidArgument.expected(
                    "fields", f"at most {self._limits.max_fields}", len(access.fields)
                ),
            )
        return self._policy.decide(access)

    def _serve(
        self,
        request: PeerRequest[peer_pb2.PeerRecordRequest],
        access: AccessRequest,
        decision: Decision,
        response: peer_pb2.PeerRecordResponse,
    ) -> None:
        msg = request.message
        me, requester = self._responder.me, request.sender
        try:
            query_bytes = crypto.open_sealed(
                self._seal_key,
                domains.SEAL_RECORD_PAYLOAD,
                msg.sealed_query,
                _aad(requester, me, request.request_id),
            )
            query = peer_pb2.RecordQuery()
            query.ParseFromString(query_bytes)
        except (CryptoFailure, ValueError) as exc:
            raise InvalidArgument("sealed_query could not be opened") from exc
        ids = tuple(query.subject_ids)
        if len(ids) != msg.subject_count:
            raise InvalidArgument.expected("subject_count", len(ids), msg.subject_count)
        if len(ids) > self._limits.max_subject_ids:
            raise InvalidArgument.expected(
                "subject ids", f"<= {self._limits.max_subject_ids}", len(ids)
            )
        dataset = self._catalogue().dataset(msg.dataset)
        limit = min(decision.max_records, self._limits.max_records_per_response)
        columns = [f.name for f in decision.fields]
        if dataset.subject_column not in columns:
            columns.append(dataset.subject_column)
        if ids:
            rows = self._source.fetch(dataset, ids, columns, limit)
        else:
            rows = self._source.scan(dataset, columns, limit)
        if len(rows) > limit and not ids:
            rows = rows[:limit]
            response.truncated = True
        if len(rows) > limit:
            raise PolicyDenied(
                f"the request matches more than {limit} records, the agreement's maximum per request; "
                "narrow it"
            )
        released = self._policy.release(decision, access, rows)
        batch = peer_pb2.RecordBatch(records=[common_pb2.Record(fields=r) for r in released])
        plaintext = batch.SerializeToString(deterministic=True)
        response.record_count = len(released)
        response.payload_digest = crypto.sha256(plaintext)
        response.sealed_records = crypto.seal(
            self._bundle().member(requester).seal_key,
            domains.SEAL_RECORD_PAYLOAD,
            plaintext,
            _aad(me, requester, request.request_id),
            self._rng,
        )


def _error_code(exc: Rejected) -> str:
    return str(exc.grpc_code.name)


def _refusal(decision: Decision, exc: Rejected) -> Decision:
    return Decision(
        allowed=False,
        reason=str(exc),
        error_code=_error_code(exc),
        agreement_id=decision.agreement_id,
        agreement_digest=decision.agreement_digest,
        policy_set_digest=decision.policy_set_digest,
        fields=(),
        max_records=0,
    )


def _refusal_for(policy_set_digest: str, exc: Rejected) -> Decision:
    return Decision(
        allowed=False,
        reason=str(exc),
        error_code=_error_code(exc),
        agreement_id="",
        agreement_digest="",
        policy_set_digest=policy_set_digest,
        fields=(),
        max_records=0,
    )


__all__ = ["QuotaExceeded", "RecordHolder", "RecordRequester", "RecordsQuery", "RecordsResult"]
