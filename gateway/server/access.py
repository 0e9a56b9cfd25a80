"""Who may call what, on each port. Deny by default.

Owns: the table from every service-port gRPC service (and the few methods that
differ) to the roles that may call it, the set of services open to federation
members on the peer port, and the registry of local service systems with their
roles and credentials. The registry re-reads the gateway's config file when it
changes (checked on every call), so a revoked, expired or rotated-out
credential is refused at the next call of a running gateway.

Does not own: who the caller is on the peer port (``gateway.server.auth``),
what a member may read of the ledger (``gateway.ledger.service`` filters
entries to the member's own exchanges).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc

from gateway import crypto
from gateway.config import Credential, ServiceRole, ServiceSystem, load_config
from gateway.errors import PermissionDenied, Unauthenticated, clip
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.server.auth import CertFingerprints
from gateway.server.interceptor import PUBLIC_PREFIXES

log = logging.getLogger("gateway.access")

_PKG: Final = "/dataexchange.gateway.v1."

# Service port: gRPC service -> roles allowed to call any of its methods.
SERVICE_ROLES: Final[Mapping[str, tuple[ServiceRole, ...]]] = {
    f"{_PKG}RecordExchange/": ("exchange",),
    f"{_PKG}Statistics/": ("statistics",),
    f"{_PKG}Ledger/": ("audit",),
    f"{_PKG}SubjectAccess/": ("subject_access",),
}
# Methods whose roles differ from their service's.
METHOD_ROLES: Final[Mapping[str, tuple[ServiceRole, ...]]] = {
    # Discovery of who holds what: any system that may ask for records or statistics.
    f"{_PKG}RecordExchange/ListDatasets": ("exchange", "statistics"),
}
# Peer port: services a federation member may call (the Ledger API there shows
# checkpoints, proofs and only the entries of exchanges the member was party to).
PEER_SERVICES: Final = (f"{_PKG}PeerExchange/", f"{_PKG}Ledger/")


def roles_for(method: str) -> tuple[ServiceRole, ...]:
    """Roles allowed to call ``method`` on the service port (() = nobody)."""
    if method in METHOD_ROLES:
        return METHOD_ROLES[method]
    for prefix, roles in SERVICE_ROLES.items():
        if method.startswith(prefix):
            return roles
    return ()


def authorize_peer(method: str, _caller: str) -> None:
    if not method.startswith((*PEER_SERVICES, *PUBLIC_PREFIXES)):
        raise PermissionDenied(f"{clip(method)} is not served to federation members")


def _utcnow_from(clock_ms: Callable[[], int]) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock_ms() / 1000, dt.UTC)


def _bearer_token(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return None


@dataclass(frozen=True)
class _State:
    systems: tuple[ServiceSystem, ...]
    credentials: tuple[tuple[str, Credential], ...]
    roles: Mapping[str, tuple[ServiceRole, ...]]

    @classmethod
    def of(cls, systems: Sequence[ServiceSystem]) -> _State:
        return cls(
            tuple(systems),
            tuple((s.id, c) for s in systems for c in s.all_credentials()),
            {s.id: s.roles for s in systems},
        )


class ServiceRegistry:
    """The registered service systems: authenticate a call, authorize a method.

    ``config_path`` (when given) is stat-ed on every call; when it changed, the
    service systems are re-read from it (a file that fails to load keeps the
    systems in force and logs why).
    """

    def __init__(
        self,
        systems: Sequence[ServiceSystem],
        config_path: Path | None = None,
        clock_ms: Callable[[], int] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._state = _State.of(systems)
        self._fingerprints = CertFingerprints(limits)
        self._path = config_path
        self._clock = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()

    # -- registry ---------------------------------------------------------

    def replace(self, systems: Sequence[ServiceSystem]) -> None:
        self._state = _State.of(systems)  # one reference swap: atomic for readers

    @property
    def systems(self) -> tuple[ServiceSystem, ...]:
        self._refresh()
        return self._state.systems

    def _file_stamp(self) -> tuple[int, int, int]:
        if self._path is None:
            return (0, 0, 0)
        try:
            st = self._path.stat()
        except OSError:
            return (-1, -1, -1)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self) -> bool:
        """Re-read the config file; keep the systems in force when it fails."""
        if self._path is None:
            return False
        try:
            fresh = load_config(self._path)
        except Exception as exc:
            log.warning("config reload refused; keeping registered service systems: %s", exc)
            return False
        self.replace(fresh.service_systems)
        log.info("service systems reloaded: %d registered", len(fresh.service_systems))
        return True

    def _refresh(self) -> None:
        if self._path is None:
            return
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                self.reload()

    # -- per call ---------------------------------------------------------

    def __call__(self, context: grpc.ServicerContext) -> str:
        """Authenticate: the service system id of a valid credential."""
        self._refresh()
        creds = self._state.credentials
        now = _utcnow_from(self._clock)
        token = _bearer_token(context)
        if token:
            return self._match(creds, "token", crypto.sha256_hex(token.encode()), now)
        fp = self._fingerprints(context)
        if fp:
            return self._match(creds, "cert", fp, now)
        raise Unauthenticated(
            "unknown caller: present a registered TLS client certificate or the metadata "
            "'authorization: Bearer <token>' issued by this gateway's bureau"
        )

    @staticmethod
    def _match(
        creds: Sequence[tuple[str, Credential]], kind: str, digest: str, now: dt.datetime
    ) -> str:
        found: tuple[str, Credential] | None = None
        revoked: tuple[str, Credential] | None = None
        owners: set[str] = set()  # systems holding a valid entry of this digest
        for sid, c in creds:  # no early exit: same work whatever matches
            if c.kind == kind and crypto.digest_equal(digest, c.sha256):
                if c.valid_at(now):
                    owners.add(sid)
                if c.revoked_at is not None and now >= c.revoked_at:
                    revoked = (sid, c)
                if found is None or c.valid_at(now):
                    found = (sid, c)
        what = "bearer token" if kind == "token" else "client certificate"
        if found is None:
            raise Unauthenticated(f"unknown caller: the {what} is not registered with this gateway")
        # A revocation is final: another entry of the same digest (a hand-edited
        # file keeping the one-line shorthand) does not revive the credential.
        sid, cred = revoked or found
        if len(owners) > 1:
            raise Unauthenticated(
                f"the {what} is registered to more than one service system "
                f"({', '.join(sorted(owners))}); ask the gateway's bureau to fix gateway.toml"
            )
        if not cred.valid_at(now):
            raise Unauthenticated(
                f"the {what} of service system {sid} is {cred.state(now)}; "
                "ask the gateway's bureau for a current credential"
            )
        return sid

    def roles_of(self, sid: str) -> tuple[ServiceRole, ...]:
        return self._state.roles.get(sid, ())

    def authorize(self, method: str, sid: str) -> None:
        """Refuse (PERMISSION_DENIED, naming the role) unless ``sid`` may call ``method``."""
        if method.startswith(PUBLIC_PREFIXES):
            return
        needed = roles_for(method)
        if not needed:
            raise PermissionDenied(f"{clip(method)} is not served to service systems")
        have = self.roles_of(sid)
        if not any(r in have for r in needed):
            raise PermissionDenied(
                f"service system {sid} lacks the role {' or '.join(needed)} needed for "
                f"{clip(method.rsplit('/', 1)[-1])}; its roles: {', '.join(have) or 'none'}"
            )
