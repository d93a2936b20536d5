"""The LoRA training loop with accelerate: set-up, steps, atomic checkpoints and exact resume.

    from landmark_lora.diffusion import trainer
    from landmark_lora.diffusion.checkpoints import run_key
    session = trainer.setup(params, layout)        # accelerator, base, data, LoRA, optimizer
    run_dir = layout.train_runs / run_key(params, session.identity)
    start = trainer.resume(session, run_dir)       # step 0, or the newest complete checkpoint
    done = trainer.train_steps(session, start, run_dir, run_id, bar, log_metrics=None)

The train stage (``landmark-lora train``) drives this and writes the adapter and the reports. Checkpoints
(``checkpoint-<step>``: LoRA weights, optimiser, scheduler, every rank's RNG) are atomic (``diffusion.checkpoints``).
``BatchPlan`` makes batch m a pure function of (seed, m), so a resumed run replays exactly the batches an
uninterrupted one would have seen. Only rank 0 evaluates, logs and writes checkpoints. ``train.compile``:
the steps call the UNet through torch.compile, nothing else does (``diffusion.compiled``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from landmark_lora.artifacts import Layout, data_version
from landmark_lora.config import Params
from landmark_lora.diffusion import compiled, fastpath, prior, token_embeddings
from landmark_lora.diffusion.batchplan import BatchPlan
from landmark_lora.diffusion.checkpoints import save_checkpoint, shared_resume_point
from landmark_lora.diffusion.components import Components, base_fingerprint, load_components, resolve_base
from landmark_lora.diffusion.latents import load_latents
from landmark_lora.diffusion.loss import Encoder, Split, diffusion_loss, evaluate_loss
from landmark_lora.logs import get_logger

log = get_logger(__name__)

# ---------------------------------------------------------------- data


def load_data(params: Params, layout: Layout, fingerprint: str) -> tuple[Split, Split, str]:
    """(train, val, run data identity). The identity is the hash of what the steps read: the latent
    index in cached mode (it also pins the base and the VAE scaling), else the processed metadata."""
    if params.train.cached_latents:
        train_entries, train_t = load_latents(layout.latents, "train", fingerprint)
        val_entries, val_t = load_latents(layout.latents, "val", fingerprint)
        train, val = Split(train_entries, tensors=train_t), Split(val_entries, tensors=val_t)
        identity = hashlib.sha256(layout.latents_index.read_bytes()).hexdigest()[:12]
    else:
        train, val = Split.from_records(layout, "train"), Split.from_records(layout, "val")
        identity = data_version(layout)
    if not train.entries:
        raise ValueError("no training samples: run `dvc repro preprocess cache_latents` first")
    if not val.entries:  # tiny datasets: evaluate on a fixed slice of train rather than not at all
        val = Split(train.entries[:8], tensors=train.tensors, image_dir=train.image_dir)
    return train, val, identity


# ---------------------------------------------------------------- set-up


@dataclass
class Session:
    """Everything ``setup`` builds: the accelerator, the prepared models and optimiser, the data."""

    params: Params
    accelerator: Any
    parts: Components
    unet: Any  # prepared by accelerate
    text_encoder: Any  # prepared, or None without text-encoder LoRA
    optimizer: Any
    lr_scheduler: Any
    trainable: list
    train: Split
    val: Split
    dtype: torch.dtype
    fingerprint: str  # of the base model
    data_identity: str
    tokens: list[str] = field(default_factory=list)  # landmark names with trained embeddings (pivotal tuning)
    token_ids: list[int] = field(default_factory=list)
    step_unet: Any = None  # train.compile: the torch.compile wrapper of ``unet`` the optimiser steps call
    prior: Split | None = None  # train.prior: the base's own images, one batch of them added to every step

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def identity(self) -> str:
        """What a checkpoint must match to be resumed: data, base and the number of processes."""
        return self.data_identity + self.fingerprint + str(self.accelerator.num_processes)


def live_text(params: Params) -> bool:
    """Whether training runs the text encoder on every step (its LoRA or token embeddings train)."""
    return params.lora.text_encoder or params.lora.train_token_embeddings


def add_landmark_tokens(parts: Components, params: Params, train: Split) -> tuple[list[str], list[int]]:
    """``lora.train_token_embeddings``: one new token per catalogue landmark name the training
    captions use (``diffusion.token_embeddings``); ([], []) when off."""
    if not params.lora.train_token_embeddings:
        return [], []
    from landmark_lora.catalogue import load_catalogue

    names = [lm.name_en for lm in load_catalogue(params.catalogue).values()]
    tokens = token_embeddings.landmark_tokens((e["text"] for e in train.entries), names)
    if not tokens:
        raise ValueError("lora.train_token_embeddings: no catalogue landmark name occurs in the training captions; "
                         "check caption.template's {landmark} part or set it to false")
    log.info("train: trainable token embeddings for %d landmark names: %s", len(tokens), ", ".join(tokens))
    return tokens, token_embeddings.add_tokens(parts.tokenizer, parts.text_encoder, tokens)


def mixed_precision(cfg) -> str:
    auto = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return auto if cfg.mixed_precision == "auto" else cfg.mixed_precision


def add_lora(parts: Components, params: Params) -> list:
    """LoRA on the UNet (and the text encoder with ``lora.text_encoder``); returns the trainable tensors."""
    from peft import LoraConfig

    lora = params.lora
    parts.unet.add_adapter(LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                      init_lora_weights="gaussian", target_modules=list(lora.targets)))
    trainable = [p for p in parts.unet.parameters() if p.requires_grad]
    if lora.text_encoder:
        from landmark_lora.diffusion.lora_export import add_lora_adapter

        # transformers 5's add_adapter refuses peft < 0.22; add_lora_adapter falls back to peft itself.
        add_lora_adapter(parts.text_encoder, LoraConfig(r=lora.rank, lora_alpha=lora.alpha,
                                                        lora_dropout=lora.dropout, init_lora_weights="gaussian",
                                                        target_modules=list(lora.text_encoder_targets)))
        trainable += [p for p in parts.text_encoder.parameters() if p.requires_grad]
    for p in trainable:  # LoRA weights train in fp32 even when the base runs in bf16
        p.data = p.data.float()
    return trainable


def make_optimizer(trainable: list, cfg, device: torch.device, embeddings=None, embedding_lr: float = 0.0,
                   text_params=None):
    """AdamW over the LoRA tensors (those in ``text_params`` at ``cfg.text_encoder_lr`` when set), plus the
    token-embedding table (own lr, no weight decay: its masked rows never move); cosine decay, warm-up."""
    from diffusers.optimization import get_scheduler

    text_ids = {id(p) for p in text_params or ()} if cfg.text_encoder_lr is not None else set()
    groups = [{"params": [p for p in trainable if id(p) not in text_ids]}]
    if text_ids:
        groups.append({"params": [p for p in trainable if id(p) in text_ids], "lr": cfg.text_encoder_lr})
    if embeddings is not None:
        groups.append({"params": [embeddings], "lr": embedding_lr, "weight_decay": 0.0})
    # fused kernels on CUDA; multi-tensor (foreach) elsewhere: the per-tensor loop costs ~3 ms a step
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                  weight_decay=cfg.weight_decay,  # on the tiny model's many LoRA tensors
                                  fused=device.type == "cuda", foreach=None if device.type == "cuda" else True)
    lr_scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=cfg.warmup_steps,
                                 num_training_steps=cfg.max_steps)
    return optimizer, lr_scheduler


TOKEN_ROWS = "landmark_lora.token_embeddings"  # checkpoint key of the trained token rows


def register_lora_hooks(accelerator, token_ids: list[int] | None = None) -> None:
    """Checkpoints hold only the LoRA weights (and the trained token rows), not the frozen base."""
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    def trained_rows(model) -> bool:  # the text encoder, when its token embeddings train
        return bool(token_ids) and hasattr(model, "get_input_embeddings") and not hasattr(model, "conv_in")

    def save_hook(hook_models, weights, out_dir):
        for i, m in enumerate(hook_models):
            model = accelerator.unwrap_model(m)
            state = get_peft_model_state_dict(model) if getattr(model, "peft_config", None) else {}
            if trained_rows(model):
                state[TOKEN_ROWS] = model.get_input_embeddings().weight[token_ids].detach().clone()
            if accelerator.is_main_process:
                save_file(state, os.path.join(out_dir, f"lora_{i}.safetensors"))
        weights.clear()

    def load_hook(hook_models, in_dir):
        for i, m in enumerate(list(hook_models)):
            model = accelerator.unwrap_model(m)
            state = load_file(os.path.join(in_dir, f"lora_{i}.safetensors"))
            rows = state.pop(TOKEN_ROWS, None)
            if rows is not None and trained_rows(model):
                with torch.no_grad():
                    model.get_input_embeddings().weight[token_ids] = rows.to(model.get_input_embeddings().weight)
            if getattr(model, "peft_config", None):
                set_peft_model_state_dict(model, state)
        hook_models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def setup(params: Params, layout: Layout) -> Session:
    """Accelerator, seeded RNGs, base model, data, LoRA and optimiser, prepared for this process."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    cfg = params.train
    accelerator = Accelerator(mixed_precision=mixed_precision(cfg), cpu=not torch.cuda.is_available()
                              or os.environ.get("ACCELERATE_USE_CPU") == "1")
    set_seed(cfg.seed, device_specific=True)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision, torch.float32)

    # The first process of each node builds the tiny base once (a node may not share the
    # checkout's disk); the node's other processes then read it.
    base = resolve_base(params.model) if accelerator.is_local_main_process else None
    accelerator.wait_for_everyone()
    base = base or resolve_base(params.model)
    fingerprint = base_fingerprint(base)
    text_live = live_text(params)
    parts = load_components(base, unet=True, vae=not cfg.cached_latents, text=text_live or not cfg.cached_latents)
    for module in (parts.vae, parts.text_encoder, parts.unet):
        if module is not None:
            module.to(accelerator.device, dtype=dtype)

    train, val, identity = load_data(params, layout, fingerprint)
    prior_split = load_prior(params, accelerator, base, fingerprint, layout, train)
    tokens, token_ids = add_landmark_tokens(parts, params, train)
    trainable = add_lora(parts, params)
    fastpath.speed_up(parts.unet)  # Python overhead off each step; bit-identical results
    table = token_embeddings.train_rows(parts.text_encoder, token_ids) if token_ids else None  # after peft froze it
    if cfg.gradient_checkpointing:
        parts.unet.enable_gradient_checkpointing()
    parts.unet.train()
    optimizer, lr_scheduler = make_optimizer(trainable, cfg, accelerator.device, table, params.lora.token_embedding_lr,
                                             parts.text_encoder.parameters() if params.lora.text_encoder else None)
    prepared = accelerator.prepare(*([parts.unet] + ([parts.text_encoder] if text_live else [])), optimizer)
    accelerator.register_for_checkpointing(lr_scheduler)
    register_lora_hooks(accelerator, token_ids)
    return Session(params, accelerator, parts, prepared[0], prepared[1] if text_live else None, prepared[-1],
                   lr_scheduler, trainable + ([table] if table is not None else []), train, val, dtype, fingerprint,
                   identity, tokens, token_ids, compiled.compile_unet(prepared[0], layout.inductor_cache)
                   if cfg.compile else None, prior_split)


