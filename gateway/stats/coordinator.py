"""Requester side of statistics: fan one query out to holders and combine their releases.

Owns: sending one ``PeerStatsRequest`` per jurisdiction concurrently (thread
pool, through the ``fan_out`` callable the transport supplies), checking that
each returned release answers exactly the query asked (untrusted peer input),
combining releases (``combine``: pure), reporting missing parts with their
reasons, and appending the requester-side ledger events (one per part:
``stats_release`` or ``stats_refusal``).

Combination (only noisy releases are ever combined; holders never send rows
or exact aggregates):

* counts, sums, histograms: values add per key. Each part's noise is
  independent; the combined interval at confidence 1 - alpha is the sum of the
  parts' half-widths computed at alpha/k (k parts), so by the union bound the
  true total lies inside with probability >= 1 - alpha (conservative).
* means: noisy sums and noisy counts add; the interval is the range of
  sum/count over the box of their combined intervals (each at alpha/2k).
* quantiles and medians do not combine: parts are returned, no combination.

When a holder refuses or is unreachable the answer lists it in ``missing``
(code and reason) and the combination covers only the jurisdictions it names.
If NO holder answered, the first holder's error is raised instead (so a single
refused query surfaces as RESOURCE_EXHAUSTED, PERMISSION_DENIED, ...).

Does not own: transport, envelopes, signatures (the lead's ``fan_out``), the
holder logic (``gateway.stats.holder``).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from gateway import crypto, identifiers
from gateway._proto.dataexchange.gateway.v1 import stats_pb2
from gateway.errors import (
    EnvironmentFailure,
    GatewayError,
    PeerTimeout,
    VerificationFailed,
    status_name,
)
from gateway.ledger.events import (
    LedgerEvent,
    LedgerWriter,
    clean_reason,
    list_details,
    safe_identifier,
)
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.stats.convert import (
    query_to_proto,
    release_digest,
    release_from_proto,
    remaining_from_proto,
)
from gateway.stats.engine import accuracy, mean_cell
from gateway.stats.model import (
    Cell,
    FederatedAnswer,
    FederatedQuery,
    LocalReceipt,
    Missing,
    NoiseComponent,
    Release,
    Remaining,
    Statistic,
    StatsQuery,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HolderReply:
    """A holder's answer with what the requester's ledger records about the exchange."""

    response: stats_pb2.PeerStatsResponse
    requester_signature: str = ""  # base64 Ed25519 over the request envelope
    holder_signature: str = ""  # base64 Ed25519 over the response envelope
    request_digest: str = ""  # hex SHA-256 of the request envelope's PAE bytes
    response_digest: str = ""  # hex SHA-256 of the response envelope's PAE bytes


# Asks one holder. The request's header.request_id is the request id to use,
# so both ledgers record the same id even when the holder refuses.
FanOut = Callable[[str, stats_pb2.PeerStatsRequest], stats_pb2.PeerStatsResponse | HolderReply]


# What a holder may call a noise mechanism (e.g. ``integer_laplace``): recorded in
# the requester's ledger entry, so nothing the ledger would refuse.
_MECHANISM = re.compile(r"[a-z0-9_]{1,64}", re.ASCII)


def expected_components(s: Statistic) -> tuple[str, ...]:
    return ("sum", "count") if s is Statistic.MEAN else ("value",)


def check_part(release: Release, query: StatsQuery, jurisdiction: str, dry_run: bool) -> None:
    """Refuse a holder release that does not answer exactly ``query``."""
    problems: list[str] = []
    if release.jurisdictions != (jurisdiction,):
        problems.append(f"jurisdictions {list(release.jurisdictions)}")
    if release.dataset != query.dataset:
        problems.append("dataset")
    if release.statistic is not query.statistic:
        problems.append("statistic")
    if release.column != query.column:
        problems.append("column")
    if release.query_digest != query.digest:
        problems.append("query digest")
    if not math.isclose(release.epsilon, query.epsilon, rel_tol=0, abs_tol=1e-12):
        problems.append("epsilon")
    if not math.isclose(release.confidence, query.confidence, rel_tol=0, abs_tol=1e-12):
        problems.append("confidence")
    if release.group_by[: len(query.group_by)] != query.group_by or len(release.group_by) != len(
        query.group_by
    ) + (1 if query.statistic is Statistic.HISTOGRAM else 0):
        problems.append("group_by")
    if tuple(c.name for c in release.components) != expected_components(query.statistic):
        problems.append("components")
    if not all(_MECHANISM.fullmatch(c.mechanism) for c in release.components):
        problems.append("mechanism names")  # they go into this gateway's ledger entry
    if any(not c.scale > 0 for c in release.components):
        problems.append("noise scale")
    if dry_run != (not release.cells):
        problems.append("cells")
    keys = [c.key for c in release.cells]
    if len(set(keys)) != len(keys):
        problems.append("repeated cell keys")
    if problems:
        raise VerificationFailed(
            f"release from {jurisdiction} does not answer the query: {', '.join(problems)}"
        )


def _union_bounds(parts: list[Release]) -> tuple[float, float] | None:
    bs = [p.bounds for p in parts if p.bounds is not None]
    if not bs:
        return None
    return min(b[0] for b in bs), max(b[1] for b in bs)


def _add(a: float | None, b: float | None) -> float | None:
    """Sum of half-widths; unknown (None) if either is unknown."""
    return None if a is None or b is None else a + b


def combine(parts: list[Release], query: StatsQuery) -> Release | None:
    """Combine holder releases of one query (pure). None if the statistic does not combine."""
    if not parts or not query.statistic.combinable:
        return None
    k = len(parts)
    alpha = 1 - query.confidence
    mean = query.statistic is Statistic.MEAN
    bounds = _union_bounds(parts)
    # Per-component alpha: union bound over k parts (and over sum+count for means).
    comp_alpha = alpha / (2 * k) if mean else alpha / k
    half: list[list[float | None]] = [
        [accuracy(c.mechanism, c.scale, comp_alpha) for c in p.components] for p in parts
    ]
    order: list[tuple[str, ...]] = []
    sums: dict[tuple[str, ...], list[float]] = {}
    widths: dict[tuple[str, ...], list[float | None]] = {}
    ncomp = len(parts[0].components)
    for p, h in zip(parts, half, strict=True):
        for cell in p.cells:
            if cell.key not in sums:
                order.append(cell.key)
                sums[cell.key] = [0.0] * ncomp
                widths[cell.key] = [0.0] * ncomp
            for i in range(ncomp):
                sums[cell.key][i] += cell.components[i]
                widths[cell.key][i] = _add(widths[cell.key][i], h[i])
    cells: list[Cell] = []
    for key in order:
        vals, ws = sums[key], widths[key]
        if mean:
            assert bounds is not None
            value, interval = mean_cell(vals[0], vals[1], bounds, ws[0], ws[1])
        else:
            value = vals[0]
            interval = None if ws[0] is None else (value - ws[0], value + ws[0])
        cells.append(Cell(key, value, interval, tuple(vals)))
    comps = []
    for i, c in enumerate(parts[0].components):
        total: float | None = 0.0
        for h in half:
            total = _add(total, h[i])
        if total is not None and mean:
            # Report each component's combined half-width at the full confidence.
            total = sum(
                accuracy(p.components[i].mechanism, p.components[i].scale, alpha / k) or 0.0
                for p in parts
            )
        comps.append(NoiseComponent(c.name, "combined", 0.0, total))
    return Release(
        jurisdictions=tuple(j for p in parts for j in p.jurisdictions),
        dataset=query.dataset,
        statistic=query.statistic,
        column=query.column,
        group_by=parts[0].group_by,
        epsilon=query.epsilon,
        delta=max(p.delta for p in parts),
        confidence=query.confidence,
        components=tuple(comps),
        cells=tuple(cells),
        query_digest=query.digest,
        interval_method=(
            f"sum of {k} independent releases; Bonferroni union bound "
            f"(each part's interval at alpha/{2 * k if mean else k})"
        ),
        bounds=bounds,
    )


@dataclass(frozen=True)
class _Outcome:
    jurisdiction: str
    release: Release | None
    remaining: Remaining | None
    missing: Missing | None
    holder_receipt: str = ""  # "jurisdiction:index:hash" of the holder's ledger entry
    request_id: str = ""
    error: GatewayError | None = None  # the holder's/transport's error, re-raised if none answered
    signatures: HolderReply | None = None
    answer: stats_pb2.PeerStatsResponse | None = None


def _agreement_facts(resp: stats_pb2.PeerStatsResponse | None, limits: Limits) -> dict[str, str]:
    """What the holder's signed answer says about the agreement (checked for shape: it
    comes from a peer, and the entry refuses malformed values)."""
    if resp is None:
        return {}
    hex64 = identifiers.HEX64_OR_EMPTY
    return {
        "agreement_id": safe_identifier(resp.agreement_id, identifiers.is_answered_agreement_id),
        "agreement_digest": resp.agreement_digest if hex64.fullmatch(resp.agreement_digest) else "",
        "policy_set_digest": (
            resp.policy_set_digest if hex64.fullmatch(resp.policy_set_digest) else ""
        ),
        "legal_basis": clean_reason(resp.legal_basis, limits),
        "approval_id": safe_identifier(resp.approval_id, identifiers.is_answered_approval_id),
    }


class StatsCoordinator:
    """The requesting gateway's statistics core."""

    def __init__(
        self,
        *,
        local_jurisdiction: str,
        fan_out: FanOut,
        ledger: LedgerWriter,
        limits: Limits = DEFAULT_LIMITS,
        clock_ms: Callable[[], int],
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        max_workers: int = 8,
        acknowledge: Callable[[str, str, str, str], None] | None = None,
        suite: crypto.Suite = crypto.INTL,
    ) -> None:
        # (holder, request id, request digest, response digest) of each signed answer,
        # once ledgered: the requester's signed receipt is sent off the request path.
        self._acknowledge = acknowledge
        self._suite = suite
        self._local = local_jurisdiction
        self._fan_out = fan_out
        self._ledger = ledger
        self._limits = limits
        self._clock = clock_ms
        self._new_id = new_id
        self._pool = cf.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="stats-fanout"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def query(
        self, fq: FederatedQuery, service_system: str, *, dry_run: bool = False
    ) -> FederatedAnswer:
        request_id = self._new_id()
        peer_req = stats_pb2.PeerStatsRequest(
            service_system=service_system,
            query=query_to_proto(fq.query),
            dry_run=dry_run,
            federated_query_id=request_id,
        )
        futures = {}
        for j in fq.jurisdictions:
            part = stats_pb2.PeerStatsRequest()
            part.CopyFrom(peer_req)
            part.header.request_id = self._new_id()
            futures[j] = self._pool.submit(self._ask, j, part, fq.query, dry_run)
        deadline = self._limits.peer_deadline_seconds + 5.0
        done, _ = cf.wait(futures.values(), timeout=deadline)
        outcomes: list[_Outcome] = []
        for j, fut in futures.items():
            if fut in done:
                outcomes.append(fut.result())
            else:
                fut.cancel()
                outcomes.append(
                    _Outcome(
                        j,
                        None,
                        None,
                        Missing(
                            j,
                            status_name(PeerTimeout),
                            f"{j} did not answer within {deadline:g} s",
                        ),
                    )
                )
        parts = [o.release for o in outcomes if o.release is not None]
        missing = tuple(o.missing for o in outcomes if o.missing is not None)
        receipts: tuple[LocalReceipt, ...] = ()
        if not dry_run:
            receipts = tuple(self._ledger_part(fq, service_system, request_id, o) for o in outcomes)
        if not parts:
            first = outcomes[0]
            if first.error is not None:
                raise first.error
            reason = first.missing.reason if first.missing else "no holder answered"
            if first.missing is not None and first.missing.code == status_name(PeerTimeout):
                raise PeerTimeout(reason)
            raise EnvironmentFailure(reason)
        return FederatedAnswer(
            request_id=request_id,
            parts=tuple(parts),
            combined=None if dry_run else combine(parts, fq.query),
            missing=missing,
            remaining=tuple(o.remaining for o in outcomes if o.remaining is not None),
            receipts=receipts,
            dry_run=dry_run,
        )

    def _ask(
        self, j: str, req: stats_pb2.PeerStatsRequest, query: StatsQuery, dry_run: bool
    ) -> _Outcome:
        try:
            out = self._fan_out(j, req)
            reply = out if isinstance(out, HolderReply) else HolderReply(out)
            resp = reply.response
            release = release_from_proto(resp.release, self._limits)
            check_part(release, query, j, dry_run)
            if resp.dry_run != dry_run:
                raise VerificationFailed(f"{j} answered dry_run={resp.dry_run}")
            remaining = remaining_from_proto(resp.remaining) if resp.HasField("remaining") else None
            receipt = ""
            if resp.HasField("receipt"):
                r = resp.receipt
                if (
                    r.jurisdiction != j
                    or not r.entry_hash
                    or not identifiers.HEX64_OR_EMPTY.fullmatch(r.entry_hash)
                ):
                    raise VerificationFailed(f"{j} answered with a malformed ledger receipt")
                receipt = f"{r.jurisdiction}:{r.index}:{r.entry_hash}"
            rid = resp.header.request_id if resp.HasField("header") else ""
            return _Outcome(
                j,
                release,
                remaining,
                None,
                receipt,
                rid or req.header.request_id,
                signatures=reply,
                answer=resp,
            )
        except GatewayError as exc:
            missing = Missing(j, status_name(exc), exc.message[:512])
            return _Outcome(j, None, None, missing, request_id=req.header.request_id, error=exc)
        except Exception:
            log.exception("statistics request to %s failed", j)
            missing = Missing(j, status_name(EnvironmentFailure), "internal error")
            return _Outcome(j, None, None, missing, request_id=req.header.request_id)

    def _ledger_part(
        self, fq: FederatedQuery, service_system: str, request_id: str, o: _Outcome
    ) -> LocalReceipt:
        q = fq.query
        details = {
            "query_digest": q.digest,
            "statistic": q.statistic.value,
            "column": q.column,
            **list_details("group_by", q.group_by, self._limits),
            **list_details("filters", sorted(f.column for f in q.filters), self._limits),
            "confidence": repr(q.confidence),
            "federated_query_id": request_id,
            **list_details("jurisdictions", fq.jurisdictions, self._limits),
            "client_reference": fq.client_reference,
        }
        if o.release is not None:
            details.update(
                epsilon=repr(o.release.epsilon),
                delta=repr(o.release.delta),
                cells=str(len(o.release.cells)),
                mechanisms=",".join(c.mechanism for c in o.release.components),
                scales=",".join(repr(c.scale) for c in o.release.components),
                holder_receipt=o.holder_receipt,
            )
        else:
            assert o.missing is not None
            details.update(epsilon="0", delta="0", error_code=o.missing.code)
        facts = _agreement_facts(o.answer, self._limits)
        event = LedgerEvent(
            kind="stats_release" if o.release is not None else "stats_refusal",
            role="requester",
            request_id=o.request_id or f"{request_id}/{o.jurisdiction}",
            timestamp_ms=self._clock(),
            local=self._local,
            counterparty=o.jurisdiction,
            service_system=service_system,
            dataset=q.dataset,
            purpose=q.purpose,
            decision="allow" if o.release is not None else "deny",
            reason=(
                "released by holder"
                if o.release is not None
                else clean_reason(o.missing.reason if o.missing else "", self._limits)
            ),
            payload_digest=release_digest(o.release, self._suite) if o.release is not None else "",
            requester_signature=o.signatures.requester_signature if o.signatures else "",
            holder_signature=o.signatures.holder_signature if o.signatures else "",
            request_digest=o.signatures.request_digest if o.signatures else "",
            response_digest=o.signatures.response_digest if o.signatures else "",
            details=tuple(sorted(details.items())),
            agreement_id=facts.get("agreement_id", ""),
            agreement_digest=facts.get("agreement_digest", ""),
            policy_set_digest=facts.get("policy_set_digest", ""),
            legal_basis=facts.get("legal_basis", ""),
            approval_id=facts.get("approval_id", ""),
        )
        r = self._ledger.append(event)
        if self._acknowledge is not None and event.holder_signature and event.response_digest:
            self._acknowledge(
                event.counterparty, event.request_id, event.request_digest, event.response_digest
            )
        return LocalReceipt(self._local, r.index, r.entry_hash)
