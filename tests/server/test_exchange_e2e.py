"""Record exchange end to end: three real gateways, real gRPC over TLS on loopback.

Each test names the attack or failure it covers. Attacks speak the peer
protocol directly with a member's own credentials (a malicious or compromised
member), since outsiders cannot even complete the mutual-TLS handshake.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from gateway import crypto, domains
from gateway._proto.dataexchange.gateway.v1 import peer_pb2
from gateway.errors import (
    CryptoFailure,
    InvalidArgument,
    PeerUnavailable,
    ReplayRejected,
    Unauthenticated,
)
from gateway.exchange.peer import PeerCaller
from gateway.server.transport import GrpcPeerTransport
from tests.conftest import RunningFederation, engine_federation
from tests.dbs import SUITE_ENGINES
from tests.helpers import ledger_events


@pytest.fixture(scope="module", params=SUITE_ENGINES, ids=lambda p: "-".join(p))
def federation(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningFederation]:
    """The same exchange tests for each cipher suite (registers in SQLite) and with
    the holders' registers in PostgreSQL and MariaDB."""
    suite, engine = request.param
    root = tmp_path_factory.mktemp(f"{suite}-{engine}")
    with engine_federation(engine, root, suite=suite) as rf:
        yield rf


def _request(fed: RunningFederation, **over: object) -> dict[str, object]:
    req: dict[str, object] = dict(
        holder_jurisdiction="110000",
        dataset="si_contributions",
        purpose="housing_fund_transfer",
        subject_ids=[fed.commuter()],
    )
    req.update(over)
    return req


def test_allowed_exchange_releases_only_transformed_allowed_fields_and_ledgers_both_sides(
    federation: RunningFederation,
) -> None:
    bj_before = len(ledger_events(federation.gateways["110000"]))
    hb_before = len(ledger_events(federation.gateways["130000"]))
    with federation.client("130000", "hebei-housing-fund") as c:
        resp = c.get_records(**_request(federation))
    assert len(resp.records) == 1
    rec = dict(resp.records[0].fields)
    allowed = {f.name for f in resp.decision.fields}
    assert set(rec) <= allowed
    assert "phone" not in rec
    assert "*" in rec["person_id"] and len(rec["person_id"]) == 18  # masked ID number
    assert len(rec["birth_date"]) == 4  # generalised to year
    assert resp.decision.allowed and resp.decision.agreement_id
    assert len(resp.decision.agreement_digest) == 64

    holder = ledger_events(federation.gateways["110000"])[bj_before:]
    requester = ledger_events(federation.gateways["130000"])[hb_before:]
    assert [e.kind for e in holder] == ["transfer"] and [e.kind for e in requester] == ["transfer"]
    h, r = holder[0], requester[0]
    assert h.request_id == r.request_id == resp.request_id
    assert (h.role, r.role) == ("holder", "requester")
    # Both sides hold both signatures and the same payload digest and decision.
    assert h.requester_signature == r.requester_signature != ""
    assert h.holder_signature == r.holder_signature != ""
    assert h.payload_digest == r.payload_digest != ""
    assert h.agreement_digest == r.agreement_digest == resp.decision.agreement_digest
    assert h.policy_set_digest == resp.decision.policy_set_digest
    # No personal data in ledger entries.
    subject = federation.commuter()
    for e in (h, r):
        assert subject not in repr(e)
        assert rec["employer"] not in repr(e)
    assert resp.receipt.jurisdiction == "130000"


