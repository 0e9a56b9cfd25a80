"""Offline evidence bundles for compliance officers: export and verify.

Owns: the self-describing, versioned JSON evidence bundle for one transfer
(by request id) or a time range: the entries' canonical bytes, an inclusion
proof for each against one signed (and, where available, cosigned)
checkpoint, the log's verifier key, witness keys and the federation members'
public keys; and its offline verification, which needs nothing but the file
(and optionally a trust bundle to pin the keys).

Does not own: trust-bundle parsing (``gateway.trust``), ledger storage.

Integrity: every value is covered by a check. Entries by their inclusion
proofs, the checkpoint by the log signature, cosignatures by witness keys,
the log key by the trust bundle when given. The file must also be exactly
the canonical JSON of its content (sorted keys, fixed layout) and carry the
SHA-256 of that content, so any changed byte (even whitespace, or a key
nothing else checks) makes verification fail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.crypto import VerifyKey
from gateway.errors import GatewayError, InvalidArgument, NotFound, VerificationFailed
from gateway.ledger.entry import decode_entry
from gateway.ledger.ledger import Ledger, SignedCheckpoint
from gateway.ledger.merkle import leaf_hash, verify_inclusion
from gateway.ledger.note import (
    SIG_COSIGNATURE_V1,
    Checkpoint,
    cosignatures_in,
    open_checkpoint,
    parse_vkey,
    vkey,
)

BUNDLE_FORMAT: Final = "jgw-ledger-evidence-v1"
MAX_BUNDLE_BYTES: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class MemberKeys:
    jurisdiction: str
    origin: str
    ledger_key: VerifyKey
    signing_key: VerifyKey | None = None


@dataclass(frozen=True)
class BundleReport:
    origin: str
    tree_size: int
    entries: int
    cosigners: tuple[str, ...]
    key_source: str  # "trust bundle" or "embedded (not independently trusted)"


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


def export_bundle(
    ledger: Ledger,
    *,
    request_id: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    members: Sequence[MemberKeys] = (),
    witness_keys: Mapping[str, VerifyKey] | None = None,
    log_key: VerifyKey | None = None,
) -> bytes:
    """Bundle bytes for one request id or the half-open range [since_ms, until_ms)."""
    if (request_id is None) == (since_ms is None or until_ms is None):
        raise InvalidArgument("export: give a request id, or both since and until")
    if request_id is not None:
        records = ledger.find(request_id)
        selection: dict[str, Any] = {"request_id": request_id}
    else:
        assert since_ms is not None and until_ms is not None
        if until_ms <= since_ms:
            raise InvalidArgument.expected("time range", "since < until", (since_ms, until_ms))
        records = ledger.between(since_ms, until_ms)
        selection = {"since_ms": since_ms, "until_ms": until_ms}
    if not records:
        raise NotFound("no ledger entries match the selection")
    need = max(r.index for r in records) + 1
    cp = _best_checkpoint(ledger, need)
    size = cp.checkpoint.size
    key = log_key or ledger.public_key or _stored_key(ledger)
    open_checkpoint(cp.note, ledger.origin, key)  # never export what we cannot verify
    entries = [
        {
            "index": r.index,
            "entry": _b64(r.entry),
            "proof": [_b64(p) for p in ledger.inclusion_proof(r.index, size)],
        }
        for r in records
    ]
    content = {
        "format": BUNDLE_FORMAT,
        "origin": ledger.origin,
        "log_key": vkey(ledger.origin, key),
        "checkpoint": cp.note,
        "selection": selection,
        "entries": entries,
        "witness_keys": sorted(
            vkey(n, k, SIG_COSIGNATURE_V1) for n, k in (witness_keys or {}).items()
        ),
        "members": [
            {
                "jurisdiction": m.jurisdiction,
                "origin": m.origin,
                "ledger_key": _b64(m.ledger_key.raw),
                "signing_key": _b64(m.signing_key.raw) if m.signing_key else "",
            }
            for m in sorted(members, key=lambda m: m.jurisdiction)
        ],
    }
    digest = hashlib.sha256(canonical(content)).hexdigest()
    return canonical({"content": content, "content_sha256": digest})


def _stored_key(ledger: Ledger) -> VerifyKey:
    text = ledger.store.get_meta("vkey")
    if not text:
        raise NotFound("no ledger key known: pass the trust bundle")
    return parse_vkey(text).key


def _best_checkpoint(ledger: Ledger, need: int) -> SignedCheckpoint:
    """Newest checkpoint covering ``need`` entries, preferring a cosigned one."""
    covering = [c for c in ledger.checkpoints() if c.checkpoint.size >= need]
    if not covering:
        raise NotFound(
            f"no signed checkpoint covers entry {need - 1} yet; export after the next checkpoint"
        )
    cosigned = [c for c in covering if c.note.count("\n\u2014 ") > 1]
    return (cosigned or covering)[-1]


def verify_bundle_bytes(
    data: bytes,
    trusted: Mapping[str, VerifyKey] | None = None,
    trusted_witnesses: Mapping[str, VerifyKey] | None = None,
) -> BundleReport:
    """Verify an evidence bundle offline. ``trusted`` maps origin -> ledger key;
    ``trusted_witnesses`` (witness name -> key) pins every embedded witness key."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise VerificationFailed("evidence bundle: too large")
    try:
        doc = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise VerificationFailed("evidence bundle: not canonical ASCII JSON") from exc
    if not isinstance(doc, dict) or set(doc) != {"content", "content_sha256"}:
        raise VerificationFailed("evidence bundle: expected keys content, content_sha256")
    if canonical(doc) != data:
        raise VerificationFailed("evidence bundle: bytes are not in canonical form (edited?)")
    content = doc["content"]
    if not isinstance(content, dict):
        raise VerificationFailed("evidence bundle: content is not an object")
    if doc["content_sha256"] != hashlib.sha256(canonical(content)).hexdigest():
        raise VerificationFailed("evidence bundle: content digest mismatch")
    expected_keys = {
        "format",
        "origin",
        "log_key",
        "checkpoint",
        "selection",
        "entries",
        "witness_keys",
        "members",
    }
    if set(content) != expected_keys:
        raise VerificationFailed(f"evidence bundle: expected keys {sorted(expected_keys)}")
    if content["format"] != BUNDLE_FORMAT:
        raise VerificationFailed(f"evidence bundle: format {content['format']!r} not supported")
    origin = content["origin"]
    if not isinstance(origin, str):
        raise VerificationFailed("evidence bundle: origin is not a string")
    try:
        embedded = parse_vkey(str(content["log_key"]))
    except GatewayError as exc:
        raise VerificationFailed(f"evidence bundle: log key: {exc}") from exc
    if embedded.name != origin:
        raise VerificationFailed("evidence bundle: log key name is not the origin")
    key = embedded.key
    source = "embedded (not independently trusted)"
    if trusted is not None:
        pinned = trusted.get(origin)
        if pinned is None:
            raise VerificationFailed(f"evidence bundle: origin {origin!r} not in the trust bundle")
        if pinned.raw != key.raw:
            raise VerificationFailed("evidence bundle: log key differs from the trust bundle")
        source = "trust bundle"
    members = content["members"]
    if not isinstance(members, list):
        raise VerificationFailed("evidence bundle: members is not a list")
    for m in members:
        if not isinstance(m, dict) or set(m) != {
            "jurisdiction",
            "origin",
            "ledger_key",
            "signing_key",
        }:
            raise VerificationFailed("evidence bundle: malformed member")
        lk = _unb64(m["ledger_key"], "member ledger key")
        if len(lk) != 32 or (m["signing_key"] and len(_unb64(m["signing_key"], "key")) != 32):
            raise VerificationFailed("evidence bundle: member key length")
        if trusted is not None and m["origin"] in trusted and trusted[m["origin"]].raw != lk:
            raise VerificationFailed(f"evidence bundle: member {m['jurisdiction']} key mismatch")
    try:
        cp = open_checkpoint(str(content["checkpoint"]), origin, key)
    except GatewayError as exc:
        raise VerificationFailed(f"evidence bundle: checkpoint: {exc}") from exc
    witnesses: dict[str, VerifyKey] = {}
    if not isinstance(content["witness_keys"], list):
        raise VerificationFailed("evidence bundle: witness_keys is not a list")
    for text in content["witness_keys"]:
        try:
            w = parse_vkey(str(text))
        except GatewayError as exc:
            raise VerificationFailed(f"evidence bundle: witness key: {exc}") from exc
        if w.sig_type != SIG_COSIGNATURE_V1:
            raise VerificationFailed("evidence bundle: witness key is not a cosignature key")
        if trusted_witnesses is not None:
            pinned_w = trusted_witnesses.get(w.name)
            if pinned_w is None or pinned_w.raw != w.key.raw:
                raise VerificationFailed(
                    f"evidence bundle: witness {w.name!r} is not in the trust bundle with that key"
                )
        witnesses[w.name] = w.key
    cosigners = cosignatures_in(str(content["checkpoint"]), witnesses)
    missing = sorted(set(witnesses) - set(cosigners))
    if missing:
        raise VerificationFailed(f"evidence bundle: no valid cosignature from {missing}")
    _verify_entries(content, cp)
    return BundleReport(origin, cp.size, len(content["entries"]), tuple(sorted(cosigners)), source)


