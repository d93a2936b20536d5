"""Export a trained peft LoRA (UNet, optionally text encoder) in the two formats people load.

    from landmark_lora.diffusion.lora_export import export_adapter, read_adapter_metadata

    # unet (and text_encoder) carry an adapter from `model.add_adapter(LoraConfig(...))`, or, for a
    # transformers text encoder, from add_lora_adapter(text_encoder, LoraConfig(...)) (see there)
    files = export_adapter(Path("models/adapter"), unet, text_encoder=None,
                           metadata={"base_model": "tiny", "trigger_words": "lmksnap", "data_version": "ab12"})
    files["peft"]      # models/adapter/pytorch_lora_weights.safetensors   -> pipe.load_lora_weights("models/adapter")
    files["kohya"]     # models/adapter/landmark_lora_kohya.safetensors    -> A1111 / ComfyUI / kohya tools,
                       #   and pipe.load_lora_weights("models/adapter/landmark_lora_kohya.safetensors")
    files["metadata"]  # models/adapter/adapter_metadata.json              -> for humans
    read_adapter_metadata(files["kohya"])["ss_network_dim"]  # "4"

Both safetensors files carry the same metadata (all values strings): the caller's dict, the
adapter's rank/alpha/targets, a ``landmark_lora.format`` tag, kohya's ``ss_*`` keys and the
SAI ``modelspec.*`` keys, so UIs show the trigger words. The peft file also keeps diffusers'
``lora_adapter_metadata`` (the full LoraConfig): without it diffusers would load ``lora_alpha``
as ``r``, i.e. the wrong scale whenever alpha != rank.

Kohya format notes (diffusers' ``convert_state_dict_to_kohya`` does the key renaming):
* it writes every ``.alpha`` as the rank (``len(lora_down)``, an int64), i.e. scale 1; we replace
  them with float32 ``lora_alpha`` (x sqrt(r) for rsLoRA) so kohya's ``alpha / rank`` scale
  reproduces peft's. Mixed alphas are folded into ``lora_up`` so the file has one alpha:
  diffusers' kohya loader gets per-module alphas wrong for the SD 1.x UNet;
* it names text-encoder keys ``lora_te1_`` (the SDXL convention); SD 1.x tools expect
  ``lora_te_``, so we rename (diffusers' loader reads both);
* transformers 5's CLIPTextModel has no ``text_model`` level, so its module names would give
  ``lora_te_encoder_layers_...``, which A1111/ComfyUI do not match: both files get the canonical
  ``text_model.`` prefix back (diffusers + transformers 5 load either spelling).
Writes are atomic per file: everything goes to a temp folder beside ``out_dir`` first, then each
file is moved in with ``os.replace``, the JSON last.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from landmark_lora import fsutil

PEFT_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LORA_WEIGHT_NAME_SAFE: found by default
KOHYA_WEIGHTS = "landmark_lora_kohya.safetensors"
METADATA_JSON = "adapter_metadata.json"
FORMAT_KEY = "landmark_lora.format"
FORMAT_VERSION = "1"
# written by diffusers/safetensors or by us: a caller's metadata must not shadow them
RESERVED_KEYS = {"format", "lora_adapter_metadata", FORMAT_KEY}


def add_lora_adapter(model, config, adapter_name: str = "default") -> None:
    """``model.add_adapter(config)``, also for a transformers text encoder when transformers'
    own check refuses the installed peft (transformers 5.24 wants peft >= 0.22 in add_adapter,
    set_adapter, ... but not in load_adapter): then inject with peft directly, which is what
    add_adapter does after that check. Either way ``model.peft_config[adapter_name]`` is set and
    only the LoRA weights require grad."""
    try:
        model.add_adapter(config, adapter_name=adapter_name)
        return
    except ValueError as err:
        if "version of PEFT" not in str(err):
            raise
    from peft import inject_adapter_in_model

    inject_adapter_in_model(config, model, adapter_name)


def _unwrap(model):
    """The bare module under DDP/accelerate (``.module``) or torch.compile (``._orig_mod``)."""
    for attr in ("module", "_orig_mod"):
        while hasattr(model, attr) and not hasattr(model, "peft_config"):
            model = getattr(model, attr)
    return model


def _lora_config(model, adapter_name: str):
    cfg = getattr(model, "peft_config", {}).get(adapter_name)
    if cfg is None:
        raise ValueError(f"{type(model).__name__} has no LoRA adapter named {adapter_name!r} "
                         "(call model.add_adapter(LoraConfig(...)) first)")
    if getattr(cfg, "use_dora", False):
        raise ValueError("DoRA adapters are not exported: diffusers' SD loader drops dora_scale")
    return cfg


def _te_key_prefix(model) -> str:
    """"text_model." where the CLIP text encoder lacks it (transformers >= 5 flattened
    CLIPTextModel): files then use the canonical SD 1.x names every tool and transformers 4
    expect (``lora_te_text_model_encoder_layers_0_self_attn_q_proj``); diffusers with
    transformers 5 maps them back on load."""
    if not type(model).__name__.startswith("CLIPTextModel"):
        return ""
    names = [n for n, _ in model.named_modules() if n]
    return "" if any(n == "text_model" or n.startswith("text_model.") for n in names) else "text_model."


def _lora_state(model, adapter_name: str, key_prefix: str = "") -> dict[str, Any]:
    """peft keys (``...to_q.lora_A.weight``), detached, contiguous, on CPU."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    if not state:
        raise ValueError(f"adapter {adapter_name!r} of {type(model).__name__} has no LoRA weights")
    return {key_prefix + k: v.detach().cpu().contiguous() for k, v in state.items()}


