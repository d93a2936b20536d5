"""Inpainting with the loaded base (4-channel UNet, latent blending): the region is redrawn, the plate's
pixels outside the feathered border come back exactly, and the same seed gives the same snapshot."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from landmark_lora.composite import compose
from landmark_lora.config import CompositeConfig
from landmark_lora.diffusion.inpaint import inpaint_pipeline, inpainter, region_mask

REGIONS = {"shots": {"upper_body": {"box": [0.25, 0.25, 0.75, 1.0], "spread": [0.02, 0.02, 0.02, 0.0], "count": 4}}}
CFG = CompositeConfig(feather_px=3, region_margin=0.0)
PROMPT = "lmksnap snapshot photo, upper-body shot, in front of Gyeongbokgung Palace, person waving"


@pytest.fixture(scope="module")
def ipipe(tiny_base):
    from landmark_lora.diffusion.pipeline import load_pipeline

    pipe = load_pipeline(tiny_base)
    assert pipe.unet.config.in_channels == 4  # an ordinary UNet: inpainting by latent blending
    return inpaint_pipeline(pipe)


def _plate() -> Image.Image:
    rng = np.random.default_rng(0)
    base = np.linspace(30, 220, 56 * 72 * 3).reshape(72, 56, 3)
    return Image.fromarray((base + rng.integers(0, 25, (72, 56, 3))).clip(0, 255).astype(np.uint8))


def test_the_mask_covers_the_region_in_whole_latent_cells():
    mask = np.asarray(region_mask((56, 72), (13, 17, 43, 72))) > 0
    ys, xs = np.nonzero(mask)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (8, 16, 48, 72)


def test_composite_keeps_the_plate_exactly_and_redraws_the_region(ipipe):
    plate = _plate()
    paint = inpainter(ipipe, PROMPT, steps=2, guidance=5.0)
    snap = compose(plate, "p", REGIONS, "upper_body", CFG, paint, seed=3)
    p, o = np.asarray(plate), np.asarray(snap.image)
    outside = snap.mask == 0
    assert np.array_equal(o[outside], p[outside])
    inside = snap.mask == 1
    assert np.abs(o[inside].astype(int) - p[inside]).mean() > 5  # the model drew something there
    again = compose(plate, "p", REGIONS, "upper_body", CFG, paint, seed=3)
    assert np.array_equal(np.asarray(again.image), o)
    assert np.isfinite(snap.seam(CFG.feather_px))


def test_a_plain_unet_on_8_channel_latents_blends_too(tmp_path):
    """The toy-world base (the default): UNet and VAE on 8 latent channels. diffusers blends only for 4;
    blending_unet lets it, and leaves the UNet's config as it was."""
    from landmark_lora.diffusion.base import ensure_base_model
    from landmark_lora.diffusion.pipeline import load_pipeline

    pipe = load_pipeline(ensure_base_model("toyworld", tmp_path))
    assert pipe.unet.config.in_channels == pipe.vae.config.latent_channels == 8
    ipipe = inpaint_pipeline(pipe)
    snap = compose(_plate(), "p", REGIONS, "upper_body", CFG, inpainter(ipipe, PROMPT, steps=2), seed=1)
    assert pipe.unet.config.in_channels == 8
    outside = snap.mask == 0
    assert np.array_equal(np.asarray(snap.image)[outside], np.asarray(_plate())[outside])


def test_scoring_composite_beside_text_to_image(tiny_base, tmp_path):
    """evaluate's composite section: same prompts, background vs the plate outside the region, skipped
    prompts counted with their reason, the seam score next to the real photos' own."""
    from landmark_lora.artifacts import Layout, PlateRecord, write_person_regions, write_plates
    from landmark_lora.config import parse_params
    from landmark_lora.diffusion.pipeline import load_pipeline
    from landmark_lora.scoring import score_composite

    params = parse_params({"paths": {"processed": str(tmp_path / "processed")}, "model": {"base": str(tiny_base)},
                           "eval": {"num_inference_steps": 2}, "composite": {"feather_px": 3, "region_margin": 0.0}})
    layout = Layout.of(params)
    plate = PlateRecord("gyeongbokgung", "eye_level", "p0", "gyeongbokgung/eye_level/p0.png", 56, 72, "r", "s")
    (layout.plates_dir / plate.file).parent.mkdir(parents=True)
    _plate().save(layout.plates_dir / plate.file)
    write_plates(layout, [plate])
    write_person_regions(layout, REGIONS)
    (tmp_path / "val").mkdir()
    _plate().save(tmp_path / "val" / "real.png")  # a "real photo" identical to the plate: seam 1.0
    prompts = [{"prompt": PROMPT, "landmark": "gyeongbokgung", "angle": "eye_level", "shot": shot, "pose": "waving",
                "width": 56, "height": 72, "seed": i, "source": "real.png"}
               for i, shot in enumerate(["upper_body", "upper_body", "wide"])]
    noise = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (72, 56, 3), dtype=np.uint8)) for i in range(3)]
    section, rows = score_composite(params, load_pipeline(tiny_base), prompts, noise, {}, tmp_path / "val")
    assert section["status"] == "computed" and section["prompts"] == len(rows) == 2
    assert list(section["skipped"].values()) == [1] and "no person region for shot 'wide'" in next(iter(section["skipped"]))
    assert section["composite"]["background_consistency"] >= 0.95 > section["t2i"]["background_consistency"] + 0.3
    assert section["real_seam_score"] == pytest.approx(1.0)
    assert np.isfinite(section["composite"]["seam_score"])
