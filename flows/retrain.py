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
6. publish a markdown artifact `retrain-report` (also reports/retrain.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from landmark_lora.config import load_params
from landmark_lora.orchestration import (
    Detection,
    IngestSummary,
    LockBusy,
    ReproResult,
    StageFailed,
    current_champion,
    detect,
    fail_orphan_runs,
    ingest_photos,
    is_transient_error,
    lock_path,
    pipeline_lock,
    print_outcome,
    promote_all_or_nothing,
    render_report,
    render_sample_if_empty,
    run_dvc_repro,
    unpromoted_run,
    untrained_photos,
    where_to_look,
    working_directory,
    write_report,
)


class RetrainFailed(RuntimeError):
    """The flow's own failure: names the stage and the cause."""


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
    print(f"detect: {found.describe()}")
    return found


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(params_path: str) -> IngestSummary:
    return ingest_photos(load_params(params_path))


@task(name="dvc-repro", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=30),
      retry_jitter_factor=0.2, retry_condition_fn=retry_if_transient)
def dvc_repro(workdir: str, flow_run_id: str | None) -> ReproResult:
    """The whole DVC pipeline, as DVC decides (only stale stages run)."""
    return run_dvc_repro(Path(workdir), flow_run_id)


@task(name="promote", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10),
      retry_jitter_factor=0.2, retry_condition_fn=retry_if_transient)
def promote_task(params_path: str) -> dict:
    return promote_all_or_nothing(load_params(params_path))


@task(name="publish-report", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 15])
def publish_report(outcome: dict, params_path: str) -> str:
    params = load_params(params_path)
    markdown = render_report(outcome, params)
    page = (Path(params.paths.reports) / "retrain.html").resolve()
    markdown += f"\n**Full report, with pictures (one offline page):** [{page}]({page.as_uri()})\n"
    path = write_report(outcome, params, markdown)  # also writes reports/retrain.html
    create_markdown_artifact(markdown, key="retrain-report", description=f"retrain: {outcome['reason']}"[:500])
    return str(path)


def _retrain_locked(params_path: str, root: Path, force: bool, min_new_photos: int, sample_if_empty: bool,
                    outcome: dict) -> dict:
    params = load_params(params_path)
    if sample_if_empty:
        render_sample_if_empty(params)
    found = detect_photos(params_path)
    ingested = ingest_task(params_path) if found.pending else IngestSummary()
    untrained = untrained_photos(params)
    outcome["photos"] = {"pending": found.pending, "ingest": ingested.to_dict(), "untrained": untrained}
    if not force and untrained < min_new_photos and not found.unpromoted_run:
        reason = (f"skipped: {untrained} new photo(s) to train on, fewer than min_new_photos={min_new_photos}; "
                  "nothing trained, no MLflow run (force=True runs the pipeline anyway)")
        print(reason)
        return {**outcome, "status": "skipped", "reason": reason}

    champion_before = current_champion(params)
    fr_id = outcome.get("flow_run_id")
    try:
        repro = dvc_repro(str(root), fr_id)
    except StageFailed as err:
        if not err.transient:
            _close_orphans(params, fr_id, keep=None)
        return _failed(outcome, err.stage, err.cause, err.transient, err.details, champion_before)
    outcome.update(stages_run=repro.stages_run, repro_log=repro.log_path)
    run_id = unpromoted_run(params)
    _close_orphans(params, fr_id, keep=run_id)
    if run_id is None:
        reason = "pipeline up to date: nothing retrained; champion unchanged"
        print(reason)
        return {**outcome, "status": "up_to_date", "reason": reason, "champion": champion_before}
    try:
        report = promote_task(params_path)
    except Exception as err:
        return _failed(outcome, "promote", f"{type(err).__name__}: {err}", is_transient_error(err), "",
                       current_champion(params) or champion_before, mlflow_run_id=run_id)
    reason = f"trained and judged: {report['decision']} version {report['challenger']['version']}: {report['reason']}"
    print(reason)
    return {**outcome, "status": "trained", "reason": reason, "mlflow_run_id": run_id,
            "decision": report["decision"], "decision_reason": report["reason"],
            "challenger_version": report["challenger"]["version"], "champion": report["champion"]}