def _module_alphas(model, adapter_name: str, use_rslora: bool, key_prefix: str = "") -> dict[str, float]:
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


def _config_dict(cfg) -> dict[str, Any]:
    """LoraConfig.to_dict(), JSON-safe (sets -> sorted lists, enums/others -> str)."""
    def clean(v):
        if isinstance(v, (set, frozenset)):
            return sorted(clean(x) for x in v)
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        return str(v)
    return clean(cfg.to_dict())


def _base_model_version(unet) -> tuple[str, str]:
    """(kohya ss_base_model_version, modelspec architecture) from the UNet config."""
    cfg = unet.config
    if getattr(cfg, "addition_embed_type", None) == "text_time":
        return "sdxl_base_v1-0", "stable-diffusion-xl-v1-base/lora"
    if getattr(cfg, "cross_attention_dim", 768) == 1024:  # SD 2.x (OpenCLIP-H)
        return "sd_v2", "stable-diffusion-v2-512/lora"
    return "sd_v1", "stable-diffusion-v1/lora"


def _tensor_data_sha256(tensors: Mapping[str, Any]) -> str:
    """modelspec.hash_sha256: sha256 of the tensor bytes (the file minus its JSON header). The
    data section does not depend on the metadata, so it is hashed before the metadata is set."""
    from safetensors.torch import save

    blob = save(dict(tensors))
    header = int.from_bytes(blob[:8], "little")
    return "0x" + hashlib.sha256(blob[8 + header:]).hexdigest()


