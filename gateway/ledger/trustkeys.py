"""Which keys an offline verifier trusts: the trust bundle's, looked up by member, kind and time.

Owns: ``TrustedKeys``, a frozen index of (member, kind of key, validity
interval, key) built from a verified trust bundle, and the one question every
ledger and evidence verification asks of it: "the keys of kind K that the
trust bundle lists for member M at time T" (``TrustedKeys.keys``). Also the
names members sign under (ledger origin, witness name), so a signature line
can be traced back to a member.

Does not own: verifying the trust bundle (``gateway.trust``), or any
signature check (callers verify with the keys returned here).

Key kinds: ``ledger`` (checkpoint signatures), ``witness`` (cosignatures)
and ``signing`` (envelope signatures over requests, answers and receipts).
``member_key_entries`` is the only place that reads keys out of a ``Member``:
it yields one entry per key of the member's key rings (``gateway.keyring``),
the retired ones with their validity intervals.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gateway.crypto import AnyVerifyKey
from gateway.errors import VerificationFailed

if TYPE_CHECKING:
    from gateway.keyring import KeyKind as RingKind
    from gateway.trust import Member, TrustBundle

KeyKind = Literal["ledger", "witness", "signing"]
KINDS: tuple[KeyKind, ...] = ("ledger", "witness", "signing")
# The trust bundle's name for each kind (``gateway.keyring``).
_RING_KIND: dict[KeyKind, RingKind] = {
    "ledger": "ledger",
    "witness": "witness",
    "signing": "envelope",
}


@dataclass(frozen=True)
class KeyEntry:
    """One trusted key of one member, valid in ``[valid_from_ms, valid_until_ms)``."""

    jurisdiction: str
    kind: KeyKind
    key: AnyVerifyKey
    valid_from_ms: int | None = None  # None: since always
    valid_until_ms: int | None = None  # None: until further notice

    def valid_at(self, at_ms: int | None) -> bool:
        if at_ms is None:
            return True
        if self.valid_from_ms is not None and at_ms < self.valid_from_ms:
            return False
        return self.valid_until_ms is None or at_ms < self.valid_until_ms


@dataclass(frozen=True)
class Signer:
    """Names one member signs under."""

    jurisdiction: str
    origin: str  # its ledger's checkpoint origin (log signature key name)
    witness_name: str  # its cosignature key name


def witness_name_of(jurisdiction: str) -> str:
    return f"{jurisdiction}.gateway.dataexchange.cn/witness"


def _ms(when: _dt.datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


def member_key_entries(member: Member) -> Iterator[KeyEntry]:
    """Every key the trust bundle lists for ``member`` (its key rings: the current key,
    valid at any time as ``KeyRing.at`` has it, and each retired key in its interval)."""
    for kind in KINDS:
        ring = member.ring(_RING_KIND[kind])
        yield KeyEntry(member.jurisdiction, kind, ring.current)
        for key, not_before, not_after in ring.retired:
            yield KeyEntry(member.jurisdiction, kind, key, _ms(not_before), _ms(not_after))


@dataclass(frozen=True)
class TrustedKeys:
    """Keys an offline verifier trusts, and the names they sign under."""

    signers: tuple[Signer, ...]
    entries: tuple[KeyEntry, ...]
    source: str = "trust bundle"

    @classmethod
    def from_bundle(cls, bundle: TrustBundle) -> TrustedKeys:
        return cls(
            tuple(Signer(m.jurisdiction, m.origin, m.witness_name) for m in bundle.members),
            tuple(e for m in bundle.members for e in member_key_entries(m)),
            f"trust bundle {bundle.federation} v{bundle.version}",
        )

    @classmethod
    def single(
        cls,
        jurisdiction: str,
        origin: str,
        ledger_key: AnyVerifyKey,
        signing_key: AnyVerifyKey | None = None,
        source: str = "given key",
    ) -> TrustedKeys:
        """One member's keys (e.g. ``--key`` on the command line)."""
        entries = [
            KeyEntry(jurisdiction, "ledger", ledger_key),
            KeyEntry(jurisdiction, "witness", ledger_key),
        ]
        if signing_key is not None:
            entries.append(KeyEntry(jurisdiction, "signing", signing_key))
        return cls(
            (Signer(jurisdiction, origin, witness_name_of(jurisdiction)),), tuple(entries), source
        )

    def merged(self, other: TrustedKeys) -> TrustedKeys:
        return TrustedKeys(
            self.signers + tuple(s for s in other.signers if s not in self.signers),
            self.entries + tuple(e for e in other.entries if e not in self.entries),
            self.source,
        )

    # -- the one lookup ------------------------------------------------------

    def keys(
        self, jurisdiction: str, kind: KeyKind, at_ms: int | None = None
    ) -> tuple[AnyVerifyKey, ...]:
        """The keys of ``kind`` the trust bundle lists for ``jurisdiction`` at ``at_ms``
        (None: at any time)."""
        return tuple(
            e.key
            for e in self.entries
            if e.jurisdiction == jurisdiction and e.kind == kind and e.valid_at(at_ms)
        )

    def log_keys(self, origin: str) -> tuple[AnyVerifyKey, ...]:
        """The ledger keys of the member whose log is ``origin``; VerificationFailed if none."""
        signer = self.by_origin(origin)
        found = self.keys(signer.jurisdiction, "ledger") if signer else ()
        if not found:
            raise VerificationFailed(f"origin {origin!r} is not in the {self.source}")
        return found

    # -- names ---------------------------------------------------------------

    def by_origin(self, origin: str) -> Signer | None:
        return next((s for s in self.signers if s.origin == origin), None)

    def by_witness(self, name: str) -> Signer | None:
        return next((s for s in self.signers if s.witness_name == name), None)

    def by_jurisdiction(self, jurisdiction: str) -> Signer | None:
        return next((s for s in self.signers if s.jurisdiction == jurisdiction), None)

    def witnesses(self, exclude: str = "") -> tuple[Signer, ...]:
        """Every member that can cosign, except ``exclude`` (a log does not witness itself)."""
        return tuple(s for s in self.signers if s.jurisdiction != exclude)

    def jurisdictions(self) -> tuple[str, ...]:
        return tuple(s.jurisdiction for s in self.signers)
