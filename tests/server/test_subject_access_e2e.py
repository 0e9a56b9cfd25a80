"""Subject access ("who read my data") through three real gateways on loopback.

The Hebei citizen portal asks its gateway for one person's history; every
member answers over mutual TLS with signed, sealed entries and proofs, and the
portal's gateway verifies every proof against the trust bundle. Each test names
the failure or attack it covers.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway._proto.dataexchange.gateway.v1 import peer_pb2, stats_pb2_grpc, subject_pb2
from gateway.client import service_channel
from gateway.config import load_config
from gateway.demo.chapters import commuters_by_age
from gateway.demo.setup import build_federation
from gateway.server.app import Gateway
from gateway.subject.index import blind_index, index_key
from tests.conftest import RunningFederation, stop_federation
from tests.helpers import ledger_events

PORTAL = "hebei-citizen-portal"
A = subject_pb2.JurisdictionAnswer


@pytest.fixture(scope="module", params=["intl", "gm"])
def fed(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RunningFederation]:
    """Three gateways of one cipher suite: every test runs for both suites."""
    built = build_federation(
        tmp_path_factory.mktemp(f"subject-{request.param}"), rows=200, suite=request.param
    )
    for site in built.sites.values():  # these tests ask more often than a portal may
        with site.config.open("a", encoding="utf-8") as f:
            f.write("\n[limits]\nsubject_access_per_minute = 100000\n")
    rf = RunningFederation(
        built, {code: Gateway(load_config(site.config)) for code, site in built.sites.items()}
    )
    for gw in rf.gateways.values():
        gw.start()
    yield rf
    stop_federation(rf)


def _commuters(fed: RunningFederation, n: int) -> list[str]:
    path = fed.site("110000").data_source
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        rows = c.execute(
            "SELECT person_id FROM si_contributions WHERE residence_jurisdiction='130000' "
            "ORDER BY person_id LIMIT ?",
            (n,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def _records(fed: RunningFederation, ids: list[str], purpose: str = "housing_fund_transfer") -> str:
    with fed.client("130000", "hebei-housing-fund") as c:
        try:
            return c.get_records(
                holder_jurisdiction="110000",
                dataset="si_contributions",
                purpose=purpose,
                subject_ids=ids,
            ).request_id
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
            return ""


def _history(
    fed: RunningFederation, who: str, portal: str = PORTAL
) -> subject_pb2.AccessHistoryResponse:
    for gw in fed.gateways.values():
        gw.checkpoint_and_witness()
    with fed.client("130000", portal) as c:
        return c.access_history(who)


def _statistics(fed: RunningFederation) -> None:
    """Tianjin's planning office asks a federated statistic: every member (Tianjin
    included) ledgers a holder's release covering its dataset."""
    site = fed.site("120000")
    ch = service_channel(
        site.service_address, site.tls_cert.read_bytes(), "120000", site.tokens["tianjin-planning"]
    )
    try:
        stats_pb2_grpc.StatisticsStub(ch).Query(
            commuters_by_age(["110000", "120000", "130000"], 0.5), timeout=30
        )
    finally:
        ch.close()


def _holder_request_ids(fed: RunningFederation, code: str, kinds: tuple[str, ...]) -> set[str]:
    return {
        e.request_id
        for e in ledger_events(fed.gateways[code])
        if e.role == "holder" and e.kind in kinds
    }


