"""The toy-world build's VAE phase: train it (MSE + a tiny KL), measure it, and encode the photos once.

    from landmark_lora.toyworld.train_vae import train_vae, heldout_psnr, calibrate_scale, encode_latents
    vae = train_vae(recipe, data, work)                 # resumes from work/vae-<recipe.vae_key()>.pt
    heldout_psnr(vae, data["heldout"])                  # dB on 0..255 pixels
    vae.register_to_config(scaling_factor=calibrate_scale(vae, data["train"]))
    means, stds = encode_latents(vae, data["train"])    # what the UNet phase samples latents from

``data`` is landmark_lora.toyworld.build.render_dataset's: uint8 photos (N, H, W, 3).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landmark_lora.logs import get_logger
from landmark_lora.toyworld.recipe import Recipe, vae_config
from landmark_lora.toyworld.training import Progress, lr_at, resume_checkpoint, save_checkpoint

if TYPE_CHECKING:  # torch costs seconds to import: only when the VAE really trains
    import torch

log = get_logger(__name__)


def photos_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 photos (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    import torch

    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def train_vae(recipe: Recipe, data: dict[str, Any], work: Path, progress: Progress | None = None) -> Any:
    """The VAE (a diffusers AutoencoderKL) trained for ``recipe.vae_steps`` on ``data["train"]``;
    checkpointed into ``work`` every 100 steps."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(recipe.seed)
    vae = AutoencoderKL(**vae_config(recipe)).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0, foreach=True)
    ckpt = work / f"vae-{recipe.vae_key()}.pt"
    step, hist = resume_checkpoint(ckpt, {"model": vae}, opt, "VAE")
    x_all = photos_tensor(data["train"])
    g = torch.Generator().manual_seed(recipe.seed + 11)
    for _ in range(step):  # keep the batch stream identical across resumes
        torch.randint(0, len(x_all), (recipe.vae_batch,), generator=g)
    vae.train()
    t0 = time.time()
    while step < recipe.vae_steps:
        idx = torch.randint(0, len(x_all), (recipe.vae_batch,), generator=g)
        x = x_all[idx].contiguous(memory_format=torch.channels_last)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, recipe.vae_steps, recipe.vae_lr, recipe.warmup)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        mse = torch.nn.functional.mse_loss(rec, x)
        loss = mse + recipe.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        hist.append(mse.item())
        if progress:
            progress(step, recipe.vae_steps, float(mse))
        if step % 25 == 0 or step == recipe.vae_steps:
            psnr = 10 * math.log10(4.0 / max(float(np.mean(hist[-25:])), 1e-12))  # range [-1, 1]: peak^2 = 4
            log.info("toyworld: VAE step %d/%d mse %.5f (train PSNR %.2f dB) %.2f s/step", step, recipe.vae_steps,
                     np.mean(hist[-25:]), psnr, (time.time() - t0) / max(1, len(hist)))
        if step % 100 == 0 or step == recipe.vae_steps:
            save_checkpoint(ckpt, {"model": vae}, opt, step, hist)
    vae.eval()
    return vae


def heldout_psnr(vae: Any, heldout: np.ndarray) -> float:
    """Mean PSNR (dB, on 0..255 pixels) of the VAE's reconstructions (posterior mean) of ``heldout``."""
    import torch

    with torch.no_grad():
        x = photos_tensor(heldout)
        rec = torch.cat([vae.decode(vae.encode(x[i:i + 64]).latent_dist.mean).sample for i in range(0, len(x), 64)])
        mse = ((rec.clamp(-1, 1) - x) ** 2).mean(dim=(1, 2, 3)) / 4.0  # -> 0..1 range
        return float((10 * torch.log10(1.0 / mse.clamp_min(1e-12))).mean())


def calibrate_scale(vae: Any, train: np.ndarray) -> float:
    """1 / std of the latents of up to 512 training photos (the job 0.18215 does for SD's VAE)."""
    import torch

    with torch.no_grad():
        mean = vae.encode(photos_tensor(train[:512])).latent_dist.mean
    return round(1.0 / max(float(mean.std()), 1e-6), 5)


def encode_latents(vae: Any, train: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior mean and std of every training photo's latent (unscaled), 128 photos at a time."""
    import torch

    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(train), 128):
            dist = vae.encode(photos_tensor(train[i:i + 128])).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)
