"""Train: peft LoRA on the UNet attention with accelerate, logged to MLflow.

    landmark-lora train                                  # the DVC stage `train`
    landmark-lora --set train.num_processes=2 train      # 2 processes (gloo on CPU, NCCL on GPU)
    ACCELERATE_USE_CPU=1 torchrun --standalone --nproc_per_node 2 -m landmark_lora.stages.train
    accelerate launch --config_file infra/accelerate/8gpu.yaml -m landmark_lora.stages.train

Reads cached latents and caption embeddings (``data/latents``), or encodes on every step with
``train.cached_latents: false``. AdamW with warm-up and cosine decay, gradient accumulation and
clipping, min-SNR-gamma weighting, noise offset, caption dropout, bf16 on GPU.

Checkpoints go to ``.cache/train/<run-key>/checkpoint-<step>`` every ``train.checkpoint_every``
steps: written under a temporary name, then renamed, so a crash never leaves a checkpoint that
looks complete. ``train.resume: auto`` continues from the newest one of the same run key
(same data, base and params) and keeps logging into the same MLflow run. Only rank 0 logs,
evaluates and exports; every rank saves its own RNG state. The loop itself lives in
``landmark_lora.diffusion.trainer`` (checkpoints in ``diffusion.checkpoints``); this stage
launches it, logs to MLflow and writes what it made.

Exports ``models/adapter/`` (diffusers/peft + kohya safetensors), ``reports/train.json`` and
``reports/plots/{train_loss,eval_loss}.csv`` (paths from ``artifacts.Layout``).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from landmark_lora import fsutil, logs
from landmark_lora.artifacts import Layout, TrainReport, data_version
from landmark_lora.config import Params, load_params, parse_overrides
from landmark_lora.diffusion import token_embeddings, trainer
from landmark_lora.diffusion.checkpoints import run_key
from landmark_lora.env import apply_offline_defaults, pin_threads

log = logs.get_logger(__name__)


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    eval: dict[str, float]
    images_per_sec: float
    seconds_per_step: float
    run_id: str | None
    adapter_dir: Path | None
    resumed_from: int
    loop_seconds: float = 0.0  # wall time of the training loop (the nightly run's overhead excludes it)
    world_size: int = 1  # processes that trained together, as the trainer saw them (not the config)
    global_batch: int = 0  # samples per optimiser step over all processes
    train_seconds: float = 0.0  # the optimiser steps' wall time (images_per_sec's denominator)
    compile_seconds: float = 0.0  # train.compile: wall time of the steps that compiled (within train_seconds)
    compile_steps: int = 0

    @property
    def images_per_sec_after_compile(self) -> float:
        """Throughput over the steps that did not compile (``images_per_sec`` counts every step)."""
        steps = self.steps - self.resumed_from - self.compile_steps
        seconds = self.train_seconds - self.compile_seconds
        return steps * self.global_batch / seconds if steps > 0 and seconds > 0 else float("nan")


def run_training(params: Params, export: bool = True, log_mlflow: bool = True,
                 max_seconds: float | None = None) -> TrainResult:
    """Train on this process (one rank of a launch); rank 0 exports and writes the reports."""
    pin_threads(params.train.threads)
    layout = Layout.of(params)
    session = trainer.setup(params, layout)
    run_dir = layout.train_runs / run_key(params, session.identity)
    start = trainer.resume(session, run_dir)
    mlflow_run = _start_mlflow(params, start.run_id, log_mlflow and session.main)
    run_id = mlflow_run.info.run_id if mlflow_run else start.run_id
    bar = _progress(session.main, params.train.max_steps, start.step)
    done = trainer.train_steps(session, start, run_dir, run_id, bar, _metric_logger(mlflow_run), max_seconds)
    bar.close()
    steps = done.step - start.step
    result = TrainResult(done.step, float(np.mean(done.history[-5:])) if done.history else float("nan"),
                         done.eval_metrics, steps * done.global_batch / max(done.train_seconds, 1e-9),
                         done.train_seconds / max(steps, 1), run_id, None, start.step, done.loop_seconds,
                         world_size=session.accelerator.num_processes, global_batch=done.global_batch,
                         train_seconds=done.train_seconds, compile_seconds=done.compile_seconds,
                         compile_steps=done.compile_steps)
    session.accelerator.wait_for_everyone()
    if session.main:
        _finish(params, layout, session, done, result, mlflow_run, export)
        if math.isfinite(result.final_loss) and done.step == params.train.max_steps:
            shutil.rmtree(run_dir, ignore_errors=True)  # finished: the next run starts fresh
        if mlflow_run:
            import mlflow

            mlflow.end_run()
    session.accelerator.wait_for_everyone()
    session.accelerator.end_training()
    return result


def _finish(params: Params, layout: Layout, session: trainer.Session, done: trainer.Trained, result: TrainResult,
            mlflow_run, export: bool) -> None:
    """Rank 0: export the adapter, log the run's totals and write the reports."""
    if not export:
        return
    unwrap = session.accelerator.unwrap_model
    text_encoder = unwrap(session.text_encoder) if session.text_encoder is not None else None
    # the trained landmark tokens (or, without them, no stale file from an earlier run)
    token_embeddings.save(layout.token_embeddings, text_encoder, session.tokens, session.token_ids,
                          {"base_model": params.model.base, "base_fingerprint": session.fingerprint})
    result.adapter_dir = _export(params, layout, unwrap(session.unet),
                                 text_encoder if params.lora.text_encoder else None, session.fingerprint)
    if mlflow_run:
        import mlflow

        mlflow.log_metrics({"final_loss": result.final_loss, "images_per_sec": result.images_per_sec,
                            "seconds_per_step": result.seconds_per_step, "world_size": result.world_size,
                            "global_batch": result.global_batch,
                            **({"compile_seconds": result.compile_seconds} if params.train.compile else {})})
        mlflow.log_artifacts(str(result.adapter_dir), artifact_path="adapter")
    _write_report(layout, result)
    _write_curves(layout, done.curve)


