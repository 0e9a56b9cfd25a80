"""Peer witnessing: each gateway cosigns its peers' checkpoints (c2sp.org/tlog-witness).

Owns: building a witness request (newest checkpoint + consistency proof from
the size the peer last cosigned), the witness's decision (verify the log's
signature, the old size, the consistency proof; cosign and remember the newest
size atomically; on a fork or rollback keep BOTH signed checkpoints as
evidence and refuse), and storing the returned cosignature with the
checkpoint. ``WitnessStore`` is a small Protocol; ``SqliteWitnessStore`` is
the default.

Does not own: the network and the signed peer envelope (the lead wires
``PeerExchange.Witness``), or which peers to contact.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from gateway import crypto
from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, peer_pb2
from gateway.crypto import AnySigningKey, AnyVerifyKey, digest_equal
from gateway.errors import GatewayError, StorageFailure, VerificationFailed
from gateway.ledger.ledger import Ledger, default_origin
from gateway.ledger.merkle import MAX_PROOF_HASHES, TreeHasher, verify_consistency
from gateway.ledger.note import (
    Checkpoint,
    NoteVerifier,
    cosign,
    open_checkpoint,
    parse_note,
    verify_cosignature,
)
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.sqlitedb import open_store

S = ledger_pb2.WitnessStatus


@dataclass(frozen=True)
class WitnessState:
    origin: str
    size: int
    root: bytes
    note: str  # the newest signed checkpoint cosigned for this origin
    updated_ms: int


@dataclass(frozen=True)
class Evidence:
    origin: str
    kind: str  # "fork" | "rollback" | "inconsistent"
    held_note: str  # the checkpoint the witness had cosigned before
    shown_note: str  # the conflicting signed checkpoint
    detail: str
    recorded_ms: int


class WitnessConflict(StorageFailure):
    """The stored state moved between read and write (retry)."""


class WitnessStore(Protocol):
    def origins(self) -> list[str]:
        """Every log this witness has cosigned, sorted."""
        ...

    def latest(self, origin: str) -> WitnessState | None: ...

    def advance(self, expected_size: int | None, state: WitnessState) -> None:
        """Atomically replace the state if its size is still ``expected_size``
        (None: no state yet); else raise WitnessConflict."""
        ...

    def record_evidence(self, evidence: Evidence) -> None: ...

    def evidence(self, origin: str | None = None) -> list[Evidence]: ...


# Statements both witness stores (SQLite here, PostgreSQL in
# ``gateway.storage.postgres.witness``) run, with ``?`` placeholders.
ORIGINS_SQL = "SELECT origin FROM witness_state ORDER BY origin"
LATEST_SQL = "SELECT origin, size, root, note, updated_ms FROM witness_state WHERE origin = ?"
INSERT_EVIDENCE_SQL = (
    "INSERT INTO witness_evidence (origin, kind, held_note, shown_note, detail, recorded_ms)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


# The SQLite witness store's tables (also created by a restore merging one in).
WITNESS_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS witness_state (origin TEXT PRIMARY KEY, "
    "size INTEGER NOT NULL, root BLOB NOT NULL, note TEXT NOT NULL, "
    "updated_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS witness_evidence (id INTEGER PRIMARY KEY, "
    "origin TEXT NOT NULL, kind TEXT NOT NULL, held_note TEXT NOT NULL, "
    "shown_note TEXT NOT NULL, detail TEXT NOT NULL, recorded_ms INTEGER NOT NULL)",
)


def state_of(row: Sequence[Any] | None) -> WitnessState | None:
    return (
        None
        if row is None
        else WitnessState(str(row[0]), int(row[1]), bytes(row[2]), str(row[3]), int(row[4]))
    )


def evidence_values(e: Evidence) -> tuple[str, str, str, str, str, int]:
    return (e.origin, e.kind, e.held_note, e.shown_note, e.detail, e.recorded_ms)


def evidence_query(origin: str | None) -> tuple[str, tuple[str, ...]]:
    """The evidence recorded (about ``origin``, or about every log), oldest first."""
    sql = "SELECT origin, kind, held_note, shown_note, detail, recorded_ms FROM witness_evidence"
    if origin is None:
        return sql + " ORDER BY id", ()
    return sql + " WHERE origin = ? ORDER BY id", (origin,)


def evidence_of(rows: Sequence[Sequence[Any]]) -> list[Evidence]:
    return [Evidence(str(a), str(b), str(c), str(d), str(e), int(f)) for a, b, c, d, e, f in rows]


class SqliteWitnessStore:
    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._db = open_store(
            path,
            what="witness store",
            synchronous="FULL",
            schema=list(WITNESS_SCHEMA),
        )

    def origins(self) -> list[str]:
        """Every log this witness has cosigned, sorted."""
        with self._lock:
            rows = self._db.execute(ORIGINS_SQL).fetchall()
        return [str(r[0]) for r in rows]

    def latest(self, origin: str) -> WitnessState | None:
        with self._lock:
            return state_of(self._db.execute(LATEST_SQL, (origin,)).fetchone())

    def advance(self, expected_size: int | None, state: WitnessState) -> None:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    row = db.execute(
                        "SELECT size FROM witness_state WHERE origin = ?", (state.origin,)
                    ).fetchone()
                    current = None if row is None else int(row[0])
                    if current != expected_size:
                        raise WitnessConflict("witness state changed concurrently")
                    db.execute("DELETE FROM witness_state WHERE origin = ?", (state.origin,))
                    db.execute(
                        "INSERT INTO witness_state (origin, size, root, note, updated_ms) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (state.origin, state.size, state.root, state.note, state.updated_ms),
                    )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageFailure(f"witness store write failed: {exc}") from exc

    def record_evidence(self, evidence: Evidence) -> None:
        with self._lock:
            try:
                self._db.execute(INSERT_EVIDENCE_SQL, evidence_values(evidence))
            except sqlite3.Error as exc:
                raise StorageFailure(f"witness store write failed: {exc}") from exc

    def evidence(self, origin: str | None = None) -> list[Evidence]:
        with self._lock:
            return evidence_of(self._db.execute(*evidence_query(origin)).fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --------------------------------------------------------------------------
# Sender side
# --------------------------------------------------------------------------

_SEEN_PREFIX = "witness_seen:"


def make_witness_request(
    ledger: Ledger, header: peer_pb2.PeerHeader, peer_seen_size: int | None = None
) -> ledger_pb2.PeerWitnessRequest:
    """Newest checkpoint plus a consistency proof from the size the peer last cosigned.

    ``peer_seen_size`` None reads what this ledger remembered for the
    recipient (``header.recipient``) from its last successful response.
    """
    cp = ledger.latest_checkpoint()
    if cp is None:
        cp = ledger.checkpoint_now()
    size = cp.checkpoint.size
    if peer_seen_size is None:
        peer_seen_size = witnessed_size(ledger, header.recipient)
    old = min(peer_seen_size, size)
    proof = ledger.consistency_proof(old, size) if 0 < old < size else []
    return ledger_pb2.PeerWitnessRequest(
        header=header, old_size=old, consistency_proof=proof, checkpoint=cp.note
    )


def witnessed_size(ledger: Ledger, peer: str) -> int:
    value = ledger.store.get_meta(_SEEN_PREFIX + peer)
    return int(value) if value else 0


def apply_witness_response(
    ledger: Ledger,
    request: ledger_pb2.PeerWitnessRequest,
    response: ledger_pb2.PeerWitnessResponse,
    peer: str,
    witness_name: str,
    witness_key: AnyVerifyKey | Sequence[AnyVerifyKey],
    limits: Limits = DEFAULT_LIMITS,
) -> int:
    """Verify and store the cosignature; remember the peer's size. Returns that size.

    On CONFLICT the peer's known size is remembered (so the next request
    carries the right proof) and VerificationFailed is raised with the status.
    """
    status = response.status
    if status == S.WITNESS_STATUS_CONFLICT:
        ledger.store.set_meta(_SEEN_PREFIX + peer, str(response.known_size))
        raise VerificationFailed(
            f"witness {witness_name}: old size conflict, peer holds size {response.known_size}"
        )
    if status != S.WITNESS_STATUS_COSIGNED:
        name = ledger_pb2.WitnessStatus.Name(status)
        raise VerificationFailed(f"witness {witness_name} refused: {name}: {response.detail}")
    text, _ = parse_note(request.checkpoint, limits)
    cp = Checkpoint.parse(text)
    sig_line = response.cosignature
    _, sigs = parse_note(text + "\n" + sig_line, limits)
    if len(sigs) != 1:
        raise VerificationFailed("witness response: expected exactly one cosignature line")
    keys = tuple(witness_key) if isinstance(witness_key, (list, tuple)) else (witness_key,)
    # The witness's keys valid now (its current one, and a retired one in a
    # rotation's overlap): the line's key id says which one signed.
    matching = [k for k in keys if NoteVerifier(witness_name, k, 0x04).key_id == sigs[0].key_id]
    if not matching:
        raise VerificationFailed(f"cosignature is not from witness {witness_name}")
    verify_cosignature(text, sigs[0], NoteVerifier(witness_name, matching[0], 0x04))
    mine = [c for c in ledger.checkpoints() if c.checkpoint == cp]
    if not mine:
        raise VerificationFailed("witness response: checkpoint is not one of ours")
    ledger.add_cosignature_lines(mine[-1].seq, [sigs[0].line()])
    ledger.store.set_meta(_SEEN_PREFIX + peer, str(cp.size))
    return cp.size


# --------------------------------------------------------------------------
# Witness side
# --------------------------------------------------------------------------


def _reply(
    req: ledger_pb2.PeerWitnessRequest,
    status: Any,
    detail: str,
    known: int = 0,
    cosignature: str = "",
) -> ledger_pb2.PeerWitnessResponse:
    header = peer_pb2.PeerHeader(
        sender=req.header.recipient,
        recipient=req.header.sender,
        request_id=req.header.request_id,
        timestamp_ms=req.header.timestamp_ms,
        bundle_version=req.header.bundle_version,
    )
    return ledger_pb2.PeerWitnessResponse(
        header=header, status=status, cosignature=cosignature, known_size=known, detail=detail
    )


def handle_witness_request(
    req: ledger_pb2.PeerWitnessRequest,
    sender_jurisdiction: str,
    sender_ledger_key: AnyVerifyKey | Sequence[AnyVerifyKey],
    witness_signing_key: AnySigningKey,
    witness_name: str,
    store: WitnessStore,
    now: float,
    sender_origin: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ledger_pb2.PeerWitnessResponse:
    """Decide on one witness request. ``now`` is POSIX seconds (cosignature time).

    The response header's timestamp and request digest are left for the
    envelope layer to set.
    """
    origin = sender_origin or default_origin(sender_jurisdiction)
    now_ms = int(now * 1000)
    if req.header.sender != sender_jurisdiction:
        return _reply(req, S.WITNESS_STATUS_BAD_REQUEST, "header sender is not the signer")
    if len(req.consistency_proof) > MAX_PROOF_HASHES:
        return _reply(req, S.WITNESS_STATUS_BAD_REQUEST, "consistency proof too long")
    try:
        text, _ = parse_note(req.checkpoint, limits)
        claimed = Checkpoint.parse(text)
    except GatewayError as exc:
        return _reply(req, S.WITNESS_STATUS_BAD_REQUEST, f"malformed checkpoint: {exc}")
    if claimed.origin != origin:
        return _reply(
            req, S.WITNESS_STATUS_UNKNOWN_LOG, "checkpoint origin is not the sender's log"
        )
    try:
        cp = open_checkpoint(req.checkpoint, origin, sender_ledger_key, limits)
    except GatewayError:
        return _reply(req, S.WITNESS_STATUS_BAD_SIGNATURE, "checkpoint signature does not verify")
    keys: Sequence[AnyVerifyKey] = (
        sender_ledger_key if isinstance(sender_ledger_key, list | tuple) else [sender_ledger_key]  # type: ignore[list-item]
    )
    th = TreeHasher.for_suite(crypto.suite_of(keys[0]))
    if cp.size == 0 and not digest_equal(cp.root, th.empty_root):
        detail = "a size-0 checkpoint must carry the empty tree's root"
        return _reply(req, S.WITNESS_STATUS_BAD_REQUEST, detail)
    state = store.latest(origin)
    known = state.size if state else 0
    if state is not None:
        if cp.size < state.size:
            store.record_evidence(
                Evidence(
                    origin,
                    "rollback",
                    state.note,
                    req.checkpoint,
                    f"shown size {cp.size} < cosigned size {state.size}",
                    now_ms,
                )
            )
            return _reply(
                req, S.WITNESS_STATUS_ROLLBACK, f"rollback: size {cp.size} < {state.size}", known
            )
        if cp.size == state.size and not digest_equal(cp.root, state.root):
            store.record_evidence(
                Evidence(
                    origin,
                    "fork",
                    state.note,
                    req.checkpoint,
                    f"two different roots at size {cp.size}",
                    now_ms,
                )
            )
            return _reply(req, S.WITNESS_STATUS_FORK, f"fork at size {cp.size}", known)
    if req.old_size > cp.size:
        return _reply(req, S.WITNESS_STATUS_BAD_REQUEST, "old size beyond checkpoint size", known)
    if req.old_size != known:
        return _reply(req, S.WITNESS_STATUS_CONFLICT, "old size does not match", known)
    if state is not None and cp.size > state.size:
        try:
            if state.size == 0:
                # Every tree extends the empty one: nothing to prove (tlog-witness:
                # the proof is empty when the old size is 0), provided what was
                # cosigned at size 0 was the empty tree (checked above since; a
                # state kept by an earlier build is checked here).
                if req.consistency_proof:
                    return _reply(req, S.WITNESS_STATUS_BAD_REQUEST, "proof must be empty", known)
                if not digest_equal(state.root, th.empty_root):
                    raise VerificationFailed("cosigned size 0 with a root not the empty tree's")
            else:
                verify_consistency(
                    state.size, cp.size, list(req.consistency_proof), state.root, cp.root, th
                )
        except VerificationFailed as exc:
            store.record_evidence(
                Evidence(origin, "inconsistent", state.note, req.checkpoint, str(exc), now_ms)
            )
            return _reply(req, S.WITNESS_STATUS_INCONSISTENT, str(exc), known)
    elif req.consistency_proof:
        return _reply(req, S.WITNESS_STATUS_BAD_REQUEST, "proof must be empty", known)
    if state is None or cp.size > state.size:
        try:
            store.advance(
                None if state is None else state.size,
                WitnessState(origin, cp.size, cp.root, req.checkpoint, now_ms),
            )
        except WitnessConflict:
            latest = store.latest(origin)
            return _reply(
                req,
                S.WITNESS_STATUS_CONFLICT,
                "concurrent update, retry",
                latest.size if latest else 0,
            )
    line = cosign(text, witness_name, witness_signing_key, int(now)).line()
    return _reply(req, S.WITNESS_STATUS_COSIGNED, "cosigned", cp.size, line)
