"""Holder side of statistics: answer one (peer or local) request under policy and budget.

Owns: the order of operations at a holder gateway for one statistics request:

1. authorise against the statistics agreement, check the query against the
   catalogue, build and calibrate the OpenDP measurement (all data
   independent; a refusal here spends nothing);
2. read the data and refuse them if they hold more rows than the agreement's
   ``max_rows`` (FAILED_PRECONDITION to the caller without the count, one
   error line with the counts to the operator); a refusal here, or a source
   that fails, spends nothing;
3. dry run: stop here and report cost, expected accuracy and remaining budget
   (nothing spent, nothing released, nothing ledgered; a dry run refused in
   step 2 is refused exactly as the query would be, but not ledgered);
4. reserve the budget atomically (``BudgetStore.reserve``);
5. release once (``engine.execute``);
6. sign the answer (through the transport's ``sign``, so the holder's entry
   carries its own signature and the digest it covers), append the
   ``stats_release`` ledger event, then settle the reservation: the signed
   answer leaves only after it is ledgered. Once the release is ledgered the
   answer is returned even if settling fails (logged as a warning): a
   reservation left ``reserved`` counts as spent exactly like a settled one
   (the next start-up settles it from the ledger: ``gateway.ops.spent``).

Refusals are RAISED as GatewayError subclasses (PolicyDenied, NotFound,
InvalidArgument, BudgetExhausted, ...), after appending a ``stats_refusal``
event to the holder's ledger (so the transport must not ledger them again);
the lead's transport turns them into signed refusals / gRPC statuses. If the
computation or the ledger append fails after the reservation, the spend stays
charged (marked ``failed``) and nothing is returned.

Does not own: envelopes, headers, signatures, replay protection (the peer
transport), combining jurisdictions (``gateway.stats.coordinator``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

from gateway import crypto, identifiers
from gateway._proto.dataexchange.gateway.v1 import stats_pb2
from gateway.errors import (
    ConfigurationError,
    EnvironmentFailure,
    GatewayError,
    InvalidArgument,
    StorageFailure,
    status_name,
)
from gateway.ledger.events import (
    AppendReceipt,
    Decision,
    LedgerEvent,
    LedgerWriter,
    clean_reason,
    list_details,
    safe_identifier,
)
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.stats import engine
from gateway.stats.agreements import Authorised, StatisticsPolicy
from gateway.stats.budget import BudgetStore, Caps, Spend, requester_key
from gateway.stats.convert import holder_answer_to_proto, query_from_proto, release_digest
from gateway.stats.model import (
    HolderAnswer,
    Release,
    Remaining,
    StatsQuery,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import polars as pl

    from gateway.catalogue import Dataset

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    def frame(self, dataset: Dataset, columns: Sequence[str]) -> pl.LazyFrame: ...


@dataclass(frozen=True)
class RequestContext:
    """Who asks, as authenticated by the transport (never from the query body)."""

    requester: str  # requesting jurisdiction code
    service_system: str
    request_id: str
    now_ms: int
    requester_signature: str = ""  # base64, as carried by the envelope
    request_digest: str = ""  # hex SHA-256 of the request envelope's PAE bytes
    federated_query_id: str = ""  # the requesting gateway's request id, or ""

    def __post_init__(self) -> None:
        identifiers.jurisdiction(self.requester, "requester")
        identifiers.service_system(self.service_system)
        identifiers.request_id(self.request_id)
        # Recorded in the ledger entry: checked before any budget is reserved, so
        # a value the ledger would refuse cannot leave a spend without an entry.
        if self.federated_query_id:
            identifiers.request_id(self.federated_query_id, "federated_query_id")


def _recordable(exc: Exception) -> GatewayError:
    """``exc`` as recorded in a refusal: any other exception by class only
    (its text may hold data)."""
    if isinstance(exc, GatewayError):
        return exc
    return EnvironmentFailure(f"internal error ({type(exc).__name__})")


def caps_of(auth: Authorised) -> Caps:
    b = auth.terms.budget
    return Caps(b.epsilon_per_requester, b.epsilon_total, b.delta_per_requester, b.delta_total)


class StatsHolder:
    """Answers statistics requests for the datasets this gateway holds."""

    def __init__(
        self,
        *,
        policy: StatisticsPolicy,
        source: FrameSource,
        budget: BudgetStore,
        ledger: LedgerWriter,
        limits: Limits = DEFAULT_LIMITS,
        policy_set_digest: Callable[[], str] = lambda: "",
        suite: crypto.Suite = crypto.INTL,
    ) -> None:
        self._suite = suite
        self._policy = policy
        self._source = source
        self._budget = budget
        self._ledger = ledger
        self._limits = limits
        self._policy_set_digest = policy_set_digest

    @property
    def jurisdiction(self) -> str:
        return self._policy.holder

    @property
    def policy(self) -> StatisticsPolicy:
        """The statistics agreement in force (operators' views and metrics)."""
        return self._policy

    def replace_policy(self, policy: StatisticsPolicy) -> None:
        """Swap in a reloaded statistics agreement (one reference assignment)."""
        if policy.holder != self._policy.holder:
            raise InvalidArgument.expected(
                "statistics agreement holder", self._policy.holder, policy.holder
            )
        self._policy = policy

    # -- peer seam -----------------------------------------------------------

    def handle_peer(
        self,
        request: stats_pb2.PeerStatsRequest,
        *,
        requester: str,
        request_id: str,
        now_ms: int,
        requester_signature_b64: str = "",
        request_digest_hex: str = "",
        sign: Callable[[stats_pb2.PeerStatsResponse], tuple[str, str]] | None = None,
    ) -> stats_pb2.PeerStatsResponse:
        """Answer a verified peer request. ``requester`` and ``request_id`` come
        from the verified envelope header. ``sign`` (the transport's) fills the
        response header and signs it, returning (base64 signature, hex digest
        signed); it is called before the release is ledgered, so the entry
        records the holder's signature. Raises GatewayError on refusal."""
        try:
            ctx = RequestContext(
                requester=requester,
                service_system=request.service_system,
                request_id=request_id,
                now_ms=now_ms,
                requester_signature=requester_signature_b64,
                request_digest=request_digest_hex,
                federated_query_id=request.federated_query_id,
            )
            if not request.HasField("query"):
                raise InvalidArgument.expected("query", "a StatsQuery", None)
            query = query_from_proto(request.query, self._limits)
        except InvalidArgument as exc:
            # An authenticated but malformed request: refused, and recorded with
            # placeholders for whatever cannot be recorded as sent.
            if not request.dry_run:
                self._ledger.append(
                    LedgerEvent(
                        kind="stats_refusal",
                        role="holder",
                        request_id=request_id,
                        timestamp_ms=now_ms,
                        local=self.jurisdiction,
                        counterparty=requester,
                        service_system=safe_identifier(
                            request.service_system, identifiers.is_service_system
                        ),
                        dataset=safe_identifier(request.query.dataset, identifiers.is_code),
                        purpose=safe_identifier(request.query.purpose, identifiers.is_purpose),
                        decision="deny",
                        reason=clean_reason(f"malformed statistics request: {exc}", self._limits),
                        request_digest=request_digest_hex,
                        requester_signature=requester_signature_b64,
                        policy_set_digest=self._policy_set_digest(),
                    )
                )
            raise
        signer = None
        if sign is not None:
            signer = lambda a: sign(holder_answer_to_proto(a))  # noqa: E731
        answer = self.answer(query, ctx, dry_run=request.dry_run, sign=signer)
        return holder_answer_to_proto(answer)

    # -- core ----------------------------------------------------------------

    def answer(
        self,
        query: StatsQuery,
        ctx: RequestContext,
        *,
        dry_run: bool = False,
        sign: Callable[[HolderAnswer], tuple[str, str]] | None = None,
    ) -> HolderAnswer:
        auth: Authorised | None = None
        try:
            auth = self._policy.authorise(
                query.dataset, ctx.requester, ctx.service_system, query.purpose
            )
            plan = engine.plan_query(
                query, auth.dataset, auth.terms, self.jurisdiction, self._limits
            )
            cal = engine.calibrate(plan)
        except GatewayError as exc:
            if not dry_run:
                self._refusal(query, ctx, auth, exc, charged=False)
            raise
        caps = caps_of(auth)
        key = requester_key(ctx.requester, ctx.service_system)
        # The data are read, and checked against the agreement's max_rows, before
        # any budget is reserved: a refusal here spends nothing. A dry run reads
        # them too (sources cache frames), so it fails exactly where the query would.
        try:
            frame = self._frame(plan, auth)
        except Exception as exc:
            if not dry_run:
                self._refusal(query, ctx, auth, _recordable(exc), charged=False)
            raise
        if dry_run:
            usage = self._budget.usage(query.dataset, key)
            return self._answer(engine.dry_run_release(cal), auth, usage.remaining(caps), True)
        spend = Spend(
            dataset=query.dataset,
            requester=key,
            epsilon=cal.epsilon,
            delta=cal.delta,
            request_id=ctx.request_id,
            query_digest=query.digest,
            at_ms=ctx.now_ms,
        )
        try:
            usage = self._budget.reserve(spend, caps)
        except GatewayError as exc:
            self._refusal(query, ctx, auth, exc, charged=False)
            raise
        # From here on the budget is spent whatever happens.
        ledgering = False
        try:
            release = engine.execute(cal, frame)
            answer = self._answer(release, auth, usage.remaining(caps), False)
            # Signed first, so the entry holds the holder's signature; the signed
            # answer only leaves once the entry is committed.
            signature, response_digest = sign(answer) if sign is not None else ("", "")
            ledgering = True
            receipt = self._append_release(
                query, ctx, auth, release, usage.remaining(caps), signature, response_digest
            )
        except BaseException as exc:
            try:
                self._budget.settle(ctx.request_id, "failed")
            except Exception as settle_exc:
                # The reservation stays counted (the safe side); the caller still
                # sees the original failure and the refusal is still ledgered.
                log.error(
                    "could not settle failed statistics request %s (%s)",
                    ctx.request_id,
                    type(settle_exc).__name__,
                )
            # A charged failure is on the ledger, unless the ledger itself failed
            # (the release's entry may then be committed: no refusal after it).
            # Any other exception is recorded by class only (its text may hold data).
            if isinstance(exc, Exception) and not (ledgering and isinstance(exc, StorageFailure)):
                self._refusal(query, ctx, auth, _recordable(exc), charged=True)
            raise
        try:
            self._budget.settle(ctx.request_id, "released")
        except Exception as exc:
            # The release is ledgered: the answer stands. The reservation stays
            # ``reserved``, which counts as spent like any other row (never
            # refunded); only its status label is left open.
            log.warning(
                "statistics request %s was released and ledgered, but its budget "
                "reservation could not be marked released (%s); it stays counted as spent",
                ctx.request_id,
                type(exc).__name__,
            )
        if sign is not None:
            return answer  # a signed answer cannot hold the hash of the entry holding it
        return replace(answer, receipt_index=receipt.index, receipt_hash=receipt.entry_hash)

    def _frame(self, plan: engine.Plan, auth: Authorised) -> pl.LazyFrame:
        """The source's rows for ``plan``; ConfigurationError (and one operator log
        line with the counts) if there are more than the agreement's ``max_rows``.
        Counted without reading the rows: a source's frame is a scan of a file
        written once (``gateway.sources.frames``), so the count is of the rows the
        release reads."""
        import polars as pl

        frame = self._source.frame(auth.dataset, engine.source_columns(plan))
        rows = int(frame.select(pl.len()).collect().item())
        try:
            engine.check_rows(plan, rows)
        except ConfigurationError:
            log.error(
                "statistics dataset %s: the source holds %d rows, more than the max_rows %d "
                "declared for it in %s; its statistics are refused (nothing spent) until "
                "max_rows there is raised to at least the number of rows the source can hold",
                auth.dataset.code,
                rows,
                auth.terms.max_rows,
                self._policy.path,
            )
            raise
        return frame

    def _answer(
        self, release: Release, auth: Authorised, left: tuple[float, float], dry_run: bool
    ) -> HolderAnswer:
        return HolderAnswer(
            release=release,
            remaining=Remaining(self.jurisdiction, left[0], left[1]),
            agreement_id=auth.agreement_id,
            agreement_digest=auth.agreement_digest,
            dry_run=dry_run,
            policy_set_digest=self._policy_set_digest(),
            legal_basis=auth.legal_basis,
            approval_id=auth.approval_id,
        )

    # -- ledger --------------------------------------------------------------

    def _details(
        self, query: StatsQuery, ctx: RequestContext, extra: dict[str, str]
    ) -> tuple[tuple[str, str], ...]:
        d = {
            "query_digest": query.digest,
            "statistic": query.statistic.value,
            "column": query.column,
            **list_details("group_by", query.group_by, self._limits),
            **list_details("filters", sorted(f.column for f in query.filters), self._limits),
            "epsilon_requested": repr(query.epsilon),
            "confidence": repr(query.confidence),
            "federated_query_id": ctx.federated_query_id,
            **extra,
        }
        return tuple(sorted(d.items()))

    def _append_release(
        self,
        query: StatsQuery,
        ctx: RequestContext,
        auth: Authorised,
        release: Release,
        remaining: tuple[float, float],
        holder_signature: str = "",
        response_digest: str = "",
    ) -> AppendReceipt:
        extra = {
            "epsilon": repr(release.epsilon),
            "delta": repr(release.delta),
            "cells": str(len(release.cells)),
            "mechanisms": ",".join(c.mechanism for c in release.components),
            "scales": ",".join(repr(c.scale) for c in release.components),
            "remaining_epsilon_requester": repr(remaining[0]),
            "remaining_epsilon_dataset": repr(remaining[1]),
        }
        event = self._event(
            "stats_release", "allow", f"statistics agreement {auth.agreement_id}",
            query, ctx, auth, extra,
        )  # fmt: skip
        return self._ledger.append(
            replace(
                event,
                payload_digest=release_digest(release, self._suite),
                holder_signature=holder_signature,
                response_digest=response_digest,
            )
        )

    def _event(
        self,
        kind: Literal["stats_release", "stats_refusal"],
        decision: Decision,
        reason: str,
        query: StatsQuery,
        ctx: RequestContext,
        auth: Authorised | None,
        extra: dict[str, str],
    ) -> LedgerEvent:
        """This holder's entry for one query: release or refusal alike."""
        return LedgerEvent(
            kind=kind,
            role="holder",
            request_id=ctx.request_id,
            timestamp_ms=ctx.now_ms,
            local=self.jurisdiction,
            counterparty=ctx.requester,
            service_system=ctx.service_system,
            dataset=query.dataset,
            purpose=query.purpose,
            decision=decision,
            reason=reason,
            agreement_id=auth.agreement_id if auth else "",
            agreement_digest=auth.agreement_digest if auth else "",
            policy_set_digest=self._policy_set_digest(),
            request_digest=ctx.request_digest,
            requester_signature=ctx.requester_signature,
            legal_basis=auth.legal_basis if auth else "",
            approval_id=auth.approval_id if auth else "",
            details=self._details(query, ctx, extra),
        )

    def _refusal(
        self,
        query: StatsQuery,
        ctx: RequestContext,
        auth: Authorised | None,
        exc: GatewayError,
        *,
        charged: bool,
    ) -> None:
        extra = {
            "error_code": status_name(exc),
            "epsilon": repr(query.epsilon) if charged else "0",
            "delta": "0",
            "charged": "true" if charged else "false",
        }
        try:
            self._ledger.append(
                self._event("stats_refusal", "deny", exc.message[:512], query, ctx, auth, extra)
            )
        except GatewayError:
            # The refusal itself still stands; the ledger failure is logged
            # (no personal data: codes and ids only).
            log.error("could not ledger statistics refusal for request %s", ctx.request_id)
