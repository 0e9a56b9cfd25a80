"""The one error-to-status table, read in both directions."""

from __future__ import annotations

import inspect
import pickle

import grpc
import pytest

from gateway import errors
from gateway.errors import (
    STATUS_TABLE,
    WIRE_NAMES,
    BudgetExhausted,
    ConfigurationError,
    CryptoFailure,
    EnvironmentFailure,
    GatewayError,
    InvalidArgument,
    NotFound,
    PeerPreconditionFailed,
    PeerTimeout,
    PeerUnavailable,
    PolicyDenied,
    PolicyFileError,
    QuotaExceeded,
    TrustBundleRejected,
    Unauthenticated,
    class_for_status,
    error_for_status,
    status_of,
    wire_name,
)
from gateway.exchange.records import refusal_class

ERROR_CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, GatewayError) and cls.__module__ == errors.__name__
]


def test_every_error_class_has_exactly_one_row_in_the_table() -> None:
    rows = [cls for _, classes in STATUS_TABLE for cls in classes]
    assert sorted(c.__name__ for c in rows) == sorted(c.__name__ for c in ERROR_CLASSES)


@pytest.mark.parametrize("cls", sorted(WIRE_NAMES.values(), key=lambda c: c.__name__))
def test_a_named_refusal_from_a_peer_keeps_its_class(cls: type[GatewayError]) -> None:
    assert class_for_status(status_of(cls), cls.__name__) is cls
    assert wire_name(cls("x") if cls is not CryptoFailure else CryptoFailure()) == cls.__name__


def test_a_peer_name_that_disagrees_with_its_status_is_not_honoured() -> None:
    # A peer cannot turn a refusal into a different kind (e.g. an "unavailable"
    # the requester would retry, or a "not found" for an authentication failure).
    assert class_for_status(grpc.StatusCode.UNAUTHENTICATED, "NotFound") is Unauthenticated
    assert class_for_status(grpc.StatusCode.PERMISSION_DENIED, "PeerUnavailable") is PolicyDenied
    assert class_for_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "BudgetExhausted") is (
        BudgetExhausted
    )


@pytest.mark.parametrize(
    "name", ["GatewayError", "Rejected", "EnvironmentFailure", "os.system", ""]
)
def test_base_classes_and_unknown_names_select_the_status_own_class(name: str) -> None:
    assert class_for_status(grpc.StatusCode.INTERNAL, name) is EnvironmentFailure
    assert class_for_status(grpc.StatusCode.INVALID_ARGUMENT, name) is InvalidArgument


def test_a_status_in_no_row_is_an_environment_failure() -> None:
    for code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.ABORTED):
        assert type(error_for_status(code, "m")) is EnvironmentFailure


def test_bare_statuses_map_to_the_first_class_of_their_row() -> None:
    assert type(error_for_status(grpc.StatusCode.UNAVAILABLE, "m")) is PeerUnavailable
    assert type(error_for_status(grpc.StatusCode.DEADLINE_EXCEEDED, "m")) is PeerTimeout
    assert type(error_for_status(grpc.StatusCode.NOT_FOUND, "m")) is NotFound


@pytest.mark.parametrize("name", ["", "ConfigurationError", "PolicyFileError"])
def test_a_peer_precondition_failure_is_never_taken_for_our_own_bundle_or_configuration(
    name: str,
) -> None:
    # Failure: a holder's FAILED_PRECONDITION (its data over max_rows: its own
    # ConfigurationError, sent unnamed) became TrustBundleRejected here, and went
    # on to our service system under that name. A peer's configuration error is
    # its own, never ours: it arrives as (and crosses on as) PeerPreconditionFailed.
    err = error_for_status(grpc.StatusCode.FAILED_PRECONDITION, "holder refused", name)
    assert type(err) is PeerPreconditionFailed and err.message == "holder refused"
    assert wire_name(err) == "PeerPreconditionFailed"
    assert wire_name(ConfigurationError("ours")) == wire_name(PolicyFileError("ours")) == ""
    # A bundle refusal the peer names still keeps its kind.
    assert class_for_status(grpc.StatusCode.FAILED_PRECONDITION, "TrustBundleRejected") is (
        TrustBundleRejected
    )


def test_crypto_failure_from_a_peer_stays_opaque() -> None:
    err = error_for_status(grpc.StatusCode.UNAUTHENTICATED, "peer said: bad tag", "CryptoFailure")
    assert type(err) is CryptoFailure and str(err) == "message authentication failed"
    with pytest.raises(TypeError):
        CryptoFailure("signature byte 3 differs")  # type: ignore[call-arg]


def test_crypto_failure_survives_a_process_boundary_still_opaque() -> None:
    err = pickle.loads(pickle.dumps(CryptoFailure()))
    assert type(err) is CryptoFailure and str(err) == "message authentication failed"
    assert str(pickle.loads(pickle.dumps(NotFound("no entry")))) == "no entry"


def test_instance_status_reads_the_table() -> None:
    assert NotFound("x").grpc_code == grpc.StatusCode.NOT_FOUND
    assert status_of(QuotaExceeded) == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("PERMISSION_DENIED", PolicyDenied),
        ("NOT_FOUND", NotFound),
        ("RESOURCE_EXHAUSTED", QuotaExceeded),
        ("INVALID_ARGUMENT", InvalidArgument),
        ("UNAVAILABLE", PolicyDenied),  # a signed refusal never claims our environment failed
        ("UNAUTHENTICATED", PolicyDenied),
        ("NOT_A_STATUS", PolicyDenied),
        ("", PolicyDenied),
    ],
)
def test_holder_signed_refusal_codes_select_only_refusal_classes(
    code: str, cls: type[GatewayError]
) -> None:
    assert refusal_class(code) is cls
