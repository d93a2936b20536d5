"""The latent cache on disk, read side: where it lives, how captions are keyed, and loading a split.

    from landmark_lora.diffusion.latents import caption_key, load_latents
    # refuses latents another base made
    entries, tensors = load_latents(Layout.of(params).latents, "val", base_fingerprint(base))
    text = tensors[caption_key(entries[0]["text"])]

The cache_latents stage writes it (``landmark-lora cache-latents``); train and evaluate read it:
- ``<dir>/{train,val}.safetensors``: ``<i>.mean`` / ``<i>.std`` (the scaled VAE posterior of image i)
  and ``text.<sha16>`` (CLIP hidden states of each distinct caption; ``text.empty`` for dropout);
- ``<dir>/index.json`` (``Layout.latents_index``): the base model, its fingerprint, the VAE scaling
  factor and per split the metadata.jsonl entries plus ``index`` and ``text_key``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

INDEX_NAME = "index.json"  # artifacts.Layout.latents_index names the same file for the stages


def split_file(out_dir: Path, split: str) -> Path:
    """``<dir>/<split>.safetensors``: one split's latents and caption embeddings."""
    return Path(out_dir) / f"{split}.safetensors"


def caption_key(text: str) -> str:
    return "text.empty" if not text else "text." + hashlib.sha256(text.encode()).hexdigest()[:16]


def load_latents(out_dir: Path, split: str, expect_fingerprint: str | None = None) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Entries and tensors of one split; checks they were made from the expected base."""
    index_path = Path(out_dir) / INDEX_NAME
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path}: no cached latents; run `dvc repro cache_latents`")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    if expect_fingerprint and index["base_fingerprint"] != expect_fingerprint:
        raise ValueError(
            f"{index_path}: latents were encoded with base '{index['base_model']}' "
            f"({index['base_fingerprint']}), not the current base ({expect_fingerprint}); "
            "rerun `dvc repro cache_latents`"
        )
    tensors = load_file(str(split_file(out_dir, split)))
    return index["splits"][split], tensors
