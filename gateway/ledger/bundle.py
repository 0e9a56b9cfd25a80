"""Offline evidence bundles for compliance officers: export and verify.

Owns: the self-describing, versioned JSON evidence bundle for one transfer
(by request id) or a time range: the entries' canonical bytes, an inclusion
proof for each against one signed and cosigned checkpoint, and the
federation members' public keys (suite-tagged text); and its offline
verification. The bundle names its cipher suite: the ledger's tree hash
(SHA-256 or SM3) proves inclusion, and every key must be of that suite (with a
trust bundle, the trust bundle's suite; a bundle of the other suite is a
suite mismatch).

Trust: only signatures and proofs are trusted. Entries are proven by their
inclusion proofs, the checkpoint by the log's signature, cosignatures by the
witnesses' keys, and the exchange signatures each entry records (requester
over its request, holder over its answer) by the members' signing keys at the
entry's time. With a trust bundle every key comes from it (``TrustedKeys``),
never from inside the evidence: the embedded members are a convenience for
offline use and must match the trust bundle key for key, and every member the
entries name must be embedded (a removed member fails). Without one, the
embedded keys are used and the report says they are not independently
trusted. ``content_sha256`` is an unkeyed checksum that catches accidental
damage only; the file must also be exactly the canonical JSON of its content,
so any changed byte fails, but an attacker can re-seal both, which is why
nothing rests on them.

Completeness of a time range: times along a ledger never decrease (``ledger
verify`` checks it), so a time range is an index range. A range bundle holds
every entry of that index range plus the neighbour on each side that falls
outside it (or the tree's first or last entry), all with inclusion proofs and
contiguous indexes: an omitted, dropped or reordered entry fails.

Does not own: trust-bundle parsing (``gateway.trust``), ledger storage,
which keys are valid when (``gateway.ledger.trustkeys``).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway import crypto
from gateway.crypto import AnyVerifyKey, Suite
from gateway.errors import GatewayError, InvalidArgument, NotFound, VerificationFailed
from gateway.ledger.entry import Entry, decode_entry
from gateway.ledger.ledger import Ledger, SignedCheckpoint
from gateway.ledger.merkle import TreeHasher, verify_inclusion
from gateway.ledger.note import Checkpoint
from gateway.ledger.signatures import check_entry_signatures
from gateway.ledger.trustkeys import KINDS, KeyEntry, Signer, TrustedKeys
from gateway.ledger.verify import checkpoint_cosigners, open_log_checkpoint
from gateway.limits import DEFAULT_LIMITS, Limits

BUNDLE_FORMAT: Final = "jgw-ledger-evidence-v2"
EMBEDDED: Final = "embedded in the evidence (NOT independently trusted)"
_CONTENT_KEYS: Final = frozenset(
    {"format", "suite", "origin", "checkpoint", "selection", "entries", "members"}
)
_MEMBER_KEYS: Final = frozenset(
    {"jurisdiction", "origin", "witness_name", "ledger_key", "witness_key", "signing_key"}
)


@dataclass(frozen=True)
class BundleReport:
    origin: str
    tree_size: int
    entries: int  # entries in the selection
    cosigners: tuple[str, ...]  # jurisdictions whose cosignature of the checkpoint verified
    key_source: str  # "trust bundle ..." or EMBEDDED
    context: int = 0  # neighbouring entries included to prove a range complete
    completeness: str = ""  # what a range bundle proves about omissions


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: object, what: str) -> bytes:
    if not isinstance(s, str):
        raise VerificationFailed(f"evidence bundle: {what} is not a string")
    try:
        return base64.b64decode(s, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise VerificationFailed(f"evidence bundle: {what} is not base64") from exc


def canonical(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode("ascii")


def seal(content: dict[str, Any]) -> bytes:
    """The file bytes for ``content``: canonical JSON plus its (unkeyed) checksum."""
    digest = crypto.sha256_hex(canonical(content))
    return canonical({"content": content, "content_sha256": digest})


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------


def export_bundle(
    ledger: Ledger,
    keys: TrustedKeys,
    *,
    request_id: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    require_witnesses: int = 0,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Bundle bytes for one request id or the half-open range [since_ms, until_ms).

    ``keys`` (from the trust bundle) supplies the members' public keys to embed
    and the witness keys the chosen checkpoint's cosignatures are checked
    with; the newest checkpoint cosigned by at least ``require_witnesses``
    trusted witnesses that covers the selection is used.
    """
    if (request_id is None) == (since_ms is None or until_ms is None):
        raise InvalidArgument("export: give a request id, or both since and until")
    log_keys = keys.log_keys(ledger.origin)
    if request_id is not None:
        records = ledger.find(request_id)
        selection: dict[str, Any] = {"request_id": request_id}
        if not records:
            raise NotFound("no ledger entries match the selection")
        need = max(r.index for r in records) + 1
        cp, _ = _best_checkpoint(ledger, need, log_keys, keys, require_witnesses, limits)
    else:
        assert since_ms is not None and until_ms is not None
        if until_ms <= since_ms:
            raise InvalidArgument.expected("time range", "since < until", (since_ms, until_ms))
        selected = ledger.between(since_ms, until_ms)
        selection = {"since_ms": since_ms, "until_ms": until_ms}
        if not selected:
            raise NotFound("no ledger entries match the selection")
        lo, hi = selected[0].index, selected[-1].index + 1
        # The neighbour after the range proves nothing later belongs to it;
        # without a checkpoint that covers it, the tree's end has to serve.
        after = hi + 1 if hi < ledger.size else hi
        try:
            cp, _ = _best_checkpoint(ledger, after, log_keys, keys, require_witnesses, limits)
        except NotFound:
            cp, _ = _best_checkpoint(ledger, hi, log_keys, keys, require_witnesses, limits)
        first = max(lo - 1, 0)
        last = min(hi + 1, cp.checkpoint.size)
        # Up to max_export_entries plus the two neighbours: read on past the cap of
        # one read, so a range at the limit is never clipped (``between`` bounds it).
        records = []
        while first + len(records) < last:
            page = ledger.entries(first + len(records), last - first - len(records))
            if not page:
                break
            records += page
    size = cp.checkpoint.size
    entries = [
        {
            "index": r.index,
            "entry": _b64(r.entry),
            "proof": [_b64(p) for p in ledger.inclusion_proof(r.index, size)],
        }
        for r in records
    ]
    members = [
        {
            "jurisdiction": s.jurisdiction,
            "origin": s.origin,
            "witness_name": s.witness_name,
            "ledger_key": [k.encode() for k in keys.keys(s.jurisdiction, "ledger")],
            "witness_key": [k.encode() for k in keys.keys(s.jurisdiction, "witness")],
            "signing_key": [k.encode() for k in keys.keys(s.jurisdiction, "signing")],
        }
        for s in sorted(keys.signers, key=lambda s: s.jurisdiction)
    ]
    content = {
        "format": BUNDLE_FORMAT,
        "suite": ledger.suite.name,
        "origin": ledger.origin,
        "checkpoint": cp.note,
        "selection": selection,
        "entries": entries,
        "members": members,
    }
    _needed_members(content, [decode_entry(r.entry, limits) for r in records], keys)
    return seal(content)


