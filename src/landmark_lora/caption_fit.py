"""Captions that fit: count each caption's tokens with the base's own tokenizer.

    from landmark_lora.caption_fit import CaptionFit, check_caption, load_base_tokenizer
    fit = CaptionFit(load_base_tokenizer(params.model))
    fit.check("gyeongbokgung/a.jpg", params.caption, landmark, shot, angle, pose, caption)  # raises if a label is cut
    fit.report()   # {"max_tokens": 75, "longest": 41, "checked": 150, "descriptions_cut": 0, ...}

A text encoder sees at most ``max_length`` tokens (77 for CLIP: BOS, 75 words' pieces, EOS); the
tokenizer silently drops the rest. The labelled fields (landmark, shot, angle, pose) are what the
LoRA must learn, so one of them falling past the limit is an error naming the photo and the field.
The free text after them (description, caption) may be cut; how many captions lose some of it
is counted and reported (reports/preprocess.json, ``captions``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landmark_lora.artifacts import Layout
from landmark_lora.catalogue import Landmark, render_caption
from landmark_lora.config import CaptionConfig, ModelConfig, Params

LABELLED = ("landmark", "shot", "angle", "pose")


class CaptionTooLongError(ValueError):
    """A labelled field of a caption would be truncated by the base's tokenizer."""


class FastTokenizer:
    """A base's ``tokenizer/tokenizer.json`` through the `tokenizers` library: the token counts of
    transformers' CLIPTokenizer (tests/test_caption_fit.py compares them), in milliseconds, where
    importing transformers takes seconds of the preprocess stage (docs/benchmarks.md)."""

    def __init__(self, folder: Path):
        import json

        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        try:
            config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        self.model_max_length: int | None = config.get("model_max_length")

    def __call__(self, text: str, add_special_tokens: bool = True, verbose: bool = True) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(input_ids=self._tok.encode(text, add_special_tokens=add_special_tokens).ids)


def load_base_tokenizer(cfg: ModelConfig) -> Any:
    """The tokenizer of ``model.base`` (the tiny base is built first if needed): FastTokenizer when the
    base ships a tokenizer.json (the toy-world base does), else transformers' CLIPTokenizer."""
    from landmark_lora.diffusion.base import ensure_base_model

    base = Path(ensure_base_model(cfg.base, Path(cfg.dir), cfg.revision))
    if (base / "tokenizer" / "tokenizer.json").is_file():
        tok: Any = FastTokenizer(base / "tokenizer")
    else:
        from transformers import CLIPTokenizer

        tok = CLIPTokenizer.from_pretrained(str(base), subfolder="tokenizer")
    limit = _text_positions(base)
    if limit and (tok.model_max_length is None or tok.model_max_length > limit):
        tok.model_max_length = limit  # a tokenizer saved without a limit: the text encoder's is the real one
    return tok


def _text_positions(base: Path) -> int | None:
    import json

    try:
        config = json.loads((base / "text_encoder" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None


_FIELD = re.compile(r"{(\w+)}")  # the template's {field} syntax (catalogue.render_caption)


def _parts_with_fields(cfg: CaptionConfig) -> list[tuple[int, set[str]]]:
    return [(i, set(_FIELD.findall(part))) for i, part in enumerate(cfg.template)]


@dataclass
class CaptionFit:
    """Checks captions against one tokenizer and counts what it cuts."""

    tokenizer: Any
    checked: int = 0
    longest: int = 0
    descriptions_cut: int = 0
    cut_examples: list[str] = field(default_factory=list)

    @property
    def max_tokens(self) -> int:
        """Tokens left for the text: the limit minus BOS and EOS."""
        return int(self.tokenizer.model_max_length) - 2

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids)

    def check(self, photo: str, cfg: CaptionConfig, landmark: Landmark, shot: str, angle: str, pose: str,
              caption: str = "") -> int:
        """Token count of the caption; raises CaptionTooLongError if a labelled field would be cut."""
        full = render_caption(cfg, landmark, shot, angle, pose, caption)
        n = self.count(full)
        self.checked += 1
        self.longest = max(self.longest, n)
        if n <= self.max_tokens:
            return n
        # Too long: find the first template part that ends past the limit; any labelled field in it
        # or after it is lost (parts are rendered in order, so a prefix of parts is a prefix of text).
        for i, _fields in _parts_with_fields(cfg):
            prefix = render_caption(cfg.model_copy(update={"template": cfg.template[: i + 1]}),
                                    landmark, shot, angle, pose, caption)
            if self.count(prefix) > self.max_tokens:
                lost = [f for j, fs in _parts_with_fields(cfg)[i:] for f in sorted(fs) if f in LABELLED
                        and render_caption(cfg.model_copy(update={"template": (cfg.template[j],)}),
                                           landmark, shot, angle, pose, caption)]
                if lost:
                    raise CaptionTooLongError(
                        f"{photo}: the caption's {lost[0]} field falls past the base's {self.max_tokens + 2}-token "
                        f"limit ({n} tokens: {full!r}), so the model would never see it. To fix: move "
                        f"{{{lost[0]}}} earlier in caption.template, shorten the photo's caption/description, "
                        "or use a base whose tokenizer fits the caption (model.base: toyworld)")
                break
        self.descriptions_cut += 1
        if len(self.cut_examples) < 5:
            self.cut_examples.append(photo)
        return n

    def report(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens + 2, "checked": self.checked, "longest_tokens": self.longest,
                "descriptions_cut": self.descriptions_cut, "cut_examples": self.cut_examples}


def check_captions(params: Params, catalogue: dict[str, Landmark], rows: list[dict]) -> dict[str, Any]:
    """Check every raw-table row's caption with ``model.base``'s tokenizer; the report for preprocess.json.

    Raises CaptionTooLongError naming the first photo whose labelled field would be cut.
    """
    fit = CaptionFit(load_base_tokenizer(params.model))
    raw = Layout.of(params).raw
    for row in rows:
        fit.check(str(raw / row["file"]), params.caption, catalogue[row["landmark"]], row["shot"], row["angle"],
                  row["pose"], row.get("caption") or "")
    return {**fit.report(), "base": params.model.base}
