"""Preprocess: raw photos -> bucketed, person-safe crops with captions, split into train/val.

    landmark-lora preprocess          # run by the DVC stage `preprocess` (dvc repro)

For each photo in ``data/raw/metadata.csv``:
1. apply the EXIF orientation and convert to 8-bit RGB (CMYK, grayscale, RGBA, 16-bit);
2. pick the aspect-ratio bucket nearest the photo's shape, with area ~ ``data.resolution``²;
3. crop to the bucket's shape around the person (OpenCV HOG people detector + Haar face and
   upper-body cascades, all bundled in the opencv wheel; centre crop when nothing is found),
   so the person is never cut out, then resize;
4. caption it from ``caption.template`` (landmark, shot type, camera angle, pose).

Outputs ``data/processed/{train,val}/<landmark>/<sha16>.png`` with a ``.txt`` caption beside
each image (kohya layout) and ``metadata.jsonl`` per split (Hugging Face imagefolder layout).

Background plates (shot ``background``) are never trained on: they are cropped and sized the
same way into the plate library ``data/processed/plates/<landmark>/<angle>/<name>.png`` with an
``index.json``, and ``data/processed/person_regions.json`` records, per shot type, where the
detector found the person in the train photos (median box normalised to the image, spread,
count) for composite generation (``landmark_lora.composite``). An unlabelled photo in which no
one is detected is listed as ``proposed_plates`` in ``reports/preprocess.json``, never used as one.

Steps 1-3 are cached by content in ``.cache/preprocess/`` under a key made of the photo's
sha256 and the knobs that change the pixels, so adding k photos to n costs about k. Entries are
written atomically (``landmark_lora.fsutil``); an entry that cannot be read back whole (a partial
file from an older version, a damaged disk) counts as a miss and is written again.

Splits are stratified by (landmark, shot) and assigned in ingest order, by systematic sampling:
the i-th photo of a stratum goes to val when floor(i * val_fraction + start) steps up. Each shot
type's stratum has its own start (golden-ratio spaced), because photos arrive grouped by camera
spot (all eye-level shots, then the high ones...): with one start for all, every stratum's val
photo came from the same spot, and val held one camera angle. New photos only append to a
stratum, so no photo ever changes split when others are added.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from landmark_lora import fsutil, rawtable
from landmark_lora.artifacts import (
    SPLITS,
    Layout,
    PlateRecord,
    ProcessedRecord,
    write_person_regions,
    write_plates,
    write_records,
)
from landmark_lora.caption_fit import check_captions
from landmark_lora.catalogue import BACKGROUND, SHOTS, UNSPECIFIED, Landmark, render_caption
from landmark_lora.config import DataConfig, Params
from landmark_lora.imaging import Box, detect_person, exif_orientation, load_rgb
from landmark_lora.logs import get_logger
from landmark_lora.metrics import person_extent
from landmark_lora.parallel import Prefetcher
from landmark_lora.plates import normalised_box, person_region_stats

log = get_logger(__name__)

# Bump when the pixel pipeline changes: it invalidates every cached crop.
# 2: the crop facts also hold the whole person's extent (composite mode's person regions);
# 3: people are searched on a copy at most DETECT_SIDE px long.
PIPELINE_VERSION = "3"
# The detectors find the same person boxes at this size as on the 1/8-scale decode of a 12-MP
# photo (500 px), 2-3x faster (docs/benchmarks.md); smaller photos are searched as they are.
DETECT_SIDE = 320


# ---------------------------------------------------------------- buckets


def bucket_sizes(cfg: DataConfig) -> list[tuple[int, int]]:
    """(width, height) buckets with area close to resolution², sides multiples of bucket_multiple."""
    m, area = cfg.bucket_multiple, cfg.resolution**2
    buckets = set()
    width = m
    while width <= cfg.resolution * 4:
        height = max(m, int(round(area / width / m)) * m)
        if cfg.min_bucket_aspect - 1e-9 <= width / height <= cfg.max_bucket_aspect + 1e-9:
            buckets.add((width, height))
        width += m
    buckets.add((cfg.resolution, cfg.resolution))
    return sorted(buckets)


def choose_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is nearest the photo's (in log space: 2:1 and 1:2 are equally far)."""
    target = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - target), -b[0] * b[1]))