def _best_checkpoint(
    ledger: Ledger,
    need: int,
    log_keys: Sequence[AnyVerifyKey],
    keys: TrustedKeys,
    require_witnesses: int,
    limits: Limits,
) -> tuple[SignedCheckpoint, tuple[str, ...]]:
    """Newest verified checkpoint covering ``need`` entries, cosigned by enough witnesses."""
    covering = [c for c in ledger.checkpoints() if c.checkpoint.size >= need]
    if not covering:
        raise NotFound(
            f"no signed checkpoint covers entry {need - 1} yet; export after the next checkpoint"
        )
    best: tuple[SignedCheckpoint, tuple[str, ...]] | None = None
    for c in covering:
        open_log_checkpoint(c.note, ledger.origin, log_keys, limits)  # never export the unverified
        cosigners, _ = checkpoint_cosigners(c.note, ledger.origin, log_keys, keys, limits)
        if len(cosigners) >= require_witnesses and (best is None or len(cosigners) >= len(best[1])):
            best = (c, cosigners)
    if best is None:
        raise NotFound(
            f"no checkpoint covering entry {need - 1} is cosigned by {require_witnesses} "
            "witness(es) yet; export after the next witnessing round"
        )
    return best


# --------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------


def verify_bundle_bytes(
    data: bytes,
    trusted: TrustedKeys | None = None,
    *,
    require_witnesses: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> BundleReport:
    """Verify an evidence bundle offline.

    ``trusted``: the trust bundle's keys; every key is taken from it. Without
    it the embedded keys are used (reported as not independently trusted).
    ``require_witnesses``: trusted witnesses that must have cosigned the
    checkpoint (default with a trust bundle: 1 if the federation has a member
    other than the log, else 0; without one: 0).
    """
    content = _open_file(data, limits)
    origin = content["origin"]
    suite = _suite_of(content, trusted)
    embedded = _embedded_keys(content["members"], suite, limits)
    if trusted is None:
        keys, source = embedded, EMBEDDED
    else:
        keys, source = trusted, trusted.source
        _match_embedded(embedded, trusted)
    log_keys = keys.log_keys(origin)
    note = content["checkpoint"]
    if not isinstance(note, str):
        raise VerificationFailed("evidence bundle: checkpoint is not a string")
    try:
        cp = open_log_checkpoint(note, origin, log_keys, limits)
        cosigners, _ = checkpoint_cosigners(note, origin, log_keys, keys, limits)
    except GatewayError as exc:
        raise VerificationFailed(f"evidence bundle: checkpoint: {exc}") from exc
    if require_witnesses is None:
        log = keys.by_origin(origin)
        others = keys.witnesses(exclude=log.jurisdiction if log else "")
        require_witnesses = 1 if trusted is not None and others else 0
    if len(cosigners) < require_witnesses:
        raise VerificationFailed(
            f"evidence bundle: the checkpoint is cosigned by {len(cosigners)} trusted "
            f"witness(es) ({', '.join(cosigners) or 'none'}), {require_witnesses} required"
        )
    decoded = _verify_entries(content, cp, limits, TreeHasher.for_suite(suite))
    _needed_members(content, [e for e, _ in decoded], keys, cosigners)
    for e, i in decoded:
        sc = check_entry_signatures(e.event, keys)
        if sc.problem or sc.unverifiable:
            raise VerificationFailed(
                f"evidence bundle: entry {i}: {sc.problem or 'a signer has no key in the ' + keys.source}"
            )
    selected, context, completeness = _check_selection(content["selection"], decoded, cp)
    return BundleReport(origin, cp.size, selected, cosigners, source, context, completeness)


def _open_file(data: bytes, limits: Limits) -> dict[str, Any]:
    if len(data) > limits.max_ledger_bundle_bytes:
        raise VerificationFailed("evidence bundle: too large")
    try:
        doc = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise VerificationFailed("evidence bundle: not canonical ASCII JSON (damaged?)") from exc
    if not isinstance(doc, dict) or set(doc) != {"content", "content_sha256"}:
        raise VerificationFailed("evidence bundle: expected keys content, content_sha256")
    if canonical(doc) != data:
        raise VerificationFailed("evidence bundle: bytes are not in canonical form (edited?)")
    content = doc["content"]
    if not isinstance(content, dict):
        raise VerificationFailed("evidence bundle: content is not an object")
    if doc["content_sha256"] != crypto.sha256_hex(canonical(content)):
        raise VerificationFailed("evidence bundle: content checksum mismatch (damaged?)")
    if content.get("format") != BUNDLE_FORMAT:
        raise VerificationFailed(
            f"evidence bundle: format {content.get('format')!r} not supported "
            f"(expected {BUNDLE_FORMAT})"
        )
    if set(content) != _CONTENT_KEYS:
        raise VerificationFailed(f"evidence bundle: expected keys {sorted(_CONTENT_KEYS)}")
    if not isinstance(content["origin"], str):
        raise VerificationFailed("evidence bundle: origin is not a string")
    return content


def _suite_of(content: dict[str, Any], trusted: TrustedKeys | None) -> Suite:
    """The suite the bundle names; with a trust bundle it must be the log key's suite."""
    try:
        named = crypto.suite(content["suite"])
        if trusted is not None:
            log_key = trusted.log_keys(str(content["origin"]))[0]
            crypto.require_suite("evidence bundle", named.name, log_key.suite)
    except GatewayError as exc:
        raise VerificationFailed(f"evidence bundle: {exc}") from exc
    return named


def _keys_of(m: dict[str, Any], field: str, suite: Suite, limits: Limits) -> list[AnyVerifyKey]:
    raw = m[field]
    if not isinstance(raw, list) or len(raw) > limits.max_member_keys:
        raise VerificationFailed(f"evidence bundle: member {field} is not a short list")
    out = []
    for text in raw:
        if not isinstance(text, str):
            raise VerificationFailed(f"evidence bundle: member {field} is not a string")
        try:  # suite-tagged text of the bundle's suite
            out.append(suite.decode_verify_key(text, f"member {field}"))
        except GatewayError as exc:
            raise VerificationFailed(f"evidence bundle: {exc}") from exc
    return out


def _embedded_keys(members: object, suite: Suite, limits: Limits) -> TrustedKeys:
    if not isinstance(members, list) or len(members) > limits.max_bundle_members:
        raise VerificationFailed("evidence bundle: members is not a list")
    signers: list[Signer] = []
    entries: list[KeyEntry] = []
    for m in members:
        if not isinstance(m, dict) or set(m) != _MEMBER_KEYS:
            raise VerificationFailed("evidence bundle: malformed member")
        names = (m["jurisdiction"], m["origin"], m["witness_name"])
        if not all(isinstance(x, str) and x for x in names):
            raise VerificationFailed("evidence bundle: malformed member")
        j = m["jurisdiction"]
        if any(s.jurisdiction == j for s in signers):
            raise VerificationFailed(f"evidence bundle: member {j} listed twice")
        signers.append(Signer(j, m["origin"], m["witness_name"]))
        entries.extend(KeyEntry(j, "ledger", k) for k in _keys_of(m, "ledger_key", suite, limits))
        entries.extend(KeyEntry(j, "witness", k) for k in _keys_of(m, "witness_key", suite, limits))
        entries.extend(KeyEntry(j, "signing", k) for k in _keys_of(m, "signing_key", suite, limits))
    return TrustedKeys(tuple(signers), tuple(entries), EMBEDDED)


def _match_embedded(embedded: TrustedKeys, trusted: TrustedKeys) -> None:
    """Every embedded member and key must be the trust bundle's own (which, after a
    key rotation, lists the old keys with their intervals and the new ones)."""
    for s in embedded.signers:
        t = trusted.by_jurisdiction(s.jurisdiction)
        if t is None:
            raise VerificationFailed(
                f"evidence bundle: member {s.jurisdiction} is not in the {trusted.source}"
            )
        if (t.origin, t.witness_name) != (s.origin, s.witness_name):
            raise VerificationFailed(
                f"evidence bundle: member {s.jurisdiction}'s names differ from the trust bundle"
            )
        for kind in KINDS:
            mine = {k.raw for k in embedded.keys(s.jurisdiction, kind)}
            theirs = {k.raw for k in trusted.keys(s.jurisdiction, kind)}
            if not mine <= theirs:  # a later bundle may list more (rotation), never others
                raise VerificationFailed(
                    f"evidence bundle: member {s.jurisdiction}'s {kind} key differs from the "
                    "trust bundle"
                )


def _needed_members(
    content: dict[str, Any],
    entries: Sequence[Entry],
    keys: TrustedKeys,
    cosigners: Sequence[str] = (),
) -> None:
    """The log's member, every cosigner and every jurisdiction the entries name must be
    embedded, so the file alone verifies offline as far as it claims."""
    embedded = {m["jurisdiction"] for m in content["members"] if isinstance(m, dict)}
    log = keys.by_origin(content["origin"])
    need = {log.jurisdiction, *cosigners} if log else set(cosigners)
    for e in entries:
        need |= {e.event.local, e.event.counterparty}
    missing = sorted(need - embedded)
    if missing:
        raise VerificationFailed(
            f"evidence bundle: members {missing} are named by its entries but not embedded"
        )


def _verify_entries(
    content: dict[str, Any], cp: Checkpoint, limits: Limits, th: TreeHasher
) -> list[tuple[Entry, int]]:
    entries = content["entries"]
    if not isinstance(entries, list) or not entries:
        raise VerificationFailed("evidence bundle: no entries")
    if len(entries) > limits.max_export_entries + 2:  # a range and its two neighbours
        raise VerificationFailed(
            f"evidence bundle: more than {limits.max_export_entries} entries (limits)"
        )
    out: list[tuple[Entry, int]] = []
    last = -1
    for n, item in enumerate(entries):
        if not isinstance(item, dict) or set(item) != {"index", "entry", "proof"}:
            raise VerificationFailed(f"evidence bundle: entry {n} malformed")
        index = item["index"]
        if not isinstance(index, int) or isinstance(index, bool) or index <= last:
            raise VerificationFailed(
                f"evidence bundle: entry {n}: index not after the previous one (reordered or "
                "repeated)"
            )
        last = index
        raw = _unb64(item["entry"], f"entry {index}")
        if not isinstance(item["proof"], list):
            raise VerificationFailed(f"evidence bundle: entry {index}: proof is not a list")
        proof = [_unb64(p, f"entry {index} proof") for p in item["proof"]]
        try:
            verify_inclusion(index, cp.size, th.leaf(raw), proof, cp.root, th)
        except VerificationFailed as exc:
            raise VerificationFailed(f"evidence bundle: entry {index}: {exc}") from exc
        try:
            decoded = decode_entry(raw, limits)
        except InvalidArgument as exc:
            raise VerificationFailed(f"evidence bundle: entry {index}: {exc}") from exc
        if decoded.index != index:
            raise VerificationFailed(f"evidence bundle: entry {index}: records another index")
        out.append((decoded, index))
    return out


def _check_selection(
    selection: object, decoded: Sequence[tuple[Entry, int]], cp: Checkpoint
) -> tuple[int, int, str]:
    """(entries selected, neighbouring entries, completeness statement)."""
    if not isinstance(selection, dict):
        raise VerificationFailed("evidence bundle: selection is not an object")
    if set(selection) == {"request_id"}:
        for e, i in decoded:
            if e.event.request_id != selection["request_id"]:
                raise VerificationFailed(f"evidence bundle: entry {i} not in the selection")
        return len(decoded), 0, ""
    if set(selection) != {"since_ms", "until_ms"}:
        raise VerificationFailed("evidence bundle: malformed selection")
    lo, hi = selection["since_ms"], selection["until_ms"]
    if not (isinstance(lo, int) and isinstance(hi, int) and lo < hi):
        raise VerificationFailed("evidence bundle: malformed selection")
    indexes = [i for _, i in decoded]
    if indexes != list(range(indexes[0], indexes[0] + len(indexes))):
        gap = next(a + 1 for a, b in itertools.pairwise(indexes) if b != a + 1)
        raise VerificationFailed(
            f"evidence bundle: entry {gap} is missing from the range (indexes must be "
            "contiguous): an entry was omitted"
        )
    times = [e.event.timestamp_ms for e, _ in decoded]
    if times != sorted(times):
        raise VerificationFailed("evidence bundle: entries' times go backwards")
    inside = [lo <= t < hi for t in times]
    first_in = inside.index(True) if True in inside else -1
    if first_in < 0:
        raise VerificationFailed("evidence bundle: no entry in the selected range")
    n_in = sum(inside)
    if inside[first_in : first_in + n_in] != [True] * n_in:
        raise VerificationFailed("evidence bundle: range entries are not contiguous")
    before, after = first_in, len(inside) - first_in - n_in
    if before > 1 or after > 1:
        raise VerificationFailed("evidence bundle: more than one neighbour entry on a side")
    if before == 0 and indexes[0] != 0:
        raise VerificationFailed(
            f"evidence bundle: the entry before the range (index {indexes[0] - 1}) is not "
            "included, so entries omitted at the start could not be detected"
        )
    if after == 0 and indexes[-1] != cp.size - 1:
        raise VerificationFailed(
            f"evidence bundle: the entry after the range (index {indexes[-1] + 1}) is not "
            "included, so entries omitted at the end could not be detected"
        )
    end = (
        "up to the end of the tree it proves (later entries are not covered by its checkpoint)"
        if after == 0
        else "to its end"
    )
    completeness = f"complete: no entry of the range is missing from its start {end}"
    return n_in, before + after, completeness
