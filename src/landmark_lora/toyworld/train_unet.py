"""The toy-world build's UNet phase: the UNet and the CLIP text encoder trained together on VAE latents.

    from landmark_lora.toyworld.train_unet import train_unet
    unet, text, hist = train_unet(recipe, captions, means, stds, scale, tokenizer, work)  # resumable

Epsilon prediction on the SD 1.x DDPM noise schedule (diffusion.base.SCHEDULER_CONFIG); each step
samples its latents from the VAE posterior (``means``, ``stds``, times ``scale``) and drops
``recipe.caption_dropout`` of the captions to "" for classifier-free guidance.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landmark_lora.diffusion.base import SCHEDULER_CONFIG
from landmark_lora.logs import get_logger
from landmark_lora.toyworld.recipe import Recipe, text_config, unet_config
from landmark_lora.toyworld.training import Progress, lr_at, resume_checkpoint, save_checkpoint

if TYPE_CHECKING:  # torch costs seconds to import: only when the UNet really trains
    import torch

log = get_logger(__name__)


def train_unet(recipe: Recipe, captions: list[str], means: torch.Tensor, stds: torch.Tensor, scale: float,
               tokenizer: Any, work: Path, progress: Progress | None = None,
               ) -> tuple[Any, Any, list[float]]:
    """(UNet2DConditionModel, CLIPTextModel, loss history) after ``recipe.unet_steps``; checkpointed
    into ``work`` every 100 steps."""
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(recipe.seed + 1)
    unet = UNet2DConditionModel(**unet_config(recipe))
    torch.manual_seed(recipe.seed + 2)
    text = CLIPTextModel(CLIPTextConfig(**text_config(recipe, len(tokenizer), tokenizer.bos_token_id,
                                                       tokenizer.eos_token_id)))
    sched = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.unet_lr, weight_decay=0.01, foreach=True)
    ckpt = work / f"unet-{recipe.key()}.pt"
    step, hist = resume_checkpoint(ckpt, {"unet": unet, "text": text}, opt, "UNet")
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                      return_tensors="pt").input_ids[0]
    alphas = sched.alphas_cumprod
    unet.train()
    text.train()
    t0, done0 = time.time(), step
    while step < recipe.unet_steps:
        # every draw from the generator, in a fixed order: a resumed run sees the same stream
        sg = torch.Generator().manual_seed(recipe.seed * 100003 + step)
        idx = torch.randint(0, len(means), (recipe.unet_batch,), generator=sg)
        lat = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=sg)) * scale
        noise = torch.randn(lat.shape, generator=sg)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=sg)
        drop = torch.rand(len(idx), generator=sg) < recipe.caption_dropout
        batch_ids = torch.where(drop[:, None], empty[None, :], ids[idx])
        a = alphas[t].sqrt()[:, None, None, None]
        s = (1 - alphas[t]).sqrt()[:, None, None, None]
        noisy = a * lat + s * noise
        for group in opt.param_groups:
            group["lr"] = lr_at(step, recipe.unet_steps, recipe.unet_lr, recipe.warmup)
        cond = text(batch_ids)[0]
        pred = unet(noisy, t, encoder_hidden_states=cond).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        hist.append(loss.item())
        if progress:
            progress(step, recipe.unet_steps, float(loss))
        if step % 25 == 0 or step == recipe.unet_steps:
            log.info("toyworld: UNet step %d/%d loss %.4f %.2f s/step", step, recipe.unet_steps,
                     np.mean(hist[-25:]), (time.time() - t0) / max(1, step - done0))
        if step % 100 == 0 or step == recipe.unet_steps:
            save_checkpoint(ckpt, {"unet": unet, "text": text}, opt, step, hist)
    unet.eval()
    text.eval()
    return unet, text, hist