def _progress(enabled: bool, total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, file=sys.stderr)


def _metric_logger(mlflow_run):
    """Per-step metrics into the MLflow run (rank 0 only has one), or None."""
    if mlflow_run is None:
        return None
    import mlflow

    return lambda metrics, step: mlflow.log_metrics(metrics, step=step)


def _start_mlflow(params: Params, run_id: str | None, enabled: bool):
    if not enabled:
        return None
    import mlflow

    from landmark_lora.tracking import configure, log_datasets, run_params, run_tags

    experiment_id = configure(params.mlflow)
    if run_id:
        try:
            return mlflow.start_run(run_id=run_id, log_system_metrics=params.mlflow.system_metrics)
        except Exception as err:  # e.g. run deleted: continue in a fresh run, but say so
            log.warning("train: cannot reopen MLflow run %s (%s); starting a new run", run_id, err)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{time.strftime('%Y%m%d-%H%M%S')}",
                           tags=run_tags(params, {"stage": "train"}),
                           log_system_metrics=params.mlflow.system_metrics)
    mlflow.log_params(run_params(params))
    try:
        log_datasets(params)  # the run page's Datasets: train and val splits, DVC path and md5
    except Exception as err:  # bookkeeping: never fails a training run
        log.warning("train: could not log the datasets to MLflow (%s)", err)
    return run


def _export(params: Params, layout: Layout, unet, text_encoder, fingerprint: str) -> Path:
    from landmark_lora.diffusion.lora_export import export_adapter
    from landmark_lora.tracking import git_sha

    metadata = {
        "base_model": params.model.base,
        "base_fingerprint": fingerprint,
        "rank": str(params.lora.rank),
        "alpha": str(params.lora.alpha),
        "trigger_words": params.caption.trigger,
        "data_version": data_version(layout),
        "git_sha": git_sha(),
        "steps": str(params.train.max_steps),
    }
    export_adapter(layout.adapter_dir, unet, text_encoder=text_encoder, metadata=metadata)
    return layout.adapter_dir


