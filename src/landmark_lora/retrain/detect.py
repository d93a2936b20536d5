"""What a retrain has to do: photos waiting, photos no finished run has trained on, a run not promoted.

    from landmark_lora.retrain.detect import detect, untrained_photos, unpromoted_run
    found = detect(params)        # Detection(pending, untrained, unpromoted_run, has_data)
    print(found.describe())       # "3 photo(s) in the drop folder, 0 accepted but not trained yet"
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from landmark_lora.artifacts import EvalReport, Layout, TrainReport, data_version, read_plates, read_records
from landmark_lora.config import Params


@dataclass
class Detection:
    pending: int  # files in the drop folder (not judged yet: ingest may reject some)
    untrained: int  # accepted photos (data/raw) that no finished pipeline run has seen
    unpromoted_run: str | None  # MLflow run of a finished pipeline that promote never judged
    has_data: bool  # anything in data/raw or the drop folder

    def describe(self) -> str:
        text = f"{self.pending} photo(s) in the drop folder, {self.untrained} accepted but not trained yet"
        if self.unpromoted_run:
            text += f", MLflow run {self.unpromoted_run} waiting for promotion"
        return text


def read_json(path: Path) -> dict:
    """A report file's content, or {} when it is missing or unreadable (not written yet)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_report(cls: type[TrainReport] | type[EvalReport], path: Path) -> TrainReport | EvalReport:
    """A stage report through its typed reader; an empty one when it is missing or unreadable
    (a stage is writing it, or it broke: either way nothing finished)."""
    try:
        return cls.read(path)
    except (OSError, ValueError):
        return cls()


def trained_shas(params: Params) -> set[str]:
    """sha256 of every photo in the last *finished* pipeline run (evaluate ran on exactly this
    processed data), its plates included; empty when the last run stopped half-way, so its photos
    count as new."""
    layout = Layout.of(params)
    evaluation = read_report(EvalReport, layout.eval_json)
    if evaluation.data_version != data_version(layout):  # also when there is no eval.json yet
        return set()
    shas: set[str] = set()
    for split in ("train", "val"):
        try:
            shas.update(r.sha256 for r in read_records(layout, split))
        except (OSError, ValueError):  # a half-written split: nothing finished on it
            continue
    # background plates are never trained on: the run used them when it put them in its plate library
    with contextlib.suppress(OSError, ValueError):
        shas.update(p.sha256 for p in read_plates(layout))
    return shas


def untrained_photos(params: Params) -> int:
    from landmark_lora import rawtable

    raw = {row["sha256"] for row in rawtable.read_rows(params.paths.raw)}
    return len(raw - trained_shas(params))


def finished_run(params: Params) -> str | None:
    """The MLflow run id both reports name (train.json and eval.json agree), else None."""
    layout = Layout.of(params)
    run_id = read_report(TrainReport, layout.train_json).mlflow_run_id
    return run_id if run_id and read_report(EvalReport, layout.eval_json).mlflow_run_id == run_id else None


def unpromoted_run(params: Params, in_store: str | None = None) -> str | None:
    """The MLflow run of a finished pipeline (train + evaluate) that promote has not judged:
    e.g. promote failed last time, or someone ran plain `dvc repro`. ``in_store``: the run that
    holds the reports' run in the current store (ops/runcache.py), when the caller knows it."""
    layout = Layout.of(params)
    run_id = finished_run(params)
    if not run_id:
        return None
    promotion = read_json(layout.promotion_json)
    # judged: the last promote decided on it, or the operator rolled it back (that sticks)
    judged = {(promotion.get(k) or {}).get(key) for k in ("challenger", "rolled_back")
              for key in ("run_id", "reported_run_id")} - {None}
    run_id = in_store or run_id
    return None if run_id in judged else run_id


def judged_in_another_store(params: Params) -> str | None:
    """The finished run promote judged, when the current store has lost it (reset, or another
    server): it waits for promotion again (it is re-logged first). None if not, or unknown."""
    from landmark_lora.ops.runcache import lookup
    from landmark_lora.tracking import sqlite_run_alive

    reported = finished_run(params)
    if not Layout.of(params).promotion_json.exists() or not reported:
        return None
    if sqlite_run_alive(params.mlflow, reported):  # the run is in the store (lookup's "same"), MLflow not imported
        return unpromoted_run(params, reported)
    try:
        found = lookup(params)
    except Exception:  # the store cannot be asked now: the pipeline step will say why
        return None
    if found.how == "missing":
        return found.reported
    return unpromoted_run(params, found.run_id) if found.run_id else None


def detect(params: Params) -> Detection:
    from landmark_lora import rawtable
    from landmark_lora.ops.ingest import pending_photos

    pending = pending_photos(params.paths.incoming)
    raw_rows = rawtable.read_rows(params.paths.raw)
    waiting = unpromoted_run(params) or judged_in_another_store(params)
    return Detection(pending, untrained_photos(params), waiting, bool(pending or raw_rows))
