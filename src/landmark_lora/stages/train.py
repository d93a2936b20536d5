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
evaluates and exports; every rank saves its own RNG state.

Exports ``models/adapter/`` (diffusers/peft + kohya safetensors) and ``reports/train.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from landmark_lora import fsutil
from landmark_lora.config import Params, load_params, parse_overrides
from landmark_lora.diffusion.components import base_fingerprint, load_components, read_split, resolve_base
from landmark_lora.diffusion.latents import INDEX_NAME, LATENTS_DIR, load_latents
from landmark_lora.diffusion.loss import Encoder, Split, diffusion_loss, evaluate_loss
from landmark_lora.env import apply_offline_defaults

RUNS_DIR = Path(".cache/train")
ADAPTER_DIR_NAME = "adapter"


# ---------------------------------------------------------------- data


class BatchPlan:
    """Deterministic bucketed batches: micro-batch m of the whole run, for any rank.

    Each batch comes from one bucket (same shape). A bucket smaller than a batch wraps around.
    Because batch m is a pure function of (seed, m), resuming at any step replays exactly the
    batches an uninterrupted run would have seen.
    """

    def __init__(self, split: Split, per_rank: int, world: int, seed: int):
        self.split, self.per_rank, self.world, self.seed = split, per_rank, world, seed
        self.global_batch = per_rank * world
        self._epoch_cache: dict[int, list[list[int]]] = {}
        self.batches_per_epoch = len(self._epoch(0))

    def _epoch(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epoch_cache:
            rng = random.Random(self.seed * 1_000_003 + epoch)
            batches = []
            for key in sorted(self.split.buckets):
                idx = list(self.split.buckets[key])
                rng.shuffle(idx)
                n = max(1, math.ceil(len(idx) / self.global_batch))
                padded = (idx * math.ceil(n * self.global_batch / len(idx)))[: n * self.global_batch]
                batches += [padded[i * self.global_batch:(i + 1) * self.global_batch] for i in range(n)]
            rng.shuffle(batches)
            self._epoch_cache = {epoch: batches}  # keep one epoch in memory
        return self._epoch_cache[epoch]

    def batch(self, micro: int, rank: int) -> list[int]:
        epoch, pos = divmod(micro, self.batches_per_epoch)
        full = self._epoch(epoch)[pos]
        return full[rank * self.per_rank:(rank + 1) * self.per_rank]


# ---------------------------------------------------------------- checkpoints


def run_key(params: Params, data_fingerprint: str) -> str:
    t = params.train.model_dump(mode="json")
    for volatile in ("resume", "num_workers", "eval_every", "checkpoint_every", "checkpoints_keep"):
        t.pop(volatile, None)
    blob = json.dumps({"train": t, "lora": params.lora.model_dump(mode="json"), "base": params.model.base,
                       "data": data_fingerprint}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints whose state.json exists (it is written last, before the rename), oldest first."""
    found = [p for p in run_dir.glob("checkpoint-*") if (p / "state.json").exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def find_resume(params: Params, run_dir: Path) -> Path | None:
    mode = params.train.resume
    if mode == "never":
        return None
    if mode == "auto":
        done = complete_checkpoints(run_dir)
        return done[-1] if done else None
    path = Path(mode)
    if not (path / "state.json").exists():
        raise FileNotFoundError(f"train.resume: {path} is not a complete checkpoint (no state.json)")
    return path


class CheckpointNotShared(RuntimeError):
    """A rank cannot read the checkpoint rank 0 resumes from (multi-node without shared storage)."""


def shared_resume_point(accelerator, params: Params, run_dir: Path) -> Path | None:
    """The checkpoint every rank resumes from: rank 0 chooses it and broadcasts its path.

    Only rank 0 writes checkpoints, so a rank on another node finds it only when ``.cache/train``
    is on storage all nodes share. Each rank checks that it reads the same ``state.json`` as
    rank 0; if one cannot, every rank raises CheckpointNotShared naming the path, instead of
    some ranks starting at step 0 while rank 0 resumes."""
    import socket

    n = accelerator.num_processes
    choice: list[dict | None] = [None]
    if accelerator.is_main_process:
        try:
            found = find_resume(params, run_dir)
            digest = hashlib.sha256((found / "state.json").read_bytes()).hexdigest() if found else ""
            choice = [{"path": str(found) if found else None, "sha256": digest}]
        except (OSError, ValueError) as err:  # say it on every rank, not only on rank 0
            choice = [{"error": f"{type(err).__name__}: {err}"}]
    if n > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(choice, from_process=0)
    pick = choice[0] or {}
    if pick.get("error"):
        raise FileNotFoundError(pick["error"])
    path = Path(pick["path"]) if pick.get("path") else None
    problem = ""
    if path is not None and not accelerator.is_main_process:
        where = f"rank {accelerator.process_index} on {socket.gethostname()} (cwd {Path.cwd()})"
        try:
            if hashlib.sha256((path / "state.json").read_bytes()).hexdigest() != pick["sha256"]:
                problem = f"{where} sees a different {path / 'state.json'} than rank 0"
        except OSError as err:
            problem = f"{where} cannot read {path / 'state.json'} ({err.strerror or err})"
    problems = [problem]
    if n > 1:
        from accelerate.utils import gather_object

        problems = gather_object([problem])
    problems = [p for p in problems if p]
    if problems:
        raise CheckpointNotShared(
            f"train: rank 0 resumes from checkpoint {path}, but " + "; ".join(problems) + ". Only rank 0 "
            f"writes checkpoints, so for a multi-node run {RUNS_DIR} must be on storage every node shares "
            "(NFS, a shared volume; docs/deploy.md, 'Several nodes'). Or start over with --set train.resume=never.")
    return path


# ---------------------------------------------------------------- the run


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
    world_size: int = 1  # processes that trained together, as the trainer saw them (not the config)
    global_batch: int = 0  # samples per optimiser step over all processes


def _mixed_precision(cfg) -> str:
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def run_training(params: Params, export: bool = True, log_mlflow: bool = True,
                 max_seconds: float | None = None) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    cfg = params.train
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg), cpu=not torch.cuda.is_available()
                              or os.environ.get("ACCELERATE_USE_CPU") == "1")
    main = accelerator.is_main_process
    set_seed(cfg.seed, device_specific=True)
    weight_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision, torch.float32)

    # The first process of each node builds the tiny base once (a node may not share the
    # checkout's disk); the node's other processes then read it.
    base = resolve_base(params.model) if accelerator.is_local_main_process else None
    accelerator.wait_for_everyone()
    base = base or resolve_base(params.model)
    fingerprint = base_fingerprint(base)
    text_lora = params.lora.text_encoder
    need_text = text_lora or not cfg.cached_latents
    parts = load_components(base, unet=True, vae=not cfg.cached_latents, text=need_text)
    unet, scheduler = parts.unet, parts.scheduler
    device = accelerator.device
    for module in (parts.vae, parts.text_encoder):
        if module is not None:
            module.to(device, dtype=weight_dtype)
    unet.to(device, dtype=weight_dtype)

    # data
    if cfg.cached_latents:
        train_entries, train_t = load_latents(LATENTS_DIR, "train", fingerprint)
        val_entries, val_t = load_latents(LATENTS_DIR, "val", fingerprint)
        train, val = Split(train_entries, tensors=train_t), Split(val_entries, tensors=val_t)
        data_fp = hashlib.sha256((LATENTS_DIR / INDEX_NAME).read_bytes()).hexdigest()[:12]
    else:
        processed = Path(params.paths.processed)
        train = Split(read_split(processed, "train"), image_dir=processed / "train")
        val = Split(read_split(processed, "val"), image_dir=processed / "val")
        data_fp = hashlib.sha256(b"".join((processed / s / "metadata.jsonl").read_bytes()
                                          for s in ("train", "val"))).hexdigest()[:12]
    if not train.entries:
        raise ValueError("no training samples: run `dvc repro preprocess cache_latents` first")
    if not val.entries:  # tiny datasets: evaluate on a fixed slice of train rather than not at all
        val = Split(train.entries[:8], tensors=train.tensors, image_dir=train.image_dir)

    # LoRA
    unet.add_adapter(LoraConfig(r=params.lora.rank, lora_alpha=params.lora.alpha, lora_dropout=params.lora.dropout,
                                init_lora_weights="gaussian", target_modules=list(params.lora.targets)))
    trainable = [p for p in unet.parameters() if p.requires_grad]
    if text_lora:
        from landmark_lora.diffusion.lora_export import add_lora_adapter

        # transformers 5's add_adapter refuses peft < 0.22; add_lora_adapter falls back to peft itself.
        add_lora_adapter(parts.text_encoder, LoraConfig(r=params.lora.rank, lora_alpha=params.lora.alpha,
                                                        lora_dropout=params.lora.dropout, init_lora_weights="gaussian",
                                                        target_modules=list(params.lora.text_encoder_targets)))
        trainable += [p for p in parts.text_encoder.parameters() if p.requires_grad]
    for p in trainable:  # LoRA weights train in fp32 even when the base runs in bf16
        p.data = p.data.float()
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()

    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                  weight_decay=cfg.weight_decay,
                                  # fused kernels on CUDA; multi-tensor (foreach) elsewhere: the
                                  # per-tensor loop costs ~3 ms a step on the tiny model's many LoRA tensors
                                  fused=device.type == "cuda", foreach=None if device.type == "cuda" else True)
    lr_scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=cfg.warmup_steps,
                                 num_training_steps=cfg.max_steps)
    models = [unet] + ([parts.text_encoder] if text_lora else [])
    prepared = accelerator.prepare(*models, optimizer)
    unet_p, optimizer = prepared[0], prepared[-1]
    te_p = prepared[1] if text_lora else None
    accelerator.register_for_checkpointing(lr_scheduler)

    # Checkpoints hold only the LoRA weights, not the frozen base.
    def save_hook(hook_models, weights, out_dir):
        for i, m in enumerate(hook_models):
            if main:
                save_file(get_peft_model_state_dict(accelerator.unwrap_model(m)), os.path.join(out_dir, f"lora_{i}.safetensors"))
        weights.clear()

    def load_hook(hook_models, in_dir):
        for i, m in enumerate(list(hook_models)):
            set_peft_model_state_dict(accelerator.unwrap_model(m), load_file(os.path.join(in_dir, f"lora_{i}.safetensors")))
        hook_models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)

    run_dir = RUNS_DIR / run_key(params, data_fp + fingerprint + str(accelerator.num_processes))
    resume_from = shared_resume_point(accelerator, params, run_dir)
    start_step, run_id = 0, None
    curve: list[dict] = []  # one row per step (loss, lr, eval_loss when evaluated): DVC plots
    if resume_from is not None:
        state = json.loads((resume_from / "state.json").read_text())
        accelerator.load_state(str(resume_from))
        start_step, run_id = int(state["step"]), state.get("mlflow_run_id")
        curve = [row for row in state.get("curve", []) if row["step"] <= start_step]
        if main:
            print(f"train: resuming from {resume_from} at step {start_step}/{cfg.max_steps}")

    train_enc = Encoder(train, parts, device, weight_dtype, text_lora)
    val_enc = Encoder(val, parts, device, weight_dtype, text_lora)
    plan = BatchPlan(train, cfg.batch_size, accelerator.num_processes, cfg.seed)
    rank = accelerator.process_index

    mlflow_run = _start_mlflow(params, run_id, log_mlflow and main)
    run_id = mlflow_run.info.run_id if mlflow_run else run_id

    def checkpoint(step: int) -> None:
        final = run_dir / f"checkpoint-{step}"
        tmp = run_dir / f".checkpoint-{step}.tmp"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if main:
            fsutil.write_json_atomic(tmp / "state.json", {"step": step, "mlflow_run_id": run_id, "curve": curve},
                                     newline=False)
            fsutil.fsync_tree(tmp)  # the rename below must never expose a checkpoint whose bytes are not on disk
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            fsutil.fsync_dir(run_dir)
            for old in complete_checkpoints(run_dir)[:-cfg.checkpoints_keep]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    timesteps_n = scheduler.config.num_train_timesteps
    history: list[float] = []
    eval_metrics: dict[str, float] = {}
    bar = _progress(main, cfg.max_steps, start_step)
    t0, step = time.perf_counter(), start_step
    train_seconds = 0.0  # optimisation only: eval and checkpoints are not throughput
    for step in range(start_step + 1, cfg.max_steps + 1):
        step_t0 = time.perf_counter()
        total = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            idx = plan.batch((step - 1) * cfg.grad_accum + micro, rank)
            drop = [random.random() < cfg.caption_dropout for _ in idx]
            latents = train_enc.latents(idx, sample=True)
            text = train_enc.text(idx, drop)
            noise = torch.randn_like(latents)
            if cfg.noise_offset:
                noise = noise + cfg.noise_offset * torch.randn(latents.shape[0], latents.shape[1], 1, 1,
                                                               device=device, dtype=latents.dtype)
            ts = torch.randint(0, timesteps_n, (latents.shape[0],), device=device, dtype=torch.long)
            sync = micro == cfg.grad_accum - 1
            with (nullcontext() if sync else accelerator.no_sync(unet_p)):
                with accelerator.autocast():
                    loss = diffusion_loss(unet_p, scheduler, latents, text, ts, noise, cfg.min_snr_gamma)
                accelerator.backward(loss / cfg.grad_accum)
            total += loss.detach() / cfg.grad_accum
        accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step_loss = accelerator.reduce(total, reduction="mean").item()
        train_seconds += time.perf_counter() - step_t0
        history.append(step_loss)
        lr = lr_scheduler.get_last_lr()[0]
        if main:
            metrics = {"loss": step_loss, "lr": lr}
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                eval_metrics = evaluate_loss(accelerator.unwrap_model(unet_p), scheduler, val_enc,
                                             cfg.eval_timesteps, cfg.eval_seed)
                metrics.update(eval_metrics)
            curve.append({"step": step, "loss": step_loss, "lr": lr,
                          **({"eval_loss": eval_metrics["eval_loss"]} if "eval_loss" in metrics else {})})
            if mlflow_run:
                import mlflow

                mlflow.log_metrics(metrics, step=step)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
        if not math.isfinite(step_loss):
            if main:
                print(f"train: WARNING loss is {step_loss} at step {step}: diverged; stopping. The adapter is "
                      "exported for inspection; promotion will reject it.", file=sys.stderr)
            break
        if step % cfg.checkpoint_every == 0 and step < cfg.max_steps:
            checkpoint(step)
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    bar.close()
    done = step - start_step
    per_step = train_seconds / max(done, 1)
    images_per_sec = done * plan.global_batch * cfg.grad_accum / max(train_seconds, 1e-9)
    world = {"world_size": accelerator.num_processes, "global_batch": plan.global_batch * cfg.grad_accum}

    accelerator.wait_for_everyone()
    adapter_dir = None
    final_loss = float(np.mean(history[-5:])) if history else float("nan")
    if main and export:
        adapter_dir = _export(params, accelerator.unwrap_model(unet_p),
                              accelerator.unwrap_model(te_p) if te_p is not None else None, data_fp, fingerprint)
        if mlflow_run:
            import mlflow

            mlflow.log_metrics({"final_loss": final_loss, "images_per_sec": images_per_sec,
                                "seconds_per_step": per_step, **world})
            mlflow.log_artifacts(str(adapter_dir), artifact_path="adapter")
    if main:
        result = TrainResult(step, final_loss, eval_metrics, images_per_sec, per_step, run_id, adapter_dir,
                             start_step, **world)
        if export:
            _write_report(params, result)
            _write_curves(params, curve)
        if math.isfinite(final_loss) and step == cfg.max_steps:
            shutil.rmtree(run_dir, ignore_errors=True)  # finished: the next run starts fresh
        if mlflow_run:
            import mlflow

            mlflow.end_run()
    else:
        result = TrainResult(step, final_loss, eval_metrics, images_per_sec, per_step, run_id, None, start_step,
                             **world)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


def _progress(enabled: bool, total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, file=sys.stderr)


def _start_mlflow(params: Params, run_id: str | None, enabled: bool):
    if not enabled:
        return None
    import mlflow

    from landmark_lora.tracking import configure, run_params, run_tags

    experiment_id = configure(params.mlflow)
    if run_id:
        try:
            return mlflow.start_run(run_id=run_id, log_system_metrics=params.mlflow.system_metrics)
        except Exception as err:  # e.g. run deleted: continue in a fresh run, but say so
            print(f"train: cannot reopen MLflow run {run_id} ({err}); starting a new run", file=sys.stderr)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{time.strftime('%Y%m%d-%H%M%S')}",
                           tags=run_tags(params, {"stage": "train"}),
                           log_system_metrics=params.mlflow.system_metrics)
    mlflow.log_params(run_params(params))
    return run


def _export(params: Params, unet, text_encoder, data_fp: str, fingerprint: str) -> Path:
    from landmark_lora.diffusion.lora_export import export_adapter
    from landmark_lora.tracking import git_sha

    out = Path(params.model.dir) / ADAPTER_DIR_NAME
    metadata = {
        "base_model": params.model.base,
        "base_fingerprint": fingerprint,
        "rank": str(params.lora.rank),
        "alpha": str(params.lora.alpha),
        "trigger_words": params.caption.trigger,
        "data_version": data_fp,
        "git_sha": git_sha(),
        "steps": str(params.train.max_steps),
    }
    export_adapter(out, unet, text_encoder=text_encoder, metadata=metadata)
    return out


def _write_report(params: Params, result: TrainResult) -> None:
    reports = Path(params.paths.reports)
    reports.mkdir(parents=True, exist_ok=True)
    report = {
        "steps": result.steps,
        "final_loss": result.final_loss,
        "eval_loss": result.eval.get("eval_loss"),
        "eval": result.eval,
        "images_per_sec": round(result.images_per_sec, 3),
        "seconds_per_step": round(result.seconds_per_step, 4),
        "mlflow_run_id": result.run_id,
        "resumed_from_step": result.resumed_from,
        "world_size": result.world_size,
        "global_batch": result.global_batch,
        "diverged": not math.isfinite(result.final_loss),
    }
    fsutil.write_json_atomic(reports / "train.json", report, indent=2, sort_keys=True)


def _write_curves(params: Params, curve: list[dict]) -> None:
    """reports/plots/{train_loss,eval_loss}.csv: the DVC plots of the train stage (`dvc plots show`,
    `dvc plots diff` between commits). A resumed run carries the rows from its checkpoint."""
    plots = Path(params.paths.reports) / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    lines = ["step,loss,lr"] + [f"{r['step']},{r['loss']:.6g},{r['lr']:.6g}" for r in curve]
    fsutil.write_text_atomic(plots / "train_loss.csv", "\n".join(lines) + "\n")
    lines = ["step,eval_loss"] + [f"{r['step']},{r['eval_loss']:.6g}" for r in curve if "eval_loss" in r]
    fsutil.write_text_atomic(plots / "eval_loss.csv", "\n".join(lines) + "\n")


# ---------------------------------------------------------------- launching


def launch(params: Params, argv: list[str]) -> int:
    """Run in this process, or relaunch on ``train.num_processes`` processes.

    On CPU this uses torchrun with ACCELERATE_USE_CPU=1 (gloo): `accelerate launch --cpu
    --num_processes N` would start only one process. On GPUs it uses `accelerate launch`.
    """
    n = params.train.num_processes
    if n > 1 and "LOCAL_RANK" not in os.environ:
        env = dict(os.environ)
        if torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU") != "1":
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n)]
            if env.get("ACCELERATE_CONFIG_FILE"):
                cmd += ["--config_file", env["ACCELERATE_CONFIG_FILE"]]
        else:
            env["ACCELERATE_USE_CPU"] = "1"
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n)]
        cmd += ["-m", "landmark_lora.stages.train", *argv]
        print(f"train: launching {n} processes: {' '.join(cmd[1:])}")
        return subprocess.run(cmd, env=env).returncode
    result = run_training(params)
    if result.adapter_dir is not None:
        print(f"train: {result.steps} steps, final loss {result.final_loss:.4f}, eval loss "
              f"{result.eval.get('eval_loss', float('nan')):.4f}, {result.images_per_sec:.1f} img/s -> {result.adapter_dir}/"
              + (f" (MLflow run {result.run_id})" if result.run_id else ""))
    # A diverged run still exports: evaluate and the promotion gates judge it and say why,
    # which is more useful than a failed pipeline with no challenger to inspect.
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for torchrun / accelerate launch: ``-m landmark_lora.stages.train``."""
    parser = argparse.ArgumentParser(prog="landmark_lora.stages.train")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    apply_offline_defaults()
    params = load_params(args.params, parse_overrides(args.overrides))
    run_training(params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
