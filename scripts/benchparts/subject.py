"""Subject-access benchmark: one person's history across three gateways vs the in-process floor.

Each of the three jurisdictions' ledgers is filled with N holder entries
(1,000,000 each; --quick: 2,000) committing to blind indexes, the person named
in 20 of them per jurisdiction, with the matching rows in each holder's index
store; then the three gateways run as separate processes and witness each
other's checkpoints. Measured in the same run:

- through the gateways: the Hebei citizen portal calls its gateway's
  SubjectAccess.GetAccessHistory (TLS + token); the gateway answers its own
  part, seals the id to Beijing and Tianjin over mutual TLS, each holder looks
  up the index, proves every entry (inclusion in the newest cosigned
  checkpoint, membership in the entry's index set), seals the answer back, and
  the Hebei gateway verifies every proof, merges, and ledgers the request on
  both sides;
- the floor: the same index lookups, proofs and verification for the three
  holders done in one process on the same files, no network, no signing, no
  sealing, no ledgering.

Reports p50 and p99 of both and the ratio; the target is p50 under 100 ms.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchparts.common import Report, percentile, time_calls
from gateway.client import ServiceClient
from gateway.crypto import b64
from gateway.demo.run import start_gateways, stop_gateways
from gateway.demo.setup import build_federation
from gateway.identity import load_keys
from gateway.ledger.events import LedgerEvent
from gateway.ledger.ledger import SqliteLedger
from gateway.limits import DEFAULT_LIMITS
from gateway.subject.holder import HistoryResponder
from gateway.subject.index import blind_index, commit, entry_details, index_key
from gateway.subject.store import IndexedEntry, SqliteSubjectIndexStore
from gateway.subject.verify import holder_keys, verify_answer
from gateway.trust import load_bundle

PORTAL = "hebei-citizen-portal"
CODES = ("110000", "120000", "130000")
NAMED = 20  # entries naming the person, per jurisdiction
FIELDS = (("person_id", "mask"), ("name", "mask"), ("employer", "pass"))


def _fill(site_root: str, code: str, origin: str, person: str, n: int) -> None:
    """Append ``n`` holder entries to a site's ledger and index store (one process each)."""
    data = Path(site_root) / "data"
    keys = load_keys(Path(site_root) / "keys")
    key = index_key(keys.pseudonym_key)
    mine = blind_index(key, person)
    ledger = SqliteLedger(
        data / "ledger.sqlite", keys.ledger, origin, checkpoint_every=100_000,
        checkpoint_interval=1e9, clock=lambda: time.time(),
    )  # fmt: skip
    store = SqliteSubjectIndexStore(data / "subject_index.sqlite")
    every = max(1, n // NAMED)
    # Synthetic history ending 30 days ago: outside the quota window the
    # gateway reconciles with its ledger at start-up (these made no quota writes).
    start_ms = int(time.time() * 1000) - 30 * 86_400_000 - n * 1000
    others = [c for c in CODES if c != code]
    batch = 20_000
    try:
        for lo in range(0, n, batch):
            events, rows = [], []
            for i in range(lo, min(n, lo + batch)):
                indexes = [os.urandom(32)] + ([mine] if i % every == every // 2 else [])
                rid = str(uuid.UUID(bytes=os.urandom(16), version=4))
                ts = start_ms + i * 1000
                events.append(
                    LedgerEvent(
                        kind="transfer", role="holder", request_id=rid, timestamp_ms=ts,
                        local=code, counterparty=others[i % 2], service_system="bench-system",
                        dataset="si_contributions", purpose="housing_fund_transfer",
                        decision="allow", reason="allowed by agreement bench", record_count=1,
                        agreement_id="bench-agreement", agreement_digest="a" * 64,
                        policy_set_digest="b" * 64, payload_digest=f"{i:064x}",
                        request_digest="d" * 64, requester_signature=b64(bytes(64)),
                        holder_signature=b64(bytes(64)),
                        details=entry_details("named", commit(indexes), FIELDS),
                    )
                )  # fmt: skip
                rows.append((IndexedEntry(rid, "named", "si_contributions", FIELDS, ts), indexes))
            receipts = ledger.append_many(events)
            store.record_many(
                [
                    (IndexedEntry(e.request_id, e.coverage, e.dataset, e.fields, e.recorded_ms,
                                  r.index), idx)
                    for (e, idx), r in zip(rows, receipts, strict=True)
                ]
            )  # fmt: skip
        ledger.checkpoint_now()
    finally:
        store.close()
        ledger.close()


def _floor(fed_sites: dict[str, Path], bundle_path: Path, person: str) -> list[float]:
    bundle = load_bundle(bundle_path)
    parts = []
    for code in CODES:
        data = fed_sites[code] / "data"
        ledger = SqliteLedger.open_readonly(data / "ledger.sqlite")
        store = SqliteSubjectIndexStore(data / "subject_index.sqlite")
        key = index_key(load_keys(fed_sites[code] / "keys").pseudonym_key)
        parts.append(
            (ledger, store, HistoryResponder(ledger, store, key, DEFAULT_LIMITS, sign_fresh=False),
             holder_keys(bundle, code, None))
        )  # fmt: skip
    try:

        def once() -> None:
            for _, _, responder, keys in parts:
                proofs, _ = responder.answer(person)
                verify_answer(proofs, keys, DEFAULT_LIMITS)

        return time_calls(once, 30 if len(parts) else 0, warmup=5)
    finally:
        for ledger, store, _, _ in parts:
            store.close()
            ledger.close()


def run(quick: bool = False) -> Report:
    n = 2_000 if quick else 1_000_000
    calls = 20 if quick else 200
    tmp = Path(tempfile.mkdtemp(prefix="bench-subject-"))
    procs = {}
    try:
        fed = build_federation(tmp / "fed", rows=100)
        bj = fed.sites["110000"]
        with sqlite3.connect(bj.data_source) as conn:
            person = conn.execute(
                "SELECT person_id FROM si_contributions WHERE residence_jurisdiction='130000'"
            ).fetchone()[0]
        for site in fed.sites.values():  # the benchmark asks more often than a portal may
            with site.config.open("a", encoding="utf-8") as f:
                f.write("\n[limits]\nsubject_access_per_minute = 1000000\n")
        bundle = load_bundle(fed.bundle)
        t0 = time.perf_counter()
        with ProcessPoolExecutor(3) as pool:
            jobs = [
                pool.submit(_fill, str(fed.sites[c].root), c, bundle.member(c).origin, person, n)
                for c in CODES
            ]
            for j in jobs:
                j.result()
        fill_s = time.perf_counter() - t0
        procs = start_gateways(fed)
        for p in procs.values():  # checkpoint now and have the others cosign it
            p.send_signal(signal.SIGUSR1)
        time.sleep(2.0 if quick else 5.0)
        hb = fed.sites["130000"]
        client = ServiceClient(hb.service_address, hb.tls_cert, "130000", hb.tokens[PORTAL])
        first = client.access_history(person)
        assert all(j.status == j.ANSWERED for j in first.jurisdictions), first.jurisdictions
        assert len(first.events) == 3 * NAMED, len(first.events)
        cosigned = sum(1 for e in first.events if e.proof.cosigned_by)
        gw = time_calls(lambda: client.access_history(person), calls, warmup=5)
        client.close()
        stop_gateways(procs)
        procs = {}
        floor = _floor({c: fed.sites[c].root for c in CODES}, fed.bundle, person)
        report = Report(
            f"subject: one person's history across 3 jurisdictions, {n:,} ledger entries each "
            "(gateways vs in-process floor)",
            ["p50 ms", "p99 ms", "calls"],
        )
        g50, g99 = percentile(gw, 50) * 1e3, percentile(gw, 99) * 1e3
        f50, f99 = percentile(floor, 50) * 1e3, percentile(floor, 99) * 1e3
        report.row("through the gateways", g50, g99, len(gw))
        report.row("in-process floor", f50, f99, len(floor))
        report.notes.append(
            f"{len(first.events)} entries in the history ({cosigned} proven against a cosigned "
            f"checkpoint); ledgers and index stores filled in {fill_s:.1f} s"
        )
        report.notes.append(
            "gateway path: TLS + token, 2 mTLS peer calls in parallel, 6 Ed25519 signatures/"
            "verifications, 4 seals/opens, index lookups and proofs at 3 holders, verification "
            "of every proof, 4 durable ledger appends"
        )
        report.ratio("p50_ms (through the gateways)", g50, "<= 100")
        report.ratio("latency_p50 (gateways/floor)", g50 / f50, "<= 10")
        report.ratio("latency_p99 (gateways/floor)", g99 / f99, "<= 10")
        return report
    finally:
        stop_gateways(procs)
        shutil.rmtree(tmp, ignore_errors=True)
