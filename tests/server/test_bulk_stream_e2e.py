"""Streamed bulk transfers end to end: two real gateways, real gRPC over (m)TLS.

Each test names the failure or attack it covers. Attacks on the stream sit
between the gateways (a wrapping transport at the requester) and re-seal what
they change to the requester's public key, as anyone holding the trust bundle
could: only the holder's signed commitment can catch them.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from gateway import crypto, domains
from gateway._proto.dataexchange.gateway.v1 import peer_pb2, service_pb2
from gateway.config import load_config
from gateway.demo.setup import REPO_POLICIES, build_federation
from gateway.exchange.bulk import ChunkChain, chunk_context, column_batch
from gateway.ledger.events import LedgerEvent
from gateway.server.app import Gateway
from tests.conftest import RunningFederation, stop_federation
from tests.dbs import scratch_schema
from tests.helpers import ledger_events

ROWS = 300
CHUNK = 40
AGREEMENT = "agreements/si-contributions-to-tianjin-planning.yaml"
ARGS = ("110000", "si_contributions", "commuter_planning")
Messages = list[service_pb2.StreamRecordsResponse]


def _federation(
    root: Path,
    per_request: int = 1000,
    per_day: int = 100_000,
    source: tuple[str, str] | None = None,
    suite: str = "intl",
) -> RunningFederation:
    policies = root / "policies"
    shutil.copytree(REPO_POLICIES, policies)
    agreement = policies / "110000" / AGREEMENT
    agreement.write_text(
        agreement.read_text(encoding="utf-8")
        .replace("max_records_per_request: 100", f"max_records_per_request: {per_request}")
        .replace("quota_per_day: 500", f"quota_per_day: {per_day}"),
        encoding="utf-8",
    )
    extra = {"source_url": source[0], "source_schema": source[1]} if source else {}
    fed = build_federation(root / "fed", rows=ROWS, policies=policies, suite=suite, **extra)  # type: ignore[arg-type]
    for site in fed.sites.values():
        with site.config.open("a", encoding="utf-8") as f:
            f.write(f"\n[limits]\nstream_chunk_rows = {CHUNK}\n")
    gws = {code: Gateway(load_config(site.config)) for code, site in fed.sites.items()}
    for gw in gws.values():
        gw.start()
    return RunningFederation(fed, gws)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFederation]:
    """One cluster for the module; tests that change a gateway put it back."""
    rf = _federation(tmp_path_factory.mktemp("bulk"))
    yield rf
    stop_federation(rf)


@contextmanager
def _transport(rf: RunningFederation, replacement: object) -> Iterator[None]:
    """Route Tianjin's bulk streams through ``replacement`` for the block."""
    bulk = rf.gateways["120000"].bulk_requester
    real = bulk._transport
    bulk._transport = replacement  # type: ignore[assignment]
    try:
        yield
    finally:
        bulk._transport = real


def _stream(
    rf: RunningFederation,
    cursor: str = "",
    service: str = "tianjin-planning",
    columnar: bool = False,
) -> Messages:
    with rf.client("120000", service) as c:
        return list(c.stream_records(*ARGS, cursor=cursor, timeout=30, columnar=columnar))


def _rows(msgs: Messages) -> list[dict[str, str]]:
    from gateway.client import chunk_rows

    return [r for m in msgs if m.HasField("chunk") for r in chunk_rows(m.chunk)]


def _signatures_verify_offline(rf: RunningFederation, *entries: LedgerEvent) -> None:
    """Both entries record the holder's signed end with the digest it is made over, and
    the agreement's legal basis, so `ledger verify --bundle` checks their signatures."""
    from gateway.ledger.signatures import check_entry_signatures
    from gateway.ledger.trustkeys import TrustedKeys

    keys = TrustedKeys.from_bundle(rf.gateways["110000"].bundle())
    for e in entries:
        assert e.response_digest and e.legal_basis
        check = check_entry_signatures(e, keys)
        assert (check.problem, check.checked, check.unverifiable) == ("", 2, 0)
    assert len({e.response_digest for e in entries}) == 1