def crop_box(width: int, height: int, aspect: float, person: Box | None) -> Box:
    """Largest crop of the given aspect (w/h) that keeps the person; centred on them.

    When the person is larger than the crop, keep their top (the head) in frame.
    """
    if width / height > aspect:  # too wide: cut the sides
        cw, ch = max(1, round(height * aspect)), height
    else:  # too tall: cut top and bottom
        cw, ch = width, max(1, round(width / aspect))
    if person is None:
        cx, cy = width / 2, height / 2
        x0, y0 = cx - cw / 2, cy - ch / 2
    else:
        px0, py0, px1, py1 = person
        x0 = (px0 + px1) / 2 - cw / 2 if px1 - px0 <= cw else px0
        y0 = (py0 + py1) / 2 - ch / 2 if py1 - py0 <= ch else py0 - 0.02 * ch
    x0 = int(round(min(max(0, x0), width - cw)))
    y0 = int(round(min(max(0, y0), height - ch)))
    return x0, y0, x0 + cw, y0 + ch


# ---------------------------------------------------------------- pixels


def process_image(path: Path, cfg: DataConfig, buckets: list[tuple[int, int]]) -> tuple[Image.Image, dict]:
    """Orient, crop around the person and resize into a bucket. Returns the image and crop facts."""
    with Image.open(path) as probe:
        w, h = probe.size
        if exif_orientation(probe) in (5, 6, 7, 8):
            w, h = h, w
    bucket = choose_bucket(w, h, buckets)
    image = load_rgb(path, bucket)
    bucket = choose_bucket(image.width, image.height, buckets)
    person, extent = _detect(image) if cfg.person_detector == "auto" else (None, None)
    box = crop_box(image.width, image.height, bucket[0] / bucket[1], person)
    out = image.resize(bucket, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    return out, {"bucket": list(bucket), "crop": list(box), "person": list(person) if person else None,
                 "extent": list(extent) if extent else None, "source_size": [image.width, image.height]}


def _detect(image: Image.Image) -> tuple[Box | None, Box | None]:
    """The head-and-shoulders box (imaging.detect_person) and the whole person's extent
    (metrics.person_extent), searched on a copy at most DETECT_SIDE px long, in ``image``'s pixels."""
    scale = min(1.0, DETECT_SIDE / max(image.size))
    small = image if scale == 1.0 else image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR)

    def back(box: Box | None) -> Box | None:
        if box is None or scale == 1.0:
            return box
        x0, y0, x1, y1 = box
        return (int(x0 / scale), int(y0 / scale), min(image.width, math.ceil(x1 / scale)),
                min(image.height, math.ceil(y1 / scale)))

    face = detect_person(small)
    return back(face), back(person_extent(small, face))  # the cascades run once


# ---------------------------------------------------------------- splits


GOLDEN = (math.sqrt(5) - 1) / 2  # successive multiples mod 1 spread as evenly as any sequence can


def sampling_start(shot: str) -> float:
    """The stratum's start in [0, 1): 0.5 (round to nearest) for the first shot type, then golden-ratio steps."""
    k = SHOTS.index(shot) if shot in SHOTS else len(SHOTS)
    return (0.5 + k * GOLDEN) % 1.0


def assign_splits(rows: list[dict], val_fraction: float) -> dict[str, str]:
    """file -> 'train' | 'val', stratified by (landmark, shot), stable as photos are added."""
    seen: dict[tuple[str, str], int] = {}
    out = {}
    for row in sorted(rows, key=lambda r: (r["seq"], r["sha256"])):
        key = (row["landmark"], row["shot"])
        i = seen[key] = seen.get(key, 0) + 1
        start = sampling_start(row["shot"])
        steps_up = math.floor(i * val_fraction + start) > math.floor((i - 1) * val_fraction + start)
        out[row["file"]] = "val" if steps_up else "train"
    return out


# ---------------------------------------------------------------- the stage


@dataclass
class PreprocessSummary:
    counts: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    buckets: dict[str, int] = field(default_factory=dict)
    person_found: int = 0
    out_dir: Path = Path("data/processed")
    captions: dict = field(default_factory=dict)  # caption_fit's token counts (reports/preprocess.json)
    plates: int = 0
    proposed_plates: list[str] = field(default_factory=list)  # unlabelled photos where no one was found

    def describe(self) -> str:
        proposed = (f"; {len(self.proposed_plates)} unlabelled photo(s) with no person found could be plates "
                    "(label them `shot: background`; see proposed_plates in the report)" if self.proposed_plates else "")
        return (
            f"preprocess: {self.counts.get('train', 0)} train, {self.counts.get('val', 0)} val, "
            f"{self.plates} plates -> {self.out_dir}/ "
            f"(cache: {self.cache_hits} reused, {self.cache_misses} processed; "
            f"person detected in {self.person_found}; buckets {self.buckets}){proposed}"
        )


