"""The gateway's one error tree and its one table to gRPC status codes.

Owns: every exception the gateway raises on purpose; ``STATUS_TABLE``, the one
table between error classes and gRPC status codes, read in both directions:
``status_of`` (an error -> the status the interceptor in
``gateway.server.interceptor`` answers with) and ``error_for_status`` (a
status received from another gateway, plus its trailing ``gateway-error``
name, -> the error to raise here). Does not own: logging, or the text of
protobuf error details.

Shape (status in brackets):

    GatewayError                 [INTERNAL]
    ├── Rejected                 untrusted input refused (caller's fault) [INVALID_ARGUMENT]
    │   ├── InvalidArgument      malformed request: says expected vs actual [INVALID_ARGUMENT]
    │   ├── Unauthenticated      unknown caller or peer, bad credential [UNAUTHENTICATED]
    │   ├── CryptoFailure        opaque: bad signature / undecryptable / wrong key [UNAUTHENTICATED]
    │   ├── ReplayRejected       request id seen before, or timestamp outside window [UNAUTHENTICATED]
    │   ├── PolicyDenied         sharing agreement refuses (carries the reason) [PERMISSION_DENIED]
    │   ├── PermissionDenied     the caller lacks the role a method needs (names it) [PERMISSION_DENIED]
    │   ├── NotFound             unknown dataset, jurisdiction, entry [NOT_FOUND]
    │   ├── BudgetExhausted      privacy budget would be overspent [RESOURCE_EXHAUSTED]
    │   ├── QuotaExceeded        per-requester quota would be exceeded [RESOURCE_EXHAUSTED]
    │   ├── TrustBundleRejected  unsigned, expired, older-version or malformed bundle [FAILED_PRECONDITION]
    │   └── VerificationFailed   ledger/proof/checkpoint/answer fails verification [DATA_LOSS]
    └── EnvironmentFailure       our environment failed (not the caller's fault) [INTERNAL]
        ├── ConfigurationError   our own files disagree (keys, bundle, policies) [FAILED_PRECONDITION]
        │   └── PolicyFileError  a policy, catalogue, agreement or config file fails validation
        ├── StorageFailure       SQLite etc. [UNAVAILABLE]
        │   └── CommitUnknown    a COMMIT sent, its outcome never confirmed: maybe stored
        ├── PeerUnavailable      a peer gateway cannot be reached [UNAVAILABLE]
        ├── PeerTimeout          a peer did not answer in time [DEADLINE_EXCEEDED]
        └── PeerPreconditionFailed  a peer's own state refuses (its configuration,
                                 its data over max_rows) [FAILED_PRECONDITION]

Crypto failures are deliberately opaque (like Fernet's single ``InvalidToken``):
``CryptoFailure`` takes no message, so none can say *which* check failed.
Structural failures say what was expected and what was found.
"""

from __future__ import annotations

from grpc import StatusCode


def clip(text: str, limit: int | None = None) -> str:
    """``text`` cut to ``limit`` characters (default ``Limits.max_echo_chars``),
    saying how long it was: attacker-supplied text is echoed (in a status, a
    log line, a ledger reason) only cut short."""
    if limit is None:
        from gateway.limits import DEFAULT_LIMITS  # limits imports this module

        limit = DEFAULT_LIMITS.max_echo_chars
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…({len(text)} chars)"


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def grpc_code(self) -> StatusCode:
        """This error's gRPC status (read from ``STATUS_TABLE``)."""
        return status_of(self)

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------
# Rejected: untrusted input refused.
# --------------------------------------------------------------------------


class Rejected(GatewayError):
    """Untrusted input was refused. The caller can fix it."""


class InvalidArgument(Rejected):
    """A request is malformed. Say what was expected and what was found."""

    @classmethod
    def expected(cls, what: str, expected: object, actual: object) -> InvalidArgument:
        return cls(f"{what}: expected {expected}, got {clip(repr(actual))}")


class SuiteMismatch(InvalidArgument):
    """A key, bundle or message belongs to the other cipher suite (gm vs intl)."""


class Unauthenticated(Rejected):
    """The caller or peer is not who it must be (unknown, bad credential)."""


class CryptoFailure(Rejected):
    """A signature, MAC or ciphertext did not verify. Deliberately opaque: no message."""

    def __init__(self) -> None:
        super().__init__("message authentication failed")

    def __reduce__(self) -> tuple[type[CryptoFailure], tuple[()]]:
        return (CryptoFailure, ())  # crosses process pools (ledger verification) intact


class ReplayRejected(Rejected):
    """The request id was seen before, or the timestamp is outside the window."""


class PolicyDenied(Rejected):
    """A sharing agreement (or its absence) refuses the request."""


class PermissionDenied(Rejected):
    """The caller is authenticated but lacks the role (or membership) a method needs."""


class NotFound(Rejected):
    """Unknown dataset, jurisdiction, ledger entry, etc."""


class BudgetExhausted(Rejected):
    """A statistics query would overspend a privacy budget."""


class QuotaExceeded(Rejected):
    """A record request would exceed the requester's quota."""


class TrustBundleRejected(Rejected):
    """A federation trust bundle is unsigned, expired, older or malformed."""


class VerificationFailed(Rejected):
    """A ledger, proof, checkpoint, evidence bundle or peer's signed answer does not verify."""


# --------------------------------------------------------------------------
# EnvironmentFailure: our side failed.
# --------------------------------------------------------------------------


class EnvironmentFailure(GatewayError):
    """Something in the gateway's environment failed; not the caller's fault."""


class ConfigurationError(EnvironmentFailure):
    """This gateway's own files disagree: keys, trust bundle, policies, config.

    The operator's fault, not a caller's: e.g. keys made for another
    jurisdiction, a trust bundle that pins another key for this gateway.
    """


