"""The toy-world base build: a micro recipe end to end (render, tokenizer, VAE, latents, UNet, save)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from landmark_lora.toyworld.build import (
    MANIFEST,
    RECIPE,
    build,
    compare_with_shipped,
    tokenizer_corpus,
    weight_hashes,
)
from landmark_lora.toyworld.tokenizer import train_bpe

MICRO = dataclasses.replace(
    RECIPE, width=32, height=40, images=16, heldout=4, vae_channels=(8, 8, 8, 8), latent_channels=4,
    vae_steps=2, vae_batch=4, unet_channels=(32, 32), cross_dim=32, text_hidden=32, unet_steps=2,
    unet_batch=4, warmup=1)


@pytest.fixture(scope="module")
def micro_build(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("toybuild")
    report = build(MICRO, root / "out", root / "work", progress=False)
    return root / "out", root / "work", report


def test_micro_build_is_a_loadable_sd_pipeline_with_a_manifest(micro_build):
    import torch

    from landmark_lora.diffusion.pipeline import load_pipeline

    out, _, report = micro_build
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["recipe"]["images"] == 16 and manifest["recipe_key"] == MICRO.key()
    assert manifest["files"] == weight_hashes(out)  # every file's sha256 recorded
    assert 0 < report["vae_heldout_psnr_db"] < 60 and report["unet_final_loss"] > 0
    assert not compare_with_shipped(out)  # a different recipe never passes for the shipped weights

    pipe = load_pipeline(out)  # fp16 on disk, fp32 in memory
    assert pipe.unet.dtype == torch.float32 and pipe.vae_scale_factor == 8
    img = pipe("snapshot photo, in front of a park, wide shot", num_inference_steps=2, height=40, width=32,
               generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert img.shape == (40, 32, 3) and np.isfinite(img).all()


@contextmanager
def _toyworld_log() -> Iterator[io.StringIO]:
    """What the build logs (landmark_lora.toyworld.*, INFO and up), whatever handlers are set up."""
    stream, logger = io.StringIO(), logging.getLogger("landmark_lora.toyworld")
    handler, level = logging.StreamHandler(stream), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_rebuild_resumes_from_the_checkpoints(micro_build):
    out, work, _ = micro_build
    longer = dataclasses.replace(MICRO, unet_steps=3)  # same world and VAE recipe fields except steps
    assert (work / f"world-{MICRO.world_key()}.npz").exists()
    with _toyworld_log() as stream:
        build(longer, out.with_name("out2"), work, progress=False)
    log = stream.getvalue()
    assert "rendered" not in log  # the world's photos were reused, not rendered again
    assert "VAE: resumed at step 2" in log and "UNet step 3/3" in log


def test_the_packaged_tokenizer_is_the_one_the_recipe_trains():
    """Changing the world's captions or the catalogue means retraining the shipped tokenizer."""
    from landmark_lora.diffusion.base import TOYWORLD_DIR

    merges = train_bpe(tokenizer_corpus())
    shipped = (TOYWORLD_DIR / "tokenizer" / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    assert [" ".join(m) for m in merges] == shipped


def test_evaluate_runs_an_fp16_saved_base_in_fp32(micro_build):
    """The shipped toy-world weights are fp16 on disk; evaluate must not mix Half and Float on CPU."""
    import torch

    from landmark_lora.diffusion.pipeline import load_pipeline as evaluate_pipeline

    out, _, _ = micro_build
    pipe = evaluate_pipeline(out)
    assert pipe.unet.dtype == torch.float32 and pipe.vae.dtype == torch.float32
    img = pipe("snapshot photo, in front of a beach", num_inference_steps=2, height=40, width=32,
               generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert np.isfinite(img).all()


def test_a_unet_only_recipe_reuses_another_bases_vae(micro_build, tmp_path):
    """--vae-from: a recipe that changes only the UNet phase skips the VAE phase, and keeps that VAE."""
    from landmark_lora.toyworld.build import seed_vae

    out, _, _ = micro_build
    angles_named = dataclasses.replace(MICRO, angle_caption_rate=1.0)  # another UNet recipe, same VAE
    origin = seed_vae(angles_named, tmp_path / "work", out)
    with _toyworld_log() as stream:
        build(angles_named, tmp_path / "out", tmp_path / "work", progress=False, notes={"vae_from": origin})
    assert "VAE: resumed at step 2" in stream.getvalue()
    vae_file = "vae/diffusion_pytorch_model.safetensors"
    assert weight_hashes(tmp_path / "out")[vae_file] == weight_hashes(out)[vae_file]
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["vae_from"] == {"recipe_key": MICRO.key(), "vae_sha256": weight_hashes(out)[vae_file]}

    other_vae = dataclasses.replace(MICRO, vae_steps=3)
    with pytest.raises(ValueError, match="vae_steps"):
        seed_vae(other_vae, tmp_path / "work2", out)
