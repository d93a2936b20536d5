"""Background plates and where people stand in them: the inputs of composite generation.

    from landmark_lora.plates import choose_plate, load_plate, normalised_box, person_region_stats
    normalised_box(person=(40, 30, 120, 250), crop=(0, 10, 192, 266))   # -> (0.21, 0.08, 0.63, 0.94)
    stats = person_region_stats(read_records(layout, "train"))          # person_regions.json's body
    plate = choose_plate(read_plates(layout), "gyeongbokgung", "low_angle", seed=3)   # or name="..._plate_0"
    image = load_plate(layout.plates_dir, plate, (56, 72))

A plate is a photo of a landmark from one of its spots with no one in it (shot label
``background``). Preprocess builds the library (``artifacts.Layout.plates_dir``) and the person
regions (``Layout.person_regions``): per shot type, the median person box of the train photos
as the preprocess detectors found it (``metrics.person_extent``: head and shoulders plus whole
people, HOG), normalised to the image, with its spread and count.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from landmark_lora.artifacts import PlateRecord, ProcessedRecord

Box = tuple[float, float, float, float]


class PlateError(ValueError):
    """No plate (or no person region) for what was asked; the message lists what exists."""


def normalised_box(person: Iterable[float] | None, crop: Iterable[float]) -> Box | None:
    """A person box in source pixels -> the same box in the cropped image, as 0..1 fractions."""
    if person is None:
        return None
    px0, py0, px1, py1 = (float(v) for v in person)
    cx0, cy0, cx1, cy1 = (float(v) for v in crop)
    cw, ch = max(cx1 - cx0, 1e-9), max(cy1 - cy0, 1e-9)
    box = (min(max((px0 - cx0) / cw, 0.0), 1.0), min(max((py0 - cy0) / ch, 0.0), 1.0),
           min(max((px1 - cx0) / cw, 0.0), 1.0), min(max((py1 - cy0) / ch, 0.0), 1.0))
    if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
        return None
    return tuple(round(v, 4) for v in box)  # type: ignore[return-value]


def person_region_stats(records: Iterable[ProcessedRecord]) -> dict[str, Any]:
    """Per shot type: median person box (normalised), spread (1.4826 x median absolute deviation per
    coordinate, a robust standard deviation) and count, from the records' detector boxes."""
    boxes: dict[str, list[Box]] = {}
    for rec in records:
        if rec.person is not None and rec.shot != "unspecified":
            boxes.setdefault(rec.shot, []).append(rec.person)
    shots = {}
    for shot, found in sorted(boxes.items()):
        arr = np.asarray(found, dtype=np.float64)
        median = np.median(arr, axis=0)
        spread = 1.4826 * np.median(np.abs(arr - median), axis=0)
        shots[shot] = {"box": [round(float(v), 4) for v in median], "spread": [round(float(v), 4) for v in spread],
                       "count": len(found)}
    return {"source": "train split, preprocess person detector (data.person_detector)", "shots": shots}


def plates_for(plates: list[PlateRecord], landmark: str, angle: str) -> list[PlateRecord]:
    return sorted((p for p in plates if p.landmark == landmark and p.angle == angle), key=lambda p: p.name)


def describe_plates(plates: list[PlateRecord]) -> str:
    if not plates:
        return "none (label photos with no one in them `shot: background`, ingest them and rerun preprocess)"
    views: dict[str, list[str]] = {}
    for p in plates:
        views.setdefault(f"{p.landmark}/{p.angle}", []).append(p.name)
    return "; ".join(f"{v}: {', '.join(names)}" for v, names in sorted(views.items()))


def choose_plate(plates: list[PlateRecord], landmark: str, angle: str, seed: int = 0,
                 name: str | None = None) -> PlateRecord:
    """The plate for (landmark, angle): by ``name``, else the ``seed``-th of them (deterministic)."""
    here = plates_for(plates, landmark, angle)
    if name is not None:
        named = [p for p in plates if p.name == name or p.file == name]
        if not named:
            raise PlateError(f"no plate named '{name}'; plates: {describe_plates(plates)}")
        return named[0]
    if not here:
        raise PlateError(f"no background plate for {landmark}/{angle}; plates that exist: {describe_plates(plates)}")
    return here[int(seed) % len(here)]


def load_plate(plates_dir: Path, plate: PlateRecord, size: tuple[int, int] | None = None) -> Image.Image:
    """The plate's pixels as RGB from the library in ``plates_dir`` (``Layout.plates_dir`` or a bundled
    copy); at ``size`` (w, h) when asked (downscaled with a centre crop to its aspect). A plate smaller than
    ``size`` is refused rather than upscaled."""
    path = Path(plates_dir) / plate.file
    if not path.is_file():
        raise PlateError(f"{path}: plate '{plate.name}' is in the index but not on disk; rerun `dvc repro preprocess`")
    with Image.open(path) as im:
        image = im.convert("RGB")
    if size is None or tuple(size) == image.size:
        return image
    w, h = int(size[0]), int(size[1])
    if w > image.width or h > image.height:
        raise PlateError(f"plate '{plate.name}' is {image.width}x{image.height} px, smaller than the asked "
                         f"{w}x{h}; ask for at most {image.width}x{image.height} or add a larger plate")
    scale = max(w / image.width, h / image.height)
    sw, sh = max(w, round(image.width * scale)), max(h, round(image.height * scale))
    x0, y0 = (sw - w) // 2, (sh - h) // 2
    return image.resize((sw, sh), Image.Resampling.LANCZOS).crop((x0, y0, x0 + w, y0 + h))
