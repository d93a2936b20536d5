"""Prior preservation: latents the base model draws at every shot type, trained beside the photos.

    from landmark_lora.diffusion import prior
    prior.prior_prompts(params)   # ['snapshot photo, in front of a park, close-up shot, eye-level angle', ...]
    path = prior.ensure(params, base, fingerprint, layout.prior_cache, size=(56, 72))  # None when off
    split = prior.load(path, size=(56, 72))  # a Split the trainer's Encoder reads like the latent cache

``train.prior.per_shot`` > 0 turns it on. The base draws ``per_shot`` images for each shot type
(prompt ``train.prior.prompt``, camera angles in turn) once; their latents and caption embeddings
are cached under ``<paths.cache>/prior/<key>.safetensors``, the key naming the base's fingerprint,
the prompts, the size and the sampler settings. Every optimiser step then adds the denoising loss
of ``train.prior.batch`` of them, times ``train.prior.weight`` (DreamBooth's prior loss), so the LoRA
keeps the base's own answer to "upper-body shot" while it learns the landmark's background.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from landmark_lora import fsutil
from landmark_lora.config import Params
from landmark_lora.diffusion.latents import caption_key
from landmark_lora.diffusion.loss import Split
from landmark_lora.logs import get_logger

log = get_logger(__name__)


def prior_prompts(params: Params) -> list[str]:
    """``per_shot`` prompts per shot type, cycling through the camera angles."""
    cfg, words = params.train.prior, params.caption
    angles = list(words.angle_words.values())
    return [cfg.prompt.format(shot=shot, angle=angles[i % len(angles)])
            for shot in words.shot_words.values() for i in range(cfg.per_shot)]


def cache_file(params: Params, fingerprint: str, cache_dir: Path, size: tuple[int, int]) -> Path:
    cfg = params.train.prior
    blob = json.dumps({"base": fingerprint, "prompts": prior_prompts(params), "size": list(size),
                       "steps": cfg.steps, "guidance": cfg.guidance, "seed": cfg.seed}, sort_keys=True)
    return Path(cache_dir) / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.safetensors"


@torch.no_grad()
def generate(base: Path, prompts: list[str], size: tuple[int, int], steps: int, guidance: float,
             seed: int, chunk: int = 8) -> dict[str, torch.Tensor]:
    """The base's latents (the UNet's scaled space, as the latent cache holds) and caption embeddings."""
    from landmark_lora.diffusion.components import Components, encode_prompts
    from landmark_lora.diffusion.pipeline import load_pipeline

    pipe = load_pipeline(base, device="auto")
    gen = torch.Generator().manual_seed(seed)
    width, height = size
    tensors: dict[str, torch.Tensor] = {}
    for start in range(0, len(prompts), chunk):
        batch = prompts[start:start + chunk]
        latents = pipe(batch, width=width, height=height, num_inference_steps=steps, guidance_scale=guidance,
                       generator=gen, output_type="latent").images
        for i, latent in enumerate(latents, start):
            tensors[f"{i}.mean"] = latent.float().cpu().contiguous()
            tensors[f"{i}.std"] = torch.zeros_like(tensors[f"{i}.mean"])  # the image itself: nothing to sample
    text = encode_prompts(Components(path=Path(base), text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer),
                          sorted(set(prompts)))
    for prompt, emb in zip(sorted(set(prompts)), text, strict=True):
        tensors[caption_key(prompt)] = emb.float().cpu().contiguous()
    return tensors


def ensure(params: Params, base: Path, fingerprint: str, cache_dir: Path, size: tuple[int, int]) -> Path | None:
    """Generate the prior latents unless this recipe's file is cached; its path, or None when off."""
    if params.train.prior.per_shot == 0:
        return None
    path = cache_file(params, fingerprint, cache_dir, size)
    if not path.exists():
        from safetensors.torch import save_file

        cfg, prompts = params.train.prior, prior_prompts(params)
        log.info("train: prior preservation: the base draws %d images (%dx%d, %d steps) into %s",
                 len(prompts), size[0], size[1], cfg.steps, path)
        tensors = generate(base, prompts, size, cfg.steps, cfg.guidance, cfg.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        with fsutil.atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"prompts": json.dumps(prompts)})
    return path


def load(path: Path, size: tuple[int, int]) -> Split:
    """The cached prior as a training split (entries with ``text``, ``width``, ``height``)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as fh:
        prompts = json.loads(fh.metadata()["prompts"])
    entries = [{"text": p, "width": size[0], "height": size[1]} for p in prompts]
    return Split(entries, tensors=load_file(str(path)))
