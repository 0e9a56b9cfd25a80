"""Canonical bytes of one ledger entry, and the checks an event must pass.

Owns: the versioned, unambiguous encoding of (index, previous entry hash,
LedgerEvent), its strict decoder, and the rule that an entry's chain hash IS
its RFC 9162 leaf hash, H(0x00 || entry bytes) with the ledger suite's hash
(SHA-256, or SM3 for gm). Because the entry bytes contain the predecessor's
hash, one hash per entry serves both the hash chain and the Merkle tree.

Does not own: storage, proofs, or what the exchange path puts in an event
(``gateway.ledger.events``). Events are metadata and digests only: identifiers
are bounded and free of control characters, digests must be 64 hex digits
(SHA-256 or SM3), signatures base64 Ed25519 or SM2; anything else is refused.

Layout (version 2), all integers big-endian:

    0x02                      format version
    u64  index                zero-based position in the ledger
    32B  previous entry hash  (32 zero bytes for entry 0)
    u64  timestamp_ms
    u64  record_count
    u32  d = number of details pairs
    UTF-8 of the 20 + 2d strings joined by 0x00, in order: kind, role,
         request_id, local, counterparty, service_system, dataset, purpose,
         decision, reason, agreement_id, agreement_digest, policy_set_digest,
         payload_digest, request_digest, requester_signature,
         holder_signature, response_digest, legal_basis, approval_id, then
         details key1, value1, key2, value2, ...

Unambiguous because no string may contain a control character (0x00
included): the separator can only be a separator, and ``d`` fixes how many
strings there must be. The decoder requires exactly that many, a valid event,
and details keys strictly ascending, so each event has exactly one encoding.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final, get_args

from gateway.errors import InvalidArgument
from gateway.ledger.events import Decision, EventKind, LedgerEvent, Role
from gateway.ledger.merkle import HASH_LEN, leaf_hash
from gateway.limits import DEFAULT_LIMITS, Limits

ENTRY_VERSION: Final = 2
HEADER_LEN: Final = 1 + 8 + HASH_LEN
GENESIS_PREV: Final = bytes(HASH_LEN)
# The values the event types allow (``gateway.ledger.events`` declares them once).
KINDS: Final[tuple[str, ...]] = get_args(EventKind)
ROLES: Final[tuple[str, ...]] = get_args(Role)
DECISIONS: Final[tuple[str, ...]] = get_args(Decision)

_HEAD = struct.Struct(">BQ")
_FIXED = struct.Struct(">QQI")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGESTS = re.compile(r"(?:[0-9a-f]{64})?(?:\x00(?:[0-9a-f]{64})?){4}")
# base64 of a 64-byte Ed25519 signature (intl) or of a DER SM2 signature (gm,
# at most 72 bytes, always starting 0x30, so "M" in base64).
_SIG = r"(?:[A-Za-z0-9+/]{86}==|M[A-Za-z0-9+/]{10,95}={0,2})?"
_SIGS = re.compile(_SIG + r"\x00" + _SIG)

STRING_FIELDS: Final = (
    "kind",
    "role",
    "request_id",
    "local",
    "counterparty",
    "service_system",
    "dataset",
    "purpose",
    "decision",
    "reason",
    "agreement_id",
    "agreement_digest",
    "policy_set_digest",
    "payload_digest",
    "request_digest",
    "requester_signature",
    "holder_signature",
    "response_digest",
    "legal_basis",
    "approval_id",
)
_N_STRINGS: Final = len(STRING_FIELDS)
_IDENT_FIELDS: Final = (
    "request_id",
    "local",
    "counterparty",
    "service_system",
    "dataset",
    "purpose",
    "agreement_id",
)


@dataclass(frozen=True)
class Entry:
    """A decoded entry: its position, the hash it chains to, and the event."""

    index: int
    prev_hash: bytes
    event: LedgerEvent


def _checked_strings(e: LedgerEvent, limits: Limits) -> list[str]:
    """Validate ``e`` and return its strings in encoding order."""
    if e.kind not in KINDS:
        raise InvalidArgument.expected("event.kind", "|".join(KINDS), e.kind)
    if e.role not in ROLES:
        raise InvalidArgument.expected("event.role", "|".join(ROLES), e.role)
    if e.decision not in DECISIONS:
        raise InvalidArgument.expected("event.decision", "allow|deny", e.decision)
    for name in ("timestamp_ms", "record_count"):
        value = getattr(e, name)
        if type(value) is not int or not 0 <= value < 2**63:
            raise InvalidArgument.expected(f"event.{name}", "an integer in [0, 2**63)", value)
    details = e.details
    if type(details) is not tuple or len(details) > limits.max_entry_details:
        raise InvalidArgument.expected(
            "event.details", f"a tuple of <= {limits.max_entry_details} pairs", ""
        )
    strings = [
        e.kind,
        e.role,
        e.request_id,
        e.local,
        e.counterparty,
        e.service_system,
        e.dataset,
        e.purpose,
        e.decision,
        e.reason,
        e.agreement_id,
        e.agreement_digest,
        e.policy_set_digest,
        e.payload_digest,
        e.request_digest,
        e.requester_signature,
        e.holder_signature,
        e.response_digest,
        e.legal_basis,
        e.approval_id,
    ]
    prev = None
    max_id = limits.max_identifier_len
    for pair in details:
        if type(pair) is not tuple or len(pair) != 2:
            raise InvalidArgument.expected("event.details item", "(key, value)", pair)
        key, value = pair
        if type(key) is not str or type(value) is not str:
            raise InvalidArgument("event.details: keys and values must be strings")
        if not key or len(key) > max_id or len(value) > max_id:
            raise InvalidArgument.expected(
                "event.details item", f"key 1..{max_id} chars, value <= {max_id}", key
            )
        if prev is not None and key <= prev:
            raise InvalidArgument.expected("event.details", "keys strictly ascending", key)
        prev = key
        strings.append(key)
        strings.append(value)
    try:
        joined = "".join(strings)
    except TypeError as exc:
        raise InvalidArgument("event: every text field must be a string") from exc
    # isprintable() is a fast C check; only when it objects (it also refuses
    # e.g. U+3000) does the exact control-character rule decide.
    if not joined.isprintable() and _CONTROL.search(joined):
        raise InvalidArgument("event: control characters are not allowed")
    if not e.request_id:
        raise InvalidArgument.expected("event.request_id", "non-empty", "")
    for i in (2, 3, 4, 5, 6, 7, 10, 19):
        if len(strings[i]) > max_id:
            name = STRING_FIELDS[i]
            raise InvalidArgument.expected(f"event.{name} length", f"<= {max_id}", len(strings[i]))
    for name in ("reason", "legal_basis"):
        if len(getattr(e, name)) > limits.max_value_len:
            raise InvalidArgument.expected(
                f"event.{name} length", f"<= {limits.max_value_len}", len(getattr(e, name))
            )
    if not _DIGESTS.fullmatch("\x00".join([*strings[11:15], strings[17]])):
        raise InvalidArgument.expected(
            "event digests", "64 lowercase hex digits or ''", (*strings[11:15], strings[17])
        )
    if not _SIGS.fullmatch("\x00".join(strings[15:17])):
        raise InvalidArgument.expected(
            "event signatures", "base64 of an Ed25519 or DER SM2 signature, or ''", ""
        )
    return strings


def validate_event(event: LedgerEvent, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse events that are malformed or could carry more than metadata."""
    _checked_strings(event, limits)


