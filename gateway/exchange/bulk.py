"""Streamed bulk transfers: the values and rules both sides share.

Owns: ``BulkQuery`` (a service system's bulk request, validated), the resume
``cursor`` (request id and next row) and the rule saying which of the
requesting gateway's own ledger entries vouches for one (``vouches_for``), the
chunk plaintext (a ``ColumnBatch``:
the rows column by column, made and checked here), the associated data
binding a sealed chunk to sender, recipient, request, position and size, and
``ChunkChain``, the hash chain the holder signs in its final message. Pure:
bytes in, bytes out.

The holder side is ``gateway.exchange.bulk_holder``, the requester side
``gateway.exchange.bulk_requester``.

Why a chain: each chunk is sealed to the recipient (anyone holding its public
key could seal one), so a chunk proves nothing by itself; the signed final
message commits to the digest, index, first row and size of every chunk in
order. A dropped, reordered, replayed, substituted or truncated chunk changes
the chain head or the count, and the transfer is not reported complete.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from gateway import crypto, domains, identifiers
from gateway._proto.dataexchange.gateway.v1 import common_pb2
from gateway.errors import InvalidArgument, VerificationFailed
from gateway.exchange.records import RecordsQuery
from gateway.ledger.events import LedgerEvent
from gateway.limits import Limits

_CURSOR = re.compile(r"^v1:([0-9a-f-]{36}):([0-9]{1,12})$")
COMMITMENT_LEN = 32


@dataclass(frozen=True)
class Cursor:
    """Where a transfer stopped: its request id and the next row to send."""

    request_id: str
    next_row: int

    def encode(self) -> str:
        return f"v1:{self.request_id}:{self.next_row}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        m = _CURSOR.fullmatch(text)
        if m is None or not identifiers.is_request_id(m.group(1)):
            raise InvalidArgument.expected(
                "cursor", "the cursor of a chunk received (v1:<request id>:<row>)", text[:80]
            )
        return cls(m.group(1), int(m.group(2)))


@dataclass(frozen=True)
class BulkQuery:
    """What a service system asks for in a streamed bulk transfer."""

    holder: str
    dataset: str
    purpose: str
    fields: tuple[str, ...]
    client_reference: str = ""
    cursor: str = ""
    max_rows: int = 0  # most rows wanted; 0: as many as the agreement allows

    def validate(self, limits: Limits) -> Cursor | None:
        RecordsQuery(
            self.holder, self.dataset, self.purpose, (), self.fields, self.client_reference
        ).validate(limits)
        if (
            isinstance(self.max_rows, bool)
            or not isinstance(self.max_rows, int)
            or self.max_rows < 0
        ):
            raise InvalidArgument.expected("max_rows", "a whole number >= 0", self.max_rows)
        return Cursor.parse(self.cursor) if self.cursor else None

    def rows_asked(self, limits: Limits) -> int:
        """The most rows the requesting gateway accepts in this transfer: the
        service system's ``max_rows``, never more than its own per-transfer cap."""
        cap = limits.max_stream_rows_per_request
        return min(self.max_rows, cap) if self.max_rows else cap


def vouches_for(
    entry: LedgerEvent, cursor: Cursor, me: str, service_system: str, query: BulkQuery
) -> bool:
    """Whether ``entry``, in the requesting gateway's own ledger, is the transfer
    ``cursor`` continues: one this gateway (``me``) received from the same holder
    for the same service system, dataset and purpose, and the cursor's row lies
    within the rows it received (from its first row to the last one received)."""
    if not (
        entry.role == "requester"
        and entry.local == me
        and entry.request_id == cursor.request_id
        and entry.counterparty == query.holder
        and entry.service_system == service_system
        and entry.dataset == query.dataset
        and entry.purpose == query.purpose
        and ("stream", "true") in entry.details
    ):
        return False
    first = next((v for k, v in entry.details if k == "start_row"), "0")
    if not (first.isascii() and first.isdigit()):
        return False
    return int(first) <= cursor.next_row <= int(first) + entry.record_count


def chunk_context(
    sender: str, recipient: str, request_id: str, index: int, first_row: int, row_count: int
) -> bytes:
    """Associated data of a sealed chunk: who, to whom, which request, where, how many."""
    return f"{sender}\n{recipient}\n{request_id}\n{index}\n{first_row}\n{row_count}".encode()


class ChunkChain:
    """c0 = H(tag || 0x00 || request digest); c(i+1) = H(c(i) || i || first_row || count || H(chunk)).

    H is the federation suite's hash (SHA-256 for intl, SM3 for gm)."""

    def __init__(
        self, request_digest: bytes, digest: Callable[[bytes], bytes] = crypto.sha256
    ) -> None:
        self._digest = digest
        self._head = digest(domains.STREAM_COMMITMENT.encode() + b"\x00" + request_digest)
        self.chunks = 0
        self.rows = 0

    @property
    def head(self) -> bytes:
        return self._head

    @property
    def next_index(self) -> int:
        return self.chunks

    def add(self, index: int, first_row: int, row_count: int, plaintext: bytes) -> None:
        self._head = self._digest(
            self._head + struct.pack(">QQI", index, first_row, row_count) + self._digest(plaintext)
        )
        self.chunks += 1
        self.rows += row_count


def column_batch(row_count: int, columns: Sequence[tuple[str, Sequence[str]]]) -> bytes:
    """A chunk's plaintext: its rows as a ``ColumnBatch`` (one message per chunk,
    not one per row), deterministically serialised (the chain hashes these bytes)."""
    batch = common_pb2.ColumnBatch(row_count=row_count)
    for name, values in columns:
        batch.columns.add(name=name).values.extend(values)
    return batch.SerializeToString(deterministic=True)


def open_column_batch(
    plaintext: bytes, index: int, row_count: int, allowed: Collection[str]
) -> common_pb2.ColumnBatch:
    """Parse and check a received chunk's plaintext: ``row_count`` (> 0) rows, every
    column exactly that long, column names distinct and among the ``allowed``
    (released) fields. Raises VerificationFailed."""
    batch = common_pb2.ColumnBatch()
    try:
        batch.ParseFromString(plaintext)
    except (DecodeError, ValueError) as exc:
        raise VerificationFailed(f"chunk {index} could not be opened") from exc
    if batch.row_count != row_count or row_count == 0:
        raise VerificationFailed(f"chunk {index} does not hold its {row_count} rows")
    names = [c.name for c in batch.columns]
    if not names or len(set(names)) != len(names) or not set(names) <= set(allowed):
        raise VerificationFailed(
            f"chunk {index} carries fields outside the holder's signed decision"
        )
    if any(len(c.values) != row_count for c in batch.columns):
        raise VerificationFailed(f"chunk {index} does not hold its {row_count} rows")
    return batch


def batch_rows(batch: common_pb2.ColumnBatch) -> Iterator[dict[str, str]]:
    """The rows of a ``ColumnBatch``, one dict each (field -> value)."""
    names = [c.name for c in batch.columns]
    for values in zip(*(c.values for c in batch.columns), strict=True):
        yield dict(zip(names, values, strict=True))
