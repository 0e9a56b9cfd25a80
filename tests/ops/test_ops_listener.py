"""The operations listener of a running gateway: /metrics, /healthz, /readyz.

Real gateways, real HTTP on loopback, the Prometheus text format parsed with
prometheus-client's own parser.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.limits import Limits
from gateway.ops.http import OpsListener
from tests.conftest import RunningFederation
from tests.storage.kit import hebei_exchange


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body, ctype = _get(url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_metrics_count_an_exchange_on_both_sides_by_api_outcome_code_counterparty_and_dataset(
    federation: RunningFederation,
) -> None:
    hb, bj = federation.site("130000").ops_url, federation.site("110000").ops_url
    before_hb, before_bj = _samples(hb), _samples(bj)
    with federation.client("130000", "hebei-housing-fund") as c:
        c.get_records(
            holder_jurisdiction="110000",
            dataset="si_contributions",
            purpose="housing_fund_transfer",
            subject_ids=[federation.commuter()],
        )
    after_hb, after_bj = _samples(hb), _samples(bj)
    req = dict(counterparty="110000", dataset="si_contributions", code="OK", outcome="transfer")
    assert _value(
        after_hb, "gateway_requests_total", api="RecordExchange/GetRecords", port="service", **req
    ) == (
        _value(
            before_hb,
            "gateway_requests_total",
            api="RecordExchange/GetRecords",
            port="service",
            **req,
        )
        + 1
    )
    held = dict(req, counterparty="130000")
    assert _value(
        after_bj, "gateway_requests_total", api="PeerExchange/FetchRecords", port="peer", **held
    ) == (
        _value(
            before_bj,
            "gateway_requests_total",
            api="PeerExchange/FetchRecords",
            port="peer",
            **held,
        )
        + 1
    )
    # Latency per hop: the service hop at the requester, the outbound call to the
    # holder, the peer hop at the holder.
    for samples, hop, api in (
        (after_hb, "service", "RecordExchange/GetRecords"),
        (after_hb, "outbound", "FetchRecords"),
        (after_bj, "peer", "PeerExchange/FetchRecords"),
    ):
        assert _value(samples, "gateway_hop_duration_seconds_count", hop=hop, api=api) >= 1
    assert (
        _value(after_hb, "gateway_ledger_entries")
        >= _value(before_hb, "gateway_ledger_entries") + 1
    )
    # Metrics carry codes and counts only: never a subject id.
    for url in (hb, bj):
        assert federation.commuter().encode() not in _get(url + "/metrics")[1]


def test_metrics_show_ledger_state_witness_lag_budget_and_store_sizes(
    federation: RunningFederation,
) -> None:
    hebei_exchange(federation)  # something to cosign
    gw = federation.gateways["110000"]
    gw.checkpoint_and_witness()
    s = _samples(federation.site("110000").ops_url)
    assert _value(s, "gateway_ledger_entries") == gw.ledger.size
    assert ("gateway_ledger_checkpoint_age_seconds", ()) in s
    for peer in ("120000", "130000"):
        assert ("gateway_witness_lag_entries", (("peer", peer),)) in s
        assert _value(s, "gateway_witness_cosigned_size", peer=peer) > 0
    # Beijing answers statistics: each authorised requester has a remaining budget.
    budgets = [ls for (n, ls), _ in s.items() if n == "gateway_privacy_budget_remaining_epsilon"]
    assert budgets and all(dict(ls)["requester"].count("/") == 1 for ls in budgets)
    assert ("gateway_store_rows", (("store", "replay"),)) in s
    assert ("gateway_store_rows", (("store", "quota"),)) in s


def test_unauthenticated_caller_is_counted_as_refused_unauthenticated(
    federation: RunningFederation,
) -> None:
    import grpc

    url = federation.site("130000").ops_url
    before = _value(
        _samples(url), "gateway_requests_total", code="UNAUTHENTICATED", outcome="refused"
    )
    with federation.client("130000", "hebei-housing-fund", token="svc_not-registered") as c:
        with pytest.raises(grpc.RpcError):
            c.get_records(
                holder_jurisdiction="110000",
                dataset="si_contributions",
                purpose="housing_fund_transfer",
                subject_ids=["110105199003078515"],
            )
    after = _value(
        _samples(url), "gateway_requests_total", code="UNAUTHENTICATED", outcome="refused"
    )
    assert after == before + 1


def test_healthz_and_readyz_answer_for_a_ready_gateway(federation: RunningFederation) -> None:
    url = federation.site("120000").ops_url
    assert _get(url + "/healthz")[0] == 200
    status, body, ctype = _get(url + "/readyz")
    assert status == 200 and ctype == "application/json"
    report = json.loads(body)
    names = ("keys", "trust_bundle", "own_certificate", "policies", "storage", "sources")
    assert report["checks"] == {k: "ok" for k in names}
    assert "warnings" not in report  # a certificate issued for 825 days: nothing to say
    samples = _samples(url)
    assert _value(samples, "gateway_own_certificate_expiry_seconds") > 800 * 86_400
    assert _value(samples, "gateway_own_certificate_retired") == 0


def test_readyz_stays_ready_naming_the_dataset_whose_source_lost_its_table(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """One source down made the whole gateway "not ready": a load balancer
    following the README dropped every dataset, not just the one down. Ready
    (200) while some dataset is served, the one down named in the body and the
    per-dataset metric; 503 only when no dataset can be served."""
    import sqlite3

    from tests.conftest import start_federation, stop_federation

    rf = start_federation(tmp_path_factory.mktemp("unready"), rows=50)
    try:
        site = rf.site("120000")
        with sqlite3.connect(site.data_source) as c:
            tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            served = json.loads(_get(site.ops_url + "/readyz")[1])
            assert served["status"] == "ready" and len(tables) > 1
            c.execute(f'DROP TABLE "{tables[0]}"')
        time.sleep(Limits().ready_check_seconds)  # past the reused result
        status, body, _ = _get(site.ops_url + "/readyz")
        report = json.loads(body)
        assert status == 200 and report["status"] == "ready", report
        assert report["checks"]["sources"] == "ok"  # ready: the detail is a warning
        detail = report["warnings"]["sources"]
        assert f"dataset {tables[0]}" in detail and "the others are served" in detail
        assert str(site.data_source.parent) not in detail  # no path to the operator's files
        samples = _samples(site.ops_url)
        assert _value(samples, "gateway_dataset_source_up", dataset=tables[0]) == 0
        assert _value(samples, "gateway_dataset_source_up", dataset=tables[1]) == 1
        with sqlite3.connect(site.data_source) as c:
            for t in tables[1:]:
                c.execute(f'DROP TABLE "{t}"')
        time.sleep(Limits().ready_check_seconds)
        status, body, _ = _get(site.ops_url + "/readyz")
        report = json.loads(body)
        assert status == 503 and report["status"] == "not ready"
        assert report["checks"]["sources"].startswith("no dataset can be served")
        assert _get(site.ops_url + "/healthz")[0] == 200  # alive, just not ready
    finally:
        stop_federation(rf)


def test_ops_listener_serves_nothing_else_and_refuses_writes(federation: RunningFederation) -> None:
    url = federation.site("110000").ops_url
    assert _get(url + "/")[0] == 404
    assert _get(url + "/metrics/../../etc/passwd")[0] == 404
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("POST", "/metrics", body=b"x")
    resp = conn.getresponse()
    assert resp.status == 405 and resp.getheader("Allow") == "GET, HEAD"
    conn.close()


def test_ops_listener_defaults_to_loopback() -> None:
    from gateway.config import DEFAULT_OPS_ADDRESS, Listen

    listen = Listen(peer="0.0.0.0:7101", service="0.0.0.0:7201")
    assert listen.ops == DEFAULT_OPS_ADDRESS and listen.ops.startswith("127.0.0.1:")


def test_caller_chosen_codes_outside_the_trust_bundle_are_counted_as_other() -> None:
    from gateway.ops.metrics import KnownLabels

    members = [("110000", ("si_contributions",)), ("120000", ("hf_accounts",))]
    known = KnownLabels(lambda: members)
    assert known.counterparty("110000") == "110000"
    assert known.counterparty("110000,120000") == "110000,120000"
    assert known.counterparty("310000") == "other"
    assert known.dataset("hf_accounts") == "hf_accounts"
    assert known.dataset("made_up_dataset_" + "x" * 40) == "other"
    members.append(("130000", ("ent_qualifications",)))  # a new bundle is picked up
    assert (
        known.counterparty("130000") == "130000" and known.dataset("ent_qualifications") != "other"
    )


def test_checkpoint_age_of_an_idle_ledger_its_newest_checkpoint_covers_is_zero() -> None:
    # A new gateway's empty ledger is checkpointed once (size 0) and never again while
    # nothing is appended: the README's alert ("checkpoint age above a few intervals")
    # fired on every idle gateway. The age counts only while entries wait for a checkpoint.
    from gateway.ops.metrics import GatewayMetrics, StateSources

    now_ms, size, newest = 10_000_000, 0, (10_000_000 - 3_600_000, 0)
    recorded = {5: now_ms - 60_000}  # entry 5: a minute ago

    def scrape() -> float:
        m = GatewayMetrics("110000")
        m.watch_state(
            StateSources(
                ledger_size=lambda: size,
                newest_checkpoint=lambda: newest,
                witnessed_sizes=dict,
                budgets=tuple,
                store_rows=dict,
                now_ms=lambda: now_ms,
                entry_ms=recorded.__getitem__,
            )
        )
        samples = {
            s.name: s.value
            for fam in text_string_to_metric_families(m.exposition().decode())
            for s in fam.samples
        }
        return samples["gateway_ledger_checkpoint_age_seconds"]

    assert scrape() == 0.0  # empty, checkpointed an hour ago: nothing waits
    size, newest = 5, (now_ms - 3_600_000, 5)
    assert scrape() == 0.0  # idle since its last entries, all covered
    size = 6  # an entry waits: how long it has waited is what to alert on
    assert scrape() == 60.0  # not the hour of idleness before it came
    recorded[5] = now_ms - 7_200_000  # (an entry older than the checkpoint: its issue time)
    assert scrape() == 3600.0


def test_an_ops_address_the_operator_set_that_is_taken_refuses_to_start(
    federation: RunningFederation, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import re

    from gateway.config import load_config
    from gateway.errors import ConfigurationError
    from gateway.server.app import Gateway

    site = federation.site("120000")
    text = site.config.read_text()
    taken = site.ops_port  # the running gateway holds it
    clash = tmp_path_factory.mktemp("clash") / "gateway.toml"
    clash.write_text(
        re.sub(r'(?m)^(peer|service|service_mtls) = "127.0.0.1:\d+"', r'\1 = "127.0.0.1:0"', text)
        .replace(f'ops = "127.0.0.1:{taken}"', f'ops = "127.0.0.1:{taken}"')
        .replace('key_dir = "keys"', f'key_dir = "{site.root / "keys"}"')
        .replace('data_dir = "data"', f'data_dir = "{clash.parent / "data"}"')
        .replace('data_source = "data/source.sqlite"', f'data_source = "{site.data_source}"')
    )
    gw = Gateway(load_config(clash))
    try:
        with pytest.raises(ConfigurationError, match="cannot listen there"):
            gw.start()
    finally:
        gw.stop(grace=0.1)


def test_a_taken_default_ops_address_logs_an_error_and_the_gateway_serves_on(
    federation: RunningFederation,
    tmp_path_factory: pytest.TempPathFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import re

    from gateway.config import Listen, load_config
    from gateway.server.app import Gateway

    site = federation.site("120000")
    clash = tmp_path_factory.mktemp("default-clash") / "gateway.toml"
    clash.write_text(
        re.sub(
            r'(?m)^(peer|service|service_mtls) = "127.0.0.1:\d+"',
            r'\1 = "127.0.0.1:0"',
            site.config.read_text(),
        )
        .replace('key_dir = "keys"', f'key_dir = "{site.root / "keys"}"')
        .replace('data_dir = "data"', f'data_dir = "{clash.parent / "data"}"')
        .replace('data_source = "data/source.sqlite"', f'data_source = "{site.data_source}"')
    )
    config = load_config(clash)
    # As if the file said nothing about ops and the default were already taken.
    listen = Listen.model_construct(
        _fields_set={"peer", "service", "service_mtls"},
        **{**config.listen.model_dump(), "ops": f"127.0.0.1:{site.ops_port}"},
    )
    gw = Gateway(config.model_copy(update={"listen": listen}))
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.ops"):
            ports = gw.start()
        assert ports.ops == 0 and ports.service > 0
        assert any(getattr(r, "event", "") == "ops_not_listening" for r in caplog.records)
    finally:
        gw.stop(grace=0.1)


def _listener(body: bytes = b"m 1\n", **limits: Any) -> OpsListener:
    return OpsListener("127.0.0.1:0", lambda: body, [], "text/plain", Limits(**limits)).start()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_an_ops_connection_that_sends_no_request_is_closed_after_the_timeout() -> None:
    """Each connection held a thread with no timeout: a client (or a scanner)
    that connects and says nothing kept it for ever, and many of them grew the
    process's threads without bound."""
    listener = _listener(ops_request_timeout_seconds=0.5)
    try:
        idle = socket.create_connection(("127.0.0.1", listener.port))
        try:
            assert _closed_within(idle, 5.0)
        finally:
            idle.close()
    finally:
        listener.stop()


def test_ops_connections_beyond_the_cap_are_closed_and_probes_answer_once_they_go() -> None:
    listener = _listener(ops_request_timeout_seconds=1.0, ops_max_connections=3)
    port = listener.port
    try:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        time.sleep(0.2)  # accepted: every slot taken
        extra = socket.create_connection(("127.0.0.1", port))
        try:
            assert _closed_within(extra, 0.5)  # closed at once, not after the timeout
        finally:
            extra.close()
        for s in held:
            assert _closed_within(s, 5.0)
            s.close()
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    finally:
        listener.stop()


def test_an_ops_client_that_resets_mid_answer_leaves_no_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """socketserver printed 'Exception occurred during processing of request'
    and a traceback to standard error for a client that went away."""
    listener = _listener(body=b"x" * (16 << 20))
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", listener.port))
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            s.recv(1024)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST while the server still writes
        time.sleep(1.0)
    finally:
        listener.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err
