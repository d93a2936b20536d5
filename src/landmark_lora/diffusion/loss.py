"""The denoising loss on latents: training's per-step loss and the held-out eval loss.

    from landmark_lora.diffusion.latents import load_latents
    from landmark_lora.diffusion.loss import Encoder, Split, evaluate_loss
    entries, tensors = load_latents(Layout.of(params).latents, "val", base_fingerprint(base))
    enc = Encoder(Split(entries, tensors=tensors), parts, torch.device("cpu"), torch.float32, text_lora=False)
    evaluate_loss(unet, scheduler, enc, timesteps=(100, 500, 900), seed=0)   # {"eval_loss": ..., "eval_loss_t100": ...}

The train stage logs ``evaluate_loss`` while it trains and the evaluate stage computes the same
number for base and adapter, so both read it from here (no stage imports another stage).
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from landmark_lora.artifacts import Layout, read_records
from landmark_lora.diffusion.components import encode_images, encode_prompts, image_to_tensor, token_ids
from landmark_lora.diffusion.latents import caption_key


@dataclass
class Split:
    """One split, either from cached tensors or from image files encoded on demand."""

    entries: list[dict]
    tensors: dict[str, torch.Tensor] | None = None  # cached mode
    image_dir: Path | None = None  # uncached mode
    buckets: dict[tuple[int, int], list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, e in enumerate(self.entries):
            self.buckets.setdefault((e["width"], e["height"]), []).append(i)

    @classmethod
    def from_records(cls, layout: Layout, split: str) -> Split:
        """The processed split's images, encoded on demand (``train.cached_latents: false``)."""
        return cls([r.to_json() for r in read_records(layout, split)], image_dir=layout.split_dir(split))


class Encoder:
    """Turns a list of sample indices into (latents, text embeddings) on a device."""

    def __init__(self, split: Split, parts, device, dtype, text_lora: bool):
        self.split, self.parts, self.device, self.dtype, self.text_lora = split, parts, device, dtype, text_lora

    def latents(self, idx: list[int], sample: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.split.tensors is not None:
            mean = torch.stack([self.split.tensors[f"{i}.mean"] for i in idx])
            std = torch.stack([self.split.tensors[f"{i}.std"] for i in idx])
        else:
            from PIL import Image

            pixels = []
            for i in idx:
                with Image.open(self.split.image_dir / self.split.entries[i]["file_name"]) as im:
                    pixels.append(image_to_tensor(im))
            mean, std = encode_images(self.parts, torch.stack(pixels))
            mean, std = mean.cpu().float(), std.cpu().float()
        if sample:
            mean = mean + std * torch.randn(mean.shape, generator=generator)
        return mean.to(self.device, self.dtype)

    def text(self, idx: list[int], drop: list[bool]) -> torch.Tensor:
        captions = ["" if d else self.split.entries[i]["text"] for i, d in zip(idx, drop, strict=False)]
        if self.split.tensors is not None and not self.text_lora:
            emb = torch.stack([self.split.tensors[caption_key(c)] for c in captions])
            return emb.to(self.device, self.dtype)
        if self.text_lora:  # gradients must flow into the text-encoder LoRA: no cache, no no_grad
            return self.parts.text_encoder(token_ids(self.parts, captions).to(self.device))[0].to(self.dtype)
        return encode_prompts(self.parts, captions).to(self.device, self.dtype)


def diffusion_loss(unet, scheduler, latents, text, timesteps, noise, min_snr_gamma: float | None) -> torch.Tensor:
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    pred = unet(noisy, timesteps, text).sample
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if min_snr_gamma:
        from diffusers.training_utils import compute_snr

        snr = compute_snr(scheduler, timesteps)
        weight = torch.clamp(snr, max=min_snr_gamma)
        weight = weight / (snr + 1) if scheduler.config.prediction_type == "v_prediction" else weight / snr
        per_sample = per_sample * weight
    return per_sample.mean()


@contextmanager
def preserved_rng():
    """Eval must not shift the training noise stream: save and restore every RNG."""
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


@torch.no_grad()
def evaluate_loss(unet, scheduler, encoder: Encoder, timesteps: tuple[int, ...], seed: int,
                  batch: int = 8) -> dict[str, float]:
    """Held-out denoising loss at a fixed grid of timesteps with fixed noise (plain MSE).

    The same weights, data and seed give the same number, so runs are comparable.
    """
    with preserved_rng():
        was_training = unet.training
        unet.eval()
        gen = torch.Generator().manual_seed(seed)
        sums = {t: 0.0 for t in timesteps}
        count = 0
        for key in sorted(encoder.split.buckets):
            idx_all = encoder.split.buckets[key]
            for s in range(0, len(idx_all), batch):
                idx = idx_all[s:s + batch]
                latents = encoder.latents(idx, sample=False)
                text = encoder.text(idx, [False] * len(idx))
                for t in timesteps:
                    noise = torch.randn(latents.shape, generator=gen).to(latents.device, latents.dtype)
                    ts = torch.full((len(idx),), t, device=latents.device, dtype=torch.long)
                    noisy = scheduler.add_noise(latents, noise, ts)
                    target = (scheduler.get_velocity(latents, noise, ts)
                              if scheduler.config.prediction_type == "v_prediction" else noise)
                    pred = unet(noisy, ts, text).sample
                    sums[t] += F.mse_loss(pred.float(), target.float(), reduction="sum").item() / pred[0].numel()
                count += len(idx)
        unet.train(was_training)
    out = {f"eval_loss_t{t:03d}": sums[t] / max(count, 1) for t in timesteps}
    out["eval_loss"] = float(np.mean(list(out.values())))
    return out
