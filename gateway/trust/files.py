"""Reading trust files: the I/O edge in front of the pure verifier.

Owns: reading a bundle file and the authority's public key with size limits,
and handing the bytes to ``gateway.trust.verify``. A gateway passes the
authority key from its own configuration; ``load_bundle`` reading
``authority.pub`` from the bundle's folder is a convenience for offline tools.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Final

from gateway import crypto
from gateway.crypto import AnyVerifyKey
from gateway.errors import InvalidArgument, StorageFailure, TrustBundleRejected
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.trust.model import TrustBundle
from gateway.trust.verify import verify_bundle

BUNDLE_FILE: Final = "bundle.json"
AUTHORITY_PUB_FILE: Final = "authority.pub"


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of ``path``; a larger file is refused without reading it all."""
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError as exc:
        raise StorageFailure(f"{path}: {what} not found") from exc
    except OSError as exc:
        raise StorageFailure(f"{path}: cannot read {what}: {exc.strerror}") from exc
    if len(data) > limit:
        raise TrustBundleRejected(f"{path}: {what} too large: more than {limit} bytes")
    return data


def read_key_line(
    path: Path, what: str, limits: Limits = DEFAULT_LIMITS
) -> tuple[crypto.Suite, str]:
    """A key file's one line (base64 for intl, ``sm2:`` + base64 for gm) and its suite."""
    data = read_limited(path, limits.max_key_file_bytes, what)
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path}: {what}: expected one line of base64") from exc
    return crypto.suite(crypto.suite_of_text(text)), text


def read_authority_key(path: Path, limits: Limits = DEFAULT_LIMITS) -> AnyVerifyKey:
    """Read the federation authority's public key (``authority.pub``: one line)."""
    path = Path(path)
    suite, text = read_key_line(path, "authority public key", limits)
    return suite.decode_verify_key(text, f"{path}: authority public key")


def load_bundle(
    path: Path,
    authority_key: AnyVerifyKey | None = None,
    now: _dt.datetime | None = None,
    min_version: int = 0,
    limits: Limits = DEFAULT_LIMITS,
) -> TrustBundle:
    """Read and verify a bundle file.

    ``authority_key`` None reads ``authority.pub`` from the bundle's folder: a
    convenience for offline tools only. A gateway must pass the authority key
    from its own configuration, never from next to the bundle it verifies.
    """
    path = Path(path)
    # The bundle first: a wrong bundle path is named as such, not as a missing
    # authority.pub next to it.
    data = read_limited(path, limits.max_bundle_bytes, "trust bundle")
    if authority_key is None:
        authority_key = read_authority_key(path.parent / AUTHORITY_PUB_FILE, limits)
    return verify_bundle(data, authority_key, now or _dt.datetime.now(_dt.UTC), min_version, limits)
