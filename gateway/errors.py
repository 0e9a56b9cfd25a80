"""The gateway's one error tree.

Owns: every exception the gateway raises on purpose, and the gRPC status code
each maps to (``GatewayError.grpc_code``; the single interceptor in
``gateway.server.interceptor`` reads it). Does not own: logging, or the text of
protobuf error details.

Shape:

    GatewayError
    ├── Rejected                 untrusted input refused (caller's fault)
    │   ├── InvalidArgument      malformed request: says expected vs actual
    │   ├── Unauthenticated      unknown caller or peer, bad credential
    │   ├── CryptoFailure        opaque: bad signature / undecryptable / wrong key
    │   ├── ReplayRejected       request id seen before, or timestamp outside window
    │   ├── PolicyDenied         sharing agreement refuses (carries the reason)
    │   ├── NotFound             unknown dataset, jurisdiction, entry
    │   ├── BudgetExhausted      privacy budget would be overspent
    │   ├── QuotaExceeded        per-requester quota would be exceeded
    │   ├── TrustBundleRejected  unsigned, expired, older-version or malformed bundle
    │   ├── PolicyFileError      an agreement/catalogue file fails validation
    │   └── VerificationFailed   ledger/proof/checkpoint fails verification
    └── EnvironmentFailure       our environment failed (not the caller's fault)
        ├── StorageFailure       SQLite etc.
        ├── PeerUnavailable      a peer gateway cannot be reached
        └── PeerTimeout          a peer did not answer in time

Crypto failures are deliberately opaque (like Fernet's single ``InvalidToken``):
the message never says *which* check failed. Structural failures say what was
expected and what was found.
"""

from __future__ import annotations

from grpc import StatusCode


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    grpc_code: StatusCode = StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------
# Rejected: untrusted input refused.
# --------------------------------------------------------------------------


class Rejected(GatewayError):
    """Untrusted input was refused. The caller can fix it."""

    grpc_code = StatusCode.INVALID_ARGUMENT


class InvalidArgument(Rejected):
    """A request is malformed. Say what was expected and what was found."""

    grpc_code = StatusCode.INVALID_ARGUMENT

    @classmethod
    def expected(cls, what: str, expected: object, actual: object) -> InvalidArgument:
        return cls(f"{what}: expected {expected}, got {actual!r}")


class SuiteMismatch(InvalidArgument):
    """A key, bundle or message belongs to the other cipher suite (gm vs intl)."""


class Unauthenticated(Rejected):
    """The caller or peer is not who it must be (unknown, bad credential)."""

    grpc_code = StatusCode.UNAUTHENTICATED


class CryptoFailure(Rejected):
    """A signature, MAC or ciphertext did not verify. Deliberately opaque."""

    grpc_code = StatusCode.UNAUTHENTICATED

    def __init__(self, message: str = "message authentication failed") -> None:
        super().__init__(message)


class ReplayRejected(Rejected):
    """The request id was seen before, or the timestamp is outside the window."""

    grpc_code = StatusCode.UNAUTHENTICATED


class PolicyDenied(Rejected):
    """A sharing agreement (or its absence) refuses the request."""

    grpc_code = StatusCode.PERMISSION_DENIED


class NotFound(Rejected):
    """Unknown dataset, jurisdiction, ledger entry, etc."""

    grpc_code = StatusCode.NOT_FOUND


class BudgetExhausted(Rejected):
    """A statistics query would overspend a privacy budget."""

    grpc_code = StatusCode.RESOURCE_EXHAUSTED


class QuotaExceeded(Rejected):
    """A record request would exceed the requester's quota."""

    grpc_code = StatusCode.RESOURCE_EXHAUSTED


class TrustBundleRejected(Rejected):
    """A federation trust bundle is unsigned, expired, older or malformed."""

    grpc_code = StatusCode.FAILED_PRECONDITION


class PolicyFileError(Rejected):
    """A policy, catalogue or agreement file fails validation."""

    grpc_code = StatusCode.FAILED_PRECONDITION


class VerificationFailed(Rejected):
    """A ledger, proof, checkpoint or evidence bundle does not verify."""

    grpc_code = StatusCode.DATA_LOSS


# --------------------------------------------------------------------------
# EnvironmentFailure: our side failed.
# --------------------------------------------------------------------------


class EnvironmentFailure(GatewayError):
    """Something in the gateway's environment failed; not the caller's fault."""

    grpc_code = StatusCode.INTERNAL


class StorageFailure(EnvironmentFailure):
    """Persistent storage (SQLite, files) failed."""

    grpc_code = StatusCode.UNAVAILABLE


class PeerUnavailable(EnvironmentFailure):
    """A peer gateway could not be reached."""

    grpc_code = StatusCode.UNAVAILABLE


class PeerTimeout(EnvironmentFailure):
    """A peer gateway did not answer within the deadline."""

    grpc_code = StatusCode.DEADLINE_EXCEEDED


# Error classes that may cross the wire by name (trailing metadata
# ``gateway-error``), so a peer's refusal keeps its kind. Only refusals and
# environment failures: a name never selects arbitrary code.
WIRE_NAMES: dict[str, type[GatewayError]] = {
    cls.__name__: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        CryptoFailure,
        ReplayRejected,
        PolicyDenied,
        NotFound,
        BudgetExhausted,
        QuotaExceeded,
        TrustBundleRejected,
        PolicyFileError,
        VerificationFailed,
        StorageFailure,
        PeerUnavailable,
        PeerTimeout,
    )
}
WIRE_METADATA_KEY = "gateway-error"
