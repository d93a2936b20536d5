"""Cache latents: encode every processed image once with the VAE and every caption once with
the text encoder, so training never runs either (as kohya and SimpleTuner do).

    landmark-lora cache-latents       # run by the DVC stage `cache_latents`

Writes ``data/latents/{train,val}.safetensors`` and ``data/latents/index.json``:
- ``<i>.mean`` / ``<i>.std``: the VAE posterior of image i (scaled), so training can still
  sample a fresh latent each step while eval uses the mean;
- ``text.<sha16>``: the CLIP hidden states of each distinct caption, plus ``text.empty`` for
  caption dropout.
The index records the base model and its fingerprint; training refuses latents made from
another base. DVC reruns this stage when the processed data, ``model`` params or the code change.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from landmark_lora import fsutil
from landmark_lora.config import Params
from landmark_lora.diffusion import (
    base_fingerprint,
    encode_images,
    encode_prompts,
    image_to_tensor,
    load_components,
    read_split,
    resolve_base,
)

LATENTS_DIR = Path("data/latents")
BATCH = 16


def caption_key(text: str) -> str:
    return "text.empty" if not text else "text." + hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_latents(params: Params, out_dir: Path = LATENTS_DIR) -> dict:
    base = resolve_base(params.model)
    parts = load_components(base, vae=True, text=True)
    processed = Path(params.paths.processed)
    out_dir.mkdir(parents=True, exist_ok=True)
    index: dict = {"base_model": params.model.base, "base_fingerprint": base_fingerprint(base),
                   "vae_scaling_factor": parts.vae_scale, "splits": {}}
    started = time.perf_counter()
    total = 0
    for split in ("train", "val"):
        records = read_split(processed, split)
        tensors: dict[str, torch.Tensor] = {}
        by_bucket: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, rec in enumerate(records):
            by_bucket[(rec["width"], rec["height"])].append(i)
        for (w, h), idxs in sorted(by_bucket.items()):
            for start in range(0, len(idxs), BATCH):
                chunk = idxs[start:start + BATCH]
                pixels = torch.stack([_load(processed / split / records[i]["file_name"], w, h) for i in chunk])
                mean, std = encode_images(parts, pixels)
                for j, i in enumerate(chunk):
                    tensors[f"{i}.mean"] = mean[j].float().contiguous()
                    tensors[f"{i}.std"] = std[j].float().contiguous()
        captions = sorted({rec["text"] for rec in records} | {""})
        for start in range(0, len(captions), BATCH):
            chunk = captions[start:start + BATCH]
            emb = encode_prompts(parts, chunk)
            for j, text in enumerate(chunk):
                tensors[caption_key(text)] = emb[j].float().contiguous()
        entries = [dict(rec, index=i, text_key=caption_key(rec["text"])) for i, rec in enumerate(records)]
        index["splits"][split] = entries
        with fsutil.atomic_path(out_dir / f"{split}.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"base_fingerprint": index["base_fingerprint"], "split": split})
        total += len(records)
    fsutil.write_json_atomic(out_dir / "index.json", index, newline=False, indent=1, ensure_ascii=False)
    index["seconds"] = round(time.perf_counter() - started, 2)
    index["images"] = total
    return index


def _load(path: Path, w: int, h: int) -> torch.Tensor:
    with Image.open(path) as im:
        if im.size != (w, h):
            raise ValueError(f"{path}: size {im.size} does not match its bucket {w}x{h} in metadata.jsonl; rerun preprocess")
        return image_to_tensor(im)


def load_latents(out_dir: Path, split: str, expect_fingerprint: str | None = None) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Entries and tensors of one split; checks they were made from the expected base."""
    index_path = Path(out_dir) / "index.json"
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path}: no cached latents; run `dvc repro cache_latents`")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    if expect_fingerprint and index["base_fingerprint"] != expect_fingerprint:
        raise ValueError(
            f"{index_path}: latents were encoded with base '{index['base_model']}' "
            f"({index['base_fingerprint']}), not the current base ({expect_fingerprint}); "
            "rerun `dvc repro cache_latents`"
        )
    tensors = load_file(str(Path(out_dir) / f"{split}.safetensors"))
    return index["splits"][split], tensors
