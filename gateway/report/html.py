"""Render the audit report as one self-contained HTML file.

Owns: the page: summary, verification status with witnesses, the charts
(embedded PNG data URIs), privacy budget per holder, dataset and requester,
reconciliation findings, and the decoded entries as a table with a text
filter and outcome/ledger selectors (a few lines of inline script; the file
loads nothing from the network). Every value from a ledger is HTML-escaped:
a ledger is evidence, not markup.

Entries are metadata only (the ledger holds no personal data), so the table
shows what the ledger shows: ids, codes, decisions, reasons and digests.
The figures, charts and budget count only the entries of ledgers that verify;
the entries of a ledger that fails are listed in the table marked UNVERIFIED
and the page says they were left out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape

from gateway.ledger.show import CST
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.report import charts, model
from gateway.report.gather import AuditInputs, LedgerStatus

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","PingFang SC",sans-serif;
margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:2px 0;opacity:.9;font-size:13px}
main{padding:18px 28px;max-width:1200px}
section{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:14px 18px;margin:0 0 18px}
h2{font-size:17px;margin:0 0 10px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:10px 16px;min-width:140px}
.card b{display:block;font-size:22px}
table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{border-bottom:1px solid #e6e9ef;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f0f3f7;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1b5e20;font-weight:600}.bad{color:#b71c1c;font-weight:600}.warn{color:#e65100}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px}
.charts figure{margin:0}.charts img{max-width:100%;height:auto}
.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11.5px;word-break:break-all}
.filters{display:flex;gap:10px;margin:0 0 8px;flex-wrap:wrap;align-items:center}
.filters input{padding:5px 8px;min-width:320px}
.scroll{max-height:620px;overflow:auto;border:1px solid #e6e9ef}
tr.k-refusal td.kind,tr.k-stats_refusal td.kind{color:#b71c1c}
tr.k-transfer td.kind{color:#1b5e20} tr.k-stats_release td.kind{color:#0d47a1}
tr.unverified td{background:#fdecea}
"""

_SCRIPT = """
(function(){
  var q=document.getElementById('q'),k=document.getElementById('kind'),
      l=document.getElementById('ledger'),n=document.getElementById('shown');
  var rows=Array.prototype.slice.call(document.querySelectorAll('#entries tbody tr'));
  function apply(){
    var text=q.value.trim().toLowerCase(),kind=k.value,led=l.value,shown=0;
    rows.forEach(function(r){
      var ok=(!kind||r.dataset.kind===kind)&&(!led||r.dataset.ledger===led)&&
             (!text||r.textContent.toLowerCase().indexOf(text)>=0);
      r.style.display=ok?'':'none'; if(ok)shown++;
    });
    n.textContent=shown;
  }
  [q,k,l].forEach(function(e){e.addEventListener('input',apply);e.addEventListener('change',apply);});
  // A link can carry a filter: report.html#q=<text>&kind=<outcome>&ledger=<code>
  location.hash.replace(/^#/,'').split('&').forEach(function(p){
    var kv=p.split('='),v=decodeURIComponent(kv[1]||'');
    if(kv[0]==='q')q.value=v; if(kv[0]==='kind')k.value=v; if(kv[0]==='ledger')l.value=v;
  });
  apply();
})();
"""


def _t(ms: int | None) -> str:
    return model.cst_time(ms) + " CST" if ms is not None else "-"


