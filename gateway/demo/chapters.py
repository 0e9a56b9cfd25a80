"""Demo chapters beyond record exchange: federated statistics and ledger evidence.

Each chapter registers itself in ``gateway.demo.run`` (``CHAPTERS`` run while the
gateways are up; ``AFTER_STOP`` run offline on the files they left).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import grpc
from rich.table import Table

from gateway._proto.dataexchange.gateway.v1 import stats_pb2, stats_pb2_grpc
from gateway.client import service_channel
from gateway.demo.run import AFTER_STOP, BEFORE_STOP, CHAPTERS, Outcome, console
from gateway.demo.setup import Federation
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.note import parse_note

ALL = ["110000", "120000", "130000"]


def _stats_stub(
    fed: Federation, code: str, service: str
) -> tuple[grpc.Channel, stats_pb2_grpc.StatisticsStub]:
    site = fed.sites[code]
    ch = service_channel(
        site.service_address, site.tls_cert.read_bytes(), code, site.tokens[service]
    )
    return ch, stats_pb2_grpc.StatisticsStub(ch)


def commuters_by_age(jurisdictions: list[str], epsilon: float) -> stats_pb2.StatsQueryRequest:
    return stats_pb2.StatsQueryRequest(
        jurisdictions=jurisdictions,
        query=stats_pb2.StatsQuery(
            dataset="si_contributions",
            purpose="commuter_planning",
            statistic=stats_pb2.STATISTIC_KIND_COUNT,
            group_by=["age_band"],
            filters=[stats_pb2.StatsFilter(column="residence_jurisdiction", values=["130000"])],
            epsilon=epsilon,
            confidence=0.95,
        ),
    )


def statistics_chapter(fed: Federation) -> None:
    console.rule("Federated differentially private statistics")
    console.print(
        "Tianjin's planning office asks its own gateway: how many people insured in each "
        "jurisdiction live in Hebei, by age band? Each holder answers under its own "
        "statistics agreement and budget; no rows and no exact counts leave a jurisdiction."
    )
    ch, stub = _stats_stub(fed, "120000", "tianjin-planning")
    try:
        dry = stub.DryRun(commuters_by_age(ALL, 1.0), timeout=30)
        cost = ", ".join(f"{p.jurisdictions[0]} ε={p.epsilon:g}" for p in dry.parts)
        console.print(
            f"Dry run (nothing spent): cost {cost}; expected ±{_accuracy(dry):.1f} per cell at 95%."
        )
        resp = stub.Query(commuters_by_age(ALL, 1.0), timeout=30)
    finally:
        ch.close()
    table = Table(title="People insured in 京津冀 who live in Hebei, by age band (ε=1 per holder)",
                  title_justify="left")  # fmt: skip
    table.add_column("age band")
    for p in resp.parts:
        table.add_column(p.jurisdictions[0], justify="right")
    table.add_column("combined (95% interval)", justify="right")
    parts = {p.jurisdictions[0]: {tuple(c.key): c for c in p.cells} for p in resp.parts}
    for cell in resp.combined.cells:
        key = tuple(cell.key)
        row = [f"{parts[j][key].value:,.0f}" for j in parts]
        table.add_row(key[0], *row, f"{cell.value:,.0f}  [{cell.lower:,.0f}, {cell.upper:,.0f}]")
    console.print(table)
    missing = ", ".join(f"{m.jurisdiction}: {m.code}" for m in resp.missing) or "none"
    console.print(f"complete={resp.complete}; missing parts: {missing}")

    console.print(
        "\nHebei's planning office asks Beijing the same question until its budget is spent:"
    )
    ch, stub = _stats_stub(fed, "130000", "hebei-planning")
    try:
        for i in range(1, 6):
            try:
                r = stub.Query(commuters_by_age(["110000"], 1.0), timeout=30)
                left = ", ".join(
                    f"{b.jurisdiction}: ε {b.requester_epsilon:g} left" for b in r.remaining
                )
                console.print(f"  query {i}: released ({left})")
            except grpc.RpcError as exc:
                console.print(f"  query {i}: [yellow]{exc.code().name}[/yellow]: {exc.details()}")
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                break
        else:
            raise RuntimeError("the budget was never exhausted")
    finally:
        ch.close()


def _accuracy(resp: stats_pb2.StatsQueryResponse) -> float:
    comps = [c.accuracy for p in resp.parts for c in p.components if c.has_accuracy]
    return max(comps) if comps else float("nan")


CHAPTERS.append(lambda fed: statistics_chapter(fed))


def witness_before_stop(fed: Federation, procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Ask every gateway for a checkpoint cosigned by its peers (SIGUSR1), and wait."""
    console.rule("Ledger checkpoints and peer witnessing")
    for p in procs.values():
        p.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 30
    pending = set(fed.sites)
    while pending and time.monotonic() < deadline:
        for code in list(pending):
            ledger = SqliteLedger.open_readonly(fed.sites[code].root / "data" / "ledger.sqlite")
            try:
                cp = ledger.latest_checkpoint()
                sigs = parse_note(cp.note)[1] if cp else []
                if cp and cp.checkpoint.size == ledger.size and len(sigs) == len(fed.sites):
                    names = ", ".join(s.name for s in sigs[1:])
                    console.print(
                        f"  {code}: checkpoint of size {cp.checkpoint.size} cosigned by {names}"
                    )
                    pending.discard(code)
            finally:
                ledger.close()
        time.sleep(0.3)
    for code in pending:
        console.print(f"  [red]{code}: checkpoint not cosigned by every peer in time[/red]")


