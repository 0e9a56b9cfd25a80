"""Gateway lifecycle failures: peer down, slow peer, bad trust bundles at start and reload."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from gateway import crypto
from gateway.config import load_config
from gateway.errors import ConfigurationError, Rejected, TrustBundleRejected
from gateway.server.app import Gateway
from gateway.trust import load_bundle, read_authority_key, read_bundle_for_reissue, sign_bundle
from tests.conftest import RunningFederation, start_federation, stop_federation
from tests.helpers import ledger_events


@pytest.fixture()
def own_federation(tmp_path: Path):  # type: ignore[no-untyped-def]
    rf = start_federation(tmp_path, rows=60)
    yield rf
    stop_federation(rf)


def test_peer_down_gives_unavailable_and_requester_ledgers_the_failed_attempt(
    own_federation: RunningFederation,
) -> None:
    own_federation.gateways["110000"].stop(grace=0)
    hb = own_federation.gateways["130000"]
    before = len(ledger_events(hb))
    with own_federation.client("130000", "hebei-housing-fund") as c:
        with pytest.raises(grpc.RpcError) as err:
            c.get_records(
                holder_jurisdiction="110000", dataset="si_contributions",
                purpose="housing_fund_transfer", subject_ids=[own_federation.commuter()],
            )  # fmt: skip
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "110000" in (err.value.details() or "")
    new = ledger_events(hb)[before:]
    assert [(e.kind, e.decision) for e in new] == [("refusal", "deny")]
    assert "unavailable" in new[0].reason


def test_slow_holder_gives_deadline_exceeded(own_federation: RunningFederation) -> None:
    bj = own_federation.gateways["110000"]
    real_fetch = bj.source.fetch

    def slow_fetch(*a, **k):  # type: ignore[no-untyped-def]
        time.sleep(1.5)
        return real_fetch(*a, **k)

    bj.source.fetch = slow_fetch  # type: ignore[method-assign]
    with own_federation.client("130000", "hebei-housing-fund") as c:
        with pytest.raises(grpc.RpcError) as err:
            c.get_records(
                timeout=0.7, holder_jurisdiction="110000", dataset="si_contributions",
                purpose="housing_fund_transfer", subject_ids=[own_federation.commuter()],
            )  # fmt: skip
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def _rewrite_bundle(
    rf: RunningFederation, *, version_delta: int = 1, expires_in: dt.timedelta | None = None
) -> bytes:
    fed = rf.fed
    authority = read_authority_key(fed.authority_pub)
    current = read_bundle_for_reissue(fed.bundle, authority)
    now = dt.datetime.now(dt.UTC)
    from gateway.trust import read_authority_signing_key

    return sign_bundle(
        current.federation,
        current.version + version_delta,
        now - dt.timedelta(days=2),
        now + (expires_in if expires_in is not None else dt.timedelta(days=30)),
        current.members,
        read_authority_signing_key(fed.authority_key),
    )


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ("key_dir", "keys in .* are for 110000, config says 120000"),
        ("policies", "policies in .* are for holder 110000, this gateway is 120000"),
    ],
)
def test_gateway_with_another_gateways_files_is_a_configuration_error_not_a_rejection(
    federation: RunningFederation, field: str, problem: str
) -> None:
    mine = load_config(federation.site("120000").config)
    theirs = load_config(federation.site("110000").config)
    mixed = mine.model_copy(update={field: getattr(theirs, field)})
    with pytest.raises(ConfigurationError, match=problem) as err:
        Gateway(mixed)
    assert not isinstance(err.value, Rejected)


def test_gateway_refuses_to_start_with_expired_bundle(own_federation: RunningFederation) -> None:
    own_federation.fed.bundle.write_bytes(
        _rewrite_bundle(own_federation, expires_in=-dt.timedelta(days=1))
    )
    site = own_federation.site("120000")
    with pytest.raises(TrustBundleRejected) as err:
        Gateway(load_config(site.config))
    assert "expired" in str(err.value)


def test_gateway_refuses_to_start_with_unsigned_bundle(own_federation: RunningFederation) -> None:
    doc = json.loads(own_federation.fed.bundle.read_bytes())
    doc["signatures"] = []
    own_federation.fed.bundle.write_text(json.dumps(doc))
    with pytest.raises(TrustBundleRejected):
        Gateway(load_config(own_federation.site("120000").config))


def test_gateway_refuses_bundle_signed_by_another_authority(
    own_federation: RunningFederation,
) -> None:
    fed = own_federation.fed
    current = read_bundle_for_reissue(fed.bundle, read_authority_key(fed.authority_pub))
    now = dt.datetime.now(dt.UTC)
    forged = sign_bundle(
        current.federation, current.version + 5, now, now + dt.timedelta(days=9),
        current.members, crypto.SigningKey.generate(),
    )  # fmt: skip
    fed.bundle.write_bytes(forged)
    with pytest.raises(TrustBundleRejected):
        Gateway(load_config(own_federation.site("120000").config))


def test_running_gateway_keeps_current_bundle_when_offered_an_older_version(
    own_federation: RunningFederation,
) -> None:
    gw = own_federation.gateways["120000"]
    fed = own_federation.fed
    original = fed.bundle.read_bytes()
    newer = _rewrite_bundle(own_federation, version_delta=1)
    fed.bundle.write_bytes(newer)
    assert gw.reload_bundle() is True
    accepted = gw.bundle().version
    fed.bundle.write_bytes(original)  # roll back to the older version
    assert gw.reload_bundle() is False
    assert gw.bundle().version == accepted
    # ...and after a restart the older bundle is still refused.
    gw.stop(grace=0)
    with pytest.raises(TrustBundleRejected) as err:
        Gateway(load_config(own_federation.site("120000").config))
    assert "older" in str(err.value) or "version" in str(err.value)
    assert load_bundle(fed.bundle, read_authority_key(fed.authority_pub)).version < accepted


def test_gateway_refuses_declared_privacy_unit_the_source_does_not_enforce(
    own_federation: RunningFederation,
) -> None:
    import sqlite3

    from gateway.errors import PolicyFileError

    site = own_federation.site("120000")
    own_federation.gateways["120000"].stop(grace=0)
    with sqlite3.connect(site.data_source) as conn:
        conn.execute('DROP INDEX "si_contributions_subject"')
    with pytest.raises(PolicyFileError) as err:
        Gateway(load_config(site.config))
    assert "truncate_by_identifier" in str(err.value) and "UNIQUE" in str(err.value)


def test_gateway_refusing_to_start_closes_what_it_opened_even_if_a_close_fails(
    own_federation: RunningFederation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal comes after the data source and the peer transport are open
    (the statistics policy is checked against the source): each is closed, last
    opened first, and a close that fails does not hide why the gateway refused."""
    import sqlite3

    from gateway.errors import PolicyFileError
    from gateway.server.transport import GrpcPeerTransport
    from gateway.sources import Sources
    from gateway.storage.backend import Stores

    closed: list[str] = []

    def transport_close(self: GrpcPeerTransport) -> None:
        closed.append("transport")
        raise RuntimeError("channel close failed")

    def recording(name: str, real):  # type: ignore[no-untyped-def]
        def close(self) -> None:  # type: ignore[no-untyped-def]
            closed.append(name)
            real(self)

        return close

    site = own_federation.site("120000")
    own_federation.gateways["120000"].stop(grace=0)
    with sqlite3.connect(site.data_source) as conn:
        conn.execute('DROP INDEX "si_contributions_subject"')
    monkeypatch.setattr(GrpcPeerTransport, "close", transport_close)
    monkeypatch.setattr(Sources, "close", recording("source", Sources.close))
    monkeypatch.setattr(Stores, "close", recording("stores", Stores.close))
    with pytest.raises(PolicyFileError, match="truncate_by_identifier"):
        Gateway(load_config(site.config))
    assert closed == ["transport", "source", "stores"]


