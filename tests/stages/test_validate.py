"""Validate: the GX dataset contract on data/raw, its report, its Data Docs and its error message.

GX takes seconds to start, so one valid and one broken dataset are validated once per module
and each failure class is asserted on the shared report.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landmark_lora import rawtable
from landmark_lora.catalogue import load_catalogue
from landmark_lora.config import ValidationConfig
from landmark_lora.stages.validate import (
    DatasetContractError,
    build_photo_table,
    validate_dataset,
)

CAT = load_catalogue()
CFG = ValidationConfig(min_photos_per_landmark=3, min_side=32, required_landmarks=("gyeongbokgung",))
BROKEN_CFG = ValidationConfig(  # plates have their own tests (tests/stages/test_plates.py)
    min_photos_per_landmark=3, min_side=32, required_landmarks=("gyeongbokgung", "haeundae_beach"),
    require_plates=False)


def _save(path: Path, seed: int, size=(80, 64), fmt="JPEG", orientation: int | None = None, mode: str = "RGB") -> None:
    """A small noise image (unique bytes per seed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    im = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))
    if mode != "RGB":
        im = im.convert(mode)
    kwargs = {}
    if orientation:
        exif = im.getexif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    im.save(path, format=fmt, **kwargs)


def _row(raw: Path, rel: str, seq: int, shot="upper_body", angle="eye_level", pose="waving") -> dict:
    """The metadata row ingest would write for the file as it is now."""
    path = raw / rel
    data = path.read_bytes()
    with Image.open(path) as im:
        (w, h), fmt, mode = im.size, im.format, im.mode
    return {
        "file": rel, "landmark": rel.split("/")[0], "shot": shot, "angle": angle, "pose": pose,
        "caption": "", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "width": w, "height": h,
        "format": fmt, "mode": mode, "exif_orientation": 1, "source": rel, "seq": seq,
        "ingested_at": "2026-11-25T00:00:00+00:00",
    }


def _valid_dataset(raw: Path) -> None:
    rows = []
    specs = [
        ("gyeongbokgung/a.jpg", "JPEG", "close_up", None),
        ("gyeongbokgung/b.png", "PNG", "full_body", None),
        ("gyeongbokgung/c.jpg", "JPEG", "unspecified", 6),  # stored 80x64, displayed 64x80
        ("n_seoul_tower/a.jpg", "JPEG", "wide", None),
        ("n_seoul_tower/b.jpg", "JPEG", "wide", None),
        ("n_seoul_tower/c.png", "PNG", "upper_body", None),
        ("gyeongbokgung/plate.jpg", "JPEG", "background", None),  # a plate per view (validation.require_plates)
        ("n_seoul_tower/plate.jpg", "JPEG", "background", None),
    ]
    for seq, (rel, fmt, shot, orientation) in enumerate(specs, 1):
        _save(raw / rel, seed=seq, fmt=fmt, orientation=orientation)
        rows.append(_row(raw, rel, seq, shot=shot))
    rawtable.write_rows(raw, rows)


