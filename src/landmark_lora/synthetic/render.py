"""The synthetic sample set: every landmark x angle x shot x pose, with a labels manifest for ingest.

    landmark-lora sample-data        # -> render_sample_set(params.paths.incoming, catalogue, params.sample_data)

    from landmark_lora.synthetic.render import render_sample_set
    n = render_sample_set(Path("data/incoming"), load_catalogue(), params.sample_data)   # -> 150 + 30 plates

Layout written::

    out_dir/<slug>/<slug>_<angle>_<shot>_<k>.jpg
    out_dir/<slug>/<slug>_<angle>_plate_<k>.jpg      shot 'background': plates_per_view per (landmark, angle)
    out_dir/metadata.csv      file,shot,angle,pose,caption   (file relative to out_dir)

Rows already in ``out_dir/metadata.csv`` for other files (e.g. your own labelled photos
waiting to be ingested) are kept; rows for the files rendered here are replaced. Two runs
with the same seed write byte-identical files.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from landmark_lora import fsutil
from landmark_lora.catalogue import ANGLES, BACKGROUND, SHOTS, Landmark
from landmark_lora.config import SampleDataConfig
from landmark_lora.labels import MANIFEST, MANIFEST_COLUMNS  # the drop folder's label file
from landmark_lora.synthetic.canvas import stable_seed
from landmark_lora.synthetic.person import POSES
from landmark_lora.synthetic.photo import render_photo, render_plate

# ---------------------------------------------------------------- the set


def _atomic_write(path: Path, data: bytes) -> None:
    """Write next to the target, then rename: a crash never leaves a half-written photo."""
    # A hidden temp name: an ingest running meanwhile leaves it alone.
    fsutil.write_bytes_atomic(path, data)


def _pose_for(cfg: SampleDataConfig, slug: str, angle: str, shot: str, k: int) -> str:
    # Consecutive variants of one view get different poses; the start rotates per view.
    return POSES[(stable_seed(cfg.seed, slug, angle, shot, "pose") + k) % len(POSES)]


def render_sample_set(out_dir: Path, catalogue: dict[str, Landmark], cfg: SampleDataConfig) -> int:
    """Render every landmark x angle x shot x ``cfg.poses_per_view``, and ``cfg.plates_per_view`` background
    plates (shot ``background``, no person) per landmark x angle, into ``out_dir``; return the count of both.

    Also writes ``out_dir/metadata.csv`` (file,shot,angle,pose,caption); rows it holds for
    other files are kept.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    for slug, landmark in catalogue.items():
        (out_dir / slug).mkdir(exist_ok=True)
        for angle in ANGLES:
            for shot in SHOTS:
                for k in range(cfg.poses_per_view):
                    pose = _pose_for(cfg, slug, angle, shot, k)
                    name = f"{slug}/{slug}_{angle}_{shot}_{k}.jpg"
                    buf = io.BytesIO()
                    render_photo(landmark, angle, shot, pose, k, cfg).save(buf, "JPEG", quality=cfg.jpeg_quality)
                    _atomic_write(out_dir / name, buf.getvalue())
                    rows.append({"file": name, "shot": shot, "angle": angle, "pose": pose, "caption": ""})
            for k in range(cfg.plates_per_view):
                name = f"{slug}/{slug}_{angle}_plate_{k}.jpg"
                buf = io.BytesIO()
                render_plate(landmark, angle, k, cfg).save(buf, "JPEG", quality=cfg.jpeg_quality)
                _atomic_write(out_dir / name, buf.getvalue())
                rows.append({"file": name, "shot": BACKGROUND, "angle": angle, "pose": "", "caption": ""})
    _write_manifest(out_dir / MANIFEST, rows)
    return len(rows)


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    ours = {r["file"] for r in rows}
    kept: list[dict[str, str]] = []
    if path.exists():  # someone's own labels waiting for ingest: keep them
        with path.open(newline="", encoding="utf-8-sig") as fh:
            kept = [r for r in csv.DictReader(fh) if (r.get("file") or "") not in ours]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: (r.get(c) or "") for c in MANIFEST_COLUMNS} for r in kept + rows)
    _atomic_write(path, buf.getvalue().encode("utf-8"))
