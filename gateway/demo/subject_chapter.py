"""Demo chapter: "who read my data", across the three jurisdictions, with proofs.

Once the gateways have witnessed each other's checkpoints, the Hebei citizen
portal (一网通办, registered with the ``subject_access`` role) asks its gateway
for the access history of the Beijing commuter the record exchanges named. The
history lists every access at every holder, each entry's proofs verified by the
Hebei gateway against the trust bundle. After the gateways stop, the Beijing
officer runs ``gateway audit subject`` on the files alone. Registers itself in
``gateway.demo.run`` (``BEFORE_STOP`` and ``AFTER_STOP``).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess

import grpc
from rich.table import Table

from gateway._proto.dataexchange.gateway.v1 import subject_pb2
from gateway.client import ServiceClient
from gateway.demo.chapters import _cli
from gateway.demo.run import AFTER_STOP, BEFORE_STOP, Outcome, console
from gateway.demo.setup import Federation

PORTAL = "hebei-citizen-portal"
_CST = dt.timezone(dt.timedelta(hours=8))
_KIND = {
    "records": "records released",
    "refusal": "refused",
    "bulk_dataset": "bulk: whole dataset",
    "bulk_pseudonymised": "bulk: pseudonymised extract",
    "bulk_refusal": "bulk request refused",
    "statistics": "statistic (no individual data)",
}
_STATUS = {v: k for k, v in subject_pb2.JurisdictionAnswer.Status.items()}
_state: dict[str, bool] = {"ok": False}


def _commuter(fed: Federation) -> str:
    path = fed.sites["110000"].data_source
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT person_id FROM si_contributions WHERE residence_jurisdiction='130000' LIMIT 1"
        ).fetchone()
    return str(row[0])


def subject_access_chapter(fed: Federation, _procs: dict[str, subprocess.Popen[bytes]]) -> None:
    console.rule("Who read my data: a citizen's verified access history")
    console.print(
        "A Beijing commuter living in Hebei signs in to the Hebei citizen portal (一网通办) and "
        "asks who read their data. The portal's gateway seals the person's id to every member; "
        "each finds the person's entries through a keyed blind index (no id in any ledger) and "
        "answers with every entry and its proofs; the Hebei gateway verifies every proof "
        "against the trust bundle."
    )
    hb = fed.sites["130000"]
    with ServiceClient(hb.service_address, hb.tls_cert, "130000", hb.tokens[PORTAL]) as client:
        history = client.access_history(_commuter(fed))
    table = Table(title="Access history (oldest first; China Standard Time)", title_justify="left",
                  show_lines=True)  # fmt: skip
    for col, width in (("when", 19), ("holder", 6), ("what", 22), ("who asked", 26),
                       ("dataset / purpose", 34), ("legal basis / fields", 40), ("proof", 18)):  # fmt: skip
        table.add_column(col, max_width=width)
    for e in history.events:
        when = dt.datetime.fromtimestamp(e.timestamp_ms / 1000, _CST).strftime("%Y-%m-%d %H:%M:%S")
        fields = ", ".join(f"{f.name}:{f.transform}" for f in e.fields) or "-"
        basis = f"{e.legal_basis}\n{fields}" if e.legal_basis else fields
        proof = f"entry #{e.proof.index}\ncosigned by {len(e.proof.cosigned_by)}"
        table.add_row(when, e.holder_jurisdiction, _KIND.get(e.kind, e.kind),
                      f"{e.requester_jurisdiction}/{e.service_system or '-'}",
                      f"{e.dataset}\n{e.purpose}", basis, proof)  # fmt: skip
    console.print(table)
    for j in history.jurisdictions:
        status = _STATUS[j.status]
        console.print(f"  {j.jurisdiction} {j.name}: {status}, {j.events} entries {j.reason}")
    kinds = {e.kind for e in history.events}
    answered = all(
        j.status == subject_pb2.JurisdictionAnswer.ANSWERED for j in history.jurisdictions
    )
    _state["ok"] = answered and {"records", "refusal", "bulk_pseudonymised", "statistics"} <= kinds
    if not _state["ok"]:
        console.print(
            f"[red]expected every jurisdiction to answer and every kind, got {kinds}[/red]"
        )
    with ServiceClient(
        hb.service_address, hb.tls_cert, "130000", hb.tokens["hebei-housing-fund"]
    ) as client:
        try:
            client.access_history(_commuter(fed))
            console.print(
                "[red]a service system without the subject_access role was answered[/red]"
            )
            _state["ok"] = False
        except grpc.RpcError as exc:
            console.print(
                f"The housing-fund system (no subject_access role) asking the same: "
                f"[yellow]{exc.code().name}[/yellow]: {exc.details()}"
            )
            if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                _state["ok"] = False


def subject_audit_after_stop(fed: Federation, _outcomes: list[Outcome]) -> bool:
    bj = fed.sites["110000"].root
    id_file = fed.root / "subject-id.txt"  # the officer has the id at hand; never on a command line
    id_file.write_text(_commuter(fed) + "\n", encoding="utf-8")
    os.chmod(id_file, 0o600)
    ok = _cli(
        "the Beijing officer checks the commuter's history and the index store offline",
        "audit", "subject", "--ledger", str(bj / "data" / "ledger.sqlite"),
        "--index-store", str(bj / "data" / "subject_index.sqlite"), "--keys", str(bj / "keys"),
        "--bundle", str(fed.bundle), "--id-file", str(id_file),
        "--requester-ledger", str(fed.sites["130000"].root / "data" / "ledger.sqlite"),
        "--requester-ledger", str(fed.sites["120000"].root / "data" / "ledger.sqlite"),
    )  # fmt: skip
    return ok and _state["ok"]


BEFORE_STOP.append(subject_access_chapter)
AFTER_STOP.append(subject_audit_after_stop)