def load_prior(params: Params, accelerator, base: Path, fingerprint: str, layout: Layout, train: Split) -> Split | None:
    """``train.prior``: the local main process has the base draw the prior images once; every process loads them."""
    if params.train.prior.per_shot == 0:
        return None
    size = max(train.buckets, key=lambda k: len(train.buckets[k]))  # the photos' commonest bucket
    if accelerator.is_local_main_process:
        prior.ensure(params, base, fingerprint, layout.prior_cache, size)
    accelerator.wait_for_everyone()
    return prior.load(prior.cache_file(params, fingerprint, layout.prior_cache, size), size)


# ---------------------------------------------------------------- the steps


@dataclass
class Start:
    """Where the steps begin: step 0, or a checkpoint's step with its MLflow run and curve rows."""

    step: int = 0
    run_id: str | None = None
    curve: list[dict] = field(default_factory=list)


@dataclass
class Trained:
    """What the steps did; ``curve`` has one row per step (loss, lr, eval_loss when evaluated)."""

    step: int
    curve: list[dict]
    global_batch: int  # samples per optimiser step over all processes
    history: list[float] = field(default_factory=list)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0  # optimisation only: eval and checkpoints are not throughput
    loop_seconds: float = 0.0  # the whole loop's wall time: steps, their evals, metric logging, checkpoints
    compile_seconds: float = 0.0  # train.compile: wall time of the steps that compiled (within train_seconds)
    compile_steps: int = 0  # how many steps compiled (the first; again for each new batch shape)


