"""Sealing sessions: amortise the ephemeral key agreement between pinned peers.

Owns: the policy of reusing one sealing agreement (``crypto.SealSession``)
for several payloads to the same recipient, and the recipient's cache of
agreements it has already computed (``crypto.OpenSession``). A session to a
recipient is replaced after ``Limits.seal_session_messages`` seals or
``Limits.seal_session_seconds`` seconds, whichever comes first; a recipient
keeps at most ``Limits.seal_open_sessions`` agreements, each for at most
twice that time. Suite-neutral: the primitives (agreement, key derivation,
AEAD) are the crypto module's; this module only decides when to make a new
one and what to keep.

Exposure: each sealed blob still names its session (the ephemeral public
key, inside the signed payload), so the wire format and ``crypto.open_sealed``
are unchanged. What one compromise of a sender's memory exposes grows from
the payloads being sealed at that moment to the payloads of its current
session with each recipient (at most the bounds above); a compromise of a
recipient's static sealing key exposes everything sealed to it, with or
without sessions. See README "Security model".

Does not own: what is sealed or the associated data (callers), key storage.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway import crypto
from gateway.errors import CryptoFailure
from gateway.identity import SealKeys
from gateway.limits import DEFAULT_LIMITS, Limits


@dataclass
class _Outbound:
    session: crypto.SealSessionLike
    created: float
    uses: int = 0


class SealSessions:
    """One gateway's sealing sessions: outbound per recipient, inbound agreements cached."""

    def __init__(
        self,
        private: SealKeys | crypto.AnySealPrivateKey,
        limits: Limits = DEFAULT_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: crypto.Rng = os.urandom,
    ) -> None:
        self._keys = private if isinstance(private, SealKeys) else SealKeys(private)
        self._max_uses = limits.seal_session_messages
        self._max_age = float(limits.seal_session_seconds)
        self._max_open = limits.seal_open_sessions
        self._clock = clock
        self._rng = rng
        self._lock = threading.Lock()
        self._out: dict[crypto.AnySealPublicKey, _Outbound] = {}
        self._in: OrderedDict[bytes, tuple[crypto.intl.OpenSession, float]] = OrderedDict()

    def seal(
        self, recipient: crypto.AnySealPublicKey, domain: str, plaintext: bytes, aad: bytes
    ) -> bytes:
        """``crypto.seal``'s format, under the recipient's current session."""
        now = self._clock()
        with self._lock:
            out = self._out.get(recipient)
            if out is None or out.uses >= self._max_uses or now - out.created >= self._max_age:
                out = self._out[recipient] = _Outbound(
                    crypto.seal_session(recipient, self._rng), now
                )
            out.uses += 1
            session = out.session
        return session.seal(domain, plaintext, aad, self._rng)

    def open(self, domain: str, blob: bytes, aad: bytes) -> bytes:
        """Open with this gateway's keys (``SealKeys``: current, then retired), reusing
        the agreement that opened the session's earlier payloads."""
        sid = crypto.sealed_session_id(blob)
        if sid is None:  # a suite without reusable agreements
            return bytes(self._keys.open(domain, blob, aad))
        now = self._clock()
        with self._lock:
            hit = self._in.get(sid)
            if hit is not None and now - hit[1] < 2 * self._max_age:
                self._in.move_to_end(sid)
                cached: crypto.intl.OpenSession | None = hit[0]
            else:
                cached = None
        if cached is not None:
            return cached.open(domain, blob, aad)
        for key in self._keys.keys:
            try:
                session = crypto.open_session(key, sid)
                plaintext = session.open(domain, blob, aad)
            except CryptoFailure:
                continue
            with self._lock:  # only an agreement that opened something is kept
                self._in[sid] = (session, now)
                self._in.move_to_end(sid)
                while len(self._in) > self._max_open:
                    self._in.popitem(last=False)
            return plaintext
        # Not under any key held now: SealKeys re-reads rotated keys from disk once.
        return bytes(self._keys.open(domain, blob, aad))

    def forget(self) -> None:
        """Drop every session (e.g. after the sealing key is rotated)."""
        with self._lock:
            self._out.clear()
            self._in.clear()
