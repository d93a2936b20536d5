"""The raw photo set as tables for the dataset contract: one row per photo, one per landmark.

    from landmark_lora.validation.table import build_photo_table, build_landmark_table
    photos = build_photo_table(Path("data/raw"))          # labels + facts measured from the bytes
    landmarks = build_landmark_table(photos, catalogue)   # photos per landmark, unlabelled-shot share

Every photo in ``data/raw/metadata.csv`` (and every file under ``data/raw/<landmark>/`` the table
does not list) becomes one row: labels from the metadata, plus sha256, whether Pillow decodes it,
displayed size, format and mode. ``validation.contract`` states what these tables must satisfy.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from landmark_lora import fsutil, rawtable
from landmark_lora.catalogue import UNSPECIFIED

PHOTO_COLUMNS = (
    "path", "landmark", "shot", "angle", "pose", "in_metadata", "on_disk", "decodes", "error",
    "width", "height", "aspect_ratio", "format", "mode", "bytes", "sha256", "recorded_sha256",
)
LANDMARK_COLUMNS = ("landmark", "photos", "unspecified_shot_fraction")


def _inspect(path: Path) -> dict[str, Any]:
    """Facts measured from the bytes on disk. Never raises: a bad file is a row, not a crash."""
    facts: dict[str, Any] = {
        "on_disk": False, "decodes": False, "error": None, "width": None, "height": None,
        "format": None, "mode": None, "bytes": None, "sha256": None,
    }
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        facts["error"] = "file not found"
        return facts
    except OSError as err:
        facts["error"] = f"cannot read: {err}"
        return facts
    facts.update(on_disk=True, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            facts.update(format=im.format, mode=im.mode)
            orientation = int(im.getexif().get(0x0112, 1) or 1)
            if orientation in (5, 6, 7, 8):  # rotated 90 degrees: displayed size is swapped
                width, height = height, width
            facts.update(width=width, height=height)
            if im.format == "JPEG":
                # A 1/8-scale DCT decode still reads every byte, so truncation shows up, ~10x faster.
                im.draft(None, (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
            im.load()
        facts["decodes"] = True
    except Exception as err:  # noqa: BLE001 - any decoder failure means "does not decode"
        facts["error"] = f"{type(err).__name__}: {err}"[:300]
    return facts


def _disk_files(raw_dir: Path) -> dict[str, str]:
    """NFC relative path -> relative path as on disk, for every visible file under raw/<landmark>/."""
    found: dict[str, str] = {}
    if not raw_dir.is_dir():
        return found
    for folder in sorted(p for p in raw_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(raw_dir)
            # Hidden names: ingest's .partial- temp files, .DS_Store and the like.
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                found[fsutil.nfc(rel.as_posix())] = rel.as_posix()
    return found


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _measure(paths: list[Path], raw_dir: Path, cache: Path | None) -> list[dict[str, Any]]:
    """_inspect for every path, on a thread per core. With ``cache``, a file whose size, mtime,
    ctime and inode are those recorded when it last decoded is not read again: raw photos are
    written once by ingest, and any write or replacement changes that key."""
    known: dict[str, Any] = {}
    if cache is not None and cache.is_file():
        try:
            known = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}  # unreadable: every photo is measured again
    keys = [_stat_key(p) for p in paths]
    names = [p.relative_to(raw_dir).as_posix() if p.is_relative_to(raw_dir) else str(p) for p in paths]
    todo = [i for i, (name, key) in enumerate(zip(names, keys, strict=True))
            if key is None or known.get(name, {}).get("stat") != key]
    workers = min(8, os.cpu_count() or 1)
    # Pillow decodes outside the GIL. Warnings are silenced here, not per thread, because
    # catch_warnings is not thread-safe; EXIF/ICC chatter is noise, real damage raises.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
        warnings.simplefilter("ignore")
        fresh = dict(zip(todo, pool.map(_inspect, [paths[i] for i in todo]), strict=True))
    facts = [fresh[i] if i in fresh else known[names[i]]["facts"] for i in range(len(paths))]
    if cache is not None:
        keep = {name: {"stat": key, "facts": fact} for name, key, fact in zip(names, keys, facts, strict=True)
                if key is not None and fact["decodes"]}  # a broken file is always looked at again
        cache.parent.mkdir(parents=True, exist_ok=True)
        fsutil.write_json_atomic(cache, keep)
    return facts


def build_photo_table(raw_dir: Path, cache: Path | None = None) -> pd.DataFrame:
    """One row per photo in the raw table plus one per unlisted file on disk (``in_metadata`` False).

    Columns: PHOTO_COLUMNS. ``sha256`` is recomputed from the bytes, ``recorded_sha256`` is what
    ingest wrote; width/height are as displayed (EXIF orientation applied); ``aspect_ratio`` is
    long side / short side. ``cache``: a JSON file of facts already measured (see ``_measure``). Raises ValueError only when metadata.csv itself is unreadable.
    """
    raw_dir = Path(raw_dir)
    rows = rawtable.read_rows(raw_dir)
    on_disk = _disk_files(raw_dir)
    listed = {fsutil.nfc(r["file"]) for r in rows}

    records: list[dict[str, Any]] = []
    for r in rows:
        pose = (r.get("pose") or "").strip()
        records.append({
            "path": r["file"], "landmark": r["landmark"], "shot": r["shot"], "angle": r["angle"],
            "pose": pose or None,  # blank pose = no label at all (ingest writes 'unspecified')
            "in_metadata": True, "recorded_sha256": r["sha256"] or None,
            "_disk": raw_dir / on_disk.get(fsutil.nfc(r["file"]), r["file"]),
        })
    for key, rel in on_disk.items():
        if key not in listed:
            # Labelled like an unlabelled ingest, so only the in_metadata check flags it.
            records.append({
                "path": rel, "landmark": rel.split("/", 1)[0], "shot": UNSPECIFIED, "angle": UNSPECIFIED,
                "pose": UNSPECIFIED, "in_metadata": False, "recorded_sha256": None, "_disk": raw_dir / rel,
            })

    facts = _measure([rec.pop("_disk") for rec in records], raw_dir, cache)
    for rec, fact in zip(records, facts, strict=False):
        rec.update(fact)
        w, h = rec["width"], rec["height"]
        rec["aspect_ratio"] = round(max(w, h) / min(w, h), 4) if w and h else None

    df = pd.DataFrame.from_records(records, columns=list(PHOTO_COLUMNS))
    for col in ("in_metadata", "on_disk", "decodes"):
        df[col] = df[col].astype(bool)
    for col in ("width", "height", "bytes"):
        df[col] = df[col].astype("Int64")
    df["aspect_ratio"] = df["aspect_ratio"].astype("float64")
    return df


def build_landmark_table(photos: pd.DataFrame, catalogue: dict) -> pd.DataFrame:
    """One row per catalogue landmark with photos: count and share without a shot label.

    Counts photos listed in metadata.csv and present on disk. Unknown landmarks are left to the
    photo suite's landmark check; absent required ones to the required-landmarks check.
    """
    present = photos[photos["in_metadata"] & photos["on_disk"] & photos["landmark"].isin(list(catalogue))]
    out = []
    for landmark, group in sorted(present.groupby("landmark"), key=lambda kv: kv[0]):
        out.append({
            "landmark": landmark,
            "photos": len(group),
            "unspecified_shot_fraction": round(float((group["shot"] == UNSPECIFIED).mean()), 4),
        })
    df = pd.DataFrame.from_records(out, columns=list(LANDMARK_COLUMNS))
    df["photos"] = df["photos"].astype("int64")
    df["unspecified_shot_fraction"] = df["unspecified_shot_fraction"].astype("float64")
    return df
