"""Verifying a holder's subject-access answer: pure, over bytes and trusted keys.

Owns: ``HolderKeys`` (what the requester trusts about one holder: its log
origin and ledger key, and the witnesses' keys, all from the trust bundle,
never from the answer) and ``verify_answer``, which checks every part of a
``SubjectHistoryProofs`` and returns the verified ``AccessItem`` values:

- each checkpoint note carries a valid log signature by the holder's ledger
  key; cosignatures are checked against the witness keys the trust bundle
  lists at each cosignature's time (``gateway.ledger.verify``'s rule, so a
  witness's retired key still counts for what it cosigned) and named;
- each entry decodes canonically, sits at the index it claims, is a holder
  entry of that holder, and its leaf is included (RFC 9162) in the tree of the
  checkpoint it names;
- a named entry's committed index set contains the person's blind index
  (membership proof to the root recorded in the entry);
- the fields shown are the ones whose digest the entry records.

The legal basis shown is the entry's own when it records one; otherwise the
one the holder reports from the agreement file whose digest the entry records.

Any failure raises ``VerificationFailed`` naming the entry and the check.
Does not own: fetching answers (``gateway.subject.requester``), protobuf
wire types beyond reading them.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway import crypto
from gateway._proto.dataexchange.gateway.v1 import subject_pb2
from gateway.crypto import AnyVerifyKey
from gateway.errors import GatewayError, VerificationFailed
from gateway.ledger.entry import decode_entry, header_of
from gateway.ledger.merkle import SHA256_TREE, TreeHasher, verify_inclusion
from gateway.ledger.note import Checkpoint, open_checkpoint
from gateway.ledger.trustkeys import TrustedKeys
from gateway.ledger.verify import checkpoint_cosignatures
from gateway.limits import Limits
from gateway.subject.index import (
    INDEX_LEN,
    SetProof,
    fields_digest,
    subjects_of,
    verify_membership,
)
from gateway.subject.model import AccessItem, item_kind
from gateway.trust import TrustBundle

# A property of the answer's format: entries are proven against the newest
# cosigned checkpoint and, for newer entries, one fresh checkpoint.
MAX_CHECKPOINTS = 2


@dataclass(frozen=True)
class HolderKeys:
    jurisdiction: str
    origin: str
    ledger_keys: tuple[AnyVerifyKey, ...]  # the log keys accepted (across a rotation)
    # Every member's keys and names: a cosignature counts when it verifies with a
    # witness key the trust bundle lists at the cosignature's time.
    trusted: TrustedKeys
    tree: TreeHasher = SHA256_TREE  # the ledger's RFC 9162 hashing (its suite's hash)


@dataclass(frozen=True)
class _Tree:
    checkpoint: Checkpoint
    cosigned_by: tuple[str, ...]


def _trees(notes: list[str], keys: HolderKeys, limits: Limits) -> dict[int, _Tree]:
    if len(notes) > MAX_CHECKPOINTS:
        raise VerificationFailed(f"answer: more than {MAX_CHECKPOINTS} checkpoints")
    out: dict[int, _Tree] = {}
    for n, note in enumerate(notes):
        try:
            cp = open_checkpoint(note, keys.origin, keys.ledger_keys, limits)
            found, _ = checkpoint_cosignatures(
                note, keys.origin, keys.ledger_keys, keys.trusted, limits
            )
            cosigners = {name for _, name, _ in found}
        except GatewayError as exc:
            raise VerificationFailed(f"checkpoint {n}: {exc}") from exc
        seen = out.get(cp.size)
        if seen is not None and not crypto.digest_equal(seen.checkpoint.root, cp.root):
            raise VerificationFailed(
                f"checkpoint {n}: the log signed two different trees of size {cp.size} (a fork)"
            )
        out[cp.size] = _Tree(cp, tuple(sorted({*cosigners, *(seen.cosigned_by if seen else ())})))
    return out


def verify_answer(
    proofs: subject_pb2.SubjectHistoryProofs, keys: HolderKeys, limits: Limits
) -> tuple[AccessItem, ...]:
    """Every entry of a holder's answer, verified; raise VerificationFailed otherwise."""
    blind = bytes(proofs.blind_index)
    if len(blind) != INDEX_LEN:
        raise VerificationFailed("answer: blind index has the wrong length")
    if len(proofs.entries) > limits.max_history_entries:
        raise VerificationFailed(f"answer: more than {limits.max_history_entries} entries")
    trees = _trees(list(proofs.checkpoints), keys, limits)
    seen: set[int] = set()
    items: list[AccessItem] = []
    for p in proofs.entries:
        where = f"entry {p.index}"
        if p.index in seen:
            raise VerificationFailed(f"{where}: listed twice")
        seen.add(p.index)
        tree = trees.get(p.tree_size)
        if tree is None:
            raise VerificationFailed(f"{where}: proven against a checkpoint not in the answer")
        data = bytes(p.entry)
        try:
            _, index, _ = header_of(data)
            entry = decode_entry(data, limits)
        except GatewayError as exc:
            raise VerificationFailed(f"{where}: not a canonical ledger entry: {exc}") from exc
        if index != p.index:
            raise VerificationFailed(f"{where}: the entry says it is entry {index}")
        leaf = keys.tree.leaf(data)
        verify_inclusion(
            p.index, p.tree_size, leaf, list(p.inclusion_proof), tree.checkpoint.root, keys.tree
        )
        ev = entry.event
        if ev.role != "holder" or ev.local != keys.jurisdiction:
            raise VerificationFailed(f"{where}: not a holder entry of {keys.jurisdiction}")
        subjects = subjects_of(ev.details)
        if subjects.coverage is None:
            raise VerificationFailed(f"{where}: the entry concerns no indexed subject")
        if subjects.commitment is not None:
            try:
                verify_membership(
                    blind, SetProof(p.set_position, tuple(p.set_proof)), subjects.commitment
                )
            except VerificationFailed as exc:
                raise VerificationFailed(f"{where}: {exc}") from exc
        fields = tuple((f.name, f.transform) for f in p.fields)
        recorded = subjects.fields_sha256
        if (recorded or fields) and not crypto.digest_equal(
            fields_digest(fields) if fields else "", recorded
        ):
            raise VerificationFailed(f"{where}: the fields shown are not the fields it released")
        items.append(
            AccessItem(
                timestamp_ms=ev.timestamp_ms,
                holder=ev.local,
                requester=ev.counterparty,
                service_system=ev.service_system,
                dataset=ev.dataset,
                purpose=ev.purpose,
                legal_basis=ev.legal_basis
                or p.legal_basis,  # the entry's, signed; else the holder's word
                fields=fields,
                agreement_id=ev.agreement_id,
                kind=item_kind(subjects.coverage, ev.kind),
                reason=ev.reason,
                record_count=ev.record_count,
                request_id=ev.request_id,
                entry_index=p.index,
                entry_hash=leaf.hex(),
                tree_size=p.tree_size,
                cosigned_by=tree.cosigned_by,
            )
        )
    return tuple(items)


def holder_keys(bundle: TrustBundle, jurisdiction: str, when_ms: int | None) -> HolderKeys:
    """What the trust bundle pins for ``jurisdiction``'s ledger (its log keys valid
    at ``when_ms``; None: every key it held) and every member's keys over time, its
    witnesses' current and retired ones included."""
    m = bundle.member(jurisdiction)
    return HolderKeys(
        m.jurisdiction,
        m.origin,
        bundle.keys_valid_at(jurisdiction, "ledger", when_ms),
        TrustedKeys.from_bundle(bundle),
        TreeHasher.for_suite(crypto.suite(m.suite)),
    )
