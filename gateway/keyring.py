"""Keys with validity intervals: which of a member's keys was valid when.

Owns: the kinds of member key (``envelope``, ``sealing``, ``ledger``,
``witness``, ``tls``), a retired key with the interval in which it was valid
(``RetiredKey``), and ``KeyRing``, a member's keys of one kind over time (the
current one plus every retired one) with the one lookup every verifier uses:
``ring.at(t)``, the keys of that kind valid at time ``t``. Pure values; the
trust bundle (``gateway.trust``) builds them from its signed payload.

Why a ring and not one key: keys are rotated (TLS certificates expire; a
bureau may replace a key at any time), and a ledger checkpoint or an evidence
file signed before a rotation must still verify after it, with keys taken from
the trust bundle only, never from the thing being verified.

Interval semantics: a retired key is valid in ``[not_before, not_after)``
(``not_before`` None: since the member joined). The current key is valid from
``since`` (None: always) with no end. During a rotation's overlap window the
old key's ``not_after`` lies in the future, so both keys are valid.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from gateway.crypto import AnyVerifyKey as VerifyKey
from gateway.crypto import digest_equal
from gateway.errors import clip

KeyKind = Literal["envelope", "sealing", "ledger", "witness", "tls"]
KEY_KINDS: Final[tuple[KeyKind, ...]] = ("envelope", "sealing", "ledger", "witness", "tls")


def utc_from_ms(ms: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC)


@dataclass(frozen=True)
class RetiredKey:
    """A key a member no longer uses, with the interval it was valid in.

    ``value`` is the key as listed in the bundle: base64 of the raw public key
    (envelope, sealing, ledger, witness) or the PEM certificate (tls).
    """

    kind: KeyKind
    value: str
    not_after: _dt.datetime
    not_before: _dt.datetime | None = None

    def valid_at(self, when: _dt.datetime) -> bool:
        if self.not_before is not None and when < self.not_before:
            return False
        return when < self.not_after


@dataclass(frozen=True)
class KeyRing:
    """One member's Ed25519 keys of one kind over time."""

    kind: KeyKind
    current: VerifyKey
    retired: tuple[tuple[VerifyKey, _dt.datetime | None, _dt.datetime], ...] = ()

    @classmethod
    def single(cls, kind: KeyKind, key: VerifyKey) -> KeyRing:
        """A ring of one key valid at any time (no rotation history)."""
        return cls(kind, key)

    def at(self, when: _dt.datetime | int | None) -> tuple[VerifyKey, ...]:
        """The keys valid at ``when`` (a UTC datetime or Unix milliseconds),
        current first; ``None`` means every key the ring ever held."""
        if when is None:
            return self.all()
        if isinstance(when, int):
            when = utc_from_ms(when)
        old = [k for k, nb, na in self.retired if (nb is None or when >= nb) and when < na]
        return (self.current, *old)

    def all(self) -> tuple[VerifyKey, ...]:
        return (self.current, *(k for k, _, _ in self.retired))

    def contains(self, key: VerifyKey, when: _dt.datetime | int | None = None) -> bool:
        """Is ``key`` one of this ring's keys (valid at ``when``, if given)?"""
        found = False
        for k in self.at(when):  # no early exit
            found |= digest_equal(k.raw, key.raw)
        return found


def ring_from(
    kind: KeyKind,
    current: VerifyKey,
    retired: Iterable[RetiredKey],
    decode: Callable[[str, str], VerifyKey],
) -> KeyRing:
    """A ring from the current key and the bundle's retired keys of ``kind``
    (``decode`` reads a key's text form in the federation's suite)."""
    old = tuple(
        (decode(r.value, f"retired {kind} key"), r.not_before, r.not_after)
        for r in retired
        if r.kind == kind
    )
    return KeyRing(kind, current, old)


def check_retired(retired: Sequence[RetiredKey]) -> None:
    """Known kinds and well-formed intervals (raises ValueError); how many
    there may be is ``Limits.max_retired_keys``, checked where bytes are parsed."""
    for r in retired:
        if r.kind not in KEY_KINDS:
            raise ValueError(f"retired key kind {clip(repr(r.kind))} is not one of {KEY_KINDS}")
        if r.not_before is not None and r.not_before >= r.not_after:
            raise ValueError(f"retired {r.kind} key: not_before must be before not_after")
