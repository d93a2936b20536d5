"""The `retrain` flow: new photos in, a judged adapter out. Prefect schedules, retries and
reports; the DVC pipeline (dvc.yaml) stays the only DAG and runs as ONE task.

    python flows/retrain.py                        # once; an ephemeral Prefect server when PREFECT_API_URL is unset
    python flows/retrain.py --force                # run the pipeline even with too few new photos
    python flows/retrain.py --min-new-photos 20 --workdir /srv/landmark-lora --if-busy skip
    landmark-lora run                              # the same flow, once (what `make run` does)
    landmark-lora serve                            # nightly schedule + photo trigger from prefect.yaml, no worker
    prefect deploy --all && prefect worker start --pool landmark-lora   # deployment `nightly-retrain`

Steps, under a file lock (.cache/retrain.lock; a second trigger waits or skips and says so):
1. detect photos in data/incoming/ (and accepted photos no finished run has trained on);
2. ingest them (data/raw or data/quarantine, nothing lost);
3. with fewer than ``min_new_photos`` and no ``force``: stop here, say why, train nothing;
4. `dvc repro` (one task; transient failures retried with backoff, a hard one names its stage);
5. promote (all or nothing: champion untouched and no half-registered version on failure);
   before registering, promote pushes the data to the DVC remote and stores the version's
   lineage bundle (ops/lineage.py); with ``commit_lineage`` dvc.lock and data/raw.dvc are then
   committed back to git (retrain/gitsync.py);
6. publish a markdown artifact `retrain-report` (also reports/retrain.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging.handlers import APILogHandler
from prefect.runtime import deployment, flow_run
from prefect.tasks import exponential_backoff

from landmark_lora.artifacts import Layout
from landmark_lora.config import load_params
from landmark_lora.env import process_age_s
from landmark_lora.locking import LockBusy, lock_path, pipeline_lock
from landmark_lora.logs import ROOT
from landmark_lora.ops.runcache import reconcile
from landmark_lora.registry import champion_version
from landmark_lora.retrain import gitsync
from landmark_lora.retrain.cleanup import close_orphans, promote_all_or_nothing
from landmark_lora.retrain.detect import Detection, detect, unpromoted_run, untrained_photos
from landmark_lora.retrain.dvc import ReproResult, run_dvc_repro
from landmark_lora.retrain.errors import StageFailed, is_transient_error, say
from landmark_lora.retrain.intake import IngestSummary, ingest_photos, render_sample_if_empty
from landmark_lora.retrain.outcome import Failure, Outcome, Photos, skip_reason
from landmark_lora.retrain.report import log_timings, publish
from landmark_lora.tracking import scrub_text


class RetrainFailed(RuntimeError):
    """The flow's own failure: names the stage and the cause."""


@contextmanager
def working_directory(path: str | Path) -> Iterator[Path]:
    """chdir for the block: params.yaml paths, dvc.lock and the sqlite MLflow store are relative."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield Path.cwd()
    finally:
        os.chdir(old)


class RunLogHandler(APILogHandler):
    """Prefect's API log handler, for the package's loggers: a record logged while a flow or task
    run is active goes to that run's logs (the Prefect UI); any other is dropped quietly."""

    def emit(self, record: logging.LogRecord) -> None:
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
            super().emit(record)


def capture_package_logs() -> None:
    """Send the ``landmark_lora`` loggers' lines to the Prefect run logs, as ``print`` under
    log_prints used to. Idempotent; a PREFECT_LOGGING_EXTRA_LOGGERS=landmark_lora set-up (an
    APILogHandler already there) is left as it is. Without the CLI's ``logs.setup`` (a worker
    runs the flow) the package logs at INFO, so the report lines reach the run's logs."""
    logger = logging.getLogger(ROOT)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        logger.addHandler(RunLogHandler())


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect retry_condition_fn: retry network and lock trouble, never a hard failure."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # the result itself could not be read: judge that error
        exc = err
    return isinstance(exc, BaseException) and is_transient_error(exc)


@task(name="detect-new-photos", cache_policy=NO_CACHE)
def detect_photos(params_path: str) -> Detection:
    found = detect(load_params(params_path))
    say(f"detect: {found.describe()}")
    return found


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(params_path: str) -> IngestSummary:
    return ingest_photos(load_params(params_path))


@task(name="dvc-repro", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=30),
      retry_jitter_factor=0.2, retry_condition_fn=retry_if_transient)
def dvc_repro(workdir: str, flow_run_id: str | None, params_path: str | None = None) -> ReproResult:
    """The whole DVC pipeline, as DVC decides (only stale stages run). Its full output goes to
    ``Layout.repro_log`` of ``params_path`` (relative to ``workdir``; default: the default layout)."""
    layout = Layout.of(load_params(Path(workdir) / params_path)) if params_path else None
    return run_dvc_repro(Path(workdir), flow_run_id, layout=layout)


@task(name="promote", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10),
      retry_jitter_factor=0.2, retry_condition_fn=retry_if_transient)
def promote_task(params_path: str) -> dict:
    return promote_all_or_nothing(load_params(params_path))


@task(name="publish-report", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 15])
def publish_report(outcome: Outcome | dict, params_path: str) -> dict:
    """Artifact `retrain-report` + reports/retrain.{md,json}; returns the outcome as published
    (credentials scrubbed: this is also what the flow returns)."""
    public, markdown = publish(outcome, load_params(params_path))
    create_markdown_artifact(markdown, key="retrain-report", description=f"retrain: {public['reason']}"[:500])
    return public


