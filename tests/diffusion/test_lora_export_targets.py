"""A LoRA on more than the attention (proj_in/proj_out convs, feed-forward) exports and loads back whole.

diffusers' ``convert_state_dict_to_diffusers`` renames only the attention keys to ``lora.down``/
``lora.up`` and leaves the others ``lora_A``/``lora_B``; ``load_lora_weights`` then silently drops
the renamed half. These tests pin that every trained module comes back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from landmark_lora.diffusion.lora_export import PEFT_WEIGHTS, add_lora_adapter, export_adapter
from landmark_lora.diffusion.pipeline import load_pipeline

WIDE = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
TOL = 1e-4


def _wide_lora(base: Path):
    from peft import LoraConfig

    pipe = load_pipeline(base)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4.0, init_lora_weights="gaussian", target_modules=WIDE))
    add_lora_adapter(pipe.text_encoder, LoraConfig(r=4, lora_alpha=4.0, init_lora_weights="gaussian",
                                                   target_modules=TE_TARGETS))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # gaussian init leaves lora_B = 0: make every module matter
        for model in (pipe.unet, pipe.text_encoder):
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return pipe


def _lora_modules(model) -> set[str]:
    return {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_modules() if n.endswith(".lora_A")}


def test_wide_lora_loads_back_every_module_and_the_same_image(tiny_base, tmp_path, generate):
    trained = _wide_lora(tiny_base)
    export_adapter(tmp_path, trained.unet, text_encoder=trained.text_encoder, metadata={"base_model": "tiny"})
    keys = load_file(str(tmp_path / PEFT_WEIGHTS)).keys()
    # one key format in the file, or diffusers reads half of it
    assert not [k for k in keys if ".lora.down." in k or ".lora.up." in k], "mixed LoRA key formats"

    loaded = load_pipeline(tiny_base)
    loaded.load_lora_weights(str(tmp_path))
    want = _lora_modules(trained.unet)
    assert {m for m in want if m.endswith("attn2.to_k")} and {m for m in want if m.endswith("ff.net.2")}
    assert _lora_modules(loaded.unet) >= want
    for name, module in trained.unet.named_modules():  # the weights themselves, not just the layers
        if name.endswith(".lora_B"):
            got = dict(loaded.unet.named_modules())[name]
            assert torch.allclose(module["default"].weight, next(iter(got.values())).weight), name
    diff = np.abs(generate(trained) - generate(loaded)).max()
    assert diff < TOL, f"reloaded adapter gives a different image (max diff {diff})"
