"""The lineage bundle (ops/lineage.py): a clean, pushed git+DVC checkout is reproducible, a dirty
tree is not (and says which files), the bundle lands in the MLflow run, and train logs its splits
as MLflow dataset inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from landmark_lora.config import parse_params
from landmark_lora.ops.lineage import collect, git_state, record_lineage, unreproducible_refusal
from tests.helpers.tiny_data import write_processed

GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    """Default params with the tiny base built once for the module, outside the checkouts."""
    return parse_params({"model": {"dir": str(tmp_path_factory.mktemp("models"))}})


def _run(args: list[str], cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, timeout=300)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git + DVC checkout with a local default remote and a committed data/raw.dvc."""
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src/code.py").write_text("x = 1\n")
    (root / "params.yaml").write_text("model:\n  base: tiny\n")
    (root / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (root / "data/raw/gyeongbokgung").mkdir(parents=True)
    (root / "data/raw/gyeongbokgung/a.jpg").write_bytes(b"photo bytes")
    # as the project's .gitignore: data/ ignored but its .dvc files (a bare `dvc push` skips them)
    (root / ".gitignore").write_text("/models/\n/mlruns/\n/.dvc-storage/\n/data/*\n!/data/*.dvc\n")
    _run(["git", "init", "-q"], root)
    _run([sys.executable, "-m", "dvc", "init", "-q"], root)
    _run([sys.executable, "-m", "dvc", "remote", "add", "-d", "local", ".dvc-storage"], root)
    _run([sys.executable, "-m", "dvc", "add", "-q", "data/raw"], root)
    _run([*GIT, "add", "-A"], root)
    _run([*GIT, "commit", "-qm", "data"], root)
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


def test_clean_pushed_checkout_is_reproducible(checkout, params):
    lineage, files = collect(params, checkout)
    assert lineage.reproducible, lineage.reason
    assert lineage.git_sha and not lineage.git_dirty
    assert files["raw.dvc"] == (checkout / "data/raw.dvc").read_text()
    assert files["dvc.lock"].startswith("schema") and "base: tiny" in files["params.yaml"]
    assert any(line.startswith("mlflow==") for line in files["requirements.txt"].splitlines())
    assert json.loads(files["lineage.json"])["base_fingerprint"] == lineage.base_fingerprint != ""
    # dvc push put the photo's bytes in the remote
    assert any(p.is_file() and p.read_bytes() == b"photo bytes" for p in (checkout / ".dvc-storage").rglob("*"))


def test_dirty_tree_gives_reproducible_false(checkout, params):
    # what a run changes on purpose (params, dvc.lock) is recorded in the bundle: still clean
    (checkout / "params.yaml").write_text("model:\n  base: tiny\ntrain:\n  seed: 3\n")
    (checkout / "dvc.lock").write_text("schema: '2.0'\nstages: {x: {}}\n")
    assert git_state(checkout)[1] == []
    # nor do the stages' outputs that dvc.lock records by hash (metrics and plots that git does not ignore)
    (checkout / "dvc.lock").write_text("schema: '2.0'\nstages:\n  train:\n    outs:\n    - path: reports/train.json\n"
                                       "      md5: 0\n    - path: reports/plots\n      md5: 1\n")
    (checkout / "reports/plots").mkdir(parents=True)
    (checkout / "reports/train.json").write_text("{}")
    (checkout / "reports/plots/train_loss.csv").write_text("step,loss\n")
    assert git_state(checkout)[1] == []
    (checkout / "reports/notes.txt").write_text("not a pipeline output")
    assert git_state(checkout)[1] == ["reports/notes.txt"]
    (checkout / "reports/notes.txt").unlink()
    # a code change that is not committed is not
    (checkout / "src/code.py").write_text("x = 2\n")
    (checkout / "src/new.py").write_text("y = 1\n")
    lineage, files = collect(params, checkout, push=False)
    assert not lineage.reproducible and lineage.git_dirty
    assert sorted(lineage.dirty_files) == ["src/code.py", "src/new.py"]
    assert "dirty" in lineage.reason and "src/code.py" in lineage.reason
    assert lineage.tags()["reproducible"] == "false" and lineage.tags()["git_dirty"] == "true"
    assert json.loads(files["git.json"])["dirty"] is True


def test_no_git_and_no_dvc_is_not_reproducible_and_says_why(tmp_path, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    lineage, _ = collect(params, tmp_path)
    assert not lineage.reproducible
    assert "not a git checkout" in lineage.reason and "dvc push failed: not a DVC repository" in lineage.reason
    assert "data/raw.dvc was missing" in lineage.reason
    assert lineage.tags()["git_dirty"] == "unknown" and lineage.tags()["lineage_git_sha"] == "unknown"


def test_the_bundle_lands_in_the_run(checkout, params):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{checkout / 'mlruns/mlflow.db'}")
    (checkout / "mlruns").mkdir(exist_ok=True)
    exp = mlflow.create_experiment("t", artifact_location=(checkout / "mlruns/artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        pass
    (checkout / "src/code.py").write_text("x = 3\n")
    lineage = record_lineage(params, run.info.run_id)
    client = mlflow.MlflowClient()
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["reproducible"] == "false" and "src/code.py" in tags["reproducible_reason"]
    assert tags["git_dirty"] == "true" and tags["lineage_git_sha"] == lineage.git_sha
    assert tags["base_fingerprint"] == lineage.base_fingerprint
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "lineage")}
    assert {"raw.dvc", "dvc.lock", "params.yaml", "git.json", "requirements.txt", "lineage.json"} <= names


def test_an_unreproducible_version_needs_the_operators_flag():
    tags = {"reproducible": "false", "reproducible_reason": "the git tree was dirty"}
    refusal = unreproducible_refusal(tags, allowed=False)
    assert refusal and "the git tree was dirty" in refusal and "--allow-unreproducible" in refusal
    assert unreproducible_refusal(tags, allowed=True) is None
    assert unreproducible_refusal({"reproducible": "true"}, allowed=False) is None


def test_train_and_val_splits_are_logged_as_mlflow_datasets(tmp_path, monkeypatch):
    import mlflow

    from landmark_lora.tracking import log_datasets

    monkeypatch.chdir(tmp_path)
    write_processed(tmp_path, n_train=5, n_val=2)
    Path("dvc.lock").write_text("schema: '2.0'\nstages:\n  preprocess:\n    outs:\n"
                                "    - path: data/processed\n      md5: abc123.dir\n")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        assert log_datasets(parse_params({})) == ["train", "val"]
    inputs = mlflow.MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    by_name = {d.dataset.name: d.dataset for d in inputs}
    assert set(by_name) == {"train", "val"}
    assert json.loads(by_name["train"].profile)["num_rows"] == 5
    assert json.loads(by_name["val"].profile)["num_rows"] == 2
    source = json.loads(by_name["train"].source)
    assert source["path"] == "data/processed/train" and source["md5"] == "abc123.dir"
    assert "landmark" in by_name["train"].schema
