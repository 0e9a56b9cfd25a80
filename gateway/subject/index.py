"""Blind indexes of subject ids and the commitment a ledger entry makes to them.

Owns: the holder's blind-index key (derived from its pseudonym secret under
its own domain tag, so it never leaves the holder and is distinct from every
pseudonym key), the blind index of a normalised subject id (a MAC through
``gateway.crypto.keyed_hash``, so it follows the federation's MAC), the
commitment over an entry's set of blind indexes (an RFC 9162 Merkle root over
the sorted indexes, with the set's size), membership proofs in that set and
their verification, the digest of the fields an entry released, and the
``details`` pairs that carry all of this in a ledger entry.

Does not own: where indexes are stored (``gateway.subject.store``) or when
they are written (``gateway.subject.indexer``). Pure functions over bytes.

Why a Merkle commitment: the entry is signed into the ledger (and its
checkpoints cosigned by the other members), and it carries the root and size
of the set of indexes it concerns. An index row added later (linking a person
to an exchange that did not name them) has no proof to that root; a row
removed later makes the holder's set disagree with the root, which the
officer's audit (``gateway audit subject``) reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from gateway import crypto, domains
from gateway.errors import InvalidArgument, VerificationFailed
from gateway.ledger.merkle import (
    HASH_LEN,
    inclusion_plan,
    leaf_hash,
    root_from_inclusion_proof,
    root_of,
)

INDEX_LEN: Final = 32

# What an entry's subjects are.
#   named:          the request named subjects; their blind indexes are committed
#   dataset:        a bulk transfer of the whole dataset (identifiers released)
#   pseudonymised:  a bulk extract with the subject column pseudonymised or dropped
#   statistics:     a differentially private statistic over the dataset
Coverage = Literal["named", "dataset", "pseudonymised", "statistics"]
COVERAGES: Final = ("named", "dataset", "pseudonymised", "statistics")

# Keys of ``LedgerEvent.details`` (ascending, as entries require).
D_FIELDS: Final = "fields_sha256"
D_COUNT: Final = "subjects_count"
D_COVERAGE: Final = "subjects_coverage"
D_ROOT: Final = "subjects_root"
DETAIL_KEYS: Final = (D_FIELDS, D_COUNT, D_COVERAGE, D_ROOT)

# Transforms under which a bulk release does not carry the subjects' identifiers.
_NOT_IDENTIFYING: Final = ("pseudonymise",)


def index_key(pseudonym_secret: bytes) -> bytes:
    """The holder's blind-index key: never stored apart, never sent."""
    return crypto.keyed_hash(pseudonym_secret, domains.SUBJECT_INDEX_KEY, b"")


def blind_index(key: bytes, normalised_id: str) -> bytes:
    """MAC of a normalised subject id (``gateway.identifiers.subject_id``)."""
    return crypto.keyed_hash(key, domains.SUBJECT_INDEX, normalised_id.encode("utf-8"))


@dataclass(frozen=True)
class SetCommitment:
    root: bytes
    count: int


@dataclass(frozen=True)
class SetProof:
    position: int
    hashes: tuple[bytes, ...]


def _leaves(indexes: Sequence[bytes]) -> list[bytes]:
    return [leaf_hash(i) for i in indexes]


def canonical_set(indexes: Iterable[bytes]) -> list[bytes]:
    """Sorted, de-duplicated; each index exactly ``INDEX_LEN`` bytes."""
    out = sorted(set(indexes))
    for i in out:
        if len(i) != INDEX_LEN:
            raise InvalidArgument.expected("blind index length", INDEX_LEN, len(i))
    return out


def commit(indexes: Iterable[bytes]) -> SetCommitment:
    ordered = canonical_set(indexes)
    return SetCommitment(root_of(_leaves(ordered)), len(ordered))


