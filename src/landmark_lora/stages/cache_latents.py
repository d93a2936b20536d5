"""Cache latents: encode every processed image once with the VAE and every caption once with
the text encoder, so training never runs either (as kohya and SimpleTuner do).

    landmark-lora cache-latents       # run by the DVC stage `cache_latents`

    from landmark_lora.stages.cache_latents import run
    index = run(params)               # the index.json it wrote, plus "seconds" and "images"

Writes ``data/latents/{train,val}.safetensors`` and ``data/latents/index.json`` (``Layout.latents``):
- ``<i>.mean`` / ``<i>.std``: the VAE posterior of image i (scaled), so training can still
  sample a fresh latent each step while eval uses the mean;
- ``text.<sha16>``: the CLIP hidden states of each distinct caption, plus ``text.empty`` for
  caption dropout.
The index records the base model and its fingerprint; training refuses latents made from
another base. ``landmark_lora.diffusion.latents`` reads the cache (train, evaluate). DVC reruns
this stage when the processed data, ``model`` params or the code change.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

from landmark_lora import fsutil
from landmark_lora.artifacts import Layout, ProcessedRecord, read_records
from landmark_lora.config import Params
from landmark_lora.diffusion.components import (
    Components,
    base_fingerprint,
    encode_images,
    encode_prompts,
    image_to_tensor,
    load_components,
    resolve_base,
)
from landmark_lora.diffusion.latents import caption_key, split_file
from landmark_lora.logs import get_logger

log = get_logger(__name__)
BATCH = 16


def cache_latents(params: Params) -> dict:
    """Encode both splits into ``Layout.latents`` (``paths.latents``); returns the index plus timing."""
    layout = Layout.of(params)
    out_dir = layout.latents
    base = resolve_base(params.model)
    parts = load_components(base, vae=True, text=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    index: dict = {"base_model": params.model.base, "base_fingerprint": base_fingerprint(base),
                   "vae_scaling_factor": parts.vae_scale, "splits": {}}
    started = time.perf_counter()
    total = 0
    for split in ("train", "val"):
        records = read_records(layout, split)
        tensors = _encode_split(parts, layout, split, records)
        index["splits"][split] = [dict(rec.to_json(), index=i, text_key=caption_key(rec.text))
                                  for i, rec in enumerate(records)]
        with fsutil.atomic_path(split_file(out_dir, split)) as tmp:
            save_file(tensors, str(tmp), metadata={"base_fingerprint": index["base_fingerprint"], "split": split})
        total += len(records)
        log.debug("cache-latents: %s: %d images, %d tensors", split, len(records), len(tensors))
    fsutil.write_json_atomic(layout.latents_index, index, newline=False, indent=1, ensure_ascii=False)
    index["seconds"] = round(time.perf_counter() - started, 2)
    index["images"] = total
    return index


def run(params: Params) -> dict:
    """The DVC stage: ``cache_latents(params)`` into ``Layout.latents``."""
    return cache_latents(params)


def _encode_split(parts: Components, layout: Layout, split: str,
                  records: list[ProcessedRecord]) -> dict[str, torch.Tensor]:
    """``<i>.mean`` / ``<i>.std`` per image (batched by bucket) and ``text.<sha16>`` per distinct caption."""
    folder, meta = layout.split_dir(split), layout.metadata(split)
    tensors: dict[str, torch.Tensor] = {}
    by_bucket: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        by_bucket[(rec.width, rec.height)].append(i)
    for (w, h), idxs in sorted(by_bucket.items()):
        for start in range(0, len(idxs), BATCH):
            chunk = idxs[start:start + BATCH]
            pixels = torch.stack([_load(folder / records[i].file_name, w, h, meta) for i in chunk])
            mean, std = encode_images(parts, pixels)
            for j, i in enumerate(chunk):
                tensors[f"{i}.mean"] = mean[j].float().contiguous()
                tensors[f"{i}.std"] = std[j].float().contiguous()
    captions = sorted({rec.text for rec in records} | {""})
    for start in range(0, len(captions), BATCH):
        chunk = captions[start:start + BATCH]
        emb = encode_prompts(parts, chunk)
        for j, text in enumerate(chunk):
            tensors[caption_key(text)] = emb[j].float().contiguous()
    return tensors


def _load(path: Path, w: int, h: int, meta: Path) -> torch.Tensor:
    with Image.open(path) as im:
        if im.size != (w, h):
            raise ValueError(f"{path}: size {im.size} does not match its bucket {w}x{h} in {meta}; rerun preprocess")
        return image_to_tensor(im)
