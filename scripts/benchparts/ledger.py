"""Ledger benchmark: append throughput, full verification vs raw SHA-256, proof latency.

Builds a 1,000,000-entry ledger (``--quick``: 20,000) in a temporary folder
with batched appends, measures durable single appends on a fresh file, runs
the full offline verification (chain + tree + stored nodes + checkpoints) and,
in the same run, raw ``hashlib.sha256`` over the same entry bytes, then times
inclusion and consistency proof generation at full size.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
import time
from pathlib import Path

from benchparts.common import Report, median, percentile, time_calls
from gateway.crypto import SigningKey
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.storage import SqliteLedgerStore
from gateway.ledger.verify import verify_store
from tests.ledger.ledger_testkit import make_event

ORIGIN = "110000.gateway.dataexchange.cn/ledger"
BATCH = 10_000


def run(quick: bool) -> Report:
    n = 20_000 if quick else 1_000_000
    singles = 20 if quick else 200
    key = SigningKey(bytes(range(32)))
    rep = Report(f"ledger ({n:,} entries)", ["value", "unit"])
    with tempfile.TemporaryDirectory() as tmp:
        # Durable single appends (each one committed with fsync before returning).
        single = SqliteLedger(Path(tmp) / "single.db", key, ORIGIN, checkpoint_every=1000)
        t0 = time.perf_counter()
        for i in range(singles):
            single.append(make_event(i))
        dt_single = time.perf_counter() - t0
        single.close()
        rep.row("durable single appends", singles / dt_single, "entries/s")

        # Batched build of the big ledger.
        path = Path(tmp) / "big.db"
        ledger = SqliteLedger(path, key, ORIGIN, checkpoint_every=1000)
        build = 0.0
        for start in range(0, n, BATCH):
            events = [make_event(i) for i in range(start, min(n, start + BATCH))]
            t0 = time.perf_counter()
            ledger.append_many(events)
            build += time.perf_counter() - t0
        rep.row("batched appends", n / build, "entries/s")
        rep.row("build time (batched)", build, "s")

        # Proof generation at full size.
        rng = random.Random(1)
        incl = time_calls(lambda: ledger.inclusion_proof(rng.randrange(n), n), 2000)
        cons = time_calls(lambda: ledger.consistency_proof(rng.randrange(1, n), n), 1000)
        rep.row("inclusion proof p50", median(incl) * 1e3, "ms")
        rep.row("inclusion proof p99", percentile(incl, 99) * 1e3, "ms")
        rep.row("consistency proof p50", median(cons) * 1e3, "ms")
        ledger.close()

        # Full verification vs raw hashlib over the same entry bytes.
        store = SqliteLedgerStore(path, readonly=True)
        t0 = time.perf_counter()
        report = verify_store(store, ORIGIN, key.verify_key, check_nodes=False)
        verify_time = time.perf_counter() - t0
        assert report.ok and report.entries == n, report.problem
        t0 = time.perf_counter()
        report = verify_store(store, ORIGIN, key.verify_key, check_nodes=True)
        verify_caches_time = time.perf_counter() - t0
        assert report.ok and report.entries == n, report.problem
        raw_time = 0.0
        sha = hashlib.sha256
        for page in store.iter_raw(50_000):
            entries = [e for _, e, _ in page]
            t0 = time.perf_counter()
            for e in entries:
                sha(e).digest()
            raw_time += time.perf_counter() - t0
        store.close()
        rep.row("full verification", n / verify_time, "entries/s")
        rep.row("raw hashlib SHA-256", n / raw_time, "entries/s")
        rep.row("verification time", verify_time, "s")
        rep.row("... plus stored-cache check", n / verify_caches_time, "entries/s")
        rep.ratio("raw_time / verify_time", raw_time / verify_time, ">= 0.5")
        rep.ratio("inclusion proof p50 (ms)", median(incl) * 1e3, "<= 1")
        rep.notes.append(
            "full verification = every entry's leaf hash and header (index, predecessor hash), "
            "the Merkle root at every checkpoint, every checkpoint's Ed25519 signature; the "
            "stored-cache check also compares every stored leaf hash and interior node (what "
            "proofs are served from; `gateway ledger verify` does both); raw = sha256 of the "
            "entry bytes only"
        )
    return rep
