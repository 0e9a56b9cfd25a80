"""The persisted trust state: the highest bundle version (and its digest) accepted.

Owns: the ``BundleVersionStore`` protocol, its file implementation
(``FileVersionStore``) and ``accept_bundle``, which makes a gateway refuse an
older bundle, or a different bundle under the version already accepted, even
after a restart (rollback and fork protection, as TUF's persisted trusted root).

A PostgreSQL (or any other) store is a new class with the three methods of
``BundleVersionStore``; ``accept_bundle`` and its callers stay unchanged.

Does not own: verifying bundle bytes (``gateway.trust.verify``), which takes
the highest accepted version as an argument and keeps no state itself.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Final, Protocol

from gateway.crypto import digest_equal
from gateway.errors import StorageFailure, TrustBundleRejected
from gateway.identity import write_file_atomic
from gateway.trust.model import TrustBundle, is_sha256_hex
from gateway.trust.verify import canonical_json

VERSION_STATE_FILE: Final = "trust_bundle_state.json"


class BundleVersionStore(Protocol):
    """Where the highest accepted bundle version survives restarts."""

    def highest(self) -> int:
        """The highest version accepted so far (0: none yet)."""
        ...

    def highest_digest(self) -> str | None:
        """Payload digest of the bundle accepted under ``highest()``, if known."""
        ...

    def record(self, version: int, digest: str | None = None) -> None:
        """Durably record ``version`` (refusing one lower than ``highest()``);
        ``digest`` None keeps the digest already known for that version."""
        ...


class FileVersionStore:
    """Highest accepted bundle version (and its digest) in a small JSON state
    file, written atomically. A missing file means nothing accepted yet; a
    corrupt one is an error (never silently reset to 0)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def in_dir(cls, data_dir: Path) -> FileVersionStore:
        return cls(Path(data_dir) / VERSION_STATE_FILE)

    def _load(self) -> tuple[int, str | None]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0, None
        except OSError as exc:
            raise StorageFailure(f"{self.path}: cannot read: {exc.strerror}") from exc
        try:
            doc = json.loads(raw.decode("utf-8"))
            version = doc["highest_version"]
            digest = doc.get("digest")
            if isinstance(version, bool) or not isinstance(version, int) or version < 0:
                raise ValueError("highest_version")
            if digest is not None and not is_sha256_hex(digest):
                raise ValueError("digest")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageFailure(
                f"{self.path}: trust bundle state file is corrupt; refusing to reset it"
            ) from exc
        return version, digest

    def highest(self) -> int:
        return self._load()[0]

    def highest_digest(self) -> str | None:
        return self._load()[1]

    def record(self, version: int, digest: str | None = None) -> None:
        with self._lock:
            current, current_digest = self._load()
            if version < current:
                raise TrustBundleRejected(
                    f"trust bundle version {version} is older than version {current} "
                    "already accepted"
                )
            if version == current and digest is None:
                digest = current_digest
            doc = {"highest_version": version, "digest": digest}
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_file_atomic(self.path, canonical_json(doc) + b"\n", 0o600)
            except OSError as exc:
                raise StorageFailure(f"{self.path}: cannot write: {exc.strerror}") from exc


def accept_bundle(bundle: TrustBundle, store: BundleVersionStore) -> None:
    """Record ``bundle`` as accepted; refuse an older version, and a different
    bundle under the version already accepted."""
    highest = store.highest()
    if bundle.version < highest:
        raise TrustBundleRejected(
            f"trust bundle version {bundle.version} is older than version {highest} "
            "already accepted"
        )
    known = store.highest_digest()
    if bundle.version == highest and known is not None and not digest_equal(known, bundle.digest):
        raise TrustBundleRejected(
            f"trust bundle version {bundle.version} differs from the version "
            f"{highest} already accepted (digest {bundle.digest[:16]} != {known[:16]})"
        )
    store.record(bundle.version, bundle.digest)
