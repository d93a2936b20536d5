"""Pivotal tuning: a trained token embedding per landmark name, beside the LoRA (``lora.train_token_embeddings``).

    from landmark_lora.diffusion import token_embeddings as te
    tokens = te.landmark_tokens(captions, catalogue_names)          # the names the captions use
    ids = te.add_tokens(tokenizer, text_encoder, tokens)            # one new entry each, trainable
    te.save(Path("models/adapter/token_embeddings.safetensors"), text_encoder, tokens, ids)
    te.apply_file(pipe.tokenizer, pipe.text_encoder, path)          # what diffusion.pipeline.load_adapter does
    te.embedding_ratio(path, base)                                  # promote's blow-up gate

Each landmark name (``Gyeongbokgung Palace``) becomes ONE new tokenizer entry, so the captions
stay as they are: the tokenizer matches the whole name (case-insensitively on CLIP's lowercasing
tokenizers) before it splits words. Its embedding starts at the mean of the pieces the name was
split into and is the only row of the embedding table that trains: a gradient hook zeroes the
others, and the group has no weight decay, so AdamW leaves them exactly as they were. The
generic words (``palace``, ``beach``) keep the meaning the base learnt.

The file holds one fp32 vector per token, keyed by the token string (the name).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import torch

from landmark_lora import fsutil

FORMAT = "landmark-lora token embeddings"


def landmark_tokens(captions: Iterable[str], names: Iterable[str]) -> list[str]:
    """The names (in the order given) that occur in at least one caption, case-insensitively."""
    text = "\n".join(c.lower() for c in captions)
    return [n for n in dict.fromkeys(names) if n.strip() and n.lower() in text]


def added_tokens(tokenizer) -> list[str]:
    """Non-special entries added to a tokenizer (the trained names once an adapter is loaded)."""
    special = set(tokenizer.all_special_tokens)
    return [t for t in tokenizer.get_added_vocab() if t not in special]


def add_tokens(tokenizer, text_encoder, tokens: list[str], init: dict[str, torch.Tensor] | None = None) -> list[int]:
    """Each token as one vocabulary entry with one embedding row; returns their ids.

    A new row starts at ``init[token]`` when given, else at the mean embedding of the pieces the
    tokenizer split the token into before. A token already in the vocabulary keeps its id."""
    emb = text_encoder.get_input_embeddings()
    start: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for t in tokens:
            pieces = tokenizer(t, add_special_tokens=False).input_ids
            start[t] = emb.weight[pieces].float().mean(0) if pieces else emb.weight.float().mean(0)
    tokenizer.add_tokens(tokens)
    text_encoder.resize_token_embeddings(max(len(tokenizer), emb.num_embeddings), mean_resizing=False)
    weight = text_encoder.get_input_embeddings().weight
    ids = [int(i) for i in tokenizer.convert_tokens_to_ids(tokens)]
    with torch.no_grad():
        for t, i in zip(tokens, ids, strict=True):
            row = (init or {}).get(t, start[t])
            if row.shape != weight[i].shape:
                raise ValueError(f"token embedding for {t!r} has {tuple(row.shape)} values; this text "
                                 f"encoder's embeddings have {tuple(weight[i].shape)}: trained on another base")
            weight[i] = row.to(weight.device, weight.dtype)
    return ids


def train_rows(text_encoder, ids: list[int]) -> torch.nn.Parameter:
    """Make the embedding table trainable, with gradients for ``ids``' rows only; returns the table."""
    weight = text_encoder.get_input_embeddings().weight
    weight.data = weight.data.float()
    weight.requires_grad_(True)
    mask = torch.zeros(weight.shape[0], 1, device=weight.device)
    mask[ids] = 1.0
    weight.register_hook(lambda grad: grad * mask.to(grad.dtype))
    return weight


def rows(text_encoder, tokens: list[str], ids: list[int]) -> dict[str, torch.Tensor]:
    """{token: its current embedding}, fp32 on the CPU."""
    weight = text_encoder.get_input_embeddings().weight
    return {t: weight[i].detach().float().cpu().clone().contiguous() for t, i in zip(tokens, ids, strict=True)}


def set_rows(text_encoder, ids: list[int], vectors: dict[str, torch.Tensor], tokens: list[str]) -> None:
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for t, i in zip(tokens, ids, strict=True):
            weight[i] = vectors[t].to(weight.device, weight.dtype)


def save(path: Path, text_encoder, tokens: list[str], ids: list[int], metadata: dict[str, str] | None = None) -> None:
    """Write the tokens' embeddings to ``path`` (atomically); with no tokens, remove a stale file."""
    from safetensors.torch import save

    path = Path(path)
    if not tokens:
        path.unlink(missing_ok=True)
        return
    meta = {"format": FORMAT, **(metadata or {})}
    fsutil.write_bytes_atomic(path, save(rows(text_encoder, tokens, ids), metadata=meta))


def load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    vectors = load_file(str(path))
    if not vectors or any(v.dim() != 1 for v in vectors.values()):
        raise ValueError(f"{path}: not a token-embeddings file (expected one 1-D vector per token)")
    return vectors


def apply_file(tokenizer, text_encoder, path: Path) -> list[str]:
    """Add the file's tokens to the tokenizer and text encoder with their trained embeddings."""
    vectors = load(path)
    tokens = list(vectors)
    try:
        add_tokens(tokenizer, text_encoder, tokens, init=vectors)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return tokens


def base_mean_norm(base: Path) -> float:
    """Mean L2 norm of the base text encoder's token embeddings (from its safetensors files)."""
    from safetensors import safe_open

    for f in sorted((Path(base) / "text_encoder").glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.endswith("token_embedding.weight"):
                    return float(fh.get_tensor(key).float().norm(dim=1).mean())
    raise FileNotFoundError(f"{base}/text_encoder: no token_embedding.weight in its safetensors files")


def embedding_ratio(path: Path, base: Path) -> tuple[float, str]:
    """(largest trained embedding norm / the base's mean norm, that token); inf when not finite."""
    vectors = load(path)
    mean = base_mean_norm(base)
    worst, name = 0.0, ""
    for token, vec in vectors.items():
        norm = float(vec.float().norm())
        ratio = norm / mean if math.isfinite(norm) else math.inf
        if ratio > worst or not name:
            worst, name = ratio, token
    return worst, name