@pytest.mark.parametrize("setting", ["peer", "service"])
def test_gateway_refuses_to_share_its_port_with_another_listener(
    own_federation: RunningFederation, setting: str
) -> None:
    """Another process listening on the gateway's address with SO_REUSEPORT (gRPC's
    default) would silently take half its connections: the gateway refuses to start,
    naming the setting, and the squatter keeps the port to itself."""
    from concurrent import futures

    site = own_federation.site("120000")
    own_federation.gateways["120000"].stop(grace=0)
    port = site.peer_port if setting == "peer" else site.service_port
    squatter = grpc.server(futures.ThreadPoolExecutor(max_workers=1))  # SO_REUSEPORT on
    assert squatter.add_insecure_port(f"127.0.0.1:{port}") == port
    squatter.start()
    gw = Gateway(load_config(site.config))
    try:
        with pytest.raises(ConfigurationError, match=rf"listen\.{setting} = .*:{port}.*in use"):
            gw.start()
        assert gw.ports is None
    finally:
        gw.stop(grace=0)
        squatter.stop(0)


def test_running_gateway_picks_up_a_newly_distributed_bundle_without_restart(
    own_federation: RunningFederation,
) -> None:
    gw = own_federation.gateways["130000"]
    before = gw.bundle().version
    own_federation.fed.bundle.write_bytes(_rewrite_bundle(own_federation, version_delta=1))
    deadline = time.monotonic() + 10
    while gw.bundle().version == before:
        assert time.monotonic() < deadline, "the new bundle was never picked up"
        time.sleep(0.2)
    assert gw.bundle().version == before + 1


