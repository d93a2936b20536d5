"""Training end to end on the tiny base: exports, MLflow, eval determinism, resume after kill -9,
cache invalidation. Runs the real trainer, as diffusers' tests do. 2-process training: tests/ops/test_promises.py
(the CLI, world size, one MLflow run) and test_train_multinode.py (resume across ranks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from landmark_lora.config import parse_params
from tests.helpers.tiny_data import cached_workspace
from tests.helpers.tiny_params import TINY_TRAIN, deep_merge

TINY, _deep_merge = TINY_TRAIN, deep_merge  # other test modules of this folder import these names


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace with processed data, the tiny base and cached latents; tests chdir into it."""
    return cached_workspace(tmp_path_factory.mktemp("ws"), _deep_merge(TINY, {}))


@pytest.fixture
def in_ws(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return workspace


def _params(**over):
    return parse_params(_deep_merge(TINY, over))


def _mlflow_client():
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    return mlflow.MlflowClient()


# ---------------------------------------------------------------- the trainer


def test_cached_latents_cover_every_image_and_caption(in_ws):
    from landmark_lora.diffusion.latents import caption_key, load_latents

    entries, tensors = load_latents(Path("data/latents"), "train")
    assert len(entries) == 6
    for e in entries:
        assert tensors[f"{e['index']}.mean"].shape == (4, e["height"] // 8, e["width"] // 8)
        assert tensors[f"{e['index']}.std"].shape == (4, e["height"] // 8, e["width"] // 8)
        assert caption_key(e["text"]) in tensors
    assert "text.empty" in tensors  # for caption dropout


def test_training_exports_adapter_and_logs_to_mlflow(in_ws):
    from landmark_lora.stages.train import run_training

    result = run_training(_params())
    assert result.steps == 4 and np.isfinite(result.final_loss)
    adapter = Path("models/adapter")
    assert (adapter / "pytorch_lora_weights.safetensors").exists()
    assert (adapter / "landmark_lora_kohya.safetensors").exists()
    report = json.loads(Path("reports/train.json").read_text())
    assert report["steps"] == 4 and report["mlflow_run_id"] == result.run_id

    client = _mlflow_client()
    run = client.get_run(result.run_id)
    assert run.data.params["train.max_steps"] == "4"
    assert run.data.params["lora.rank"] == "4"
    assert run.data.tags["base_model"] == "tiny" and run.data.tags["git_sha"]
    assert "data_version" in run.data.tags
    for key in ("loss", "lr", "eval_loss", "eval_loss_t200"):
        assert key in run.data.metrics, key
    assert [m.step for m in client.get_metric_history(result.run_id, "loss")] == [1, 2, 3, 4]
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "adapter")}
    assert "adapter/pytorch_lora_weights.safetensors" in artifacts
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "landmark-lora"
    # a finished run leaves no checkpoints behind, so the next run starts fresh
    assert not any(Path(".cache/train").glob("*/checkpoint-*"))


def test_learning_rate_warms_up_then_decays(in_ws):
    from landmark_lora.stages.train import run_training

    result = run_training(_params(train={"max_steps": 6, "warmup_steps": 2}), export=False)
    client = _mlflow_client()
    lrs = [m.value for m in sorted(client.get_metric_history(result.run_id, "lr"), key=lambda m: m.step)]
    assert lrs[0] < lrs[1]  # warm-up
    assert lrs[-1] < lrs[2]  # cosine decay


def test_eval_loss_is_deterministic_and_restores_rng(in_ws):
    from landmark_lora.diffusion.components import load_components, resolve_base
    from landmark_lora.diffusion.latents import load_latents
    from landmark_lora.diffusion.loss import Encoder, Split, evaluate_loss

    params = _params()
    parts = load_components(resolve_base(params.model), unet=True)
    entries, tensors = load_latents(Path("data/latents"), "val")
    enc = Encoder(Split(entries, tensors=tensors), parts, torch.device("cpu"), torch.float32, False)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = evaluate_loss(parts.unet, parts.scheduler, enc, (100, 500, 900), seed=7)
    assert torch.equal(before, torch.get_rng_state())  # training noise stream untouched
    b = evaluate_loss(parts.unet, parts.scheduler, enc, (100, 500, 900), seed=7)
    c = evaluate_loss(parts.unet, parts.scheduler, enc, (100, 500, 900), seed=8)
    assert a == b
    assert a["eval_loss"] != c["eval_loss"]
    assert set(a) == {"eval_loss", "eval_loss_t100", "eval_loss_t500", "eval_loss_t900"}


def test_uncached_mode_sees_the_same_data_as_cached(in_ws):
    from landmark_lora.diffusion.components import load_components, resolve_base
    from landmark_lora.diffusion.latents import load_latents
    from landmark_lora.diffusion.loss import Encoder, Split, evaluate_loss

    params = _params()
    parts = load_components(resolve_base(params.model), unet=True, vae=True, text=True)
    entries, tensors = load_latents(Path("data/latents"), "val")
    cached = Encoder(Split(entries, tensors=tensors), parts, torch.device("cpu"), torch.float32, False)
    live = Encoder(Split(entries, image_dir=Path("data/processed/val")), parts, torch.device("cpu"), torch.float32, False)
    a = evaluate_loss(parts.unet, parts.scheduler, cached, (300,), seed=1)
    b = evaluate_loss(parts.unet, parts.scheduler, live, (300,), seed=1)
    assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-4)


