"""Where commands write their output files (reports, evidence, checkpoint notes, extracts).

Owns: refusing an output path that would destroy what the command reads or what an
officer keeps as evidence: one of the command's own input files, or any SQLite
database (a ledger, a witness or other store). Any other existing file is replaced,
as the command's help says. Does not own: writing the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from gateway.errors import InvalidArgument

SQLITE_MAGIC = b"SQLite format 3\x00"


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` starts with SQLite's header (a ledger or store)."""
    with path.open("rb") as f:
        return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def check_output(out: Path, option: str, inputs: Iterable[Path | None] = ()) -> None:
    """Refuse ``out`` when it is a folder, one of ``inputs``, or a SQLite database."""
    if out.is_dir():
        raise InvalidArgument(f"{option} {out} is a folder: give a file name")
    if not out.exists():
        return
    for path in inputs:
        if path is not None and path.exists() and out.samefile(path):
            raise InvalidArgument(
                f"{option} {out} is also an input of this command: it was not overwritten; "
                "write the output to another file"
            )
    if out.is_file() and is_sqlite(out):
        raise InvalidArgument(
            f"{option} {out} is a SQLite database (a ledger or store?): it was not "
            "overwritten; write the output to another file"
        )
