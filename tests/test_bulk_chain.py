"""The bulk-transfer hash chain and resume cursor (pure values, no I/O).

Property: whatever an attacker does to the sequence of chunks between the
gateways (drop, duplicate, swap, change a byte, renumber), the chain head or the
(chunks, rows) count the holder signed differs from what the requester computes.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import InvalidArgument
from gateway.exchange.bulk import ChunkChain, Cursor, chunk_context

Chunk = tuple[int, int, int, bytes]  # index, first_row, row_count, plaintext


def _chunks(payloads: list[bytes]) -> list[Chunk]:
    out, row = [], 0
    for i, p in enumerate(payloads):
        n = len(p) % 7 + 1
        out.append((i, row, n, p))
        row += n
    return out


def _seal(request_digest: bytes, chunks: list[Chunk]) -> tuple[bytes, int, int]:
    chain = ChunkChain(request_digest)
    for c in chunks:
        chain.add(*c)
    return chain.head, chain.chunks, chain.rows


def test_chain_matches_its_specification() -> None:
    """c0 = H(tag 0x00 digest); c1 = H(c0 || u64 0 || u64 0 || u32 3 || H(chunk))."""
    digest = bytes(range(32))
    c0 = hashlib.sha256(b"cn.dataexchange.gateway.v1.stream.commitment\x00" + digest).digest()
    body = b"records"
    c1 = hashlib.sha256(
        c0 + (0).to_bytes(8, "big") + (0).to_bytes(8, "big") + (3).to_bytes(4, "big")
        + hashlib.sha256(body).digest()
    ).digest()  # fmt: skip
    assert _seal(digest, [(0, 0, 3, body)]) == (c1, 1, 3)
    assert ChunkChain(digest).head == c0


payloads = st.lists(st.binary(min_size=1, max_size=40), min_size=2, max_size=12)


@given(payloads, st.data())
def test_any_change_to_the_chunk_sequence_changes_the_signed_commitment(
    ps: list[bytes], data: st.DataObject
) -> None:
    digest = b"\x01" * 32
    good = _chunks(ps)
    signed = _seal(digest, good)
    i = data.draw(st.integers(0, len(good) - 1))
    attack = data.draw(
        st.sampled_from(["drop", "duplicate", "swap", "flip", "renumber", "other_request"])
    )
    bad = list(good)
    other = digest
    if attack == "drop":
        del bad[i]
    elif attack == "duplicate":
        bad.insert(i, bad[i])
    elif attack == "swap":
        j = (i + 1) % len(bad)
        if bad[i][3] == bad[j][3] and bad[i][2] == bad[j][2]:
            return  # identical chunks: swapping changes nothing
        bad[i], bad[j] = bad[j], bad[i]
    elif attack == "flip":
        idx, first, n, p = bad[i]
        bad[i] = (idx, first, n, bytes([p[0] ^ 1]) + p[1:])
    elif attack == "renumber":
        idx, first, n, p = bad[i]
        bad[i] = (idx, first + 1, n, p)
    else:
        other = b"\x02" * 32
    assert _seal(other, bad) != signed


def test_chunk_context_binds_every_position_field() -> None:
    base = chunk_context("110000", "120000", "r", 1, 40, 40)
    for changed in (
        chunk_context("110000", "130000", "r", 1, 40, 40),
        chunk_context("110000", "120000", "s", 1, 40, 40),
        chunk_context("110000", "120000", "r", 2, 40, 40),
        chunk_context("110000", "120000", "r", 1, 41, 40),
        chunk_context("110000", "120000", "r", 1, 40, 39),
    ):
        assert changed != base


def test_cursor_round_trips_and_refuses_anything_else() -> None:
    c = Cursor("3c9d63cc-2a4b-4c5d-8e6f-0123456789ab", 120)
    assert Cursor.parse(c.encode()) == c
    for bad in ("", "v1:x:1", "v2:3c9d63cc-2a4b-4c5d-8e6f-0123456789ab:1",
                "v1:3c9d63cc-2a4b-4c5d-8e6f-0123456789ab:-1",
                "v1:3c9d63cc-2a4b-4c5d-8e6f-0123456789ab:1\n"):  # fmt: skip
        with pytest.raises(InvalidArgument, match="cursor"):
            Cursor.parse(bad)


# --------------------------------------------------------------------------
# The chunk plaintext: a ColumnBatch, checked by the requester before use.
# --------------------------------------------------------------------------


def test_column_batch_round_trips_rows_in_order() -> None:
    from gateway.exchange.bulk import batch_rows, column_batch, open_column_batch

    raw = column_batch(3, [("person_id", ["a", "b", "c"]), ("age_band", ["1", "", "3"])])
    batch = open_column_batch(raw, 0, 3, {"person_id", "age_band", "other"})
    assert list(batch_rows(batch)) == [
        {"person_id": "a", "age_band": "1"},
        {"person_id": "b", "age_band": ""},
        {"person_id": "c", "age_band": "3"},
    ]
    assert column_batch(3, [("person_id", ["a", "b", "c"]), ("age_band", ["1", "", "3"])]) == raw


@pytest.mark.parametrize(
    ("what", "columns", "claimed"),
    [
        ("fewer rows than claimed", [("person_id", ["a", "b"])], 3),
        ("a short column", [("person_id", ["a", "b", "c"]), ("age_band", ["1"])], 3),
        ("a field outside the decision", [("salary", ["1", "2", "3"])], 3),
        ("the same column twice", [("person_id", ["a"] * 3), ("person_id", ["b"] * 3)], 3),
        ("no column at all", [], 3),
        ("an empty chunk", [("person_id", [])], 0),
    ],
)
def test_hostile_chunk_plaintext_fails_verification(
    what: str, columns: list[tuple[str, list[str]]], claimed: int
) -> None:
    from gateway.errors import VerificationFailed
    from gateway.exchange.bulk import column_batch, open_column_batch

    raw = column_batch(claimed, columns)
    with pytest.raises(VerificationFailed):
        open_column_batch(raw, 4, claimed, {"person_id", "age_band"})


def test_garbage_chunk_plaintext_fails_verification_not_internal() -> None:
    from gateway.errors import VerificationFailed
    from gateway.exchange.bulk import open_column_batch

    with pytest.raises(VerificationFailed):
        open_column_batch(b"\xff\xff\xff\xff", 0, 1, {"person_id"})