def resume(session: Session, run_dir: Path) -> Start:
    """Load the checkpoint rank 0 chose (``train.resume``), or start at step 0."""
    path = shared_resume_point(session.accelerator, session.params, run_dir)
    if path is None:
        return Start()
    state = json.loads((path / "state.json").read_text())
    session.accelerator.load_state(str(path))
    step = int(state["step"])
    if session.main:  # logs.RankZeroFilter drops the others' INFO too; this holds under any logging set-up
        log.info("train: resuming from %s at step %d/%d", path, step, session.params.train.max_steps)
    return Start(step, state.get("mlflow_run_id"), [row for row in state.get("curve", []) if row["step"] <= step])


def _optimiser_step(s: Session, plan: BatchPlan, enc: Encoder, step: int) -> float:
    """One optimiser step over ``grad_accum`` micro-batches; the loss averaged over all ranks."""
    cfg, acc, device = s.params.train, s.accelerator, s.accelerator.device
    unet = s.unet if s.step_unet is None else s.step_unet
    total = torch.zeros((), device=device)
    for micro in range(cfg.grad_accum):
        m = (step - 1) * cfg.grad_accum + micro
        idx = plan.batch(m, acc.process_index)
        drop = plan.dropped(m, acc.process_index, cfg.caption_dropout)[:len(idx)]
        latents = enc.latents(idx, sample=True)
        text = enc.text(idx, drop)
        noise = torch.randn_like(latents)
        if cfg.noise_offset:
            noise = noise + cfg.noise_offset * torch.randn(latents.shape[0], latents.shape[1], 1, 1,
                                                           device=device, dtype=latents.dtype)
        ts = torch.randint(0, s.parts.scheduler.config.num_train_timesteps, (latents.shape[0],), device=device,
                           dtype=torch.long)
        sync = micro == cfg.grad_accum - 1 and s.prior is None  # with a prior, its backward syncs
        with (nullcontext() if sync else acc.no_sync(s.unet)):
            with acc.autocast():
                loss = diffusion_loss(unet, s.parts.scheduler, latents, text, ts, noise, cfg.min_snr_gamma)
            acc.backward(loss / cfg.grad_accum)
        total += loss.detach() / cfg.grad_accum
    if s.prior is not None:  # DreamBooth's prior loss: one batch of the base's own images, weighted
        enc = Encoder(s.prior, s.parts, device, s.dtype, live_text(s.params))
        idx = plan.prior(step, acc.process_index, len(s.prior.entries), cfg.prior.batch)
        latents = enc.latents(idx, sample=False)
        gen = torch.Generator().manual_seed(plan.prior_seed(step, acc.process_index))  # not the photos' RNG stream
        noise = torch.randn(latents.shape, generator=gen).to(device, latents.dtype)
        ts = torch.randint(0, s.parts.scheduler.config.num_train_timesteps, (len(idx),), generator=gen).to(device)
        with acc.autocast():
            prior_loss = diffusion_loss(unet, s.parts.scheduler, latents, enc.text(idx, [False] * len(idx)), ts, noise,
                                        cfg.min_snr_gamma)
        acc.backward(cfg.prior.weight * prior_loss)
    acc.clip_grad_norm_(s.trainable, cfg.max_grad_norm)
    s.optimizer.step()
    s.lr_scheduler.step()
    s.optimizer.zero_grad(set_to_none=True)
    return acc.reduce(total, reduction="mean").item()


