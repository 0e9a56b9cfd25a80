"""The Ledger gRPC API on the gateway's real service-port server (TLS, tokens, interceptor)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway._proto.dataexchange.gateway.v1 import ledger_pb2 as pb
from gateway._proto.dataexchange.gateway.v1 import ledger_pb2_grpc
from gateway.client import service_channel
from gateway.ledger.entry import decode_entry
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.merkle import verify_consistency, verify_inclusion
from gateway.ledger.note import open_checkpoint
from gateway.server.servicers.ledger import UnrestrictedScope, add_to_server
from tests.helpers import ServicePort, service_port
from tests.ledger.ledger_testkit import ORIGIN, make_event

NewLedger = Callable[..., SqliteLedger]


AUDITOR = "beijing-audit"


@pytest.fixture
def port(new_ledger: NewLedger) -> Iterator[tuple[ServicePort, SqliteLedger]]:
    ledger = new_ledger(n=23, every=10)
    with service_port(
        lambda server: add_to_server(server, ledger, scope=UnrestrictedScope()), [AUDITOR]
    ) as svc:
        yield svc, ledger


@pytest.fixture
def served(
    port: tuple[ServicePort, SqliteLedger],
) -> Iterator[tuple[ledger_pb2_grpc.LedgerStub, SqliteLedger]]:
    svc, ledger = port
    with svc.channel(AUDITOR) as channel:
        yield ledger_pb2_grpc.LedgerStub(channel), ledger


def test_checkpoint_and_inclusion_proof_by_index_and_request_id(served, log_key) -> None:  # type: ignore[no-untyped-def]
    stub, _ = served
    cpr = stub.GetCheckpoint(pb.GetCheckpointRequest())
    cp = open_checkpoint(cpr.checkpoint, ORIGIN, log_key.verify_key)
    assert cp.size == cpr.tree_size == 20 and cp.root == cpr.root_hash
    r = stub.GetInclusionProof(pb.GetInclusionProofRequest(index=7))
    tree = served[1].tree
    assert tree.leaf(r.entry) == r.leaf_hash
    verify_inclusion(7, r.tree_size, r.leaf_hash, list(r.proof), cp.root, tree)
    r2 = stub.GetInclusionProof(pb.GetInclusionProofRequest(request_id="req-000021"))
    assert r2.index == 21 and decode_entry(r2.entry).event.request_id == "req-000021"
    cp2 = open_checkpoint(r2.checkpoint, ORIGIN, log_key.verify_key)  # issued on demand
    verify_inclusion(21, r2.tree_size, r2.leaf_hash, list(r2.proof), cp2.root, tree)


def test_consistency_proof_and_entries(served, log_key) -> None:  # type: ignore[no-untyped-def]
    stub, ledger = served
    c = stub.GetConsistencyProof(pb.GetConsistencyProofRequest(first_size=10, second_size=20))
    verify_consistency(10, 20, list(c.proof), ledger.root_at(10), ledger.root_at(20), ledger.tree)
    page = stub.GetEntries(pb.GetEntriesRequest(start=20, limit=100))
    assert [e.index for e in page.entries] == [20, 21, 22] and page.tree_size == 23
    ledger.append(make_event(23))
    assert stub.GetEntries(pb.GetEntriesRequest(start=23)).entries[0].index == 23


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda s: s.GetInclusionProof(pb.GetInclusionProofRequest(index=10**6)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda s: s.GetInclusionProof(pb.GetInclusionProofRequest(request_id="nope")),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda s: s.GetInclusionProof(pb.GetInclusionProofRequest()),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda s: s.GetConsistencyProof(
                pb.GetConsistencyProofRequest(first_size=0, second_size=5)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda s: s.GetConsistencyProof(
                pb.GetConsistencyProofRequest(first_size=5, second_size=999)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (  # an origin no log can have (the rule in gateway.identifiers), not a lookup
            lambda s: s.GetWitnessedCheckpoint(
                pb.GetWitnessedCheckpointRequest(origin="two words\n")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda s: s.GetWitnessedCheckpoint(pb.GetWitnessedCheckpointRequest(origin="x" * 256)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda s: s.GetWitnessedCheckpoint(
                pb.GetWitnessedCheckpointRequest(origin="130000.gateway.dataexchange.cn/ledger")
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
    ],
)
def test_bad_requests_get_status_codes(served, call, code) -> None:  # type: ignore[no-untyped-def]
    stub, _ = served
    with pytest.raises(grpc.RpcError) as err:
        call(stub)
    assert err.value.code() == code


def test_missing_entry_is_not_found_through_the_real_server(served) -> None:  # type: ignore[no-untyped-def]
    stub, _ = served
    with pytest.raises(grpc.RpcError) as err:
        stub.GetInclusionProof(pb.GetInclusionProofRequest(request_id="req-999999"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "no ledger entry for that request id"
    assert dict(err.value.trailing_metadata())["gateway-error"] == "NotFound"


def test_ledger_api_refuses_a_caller_without_a_registered_token(port) -> None:  # type: ignore[no-untyped-def]
    svc, _ = port
    forged = service_channel(svc.address, svc.cert_pem, svc.jurisdiction, "not-a-registered-token")
    for channel in (svc.channel(), forged):
        with channel:
            with pytest.raises(grpc.RpcError) as err:
                ledger_pb2_grpc.LedgerStub(channel).GetEntries(pb.GetEntriesRequest())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_reconcile_reads_a_ledger_api(port, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from gateway.cli.audit import read_side

    svc, _ = port
    cert, token = tmp_path / "gw.pem", tmp_path / "token"
    cert.write_bytes(svc.cert_pem)
    token.write_text(svc.tokens[AUDITOR], encoding="utf-8")
    side = read_side(f"{svc.jurisdiction}@{svc.address}", cert, token)
    assert len(side) == 23 and side[3][1].request_id == "req-000003"


class _CountingInterceptor(grpc.ServerInterceptor):
    def __init__(self) -> None:
        self.calls = 0

    def intercept_service(self, continuation, details):  # type: ignore[no-untyped-def]
        self.calls += 1
        return continuation(details)


def test_live_reads_without_a_certificate_or_token_refuse_instead_of_trusting_plaintext(
    new_ledger: NewLedger, log_key: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An impostor serves a forged 110000 ledger in plaintext. `audit reconcile` and
    `ledger verify --from-witness` given no certificate (or no token) read nothing from
    it: exit 2, one line naming the option to give (they used to connect in plaintext,
    token-less, and trust what came back)."""
    from concurrent import futures

    from gateway.cli import main
    from gateway.ledger.note import vkey

    key = vkey(ORIGIN, log_key.verify_key)
    forged = new_ledger("forged.db", n=5, every=5)
    counter = _CountingInterceptor()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[counter])
    add_to_server(server, forged, scope=UnrestrictedScope())
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    theirs = new_ledger("theirs.db", n=5, every=5)
    theirs.close()
    cert, token = tmp_path / "gw.pem", tmp_path / "audit.token"
    cert.write_bytes(b"not used: the command stops before connecting")
    token.write_text("svc_token\n", encoding="utf-8")
    live = f"110000@127.0.0.1:{port}"
    try:
        theirs_file = str(tmp_path / "theirs.db")
        verify = ["ledger", "verify", theirs_file, "--key", key, "--from-witness", live]
        cases = [
            (["audit", "reconcile", live, theirs_file], "--cert-a"),
            (["audit", "reconcile", theirs_file, live], "--cert-b"),
            (["audit", "reconcile", live, theirs_file, "--cert-a", str(cert)], "--token-file-a"),
            ([*verify, "--witness-token-file", str(token)], "--witness-cert"),
            ([*verify, "--witness-cert", str(cert)], "--witness-token-file"),
        ]
        for argv, option in cases:
            assert main(argv) == 2, argv
            out, err = capsys.readouterr()
            assert err.startswith("gateway: error: ") and len(err.splitlines()) == 1, err
            assert option in err and "reconcile" not in out, (argv, err)
        assert counter.calls == 0, "a live read went out without TLS or a token"
    finally:
        server.stop(None)