def test_policy_denial_returns_permission_denied_with_reason_and_is_ledgered_on_both_sides(
    federation: RunningFederation,
) -> None:
    before_h = len(ledger_events(federation.gateways["110000"]))
    before_r = len(ledger_events(federation.gateways["130000"]))
    with federation.client("130000", "hebei-housing-fund") as c:
        with pytest.raises(grpc.RpcError) as err:
            c.get_records(**_request(federation, purpose="marketing"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "marketing" in (err.value.details() or "")
    h = ledger_events(federation.gateways["110000"])[before_h:]
    r = ledger_events(federation.gateways["130000"])[before_r:]
    assert [(e.kind, e.decision) for e in h] == [("refusal", "deny")]
    assert [(e.kind, e.decision) for e in r] == [("refusal", "deny")]
    assert h[0].holder_signature == r[0].holder_signature != ""  # refusals are signed too


def test_field_outside_agreement_is_refused_not_silently_dropped(
    federation: RunningFederation,
) -> None:
    with federation.client("130000", "hebei-housing-fund") as c:
        with pytest.raises(grpc.RpcError) as err:
            c.get_records(**_request(federation, fields=["name", "phone"]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "phone" in (err.value.details() or "")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"holder_jurisdiction": "11000"}, "holder_jurisdiction"),
        ({"dataset": "Robert'); DROP TABLE"}, "dataset"),
        ({"purpose": ""}, "purpose"),
        ({"subject_ids": ["not an id!"]}, "subject_ids"),
        ({"fields": ["name", "name"]}, "fields"),
        ({"client_reference": "x" * 65}, "client_reference"),
    ],
)
def test_malformed_request_gets_invalid_argument_naming_the_field(
    federation: RunningFederation, override: dict[str, object], fragment: str
) -> None:
    with federation.client("130000", "hebei-housing-fund") as c:
        with pytest.raises(grpc.RpcError) as err:
            c.get_records(**_request(federation, **override))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (err.value.details() or "")


def test_unknown_jurisdiction_and_dataset_get_not_found(federation: RunningFederation) -> None:
    with federation.client("130000", "hebei-housing-fund") as c:
        for override in ({"holder_jurisdiction": "310000"}, {"dataset": "no_such_dataset"}):
            with pytest.raises(grpc.RpcError) as err:
                c.get_records(**_request(federation, **override))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("token", ["svc_wrong", ""])
def test_unknown_caller_gets_unauthenticated(federation: RunningFederation, token: str) -> None:
    with federation.client("130000", "hebei-housing-fund", token=token or None) as c:
        if not token:
            c.channel.close()
            from gateway.client import ServiceClient

            site = federation.site("130000")
            c = ServiceClient(site.service_address, site.tls_cert, "130000", None)
        with pytest.raises(grpc.RpcError) as err:
            c.get_records(**_request(federation))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_service_is_served_without_credentials(federation: RunningFederation) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from gateway.client import service_channel

    site = federation.site("120000")
    ch = service_channel(site.service_address, site.tls_cert.read_bytes(), "120000", None)
    resp = health_pb2_grpc.HealthStub(ch).Check(
        health_pb2.HealthCheckRequest(service="dataexchange.gateway.v1.RecordExchange"), timeout=5
    )
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    ch.close()


# --------------------------------------------------------------------------
# Attacks on the peer protocol, by a member speaking it directly.
# --------------------------------------------------------------------------


def _hebei_request(
    federation: RunningFederation, recipient: str = "110000"
) -> tuple[PeerCaller, peer_pb2.SignedEnvelope, str]:
    gw = federation.gateways["130000"]
    bj = gw.bundle().member("110000")
    msg = peer_pb2.PeerRecordRequest(
        service_system="hebei-housing-fund",
        dataset="si_contributions",
        purpose="housing_fund_transfer",
        subject_count=0,
        sealed_query=crypto.seal(bj.seal_key, domains.SEAL_RECORD_PAYLOAD, b"", b"x"),
    )
    env = gw.caller.prepare(recipient, msg, domains.PEER_RECORD_REQUEST)
    return gw.caller, env, msg.header.request_id


def _send(
    federation: RunningFederation, env: peer_pb2.SignedEnvelope, to: str = "110000"
) -> peer_pb2.SignedEnvelope:
    gw = federation.gateways["130000"]
    return gw.transport.call(gw.bundle().member(to), "FetchRecords", env, 5.0)


def test_tampered_payload_byte_is_refused_as_opaque_authentication_failure(
    federation: RunningFederation,
) -> None:
    _, env, _ = _hebei_request(federation)
    before = len(ledger_events(federation.gateways["110000"]))
    tampered = peer_pb2.SignedEnvelope()
    tampered.CopyFrom(env)
    payload = bytearray(env.payload)
    payload[-1] ^= 0x01
    tampered.payload = bytes(payload)
    with pytest.raises(CryptoFailure) as err:
        _send(federation, tampered)
    assert "authentication failed" in str(err.value)
    # Unauthenticated input leaves nothing in the holder's ledger.
    assert len(ledger_events(federation.gateways["110000"])) == before


