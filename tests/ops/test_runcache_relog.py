"""A reset MLflow store beside outputs that name a run it no longer holds (issue 17), in one process
(no git, DVC, flow or server): train + evaluate in a temp folder, delete the store, promote. ops/runcache.py re-logs the run from
the outputs and registers a version whose run exists; a second promote reuses that run.

The same story through the real flow, git and `dvc repro` (and outputs checked out of DVC's
run-cache) is tests/flows/test_runcache_flow.py, in `make test-e2e`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from landmark_lora.config import parse_params
from tests.helpers.tiny_data import write_processed
from tests.helpers.tiny_params import TINY_TRAIN, deep_merge
from tests.helpers.workspace import inside

REPO = Path(__file__).resolve().parents[2]
NAME = "landmark-lora"
RAW = deep_merge(TINY_TRAIN, {"eval": {"max_prompts": 2, "num_inference_steps": 2}})


def _client():
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    return mlflow.MlflowClient()


def _reset_store() -> None:
    """What a user does to start tracking afresh: the outputs (and DVC's cache) stay."""
    Path("mlruns/mlflow.db").unlink()
    shutil.rmtree("mlruns/artifacts", ignore_errors=True)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """Trained and evaluated (run A in the store), then the store reset, then promote twice."""
    from landmark_lora.ops.promote import promote
    from landmark_lora.stages.cache_latents import cache_latents
    from landmark_lora.stages.evaluate import evaluate
    from landmark_lora.stages.train import run_training

    root = tmp_path_factory.mktemp("relog") / "ws"
    write_processed(root)
    tiny = REPO / "models" / "base-tiny"
    if (tiny / "model_index.json").is_file():  # the same config and weights the pipeline would build
        shutil.copytree(tiny, root / "models" / "base-tiny")
    (root / "params.yaml").write_text(yaml.safe_dump(RAW))
    out: dict = {"root": root}
    with inside(root):
        params = parse_params(RAW)
        cache_latents(params)
        run_training(params)
        evaluate(params)
        out["train_json"] = Path("reports/train.json").read_text()
        out["old"] = json.loads(out["train_json"])["mlflow_run_id"]
        out["eval"] = json.loads(Path("reports/eval.json").read_text())
        _reset_store()
        messages: list[str] = []
        out["first"] = promote(params, log=messages.append)
        out["first_log"] = messages
        experiment = _client().get_experiment_by_name(NAME)
        out["runs_after_first"] = len(_client().search_runs([experiment.experiment_id]))
        again: list[str] = []
        out["second"] = promote(params, log=again.append)
        out["second_log"] = again
        out["runs_after_second"] = len(_client().search_runs([experiment.experiment_id]))
        yield out


@pytest.fixture
def in_story(story, monkeypatch):
    monkeypatch.chdir(story["root"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return story


def test_a_reset_store_gets_the_run_relogged_and_a_version_whose_run_exists(in_story):
    first, old = in_story["first"], in_story["old"]
    assert first["decision"] == "promoted" and first["champion"] == "1", first
    client = _client()
    (version,) = client.search_model_versions(f"name='{NAME}'")
    run = client.get_run(version.run_id)  # raises if the run does not exist
    assert version.run_id != old and run.info.status == "FINISHED"
    assert run.data.tags["restored_from_dvc_cache"] == "true"
    assert run.data.tags["restored_from_run_id"] == old
    assert any("re-logged from the cached outputs" in m and old in m for m in in_story["first_log"])
    # the outputs, logged again: params, every step's loss, the eval metrics, the adapter
    assert run.data.params["train.max_steps"] == str(TINY_TRAIN["train"]["max_steps"])
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in losses) == list(range(1, TINY_TRAIN["train"]["max_steps"] + 1))
    assert run.data.metrics["eval/eval_loss"] == pytest.approx(in_story["eval"]["eval_loss"])
    names = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert "adapter/pytorch_lora_weights.safetensors" in names
    # the outputs themselves are not rewritten: train.json still names the run that made them
    assert Path("reports/train.json").read_text() == in_story["train_json"]


def test_a_later_promote_reuses_the_restored_run_and_relogs_nothing(in_story):
    second = in_story["second"]
    assert in_story["runs_after_second"] == in_story["runs_after_first"] == 1
    assert any("restored from DVC's cache earlier" in m for m in in_story["second_log"]), in_story["second_log"]
    assert second["champion"] == "1"
    assert [str(v.version) for v in _client().search_model_versions(f"name='{NAME}'")] == ["1"]
