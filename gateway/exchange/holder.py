"""The holding gateway's side of a record exchange.

Owns: authenticating the peer request (``PeerResponder``), checking its
identifiers, asking the policy gate, charging the daily quota, reading the
local source, applying the agreement's transforms, sealing the records to the
requester, ledgering (before anything leaves) and signing the answer. Every
authenticated request ends in exactly one ledger entry, and a refusal is signed
like a transfer. With a ``SubjectIndexer`` the entry also commits to whom it
concerns (the subjects whose rows it released and the ids it asked for, each in
the normal form subject access looks up; or the dataset a bulk request covered;
``gateway.subject``).

Quota: a named request is charged one unit per distinct subject id it asks for,
before the source is read (a refusal then costs nothing, and asking for ids
that are not in the register costs as much as asking for ones that are); a bulk
request one unit per record released. Only a released exchange stays charged:
any failure after the charge (sealing to the requester, signing, the ledger
append) gives it back, except a ledger append whose commit's outcome is unknown
(``CommitUnknown``: the entry, charge and all, may be stored), which keeps it. A transfer entry records what it was charged
(``quota_charged``), which the start-up check (``gateway.ops.spent``) adds up.

Does not own: the requester's side (``gateway.exchange.requester``), policy
evaluation, storage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import DecodeError

from gateway import crypto, domains, identifiers
from gateway._proto.dataexchange.gateway.v1 import common_pb2, peer_pb2
from gateway.catalogue import Catalogue, Dataset
from gateway.envelope import envelope_digest
from gateway.errors import (
    CommitUnknown,
    CryptoFailure,
    InvalidArgument,
    NotFound,
    PolicyDenied,
    Rejected,
    clip,
    status_name,
)
from gateway.exchange.peer import PeerRequest, PeerResponder
from gateway.exchange.records import (
    RecordsQuery,
    decision_to_proto,
    refusal,
    refusal_from,
    seal_context,
)
from gateway.identity import SealKeys
from gateway.keyring import utc_from_ms
from gateway.ledger.events import (
    QUOTA_CHARGED,
    LedgerEvent,
    LedgerWriter,
    clean_reason,
    safe_identifier,
)
from gateway.limits import Limits
from gateway.policy.api import AccessRequest, Decision, PolicyGate, QuotaCharge
from gateway.sealing import SealSessions
from gateway.sources import DataSource
from gateway.subject.index import bulk_coverage
from gateway.subject.indexer import Concerned, SubjectIndexer
from gateway.trust import TrustBundle

log = logging.getLogger(__name__)


class _Header(Protocol):
    timestamp_ms: int


class _Asked(Protocol):
    """What record and stream requests share: the fields the checks and decision read."""

    @property
    def header(self) -> _Header: ...
    @property
    def service_system(self) -> str: ...
    @property
    def dataset(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def fields(self) -> Sequence[str]: ...
    @property
    def client_reference(self) -> str: ...


@dataclass(frozen=True)
class _Served:
    """What serving an allowed request did: the quota charge to give back if the
    exchange then fails, and whom its entry names: the normal forms of the ids
    asked and of the subjects whose rows it released (None: no rows were read)."""

    charge: QuotaCharge | None = None
    subjects: tuple[str, ...] | None = None


def _numeric_subjects(dataset: Dataset) -> bool:
    return dataset.column(dataset.subject_column).type in ("integer", "float")


def _asked_forms(dataset: Dataset, ids: Sequence[str], strict: bool) -> set[str]:
    """The normal form of each id asked, as ``dataset``'s subject column matches it
    (``identifiers.subject_id_in_column``: ``0012345`` against a number column is
    ``12345``). An id that can match nothing there is InvalidArgument (never
    quoting it) if ``strict``, else named as given (a refused request still
    concerns the person asked about)."""
    numeric = _numeric_subjects(dataset)
    forms: set[str] = set()
    for i in ids:
        try:
            forms.add(identifiers.subject_id_in_column(i, numeric))
        except InvalidArgument:
            if strict:
                raise
            forms.add(identifiers.subject_id(i))
    return forms


def _released_subjects(dataset: Dataset, rows: Sequence[Mapping[str, object]]) -> tuple[str, ...]:
    """The normal forms of the subject values of ``rows`` as the source returned them."""
    forms = {identifiers.subject_id_of_value(r.get(dataset.subject_column)) for r in rows}
    if None in forms:  # never the value: it is personal data
        log.warning(
            "dataset %s: a released row's subject value has no subject-id form; "
            "it is indexed under the ids asked only",
            dataset.code,
        )
    return tuple(sorted(f for f in forms if f is not None))


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
        seal_key: crypto.AnySealPrivateKey | SealKeys,
        clock_ms: Callable[[], int],
        limits: Limits,
        rng: crypto.Rng = os.urandom,
        indexer: SubjectIndexer | None = None,
        sessions: SealSessions | None = None,
    ) -> None:
        self._responder = responder
        self._bundle = bundle
        self._catalogue = catalogue
        self._served = served
        self._policy = policy
        self._source = source
        self._ledger = ledger
        self._seal_keys = seal_key if isinstance(seal_key, SealKeys) else SealKeys(seal_key)
        self._sessions = sessions or SealSessions(self._seal_keys, limits, rng=rng)
        self._clock = clock_ms
        self._limits = limits
        self._rng = rng
        self._indexer = indexer

    def _reply_key(self, requester: str, named: bytes) -> crypto.AnySealPublicKey:
        """The requester's sealing key to seal the records to: the one it names
        (``reply_seal_key``) if the bundle lists it for the requester as valid
        now (current, or retired inside a rotation's overlap), else its current."""
        member = self._bundle().member(requester)
        if not named:
            return member.seal_key
        for key in member.seal_keys_at(utc_from_ms(self._clock())):
            if crypto.digest_equal(key.raw, named):
                return key
        raise InvalidArgument(
            f"reply_seal_key is not a sealing key the trust bundle lists for {requester} now"
        )

    def fetch_records(
        self, envelope: peer_pb2.SignedEnvelope, tls_identity: str | None
    ) -> peer_pb2.SignedEnvelope:
        # Unauthenticated input: errors propagate as gRPC statuses, nothing is ledgered.
        request = self._responder.open(
            envelope, domains.PEER_RECORD_REQUEST, peer_pb2.PeerRecordRequest, tls_identity
        )
        # From here the request is authenticated: every outcome is signed and ledgered.
        msg = request.message
        response = peer_pb2.PeerRecordResponse()
        access, decision = self.judge(request, msg.subject_count)
        try:
            ids: tuple[str, ...] | None = self._open_query(request)
        except InvalidArgument as exc:
            ids = None
            if decision.allowed:
                decision = refusal_from(decision, exc)
        served = _Served()
        appending = False
        if decision.allowed:
            assert ids is not None
            try:
                served = self._serve(request, access, decision, response, ids)
            except Rejected as exc:  # _serve gave back what it charged
                decision = refusal_from(decision, exc)
                response.Clear()
        try:
            response.decision.CopyFrom(decision_to_proto(decision))
            if not decision.allowed:
                response.error_code = decision.error_code or status_name(PolicyDenied)
            out = self._responder.respond(request, response, domains.PEER_RECORD_RESPONSE)
            # Ledger before release: if this fails the records never leave, and the
            # quota charge is given back.
            charged = served.charge
            event = self.event(
                request,
                decision,
                out,
                record_count=response.record_count,
                payload_digest=response.payload_digest.hex(),
                details=(
                    ("truncated", "true" if response.truncated else ""),
                    (QUOTA_CHARGED, str(charged.units) if charged is not None else ""),
                ),
            )
            appending = True
            self.append(event, self.concerned(msg.dataset, ids, decision, served.subjects))
        except CommitUnknown:
            if not appending:
                self._refund(served.charge)
                raise
            # The entry may be committed, charge and all: giving the charge back
            # could leave the quota store below what the ledger says was charged.
            # Kept (the requester is at worst over-charged), never refunded.
            log.error(
                "ledger append of request %s: the commit's outcome is unknown (connection "
                "lost); its quota charge%s is kept, not given back",
                request.request_id,
                f" of {served.charge.units}" if served.charge is not None else "",
            )
            raise
        except BaseException:
            self._refund(served.charge)
            raise
        return out

    def _refund(self, charge: QuotaCharge | None) -> None:
        """Give back the quota charge of an exchange that failed before its records
        left. A refund that fails leaves the requester over-charged, never under."""
        if charge is None:
            return
        try:
            self._policy.refund(charge)
        except Exception as exc:  # the exchange's own failure is the one to report
            log.warning(
                "quota charge of %d for %s/%s on %s not given back: %s",
                charge.units,
                charge.key.requester,
                charge.key.service_system,
                charge.key.dataset,
                type(exc).__name__,
            )

    def append(self, event: LedgerEvent, concerned: Concerned | None) -> None:
        """Ledger a holder entry, through the subject indexer when there is one (so
        the entry commits to whom it concerns). Shared with the streamed bulk path."""
        if self._indexer is None:
            self._ledger.append(event)
        else:
            self._indexer.append(event, concerned)

    def _open_query(self, request: PeerRequest[peer_pb2.PeerRecordRequest]) -> tuple[str, ...]:
        msg = request.message
        try:
            query_bytes = self._sessions.open(
                domains.SEAL_RECORD_PAYLOAD,
                msg.sealed_query,
                seal_context(request.sender, self._responder.me, request.request_id),
            )
            query = peer_pb2.RecordQuery()
            query.ParseFromString(query_bytes)
        except (CryptoFailure, DecodeError, ValueError) as exc:
            raise InvalidArgument("sealed_query could not be opened") from exc
        # Only ids the subject index can record may reach the source: a form it would
        # skip (a trailing space, which some registers' collations ignore) would
        # release records that no person's history lists. Never echoed.
        return tuple(identifiers.subject_id_as_given(i, "subject_ids") for i in query.subject_ids)

    def concerned(
        self,
        dataset_code: str,
        ids: tuple[str, ...] | None,
        decision: Decision,
        subjects: tuple[str, ...] | None = None,
    ) -> Concerned | None:
        """Whom the entry concerns, for subject access (None: nobody we can name).
        ``ids`` () is a bulk request: the whole dataset or a pseudonymised extract.
        A named entry names ``subjects`` when serving found them (``_Served``: every
        id asked and every released row's subject, in normal form), else every id
        asked in the normal form the dataset's subject column matches it by, so the
        person subject access looks up finds it either way."""
        if ids is None or dataset_code not in self._served():
            return None
        try:
            dataset = self._catalogue().dataset(dataset_code)
        except NotFound:
            return None
        fields = tuple((f.name, f.transform) for f in decision.fields) if decision.allowed else ()
        if ids:
            named = set(subjects) if subjects is not None else _asked_forms(dataset, ids, False)
            return Concerned("named", dataset.code, tuple(sorted(named)), fields)
        coverage = bulk_coverage(dataset.subject_column, fields) if decision.allowed else "dataset"
        return Concerned(coverage, dataset.code, (), fields)

    def judge(
        self,
        request: PeerRequest[Any],
        subject_count: int,
        more: Callable[[], InvalidArgument | None] = lambda: None,
    ) -> tuple[AccessRequest, Decision]:
        """The access request an authenticated peer request (records or stream) makes,
        and the decision on it: a refusal if its identifiers (or ``more``, the caller's
        own structural checks) fail, else the policy's. Shared with the streamed bulk
        path (``gateway.exchange.bulk_holder``)."""
        msg: _Asked = request.message
        access = AccessRequest(
            requester=request.sender,
            service_system=msg.service_system,
            holder=self._responder.me,
            dataset=msg.dataset,
            purpose=msg.purpose,
            fields=tuple(msg.fields),
            subject_count=subject_count,
            request_id=request.request_id,
            # The holder's own time, not the header's: the quota day is this
            # gateway's to decide (a requester may skew its header by the replay
            # window, which near midnight would pick the day it charges).
            timestamp_ms=self._clock(),
        )
        problem = self._check_request(msg) or more()
        if problem:
            return access, refusal(self._policy.policy_set_digest, problem)
        return access, self._decide(access)

    def event(
        self,
        request: PeerRequest[Any],
        decision: Decision,
        signed: peer_pb2.SignedEnvelope,
        record_count: int,
        payload_digest: str,
        details: tuple[tuple[str, str], ...] = (),
    ) -> LedgerEvent:
        """The holder's ledger entry for an answer ``signed`` to ``request``: identifiers
        as sent only when well formed, both signatures with the digests they cover."""
        msg: _Asked = request.message
        return LedgerEvent(
            kind="transfer" if decision.allowed else "refusal",
            role="holder",
            request_id=request.request_id,
            timestamp_ms=self._clock(),
            local=self._responder.me,
            counterparty=request.sender,
            service_system=safe_identifier(msg.service_system, identifiers.is_service_system),
            dataset=safe_identifier(msg.dataset, identifiers.is_code),
            purpose=safe_identifier(msg.purpose, identifiers.is_purpose),
            decision="allow" if decision.allowed else "deny",
            reason=clean_reason(decision.reason, self._limits),
            record_count=record_count,
            agreement_id=decision.agreement_id,
            agreement_digest=decision.agreement_digest,
            policy_set_digest=decision.policy_set_digest,
            payload_digest=payload_digest,
            request_digest=request.digest_hex,
            requester_signature=request.signature_b64,
            holder_signature=crypto.b64(signed.signature),
            response_digest=envelope_digest(signed, self._responder.suite).hex(),
            legal_basis=decision.legal_basis,
            approval_id=decision.approval_id,
            details=tuple(
                sorted(
                    kv
                    for kv in (
                        (
                            "client_reference",
                            safe_identifier(msg.client_reference, identifiers.is_client_reference),
                        ),
                        *details,
                    )
                    if kv[1]
                )
            ),
        )

    def _check_request(self, msg: _Asked) -> InvalidArgument | None:
        """Structural checks of an authenticated request (the peer may be buggy)."""
        if not identifiers.is_service_system(msg.service_system):
            return InvalidArgument.expected(
                "service_system",
                "an id like hebei-housing-fund",
                safe_identifier(msg.service_system, identifiers.is_service_system),
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
                reason=f"jurisdiction {access.holder} serves no dataset {clip(repr(access.dataset))}",
                error_code=status_name(NotFound),
                agreement_id="",
                agreement_digest="",
                policy_set_digest=self._policy.policy_set_digest,
                fields=(),
                max_records=0,
            )
        if len(access.fields) > self._limits.max_fields:
            return refusal(
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
        ids: tuple[str, ...],
    ) -> _Served:
        """Charge, read, transform and seal an allowed request into ``response``. A
        failure after the charge gives it back before it propagates."""
        msg = request.message
        me, requester = self._responder.me, request.sender
        if len(ids) != msg.subject_count:
            raise InvalidArgument.expected("subject_count", len(ids), msg.subject_count)
        if len(ids) > self._limits.max_subject_ids:
            raise InvalidArgument.expected(
                "subject ids", f"<= {self._limits.max_subject_ids}", len(ids)
            )
        dataset = self._catalogue().dataset(msg.dataset)
        # Checked before anything is charged or read: the key to seal to, and that
        # every id asked can match the subject column (a number column: digits).
        reply_key = self._reply_key(requester, msg.reply_seal_key)
        asked = _asked_forms(dataset, ids, strict=True)
        limit = min(decision.max_records, self._limits.max_records_per_response)
        columns = [f.name for f in decision.fields]
        if dataset.subject_column not in columns:
            columns.append(dataset.subject_column)
        charge: QuotaCharge | None = None
        try:
            if ids:
                # One unit per distinct id asked, before the source is read: the
                # same cost whether or not the register holds the person.
                charge = self._policy.charge(decision, access, len(set(ids)))
                rows = self._source.fetch(dataset, ids, columns, limit)
            else:
                rows = self._source.scan(dataset, columns, limit)
            if len(rows) > limit and not ids:
                rows = rows[:limit]
                response.truncated = True
            if len(rows) > limit:
                raise PolicyDenied(
                    f"the request matches more than {limit} records, the agreement's maximum "
                    "per request; narrow it"
                )
            released = self._policy.release(decision, access, rows)
            if not ids:
                charge = self._policy.charge(decision, access, len(released))
            batch = peer_pb2.RecordBatch(records=[common_pb2.Record(fields=r) for r in released])
            plaintext = batch.SerializeToString(deterministic=True)
            response.record_count = len(released)
            response.payload_digest = crypto.suite_of(self._seal_keys.current).digest(plaintext)
            response.sealed_records = self._sessions.seal(
                reply_key,
                domains.SEAL_RECORD_PAYLOAD,
                plaintext,
                seal_context(me, requester, request.request_id),
            )
        except BaseException:
            self._refund(charge)
            raise
        if not ids:
            return _Served(charge)
        return _Served(charge, tuple(sorted(asked.union(_released_subjects(dataset, rows)))))