def test_signature_from_another_domain_does_not_verify(federation: RunningFederation) -> None:
    _, env, _ = _hebei_request(federation)
    relabelled = peer_pb2.SignedEnvelope()
    relabelled.CopyFrom(env)
    # Same bytes and signature presented as a different message type.
    relabelled.payload_type = domains.PEER_STATS_REQUEST
    gw = federation.gateways["130000"]
    with pytest.raises((CryptoFailure, InvalidArgument)):
        gw.transport.call(gw.bundle().member("110000"), "FetchRecords", relabelled, 5.0)


def test_request_addressed_to_another_gateway_is_refused(federation: RunningFederation) -> None:
    _, env, _ = _hebei_request(federation, recipient="120000")
    with pytest.raises(Unauthenticated) as err:
        _send(federation, env, to="110000")
    assert "addressed to" in str(err.value)


def test_replayed_request_id_is_refused(federation: RunningFederation) -> None:
    _, env, _ = _hebei_request(federation)
    first = _send(federation, env)
    assert first.payload_type == domains.PEER_RECORD_RESPONSE
    with pytest.raises(ReplayRejected) as err:
        _send(federation, env)
    assert "already processed" in str(err.value)


def test_timestamp_outside_window_is_refused(federation: RunningFederation) -> None:
    gw = federation.gateways["130000"]
    skewed = PeerCaller(
        "130000",
        gw.keys.signing,
        gw.bundle,
        gw.transport,
        lambda: time.time_ns() // 1_000_000 - 3_600_000,
        gw.config.limits,
    )
    bj = gw.bundle().member("110000")
    msg = peer_pb2.PeerRecordRequest(
        service_system="hebei-housing-fund", dataset="si_contributions", purpose="housing_fund_transfer",
        sealed_query=crypto.seal(bj.seal_key, domains.SEAL_RECORD_PAYLOAD, b"", b"x"),
    )  # fmt: skip
    env = skewed.prepare("110000", msg, domains.PEER_RECORD_REQUEST)
    with pytest.raises(ReplayRejected) as err:
        _send(federation, env)
    assert "window" in str(err.value)


def test_member_signing_as_another_member_is_refused(federation: RunningFederation) -> None:
    # Tianjin's key signs, but the connection is made with Hebei's TLS certificate.
    tj = federation.gateways["120000"]
    bj = tj.bundle().member("110000")
    msg = peer_pb2.PeerRecordRequest(
        service_system="tianjin-planning", dataset="si_contributions", purpose="commuter_planning",
        sealed_query=crypto.seal(bj.seal_key, domains.SEAL_RECORD_PAYLOAD, b"", b"x"),
    )  # fmt: skip
    env = tj.caller.prepare("110000", msg, domains.PEER_RECORD_REQUEST)
    with pytest.raises(Unauthenticated) as err:
        _send(federation, env)  # sent over Hebei's mutual-TLS channel
    assert "TLS client certificate" in str(err.value)


def test_unknown_peer_cannot_complete_mutual_tls(federation: RunningFederation, tmp_path) -> None:
    from gateway.identity import generate_keys

    outsider = generate_keys(tmp_path / "outsider", "310000", "上海市大数据中心")
    transport = GrpcPeerTransport(outsider.tls, federation.gateways["130000"].config.limits)
    _, env, _ = _hebei_request(federation)
    with pytest.raises(PeerUnavailable):
        transport.call(
            federation.gateways["130000"].bundle().member("110000"), "FetchRecords", env, 5.0
        )
    transport.close()


def test_tampered_response_is_rejected_and_ledgered_as_refusal_by_requester(
    federation: RunningFederation,
) -> None:
    gw = federation.gateways["130000"]
    real = gw.transport

    class FlipResponse:
        def call(self, member, method, envelope, timeout):  # type: ignore[no-untyped-def]
            reply = real.call(member, method, envelope, timeout)
            bad = peer_pb2.SignedEnvelope()
            bad.CopyFrom(reply)
            sig = bytearray(reply.signature)
            sig[0] ^= 0x80
            bad.signature = bytes(sig)
            return bad

    from gateway.exchange.peer import PeerCaller as Caller
    from gateway.exchange.records import RecordsQuery
    from gateway.exchange.requester import RecordRequester

    caller = Caller(
        "130000", gw.keys.signing, gw.bundle, FlipResponse(), gw._clock, gw.config.limits
    )
    requester = RecordRequester(
        caller, gw.bundle, gw.ledger, gw.keys.seal, gw._clock, gw.config.limits
    )
    before = len(ledger_events(gw))
    with pytest.raises(CryptoFailure):
        requester.get_records(
            "hebei-housing-fund",
            RecordsQuery(
                "110000", "si_contributions", "housing_fund_transfer", (federation.commuter(),), ()
            ),
        )
    new = ledger_events(gw)[before:]
    assert [(e.kind, e.decision) for e in new] == [("refusal", "deny")]