def test_member_removed_from_the_bundle_is_refused_by_the_others(
    own_federation: RunningFederation,
) -> None:
    from gateway.cli import main

    fed = own_federation.fed
    with own_federation.client("120000", "tianjin-planning") as c:
        c.get_records(
            holder_jurisdiction="110000", dataset="si_contributions", purpose="commuter_planning"
        )
    bj = own_federation.gateways["110000"]
    before = bj.bundle().version
    assert main(["federation", "remove-member", "--bundle", str(fed.bundle),
                 "--authority-key", str(fed.authority_key), "--jurisdiction", "120000"]) == 0  # fmt: skip
    deadline = time.monotonic() + 10
    while bj.bundle().version == before:
        assert time.monotonic() < deadline, "Beijing never picked up the new bundle"
        time.sleep(0.2)
    # Tianjin still holds its old bundle and an open connection, but Beijing refuses it.
    with own_federation.client("120000", "tianjin-planning") as c:
        with pytest.raises(grpc.RpcError) as err:
            c.get_records(
                holder_jurisdiction="110000",
                dataset="si_contributions",
                purpose="commuter_planning",
            )
    assert err.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE)


def test_gateway_with_keys_of_the_other_suite_refuses_to_start(
    own_federation: RunningFederation,
) -> None:
    from gateway.identity import generate_keys

    site = own_federation.site("120000")
    generate_keys(site.root / "keys", "120000", site.name, suite="gm", force=True)
    with pytest.raises(ConfigurationError, match=r"suite intl.*keys are suite gm"):
        Gateway(load_config(site.config))


