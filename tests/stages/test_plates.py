"""Background plates: labelled in the drop folder, checked by validate, built into a library by preprocess,
and the person regions per shot type that composite generation paints into."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landmark_lora import rawtable
from landmark_lora.artifacts import Layout, ProcessedRecord, read_person_regions, read_plates, read_records
from landmark_lora.catalogue import load_catalogue, normalise_label
from landmark_lora.config import ValidationConfig, parse_params
from landmark_lora.ops.ingest import ingest
from landmark_lora.plates import normalised_box, person_region_stats
from landmark_lora.stages import preprocess as pp
from landmark_lora.stages.validate import DatasetContractError, validate_dataset

CAT = load_catalogue()
G = "gyeongbokgung"


def _params(tmp_path: Path, **data):
    paths = {"incoming": "in", "raw": "raw", "quarantine": "q", "processed": "processed", "reports": "reports",
             "cache": "cache"}
    return parse_params({"paths": {k: str(tmp_path / v) for k, v in paths.items()},
                         "ingest": {"min_age_s": 0, "dvc_add": False},
                         "data": {"person_detector": "center", **data}})


def _photo(path: Path, seed: int, size=(96, 128)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=85)


def _raw(raw: Path, specs: list[tuple[str, str, str, tuple[int, int]]]) -> None:
    """A raw folder as ingest leaves it: (file, shot, angle, size) per photo."""
    rows = []
    for seq, (rel, shot, angle, size) in enumerate(specs, 1):
        _photo(raw / rel, seq, size)
        data = (raw / rel).read_bytes()
        rows.append({"file": rel, "landmark": rel.split("/")[0], "shot": shot, "angle": angle,
                     "pose": "unspecified" if shot in ("background", "unspecified") else "waving", "caption": "",
                     "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "width": size[0],
                     "height": size[1], "format": "JPEG", "mode": "RGB", "exif_orientation": 1, "source": rel,
                     "seq": seq, "ingested_at": "2026-12-01T00:00:00+00:00"})
    rawtable.write_rows(raw, rows)


PHOTOS = [(f"{G}/p{i}.jpg", "upper_body", angle, (96, 128)) for i, angle in
          enumerate(["eye_level", "eye_level", "low_angle", "low_angle"])]


# ---------------------------------------------------------------- ingest and validate


def test_the_background_label_is_part_of_the_vocabulary(tmp_path):
    assert normalise_label("shot", "Background") == "background"
    params = _params(tmp_path)
    _photo(params.paths.incoming / G / "plate.jpg", 1)
    (params.paths.incoming / "metadata.csv").write_text(
        f"file,shot,angle,pose,caption\n{G}/plate.jpg,background,low_angle,,\n", encoding="utf-8")
    report = ingest(params, CAT, progress=False)
    assert len(report.accepted) == 1
    row = rawtable.read_rows(params.paths.raw)[0]
    assert (row["shot"], row["angle"]) == ("background", "low_angle")


@pytest.fixture(scope="module")
def missing_plate(tmp_path_factory):
    root = tmp_path_factory.mktemp("plates")
    _raw(root / "raw", PHOTOS + [(f"{G}/plate_eye.jpg", "background", "eye_level", (96, 128)),
                                 (f"{G}/plate_tiny.jpg", "background", "eye_level", (40, 40))])
    cfg = ValidationConfig(min_photos_per_landmark=3, min_side=32, min_plate_side=64)
    with pytest.raises(DatasetContractError) as err:
        validate_dataset(root / "raw", root / "reports", cfg, CAT)
    return root, json.loads((root / "reports" / "validation.json").read_text()), str(err.value)


def test_a_missing_plate_is_a_named_actionable_failure(missing_plate):
    _, report, message = missing_plate
    assert report["success"] is False
    failed = {f["check"]: f for f in report["failed"]}
    assert set(failed) == {"plates_present", "plate_size"}
    missing = failed["plates_present"]
    assert missing["rows"] == [{"landmark": G, "angle": "low_angle",
                                "existing_plates": f"eye_level: {G}/plate_eye.jpg, {G}/plate_tiny.jpg"}]
    assert "gyeongbokgung/low_angle" in missing["explanation"]
    assert "shot 'background'" in missing["fix"] and "validation.require_plates" in missing["fix"]
    assert failed["plate_size"]["rows"] == [{"path": f"{G}/plate_tiny.jpg", "width": 40, "height": 40}]
    assert "gyeongbokgung/low_angle" in message and "plate_eye.jpg" in message
    assert report["statistics"]["suites"]["plates"] == {"evaluated": 2, "passed": 0, "failed": 2}


def test_plates_for_every_view_pass_and_the_check_can_be_turned_off(missing_plate):
    root = missing_plate[0]
    off = ValidationConfig(min_photos_per_landmark=3, min_side=32, require_plates=False, min_plate_side=32)
    assert validate_dataset(root / "raw", root / "reports2", off, CAT).success
    _raw(root / "raw2", PHOTOS + [(f"{G}/plate_eye.jpg", "background", "eye_level", (96, 128)),
                                  (f"{G}/plate_low.jpg", "background", "low_angle", (96, 128))])
    on = ValidationConfig(min_photos_per_landmark=3, min_side=32)
    outcome = validate_dataset(root / "raw2", root / "reports3", on, CAT)
    assert outcome.success and outcome.report["plates"] == {f"{G}/eye_level": [f"{G}/plate_eye.jpg"],
                                                            f"{G}/low_angle": [f"{G}/plate_low.jpg"]}


# ---------------------------------------------------------------- preprocess


def test_preprocess_builds_the_plate_library_and_keeps_plates_out_of_training(tmp_path):
    params = _params(tmp_path)
    _raw(params.paths.raw, PHOTOS + [(f"{G}/plate_low.jpg", "background", "low_angle", (96, 128)),
                                     (f"{G}/maybe.jpg", "unspecified", "eye_level", (96, 128))])
    summary = pp.preprocess(params, CAT)
    layout = Layout.of(params)
    records = read_records(layout, "train") + read_records(layout, "val")
    assert sorted(r.raw_file for r in records) == sorted([p[0] for p in PHOTOS] + [f"{G}/maybe.jpg"])
    plates = read_plates(layout)
    assert [(p.landmark, p.angle, p.name, p.file) for p in plates] == [
        (G, "low_angle", "plate_low", f"{G}/low_angle/plate_low.png")]
    with Image.open(layout.plates_dir / plates[0].file) as im:
        assert im.size == (plates[0].width, plates[0].height) == (records[0].width, records[0].height)
    assert summary.plates == 1
    report = json.loads(layout.preprocess_json.read_text())
    # the centre detector finds no one: the unlabelled photo is proposed as a plate, not used as one
    assert report["proposed_plates"] == [f"{G}/maybe.jpg"] and report["plates"] == 1
    assert read_person_regions(layout)["shots"] == {}  # no detector boxes with person_detector: center


def _rec(shot: str, person) -> ProcessedRecord:
    return ProcessedRecord(file_name="x.png", text="t", landmark=G, shot=shot, angle="eye_level", pose="waving",
                           width=56, height=72, sha256="s", raw_file="r", person_box=person is not None,
                           person=person)


def test_person_regions_are_the_median_box_per_shot_with_spread_and_count():
    stats = person_region_stats([
        _rec("upper_body", (0.2, 0.1, 0.8, 0.9)), _rec("upper_body", (0.3, 0.2, 0.7, 1.0)),
        _rec("upper_body", (0.25, 0.1, 0.75, 0.95)), _rec("wide", (0.4, 0.5, 0.6, 0.9)),
        _rec("wide", None), _rec("unspecified", (0.0, 0.0, 1.0, 1.0))])
    assert stats["shots"]["upper_body"] == {"box": [0.25, 0.1, 0.75, 0.95], "spread": [0.0741, 0.0, 0.0741, 0.0741],
                                            "count": 3}
    assert stats["shots"]["wide"]["count"] == 1 and set(stats["shots"]) == {"upper_body", "wide"}


def test_person_boxes_are_normalised_to_the_crop():
    assert normalised_box((40, 30, 120, 250), (0, 10, 200, 260)) == (0.2, 0.08, 0.6, 0.96)
    assert normalised_box((-10, 0, 50, 400), (0, 0, 100, 200)) == (0.0, 0.0, 0.5, 1.0)  # clipped to the image
    assert normalised_box(None, (0, 0, 1, 1)) is None


def test_the_person_extent_covers_the_whole_person_not_just_the_head():
    """Regions come from these boxes: a full-body or wide person must be found head to feet."""
    from landmark_lora.config import SampleDataConfig
    from landmark_lora.imaging import detect_person
    from landmark_lora.metrics import person_extent
    from landmark_lora.synthetic.photo import render_photo

    def iou(a, b) -> float:
        ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    for shot, angle in (("full_body", "eye_level"), ("wide", "low_angle")):
        image, mask = render_photo(CAT[G], angle, shot, "waving", 0, SampleDataConfig(), return_mask=True)
        ys, xs = np.nonzero(mask)
        truth = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert iou(person_extent(image), truth) > 0.6, shot
        head = detect_person(image)
        if head is not None:
            assert iou(person_extent(image), truth) >= iou(head, truth), shot


def test_plates_of_a_finished_run_do_not_count_as_new_photos(tmp_path):
    """Plates are never trained on: the nightly detection must not see them as untrained photos forever."""
    from landmark_lora.artifacts import EvalReport, data_version
    from landmark_lora.retrain.detect import untrained_photos

    params = _params(tmp_path)
    _raw(params.paths.raw, PHOTOS + [(f"{G}/plate_low.jpg", "background", "low_angle", (96, 128)),
                                     (f"{G}/plate_eye.jpg", "background", "eye_level", (96, 128))])
    pp.preprocess(params, CAT)
    layout = Layout.of(params)
    assert untrained_photos(params) == 6  # no finished run yet
    EvalReport(data_version=data_version(layout)).write(layout.eval_json)
    assert untrained_photos(params) == 0
