"""reports/retrain.html: one self-contained page per retrain, readable offline and anywhere.

    landmark-lora report                          # rebuild it from reports/ (and reports/retrain.json)
    from landmark_lora.retrain.report_html import write_html_report, render_html
    path = write_html_report(outcome, params)     # what every retrain does after reports/retrain.md
    page = render_html(outcome, collect(Path("reports"), Path("data/quarantine"), Path("models")))  # report_data

The page has inline CSS, images as data: URIs and loss curves as inline SVG: no request to any
other host (the GX Data Docs load their styles from public CDNs; this page is the offline view).
Every value from a file is escaped with html.escape. A missing or unreadable file shows as such.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from landmark_lora import fsutil
from landmark_lora.artifacts import Layout
from landmark_lora.retrain.errors import say
from landmark_lora.retrain.report_data import THUMB_PX, collect

# What each metric means, in words; a metric not listed here is still shown.
METRIC_MEANINGS: dict[str, tuple[str, str]] = {
    "eval_loss": ("lower is better", "How badly the model predicts the noise on held-out photos. "
                  "The main score: promotion needs it to drop."),
    "background_consistency": ("higher is better", "How much the generated backgrounds look like real "
                               "photos of that landmark and angle."),
    "shot_agreement": ("higher is better", "How often the person in the picture is framed as asked "
                       "(close-up, half body, full body)."),
    "person_detected": ("higher is better", "Share of generated images in which a person is found."),
    "clip_score": ("higher is better", "How well the image matches its prompt text (CLIP); "
                   "empty when eval.clip_model is not set."),
    "output_change": ("informational", "How far the adapter's images move away from the base model's "
                      "for the same prompt (0 = identical)."),
    "landmark_accuracy": ("higher is better", "Share of generated images in which an offline classifier, "
                          "trained on the real train photos, sees the asked landmark."),
    "angle_accuracy": ("higher is better", "Share of generated images in which the classifier sees the "
                       "asked camera angle (eye level, from below, from above)."),
    "pose_accuracy": ("higher is better", "Share of generated images in which the classifier sees the "
                      "asked pose; empty when it cannot read poses on real photos."),
    "landmark_accuracy_calibration": ("higher is better", "How well that classifier reads the real val "
                                      "photos; below eval.min_calibration its metric is not reported."),
    "angle_accuracy_calibration": ("higher is better", "The angle classifier on the real val photos "
                                   "(same rule)."),
    "pose_accuracy_calibration": ("higher is better", "The pose classifier on the real val photos "
                                  "(same rule)."),
}
_NOT_METRICS = {"prompts", "data_version", "mlflow_run_id", "base", "eval_loss_by_timestep"}

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:24px;margin:8px 0}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #d5d9e0;padding-bottom:4px}
.banner{padding:14px 18px;border-radius:8px;font-size:17px;border:2px solid}
.ok{background:#e7f6ec;border-color:#3a9a5b}.bad{background:#fdeaea;border-color:#c53b3b}
.warn{background:#fff5e0;border-color:#d39b26}.info{background:#e8f0fb;border-color:#5a82c2}
table{border-collapse:collapse;background:#fff;margin:6px 0}th,td{border:1px solid #d5d9e0;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#eef0f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#22783f;font-weight:600}.fail{color:#b52a2a;font-weight:600}.muted{color:#687085}
code,pre{font:13px ui-monospace,Menlo,Consolas,monospace}pre{background:#fff;border:1px solid #d5d9e0;padding:8px;
overflow:auto;max-height:320px}figure{display:inline-block;margin:4px;vertical-align:top;max-width:180px}
figcaption{font-size:12px;word-break:break-all}img.grid{max-width:100%;border:1px solid #d5d9e0;background:#fff}
nav a{margin-right:12px}svg{background:#fff;border:1px solid #d5d9e0}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


# ---------------------------------------------------------------- rendering


def _fmt(x: Any) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return f"{x:.4f}" if isinstance(x, float) and math.isfinite(x) else str(x)
    return "–" if x is None else str(x)


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _banner(outcome: dict) -> tuple[str, str, str]:
    """(css class, headline, detail) for the top of the page."""
    status = outcome.get("status") or "unknown"
    reason = outcome.get("reason") or ""
    if status == "failed":
        f = outcome.get("failure") or {}
        return "bad", f"FAILED at stage '{f.get('stage', '?')}'", reason
    if status == "trained":
        if outcome.get("decision") == "promoted":
            return "ok", f"PROMOTED: version {outcome.get('challenger_version')} is the new champion", reason
        return "warn", f"REJECTED: version {outcome.get('challenger_version')} stays challenger; champion unchanged", reason
    if status in ("skipped", "busy", "up_to_date"):
        return "info", {"skipped": "SKIPPED: nothing trained", "busy": "SKIPPED: another retrain was running",
                        "up_to_date": "UP TO DATE: nothing retrained"}[status], reason
    return "info", f"status: {status}", reason


def _section_ingest(outcome: dict, data: dict) -> str:
    photos = outcome.get("photos") or {}
    ingest = photos.get("ingest") or {}
    out = ["<h2 id='ingest'>Photos in</h2>"]
    if not photos:
        out.append("<p class='muted'>No ingest summary for this run (the report was rebuilt without "
                   "reports/retrain.json, or the run stopped before ingest).</p>")
    else:
        rejected = ingest.get("rejected") or []
        out.append("<table><tr><th>waiting in the drop folder</th><th>accepted</th><th>rejected</th>"
                   "<th>accepted, not trained before this run</th><th>still arriving</th></tr>"
                   f"<tr><td class='num'>{esc(photos.get('pending', 0))}</td><td class='num'>{esc(ingest.get('accepted', 0))}</td>"
                   f"<td class='num'>{esc(len(rejected))}</td><td class='num'>{esc(photos.get('untrained', 0))}</td>"
                   f"<td class='num'>{esc(ingest.get('left', 0))}</td></tr></table>")
        reasons = ingest.get("reasons") or {}
        if reasons:
            out.append("<table id='reject-reasons'><tr><th>rejected because</th><th>photos</th></tr>"
                       + "".join(f"<tr><td>{esc(r)}</td><td class='num'>{esc(n)}</td></tr>" for r, n in reasons.items())
                       + "</table>")
        if ingest.get("rejections_csv"):
            out.append(f"<p>Every rejection, with where the file was moved: <code>{esc(ingest['rejections_csv'])}</code></p>")
    thumbs = data.get("thumbs") or []
    if thumbs:
        out.append(f"<h3>Rejected photos ({esc(data.get('thumbs_scope', 'this run'))})</h3><div>")
        for t in thumbs:
            img = (f"<img src='{t['uri']}' alt='{esc(t['file'])}' width='{THUMB_PX}'>" if t["uri"]
                   else "<div class='muted'>(not decodable: no preview)</div>" if t["stored"]
                   else "<div class='muted'>(no file: a metadata row)</div>")
            out.append(f"<figure>{img}<figcaption><b>{esc(t['file'])}</b><br>{esc(t['reason'])}</figcaption></figure>")
        out.append("</div>")
    return "\n".join(out)


def _section_validation(outcome: dict, data: dict) -> str:
    v = data.get("validation")
    out = ["<h2 id='contract'>Data contract</h2>"]
    if v is None:
        return out[0] + "<p class='muted'>reports/validation.json not found: validation has not run yet.</p>"
    if "_error" in v:
        return out[0] + f"<p class='fail'>validation report unreadable: {esc(v['_error'])}</p>"
    stats = v.get("statistics") or {}
    ok = bool(v.get("success"))
    out.append(f"<p><span class='{'pass' if ok else 'fail'}'>{'HELD' if ok else 'BROKEN'}</span>: "
               f"{esc(stats.get('passed', '?'))} of {esc(stats.get('checks', '?'))} checks passed for "
               f"{esc(v.get('photos', '?'))} photos in <code>{esc(v.get('raw_dir', ''))}</code> "
               f"<span class='muted'>(validation.json written {esc(data['when'].get('validation'))})</span></p>")
    suites = stats.get("suites") or {}
    if suites:
        out.append("<table><tr><th>suite</th><th>checks</th><th>passed</th><th>failed</th></tr>" + "".join(
            f"<tr><td>{esc(name)}</td><td class='num'>{esc(s.get('evaluated'))}</td><td class='num'>{esc(s.get('passed'))}</td>"
            f"<td class='num {'fail' if s.get('failed') else ''}'>{esc(s.get('failed'))}</td></tr>"
            for name, s in suites.items()) + "</table>")
    failed = v.get("failed") or []
    if failed:
        out.append("<table id='failed-checks'><tr><th>check</th><th>result</th><th>what is wrong</th><th>how to fix</th>"
                   "<th>offending rows</th></tr>")
        for f in failed:
            rows = f.get("rows") or []
            cells = "<br>".join(esc(", ".join(f"{k}={_fmt(val)}" for k, val in r.items())) for r in rows[:20])
            more = len(rows) - 20 + int(f.get("rows_not_shown") or 0)
            if more > 0:
                cells += f"<br><span class='muted'>… and {more} more (see validation.json)</span>"
            out.append(f"<tr><td><code>{esc(f.get('check'))}</code><br><span class='muted'>{esc(f.get('expectation'))}"
                       f"</span></td><td class='fail'>FAIL ({esc(f.get('unexpected_count'))})</td>"
                       f"<td>{esc(f.get('explanation'))}</td><td>{esc(f.get('fix'))}</td><td>{cells}</td></tr>")
        out.append("</table>")
    elif ok:
        out.append("<p class='pass'>Every expectation passed.</p>")
    if v.get("docs"):
        out.append(f"<p class='muted'>Great Expectations Data Docs (need internet for their styles): "
                   f"<code>{esc(v['docs'])}</code></p>")
    return "\n".join(out)


def _metric_rows(evaluation: dict, promotion: dict) -> tuple[list[str], dict[str, list[Any]]]:
    chall = (promotion.get("challenger") or {}).get("metrics") or {}
    prev = promotion.get("previous_champion") or {}
    champ = prev.get("metrics") or {}
    base = evaluation.get("base") or {}
    keys: list[str] = []
    for source in (evaluation, chall, champ, base):
        for k, val in source.items():
            if k not in _NOT_METRICS and k not in keys and (_num(val) or val is None):
                keys.append(k)
    known = [k for k in METRIC_MEANINGS if k in keys]
    ordered = known + [k for k in keys if k not in METRIC_MEANINGS]
    table = {k: [base.get(k), chall.get(k, evaluation.get(k)), champ.get(k) if prev else None] for k in ordered}
    return ordered, table


def _section_metrics(outcome: dict, data: dict) -> str:
    out = ["<h2 id='metrics'>Metrics: base, challenger, champion</h2>"]
    evaluation, promotion = data.get("eval") or {}, data.get("promotion") or {}
    for name in ("eval", "promotion"):
        if (data.get(name) or {}).get("_error"):
            out.append(f"<p class='fail'>{esc(data[name]['_error'])}</p>")
    if not evaluation or "_error" in evaluation:
        out.append("<p class='muted'>No evaluation yet (reports/eval.json is missing): nothing has been trained "
                   "and scored in this workspace.</p>")
        return "\n".join(out)
    if promotion.get("decision") == "rolled_back" or "_error" in promotion:
        promotion = {}
    run_id = outcome.get("mlflow_run_id")
    if outcome.get("status") != "trained" or (run_id and evaluation.get("mlflow_run_id") != run_id):
        out.append(f"<p class='banner warn'>These numbers are from the last finished evaluation (MLflow run "
                   f"<code>{esc(evaluation.get('mlflow_run_id'))}</code>, written {esc(data['when'].get('eval'))}), "
                   "not from this run, which scored nothing.</p>")
    chall_v = (promotion.get("challenger") or {}).get("version")
    prev = promotion.get("previous_champion") or {}
    champ_h = (f"champion v{esc(prev.get('version'))}{' (rescored on this data)' if prev.get('rescored') else ''}"
               if prev else "champion")
    keys, table = _metric_rows(evaluation, promotion)
    out.append(f"<table id='metric-table' data-metrics='{len(keys)}'><tr><th>metric</th><th>base model</th>"
               f"<th>challenger{' v' + esc(chall_v) if chall_v else ''} (this adapter)</th><th>{champ_h}</th>"
               "<th>better is</th><th>what it means</th></tr>")
    for k in keys:
        b, c, ch = table[k]
        direction, meaning = METRIC_MEANINGS.get(k, ("not described", "A newer metric without a description here yet."))
        champ_cell = _fmt(ch) if prev else "no champion before this run"
        out.append(f"<tr><td><code>{esc(k)}</code></td><td class='num'>{esc(_fmt(b))}</td><td class='num'>{esc(_fmt(c))}"
                   f"</td><td class='num'>{esc(champ_cell)}</td><td>{esc(direction)}</td><td>{esc(meaning)}</td></tr>")
    out.append("</table>")
    if evaluation.get("clip_score") is None and evaluation.get("clip_score_status"):
        out.append(f"<p class='muted'>clip_score: {esc(evaluation['clip_score_status'])}</p>")
    if evaluation.get("prompts") is not None:
        out.append(f"<p class='muted'>Scored on {esc(evaluation['prompts'])} prompt(s).</p>")
    return "\n".join(out)


def _section_grids(data: dict) -> str:
    out = ["<h2 id='samples'>Before / after: real photo, base model, adapter</h2>"]
    grids = data.get("grids") or []
    if not grids:
        return out[0] + "<p class='muted'>No sample grids (reports/samples/*.png): evaluate has not run.</p>"
    for name, uri in grids:
        out.append(f"<h3>{esc(name)}</h3>")
        out.append(f"<img class='grid' src='{uri}' alt='samples for {esc(name)}'>" if uri
                   else f"<p class='fail'>reports/samples/{esc(name)}.png does not decode</p>")
    return "\n".join(out)


def svg_curve(series: list[tuple[str, str, list[tuple[float, float]]]], width: int = 640, height: int = 240) -> str:
    """An inline SVG line chart: ``series`` = [(label, colour, [(x, y), ...]), ...]."""
    pts = [p for _, _, s in series for p in s]
    if not pts:
        return ""
    left, right, top, bottom = 60, 12, 12, 32
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + abs(y0) * 0.1 + 1e-6)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f"<svg width='{width}' height='{height}' role='img'>",
             f"<line x1='{left}' y1='{height - bottom}' x2='{width - right}' y2='{height - bottom}' stroke='#888'/>",
             f"<line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' stroke='#888'/>",
             f"<text x='{left - 4}' y='{top + 10}' font-size='11' text-anchor='end'>{y1:.4g}</text>",
             f"<text x='{left - 4}' y='{height - bottom}' font-size='11' text-anchor='end'>{y0:.4g}</text>",
             f"<text x='{left}' y='{height - 12}' font-size='11'>step {x0:g}</text>",
             f"<text x='{width - right}' y='{height - 12}' font-size='11' text-anchor='end'>step {x1:g}</text>"]
    for i, (label, colour, s) in enumerate(series):
        if not s:
            continue
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        parts.append(f"<polyline fill='none' stroke='{esc(colour)}' stroke-width='2' points='{coords}'/>")
        parts += [f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='2.5' fill='{esc(colour)}'/>" for x, y in s[:200]]
        parts.append(f"<text x='{width - right - 4}' y='{top + 12 + 14 * i}' font-size='12' text-anchor='end' "
                     f"fill='{esc(colour)}'>{esc(label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _section_curves(data: dict) -> str:
    out = ["<h2 id='curves'>Training curves</h2>"]
    train, ev = data.get("train_curve"), data.get("eval_curve")
    for c in (train, ev):
        if isinstance(c, str):
            out.append(f"<p class='fail'>unreadable: {esc(c)}</p>")
    train = train if isinstance(train, list) else []
    ev = ev if isinstance(ev, list) else []
    if not train and not ev:
        return "\n".join(out + ["<p class='muted'>No curves (reports/plots/*.csv): training has not run.</p>"])
    out.append(svg_curve([("train loss", "#2f6fd0", train), ("eval loss", "#d0602f", ev)]))
    out.append(f"<p class='muted'>{len(train)} train point(s), {len(ev)} eval point(s), from reports/plots/.</p>")
    return "\n".join(out)


def _section_decision(outcome: dict, data: dict) -> str:
    out = ["<h2 id='decision'>Decision</h2>"]
    f = outcome.get("failure")
    if f:
        out.append(f"<table><tr><th>failed stage</th><td><code>{esc(f.get('stage'))}</code></td></tr>"
                   f"<tr><th>cause</th><td>{esc(f.get('cause'))}</td></tr>"
                   f"<tr><th>retried</th><td>{'yes (transient)' if f.get('transient') else 'no (hard failure)'}</td></tr>"
                   f"<tr><th>champion</th><td>version {esc(outcome.get('champion') or 'none')} (untouched)</td></tr></table>")
        if f.get("details"):
            out.append(f"<pre>{esc(str(f['details'])[-3000:])}</pre>")
    promotion = data.get("promotion") or {}
    if outcome.get("decision"):
        cls = "pass" if outcome["decision"] == "promoted" else "fail"
        out.append(f"<p>Decision: <span class='{cls}'>{esc(outcome['decision'])}</span> — "
                   f"{esc(outcome.get('decision_reason'))}</p>")
        checks = promotion.get("checks") or []
        if checks:
            out.append("<ul>" + "".join(f"<li>{esc(c)}</li>" for c in checks) + "</ul>")
        if not promotion.get("previous_champion") and outcome["decision"] == "promoted":
            out.append("<p>First run: there was no champion, so the challenger became champion after the sanity gates.</p>")
        out.append(f"<p>Champion now: version {esc(outcome.get('champion') or 'none')}</p>")
    elif not f:
        out.append(f"<p>No promotion in this run ({esc(outcome.get('status', 'unknown'))}). "
                   f"Champion: version {esc(outcome.get('champion') or 'none')}.</p>")
    return "\n".join(out)


def _section_lineage(outcome: dict, data: dict) -> str:
    evaluation, promotion = data.get("eval") or {}, data.get("promotion") or {}
    meta = data.get("adapter_meta") or {}
    chall = promotion.get("challenger") or {}
    rows = [
        ("Prefect flow run", outcome.get("flow_run_id")),
        ("MLflow run", outcome.get("mlflow_run_id") or (data.get("train") or {}).get("mlflow_run_id")),
        ("registered model", promotion.get("registered_model")),
        ("model version (challenger)", outcome.get("challenger_version") or chall.get("version")),
        ("champion", outcome.get("champion") or promotion.get("champion")),
        ("git sha (adapter)", meta.get("git_sha")),
        ("data version", evaluation.get("data_version") or meta.get("data_version")),
        ("base model", meta.get("base_model")),
        ("workdir", outcome.get("workdir")),
    ]
    return ("<h2 id='lineage'>Lineage</h2><table id='lineage-table'>"
            + "".join(f"<tr><th>{esc(k)}</th><td><code>{esc(v if v not in (None, '') else '–')}</code></td></tr>"
                      for k, v in rows) + "</table>")


# Counts the images that decoded; the browser test reads it from the DOM (no network, no script host).
_SCRIPT = ("<script>addEventListener('load',function(){var i=[].slice.call(document.images);"
           "document.body.setAttribute('data-images',i.length);document.body.setAttribute('data-images-loaded',"
           "i.filter(function(x){return x.complete&&x.naturalWidth>0}).length);"
           "var t=document.getElementById('metric-table');document.body.setAttribute('data-metric-table-visible',"
           "t&&t.offsetHeight>0?'yes':'no')});</script>")


def render_html(outcome: dict, data: dict) -> str:
    """The page, from a flow outcome (reports/retrain.json) and ``collect(...)``'s data."""
    cls, headline, detail = _banner(outcome)
    nav = "".join(f"<a href='#{a}'>{t}</a>" for a, t in (("ingest", "photos"), ("contract", "data contract"),
                  ("metrics", "metrics"), ("samples", "samples"), ("curves", "curves"), ("decision", "decision"),
                  ("lineage", "lineage")))
    body = [
        f"<h1>landmark-lora retrain</h1><p class='muted'>page written {esc(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
        f"<div class='banner {cls}' id='outcome' data-status='{esc(outcome.get('status', 'unknown'))}'>"
        f"<b>{esc(headline)}</b><br>{esc(detail)}</div>",
        f"<nav>{nav}</nav>",
        _section_decision(outcome, data),
        _section_ingest(outcome, data),
        _section_validation(outcome, data),
        _section_metrics(outcome, data),
        _section_grids(data),
        _section_curves(data),
        _section_lineage(outcome, data),
    ]
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>retrain: {esc(outcome.get('status', 'unknown'))}</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(body)}</main>{_SCRIPT}</body></html>\n")


def write_html_report(outcome: dict, params, log: Callable[[str], None] = say, log_mlflow: bool = True) -> Path:
    """Write reports/retrain.html; log it to the run's MLflow artifacts when there is a run (best effort)."""
    layout = Layout.of(params)
    ingest = (outcome.get("photos") or {}).get("ingest")
    rejected = [tuple(x) for x in ingest.get("rejected") or []] if ingest else None
    data = collect(layout.reports, layout.quarantine, layout.models, rejected)
    layout.reports.mkdir(parents=True, exist_ok=True)
    path = layout.retrain_html
    fsutil.write_text_atomic(path, render_html(outcome, data))
    run_id = outcome.get("mlflow_run_id")
    if run_id and log_mlflow:
        try:
            import mlflow

            from landmark_lora.tracking import configure

            configure(params.mlflow)
            mlflow.MlflowClient().log_artifact(run_id, str(path), artifact_path="report")
        except Exception as err:  # the page on disk is what matters; MLflow may be down
            log(f"report: could not log {path} to MLflow run {run_id}: {err}")
    return path
