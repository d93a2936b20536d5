"""Real sample-set photos, small, laid out as `preprocess` writes them (for the classifier tests).

    from sample_photos import render_small_set, write_processed_set
    photos = render_small_set(tmp)                 # [(image, {"landmark", "angle", "shot", "pose", "k"}), ...]
    write_processed_set(tmp / "data/processed", photos)   # train/val + metadata.jsonl; val = variant k == 1

The photos come from the sample renderer itself (`render_sample_set`, all five landmarks x three
angles x five shots x ``poses``; its background plates left out), at its smallest size, then resized to a 56x72 bucket as
`preprocess` does for ``data.resolution: 64``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PIL import Image

from landmark_lora.catalogue import load_catalogue
from landmark_lora.config import SampleDataConfig
from landmark_lora.synthetic.render import render_sample_set

BUCKET = (56, 72)  # a portrait bucket of data.resolution 64, bucket_multiple 8


def render_small_set(out: Path, poses: int = 2) -> list[tuple[Image.Image, dict]]:
    """Render the sample set at 64x84 into ``out`` and return (image at BUCKET, labels) per photo."""
    cfg = SampleDataConfig(width=64, height=84, poses_per_view=poses)
    render_sample_set(out, load_catalogue(), cfg)
    photos = []
    with (out / "metadata.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["shot"] == "background":  # plates: no person, not part of the labelled photo set
                continue
            slug, name = row["file"].split("/")
            with Image.open(out / row["file"]) as im:
                image = im.convert("RGB").resize(BUCKET, Image.Resampling.LANCZOS)
            photos.append((image, {"landmark": slug, "angle": row["angle"], "shot": row["shot"], "pose": row["pose"],
                                   "k": int(name.rsplit("_", 1)[1].split(".")[0]), "file": row["file"]}))
    return photos


def write_processed_set(processed: Path, photos: list[tuple[Image.Image, dict]], val_k: int = 1) -> None:
    """train/ and val/ folders with metadata.jsonl; a photo goes to val when its variant is ``val_k``."""
    recs: dict[str, list[dict]] = {"train": [], "val": []}
    for image, lab in photos:
        split = "val" if lab["k"] == val_k else "train"
        name = lab["file"].replace(".jpg", ".png")
        path = processed / split / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        recs[split].append({"file_name": name, "text": f"lmksnap snapshot photo, in front of {lab['landmark']}",
                            "landmark": lab["landmark"], "shot": lab["shot"], "angle": lab["angle"],
                            "pose": lab["pose"], "width": image.width, "height": image.height,
                            "sha256": name, "raw_file": lab["file"], "person_box": False})
    for split, rows in recs.items():
        (processed / split).mkdir(parents=True, exist_ok=True)
        (processed / split / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
