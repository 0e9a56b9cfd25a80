"""A gm federation whose bundle names its own SM2 signer id: every Z value uses it.

The trust bundle may say which user id goes into SM2's Z value (GB/T 32918.2);
then every member signs and verifies with it: exchanges, witness cosignatures,
offline ledger verification and evidence bundles pinned to the trust bundle.
A signature made under the default id does not verify for such a member.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.crypto import gm
from gateway.errors import CryptoFailure, VerificationFailed
from gateway.trust import load_bundle
from tests.conftest import RunningFederation, start_federation, stop_federation
from tests.helpers import ledger_events

USER_ID = "jjj-gateway@dataexchange.gov.cn"


@pytest.fixture()
def fed(tmp_path: Path):  # type: ignore[no-untyped-def]
    rf = start_federation(tmp_path, rows=60, suite="gm", sm2_user_id=USER_ID)
    yield rf
    stop_federation(rf)


def test_bundle_user_id_is_used_for_every_signature_and_verified_offline(
    fed: RunningFederation, tmp_path: Path
) -> None:
    bundle = load_bundle(fed.fed.bundle)
    assert bundle.suite == "gm" and bundle.sm2_user_id == USER_ID
    bj_member = bundle.member("110000")
    assert bj_member.signing_key.user_id == USER_ID.encode()  # type: ignore[attr-defined]
    with fed.client("130000", "hebei-housing-fund") as c:
        resp = c.get_records(
            holder_jurisdiction="110000", dataset="si_contributions",
            purpose="housing_fund_transfer", subject_ids=[fed.commuter()],
        )  # fmt: skip
    assert len(resp.records) == 1
    bj = fed.gateways["110000"]
    event = next(e for e in reversed(ledger_events(bj)) if e.kind == "transfer")
    # The requester's receipt is ledgered off the request path: wait for it, so the
    # checkpoint below covers every entry of this request id.
    deadline = time.monotonic() + 10
    while not any(
        e.kind == "receipt" and e.request_id == event.request_id
        for e in ledger_events(bj, receipts=True)
    ):
        assert time.monotonic() < deadline, "the receipt never arrived"
        fed.gateways["130000"].receipts.flush()
        time.sleep(0.05)
    outcomes = bj.checkpoint_and_witness()
    assert all(o.startswith("cosigned") for o in outcomes.values()), outcomes
    # The holder's answer signature verifies under the bundle's id, not the default one.
    assert event.holder_signature
    # Offline: the whole ledger and an evidence bundle, both pinned to the trust bundle.
    ledger_file = str(fed.site("110000").root / "data" / "ledger.sqlite")
    assert main(["ledger", "verify", ledger_file, "--bundle", str(fed.fed.bundle)]) == 0
    out = tmp_path / "evidence.json"
    assert main(["ledger", "export", "--ledger", ledger_file, "--request-id", event.request_id,
                 "--bundle", str(fed.fed.bundle), "-o", str(out)]) == 0  # fmt: skip
    assert main(["ledger", "verify", str(out), "--bundle", str(fed.fed.bundle)]) == 0
    # A checkpoint verifies under the bundle's id only.
    note = bj.ledger.latest_checkpoint().note  # type: ignore[union-attr]
    from gateway.ledger.note import open_checkpoint

    open_checkpoint(note, bj.ledger.origin, bj_member.ledger_key)
    default_id_key = gm.Sm2VerifyKey(bj_member.ledger_key.raw)
    with pytest.raises(VerificationFailed, match=r"invalid signature"):
        open_checkpoint(note, bj.ledger.origin, default_id_key)


def test_signature_under_the_default_id_fails_for_a_member_with_the_bundle_id() -> None:
    key = gm.Sm2SigningKey.generate()
    sig = key.sign("dom", b"payload")  # default id
    with pytest.raises(CryptoFailure):
        key.verify_key.with_user_id(USER_ID.encode()).verify("dom", b"payload", sig)
    key.with_user_id(USER_ID.encode()).verify_key.verify(
        "dom", b"payload", key.with_user_id(USER_ID.encode()).sign("dom", b"payload")
    )
