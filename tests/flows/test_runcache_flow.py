"""DVC's run-cache and MLflow agree (issue 17): a reset MLflow store with a warm DVC cache.

One workspace (a real git + DVC repo, tiny base, the default SQLite store under mlruns/), in order:
first run -> delete mlruns/mlflow.db and mlruns/artifacts, keep DVC's cache, run again: the flow
re-logs the run from the cached outputs and registers a version whose run exists -> a third run
reuses that run -> delete the store and the train/evaluate outputs: `dvc repro` checks them out of
its run-cache and the flow restores the run again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers.workspace import build_workspace

# Four flow runs on a real git + DVC repo: `make test-e2e`. make test keeps the re-log itself, in
# one process, in tests/ops/test_runcache_relog.py (reset store -> promote re-logs and registers -> reuse).
pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _client():
    import mlflow

    return mlflow.MlflowClient()


def _versions() -> list:
    try:
        return sorted(_client().search_model_versions("name='landmark-lora'"), key=lambda v: int(v.version))
    except Exception:
        return []


def _reset_store(ws) -> None:
    """What a user does to start tracking afresh: the DVC cache (.dvc/cache) stays."""
    (ws / "mlruns" / "mlflow.db").unlink()
    shutil.rmtree(ws / "mlruns" / "artifacts")


def _train_json(ws) -> dict:
    return json.loads((ws / "reports" / "train.json").read_text())


@pytest.fixture(scope="module")
def ws(tmp_path_factory, checkout_tiny_base):
    """A workspace tracking to its own sqlite store (mlruns/ under the workspace)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        root = build_workspace(tmp_path_factory.mktemp("runcache") / "ws")
        mp.chdir(root)  # the flow chdirs into workdir; the test's MLflow client reads the same store
        yield root


@pytest.fixture(scope="module")
def first_run(ws, retrain_module):
    outcome = retrain_module.retrain(workdir=str(ws))
    assert outcome["status"] == "trained", outcome["reason"]
    return outcome


@pytest.fixture(scope="module")
def after_reset(ws, first_run, retrain_module):
    lock_before = (ws / "dvc.lock").read_text()
    _reset_store(ws)
    outcome = retrain_module.retrain(workdir=str(ws))
    return outcome, lock_before


def test_reset_store_warm_dvc_cache_flow_registers_a_version_whose_run_exists(ws, first_run, after_reset):
    from landmark_lora.config import load_params
    from landmark_lora.tracking import configure

    outcome, lock_before = after_reset
    assert outcome["status"] == "trained", outcome["reason"]
    assert outcome["decision"] == "promoted" and outcome["champion"] == "1"
    configure(load_params(ws / "params.yaml").mlflow)
    (version,) = _versions()
    run = _client().get_run(version.run_id)  # raises if the run does not exist
    old = first_run["mlflow_run_id"]
    assert version.run_id == outcome["mlflow_run_id"] != old
    assert run.data.tags["restored_from_dvc_cache"] == "true"
    assert run.data.tags["restored_from_run_id"] == old
    assert run.info.status == "FINISHED"
    # the cached outputs, logged again: params, step and eval metrics, the adapter
    assert run.data.params["train.max_steps"] == "4"
    evaluation = json.loads((ws / "reports" / "eval.json").read_text())
    assert run.data.metrics["eval/eval_loss"] == pytest.approx(evaluation["eval_loss"])
    assert len(_client().get_metric_history(run.info.run_id, "loss")) == 4
    names = {a.path for a in _client().list_artifacts(run.info.run_id, "adapter")}
    assert "adapter/pytorch_lora_weights.safetensors" in names
    # DVC's outputs are untouched: the reports still name the run that made them, dvc.lock is as it was
    assert _train_json(ws)["mlflow_run_id"] == old
    assert (ws / "dvc.lock").read_text() == lock_before
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "train", "evaluate"], cwd=ws,
                            capture_output=True, text=True, check=True).stdout
    assert "changed" not in status, status


def test_a_later_run_reuses_the_restored_run_and_relogs_nothing(ws, after_reset, retrain_module):
    import mlflow

    exp = _client().get_experiment_by_name("landmark-lora")
    before = len(_client().search_runs([exp.experiment_id]))
    outcome = retrain_module.retrain(workdir=str(ws))
    assert outcome["status"] == "skipped", outcome["reason"]
    assert len(_client().search_runs([exp.experiment_id])) == before
    assert [str(v.version) for v in _versions()] == ["1"]
    assert mlflow.get_tracking_uri().endswith(f"{ws.resolve()}/mlruns/mlflow.db")


def test_outputs_checked_out_of_dvcs_run_cache_are_restored_into_a_reset_store(ws, after_reset, retrain_module):
    _reset_store(ws)
    for out in ("models/adapter", "reports/samples", "reports/eval.html", "reports/train.json",
                "reports/eval.json", "reports/plots"):
        path = ws / out
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    outcome = retrain_module.retrain(workdir=str(ws))
    assert outcome["status"] == "trained", outcome["reason"]
    log = (ws / ".cache" / "retrain" / "dvc-repro.log").read_text()
    assert "Stage 'train' is cached - skipping run, checking out outputs" in log
    (version,) = _versions()
    run = _client().get_run(version.run_id)
    assert run.data.tags["restored_from_run_id"] == _train_json(ws)["mlflow_run_id"]
