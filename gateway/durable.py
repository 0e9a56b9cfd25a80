"""Making file-system changes durable: one home for fsync of a file or a folder.

Owns: ``fsync_path`` (a file's content, or a folder's entries after a rename or
a new file in it). Used where a change must survive a crash in the order it
was made: key rotation (``gateway.identity``), restoring a backup
(``gateway.ops.backup``).
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush ``path`` (a file, or a folder: its entries) to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