def test_trust_bundle_expiring_on_a_running_gateway_stops_peer_exchanges_both_ways_but_not_ledger_reads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Start-up refuses an expired bundle, but one that expired while the gateway
    ran stayed in force: peers kept exchanging on keys nobody vouches for any
    more (a member removed or a key revoked only in the next bundle, which the
    operator never installed). Once it expires, each gateway refuses peer
    exchanges (as requester and as holder) with FAILED_PRECONDITION saying when
    and what to do; officers still read the ledger; /readyz says why.

    The bundle expires 200 s after the test starts; a gateway sees it expired by
    running its clock 250 s ahead, inside the ±300 s window in which the other
    accepts its messages, so without the rule the exchange would go through."""
    import logging
    import urllib.error
    import urllib.request

    from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, ledger_pb2_grpc
    from gateway.demo.setup import CLUSTER, build_federation
    from gateway.trust import read_authority_signing_key
    from tests.storage.kit import hebei_exchange

    members = tuple(m for m in CLUSTER if m.code in ("110000", "130000"))
    fed = build_federation(tmp_path, rows=50, members=members)
    current = read_bundle_for_reissue(fed.bundle, read_authority_key(fed.authority_pub))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    expires = now + dt.timedelta(seconds=200)
    short_lived = sign_bundle(
        current.federation,
        current.version + 1,
        now - dt.timedelta(days=1),
        expires,
        current.members,
        read_authority_signing_key(fed.authority_key),
    )
    fed.bundle.write_bytes(short_lived)
    version, expired_at = current.version + 1, expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    ahead = 250_000
    skew = {"110000": 0, "130000": 0}  # ms each gateway's clock runs ahead

    def clock(code: str) -> Callable[[], int]:
        return lambda: int(time.time() * 1000) + skew[code]

    gws = {c: Gateway(load_config(fed.sites[c].config), clock_ms=clock(c)) for c in skew}
    rf = RunningFederation(fed, gws)

    def refused() -> grpc.RpcError:
        with rf.client("130000", "hebei-housing-fund") as c, pytest.raises(grpc.RpcError) as err:
            c.get_records(
                holder_jurisdiction="110000", dataset="si_contributions",
                purpose="housing_fund_transfer", subject_ids=[rf.commuter()],
            )  # fmt: skip
        return err.value

    try:
        for gw in gws.values():
            gw.start()
        hebei_exchange(rf)  # in force: fine
        # The requester's bundle expired: it sends nothing.
        skew["130000"] = ahead
        bj_size = gws["110000"].ledger.size
        err = refused()
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
        details = err.details() or ""
        assert f"trust bundle version {version} expired at {expired_at}" in details, details
        assert "must install a new bundle from the federation authority" in details
        assert len(details) < 400
        assert gws["110000"].ledger.size == bj_size  # the holder never heard of it
        skew["130000"] = 0
        # The holder's bundle expired: it refuses what a peer sends it.
        with caplog.at_level(logging.ERROR, "gateway"):
            skew["110000"] = ahead
            err = refused()
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
            details = err.details() or ""
            assert "peer gateway 110000" in details and "refused" in details, details
            assert f"trust bundle version {version} expired at {expired_at}" in details, details
            assert gws["110000"].ledger.size == bj_size
            # Officers still read the ledger of the gateway whose bundle expired.
            with rf.client("110000", "beijing-audit") as c:
                stub = ledger_pb2_grpc.LedgerStub(c.channel)
                page = stub.GetEntries(ledger_pb2.GetEntriesRequest(start=0), timeout=10)
            assert page.tree_size >= 1 and len(page.entries) >= 1
            # Readiness says why; the operator's log says it once.
            url = fed.sites["110000"].ops_url + "/readyz"
            with pytest.raises(urllib.error.HTTPError) as not_ready:
                urllib.request.urlopen(url, timeout=5)
            assert not_ready.value.code == 503
            report = json.loads(not_ready.value.read())
            assert f"expired at {expired_at}" in report["checks"]["trust_bundle"]
            end = time.monotonic() + 5
            while not [r for r in caplog.records if "every peer exchange" in r.getMessage()]:
                assert time.monotonic() < end, "no log line saying the bundle expired"
                time.sleep(0.1)
            time.sleep(1.5)  # the watcher checks every second: still one line
            lines = [r for r in caplog.records if "every peer exchange" in r.getMessage()]
            assert len(lines) == 1 and "expired at" in lines[0].getMessage()
    finally:
        for gw in gws.values():
            gw.stop(grace=0)
