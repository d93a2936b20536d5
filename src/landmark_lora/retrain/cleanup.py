"""Bookkeeping after a stage or a promote failed: no MLflow run left RUNNING, no half-registered version.

    from landmark_lora.retrain.cleanup import close_orphans, promote_all_or_nothing
    close_orphans(params, flow_run_id, keep=run_id)    # runs this flow run left RUNNING -> FAILED
    report = promote_all_or_nothing(params)            # discards a half-registered version first

A version a crashed promote left undecided is removed by registry.discard_half_registered,
which promote runs itself before every attempt.
"""

from __future__ import annotations

from landmark_lora.config import Params
from landmark_lora.retrain.errors import Log, say


def fail_orphan_runs(params: Params, flow_run_id: str | None, keep: str | None) -> list[str]:
    """Mark MLflow runs this flow run left RUNNING (a stage crashed mid-run) as FAILED, so
    every finished pipeline execution leaves exactly one good run. Best effort."""
    if not flow_run_id:
        return []
    import mlflow

    from landmark_lora.tracking import configure

    exp = configure(params.mlflow)
    client = mlflow.MlflowClient()
    runs = client.search_runs([exp], f"tags.prefect_flow_run_id = '{flow_run_id}' and attributes.status = 'RUNNING'")
    closed = []
    for run in runs:
        if run.info.run_id != keep:
            client.set_terminated(run.info.run_id, "FAILED")
            closed.append(run.info.run_id)
    return closed


def close_orphans(params: Params, flow_run_id: str | None, keep: str | None, log: Log = say) -> None:
    """fail_orphan_runs, and say what it closed; never fails the flow (bookkeeping only)."""
    try:
        closed = fail_orphan_runs(params, flow_run_id, keep)
    except Exception as err:
        log(f"could not check for orphaned MLflow runs: {err}")
        return
    if closed:
        log(f"marked MLflow run(s) {', '.join(closed)} FAILED (left running by a crashed stage)")


def promote_all_or_nothing(params: Params, log: Log = say) -> dict:
    """`promote` (ops/promote.py): the one all-or-nothing, idempotent promote path, also
    behind `landmark-lora promote`. Safe to retry. Never forces a rolled-back version back."""
    from landmark_lora.ops.promote import promote

    return promote(params, log=log)
