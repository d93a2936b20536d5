"""The toy-world base's sample sheet for the README: what the base draws from generic prompts.

    python -m tools.base_samples [--base toyworld] [--out docs/img/toyworld_base_samples.png]

One row per toy-world place, one column per shot type (`snapshot photo, in front of <place>, <shot>`),
then one row asking a park's upper-body shot at each camera angle (eye-level, low, high: whether the
base follows the angle words; a base built with ``angle_caption_rate`` 0 does not). 20 DPM-Solver steps,
guidance 5, seed 0 + cell index; each cell scaled 2x (nearest) so the 56x72 images read on a page.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image


def sample_sheet(base: str, steps: int = 20, guidance: float = 5.0, scale: int = 2) -> Image.Image:
    import torch

    from landmark_lora.catalogue import ANGLES, SHOTS
    from landmark_lora.config import CaptionConfig
    from landmark_lora.diffusion.base import ensure_base_model
    from landmark_lora.diffusion.pipeline import load_pipeline
    from landmark_lora.toyworld.world import place_phrases

    words = CaptionConfig()
    pipe = load_pipeline(ensure_base_model(base))
    rows = [[f"snapshot photo, in front of {p}, {words.shot_words[s]}" for s in SHOTS] for p in place_phrases()]
    rows.append([f"snapshot photo, in front of a park, upper-body shot, {words.angle_words[a]}" for a in ANGLES])
    w, h = 56, 72
    sheet = Image.new("RGB", (len(SHOTS) * w * scale, len(rows) * h * scale), "white")
    i = 0
    for r, prompts in enumerate(rows):
        for c, prompt in enumerate(prompts):
            img = pipe(prompt, width=w, height=h, num_inference_steps=steps, guidance_scale=guidance,
                       generator=torch.Generator().manual_seed(i)).images[0]
            sheet.paste(img.resize((w * scale, h * scale), Image.Resampling.NEAREST), (c * w * scale, r * h * scale))
            i += 1
    return sheet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="toyworld", help="model.base value (default: the shipped toy-world base)")
    ap.add_argument("--out", type=Path, default=Path("docs/img/toyworld_base_samples.png"))
    args = ap.parse_args(argv)
    sample_sheet(args.base).save(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
