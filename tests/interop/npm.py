"""``npm ci`` once per checkout, safe when parallel test workers ask at the same time.

``npm ci`` deletes ``node_modules`` before installing: without the lock a second
worker could run ``node`` while the first one's install wipes its modules.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import tempfile
from pathlib import Path


def ensure_node_modules(node_dir: Path) -> None:
    """Install ``node_dir``'s locked dependencies unless a completed install is there."""
    done = node_dir / "node_modules" / ".package-lock.json"  # npm writes it last
    if done.is_file():
        return
    key = hashlib.sha256(str(node_dir.resolve()).encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"gateway-tests-npm-{key}.lock"
    with lock.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        if done.is_file():  # another worker installed meanwhile
            return
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=node_dir, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
