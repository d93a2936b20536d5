"""`dvc exp run` end to end (issue 17): each experiment is one MLflow run in the project's store,
tagged with its DVC experiment name and baseline commit, and `dvc exp show` lists its metrics.

One workspace (a real git + DVC repo, tiny base, the default SQLite store under mlruns/): a baseline
`dvc repro` with data/raw.dvc and dvc.lock committed -> two `dvc exp run -S` with different learning
rates -> one `dvc exp run --queue` + `dvc queue start`, which runs in a temporary copy of the repo.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from landmark_lora.env import venv_env
from tests.helpers.workspace import build_workspace

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
GIT = ["git", "-c", "user.email=tests@landmark-lora", "-c", "user.name=tests", "-c", "commit.gpgsign=false"]
EXPERIMENTS = {"lr-low": 0.0005, "lr-high": 0.002}  # name -> train.learning_rate


def _run(ws: Path, *cmd: str, timeout: int = 900) -> str:
    env = {k: v for k, v in venv_env().items() if not k.startswith(("MLFLOW_", "DVC_"))}
    proc = subprocess.run(list(cmd), cwd=ws, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc.stdout


def _dvc(ws: Path, *args: str, timeout: int = 900) -> str:
    return _run(ws, sys.executable, "-m", "dvc", *args, timeout=timeout)


def _runs_by_exp(ws: Path) -> dict[str, object]:
    """The project's store, read the way a user would: the MLflow runs by their dvc.exp_name tag."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("landmark-lora")
    runs = client.search_runs([exp.experiment_id])
    return {r.data.tags["dvc.exp_name"]: r for r in runs if "dvc.exp_name" in r.data.tags}


def _exp_show(ws: Path) -> dict[str, dict]:
    """`dvc exp show --json`: experiment name -> its eval.json metrics."""
    found: dict[str, dict] = {}

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("name") and isinstance(node.get("data"), dict):
                metrics = (node["data"].get("metrics") or {}).get("reports/eval.json") or {}
                found[node["name"]] = metrics.get("data") or {}
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(_dvc(ws, "exp", "show", "--json")))
    return found


@pytest.fixture(scope="module")
def ws(tmp_path_factory, checkout_tiny_base):
    """A committed baseline: sample photos ingested (data/raw.dvc), `dvc repro` run (dvc.lock)."""
    root = build_workspace(tmp_path_factory.mktemp("dvc-exp") / "ws", {"train": {"max_steps": 2, "eval_every": 2,
                                                                               "checkpoint_every": 2}})
    cli = (sys.executable, "-m", "landmark_lora.cli")
    _run(root, *cli, "sample-data")
    _run(root, *cli, "ingest", "--no-progress")
    _dvc(root, "repro")
    _run(root, *GIT, "add", "-A")
    _run(root, *GIT, "commit", "-qm", "baseline: data/raw.dvc and dvc.lock")
    _run(root, *cli, "exp", "--check")  # the baseline holds what experiments need
    return root


@pytest.fixture(scope="module")
def experiments(ws):
    (first, lr1), (second, lr2) = EXPERIMENTS.items()
    # `landmark-lora exp` checks the baseline, then runs `dvc exp run` with the same arguments
    _run(ws, sys.executable, "-m", "landmark_lora.cli", "exp", "-n", first, "-S", f"train.learning_rate={lr1}",
         "-S", "train.max_steps=3")
    _dvc(ws, "exp", "run", "-n", second, "-S", f"train.learning_rate={lr2}", "-S", "train.max_steps=3")
    return _runs_by_exp(ws)


def test_two_experiments_are_two_mlflow_runs_with_their_params_and_tags(ws, experiments):
    baseline = _run(ws, "git", "rev-parse", "HEAD").strip()
    assert set(EXPERIMENTS) <= set(experiments)
    for name, lr in EXPERIMENTS.items():
        run = experiments[name]
        assert float(run.data.params["train.learning_rate"]) == lr
        assert run.data.params["train.max_steps"] == "3"
        assert run.data.tags["dvc.exp_baseline_rev"] == baseline
        assert run.info.status == "FINISHED" and "eval/eval_loss" in run.data.metrics  # evaluate logged into it
    assert experiments["lr-low"].info.run_id != experiments["lr-high"].info.run_id


def test_dvc_exp_show_lists_both_experiments_with_eval_loss(ws, experiments):
    shown = _exp_show(ws)
    for name in EXPERIMENTS:
        assert isinstance(shown[name].get("eval_loss"), float), shown.get(name)
        run = experiments[name]
        assert shown[name]["eval_loss"] == pytest.approx(run.data.metrics["eval/eval_loss"])


def test_a_queued_experiment_logs_to_the_projects_store(ws, experiments):
    # params DVC never ran (the baseline's would be checked out of its run-cache: no training, no new run)
    _dvc(ws, "exp", "run", "--queue", "-n", "queued", "-S", "train.learning_rate=0.003", "-S", "train.max_steps=2")
    _dvc(ws, "queue", "start")
    deadline = time.monotonic() + 900
    while True:
        status = _dvc(ws, "queue", "status")
        if "queued" in status and ("Success" in status or "Failed" in status):
            break
        assert time.monotonic() < deadline, f"the queued experiment did not finish:\n{status}"
        time.sleep(5)
    assert "Success" in status, status + _dvc(ws, "queue", "logs", "queued")
    run = _runs_by_exp(ws)["queued"]
    assert run.data.params["train.max_steps"] == "2" and run.info.status == "FINISHED"
    # its artifacts are in the project's mlruns/, not in the temporary copy DVC threw away
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(ws / "mlruns" / "artifacts")
    assert (artifacts / "adapter" / "pytorch_lora_weights.safetensors").is_file()
    assert "queued" in _exp_show(ws)
