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
    # Longest wait between reconnection attempts to a peer that is down, so a
    # restarted peer is reached again within about this long (gRPC's own
    # default grows to 120 s).
    peer_reconnect_backoff_seconds: float = 1.0
    # Worker threads of each gRPC server (the service port and the peer port).
    # A call holds one for its whole length, waits on peers and on the database
    # included: a requester's service port bounds how many exchanges it has in
    # flight, a holder's peer port how many it serves at once (replicas on
    # PostgreSQL need several in flight to share their commits).
    server_workers: int = 16
    # Outbound channels to peers kept (one per member endpoint; the least
    # recently used is closed past it), and how long a channel replaced after
    # a trust change may finish the calls still on it before it is closed.
    max_peer_channels: int = 1024
    peer_channel_retire_seconds: float = 60.0
    # What a refusal echoes: a caller's value cut to max_echo_chars in a
    # message, a whole status message (and its log line) to max_status_chars;
    # refusals logged at most refusal_log_burst per source and kind per window.
    max_echo_chars: int = 64
    max_status_chars: int = 1024
    refusal_log_burst: int = 5
    refusal_log_window_seconds: float = 60.0
    refusal_log_sources: int = 10_000  # counters kept; past it they are reset
    # Fingerprints of the TLS client certificates callers presented, cached by
    # their PEM bytes (one parse and hash per certificate); cleared when full.
    max_cached_certificates: int = 1024
    # Replay protection
    replay_window_seconds: int = 300
    # Sealing sessions (gateway.sealing): one ephemeral agreement per recipient
    # serves at most this many seals, for at most this long.
    seal_session_messages: int = 10_000
    seal_session_seconds: int = 300
    seal_open_sessions: int = 1024  # agreements an opener keeps (LRU)
    # A payload no sealing key in memory opens makes the gateway look (stat
    # only) whether its sealing keys were rotated on disk at most this often.
    seal_key_recheck_seconds: float = 1.0
    # Record requests
    max_subject_ids: int = 1000
    max_fields: int = 64
    max_records_per_response: int = 10_000
    max_identifier_len: int = 128
    max_value_len: int = 4096
    # Key files read from a gateway's key directory
    max_key_file_bytes: int = 64 * 1024
    # Trust bundle
    max_bundle_members: int = 256
    max_bundle_bytes: int = 1024 * 1024
    max_bundle_signatures: int = 8
    max_datasets_per_member: int = 1024
    # Peer endpoints one member may list (replicas of one gateway).
    max_endpoints_per_member: int = 16
    max_cert_pem_bytes: int = 16 * 1024
    max_retired_keys: int = 64  # per member: keys kept after rotations, with validity
    # How far in the future a bundle's issued_at may lie (clocks differ).
    max_clock_skew_seconds: float = 300.0
    # Policy
    max_policy_files: int = 10_000
    max_policy_file_bytes: int = 1024 * 1024
    # Ledger
    max_proof_entries: int = 100_000
    max_export_entries: int = 100_000
    # Entries per page of the Ledger API (also capped by max_proof_entries).
    max_page_entries: int = 1000
    # An offline verification bundle (``gateway ledger export``) read back.
    max_ledger_bundle_bytes: int = 64 * 1024 * 1024
    # A signed checkpoint note (C2SP signed-note) read from a file or a peer.
    max_note_bytes: int = 1 << 20
    max_entry_details: int = 64
    # Replicas: a replica without the signing lease asked for a checkpoint
    # newer than the last one asks the lease holder to sign it and waits at
    # most this long (then UNAVAILABLE); it never signs itself.
    checkpoint_wait_seconds: float = 5.0
    # Replicas: a session left idle inside a transaction this long is ended by
    # PostgreSQL (rolled back, its locks freed): a replica whose machine dies or
    # whose process stops mid-append would otherwise hold the ledger's append
    # lock, and stall every other replica, until the server's TCP keepalive.
    storage_idle_transaction_seconds: float = 10.0
    # Replicas: the policy's early quota check may use a reading of the shared
    # quota this old (saves a database round trip an exchange); the charge
    # itself is always exact, so no replica ever releases past the quota.
    quota_reading_seconds: float = 1.0
    max_quota_readings: int = 10_000  # keys remembered (then forgotten, all at once)
    # Free text recorded as an entry's reason is cut to this many characters.
    max_reason_chars: int = 1000
    # Subject access: entries one holder returns for one person (the newest
    # are kept), and requests per portal per minute (at its own gateway, and
    # per requesting portal at each holder).
    max_history_entries: int = 2000
    subject_access_per_minute: int = 60
    # At each holder, per requesting member across all its portals (a holder
    # cannot check the portal a member names, so a member naming a new one on
    # every request would otherwise never be limited).
    subject_access_per_member_per_minute: int = 600
    # Signed receipts: per batch a requester sends, and queued while a holder is unreachable.
    max_receipt_batch: int = 500
    max_pending_receipts: int = 100_000
    # Keys one member may list per kind (an evidence bundle's embedded copy included).
    max_member_keys: int = 16
    # The compliance officer's HTML audit report: rows of its entry table (the
    # newest are shown; every entry is still counted in the figures).
    max_report_rows: int = 20_000
    # Statistics
    max_stats_group_keys: int = 10_000
    max_stats_jurisdictions: int = 64
    max_stats_group_by: int = 8
    max_stats_filters: int = 16
    max_stats_filter_values: int = 1000
    max_stats_candidates: int = 1000
    max_stats_bin_edges: int = 1001
    # A privacy-budget reservation still ``reserved`` this long after its
    # request, with no entry for it in the ledger, is marked ``failed`` at
    # start-up (it stays counted as spent); far above any request's lifetime,
    # so a replica's request still in progress is never settled under it.
    stats_reservation_open_seconds: float = 3600.0
    # Database sources (gateway.sources.sql). One database holds at most
    # pool_size + overflow connections, fewer than a server's workers, so a
    # database that hangs cannot take every worker; a request that finds no
    # free connection within source_pool_timeout_seconds answers UNAVAILABLE.
    # Every query is bounded by source_query_timeout_seconds (PostgreSQL
    # statement_timeout and TCP user timeout with keepalives every
    # source_keepalive_seconds; MySQL/MariaDB read/write timeouts).
    source_pool_size: int = 4
    source_pool_overflow: int = 2
    source_pool_timeout_seconds: float = 2.0
    source_connect_timeout_seconds: int = 5
    source_query_timeout_seconds: int = 60
    source_keepalive_seconds: int = 10
    source_batch_rows: int = 10_000
    source_frame_cache_seconds: float = 30.0
    # Statistics frames a source keeps (one per dataset and column set; the
    # least recently used is dropped first).
    source_frame_cache_entries: int = 8
    # A replaced statistics frame's file (gateway.sources.frames) is deleted this
    # long after, so a query already scanning it finishes on its data.
    source_frame_file_grace_seconds: float = 300.0
    # Rows per file of a statistics frame: what is in memory while one is kept.
    source_frame_file_rows: int = 100_000
    # The operations listener (/metrics, /healthz, /readyz): a connection that
    # sends no request, or reads no answer, for this long is closed; past
    # ops_max_connections at once, new ones are closed unanswered.
    ops_request_timeout_seconds: float = 10.0
    ops_max_connections: int = 32
    # /readyz and /metrics reuse the result of the sources' readiness check
    # (one row per served dataset) for this long; one check runs at a time.
    ready_check_seconds: float = 1.0
    # This gateway's own TLS certificate (issued for 825 days): /readyz warns,
    # and one warning is logged, once fewer than this many days remain.
    own_certificate_warn_days: int = 30
    # Streaming bulk transfers
    stream_chunk_rows: int = 2_000
    max_stream_rows_per_request: int = 10_000_000
    max_stream_start_row: int = 10**12
    max_concurrent_streams: int = 8
    stream_deadline_seconds: float = 3600.0
    # A resume naming a transfer this gateway is still ending (its service
    # system cut it and resumed at once) waits this long for its ledger entry.
    stream_resume_wait_seconds: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or value <= 0:
                raise InvalidArgument.expected(f"limits.{f.name}", "a positive number", value)


DEFAULT_LIMITS = Limits()