def test_history_lists_every_exchange_naming_the_person_and_none_that_did_not(
    fed: RunningFederation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice, bob, carol = _commuters(fed, 3)
    earlier = {e.request_id for e in _history(fed, alice).events}  # other tests' exchanges
    alone = _records(fed, [alice])
    together = _records(fed, [alice, bob])
    _records(fed, [bob])
    _records(fed, [carol])
    before_refusals = _holder_request_ids(fed, "110000", ("refusal",))
    _records(fed, [alice], purpose="marketing")  # undeclared purpose: refused
    (refused,) = _holder_request_ids(fed, "110000", ("refusal",)) - before_refusals
    with fed.client("120000", "tianjin-planning") as c:  # bulk pseudonymised extract
        bulk = c.get_records(
            holder_jurisdiction="110000", dataset="si_contributions", purpose="commuter_planning"
        ).request_id
    _statistics(fed)

    h = _history(fed, alice)
    assert [(j.jurisdiction, j.status) for j in h.jurisdictions] == [
        ("110000", A.ANSWERED),
        ("120000", A.ANSWERED),
        ("130000", A.ANSWERED),
    ]
    new = [e for e in h.events if e.request_id not in earlier]
    named = {e.request_id: e.kind for e in new if e.kind in ("records", "refusal")}
    assert named == {alone: "records", together: "records", refused: "refusal"}
    # Bulk transfers and statistics releases name nobody: listed as what they are.
    assert {e.request_id for e in new if e.kind == "bulk_pseudonymised"} == {bulk}
    stats = [e for e in h.events if e.kind == "statistics"]
    assert {e.holder_jurisdiction for e in stats} == {"110000", "120000", "130000"}
    assert all(e.record_count == 0 and not e.fields for e in stats)
    # Oldest first, every entry proven against a checkpoint the witnesses cosigned.
    assert [e.timestamp_ms for e in h.events] == sorted(e.timestamp_ms for e in h.events)
    assert all(len(e.proof.cosigned_by) == 2 for e in h.events)
    first = next(e for e in h.events if e.request_id == alone)
    assert (first.requester_jurisdiction, first.service_system) == ("130000", "hebei-housing-fund")
    assert first.purpose == "housing_fund_transfer" and first.dataset == "si_contributions"
    assert first.agreement_id == "bj-si-to-hebei-housing-fund"
    assert first.legal_basis.startswith("《住房公积金管理条例》")
    assert ("person_id", "mask") in {(f.name, f.transform) for f in first.fields}

    # Bob's history has what named Bob, not what named only Alice.
    bob_named = {e.request_id for e in _history(fed, bob).events if e.kind == "records"}
    assert together in bob_named and alone not in bob_named

    # The request is ledgered on both sides, without the id; the id is never logged.
    # Both signatures of each subject-access exchange verify offline from the entry.
    from gateway.ledger.signatures import check_entry_signatures
    from gateway.ledger.trustkeys import TrustedKeys

    keys = TrustedKeys.from_bundle(fed.gateways["110000"].bundle())
    for code in ("110000", "120000", "130000"):
        events = ledger_events(fed.gateways[code])
        sa = [e for e in events if e.kind == "subject_access" and e.request_id == h.request_id]
        assert sa, code
        for e in sa:
            if e.counterparty == e.local:
                continue  # the portal's own gateway answering itself: nothing crossed
            check = check_entry_signatures(e, keys)
            assert (check.problem, check.checked) == ("", 2), (code, e.role, check)
        data = Path(fed.site(code).config).parent / "data"
        for f in [*data.glob("ledger.sqlite*"), *data.glob("subject_index.sqlite*")]:
            assert alice.encode() not in f.read_bytes(), f
    assert {
        e.role for e in ledger_events(fed.gateways["110000"]) if e.request_id == h.request_id
    } == {"holder"}
    assert alice not in caplog.text


def test_person_unknown_to_every_register_gets_an_empty_answered_history(
    fed: RunningFederation,
) -> None:
    h = _history(fed, "110101190001010019")
    assert [j.status for j in h.jurisdictions] == [A.ANSWERED] * 3
    assert {e.kind for e in h.events} <= {"statistics", "bulk_pseudonymised", "bulk_dataset"}


def test_tampered_index_row_at_the_holder_fails_its_proof(fed: RunningFederation) -> None:
    alice, bob = _commuters(fed, 5)[3:5]
    bob_only = _records(fed, [bob])
    gw = fed.gateways["110000"]
    blind = blind_index(index_key(gw.keys.pseudonym_key), alice)
    with sqlite3.connect(gw.subject_store.path) as db:
        db.execute("INSERT INTO subject_index (blind, request_id) VALUES (?, ?)", (blind, bob_only))
    try:
        h = _history(fed, alice)
    finally:
        with sqlite3.connect(gw.subject_store.path) as db:
            db.execute(
                "DELETE FROM subject_index WHERE blind = ? AND request_id = ?", (blind, bob_only)
            )
    bj = next(j for j in h.jurisdictions if j.jurisdiction == "110000")
    assert bj.status == A.FAILED_VERIFICATION and "index-set proof" in bj.reason
    assert not [e for e in h.events if e.holder_jurisdiction == "110000"]


def test_tampered_ledger_entry_at_the_holder_fails_its_proof(fed: RunningFederation) -> None:
    (alice,) = _commuters(fed, 6)[5:6]
    rid = _records(fed, [alice])
    gw = fed.gateways["110000"]
    (row,) = [r for r in gw.ledger.store.find_request(rid)]
    edited = row.entry.replace(b"housing_fund_transfer", b"housing_fund_transfes")
    with sqlite3.connect(gw.ledger.store.path) as db:
        db.execute("UPDATE ledger_entries SET entry = ? WHERE idx = ?", (edited, row.index))
    try:
        h = _history(fed, alice)
    finally:
        with sqlite3.connect(gw.ledger.store.path) as db:
            db.execute("UPDATE ledger_entries SET entry = ? WHERE idx = ?", (row.entry, row.index))
    bj = next(j for j in h.jurisdictions if j.jurisdiction == "110000")
    assert bj.status == A.FAILED_VERIFICATION and "inclusion proof" in bj.reason


def _wait_until_answering(fed: RunningFederation, code: str) -> None:
    """The other gateways' channels to a restarted gateway reconnect after a backoff."""
    deadline = time.monotonic() + 20
    with fed.client("130000", PORTAL) as c:
        while time.monotonic() < deadline:
            h = c.access_history("110101190001010019", jurisdictions=(code,))
            if h.jurisdictions[0].status == A.ANSWERED:
                return
            time.sleep(0.3)
    raise AssertionError(f"{code} did not answer again after its restart")


def test_holder_that_does_not_answer_is_marked_missing(fed: RunningFederation) -> None:
    (alice,) = _commuters(fed, 1)
    tj = fed.gateways["120000"]
    tj.stop(grace=0.1)
    try:
        with fed.client("130000", PORTAL) as c:
            h = c.access_history(alice)
    finally:
        fed.gateways["120000"] = Gateway(load_config(fed.site("120000").config))
        fed.gateways["120000"].start()
        _wait_until_answering(fed, "120000")
    status = {j.jurisdiction: (j.status, j.reason) for j in h.jurisdictions}
    assert status["120000"][0] == A.MISSING and "unavailable" in status["120000"][1]
    assert status["110000"][0] == status["130000"][0] == A.ANSWERED
    assert not [e for e in h.events if e.holder_jurisdiction == "120000"]
    hb = [
        e
        for e in ledger_events(fed.gateways["130000"])
        if e.request_id == h.request_id and e.counterparty == "120000"
    ]
    assert [(e.kind, e.decision) for e in hb] == [("subject_access", "deny")]


def test_malformed_subject_id_is_invalid_argument_without_echo(fed: RunningFederation) -> None:
    with fed.client("130000", PORTAL) as c, pytest.raises(grpc.RpcError) as err:
        c.access_history("1101-0519900307851X")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "0519900" not in (err.value.details() or "")


def test_unknown_jurisdiction_is_not_found(fed: RunningFederation) -> None:
    with fed.client("130000", PORTAL) as c, pytest.raises(grpc.RpcError) as err:
        c.access_history(_commuters(fed, 1)[0], jurisdictions=("310000",))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def _audit(fed: RunningFederation, who: str, tmp: Path, *extra: str) -> int:
    from gateway.cli import main

    bj = fed.site("110000").root
    id_file = tmp / "id.txt"
    id_file.write_text(who + "\n")
    return main(
        [
            "audit",
            "subject",
            "--ledger",
            str(bj / "data" / "ledger.sqlite"),
            "--index-store",
            str(bj / "data" / "subject_index.sqlite"),
            "--keys",
            str(bj / "keys"),
            "--bundle",
            str(fed.fed.bundle),
            "--id-file",
            str(id_file),
            *extra,
        ]
    )


def test_officer_audits_a_persons_history_offline_and_catches_a_removed_index_row(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = _commuters(fed, 8)[6:8]
    rid = _records(fed, [alice, bob])
    for gw in fed.gateways.values():
        gw.checkpoint_and_witness()
    hb_ledger = str(fed.site("130000").root / "data" / "ledger.sqlite")
    assert _audit(fed, alice, tmp_path, "--requester-ledger", hb_ledger) == 0
    out = capsys.readouterr().out
    assert f"request {rid}" in out and "130000's ledger: matches" in out
    assert alice not in out
    gw = fed.gateways["110000"]
    blind = blind_index(index_key(gw.keys.pseudonym_key), bob)
    with sqlite3.connect(gw.subject_store.path) as db:
        db.execute("DELETE FROM subject_index WHERE blind = ? AND request_id = ?", (blind, rid))
    try:
        assert _audit(fed, alice, tmp_path) == 1
    finally:
        with sqlite3.connect(gw.subject_store.path) as db:
            db.execute("INSERT INTO subject_index (blind, request_id) VALUES (?, ?)", (blind, rid))
    assert f"request {rid} (entry" in capsys.readouterr().out


def test_portal_over_its_rate_limit_gets_resource_exhausted(fed: RunningFederation) -> None:
    from gateway.subject.ratelimit import RateLimiter

    coordinator = fed.gateways["130000"].subject_access
    saved = coordinator._rate
    coordinator._rate = RateLimiter(2)
    try:
        with fed.client("130000", PORTAL) as c:
            who = _commuters(fed, 1)[0]
            c.access_history(who)
            c.access_history(who)
            with pytest.raises(grpc.RpcError) as err:
                c.access_history(who)
    finally:
        coordinator._rate = saved
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "hebei-citizen-portal" in (err.value.details() or "")


def test_holder_that_rate_limits_the_portal_is_missing_with_its_signed_reason(
    fed: RunningFederation,
) -> None:
    from gateway.subject.ratelimit import RateLimiter

    holder = fed.gateways["110000"].subject_holder
    saved = holder._rate
    holder._rate = RateLimiter(0)
    try:
        with fed.client("130000", PORTAL) as c:
            h = c.access_history(_commuters(fed, 1)[0])
    finally:
        holder._rate = saved
    bj = next(j for j in h.jurisdictions if j.jurisdiction == "110000")
    assert bj.status == A.MISSING and "RESOURCE_EXHAUSTED" in bj.reason
    (entry,) = [e for e in ledger_events(fed.gateways["110000"]) if e.request_id == h.request_id]
    assert (entry.kind, entry.role, entry.decision) == ("subject_access", "holder", "deny")
    assert entry.requester_signature and entry.holder_signature


def test_holder_that_has_not_opted_in_says_so_signed(fed: RunningFederation) -> None:
    from gateway.catalogue import SubjectAccessSettings

    holder = fed.gateways["120000"].subject_holder
    saved = holder._catalogue
    current = saved()
    holder._catalogue = lambda: current.model_copy(
        update={"subject_access": SubjectAccessSettings(participate=False)}
    )
    try:
        with fed.client("130000", PORTAL) as c:
            h = c.access_history(_commuters(fed, 1)[0])
    finally:
        holder._catalogue = saved
    tj = next(j for j in h.jurisdictions if j.jurisdiction == "120000")
    assert tj.status == A.NOT_PARTICIPATING
    assert not [e for e in h.events if e.holder_jurisdiction == "120000"]


def test_malicious_member_resigning_a_tampered_answer_fails_verification(
    fed: RunningFederation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tianjin's gateway (a compromised member, its own keys) drops the index-set
    proof of one entry and signs and seals the altered answer: the portal's gateway
    refuses its part."""
    from gateway.subject import holder as holder_mod

    alice = _commuters(fed, 1)[0]
    _statistics(fed)  # Tianjin's release covers everyone: an entry in alice's answer
    tj = fed.gateways["120000"]
    real = tj.history.answer
    altered: list[int] = []

    def lying(subject_id: str):  # type: ignore[no-untyped-def]
        proofs, truncated = real(subject_id)
        for e in proofs.entries:
            e.entry = e.entry.replace(b"commuter_planning", b"commuter_plannin_")
            altered.append(1)
        return proofs, truncated

    monkeypatch.setattr(tj.history, "answer", lying)
    assert holder_mod  # the real holder code seals and signs what `answer` returns
    with fed.client("130000", PORTAL) as c:
        h = c.access_history(alice)
    assert altered, "Tianjin's answer held no entry to tamper with"
    part = next(j for j in h.jurisdictions if j.jurisdiction == "120000")
    assert part.status == A.FAILED_VERIFICATION, part
    assert not [e for e in h.events if e.holder_jurisdiction == "120000"]


def test_portal_asks_only_the_jurisdictions_it_names(fed: RunningFederation) -> None:
    with fed.client("130000", PORTAL) as c:
        h = c.access_history(_commuters(fed, 1)[0], jurisdictions=("110000",))
    assert [j.jurisdiction for j in h.jurisdictions] == ["110000"]
    assert {e.holder_jurisdiction for e in h.events} <= {"110000"}


def test_portals_own_gateway_not_taking_part_is_listed_as_such(fed: RunningFederation) -> None:
    from gateway.catalogue import SubjectAccessSettings

    coordinator = fed.gateways["130000"].subject_access
    saved = coordinator._catalogue
    current = saved()
    coordinator._catalogue = lambda: current.model_copy(
        update={"subject_access": SubjectAccessSettings(participate=False)}
    )
    try:
        with fed.client("130000", PORTAL) as c:
            h = c.access_history(_commuters(fed, 1)[0])
    finally:
        coordinator._catalogue = saved
    status = {j.jurisdiction: j.status for j in h.jurisdictions}
    assert status == {"110000": A.ANSWERED, "120000": A.ANSWERED, "130000": A.NOT_PARTICIPATING}


def test_service_system_without_the_subject_access_role_gets_permission_denied(
    fed: RunningFederation,
) -> None:
    who = _commuters(fed, 1)[0]
    before = {c: len(ledger_events(g)) for c, g in fed.gateways.items()}
    with fed.client("130000", "hebei-housing-fund") as c, pytest.raises(grpc.RpcError) as err:
        c.access_history(who)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "subject_access" in (err.value.details() or "")
    assert who not in (err.value.details() or "")
    # Refused before anything was asked: no holder saw the request.
    for code, gw in fed.gateways.items():
        new = ledger_events(gw)[before[code] :]
        assert not [e for e in new if e.kind == "subject_access"], code


def test_portal_with_only_the_subject_access_role_cannot_read_records(
    fed: RunningFederation,
) -> None:
    with fed.client("130000", PORTAL) as c, pytest.raises(grpc.RpcError) as err:
        c.get_records(
            holder_jurisdiction="110000",
            dataset="si_contributions",
            purpose="housing_fund_transfer",
            subject_ids=_commuters(fed, 1),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_streamed_bulk_transfer_is_in_every_persons_history_as_a_pseudonymised_extract(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A streamed bulk transfer (StreamRecords) names nobody and covers everyone: the
    holder's started entry is indexed before the first chunk leaves, so it is listed
    (proven) in any person's history, and the officer's audit pairs it with the
    requester's entry (the commitment compared from the holder's closing entry)."""
    alice, dave = _commuters(fed, 10)[8:10]
    with fed.client("120000", "tianjin-planning") as c:
        msgs = list(c.stream_records("110000", "si_contributions", "commuter_planning"))
    rid = msgs[0].started.request_id
    assert msgs[-1].HasField("completed") and msgs[-1].completed.row_count > 0
    for who in (alice, dave):
        [e] = [e for e in _history(fed, who).events if e.request_id == rid]
        assert e.kind == "bulk_pseudonymised"
        assert (e.requester_jurisdiction, e.service_system) == ("120000", "tianjin-planning")
        assert ("person_id", "pseudonymise") in {(f.name, f.transform) for f in e.fields}
        assert len(e.proof.cosigned_by) == 2
    tj_ledger = str(fed.site("120000").root / "data" / "ledger.sqlite")
    assert _audit(fed, alice, tmp_path, "--requester-ledger", tj_ledger) == 0
    out = capsys.readouterr().out
    assert f"request {rid}" in out
    assert "120000's ledger: matches" in out.split(f"request {rid}")[1].split("request ")[0]


def _as_hebei(  # type: ignore[no-untyped-def]
    fed: RunningFederation, method: str, msg, rid: str, request_type: str, response_type: str, cls
):
    """Hebei's gateway signs ``msg`` as it is and sends it to Beijing's peer port."""
    hebei = fed.gateways["130000"]
    envelope = hebei.caller.prepare("110000", msg, request_type, rid)
    return hebei.caller.send("110000", method, envelope, rid, response_type, cls).response


def test_member_sealing_protobuf_garbage_as_the_query_gets_a_signed_invalid_argument(
    fed: RunningFederation,
) -> None:
    """A sealed query that opens but is not a SubjectQuery is the requester's
    mistake: a signed, ledgered INVALID_ARGUMENT refusal, never INTERNAL."""
    import os

    from gateway import crypto, domains
    from gateway.envelope import new_request_id
    from gateway.exchange.records import seal_context

    hebei = fed.gateways["130000"]
    rid = new_request_id()
    member = hebei.bundle().member("110000")
    msg = subject_pb2.PeerSubjectRequest(
        service_system="hebei-citizen-portal",
        sealed_query=crypto.seal(
            member.seal_key,
            domains.SEAL_SUBJECT_QUERY,
            b"\x0a\xff\xff",  # a length-delimited field that runs past the end
            seal_context("130000", "110000", rid),
            os.urandom,
        ),
    )
    reply = _as_hebei(
        fed, "SubjectHistory", msg, rid, domains.PEER_SUBJECT_REQUEST,
        domains.PEER_SUBJECT_RESPONSE, subject_pb2.PeerSubjectResponse,
    )  # fmt: skip
    assert reply.error_code == "INVALID_ARGUMENT"
    assert "sealed_query" in reply.reason
    (entry,) = [e for e in ledger_events(fed.gateways["110000"]) if e.request_id == rid]
    assert (entry.kind, entry.decision) == ("subject_access", "deny")


def _hostile_records_request(
    fed: RunningFederation, ids: list[str]
) -> tuple[str, peer_pb2.PeerRecordResponse]:
    """Hebei's gateway (a compromised member) asks Beijing for records naming ``ids``
    exactly as given, skipping its own checks of them."""
    from gateway import domains
    from gateway.envelope import new_request_id
    from gateway.exchange.records import seal_context

    hebei = fed.gateways["130000"]
    rid = new_request_id()
    msg = peer_pb2.PeerRecordRequest(
        service_system="hebei-housing-fund",
        dataset="si_contributions",
        purpose="housing_fund_transfer",
        subject_count=len(ids),
        reply_seal_key=hebei.seal_keys.current.public_key.raw,
        sealed_query=hebei.sealing.seal(
            hebei.bundle().member("110000").seal_key,
            domains.SEAL_RECORD_PAYLOAD,
            peer_pb2.RecordQuery(subject_ids=ids).SerializeToString(deterministic=True),
            seal_context("130000", "110000", rid),
        ),
    )
    return rid, _as_hebei(
        fed, "FetchRecords", msg, rid, domains.PEER_RECORD_REQUEST,
        domains.PEER_RECORD_RESPONSE, peer_pb2.PeerRecordResponse,
    )  # fmt: skip


def test_member_naming_a_person_in_a_form_the_index_skips_gets_no_records_off_the_record(
    fed: RunningFederation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compromised member names a person with a trailing space. A register whose
    comparison ignores trailing spaces (MariaDB's PAD SPACE collations, PostgreSQL's
    char(n)) finds the person, but the id is not a well-formed subject id, so the
    holder used to leave it out of the entry's index set: records released and the
    exchange missing from the person's history, with no verification failure. The
    holder now refuses the request (signed INVALID_ARGUMENT) before reading anything."""
    alice = _commuters(fed, 20)[19]
    holder = fed.gateways["110000"].holder
    real_fetch = holder._source.fetch
    asked: list[list[str]] = []

    def pad_space(dataset, ids, columns, limit):  # type: ignore[no-untyped-def]
        asked.append(list(ids))
        return real_fetch(dataset, [i.rstrip(" ") for i in ids], columns, limit)

    monkeypatch.setattr(holder._source, "fetch", pad_space)
    rid, resp = _hostile_records_request(fed, [alice + " "])
    released = resp.record_count
    listed = [e for e in _history(fed, alice).events if e.request_id == rid]
    assert released == 0 or listed, "records released for alice, absent from her history"
    assert resp.error_code == "INVALID_ARGUMENT", resp
    assert not asked
    assert alice not in resp.decision.reason
    assert "subject_ids" in resp.decision.reason and len(resp.decision.reason) <= 500
    (entry,) = [
        e
        for e in ledger_events(fed.gateways["110000"])
        if e.request_id == rid and e.role == "holder"
    ]
    assert (entry.kind, entry.decision) == ("refusal", "deny")
    assert alice not in entry.reason


def test_portals_own_gateway_failing_its_part_hides_neither_the_others_nor_their_entries(
    fed: RunningFederation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The portal's own gateway cannot answer its part (its index store is down).
    The other holders have already been asked (and ledgered the request): their
    verified parts are still shown and the requesting gateway still ledgers one
    entry per holder asked, its own part listed as missing. It used to fail the
    whole request, leaving the holders' entries without the requester's."""
    from gateway.errors import StorageFailure

    hebei = fed.gateways["130000"]

    def down(subject_id: str):  # type: ignore[no-untyped-def]
        raise StorageFailure("subject index store: read failed: connection refused")

    monkeypatch.setattr(hebei.subject_access._local, "answer", down)
    before = len(ledger_events(hebei))
    with fed.client("130000", PORTAL) as c:
        h = c.access_history(_commuters(fed, 1)[0])
    status = {j.jurisdiction: j.status for j in h.jurisdictions}
    assert status == {"110000": A.ANSWERED, "120000": A.ANSWERED, "130000": A.MISSING}
    new = [
        e
        for e in ledger_events(hebei)[before:]
        if e.kind == "subject_access" and e.role == "requester" and e.request_id == h.request_id
    ]
    assert sorted(e.counterparty for e in new) == ["110000", "120000", "130000"]


def test_member_naming_a_new_portal_on_every_request_is_still_rate_limited_at_the_holder(
    fed: RunningFederation,
) -> None:
    """The holder cannot check which portal a member's gateway asks for, only which
    member asks. A compromised member that names a fresh (well-formed) portal id on
    every request used to get a fresh per-portal window each time: unlimited
    look-ups of anyone's history. The holder now also limits each member across
    all its portals (``subject_access_per_member_per_minute``)."""
    from gateway.envelope import new_request_id
    from gateway.subject.ratelimit import RateLimiter

    holder = fed.gateways["110000"].subject_holder
    coordinator = fed.gateways["130000"].subject_access
    saved = holder._rate, getattr(holder, "_member_rate", None)
    holder._rate, holder._member_rate = RateLimiter(1), RateLimiter(3)
    who = _commuters(fed, 1)[0]
    try:
        statuses = [
            coordinator._ask_peer(
                fed.gateways["130000"].bundle(), f"portal-{n}", who, "110000", new_request_id()
            ).result
            for n in range(5)
        ]
    finally:
        holder._rate, holder._member_rate = saved  # type: ignore[assignment]
    assert [r.status for r in statuses] == ["answered"] * 3 + ["missing"] * 2
    assert "RESOURCE_EXHAUSTED" in statuses[-1].reason
    assert "130000" in statuses[-1].reason
