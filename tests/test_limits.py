"""Limits: every size and count limit is read from ``[limits]`` in gateway.toml and honoured."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway._proto.dataexchange.gateway.v1 import stats_pb2
from gateway.config import load_config
from gateway.crypto import SigningKey
from gateway.errors import InvalidArgument, PolicyFileError, VerificationFailed
from gateway.ledger.bundle import verify_bundle_bytes
from gateway.ledger.entry import decode_entry, encode_entry
from gateway.ledger.events import clean_reason
from gateway.ledger.note import parse_note, sign_note
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.stats.convert import federated_from_proto, query_from_proto
from tests.ledger.ledger_testkit import make_event

_CONFIG = """
jurisdiction = "110000"
name = "Beijing"
key_dir = "keys"
data_dir = "data"
data_source = "source.sqlite"
policies = "policies"
trust_bundle = "bundle.json"
authority_key = "authority.pub"

[listen]
peer = "127.0.0.1:1"
service = "127.0.0.1:2"

[limits]
{limits}
"""


def _limits(tmp_path: Path, table: str) -> Limits:
    path = tmp_path / "gateway.toml"
    path.write_text(_CONFIG.format(limits=table), encoding="utf-8")
    return load_config(path).limits


def _stats_query(filters: int = 0, values: int = 1) -> stats_pb2.StatsQuery:
    return stats_pb2.StatsQuery(
        dataset="commuters",
        purpose="planning",
        statistic=stats_pb2.STATISTIC_KIND_COUNT,
        epsilon=1.0,
        confidence=0.95,
        filters=[
            stats_pb2.StatsFilter(column=f"c{i}", values=[str(v) for v in range(values)])
            for i in range(filters)
        ],
    )


def test_configured_stats_limits_refuse_what_the_defaults_allow(tmp_path: Path) -> None:
    limits = _limits(
        tmp_path, "max_stats_filters = 1\nmax_stats_filter_values = 2\nmax_stats_group_by = 1"
    )
    assert query_from_proto(_stats_query(filters=2), DEFAULT_LIMITS).filters
    with pytest.raises(InvalidArgument, match="filters: expected at most 1"):
        query_from_proto(_stats_query(filters=2), limits)
    with pytest.raises(InvalidArgument, match="at most 2"):
        query_from_proto(_stats_query(filters=1, values=3), limits)
    grouped = _stats_query()
    grouped.group_by.extend(["a", "b"])
    with pytest.raises(InvalidArgument, match="at most 1 columns"):
        federated_from_proto(
            stats_pb2.StatsQueryRequest(jurisdictions=["120000"], query=grouped), limits
        )


def test_configured_reason_length_bounds_what_is_ledgered(tmp_path: Path) -> None:
    limits = _limits(tmp_path, "max_reason_chars = 10")
    assert len(clean_reason("x" * 500, limits)) == 10
    assert len(clean_reason("x" * 500, DEFAULT_LIMITS)) == 500


def test_configured_entry_details_limit_refuses_more_details(tmp_path: Path) -> None:
    limits = _limits(tmp_path, "max_entry_details = 1")
    event = make_event(0, details=(("a", "1"), ("b", "2")))
    data = encode_entry(0, b"\x00" * 32, event, DEFAULT_LIMITS)
    assert decode_entry(data, DEFAULT_LIMITS).event == event
    with pytest.raises(InvalidArgument, match="<= 1"):
        decode_entry(data, limits)
    with pytest.raises(InvalidArgument, match="<= 1 pairs"):
        encode_entry(0, b"\x00" * 32, event, limits)


def test_configured_note_and_bundle_sizes_refuse_oversized_input(tmp_path: Path) -> None:
    limits = _limits(tmp_path, "max_note_bytes = 64\nmax_ledger_bundle_bytes = 16")
    note = sign_note("origin\n1\n" + "A" * 100 + "\n", "origin", SigningKey.generate())
    assert parse_note(note.encode())[0]
    with pytest.raises(VerificationFailed, match="too large"):
        parse_note(note.encode(), limits)
    with pytest.raises(VerificationFailed, match="too large"):
        verify_bundle_bytes(b"{" + b" " * 20 + b"}", limits=limits)


def test_limits_table_refuses_unknown_and_non_positive_entries(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="max_pages"):
        _limits(tmp_path, "max_pages = 3")
    with pytest.raises(InvalidArgument, match=r"limits\.max_page_entries"):
        _limits(tmp_path, "max_page_entries = 0")


def test_gateway_refuses_a_bundle_over_its_configured_member_limit(tmp_path: Path) -> None:
    from gateway.demo.setup import build_federation
    from gateway.errors import TrustBundleRejected
    from gateway.server.app import Gateway

    fed = build_federation(tmp_path, rows=20)
    site = fed.sites["110000"]
    config = site.config.read_text(encoding="utf-8")
    assert "[limits]" not in config
    site.config.write_text(config + "\n[limits]\nmax_bundle_members = 2\n", encoding="utf-8")
    with pytest.raises(TrustBundleRejected, match="3 members, limit 2"):
        Gateway(load_config(site.config))
