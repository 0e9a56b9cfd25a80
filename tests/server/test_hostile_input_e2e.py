"""Hostile input on both ports of a running gateway gets a clean status.

Undecodable bodies, integers out of range and 100 kB strings get
INVALID_ARGUMENT or UNAUTHENTICATED with a bounded message, never INTERNAL or
UNKNOWN; nothing echoed (status, log) exceeds its bound; repeated refusals
from one source are logged rate-limited and without tracebacks. The property
tests send random messages built from the protos' own descriptors, and random
bytes, to every method of both ports.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as _d
from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import domains
from gateway._proto.dataexchange.gateway.v1 import (
    ledger_pb2,
    peer_pb2,
    service_pb2,
    stats_pb2,
)
from gateway.cli import main
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.server.ratelog import RateLimitedLog, source_of
from tests.conftest import RunningFederation, start_federation, stop_federation
from tests.server.access_testkit import peer_channel, raw_call, token_from_output

BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# A clipped status: the bound plus the "…(N chars)" suffix.
STATUS_BOUND = DEFAULT_LIMITS.max_status_chars + 32
LOG_BOUND = 2 * DEFAULT_LIMITS.max_status_chars


def _methods(*services: _d.ServiceDescriptor) -> list[tuple[str, _d.Descriptor]]:
    return [(f"/{s.full_name}/{m.name}", m.input_type) for s in services for m in s.methods]


SERVICE_METHODS = _methods(
    service_pb2.DESCRIPTOR.services_by_name["RecordExchange"],
    stats_pb2.DESCRIPTOR.services_by_name["Statistics"],
    ledger_pb2.DESCRIPTOR.services_by_name["Ledger"],
)
PEER_METHODS = _methods(
    peer_pb2.DESCRIPTOR.services_by_name["PeerExchange"],
    ledger_pb2.DESCRIPTOR.services_by_name["Ledger"],
)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFederation]:
    rf = start_federation(tmp_path_factory.mktemp("hostile"), rows=60)
    yield rf
    stop_federation(rf)


@pytest.fixture(scope="module")
def all_roles_token(fed: RunningFederation) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert (
            main(
                [
                    "service-system",
                    "add",
                    "--config",
                    str(fed.site("110000").config),
                    "--id",
                    "bj-fuzz",
                    "--roles",
                    "exchange,statistics,audit,subject_access",
                    "--token",
                ]
            )
            == 0
        )
    return token_from_output(out.getvalue())


@pytest.fixture
def rpc_log() -> Iterator[_Lines]:
    lines = _Lines()
    logger = logging.getLogger("gateway")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(lines)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(old)


def _status(fn: Any) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _assert_clean(code: grpc.StatusCode, details: str) -> None:
    assert code not in BAD, (code, details[:200])
    assert len(details) <= STATUS_BOUND, (code, len(details))


def _assert_logs_bounded(lines: _Lines) -> None:
    for r in lines.records:
        assert len(r.getMessage()) <= LOG_BOUND, r.getMessage()[:200]
        if r.levelno < logging.ERROR:
            assert not r.exc_info, r.getMessage()


# --------------------------------------------------------------------------
# The attacks from the review
# --------------------------------------------------------------------------


def test_unauthenticated_protobuf_garbage_gets_unauthenticated_without_traceback(
    fed: RunningFederation, rpc_log: _Lines
) -> None:
    with fed.client("110000", "", token="") as c:
        code, _details = _status(
            lambda: raw_call(
                c.channel,
                "/dataexchange.gateway.v1.RecordExchange/GetRecords",
                b"\xff\xff\xff\xff\x0f",
            )
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    _assert_logs_bounded(rpc_log)
    assert not any("Exception deserializing" in r.getMessage() for r in rpc_log.records)


def test_registered_callers_protobuf_garbage_gets_invalid_argument(
    fed: RunningFederation, rpc_log: _Lines, all_roles_token: str
) -> None:
    with fed.client("110000", "", token=all_roles_token) as c:
        for method, _ in SERVICE_METHODS:
            code, details = _status(lambda m=method: raw_call(c.channel, m, b"\x0a\xff\xff"))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code, details)
            assert "not a valid protobuf message" in details
    _assert_logs_bounded(rpc_log)


def test_members_protobuf_garbage_on_the_peer_port_gets_invalid_argument(
    fed: RunningFederation, rpc_log: _Lines
) -> None:
    with peer_channel(fed, "130000", "110000") as ch:
        for method, _ in PEER_METHODS:
            code, details = _status(lambda m=method: raw_call(ch, m, b"\x12\x80"))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code, details)
    _assert_logs_bounded(rpc_log)


@pytest.mark.parametrize(
    "request_",
    [
        ledger_pb2.GetEntriesRequest(start=2**63),
        ledger_pb2.GetEntriesRequest(start=2**64 - 1, limit=2**32 - 1),
        ledger_pb2.GetInclusionProofRequest(index=2**63),
        ledger_pb2.GetInclusionProofRequest(index=0, tree_size=2**64 - 1),
        ledger_pb2.GetConsistencyProofRequest(first_size=2**63, second_size=2**64 - 1),
    ],
    ids=[
        "entries-start-2^63",
        "entries-start-2^64-1",
        "proof-index-2^63",
        "proof-size-2^64-1",
        "consistency-2^63",
    ],
)
def test_integer_overflow_in_ledger_requests_is_invalid_argument_not_internal(
    fed: RunningFederation, all_roles_token: str, request_: Any
) -> None:
    method = {
        "GetEntriesRequest": "GetEntries",
        "GetInclusionProofRequest": "GetInclusionProof",
        "GetConsistencyProofRequest": "GetConsistencyProof",
    }[type(request_).__name__]
    path = f"/dataexchange.gateway.v1.Ledger/{method}"
    body = request_.SerializeToString()
    with fed.client("110000", "", token=all_roles_token) as c:
        code, details = _status(lambda: raw_call(c.channel, path, body))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    with peer_channel(fed, "130000", "110000") as ch:
        code, details = _status(lambda: raw_call(ch, path, body))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)


def test_100kB_signer_gets_unauthenticated_with_a_bounded_message(
    fed: RunningFederation, rpc_log: _Lines
) -> None:
    env = peer_pb2.SignedEnvelope(
        payload_type=domains.PEER_RECORD_REQUEST,
        payload=b"x",
        signature=b"\0" * 64,
        signer="9" * 100_000,
    )
    with peer_channel(fed, "130000", "110000") as ch:
        code, details = _status(
            lambda: raw_call(
                ch, "/dataexchange.gateway.v1.PeerExchange/FetchRecords", env.SerializeToString()
            )
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED, (code, details[:200])
    assert len(details) <= 300, len(details)
    _assert_logs_bounded(rpc_log)


def test_100kB_request_id_and_client_reference_get_invalid_argument_with_bounded_messages(
    fed: RunningFederation, rpc_log: _Lines, all_roles_token: str
) -> None:
    big = "r" * 100_000
    with fed.client("110000", "", token=all_roles_token) as c:
        code, details = _status(
            lambda: raw_call(
                c.channel,
                "/dataexchange.gateway.v1.Ledger/GetInclusionProof",
                ledger_pb2.GetInclusionProofRequest(request_id=big).SerializeToString(),
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and len(details) <= 300, details[:200]
        request = service_pb2.GetRecordsRequest(
            holder_jurisdiction="130000",
            dataset="hf_accounts",
            purpose="x" * 100_000,
            subject_ids=["y" * 100_000],
            client_reference=big,
        )
        code, details = _status(
            lambda: raw_call(
                c.channel,
                "/dataexchange.gateway.v1.RecordExchange/GetRecords",
                request.SerializeToString(),
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and len(details) <= 300, details[:200]
    _assert_logs_bounded(rpc_log)
    assert not any(big[:1000] in r.getMessage() for r in rpc_log.records)


def test_repeated_garbage_from_one_source_is_logged_rate_limited(
    fed: RunningFederation, rpc_log: _Lines
) -> None:
    with fed.client("120000", "", token="not-a-token") as c:
        for _ in range(60):
            code, _d2 = _status(
                lambda: raw_call(
                    c.channel, "/dataexchange.gateway.v1.RecordExchange/GetRecords", b"\xff"
                )
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED
    about = [r for r in rpc_log.records if r.name == "gateway.rpc"]
    assert 1 <= len(about) <= 6, len(about)
    assert not any(r.exc_info for r in about)


def test_rate_limited_log_reports_how_many_lines_it_suppressed() -> None:
    now = [0.0]
    lines = _Lines()
    logger = logging.getLogger("tests.ratelog")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    rl = RateLimitedLog(
        logger, Limits(refusal_log_burst=2, refusal_log_window_seconds=10), clock=lambda: now[0]
    )
    written = [rl.log(logging.INFO, "ipv4:10.0.0.1", "X", "line %d", i) for i in range(5)]
    assert written == [True, True, False, False, False]
    assert rl.log(logging.INFO, "ipv4:10.0.0.2", "X", "other source")  # sources are separate
    now[0] = 11.0
    assert rl.log(logging.INFO, "ipv4:10.0.0.1", "X", "after the window")
    texts = [r.getMessage() for r in lines.records]
    assert "3 similar messages (X) from ipv4:10.0.0.1 suppressed in the last 11 s" in texts
    assert source_of("ipv4:10.0.0.1:53211") == "ipv4:10.0.0.1"
    assert source_of("ipv6:[::1]:5") == "ipv6:[::1]"


# --------------------------------------------------------------------------
# Properties over every RPC of both ports
# --------------------------------------------------------------------------

_F = _d.FieldDescriptor
_INT_RANGES = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1),
    _F.TYPE_FIXED64: (0, 2**64 - 1),
}
_strings = st.one_of(
    st.text(max_size=24),
    st.sampled_from(["110000", "130000", "si_contributions", "count", "", "\u202e", "\0"]),
    st.integers(1000, 100_000).map(lambda n: "s" * n),
)


def _scalar(f: _d.FieldDescriptor) -> st.SearchStrategy[Any]:
    if f.type in _INT_RANGES:
        lo, hi = _INT_RANGES[f.type]
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, 1]))
    if f.type == _F.TYPE_STRING:
        return _strings
    if f.type == _F.TYPE_BYTES:
        return st.one_of(st.binary(max_size=80), st.integers(1000, 50_000).map(lambda n: b"b" * n))
    if f.type == _F.TYPE_BOOL:
        return st.booleans()
    if f.type in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if f.type == _F.TYPE_ENUM:
        return st.one_of(
            st.sampled_from([v.number for v in f.enum_type.values]), st.integers(-5, 99)
        )
    raise AssertionError(f.type)


def _message(desc: _d.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    cls = message_factory.GetMessageClass(desc)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        if f.type == _F.TYPE_MESSAGE:
            if f.message_type.GetOptions().map_entry:
                kv = f.message_type.fields_by_name
                parts[f.name] = st.dictionaries(
                    _scalar(kv["key"]), _scalar(kv["value"]), max_size=3
                )
                continue
            if depth >= 2:
                continue
            inner = _message(f.message_type, depth + 1)
        else:
            inner = _scalar(f)
        repeated = f.is_repeated
        parts[f.name] = st.lists(inner, max_size=3) if repeated else inner

    def build(values: dict[str, Any]) -> Any:
        msg = cls()
        for name, value in values.items():
            f = desc.fields_by_name[name]
            target = getattr(msg, name)
            if f.type == _F.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
                target.update(value)
            elif f.is_repeated:
                if f.type == _F.TYPE_MESSAGE:
                    for v in value:
                        target.add().CopyFrom(v)
                else:
                    target.extend(value)
            elif f.type == _F.TYPE_MESSAGE:
                target.CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=parts).map(build)


def _bodies(desc: _d.Descriptor) -> st.SearchStrategy[bytes]:
    return st.one_of(
        _message(desc).map(lambda m: m.SerializeToString()),
        st.binary(max_size=200),
    )


_PROPERTY = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("method,desc", SERVICE_METHODS, ids=[m for m, _ in SERVICE_METHODS])
def test_any_request_to_any_service_port_method_gets_a_clean_bounded_status(
    fed: RunningFederation, all_roles_token: str, rpc_log: _Lines, method: str, desc: Any
) -> None:
    with fed.client("110000", "", token=all_roles_token) as c:

        @_PROPERTY
        @given(body=_bodies(desc), authenticated=st.booleans())
        def run(body: bytes, authenticated: bool) -> None:
            token = None if authenticated else "svc_forged"
            code, details = _status(
                lambda: raw_call(c.channel, method, body, token=token, timeout=20)
            )
            _assert_clean(code, details)

        run()
    _assert_logs_bounded(rpc_log)


@pytest.mark.parametrize("method,desc", PEER_METHODS, ids=[m for m, _ in PEER_METHODS])
def test_any_request_to_any_peer_port_method_gets_a_clean_bounded_status(
    fed: RunningFederation, rpc_log: _Lines, method: str, desc: Any
) -> None:
    with peer_channel(fed, "130000", "110000") as ch:

        @_PROPERTY
        @given(body=_bodies(desc))
        def run(body: bytes) -> None:
            code, details = _status(lambda: raw_call(ch, method, body, timeout=20))
            _assert_clean(code, details)

        run()
    _assert_logs_bounded(rpc_log)


_SIGNED_KINDS = {
    "FetchRecords": (domains.PEER_RECORD_REQUEST, peer_pb2.PeerRecordRequest.DESCRIPTOR),
    "ComputeStatistic": (domains.PEER_STATS_REQUEST, stats_pb2.PeerStatsRequest.DESCRIPTOR),
    "Witness": (domains.PEER_WITNESS_REQUEST, ledger_pb2.PeerWitnessRequest.DESCRIPTOR),
}


@pytest.mark.parametrize("kind", sorted(_SIGNED_KINDS))
def test_validly_signed_peer_payloads_with_any_field_values_get_clean_statuses(
    fed: RunningFederation, rpc_log: _Lines, kind: str
) -> None:
    """A member signs whatever it likes: fresh, correctly addressed headers and
    arbitrary values in every other field (integers at their extremes, 100 kB
    strings) still get clean statuses, and the holder's ledger stays valid."""
    import time

    from gateway.envelope import new_request_id, sign_envelope
    from gateway.ledger.verify import verify_store

    payload_type, desc = _SIGNED_KINDS[kind]
    hb, bj = fed.gateways["130000"], fed.gateways["110000"]
    with peer_channel(fed, "130000", "110000") as ch:

        @_PROPERTY
        @given(message=_message(desc))
        def run(message: Any) -> None:
            message.header.CopyFrom(
                peer_pb2.PeerHeader(
                    sender="130000", recipient="110000", request_id=new_request_id(),
                    timestamp_ms=time.time_ns() // 1_000_000,
                    bundle_version=bj.bundle().version,
                )
            )  # fmt: skip
            env = sign_envelope(
                hb.keys.signing, "130000", payload_type, message.SerializeToString()
            )
            path = f"/dataexchange.gateway.v1.PeerExchange/{kind}"
            code, details = _status(lambda: raw_call(ch, path, env.SerializeToString()))
            _assert_clean(code, details)

        run()
    _assert_logs_bounded(rpc_log)
    report = verify_store(bj.ledger.store, bj.ledger.origin, bj.keys.ledger.verify_key)
    assert report.problem is None, report.problem
