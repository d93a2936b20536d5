"""DVC's run-cache and MLflow agree: the run reports/train.json names exists in the current store.

    from landmark_lora.ops.runcache import reconcile
    found = reconcile(params)     # Resolved(reported="9f..", run_id="9f.." or a re-logged run, how="same")

DVC restores `train` and `evaluate` from its run-cache ("Stage 'train' is cached - skipping run,
checking out outputs") when their inputs and params match a run it has seen, on this machine or
pulled from a shared remote. Their reports then name the MLflow run that made them, which the
current store may not hold (the store was reset, a teammate tracks to another server). Before
promoting, ``landmark-lora promote`` and the flow call :func:`reconcile`:

- the run is in the store: reused, and said so;
- it is not, but was restored before: that run is reused (found by its ``restored_from_run_id`` tag);
- it is not: it is **re-logged** into the current store from the cached outputs (params from
  params.yaml, which DVC matched; step metrics from reports/plots, totals from reports/train.json,
  eval metrics from reports/eval.json, the adapter, grids and eval page as artifacts, the usual tags)
  and tagged ``restored_from_dvc_cache=true`` and ``restored_from_run_id=<the reports' id>``.

DVC's outputs are never rewritten: they stay byte-identical to dvc.lock and the run-cache (a
rewritten train.json would make every later `dvc repro` check the cached one out again). The
store keeps the mapping, in the re-logged run's tag.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from landmark_lora import registry
from landmark_lora.artifacts import EvalReport, Layout, TrainReport
from landmark_lora.config import Params
from landmark_lora.logs import get_logger

RESTORED_TAG = "restored_from_dvc_cache"
SOURCE_TAG = "restored_from_run_id"
_log = get_logger(__name__)


class RunCacheError(RuntimeError):
    """The cached outputs cannot be matched with the tracking store; the message says what to do."""


@dataclass(frozen=True)
class Resolved:
    """The run reports/train.json names (``reported``) and the run holding it in the current store."""

    reported: str | None
    run_id: str | None  # None: no run in this store yet (``how`` "missing") or no run id at all ("none")
    how: str  # "same", "mapped" (restored earlier), "restored" (just now), "missing", "none"


def lookup(params: Params, client=None) -> Resolved:
    """Where the reports' run lives in the current store; reads only."""
    client = client or registry.client(params)
    reported = TrainReport.read(Layout.of(params).train_json).mlflow_run_id
    if not reported:
        return Resolved(None, None, "none")
    if run_exists(client, reported):
        return Resolved(reported, reported, "same")
    mapped = restored_run(params, client, reported)
    return Resolved(reported, mapped, "mapped") if mapped else Resolved(reported, None, "missing")


