"""What reports/retrain.html shows, read from the report files (no rendering here).

    from landmark_lora.retrain.report_data import collect, load_outcome
    data = collect(Path("reports"), Path("data/quarantine"), Path("models"))   # validation, eval, curves, thumbs
    outcome = load_outcome(Path("reports"))                                    # reports/retrain.json, or "unknown"

A missing file reads as None, an unreadable one as {"_error": "..."}: the page says which.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import math
import time
from pathlib import Path
from typing import Any

from landmark_lora.artifacts import Layout
from landmark_lora.config import Params

MAX_THUMBS = 24
THUMB_PX = 96


def _json(path: Path) -> dict | None:
    """The file's dict; None when missing; {"_error": ...} when unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return {"_error": f"{path}: {err}"}
    return data if isinstance(data, dict) else {"_error": f"{path}: not a JSON object"}


def _when(path: Path) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
    except OSError:
        return ""


def _curve(path: Path, column: str) -> list[tuple[float, float]] | str:
    """(step, value) points of one column of a DVC plots CSV; an error string when unreadable."""
    if not path.is_file():
        return []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            points = []
            for row in csv.DictReader(fh):
                step, value = float(row["step"]), float(row[column])
                if math.isfinite(step) and math.isfinite(value):
                    points.append((step, value))
            return points
    except (OSError, KeyError, ValueError, TypeError) as err:
        return f"{path}: {err}"


def image_data_uri(path: Path, max_px: int | None = None) -> str | None:
    """A PNG data: URI of the image (shrunk to ``max_px``); None when it does not decode."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if max_px:
                im.draft("RGB", (max_px * 2, max_px * 2))  # a JPEG decodes at a fraction of its size
            im.load()
            im = im.convert("RGB")
            if max_px:
                im.thumbnail((max_px, max_px))
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
    except Exception:  # anything PIL cannot read is "not decodable": listed, no thumbnail
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _layout(reports: Path, quarantine: Path | None = None, model_dir: Path | None = None) -> Layout:
    """The default layout with the folders this page was handed (the paths inside come from Layout)."""
    moved: dict[str, Path] = {"reports": Path(reports)}
    if quarantine is not None:
        moved["quarantine"] = Path(quarantine)
    if model_dir is not None:
        moved["models"] = Path(model_dir)
    return dataclasses.replace(Layout.of(Params()), **moved)


def _rejections(layout: Layout) -> list[dict]:
    path = layout.rejections_csv
    if not path.is_file():
        return []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, ValueError):
        return []


def collect(reports: Path, quarantine: Path, model_dir: Path | None = None,
            rejected: list[tuple[str, str]] | None = None) -> dict:
    """Everything the page shows, read from the report files. ``rejected``: this run's
    (file, reason) pairs, whose quarantined copies get thumbnails (None: the latest rejections)."""
    layout = _layout(reports, quarantine, model_dir)
    quarantine = layout.quarantine
    paths = {"validation": layout.validation_json, "eval": layout.eval_json, "promotion": layout.promotion_json,
             "train": layout.train_json}
    files = {name: _json(path) for name, path in paths.items()}
    data: dict[str, Any] = {**files, "when": {n: _when(path) for n, path in paths.items()}}
    data["train_curve"] = _curve(layout.plots / "train_loss.csv", "loss")
    data["eval_curve"] = _curve(layout.plots / "eval_loss.csv", "eval_loss")
    data["grids"] = [(p.stem, image_data_uri(p)) for p in sorted(layout.samples.glob("*.png"))]
    rows = _rejections(layout)
    if rejected is not None:
        wanted = {f for f, _ in rejected}
        rows = [r for r in rows if r.get("file") in wanted]
    else:
        rows = rows[-MAX_THUMBS:]
    thumbs = []
    for r in rows[-MAX_THUMBS:]:
        stored = (r.get("quarantined_as") or "").strip()
        uri = image_data_uri(quarantine / stored, THUMB_PX) if stored else None
        thumbs.append({"file": r.get("file", ""), "reason": r.get("reason", ""), "stored": stored, "uri": uri})
    data["thumbs"] = thumbs
    data["thumbs_scope"] = "this run" if rejected is not None else "latest in rejections.csv"
    meta = _json(layout.adapter_dir / "adapter_metadata.json") if model_dir else None
    meta = meta if meta and "_error" not in meta else {}
    data["adapter_meta"] = meta.get("metadata") if isinstance(meta.get("metadata"), dict) else meta
    return data


def load_outcome(reports: Path) -> dict:
    """The last flow outcome (reports/retrain.json), or an 'unknown' one saying it is missing."""
    path = _layout(reports).retrain_json
    outcome = _json(path)
    if outcome is None or "_error" in outcome:
        why = "not found" if outcome is None else outcome["_error"]
        return {"status": "unknown", "reason": f"no flow outcome ({path}: {why}); "
                "this page is rebuilt from the report files alone"}
    return outcome
