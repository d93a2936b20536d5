"""``train.compile``: the UNet's training steps through torch.compile (inductor, CPU) on the tiny base.

The param checks are quick. The training runs compile the tiny UNet (5-25 minutes on 2 cores, most of
it inductor's C++ builds on a cold cache), so they carry their own ``compile`` marker (``make
test-compile``), outside ``make test`` and CI's ``make test-e2e``. Tolerance: compiled
losses within 1e-4 relative of eager, step by step (inductor fuses and reorders float ops; on the
bench's 30 steps eval_loss moved by 3e-8, docs/benchmarks.md), the same exported adapter keys,
weights within 1e-4 relative (atol 1e-6).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from landmark_lora.config import ConfigError, parse_params
from tests.helpers.tiny_data import cached_workspace
from tests.helpers.tiny_params import TINY_TRAIN, deep_merge


def test_compile_is_a_typed_param_off_by_default():
    assert parse_params({}).train.compile is False
    assert parse_params({"train": {"compile": True}}).train.compile is True
    with pytest.raises(ConfigError, match=r"train\.compile"):
        parse_params({"train": {"compile": "sometimes"}})
    with pytest.raises(ConfigError, match="did you mean 'compile'"):
        parse_params({"train": {"compiled": True}})


def test_shipped_params_keep_compile_off():
    repo = Path(__file__).resolve().parents[2]
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["compile"] is False


def test_compile_changes_the_run_key_so_no_checkpoint_mixes_the_two():
    from landmark_lora.diffusion.checkpoints import run_key

    eager = parse_params(TINY_TRAIN)
    compiled = parse_params(deep_merge(TINY_TRAIN, {"train": {"compile": True}}))
    assert run_key(eager, "data") != run_key(compiled, "data")


def test_the_inductor_cache_lives_under_paths_cache(tmp_path, monkeypatch):
    from landmark_lora.artifacts import Layout
    from landmark_lora.diffusion import compiled

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/nonexistent-before")
    layout = Layout.of(parse_params({"paths": {"cache": str(tmp_path / "c")}}))
    assert layout.inductor_cache == tmp_path / "c" / "inductor"
    where = compiled.use_cache(layout.inductor_cache)
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    assert where.is_dir() and cache_dir() == str(where) == os.environ["TORCHINDUCTOR_CACHE_DIR"]


# ---------------------------------------------------------------- training runs (compile: minutes)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return cached_workspace(tmp_path_factory.mktemp("ws-compile"), TINY_TRAIN)


def _train(compile_: bool, **train) -> tuple[dict, list[float], dict]:
    """One run (cwd: the workspace): train.json, the per-step losses, the exported adapter's tensors."""
    from safetensors.torch import load_file

    from landmark_lora.stages.train import run_training

    run_training(parse_params(deep_merge(TINY_TRAIN, {"train": {"compile": compile_, **train}})), log_mlflow=False)
    rows = Path("reports/plots/train_loss.csv").read_text().splitlines()[1:]
    return (json.loads(Path("reports/train.json").read_text()), [float(r.split(",")[1]) for r in rows],
            load_file("models/adapter/pytorch_lora_weights.safetensors"))


@pytest.mark.compile
@pytest.mark.timeout(2400)  # two cold compiles (two bucket shapes): 5-15 min on 2 busy cores
def test_compiled_training_matches_eager_and_fills_the_cache(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    eager_report, eager_losses, eager_weights = _train(False)
    report, losses, weights = _train(True)

    assert len(losses) == len(eager_losses) == 4
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-4)
    assert report["eval_loss"] == pytest.approx(eager_report["eval_loss"], rel=1e-4)
    assert sorted(weights) == sorted(eager_weights)  # no `_orig_mod.` in the exported keys
    assert not any("_orig_mod" in k for k in weights)
    for key, value in eager_weights.items():
        np.testing.assert_allclose(weights[key].numpy(), value.numpy(), rtol=1e-4, atol=1e-6, err_msg=key)
    # two buckets (64x64, 72x56): each shape compiles once (dynamic=False), the first on step 1
    assert report["compile_steps"] == 2 and report["compile_seconds"] > 0
    assert report["images_per_sec_after_compile"] > 0 and "compile_seconds" not in eager_report
    assert any(Path(".cache/inductor").rglob("*")), "the compiled kernels went somewhere else"


@pytest.mark.compile
@pytest.mark.timeout(2400)
def test_a_compiled_run_resumes_from_its_checkpoint_to_the_same_losses(workspace, monkeypatch):
    from landmark_lora.diffusion import trainer

    monkeypatch.chdir(workspace)
    _, whole, _ = _train(True)
    saved = trainer.save_checkpoint

    def crash_after_first_checkpoint(acc, run_dir, step, state, keep):
        saved(acc, run_dir, step, state, keep)
        raise RuntimeError("killed after checkpoint-2")

    monkeypatch.setattr(trainer, "save_checkpoint", crash_after_first_checkpoint)
    with pytest.raises(RuntimeError, match="killed after checkpoint-2"):
        _train(True)
    monkeypatch.setattr(trainer, "save_checkpoint", saved)
    report, resumed, _ = _train(True)
    assert report["resumed_from_step"] == 2
    np.testing.assert_allclose(resumed, whole, rtol=1e-6)  # same kernels (cache), same batches, same RNG


@pytest.mark.compile
@pytest.mark.timeout(2400)
def test_two_process_cpu_training_compiles_each_rank(workspace, monkeypatch):
    """torchrun + gloo: each rank compiles the DDP-wrapped UNet (accelerate's own dynamo_backend does the
    same); rank 0 exports plain keys and reports the compile."""
    from safetensors.torch import load_file

    from landmark_lora.cli import main

    monkeypatch.chdir(workspace)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(["--set", "train.num_processes=2", "--set", "train.max_steps=3", "--set", "train.compile=true",
                 "--set", "mlflow.system_metrics=false", "train"])
    assert code == 0
    report = json.loads(Path("reports/train.json").read_text())
    assert report["steps"] == 3 and report["world_size"] == 2 and report["compile_steps"] >= 1
    assert np.isfinite(report["final_loss"])
    keys = load_file("models/adapter/pytorch_lora_weights.safetensors")
    assert keys and not any("_orig_mod" in k or ".module." in k for k in keys)
