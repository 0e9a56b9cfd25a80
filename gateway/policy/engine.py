"""Evaluating access requests against the loaded agreements, and releasing rows.

Owns: ``PolicyEngine``, the ``PolicyGate`` implementation: deny by default,
name the agreement (id and digest of its exact bytes) that allowed a request
or give the precise reason for refusing it, apply field transforms, keep
only the allowed fields, and charge (or refund) the requester's daily quota
in the units ``gateway.policy.api`` defines. Does not
own: loading files (``gateway.policy.loader``), reload (``gateway.policy.store``),
quota storage (``gateway.policy.quota``), or the ledger (the exchange path
writes the decision into its ledger entry).

Order of checks (the first failing one is the reason given):
  holder and dataset known (NOT_FOUND) -> request well formed (INVALID_ARGUMENT)
  -> dataset not classed not_shared and not core (never served, whatever an
  agreement says) -> an agreement names this requester jurisdiction, service
  system and purpose for the dataset -> it is in force (clock) -> it carries an
  approval id if the data is conditional or important -> the requested fields
  are all released by it -> bulk only if it allows bulk -> at most its
  maximum records per request -> the day's quota is not used up
  (RESOURCE_EXHAUSTED; a named request needs one unit per subject it names,
  a bulk one at least one). When several agreements match, the first (by id)
  that allows wins; otherwise the reason of the one that got furthest is given.
  ``decide`` only reads the quota; ``charge`` takes it, atomically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway import crypto, identifiers
from gateway.catalogue import DataGrade, SharingClass
from gateway.errors import InvalidArgument, NotFound, PolicyDenied, QuotaExceeded, clip, status_name
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.policy.api import AccessRequest, Decision, FieldRule, QuotaCharge
from gateway.policy.loader import CompiledAgreement, CompiledField, PolicySet
from gateway.policy.model import RowScope, Transform
from gateway.policy.quota import QuotaKey, QuotaStore, utc_day
from gateway.policy.transforms import Pseudonymiser, generalise, mask, render

Clock = Callable[[], int]  # Unix milliseconds


def system_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class PolicySource(Protocol):
    @property
    def current(self) -> PolicySet: ...


@dataclass(frozen=True)
class StaticPolicy:
    """A fixed policy set (tests, benchmarks, one-shot CLI use)."""

    current: PolicySet


# Refusal codes (``Decision.error_code``), read from the one error-to-status table.
PERMISSION_DENIED = status_name(PolicyDenied)
NOT_FOUND = status_name(NotFound)
RESOURCE_EXHAUSTED = status_name(QuotaExceeded)
INVALID_ARGUMENT = status_name(InvalidArgument)

# Stages reached by a candidate agreement (higher = got further).
_S_VALIDITY, _S_APPROVAL, _S_FIELDS, _S_SCOPE, _S_RECORDS, _S_QUOTA = range(6)


class PolicyEngine:
    """PolicyGate over a policy source (a PolicyStore or StaticPolicy)."""

    def __init__(
        self,
        source: PolicySource | PolicySet,
        quota: QuotaStore,
        pseudonym_secret: bytes,
        *,
        clock: Clock = system_clock_ms,
        limits: Limits = DEFAULT_LIMITS,
        suite: crypto.Suite = crypto.INTL,
    ) -> None:
        self._source: PolicySource = (
            StaticPolicy(source) if isinstance(source, PolicySet) else source
        )
        self._quota = quota
        self._pseudo = Pseudonymiser(pseudonym_secret, suite)
        self._clock = clock
        self._limits = limits

    def __repr__(self) -> str:
        return f"PolicyEngine(policy_set={self.policy_set_digest[:12]}...)"

    @property
    def policy_set_digest(self) -> str:
        return self._source.current.digest

    # ------------------------------------------------------------------
    # decide
    # ------------------------------------------------------------------

    def decide(self, request: AccessRequest) -> Decision:
        ps = self._source.current
        return self._decide(ps, request)

    def _deny(
        self,
        ps: PolicySet,
        code: str,
        reason: str,
        agreement: CompiledAgreement | None = None,
    ) -> Decision:
        return Decision(
            allowed=False,
            reason=reason,
            error_code=code,
            agreement_id=agreement.id if agreement else "",
            agreement_digest=agreement.digest if agreement else "",
            policy_set_digest=ps.digest,
            fields=(),
            max_records=0,
            legal_basis=agreement.spec.legal_basis if agreement else "",
            approval_id=agreement.approval_id if agreement else "",
        )

    def _decide(self, ps: PolicySet, req: AccessRequest) -> Decision:
        who = f"{req.requester}/{req.service_system}"
        if req.holder != ps.holder:
            return self._deny(
                ps,
                NOT_FOUND,
                f"this gateway holds jurisdiction {ps.holder}'s data, not {clip(repr(req.holder))}",
            )
        ds = ps.datasets.get(req.dataset)
        if ds is None:
            return self._deny(
                ps,
                NOT_FOUND,
                f"jurisdiction {ps.holder} holds no dataset {clip(repr(req.dataset))}",
            )
        # Identifiers are echoed into reasons and the ledger: each must pass its
        # rule (gateway.identifiers); the offending value is not echoed.
        checks: tuple[tuple[str, identifiers.Kind, str], ...] = (
            ("requester", "jurisdiction", req.requester),
            ("service_system", "service_system", req.service_system),
            ("purpose", "purpose", req.purpose),
            *(("field", "code", f) for f in req.fields),
        )
        for what, kind, value in checks:
            if not identifiers.valid(kind, value):
                return self._deny(
                    ps, INVALID_ARGUMENT, f"{what}: expected {identifiers.expected(kind)}"
                )
        if req.subject_count < 0:
            return self._deny(
                ps, INVALID_ARGUMENT, f"subject_count must be >= 0, got {req.subject_count}"
            )
        if len(req.fields) > self._limits.max_fields:
            return self._deny(
                ps,
                INVALID_ARGUMENT,
                f"{len(req.fields)} fields requested, limit {self._limits.max_fields}",
            )
        if len(set(req.fields)) != len(req.fields):
            return self._deny(ps, INVALID_ARGUMENT, "requested fields repeat")
        if ds.sharing_class is SharingClass.NOT_SHARED:
            return self._deny(
                ps,
                PERMISSION_DENIED,
                f"dataset {ds.code} is classed not_shared (不予共享) and is never served",
            )
        if ds.grade is DataGrade.CORE:
            return self._deny(
                ps, PERMISSION_DENIED, f"dataset {ds.code} is core data (核心数据) and never leaves"
            )
        candidates = ps.index.get((req.dataset, req.requester, req.service_system, req.purpose))
        if not candidates:
            return self._deny(
                ps,
                PERMISSION_DENIED,
                f"no agreement allows requester {who} to read {req.dataset} "
                f"for purpose {req.purpose}",
            )
        now = self._clock()
        best: tuple[int, str, str, CompiledAgreement] | None = None
        for a in candidates:
            outcome = self._check(ps, a, req, now)
            if isinstance(outcome, Decision):
                return outcome
            stage, code, reason = outcome
            if best is None or stage > best[0]:
                best = (stage, code, reason, a)
        assert best is not None  # candidates is non-empty
        return self._deny(ps, best[1], best[2], best[3])

    def _check(
        self, ps: PolicySet, a: CompiledAgreement, req: AccessRequest, now: int
    ) -> Decision | tuple[int, str, str]:
        spec = a.spec
        if a.sharing_class is SharingClass.NOT_SHARED or a.grade is DataGrade.CORE:
            return (
                -1,
                PERMISSION_DENIED,
                (
                    f"agreement {a.id} itself classes {a.spec.dataset} not_shared or core; "
                    "never served"
                ),
            )
        if now < a.from_ms:
            return (
                _S_VALIDITY,
                PERMISSION_DENIED,
                (f"agreement {a.id} is not in force until {spec.valid_from} (UTC+8)"),
            )
        if now > a.until_ms:
            return (
                _S_VALIDITY,
                PERMISSION_DENIED,
                (f"agreement {a.id} expired after {spec.valid_until} (UTC+8)"),
            )
        if a.needs_approval and not a.approval_id:
            what = (
                "conditional" if a.sharing_class is SharingClass.CONDITIONAL else "important-grade"
            )
            return (
                _S_APPROVAL,
                PERMISSION_DENIED,
                (f"agreement {a.id} has no approval id, which {what} data requires"),
            )
        if req.fields:
            missing = [f for f in req.fields if f not in a.by_name]
            if missing:
                dropped = [f for f in missing if f in a.dropped]
                detail = f" ({', '.join(dropped)} dropped by it)" if dropped else ""
                return (
                    _S_FIELDS,
                    PERMISSION_DENIED,
                    (f"agreement {a.id} does not release field(s) {', '.join(missing)}{detail}"),
                )
            rules: tuple[FieldRule, ...] = tuple(a.by_name[f].rule for f in req.fields)
        else:
            rules = tuple(f.rule for f in a.released)
        if req.subject_count == 0 and spec.row_scope is not RowScope.BULK:
            return (
                _S_SCOPE,
                PERMISSION_DENIED,
                (f"agreement {a.id} allows named subjects only; bulk request refused"),
            )
        if req.subject_count > spec.max_records_per_request:
            return (
                _S_RECORDS,
                PERMISSION_DENIED,
                (
                    f"request names {req.subject_count} subjects; agreement {a.id} allows at most "
                    f"{spec.max_records_per_request} per request"
                ),
            )
        key = self._quota_key(a, req)
        used = self._quota.reading(key)
        need = max(req.subject_count, 1)
        if used + need > spec.quota_per_day:
            return (
                _S_QUOTA,
                RESOURCE_EXHAUSTED,
                (
                    f"daily quota of agreement {a.id} for {req.requester}/{req.service_system} "
                    f"is used up: {used} of {spec.quota_per_day} used on {key.day} (UTC), "
                    f"{need} more asked (a named request counts each subject it names, "
                    "found or not; a bulk one each record)"
                ),
            )
        approval = f"; approval {a.approval_id}" if a.approval_id else ""
        return Decision(
            allowed=True,
            reason=f"allowed by agreement {a.id} for purpose {req.purpose}{approval}",
            error_code="",
            agreement_id=a.id,
            agreement_digest=a.digest,
            policy_set_digest=ps.digest,
            fields=rules,
            max_records=spec.max_records_per_request,
            legal_basis=spec.legal_basis,
            approval_id=a.approval_id,
        )

    @staticmethod
    def _quota_key(a: CompiledAgreement, req: AccessRequest) -> QuotaKey:
        return QuotaKey(
            holder=a.spec.holder,
            dataset=a.spec.dataset,
            requester=req.requester,
            service_system=req.service_system,
            day=utc_day(req.timestamp_ms),
        )

    # ------------------------------------------------------------------
    # release
    # ------------------------------------------------------------------

    def charge(self, decision: Decision, request: AccessRequest, units: int) -> QuotaCharge:
        """Charge ``units`` to the day's quota of the decision's agreement, re-checked
        against the agreement in force now: atomically, or QuotaExceeded and nothing
        charged (so two racing requests never both take the last units)."""
        a, _ = self._plan(decision, request, units)
        key = self._quota_key(a, request)
        if units:
            self._quota.consume(key, units, a.spec.quota_per_day)
        return QuotaCharge(key, units)

    def refund(self, charge: QuotaCharge) -> None:
        if charge.units:
            self._quota.refund(charge.key, charge.units)

    def release(
        self, decision: Decision, request: AccessRequest, rows: Sequence[Mapping[str, object]]
    ) -> list[dict[str, str]]:
        """Transform rows under the decision's agreement and return them (the
        caller charges the quota, before anything leaves: ``charge``)."""
        _, plan = self._plan(decision, request, len(rows))
        return [self._transform_row(row, plan, request) for row in rows]

    def release_columns(
        self,
        decision: Decision,
        request: AccessRequest,
        columns: Mapping[str, Sequence[object]],
        n_rows: int,
    ) -> list[tuple[str, list[str]]]:
        """``release`` of ``n_rows`` rows given column by column (a column absent
        is all None, as a row without the key): each released field's values in
        row order, each transform applied over the whole batch (streamed bulk
        transfers). The same checks and values as ``release``."""
        _, plan = self._plan(decision, request, n_rows)
        picked: list[tuple[CompiledField, Sequence[object]]] = []
        for cf in plan:
            values = columns.get(cf.name)
            if values is None:
                values = [None] * n_rows
            elif len(values) != n_rows:
                raise InvalidArgument.expected(f"column {cf.name} length", n_rows, len(values))
            picked.append((cf, values))
        return [(cf.name, self._transform_column(cf, values, request)) for cf, values in picked]

    def _plan(
        self, decision: Decision, request: AccessRequest, n_rows: int
    ) -> tuple[CompiledAgreement, list[CompiledField]]:
        """The agreement and compiled fields a release (or charge) of ``n_rows``
        rows applies, re-checked against the agreement in force now."""
        if not decision.allowed:
            raise PolicyDenied(decision.reason or "request was refused")
        ps = self._source.current
        a = ps.by_id.get(decision.agreement_id)
        if a is None or not crypto.digest_equal(a.digest, decision.agreement_digest):
            raise PolicyDenied(
                f"agreement {decision.agreement_id} changed or was withdrawn since the "
                "decision; decide again"
            )
        if (
            request.holder != a.spec.holder
            or request.dataset != a.spec.dataset
            or (request.requester, request.service_system) not in a.requesters
            or request.purpose not in a.purposes
        ):
            raise PolicyDenied(f"agreement {a.id} does not cover this request")
        now = self._clock()
        if not a.from_ms <= now <= a.until_ms:
            raise PolicyDenied(f"agreement {a.id} is not in force")
        plan: list[CompiledField] = []
        for rule in decision.fields:
            cf = a.by_name.get(rule.name)
            if cf is None or cf.rule != rule:
                raise PolicyDenied(
                    f"agreement {a.id} does not release field {rule.name} as {rule.transform}"
                )
            plan.append(cf)
        if not plan:
            raise PolicyDenied("decision releases no fields")
        limit = min(decision.max_records, a.spec.max_records_per_request)
        if n_rows > limit:
            raise PolicyDenied(
                f"{n_rows} records exceed agreement {a.id}'s maximum of {limit} per request"
            )
        return a, plan

    def _transform_column(
        self, cf: CompiledField, values: Sequence[object], req: AccessRequest
    ) -> list[str]:
        t = cf.transform
        if t is Transform.PASS:
            return [v if type(v) is str else render(v) for v in values]
        if t is Transform.MASK:
            first, last = cf.keep_first, cf.keep_last
            return [mask(render(v), first, last) for v in values]
        if t is Transform.PSEUDONYMISE:
            return self._pseudo.tokens(values, req.requester, req.service_system, cf.pii)
        if t is Transform.GENERALISE and cf.to is not None:
            to = cf.to
            return [generalise(v, to) for v in values]
        raise PolicyDenied(f"field {cf.name} is not released")  # pragma: no cover - DROP

    def quota_left(self, decision: Decision, request: AccessRequest) -> int:
        a = self._source.current.by_id.get(decision.agreement_id)
        if a is None or not decision.allowed:
            return 0
        return max(0, a.spec.quota_per_day - self._quota.used(self._quota_key(a, request)))

    def _transform_row(
        self, row: Mapping[str, object], plan: list[CompiledField], req: AccessRequest
    ) -> dict[str, str]:
        if not isinstance(row, Mapping):
            raise InvalidArgument.expected(
                "row", "a mapping of column to value", type(row).__name__
            )
        out: dict[str, str] = {}
        for cf in plan:
            value = row.get(cf.name)
            t = cf.transform
            if t is Transform.PASS:
                out[cf.name] = render(value)
            elif t is Transform.MASK:
                out[cf.name] = mask(render(value), cf.keep_first, cf.keep_last)
            elif t is Transform.PSEUDONYMISE:
                out[cf.name] = self._pseudo.token(value, req.requester, req.service_system, cf.pii)
            elif t is Transform.GENERALISE and cf.to is not None:
                out[cf.name] = generalise(value, cf.to)
            else:  # pragma: no cover - DROP never reaches a plan
                raise PolicyDenied(f"field {cf.name} is not released")
        return out