def _cli(title: str, *args: str, expect: int = 0) -> bool:
    """Run ``gateway ARGS`` as a compliance officer would: its own process."""
    console.print(f"\n[bold]$ gateway {' '.join(args)}[/bold]   [dim]# {title}[/dim]")
    sys.stdout.flush()  # keep the command line above its output
    status = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "gateway", *args], check=False
    ).returncode
    good = status == expect
    if not good:
        console.print(f"[red]expected exit {expect}, got {status}[/red]")
    return good


def compliance_after_stop(fed: Federation, outcomes: list[Outcome]) -> bool:
    bundle = str(fed.bundle)
    ok = True
    for site in fed.sites.values():
        # The witnesses' own state proves the file was not cut short.
        witnesses = [a for o in fed.sites.values() if o is not site
                     for a in ("--witness-db", str(o.root / "data" / "witness.sqlite"))]  # fmt: skip
        ok = _cli(f"{site.name}'s whole ledger, against what its witnesses hold", "ledger",
                  "verify", str(site.root / "data" / "ledger.sqlite"), "--bundle", bundle,
                  *witnesses) and ok  # fmt: skip
    codes = sorted(fed.sites)
    for i, a in enumerate(codes):
        for b in codes[i + 1 :]:
            ok = _cli(f"every transfer between {a} and {b} is on both sides and matches", "audit",
                      "reconcile", str(fed.sites[a].root / "data" / "ledger.sqlite"),
                      str(fed.sites[b].root / "data" / "ledger.sqlite")) and ok  # fmt: skip
    transfer = next(o for o in outcomes if o.status == "OK" and o.request_id)
    evidence = fed.root / "evidence.json"
    holder_ledger = fed.sites[transfer.holder].root / "data" / "ledger.sqlite"
    ok = _cli("export the evidence of one transfer", "ledger", "export", "--ledger", str(holder_ledger),
              "--request-id", transfer.request_id, "--bundle", bundle, "-o", str(evidence)) and ok  # fmt: skip
    ok = _cli("verify it offline", "ledger", "verify", str(evidence), "--bundle", bundle) and ok
    tampered = fed.root / "evidence-tampered.json"
    data = bytearray(evidence.read_bytes())
    pos = data.find(b'"record_count"')
    pos = pos if pos >= 0 else len(data) // 2
    data[pos + 1] ^= 0x01
    tampered.write_bytes(bytes(data))
    ok = _cli("one byte changed: must FAIL", "ledger", "verify", str(tampered), "--bundle", bundle,
              expect=1) and ok  # fmt: skip
    resealed = fed.root / "evidence-resealed.json"
    resealed.write_bytes(_swap_requester_key(evidence.read_bytes()))
    ok = _cli("requester's key swapped and the checksum recomputed: must FAIL", "ledger", "verify",
              str(resealed), "--bundle", bundle, expect=1) and ok  # fmt: skip
    report = fed.root / "audit-report.html"
    ok = _cli("the compliance officer's HTML report (open it in a browser)", "audit", "report",
              *(str(fed.sites[c].root / "data" / "ledger.sqlite") for c in codes),
              *(f"--witness={c}={fed.sites[c].root / 'data' / 'witness.sqlite'}" for c in codes),
              "--bundle", bundle, "-o", str(report)) and ok  # fmt: skip
    return ok


def _swap_requester_key(data: bytes) -> bytes:
    """What a forger would do: replace a member's signing key and re-seal the file."""
    import json
    import os

    from gateway import crypto
    from gateway.ledger.bundle import seal

    content = json.loads(data)["content"]
    suite = crypto.suite(content["suite"])  # a key of the federation's own suite
    for m in content["members"]:
        m["signing_key"] = [suite.generate_signing_key(os.urandom).verify_key.encode()]
    return seal(content)


BEFORE_STOP.append(witness_before_stop)
AFTER_STOP.append(compliance_after_stop)