def test_bulk_stream_delivers_every_row_once_in_order_and_one_entry_per_side_records_the_commitment(
    fed: RunningFederation,
) -> None:
    bj0, tj0 = (
        len(ledger_events(fed.gateways["110000"])),
        len(ledger_events(fed.gateways["120000"])),
    )
    msgs = _stream(fed)
    kinds = [m.WhichOneof("kind") for m in msgs]
    assert kinds[0] == "started" and kinds[-1] == "completed"
    assert kinds[1:-1] == ["chunk"] * -(-ROWS // CHUNK)
    rows = _rows(msgs)
    assert len(rows) == ROWS
    assert [m.chunk.first_row for m in msgs[1:-1]] == list(range(0, ROWS, CHUNK))
    # Pseudonymised: no resident ID number leaves, and no row twice.
    assert all(len(r["person_id"]) != 18 for r in rows)
    assert len({r["person_id"] for r in rows}) == ROWS
    done = msgs[-1].completed
    assert (done.row_count, done.truncated) == (ROWS, False)
    holder = ledger_events(fed.gateways["110000"])[bj0:]
    requester = ledger_events(fed.gateways["120000"])[tj0:]
    # The holder: a started entry (before anything left) and a closing one; the requester: one.
    assert [e.kind for e in holder] == ["transfer", "transfer"]
    assert [e.kind for e in requester] == ["transfer"]
    s, h, r = holder[0], holder[1], requester[0]
    assert ("stream_phase", "started") in s.details and ("stream_phase", "closed") in h.details
    assert s.request_id == h.request_id == r.request_id == msgs[0].started.request_id
    assert (s.record_count, s.payload_digest) == (0, "")
    assert (s.request_digest, s.requester_signature) == (r.request_digest, r.requester_signature)
    assert h.record_count == r.record_count == ROWS
    assert h.payload_digest == r.payload_digest == done.commitment
    assert h.holder_signature == r.holder_signature != s.holder_signature != ""
    assert ("complete", "true") in h.details and ("complete", "true") in r.details
    _signatures_verify_offline(fed, h, r)
    _signatures_verify_offline(fed, s)  # the started entry records the signed start
    subject = fed.subject("110000", "SELECT person_id FROM si_contributions LIMIT 1")
    assert subject not in repr(s) + repr(h) + repr(r)


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_bulk_stream_from_a_database_register_streams_every_row_and_resumes(
    tmp_path: Path, engine: str
) -> None:
    with scratch_schema(engine) as source:
        rf = _federation(tmp_path, source=source)
        try:
            assert (
                rf.gateways["110000"]
                .policy_store.current.catalogue.dataset("si_contributions")
                .source
            )
            whole = _stream(rf)
            assert whole[-1].completed.row_count == ROWS and len(_rows(whole)) == ROWS
            rest = _stream(rf, cursor=whole[3].chunk.cursor)
            assert _rows(whole)[3 * CHUNK :] == _rows(rest)
        finally:
            stop_federation(rf)


def test_bulk_stream_in_a_gm_federation_commits_with_sm3_and_resumes(tmp_path: Path) -> None:
    rf = _federation(tmp_path, suite="gm")
    try:
        whole = _stream(rf, columnar=True)
        done = whole[-1].completed
        assert done.row_count == ROWS and not done.truncated
        holder = ledger_events(rf.gateways["110000"])[-1]
        assert holder.payload_digest == done.commitment
        _signatures_verify_offline(rf, holder, ledger_events(rf.gateways["120000"])[-1])
        # Recompute the chain from what arrived: SM3, not SHA-256.
        for digest, same in ((crypto.suite("gm").digest, True), (crypto.sha256, False)):
            chain = ChunkChain(bytes.fromhex(holder.request_digest), digest)
            for m in whole[1:-1]:  # each chunk's plaintext is its ColumnBatch
                chain.add(
                    m.chunk.index, m.chunk.first_row, m.chunk.columns.row_count,
                    m.chunk.columns.SerializeToString(deterministic=True),
                )  # fmt: skip
            assert (chain.head.hex() == done.commitment) is same
        rest = _stream(rf, cursor=whole[2].chunk.cursor)  # records, not columns: same rows
        assert _rows(whole)[2 * CHUNK :] == _rows(rest)
    finally:
        stop_federation(rf)


def test_columnar_and_per_record_deliveries_give_the_same_rows_and_commitment(
    fed: RunningFederation,
) -> None:
    """A service system asking for columns gets exactly the rows (values, order) a
    per-record one gets, both verified complete."""
    records, columns = _stream(fed), _stream(fed, columnar=True)
    assert all(not m.chunk.columns.columns for m in records if m.HasField("chunk"))
    assert all(not m.chunk.records for m in columns if m.HasField("chunk"))
    assert len(_rows(records)) == ROWS and _rows(records) == _rows(columns)
    assert records[-1].completed.row_count == columns[-1].completed.row_count == ROWS
    names = [c.name for c in columns[1].chunk.columns.columns]
    assert names == [f.name for f in columns[0].started.decision.fields]


def test_interrupted_stream_resumes_from_its_cursor_without_gap_or_duplicate(
    fed: RunningFederation,
) -> None:
    whole = _rows(_stream(fed))
    got: Messages = []
    with fed.client("120000", "tianjin-planning") as c:
        it = c.stream_records(*ARGS, timeout=30)
        for m in it:
            got.append(m)
            if len(got) == 4:  # started + 3 chunks, then the caller goes away
                break
        it.close()  # type: ignore[attr-defined]
    rest = _stream(fed, cursor=got[-1].chunk.cursor)
    assert rest[0].started.start_row == 3 * CHUNK
    assert _rows(got) + _rows(rest) == whole
    resumed = ledger_events(fed.gateways["110000"])[-1]
    assert ("resume_of", got[0].started.request_id) in resumed.details
    assert ("start_row", str(3 * CHUNK)) in resumed.details


def test_holder_ledgers_an_interrupted_transfer_with_the_rows_that_left(
    fed: RunningFederation,
) -> None:
    """The requester goes away after two chunks (the server closes the stream)."""
    tj, bj = fed.gateways["120000"], fed.gateways["110000"]
    msg = peer_pb2.PeerStreamRequest(
        service_system="tianjin-planning", dataset="si_contributions", purpose="commuter_planning"
    )
    env = tj.caller.prepare("110000", msg, domains.PEER_STREAM_REQUEST)
    before = len(ledger_events(bj))
    stream = bj.bulk_holder.stream_records(env, "120000")
    assert next(stream).WhichOneof("kind") == "start"
    # The started entry was durable before the signed start left.
    [started] = ledger_events(bj)[before:]
    assert ("stream_phase", "started") in started.details and started.record_count == 0
    kinds = [next(stream).WhichOneof("kind") for _ in range(2)]
    assert kinds == ["chunk", "chunk"] and len(ledger_events(bj)) == before + 1
    stream.close()  # type: ignore[attr-defined]
    [_, entry] = ledger_events(bj)[before:]
    assert (entry.kind, entry.record_count) == ("transfer", 2 * CHUNK)
    assert ("complete", "false") in entry.details and ("chunks", "2") in entry.details
    assert ("stream_phase", "closed") in entry.details
    assert entry.payload_digest  # the chain head over the chunks that left
    _signatures_verify_offline(fed, entry)  # signed by the holder over what left


def test_requester_ledgers_a_transfer_its_service_system_abandoned(
    fed: RunningFederation,
) -> None:
    from gateway.exchange.bulk import BulkQuery

    tj = fed.gateways["120000"]
    before = len(ledger_events(tj))
    events = tj.bulk_requester.stream_records(
        "tianjin-planning", BulkQuery("110000", "si_contributions", "commuter_planning", ())
    )
    for _ in range(3):  # started + 2 chunks
        next(events)
    events.close()  # type: ignore[attr-defined]
    [entry] = ledger_events(tj)[before:]
    assert (entry.kind, entry.role, entry.record_count) == ("transfer", "requester", 2 * CHUNK)
    assert ("complete", "false") in entry.details


def test_per_request_cap_truncates_with_a_cursor_that_continues(tmp_path: Path) -> None:
    rf = _federation(tmp_path, per_request=100)
    try:
        first = _stream(rf)
        done = first[-1].completed
        assert done.truncated and "cap of 100" in done.truncated_reason
        assert done.row_count == 100
        second = _stream(rf, cursor=done.cursor)
        assert second[0].started.start_row == 100
        assert len(_rows(first)) + len(_rows(second)) == 200
    finally:
        stop_federation(rf)


def test_daily_quota_stops_the_stream_and_the_next_one_is_refused(tmp_path: Path) -> None:
    rf = _federation(tmp_path, per_day=100)
    try:
        first = _stream(rf)
        done = first[-1].completed
        assert done.truncated and "daily quota" in done.truncated_reason
        assert done.row_count <= 100
        with pytest.raises(grpc.RpcError) as err:
            _stream(rf, cursor=done.cursor)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        stop_federation(rf)


def test_named_only_agreement_refuses_a_bulk_stream_and_both_sides_ledger_it(
    fed: RunningFederation,
) -> None:
    bj0 = len(ledger_events(fed.gateways["110000"]))
    with fed.client("130000", "hebei-housing-fund") as c:
        with pytest.raises(grpc.RpcError) as err:
            list(c.stream_records("110000", "si_contributions", "housing_fund_transfer"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "bulk request refused" in (err.value.details() or "")
    assert [e.kind for e in ledger_events(fed.gateways["110000"])[bj0:]] == ["refusal"]
    assert ledger_events(fed.gateways["130000"])[-1].kind == "refusal"


def test_unknown_caller_cannot_open_a_stream(fed: RunningFederation) -> None:
    with fed.client("120000", "tianjin-planning", token="svc_wrong") as c:
        with pytest.raises(grpc.RpcError) as err:
            list(c.stream_records(*ARGS))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_malformed_cursor_is_invalid_argument(fed: RunningFederation) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _stream(fed, cursor="v1:not-a-request:12")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cursor" in (err.value.details() or "")


# --------------------------------------------------------------------------
# Attacks on the stream between the gateways.
# --------------------------------------------------------------------------

Mutation = Callable[
    [list[peer_pb2.PeerStreamMessage], RunningFederation], list[peer_pb2.PeerStreamMessage]
]


class _Tampering:
    def __init__(self, real: object, rf: RunningFederation, mutate: Mutation) -> None:
        self._real, self._rf, self._mutate = real, rf, mutate

    def stream(self, member, method, envelope, timeout):  # type: ignore[no-untyped-def]
        msgs = list(self._real.stream(member, method, envelope, timeout))  # type: ignore[attr-defined]
        return iter(self._mutate(msgs, self._rf))


def _request_id(msgs: list[peer_pb2.PeerStreamMessage]) -> str:
    start = peer_pb2.PeerStreamStart()
    start.ParseFromString(msgs[0].start.payload)
    return start.header.request_id


def _resealed_substitute(
    msgs: list[peer_pb2.PeerStreamMessage], rf: RunningFederation
) -> list[peer_pb2.PeerStreamMessage]:
    """Replace chunk 1's rows with forged ones, sealed correctly to the requester."""
    c = msgs[2].chunk
    forged = column_batch(
        c.row_count,
        [("person_id", ["forged"] * c.row_count), ("age_band", ["25-34"] * c.row_count)],
    )
    requester_key = rf.gateways["120000"].bundle().member("120000").seal_key
    c.sealed_rows = crypto.seal(
        requester_key,
        domains.SEAL_RECORD_CHUNK,
        forged,
        chunk_context("110000", "120000", _request_id(msgs), c.index, c.first_row, c.row_count),
    )
    return msgs


def _tampered_commitment(
    msgs: list[peer_pb2.PeerStreamMessage], rf: RunningFederation
) -> list[peer_pb2.PeerStreamMessage]:
    end = peer_pb2.PeerStreamEnd()
    end.ParseFromString(msgs[-1].end.payload)
    end.commitment = bytes(32)
    msgs[-1].end.payload = end.SerializeToString(deterministic=True)
    return msgs


MUTATIONS: dict[str, tuple[Mutation, grpc.StatusCode]] = {
    "dropped_chunk": (lambda m, _: m[:2] + m[3:], grpc.StatusCode.DATA_LOSS),
    "reordered_chunks": (lambda m, _: [m[0], m[2], m[1], *m[3:]], grpc.StatusCode.DATA_LOSS),
    "replayed_chunk": (lambda m, _: [m[0], m[1], m[1], *m[2:]], grpc.StatusCode.DATA_LOSS),
    "truncated_without_end": (lambda m, _: m[:-1], grpc.StatusCode.DATA_LOSS),
    "truncated_end_claims_fewer_chunks": (lambda m, _: [*m[:-2], m[-1]], grpc.StatusCode.DATA_LOSS),
    "resealed_substituted_chunk": (_resealed_substitute, grpc.StatusCode.DATA_LOSS),
    "tampered_commitment": (_tampered_commitment, grpc.StatusCode.UNAUTHENTICATED),
    "chunk_smuggled_after_end": (lambda m, _: [*m, m[1]], grpc.StatusCode.DATA_LOSS),
}


@pytest.mark.parametrize("attack", sorted(MUTATIONS))
def test_tampered_stream_fails_verification_and_is_never_reported_complete(
    fed: RunningFederation, attack: str
) -> None:
    mutate, code = MUTATIONS[attack]
    tj = fed.gateways["120000"]
    before = len(ledger_events(tj))
    got: Messages = []
    with (
        _transport(fed, _Tampering(tj.transport, fed, mutate)),
        fed.client("120000", "tianjin-planning") as c,
    ):
        with pytest.raises(grpc.RpcError) as err:
            for m in c.stream_records(*ARGS, timeout=30):
                got.append(m)
    assert err.value.code() == code
    assert not any(m.HasField("completed") for m in got)
    [entry] = ledger_events(tj)[before:]  # one entry for the transfer, a refusal
    assert entry.role == "requester" and entry.kind == "refusal"
    assert ("complete", "true") not in entry.details


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("start_row", 2**64 - 1, "start_row"),
        ("resume_of", "../../etc/passwd", "resume_of"),
        ("service_system", "Robert'); DROP TABLE--", "service_system"),
    ],
)
def test_member_sending_a_hostile_stream_request_gets_a_signed_ledgered_refusal(
    fed: RunningFederation, field: str, value: object, says: str
) -> None:
    """A federation member (authenticated) speaking the peer protocol directly."""
    tj = fed.gateways["120000"]
    msg = peer_pb2.PeerStreamRequest(
        service_system="tianjin-planning", dataset="si_contributions", purpose="commuter_planning"
    )
    setattr(msg, field, value)
    env = tj.caller.prepare("110000", msg, domains.PEER_STREAM_REQUEST)
    bj0 = len(ledger_events(fed.gateways["110000"]))
    member = tj.bundle().member("110000")
    replies = list(tj.transport.stream(member, "StreamRecords", env, 10))
    assert [r.WhichOneof("kind") for r in replies] == ["start"]
    start = tj.caller.verify(
        "110000", env, msg.header.request_id, replies[0].start, domains.PEER_STREAM_START,
        peer_pb2.PeerStreamStart,
    )  # fmt: skip
    assert not start.decision.allowed and start.error_code == "INVALID_ARGUMENT"
    assert says in start.decision.reason
    entry = ledger_events(fed.gateways["110000"])[bj0]
    assert entry.kind == "refusal"
    if isinstance(value, str):  # hostile text never reaches the ledger as sent
        assert value not in repr(entry)


class _CutAfter:
    """The link between the gateways fails after ``n`` messages (holder crashed, network)."""

    def __init__(self, real: object, n: int) -> None:
        self._real, self._n = real, n

    def stream(self, member, method, envelope, timeout):  # type: ignore[no-untyped-def]
        from gateway.errors import PeerUnavailable

        it = self._real.stream(member, method, envelope, timeout)  # type: ignore[attr-defined]
        for i, m in enumerate(it):
            if i == self._n:
                it.close()
                raise PeerUnavailable("peer gateway 110000 is unavailable: connection reset")
            yield m


def test_holder_lost_mid_transfer_is_unavailable_ledgered_incomplete_and_resumes(
    fed: RunningFederation,
) -> None:
    whole = _rows(_stream(fed))
    tj = fed.gateways["120000"]
    got: Messages = []
    with _transport(fed, _CutAfter(tj.transport, 4)), fed.client("120000", "tianjin-planning") as c:
        with pytest.raises(grpc.RpcError) as err:
            for m in c.stream_records(*ARGS, timeout=30):
                got.append(m)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not any(m.HasField("completed") for m in got)
    entry = ledger_events(tj)[-1]
    assert (entry.kind, entry.record_count) == ("transfer", 3 * CHUNK)
    assert ("complete", "false") in entry.details
    # Reconcile pairs the requester's entry with the holder's started (+ closing) entries:
    # an interrupted transfer, not a discrepancy.
    from gateway.ledger.reconcile import reconcile

    rid = entry.request_id
    held = [
        (i, e) for i, e in enumerate(ledger_events(fed.gateways["110000"])) if e.request_id == rid
    ]
    asked = [(i, e) for i, e in enumerate(ledger_events(tj)) if e.request_id == rid]
    assert len(held) in (1, 2) and len(asked) == 1
    report = reconcile(held, asked, "110000", "120000")
    assert report.ok and report.matched == 0
    [cut] = report.interrupted
    assert (cut.request_id, cut.rows_received) == (rid, 3 * CHUNK)
    rest = _stream(fed, cursor=got[-1].chunk.cursor)
    assert _rows(got) + _rows(rest) == whole
    assert rest[-1].completed.row_count == ROWS - 3 * CHUNK


# --------------------------------------------------------------------------
# Resume cursors are checked against the requesting gateway's own ledger.
# --------------------------------------------------------------------------


def _refused(
    rf: RunningFederation,
    cursor: str,
    service: str = "tianjin-planning",
    args: tuple[str, str, str] = ARGS,
) -> grpc.RpcError:
    with rf.client("120000", service) as c, pytest.raises(grpc.RpcError) as err:
        list(c.stream_records(*args, cursor=cursor, timeout=30))
    return err.value


def _wait_until_closed(rf: RunningFederation, rid: str) -> None:
    """Both gateways have ledgered the end of the transfer its service system cut."""
    import time

    deadline = time.monotonic() + 10
    while not (
        rf.gateways["120000"].ledger.find(rid)
        and any(("stream_phase", "closed") in r.event.details
                for r in rf.gateways["110000"].ledger.find(rid))
    ):  # fmt: skip
        assert time.monotonic() < deadline, "the cut transfer was never ledgered"
        time.sleep(0.02)


def _entries(rf: RunningFederation) -> tuple[int, int]:
    return len(ledger_events(rf.gateways["110000"])), len(ledger_events(rf.gateways["120000"]))


def test_a_forged_resume_cursor_is_refused_before_the_holder_is_asked_anything(
    fed: RunningFederation,
) -> None:
    """A cursor is the caller's claim: one naming no transfer this gateway received
    does not reach the holder (it would start a 'resumed' transfer anywhere)."""
    import uuid

    before = _entries(fed)
    for cursor in (f"v1:{uuid.uuid4()}:0", f"v1:{uuid.uuid4()}:{3 * CHUNK}"):
        err = _refused(fed, cursor)
        details = err.details() or ""
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.startswith("cursor: not the cursor of a bulk transfer this gateway received")
        assert len(details) <= fed.gateways["120000"].config.limits.max_status_chars
    assert _entries(fed) == before  # nothing ledgered, nothing asked of the holder


def test_a_resume_cursor_holds_only_for_the_same_service_system_holder_dataset_purpose_and_rows(
    fed: RunningFederation,
) -> None:
    got: Messages = []
    with fed.client("120000", "tianjin-planning") as c:
        it = c.stream_records(*ARGS, timeout=30)
        for m in it:
            got.append(m)
            if len(got) == 3:  # started + 2 chunks, then the caller goes away
                break
        it.close()  # type: ignore[attr-defined]
    rid, cursor = got[0].started.request_id, got[-1].chunk.cursor
    assert cursor == f"v1:{rid}:{2 * CHUNK}"
    _wait_until_closed(fed, rid)
    [cut] = fed.gateways["120000"].ledger.find(rid)
    received = cut.event.record_count  # what the gateway took in (it may be a chunk ahead)
    assert received >= 2 * CHUNK
    before = _entries(fed)
    # Another service system of the same gateway, another purpose, rows never received.
    for err in (
        _refused(fed, cursor, service="tianjin-procurement"),
        _refused(fed, cursor, args=("110000", "si_contributions", "housing_fund_transfer")),
        _refused(fed, f"v1:{rid}:{received + 1}"),
        _refused(fed, f"v1:{rid}:{10**9}"),
    ):
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.details() or "").startswith("cursor: ")
    assert _entries(fed) == before
    # Its own service system resumes from any row it received, including the first.
    rest = _stream(fed, cursor=cursor)
    assert rest[0].started.start_row == 2 * CHUNK and rest[-1].HasField("completed")
    again = _stream(fed, cursor=f"v1:{rid}:{CHUNK}")
    assert _rows(again)[CHUNK:] == _rows(rest)
    # And a resumed transfer is itself resumable (its entry names its first row).
    done = rest[-1].completed
    assert _stream(fed, cursor=done.cursor)[-1].completed.row_count == 0


