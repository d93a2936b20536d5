"""Synthetic sample set: layout, labels, determinism, and pictures that show what the labels say."""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landmark_lora.catalogue import ANGLES, BACKGROUND, SHOTS, Landmark, load_catalogue
from landmark_lora.config import SampleDataConfig
from landmark_lora.synthetic.person import POSES
from landmark_lora.synthetic.photo import render_photo, render_plate
from landmark_lora.synthetic.render import render_sample_set

CAT = load_catalogue()
CFG = SampleDataConfig()  # the default 192 x 256 photos: the sizes the checks below are tuned on
SMALL = SampleDataConfig(width=64, height=96, poses_per_view=1)


def _render(slug: str, angle: str, shot: str, pose: str = "standing relaxed", variant: int = 0,
            landmark: Landmark | None = None) -> tuple[np.ndarray, np.ndarray]:
    img, mask = render_photo(landmark or CAT[slug], angle, shot, pose, variant, CFG, return_mask=True)
    assert img.mode == "RGB" and img.size == (CFG.width, CFG.height)
    assert mask.shape == (CFG.height, CFG.width) and mask.dtype == bool
    return np.asarray(img, dtype=np.float32), mask


def _background_diff(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Mean absolute pixel difference where neither photo shows the person."""
    (img_a, mask_a), (img_b, mask_b) = a, b
    keep = ~(mask_a | mask_b)
    assert keep.mean() > 0.3, "too little background left to compare"
    return float(np.abs(img_a - img_b)[keep].mean())


def _aligned_diff(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], shift: int = 4) -> float:
    """Background difference after undoing a small camera shift and an exposure change (best over shifts)."""
    (img_a, mask_a), (img_b, mask_b) = a, b
    h, w = mask_a.shape
    core = (slice(shift, h - shift), slice(shift, w - shift))
    best = float("inf")
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            moved = (slice(shift + dy, h - shift + dy), slice(shift + dx, w - shift + dx))
            keep = ~(mask_a[moved] | mask_b[core])
            pa, pb = img_a[moved][keep], img_b[core][keep]
            best = min(best, float(np.abs(pa * (pb.mean(0) / pa.mean(0)) - pb).mean()))
    return best


# ---------------------------------------------------------------- the set on disk


def test_sample_set_layout_and_metadata(tmp_path: Path) -> None:
    cat = {k: CAT[k] for k in ("gyeongbokgung", "haeundae_beach")}
    cfg = SampleDataConfig(width=64, height=96, poses_per_view=2, plates_per_view=2, jpeg_quality=80)

    n = render_sample_set(tmp_path, cat, cfg)

    # person photos: landmark x angle x shot x pose; plates: landmark x angle x 2
    assert n == 2 * len(ANGLES) * len(SHOTS) * 2 + 2 * len(ANGLES) * 2
    with (tmp_path / "metadata.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["file", "shot", "angle", "pose", "caption"]
        rows = list(reader)
    assert len(rows) == n
    photos = [r for r in rows if r["shot"] != BACKGROUND]
    plates = [r for r in rows if r["shot"] == BACKGROUND]
    expected = {f"{s}/{s}_{a}_{sh}_{k}.jpg" for s in cat for a in ANGLES for sh in SHOTS for k in range(2)}
    expected_plates = {f"{s}/{s}_{a}_plate_{k}.jpg" for s in cat for a in ANGLES for k in range(2)}
    assert {r["file"] for r in photos} == expected
    assert {r["file"] for r in plates} == expected_plates
    assert all(r["pose"] == "" and r["caption"] == "" for r in plates)
    for r in photos:
        slug, name = r["file"].split("/")
        assert name == f"{slug}_{r['angle']}_{r['shot']}_{name[-5]}.jpg"  # labels match the file name
        assert r["shot"] in SHOTS and r["angle"] in ANGLES and r["pose"] in POSES and r["caption"] == ""
    for r in rows:
        with Image.open(tmp_path / r["file"]) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 96))
    # The two photos of one view show different poses.
    by_view: dict[tuple, set] = {}
    for r in photos:
        by_view.setdefault(r["file"][:-6], set()).add(r["pose"])
    assert all(len(poses) == 2 for poses in by_view.values())
    # Only photos and the manifest: no temporary files left for ingest to trip over.
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert on_disk == expected | expected_plates | {"metadata.csv"}


def test_a_plate_is_the_view_without_the_person() -> None:
    """A plate matches the photos of its view outside the person, and has no person in it."""
    lm = CAT["gyeongbokgung"]
    plate = np.asarray(render_plate(lm, "low_angle", 0, CFG), dtype=np.float32)
    photo, mask = _render("gyeongbokgung", "low_angle", "full_body")
    assert _aligned_diff((plate, np.zeros_like(mask)), (photo, mask)) < 12
    other = np.asarray(render_plate(CAT["haeundae_beach"], "low_angle", 0, CFG), dtype=np.float32)
    assert _aligned_diff((other, np.zeros_like(mask)), (photo, mask)) > 25
    assert not np.array_equal(plate, np.asarray(render_plate(lm, "low_angle", 1, CFG), dtype=np.float32))


def test_rerun_writes_byte_identical_files(tmp_path: Path) -> None:
    cat = {"seongsan_ilchulbong": CAT["seongsan_ilchulbong"]}
    render_sample_set(tmp_path / "a", cat, SMALL)
    render_sample_set(tmp_path / "b", cat, SMALL)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == len(ANGLES) * len(SHOTS) + len(ANGLES) * SMALL.plates_per_view + 1
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_same_pixels_in_a_fresh_process_with_another_hash_seed() -> None:
    # Catches seeding from Python's per-process salted hash() and state kept between calls.
    code = (
        "import hashlib; from landmark_lora.catalogue import load_catalogue;"
        "from landmark_lora.config import SampleDataConfig;"
        "from landmark_lora.synthetic.photo import render_photo;"
        "im = render_photo(load_catalogue()['n_seoul_tower'], 'high_angle', 'wide', 'waving', 1, SampleDataConfig());"
        "print(hashlib.sha256(im.tobytes()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = render_photo(CAT["n_seoul_tower"], "high_angle", "wide", "waving", 1, CFG)
    assert out.stdout.strip() == hashlib.sha256(here.tobytes()).hexdigest()


def test_seed_changes_the_photos() -> None:
    a = render_photo(CAT["gyeongbokgung"], "eye_level", "full_body", "waving", 0, SMALL)
    b = render_photo(CAT["gyeongbokgung"], "eye_level", "full_body", "waving", 0, SMALL.model_copy(update={"seed": 7}))
    assert a.tobytes() != b.tobytes()


def test_keeps_other_rows_of_an_existing_manifest(tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text(
        "file,shot,angle,pose,caption\ngyeongbokgung/IMG_0001.jpg,wide,eye_level,jumping,my own photo\n"
    )
    cat = {"gyeongbokgung": CAT["gyeongbokgung"]}
    n = render_sample_set(tmp_path, cat, SMALL)
    n = render_sample_set(tmp_path, cat, SMALL)  # a rerun replaces its own rows, never duplicates them

    with (tmp_path / "metadata.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n + 1
    assert rows[0] == {"file": "gyeongbokgung/IMG_0001.jpg", "shot": "wide", "angle": "eye_level",
                       "pose": "jumping", "caption": "my own photo"}


# ---------------------------------------------------------------- what the pictures show


@pytest.mark.parametrize("slug", ["bukchon_hanok_village", "haeundae_beach", "seongsan_ilchulbong"])
def test_one_place_one_angle_keeps_its_background_across_shots(slug: str) -> None:
    wide = _render(slug, "eye_level", "wide")
    for shot in ("full_body", "thigh_up"):
        # Up to the hand-held shift and the exposure change, the same pixels: only sensor noise is left.
        assert _aligned_diff(wide, _render(slug, "eye_level", shot, "waving", variant=1)) < 7.5, shot
    elsewhere = "gyeongbokgung"
    assert _aligned_diff(wide, _render(elsewhere, "eye_level", "wide")) > 20


@pytest.mark.parametrize("slug", ["n_seoul_tower", "seongsan_ilchulbong"])
def test_camera_angle_changes_the_view(slug: str) -> None:
    eye = _render(slug, "eye_level", "wide")
    jitter = _background_diff(eye, _render(slug, "eye_level", "wide", "arms crossed", variant=1))
    for angle in ("low_angle", "high_angle"):
        assert _background_diff(eye, _render(slug, angle, "wide")) > 2 * jitter, angle


def test_high_angle_shows_more_ground_and_low_angle_less() -> None:
    def sand_share(angle: str) -> float:
        img, mask = _render("haeundae_beach", angle, "wide")
        sand = (img[..., 0] - img[..., 2] > 30) & (img[..., 0] > 170) & ~mask  # warm beige, not sky or sea
        return float(sand.mean())

    low, eye, high = (sand_share(a) for a in ("low_angle", "eye_level", "high_angle"))
    assert low < eye < high, (low, eye, high)


def test_landmark_looms_from_below_and_shrinks_from_above() -> None:
    def roof_height(angle: str) -> int:
        img, mask = _render("gyeongbokgung", angle, "wide")
        dark = (img.max(axis=-1) < 85) & ~mask  # the charcoal tiled roofs
        rows = np.nonzero(dark.mean(axis=1) > 0.05)[0]
        return int(rows.max() - rows.min())

    low, eye, high = (roof_height(a) for a in ("low_angle", "eye_level", "high_angle"))
    assert low > 1.3 * eye and eye > 1.3 * high, (low, eye, high)


@pytest.mark.parametrize("pose", ["standing relaxed", "sitting on steps"])
def test_person_fills_less_of_the_frame_as_the_shot_widens(pose: str) -> None:
    shares = [float(_render("n_seoul_tower", "eye_level", shot, pose)[1].mean()) for shot in SHOTS]
    assert shares == sorted(shares, reverse=True) and len(set(shares)) == len(SHOTS), shares
    assert shares[0] > 0.35 and shares[-1] < 0.05, shares  # close-up: mostly person; wide: mostly landmark


@pytest.mark.parametrize("angle", ANGLES)
def test_full_body_and_wide_keep_the_whole_person_in_frame(angle: str) -> None:
    # Every pose, a few variants each: the person's position is jittered per photo.
    for shot, pose, variant in itertools.product(("full_body", "wide"), POSES, range(3)):
        _, mask = _render("bukchon_hanok_village", angle, shot, pose, variant)
        rows, cols = np.nonzero(mask)
        assert rows.size, (shot, pose, variant)
        h, w = mask.shape
        assert rows.min() > 0 and cols.min() > 0 and rows.max() < h - 1 and cols.max() < w - 1, (shot, pose, variant)
        if shot == "full_body":  # head to feet fills the height, with a margin
            assert rows.min() < 0.12 * h and rows.max() > 0.88 * h, (pose, rows.min(), rows.max())
        else:
            assert rows.max() - rows.min() < 0.4 * h, pose


def test_pose_changes_the_person() -> None:
    masks = {pose: _render("haeundae_beach", "eye_level", "upper_body", pose)[1] for pose in POSES}
    for i, a in enumerate(POSES):
        for b in POSES[i + 1:]:
            assert (masks[a] ^ masks[b]).mean() > 0.01, (a, b)
    # A head-anchored frame: the waving hand rises above the head, a relaxed arm does not.
    assert np.nonzero(masks["waving"])[0].min() < np.nonzero(masks["standing relaxed"])[0].min() - 5


def test_unknown_landmark_still_renders_its_own_scene() -> None:
    new = Landmark("bulguksa", "Bulguksa", "불국사", "Buddhist temple with stone pagodas in Gyeongju")
    img, mask = _render("", "low_angle", "wide", "waving", landmark=new)
    again, _ = _render("", "low_angle", "wide", "waving", landmark=new)
    assert np.array_equal(img, again)
    assert img[~mask].std() > 20  # a scene, not a flat fill
    for slug in CAT:
        assert _background_diff((img, mask), _render(slug, "low_angle", "wide", "waving")) > 15, slug
    other = Landmark("zz_9", "ZZ", "지지", "x")  # nothing to go on but the slug
    assert render_photo(other, "high_angle", "close_up", "arms crossed", 3, SMALL).size == (64, 96)


def test_photos_carry_sensor_noise() -> None:
    img, _ = _render("haeundae_beach", "low_angle", "wide")
    sky = img[2:14, 2:40]  # top-left: plain sky, a vertical gradient, so flat along each row
    grain = np.abs(np.diff(sky, axis=1)).mean()
    assert 1.5 < grain < 12, grain  # visible grain, yet no speckle that hides the picture


def test_unknown_shot_or_angle_is_refused() -> None:
    with pytest.raises(ValueError, match="shot 'selfie'"):
        render_photo(CAT["gyeongbokgung"], "eye_level", "selfie", "waving", 0, SMALL)
    with pytest.raises(ValueError, match="angle 'sideways'"):
        render_photo(CAT["gyeongbokgung"], "sideways", "wide", "waving", 0, SMALL)
