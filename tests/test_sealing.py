"""Sealing sessions: one agreement serves a bounded window of payloads, nothing more."""

from __future__ import annotations

import pytest

from gateway import crypto
from gateway.errors import CryptoFailure
from gateway.limits import Limits
from gateway.sealing import SealSessions

ALICE = crypto.SealPrivateKey.generate()
BOB = crypto.SealPrivateKey.generate()
CAROL = crypto.SealPrivateKey.generate()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _sessions(
    key: crypto.SealPrivateKey, clock: FakeClock | None = None, **limits: int
) -> SealSessions:
    return SealSessions(key, Limits(**limits), clock=clock or FakeClock())


def test_session_blobs_are_ordinary_sealed_blobs() -> None:
    s = _sessions(ALICE)
    blobs = [s.seal(BOB.public_key, "dom", b"records %d" % i, b"ctx") for i in range(3)]
    assert len({crypto.sealed_session_id(b) for b in blobs}) == 1  # one agreement
    assert len({b[33:45] for b in blobs}) == 3  # fresh nonces
    for i, b in enumerate(blobs):
        assert crypto.open_sealed(BOB, "dom", b, b"ctx") == b"records %d" % i
        assert _sessions(BOB).open("dom", b, b"ctx") == b"records %d" % i


def test_session_rotates_after_its_message_budget() -> None:
    s = _sessions(ALICE, seal_session_messages=2)
    ids = [crypto.sealed_session_id(s.seal(BOB.public_key, "d", b"x", b"")) for _ in range(5)]
    assert ids[0] == ids[1] != ids[2] == ids[3] != ids[4]


def test_session_rotates_after_its_lifetime() -> None:
    clock = FakeClock()
    s = _sessions(ALICE, clock, seal_session_seconds=300)
    first = crypto.sealed_session_id(s.seal(BOB.public_key, "d", b"x", b""))
    clock.now += 299
    assert crypto.sealed_session_id(s.seal(BOB.public_key, "d", b"x", b"")) == first
    clock.now += 1
    assert crypto.sealed_session_id(s.seal(BOB.public_key, "d", b"x", b"")) != first


def test_each_recipient_gets_its_own_agreement() -> None:
    s = _sessions(ALICE)
    to_bob = s.seal(BOB.public_key, "d", b"x", b"")
    to_carol = s.seal(CAROL.public_key, "d", b"x", b"")
    assert crypto.sealed_session_id(to_bob) != crypto.sealed_session_id(to_carol)
    with pytest.raises(CryptoFailure):
        _sessions(CAROL).open("d", to_bob, b"")


def test_cached_agreement_does_not_open_other_domain_or_context() -> None:
    sender, opener = _sessions(ALICE), _sessions(BOB)
    blob = sender.seal(BOB.public_key, "dom", b"records", b"110000\n130000\nid")
    assert opener.open("dom", blob, b"110000\n130000\nid") == b"records"  # now cached
    with pytest.raises(CryptoFailure):
        opener.open("other", blob, b"110000\n130000\nid")
    with pytest.raises(CryptoFailure):
        opener.open("dom", blob, b"110000\n120000\nid")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(CryptoFailure):
        opener.open("dom", tampered, b"110000\n130000\nid")


def test_low_order_ephemeral_key_is_refused_and_not_cached() -> None:
    blob = crypto.seal(BOB.public_key, "d", b"x", b"")
    forged = crypto.SEAL_VERSION + bytes(32) + blob[33:]
    opener = _sessions(BOB)
    for _ in range(2):
        with pytest.raises(CryptoFailure):
            opener.open("d", forged, b"")
    assert crypto.sealed_session_id(forged) not in opener._in


def test_opener_keeps_a_bounded_number_of_agreements() -> None:
    opener = _sessions(BOB, seal_open_sessions=4)
    for _ in range(10):
        opener.open("d", crypto.seal(BOB.public_key, "d", b"x", b""), b"")
    assert len(opener._in) == 4


def test_opener_forgets_agreements_older_than_twice_the_window() -> None:
    clock = FakeClock()
    opener = _sessions(BOB, clock, seal_session_seconds=10)
    blob = crypto.seal(BOB.public_key, "d", b"x", b"")
    opener.open("d", blob, b"")
    first = opener._in[crypto.sealed_session_id(blob)][0]
    clock.now += 25
    opener.open("d", blob, b"")
    assert opener._in[crypto.sealed_session_id(blob)][0] is not first
