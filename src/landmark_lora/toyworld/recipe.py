"""The toy-world base's recipe: every field that decides its weights, and the model shapes it gives.

    from landmark_lora.toyworld.recipe import RECIPE, Recipe, unet_config
    RECIPE.key()                                     # '9eb683554d2c': names the build's checkpoints
    small = dataclasses.replace(RECIPE, unet_steps=200)
    UNet2DConditionModel(**unet_config(small))

``landmark-lora build-base toyworld`` trains ``RECIPE`` (landmark_lora.toyworld.build).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from landmark_lora.diffusion.base import MAX_TOKENS


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the toy-world base's weights. Change any field -> a new base."""

    version: int = 1
    seed: int = 0
    width: int = 56  # the 3:4 bucket preprocess makes from the sample photos at data.resolution 64
    height: int = 72
    images: int = 3600  # training photos of the world
    heldout: int = 120  # photos for the VAE's PSNR, never trained on
    # VAE: downsamples by 8 like SD (4 blocks), light at full resolution, no mid-block attention
    vae_channels: tuple[int, ...] = (16, 32, 64, 64)
    latent_channels: int = 8
    vae_steps: int = 600
    vae_batch: int = 32
    vae_lr: float = 2e-3
    kl_weight: float = 1e-6
    # UNet + text encoder
    unet_channels: tuple[int, ...] = (64, 128)
    unet_layers: int = 1
    cross_dim: int = 64
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    unet_steps: int = 1600
    unet_batch: int = 64
    unet_lr: float = 1e-3
    caption_dropout: float = 0.1
    angle_caption_rate: float = 1.0  # share of captions that name the camera angle (world.name_angles; 0: docs/results.md)
    warmup: int = 50
    threads: int = 1  # a shared 2-core machine: a 2nd OpenMP thread stalls at every barrier when descheduled

    def key(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def world_key(self) -> str:
        """Only the fields that change the rendered photos (a new step count reuses them)."""
        return self._key_of(WORLD_FIELDS)

    def vae_key(self) -> str:
        """The fields that change the VAE (a new UNet recipe resumes from the same VAE)."""
        return self._key_of(WORLD_FIELDS + VAE_FIELDS)

    def _key_of(self, fields: tuple[str, ...]) -> str:
        chosen = {k: getattr(self, k) for k in fields}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:12]


WORLD_FIELDS = ("version", "seed", "width", "height", "images", "heldout")
VAE_FIELDS = ("vae_channels", "latent_channels", "vae_steps", "vae_batch", "vae_lr", "kl_weight", "warmup", "threads")


RECIPE = Recipe()


def vae_config(recipe: Recipe) -> dict[str, Any]:
    n = len(recipe.vae_channels)
    return dict(in_channels=3, out_channels=3, block_out_channels=recipe.vae_channels,
                down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                layers_per_block=1, latent_channels=recipe.latent_channels, norm_num_groups=8,
                sample_size=recipe.height, mid_block_add_attention=False, force_upcast=False)


def unet_config(recipe: Recipe) -> dict[str, Any]:
    n = len(recipe.unet_channels)
    return dict(sample_size=8, in_channels=recipe.latent_channels,
                out_channels=recipe.latent_channels, block_out_channels=recipe.unet_channels,
                layers_per_block=recipe.unet_layers, down_block_types=("CrossAttnDownBlock2D",) * n,
                up_block_types=("CrossAttnUpBlock2D",) * n, mid_block_type="UNetMidBlock2DCrossAttn",
                cross_attention_dim=recipe.cross_dim, attention_head_dim=4, norm_num_groups=32)


def text_config(recipe: Recipe, vocab_size: int, bos: int, eos: int) -> dict[str, Any]:
    return dict(vocab_size=vocab_size, hidden_size=recipe.text_hidden, intermediate_size=recipe.text_hidden * 4,
                num_hidden_layers=recipe.text_layers, num_attention_heads=recipe.text_heads,
                max_position_embeddings=MAX_TOKENS, projection_dim=recipe.text_hidden, hidden_act="quick_gelu",
                bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