class PolicyFileError(ConfigurationError):
    """A policy, catalogue, agreement or gateway config file fails validation."""


class StorageFailure(EnvironmentFailure):
    """Persistent storage (SQLite, files) failed."""


class CommitUnknown(StorageFailure):
    """A transaction's COMMIT was sent but its outcome never came back (the
    database connection was lost): what it wrote may or may not be stored.
    Unlike any other ``StorageFailure`` (nothing was stored), a caller must not
    undo what depends on the write (e.g. give back a quota charge). Never sent
    to a peer under this name: the uncertainty is about our own storage."""


class PeerUnavailable(EnvironmentFailure):
    """A peer gateway could not be reached."""


class PeerTimeout(EnvironmentFailure):
    """A peer gateway did not answer within the deadline."""


class PeerPreconditionFailed(EnvironmentFailure):
    """A peer gateway answered FAILED_PRECONDITION for a reason on its side: its
    own configuration or policy files (e.g. its data exceed its statistics
    agreement's ``max_rows``), or a status it did not name. What a peer's
    ``ConfigurationError`` becomes here, so it is never taken for our own."""


# --------------------------------------------------------------------------
# The one table: error class <-> gRPC status.
# --------------------------------------------------------------------------

STATUS_TABLE: tuple[tuple[StatusCode, tuple[type[GatewayError], ...]], ...] = (
    (StatusCode.INVALID_ARGUMENT, (InvalidArgument, Rejected, SuiteMismatch)),
    (StatusCode.UNAUTHENTICATED, (Unauthenticated, CryptoFailure, ReplayRejected)),
    (StatusCode.PERMISSION_DENIED, (PolicyDenied, PermissionDenied)),
    (StatusCode.NOT_FOUND, (NotFound,)),
    (StatusCode.RESOURCE_EXHAUSTED, (QuotaExceeded, BudgetExhausted)),
    (
        StatusCode.FAILED_PRECONDITION,
        (PeerPreconditionFailed, TrustBundleRejected, ConfigurationError, PolicyFileError),
    ),
    (StatusCode.DATA_LOSS, (VerificationFailed,)),
    (StatusCode.UNAVAILABLE, (PeerUnavailable, StorageFailure, CommitUnknown)),
    (StatusCode.DEADLINE_EXCEEDED, (PeerTimeout,)),
    (StatusCode.INTERNAL, (EnvironmentFailure, GatewayError)),
)
"""Each row: a status and the error classes answered with it. The first class of
a row is what that status becomes when it arrives from a peer without a name;
a status in no row becomes ``EnvironmentFailure``."""

_STATUS: dict[type[GatewayError], StatusCode] = {
    cls: code for code, classes in STATUS_TABLE for cls in classes
}
_FROM_STATUS: dict[StatusCode, type[GatewayError]] = {
    code: classes[0] for code, classes in STATUS_TABLE
}

# Error classes that may cross the wire by name (trailing metadata
# ``gateway-error``), so a peer's refusal keeps its kind. Never the tree's
# three bases, and only when the name agrees with the status: a name never
# selects arbitrary code (``StorageFailure`` still crosses: its one subclass is
# kept at home). Never a ``ConfigurationError`` (or its
# ``PolicyFileError``): a gateway's own files are no other gateway's; a peer's
# arrives as ``PeerPreconditionFailed``, and crosses on under that name. Nor a
# ``CommitUnknown``: a peer's uncertain commit is no commit of ours.
WIRE_NAMES: dict[str, type[GatewayError]] = {
    cls.__name__: cls
    for cls in _STATUS
    if cls not in (GatewayError, Rejected, EnvironmentFailure, CommitUnknown)
    and not issubclass(cls, ConfigurationError)
}
WIRE_METADATA_KEY = "gateway-error"


def status_of(error: GatewayError | type[GatewayError]) -> StatusCode:
    """The gRPC status an error (or error class) is answered with."""
    cls = error if isinstance(error, type) else type(error)
    for klass in cls.__mro__:
        code = _STATUS.get(klass)
        if code is not None:
            return code
    raise AssertionError(f"{cls.__name__} is not a GatewayError")  # pragma: no cover


def status_name(error: GatewayError | type[GatewayError]) -> str:
    """``status_of(error)`` as the string carried in signed answers (``error_code``)."""
    return str(status_of(error).name)


def wire_name(error: GatewayError) -> str:
    """The name sent in trailing ``gateway-error`` metadata ("" for none)."""
    name = type(error).__name__
    return name if WIRE_NAMES.get(name) is type(error) else ""


def class_for_status(code: StatusCode, name: str = "") -> type[GatewayError]:
    """The error class for a status from a peer (reverse of ``status_of``).

    ``name`` (a peer's ``gateway-error`` metadata) is honoured only when it is
    in ``WIRE_NAMES`` and its class answers with ``code``; otherwise the first
    class of the status's row, or ``EnvironmentFailure`` for any other status.
    """
    cls = WIRE_NAMES.get(name)
    if cls is not None and status_of(cls) == code:
        return cls
    return _FROM_STATUS.get(code, EnvironmentFailure)


def class_for_status_name(code_name: str, name: str = "") -> type[GatewayError]:
    """``class_for_status`` for a status given by name (``error_code`` strings)."""
    code = StatusCode.__members__.get(code_name)
    return class_for_status(code, name) if code is not None else EnvironmentFailure


def error_for_status(code: StatusCode, message: str, name: str = "") -> GatewayError:
    """The GatewayError to raise for a status received from another gateway."""
    cls = class_for_status(code, name)
    return CryptoFailure() if cls is CryptoFailure else cls(message)
