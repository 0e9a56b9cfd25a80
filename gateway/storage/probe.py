"""What readiness checks and metrics ask of a gateway's stores, on either backend.

Owns: the ``StoreProbe`` Protocol (is every store answering; how many rows the
replay memory and the quota store hold) and ``SqliteProbe`` (read-only opens
of the SQLite files in ``data_dir``). The PostgreSQL probe, which asks the
database the replicas share, is ``gateway.storage.postgres.probe.PgProbe``.
``gateway.storage.backend.open_stores`` picks the one for ``[storage]``.

Does not own: serving checks or metrics (``gateway.ops``). Never raises: a
probe answers with a problem in words an operator can act on, or None.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

# store name -> table counted by ``rows``
COUNTED: Final = (("replay", "seen_requests"), ("quota", "quota_usage"))


class StoreProbe(Protocol):
    def problem(self) -> str | None:
        """None when every store answers; otherwise what is wrong (bounded, no secrets)."""
        ...

    def rows(self) -> dict[str, int]:
        """Rows in the replay memory and the quota store (a store unreadable now is left out)."""
        ...


class SqliteProbe:
    """The SQLite files of one gateway in ``data_dir``."""

    def __init__(self, data_dir: Path, databases: Sequence[str], counted: dict[str, str]) -> None:
        self._dir = data_dir
        self._databases = tuple(databases)
        self._files = counted  # store name -> file

    def problem(self) -> str | None:
        if not os.access(self._dir, os.W_OK):
            return f"data folder {self._dir} is not writable"
        for name in self._databases:
            path = self._dir / name
            if not path.exists():
                continue
            try:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
                try:
                    conn.execute("PRAGMA schema_version").fetchone()
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                return f"{name}: {exc}"
        return None

    def rows(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for store, table in COUNTED:
            path = self._dir / self._files[store]
            if not path.is_file():
                out[store] = 0
                continue
            try:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
                try:
                    row = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
                finally:
                    conn.close()
            except sqlite3.Error:
                continue
            out[store] = int(row[0])
        return out
