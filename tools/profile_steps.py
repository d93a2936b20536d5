"""Where a training step's time goes, ours and the reference script's (never a timed test).

    python -m tools.bench_reference --script /path/to/train_text_to_image_lora.py --profile

cProfile runs over steps ``WARM + 1 .. steps`` of one run per mode (the first ``WARM`` steps are
left out: first-call allocations), each in a fresh process on the workspace ``tools.bench_reference``
builds, and the steps' time is split into phases by the cumulative time of the functions each
phase is made of (the outermost call of a name, so nested calls are not counted twice); what no
phase claims is "other" (Python glue, the progress bar, logging). cProfile's own overhead inflates
Python-heavy phases, so read the shares, not the absolute times.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import time

WARM = 5
# phase -> (file suffix, function name) pairs whose cumulative times add up to it
OURS = {
    "batch: gather cached latents + embeddings, or encode (VAE + text encoder)":
        [("landmark_lora/diffusion/loss.py", "latents"), ("landmark_lora/diffusion/loss.py", "text")],
    "UNet forward": [("unets/unet_2d_condition.py", "forward")],
    "backward": [("accelerate/accelerator.py", "backward")],
    "clip + AdamW + LR schedule + zero_grad": [
        ("accelerate/accelerator.py", "clip_grad_norm_"), ("accelerate/optimizer.py", "step"),
        ("torch/optim/lr_scheduler.py", "step"), ("accelerate/optimizer.py", "zero_grad")],
}
REFERENCE = {
    "data loader: PIL load, transforms, tokenize, collate": [("torch/utils/data/dataloader.py", "__next__")],
    "VAE encode": [("autoencoders/autoencoder_kl.py", "encode")],
    "text encoder": [("models/clip/modeling_clip.py", "forward")],
    "UNet forward": [("unets/unet_2d_condition.py", "forward")],
    "backward": [("accelerate/accelerator.py", "backward")],
    "clip + AdamW + LR schedule + zero_grad": OURS["clip + AdamW + LR schedule + zero_grad"],
}


def _outermost(stats: dict, suffix: str, name: str) -> float:
    """Cumulative seconds of the outermost call of ``name`` in files ending in ``suffix``."""
    return max((v[3] for (f, _, n), v in stats.items() if n == name and f.endswith(suffix)), default=0.0)


def phases(profile: cProfile.Profile, total: float, table: dict) -> dict:
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    out = {phase: sum(_outermost(stats, s, n) for s, n in keys) for phase, keys in table.items()}
    if table is OURS:  # the loss wraps the UNet forward
        loss = _outermost(stats, "landmark_lora/diffusion/loss.py", "diffusion_loss")
        out["noise, targets, MSE/SNR loss"] = max(loss - out["UNet forward"], 0.0)
    out["other"] = max(total - sum(out.values()), 0.0)
    return {k: round(v, 4) for k, v in out.items()}


class StepProfiler:
    """Enable cProfile after ``WARM`` steps and stop after ``last``; ``result`` gives the phases."""

    def __init__(self, last: int, table: dict):
        self.last, self.table, self.done = last, table, 0
        self.profile = cProfile.Profile()
        self.t0 = self.t1 = 0.0

    def step_finished(self) -> None:
        self.done += 1
        if self.done == WARM:
            self.t0 = time.perf_counter()
            self.profile.enable()
        elif self.done == self.last:
            self.profile.disable()
            self.t1 = time.perf_counter()

    def result(self) -> dict:
        total = self.t1 - self.t0
        steps = self.last - WARM
        return {"steps_profiled": steps, "seconds_per_step": round(total / steps, 4),
                "phases_seconds": phases(self.profile, total, self.table)}


def profile_ours(cached: bool, steps: int, resolution: int) -> dict:
    """One run of our trainer (tools.bench's config) with cProfile over its steps after the warm-up."""
    from landmark_lora.config import parse_params
    from landmark_lora.diffusion import trainer
    from landmark_lora.stages.train import run_training
    from tools.bench import _bench_params

    raw = _bench_params(steps, resolution)
    raw["train"]["cached_latents"] = cached
    prof = StepProfiler(steps, OURS)
    step = trainer._optimiser_step

    def timed(*a, **k):
        loss = step(*a, **k)
        prof.step_finished()
        return loss

    trainer._optimiser_step = timed  # type: ignore[assignment]
    run_training(parse_params(raw), export=False, log_mlflow=False)
    return prof.result()


def markdown(results: dict) -> list[str]:
    """One table per mode: phase, ms per step, share of the step."""
    rows: list[str] = []
    for mode, r in results.items():
        total = r["seconds_per_step"] * r["steps_profiled"]
        rows += ["", f"**{mode}**: {r['steps_profiled']} steps profiled, {r['seconds_per_step'] * 1000:.1f} ms "
                     "per step under cProfile", "", "| phase | ms / step | share |", "|---|---|---|"]
        rows += [f"| {phase} | {s / r['steps_profiled'] * 1000:.1f} | {s / total:.0%} |"
                 for phase, s in r["phases_seconds"].items()]
    return rows


if __name__ == "__main__":
    import argparse

    from landmark_lora.env import apply_offline_defaults

    parser = argparse.ArgumentParser(prog="python -m tools.profile_steps")
    parser.add_argument("mode", choices=("cached", "uncached"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args()
    apply_offline_defaults()
    print(json.dumps(profile_ours(args.mode == "cached", args.steps, args.resolution)))
