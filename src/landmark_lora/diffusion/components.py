"""Shared diffusion helpers for the cache, train and evaluate stages.

    from landmark_lora.diffusion.components import resolve_base, load_components
    base = resolve_base(params.model)             # models/base-tiny, a local folder or a cached hub id
    parts = load_components(base, vae=True, text=True)
    emb = encode_prompts(parts, ["lmksnap snapshot photo, ..."])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from landmark_lora.config import ModelConfig


def resolve_base(cfg: ModelConfig) -> Path:
    """A local diffusers folder for ``model.base`` (the tiny one is built on first use)."""
    from landmark_lora.diffusion.base import ensure_base_model
    from landmark_lora.env import project_root

    # The tiny base is built under model.dir of the project: a queued experiment's throw-away copy
    # uses the project's (the one its cached latents were encoded with) instead of building its own.
    models_dir = Path(cfg.dir) if Path(cfg.dir).is_absolute() else project_root() / cfg.dir
    return Path(ensure_base_model(cfg.base, models_dir, cfg.revision))


def base_fingerprint(path: Path) -> str:
    """Cheap, content-based identity of a base checkpoint: config files in full, weights by
    size plus their first and last MiB. Latents from another base must never be reused."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file() and ".cache" not in p.parts):
        rel = f.relative_to(path).as_posix()
        if not rel.startswith(("vae/", "text_encoder/", "tokenizer/", "unet/", "scheduler/", "model_index")):
            continue
        h.update(rel.encode())
        size = f.stat().st_size
        h.update(str(size).encode())
        with f.open("rb") as fh:
            if size <= 4 << 20:
                h.update(fh.read())
            else:
                h.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return h.hexdigest()[:16]


@dataclass
class Components:
    path: Path
    unet: Any = None
    vae: Any = None
    text_encoder: Any = None
    tokenizer: Any = None
    scheduler: Any = None

    @property
    def vae_scale(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))


def load_components(path: Path, unet: bool = False, vae: bool = False, text: bool = False,
                    dtype: torch.dtype = torch.float32) -> Components:
    """Load only the parts a stage needs, frozen and in eval mode."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    parts = Components(path=Path(path))
    parts.scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    if unet:
        parts.unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=dtype)
    if vae:
        parts.vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype)
    if text:
        parts.tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
        parts.text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", torch_dtype=dtype)
    for module in (parts.unet, parts.vae, parts.text_encoder):
        if module is not None:
            module.requires_grad_(False)
            module.eval()
    return parts


@torch.no_grad()
def encode_prompts(parts: Components, prompts: list[str]) -> torch.Tensor:
    """CLIP last hidden states, [n, 77, dim], as SD 1.x/2.x UNets expect."""
    device = next(parts.text_encoder.parameters()).device
    return parts.text_encoder(token_ids(parts, prompts).to(device))[0]


def token_ids(parts: Components, prompts: list[str]) -> torch.Tensor:
    # A tokenizer saved without model_max_length reports a huge sentinel: the text encoder knows.
    length = min(parts.tokenizer.model_max_length, parts.text_encoder.config.max_position_embeddings)
    return parts.tokenizer(prompts, padding="max_length", max_length=length, truncation=True,
                           return_tensors="pt").input_ids


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> [3, H, W] float in [-1, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@torch.no_grad()
def encode_images(parts: Components, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE posterior (mean, std), already multiplied by the scaling factor."""
    dist = parts.vae.encode(pixels.to(parts.vae.device, parts.vae.dtype)).latent_dist
    return dist.mean * parts.vae_scale, dist.std * parts.vae_scale

