"""Every size, count and time limit in one frozen object.

Owns: the limits and their defaults. Does not own: where they are read from
(``gateway.config`` loads an optional ``[limits]`` table into this).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from gateway.errors import InvalidArgument


@dataclass(frozen=True)
class Limits:
    # Transport
    max_message_bytes: int = 8 * 1024 * 1024
    peer_deadline_seconds: float = 10.0
    # Replay protection
    replay_window_seconds: int = 300
    # Record requests
    max_subject_ids: int = 1000
    max_fields: int = 64
    max_records_per_response: int = 10_000
    max_identifier_len: int = 128
    max_value_len: int = 4096
    # Trust bundle
    max_bundle_members: int = 256
    max_bundle_bytes: int = 1024 * 1024
    # Policy
    max_policy_files: int = 10_000
    max_policy_file_bytes: int = 1024 * 1024
    # Ledger
    max_proof_entries: int = 100_000
    max_export_entries: int = 100_000
    # Statistics
    max_stats_group_keys: int = 10_000
    max_stats_jurisdictions: int = 64
    # Database sources (gateway.sources.sql)
    source_pool_size: int = 4
    source_pool_overflow: int = 4
    source_pool_timeout_seconds: float = 5.0
    source_connect_timeout_seconds: int = 5
    source_query_timeout_seconds: int = 60
    source_batch_rows: int = 10_000
    source_frame_cache_seconds: float = 30.0
    # Streaming bulk transfers
    stream_chunk_rows: int = 2_000
    max_stream_rows_per_request: int = 10_000_000
    max_stream_start_row: int = 10**12
    max_concurrent_streams: int = 8
    stream_deadline_seconds: float = 3600.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or value <= 0:
                raise InvalidArgument.expected(f"limits.{f.name}", "a positive number", value)


DEFAULT_LIMITS = Limits()
