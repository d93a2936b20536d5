"""The DVC pipeline end to end in a fresh copy of the repo: sample data -> ingest -> `dvc repro`
(validate, preprocess, cache_latents, train, evaluate); a second `dvc repro` changes nothing;
new photos rerun only what depends on them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from landmark_lora.env import venv_env
from tests.helpers.workspace import build_workspace

# On top of tests/helpers/workspace.py's FAST_PARAMS; its two landmarks (30 photos + 12 background plates):
# the same stages and cache as five landmarks' 105 files, in half the time (every landmark's sample
# scene is rendered in tests/synthetic/test_sample_data.py).
PARAMS = {"validation": {"min_photos_per_landmark": 10}, "train": {"checkpoint_every": 100}}


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = venv_env()  # this venv's bin/ first on PATH, offline defaults
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def clone(tmp_path_factory, checkout_tiny_base) -> Path:
    """A copy of the committed and working-tree files, as a user's clone would have them (plus
    models/base-tiny, as a clone that ran before has it: tests/conftest.py builds it once)."""
    return build_workspace(tmp_path_factory.mktemp("clone") / "ws", PARAMS)


@pytest.mark.slow
def test_pipeline_runs_then_is_a_noop_then_reruns_on_new_photos(clone):
    out = _run(["landmark-lora", "sample-data"], clone)
    assert out.returncode == 0, out.stderr
    out = _run(["landmark-lora", "ingest", "--no-progress"], clone)
    assert out.returncode == 0, out.stderr
    assert "42 accepted, 0 rejected" in out.stdout  # 30 photos + 2 plates per landmark and angle
    assert (clone / "data/raw.dvc").exists()  # the raw photo set is versioned

    out = _run([sys.executable, "-m", "dvc", "repro"], clone)
    assert out.returncode == 0, out.stdout + out.stderr
    for stage in ("validate", "preprocess", "cache_latents", "train", "evaluate"):
        assert f"Running stage '{stage}'" in out.stdout, stage
    assert json.loads((clone / "reports/validation.json").read_text())["success"] is True
    assert (clone / "reports/validation/index.html").exists()
    assert (clone / "models/adapter/pytorch_lora_weights.safetensors").exists()
    evaluation = json.loads((clone / "reports/eval.json").read_text())
    assert evaluation["prompts"] == 2 and evaluation["clip_score_status"].startswith("skipped")
    assert len(list((clone / "reports/samples").glob("*.png"))) >= 1
    assert (clone / "data/processed/plates/index.json").exists() and (clone / "data/processed/person_regions.json").exists()
    assert evaluation["composite"]["status"].startswith(("computed", "skipped"))  # tiny base: regions may be missing

    again = _run([sys.executable, "-m", "dvc", "repro"], clone)
    assert again.returncode == 0
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout.lower()

    # three new photos for one landmark: the whole data path reruns, with the cache doing the work
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.config import SampleDataConfig
    from landmark_lora.synthetic.photo import render_photo

    drop = clone / "data/incoming/gyeongbokgung"
    drop.mkdir(parents=True, exist_ok=True)
    for k in range(3):
        render_photo(load_catalogue()["gyeongbokgung"], "eye_level", "upper_body", "waving", 10 + k,
                     SampleDataConfig()).save(drop / f"new_{k}.jpg", quality=90)
    out = _run(["landmark-lora", "ingest", "--no-progress"], clone)
    assert "3 accepted" in out.stdout
    out = _run(["landmark-lora", "preprocess"], clone)
    assert "cache: 42 reused, 3 processed" in out.stdout  # incremental: k, not n + k (plates included)
    status = _run([sys.executable, "-m", "dvc", "status"], clone)
    assert "validate" in status.stdout and "changed deps" in status.stdout
