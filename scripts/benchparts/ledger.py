"""Ledger benchmark: append throughput, full verification vs the raw hash, proof latency.

Builds a 1,000,000-entry ledger (``--quick``: 20,000) in a temporary folder
with batched appends, measures durable single appends on a fresh file, runs
the full offline verification (chain + tree + stored nodes + checkpoints) and,
in the same run, the suite's raw hash (SHA-256, or SM3 for gm) over the same
entry bytes, then times inclusion and consistency proof generation at full
size. With ``--suite gm`` an intl ledger of the same size is measured in the
same run too, for the gm/intl ratios.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from benchparts.common import Report, median, percentile, time_calls
from gateway import crypto
from gateway.crypto import AnySigningKey, SigningKey
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.storage import SqliteLedgerStore
from gateway.ledger.verify import verify_store
from tests.ledger.ledger_testkit import make_event

ORIGIN = "110000.gateway.dataexchange.cn/ledger"
BATCH = 10_000


def _key(suite: str) -> AnySigningKey:
    if suite == "intl":
        return SigningKey(bytes(range(32)))
    return crypto.suite(suite).generate_signing_key()


def _measure(tmp: Path, suite: str, n: int, singles: int) -> dict[str, float]:
    key = _key(suite)
    out: dict[str, float] = {}
    # Durable single appends (each one committed with fsync before returning).
    single = SqliteLedger(tmp / f"single-{suite}.db", key, ORIGIN, checkpoint_every=1000)
    t0 = time.perf_counter()
    for i in range(singles):
        single.append(make_event(i))
    out["single"] = singles / (time.perf_counter() - t0)
    single.close()

    # Batched build of the big ledger.
    path = tmp / f"big-{suite}.db"
    ledger = SqliteLedger(path, key, ORIGIN, checkpoint_every=1000)
    build = 0.0
    for start in range(0, n, BATCH):
        events = [make_event(i) for i in range(start, min(n, start + BATCH))]
        t0 = time.perf_counter()
        ledger.append_many(events)
        build += time.perf_counter() - t0
    out["batched"], out["build"] = n / build, build

    # Proof generation at full size.
    rng = random.Random(1)
    incl = time_calls(lambda: ledger.inclusion_proof(rng.randrange(n), n), 2000)
    cons = time_calls(lambda: ledger.consistency_proof(rng.randrange(1, n), n), 1000)
    out["incl50"], out["incl99"] = median(incl) * 1e3, percentile(incl, 99) * 1e3
    out["cons50"] = median(cons) * 1e3
    ledger.close()

    # Full verification vs the suite's raw hash over the same entry bytes.
    store = SqliteLedgerStore(path, readonly=True)
    t0 = time.perf_counter()
    report = verify_store(store, ORIGIN, key.verify_key, check_nodes=False)
    out["verify_time"] = time.perf_counter() - t0
    assert report.ok and report.entries == n, report.problem
    t0 = time.perf_counter()
    report = verify_store(store, ORIGIN, key.verify_key, check_nodes=True)
    out["verify_caches"] = n / (time.perf_counter() - t0)
    assert report.ok and report.entries == n, report.problem
    raw_time = 0.0
    digest = crypto.suite(suite).digest
    for page in store.iter_raw(50_000):
        entries = [e for _, e, _ in page]
        t0 = time.perf_counter()
        for e in entries:
            digest(e)
        raw_time += time.perf_counter() - t0
    store.close()
    out["raw_time"] = raw_time
    return out


def run(quick: bool, suite: str = "intl") -> Report:
    n = 20_000 if quick else 1_000_000
    singles = 20 if quick else 200
    rep = Report(f"ledger ({n:,} entries, suite {suite})", ["value", "unit"])
    hash_name = crypto.suite(suite).hash_name
    with tempfile.TemporaryDirectory() as tmp:
        m = _measure(Path(tmp), suite, n, singles)
        ref = _measure(Path(tmp), "intl", n, singles) if suite == "gm" else None
    rep.row("durable single appends", m["single"], "entries/s")
    rep.row("batched appends", m["batched"], "entries/s")
    rep.row("build time (batched)", m["build"], "s")
    rep.row("inclusion proof p50", m["incl50"], "ms")
    rep.row("inclusion proof p99", m["incl99"], "ms")
    rep.row("consistency proof p50", m["cons50"], "ms")
    rep.row("full verification", n / m["verify_time"], "entries/s")
    rep.row(f"raw {hash_name}", n / m["raw_time"], "entries/s")
    rep.row("verification time", m["verify_time"], "s")
    rep.row("... plus stored-cache check", m["verify_caches"], "entries/s")
    if ref is not None:
        rep.row("intl: batched appends", ref["batched"], "entries/s")
        rep.row("intl: full verification", n / ref["verify_time"], "entries/s")
        rep.row("intl: durable single appends", ref["single"], "entries/s")
    rep.ratio("raw_time / verify_time", m["raw_time"] / m["verify_time"], ">= 0.5")
    rep.ratio("inclusion proof p50 (ms)", m["incl50"], "<= 1")
    if ref is not None:
        rep.ratio(
            "verification throughput (gm/intl)", ref["verify_time"] / m["verify_time"], ">= 0.5"
        )
        rep.ratio("batched append throughput (gm/intl)", m["batched"] / ref["batched"], ">= 0.5")
    sig = "SM2" if suite == "gm" else "Ed25519"
    rep.notes.append(
        f"full verification = every entry's leaf hash ({hash_name}) and header (index, "
        "predecessor hash), the Merkle root at every checkpoint, every checkpoint's "
        f"{sig} signature; the stored-cache check also compares every stored leaf hash and "
        "interior node (what proofs are served from; `gateway ledger verify` does both); "
        f"raw = {hash_name} of the entry bytes only"
    )
    return rep
