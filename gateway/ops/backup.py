"""Consistent online backups of a gateway's state, and installing a checked backup.

Owns: ``take_backup`` (SQLite's online backup API, file by file, while the
gateway runs, into a new folder with a manifest of SHA-256 digests),
``check_backup`` (every listed file present with its digest) and
``install_backup`` (each file in place by rename). Whether a backup's budgets
and quotas cover what a ledger shows as spent is ``gateway.ops.spent``; the
CLI (``gateway restore``) runs both, and verifies the ledger, before installing.

Order matters for consistency under load. The holder reserves budget and
consumes quota *before* it ledgers, so the ledger is copied first and the
budget and quota stores after it: every spend the copied ledger shows is
then in the copied stores (they may hold a little more: spends reserved but
not yet ledgered, which is the safe side). The subject-access index store is
written before the ledger append too, so copied after the ledger it holds a
row for every copied entry; rows of entries appended after the ledger was
copied are unlinked in the copy (what a failed append leaves). Data-source files are not the
gateway's state and are not copied; keys are backed up separately (they are
secrets).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.errors import InvalidArgument, NotFound, StorageFailure, VerificationFailed
from gateway.ledger.storage import SqliteLedgerStore
from gateway.ops.spent import COVER_FILE

log = logging.getLogger("gateway.backup")

MANIFEST: Final = "manifest.json"
FORMAT: Final = "jgw-backup-v1"
# Copied in this order (see the module docstring): the ledger first.
DATABASES: Final = (
    "ledger.sqlite",
    "subject_index.sqlite",
    "witness.sqlite",
    "budget.sqlite",
    "quota.sqlite",
    "replay.sqlite",
)
STATE_FILES: Final = ("trust_bundle_state.json",)
# Not backed up, removed by a restore: derived from the stores (see BudgetCover).
DERIVED_FILES: Final = (COVER_FILE,)


@dataclass(frozen=True)
class BackupManifest:
    format: str
    jurisdiction: str
    taken_at: str
    ledger_size: int
    files: dict[str, str]  # name -> sha256 hex

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": self.format,
                "jurisdiction": self.jurisdiction,
                "taken_at": self.taken_at,
                "ledger_size": self.ledger_size,
                "files": self.files,
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def read(cls, folder: Path) -> BackupManifest:
        path = folder / MANIFEST
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            manifest = cls(
                str(doc["format"]),
                str(doc["jurisdiction"]),
                str(doc["taken_at"]),
                int(doc["ledger_size"]),
                {str(k): str(v) for k, v in dict(doc["files"]).items()},
            )
        except FileNotFoundError as exc:
            raise NotFound(f"{folder}: not a gateway backup (no {MANIFEST})") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"{path}: unreadable backup manifest: {exc}") from exc
        if manifest.format != FORMAT:
            raise InvalidArgument.expected("backup format", FORMAT, manifest.format)
        for name in manifest.files:
            if name not in DATABASES + STATE_FILES:
                raise InvalidArgument(f"{path}: unexpected file {name!r} in the manifest")
        return manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _online_copy(src: Path, dst: Path) -> None:
    """SQLite online backup: a consistent snapshot while writers keep writing.

    One step (``pages=-1``): the whole file is read inside one read transaction,
    which in WAL mode (every store's) blocks no writer. Copied in smaller steps,
    the backup restarts from the first page whenever the gateway commits between
    two steps, so a busy gateway with a large ledger was never backed up."""
    try:
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30.0)
        try:
            target = sqlite3.connect(dst)
            try:
                source.backup(target, pages=-1)
                target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise StorageFailure(f"backup of {src.name} failed: {exc}") from exc


def _unlink_beyond(index_db: Path, ledger_size: int) -> None:
    """In the copied subject index: entries appended after the ledger was copied
    are not in the backup's ledger, so their rows become what they are there,
    rows of appends that never happened (unlinked: shown to nobody)."""
    try:
        conn = sqlite3.connect(index_db)
        try:
            with conn:
                conn.execute(
                    "UPDATE subject_entries SET entry_index = NULL WHERE entry_index >= ?",
                    (ledger_size,),
                )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageFailure(f"backup of subject_index.sqlite failed: {exc}") from exc


def take_backup(data_dir: Path, out: Path, jurisdiction: str) -> BackupManifest:
    """Snapshot the gateway's state stores from ``data_dir`` into the new folder ``out``."""
    if out.exists() and any(out.iterdir()):
        raise InvalidArgument(f"{out} exists and is not empty; give a new folder")
    if not (data_dir / "ledger.sqlite").is_file():
        raise NotFound(f"{data_dir}: no ledger.sqlite (is this the gateway's data_dir?)")
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    copied: list[str] = []
    for name in DATABASES:
        src = data_dir / name
        if src.is_file():
            _online_copy(src, out / name)
            copied.append(name)
    for name in STATE_FILES:
        if (data_dir / name).is_file():
            shutil.copy2(data_dir / name, out / name)
            copied.append(name)
    store = SqliteLedgerStore(out / "ledger.sqlite", readonly=True)
    try:
        size = store.size()
    finally:
        store.close()
    if "subject_index.sqlite" in copied:
        _unlink_beyond(out / "subject_index.sqlite", size)
    files = {name: _sha256(out / name) for name in copied}
    manifest = BackupManifest(
        FORMAT,
        jurisdiction,
        dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        size,
        files,
    )
    (out / MANIFEST).write_text(manifest.to_json() + "\n", encoding="utf-8")
    log.info(
        "backup of %d ledger entries written to %s",
        size,
        out,
        extra={"event": "backup", "size": size, "files": sorted(files)},
    )
    return manifest


# --------------------------------------------------------------------------
# Restore
# --------------------------------------------------------------------------


def check_backup(folder: Path, jurisdiction: str) -> BackupManifest:
    """The manifest, once every listed file is present with its recorded digest."""
    manifest = BackupManifest.read(folder)
    if manifest.jurisdiction != jurisdiction:
        raise InvalidArgument.expected("backup jurisdiction", jurisdiction, manifest.jurisdiction)
    if "ledger.sqlite" not in manifest.files:
        raise InvalidArgument(f"{folder}: the backup has no ledger")
    for name, digest in manifest.files.items():
        path = folder / name
        if not path.is_file():
            raise VerificationFailed(f"{folder}: {name} is listed but missing")
        if _sha256(path) != digest:
            raise VerificationFailed(f"{folder}: {name} does not match its manifest digest")
    return manifest


def first_difference(backup: SqliteLedgerStore, current: SqliteLedgerStore) -> int | None:
    """The first index at which the ``current`` ledger is not a prefix of the
    backup's (None: the backup extends it). Each entry's hash covers the one
    before it, so equal hashes at an index mean equal logs up to it: a binary
    search reads O(log n) entries."""
    size = current.size()
    if size == 0:
        return None
    if backup.size() < size:
        return backup.size()

    def same(i: int) -> bool:
        mine, theirs = current.raw_range(i, i + 1), backup.raw_range(i, i + 1)
        return bool(mine) and bool(theirs) and mine[0][2] == theirs[0][2]

    if same(size - 1):
        return None
    lo, hi = 0, size - 1  # the first difference is in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if same(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo


def install_backup(folder: Path, manifest: BackupManifest, data_dir: Path) -> list[str]:
    """Copy the checked files into ``data_dir`` (each via a temporary file and rename)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    installed = []
    for name in manifest.files:
        target = data_dir / name
        tmp = data_dir / f".{name}.restoring"
        shutil.copy2(folder / name, tmp)
        for suffix in ("-wal", "-shm", "-journal"):
            stale = data_dir / f"{name}{suffix}"
            if stale.exists():
                stale.unlink()
        os.replace(tmp, target)
        installed.append(name)
    return installed
