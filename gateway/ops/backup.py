"""Consistent online backups of a gateway's state, and installing a checked backup.

Owns: ``take_backup`` (SQLite's online backup API, file by file, while the
gateway runs, into a new folder with a manifest of SHA-256 digests),
``check_backup`` (every listed file present with its digest) and
``install_backup`` (every file staged, then each in place by rename; the
accepted trust-bundle version in place is kept unless the backup's is higher,
the replay memory installed is the union of the backup's and the one in
place, and the witness store installed keeps, per peer log, the newer cosigned
checkpoint of the two and every piece of evidence either holds: anti-rollback
state only grows, so an old backup cannot make a revoked bundle, a replayed
request or a peer's rolled-back log acceptable again). Whether a backup's budgets
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

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.durable import fsync_path
from gateway.errors import InvalidArgument, NotFound, StorageFailure, VerificationFailed
from gateway.ledger.storage import SqliteLedgerStore
from gateway.ledger.witness import WITNESS_SCHEMA
from gateway.ops.spent import COVER_FILE
from gateway.storage.backend import (
    BUDGET_FILE,
    LEDGER_FILE,
    QUOTA_FILE,
    REPLAY_FILE,
    SUBJECT_FILE,
    WITNESS_FILE,
)
from gateway.trust import VERSION_STATE_FILE, FileVersionStore

log = logging.getLogger("gateway.backup")

MANIFEST: Final = "manifest.json"
FORMAT: Final = "jgw-backup-v1"
# Copied in this order (see the module docstring): the ledger first.
DATABASES: Final = (
    LEDGER_FILE,
    SUBJECT_FILE,
    WITNESS_FILE,
    BUDGET_FILE,
    QUOTA_FILE,
    REPLAY_FILE,
)
STATE_FILES: Final = (VERSION_STATE_FILE,)
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
    if out.exists() and not out.is_dir():
        raise InvalidArgument(f"--out {out} is a file, not a folder; give a new folder")
    if out.exists() and any(out.iterdir()):
        raise InvalidArgument(f"{out} exists and is not empty; give a new folder")
    if not (data_dir / "ledger.sqlite").is_file():
        raise NotFound(f"{data_dir}: no ledger.sqlite (is this the gateway's data_dir?)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a parent folder should be, no permission
        raise InvalidArgument(
            f"--out {out}: cannot create the folder ({exc.strerror or type(exc).__name__}); "
            "give a new folder"
        ) from None
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


@dataclass(frozen=True)
class Installed:
    """What ``install_backup`` did: the files put in place, the files moved
    aside (into ``keep``), and one line per store whose protection was kept
    rather than replaced by the backup's older copy."""

    installed: list[str]
    moved: list[str]
    keep: Path
    notes: list[str]


def _accepted(path: Path, hint: str = "") -> tuple[int, str | None]:
    store = FileVersionStore(path)
    try:
        return store.highest(), store.highest_digest()
    except StorageFailure as exc:
        raise StorageFailure(f"{exc.message}{hint}") from exc


def _keep_accepted_version(folder: Path, data_dir: Path) -> str | None:
    """None: install the backup's ``trust_bundle_state.json``; else why the one
    in place is kept. It is anti-rollback state (the highest bundle version this
    gateway accepted): an older backup must never lower it, or a bundle revoked
    since could be accepted again."""
    if not (data_dir / VERSION_STATE_FILE).is_file():
        return None
    current, current_digest = _accepted(
        data_dir / VERSION_STATE_FILE,
        " (restore keeps the higher accepted version of this one and the backup's; move it "
        "aside to restore the backup's)",
    )
    backed_up, backed_up_digest = _accepted(folder / VERSION_STATE_FILE)
    if backed_up > current or (backed_up, backed_up_digest) == (current, current_digest):
        return None
    return (
        f"{VERSION_STATE_FILE}: kept the one in place (trust bundle version {current} "
        f"accepted; the backup's says {backed_up}): a restore never lowers the accepted version"
    )


def _merge_replay(staged: Path, current: Path) -> int:
    """Add to the staged copy of the backup's replay memory every request id
    remembered in place (a restore must not forget an id already seen, or a
    replay of that request would be accepted). Returns the ids added."""
    try:
        with _attached(staged, current) as conn:
            has = conn.execute(
                "SELECT 1 FROM current.sqlite_master WHERE type = 'table'"
                " AND name = 'seen_requests'"
            ).fetchone()
            if has is None:
                return 0
            conn.execute(
                "CREATE TABLE IF NOT EXISTS main.seen_requests ("
                " sender TEXT NOT NULL, request_id TEXT NOT NULL,"
                " timestamp_ms INTEGER NOT NULL, PRIMARY KEY (sender, request_id))"
            )
            cur = conn.execute(
                "INSERT OR IGNORE INTO main.seen_requests (sender, request_id, timestamp_ms)"
                " SELECT sender, request_id, timestamp_ms FROM current.seen_requests"
            )
            return max(0, cur.rowcount)
    except sqlite3.Error as exc:
        raise StorageFailure(
            f"{current}: the replay memory in place is unreadable ({exc}); a restore merges it "
            "with the backup's so that no request id already seen is forgotten (move it aside "
            "to restore the backup's alone)"
        ) from exc


