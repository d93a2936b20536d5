"""Composite generation without a model: the person region per shot, the feathered mask, exact paste-back,
the seam score and the errors a person gets for a missing plate, a small plate or a region that does not fit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from landmark_lora.artifacts import Layout, PlateRecord, write_plates
from landmark_lora.composite import RegionError, compose, feather_mask, paste_back, person_region, seam_score
from landmark_lora.config import CompositeConfig
from landmark_lora.plates import PlateError, choose_plate, load_plate

REGIONS = {"shots": {"upper_body": {"box": [0.25, 0.2, 0.75, 1.0], "spread": [0.05, 0.0, 0.05, 0.0], "count": 9},
                     "close_up": {"box": [0.0, 0.0, 1.0, 1.0], "spread": [0.0, 0.0, 0.0, 0.0], "count": 3}}}
CFG = CompositeConfig(feather_px=3, region_spread=1.0, region_margin=0.0)


def _plate(size=(56, 72), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(40, 200, w * h * 3).reshape(h, w, 3)
    return Image.fromarray((base + rng.integers(0, 30, (h, w, 3))).clip(0, 255).astype(np.uint8))


def test_the_region_follows_the_shot_statistics_not_a_fixed_box():
    box = person_region(REGIONS, "upper_body", (56, 72), CFG)
    assert box == (11, 14, 45, 72)  # median 0.25..0.75 grown by one spread (0.05) each side, x 56 px
    wider = person_region(REGIONS, "upper_body", (56, 72), CFG.model_copy(update={"region_spread": 3.0}))
    assert wider[0] < box[0] and wider[2] > box[2]
    moved = {"shots": {"upper_body": {**REGIONS["shots"]["upper_body"], "box": [0.05, 0.2, 0.45, 1.0]}}}
    assert person_region(moved, "upper_body", (56, 72), CFG)[0] == 0


def test_a_shot_without_boxes_or_a_region_that_does_not_fit_is_refused_clearly():
    with pytest.raises(RegionError, match=r"no person region for shot 'wide'.*upper_body \(9 boxes\)"):
        person_region(REGIONS, "wide", (56, 72), CFG)
    with pytest.raises(RegionError, match="covers 100% of the 56x72 image"):
        person_region(REGIONS, "close_up", (56, 72), CFG)
    with pytest.raises(RegionError, match="too small for a person"):
        person_region(REGIONS, "upper_body", (16, 16), CFG)


def test_the_mask_is_zero_outside_and_ramps_inside_the_border():
    mask = feather_mask((20, 20), (5, 5, 15, 15), feather_px=3)
    assert mask[:5].max() == 0 and mask[:, 15:].max() == 0
    assert mask[5, 10] == pytest.approx(0.25) and mask[7, 10] == pytest.approx(0.75) and mask[10, 10] == 1.0


def test_rounded_corners_keep_the_plate_in_the_box_corners():
    mask = feather_mask((40, 60), (10, 10, 30, 60), feather_px=2, corner=0.5)
    assert mask[10, 10] == 0 and mask[59, 10] == 0 and mask[35, 20] == 1.0
    assert (mask > 0).sum() < (feather_mask((40, 60), (10, 10, 30, 60), 2) > 0).sum()


def test_pixels_outside_the_feathered_border_are_the_plates_own_exactly():
    plate = _plate()
    box = person_region(REGIONS, "upper_body", plate.size, CFG)
    out = compose(plate, "p", REGIONS, "upper_body", CFG, lambda im, b, seed: Image.new("RGB", im.size, (255, 0, 0)))
    p, o = np.asarray(plate), np.asarray(out.image)
    outside = out.mask == 0
    assert outside.sum() > 0.3 * outside.size
    assert np.array_equal(o[outside], p[outside])  # bit for bit
    x0, y0, x1, y1 = box
    assert tuple(o[(y0 + y1) // 2, (x0 + x1) // 2]) == (255, 0, 0)  # the generated person inside
    assert out.box == box


def test_the_seam_score_is_one_for_the_plate_itself_and_high_for_a_hard_edge():
    plate = _plate()
    box = person_region(REGIONS, "upper_body", plate.size, CFG)
    assert seam_score(plate, plate, box, 3) == pytest.approx(1.0)
    hard = paste_back(plate, Image.new("RGB", plate.size, (255, 0, 0)), feather_mask(plate.size, box, 0))
    assert seam_score(hard, plate, box, 3) > 3
    # the same plate's texture pasted in: no seam to see
    smooth = paste_back(plate, _plate(seed=1), feather_mask(plate.size, box, 3))
    assert seam_score(smooth, plate, box, 3) < 1.5


def test_plates_are_chosen_by_seed_or_name_and_missing_ones_name_what_exists(tmp_path):
    layout = Layout.of_processed(tmp_path / "processed")
    plates = []
    for i, angle in enumerate(["eye_level", "eye_level", "low_angle"]):
        rec = PlateRecord("gyeongbokgung", angle, f"p{i}", f"gyeongbokgung/{angle}/p{i}.png", 56, 72, "r", "s")
        (layout.plates_dir / rec.file).parent.mkdir(parents=True, exist_ok=True)
        _plate(seed=i).save(layout.plates_dir / rec.file)
        plates.append(rec)
    write_plates(layout, plates)
    assert [choose_plate(plates, "gyeongbokgung", "eye_level", seed=s).name for s in range(3)] == ["p0", "p1", "p0"]
    assert choose_plate(plates, "gyeongbokgung", "eye_level", name="p2").name == "p2"
    with pytest.raises(PlateError, match=r"no background plate for gyeongbokgung/high_angle; plates that exist: "
                                         r"gyeongbokgung/eye_level: p0, p1; gyeongbokgung/low_angle: p2"):
        choose_plate(plates, "gyeongbokgung", "high_angle")
    with pytest.raises(PlateError, match="no plate named 'nope'"):
        choose_plate(plates, "gyeongbokgung", "eye_level", name="nope")
    assert load_plate(layout.plates_dir, plates[0], (28, 36)).size == (28, 36)
    with pytest.raises(PlateError, match=r"plate 'p0' is 56x72 px, smaller than the asked 128x128"):
        load_plate(layout.plates_dir, plates[0], (128, 128))