def _record(s: Session, out: Trained, val_enc: Encoder, loss: float, lr: float, bar,
            log_metrics: Callable[[dict, int], None] | None) -> None:
    """Rank 0: evaluate when due, add the curve row, log the metrics, move the progress bar."""
    cfg, step = s.params.train, out.step
    metrics = {"loss": loss, "lr": lr}
    if step % cfg.eval_every == 0 or step == cfg.max_steps:
        out.eval_metrics = evaluate_loss(s.accelerator.unwrap_model(s.unet), s.parts.scheduler, val_enc,
                                         cfg.eval_timesteps, cfg.eval_seed)
        metrics.update(out.eval_metrics)
    out.curve.append({"step": step, "loss": loss, "lr": lr,
                      **({"eval_loss": out.eval_metrics["eval_loss"]} if "eval_loss" in metrics else {})})
    if log_metrics is not None:
        log_metrics(metrics, step)
    bar.update(1)
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")


def train_steps(s: Session, start: Start, run_dir: Path, run_id: str | None, bar,
                log_metrics: Callable[[dict, int], None] | None = None, max_seconds: float | None = None) -> Trained:
    """Steps ``start.step + 1 .. train.max_steps`` (fewer when the loss diverges or time runs out)."""
    cfg, acc = s.params.train, s.accelerator
    text_lora = live_text(s.params)
    train_enc = Encoder(s.train, s.parts, acc.device, s.dtype, text_lora)
    val_enc = Encoder(s.val, s.parts, acc.device, s.dtype, text_lora)
    plan = BatchPlan(s.train, cfg.batch_size, acc.num_processes, cfg.seed)
    out = Trained(step=start.step, curve=start.curve, global_batch=plan.global_batch * cfg.grad_accum)
    clock, t0 = compiled.CompileClock(cfg.compile), time.perf_counter()
    for step in range(start.step + 1, cfg.max_steps + 1):
        with clock:
            loss = _optimiser_step(s, plan, train_enc, step)
        out.train_seconds += clock.elapsed
        out.step = step
        out.history.append(loss)
        if s.main:
            _record(s, out, val_enc, loss, s.lr_scheduler.get_last_lr()[0], bar, log_metrics)
        if not math.isfinite(loss):
            if s.main:
                log.warning("train: loss is %s at step %d: diverged; stopping. The adapter is exported for "
                            "inspection; promotion will reject it.", loss, step)
            break
        if step % cfg.checkpoint_every == 0 and step < cfg.max_steps:
            save_checkpoint(acc, run_dir, step, {"step": step, "mlflow_run_id": run_id, "curve": out.curve},
                            cfg.checkpoints_keep)
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    out.loop_seconds, out.compile_seconds, out.compile_steps = time.perf_counter() - t0, clock.seconds, clock.steps
    return out
