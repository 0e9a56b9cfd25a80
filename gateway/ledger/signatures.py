"""The two exchange signatures an entry records, checked offline from the entry alone.

Owns: deciding who signed what in an entry (the requester over its request,
the holder over its answer, or for a receipt the requester over the request
id, request digest and response digest it acknowledges)
and checking each signature against the keys the trust bundle lists for that
member at the entry's time. Peer envelopes are signed over the digest of their
exact bytes (``gateway.envelope``), which the entry records as
``request_digest`` and ``response_digest``, so nothing but the entry and the
trust bundle is needed. Pure.

Does not own: which keys are trusted when (``gateway.ledger.trustkeys``),
reading ledgers, or the chain and tree (``gateway.ledger.verify``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from gateway.envelope import verify_digest_signature, verify_receipt
from gateway.errors import CryptoFailure
from gateway.ledger.events import LedgerEvent
from gateway.ledger.trustkeys import TrustedKeys


@dataclass(frozen=True)
class SignatureCheck:
    checked: int  # signatures that verified
    unverifiable: int  # signatures by members the trust bundle lists no key for
    problem: str = ""  # "" when every checkable signature verified


def _parties(ev: LedgerEvent) -> tuple[str, str]:
    """(requester, holder) of the exchange an entry records."""
    return (ev.local, ev.counterparty) if ev.role == "requester" else (ev.counterparty, ev.local)


def _one(
    keys: TrustedKeys,
    who: str,
    what: str,
    signature: str,
    digest: str,
    at_ms: int,
    receipt_of: LedgerEvent | None = None,
) -> tuple[int, int, str]:
    if not signature:
        return 0, 0, ""
    if not digest or (receipt_of is not None and not receipt_of.response_digest):
        return 0, 0, f"{what} signature is recorded without the digest it covers"
    candidates = keys.keys(who, "signing", at_ms)
    if not candidates:
        return 0, 1, ""
    try:
        sig = base64.b64decode(signature, validate=True)
        message = bytes.fromhex(digest)
    except (ValueError, binascii.Error):
        return 0, 0, f"{what} signature or digest is not well formed"
    for key in candidates:
        try:
            if receipt_of is None:
                verify_digest_signature(key, message, sig)
            else:
                verify_receipt(
                    key,
                    receipt_of.request_id,
                    message,
                    bytes.fromhex(receipt_of.response_digest),
                    sig,
                )
            return 1, 0, ""
        except (CryptoFailure, ValueError):
            continue
    return (
        0,
        0,
        (
            f"{what} signature does not verify with {who}'s signing key from the {keys.source}: "
            "the signature, the digest it covers or the entry's parties were altered"
        ),
    )


def check_entry_signatures(ev: LedgerEvent, keys: TrustedKeys) -> SignatureCheck:
    """Check every signature ``ev`` records; never raises for a bad entry."""
    requester, holder = _parties(ev)
    if ev.kind == "receipt":  # the requester's signed acknowledgement, ledgered by the holder
        if not ev.requester_signature:  # a receipt is that signature: none is no receipt
            return SignatureCheck(0, 0, "a receipt carries no requester signature")
        ok, unknown, problem = _one(
            keys, requester, "receipt", ev.requester_signature, ev.request_digest,
            ev.timestamp_ms, receipt_of=ev,
        )  # fmt: skip
        if not problem and ev.holder_signature:
            problem = "a receipt carries no holder signature"
        return SignatureCheck(ok, unknown, problem)
    checked = unverifiable = 0
    for who, what, sig, digest in (
        (requester, "requester's", ev.requester_signature, ev.request_digest),
        (holder, "holder's", ev.holder_signature, ev.response_digest),
    ):
        ok, unknown, problem = _one(keys, who, what, sig, digest, ev.timestamp_ms)
        if problem:
            return SignatureCheck(checked, unverifiable, problem)
        checked += ok
        unverifiable += unknown
    return SignatureCheck(checked, unverifiable)