def test_latents_from_another_base_are_refused(in_ws):
    from landmark_lora.diffusion.latents import load_latents

    with pytest.raises(ValueError, match="rerun `dvc repro cache_latents`"):
        load_latents(Path("data/latents"), "train", expect_fingerprint="0000000000000000")


def test_base_fingerprint_follows_weights(tmp_path):
    import shutil

    from landmark_lora.diffusion.components import base_fingerprint, resolve_base

    src = resolve_base(parse_params({}).model)
    copy = tmp_path / "base"
    shutil.copytree(src, copy)
    assert base_fingerprint(copy) == base_fingerprint(src)
    vae = next((copy / "vae").glob("*.safetensors"))
    data = bytearray(vae.read_bytes())
    data[-1] ^= 0xFF
    vae.write_bytes(bytes(data))
    assert base_fingerprint(copy) != base_fingerprint(src)


def test_batch_plan_is_a_pure_function_of_step():
    from landmark_lora.diffusion.batchplan import BatchPlan
    from landmark_lora.diffusion.loss import Split

    entries = [{"width": (64, 72)[i % 3 == 0], "height": 64} for i in range(11)]
    plan_a = BatchPlan(Split(entries), per_rank=2, world=2, seed=3)
    plan_b = BatchPlan(Split(entries), per_rank=2, world=2, seed=3)
    seq_a = [plan_a.batch(m, r) for m in range(20) for r in range(2)]
    seq_b = [plan_b.batch(m, r) for m in reversed(range(20)) for r in range(2)]
    assert seq_a == [x for m in range(20) for x in seq_b[(19 - m) * 2:(19 - m) * 2 + 2]]
    for m in range(20):  # one shape per global batch, ranks disjoint slices of it
        both = plan_a.batch(m, 0) + plan_a.batch(m, 1)
        assert len({(entries[i]["width"], entries[i]["height"]) for i in both}) == 1
        assert len(plan_a.batch(m, 0)) == 2


def test_caption_dropout_replays_whatever_else_draws_from_random():
    """A resumed run drops the same captions even when another thread used the process-wide ``random``."""
    import random

    from landmark_lora.diffusion.batchplan import BatchPlan
    from landmark_lora.diffusion.loss import Split

    plan = BatchPlan(Split([{"width": 64, "height": 64}] * 8), per_rank=4, world=2, seed=3)
    first = [plan.dropped(m, r, 0.5) for m in range(30) for r in range(2)]
    random.seed(0)
    random.random()  # what a server's retry jitter would do between checkpoint and resume
    assert [plan.dropped(m, r, 0.5) for m in range(30) for r in range(2)] == first
    assert 0.3 < sum(map(sum, first)) / (30 * 2 * 4) < 0.7  # the rate is kept
    assert plan.dropped(0, 0, 0.5) != plan.dropped(0, 1, 0.5) or plan.dropped(1, 0, 0.5) != plan.dropped(1, 1, 0.5)
    assert not any(map(any, (plan.dropped(m, 0, 0.0) for m in range(30))))


# ---------------------------------------------------------------- processes


def _train_cmd(*sets: str) -> list[str]:
    cmd = [sys.executable, "-m", "landmark_lora.stages.train", "--params", "params.yaml"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def test_resume_after_kill_continues_to_the_same_final_step(in_ws):
    import shutil

    shutil.rmtree(".cache/train", ignore_errors=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    # 24 steps: the first checkpoint (step 3) is killed with 21 steps to spare, then resumed to the end
    sets = ("train.max_steps=24", "train.checkpoint_every=3", "train.eval_every=12")
    proc = subprocess.Popen(_train_cmd(*sets), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if any((p / "state.json").exists() for p in Path(".cache/train").glob("*/checkpoint-*")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training finished before it could be killed:\n" + proc.stdout.read().decode()
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no atexit: a real crash
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ckpts = sorted(Path(".cache/train").glob("*/checkpoint-*"))
    assert ckpts, "no complete checkpoint was written"
    killed_at = max(int(p.name.split("-")[1]) for p in ckpts)
    assert not any(p.name.endswith(".tmp") and (p / "state.json").exists() for p in Path(".cache/train").glob("*/.*"))

    out = subprocess.run(_train_cmd(*sets), env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resuming from" in out.stdout
    report = json.loads(Path("reports/train.json").read_text())
    assert report["steps"] == 24
    assert report["resumed_from_step"] >= killed_at > 0
    # the curve continues in the same MLflow run, up to the final step
    steps = {m.step for m in _mlflow_client().get_metric_history(report["mlflow_run_id"], "loss")}
    assert set(range(1, 25)) <= steps
    # and so does the DVC plot: every step once, the pre-crash rows carried over from the checkpoint
    rows = Path("reports/plots/train_loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,lr" and [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 25))
    evals = Path("reports/plots/eval_loss.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in evals[1:]] == [12, 24]


def test_text_encoder_lora_trains_checkpoints_and_exports(in_ws):
    from safetensors import safe_open

    from landmark_lora.stages.train import run_training

    result = run_training(_params(lora={"text_encoder": True}, train={"max_steps": 3, "checkpoint_every": 2}),
                          log_mlflow=False)
    assert result.steps == 3 and np.isfinite(result.final_loss)
    with safe_open("models/adapter/pytorch_lora_weights.safetensors", "pt") as fh:
        keys = list(fh.keys())
    assert any(k.startswith("text_encoder.") for k in keys) and any(k.startswith("unet.") for k in keys)
    with safe_open("models/adapter/landmark_lora_kohya.safetensors", "pt") as fh:
        assert any(k.startswith("lora_te_") for k in fh.keys())  # noqa: SIM118 (safe_open is not iterable)