def _failed(outcome: dict, stage: str, cause: str, transient: bool, details: str, champion: str | None,
            **extra) -> dict:
    reason = (f"retrain failed at stage '{stage}': {cause} (champion untouched: version {champion or 'none'}; "
              "ingested photos are safe in data/raw and the next run trains on them)")
    print(reason if not details else f"{reason}\n{details}")
    return {**outcome, **extra, "status": "failed", "reason": reason, "champion": champion,
            "failure": {"stage": stage, "cause": cause, "transient": transient, "details": details}}


def _close_orphans(params, flow_run_id: str | None, keep: str | None) -> None:
    try:
        closed = fail_orphan_runs(params, flow_run_id, keep)
    except Exception as err:  # bookkeeping only; never fail the flow for it
        print(f"could not check for orphaned MLflow runs: {err}")
        return
    if closed:
        print(f"marked MLflow run(s) {', '.join(closed)} FAILED (left running by a crashed stage)")


@flow(name="retrain", log_prints=True)
def retrain(force: bool = False, min_new_photos: int = 1, workdir: str = ".", params_path: str = "params.yaml",
            sample_if_empty: bool = True, if_busy: Literal["wait", "skip"] = "wait",
            lock_timeout_s: float = 6 * 3600) -> dict:
    """Detect and ingest new photos, run the DVC pipeline, promote, and report.

    force: run the pipeline even with fewer than ``min_new_photos`` new photos.
    workdir: the repository checkout (params.yaml, dvc.yaml); params_path is relative to it.
    sample_if_empty: render the synthetic sample set when there are no photos at all.
    if_busy: another retrain holds the lock: ``wait`` (up to lock_timeout_s) or ``skip``."""
    with working_directory(workdir) as root:
        params = load_params(params_path)
        outcome: dict = {"flow_run_id": flow_run.get_id(), "workdir": str(root)}
        try:
            wait_s = 0.0 if if_busy == "skip" else lock_timeout_s
            with pipeline_lock(lock_path(params), wait_s=wait_s, owner=f"flow run {outcome['flow_run_id']}") as waited:
                if waited >= 1:
                    print(f"waited {waited:.0f} s for another retrain to finish")
                outcome["waited_for_lock_s"] = round(waited, 1)
                outcome = _retrain_locked(params_path, root, force, min_new_photos, sample_if_empty, outcome)
        except LockBusy as busy:
            reason = f"skipped: {busy}"
            print(reason)
            outcome = {**outcome, "status": "busy", "reason": reason}
        outcome["report"] = publish_report(outcome, params_path)
        outcome["where_to_look"] = dict(where_to_look(params))
    if outcome["status"] == "failed":
        raise RetrainFailed(outcome["reason"])
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python flows/retrain.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="run the pipeline even with too few new photos")
    parser.add_argument("--min-new-photos", type=int, default=1)
    parser.add_argument("--workdir", default=".")
    parser.add_argument("--params", default="params.yaml", help="relative to --workdir")
    parser.add_argument("--no-sample", action="store_true", help="do not render the sample set into an empty workspace")
    parser.add_argument("--if-busy", choices=["wait", "skip"], default="wait")
    args = parser.parse_args(argv)
    from landmark_lora.prefect_api import EXIT_TEMPFAIL, PrefectStartupError, ensure_prefect_api

    try:  # the same robust start as `landmark-lora run`
        ensure_prefect_api("python flows/retrain.py", log=print)
    except PrefectStartupError as err:
        print(err, file=sys.stderr)
        return EXIT_TEMPFAIL
    state = retrain(force=args.force, min_new_photos=args.min_new_photos, workdir=args.workdir,
                    params_path=args.params, sample_if_empty=not args.no_sample, if_busy=args.if_busy,
                    return_state=True)
    return print_outcome(state, "retrain")


if __name__ == "__main__":
    sys.exit(main())
