"""`landmark-lora reproduce` (ops/reproduce.py) in a user's clone: run the pipeline and promote,
add photos and run again, then replay version 1 and the champion from their lineage bundles:
same metrics within 1e-5, exit 0, the working tree and the registry untouched. A version whose
photos are gone from the DVC remote fails, naming the data."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from landmark_lora.env import venv_env
from landmark_lora.ops.reproduce import Check, Reproduction, format_report, metric_checks
from tests.helpers.workspace import build_workspace


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = venv_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)


def _cycle(ws: Path) -> str:
    """ingest, dvc repro, promote (what the flow does); returns promote's output."""
    for cmd in (["landmark-lora", "ingest", "--no-progress"], [sys.executable, "-m", "dvc", "repro"],
                ["landmark-lora", "promote"]):
        out = _run(cmd, ws)
        assert out.returncode == 0, f"{cmd}: {out.stdout[-2000:]}{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory, checkout_tiny_base) -> Path:
    """Two versions: version 1 on the sample set, version 2 after three more photos."""
    ws = build_workspace(tmp_path_factory.mktemp("reproduce") / "ws")
    assert _run(["landmark-lora", "sample-data"], ws).returncode == 0
    first = _cycle(ws)
    assert "promoted version 1" in first, first
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.config import SampleDataConfig
    from landmark_lora.synthetic.photo import render_photo

    drop = ws / "data/incoming/gyeongbokgung"
    drop.mkdir(parents=True, exist_ok=True)
    for k in range(3):
        render_photo(load_catalogue()["gyeongbokgung"], "eye_level", "upper_body", "waving", 10 + k,
                     SampleDataConfig()).save(drop / f"new_{k}.jpg", quality=90)
    second = _cycle(ws)
    assert "version 2" in second, second
    return ws


def _tree(ws: Path) -> tuple[str, str, str]:
    return ((ws / "data/raw.dvc").read_text(), (ws / "dvc.lock").read_text(),
            _run(["git", "status", "--porcelain"], ws).stdout)


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(2400)  # two pipeline cycles and one or two replays: ~10-15 min on 2 busy cores
def test_version_1_and_the_champion_reproduce_after_the_tree_moved_on(clone):
    import mlflow

    before = _tree(clone)
    client = mlflow.MlflowClient(f"sqlite:///{clone / 'mlruns/mlflow.db'}")
    v1 = client.get_model_version("landmark-lora", "1")
    assert v1.tags["reproducible"] == "true", v1.tags.get("reproducible_reason")
    assert v1.tags["git_dirty"] == "false" and v1.tags["eval_fingerprint"]
    champion = str(client.get_model_version_by_alias("landmark-lora", "champion").version)
    # the champion by its alias; version 1 too when it is another version (each replay is a pipeline run)
    for ref in ("champion", *(["1"] if champion != "1" else [])):
        out = _run(["landmark-lora", "reproduce", ref], clone)
        assert out.returncode == 0, out.stdout + out.stderr[-3000:]
        assert "reproduced: every metric within 1e-05" in out.stdout
        assert "eval_loss" in out.stdout and "DIFFERS" not in out.stdout
    # the working tree, the registry and the worktree list are as they were
    assert _tree(clone) == before
    assert len(client.search_model_versions("name='landmark-lora'")) == 2
    assert str(client.get_model_version_by_alias("landmark-lora", "champion").version) == champion
    assert _run(["git", "worktree", "list"], clone).stdout.count("\n") == 1


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(2400)  # alone, it builds the module's clone first
def test_photos_missing_from_the_remote_fail_naming_the_data(clone):
    storage = clone / ".dvc-storage"
    moved = clone.parent / "storage-away"
    shutil.move(storage, moved)
    try:
        out = _run(["landmark-lora", "reproduce", "1"], clone)
    finally:
        shutil.move(moved, storage)
    assert out.returncode == 1
    assert "first difference in data" in out.stdout and "dvc pull failed" in out.stdout


def test_metrics_compare_within_the_tolerance_and_name_the_first_difference():
    recorded = {"eval_loss": 0.5, "shot_agreement": float("nan"), "landmark_accuracy": None, "data_version": "a"}
    close = {"eval_loss": 0.5 + 5e-6, "shot_agreement": float("nan"), "landmark_accuracy": None, "data_version": "a"}
    assert all(c.ok for c in metric_checks(recorded, close))
    far = {**close, "eval_loss": 0.5 + 2e-5}
    result = Reproduction("3", "run", "abc", checks=[Check("packages", "installed distributions", "1", "1", True),
                                                     *metric_checks(recorded, far)])
    assert not result.ok and result.first_difference.name == "eval_loss"
    result.checks.append(Check("params", "params per stage", "5 stages", "differ in train", False))
    assert result.first_difference.kind == "params"  # params come before metrics
    text = format_report(result)
    assert "NOT reproduced: first difference in params" in text and "DIFFERS" in text
    assert math.isnan(recorded["shot_agreement"])