def _created() -> str:
    """UTC now, or $SOURCE_DATE_EPOCH (the reproducible-builds convention) for byte-identical exports."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch and epoch.isdigit()
            else _dt.datetime.now(_dt.timezone.utc))
    return when.replace(microsecond=0).isoformat()


def _as_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _stringify(metadata: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in metadata.items():
        if value is None:
            continue
        out[str(key)] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return out


def kohya_state_dict(unet, text_encoder=None, adapter_name: str = "default") -> dict[str, Any]:
    """kohya/A1111/ComfyUI keys: ``lora_unet_<module>.lora_down.weight``, ``.lora_up.weight``,
    ``.alpha`` (float32 scalar); text encoder ``lora_te_<module>...``."""
    import torch
    from diffusers.utils import convert_state_dict_to_kohya

    parts = [("unet", "lora_unet_", unet)] + ([("text_encoder", "lora_te_", text_encoder)] if text_encoder else [])
    peft_sd: dict[str, Any] = {}
    alphas: dict[str, float] = {}
    for prefix, kohya_prefix, model in parts:
        cfg = _lora_config(model, adapter_name)
        key_prefix = _te_key_prefix(model)
        peft_sd.update({f"{prefix}.{k}": v for k, v in _lora_state(model, adapter_name, key_prefix).items()})
        rslora = bool(getattr(cfg, "use_rslora", False))
        for name, alpha in _module_alphas(model, adapter_name, rslora, key_prefix).items():
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


def _write_safetensors(tensors: Mapping[str, Any], path: Path, metadata: Mapping[str, str]) -> None:
    """safetensors with a sorted JSON header: safetensors keeps metadata in a Rust HashMap, so its
    own header order changes from run to run; sorted, the same weights give the same bytes."""
    from safetensors.torch import save

    blob = save(dict(tensors), metadata={"format": "pt", **metadata})
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the format pads the header with spaces to 8-byte alignment
    with open(path, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little"))
        fh.write(text)
        fh.write(blob[8 + size:])  # data offsets are relative to the data section: unchanged


def export_adapter(out_dir: Path, unet, text_encoder=None, metadata: Mapping[str, Any] | None = None,
                   adapter_name: str = "default") -> dict[str, Path]:
    """Write the peft/diffusers file, the kohya file and adapter_metadata.json into ``out_dir``.

    ``metadata``: caller facts (base_model, rank, alpha, trigger_words, data_version, ...), stored
    as strings; rank/alpha/targets default to the adapter's own. Returns
    ``{"peft": path, "kohya": path, "metadata": path}``.
    """
    from diffusers.loaders import StableDiffusionLoraLoaderMixin  # == StableDiffusionPipeline.save_lora_weights
    from safetensors import safe_open
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    unet = _unwrap(unet)
    text_encoder = _unwrap(text_encoder) if text_encoder is not None else None
    user = _stringify(metadata or {})
    clash = RESERVED_KEYS & set(user)
    if clash:
        raise ValueError(f"metadata keys {sorted(clash)} are reserved for the file format")

    unet_cfg = _lora_config(unet, adapter_name)
    te_cfg = _lora_config(text_encoder, adapter_name) if text_encoder is not None else None
    rank, alpha = int(unet_cfg.r), float(unet_cfg.lora_alpha)
    ss_version, architecture = _base_model_version(unet)
    trigger = user.get("trigger_words", "")
    vae_factor = 8  # every SD 1.x/2.x VAE, and the tiny one
    side = int(unet.config.sample_size) * vae_factor
    common = {
        "rank": str(rank),
        "alpha": f"{alpha:g}",
        "target_modules": json.dumps(sorted(unet_cfg.target_modules)),
        "text_encoder_lora": str(te_cfg is not None).lower(),
        **({"text_encoder_rank": str(te_cfg.r), "text_encoder_alpha": f"{float(te_cfg.lora_alpha):g}",
            "text_encoder_target_modules": json.dumps(sorted(te_cfg.target_modules))} if te_cfg else {}),
        "use_rslora": str(bool(getattr(unet_cfg, "use_rslora", False))).lower(),
        "landmark_lora.format_version": FORMAT_VERSION,
        "created": user.get("created") or _created(),
        # kohya sd-scripts keys (read by A1111's extra networks, ComfyUI, civitai, kohya tools)
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": f"{alpha:g}",
        "ss_base_model_version": ss_version,
        "ss_v2": str(ss_version.startswith("sd_v2")),
        "ss_sd_model_name": user.get("base_model", ""),
        "ss_network_train_unet_only": str(te_cfg is None),
        "ss_network_train_text_encoder_only": "False",
        "ss_training_comment": f"trigger words: {trigger}" if trigger else "",
        "ss_output_name": Path(KOHYA_WEIGHTS).stem,
        "ss_resolution": f"({side}, {side})",
        # SAI model spec
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": architecture,
        "modelspec.implementation": "diffusers",
        "modelspec.title": user.get("title", "landmark-lora"),
        "modelspec.description": "LoRA for snapshot photos of people at Korean landmarks",
        "modelspec.resolution": f"{side}x{side}",
        "modelspec.prediction_type": str(getattr(getattr(unet, "config", None), "prediction_type", None)
                                         or "epsilon"),
        **({"modelspec.trigger_phrase": trigger, "modelspec.usage_hint": f"Trigger words: {trigger}"}
           if trigger else {}),
    }
    common["modelspec.date"] = common["created"]
    if "steps" in user:
        common["ss_steps"] = user["steps"]
    for key in ("rank", "alpha"):  # the adapter is the truth; a caller's different number is a bug
        if key in user and _as_float(user[key]) != float(common[key]):
            raise ValueError(f"metadata {key}={user[key]!r} contradicts the adapter ({common[key]})")
    meta = {**common, **{k: v for k, v in user.items() if k not in ("rank", "alpha")}}

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        # 1. diffusers/peft: save_lora_weights as in diffusers' train_text_to_image_lora.py, plus the
        #    LoraConfig as lora_adapter_metadata (keeps alpha, rslora, rank/alpha patterns). Keys stay
        #    peft (lora_A/lora_B): convert_state_dict_to_diffusers renames only the attention keys, and
        #    load_lora_weights then drops them from a file that also has proj_in/ff/conv LoRA.
        StableDiffusionLoraLoaderMixin.save_lora_weights(
            save_directory=str(tmp),
            unet_lora_layers=_lora_state(unet, adapter_name),
            text_encoder_lora_layers=(_lora_state(text_encoder, adapter_name, _te_key_prefix(text_encoder))
                                      if text_encoder is not None else None),
            unet_lora_adapter_metadata=_config_dict(unet_cfg),
            text_encoder_lora_adapter_metadata=_config_dict(te_cfg) if te_cfg is not None else None,
            weight_name=PEFT_WEIGHTS,
            safe_serialization=True,
        )
        peft_tmp = tmp / PEFT_WEIGHTS
        # save_lora_weights has no hook for extra metadata: re-write the (small) file with ours added
        with safe_open(str(peft_tmp), framework="pt") as fh:
            diffusers_meta = dict(fh.metadata() or {})
        peft_tensors = load_file(str(peft_tmp))
        diffusers_meta.pop("format", None)
        _write_safetensors(peft_tensors, peft_tmp, {
            **meta, **diffusers_meta, FORMAT_KEY: "diffusers-peft",
            "modelspec.hash_sha256": _tensor_data_sha256(peft_tensors)})

        # 2. kohya: no lora_adapter_metadata here, diffusers refuses a file with both it and .alpha keys
        kohya = kohya_state_dict(unet, text_encoder, adapter_name)
        _write_safetensors(kohya, tmp / KOHYA_WEIGHTS, {
            **meta, FORMAT_KEY: "kohya", "modelspec.hash_sha256": _tensor_data_sha256(kohya)})

        # 3. for humans
        files = {}
        for label, name in (("peft", PEFT_WEIGHTS), ("kohya", KOHYA_WEIGHTS)):
            data = (tmp / name).read_bytes()
            files[label] = {"file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        (tmp / METADATA_JSON).write_text(json.dumps(
            {"metadata": meta, "files": files, "kohya_tensors": len(kohya),
             "peft_lora_config": json.loads(diffusers_meta.get("lora_adapter_metadata", "{}"))},
            indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")

        umask = os.umask(0)
        os.umask(umask)
        fsutil.fsync_tree(tmp)  # on disk before it is renamed into view
        for name in (KOHYA_WEIGHTS, PEFT_WEIGHTS, METADATA_JSON):  # JSON last: it describes the others
            os.chmod(tmp / name, 0o666 & ~umask)
            os.replace(tmp / name, out_dir / name)
        fsutil.fsync_dir(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"peft": out_dir / PEFT_WEIGHTS, "kohya": out_dir / KOHYA_WEIGHTS, "metadata": out_dir / METADATA_JSON}


def read_adapter_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (an adapter folder reads its peft file)."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / PEFT_WEIGHTS
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})
