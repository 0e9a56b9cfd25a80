"""The holder's side of subject access: find a person's entries and prove them.

Owns: ``HistoryResponder``, which for one normalised subject id computes the
blind index, collects the entries naming it and the entries covering whole
datasets (bulk transfers, statistics releases), and proves each: inclusion in
the newest cosigned checkpoint (or, for entries newer than that, in a fresh
checkpoint signed now) and, for named entries, membership of the blind index
in the entry's committed index set. And ``SubjectHolder``, the peer handler:
authenticate the signed request, apply the per-portal rate limit, open the
sealed id, answer sealed to the requester, ledger the request (without the
id) before the answer leaves.

The answer is the same whether or not the person exists in any register:
there is no lookup of the person, only of the index; an unknown person simply
has no named entries. Does not own: verification (``gateway.subject.verify``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from google.protobuf.message import DecodeError

from gateway import crypto, domains, identifiers
from gateway._proto.dataexchange.gateway.v1 import common_pb2, peer_pb2, subject_pb2
from gateway.catalogue import Catalogue
from gateway.envelope import envelope_digest
from gateway.errors import CryptoFailure, InvalidArgument, Rejected, StorageFailure
from gateway.exchange.peer import PeerResponder
from gateway.exchange.records import seal_context
from gateway.identity import SealKeys
from gateway.ledger.entry import decode_entry
from gateway.ledger.events import LedgerEvent, LedgerWriter, clean_reason, safe_identifier
from gateway.ledger.ledger import Ledger
from gateway.ledger.storage import CheckpointRow
from gateway.limits import Limits
from gateway.subject.index import blind_index, prove
from gateway.subject.ratelimit import RateLimiter
from gateway.subject.store import IndexedEntry, SubjectIndexStore
from gateway.trust import TrustBundle

PURPOSE: Final = "subject_access"
NOT_PARTICIPATING: Final = "this jurisdiction does not take part in subject access"


def _cosigned(note: str) -> bool:
    """A note with a signature line besides the log's own."""
    return note.count("\n\u2014 ") > 1


class HistoryResponder:
    """Entries concerning one person at this holder, with their proofs."""

    def __init__(
        self,
        ledger: Ledger,
        store: SubjectIndexStore,
        key: bytes,
        limits: Limits,
        *,
        sign_fresh: bool = True,
        legal_basis: Callable[[str, str], str] | None = None,
    ) -> None:
        self._ledger = ledger
        self._store = store
        self._key = key
        self._limits = limits
        self._sign_fresh = sign_fresh
        # (agreement id, agreement file digest) -> the legal basis it states,
        # or "" when that exact file is no longer in force.
        self._legal_basis = legal_basis
        # The newest cosigned checkpoint seen, so that every checkpoint is not
        # scanned on every request.
        self._cosigned: CheckpointRow | None = None

    def answer(self, subject_id: str) -> tuple[subject_pb2.SubjectHistoryProofs, bool]:
        """(proofs, truncated) for a normalised subject id."""
        blind = blind_index(self._key, subject_id)
        cap = self._limits.max_history_entries
        rows = self._store.named(blind, cap + 1) + self._store.covering(cap + 1)
        rows.sort(key=lambda r: (r.recorded_ms, r.request_id), reverse=True)
        truncated = len(rows) > cap
        # The stored size, not this instance's: replicas sharing the store append
        # (and link) entries this one has not loaded.
        size = self._ledger.store.size()
        located = [(r, i) for r in rows[:cap] if (i := self._locate(r, size)) is not None]
        located.sort(key=lambda ri: ri[1])
        out = subject_pb2.SubjectHistoryProofs(blind_index=blind)
        if not located:
            return out, truncated
        trees = self._trees(located[-1][1] + 1)
        out.checkpoints.extend(t.note for t in trees)
        for row, index in located:
            size = next(t.size for t in trees if t.size > index)
            stored = self._ledger.store.entries(index, index + 1)[0]
            p = out.entries.add(
                index=index,
                entry=stored.entry,
                tree_size=size,
                inclusion_proof=self._ledger.inclusion_proof(index, size),
                fields=[common_pb2.FieldRelease(name=n, transform=t) for n, t in row.fields],
            )
            if self._legal_basis is not None:
                ev = decode_entry(stored.entry, self._limits).event
                # An entry v2 signs its own legal basis (the portal shows that one);
                # only an older entry needs the agreement in force looked up.
                if ev.agreement_id and not ev.legal_basis:
                    p.legal_basis = self._legal_basis(ev.agreement_id, ev.agreement_digest)
            if row.coverage == "named":
                proof = prove(self._store.indexes_of(row.request_id), blind)
                p.set_position = proof.position
                p.set_proof.extend(proof.hashes)
        return out, truncated

    def _locate(self, row: IndexedEntry, size: int) -> int | None:
        """The ledger index of a row's entry (None: its append never happened);
        ``size`` is the stored ledger's."""
        if row.entry_index is not None:
            return row.entry_index if row.entry_index < size else None
        for r in self._ledger.store.find_request(row.request_id):
            if decode_entry(r.entry, self._limits).event.role == "holder":
                return r.index
        return None

    def _newest_cosigned(self, need: int) -> CheckpointRow | None:
        """The newest cosigned checkpoint; a full scan only when the one cached
        does not cover ``need`` entries (a newer one may have been cosigned)."""
        store = self._ledger.store
        latest = store.latest_checkpoint()
        cached = self._cosigned
        if latest is not None and _cosigned(latest.note):
            self._cosigned = latest
        elif cached is not None and cached.size >= need:  # its note may have gained cosignatures
            self._cosigned = store.checkpoint_covering(cached.size) or cached
        else:
            rows = store.checkpoints()
            self._cosigned = next((r for r in reversed(rows) if _cosigned(r.note)), None)
        return self._cosigned

    def _trees(self, need: int) -> list[CheckpointRow]:
        """The newest cosigned checkpoint, and a newer one if it does not cover ``need``."""
        cosigned = self._newest_cosigned(need)
        trees = [cosigned] if cosigned is not None else []
        if cosigned is None or cosigned.size < need:
            if self._sign_fresh:
                self._ledger.checkpoint_now()
            latest = self._ledger.store.latest_checkpoint()
            if latest is None or latest.size < need:
                raise StorageFailure("no signed checkpoint covers the ledger's newest entries")
            trees.append(latest)
        return trees


