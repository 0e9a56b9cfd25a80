"""Plain helpers shared by the ledger tests (fixtures live in conftest.py).

Keys are per cipher suite: intl keys come from fixed seeds, gm keys are
generated once per process and seed (GmSSL takes no seed), so within a run the
same (suite, seed) is always the same key. Helpers that sign or build keys
default to the suite the running test chose (conftest's ``suite`` fixture
calls ``use_suite``; intl otherwise).
"""

from __future__ import annotations

import functools
from typing import Any

from gateway import crypto
from gateway.crypto import AnySigningKey, b64
from gateway.ledger.events import LedgerEvent

ORIGIN = "110000.gateway.dataexchange.cn/ledger"
_ACTIVE = ["intl"]


def use_suite(name: str) -> None:
    """The suite helpers sign with until the next call (the ``suite`` fixture sets it)."""
    _ACTIVE[0] = crypto.check_suite_name(name)


def active_suite() -> str:
    return _ACTIVE[0]


@functools.cache
def fixed_key(suite: str, seed: bytes) -> AnySigningKey:
    """The key for ``seed`` in ``suite``: intl from the seed, gm generated once per run."""
    if suite == "intl":
        return crypto.SigningKey(seed)
    return crypto.suite(suite).generate_signing_key()


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_event(i: int = 0, **kw: Any) -> LedgerEvent:
    base: dict[str, Any] = dict(
        kind="transfer",
        role="holder",
        request_id=f"req-{i:06d}",
        timestamp_ms=1_700_000_000_000 + i * 1000,
        local="110000",
        counterparty="120000",
        service_system="tj-social-security",
        dataset="household_register",
        purpose="benefit_eligibility",
        decision="allow",
        reason="agreement bj-tj-007 allows",
        record_count=i % 7,
        agreement_id="bj-tj-007",
        agreement_digest="a" * 64,
        policy_set_digest="b" * 64,
        payload_digest=f"{i:064x}",
        request_digest="d" * 64,
        response_digest="e" * 64,
        details=(("fields", "name,dob"),),
    )
    base.update(kw)
    # Real signatures by the test federation's members (cached: one per signer
    # and digest), unless the caller sets its own.
    requester, holder = (
        (base["local"], base["counterparty"])
        if base["role"] == "requester"
        else (base["counterparty"], base["local"])
    )
    suite = active_suite()
    if "requester_signature" not in kw:
        base["requester_signature"] = _digest_signature(suite, requester, base["request_digest"])
    if "holder_signature" not in kw:
        base["holder_signature"] = _digest_signature(suite, holder, base["response_digest"])
    return LedgerEvent(**base)


@functools.lru_cache(maxsize=256)
def _digest_signature(suite: str, jurisdiction: str, digest: str) -> str:
    from gateway import domains

    if not digest or not jurisdiction.isdigit():
        return ""
    key = signing_key(jurisdiction, suite)
    return b64(key.sign(domains.ENVELOPE_DIGEST, bytes.fromhex(digest)))


# --------------------------------------------------------------------------
# A three-member federation's keys for verification tests
# --------------------------------------------------------------------------

MEMBERS = ("110000", "120000", "130000")


def ledger_seed(j: str) -> bytes:
    """110000's ledger key is the conftest's ``log_key``; the others are fixed too."""
    return bytes(range(32)) if j == "110000" else bytes([int(j[:2])]) * 32


def signing_seed(j: str) -> bytes:
    return bytes([int(j[:2]) + 100]) * 32


def ledger_key(j: str, suite: str | None = None) -> AnySigningKey:
    """Member ``j``'s ledger (and witness) key in ``suite`` (default: the test's)."""
    return fixed_key(suite or active_suite(), ledger_seed(j))


def signing_key(j: str, suite: str | None = None) -> AnySigningKey:
    """Member ``j``'s envelope signing key in ``suite`` (default: the test's)."""
    return fixed_key(suite or active_suite(), signing_seed(j))


def witness_name(j: str) -> str:
    return f"{j}.gateway.dataexchange.cn/witness"


