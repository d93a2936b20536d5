"""Evaluate: score the adapter against the base on held-out data, with the same seeds.

    landmark-lora evaluate            # the DVC stage `evaluate`

    from landmark_lora.stages.evaluate import run
    report = run(params)              # artifacts.EvalReport of reports/eval.json
    report.metric("eval_loss"), report.mlflow_run_id

Every metric comes from ``landmark_lora.scoring`` (``score_adapter``; the list of metrics is in
its docstring): the eval loss on the val latents, images from a fixed prompt set by base and
adapter with the same seeds, background consistency, shot agreement, the classifier accuracies
with their calibration, and clip_score when a local CLIP is configured.

Writes ``reports/eval.json`` (with ``data_version``, ``mlflow_run_id`` and
``eval_fingerprint``: ``scoring.eval_fingerprint``, also a tag on the run), side-by-side grids
``reports/samples/<landmark>.png`` (real | base | adapter) and, with ``eval.composite``,
``reports/samples/<landmark>_composite.png`` (plate | text-to-image | composite, same prompt and
seed), and ``reports/eval.html``, and logs all of it into the training run in MLflow (composite
metrics as ``eval/composite_*``).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from PIL import Image, ImageDraw

from landmark_lora import fsutil
from landmark_lora.artifacts import MLFLOW_EVAL_JSON, EvalReport, Layout, TrainReport, data_version
from landmark_lora.config import Params
from landmark_lora.env import pin_threads
from landmark_lora.logs import get_logger
from landmark_lora.scoring import (
    classifier_report,
    eval_fingerprint,
    held_out_loss,
    image_metrics,
    prompt_set,
    score_adapter,
)

# the scoring functions stay importable from here for the callers that knew them here
__all__ = ["classifier_report", "evaluate", "held_out_loss", "image_metrics", "prompt_set", "run", "score_adapter",
           "write_grids", "write_html"]

log = get_logger(__name__)


# ---------------------------------------------------------------- reports


def _grid(rows: list[tuple[Image.Image | None, Image.Image, Image.Image, str]], cell: int = 128,
          titles: tuple[str, str, str] = ("real (val)", "base", "adapter")) -> Image.Image:
    pad, label_h = 4, 14
    grid = Image.new("RGB", (3 * (cell + pad) + pad, len(rows) * (cell + label_h + pad) + pad + label_h), "white")
    draw = ImageDraw.Draw(grid)
    for c, title in enumerate(titles):
        draw.text((pad + c * (cell + pad), 2), title, fill="black")
    for r, (real, base, ada, label) in enumerate(rows):
        y = label_h + pad + r * (cell + label_h + pad)
        for c, im in enumerate((real, base, ada)):
            if im is not None:  # scale to the cell, up or down: tiny-model samples are 64 px
                scale = cell / max(im.size)
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                               Image.Resampling.BICUBIC)
                grid.paste(im, (pad + c * (cell + pad), y))
        draw.text((pad, y + cell), label[:60], fill="black")
    return grid


def _source_photo(folder: Path | None, name: str | None) -> Image.Image | None:
    if not folder or not name or not (Path(folder) / name).is_file():
        return None
    with Image.open(Path(folder) / name) as im:
        return im.convert("RGB")


def write_grids(out_dir: Path, sets: dict) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.png"):
        old.unlink()
    per_landmark: dict[str, list] = {}
    for p, b, a in zip(sets["prompts"], sets["base"], sets["adapter"], strict=False):
        # the val photo the prompt was made from; else any real photo of that landmark and angle
        real = _source_photo(sets.get("source_dir"), p.get("source"))
        real = real or (sets["refs"].get((p["landmark"], p["angle"])) or [None])[0]
        per_landmark.setdefault(p["landmark"], []).append((real, b, a, f"{p['shot']}, {p['angle']}, {p['pose']}"))
    paths = {}
    for landmark, rows in sorted(per_landmark.items()):
        paths[landmark] = out_dir / f"{landmark}.png"
        _grid(rows).save(paths[landmark])
    composites: dict[str, list] = {}
    for row in sets.get("composite") or []:  # plate | text-to-image | composite, same prompt and seed
        p, snap = row["prompt"], row["snap"]
        composites.setdefault(p["landmark"], []).append(
            (snap.plate, row["t2i"], snap.image, f"{p['shot']}, {p['angle']}, {p['pose']}"))
    for landmark, rows in sorted(composites.items()):
        paths[f"{landmark}_composite"] = out_dir / f"{landmark}_composite.png"
        _grid(rows, titles=("plate", "text-to-image", "composite")).save(paths[f"{landmark}_composite"])
    return paths


COMPARED = ("eval_loss", "background_consistency", "shot_agreement", "landmark_accuracy", "angle_accuracy",
            "pose_accuracy")


def _cell(x) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else "&ndash;"


def _composite_html(section: dict | None) -> str:
    if not section:
        return ""
    if section.get("status") != "computed":
        return f"<p>composite: {html.escape(str(section.get('status')))}</p>"
    keys = [k for k in section["composite"] if k in section["t2i"] or k == "seam_score"]
    rows = "".join(f"<tr><td>{k}</td><td>{_cell(section['t2i'].get(k))}</td><td>{_cell(section['composite'].get(k))}"
                   "</td></tr>" for k in keys)
    return ("<h2>composite vs text-to-image (same prompts and seeds)</h2><table border=1 cellpadding=4>"
            f"<tr><th>metric</th><th>text-to-image</th><th>composite</th></tr>{rows}</table>"
            f"<p>seam score of the real val photos at the same regions: {_cell(section.get('real_seam_score'))}</p>")


def write_html(path: Path, metrics: dict, grids: dict[str, Path]) -> None:
    rows = "".join(
        f"<tr><td>{k}</td><td>{_cell(metrics['base'].get(k))}</td><td>{_cell(metrics.get(k))}</td>"
        f"<td>{_cell(metrics.get(k + '_calibration'))}</td>"
        f"<td>{html.escape(metrics.get(k + '_status', ''))}</td></tr>"
        for k in COMPARED if k in metrics
    )
    # the grids' paths relative to the page, so the HTML works wherever reports/ is copied
    imgs = "".join(f"<h3>{html.escape(lm)}</h3><img src='{Path(os.path.relpath(p, Path(path).parent)).as_posix()}'>"
                   for lm, p in grids.items())
    fsutil.write_text_atomic(
        path,
        "<!doctype html><meta charset='utf-8'><title>landmark-lora eval</title>"
        "<h1>landmark-lora: base vs adapter</h1>"
        "<table border=1 cellpadding=4><tr><th>metric</th><th>base</th><th>adapter</th>"
        f"<th>calibration (real val photos)</th><th>status</th></tr>{rows}</table>"
        f"{_composite_html(metrics.get('composite'))}"
        f"<p>clip_score: {html.escape(str(metrics['clip_score'] if metrics['clip_score'] is not None else metrics['clip_score_status']))}"
        f" &middot; output change: {metrics['output_change']:.4f} &middot; prompts: {metrics['prompts']}</p>{imgs}",
    )


def evaluate(params: Params) -> dict:
    """Score ``models/adapter`` against the base; write eval.json, the grids and eval.html; log to MLflow."""
    pin_threads(params.eval.threads)
    layout = Layout.of(params)
    if not layout.adapter_weights.exists():
        raise FileNotFoundError(f"{layout.adapter_weights}: no adapter; run `dvc repro train` first")
    metrics, sets = score_adapter(params, layout.adapter_dir)
    grids = write_grids(layout.samples, sets)
    metrics["data_version"] = data_version(layout)
    metrics["eval_fingerprint"] = eval_fingerprint(params, metrics["data_version"])
    run_id = TrainReport.read(layout.train_json).mlflow_run_id
    metrics["mlflow_run_id"] = run_id
    EvalReport.from_dict(metrics).write(layout.eval_json)
    write_html(layout.eval_html, metrics, grids)
    if run_id:
        _log_to_mlflow(params, run_id, metrics, grids, layout.eval_html)
    else:
        log.warning("evaluate: %s has no MLflow run id; the metrics are not logged to MLflow", layout.train_json)
    return metrics


def run(params: Params) -> EvalReport:
    """The DVC stage: ``evaluate(params)``, returned as the ``reports/eval.json`` it wrote."""
    return EvalReport.from_dict(evaluate(params))


def _log_to_mlflow(params: Params, run_id: str, metrics: dict, grids: dict[str, Path], report: Path) -> None:
    import mlflow

    from landmark_lora.tracking import configure, flat_eval_metrics

    configure(params.mlflow)
    client = mlflow.MlflowClient()
    flat = flat_eval_metrics(metrics)  # base_<metric> beside adapter_<metric>, composite_<metric>
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        mlflow.log_metrics(flat)
        mlflow.set_tags({f"eval.{k}": v[:5000] for k, v in metrics.items() if k.endswith("_status")})
        for landmark, path in grids.items():
            with Image.open(path) as im:
                mlflow.log_image(im.copy(), artifact_file=f"eval/samples/{landmark}.png")
        mlflow.log_artifact(str(report), artifact_path="eval")
        mlflow.log_dict(metrics, MLFLOW_EVAL_JSON)
    client.set_tag(run_id, "data_version", metrics["data_version"])
    client.set_tag(run_id, "eval_fingerprint", metrics["eval_fingerprint"])
