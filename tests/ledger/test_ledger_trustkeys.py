"""Keys by member, kind and time: a signature is checked against the key valid when it was made."""

from __future__ import annotations

import dataclasses

from gateway.crypto import SigningKey, b64
from gateway.envelope import sign_receipt
from gateway.ledger.signatures import SignatureCheck, check_entry_signatures
from gateway.ledger.trustkeys import KeyEntry, TrustedKeys
from tests.ledger.ledger_testkit import federation_keys, make_event, signing_seed

T = 1_700_000_000_000


def rotated(keys: TrustedKeys, j: str, until_ms: int) -> TrustedKeys:
    """``j``'s signing key valid only until ``until_ms``, a new one from then on."""
    entries = tuple(
        dataclasses.replace(e, valid_until_ms=until_ms)
        if e.jurisdiction == j and e.kind == "signing"
        else e
        for e in keys.entries
    )
    new = KeyEntry(j, "signing", SigningKey(bytes([99]) * 32).verify_key, valid_from_ms=until_ms)
    return TrustedKeys(keys.signers, (*entries, new), keys.source)


def test_keys_are_selected_by_validity_interval() -> None:
    keys = rotated(federation_keys(), "120000", T + 5000)
    old = SigningKey(signing_seed("120000")).verify_key
    assert keys.keys("120000", "signing", T) == (old,)
    assert old not in keys.keys("120000", "signing", T + 5000)
    assert len(keys.keys("120000", "signing")) == 2  # at any time


def test_signature_made_with_a_key_no_longer_valid_at_the_entry_time_fails() -> None:
    keys = rotated(federation_keys(), "120000", T + 5000)
    before = make_event(1)  # made at T + 1 s with the old key: fine
    assert not check_entry_signatures(before, keys).problem
    after = make_event(9)  # made at T + 9 s, still with the old key: the bundle says it had expired
    assert "does not verify" in check_entry_signatures(after, keys).problem


def test_signer_the_trust_bundle_does_not_list_is_counted_not_trusted() -> None:
    ev = make_event(1, counterparty="310000")
    check = check_entry_signatures(ev, federation_keys())
    assert not check.problem and check.unverifiable == 1


def test_receipt_entry_without_the_requesters_signature_fails() -> None:
    """A receipt is the requester's signature and nothing else (the holder ledgers one
    only after verifying it): an unsigned receipt entry is a fabricated acknowledgement,
    not a receipt with nothing to check."""
    receipt = make_event(
        1, kind="receipt", response_digest="e" * 64, requester_signature="", holder_signature=""
    )
    check = check_entry_signatures(receipt, federation_keys())
    assert check.checked == 0 and "no requester signature" in check.problem
    signed = sign_receipt(
        SigningKey(signing_seed("120000")), receipt.request_id, b"\xdd" * 32, b"\xee" * 32
    )
    real = dataclasses.replace(receipt, requester_signature=b64(signed))
    assert check_entry_signatures(real, federation_keys()) == SignatureCheck(1, 0)