def _retrain_locked(params_path: str, root: Path, force: bool, min_new_photos: int, sample_if_empty: bool,
                    outcome: Outcome, commit_lineage: bool = False) -> Outcome:
    params = load_params(params_path)
    if sample_if_empty and deployment.id:
        say("sample_if_empty ignored: synthetic photos are never rendered in a deployment (prefect.yaml)")
    elif sample_if_empty:
        render_sample_if_empty(params)  # also refuses when data/raw.dvc or a champion exists
    with outcome.timed("detect"):
        found = detect_photos(params_path)
    with outcome.timed("ingest"):
        ingested = ingest_task(params_path) if found.pending else IngestSummary()
    untrained = untrained_photos(params)
    outcome.photos = Photos(found.pending, ingested, untrained)
    if not force and untrained < min_new_photos and not found.unpromoted_run:
        reason = skip_reason(untrained, min_new_photos)
        say(reason)
        return outcome.finish("skipped", reason)

    champion_before = champion_version(params)
    fr_id = outcome.flow_run_id
    try:
        with outcome.timed("dvc"):
            repro = dvc_repro(str(root), fr_id, params_path)
    except StageFailed as err:
        if not err.transient:
            close_orphans(params, fr_id, keep=None)
        return _failed(outcome, Failure(err.stage, err.cause, err.transient, err.details), champion_before)
    outcome.stages_run, outcome.repro_log = repro.stages_run, repro.log_path
    _split_dvc_time(outcome, repro)
    try:  # the reports' run must exist in this store (DVC may have restored them from its cache)
        with outcome.timed("promote"):
            in_store = reconcile(params, say).run_id
    except Exception as err:
        return _failed(outcome, Failure("promote", f"{type(err).__name__}: {err}", is_transient_error(err), ""),
                       champion_before)
    run_id = unpromoted_run(params, in_store)
    close_orphans(params, fr_id, keep=run_id)
    if run_id is None:
        reason = "pipeline up to date: nothing retrained; champion unchanged"
        say(reason)
        return outcome.finish("up_to_date", reason, champion=champion_before)
    try:
        with outcome.timed("promote"):
            report = promote_task(params_path)
    except Exception as err:
        outcome.mlflow_run_id = run_id
        return _failed(outcome, Failure("promote", f"{type(err).__name__}: {err}", is_transient_error(err), ""),
                       champion_version(params) or champion_before)
    reason = f"trained and judged: {report['decision']} version {report['challenger']['version']}: {report['reason']}"
    say(reason)
    if commit_lineage:
        gitsync.commit_lineage(root, params.paths.raw, f"retrain: lineage of version {report['challenger']['version']} "
                               f"({report['decision']}; MLflow run {run_id})")
    return outcome.finish("trained", reason, mlflow_run_id=run_id, decision=report["decision"],
                          decision_reason=report["reason"], challenger_version=report["challenger"]["version"],
                          champion=report["champion"])


def _split_dvc_time(outcome: Outcome, repro: ReproResult) -> None:
    """Replace the one ``dvc`` timing by each stage's and what DVC itself took around them."""
    total = outcome.timings.pop("dvc", 0.0)
    for stage, seconds in repro.stage_seconds.items():
        outcome.timings[f"dvc:{stage}"] = seconds
    outcome.timings["dvc"] = round(max(0.0, total - sum(repro.stage_seconds.values())), 2)


def _failed(outcome: Outcome, failure: Failure, champion: str | None) -> Outcome:
    reason = (f"retrain failed at stage '{failure.stage}': {failure.cause} (champion untouched: version "
              f"{champion or 'none'}; ingested photos are safe in data/raw and the next run trains on them)")
    say(scrub_text(reason if not failure.details else f"{reason}\n{failure.details}"))  # Prefect logs are published too
    return outcome.finish("failed", reason, champion=champion, failure=failure)


@flow(name="retrain", log_prints=True)
def retrain(force: bool = False, min_new_photos: int = 1, workdir: str = ".", params_path: str = "params.yaml",
            sample_if_empty: bool = True, if_busy: Literal["wait", "skip"] = "wait",
            lock_timeout_s: float = 6 * 3600, commit_lineage: bool = False) -> dict:
    """Detect and ingest new photos, run the DVC pipeline, promote, and report.

    force: run the pipeline even with fewer than ``min_new_photos`` new photos.
    workdir: the repository checkout (params.yaml, dvc.yaml); params_path is relative to it.
    sample_if_empty: render the synthetic sample set when there are no photos at all (a fresh
        clone's embedded default only: never in a deployment, nor beside data/raw.dvc or a champion).
    if_busy: another retrain holds the lock: ``wait`` (up to lock_timeout_s) or ``skip``.
    commit_lineage: after a trained run, commit dvc.lock and data/raw.dvc back to git (off by default;
        every version's lineage is in MLflow and its data in the DVC remote either way)."""
    capture_package_logs()
    with working_directory(workdir) as root:
        params = load_params(params_path)
        outcome = Outcome(flow_run_id=flow_run.get_id(), workdir=str(root))
        startup = process_age_s()
        if startup is not None:
            outcome.timings["start-up"] = startup
        try:
            wait_s = 0.0 if if_busy == "skip" else lock_timeout_s
            with pipeline_lock(lock_path(params), wait_s=wait_s, owner=f"flow run {outcome.flow_run_id}") as waited:
                if waited >= 1:
                    say(f"waited {waited:.0f} s for another retrain to finish")
                outcome.waited_for_lock_s = round(waited, 1)
                outcome = _retrain_locked(params_path, root, force, min_new_photos, sample_if_empty, outcome,
                                          commit_lineage)
        except LockBusy as busy:
            reason = f"skipped: {busy}"
            say(reason)
            outcome.finish("busy", reason)
        with outcome.timed("report"):
            public = publish_report(outcome, params_path)
        log_timings(params, outcome)  # with the report's own time, which the report cannot hold
    if public["status"] == "failed":
        raise RetrainFailed(public["reason"])
    return public
