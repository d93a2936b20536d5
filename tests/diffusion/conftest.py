"""Shared fixtures for the model tests: one tiny base per session, images as float arrays.

    def test_x(tiny_base, generate):
        pipe = load_pipeline(tiny_base)
        img = generate(pipe)               # (64, 64, 3) float32 in [0, 1], seed 0, 3 steps
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CAPTION = "lmksnap snapshot photo, upper-body shot, in front of Gyeongbokgung Palace"


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """models/base-tiny, built once per test session in a temp folder."""
    from landmark_lora.diffusion.base import ensure_base_model

    return ensure_base_model("tiny", tmp_path_factory.mktemp("models"))


def _generate(pipe, prompt: str = CAPTION, seed: int = 0, steps: int = 3, height: int = 64,
              width: int = 64) -> np.ndarray:
    import torch

    out = pipe(prompt, num_inference_steps=steps, height=height, width=width, guidance_scale=5.0,
               generator=torch.Generator().manual_seed(seed), output_type="np")
    return out.images[0]


@pytest.fixture(scope="session")
def generate():
    """``generate(pipe, prompt=CAPTION, seed=0, steps=3, height=64, width=64) -> ndarray``."""
    return _generate
