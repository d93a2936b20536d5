"""Bad states between DVC and MLflow give clear errors (issue 17, point 4), never a raw MlflowException:
a cached adapter naming a base model that is not here, an MLflow server that cannot be reached,
an experiment started with uncommitted .dvc files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from landmark_lora.config import parse_params
from tests.helpers.ports import free_port
from tests.helpers.workspace import inside

GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]


def _cached_outputs(root: Path, base: str, run_id: str = "0" * 32) -> None:
    """What DVC checks out of its run-cache: an adapter (with its metadata) and reports naming a run."""
    adapter = root / "models" / "adapter"
    adapter.mkdir(parents=True)
    save_file({"a.lora_A.weight": torch.zeros(2, 2)}, str(adapter / "pytorch_lora_weights.safetensors"),
              metadata={"base_model": base})
    (root / "reports").mkdir()
    for name in ("train.json", "eval.json"):
        (root / "reports" / name).write_text(json.dumps({"mlflow_run_id": run_id, "eval_loss": 0.5}))


def test_cached_adapter_naming_a_missing_base_model_says_so_and_how_to_fix(tmp_path, monkeypatch):
    from landmark_lora.ops.promote import PromotionError, promote

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    _cached_outputs(tmp_path, "models/teammates-base")
    with inside(tmp_path):
        params = parse_params({"model": {"base": "models/teammates-base"}, "mlflow": {"system_metrics": False}})
        with pytest.raises(PromotionError) as err:
            promote(params)
    message = str(err.value)
    assert "trained on base model 'models/teammates-base', which is missing here" in message
    assert "Base model 'models/teammates-base'" in message  # the base loader's own hint follows


def test_cached_adapter_from_another_base_than_params_is_refused(tmp_path, monkeypatch):
    from landmark_lora.ops.runcache import RunCacheError, check_base

    _cached_outputs(tmp_path, "toyworld")
    expected = "trained on base model 'toyworld' but model.base in params.yaml is 'tiny'"
    with inside(tmp_path), pytest.raises(RunCacheError, match=expected):
        check_base(parse_params({"model": {"base": "tiny"}}))


def test_unreachable_mlflow_server_fails_in_seconds_naming_the_uri(monkeypatch):
    from landmark_lora.tracking import TrackingUnreachableError, configure

    uri = f"http://admin:hunter2@127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    t0 = time.monotonic()
    with pytest.raises(TrackingUnreachableError) as err:
        configure(parse_params({}).mlflow)
    assert time.monotonic() - t0 < 10
    assert isinstance(err.value, ConnectionError)  # the flow retries it (transient)
    assert f"http://***@127.0.0.1:{uri.rsplit(':', 1)[1]} cannot be reached" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_promote_against_an_unreachable_server_exits_75_with_one_clear_line(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    _cached_outputs(tmp_path, "tiny")
    (tmp_path / "params.yaml").write_text("model: {base: tiny}\n")
    proc = subprocess.run([sys.executable, "-m", "landmark_lora.cli", "promote"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 75, proc.stderr[-2000:]
    assert "cannot be reached" in proc.stderr and "Traceback" not in proc.stderr


def _repo(root: Path) -> Path:
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "baseline"], cwd=root, check=True)
    return root


def test_experiment_with_uncommitted_dvc_files_names_what_to_commit(tmp_path):
    from landmark_lora.retrain.experiments import ExperimentBaselineError, check_baseline

    root = _repo(tmp_path / "repo")
    check_baseline(root)  # a clean baseline passes
    (root / "data").mkdir()
    (root / "data" / "raw.dvc").write_text("outs:\n- md5: abc.dir\n  path: raw\n")
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    with pytest.raises(ExperimentBaselineError) as err:
        check_baseline(root)
    assert "not committed: data/raw.dvc dvc.lock" in str(err.value)
    assert "git add data/raw.dvc dvc.lock && git commit" in str(err.value)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "data"], cwd=root, check=True)
    check_baseline(root)


def test_landmark_lora_exp_refuses_to_start_and_exits_2(tmp_path):
    root = _repo(tmp_path / "repo")
    (root / "params.yaml").write_text("{}\n")
    (root / "raw.dvc").write_text("outs: []\n")
    proc = subprocess.run([sys.executable, "-m", "landmark_lora.cli", "exp", "-S", "train.max_steps=2"], cwd=root,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "not committed: raw.dvc" in proc.stderr, proc.stderr