def cache_key(sha256: str, cfg: DataConfig) -> str:
    knobs = {
        "v": PIPELINE_VERSION,
        "res": cfg.resolution,
        "mult": cfg.bucket_multiple,
        "aspect": [cfg.min_bucket_aspect, cfg.max_bucket_aspect],
        "det": cfg.person_detector,
        "fmt": cfg.image_format,
    }
    return hashlib.sha256(f"{sha256}:{json.dumps(knobs, sort_keys=True)}".encode()).hexdigest()


def _read_cache(cached_img: Path, cached_meta: Path) -> dict | None:
    """The cached crop facts, or None (a miss) when either file is absent, unreadable or incomplete."""
    try:
        facts = json.loads(cached_meta.read_text(encoding="utf-8"))
        width, height = facts["bucket"]
        facts["person"]  # noqa: B018 - present (None when no person was found)
        with Image.open(cached_img) as im:  # reads the header only
            if im.size != (width, height):
                return None
    except (OSError, ValueError, KeyError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return facts


def _check_validated(layout: Layout) -> None:
    report = layout.validation_json
    if report.exists() and not json.loads(report.read_text(encoding="utf-8")).get("success", False):
        raise ValueError(f"{report} says the dataset contract is broken; fix the data and run `landmark-lora validate`")


def _raw_rows(layout: Layout, catalogue: dict[str, Landmark]) -> list[dict]:
    """The raw table's rows, checked: some photos, every landmark in the catalogue."""
    rows = rawtable.read_rows(layout.raw)
    if not rows:
        raise ValueError(f"{layout.raw_table}: no photos; add some to {layout.incoming}/ and run `landmark-lora ingest`")
    unknown = sorted({r["landmark"] for r in rows} - set(catalogue))
    if unknown:
        raise ValueError(f"{layout.raw_table}: landmark(s) {unknown} are not in the catalogue")
    return rows


def _cache_paths(row: dict, layout: Layout, cfg: DataConfig) -> tuple[Path, Path]:
    key = cache_key(row["sha256"], cfg)
    return layout.preprocess_cache / f"{key}.{cfg.image_format}", layout.preprocess_cache / f"{key}.json"


def _crop_into_cache(src: Path, cached_img: Path, cached_meta: Path, cfg: DataConfig,
                     buckets: list[tuple[int, int]]) -> dict:
    """Crop one photo into the cache and return its crop facts (runs in a worker process)."""
    image, facts = process_image(src, cfg, buckets)
    with fsutil.atomic_path(cached_img) as tmp:
        image.save(tmp, format="PNG" if cfg.image_format == "png" else "JPEG", quality=95)
    fsutil.write_json_atomic(cached_meta, facts, newline=False)  # image first: facts present => image complete
    return facts


def _cached_crop(row: dict, layout: Layout, cfg: DataConfig, buckets: list[tuple[int, int]],
                 crops: Prefetcher, known: dict[str, dict | None], summary: PreprocessSummary) -> tuple[Path, dict]:
    """The photo's crop in the cache (made now, or by a worker, on a miss) and its crop facts.
    ``known``: the cached facts per raw file as the run started (None: a miss, queued in ``crops``)."""
    cached_img, cached_meta = _cache_paths(row, layout, cfg)
    if crops.queued(row["file"]):  # missing from the cache when the run started
        log.debug("preprocess: cache miss for %s", row["file"])
        summary.cache_misses += 1
        return cached_img, crops.result(row["file"])
    cached = known.get(row["file"])
    if cached is None or not cached_img.is_file():  # removed while this run went on: made again here
        summary.cache_misses += 1
        return cached_img, _crop_into_cache(layout.raw / row["file"], cached_img, cached_meta, cfg, buckets)
    summary.cache_hits += 1
    return cached_img, cached


def _plate_library(plate_rows: list[dict], layout: Layout, cfg: DataConfig, buckets: list[tuple[int, int]],
                   crops: Prefetcher, known: dict[str, dict | None], summary: PreprocessSummary) -> list[PlateRecord]:
    """Plates cropped and sized like the training photos, under ``plates_dir/<landmark>/<angle>/``."""
    shutil.rmtree(layout.plates_dir, ignore_errors=True)
    plates = []
    for row in plate_rows:
        cached_img, facts = _cached_crop(row, layout, cfg, buckets, crops, known, summary)
        name = Path(row["file"]).stem
        rel = f"{row['landmark']}/{row['angle']}/{name}.{cfg.image_format}"
        dest = layout.plates_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached_img, dest)
        width, height = facts["bucket"]
        plates.append(PlateRecord(landmark=row["landmark"], angle=row["angle"], name=name, file=rel, width=width,
                                  height=height, raw_file=row["file"], sha256=row["sha256"]))
    write_plates(layout, plates)
    summary.plates = len(plates)
    return plates


