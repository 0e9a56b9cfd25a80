"""``gateway policy check``: lint a holder folder or the whole policies/ tree.

Owns: the checks beyond loading: expired (and not-yet-valid) agreements,
core or not-shared data offered, sharing class or grade that disagrees with
the catalogue, conditional or important data without an approval, personal
data passed in clear, a mask on an ID number weak enough to be undone through
its check digit, and overlapping or contradictory agreements; and
delegating ``statistics-agreement`` files to ``gateway.stats.agreements`` when
that module exists. Does not own: schema validation or compilation
(``gateway.policy.loader``, whose errors are reported here too) or printing
(``gateway.cli.policy``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.catalogue import CATALOGUE_FILE, Catalogue, DataGrade, PiiKind, SharingClass
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.policy.loader import (
    CompiledAgreement,
    Finding,
    ScanResult,
    line_at,
    policy_set_digest,
    scan_holder,
)
from gateway.policy.model import FieldSpec, Transform
from gateway.policy.transforms import MASK_CHAR, mask

_PERSONAL = frozenset(
    {PiiKind.ID_NUMBER, PiiKind.NAME, PiiKind.PHONE, PiiKind.ADDRESS, PiiKind.BIRTH_DATE}
)

# An 18-character resident ID number (GB 11643) ends in a check digit over the
# other 17 (ISO 7064 MOD 11-2; the unified social credit code has one too): one
# hidden character is recovered exactly, two to about ten guesses (fewer once
# the birth date must be a real day). A mask must hide at least this many.
ID_NUMBER_LEN = 18
MIN_HIDDEN_ID_CHARS = 3


def weak_id_mask(fs: FieldSpec) -> str:
    """Why a mask on an ID-number field can be undone ("" when it hides enough)."""
    if fs.transform is not Transform.MASK:
        return ""
    shown = mask("0" * ID_NUMBER_LEN, fs.keep_first or 0, fs.keep_last or 0)
    hidden = shown.count(MASK_CHAR)
    if hidden >= MIN_HIDDEN_ID_CHARS:
        return ""
    check = (
        "the check digit stays visible"
        if not shown.endswith(MASK_CHAR)
        else "the hidden check digit is computed from the 17 characters before it"
    )
    return (
        f"hides only {hidden} of an 18-character ID number's characters and {check} "
        "(ISO 7064 MOD 11-2), so the masked value can be reversed; hide at least "
        f"{MIN_HIDDEN_ID_CHARS} (e.g. keep_first: 6, keep_last: 4) or pseudonymise"
    )


@dataclass
class HolderReport:
    root: Path
    findings: list[Finding] = field(default_factory=list)
    agreements: int = 0
    digest: str = ""  # policy-set digest if the set would load
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(f.level in ("error", "warning") for f in self.findings)


@dataclass
class CheckReport:
    holders: list[HolderReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # e.g. "no holder folders found"

    @property
    def ok(self) -> bool:
        return not self.problems and not any(h.failed for h in self.holders)


def check_path(path: Path, *, now_ms: int, limits: Limits = DEFAULT_LIMITS) -> CheckReport:
    """Check a holder folder (has catalogue.yaml) or a folder of holder folders."""
    report = CheckReport()
    path = Path(path)
    if (path / CATALOGUE_FILE).is_file():
        report.holders.append(check_holder(path, now_ms=now_ms, limits=limits))
        return report
    if not path.is_dir():
        report.problems.append(f"{path}: not a directory")
        return report
    subs = sorted(p for p in path.iterdir() if p.is_dir() and (p / CATALOGUE_FILE).is_file())
    if not subs:
        report.problems.append(f"{path}: no {CATALOGUE_FILE} here nor in any subfolder")
    for sub in subs:
        report.holders.append(check_holder(sub, now_ms=now_ms, limits=limits))
    return report


def check_holder(root: Path, *, now_ms: int, limits: Limits = DEFAULT_LIMITS) -> HolderReport:
    res = scan_holder(root, limits)
    rep = HolderReport(root, list(res.findings), len(res.agreements))
    if res.catalogue is not None:
        for a in res.agreements:
            rep.findings.extend(_agreement_findings(a, res, now_ms))
        rep.findings.extend(_overlap_findings(res))
        rep.findings.extend(_statistics_findings(res, res.catalogue, rep.notes))
        rep.findings.extend(_source_findings(res, res.catalogue))
    if not res.errors and res.catalogue is not None:
        rep.digest = policy_set_digest(res.files)
    for p, kind in res.foreign:
        if kind != "statistics-agreement":
            rep.notes.append(f"{p}: kind {kind} skipped")
    rep.findings.sort(key=lambda f: (f.path, f.line or 0, f.level))
    return rep


# user:password@ in a URL whose password is not a ${VAR} reference.
_LITERAL_PASSWORD = re.compile(r"://[^/@:]*:(?!\$\{[A-Za-z_][A-Za-z0-9_]*\}@)[^@/]+@")


def _source_findings(res: ScanResult, catalogue: Catalogue) -> list[Finding]:
    """A database password written into a policy file (policy files are
    digested into every ledger entry and shared with auditors)."""
    out: list[Finding] = []
    doc = res.docs.get(CATALOGUE_FILE)
    for i, ds in enumerate(catalogue.datasets):
        if ds.source is not None and _LITERAL_PASSWORD.search(ds.source.url):
            out.append(
                Finding(
                    "warning",
                    str(res.root / CATALOGUE_FILE),
                    line_at(doc, ("datasets", i, "source", "url")) if doc is not None else None,
                    f"datasets.{i}.source.url",
                    f"dataset {ds.code}: the URL carries a password; write ${{VAR}} and set VAR "
                    "in the gateway's environment",
                )
            )
    return out


def _agreement_findings(a: CompiledAgreement, res: ScanResult, now_ms: int) -> list[Finding]:
    doc = res.docs.get(a.relpath)
    path = str(res.root / a.relpath)
    out: list[Finding] = []

    def add(level: Any, loc: tuple[Any, ...], msg: str) -> None:
        out.append(Finding(level, path, line_at(doc, loc), ".".join(map(str, loc)), msg))

    spec, ds = a.spec, a.dataset
    if a.until_ms < now_ms:
        add("warning", ("valid_until",), f"agreement {a.id} expired after {spec.valid_until}")
    elif a.from_ms > now_ms:
        add("note", ("valid_from",), f"agreement {a.id} is not in force until {spec.valid_from}")
    if ds.sharing_class is SharingClass.NOT_SHARED or spec.sharing_class is SharingClass.NOT_SHARED:
        add(
            "warning",
            ("dataset",),
            f"dataset {ds.code} is classed not_shared (不予共享); it is never served, "
            "so this agreement must not offer it",
        )
    if ds.grade is DataGrade.CORE or spec.grade is DataGrade.CORE:
        add(
            "warning",
            ("dataset",),
            f"dataset {ds.code} is core data (核心数据); core data never leaves, "
            "so this agreement must not offer it",
        )
    if spec.sharing_class != ds.sharing_class:
        add(
            "warning",
            ("sharing_class",),
            f"agreement states {spec.sharing_class.value}, the catalogue classes {ds.code} "
            f"{ds.sharing_class.value}; the stricter applies",
        )
    if spec.grade != ds.grade:
        add(
            "warning",
            ("grade",),
            f"agreement states {spec.grade.value}, the catalogue grades {ds.code} "
            f"{ds.grade.value}; the stricter applies",
        )
    if a.needs_approval and spec.approval is None:
        # Name the rule that demands the approval, and where it comes from.
        if a.sharing_class is SharingClass.CONDITIONAL:
            rule_key = "sharing_class"
            source = (
                "this agreement's sharing_class: conditional"
                if spec.sharing_class is SharingClass.CONDITIONAL
                else f"the catalogue classes {ds.code} conditional"
            )
            rule = f"rule: conditional sharing (有条件共享) needs an approval; {source}"
        else:
            rule_key = "grade"
            source = (
                "this agreement's grade: important"
                if spec.grade is DataGrade.IMPORTANT
                else f"the catalogue grades {ds.code} important"
            )
            rule = f"rule: important data (重要数据) needs an approval; {source}"
        out.append(
            Finding(
                "warning",
                path,
                line_at(doc, (rule_key,)) or line_at(doc, ("dataset",)),
                "approval",
                f"{rule}. Add `approval: {{id: <approval document number>, approver: "
                "<approving body>}`; until then every request is refused",
            )
        )
    for i, fs in enumerate(spec.fields):
        col = next((c for c in ds.columns if c.name == fs.name), None)
        if col is not None and fs.transform is Transform.PASS and col.pii in _PERSONAL:
            add(
                "note",
                ("fields", i),
                f"personal data ({col.pii.value}) {fs.name} passed in clear; consider mask, "
                "pseudonymise or generalise (minimum necessary)",
            )
        weak = weak_id_mask(fs) if col is not None and col.pii is PiiKind.ID_NUMBER else ""
        if weak:
            add(
                "warning",
                ("fields", i),
                f"agreement {a.id}: the mask of ID-number field {fs.name} {weak}",
            )
    return out


def _overlap_findings(res: ScanResult) -> list[Finding]:
    groups: dict[tuple[str, str, str, str], list[CompiledAgreement]] = {}
    for a in res.agreements:
        for juris, system in sorted(a.requesters):
            for purpose in sorted(a.purposes):
                groups.setdefault((a.spec.dataset, juris, system, purpose), []).append(a)
    reported: set[tuple[str, str]] = set()
    out: list[Finding] = []
    for (dataset, juris, system, purpose), members in sorted(groups.items()):
        members.sort(key=lambda a: a.id)
        for i, x in enumerate(members):
            for y in members[i + 1 :]:
                if (x.id, y.id) in reported:
                    continue
                if x.until_ms < y.from_ms or y.until_ms < x.from_ms:
                    continue  # consecutive agreements, no overlap in time
                reported.add((x.id, y.id))
                same = _terms(x) == _terms(y)
                kind = "overlapping" if same else "contradictory"
                detail = (
                    "with the same terms"
                    if same
                    else "with different terms (" + ", ".join(_differences(x, y)) + ")"
                )
                for a, b in ((x, y), (y, x)):
                    out.append(
                        Finding(
                            "warning",
                            str(res.root / a.relpath),
                            line_at(res.docs.get(a.relpath), ("requesters",)),
                            "requesters",
                            f"{kind}: agreements {a.id} and {b.id} both cover {juris}/{system} "
                            f"reading {dataset} for purpose {purpose} {detail}",
                        )
                    )
    return out


def _terms(a: CompiledAgreement) -> tuple[Any, ...]:
    s = a.spec
    return (s.fields, s.row_scope, s.max_records_per_request, s.quota_per_day)


def _differences(x: CompiledAgreement, y: CompiledAgreement) -> list[str]:
    names = ("fields", "row_scope", "max_records_per_request", "quota_per_day")
    return [n for n, p, q in zip(names, _terms(x), _terms(y), strict=True) if p != q]


StatsValidator = Callable[[Path, Catalogue], list[str]]


def _statistics_validator() -> StatsValidator | None:
    try:
        mod = importlib.import_module("gateway.stats.agreements")
    except ImportError:
        return None
    fn = getattr(mod, "validate_file", None)
    return fn if callable(fn) else None


def _statistics_findings(res: ScanResult, catalogue: Catalogue, notes: list[str]) -> list[Finding]:
    stats_files = [p for p, kind in res.foreign if kind == "statistics-agreement"]
    if not stats_files:
        return []
    validate = _statistics_validator()
    if validate is None:
        notes.append(
            f"statistics files not checked (gateway.stats.agreements not available): "
            f"{', '.join(str(p) for p in stats_files)}"
        )
        return []
    out = []
    for p in stats_files:
        for problem in validate(p, catalogue):
            text = str(problem)
            text = text.removeprefix(str(p)).removeprefix(":").strip() or text
            out.append(Finding("error", str(p), None, "", text))
        notes.append(f"{p}: statistics agreement checked")
    return out