def federation_keys(suite: str | None = None) -> Any:
    """TrustedKeys of the three members (as a trust bundle would list them)."""
    from gateway.ledger.trustkeys import KeyEntry, Signer, TrustedKeys

    signers = tuple(
        Signer(j, f"{j}.gateway.dataexchange.cn/ledger", witness_name(j)) for j in MEMBERS
    )
    entries = tuple(
        e
        for j in MEMBERS
        for e in (
            KeyEntry(j, "ledger", ledger_key(j, suite).verify_key),
            KeyEntry(j, "witness", ledger_key(j, suite).verify_key),
            KeyEntry(j, "signing", signing_key(j, suite).verify_key),
        )
    )
    return TrustedKeys(signers, entries, "test federation")


def rotated_witness_key(j: str, suite: str | None = None) -> AnySigningKey:
    """The witness key member ``j`` cosigns with after rotating it (``write_trust_bundle``)."""
    return fixed_key(suite or active_suite(), bytes([int(j[:2]) + 200]) * 32)


# Until when a witness key rotated by ``write_trust_bundle`` was valid: after every
# cosignature ``witness_round`` stamps by default.
WITNESS_ROTATED_AT = 1_700_500_000


def write_trust_bundle(
    folder: Any,
    *,
    ledger_seeds: dict[str, bytes] | None = None,
    rotated_witnesses: tuple[str, ...] = (),
) -> Any:
    """A signed trust bundle file for MEMBERS in the test's suite (with authority.pub beside it).

    ``rotated_witnesses``: members whose witness key was rotated at
    ``WITNESS_ROTATED_AT``: the bundle lists ``rotated_witness_key(j)`` as current and the
    key ``witness_round`` cosigns with as retired."""
    import datetime as dt

    from gateway.crypto import cert_fingerprint, make_tls_identity
    from gateway.keyring import RetiredKey
    from gateway.trust import AUTHORITY_PUB_FILE, BUNDLE_FILE, Member, sign_bundle

    suite = crypto.suite(active_suite())
    seeds = ledger_seeds or {}
    members = []
    for n, j in enumerate(MEMBERS):
        tls = make_tls_identity(f"gw-{j}", [f"gw{n}.example"])
        rotated: dict[str, Any] = {}
        if j in rotated_witnesses:
            until = dt.datetime.fromtimestamp(WITNESS_ROTATED_AT, dt.UTC)
            old = ledger_key(j).verify_key.encode()
            rotated = {
                "witness_key": rotated_witness_key(j).verify_key,
                "retired": (RetiredKey("witness", old, until),),
            }
        members.append(
            Member(
                jurisdiction=j,
                name=f"member {j}",
                endpoint=f"127.0.0.1:{9000 + n}",
                signing_key=signing_key(j).verify_key,
                ledger_key=fixed_key(suite.name, seeds.get(j, ledger_seed(j))).verify_key,
                seal_key=suite.generate_seal_key(lambda k, n=n: bytes([50 + n]) * k).public_key,
                tls_cert_pem=tls.cert_pem,
                tls_fingerprint=cert_fingerprint(tls.cert_pem),
                datasets=("household_register",),
                **rotated,
            )
        )
    authority = fixed_key(suite.name, bytes([1]) * 32)
    now = dt.datetime.now(dt.UTC)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BUNDLE_FILE).write_bytes(
        sign_bundle("test", 1, now, now + dt.timedelta(days=1), members, authority)
    )
    (folder / AUTHORITY_PUB_FILE).write_text(authority.verify_key.encode() + "\n")
    return folder / BUNDLE_FILE


def witness_round(ledger: Any, j: str, store_path: Any, now: float = 1_700_000_100.0) -> int:
    """Member ``j`` witnesses ``ledger`` (110000's) once; returns the cosigned size."""
    from gateway._proto.dataexchange.gateway.v1 import peer_pb2
    from gateway.ledger.witness import (
        SqliteWitnessStore,
        apply_witness_response,
        handle_witness_request,
        make_witness_request,
    )

    wkey = ledger_key(j)
    store = SqliteWitnessStore(store_path)
    try:
        req = make_witness_request(ledger, peer_pb2.PeerHeader(sender="110000", recipient=j))
        resp = handle_witness_request(
            req, "110000", ledger_key("110000").verify_key, wkey,
            witness_name(j), store, now,
        )  # fmt: skip
        return apply_witness_response(ledger, req, resp, j, witness_name(j), wkey.verify_key)
    finally:
        store.close()