def _record(row: dict, name: str, caption: str, facts: dict) -> ProcessedRecord:
    width, height = facts["bucket"]
    return ProcessedRecord(
        file_name=name, text=caption, landmark=row["landmark"], shot=row["shot"], angle=row["angle"],
        pose=row["pose"], width=width, height=height, sha256=row["sha256"], raw_file=row["file"],
        person_box=facts["person"] is not None,
        person=normalised_box(facts.get("extent") or facts["person"], facts["crop"]),
    )


def preprocess(params: Params, catalogue: dict[str, Landmark]) -> PreprocessSummary:
    cfg, layout = params.data, Layout.of(params)
    layout.preprocess_cache.mkdir(parents=True, exist_ok=True)
    _check_validated(layout)
    all_rows = _raw_rows(layout, catalogue)
    rows = [r for r in all_rows if r["shot"] != BACKGROUND]  # plates are never trained on
    if not rows:
        raise ValueError(f"{layout.raw_table}: only background plates, no photos with a person to train on")
    captions = check_captions(params, catalogue, rows)  # a label past the token limit fails here, before any work

    buckets = bucket_sizes(cfg)
    splits = assign_splits(rows, cfg.val_fraction)
    summary = PreprocessSummary(out_dir=layout.processed, captions=captions)
    for split in SPLITS:
        shutil.rmtree(layout.split_dir(split), ignore_errors=True)  # a DVC output: rebuilt whole, from the cache
    records: dict[str, list[ProcessedRecord]] = {split: [] for split in SPLITS}

    # Photos missing from the cache are decoded, detected and cropped ahead on every core; the
    # records below are still written in raw-table order.
    plate_rows = [r for r in all_rows if r["shot"] == BACKGROUND]
    known = {row["file"]: _read_cache(*_cache_paths(row, layout, cfg)) for row in rows + plate_rows}
    misses = [(row["file"], (layout.raw / row["file"], *_cache_paths(row, layout, cfg), cfg, buckets))
              for row in rows + plate_rows if known[row["file"]] is None]
    with Prefetcher(_crop_into_cache, misses, cfg.workers) as crops:
        for row in rows:
            cached_img, facts = _cached_crop(row, layout, cfg, buckets, crops, known, summary)
            split = splits[row["file"]]
            name = f"{row['landmark']}/{row['sha256'][:16]}.{cfg.image_format}"
            dest = layout.split_dir(split) / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached_img, dest)
            caption = render_caption(
                params.caption, catalogue[row["landmark"]], row["shot"], row["angle"], row["pose"], row["caption"]
            )
            dest.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
            records[split].append(_record(row, name, caption, facts))
            width, height = facts["bucket"]
            summary.buckets[f"{width}x{height}"] = summary.buckets.get(f"{width}x{height}", 0) + 1
            summary.person_found += facts["person"] is not None
            if row["shot"] == UNSPECIFIED and facts["person"] is None:
                summary.proposed_plates.append(row["file"])
        _plate_library(plate_rows, layout, cfg, buckets, crops, known, summary)

    for split, recs in records.items():
        write_records(layout, split, recs)
        summary.counts[split] = len(recs)
    write_person_regions(layout, person_region_stats(records["train"]))
    _write_report(layout.preprocess_json, records, summary)
    log.debug("preprocess: wrote %s and %s", layout.metadata("train"), layout.preprocess_json)
    return summary


def _write_report(path: Path, records: dict[str, list[ProcessedRecord]], summary: PreprocessSummary) -> None:
    per_split: dict[str, dict[str, dict[str, int]]] = {}
    for split, recs in records.items():
        table: dict[str, dict[str, int]] = {}
        for rec in recs:
            table.setdefault(rec.landmark, {}).setdefault(rec.shot, 0)
            table[rec.landmark][rec.shot] += 1
        per_split[split] = table
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "train": summary.counts.get("train", 0),
        "val": summary.counts.get("val", 0),
        "person_detected": summary.person_found,
        "buckets": dict(sorted(summary.buckets.items())),
        "per_split": per_split,
        "captions": summary.captions,
        "plates": summary.plates,
        # unlabelled photos in which the detector found no one: never used as plates until labelled so
        "proposed_plates": summary.proposed_plates,
    }
    fsutil.write_json_atomic(path, report, indent=2, sort_keys=True)
