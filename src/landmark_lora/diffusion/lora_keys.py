"""A peft LoRA's weights under the key names each adapter format uses (landmark_lora.diffusion.lora_export
writes the files).

    from landmark_lora.diffusion.lora_keys import kohya_state_dict, lora_config, lora_state, unwrap_model
    unet = unwrap_model(accelerator_wrapped_unet)           # the module under DDP / torch.compile
    cfg = lora_config(unet, "default")                       # its LoraConfig; ValueError without one
    lora_state(unet, "default")                              # peft keys: ...to_q.lora_A.weight
    kohya_state_dict(unet, text_encoder)                     # lora_unet_..._to_q.lora_down.weight, .alpha

Kohya format notes (diffusers' ``convert_state_dict_to_kohya`` does the key renaming):
* it writes every ``.alpha`` as the rank (``len(lora_down)``, an int64), i.e. scale 1; we replace
  them with float32 ``lora_alpha`` (x sqrt(r) for rsLoRA) so kohya's ``alpha / rank`` scale
  reproduces peft's. Mixed alphas are folded into ``lora_up`` so the file has one alpha:
  diffusers' kohya loader gets per-module alphas wrong for the SD 1.x UNet;
* it names text-encoder keys ``lora_te1_`` (the SDXL convention); SD 1.x tools expect
  ``lora_te_``, so we rename (diffusers' loader reads both);
* transformers 5's CLIPTextModel has no ``text_model`` level, so its module names would give
  ``lora_te_encoder_layers_...``, which A1111/ComfyUI do not match: both files get the canonical
  ``text_model.`` prefix back (``te_key_prefix``; diffusers + transformers 5 load either spelling).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any


def unwrap_model(model: Any) -> Any:
    """The bare module under DDP/accelerate (``.module``) or torch.compile (``._orig_mod``)."""
    for attr in ("module", "_orig_mod"):
        while hasattr(model, attr) and not hasattr(model, "peft_config"):
            model = getattr(model, attr)
    return model


def lora_config(model: Any, adapter_name: str) -> Any:
    """``model``'s LoraConfig for ``adapter_name``; ValueError (saying what to call) when it has none or it is DoRA."""
    cfg = getattr(model, "peft_config", {}).get(adapter_name)
    if cfg is None:
        raise ValueError(f"{type(model).__name__} has no LoRA adapter named {adapter_name!r} "
                         "(call model.add_adapter(LoraConfig(...)) first)")
    if getattr(cfg, "use_dora", False):
        raise ValueError("DoRA adapters are not exported: diffusers' SD loader drops dora_scale")
    return cfg


def te_key_prefix(model: Any) -> str:
    """"text_model." where the CLIP text encoder lacks it (transformers >= 5 flattened
    CLIPTextModel): files then use the canonical SD 1.x names every tool and transformers 4
    expect (``lora_te_text_model_encoder_layers_0_self_attn_q_proj``); diffusers with
    transformers 5 maps them back on load."""
    if not type(model).__name__.startswith("CLIPTextModel"):
        return ""
    names = [n for n, _ in model.named_modules() if n]
    return "" if any(n == "text_model" or n.startswith("text_model.") for n in names) else "text_model."


def lora_state(model: Any, adapter_name: str, key_prefix: str = "") -> dict[str, Any]:
    """peft keys (``...to_q.lora_A.weight``), detached, contiguous, on CPU."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    if not state:
        raise ValueError(f"adapter {adapter_name!r} of {type(model).__name__} has no LoRA weights")
    return {key_prefix + k: v.detach().cpu().contiguous() for k, v in state.items()}


def module_alphas(model: Any, adapter_name: str, use_rslora: bool, key_prefix: str = "") -> dict[str, float]:
    """Per LoRA module (dotted name): the kohya alpha that gives peft's scale at kohya's rank.

    kohya scales by alpha / r; peft by lora_alpha / r, or lora_alpha / sqrt(r) for rsLoRA.
    Read per module, so ``rank_pattern`` / ``alpha_pattern`` come out right too.
    """
    alphas = {}
    for name, module in model.named_modules():
        r = getattr(module, "r", None)
        lora_alpha = getattr(module, "lora_alpha", None)
        if isinstance(r, dict) and isinstance(lora_alpha, dict) and adapter_name in r:
            rank, alpha = r[adapter_name], float(lora_alpha[adapter_name])
            alphas[key_prefix + name] = alpha * math.sqrt(rank) if use_rslora else alpha
    return alphas


def kohya_state_dict(unet: Any, text_encoder: Any = None, adapter_name: str = "default") -> dict[str, Any]:
    """kohya/A1111/ComfyUI keys: ``lora_unet_<module>.lora_down.weight``, ``.lora_up.weight``,
    ``.alpha`` (float32 scalar); text encoder ``lora_te_<module>...``."""
    import torch
    from diffusers.utils import convert_state_dict_to_kohya

    parts = [("unet", "lora_unet_", unet)] + ([("text_encoder", "lora_te_", text_encoder)] if text_encoder else [])
    peft_sd: dict[str, Any] = {}
    alphas: dict[str, float] = {}
    for prefix, kohya_prefix, model in parts:
        cfg = lora_config(model, adapter_name)
        key_prefix = te_key_prefix(model)
        peft_sd.update({f"{prefix}.{k}": v for k, v in lora_state(model, adapter_name, key_prefix).items()})
        rslora = bool(getattr(cfg, "use_rslora", False))
        for name, alpha in module_alphas(model, adapter_name, rslora, key_prefix).items():
            alphas[kohya_prefix + name.replace(".", "_")] = alpha

    converted = convert_state_dict_to_kohya(peft_sd)
    # One alpha for all modules, the most common one; a module that differs (alpha_pattern,
    # rank_pattern with rsLoRA) gets the ratio folded into its lora_up. Exact (the delta is
    # up @ down * alpha / rank either way), and needed: diffusers' kohya loader builds its
    # per-module alpha_pattern from names that never match an SD 1.x UNet module, so a file with
    # mixed alphas loads with the wrong scale there (A1111/ComfyUI would be fine).
    common_alpha = Counter(alphas.values()).most_common(1)[0][0] if alphas else 1.0
    out: dict[str, Any] = {}
    for key, value in converted.items():
        if key.startswith("lora_te1_"):  # diffusers uses SDXL's te1 for any text_encoder; SD 1.x is te
            key = "lora_te_" + key[len("lora_te1_"):]
        module, _, kind = key.partition(".")
        if module not in alphas:
            raise RuntimeError(f"kohya key {key} matches no LoRA module: diffusers' naming changed?")
        if kind == "alpha":
            value = torch.tensor(common_alpha, dtype=torch.float32)
        elif kind.startswith("lora_up") and alphas[module] != common_alpha:
            value = value * (alphas[module] / common_alpha)
        out[key] = value.contiguous()
    missing = sorted(m for m in alphas if f"{m}.alpha" not in out)
    if missing:
        raise RuntimeError(f"kohya conversion lost {len(missing)} LoRA module(s), e.g. {missing[0]}")
    return out
