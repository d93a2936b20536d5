"""Per-call Python overhead off the training step, with bit-identical results (issue 15's profile).

    from landmark_lora.diffusion.fastpath import speed_up
    speed_up(unet)        # after peft added the LoRA adapter

On the tiny base a step is a few hundred small ops, so Python glue is a large share of it
(docs/benchmarks.md, the profile). One piece of that glue is done once here instead of on every call:
diffusers' ``Attention.forward`` calls ``inspect.signature(processor.__call__)`` on every call to
drop keyword arguments the processor does not take (~0.24 ms a call on this loaded machine, 0.06
with the cache; 12 calls a step). Each processor class's ``__call__`` gets its own signature cached
as ``__signature__``, which ``inspect`` returns as is: the same parameters, so the same kwargs pass.

A leaner peft LoRA forward (the same ops, fewer checks) was tried and dropped: its weights
differed from peft's by ~4e-9 in the third step's gradients (not investigated further; a BLAS whose
results depend on buffer alignment would do it), so it was not a pure speed change.
"""

from __future__ import annotations

import inspect

import torch


def cache_processor_signatures(model: torch.nn.Module) -> int:
    """Cache the signature of each attention processor class's ``__call__``; returns the count."""
    done = 0
    for cls in {type(m.processor) for m in model.modules() if getattr(m, "processor", None) is not None}:
        call = cls.__call__
        if getattr(call, "__signature__", None) is None:
            call.__signature__ = inspect.signature(call)
            done += 1
    return done


def speed_up(model: torch.nn.Module) -> int:
    """The change on ``model``; the number of processor classes changed (0 when already done)."""
    return cache_processor_signatures(model)
