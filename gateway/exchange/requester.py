"""The requesting gateway's side of a record exchange.

Owns: validating a service system's request, sealing the subject ids to the
holder, calling it through ``PeerCaller``, verifying and opening the answer
(signed by the holder, bound to this request, records matching the signed
decision), and ledgering the outcome, whether transfer or refusal. Ledger
entries carry digests and signatures, never records or subject ids.

Does not own: the holder's side (``gateway.exchange.holder``), transport, TLS.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from google.protobuf.message import DecodeError

from gateway import crypto, domains, identifiers
from gateway._proto.dataexchange.gateway.v1 import peer_pb2
from gateway.envelope import envelope_digest, new_request_id
from gateway.errors import (
    CryptoFailure,
    GatewayError,
    VerificationFailed,
    status_name,
)
from gateway.exchange.peer import PeerCaller
from gateway.exchange.receipts import Answered
from gateway.exchange.records import (
    HEX64_OR_EMPTY,
    RecordsQuery,
    RecordsResult,
    offering_member,
    refusal_class,
    seal_context,
)
from gateway.identity import SealKeys
from gateway.ledger.events import (
    AppendReceipt,
    LedgerEvent,
    LedgerWriter,
    clean_reason,
    safe_identifier,
)
from gateway.limits import Limits
from gateway.sealing import SealSessions
from gateway.trust import TrustBundle


class RecordRequester:
    """Requesting gateway's side of a record exchange."""

    def __init__(
        self,
        caller: PeerCaller,
        bundle: Callable[[], TrustBundle],
        ledger: LedgerWriter,
        seal_key: crypto.AnySealPrivateKey | SealKeys,
        clock_ms: Callable[[], int],
        limits: Limits,
        rng: crypto.Rng = os.urandom,
        sessions: SealSessions | None = None,
        acknowledge: Callable[[Answered], None] | None = None,
    ) -> None:
        self._acknowledge = acknowledge
        self._caller = caller
        self._seal_keys = seal_key if isinstance(seal_key, SealKeys) else SealKeys(seal_key)
        self._sessions = sessions or SealSessions(self._seal_keys, limits, rng=rng)
        self._bundle = bundle
        self._ledger = ledger
        self._clock = clock_ms
        self._limits = limits

    def get_records(self, service_system: str, query: RecordsQuery) -> RecordsResult:
        query.validate(self._limits)  # garbage is refused without a ledger entry
        me = self._caller.me
        try:
            member = offering_member(self._bundle(), me, query.holder, query.dataset)
        except GatewayError as exc:
            # A well-formed attempt refused here never leaves, but is still recorded.
            self._append(
                {
                    "role": "requester",
                    "request_id": new_request_id(),
                    "local": me,
                    "counterparty": query.holder,
                    "service_system": service_system,
                    "dataset": query.dataset,
                    "purpose": query.purpose,
                },
                "refusal",
                "deny",
                clean_reason(f"refused before sending: {exc}", self._limits),
                details=(
                    (("client_reference", query.client_reference),)
                    if query.client_reference
                    else ()
                )
                + (("error_code", status_name(exc)),),
            )
            raise
        request_id = new_request_id()
        msg = peer_pb2.PeerRecordRequest(
            service_system=service_system,
            dataset=query.dataset,
            purpose=query.purpose,
            fields=query.fields,
            subject_count=len(query.subject_ids),
            client_reference=query.client_reference,
            reply_seal_key=self._seal_keys.current.public_key.raw,
            sealed_query=self._sessions.seal(
                member.seal_key,
                domains.SEAL_RECORD_PAYLOAD,
                peer_pb2.RecordQuery(subject_ids=query.subject_ids).SerializeToString(
                    deterministic=True
                ),
                seal_context(me, query.holder, request_id),
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
            "request_digest": envelope_digest(envelope, self._caller.suite).hex(),
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
                base,
                "refusal",
                "deny",
                clean_reason(f"exchange failed: {exc}", self._limits),
                details=details,
            )
            raise
        resp = reply.response
        holder_sig = crypto.b64(reply.response_envelope.signature)
        signed = {
            "holder_signature": holder_sig,
            "response_digest": envelope_digest(reply.response_envelope, self._caller.suite).hex(),
        }
        d = resp.decision
        if not (
            identifiers.is_answered_agreement_id(d.agreement_id)
            and HEX64_OR_EMPTY.fullmatch(d.agreement_digest)
            and HEX64_OR_EMPTY.fullmatch(d.policy_set_digest)
        ):
            reason = "holder's signed answer is malformed (agreement id or digests)"
            self._append(base | signed, "refusal", "deny", reason, details=details)
            raise VerificationFailed(reason)
        decided = signed | {
            "agreement_id": d.agreement_id,
            "agreement_digest": d.agreement_digest,
            "policy_set_digest": d.policy_set_digest,
            "legal_basis": clean_reason(d.legal_basis, self._limits),
            "approval_id": safe_identifier(d.approval_id, identifiers.is_answered_approval_id),
        }
        if not d.allowed:
            self._append(
                base | decided,
                "refusal",
                "deny",
                clean_reason(d.reason, self._limits),
                details=details,
            )
            cls = refusal_class(resp.error_code)
            raise cls(f"holder {query.holder} refused: {d.reason}")
        try:
            plaintext = self._sessions.open(
                domains.SEAL_RECORD_PAYLOAD,
                resp.sealed_records,
                seal_context(query.holder, me, request_id),
            )
            digest = crypto.suite_of(self._seal_keys.current).digest(plaintext)
            if not crypto.digest_equal(digest, resp.payload_digest):
                raise CryptoFailure()
            batch = peer_pb2.RecordBatch()
            batch.ParseFromString(plaintext)
            allowed = {f.name for f in d.fields}
            if len(batch.records) != resp.record_count or any(
                set(r.fields) - allowed for r in batch.records
            ):
                raise VerificationFailed("holder's records do not match its signed decision")
        except (GatewayError, DecodeError, ValueError) as exc:
            reason = clean_reason(f"holder's answer failed verification: {exc}", self._limits)
            self._append(base | decided, "refusal", "deny", reason, details=details)
            if isinstance(exc, GatewayError):
                raise
            raise VerificationFailed("holder's records are not a valid record batch") from exc
        receipt = self._append(
            base | decided,
            "transfer",
            "allow",
            clean_reason(d.reason, self._limits),
            record_count=resp.record_count,
            payload_digest=resp.payload_digest.hex(),
            details=details + ((("truncated", "true"),) if resp.truncated else ()),
        )
        return RecordsResult(
            request_id=request_id,
            holder=query.holder,
            dataset=query.dataset,
            records=tuple(batch.records),
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
        receipt = self._ledger.append(event)
        if self._acknowledge is not None and event.holder_signature and event.response_digest:
            # Ledgered first; the signed receipt goes to the holder later, in a batch.
            self._acknowledge(
                Answered(
                    event.counterparty,
                    event.request_id,
                    bytes.fromhex(event.request_digest),
                    bytes.fromhex(event.response_digest),
                )
            )
        return receipt
