"""Canonical entry encoding: round trips, one encoding per event, metadata-only refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import InvalidArgument
from gateway.ledger.entry import GENESIS_PREV, decode_entry, encode_entry, header_of
from tests.ledger.ledger_testkit import make_event

text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)


@given(
    i=st.integers(0, 2**40),
    rid=text.filter(bool),
    reason=text,
    details=st.dictionaries(text.filter(bool), text, max_size=5),
    count=st.integers(0, 2**62),
)
def test_encode_decode_round_trip(
    i: int, rid: str, reason: str, details: dict[str, str], count: int
) -> None:
    ev = make_event(
        1, request_id=rid, reason=reason, record_count=count, details=tuple(sorted(details.items()))
    )
    data = encode_entry(i, bytes(range(32)), ev)
    entry = decode_entry(data)
    assert entry.event == ev and entry.index == i and entry.prev_hash == bytes(range(32))
    assert encode_entry(i, bytes(range(32)), entry.event) == data
    assert header_of(data)[1] == i


@pytest.mark.parametrize(
    "change",
    [
        {"reason": "line\nbreak"},
        {"request_id": "a\x00b"},
        {"request_id": ""},
        {"payload_digest": "A" * 64},
        {"payload_digest": "abc"},
        {"holder_signature": "not-base64"},
        {"kind": "exfiltrate"},
        {"decision": "maybe"},
        {"record_count": -1},
        {"dataset": "x" * 129},
        {"details": (("b", "1"), ("a", "2"))},
        {"details": (("a", "1"), ("a", "2"))},
    ],
)
def test_events_that_are_not_plain_metadata_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        encode_entry(0, GENESIS_PREV, make_event(0, **change))


def test_trailing_or_missing_bytes_are_not_canonical() -> None:
    data = encode_entry(0, GENESIS_PREV, make_event(3))
    for bad in (data + b"\x00x", data[:-1] + b"\x00", data[:50], data[:60]):
        with pytest.raises(InvalidArgument):
            decode_entry(bad)
    for version in (b"\x01", b"\x03"):  # version 1 lacked response digest and legal basis
        with pytest.raises(InvalidArgument):
            decode_entry(version + data[1:])
