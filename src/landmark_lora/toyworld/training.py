"""What the toy-world build's two training phases (VAE, UNet + text encoder) share: the learning-rate
schedule and atomic checkpoints they resume from.

    from landmark_lora.toyworld.training import lr_at, resume_checkpoint, save_checkpoint
    step, hist = resume_checkpoint(ckpt, {"model": vae}, opt, "VAE")   # (0, []) when there is none
    for group in opt.param_groups:
        group["lr"] = lr_at(step, total, peak, warmup)
    save_checkpoint(ckpt, {"model": vae}, opt, step, hist)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from landmark_lora import fsutil
from landmark_lora.logs import get_logger

if TYPE_CHECKING:  # torch costs seconds to import: only when a phase really trains
    import torch

log = get_logger(__name__)

# progress(step, total, loss): called after every optimizer step (the build's tqdm bar)
Progress = Callable[[int, int, float], None]


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine down to 5 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def save_checkpoint(path: Path, modules: dict[str, Any], opt: torch.optim.Optimizer, step: int,
                    hist: list[float]) -> None:
    """Save ``modules`` (name -> nn.Module), the optimizer, step and loss history, atomically."""
    import torch

    state = {name: m.state_dict() for name, m in modules.items()}
    with fsutil.atomic_path(path) as tmp:
        torch.save({**state, "opt": opt.state_dict(), "step": step, "hist": hist}, tmp)


def resume_checkpoint(path: Path, modules: dict[str, Any], opt: torch.optim.Optimizer,
                      label: str) -> tuple[int, list[float]]:
    """Load a ``save_checkpoint`` into ``modules`` and ``opt`` when there is one: (step, hist)."""
    import torch

    if not path.exists():
        return 0, []
    state = torch.load(path, weights_only=False)
    for name, m in modules.items():
        m.load_state_dict(state[name])
    opt.load_state_dict(state["opt"])
    log.info("toyworld: %s: resumed at step %d", label, state["step"])
    return state["step"], state["hist"]