def _write_report(layout: Layout, result: TrainResult) -> TrainReport:
    report = TrainReport(
        mlflow_run_id=result.run_id, data_version=data_version(layout), steps=result.steps,
        eval_loss=result.eval.get("eval_loss"),
        extra={
            "final_loss": result.final_loss,
            "eval": result.eval,
            "images_per_sec": round(result.images_per_sec, 3),
            "seconds_per_step": round(result.seconds_per_step, 4),
            "loop_seconds": round(result.loop_seconds, 2),
            "resumed_from_step": result.resumed_from,
            "world_size": result.world_size,
            "global_batch": result.global_batch,
            "diverged": not math.isfinite(result.final_loss),
            # train.compile: the steps that compiled, counted in seconds_per_step too; the steps after them alone
            **({"compile_seconds": round(result.compile_seconds, 2), "compile_steps": result.compile_steps,
                "images_per_sec_after_compile": round(result.images_per_sec_after_compile, 3)}
               if result.compile_steps else {}),
        })
    report.write(layout.train_json)
    return report


def _write_curves(layout: Layout, curve: list[dict]) -> None:
    """reports/plots/{train_loss,eval_loss}.csv: the DVC plots of the train stage (`dvc plots show`,
    `dvc plots diff` between commits). A resumed run carries the rows from its checkpoint."""
    lines = ["step,loss,lr"] + [f"{r['step']},{r['loss']:.6g},{r['lr']:.6g}" for r in curve]
    fsutil.write_text_atomic(layout.plots / "train_loss.csv", "\n".join(lines) + "\n")
    lines = ["step,eval_loss"] + [f"{r['step']},{r['eval_loss']:.6g}" for r in curve if "eval_loss" in r]
    fsutil.write_text_atomic(layout.plots / "eval_loss.csv", "\n".join(lines) + "\n")


# ---------------------------------------------------------------- launching


def _launch_command(n: int, argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """torchrun with ACCELERATE_USE_CPU=1 (gloo) on CPU: `accelerate launch --cpu --num_processes N`
    would start only one process. On GPUs, `accelerate launch`."""
    env = dict(os.environ)
    if torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU") != "1":
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n)]
        if env.get("ACCELERATE_CONFIG_FILE"):
            cmd += ["--config_file", env["ACCELERATE_CONFIG_FILE"]]
    else:
        env["ACCELERATE_USE_CPU"] = "1"
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n)]
    return cmd + ["-m", "landmark_lora.stages.train", *argv], env


def launch(params: Params, argv: list[str]) -> int:
    """Run in this process, or relaunch on ``train.num_processes`` processes (``argv``: --params/--set)."""
    n = params.train.num_processes
    if n > 1 and "LOCAL_RANK" not in os.environ:
        cmd, env = _launch_command(n, argv)
        log.info("train: launching %d processes: %s", n, " ".join(cmd[1:]))
        return subprocess.run(cmd, env=env, check=False).returncode
    result = run_training(params)
    if result.adapter_dir is not None:
        log.info("train: %d steps, final loss %.4f, eval loss %.4f, %.1f img/s -> %s/%s", result.steps,
                 result.final_loss, result.eval.get("eval_loss", float("nan")), result.images_per_sec,
                 result.adapter_dir, f" (MLflow run {result.run_id})" if result.run_id else "")
    # A diverged run still exports: evaluate and the promotion gates judge it and say why,
    # which is more useful than a failed pipeline with no challenger to inspect.
    return 0


def run(params: Params) -> TrainReport:
    """The DVC stage in this process: train, then return ``reports/train.json`` as written."""
    run_training(params)
    return TrainReport.read(Layout.of(params).train_json)


def main(argv: list[str] | None = None) -> int:
    """Entry point for torchrun / accelerate launch: ``-m landmark_lora.stages.train``."""
    parser = argparse.ArgumentParser(prog="landmark_lora.stages.train")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    logs.setup(0)  # this process is not started through the CLI: log like it (rank 0 only)
    apply_offline_defaults()
    params = load_params(args.params, parse_overrides(args.overrides))
    run_training(params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
