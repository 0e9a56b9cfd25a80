"""Key rotation without losing history, on a running federation.

One gateway rotates every key (envelope, sealing, ledger, witness, TLS) with
`gateway keygen --rotate all` and the authority's `gateway federation
rotate-keys`; its ledger, made under both keys, and an evidence file exported
before the rotation still verify with the new bundle; its peers keep
exchanging with it; and a bundle that forgets the old key makes the gateway
refuse to start on its old ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.errors import ConfigurationError
from gateway.identity import GatewayKeys
from gateway.ledger.note import SIG_COSIGNATURE_V1, key_id, parse_note
from gateway.server.app import Gateway
from tests.conftest import RunningFederation, start_federation, stop_federation
from tests.helpers import ledger_events
from tests.server.access_testkit import cli as _cli


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[RunningFederation]:
    rf = start_federation(tmp_path / "fed", rows=60)
    yield rf
    stop_federation(rf)


def _exchange(fed: RunningFederation, hebei_cert: bytes | None = None) -> str:
    from gateway.client import ServiceClient

    site = fed.site("130000")
    cert = hebei_cert or site.tls_cert.read_bytes()
    token = site.tokens["hebei-housing-fund"]
    with ServiceClient(site.service_address, cert, "130000", token) as c:
        resp = c.get_records(
            holder_jurisdiction="110000", dataset="si_contributions",
            purpose="housing_fund_transfer", subject_ids=[fed.commuter()],
        )  # fmt: skip
    assert resp.decision.allowed
    return str(resp.request_id)


def _wait_for_receipt(gw: Gateway, rid: str) -> None:
    """The requester acknowledges off the request path: wait until the holder has
    ledgered its receipt, so the checkpoints and exports that follow cover the whole
    exchange."""
    import time

    deadline = time.monotonic() + 10
    while not any(r.event.kind == "receipt" for r in gw.ledger.find(rid)):
        assert time.monotonic() < deadline, f"no receipt for {rid} was ledgered"
        time.sleep(0.05)


def _restart(fed: RunningFederation, code: str) -> Gateway:
    fed.gateways[code].stop(grace=0.2)
    gw = Gateway(load_config(fed.site(code).config))
    gw.start()
    fed.gateways[code] = gw
    return gw


def _wait_for_bundle(fed: RunningFederation, version: int) -> None:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(g.bundle().version >= version for g in fed.gateways.values()):
            return
        for g in fed.gateways.values():
            g.reload_bundle()
        time.sleep(0.1)
    raise AssertionError("gateways did not pick up the new bundle")


def _rotate_all(fed: RunningFederation, code: str, overlap_hours: str = "1") -> None:
    keys = fed.site(code).root / "keys"
    _cli("keygen", "--rotate", "all", "--out", str(keys))
    _cli("federation", "rotate-keys", "--bundle", str(fed.fed.bundle),
         "--authority-key", str(fed.fed.authority_key), "--public", str(keys / "public.json"),
         "--overlap-hours", overlap_hours)  # fmt: skip


def test_after_rotating_every_key_the_whole_ledger_and_old_evidence_verify(
    fed: RunningFederation, tmp_path: Path
) -> None:
    bundle = str(fed.fed.bundle)
    bj_ledger = str(fed.site("110000").root / "data" / "ledger.sqlite")
    old_rid = _exchange(fed)
    _wait_for_receipt(fed.gateways["110000"], old_rid)
    assert all(
        o.startswith("cosigned") for o in fed.gateways["110000"].checkpoint_and_witness().values()
    )
    fed.gateways["130000"].checkpoint_and_witness()  # Beijing cosigns with its old witness key
    evidence = tmp_path / "before-rotation.json"
    _cli("ledger", "export", "--ledger", bj_ledger, "--request-id", old_rid,
         "--bundle", bundle, "-o", str(evidence))  # fmt: skip
    # Hebei's evidence carries Beijing's old witness key (its cosignature).
    hb_ledger = str(fed.site("130000").root / "data" / "ledger.sqlite")
    hb_evidence = tmp_path / "hebei-before-rotation.json"
    _cli("ledger", "export", "--ledger", hb_ledger, "--request-id", old_rid,
         "--bundle", bundle, "-o", str(hb_evidence))  # fmt: skip
    old_keys = fed.gateways["110000"].keys

    _rotate_all(fed, "110000")
    version = fed.gateways["120000"].bundle().version + 1
    bj = _restart(fed, "110000")
    _wait_for_bundle(fed, version)
    assert bj.keys.ledger.verify_key.raw != old_keys.ledger.verify_key.raw
    assert bj.keys.tls.cert_pem != old_keys.tls.cert_pem
    shown = _cli("federation", "show", "--bundle", bundle)
    for kind in ("envelope", "sealing", "ledger", "witness", "tls"):
        assert f"retired   {kind:<8} until" in shown, shown

    # Peers exchange with the rotated gateway (new TLS cert, envelope and sealing keys).
    new_rid = _exchange(fed)
    _wait_for_receipt(bj, new_rid)
    assert all(o.startswith("cosigned") for o in bj.checkpoint_and_witness().values())
    outcomes = fed.gateways["130000"].checkpoint_and_witness()
    assert outcomes["110000"].startswith("cosigned"), outcomes
    # Beijing cosigned Hebei's checkpoint with its new, distinct witness key.
    _, sigs = parse_note(fed.gateways["130000"].ledger.latest_checkpoint().note)
    assert bj.keys.witness is not None
    mine = [s for s in sigs if s.name == "110000.gateway.dataexchange.cn/witness"]
    assert mine and mine[0].key_id == key_id(
        mine[0].name, SIG_COSIGNATURE_V1, bj.keys.witness.verify_key
    )
    assert mine[0].key_id != key_id(mine[0].name, SIG_COSIGNATURE_V1, bj.keys.ledger.verify_key)
    assert {e.request_id for e in ledger_events(bj)} >= {old_rid, new_rid}
    stop_federation(fed)

    # Offline, with the new bundle only: both ledgers (checkpoints and
    # cosignatures under old and new keys) and the old evidence verify.
    assert main(["ledger", "verify", bj_ledger, "--bundle", bundle]) == 0
    assert main(["ledger", "verify", hb_ledger, "--bundle", bundle]) == 0
    assert main(["ledger", "verify", str(evidence), "--bundle", bundle]) == 0
    assert main(["ledger", "verify", str(hb_evidence), "--bundle", bundle]) == 0
    after = tmp_path / "after-rotation.json"
    _cli("ledger", "export", "--ledger", bj_ledger, "--request-id", old_rid,
         "--bundle", bundle, "-o", str(after))  # fmt: skip
    assert main(["ledger", "verify", str(after), "--bundle", bundle]) == 0


def test_gateway_refuses_to_start_when_the_bundle_does_not_list_the_key_of_its_last_checkpoint(
    fed: RunningFederation,
) -> None:
    _exchange(fed)
    fed.gateways["110000"].checkpoint_and_witness()
    keys = fed.site("110000").root / "keys"
    fed.gateways["110000"].stop(grace=0.2)
    # The old way: new keys, member replaced, old ledger key forgotten.
    _cli("keygen", "--rotate", "ledger", "--out", str(keys))
    _cli("federation", "add-member", "--replace", "--bundle", str(fed.fed.bundle),
         "--authority-key", str(fed.fed.authority_key), "--public", str(keys / "public.json"),
         "--endpoint", f"127.0.0.1:{fed.site('110000').peer_port}",
         "--datasets", ",".join(fed.gateways["120000"].bundle().member("110000").datasets))  # fmt: skip
    with pytest.raises(ConfigurationError) as err:
        Gateway(load_config(fed.site("110000").config))
    assert "last checkpoint" in str(err.value) and "does not list" in str(err.value)
    # ...and offline verification with that bundle names the unverifiable checkpoint.
    bj_ledger = str(fed.site("110000").root / "data" / "ledger.sqlite")
    assert main(["ledger", "verify", bj_ledger, "--bundle", str(fed.fed.bundle)]) == 1
    fed.gateways.pop("110000")


def test_old_tls_certificate_is_refused_once_the_overlap_ends(
    fed: RunningFederation,
) -> None:
    from tests.server.access_testkit import peer_channel

    old_tls = fed.gateways["130000"].keys.tls
    _rotate_all(fed, "130000", overlap_hours="0")
    version = fed.gateways["110000"].bundle().version + 1
    _restart(fed, "130000")
    _wait_for_bundle(fed, version)
    from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, ledger_pb2_grpc

    with peer_channel(fed, "130000", "110000", old_tls) as ch, pytest.raises(grpc.RpcError) as err:
        ledger_pb2_grpc.LedgerStub(ch).GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=5)
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)
    # The new certificate works.
    _exchange(fed)


def _rotated_but_not_restarted(fed: RunningFederation) -> GatewayKeys:
    """Hebei rotates every key with a 2-hour overlap and the authority issues the new
    bundle (picked up by all); Hebei's process keeps its old keys. Returns them."""
    old = fed.gateways["130000"].keys
    _rotate_all(fed, "130000", overlap_hours="2")
    _wait_for_bundle(fed, fed.gateways["110000"].bundle().version + 1)
    assert fed.gateways["130000"].keys.signing.verify_key.raw == old.signing.verify_key.raw
    return old