def _verification(ledgers: Sequence[LedgerStatus]) -> str:
    rows = []
    for s in ledgers:
        status = (
            '<span class="ok">verified</span>'
            if s.ok
            else f'<span class="bad">FAILED</span>: {escape(s.problem)}'
        )
        for w in s.warnings:
            status += f'<br><span class="warn">{escape(w)}</span>'
        cosigners = ", ".join(
            f"{escape(j)} ({escape(dt.datetime.fromtimestamp(t, CST).strftime('%m-%d %H:%M'))})"
            for j, _name, t in s.cosigned_by
        )
        n, of = len(s.cosigned_by), len(s.witnesses_expected)
        held = (
            ", ".join(f"{escape(label)}: size {size}" for label, size in s.witness_held)
            or "none given"
        )
        cls = "ok" if n == of and of else ("warn" if n else "bad")
        rows.append(
            "<tr>"
            f"<td>{escape(s.jurisdiction)}<br>{escape(s.name)}</td>"
            f"<td>{status}</td>"
            f'<td class="num">{s.entries}</td><td class="num">{s.checkpoints}</td>'
            f'<td class="num">{s.newest_checkpoint_size}<br>{escape(_t(s.newest_checkpoint_ms))}</td>'
            f'<td><span class="{cls}">{n} of {of}</span> {cosigners or "none"}</td>'
            f"<td>{held}</td>"
            f'<td class="mono">{escape(s.root_b64)}</td>'
            "</tr>"
        )
    return (
        "<section id='verification'><h2>Verification</h2>"
        "<p>Each ledger was verified whole (every entry's hash chain and Merkle leaf, every "
        "stored node, every signed checkpoint and cosignature, both exchange signatures of "
        "every entry) with the keys the trust bundle lists, never a key stored in the file. "
        "Witnesses: federation members whose "
        "cosignature on the newest checkpoint verifies with the key the bundle lists for them at "
        "the cosignature's time.</p>"
        "<table><thead><tr><th>ledger</th><th>status</th><th>entries</th><th>checkpoints</th>"
        "<th>newest checkpoint</th><th>cosigned by</th><th>witness-held checkpoints "
        "(the ledger extends each)</th><th>root (base64)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _witnesses(inputs: AuditInputs) -> str:
    if not inputs.witnesses:
        return ""
    parts = []
    for w in inputs.witnesses:
        sizes = "".join(
            f"<tr><td>{escape(o)}</td><td class='num'>{size}</td><td>{escape(_t(ms))}</td></tr>"
            for o, size, ms in w.sizes
        )
        ev = "".join(
            f"<li class='bad'>{escape(kind)} of {escape(o)} recorded {escape(_t(ms))}: "
            f"{escape(detail)}</li>"
            for o, kind, detail, ms in w.evidence
        )
        verdict = (
            f"<p class='bad'>{len(w.evidence)} piece(s) of fork or rollback evidence held</p><ul>{ev}</ul>"
            if w.evidence
            else "<p class='ok'>no fork or rollback evidence</p>"
        )
        parts.append(
            f"<h3>{escape(w.label)}</h3>{verdict}<table><thead><tr><th>log</th>"
            f"<th>cosigned size</th><th>updated</th></tr></thead><tbody>{sizes}</tbody></table>"
        )
    return f"<section id='witnesses'><h2>Witness stores</h2>{''.join(parts)}</section>"


def _charts(
    items: Sequence[model.Exchange], series: Sequence[model.BudgetSeries], left_out: str = ""
) -> str:
    made = [
        charts.stacked_bars(
            "by-day", "Exchanges per day (CST)", model.breakdown(items, "day", True), False
        ),
        charts.stacked_bars(
            "by-pair",
            "By jurisdiction pair (requester → holder)",
            model.breakdown(items, "pair"),
            True,
        ),
        charts.stacked_bars("by-dataset", "By dataset", model.breakdown(items, "dataset"), True),
        charts.stacked_bars("by-purpose", "By purpose", model.breakdown(items, "purpose"), True),
        charts.reasons_chart(model.refusals_by_reason(items)),
        charts.budget_chart(series),
    ]
    figs = "".join(
        f'<figure id="chart-{c.key}"><img class="chart" src="{c.data_uri}" alt="{escape(c.alt)}">'
        "</figure>"
        for c in made
    )
    return (
        f"<section id='charts'><h2>Transfers and refusals</h2>{left_out}"
        f"<div class='charts'>{figs}</div></section>"
    )


def _budget(series: Sequence[model.BudgetSeries], left_out: str = "") -> str:
    if not series:
        return (
            "<section id='budget'><h2>Privacy budget spent</h2>"
            f"<p>No statistics released.</p>{left_out}</section>"
        )
    rows = "".join(
        f"<tr><td>{escape(s.holder)}</td><td>{escape(s.dataset)}</td><td>{escape(s.requester)}</td>"
        f'<td class="num">{len(s.points)}</td><td class="num">{s.spent:g}</td>'
        f"<td>{escape(_t(s.points[-1][0]))}</td></tr>"
        for s in series
    )
    return (
        "<section id='budget'><h2>Privacy budget spent</h2>"
        "<p>Epsilon each holder charged, from its own ledger entries (releases and refusals "
        f"that were charged).</p>{left_out}<table><thead><tr><th>holder</th><th>dataset</th>"
        "<th>requester</th><th>charges</th><th>ε spent</th><th>last</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _reconciliation(inputs: AuditInputs) -> str:
    if not inputs.reconciliations:
        return (
            "<section id='reconciliation'><h2>Reconciliation</h2>"
            "<p>Only one ledger was given: give both sides' ledgers to pair each transfer's "
            "two entries.</p></section>"
        )
    parts = []
    unverified = set(inputs.unverified)
    for r in inputs.reconciliations:
        a, b = escape(r.jurisdiction_a), escape(r.jurisdiction_b)
        failed = sorted({r.jurisdiction_a, r.jurisdiction_b} & unverified)
        head = (
            f'<span class="ok">all {r.matched} paired transfers match</span>'
            if r.ok
            else f'<span class="bad">{len(r.missing_in_a) + len(r.missing_in_b)} missing, '
            f"{len(r.differing)} differing</span> ({r.matched} match)"
        )
        items = [
            f"<li>missing in {b}: request <span class='mono'>{escape(rid)}</span> (entry {i} in {a})</li>"
            for rid, i in r.missing_in_b
        ]
        items += [
            f"<li>missing in {a}: request <span class='mono'>{escape(rid)}</span> (entry {i} in {b})</li>"
            for rid, i in r.missing_in_a
        ]
        items += [
            f"<li>differs: request <span class='mono'>{escape(d.request_id)}</span> "
            f"({a} entry {d.index_a}, {b} entry {d.index_b}): {escape(', '.join(d.fields))}</li>"
            for d in r.differing
        ]
        caveat = (
            f"<p class='bad'>{escape(', '.join(failed))}'s ledger does not verify: its side of "
            "this comparison is unverified.</p>"
            if failed
            else ""
        )
        parts.append(f"<h3>{a} ↔ {b}: {head}</h3>{caveat}<ul>{''.join(items)}</ul>")
    return f"<section id='reconciliation'><h2>Reconciliation</h2>{''.join(parts)}</section>"


def _entries(inputs: AuditInputs, max_rows: int) -> str:
    entries = sorted(inputs.entries, key=lambda e: (e.event.timestamp_ms, e.ledger, e.index))
    cut = len(entries) - max_rows
    shown = entries[-max_rows:] if cut > 0 else entries
    unverified = set(inputs.unverified)
    rows = []
    for e in shown:
        ev = e.event
        d = dict(ev.details)
        extra = f"ε {d['epsilon']}" if "epsilon" in d and ev.kind.startswith("stats") else ""
        bad = e.ledger in unverified
        mark = "<br><span class='bad'>UNVERIFIED</span>" if bad else ""
        rows.append(
            f'<tr class="k-{escape(ev.kind)}{" unverified" if bad else ""}" '
            f'data-kind="{escape(ev.kind)}" data-ledger="{escape(e.ledger)}">'
            f"<td>{escape(e.ledger)}{mark}</td><td class='num'>{e.index}</td>"
            f"<td>{escape(model.cst_time(ev.timestamp_ms))}</td><td>{escape(ev.role)}</td>"
            f"<td class='kind'>{escape(ev.kind)}</td><td>{escape(ev.counterparty)}</td>"
            f"<td>{escape(ev.service_system)}</td><td>{escape(ev.dataset)}</td>"
            f"<td>{escape(ev.purpose)}</td><td>{escape(ev.decision)}</td>"
            f"<td class='num'>{ev.record_count}</td><td>{escape(extra)}</td>"
            f"<td>{escape(ev.reason)}</td><td>{escape(ev.agreement_id)}</td>"
            f"<td class='mono'>{escape(ev.request_id)}</td></tr>"
        )
    kinds = "".join(
        f'<option value="{escape(k)}">{escape(k)}</option>'
        for k in sorted({*model.OUTCOMES, *(e.event.kind for e in entries)})
    )
    ledgers = "".join(
        f'<option value="{escape(s.jurisdiction)}">{escape(s.jurisdiction)}</option>'
        for s in inputs.ledgers
    )
    note = (
        f"<p class='warn'>Showing the newest {max_rows:,} of {len(entries):,} entries; "
        "export a time range with `gateway ledger export` for the rest.</p>"
        if cut > 0
        else ""
    )
    if unverified:
        note += (
            f"<p class='bad'>Entries of {escape(', '.join(sorted(unverified)))} are marked "
            "UNVERIFIED: that ledger does not verify, so nothing it holds is proven.</p>"
        )
    return (
        "<section id='entries-section'><h2>Ledger entries (decoded)</h2>"
        f"{note}<div class='filters'><input id='q' type='search' "
        "placeholder='filter: request id, dataset, reason, service system…'>"
        f"<select id='kind'><option value=''>every outcome</option>{kinds}</select>"
        f"<select id='ledger'><option value=''>every ledger</option>{ledgers}</select>"
        f"<span><b id='shown'>{len(shown)}</b> of {len(shown)} shown</span></div>"
        "<div class='scroll'><table id='entries'><thead><tr><th>ledger</th><th>#</th>"
        "<th>time (CST)</th><th>role</th><th>outcome</th><th>counterparty</th>"
        "<th>service system</th><th>dataset</th><th>purpose</th><th>decision</th>"
        "<th>records</th><th>budget</th><th>reason</th><th>agreement</th><th>request id</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def render(
    inputs: AuditInputs,
    title: str = "Data-exchange audit report",
    limits: Limits = DEFAULT_LIMITS,
) -> str:
    """The whole report; its entry table shows the newest ``limits.max_report_rows``.
    Figures, charts and budget count only ``inputs.trusted_entries``."""
    trusted = inputs.trusted_entries
    items = model.exchanges(trusted)
    series = model.budget_series(trusted)
    s = model.summary(items)
    b = inputs.bundle
    all_ok = (
        all(x.ok for x in inputs.ledgers)
        and all(r.ok for r in inputs.reconciliations)
        and not any(w.evidence for w in inputs.witnesses)
    )
    verdict = (
        '<span class="ok">every ledger verifies and every paired transfer matches</span>'
        if all_ok
        else '<span class="bad">problems found: see Verification, Witness stores and Reconciliation</span>'
    )
    cards = "".join(
        f'<div class="card"><b>{v:,}</b>{escape(label)}</div>'
        for label, v in (
            ("exchanges", s.exchanges),
            ("records transferred", s.by_outcome["transfer"]),
            ("records refused", s.by_outcome["refusal"]),
            ("statistics released", s.by_outcome["stats_release"]),
            ("statistics refused", s.by_outcome["stats_refusal"]),
            ("records released", s.records_released),
        )
    )
    generated = inputs.generated_at.astimezone(CST).strftime("%Y-%m-%d %H:%M CST")
    dropped = len(inputs.entries) - len(trusted)
    left_out = (
        f"<p class='bad'>Not counted: the {dropped:,} entries of "
        f"{escape(', '.join(inputs.unverified))}, whose ledger does not verify, are left out "
        "of these figures, the charts and the budget (listed in the table, marked "
        "UNVERIFIED).</p>"
        if inputs.unverified
        else ""
    )
    return (
        "<!DOCTYPE html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1>"
        f"<p>{escape(b.federation)} · trust bundle version {b.version} "
        f"(sha256 {escape(b.digest[:16])}…) · generated {escape(generated)}</p>"
        f"<p>ledgers: {escape(', '.join(f'{x.jurisdiction} {x.name}' for x in inputs.ledgers))}"
        f" · period {escape(_t(s.first_ms))} – {escape(_t(s.last_ms))}</p></header><main>"
        f"<section id='summary'><h2>Summary</h2><p>{verdict}</p><div class='cards'>{cards}</div>"
        "<p>Each exchange is counted once (the holder's entry when both ledgers are given). "
        "Ledgers hold metadata and digests only: no names, ID numbers or record values.</p>"
        f"{left_out}</section>"
        f"{_verification(inputs.ledgers)}{_witnesses(inputs)}{_charts(items, series, left_out)}"
        f"{_budget(series, left_out)}"
        f"{_reconciliation(inputs)}{_entries(inputs, limits.max_report_rows)}</main>"
        f"<script>{_SCRIPT}</script></body></html>"
    )
