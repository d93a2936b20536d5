"""The run's report: markdown (the Prefect artifact `retrain-report`, reports/retrain.md), the JSON
outcome (reports/retrain.json) and the offline page (reports/retrain.html, report_html).

    from landmark_lora.retrain.report import publish, render_report
    public, markdown = publish(outcome, params)   # scrubbed of credentials; writes all three files
    print_outcome(state, "run")                   # exit code + summary of a finished flow run
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from landmark_lora import fsutil
from landmark_lora.artifacts import EvalReport, Layout
from landmark_lora.config import Params
from landmark_lora.logs import get_logger
from landmark_lora.retrain.detect import read_json, read_report
from landmark_lora.retrain.outcome import Outcome

_log = get_logger(__name__)


def mlflow_ui_command(params: Params) -> str:
    from landmark_lora.tracking import tracking_uri

    uri = tracking_uri(params.mlflow)
    if uri.startswith(("http://", "https://")):
        return f"open {uri.rstrip('/')} (MLflow server)"
    return f"mlflow ui --backend-store-uri {uri}"


def where_to_look(params: Params) -> list[tuple[str, str]]:
    layout = Layout.of(params)
    return [
        ("retrain report", f"{layout.retrain_html} (offline page); {layout.retrain_md} (also a Prefect artifact "
                           "'retrain-report')"),
        ("Prefect UI", "prefect server start  ->  http://127.0.0.1:4200 (flow runs, logs, artifacts)"),
        ("MLflow UI", mlflow_ui_command(params)),
        ("validation", f"{layout.validation_json} (Data Docs: {layout.validation_dir / 'index.html'})"),
        ("evaluation", f"{layout.eval_json}, {layout.eval_html}, {layout.samples}/"),
        ("promotion", f"{layout.promotion_json}"),
        ("rejected photos", f"{layout.rejections_csv}"),
    ]


def print_outcome(state, prog: str, hint: str = "") -> int:
    """Exit code and a short summary of a finished ``retrain`` flow run (its Prefect state)."""
    if state.is_failed():
        print(f"{prog}: FAILED: {state.message}", file=sys.stderr)
        if hint:
            print(f"  details: {hint}", file=sys.stderr)
        return 1
    return print_public(state.result(), prog)


def print_public(outcome: dict, prog: str) -> int:
    """The summary of a published outcome (``publish``'s): its reason and where to look. Exit code 0."""
    print(f"{prog}: {outcome['reason']}")
    for what, where in outcome["where_to_look"].items():
        print(f"  {what:<16}: {where}")
    return 0


_METRICS = ("eval_loss", "background_consistency", "shot_agreement", "landmark_accuracy", "angle_accuracy",
            "pose_accuracy", "output_change", "clip_score")


def _fmt(x: Any) -> str:
    if isinstance(x, (int, float)):
        return f"{x:.4f}"
    return "–" if x is None else str(x)


def metrics_table(params: Params) -> list[str]:
    """New adapter vs champion vs base, from reports/eval.json and reports/promotion.json."""
    layout = Layout.of(params)
    evaluation = read_report(EvalReport, layout.eval_json).to_dict()
    promotion = read_json(layout.promotion_json)
    if not any(v is not None for v in evaluation.values()):  # no eval.json (or an empty one) yet
        return []
    new = (promotion.get("challenger") or {}).get("metrics") or {}
    prev = promotion.get("previous_champion") or {}
    champ = prev.get("metrics") or {}
    base = evaluation.get("base") or {}
    new_v = (promotion.get("challenger") or {}).get("version", "new")
    champ_h = f"champion (v{prev['version']}{', rescored' if prev.get('rescored') else ''})" if prev else "champion"
    rows = [f"| metric | new adapter (v{new_v}) | {champ_h} | base model |", "|---|---|---|---|"]
    for key in _METRICS:
        value = new.get(key, evaluation.get(key))
        if value is None and key not in base:
            continue
        rows.append(f"| {key} | {_fmt(value)} | {_fmt(champ.get(key)) if prev else 'none yet'} | {_fmt(base.get(key))} |")
    return rows


def time_split(outcome: dict, params: Params) -> dict[str, float] | None:
    """Seconds of the run in all, in the loops and everything else (start-up, imports, DVC, ingest,
    loading and scoring, promote). The loops are what the trainer and the scorer timed themselves:
    the training loop (train.json ``loop_seconds``) and the generation loops (``seconds.generation_loops``
    of eval.json, and of the champion's rescoring in promotion.json when promote scored it again).
    Reports written before those fields: steps x seconds_per_step, and the whole evaluate stage."""
    timings = outcome.get("timings") or {}
    if not timings:
        return None
    layout = Layout.of(params)
    total = sum(v for k, v in timings.items() if k != "report")
    loops = 0.0
    if "dvc:train" in timings:
        train = read_json(layout.train_json)
        loops += float(train["loop_seconds"] if "loop_seconds" in train else
                       float(train.get("steps") or 0) * float(train.get("seconds_per_step") or 0))
    if "dvc:evaluate" in timings:
        seconds = read_json(layout.eval_json).get("seconds") or {}
        loops += float(seconds.get("generation_loops", timings["dvc:evaluate"]))
    champion = (read_json(layout.promotion_json).get("previous_champion") or {}) if outcome.get("decision") else {}
    if champion.get("rescored"):
        loops += float(((champion.get("metrics") or {}).get("seconds") or {}).get("generation_loops") or 0.0)
    return {"total_s": round(total, 2), "loops_s": round(loops, 2), "overhead_s": round(total - loops, 2)}


def timing_lines(outcome: dict, params: Params) -> list[str]:
    split = time_split(outcome, params)
    if split is None:
        return []
    rows = ["## Time per phase", "", "| phase | seconds |", "|---|---|"]
    rows += [f"| {phase} | {seconds:.1f} |" for phase, seconds in outcome["timings"].items()]
    rows += ["", f"In all {split['total_s']:.1f} s: {split['loops_s']:.1f} s in the training loop and the image "
                 f"generation loops, {split['overhead_s']:.1f} s of everything else (start-up, detect, ingest, DVC, "
                 "process start-ups and imports, loading and scoring, promote).", ""]
    return rows


def log_timings(params: Params, outcome: Outcome) -> None:
    """The phase times as metrics ``time/<phase>_s`` on the MLflow run this retrain trained."""
    if not outcome.mlflow_run_id or not outcome.timings:
        return
    from landmark_lora.registry import client

    split = time_split(outcome.to_dict(), params) or {}
    metrics = {f"time/{phase.replace(':', '.')}_s": seconds for phase, seconds in outcome.timings.items()}
    metrics.update({f"time/{k}": v for k, v in split.items()})
    try:
        mlflow_client = client(params)
        for key, value in metrics.items():
            mlflow_client.log_metric(outcome.mlflow_run_id, key, value)
    except Exception as err:  # noqa: BLE001 - timings are a nicety: never fail a finished run over them
        _log.warning("could not log phase times to MLflow run %s: %s", outcome.mlflow_run_id, err)


def render_report(outcome: dict, params: Params) -> str:
    """The markdown published as the Prefect artifact (and written to reports/retrain.md)."""
    status = outcome["status"]
    lines = [f"# retrain: {status}", "", f"**{outcome['reason']}**", ""]
    if outcome.get("flow_run_id"):
        lines += [f"Prefect flow run: `{outcome['flow_run_id']}`", ""]
    photos = outcome.get("photos") or {}
    ingest = photos.get("ingest") or {}
    lines += ["## Photos", "",
              f"- waiting in the drop folder: {photos.get('pending', 0)}",
              f"- accepted: {ingest.get('accepted', 0)}",
              f"- rejected: {len(ingest.get('rejected', []))}"]
    for reason, n in (ingest.get("reasons") or {}).items():
        lines.append(f"  - {n} x {reason}")
    if ingest.get("rejections_csv"):
        lines.append(f"  - details: `{ingest['rejections_csv']}`")
    if ingest.get("left"):
        lines.append(f"- still arriving, left for the next run: {ingest['left']}")
    lines += [f"- accepted but not trained before this run: {photos.get('untrained', 0)}", ""]
    if outcome.get("failure"):
        f = outcome["failure"]
        lines += ["## Failure", "", f"- stage: `{f['stage']}`", f"- cause: {f['cause']}",
                  f"- retried: {'yes (transient)' if f['transient'] else 'no (hard failure)'}",
                  f"- champion: version {outcome.get('champion') or 'none'} (untouched)",
                  f"- photos: safe in `{params.paths.raw}`; the next run trains on them", "",
                  "```", f.get("details", "")[-3000:], "```", ""]
    if outcome.get("stages_run") is not None:
        ran = outcome["stages_run"]
        lines += ["## Pipeline (dvc repro)", "",
                  f"- stages run: {', '.join(ran) if ran else 'none (up to date)'}",
                  f"- full output: `{outcome.get('repro_log', '')}`", ""]
    if outcome.get("decision"):
        lines += ["## Promotion", "", f"- decision: **{outcome['decision']}**",
                  f"- reason: {outcome.get('decision_reason', '')}",
                  f"- champion now: version {outcome.get('champion') or 'none'}", ""]
        table = metrics_table(params)
        if table:
            lines += ["## Metrics", "", *table, ""]
    if outcome.get("mlflow_run_id"):
        lines += ["## MLflow", "", f"- run: `{outcome['mlflow_run_id']}`",
                  f"- open: `{mlflow_ui_command(params)}`", ""]
    lines += timing_lines(outcome, params)
    lines += ["## Where to look", ""] + [f"- {k}: `{v}`" for k, v in where_to_look(params)]
    return "\n".join(lines) + "\n"


def write_report(outcome: dict, params: Params, markdown: str) -> Path:
    layout = Layout.of(params)
    layout.reports.mkdir(parents=True, exist_ok=True)
    fsutil.write_json_atomic(layout.retrain_json, outcome, indent=2, default=str)
    path = layout.retrain_md
    fsutil.write_text_atomic(path, markdown)
    from landmark_lora.retrain.report_html import write_html_report

    write_html_report(outcome, params)  # reports/retrain.html: the same run, offline, with pictures
    return path


def publish(outcome: Outcome | dict, params: Params) -> tuple[dict, str]:
    """The one door out for a run's report: scrub, render, write. Returns (outcome, markdown),
    both scrubbed of credentials (tracking.scrub_text, the scrubber of MLflow params), for the
    Prefect artifact and the flow's return value; writes reports/retrain.json, retrain.md and
    retrain.html (the markdown links to that page).

    Adds ``where_to_look`` and ``report`` (the markdown's path) to the returned outcome."""
    from landmark_lora.tracking import scrub_deep, scrub_text

    fields = outcome.to_dict() if isinstance(outcome, Outcome) else dict(outcome)
    public = scrub_deep({**fields, "where_to_look": dict(where_to_look(params)),
                         "report": str(Layout.of(params).retrain_md)})
    markdown = scrub_text(render_report(public, params))  # render adds URIs from params too
    page = Layout.of(params).retrain_html.resolve()
    markdown += f"\n**Full report, with pictures (one offline page):** [{page}]({page.as_uri()})\n"
    write_report(public, params, markdown)  # also writes reports/retrain.html
    return public, markdown
