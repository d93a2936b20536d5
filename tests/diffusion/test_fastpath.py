"""diffusion.fastpath is a pure speed change: with it, the tiny UNet's LoRA training gives the
same losses, gradients and weights, bit for bit, as without it."""

from __future__ import annotations

import inspect

import torch

from landmark_lora.config import parse_params
from landmark_lora.diffusion.components import load_components
from landmark_lora.diffusion.fastpath import speed_up
from landmark_lora.diffusion.loss import diffusion_loss
from landmark_lora.diffusion.trainer import add_lora, make_optimizer


def _train(base, fast: bool, steps: int = 3):
    torch.manual_seed(0)
    parts = load_components(base, unet=True)
    params = parse_params({"train": {"max_steps": steps, "warmup_steps": 1}, "lora": {"dropout": 0.1}})
    trainable = add_lora(parts, params)
    processors = {type(m.processor) for m in parts.unet.modules() if getattr(m, "processor", None) is not None}
    for cls in processors:  # the cache is per class, so undo an earlier test's for the slow run
        if not fast and "__signature__" in vars(cls.__call__):
            del cls.__call__.__signature__
    changed = speed_up(parts.unet) if fast else 0
    parts.unet.train()
    opt, sched = make_optimizer(trainable, params.train, torch.device("cpu"))
    gen = torch.Generator().manual_seed(1)
    losses, grads = [], []
    for _ in range(steps):
        latents = torch.randn(2, 4, 8, 8, generator=gen)
        text = torch.randn(2, 77, 32, generator=gen)
        noise = torch.randn(latents.shape, generator=gen)
        ts = torch.randint(0, 1000, (2,), generator=gen)
        torch.manual_seed(2)  # the LoRA dropout masks
        loss = diffusion_loss(parts.unet, parts.scheduler, latents, text, ts, noise, 5.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        grads.append([p.grad.clone() for p in trainable])
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses, grads, [p.detach().clone() for p in trainable], changed, parts.unet


def test_fast_path_trains_bit_identically(tiny_base):
    slow_losses, slow_grads, slow_weights, _, _ = _train(tiny_base, fast=False)
    fast_losses, fast_grads, fast_weights, changed, unet = _train(tiny_base, fast=True)
    assert changed >= 1  # a processor class got its signature cached
    assert fast_losses == slow_losses
    assert all(torch.equal(a, b) for step_a, step_b in zip(fast_grads, slow_grads, strict=True)
               for a, b in zip(step_a, step_b, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(fast_weights, slow_weights, strict=True))
    proc = next(m.processor for m in unet.modules() if getattr(m, "processor", None) is not None)
    assert "encoder_hidden_states" in inspect.signature(proc.__call__).parameters



def test_text_encoder_lr_gives_the_text_encoders_lora_its_own_rate(tiny_base):
    for text_lr in (None, 5e-3):
        parts = load_components(tiny_base, unet=True, text=True)
        params = parse_params({"train": {"learning_rate": 1e-3, "warmup_steps": 0, "text_encoder_lr": text_lr},
                               "lora": {"text_encoder": True}})
        trainable = add_lora(parts, params)
        text_ids = {id(p) for p in parts.text_encoder.parameters()}
        opt, _ = make_optimizer(trainable, params.train, torch.device("cpu"), text_params=parts.text_encoder.parameters())
        rate = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
        assert sorted(rate) == sorted(id(p) for p in trainable)  # every LoRA tensor once
        assert any(i in text_ids for i in rate) and any(i not in text_ids for i in rate)
        for i, lr in rate.items():
            assert lr == (text_lr if text_lr and i in text_ids else 1e-3)
