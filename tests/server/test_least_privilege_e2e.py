"""Least privilege on a running federation: roles on the Ledger API, members
confined to their own exchanges, service-system credentials revoked, rotated
and expired on a running gateway, and separate TLS trust roots.

Every test attacks real gateways over loopback with real TLS.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from gateway import crypto
from gateway._proto.dataexchange.gateway.v1 import (
    ledger_pb2,
    ledger_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
)
from gateway.config import load_config
from gateway.identity import load_service_ca
from gateway.ledger.entry import decode_entry
from tests.conftest import RunningFederation, start_federation, stop_federation
from tests.helpers import ledger_events
from tests.server.access_testkit import cli as _cli
from tests.server.access_testkit import (
    mtls_service_channel,
    peer_channel,
    token_from_output,
)

LEDGER_METHODS = ("GetCheckpoint", "GetInclusionProof", "GetConsistencyProof", "GetEntries")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFederation]:
    rf = start_federation(tmp_path_factory.mktemp("least-privilege"), rows=60)
    # One Hebei -> Beijing exchange, so Beijing's ledger has entries about 130000.
    with rf.client("130000", "hebei-housing-fund") as c:
        c.get_records(
            holder_jurisdiction="110000", dataset="si_contributions",
            purpose="housing_fund_transfer", subject_ids=[rf.commuter()],
        )  # fmt: skip
    rf.gateways["110000"].ledger.checkpoint_now()
    yield rf
    stop_federation(rf)


def _ledger_stub(fed: RunningFederation, code: str, service: str) -> tuple[grpc.Channel, object]:
    client = fed.client(code, service)
    return client.channel, ledger_pb2_grpc.LedgerStub(client.channel)


def _all_entries(stub: ledger_pb2_grpc.LedgerStub) -> list[ledger_pb2.LedgerEntry]:
    out: list[ledger_pb2.LedgerEntry] = []
    start, end = 0, None
    while end is None or start < end:
        page = stub.GetEntries(ledger_pb2.GetEntriesRequest(start=start), timeout=10)
        end = page.tree_size if end is None else end
        out.extend(page.entries)
        start = page.next_start
    return out


# --------------------------------------------------------------------------
# Item 1: roles on the Ledger API
# --------------------------------------------------------------------------


def test_member_cannot_read_entries_of_exchanges_between_two_other_members(
    fed: RunningFederation,
) -> None:
    bj = fed.gateways["110000"]
    about_hebei = [
        r for r in bj.ledger.entries(0, bj.ledger.size) if r.event.counterparty == "130000"
    ]
    assert about_hebei, "the fixture's exchange must be in Beijing's ledger"
    with peer_channel(fed, "120000", "110000") as ch:  # Tianjin asks Beijing
        stub = ledger_pb2_grpc.LedgerStub(ch)
        seen = _all_entries(stub)
        assert all(decode_entry(e.entry).event.counterparty == "120000" for e in seen)
        # By index: refused, naming why.
        with pytest.raises(grpc.RpcError) as err:
            stub.GetInclusionProof(
                ledger_pb2.GetInclusionProofRequest(index=about_hebei[0].index), timeout=10
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "120000" in err.value.details()
        # By request id: as if it did not exist.
        with pytest.raises(grpc.RpcError) as err:
            stub.GetInclusionProof(
                ledger_pb2.GetInclusionProofRequest(request_id=about_hebei[0].event.request_id),
                timeout=10,
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # Checkpoints and consistency proofs stay open to every member (witnessing).
        cp = stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=10)
        assert cp.tree_size >= 1
        stub.GetConsistencyProof(
            ledger_pb2.GetConsistencyProofRequest(first_size=1, second_size=cp.tree_size),
            timeout=10,
        )


def test_member_reads_the_entries_of_its_own_exchanges_for_reconciliation(
    fed: RunningFederation,
) -> None:
    bj = fed.gateways["110000"]
    mine = {
        r.index for r in bj.ledger.entries(0, bj.ledger.size) if r.event.counterparty == "130000"
    }
    with peer_channel(fed, "130000", "110000") as ch:
        stub = ledger_pb2_grpc.LedgerStub(ch)
        seen = {e.index for e in _all_entries(stub)}
        assert mine <= seen and seen <= mine | set(range(bj.ledger.size, bj.ledger.size + 100))
        r = stub.GetInclusionProof(ledger_pb2.GetInclusionProofRequest(index=min(mine)), timeout=10)
        assert decode_entry(r.entry).event.counterparty == "130000"


@pytest.mark.parametrize("method", LEDGER_METHODS)
def test_service_system_without_the_audit_role_is_refused_every_ledger_method(
    fed: RunningFederation, method: str
) -> None:
    requests = {
        "GetCheckpoint": ledger_pb2.GetCheckpointRequest(),
        "GetInclusionProof": ledger_pb2.GetInclusionProofRequest(index=0),
        "GetConsistencyProof": ledger_pb2.GetConsistencyProofRequest(first_size=1),
        "GetEntries": ledger_pb2.GetEntriesRequest(),
    }
    bj = fed.gateways["110000"]
    before = bj.ledger.size
    ch, stub = _ledger_stub(fed, "110000", "beijing-housing-fund")
    with ch, pytest.raises(grpc.RpcError) as err:
        getattr(stub, method)(requests[method], timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "lacks the role audit" in err.value.details()
    assert "beijing-housing-fund" in err.value.details()
    assert bj.ledger.size == before  # a refused read is not an audit read


def test_auditor_cannot_request_records_or_statistics(fed: RunningFederation) -> None:
    with fed.client("130000", "hebei-audit") as c:
        with pytest.raises(grpc.RpcError) as err:
            c.get_records(
                holder_jurisdiction="110000", dataset="si_contributions",
                purpose="housing_fund_transfer", subject_ids=["110105199003078515"],
            )  # fmt: skip
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "role exchange" in err.value.details()
        from gateway._proto.dataexchange.gateway.v1 import stats_pb2, stats_pb2_grpc

        with pytest.raises(grpc.RpcError) as err:
            stats_pb2_grpc.StatisticsStub(c.channel).DryRun(
                stats_pb2.StatsQueryRequest(jurisdictions=["110000"]), timeout=10
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "role statistics" in err.value.details()


def test_every_audit_read_is_itself_ledgered(fed: RunningFederation) -> None:
    bj = fed.gateways["110000"]
    before = bj.ledger.size
    ch, stub = _ledger_stub(fed, "110000", "beijing-audit")
    with ch:
        page = stub.GetEntries(ledger_pb2.GetEntriesRequest(start=0, limit=1), timeout=10)
        assert len(page.entries) == 1
        stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=10)
    new = ledger_events(bj)[before:]
    assert [(e.kind, e.service_system, e.purpose) for e in new] == [
        ("audit_read", "beijing-audit", "GetEntries"),
        ("audit_read", "beijing-audit", "GetCheckpoint"),
    ]
    assert "entries [0, 1): 1 returned" in new[0].reason


def test_federation_member_cannot_call_methods_not_served_on_the_peer_port(
    fed: RunningFederation,
) -> None:
    from gateway.errors import PermissionDenied
    from gateway.server.access import authorize_peer
    from tests.server.access_testkit import raw_call

    with peer_channel(fed, "130000", "110000") as ch, pytest.raises(grpc.RpcError) as err:
        raw_call(ch, "/dataexchange.gateway.v1.RecordExchange/ListDatasets", b"")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # not even mounted there
    # ...and were it mounted, the peer port's table would refuse it.
    with pytest.raises(PermissionDenied, match="not served to federation members"):
        authorize_peer("/dataexchange.gateway.v1.RecordExchange/ListDatasets", "130000")
    authorize_peer("/dataexchange.gateway.v1.Ledger/GetEntries", "130000")


def test_every_service_port_method_names_the_roles_that_may_call_it() -> None:
    from gateway._proto.dataexchange.gateway.v1 import stats_pb2
    from gateway.server.access import roles_for

    services = [
        service_pb2.DESCRIPTOR.services_by_name["RecordExchange"],
        stats_pb2.DESCRIPTOR.services_by_name["Statistics"],
        ledger_pb2.DESCRIPTOR.services_by_name["Ledger"],
    ]
    table = {
        f"/{s.full_name}/{m.name}": roles_for(f"/{s.full_name}/{m.name}")
        for s in services
        for m in s.methods
    }
    assert all(table.values()), table
    assert table["/dataexchange.gateway.v1.Ledger/GetEntries"] == ("audit",)
    assert roles_for("/dataexchange.gateway.v1.PeerExchange/FetchRecords") == ()  # peers only


# --------------------------------------------------------------------------
# Item 2: separate trust roots
# --------------------------------------------------------------------------


def test_peer_certificate_is_a_leaf_with_only_signing_key_usage(fed: RunningFederation) -> None:
    for code, gw in fed.gateways.items():
        cert = x509.load_pem_x509_certificate(gw.keys.tls.cert_pem)
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca is False, code
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.digital_signature and not ku.key_cert_sign and not ku.crl_sign
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {
            x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
            x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
        }
        ca = load_service_ca(fed.site(code).root / "keys", code)
        assert ca.cert_pem not in gw.bundle().root_certificates_pem()


def test_service_system_certificate_fails_the_handshake_on_every_peer_port(
    fed: RunningFederation, tmp_path: Path
) -> None:
    site = fed.site("130000")
    _cli("service-system", "add", "--config", str(site.config), "--id", "hebei-cert-peer",
         "--roles", "exchange", "--cert-out", str(tmp_path / "cc"))  # fmt: skip
    key, cert = (
        (tmp_path / "cc" / "client.key").read_bytes(),
        (tmp_path / "cc" / "client.crt").read_bytes(),
    )
    # It is a good certificate on its own gateway's service port...
    with mtls_service_channel(fed, "130000", key, cert) as ch:
        service_pb2_grpc.RecordExchangeStub(ch).ListDatasets(
            service_pb2.ListDatasetsRequest(), timeout=10
        )
    # ...and opens no peer port, not even its own gateway's.
    ident = crypto.TlsIdentity(key_pem=key, cert_pem=cert)
    for dst in ("110000", "120000", "130000"):
        with peer_channel(fed, "130000", dst, ident) as ch, pytest.raises(grpc.RpcError) as err:
            ledger_pb2_grpc.LedgerStub(ch).GetCheckpoint(
                ledger_pb2.GetCheckpointRequest(), timeout=5
            )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, dst  # handshake refused


def test_certificate_signed_with_a_members_peer_key_fails_the_handshake(
    fed: RunningFederation,
) -> None:
    # Hebei's peer key used as if it were a CA: its certificate is CA:false.
    forged = crypto.issue_client_certificate(fed.gateways["130000"].keys.tls, "gw-130000")
    with peer_channel(fed, "130000", "110000", forged) as ch, pytest.raises(grpc.RpcError) as err:
        ledger_pb2_grpc.LedgerStub(ch).GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


# --------------------------------------------------------------------------
# Item 5: service-system credentials on a running gateway
# --------------------------------------------------------------------------


def _list_datasets(fed: RunningFederation, code: str, token: str) -> grpc.StatusCode:
    with fed.client(code, "", token=token) as c:
        try:
            service_pb2_grpc.RecordExchangeStub(c.channel).ListDatasets(
                service_pb2.ListDatasetsRequest(), timeout=10
            )
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_revoked_token_is_refused_at_once_on_a_running_gateway(fed: RunningFederation) -> None:
    cfg = str(fed.site("120000").config)
    token = token_from_output(
        _cli("service-system", "add", "--config", cfg, "--id", "tj-revoked", "--token")
    )
    assert _list_datasets(fed, "120000", token) == grpc.StatusCode.OK
    _cli("service-system", "revoke", "--config", cfg, "--id", "tj-revoked")
    with fed.client("120000", "", token=token) as c, pytest.raises(grpc.RpcError) as err:
        service_pb2_grpc.RecordExchangeStub(c.channel).ListDatasets(
            service_pb2.ListDatasetsRequest(), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in err.value.details()


def test_token_hand_copied_into_a_second_service_system_is_refused_naming_both(
    fed: RunningFederation,
) -> None:
    """gateway.toml edited by hand: a second system given an existing system's token
    digest (other roles) would have authenticated the token as whichever matched
    last. The running gateway refuses it: UNAUTHENTICATED, naming both systems and
    where to fix it, the token never echoed; removing the copy restores the first."""
    import time

    from gateway.config import load_config as load

    site = fed.site("120000")
    cfg = site.config
    token = token_from_output(
        _cli("service-system", "add", "--config", str(cfg), "--id", "tj-shared", "--token")
    )
    digest = crypto.sha256_hex(token.encode())
    original = cfg.read_text(encoding="utf-8")
    try:
        cfg.write_text(
            original + f'\n[[service_systems]]\nid = "tj-copy"\nroles = ["audit"]\n'
            f'token_sha256 = "{digest}"\n',
            encoding="utf-8",
        )
        assert [s.id for s in load(cfg).service_systems].count("tj-copy") == 1
        deadline = time.monotonic() + 10
        while _list_datasets(fed, "120000", token) == grpc.StatusCode.OK:
            assert time.monotonic() < deadline, "the edited gateway.toml was never picked up"
            time.sleep(0.1)
        with fed.client("120000", "", token=token) as c, pytest.raises(grpc.RpcError) as err:
            service_pb2_grpc.RecordExchangeStub(c.channel).ListDatasets(
                service_pb2.ListDatasetsRequest(), timeout=10
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        details = err.value.details() or ""
        assert "more than one service system (tj-copy, tj-shared)" in details, details
        assert "gateway.toml" in details and len(details) <= 500
        assert token not in details and digest not in details
    finally:
        cfg.write_text(original, encoding="utf-8")
    deadline = time.monotonic() + 10
    while _list_datasets(fed, "120000", token) != grpc.StatusCode.OK:
        assert time.monotonic() < deadline, "the restored gateway.toml was never picked up"
        time.sleep(0.1)


def _rotate_token(cfg: str, sid: str, overlap_hours: int) -> str:
    args = ["--config", cfg, "--id", sid, "--token", "--overlap-hours", str(overlap_hours)]
    return token_from_output(_cli("service-system", "rotate", *args))


def test_rotated_token_old_and_new_valid_during_overlap_then_old_refused(
    fed: RunningFederation,
) -> None:
    cfg = str(fed.site("120000").config)
    old = token_from_output(
        _cli("service-system", "add", "--config", cfg, "--id", "tj-rotated", "--token")
    )
    new = _rotate_token(cfg, "tj-rotated", overlap_hours=2)
    assert _list_datasets(fed, "120000", old) == grpc.StatusCode.OK
    assert _list_datasets(fed, "120000", new) == grpc.StatusCode.OK
    newest = _rotate_token(cfg, "tj-rotated", overlap_hours=0)
    assert _list_datasets(fed, "120000", old) == grpc.StatusCode.UNAUTHENTICATED
    assert _list_datasets(fed, "120000", new) == grpc.StatusCode.UNAUTHENTICATED
    assert _list_datasets(fed, "120000", newest) == grpc.StatusCode.OK
    listed = _cli("service-system", "list", "--config", cfg)
    assert re.search(r"tj-rotated\troles: exchange, statistics", listed)
    assert listed.count("expired") >= 2


def test_expired_token_is_refused_on_a_running_gateway(fed: RunningFederation) -> None:
    site = fed.site("120000")
    token = token_from_output(
        _cli(
            "service-system",
            "add",
            "--config",
            str(site.config),
            "--id",
            "tj-expiring",
            "--token",
            "--expires-days",
            "30",
        )
    )
    assert _list_datasets(fed, "120000", token) == grpc.StatusCode.OK
    # Thirty days later, as far as the credential is concerned.
    text = site.config.read_text()
    block = text[text.index('id = "tj-expiring"') :]
    stamp = re.search(r"not_after = (\S+)", block)
    assert stamp is not None
    site.config.write_text(text.replace(stamp.group(1), "2020-01-01T00:00:00Z"))
    assert load_config(site.config).service_system("tj-expiring") is not None
    assert _list_datasets(fed, "120000", token) == grpc.StatusCode.UNAUTHENTICATED


def test_revoked_client_certificate_is_refused_and_rotated_one_accepted(
    fed: RunningFederation, tmp_path: Path
) -> None:
    cfg = str(fed.site("130000").config)
    _cli("service-system", "add", "--config", cfg, "--id", "hb-cert-rot",
         "--cert-out", str(tmp_path / "old"))  # fmt: skip
    _cli("service-system", "rotate", "--config", cfg, "--id", "hb-cert-rot",
         "--cert-out", str(tmp_path / "new"), "--overlap-hours", "1")  # fmt: skip

    def call(folder: str) -> grpc.StatusCode:
        key = (tmp_path / folder / "client.key").read_bytes()
        cert = (tmp_path / folder / "client.crt").read_bytes()
        with mtls_service_channel(fed, "130000", key, cert) as ch:
            try:
                service_pb2_grpc.RecordExchangeStub(ch).ListDatasets(
                    service_pb2.ListDatasetsRequest(), timeout=10
                )
            except grpc.RpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    assert call("old") == call("new") == grpc.StatusCode.OK
    old_fp = crypto.cert_fingerprint((tmp_path / "old" / "client.crt").read_bytes())
    _cli("service-system", "revoke", "--config", cfg, "--id", "hb-cert-rot",
         "--credential", old_fp[:12])  # fmt: skip
    assert call("old") == grpc.StatusCode.UNAUTHENTICATED
    assert call("new") == grpc.StatusCode.OK


def test_config_edited_into_garbage_keeps_the_credentials_in_force(
    fed: RunningFederation,
) -> None:
    site = fed.site("110000")
    good = site.config.read_text()
    try:
        site.config.write_text(good + "\n[[service_systems]]\nid = 7\n")
        assert _list_datasets(fed, "110000", site.tokens["beijing-housing-fund"]) == (
            grpc.StatusCode.OK
        )
    finally:
        site.config.write_text(good)