def test_during_the_overlap_a_gateway_not_yet_restarted_keeps_exchanging_both_ways(
    fed: RunningFederation,
) -> None:
    old = _rotated_but_not_restarted(fed)
    member = fed.gateways["110000"].bundle().member("130000")
    assert member.signing_key.raw != old.signing.verify_key.raw  # the bundle has the new ones
    # As requester: old TLS certificate, old envelope key, replies sealed to
    # the old sealing key it names; all still valid in the overlap. (Its
    # service systems still see the old server certificate too.)
    _exchange(fed, hebei_cert=old.tls.cert_pem)
    # As holder: Tianjin seals the query to Hebei's new sealing key, which the
    # running process picks up from its key directory.
    enterprise = fed.subject("130000", "SELECT credit_code FROM ent_qualifications LIMIT 1")
    with fed.client("120000", "tianjin-procurement") as c:
        resp = c.get_records(
            holder_jurisdiction="130000", dataset="ent_qualifications",
            purpose="procurement_qualification_check", subject_ids=[enterprise],
        )  # fmt: skip
    assert resp.decision.allowed and len(resp.records) == 1


def test_during_the_overlap_the_holder_ledgers_receipts_signed_with_the_old_envelope_key(
    fed: RunningFederation,
) -> None:
    # Hebei rotated its keys but has not restarted: it still signs envelopes and
    # receipts with its old envelope key, which the bundle lists as valid for the
    # overlap. Beijing must record its receipt, not refuse it as badly signed.
    old = _rotated_but_not_restarted(fed)
    rid = _exchange(fed, hebei_cert=old.tls.cert_pem)
    _wait_for_receipt(fed.gateways["110000"], rid)