def _verify_entries(content: dict[str, Any], cp: Checkpoint) -> None:
    selection = content["selection"]
    entries = content["entries"]
    if not isinstance(entries, list) or not entries:
        raise VerificationFailed("evidence bundle: no entries")
    if not isinstance(selection, dict):
        raise VerificationFailed("evidence bundle: selection is not an object")
    seen: set[int] = set()
    for n, item in enumerate(entries):
        if not isinstance(item, dict) or set(item) != {"index", "entry", "proof"}:
            raise VerificationFailed(f"evidence bundle: entry {n} malformed")
        index = item["index"]
        if not isinstance(index, int) or isinstance(index, bool) or index in seen:
            raise VerificationFailed(f"evidence bundle: entry {n}: bad or repeated index")
        seen.add(index)
        raw = _unb64(item["entry"], f"entry {index}")
        if not isinstance(item["proof"], list):
            raise VerificationFailed(f"evidence bundle: entry {index}: proof is not a list")
        proof = [_unb64(p, f"entry {index} proof") for p in item["proof"]]
        try:
            verify_inclusion(index, cp.size, leaf_hash(raw), proof, cp.root)
        except VerificationFailed as exc:
            raise VerificationFailed(f"evidence bundle: entry {index}: {exc}") from exc
        try:
            decoded = decode_entry(raw)
        except InvalidArgument as exc:
            raise VerificationFailed(f"evidence bundle: entry {index}: {exc}") from exc
        if decoded.index != index:
            raise VerificationFailed(f"evidence bundle: entry {index}: records another index")
        ev = decoded.event
        if "request_id" in selection:
            if set(selection) != {"request_id"} or ev.request_id != selection["request_id"]:
                raise VerificationFailed(f"evidence bundle: entry {index} not in the selection")
        elif set(selection) == {"since_ms", "until_ms"}:
            lo, hi = selection["since_ms"], selection["until_ms"]
            if not (isinstance(lo, int) and isinstance(hi, int) and lo <= ev.timestamp_ms < hi):
                raise VerificationFailed(f"evidence bundle: entry {index} not in the selection")
        else:
            raise VerificationFailed("evidence bundle: malformed selection")