@contextlib.contextmanager
def _attached(staged: Path, current: Path) -> Iterator[sqlite3.Connection]:
    """The staged copy of a backup's store as ``main`` with the one in place
    attached as ``current``, in one transaction (committed if the block ends
    normally). Read only, but not opened mode=ro: a store left in WAL mode by a
    stopped gateway is read with its -wal file."""
    conn = sqlite3.connect(staged)
    try:
        conn.execute("ATTACH DATABASE ? AS current", (str(current),))
        with conn:
            yield conn
    finally:
        conn.close()


def _merge_witness(staged: Path, current: Path) -> tuple[list[str], int]:
    """Bring into the staged copy of the backup's witness store what the one in
    place knows beyond it: for each log, the state with the larger cosigned size
    (with its root and signed checkpoint), and every piece of evidence either
    copy holds. The witness store is anti-rollback memory of the peers' logs:
    installed older, a peer's rollback or fork to a size cosigned since the
    backup would go unnoticed. Returns the logs whose state was taken from the
    one in place, and the pieces of evidence added."""
    try:
        with _attached(staged, current) as conn:
            tables = {
                str(r[0])
                for r in conn.execute("SELECT name FROM current.sqlite_master WHERE type = 'table'")
            }
            for statement in WITNESS_SCHEMA:  # unqualified: created in main
                conn.execute(statement)
            newer: list[str] = []
            if "witness_state" in tables:
                newer = [
                    str(r[0])
                    for r in conn.execute(
                        "SELECT c.origin FROM current.witness_state AS c"
                        " LEFT JOIN main.witness_state AS b ON b.origin = c.origin"
                        " WHERE b.origin IS NULL OR c.size > b.size ORDER BY c.origin"
                    )
                ]
                for origin in newer:
                    conn.execute("DELETE FROM main.witness_state WHERE origin = ?", (origin,))
                    conn.execute(
                        "INSERT INTO main.witness_state (origin, size, root, note, updated_ms)"
                        " SELECT origin, size, root, note, updated_ms"
                        " FROM current.witness_state WHERE origin = ?",
                        (origin,),
                    )
            added = 0
            if "witness_evidence" in tables:
                cur = conn.execute(
                    "INSERT INTO main.witness_evidence"
                    " (origin, kind, held_note, shown_note, detail, recorded_ms)"
                    " SELECT c.origin, c.kind, c.held_note, c.shown_note, c.detail,"
                    " c.recorded_ms FROM current.witness_evidence AS c WHERE NOT EXISTS ("
                    " SELECT 1 FROM main.witness_evidence AS b WHERE b.origin = c.origin"
                    " AND b.kind = c.kind AND b.held_note = c.held_note"
                    " AND b.shown_note = c.shown_note AND b.detail = c.detail"
                    " AND b.recorded_ms = c.recorded_ms) ORDER BY c.id"
                )
                added = max(0, cur.rowcount)
            return newer, added
    except sqlite3.Error as exc:
        raise StorageFailure(
            f"{current}: the witness store in place is unreadable ({exc}); a restore keeps its "
            "newer cosigned checkpoints and its evidence so that no peer's rollback or fork goes "
            "unnoticed (move it aside to restore the backup's alone)"
        ) from exc


def install_backup(folder: Path, manifest: BackupManifest, data_dir: Path, keep: Path) -> Installed:
    """Put the checked files into ``data_dir``, the replaced ones moved to ``keep``.

    Every file is first staged under a temporary name in ``data_dir`` (nothing
    in place changes until all are ready), then the files in place are moved
    aside and the staged ones renamed in. Three stores only ever grow in
    protection: the accepted trust-bundle version in place is kept when it is
    not lower than the backup's, the replay memory installed is the union of
    the backup's and the one in place, and the witness store installed holds,
    per peer log, the larger cosigned size of the two and all their evidence
    (see ``notes``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    names = list(manifest.files)
    if VERSION_STATE_FILE in names:
        note = _keep_accepted_version(folder, data_dir)
        if note is not None:
            names.remove(VERSION_STATE_FILE)
            notes.append(note)
    staged: dict[str, Path] = {}
    try:
        for name in names:
            tmp = data_dir / f".{name}.restoring"
            shutil.copy2(folder / name, tmp)
            staged[name] = tmp
        if REPLAY_FILE in staged and (data_dir / REPLAY_FILE).is_file():
            added = _merge_replay(staged[REPLAY_FILE], data_dir / REPLAY_FILE)
            notes.append(
                f"{REPLAY_FILE}: the backup's request ids merged with the ones in place "
                f"({added} not in the backup): a restore forgets no request id already seen"
            )
        if WITNESS_FILE in staged and (data_dir / WITNESS_FILE).is_file():
            newer, evidence = _merge_witness(staged[WITNESS_FILE], data_dir / WITNESS_FILE)
            logs = ", ".join(newer) if newer else "none"
            notes.append(
                f"{WITNESS_FILE}: the backup's merged with the one in place (newer cosigned "
                f"checkpoints kept from it for {len(newer)} peer logs: {logs}; {evidence} pieces "
                "of evidence not in the backup added): a restore forgets no checkpoint already "
                "cosigned, so a peer's rollback or fork stays detected"
            )
        for tmp in staged.values():
            fsync_path(tmp)
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    moved: list[str] = []
    for name in (*names, *DERIVED_FILES):
        for suffix in ("", "-wal", "-shm", "-journal"):
            f = data_dir / f"{name}{suffix}"
            if f.exists():
                keep.mkdir(parents=True, exist_ok=True)
                f.rename(keep / f.name)
                moved.append(f.name)
    for name, tmp in staged.items():
        os.replace(tmp, data_dir / name)
    fsync_path(data_dir)
    return Installed(list(staged), moved, keep, notes)
