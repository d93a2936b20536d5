"""``train.compile``: the UNet's training forward through ``torch.compile`` (inductor), with a
persistent kernel cache, so the next run reuses what this one compiled.

    from landmark_lora.diffusion import compiled
    step_unet = compiled.compile_unet(prepared_unet, layout.inductor_cache)   # the optimiser steps call it
    compiled.CompileClock()     # wall time of the steps that compiled a graph, counted apart

Only the training steps call the compiled wrapper. Everything else (the periodic eval, checkpoints,
the LoRA export, ``accelerator.unwrap_model``) keeps the prepared module, so state dict keys never
get ``_orig_mod.`` prefixes, and evaluation runs eager (no second, inference-mode compile). Under
several processes the wrapper goes around the DDP-prepared module, as accelerate's own
``dynamo_backend`` does, and ``accelerator.no_sync`` reaches DDP through it.

Numerics: inductor fuses and reorders float ops, so losses differ from eager in the last digits
(tests/stages/test_train_compile.py states the tolerance; docs/benchmarks.md the eval-loss effect).
Random ops inside the UNet (``lora.dropout`` > 0) use eager's RNG (``fallback_random``), so the
batch plan and a resumed run stay exactly replayable.

The cache: ``TORCHINDUCTOR_CACHE_DIR`` points at ``<paths.cache>/inductor`` (``Layout.inductor_cache``)
with the FX-graph and AOTAutograd caches on. A warm cache skips inductor's code generation and C++
builds; dynamo still traces the UNet in each new process (docs/benchmarks.md has both times).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from landmark_lora.logs import get_logger

log = get_logger(__name__)


def use_cache(cache_dir: Path) -> Path:
    """Point inductor's on-disk caches at ``cache_dir`` (created), for this process and its compile workers."""
    cache_dir = Path(cache_dir).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)  # read on every lookup, and inherited by workers
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return cache_dir


def compile_unet(unet: torch.nn.Module, cache_dir: Path):
    """``torch.compile(unet)`` with inductor on ``cache_dir``; the wrapper is for the steps only."""
    import torch._inductor.config as inductor_config

    use_cache(cache_dir)
    inductor_config.fallback_random = True  # dropout draws from eager's RNG: replayable, as without compile
    log.info("train: train.compile: the UNet's training steps run through torch.compile (inductor); "
             "the first step compiles (minutes on a cold cache %s)", cache_dir)
    # dynamic=False: one static graph per bucket shape. With dynamo's default, the second shape recompiled
    # with symbolic sizes, which spent most of a 15-minute test in sympy; static kernels are also the faster
    # ones. Past dynamo's recompile_limit (8 shapes) further shapes run eager, with dynamo's warning.
    return torch.compile(unet, backend="inductor", dynamic=False)


def graphs_compiled() -> int:
    """How many graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class CompileClock:
    """Times a step and says whether it compiled a graph (a new batch shape compiles again)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.seconds = 0.0  # wall time of the steps that compiled
        self.steps = 0

    def __enter__(self) -> CompileClock:
        self._graphs = graphs_compiled() if self.enabled else 0
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self._t0
        if self.enabled and graphs_compiled() > self._graphs:
            self.seconds += self.elapsed
            self.steps += 1
