"""A CLIP-format BPE tokenizer trained on a caption corpus, so a whole caption fits in 77 tokens.

    from landmark_lora.toyworld.tokenizer import train_bpe, write_clip_tokenizer
    merges = train_bpe(["snapshot photo, in front of a park, upper-body shot", ...])
    tok = write_clip_tokenizer(Path("tok"), merges)      # a transformers CLIPTokenizer
    tok("snapshot photo, in front of a park").input_ids  # one id per word here

The files are CLIP's own (vocab.json + merges.txt, byte-level symbols, ``</w>`` word ends), so
CLIPTokenizer and StableDiffusionPipeline load them unchanged. Every byte has a symbol, so any
text tokenizes; words of the corpus come out whole, other words as pieces. Training is pure
Python and deterministic (ties broken by the pair's text), so the same corpus gives the same files.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import regex

from landmark_lora.diffusion.base import BOS, EOS, MAX_TOKENS

# CLIP's pre-tokenizer: words, single digits, runs of punctuation (after lowercasing).
_WORDS = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)


def _byte_symbols() -> dict[int, str]:
    try:
        from transformers.convert_slow_tokenizer import bytes_to_unicode
    except ImportError:  # pragma: no cover - older transformers layout
        from transformers.models.clip.tokenization_clip import bytes_to_unicode  # type: ignore
    return bytes_to_unicode()


def words_of(text: str) -> list[str]:
    """CLIP's words of ``text``: lowercased, whitespace-collapsed, split like CLIPTokenizer."""
    return _WORDS.findall(" ".join(text.split()).lower())


def train_bpe(corpus: Iterable[str], max_merges: int = 20000, min_count: int = 1) -> list[tuple[str, str]]:
    """BPE merges (in rank order) learned from ``corpus``, until every word is one symbol or
    ``max_merges`` is reached. Pairs seen fewer than ``min_count`` times are not merged."""
    enc = _byte_symbols()
    counts: Counter[tuple[str, ...]] = Counter()
    for text in corpus:
        for word in words_of(text):
            chars = [enc[b] for b in word.encode("utf-8")]
            counts[tuple(chars[:-1]) + (chars[-1] + "</w>",)] += 1
    words = dict(counts)
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, n in words.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                pairs[pair] += n
        if not pairs:
            break
        best, n = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))  # most frequent; ties by text
        if n < min_count:
            break
        merges.append(best)
        words = {_merge(symbols, best): n for symbols, n in words.items()}
    return merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def write_clip_tokenizer(folder: Path, merges: list[tuple[str, str]], max_length: int = MAX_TOKENS):
    """Write vocab.json + merges.txt (CLIP format) into ``folder`` and load them as a CLIPTokenizer."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_byte_symbols().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            tokens.append(a + b)
            seen.add(a + b)
    tokens += [BOS, EOS]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False),
                                       encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                       encoding="utf-8")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=max_length)
