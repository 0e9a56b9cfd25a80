"""Property tests: no bad input crashes a gateway, returns INTERNAL, or leaves a broken ledger.

Random service-system requests and random (but validly signed) peer payloads are
sent over real gRPC to running gateways.
"""

from __future__ import annotations

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import domains
from gateway.envelope import sign_envelope
from gateway.errors import GatewayError
from gateway.ledger.verify import verify_store
from tests.conftest import RunningFederation

CLEAN = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
}

text = st.text(max_size=40)
codes = st.sampled_from(["110000", "120000", "130000", "310000", "", "1100000", "11000x"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    holder=codes,
    dataset=st.one_of(
        st.sampled_from(["si_contributions", "hf_accounts", "population_core"]), text
    ),
    purpose=st.one_of(st.sampled_from(["housing_fund_transfer", "commuter_planning"]), text),
    subject_ids=st.lists(
        st.one_of(text, st.from_regex(r"[0-9]{17}[0-9X]", fullmatch=True)), max_size=4
    ),
    fields=st.lists(st.one_of(st.sampled_from(["name", "phone", "person_id"]), text), max_size=4),
    ref=text,
)
def test_random_service_requests_get_clean_statuses(
    federation: RunningFederation,
    holder: str,
    dataset: str,
    purpose: str,
    subject_ids: list[str],
    fields: list[str],
    ref: str,
) -> None:
    with federation.client("130000", "hebei-housing-fund") as c:
        try:
            c.get_records(
                timeout=10, holder_jurisdiction=holder, dataset=dataset, purpose=purpose,
                subject_ids=subject_ids, fields=fields, client_reference=ref,
            )  # fmt: skip
        except grpc.RpcError as exc:
            assert exc.code() in CLEAN, (exc.code(), exc.details())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.binary(max_size=300),
    kind=st.sampled_from(["FetchRecords", "ComputeStatistic", "Witness"]),
)
def test_random_signed_peer_payloads_get_clean_errors_and_ledgers_stay_valid(
    federation: RunningFederation, payload: bytes, kind: str
) -> None:
    hb = federation.gateways["130000"]
    payload_type = {
        "FetchRecords": domains.PEER_RECORD_REQUEST,
        "ComputeStatistic": domains.PEER_STATS_REQUEST,
        "Witness": domains.PEER_WITNESS_REQUEST,
    }[kind]
    env = sign_envelope(hb.keys.signing, "130000", payload_type, payload)
    try:
        hb.transport.call(hb.bundle().member("110000"), kind, env, 10.0)
    except GatewayError as exc:
        assert exc.grpc_code in CLEAN, exc
    bj = federation.gateways["110000"]
    report = verify_store(bj.ledger.store, bj.ledger.origin, bj.keys.ledger.verify_key)
    assert report.problem is None, report.problem
