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
    # Sealing sessions (gateway.sealing): one ephemeral agreement per recipient
    # serves at most this many seals, for at most this long.
    seal_session_messages: int = 10_000
    seal_session_seconds: int = 300
    seal_open_sessions: int = 1024  # agreements an opener keeps (LRU)
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

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or value <= 0:
                raise InvalidArgument.expected(f"limits.{f.name}", "a positive number", value)


DEFAULT_LIMITS = Limits()
