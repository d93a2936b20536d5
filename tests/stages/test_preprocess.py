"""Preprocess: buckets, person-safe crops, image modes, captions, stable splits, incremental cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landmark_lora import rawtable
from landmark_lora.catalogue import load_catalogue
from landmark_lora.config import DataConfig, parse_params
from landmark_lora.fsutil import sha256_file
from landmark_lora.stages import preprocess as pp

CAT = load_catalogue()


def _params(tmp_path: Path, **data):
    return parse_params(
        {
            "paths": {k: str(tmp_path / v) for k, v in
                      {"incoming": "in", "raw": "raw", "quarantine": "q", "processed": "processed",
                       "reports": "reports", "cache": "cache"}.items()},
            "data": {"person_detector": "center", **data},
        }
    )


def _add_photos(raw: Path, specs: list[tuple[str, str, tuple[int, int]]], seed: int = 0) -> list[dict]:
    """Append photos (landmark, shot, (w, h)) to a raw table, as ingest would."""
    rows = rawtable.read_rows(raw)
    rng = np.random.default_rng(seed + len(rows))
    for landmark, shot, (w, h) in specs:
        seq = len(rows) + 1
        path = raw / landmark / f"p{seq:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=80)
        rows.append({
            "file": f"{landmark}/{path.name}", "landmark": landmark, "shot": shot, "angle": "eye_level",
            "pose": "waving", "caption": "", "sha256": sha256_file(path), "bytes": path.stat().st_size,
            "width": w, "height": h, "format": "JPEG", "mode": "RGB", "exif_orientation": 1,
            "source": f"{landmark}/{path.name}", "seq": seq, "ingested_at": "2026-11-25T00:00:00+00:00",
        })
    rawtable.write_rows(raw, rows)
    return rows


def _read_split(processed: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (processed / split / "metadata.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- buckets and crops


def test_buckets_keep_area_and_multiple():
    cfg = DataConfig(resolution=512, bucket_multiple=64)
    buckets = pp.bucket_sizes(cfg)
    assert (512, 512) in buckets
    for w, h in buckets:
        assert w % 64 == 0 and h % 64 == 0
        assert 0.5 <= w / h <= 2.0
        assert abs(w * h - 512 * 512) / (512 * 512) < 0.25


@pytest.mark.parametrize("size", [(4000, 3000), (3000, 4000), (1000, 1000), (1920, 1080)])
def test_bucket_is_nearest_in_aspect(size):
    buckets = pp.bucket_sizes(DataConfig(resolution=512, bucket_multiple=64))
    chosen = pp.choose_bucket(*size, buckets)
    target = math.log(size[0] / size[1])
    best = min(abs(math.log(w / h) - target) for w, h in buckets)
    assert abs(math.log(chosen[0] / chosen[1]) - target) == pytest.approx(best)


def test_crop_keeps_an_off_centre_person_inside():
    # wide photo, person at the far left: a centre crop would cut them out
    person = (20, 100, 220, 700)
    box = pp.crop_box(2000, 800, 1.0, person)
    assert box[2] - box[0] == 800 and box[3] - box[1] == 800
    assert box[0] <= person[0] and box[2] >= person[2]


def test_crop_of_a_person_taller_than_the_crop_keeps_the_head():
    person = (400, 50, 600, 1900)  # full-body person in a tall photo cropped to landscape
    x0, y0, x1, y1 = pp.crop_box(1000, 2000, 1.5, person)
    assert y0 <= person[1] < y1


def test_detector_finds_the_astronaut_and_the_crop_keeps_her_face():
    data = pytest.importorskip("skimage.data")
    astro = Image.fromarray(data.astronaut())  # 512x512, a real person, upper body
    canvas = Image.new("RGB", (1600, 600), (90, 140, 200))
    canvas.paste(astro.resize((450, 450)), (1100, 150))  # far right of a wide frame
    box = pp.detect_person(canvas)
    assert box is not None
    face_centre_x = 1100 + 450 * 0.45
    assert box[0] < face_centre_x < box[2]
    crop = pp.crop_box(canvas.width, canvas.height, 1.0, box)
    assert crop[0] <= 1100 + 450 * 0.3 and crop[2] >= 1100 + 450 * 0.6  # face region inside the crop


# ---------------------------------------------------------------- pixel modes


def _save_mode(path: Path, mode: str) -> None:
    rng = np.random.default_rng(1)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, (96, 80), dtype=np.uint16)).save(path)
    elif mode == "CMYK":
        Image.new("CMYK", (80, 96), (10, 200, 30, 0)).save(path, "JPEG")
    elif mode == "RGBA":
        Image.new("RGBA", (80, 96), (255, 0, 0, 0)).save(path)  # fully transparent -> white
    elif mode == "L":
        Image.new("L", (80, 96), 77).save(path, "JPEG")
    elif mode == "rotated":
        im = Image.new("RGB", (96, 64), (0, 0, 0))
        im.paste((255, 255, 255), (0, 0, 48, 64))  # left half white
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 CW on display
        im.save(path, "JPEG", exif=exif, quality=95)


@pytest.mark.parametrize("mode", ["I;16", "CMYK", "RGBA", "L", "rotated"])
def test_unusual_modes_become_upright_8bit_rgb(tmp_path, mode):
    path = tmp_path / ("x.png" if mode in ("I;16", "RGBA") else "x.jpg")
    _save_mode(path, mode)
    im = pp.load_rgb(path)
    assert im.mode == "RGB"
    arr = np.asarray(im)
    if mode == "I;16":
        assert arr.max() > 200 and arr.min() < 50  # scaled, not clipped to white
    if mode == "RGBA":
        assert arr.min() == 255
    if mode == "CMYK":  # the colour survives, not only the mode: (10, 200, 30, 0) is a magenta
        want = Image.new("CMYK", (1, 1), (10, 200, 30, 0)).convert("RGB").getpixel((0, 0))
        assert np.abs(arr.reshape(-1, 3).mean(axis=0) - want).max() < 4, (arr.reshape(-1, 3).mean(axis=0), want)
    if mode == "rotated":
        assert im.size == (64, 96)  # displayed portrait
        assert arr[:40].mean() > 200 and arr[-40:].mean() < 60  # white half is now on top


def test_a_large_cmyk_photo_keeps_its_colours_through_the_crop(tmp_path):
    # large enough for the reduced-scale JPEG decode (draft) that process_image asks for
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (800, 960), (10, 200, 30, 0)).save(path, "JPEG")
    cfg = DataConfig(person_detector="center")
    out, _ = pp.process_image(path, cfg, pp.bucket_sizes(cfg))
    want = Image.new("CMYK", (1, 1), (10, 200, 30, 0)).convert("RGB").getpixel((0, 0))
    assert out.mode == "RGB"
    assert np.abs(np.asarray(out).reshape(-1, 3).mean(axis=0) - want).max() < 4


# ---------------------------------------------------------------- splits


def test_split_is_stratified_and_deterministic():
    rows = [{"file": f"{lm}/{s}{i}", "landmark": lm, "shot": s, "seq": n, "sha256": f"{n:064d}"}
            for n, (lm, s, i) in enumerate(
                ((lm, s, i) for lm in ("a", "b") for s in ("wide", "close_up") for i in range(10)), 1)]
    splits = pp.assign_splits(rows, 0.2)
    assert splits == pp.assign_splits(list(reversed(rows)), 0.2)
    for lm in ("a", "b"):
        for s in ("wide", "close_up"):
            vals = [f for f, sp in splits.items() if f.startswith(f"{lm}/{s}") and sp == "val"]
            assert len(vals) == 2  # exactly 20% of every stratum


def test_a_stratum_of_one_over_val_fraction_photos_has_exactly_one_val_photo():
    for shot in ("close_up", "upper_body", "thigh_up", "full_body", "wide", "unspecified"):
        rows = [{"file": f"x{i}", "landmark": "a", "shot": shot, "seq": i, "sha256": str(i)} for i in range(1, 6)]
        assert sorted(pp.assign_splits(rows, 0.2).values()) == ["train"] * 4 + ["val"], shot


def test_photos_arriving_grouped_by_camera_angle_still_put_every_angle_into_val():
    # A photographer shoots every framing at one spot, then moves: ingest order groups the angles
    # (the sample set's file names do the same). One sampling start for all strata put the 3rd
    # photo of each (landmark, shot), always high-angle, into val; the per-shot starts spread it.
    angles = ("eye_level", "high_angle", "low_angle")
    shots = ("close_up", "upper_body", "thigh_up", "full_body", "wide")
    rows, angle_of = [], {}
    for lm in ("a", "b"):
        for angle in angles:
            for shot in shots:
                for k in range(2):
                    name = f"{lm}_{angle}_{shot}_{k}"
                    angle_of[name] = angle
                    rows.append({"file": name, "landmark": lm, "shot": shot, "seq": len(rows), "sha256": name})
    splits = pp.assign_splits(rows, 0.2)
    for lm in ("a", "b"):
        val_angles = [angle_of[f] for f, sp in splits.items() if sp == "val" and f.startswith(lm)]
        assert set(val_angles) == set(angles), val_angles
        assert max(val_angles.count(a) for a in angles) - min(val_angles.count(a) for a in angles) <= 1
    assert 0.15 <= list(splits.values()).count("val") / len(rows) <= 0.25


def test_split_of_existing_photos_never_changes_when_photos_are_added():
    rows = [{"file": f"f{i}", "landmark": "ab"[i % 2], "shot": ("wide", "close_up", "thigh_up")[i % 3],
             "seq": i, "sha256": str(i)} for i in range(1, 40)]
    before = pp.assign_splits(rows, 0.25)
    more = rows + [{"file": f"g{i}", "landmark": "ab"[i % 2], "shot": "wide", "seq": 100 + i, "sha256": "g" + str(i)}
                   for i in range(25)]
    after = pp.assign_splits(more, 0.25)
    assert {f: after[f] for f in before} == before


# ---------------------------------------------------------------- the stage


def test_stage_writes_images_captions_and_metadata(tmp_path):
    params = _params(tmp_path)
    _add_photos(params.paths.raw, [("gyeongbokgung", "upper_body", (120, 90))] * 5
                + [("haeundae_beach", "wide", (90, 120))] * 5)
    summary = pp.preprocess(params, CAT)
    processed = params.paths.processed
    assert summary.counts == {"train": 8, "val": 2}
    records = _read_split(processed, "train") + _read_split(processed, "val")
    assert {r["landmark"] for r in _read_split(processed, "val")} == {"gyeongbokgung", "haeundae_beach"}
    for rec in records:
        split = "val" if rec in _read_split(processed, "val") else "train"
        img = processed / split / rec["file_name"]
        with Image.open(img) as im:
            assert im.size == (rec["width"], rec["height"]) and im.mode == "RGB"
        assert img.with_suffix(".txt").read_text().strip() == rec["text"]
        assert "in front of" in rec["text"] and rec["text"].startswith("lmksnap")
    landscape = [r for r in records if r["landmark"] == "gyeongbokgung"]
    assert all(r["width"] > r["height"] for r in landscape)
    report = json.loads((params.paths.reports / "preprocess.json").read_text())
    assert report["train"] == 8 and report["val"] == 2


def test_stage_is_incremental_adding_k_photos_processes_k(tmp_path, monkeypatch):
    params = _params(tmp_path, workers=1)  # counted by patching process_image in this process
    calls = []
    real = pp.process_image
    monkeypatch.setattr(pp, "process_image", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    _add_photos(params.paths.raw, [("gyeongbokgung", "wide", (100, 80))] * 12)
    pp.preprocess(params, CAT)
    assert len(calls) == 12
    processed = params.paths.processed
    first = {p.relative_to(processed): p.read_bytes() for p in processed.rglob("*") if p.suffix in (".png", ".txt")}
    assert len(first) == 24  # an image and a caption per photo

    calls.clear()
    _add_photos(params.paths.raw, [("gyeongbokgung", "wide", (100, 80))] * 3, seed=7)
    summary = pp.preprocess(params, CAT)
    assert len(calls) == 3 and summary.cache_hits == 12 and summary.cache_misses == 3
    assert summary.counts["train"] + summary.counts["val"] == 15
    # the old photos' outputs are byte-identical and still in the same split (the path holds the split)
    for rel, data in first.items():
        assert (processed / rel).read_bytes() == data, rel


def test_changing_resolution_invalidates_the_cache(tmp_path, monkeypatch):
    params = _params(tmp_path)
    _add_photos(params.paths.raw, [("gyeongbokgung", "wide", (100, 80))] * 3)
    pp.preprocess(params, CAT)
    bigger = _params(tmp_path, resolution=96)
    summary = pp.preprocess(bigger, CAT)
    assert summary.cache_misses == 3
    rec = _read_split(bigger.paths.processed, "train")[0]
    assert rec["width"] * rec["height"] > 64 * 64 * 1.5


def test_stage_refuses_a_failed_validation(tmp_path):
    params = _params(tmp_path)
    _add_photos(params.paths.raw, [("gyeongbokgung", "wide", (100, 80))])
    params.paths.reports.mkdir(parents=True)
    (params.paths.reports / "validation.json").write_text('{"success": false}')
    with pytest.raises(ValueError, match="dataset contract is broken"):
        pp.preprocess(params, CAT)


def test_empty_raw_folder_says_how_to_add_photos(tmp_path):
    with pytest.raises(ValueError, match="landmark-lora ingest"):
        pp.preprocess(_params(tmp_path), CAT)


def test_crops_made_on_every_core_equal_the_serial_ones(tmp_path):
    """data.workers=2 decodes and crops in worker processes; outputs and records are byte-identical."""
    outputs = []
    for workers in (1, 2):
        params = _params(tmp_path / f"w{workers}", workers=workers, person_detector="auto")
        _add_photos(params.paths.raw, [("gyeongbokgung", "upper_body", (120, 90))] * 9
                    + [("haeundae_beach", "wide", (90, 120))] * 9)
        summary = pp.preprocess(params, CAT)
        assert summary.cache_misses == 18
        processed = params.paths.processed
        outputs.append({p.relative_to(processed): p.read_bytes() for p in sorted(processed.rglob("*")) if p.is_file()})
    assert len([k for k in outputs[0] if k.suffix in (".png", ".txt")]) == 18 * 2  # image + caption per photo
    assert len([k for k in outputs[0] if k.name == "metadata.jsonl"]) == 2
    assert outputs[1] == outputs[0]