def prove(indexes: Iterable[bytes], member: bytes) -> SetProof:
    """Membership proof of ``member`` in the canonical set of ``indexes``."""
    ordered = canonical_set(indexes)
    try:
        position = ordered.index(member)
    except ValueError:
        raise VerificationFailed("blind index is not in the entry's index set") from None
    leaves = _leaves(ordered)
    plan = inclusion_plan(position, len(ordered))
    return SetProof(position, tuple(root_of(leaves[lo:hi]) for lo, hi in plan))


def verify_membership(member: bytes, proof: SetProof, commitment: SetCommitment) -> None:
    """Raise VerificationFailed unless ``proof`` puts ``member`` in the committed set."""
    if len(member) != INDEX_LEN:
        raise VerificationFailed("blind index: wrong length")
    try:
        root = root_from_inclusion_proof(
            proof.position, commitment.count, leaf_hash(member), proof.hashes
        )
    except VerificationFailed as exc:
        raise VerificationFailed(f"index-set proof: {exc}") from exc
    if not crypto.digest_equal(root, commitment.root):
        raise VerificationFailed("index-set proof: root mismatch")


def fields_digest(fields: Sequence[tuple[str, str]]) -> str:
    """Hex digest of the released (field, transform) pairs, in release order."""
    body = "\n".join(f"{name}:{transform}" for name, transform in fields).encode("utf-8")
    return crypto.sha256_hex(crypto.pae(domains.RELEASED_FIELDS, body))


def bulk_coverage(subject_column: str, fields: Sequence[tuple[str, str]]) -> Coverage:
    """A bulk release is a pseudonymised extract unless it releases the subject
    column in a form that still identifies (pass, mask, generalise)."""
    for name, transform in fields:
        if name == subject_column and transform not in _NOT_IDENTIFYING:
            return "dataset"
    return "pseudonymised"


def entry_details(
    coverage: Coverage,
    commitment: SetCommitment | None,
    fields: Sequence[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """The details pairs an entry carries for subject access (sorted by key)."""
    if coverage not in COVERAGES:
        raise InvalidArgument.expected("coverage", "|".join(COVERAGES), coverage)
    if (coverage == "named") != (commitment is not None):
        raise InvalidArgument("a commitment is given exactly for named entries")
    pairs: list[tuple[str, str]] = []
    if fields:
        pairs.append((D_FIELDS, fields_digest(fields)))
    if commitment is not None:
        pairs.append((D_COUNT, str(commitment.count)))
    pairs.append((D_COVERAGE, coverage))
    if commitment is not None:
        pairs.append((D_ROOT, commitment.root.hex()))
    return tuple(pairs)


@dataclass(frozen=True)
class EntrySubjects:
    """What an entry's details say about its subjects."""

    coverage: Coverage | None  # None: the entry predates subject access or concerns nobody
    commitment: SetCommitment | None
    fields_sha256: str


def subjects_of(details: Sequence[tuple[str, str]]) -> EntrySubjects:
    """Parse the subject-access details of an entry; VerificationFailed if malformed."""
    d = dict(details)
    coverage = d.get(D_COVERAGE)
    if coverage is not None and coverage not in COVERAGES:
        raise VerificationFailed(f"entry: {D_COVERAGE} {coverage[:20]!r} is not a coverage")
    commitment = None
    if coverage == "named":
        try:
            root = bytes.fromhex(d[D_ROOT])
            count = int(d[D_COUNT])
        except (KeyError, ValueError) as exc:
            raise VerificationFailed("entry: named coverage without a valid index root") from exc
        if len(root) != HASH_LEN or not 0 < count < 2**63 or str(count) != d[D_COUNT]:
            raise VerificationFailed("entry: malformed index-set commitment")
        commitment = SetCommitment(root, count)
    elif D_ROOT in d or D_COUNT in d:
        raise VerificationFailed("entry: an index-set commitment without named coverage")
    return EntrySubjects(coverage, commitment, d.get(D_FIELDS, ""))  # type: ignore[arg-type]