def test_service_system_with_gateway_issued_client_certificate_is_authenticated(
    federation: RunningFederation, tmp_path
) -> None:
    import grpc as _grpc

    from gateway._proto.dataexchange.gateway.v1 import service_pb2, service_pb2_grpc
    from gateway.cli import main
    from gateway.identity import load_service_ca, tls_server_name

    site = federation.site("130000")
    gw = federation.gateways["130000"]
    assert main(["service-system", "add", "--config", str(site.config), "--id", "hebei-cert-client",
                 "--cert-out", str(tmp_path / "cc")]) == 0  # fmt: skip
    # No SIGHUP needed: the gateway re-reads its config at the next call.

    def call(key: bytes | None, cert: bytes | None) -> service_pb2.ListDatasetsResponse:
        creds = _grpc.ssl_channel_credentials(site.tls_cert.read_bytes(), key, cert)
        ch = _grpc.secure_channel(
            f"127.0.0.1:{site.service_mtls_port}",
            creds,
            options=[("grpc.ssl_target_name_override", tls_server_name("130000"))],
        )
        try:
            return service_pb2_grpc.RecordExchangeStub(ch).ListDatasets(
                service_pb2.ListDatasetsRequest(), timeout=5
            )
        finally:
            ch.close()

    key, cert = (
        (tmp_path / "cc" / "client.key").read_bytes(),
        (tmp_path / "cc" / "client.crt").read_bytes(),
    )
    assert {m.jurisdiction for m in call(key, cert).members} == {"110000", "120000", "130000"}
    # No client certificate at all: the handshake fails.
    with pytest.raises(_grpc.RpcError) as err:
        call(None, None)
    assert err.value.code() == _grpc.StatusCode.UNAVAILABLE
    # A certificate issued by the gateway's service CA but not registered: UNAUTHENTICATED.
    ca = load_service_ca(site.root / "keys", "130000")
    stray = crypto.issue_client_certificate(ca, "stray")
    with pytest.raises(_grpc.RpcError) as err:
        call(stray.key_pem, stray.cert_pem)
    assert err.value.code() == _grpc.StatusCode.UNAUTHENTICATED
    # Signed by the gateway's peer certificate (a CA:false leaf): no handshake.
    by_leaf = crypto.issue_client_certificate(gw.keys.tls, "by-leaf")
    with pytest.raises(_grpc.RpcError) as err:
        call(by_leaf.key_pem, by_leaf.cert_pem)
    assert err.value.code() == _grpc.StatusCode.UNAVAILABLE
    # A self-made certificate the gateway did not issue cannot even connect.
    own = crypto.make_tls_identity("forged", ["forged"])
    with pytest.raises(_grpc.RpcError) as err:
        call(own.key_pem, own.cert_pem)
    assert err.value.code() == _grpc.StatusCode.UNAVAILABLE


def test_bulk_request_is_capped_at_the_agreements_maximum_and_pseudonymised(
    federation: RunningFederation,
) -> None:
    with federation.client("120000", "tianjin-planning") as c:
        resp = c.get_records(
            holder_jurisdiction="110000", dataset="si_contributions", purpose="commuter_planning"
        )
    assert resp.truncated and len(resp.records) == 100  # the agreement allows 100 per request
    ids = [r.fields["person_id"] for r in resp.records]
    assert all(i.startswith("pn_") for i in ids) and len(set(ids)) == len(ids)
    assert {"person_id", "age_band", "district_code", "residence_jurisdiction"} >= set(
        resp.records[0].fields
    )


