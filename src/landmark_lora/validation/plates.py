"""The plate clauses of the dataset contract: a background plate for every view that has photos.

    from landmark_lora.validation.plates import plate_failures
    failed = plate_failures(photos, params.validation)   # [] or failure dicts shaped like validation.json's

A plate is a photo labelled ``shot: background``: the landmark from one of its spots, no one in
it. Composite generation (``landmark_lora.composite``) paints the person into one, so every
(landmark, angle) that the person photos show needs at least one plate whose shorter side is at
least ``validation.min_plate_side``. A missing plate names the view and the plates that do exist.
These clauses are plain pandas (not GX): they compare groups of rows with each other.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from landmark_lora.catalogue import BACKGROUND, UNSPECIFIED
from landmark_lora.config import ValidationConfig

PLATE_CHECKS = ("plates_present", "plate_size")


def _usable(photos: pd.DataFrame) -> pd.DataFrame:
    return photos[photos["in_metadata"] & photos["on_disk"] & photos["decodes"]]


def existing_plates(photos: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(landmark, angle) -> the plate files there (listed, on disk, decodable)."""
    plates = _usable(photos)
    plates = plates[plates["shot"] == BACKGROUND]
    out: dict[tuple[str, str], list[str]] = {}
    for row in plates.itertuples():
        out.setdefault((str(row.landmark), str(row.angle)), []).append(str(row.path))
    return out


def _missing(photos: pd.DataFrame, have: dict[tuple[str, str], list[str]]) -> list[dict[str, Any]]:
    people = _usable(photos)
    people = people[(people["shot"] != BACKGROUND) & (people["angle"] != UNSPECIFIED)]
    views = sorted({(str(r.landmark), str(r.angle)) for r in people.itertuples()})
    rows = []
    for landmark, angle in views:
        if (landmark, angle) in have:
            continue
        elsewhere = sorted(f"{a}: {', '.join(files)}" for (lm, a), files in have.items() if lm == landmark)
        rows.append({"landmark": landmark, "angle": angle,
                     "existing_plates": "; ".join(elsewhere) or f"none for {landmark}"})
    return rows


def _failure(check: str, explanation: str, fix: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"check": check, "suite": "plates", "expectation": None, "column": None, "kwargs": {},
            "explanation": explanation, "fix": fix, "unexpected_count": len(rows), "rows": rows[:50],
            "rows_not_shown": max(0, len(rows) - 50)}


def plate_failures(photos: pd.DataFrame, cfg: ValidationConfig) -> list[dict[str, Any]]:
    """The failed plate clauses ([] when every view has a plate of a usable size)."""
    if not cfg.require_plates:
        return []
    have = existing_plates(photos)
    failed = []
    missing = _missing(photos, have)
    if missing:
        views = ", ".join(f"{r['landmark']}/{r['angle']}" for r in missing[:5])
        failed.append(_failure(
            "plates_present",
            f"{len(missing)} (landmark, angle) view(s) have photos but no background plate: {views}",
            "photograph each view with no one in it, put the photo in data/incoming/<landmark>/, label it "
            "shot 'background' and its angle in data/incoming/metadata.csv and run `landmark-lora ingest`; "
            "or set validation.require_plates: false in params.yaml (composite mode then fails for that view)",
            missing))
    plates = _usable(photos)
    plates = plates[plates["shot"] == BACKGROUND]
    small = plates[plates[["width", "height"]].min(axis=1) < cfg.min_plate_side]
    if len(small):
        failed.append(_failure(
            "plate_size",
            f"{len(small)} plate(s) have a side under validation.min_plate_side ({cfg.min_plate_side} px)",
            "replace them with larger photos of the same view, or lower validation.min_plate_side in params.yaml",
            [{"path": str(r.path), "width": int(r.width), "height": int(r.height)} for r in small.itertuples()]))
    return failed


def add_plate_failures(report: dict[str, Any], photos: pd.DataFrame, cfg: ValidationConfig) -> dict[str, Any]:
    """``report`` (validation.json) with the plate clauses counted in and their failures appended."""
    failed = plate_failures(photos, cfg)
    ran = len(PLATE_CHECKS) if cfg.require_plates else 0
    stats = report["statistics"]
    stats["checks"] += ran
    stats["passed"] += ran - len(failed)
    stats["failed"] = stats["checks"] - stats["passed"]
    stats["success_percent"] = round(100.0 * stats["passed"] / stats["checks"], 1) if stats["checks"] else 0.0
    stats["suites"]["plates"] = {"evaluated": ran, "passed": ran - len(failed), "failed": len(failed)}
    report["plates"] = {f"{lm}/{a}": files for (lm, a), files in sorted(existing_plates(photos).items())}
    report["failed"] = report["failed"] + failed
    report["success"] = bool(report["success"] and not failed)
    return report