def test_a_resume_sent_before_the_cut_transfer_is_ledgered_waits_for_its_entry(
    fed: RunningFederation,
) -> None:
    """The service system cuts a transfer and resumes at once: its gateway is still
    ending the first one (its entry not yet written); the resume waits for it."""
    import threading

    from gateway.exchange.bulk import BulkQuery

    bulk = fed.gateways["120000"].bulk_requester
    events = bulk.stream_records("tianjin-planning", BulkQuery(*ARGS, ()))
    got = [next(events) for _ in range(3)]  # started + 2 chunks; not ledgered yet
    cursor = got[-1].cursor  # type: ignore[union-attr]
    assert not fed.gateways["120000"].ledger.find(got[0].request_id)  # type: ignore[union-attr]
    threading.Timer(0.3, events.close).start()  # type: ignore[attr-defined]
    rest = list(bulk.stream_records("tianjin-planning", BulkQuery(*ARGS, (), cursor=cursor)))
    assert rest[0].start_row == 2 * CHUNK  # type: ignore[union-attr]
    assert rest[-1].row_count == ROWS - 2 * CHUNK  # type: ignore[union-attr]


# --------------------------------------------------------------------------
# The requesting gateway takes no more rows than it asked for.
# --------------------------------------------------------------------------


def test_a_service_system_asking_for_fewer_rows_gets_no_more_and_its_cursor_continues(
    fed: RunningFederation,
) -> None:
    whole = _rows(_stream(fed))
    with fed.client("120000", "tianjin-planning") as c:
        first = list(c.stream_records(*ARGS, max_rows=100, timeout=30))
    assert first[0].started.max_rows == 100
    done = first[-1].completed
    assert (done.row_count, done.truncated) == (100, True)
    assert "the request's cap of 100 rows" in done.truncated_reason
    assert len(_rows(first)) == 100
    rest = _stream(fed, cursor=done.cursor)
    assert _rows(first) + _rows(rest) == whole