@pytest.mark.parametrize(
    "override",
    [
        {"service_system": "evil\nsystem"},
        {"dataset": "x" * 500},
        {"purpose": "purpose\x00"},
        {"client_reference": "\u2028" * 10},
        {"fields": ["name\x1b[31m"]},
    ],
)
def test_authenticated_request_with_hostile_identifiers_is_refused_signed_and_ledgered_safely(
    federation: RunningFederation, override: dict[str, object]
) -> None:
    from gateway.ledger.verify import verify_store

    hb = federation.gateways["130000"]
    bj = federation.gateways["110000"]
    member = hb.bundle().member("110000")
    fields: dict[str, object] = dict(
        service_system="hebei-housing-fund", dataset="si_contributions",
        purpose="housing_fund_transfer",
        sealed_query=crypto.seal(member.seal_key, domains.SEAL_RECORD_PAYLOAD, b"", b"x"),
    )  # fmt: skip
    fields.update(override)
    msg = peer_pb2.PeerRecordRequest(**fields)  # type: ignore[arg-type]
    before = len(ledger_events(bj))
    reply = hb.caller.call(
        "110000", "FetchRecords", msg, domains.PEER_RECORD_REQUEST,
        domains.PEER_RECORD_RESPONSE, peer_pb2.PeerRecordResponse,
    )  # fmt: skip
    assert not reply.response.decision.allowed
    assert reply.response.error_code == "INVALID_ARGUMENT"
    new = ledger_events(bj)[before:]
    assert [(e.kind, e.decision) for e in new] == [("refusal", "deny")]
    assert verify_store(bj.ledger.store, bj.ledger.origin, bj.keys.ledger.verify_key).ok


def test_refusal_reason_with_control_characters_from_a_peer_is_ledgered_cleaned() -> None:
    from gateway.ledger.events import clean_reason
    from gateway.limits import DEFAULT_LIMITS

    cleaned = clean_reason("line one\nline two\x00\u2028" + "x" * 5000, DEFAULT_LIMITS)
    assert "\n" not in cleaned and "\x00" not in cleaned and "\u2028" not in cleaned
    assert len(cleaned) == DEFAULT_LIMITS.max_reason_chars


def test_ledgered_signatures_and_digests_are_of_the_federations_suite(
    federation: RunningFederation,
) -> None:
    """A gm federation ledgers DER SM2 signatures and SM3 digests; intl, Ed25519 and SHA-256."""
    import base64

    from gateway.trust import load_bundle

    with federation.client("130000", "hebei-housing-fund") as c:
        resp = c.get_records(**_request(federation))
    suite = load_bundle(federation.fed.bundle).suite
    h = next(
        e for e in ledger_events(federation.gateways["110000"]) if e.request_id == resp.request_id
    )
    for sig in (h.requester_signature, h.holder_signature):
        raw = base64.b64decode(sig)
        if suite == "gm":
            assert raw[0] == 0x30 and raw[1] == len(raw) - 2  # DER SEQUENCE { r, s }
        else:
            assert len(raw) == 64
    holder = federation.gateways["110000"]
    assert holder.ledger.suite.name == suite
    assert (
        holder.ledger.tree.leaf(holder.ledger.entry(0).entry) == holder.ledger.entry(0).entry_hash
    )
    assert len(bytes.fromhex(h.request_digest)) == len(bytes.fromhex(h.payload_digest)) == 32


def test_holder_serves_the_register_from_its_mapped_database_not_a_copy(
    federation: RunningFederation,
) -> None:
    ds = federation.gateways["110000"].policy_store.current.catalogue.dataset("si_contributions")
    if ds.source is None:
        pytest.skip("SQLite run: the register is the gateway's own file")
    import sqlalchemy as sa

    subject = federation.commuter()
    engine = sa.create_engine(ds.source.url)
    schema, table = ds.source.table.split(".")
    t = sa.table(table, sa.column("sfzh"), sa.column("employer"), schema=schema)
    try:
        with engine.begin() as conn:
            before = conn.execute(sa.select(t.c.employer).where(t.c.sfzh == subject)).scalar_one()
            conn.execute(
                t.update().where(t.c.sfzh == subject).values(employer="数据库直读测试单位")
            )
        with federation.client("130000", "hebei-housing-fund") as c:
            resp = c.get_records(**_request(federation, fields=["employer"]))
        assert [dict(r.fields) for r in resp.records] == [{"employer": "数据库直读测试单位"}]
    finally:
        with engine.begin() as conn:
            conn.execute(t.update().where(t.c.sfzh == subject).values(employer=before))
        engine.dispose()
