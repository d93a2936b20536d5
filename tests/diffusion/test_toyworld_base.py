"""The shipped toy-world base: the recipe in code, checked weights, a VAE and UNet that really learnt."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from landmark_lora.diffusion import base as base_mod
from landmark_lora.diffusion.base import TOYWORLD_DIR, BaseModelError, ensure_base_model
from landmark_lora.toyworld.build import MANIFEST, RECIPE, weight_hashes
from landmark_lora.toyworld.world import world_samples


def test_shipped_base_matches_the_recipe_in_code_and_its_hashes(tmp_path):
    assert ensure_base_model("toyworld", tmp_path / "unused") == TOYWORLD_DIR
    manifest = json.loads((TOYWORLD_DIR / MANIFEST).read_text())
    recipe = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(RECIPE).items()}
    assert manifest["recipe"] == recipe, "the recipe changed: rebuild with `landmark-lora build-base toyworld`"
    assert manifest["files"] == weight_hashes(TOYWORLD_DIR)
    total = sum(p.stat().st_size for p in TOYWORLD_DIR.rglob("*") if p.is_file())
    assert total < 20 * 2**20  # shipped in the package: at most 20 MiB


def test_a_damaged_shipped_file_is_refused_with_the_fix(tmp_path, monkeypatch):
    copy = tmp_path / "toyworld"
    shutil.copytree(TOYWORLD_DIR, copy)
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")  # what a clone without LFS holds
    monkeypatch.setattr(base_mod, "TOYWORLD_DIR", copy)
    with pytest.raises(BaseModelError, match=r"does not match the sha256.*build-base toyworld"):
        ensure_base_model("toyworld")
    (copy / MANIFEST).unlink()
    with pytest.raises(BaseModelError, match="installed without its toy-world weights"):
        ensure_base_model("toyworld")


def _psnr(vae, photos: np.ndarray) -> float:
    x = torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    mse = ((rec - x) ** 2).mean(dim=(1, 2, 3)) / 4
    return float((10 * torch.log10(1 / mse)).mean())


def test_the_vae_reconstructs_unseen_world_photos_and_a_random_one_does_not(tiny_base):
    from diffusers import AutoencoderKL

    # seed 7: places, people and poses the build never rendered
    photos = np.stack([np.asarray(s.image) for s in world_samples(12, seed=7, width=56, height=72)])
    trained = AutoencoderKL.from_pretrained(TOYWORLD_DIR, subfolder="vae", torch_dtype=torch.float32)
    random = AutoencoderKL.from_pretrained(tiny_base, subfolder="vae")
    assert _psnr(trained, photos) > 21.0
    assert _psnr(random, photos) < 15.0
