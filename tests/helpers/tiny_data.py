"""A tiny processed dataset for smoke runs and tests, laid out exactly as `preprocess` writes it.

    from tests.helpers.tiny_data import write_processed
    write_processed(Path("."))     # data/processed/{train,val}/ with metadata.jsonl, two buckets

Lets the later stages (cache_latents, train, evaluate, promote) run in seconds without the
sample set, ingest and preprocess in front of them. Used by the tests and by tools/infra_smoke.py.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_processed(root: Path, n_train: int = 6, n_val: int = 2) -> None:
    """``n_train`` + ``n_val`` photos of Gyeongbokgung in two buckets (64x64 and 72x56)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    shots = ["upper_body", "wide"]
    for split, n in (("train", n_train), ("val", n_val)):
        recs = []
        for i in range(n):
            w, h = ((64, 64), (72, 56))[i % 2]
            name = f"gyeongbokgung/{split}{i}.png"
            path = Path(root) / "data/processed" / split / name
            path.parent.mkdir(parents=True, exist_ok=True)
            base = np.linspace(0, 255, w * h * 3).reshape(h, w, 3)
            Image.fromarray((base * 0.5 + rng.integers(0, 120, (h, w, 3))).clip(0, 255).astype(np.uint8)).save(path)
            caption = f"lmksnap snapshot photo, {shots[i % 2]} shot, in front of Gyeongbokgung"
            recs.append({"file_name": name, "text": caption,
                         "landmark": "gyeongbokgung", "shot": shots[i % 2], "angle": "eye_level", "pose": "waving",
                         "width": w, "height": h, "sha256": f"{split}{i}", "raw_file": name, "person_box": False})
        meta = Path(root) / "data/processed" / split / "metadata.jsonl"
        meta.write_text("\n".join(json.dumps(r) for r in recs) + "\n")


def cached_workspace(root: Path, raw_params: dict) -> Path:
    """``root`` with processed data, ``params.yaml`` (``raw_params``, what the CLI reads) and latents cached.

    The tiny base is built on the way (``model.dir`` under ``root``); the working directory is restored.
    """
    import os

    import yaml

    from landmark_lora.config import parse_params
    from landmark_lora.stages.cache_latents import cache_latents

    write_processed(root)
    (root / "params.yaml").write_text(yaml.safe_dump(raw_params))
    old = os.getcwd()
    os.chdir(root)
    try:
        cache_latents(parse_params(raw_params))
    finally:
        os.chdir(old)
    return root