def encode_header(index: int, prev_hash: bytes) -> bytes:
    if len(prev_hash) != HASH_LEN:
        raise InvalidArgument.expected("previous entry hash length", HASH_LEN, len(prev_hash))
    if not 0 <= index < 2**63:
        raise InvalidArgument.expected("entry index", "[0, 2**63)", index)
    return _HEAD.pack(ENTRY_VERSION, index) + prev_hash


def encode_entry(
    index: int, prev_hash: bytes, event: LedgerEvent, limits: Limits = DEFAULT_LIMITS
) -> bytes:
    """Validated canonical entry bytes."""
    strings = _checked_strings(event, limits)
    return (
        encode_header(index, prev_hash)
        + _FIXED.pack(event.timestamp_ms, event.record_count, len(event.details))
        + "\x00".join(strings).encode("utf-8")
    )


def entry_hash(entry_bytes: bytes) -> bytes:
    """Chain hash = RFC 9162 leaf hash of the entry bytes."""
    return leaf_hash(entry_bytes)


def header_of(entry_bytes: bytes) -> tuple[int, int, bytes]:
    """(version, index, previous hash) without decoding the event."""
    if len(entry_bytes) < HEADER_LEN:
        raise InvalidArgument.expected("entry length", f">= {HEADER_LEN}", len(entry_bytes))
    version, index = _HEAD.unpack_from(entry_bytes, 0)
    return int(version), int(index), entry_bytes[9:HEADER_LEN]


def decode_entry(entry_bytes: bytes, limits: Limits = DEFAULT_LIMITS) -> Entry:
    """Strictly decode entry bytes; raise InvalidArgument on anything non-canonical."""
    version, index, prev = header_of(entry_bytes)
    if version != ENTRY_VERSION:
        raise InvalidArgument.expected("entry version", ENTRY_VERSION, version)
    if len(entry_bytes) < HEADER_LEN + _FIXED.size:
        raise InvalidArgument("entry: truncated")
    timestamp_ms, record_count, n_details = _FIXED.unpack_from(entry_bytes, HEADER_LEN)
    if n_details > limits.max_entry_details:
        raise InvalidArgument.expected(
            "entry details count", f"<= {limits.max_entry_details}", n_details
        )
    try:
        strings = entry_bytes[HEADER_LEN + _FIXED.size :].decode("utf-8").split("\x00")
    except UnicodeDecodeError as exc:
        raise InvalidArgument("entry: text is not UTF-8") from exc
    expected = _N_STRINGS + 2 * n_details
    if len(strings) != expected:
        raise InvalidArgument.expected("entry string count", expected, len(strings))
    fields = dict(zip(STRING_FIELDS, strings[:_N_STRINGS], strict=True))
    rest = strings[_N_STRINGS:]
    event = LedgerEvent(
        timestamp_ms=timestamp_ms,
        record_count=record_count,
        details=tuple((rest[i], rest[i + 1]) for i in range(0, len(rest), 2)),
        **fields,  # type: ignore[arg-type]  # kind/role/decision checked below
    )
    _checked_strings(event, limits)
    return Entry(index=index, prev_hash=prev, event=event)