class SubjectHolder:
    """Peer handler of ``PeerExchange.SubjectHistory``."""

    def __init__(
        self,
        responder: PeerResponder,
        history: HistoryResponder,
        bundle: Callable[[], TrustBundle],
        catalogue: Callable[[], Catalogue],
        ledger: LedgerWriter,
        seal_keys: SealKeys,
        clock_ms: Callable[[], int],
        limits: Limits,
        rng: crypto.Rng = os.urandom,
    ) -> None:
        self._responder = responder
        self._history = history
        self._bundle = bundle
        self._catalogue = catalogue
        self._ledger = ledger
        self._seal_keys = seal_keys
        self._clock = clock_ms
        self._limits = limits
        self._rng = rng
        self._rate = RateLimiter(limits.subject_access_per_minute)
        self._member_rate = RateLimiter(limits.subject_access_per_member_per_minute)

    def _digest(self, data: bytes) -> bytes:
        """The federation suite's hash (payload digests, as record exchanges record them)."""
        return crypto.suite_of(self._seal_keys.current).digest(data)

    def handle(
        self, envelope: peer_pb2.SignedEnvelope, tls_identity: str | None
    ) -> peer_pb2.SignedEnvelope:
        request = self._responder.open(
            envelope, domains.PEER_SUBJECT_REQUEST, subject_pb2.PeerSubjectRequest, tls_identity
        )
        # Authenticated from here: every outcome is signed and ledgered.
        msg = request.message
        me, requester = self._responder.me, request.sender
        response = subject_pb2.PeerSubjectResponse()
        reason = "answered"
        plaintext = b""
        try:
            portal = identifiers.service_system(msg.service_system)
            if not self._catalogue().subject_access.participate:
                reason = NOT_PARTICIPATING
            else:
                self._member_rate.take(requester, f"member {requester} (all its portals)")
                self._rate.take(f"{requester}/{portal}", f"portal {portal} of {requester}")
                try:
                    query = subject_pb2.SubjectQuery.FromString(
                        self._seal_keys.open(
                            domains.SEAL_SUBJECT_QUERY,
                            msg.sealed_query,
                            seal_context(requester, me, request.request_id),
                        )
                    )
                except (CryptoFailure, DecodeError, ValueError) as exc:
                    raise InvalidArgument("sealed_query could not be opened") from exc
                subject = identifiers.subject_id(query.subject_id)
                proofs, truncated = self._history.answer(subject)
                plaintext = proofs.SerializeToString(deterministic=True)
                response.participating = True
                response.entry_count = len(proofs.entries)
                response.truncated = truncated
                response.sealed_history = crypto.seal(
                    self._bundle().member(requester).seal_key,
                    domains.SEAL_SUBJECT_HISTORY,
                    plaintext,
                    seal_context(me, requester, request.request_id),
                    self._rng,
                )
        except Rejected as exc:  # the requester's to fix: a signed, ledgered refusal
            response.Clear()
            response.error_code = exc.grpc_code.name
            response.reason = reason = str(exc)
        out = self._responder.respond(request, response, domains.PEER_SUBJECT_RESPONSE)
        self._ledger.append(
            LedgerEvent(
                kind="subject_access",
                role="holder",
                request_id=request.request_id,
                timestamp_ms=self._clock(),
                local=me,
                counterparty=requester,
                service_system=safe_identifier(msg.service_system, identifiers.is_service_system),
                dataset="",
                purpose=PURPOSE,
                decision="deny" if response.error_code else "allow",
                reason=clean_reason(reason, self._limits),
                record_count=response.entry_count,
                payload_digest=self._digest(plaintext).hex() if plaintext else "",
                request_digest=request.digest_hex,
                requester_signature=request.signature_b64,
                holder_signature=crypto.b64(out.signature),
                response_digest=envelope_digest(out, self._responder.suite).hex(),
            )
        )
        return out