def _broken_dataset(raw: Path) -> None:
    """Every failure class at once, each on its own file."""
    rows: list[dict] = []

    def add(rel: str, seed: int, **kw) -> dict:
        size = kw.pop("size", (80, 64))
        fmt = kw.pop("fmt", "JPEG")
        _save(raw / rel, seed=seed, size=size, fmt=fmt, mode=kw.pop("mode", "RGB"))
        rows.append(_row(raw, rel, len(rows) + 1, **kw))
        return rows[-1]

    for i in range(4):
        add(f"gyeongbokgung/good{i}.jpg", seed=100 + i)
    add("gyeongbokgung/bad_shot.jpg", 1, shot="selfie")
    add("gyeongbokgung/long_pose.jpg", 2, pose="x" * 100)
    add("gyeongbokgung/tiny.jpg", 3, size=(20, 20))
    add("gyeongbokgung/banner.png", 4, size=(200, 40), fmt="PNG")
    add("gyeongbokgung/icon.gif", 10, fmt="GIF")
    add("gyeongbokgung/tilted.jpg", 11, angle="dutch")
    add("gyeongbokgung/no_pose.jpg", 12, pose="")  # blank: no pose label at all
    add("gyeongbokgung/float.tif", 13, fmt="TIFF", mode="F")  # 32-bit float pixels: no 8-bit RGB
    # Same bytes as good0.jpg, and listed twice.
    (raw / "gyeongbokgung/dup.jpg").write_bytes((raw / "gyeongbokgung/good0.jpg").read_bytes())
    rows.append(_row(raw, "gyeongbokgung/dup.jpg", len(rows) + 1))
    rows.append(_row(raw, "gyeongbokgung/dup.jpg", len(rows) + 1))
    # Truncated JPEG: recorded sha matches the damaged bytes, so only "decodes" catches it.
    _save(raw / "gyeongbokgung/corrupt.jpg", seed=5, size=(120, 96))
    data = (raw / "gyeongbokgung/corrupt.jpg").read_bytes()
    (raw / "gyeongbokgung/corrupt.jpg").write_bytes(data[: len(data) // 2])
    rows.append(_row(raw, "gyeongbokgung/corrupt.jpg", len(rows) + 1))
    # Edited after ingest: bytes differ from the recorded sha256.
    add("gyeongbokgung/altered.jpg", 6)
    _save(raw / "gyeongbokgung/altered.jpg", seed=66)
    # Listed but gone; on disk but unlisted.
    add("gyeongbokgung/gone.jpg", 7)
    (raw / "gyeongbokgung/gone.jpg").unlink()
    _save(raw / "gyeongbokgung/stray.jpg", seed=8)
    # Too few photos, all without a shot label.
    add("n_seoul_tower/only.jpg", 9, shot="unspecified")
    # A landmark the catalogue does not know.
    for i in range(3):
        add(f"atlantis/p{i}.jpg", 200 + i)
    (raw / "gyeongbokgung/.partial-123-x.jpg").write_bytes(b"half")  # ingest temp file: ignored
    rawtable.write_rows(raw, rows)


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("valid")
    _valid_dataset(root / "raw")
    outcome = validate_dataset(root / "raw", root / "reports", CFG, CAT)
    return root, outcome


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    _broken_dataset(root / "raw")
    with pytest.raises(DatasetContractError) as err:
        validate_dataset(root / "raw", root / "reports", BROKEN_CFG, CAT)
    report = json.loads((root / "reports" / "validation.json").read_text(encoding="utf-8"))
    return root, report, str(err.value)


def _failed(report: dict, check: str) -> dict:
    hits = [f for f in report["failed"] if f["check"] == check]
    assert hits, f"check {check!r} did not fail; failed: {[f['check'] for f in report['failed']]}"
    return hits[0]


def _paths(failure: dict) -> set[str]:
    return {r.get("path") or r.get("landmark") for r in failure["rows"]}


# ---------------------------------------------------------------- the photo table (no GX)


def test_photo_table_measures_the_bytes(tmp_path):
    raw = tmp_path / "raw"
    _broken_dataset(raw)
    df = build_photo_table(raw).set_index("path")
    assert df.loc["gyeongbokgung/good0.jpg", "decodes"]
    assert (df.loc["gyeongbokgung/banner.png", ["width", "height", "format"]].tolist() == [200, 40, "PNG"])
    assert df.loc["gyeongbokgung/banner.png", "aspect_ratio"] == 5.0
    assert not df.loc["gyeongbokgung/corrupt.jpg", "decodes"]
    assert df.loc["gyeongbokgung/corrupt.jpg", "on_disk"]
    gone = df.loc["gyeongbokgung/gone.jpg"]
    assert not gone["on_disk"] and not gone["decodes"] and gone["error"] == "file not found"
    stray = df.loc["gyeongbokgung/stray.jpg"]
    assert not stray["in_metadata"] and stray["landmark"] == "gyeongbokgung" and stray["shot"] == "unspecified"
    altered = df.loc["gyeongbokgung/altered.jpg"]
    assert altered["sha256"] != altered["recorded_sha256"]
    assert not any(".partial-" in p for p in df.index)


def test_photo_table_applies_exif_orientation(tmp_path):
    raw = tmp_path / "raw"
    _valid_dataset(raw)
    df = build_photo_table(raw).set_index("path")
    assert df.loc["gyeongbokgung/c.jpg", ["width", "height"]].tolist() == [64, 80]
    assert df.loc["gyeongbokgung/a.jpg", ["width", "height"]].tolist() == [80, 64]


# ---------------------------------------------------------------- a valid dataset


def test_valid_dataset_passes_with_counts(valid_run):
    root, outcome = valid_run
    assert outcome.success and outcome.report["success"]
    assert outcome.report_path == root / "reports" / "validation.json"
    report = json.loads(outcome.report_path.read_text(encoding="utf-8"))
    assert report == outcome.report
    assert report["failed"] == []
    assert report["photos"] == 8
    assert report["landmarks"]["gyeongbokgung"] == {
        "photos": 4, "shots": {"close_up": 1, "full_body": 1, "background": 1, "unspecified": 1}
    }
    assert report["landmarks"]["n_seoul_tower"]["photos"] == 4
    assert report["shots"] == {"close_up": 1, "upper_body": 1, "full_body": 1, "wide": 2, "background": 2,
                               "unspecified": 1}
    assert report["statistics"]["failed"] == 0 and report["statistics"]["checks"] == 22  # 20 GX + 2 plate clauses
    assert report["plates"] == {"gyeongbokgung/eye_level": ["gyeongbokgung/plate.jpg"],
                                "n_seoul_tower/eye_level": ["n_seoul_tower/plate.jpg"]}
    assert report["images"]["formats"] == {"JPEG": 6, "PNG": 2}


def test_data_docs_are_built_without_temp_paths(valid_run):
    root, outcome = valid_run
    docs = root / "reports" / "validation"
    assert outcome.docs_index == docs / "index.html" and outcome.docs_index.is_file()
    pages = list(docs.rglob("*.html"))
    assert any("raw_photos" in p.as_posix() and "validations" in p.as_posix() for p in pages)
    assert any("raw_landmarks" in p.as_posix() for p in pages)
    for page in pages:  # the scratch GX context must not leak into the viewable docs
        assert "landmark-lora-gx-" not in page.read_text(encoding="utf-8")


# ---------------------------------------------------------------- a broken dataset, one class per test


def test_report_written_on_failure(broken_run):
    root, report, _ = broken_run
    assert report["success"] is False
    assert (root / "reports" / "validation" / "index.html").is_file()
    assert report["statistics"]["failed"] == len(report["failed"])
    json.dumps(report)  # plain JSON all the way down


def test_bad_shot_label(broken_run):
    f = _failed(broken_run[1], "shot_label")
    assert f["rows"] == [{"path": "gyeongbokgung/bad_shot.jpg", "shot": "selfie"}]
    assert f["explanation"].startswith("1 photo(s) have a shot label outside close_up, upper_body")


def test_duplicate_content(broken_run):
    f = _failed(broken_run[1], "content_unique")
    assert _paths(f) == {"gyeongbokgung/good0.jpg", "gyeongbokgung/dup.jpg"}


def test_too_small_and_too_elongated(broken_run):
    report = broken_run[1]
    assert _paths(_failed(report, "width")) == {"gyeongbokgung/tiny.jpg"}
    assert _paths(_failed(report, "height")) == {"gyeongbokgung/tiny.jpg"}  # banner: 40 px is enough
    f = _failed(report, "aspect_ratio")
    assert f["rows"] == [{"path": "gyeongbokgung/banner.png", "aspect_ratio": 5}]


def test_corrupt_and_missing_files(broken_run):
    report = broken_run[1]
    f = _failed(report, "decodes")
    assert _paths(f) == {"gyeongbokgung/corrupt.jpg", "gyeongbokgung/gone.jpg"}
    corrupt = next(r for r in f["rows"] if r["path"] == "gyeongbokgung/corrupt.jpg")
    assert corrupt["decodes"] is False and corrupt["error"]
    assert _paths(_failed(report, "file_on_disk")) == {"gyeongbokgung/gone.jpg"}


def test_unlisted_file_on_disk(broken_run):
    f = _failed(broken_run[1], "file_in_metadata")
    assert _paths(f) == {"gyeongbokgung/stray.jpg"}
    assert "not in" in f["explanation"] and "metadata.csv" in f["explanation"]


def test_altered_bytes(broken_run):
    f = _failed(broken_run[1], "content_unchanged")
    assert _paths(f) == {"gyeongbokgung/altered.jpg"}
    assert set(f["rows"][0]) == {"path", "sha256", "recorded_sha256"}


def test_format_and_angle_labels(broken_run):
    report = broken_run[1]
    assert _failed(report, "format")["rows"] == [{"path": "gyeongbokgung/icon.gif", "format": "GIF"},
                                                 {"path": "gyeongbokgung/float.tif", "format": "TIFF"}]
    assert _failed(report, "angle_label")["rows"] == [{"path": "gyeongbokgung/tilted.jpg", "angle": "dutch"}]


def test_pixel_mode_blank_pose_and_a_file_listed_twice(broken_run):
    report = broken_run[1]
    assert _failed(report, "mode")["rows"] == [{"path": "gyeongbokgung/float.tif", "mode": "F"}]
    f = _failed(report, "pose_present")
    assert _paths(f) == {"gyeongbokgung/no_pose.jpg"} and f["unexpected_count"] == 1
    f = _failed(report, "path_unique")
    assert _paths(f) == {"gyeongbokgung/dup.jpg"} and f["unexpected_count"] == 2


def test_unknown_landmark_and_long_pose(broken_run):
    report = broken_run[1]
    f = _failed(report, "landmark_known")
    assert _paths(f) == {f"atlantis/p{i}.jpg" for i in range(3)} and f["unexpected_count"] == 3
    assert _paths(_failed(report, "pose_length")) == {"gyeongbokgung/long_pose.jpg"}


def test_per_landmark_checks(broken_run):
    report = broken_run[1]
    f = _failed(report, "min_photos")
    assert f["rows"] == [{"landmark": "n_seoul_tower", "photos": 1}]
    assert _paths(_failed(report, "unspecified_shots")) == {"n_seoul_tower"}
    assert _failed(report, "required_landmarks")["rows"] == [{"landmark": "haeundae_beach"}]
    # gyeongbokgung: 17 rows listed (gone.jpg included, dup.jpg twice); the unlisted stray is not counted.
    assert report["landmarks"]["gyeongbokgung"]["photos"] == 17
    assert report["landmarks"]["atlantis"]["photos"] == 3


def test_only_the_broken_clauses_fail(broken_run):
    failed = {f["check"] for f in broken_run[1]["failed"]}
    assert failed == {
        "path_unique", "file_on_disk", "file_in_metadata", "content_unique", "content_unchanged", "landmark_known",
        "shot_label", "angle_label", "pose_present", "pose_length", "decodes", "format", "mode", "width", "height",
        "aspect_ratio", "min_photos", "unspecified_shots", "required_landmarks",
    }
    # every clause of the contract is shown to bite (has_photos in test_empty_dataset_fails_cleanly)
    from landmark_lora.validation.contract import contract as _contract

    assert failed | {"has_photos"} == {c.id for c in _contract(BROKEN_CFG, CAT, broken_run[0] / "raw")}


def test_error_message_is_actionable(broken_run):
    root, _, message = broken_run
    assert "gyeongbokgung/bad_shot.jpg" in message and "selfie" in message
    assert "fix the labels in" in message and "metadata.csv" in message
    assert "data/incoming/<landmark>/" in message and "landmark-lora ingest" in message
    assert "validation.min_photos_per_landmark" in message and "haeundae_beach" in message
    assert str(root / "reports" / "validation.json") in message
    assert str(root / "reports" / "validation" / "index.html") in message


def test_no_raise_returns_outcome_and_rebuilds_docs(broken_run):
    root = broken_run[0]
    outcome = validate_dataset(root / "raw", root / "reports", BROKEN_CFG, CAT, raise_on_failure=False)
    assert outcome.success is False
    assert {f["check"] for f in outcome.report["failed"]} == {f["check"] for f in broken_run[1]["failed"]}
    # The docs folder is rebuilt, not appended to: one result page per suite.
    pages = list((root / "reports" / "validation" / "validations").rglob("*.html"))
    assert len(pages) == 2


def test_empty_dataset_fails_cleanly(tmp_path):
    outcome = validate_dataset(tmp_path / "raw", tmp_path / "reports", CFG, CAT, raise_on_failure=False)
    assert outcome.success is False
    checks = {f["check"] for f in outcome.report["failed"]}
    assert {"has_photos", "required_landmarks"} <= checks
    assert (tmp_path / "reports" / "validation.json").is_file()


def test_unreadable_table_still_writes_a_report(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "metadata.csv").write_text("file,landmark\nx.jpg,gyeongbokgung\n", encoding="utf-8")
    with pytest.raises(DatasetContractError, match="missing column"):
        validate_dataset(raw, tmp_path / "reports", CFG, CAT)
    report = json.loads((tmp_path / "reports" / "validation.json").read_text(encoding="utf-8"))
    assert report["success"] is False and report["failed"][0]["check"] == "table_readable"


def test_unchanged_photos_are_not_read_again_but_any_change_is(tmp_path, monkeypatch):
    """The facts cache: a second table reads only what is new or rewritten, and a photo damaged in
    place (same name, new bytes) is measured again and caught."""
    from landmark_lora.validation import table

    raw, cache = tmp_path / "raw", tmp_path / "cache" / "photo-facts.json"
    _valid_dataset(raw)
    first = build_photo_table(raw, cache).set_index("path")
    read: list[str] = []
    real = table._inspect
    monkeypatch.setattr(table, "_inspect", lambda path: read.append(path.name) or real(path))

    _save(raw / "n_seoul_tower/d.jpg", seed=40)
    rawtable.write_rows(raw, rawtable.read_rows(raw) + [_row(raw, "n_seoul_tower/d.jpg", 7)])
    second = build_photo_table(raw, cache).set_index("path")
    assert read == ["d.jpg"]
    assert second.drop(index="n_seoul_tower/d.jpg").equals(first)

    read.clear()
    victim = raw / "gyeongbokgung/a.jpg"
    victim.write_bytes(victim.read_bytes()[:200])  # truncated in place
    third = build_photo_table(raw, cache).set_index("path")
    assert read == ["a.jpg"]
    assert not third.loc["gyeongbokgung/a.jpg", "decodes"]
    assert third.loc["gyeongbokgung/a.jpg", "sha256"] != first.loc["gyeongbokgung/a.jpg", "sha256"]
