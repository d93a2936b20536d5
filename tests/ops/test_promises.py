"""The README's headline promises, each asserted where it would break (issue 18).

- resume is exact: killed at step k and resumed, a run ends with the uninterrupted run's LoRA weights;
- evaluate scores the adapter: its eval_loss is training's final one, and not the base's;
- two processes really train: the trainer records a world of 2 and the global batch;
- the served champion is base + adapter, pixel for pixel, not the base;
- a champion scored again on new data is judged by its new numbers;
- promotion at its edges: a gain exactly at the margin, a champion with zero loss, a challenger
  that beats a real champion in a real registry.

One small processed dataset with cached latents is built per module; each story runs in its own
copy of it, so no test depends on another's leftovers.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from landmark_lora.config import Params, parse_params
from landmark_lora.ops.promote_rules import decide
from tests.helpers.tiny_data import write_processed
from tests.helpers.workspace import inside

REPO = Path(__file__).resolve().parents[2]
NAME = "landmark-lora"
PROMPT = "lmksnap snapshot photo, in front of Gyeongbokgung Palace, upper-body shot"
# Small but real: enough learning rate and steps that the adapter clearly moves the weights.
TINY = {
    "train": {"max_steps": 4, "batch_size": 2, "learning_rate": 1e-2, "warmup_steps": 0, "eval_every": 100,
              "checkpoint_every": 100, "eval_timesteps": [200, 600]},
    "eval": {"max_prompts": 2, "num_inference_steps": 2},
    "mlflow": {"system_metrics": False},
    # The random tiny base draws noise, so its guard metrics (2 prompts) swing by 0.5 from one
    # adapter to the next; these tests are about eval_loss and rescoring, the guards have their own.
    # A temp folder is no git checkout: versions are tagged reproducible=false (tests/ops/test_lineage.py).
    "promotion": {"guard_tolerance": {"background_consistency": 1.0, "shot_agreement": 1.0},
                  "allow_unreproducible": True},
}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _params(**over) -> Params:
    return parse_params(_merge(TINY, over))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the tiny model gains nothing from two, and on a busy machine the
    OpenMP threads wait on each other (4x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base_ws(tmp_path_factory) -> Path:
    """Processed data, the tiny base and cached latents; copied, never used in place."""
    from landmark_lora.stages.cache_latents import cache_latents

    root = tmp_path_factory.mktemp("promises-base")
    write_processed(root)
    tiny = REPO / "models" / "base-tiny"
    if (tiny / "model_index.json").is_file():  # building it again costs seconds; same config, same weights
        shutil.copytree(tiny, root / "models" / "base-tiny")
    (root / "params.yaml").write_text(yaml.safe_dump(TINY))
    old = os.getcwd()
    os.chdir(root)
    try:
        cache_latents(_params())
    finally:
        os.chdir(old)
    return root


def _copy(base_ws: Path, dest: Path) -> Path:
    shutil.copytree(base_ws, dest)
    return dest


@pytest.fixture
def ws(base_ws, tmp_path, monkeypatch) -> Path:
    """A private copy of the workspace, as the working directory."""
    root = _copy(base_ws, tmp_path / "ws")
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


def _lora(path: Path = Path("models/adapter")) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "pytorch_lora_weights.safetensors"))


# ---------------------------------------------------------------- 1. resume is exact


class _Crash(Exception):
    """Stands in for kill -9 at a known step: nothing after it runs."""


def _crash_at(monkeypatch, step: int) -> None:
    """Crash in the middle of ``step``, after its optimiser update and before its checkpoint."""
    from landmark_lora.stages import train

    real = train._progress

    def progress(enabled, total, initial):
        bar = real(enabled, total, initial)
        update = bar.update

        def crashing_update(n=1):
            update(n)
            if bar.n >= step:
                raise _Crash(f"crash injected at step {step}")

        bar.update = crashing_update
        return bar

    monkeypatch.setattr(train, "_progress", progress)


def test_resumed_run_ends_with_the_uninterrupted_runs_weights(ws, monkeypatch):
    from landmark_lora.stages import train

    params = _params(train={"max_steps": 6, "checkpoint_every": 2, "eval_every": 3})
    train.run_training(params, log_mlflow=False)
    straight = _lora()
    assert not any(Path(".cache/train").glob("*/checkpoint-*"))  # finished runs leave none behind

    _crash_at(monkeypatch, 5)  # checkpoint-4 is the newest complete one; step 5 is lost
    with pytest.raises(_Crash):
        train.run_training(params, log_mlflow=False)
    assert sorted(p.name for p in Path(".cache/train").glob("*/checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    monkeypatch.undo()
    monkeypatch.chdir(ws)
    shutil.rmtree("models/adapter")

    result = train.run_training(params, log_mlflow=False)
    assert result.resumed_from == 4 and result.steps == 6
    resumed = _lora()
    assert straight.keys() == resumed.keys()
    # the two runs agree to float rounding (a resume that starts over is off by whole updates)
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=1e-5, atol=1e-6, msg=key)


# ---------------------------------------------------------------- 3. two processes really train


def test_two_processes_train_as_one_world_of_two(ws):
    """`landmark-lora train` with train.num_processes=2 (the CLI, as a user runs it; CPU ranks via
    torchrun). The one 2-process training of make test (tests/stages/test_train_multinode.py resumes one)."""
    import mlflow

    from landmark_lora.cli import main

    code = main(["--set", "train.num_processes=2", "--set", "train.max_steps=2", "train"])
    assert code == 0
    report = json.loads(Path("reports/train.json").read_text())
    assert report["steps"] == 2
    # what only two real processes leave behind: the trainer's own world size and global batch
    assert report["world_size"] == 2
    assert report["global_batch"] == 2 * TINY["train"]["batch_size"]
    assert (Path("models/adapter") / "pytorch_lora_weights.safetensors").exists()
    mlflow.set_tracking_uri(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("landmark-lora").experiment_id])
    assert [r.info.run_id for r in runs] == [report["mlflow_run_id"]]  # only rank 0 logs: one run
    run = runs[0]
    assert run.data.metrics["world_size"] == 2
    assert run.data.params["train.num_processes"] == "2"


# ---------------------------------------------------------------- 2, 4, 5, 7: one registry story


def _adapter_copy(dest: Path) -> Path:
    shutil.copytree("models/adapter", dest)
    return dest


@pytest.fixture(scope="module")
def story(base_ws, tmp_path_factory):
    """One registry, three rounds, as `make run` would do them night after night:

    1. adapter A (trained, evaluated) is promoted as the first champion; predict() on the
       champion is called;
    2. adapter B, trained longer on the same data, challenges A;
    3. new photos arrive (a new data version); adapter C challenges, so the champion is
       scored again on the new data first.
    Everything the tests check is recorded here; the tests compute their own expectations.
    """
    from landmark_lora.ops.promote import promote
    from landmark_lora.serving import load_registered
    from landmark_lora.stages.cache_latents import cache_latents
    from landmark_lora.stages.evaluate import evaluate
    from landmark_lora.stages.train import run_training

    root = _copy(base_ws, tmp_path_factory.mktemp("story") / "ws")
    keep = tmp_path_factory.mktemp("adapters")
    out: dict = {"root": root}
    with inside(root):
        params = _params()
        run_training(params)
        out["a_eval"] = evaluate(params)
        out["a_train"] = json.loads(Path("reports/train.json").read_text())
        out["a_adapter"] = _adapter_copy(keep / "a")
        out["a_report"] = promote(params)
        served = load_registered(NAME, "champion")
        out["served"] = served.predict(None, [{"prompt": PROMPT, "seed": 5}])
        out["served_steps"], out["served_guidance"] = served.steps, served.guidance

        longer = _params(train={"max_steps": 12})
        run_training(longer)
        out["b_eval"] = evaluate(longer)
        out["b_adapter"] = _adapter_copy(keep / "b")
        out["b_report"] = promote(longer)

        out["b_data_version"] = _client().get_model_version(NAME, out["b_report"]["champion"]).tags["data_version"]
        write_processed(Path("."), n_train=8, n_val=3)  # new photos: a new data version
        cache_latents(params)
        run_training(params)
        evaluate(params)
        out["c_report"] = promote(params)
        out["params"] = params
        yield out


@pytest.fixture
def in_story(story, monkeypatch):
    monkeypatch.chdir(story["root"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return story


def _client():
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    return mlflow.MlflowClient()


def test_evaluate_scores_the_adapter_not_the_base(in_story):
    a_eval, a_train = in_story["a_eval"], in_story["a_train"]
    # the README: "the same number training logs"
    assert a_eval["eval_loss"] == pytest.approx(a_train["eval_loss"], rel=1e-5)
    # and training moved the weights, so the base scores differently (fixed noise: no jitter to allow for)
    assert abs(a_eval["eval_loss"] - a_eval["base"]["eval_loss"]) > 1e-3 * a_eval["base"]["eval_loss"]
    assert a_eval["output_change"] > 0.01


def _render(pipe, steps: int, guidance: float, seed: int = 5) -> np.ndarray:
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    image = pipe(PROMPT, width=size, height=size, num_inference_steps=steps, guidance_scale=guidance,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.float32)


def test_served_champion_draws_the_adapters_image_not_the_bases(in_story):
    from landmark_lora.diffusion.components import resolve_base
    from landmark_lora.diffusion.pipeline import load_pipeline

    assert in_story["a_report"]["decision"] == "promoted"
    [png] = in_story["served"]
    served = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB"), dtype=np.float32)
    steps, guidance = in_story["served_steps"], in_story["served_guidance"]
    base = resolve_base(in_story["params"].model)
    with_adapter = _render(load_pipeline(base, in_story["a_adapter"], device="auto"), steps, guidance)
    plain = _render(load_pipeline(base, device="auto"), steps, guidance)
    assert served.shape == with_adapter.shape
    assert np.abs(served - with_adapter).max() <= 1.0  # the same image, to PNG rounding
    assert np.abs(served - plain).mean() > 2.0  # and clearly not the base's


def test_challenger_that_beats_the_champion_is_promoted(in_story):
    a, b = in_story["a_report"], in_story["b_report"]
    gain = (a["challenger"]["metrics"]["eval_loss"] - b["challenger"]["metrics"]["eval_loss"]) \
        / a["challenger"]["metrics"]["eval_loss"]
    assert gain >= in_story["params"].promotion.min_improvement, "the longer run should score better"
    assert b["decision"] == "promoted", b["reason"]
    assert b["previous_champion"]["version"] == a["challenger"]["version"]
    assert b["previous_champion"]["rescored"] is False  # same data: the champion's tags were comparable
    assert b["champion"] == b["challenger"]["version"] != a["challenger"]["version"]
    client = _client()
    version = client.get_model_version(NAME, b["challenger"]["version"])
    assert version.tags["promotion_decision"] == "promoted"
    assert version.tags["previous_champion"] == a["challenger"]["version"]


def test_rescored_champion_is_judged_by_its_new_numbers(in_story):
    from landmark_lora.diffusion.components import resolve_base
    from landmark_lora.diffusion.pipeline import load_pipeline
    from landmark_lora.stages.evaluate import held_out_loss

    b, c = in_story["b_report"], in_story["c_report"]
    prev = c["previous_champion"]
    assert prev["version"] == b["challenger"]["version"] and prev["rescored"] is True
    # B's loss on the new val data, computed here from B's own adapter files
    params = in_story["params"]
    pipe = load_pipeline(resolve_base(params.model), in_story["b_adapter"], device="auto")
    fresh = held_out_loss(params, pipe)["eval_loss"]
    stale = b["challenger"]["metrics"]["eval_loss"]
    assert abs(fresh - stale) > 1e-4 * stale  # the new data really scores differently
    assert prev["metrics"]["eval_loss"] == pytest.approx(fresh, rel=1e-5)
    assert f"vs champion {fresh:.5f}" in c["checks"][0]  # the decision used the new number
    tags = _client().get_model_version(NAME, prev["version"]).tags
    assert float(tags["eval_loss"]) == pytest.approx(fresh, rel=1e-5)
    # both were judged on the same (new) data: the champion's tags now carry the new data version
    assert tags["rescored_at"] and tags["data_version"] != in_story["b_data_version"]
    assert tags["data_version"] == _client().get_model_version(NAME, c["challenger"]["version"]).tags["data_version"]


# ---------------------------------------------------------------- 7. decisions at their edges (pure)

GOOD = {"eval_loss": 1.0, "background_consistency": 0.5, "shot_agreement": 0.6, "output_change": 0.05}


def test_a_gain_exactly_at_the_margin_is_enough():
    params = parse_params({"promotion": {"min_improvement": 0.25}})  # 1.0 -> 0.75: exactly 25 %, exact in binary
    d = decide({**GOOD, "eval_loss": 0.75}, GOOD, params, [])
    assert d.promote, d.reason
    assert not decide({**GOOD, "eval_loss": 0.7500001}, GOOD, params, []).promote


@pytest.mark.parametrize("margin", [0.0, 0.01])
def test_a_champion_with_zero_eval_loss_cannot_be_beaten(margin):
    params = parse_params({"promotion": {"min_improvement": margin}})
    champion = {**GOOD, "eval_loss": 0.0}
    worse = decide({**GOOD, "eval_loss": 0.5}, champion, params, [])
    assert not worse.promote and "did not improve enough" in worse.reason
    tie = decide({**GOOD, "eval_loss": 0.0}, champion, params, [])
    assert tie.promote is (margin == 0.0)  # no gain is enough only when no gain is asked for
