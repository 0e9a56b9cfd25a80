"""The requesting gateway's side of subject access: ask every member, verify, merge.

Owns: ``SubjectQuery`` (what a portal asks, validated: the id in normal form,
the jurisdictions), the per-portal rate limit, sealing the id to each holder,
asking all holders at once (this gateway's own part in process, the others
through ``PeerCaller``) within the caller's deadline, opening and verifying
each answer (``gateway.subject.verify``, keys from the trust bundle only),
ledgering one entry per holder asked (kind ``subject_access``, without the
id), and merging the verified answers into one history
(``gateway.subject.model.merge``). A holder that is down, times out or refuses
is listed as missing; one whose answer fails verification contributes nothing
and is listed with the failed check.

Does not own: the holder's side (``gateway.subject.holder``), transport.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from gateway import crypto, domains, identifiers
from gateway._proto.dataexchange.gateway.v1 import subject_pb2
from gateway.catalogue import Catalogue
from gateway.envelope import envelope_digest, new_request_id
from gateway.errors import CryptoFailure, GatewayError, InvalidArgument, VerificationFailed
from gateway.exchange.peer import PeerCaller
from gateway.exchange.records import seal_context
from gateway.identity import SealKeys
from gateway.ledger.events import LedgerEvent, LedgerWriter, clean_reason
from gateway.limits import Limits
from gateway.subject.holder import NOT_PARTICIPATING, PURPOSE, HistoryResponder
from gateway.subject.model import AccessHistory, JurisdictionResult, Status, merge
from gateway.subject.ratelimit import RateLimiter
from gateway.subject.verify import holder_keys, verify_answer
from gateway.trust import TrustBundle

log = logging.getLogger("gateway.subject")


@dataclass(frozen=True)
class SubjectQuery:
    subject_id: str
    jurisdictions: tuple[str, ...] = ()
    client_reference: str = ""

    def validated(self, bundle: TrustBundle, limits: Limits) -> tuple[str, tuple[str, ...]]:
        """(normalised id, jurisdictions to ask)."""
        subject = identifiers.subject_id(self.subject_id)
        identifiers.client_reference(self.client_reference)
        if len(self.jurisdictions) > limits.max_bundle_members:
            raise InvalidArgument.expected(
                "jurisdictions", f"at most {limits.max_bundle_members}", len(self.jurisdictions)
            )
        asked = tuple(identifiers.jurisdiction(j, "jurisdictions") for j in self.jurisdictions)
        if len(set(asked)) != len(asked):
            raise InvalidArgument("jurisdictions: a jurisdiction is repeated")
        for j in asked:
            bundle.member(j)  # NotFound names the unknown jurisdiction
        return subject, asked or tuple(m.jurisdiction for m in bundle.members)


@dataclass(frozen=True)
class _Outcome:
    result: JurisdictionResult
    event: LedgerEvent


class SubjectAccessCoordinator:
    """Requesting gateway's side of a subject-access request."""

    def __init__(
        self,
        caller: PeerCaller,
        bundle: Callable[[], TrustBundle],
        ledger: LedgerWriter,
        seal_keys: SealKeys,
        local: HistoryResponder,
        catalogue: Callable[[], Catalogue],
        clock_ms: Callable[[], int],
        limits: Limits,
        rng: crypto.Rng = os.urandom,
        max_workers: int = 16,
    ) -> None:
        self._caller = caller
        self._bundle = bundle
        self._ledger = ledger
        self._seal_keys = seal_keys
        self._local = local
        self._catalogue = catalogue
        self._clock = clock_ms
        self._limits = limits
        self._rng = rng
        self._rate = RateLimiter(limits.subject_access_per_minute)
        self._pool = futures.ThreadPoolExecutor(max_workers, thread_name_prefix="subject")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _digest(self, data: bytes) -> bytes:
        """The federation suite's hash (payload digests, as record exchanges record them)."""
        return crypto.suite_of(self._seal_keys.current).digest(data)

    def history(self, portal: str, query: SubjectQuery) -> AccessHistory:
        bundle = self._bundle()
        subject, asked = query.validated(bundle, self._limits)
        self._rate.take(portal, f"portal {portal}")
        request_id = new_request_id()
        me = self._caller.me
        # Each part runs in the caller's context: outbound calls keep its deadline.
        pending = {
            j: self._pool.submit(
                contextvars.copy_context().run,
                self._ask_peer,
                bundle,
                portal,
                subject,
                j,
                request_id,
            )
            for j in asked
            if j != me
        }
        # This gateway's own part first (the peers are asked meanwhile). A part that
        # fails is that holder missing, never the whole request: every holder
        # asked has ledgered it, so each gets its paired entry here too.
        outcomes = (
            [self._part(bundle, me, portal, request_id,
                        lambda: self._ask_self(bundle, portal, subject, request_id))]
            if me in asked
            else []
        )  # fmt: skip
        outcomes += [
            self._part(bundle, j, portal, request_id, fut.result) for j, fut in pending.items()
        ]
        # Appended concurrently, so the ledger group-commits them (one fsync).
        for done in [self._pool.submit(self._ledger.append, o.event) for o in outcomes]:
            done.result()
        return merge(request_id, (o.result for o in outcomes))

    # -- one holder ---------------------------------------------------------

    def _event(
        self,
        portal: str,
        holder: str,
        request_id: str,
        status: Status,
        reason: str,
        count: int = 0,
        payload_digest: str = "",
        sig: Mapping[str, str] | None = None,
    ) -> LedgerEvent:
        sig = sig or {}
        return LedgerEvent(
            kind="subject_access",
            role="requester",
            request_id=request_id,
            timestamp_ms=self._clock(),
            local=self._caller.me,
            counterparty=holder,
            service_system=portal,
            dataset="",
            purpose=PURPOSE,
            decision="allow" if status in ("answered", "not_participating") else "deny",
            reason=clean_reason(f"{status}: {reason}" if reason else status, self._limits),
            record_count=count,
            payload_digest=payload_digest,
            request_digest=sig.get("request_digest", ""),
            requester_signature=sig.get("requester_signature", ""),
            holder_signature=sig.get("holder_signature", ""),
            response_digest=sig.get("response_digest", ""),
        )

    def _missing(
        self,
        bundle: TrustBundle,
        j: str,
        reason: str,
        portal: str,
        request_id: str,
        sig: Mapping[str, str] | None = None,
    ) -> _Outcome:
        name = bundle.member(j).name
        return _Outcome(
            JurisdictionResult(j, name, "missing", reason),
            self._event(portal, j, request_id, "missing", reason, sig=sig),
        )

    def _part(
        self,
        bundle: TrustBundle,
        j: str,
        portal: str,
        request_id: str,
        ask: Callable[[], _Outcome],
    ) -> _Outcome:
        """Holder ``j``'s outcome from ``ask``; a failure makes that part missing."""
        try:
            return ask()
        except GatewayError as exc:
            log.warning("subject access: asking %s failed: %s", j, exc)
            return self._missing(bundle, j, str(exc), portal, request_id)
        except Exception:  # a bug in one part must not hide the others
            log.exception("subject access: asking %s failed", j)
            return self._missing(bundle, j, "internal error", portal, request_id)

    def _ask_self(
        self, bundle: TrustBundle, portal: str, subject: str, request_id: str
    ) -> _Outcome:
        me = self._caller.me
        name = bundle.member(me).name
        if not self._catalogue().subject_access.participate:
            result = JurisdictionResult(me, name, "not_participating", NOT_PARTICIPATING)
            return _Outcome(result, self._event(portal, me, request_id, "not_participating", ""))
        proofs, truncated = self._local.answer(subject)
        digest = self._digest(proofs.SerializeToString(deterministic=True)).hex()
        result = self._verified(bundle, me, proofs, truncated)
        return _Outcome(
            result,
            self._event(
                portal, me, request_id, result.status, result.reason, len(result.items), digest
            ),
        )

    def _verified(
        self,
        bundle: TrustBundle,
        j: str,
        proofs: subject_pb2.SubjectHistoryProofs,
        truncated: bool,
    ) -> JurisdictionResult:
        name = bundle.member(j).name
        try:
            items = verify_answer(proofs, holder_keys(bundle, j, self._clock()), self._limits)
        except VerificationFailed as exc:
            log.warning("subject access: the answer of %s failed verification: %s", j, exc)
            return JurisdictionResult(j, name, "failed_verification", str(exc))
        return JurisdictionResult(j, name, "answered", "", items, truncated)

    def _ask_peer(
        self, bundle: TrustBundle, portal: str, subject: str, holder: str, request_id: str
    ) -> _Outcome:
        me = self._caller.me
        member = bundle.member(holder)
        msg = subject_pb2.PeerSubjectRequest(
            service_system=portal,
            sealed_query=crypto.seal(
                member.seal_key,
                domains.SEAL_SUBJECT_QUERY,
                subject_pb2.SubjectQuery(subject_id=subject).SerializeToString(deterministic=True),
                seal_context(me, holder, request_id),
                self._rng,
            ),
        )
        envelope = self._caller.prepare(holder, msg, domains.PEER_SUBJECT_REQUEST, request_id)
        sig = {
            "request_digest": envelope_digest(envelope, self._caller.suite).hex(),
            "requester_signature": crypto.b64(envelope.signature),
        }
        try:
            reply = self._caller.send(
                holder,
                "SubjectHistory",
                envelope,
                request_id,
                domains.PEER_SUBJECT_RESPONSE,
                subject_pb2.PeerSubjectResponse,
            )
        except GatewayError as exc:
            return self._missing(bundle, holder, str(exc), portal, request_id, sig)
        resp = reply.response
        sig["holder_signature"] = crypto.b64(reply.response_envelope.signature)
        sig["response_digest"] = envelope_digest(reply.response_envelope, self._caller.suite).hex()
        if resp.error_code:
            reason = f"refused ({resp.error_code[:32]}): {resp.reason}"
            return self._missing(bundle, holder, reason, portal, request_id, sig)
        if not resp.participating:
            result = JurisdictionResult(holder, member.name, "not_participating", NOT_PARTICIPATING)
            event = self._event(portal, holder, request_id, "not_participating", "", sig=sig)
            return _Outcome(result, event)
        try:
            plaintext = self._seal_keys.open(
                domains.SEAL_SUBJECT_HISTORY,
                resp.sealed_history,
                seal_context(holder, me, request_id),
            )
            proofs = subject_pb2.SubjectHistoryProofs.FromString(plaintext)
            if len(proofs.entries) != resp.entry_count:
                raise VerificationFailed("entry count differs from the signed answer's")
        except (CryptoFailure, DecodeError, ValueError, VerificationFailed) as exc:
            reason = f"the sealed answer could not be opened: {exc}"
            result = JurisdictionResult(holder, member.name, "failed_verification", reason)
            event = self._event(portal, holder, request_id, "failed_verification", reason, sig=sig)
            return _Outcome(result, event)
        result = self._verified(bundle, holder, proofs, resp.truncated)
        event = self._event(
            portal,
            holder,
            request_id,
            result.status,
            result.reason,
            len(result.items),
            self._digest(plaintext).hex(),
            sig,
        )
        return _Outcome(result, event)
