"""The evaluation metrics mean something: real photos, sample photos and noise."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from landmark_lora.catalogue import load_catalogue
from landmark_lora.config import SampleDataConfig, parse_params
from landmark_lora.metrics import NO_PERSON, background_consistency, background_similarity, classify_shot
from landmark_lora.scoring import prompt_set
from landmark_lora.synthetic.photo import render_photo

CAT = load_catalogue()
CFG = SampleDataConfig()


def _noise(w=192, h=256, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_shot_classifier_calls_the_astronaut_upper_body_or_close_up():
    data = pytest.importorskip("skimage.data")
    assert classify_shot(Image.fromarray(data.astronaut())) in ("upper_body", "close_up")


def test_shot_classifier_finds_no_person_in_noise():
    assert classify_shot(_noise()) == NO_PERSON


def test_shot_classifier_separates_tight_from_wide_framing():
    data = pytest.importorskip("skimage.data")
    astro = Image.fromarray(data.astronaut())
    tight = astro.crop((150, 20, 370, 240))  # the face fills the frame
    assert classify_shot(tight) == "close_up"
    far = Image.new("RGB", (1024, 1024), (120, 150, 190))
    far.paste(astro.resize((140, 140)), (450, 600))  # small in a big frame
    assert classify_shot(far) not in ("close_up", "upper_body")


def test_background_consistency_same_place_beats_other_landmark():
    a = render_photo(CAT["gyeongbokgung"], "eye_level", "wide", "waving", 0, CFG)
    b = render_photo(CAT["gyeongbokgung"], "eye_level", "full_body", "arms crossed", 1, CFG)
    other = render_photo(CAT["haeundae_beach"], "eye_level", "wide", "waving", 0, CFG)
    same, different = background_similarity(a, b), background_similarity(a, other)
    assert same > different + 0.1


def test_background_consistency_other_angle_scores_lower_than_same_angle():
    ref = [render_photo(CAT["n_seoul_tower"], "low_angle", "wide", "waving", 0, CFG)]
    same = render_photo(CAT["n_seoul_tower"], "low_angle", "thigh_up", "waving", 1, CFG)
    other = render_photo(CAT["n_seoul_tower"], "high_angle", "thigh_up", "waving", 1, CFG)
    assert background_consistency(same, ref) > background_consistency(other, ref)


def test_noise_scores_worst_on_background_consistency():
    refs = [render_photo(CAT["seongsan_ilchulbong"], "eye_level", "wide", "waving", k, CFG) for k in range(2)]
    real = render_photo(CAT["seongsan_ilchulbong"], "eye_level", "upper_body", "waving", 3, CFG)
    other = render_photo(CAT["bukchon_hanok_village"], "eye_level", "wide", "waving", 0, CFG)
    scores = {"real": background_consistency(real, refs), "other": background_consistency(other, refs),
              "noise": background_consistency(_noise(), refs)}
    assert scores["noise"] < scores["other"] < scores["real"]
    assert scores["real"] - scores["noise"] > 0.2


def test_prompt_set_is_capped_spread_over_landmarks_and_seeded():
    params = parse_params({"eval": {"max_prompts": 4, "seed": 100}})
    val = [{"landmark": lm, "shot": s, "angle": "eye_level", "pose": "waving", "width": 64, "height": 64,
            "file_name": f"{lm}/{s}.png"} for lm in ("gyeongbokgung", "haeundae_beach") for s in ("wide", "close_up", "thigh_up")]
    prompts = prompt_set(params, val)
    assert len(prompts) == 4
    assert {p["landmark"] for p in prompts} == {"gyeongbokgung", "haeundae_beach"}
    assert [p["seed"] for p in prompts] == [100, 101, 102, 103]
    assert prompt_set(params, list(reversed(val))) == prompts  # order-independent
    assert all(p["prompt"].startswith("lmksnap snapshot photo, in front of") for p in prompts)


def test_each_grid_row_shows_the_real_photo_its_prompt_was_made_from(tmp_path):
    from landmark_lora.stages.evaluate import write_grids

    params = parse_params({"eval": {"max_prompts": 2}})
    val = [{"landmark": "gyeongbokgung", "shot": s, "angle": "high_angle", "pose": "arms crossed", "width": 48,
            "height": 64, "file_name": f"gyeongbokgung/{s}.png"} for s in ("close_up", "full_body")]
    prompts = prompt_set(params, val)
    assert [p["source"] for p in prompts] == ["gyeongbokgung/close_up.png", "gyeongbokgung/full_body.png"]
    close = Image.new("RGB", (48, 64), (255, 0, 0))
    full = Image.new("RGB", (48, 64), (0, 0, 255))
    val_dir = tmp_path / "val" / "gyeongbokgung"
    val_dir.mkdir(parents=True)
    close.save(val_dir / "close_up.png")
    full.save(val_dir / "full_body.png")
    gen = Image.new("RGB", (48, 64), (128, 128, 128))
    sets = {"prompts": prompts, "base": [gen, gen], "adapter": [gen, gen],
            "refs": {("gyeongbokgung", "high_angle"): [close, full]}, "source_dir": tmp_path / "val"}
    grid = np.asarray(Image.open(write_grids(tmp_path / "samples", sets)["gyeongbokgung"]).convert("RGB"))
    # the first column's two cells: red (close-up's own photo), then blue (the full-body one)
    reds = np.where((grid[..., 0] > 200) & (grid[..., 2] < 50))[0]
    blues = np.where((grid[..., 2] > 200) & (grid[..., 0] < 50))[0]
    assert reds.size and blues.size and reds.max() < blues.min()