def run_exists(client, run_id: str) -> bool:
    """True when ``run_id`` is a live run of this store (a deleted or unknown run is not)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return run.info.lifecycle_stage != "deleted"


def restored_run(params: Params, client, reported: str) -> str | None:
    """The run an earlier reconcile re-logged ``reported`` into, newest first; None if none."""
    exp = client.get_experiment_by_name(params.mlflow.experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], f"tags.{SOURCE_TAG} = '{reported}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def reconcile(params: Params, log: Callable[[str], None] = _log.info, client=None) -> Resolved:
    """Make the run the reports name exist in the current store (module docstring); say what was done."""
    layout = Layout.of(params)
    client = client or registry.client(params)
    found = lookup(params, client)
    if found.how == "none":
        return found
    check_base(params)
    if found.how == "same":
        log(f"runcache: {layout.train_json} names MLflow run {found.reported}, which is in the store: reused")
        return found
    if found.how == "mapped":
        log(f"runcache: MLflow run {found.reported} ({layout.train_json}) is not in this store; it was restored "
            f"from DVC's cache earlier as run {found.run_id}: reused")
        return found
    assert found.reported is not None
    new = relog(params, client, found.reported)
    log(f"runcache: MLflow run {found.reported} named by {layout.train_json} is not in this store (reset, or "
        f"the outputs came from DVC's cache); re-logged from the cached outputs as run {new} "
        f"(tag {RESTORED_TAG}=true)")
    return Resolved(found.reported, new, "restored")


def check_base(params: Params) -> None:
    """The base the cached adapter was trained on must be here and be ``model.base``."""
    from landmark_lora.diffusion.base import BaseModelError
    from landmark_lora.diffusion.components import resolve_base
    from landmark_lora.diffusion.lora_export import read_adapter_metadata

    layout = Layout.of(params)
    if not layout.adapter_weights.exists():
        raise RunCacheError(f"{layout.adapter_weights}: missing, though {layout.train_json} names a run; "
                            "run `dvc checkout train` (or `dvc repro`) to restore the adapter")
    named = read_adapter_metadata(layout.adapter_weights).get("base_model", params.model.base)
    if named != params.model.base:
        raise RunCacheError(f"{layout.adapter_dir} was trained on base model {named!r} but model.base in params.yaml "
                            f"is {params.model.base!r}; run `dvc repro` to train on the configured base")
    try:
        resolve_base(params.model)
    except BaseModelError as err:
        raise RunCacheError(f"{layout.adapter_dir} (from DVC's cache) was trained on base model {named!r}, which is "
                            f"missing here: {err}") from err


def relog(params: Params, client, reported: str) -> str:
    """A new FINISHED run in the current store holding the cached outputs of run ``reported``."""
    from landmark_lora.tracking import configure, run_tags

    layout = Layout.of(params)
    evaluation = EvalReport.read(layout.eval_json)
    scored = layout.eval_json.exists() and evaluation.scores_run(reported)
    tags = run_tags(params, {"stage": "train", RESTORED_TAG: "true", SOURCE_TAG: reported})
    if scored:
        tags.update({f"eval.{k}": str(v)[:5000] for k, v in evaluation.extra.items() if k.endswith("_status")})
        tags["data_version"] = str(evaluation.data_version or tags.get("data_version", ""))
    run = client.create_run(configure(params.mlflow), tags=tags, run_name=f"train-restored-{reported[:8]}")
    run_id = run.info.run_id
    try:
        _log_content(params, client, run_id, evaluation if scored else None)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _log_content(params: Params, client, run_id: str, evaluation: EvalReport | None) -> None:
    from mlflow.entities import Metric, Param

    from landmark_lora.tracking import flat_eval_metrics, run_params

    layout = Layout.of(params)
    now = int(time.time() * 1000)
    for chunk in _chunks([Param(k, v) for k, v in run_params(params).items()], 100):
        client.log_batch(run_id, params=chunk)
    metrics = [Metric(k, v, now, step) for k, v, step in _curve_metrics(layout.plots)]
    train = TrainReport.read(layout.train_json).to_dict()
    totals = {k: train.get(k) for k in ("final_loss", "images_per_sec", "seconds_per_step", "world_size",
                                          "global_batch")}
    if evaluation is not None:
        totals.update(flat_eval_metrics(evaluation.to_dict()))
    metrics += [Metric(k, float(v), now, 0) for k, v in totals.items() if _number(v)]
    for chunk in _chunks(metrics, 900):
        client.log_batch(run_id, metrics=chunk)
    client.log_artifacts(run_id, str(layout.adapter_dir), artifact_path="adapter")
    if evaluation is not None:
        for grid in sorted(layout.samples.glob("*.png")) if layout.samples.is_dir() else []:
            client.log_artifact(run_id, str(grid), artifact_path="eval/samples")
        for page in (layout.eval_html, layout.eval_json):
            if page.exists():
                client.log_artifact(run_id, str(page), artifact_path="eval")


def _curve_metrics(plots: Path) -> Iterable[tuple[str, float, int]]:
    """(name, value, step) from the train stage's DVC plots: loss and lr per step, eval_loss."""
    for name, columns in (("train_loss.csv", ("loss", "lr")), ("eval_loss.csv", ("eval_loss",))):
        path = plots / name
        if not path.exists():
            continue
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                for col in columns:
                    try:
                        value, step = float(row[col]), int(float(row["step"]))
                    except (KeyError, TypeError, ValueError):
                        continue
                    if math.isfinite(value):
                        yield col, value, step


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]

