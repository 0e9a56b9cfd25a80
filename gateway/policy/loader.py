"""Loading one holder's policy folder into an immutable, compiled policy set.

Owns: reading ``<holder>/catalogue.yaml`` and ``<holder>/agreements/*.yaml``
(exact bytes read once, digested and parsed from those same bytes),
validating every agreement against its schema and the catalogue, collecting
*every* problem with file, line and field, compiling agreements into an index
for evaluation, and the policy-set digest. Does not own: evaluation
(``gateway.policy.engine``), cross-agreement lint (``gateway.policy.lint``),
reload and watching (``gateway.policy.store``), or files of kinds it does not
own (``statistics-agreement`` files are skipped and listed).

A set loads whole or not at all: ``load_policy_set`` raises PolicyFileError
listing every error if any file is bad.

Problem levels:
  error    the set cannot load (schema, unknown dataset or field, transform
           unfit for the column, duplicate id, holder mismatch, unreadable file)
  warning  the set loads and evaluation refuses what it must (expired, core or
           not-shared data offered, missing approval, overlapping or
           contradictory agreements); ``gateway policy check`` fails
  note     worth knowing, does not fail the check (not yet in force, a
           personal-data field passed in clear, skipped files)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from gateway import crypto
from gateway.catalogue import (
    CATALOGUE_FILE,
    Catalogue,
    Column,
    DataGrade,
    Dataset,
    PiiKind,
    SharingClass,
)
from gateway.errors import PolicyFileError
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.policy import suggest
from gateway.policy.api import FieldRule
from gateway.policy.model import (
    AGREEMENT_KIND,
    AgreementFile,
    FieldSpec,
    Generalisation,
    RowScope,
    Transform,
    valid_from_ms,
    valid_until_ms,
)
from gateway.yamlfile import parse_yaml

AGREEMENTS_DIR = "agreements"
# Kinds that may sit in a holder folder but belong to other parts of the gateway.
FOREIGN_KINDS = frozenset({"statistics-agreement", "dataset-catalogue"})
POLICY_SET_DIGEST_PREFIX = b"gateway-policy-set/v1\n"

Level = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Finding:
    level: Level
    path: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        what = f"field {self.field}: " if self.field else ""
        return f"{where}: {self.level}: {what}{self.message}"


@dataclass(frozen=True)
class CompiledField:
    name: str
    transform: Transform
    keep_first: int
    keep_last: int
    to: Generalisation | None
    pii: PiiKind
    rule: FieldRule


@dataclass(frozen=True, eq=False)
class CompiledAgreement:
    """One agreement, checked against the catalogue and ready for evaluation."""

    id: str
    digest: str  # hex SHA-256 of the file's exact bytes
    relpath: str
    spec: AgreementFile
    dataset: Dataset
    released: tuple[CompiledField, ...]  # fields that may leave, in file order
    by_name: Mapping[str, CompiledField]
    dropped: frozenset[str]
    from_ms: int
    until_ms: int
    sharing_class: SharingClass  # the stricter of catalogue and agreement
    grade: DataGrade  # the stricter of catalogue and agreement
    requesters: frozenset[tuple[str, str]]  # (jurisdiction, service system)
    purposes: frozenset[str]

    @property
    def needs_approval(self) -> bool:
        return self.sharing_class is SharingClass.CONDITIONAL or self.grade is DataGrade.IMPORTANT

    @property
    def approval_id(self) -> str:
        return self.spec.approval.id if self.spec.approval else ""


IndexKey = tuple[str, str, str, str]  # dataset, jurisdiction, service system, purpose


@dataclass(frozen=True, eq=False)
class PolicySet:
    """An immutable, loaded policy set for one holder."""

    root: Path
    catalogue: Catalogue
    agreements: tuple[CompiledAgreement, ...]
    files: tuple[tuple[str, str], ...]  # sorted (relative path, hex SHA-256 of bytes)
    digest: str
    skipped: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()  # warnings and notes (a loaded set has no errors)
    index: Mapping[IndexKey, tuple[CompiledAgreement, ...]] = field(default_factory=dict)
    by_id: Mapping[str, CompiledAgreement] = field(default_factory=dict)
    datasets: Mapping[str, Dataset] = field(default_factory=dict)

    @property
    def holder(self) -> str:
        return self.catalogue.holder


def policy_set_digest(files: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    """Hex SHA-256 of ``b"gateway-policy-set/v1\\n"`` followed by the compact JSON
    array of ``[relative path, hex SHA-256 of the file bytes]`` pairs sorted by path
    (UTF-8, no spaces). Anyone holding the folder can recompute it."""
    pairs = sorted([list(p) for p in files])
    body = json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return crypto.sha256_hex(POLICY_SET_DIGEST_PREFIX + body)


# --------------------------------------------------------------------------
# Source lines
# --------------------------------------------------------------------------


def line_at(doc: Any, loc: tuple[Any, ...]) -> int | None:
    """Source line for a location in a parsed document (list items resolve to
    the line of their first key)."""
    node = doc
    line: int | None = None
    for part in loc:
        lines = getattr(node, "lines", None)
        if isinstance(node, dict) and part in node:
            if lines:
                line = lines.get(part, line)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            item_lines = getattr(node, "lines", None)
            if item_lines:
                line = min(item_lines.values())
        else:
            break
    return line


def schema_findings(doc: Any, model: type[BaseModel], source: str) -> tuple[Any, list[Finding]]:
    """Validate ``doc``; return (model or None, every problem found)."""
    try:
        return model.model_validate(doc), []
    except ValidationError as exc:
        out = []
        errs = exc.errors()
        locs = [tuple(e["loc"]) for e in errs]
        unknown = {loc for e, loc in zip(errs, locs, strict=True) if e["type"] == "extra_forbidden"}
        for err in errs:
            loc = tuple(err["loc"])
            # A list whose bad items were reported is also "too short": noise.
            if err["type"] == "too_short" and any(
                len(other) > len(loc) and other[: len(loc)] == loc for other in locs
            ):
                continue
            msg = str(err["msg"]).removeprefix("Value error, ")
            line = line_at(doc, loc)
            if err["type"] == "extra_forbidden":
                msg = suggest.unknown_key_hint(model, loc)
            elif err["type"] in ("enum", "literal_error"):
                msg = suggest.choice_hint(msg, err.get("input"))
            elif err["type"] == "missing":
                siblings = [str(u[-1]) for u in unknown if u[:-1] == loc[:-1]]
                typo = suggest.misspelt_as(str(loc[-1]), siblings)
                if typo is not None:
                    line = line_at(doc, (*loc[:-1], typo))
                    msg = f"{msg}; is {typo!r} (line {line}) a misspelling of it?"
                elif line is None:
                    line = line_at(doc, loc[:-1]) if loc[:-1] else _first_line(doc)
            out.append(Finding("error", source, line, ".".join(str(p) for p in loc), msg))
        return None, out


def _first_line(doc: Any) -> int | None:
    lines = getattr(doc, "lines", None)
    return min(lines.values()) if lines else None


# --------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    relpath: str
    display: str
    data: bytes
    digest: str


def _read(path: Path, root: Path, limits: Limits, found: list[Finding]) -> _Source | None:
    display = str(path)
    try:
        if path.is_symlink() or not path.is_file():
            found.append(Finding("error", display, None, "", "not a regular file"))
            return None
        data = path.read_bytes()
    except OSError as exc:
        found.append(Finding("error", display, None, "", f"cannot read: {exc.strerror}"))
        return None
    if len(data) > limits.max_policy_file_bytes:
        found.append(
            Finding(
                "error",
                display,
                None,
                "",
                f"file is {len(data)} bytes, limit {limits.max_policy_file_bytes}",
            )
        )
        return None
    rel = path.relative_to(root).as_posix()
    return _Source(rel, display, data, crypto.sha256_hex(data))


def _parse(src: _Source, found: list[Finding]) -> Any:
    try:
        text = src.data.decode("utf-8")
    except UnicodeDecodeError:
        found.append(Finding("error", src.display, None, "", "not UTF-8"))
        return None
    try:
        return parse_yaml(text, src.display)
    except PolicyFileError as exc:
        # parse_yaml's message already starts with "<file>:<line>: ".
        msg = str(exc)
        line: int | None = None
        rest = msg.removeprefix(src.display)
        if rest.startswith(":"):
            head, _, tail = rest[1:].partition(": ")
            if head.isdigit():
                line, msg = int(head), tail
            else:
                msg = rest[1:].lstrip()
        found.append(Finding("error", src.display, line, "", msg))
        return None


def agreement_paths(root: Path) -> list[Path]:
    folder = root / AGREEMENTS_DIR
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
    )


# --------------------------------------------------------------------------
# Compiling
# --------------------------------------------------------------------------

_CLASS_ORDER = {
    SharingClass.UNCONDITIONAL: 0,
    SharingClass.CONDITIONAL: 1,
    SharingClass.NOT_SHARED: 2,
}
_GRADE_ORDER = {DataGrade.GENERAL: 0, DataGrade.IMPORTANT: 1, DataGrade.CORE: 2}


def _field_fits(spec: FieldSpec, col: Column) -> str | None:
    """Why a transform cannot apply to a column, or None."""
    if spec.transform is Transform.GENERALISE:
        if spec.to in (Generalisation.YEAR, Generalisation.MONTH) and col.type != "date":
            return f"generalise to {spec.to.value} needs a date column; {col.name} is {col.type}"
        if spec.to is Generalisation.DISTRICT and (
            col.type != "string" or col.pii is not PiiKind.ADDRESS
        ):
            return f"generalise to district needs an address column; {col.name} is not one"
    return None


def _compile(
    spec: AgreementFile, src: _Source, doc: Any, catalogue: Catalogue, found: list[Finding]
) -> CompiledAgreement | None:
    errors_before = sum(1 for f in found if f.level == "error")

    def err(loc: tuple[Any, ...], msg: str) -> None:
        found.append(
            Finding("error", src.display, line_at(doc, loc), ".".join(str(p) for p in loc), msg)
        )

    if spec.holder != catalogue.holder:
        err(
            ("holder",),
            f"agreement names holder {spec.holder}, this folder's catalogue is {catalogue.holder}",
        )
    dataset = next((d for d in catalogue.datasets if d.code == spec.dataset), None)
    if dataset is None:
        near = suggest.closest(spec.dataset, catalogue_codes(catalogue))
        err(
            ("dataset",),
            f"dataset {spec.dataset!r} is not in the catalogue of "
            f"{catalogue.holder}"
            + (
                f"; did you mean {near!r}?"
                if near
                else f" (known: {', '.join(catalogue_codes(catalogue))})"
            ),
        )
        return None
    cols = {c.name: c for c in dataset.columns}
    compiled: list[CompiledField] = []
    dropped: set[str] = set()
    for i, fs in enumerate(spec.fields):
        col = cols.get(fs.name)
        if col is None:
            near = suggest.closest(fs.name, list(cols))
            hint = f"; did you mean {near!r}?" if near else f" (fields: {', '.join(cols)})"
            err(
                ("fields", i, "name"),
                f"{fs.name!r} is not a field of dataset {dataset.code}{hint}",
            )
            continue
        why = _field_fits(fs, col)
        if why:
            err(("fields", i, "transform"), why)
            continue
        rule = FieldRule(fs.name, fs.transform.value)
        if fs.transform is Transform.DROP:
            dropped.add(fs.name)
            continue
        compiled.append(
            CompiledField(
                fs.name, fs.transform, fs.keep_first or 0, fs.keep_last or 0, fs.to, col.pii, rule
            )
        )
    if sum(1 for f in found if f.level == "error") > errors_before:
        return None
    sharing = max(dataset.sharing_class, spec.sharing_class, key=_CLASS_ORDER.__getitem__)
    grade = max(dataset.grade, spec.grade, key=_GRADE_ORDER.__getitem__)
    return CompiledAgreement(
        id=spec.id,
        digest=src.digest,
        relpath=src.relpath,
        spec=spec,
        dataset=dataset,
        released=tuple(compiled),
        by_name={f.name: f for f in compiled},
        dropped=frozenset(dropped),
        from_ms=valid_from_ms(spec.valid_from),
        until_ms=valid_until_ms(spec.valid_until),
        sharing_class=sharing,
        grade=grade,
        requesters=frozenset(
            (r.jurisdiction, s) for r in spec.requesters for s in r.service_systems
        ),
        purposes=frozenset(spec.purposes),
    )


def catalogue_codes(catalogue: Catalogue) -> list[str]:
    return [d.code for d in catalogue.datasets]


@dataclass
class ScanResult:
    """Everything learned from one holder folder (for loading and for lint)."""

    root: Path
    catalogue: Catalogue | None = None
    agreements: list[CompiledAgreement] = field(default_factory=list)
    docs: dict[str, Any] = field(default_factory=dict)  # relpath -> parsed document
    files: list[tuple[str, str]] = field(default_factory=list)
    foreign: list[tuple[Path, str]] = field(default_factory=list)  # (path, kind)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]


def scan_holder(root: Path, limits: Limits = DEFAULT_LIMITS) -> ScanResult:
    """Read and validate one holder folder, collecting every problem."""
    res = ScanResult(root)
    found = res.findings
    if not root.is_dir():
        found.append(Finding("error", str(root), None, "", "not a directory"))
        return res
    cat_src = _read(root / CATALOGUE_FILE, root, limits, found)
    if cat_src is not None:
        doc = _parse(cat_src, found)
        if doc is not None:
            cat, errs = schema_findings(doc, Catalogue, cat_src.display)
            found.extend(errs)
            if cat is not None:
                res.catalogue = cat
                res.files.append((cat_src.relpath, cat_src.digest))
    paths = agreement_paths(root)
    if len(paths) > limits.max_policy_files:
        found.append(
            Finding(
                "error",
                str(root / AGREEMENTS_DIR),
                None,
                "",
                f"{len(paths)} files, limit {limits.max_policy_files}",
            )
        )
        return res
    seen_ids: dict[str, str] = {}
    for path in paths:
        src = _read(path, root, limits, found)
        if src is None:
            continue
        doc = _parse(src, found)
        if doc is None:
            continue
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind in FOREIGN_KINDS:
            res.foreign.append((path, str(kind)))
            continue
        if kind != AGREEMENT_KIND:
            found.append(
                Finding(
                    "error",
                    src.display,
                    line_at(doc, ("kind",)),
                    "kind",
                    f"expected {AGREEMENT_KIND!r}, got {kind!r}",
                )
            )
            continue
        spec, errs = schema_findings(doc, AgreementFile, src.display)
        found.extend(errs)
        if spec is None or res.catalogue is None:
            continue
        if spec.id in seen_ids:
            found.append(
                Finding(
                    "error",
                    src.display,
                    line_at(doc, ("id",)),
                    "id",
                    f"agreement id {spec.id!r} is also used by {seen_ids[spec.id]}",
                )
            )
            continue
        seen_ids[spec.id] = src.display
        compiled = _compile(spec, src, doc, res.catalogue, found)
        if compiled is not None:
            res.agreements.append(compiled)
            res.docs[src.relpath] = doc
            res.files.append((src.relpath, src.digest))
    # Foreign kinds at the folder root (e.g. statistics.yaml) are listed for lint.
    for p in sorted(root.iterdir()):
        if (
            p.suffix in (".yaml", ".yml")
            and p.name != CATALOGUE_FILE
            and not p.name.startswith(".")
        ):
            src = _read(p, root, limits, [])
            doc = _parse(src, []) if src is not None else None
            kind = doc.get("kind") if isinstance(doc, dict) else None
            if kind in FOREIGN_KINDS and kind != "dataset-catalogue":
                res.foreign.append((p, str(kind)))
    return res


def build_set(res: ScanResult, extra: list[Finding] | None = None) -> PolicySet:
    """Turn an error-free scan into an immutable, indexed PolicySet."""
    if res.errors or res.catalogue is None:
        lines = "\n  ".join(str(f) for f in res.errors) or f"{res.root}: no catalogue"
        raise PolicyFileError(
            f"policy set {res.root} not loaded ({len(res.errors)} error(s)):\n  {lines}"
        )
    index: dict[IndexKey, list[CompiledAgreement]] = {}
    for a in sorted(res.agreements, key=lambda a: a.id):
        for juris, system in a.requesters:
            for purpose in a.purposes:
                index.setdefault((a.spec.dataset, juris, system, purpose), []).append(a)
    files = tuple(sorted(res.files))
    return PolicySet(
        root=res.root,
        catalogue=res.catalogue,
        agreements=tuple(sorted(res.agreements, key=lambda a: a.id)),
        files=files,
        digest=policy_set_digest(files),
        skipped=tuple(str(p) for p, _ in res.foreign),
        findings=tuple(extra or ()),
        index={k: tuple(v) for k, v in index.items()},
        by_id={a.id: a for a in res.agreements},
        datasets={d.code: d for d in res.catalogue.datasets},
    )


def load_policy_set(root: Path, limits: Limits = DEFAULT_LIMITS) -> PolicySet:
    """Load a holder folder whole, or raise PolicyFileError listing every error."""
    return build_set(scan_holder(Path(root), limits))


__all__ = [
    "AGREEMENTS_DIR",
    "CompiledAgreement",
    "CompiledField",
    "Finding",
    "PolicySet",
    "RowScope",
    "ScanResult",
    "build_set",
    "load_policy_set",
    "policy_set_digest",
    "scan_holder",
]
