"""The one way to load a base Stable Diffusion pipeline (with a LoRA adapter) for making images.

    from landmark_lora.diffusion.pipeline import load_pipeline
    pipe = load_pipeline(base)                                   # fp32 on the CPU, DPM-Solver++, no safety checker
    pipe = load_pipeline(base, "models/adapter", device="auto")  # + the adapter, on the GPU when there is one
    load_adapter(pipe, "models/adapter")                         # an adapter onto a pipeline already loaded

Used by the evaluate stage, promote's rescoring, serving (the MLflow pyfunc) and the tests; nothing
here downloads. ``load_adapter`` is the one way an adapter is applied: its LoRA and, when the folder
has ``token_embeddings.safetensors`` (``lora.train_token_embeddings``), the trained landmark tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from landmark_lora.artifacts import TOKEN_EMBEDDINGS

if TYPE_CHECKING:  # diffusers/torch imports cost seconds: only when a pipeline is really loaded
    import torch
    from diffusers import StableDiffusionPipeline

AUTO = "auto"  # device: CUDA when available, else stay on the CPU


def load_pipeline(path: str | Path, adapter_dir: str | Path | None = None, dtype: torch.dtype | None = None,
                  fast_scheduler: bool = True, device: str | None = None) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline from a local diffusers folder, offline, no safety checker.

    ``dtype`` defaults to fp32 whatever the files hold: the toy-world base ships fp16 weights,
    which CPUs run badly or not at all. ``fast_scheduler`` swaps the saved (training) DDPM
    scheduler for DPM-Solver++ from the same config, which gives usable images in 4-20 steps.
    ``device``: None leaves the pipeline on the CPU, ``"auto"`` moves it to CUDA when available,
    anything else is passed to ``pipe.to``. ``adapter_dir``: a LoRA folder or file to load on top.
    """
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    try:  # newer diffusers take `dtype` and warns on `torch_dtype`; older ones only know the latter
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401

        dtype_kw = "dtype"
    except ImportError:
        dtype_kw = "torch_dtype"
    pipe = StableDiffusionPipeline.from_pretrained(
        str(path), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        local_files_only=True, **{dtype_kw: dtype or torch.float32})
    if fast_scheduler:
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if device == AUTO:
        device = "cuda" if torch.cuda.is_available() else None
    if device:
        pipe.to(device)
    if adapter_dir is not None:
        load_adapter(pipe, adapter_dir)
    return pipe


def load_adapter(pipe, adapter_dir: str | Path) -> list[str]:
    """Apply an adapter to ``pipe``: the folder's trained token embeddings first (when it has them),
    then its LoRA (``load_lora_weights``; a folder or one LoRA file). Returns the tokens added."""
    from landmark_lora.diffusion.token_embeddings import apply_file

    folder = Path(adapter_dir)
    tokens = []
    if folder.is_dir() and (folder / TOKEN_EMBEDDINGS).is_file():
        tokens = apply_file(pipe.tokenizer, pipe.text_encoder, folder / TOKEN_EMBEDDINGS)
    pipe.load_lora_weights(str(adapter_dir))
    return tokens