def test_the_requesting_gateways_own_row_cap_bounds_a_transfer(fed: RunningFederation) -> None:
    """[limits] max_stream_rows_per_request at the requester, not only the holder's cap."""
    bulk = fed.gateways["120000"].bulk_requester
    real = bulk._limits
    bulk._limits = dataclasses.replace(real, max_stream_rows_per_request=100)
    try:
        msgs = _stream(fed)
    finally:
        bulk._limits = real
    assert msgs[0].started.max_rows == 100
    assert msgs[-1].completed.row_count == 100 and len(_rows(msgs)) == 100
    assert msgs[-1].completed.truncated


def test_a_holder_sending_more_rows_than_asked_fails_the_stream_and_what_was_received_is_ledgered(
    fed: RunningFederation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder that ignores the requester's cap (old, or hostile): the chunk past it
    is refused unopened, the stream fails, and the entry records the rows handed on."""
    responder = fed.gateways["110000"].bulk_holder._responder
    real_open = responder.open

    def ignoring_the_cap(*args, **kwargs):  # type: ignore[no-untyped-def]
        request = real_open(*args, **kwargs)
        request.message.max_rows = 0
        return request

    monkeypatch.setattr(responder, "open", ignoring_the_cap)
    tj = fed.gateways["120000"]
    before = len(ledger_events(tj))
    got: Messages = []
    with fed.client("120000", "tianjin-planning") as c, pytest.raises(grpc.RpcError) as err:
        for m in c.stream_records(*ARGS, max_rows=100, timeout=30):
            got.append(m)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert "the holder sent more than 100 rows" in (err.value.details() or "")
    assert not any(m.HasField("completed") for m in got)
    assert len(_rows(got)) == 2 * CHUNK  # the chunks before the one that went past 100
    [entry] = ledger_events(tj)[before:]
    assert (entry.role, entry.kind, entry.record_count) == ("requester", "refusal", 2 * CHUNK)
    assert ("chunks", "2") in entry.details and entry.payload_digest  # the chain so far
    assert "more than 100 rows" in entry.reason
