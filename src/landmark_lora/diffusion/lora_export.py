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

Key names (peft, kohya) come from landmark_lora.diffusion.lora_keys, with the kohya format notes.
Writes are atomic per file: everything goes to a temp folder beside ``out_dir`` first, then each
file is moved in with ``os.replace``, the JSON last.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from landmark_lora import fsutil
from landmark_lora.diffusion.lora_keys import kohya_state_dict, lora_config, lora_state, te_key_prefix, unwrap_model

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


def _adapter_metadata(unet: Any, unet_cfg: Any, te_cfg: Any, user: dict[str, str]) -> dict[str, str]:
    """Both files' metadata: the adapter's own facts, kohya's ``ss_*`` and SAI's ``modelspec.*`` keys,
    then the caller's ``user`` keys. ValueError when the caller's rank/alpha contradicts the adapter."""
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
    return {**common, **{k: v for k, v in user.items() if k not in ("rank", "alpha")}}


def _write_peft(tmp: Path, unet: Any, text_encoder: Any, unet_cfg: Any, te_cfg: Any, adapter_name: str,
                meta: dict[str, str]) -> dict[str, str]:
    """The diffusers/peft file in ``tmp``, with ``meta`` added. Returns diffusers' own metadata."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin  # == StableDiffusionPipeline.save_lora_weights
    from safetensors import safe_open
    from safetensors.torch import load_file

    # save_lora_weights as in diffusers' train_text_to_image_lora.py, plus the LoraConfig as
    # lora_adapter_metadata (keeps alpha, rslora, rank/alpha patterns). Keys stay peft (lora_A/lora_B):
    # convert_state_dict_to_diffusers renames only the attention keys, and load_lora_weights then
    # drops them from a file that also has proj_in/ff/conv LoRA.
    StableDiffusionLoraLoaderMixin.save_lora_weights(
        save_directory=str(tmp),
        unet_lora_layers=lora_state(unet, adapter_name),
        text_encoder_lora_layers=(lora_state(text_encoder, adapter_name, te_key_prefix(text_encoder))
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
    return diffusers_meta


def _write_summary(tmp: Path, meta: dict[str, str], kohya_tensors: int, diffusers_meta: dict[str, str]) -> None:
    """adapter_metadata.json in ``tmp``, for humans: the metadata, each file's size and sha256."""
    files = {}
    for label, name in (("peft", PEFT_WEIGHTS), ("kohya", KOHYA_WEIGHTS)):
        data = (tmp / name).read_bytes()
        files[label] = {"file": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (tmp / METADATA_JSON).write_text(json.dumps(
        {"metadata": meta, "files": files, "kohya_tensors": kohya_tensors,
         "peft_lora_config": json.loads(diffusers_meta.get("lora_adapter_metadata", "{}"))},
        indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _move_in(tmp: Path, out_dir: Path) -> None:
    """Each file from ``tmp`` into ``out_dir`` with the umask's usual mode, synced, the JSON last."""
    umask = os.umask(0)
    os.umask(umask)
    fsutil.fsync_tree(tmp)  # on disk before it is renamed into view
    for name in (KOHYA_WEIGHTS, PEFT_WEIGHTS, METADATA_JSON):  # JSON last: it describes the others
        os.chmod(tmp / name, 0o666 & ~umask)
        os.replace(tmp / name, out_dir / name)
    fsutil.fsync_dir(out_dir)


def export_adapter(out_dir: Path, unet: Any, text_encoder: Any = None, metadata: Mapping[str, Any] | None = None,
                   adapter_name: str = "default") -> dict[str, Path]:
    """Write the peft/diffusers file, the kohya file and adapter_metadata.json into ``out_dir``.

    ``metadata``: caller facts (base_model, rank, alpha, trigger_words, data_version, ...), stored
    as strings; rank/alpha/targets default to the adapter's own. Returns
    ``{"peft": path, "kohya": path, "metadata": path}``.
    """
    out_dir = Path(out_dir)
    unet = unwrap_model(unet)
    text_encoder = unwrap_model(text_encoder) if text_encoder is not None else None
    user = _stringify(metadata or {})
    clash = RESERVED_KEYS & set(user)
    if clash:
        raise ValueError(f"metadata keys {sorted(clash)} are reserved for the file format")
    unet_cfg = lora_config(unet, adapter_name)
    te_cfg = lora_config(text_encoder, adapter_name) if text_encoder is not None else None
    meta = _adapter_metadata(unet, unet_cfg, te_cfg, user)

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        diffusers_meta = _write_peft(tmp, unet, text_encoder, unet_cfg, te_cfg, adapter_name, meta)
        # kohya: no lora_adapter_metadata here, diffusers refuses a file with both it and .alpha keys
        kohya = kohya_state_dict(unet, text_encoder, adapter_name)
        _write_safetensors(kohya, tmp / KOHYA_WEIGHTS, {
            **meta, FORMAT_KEY: "kohya", "modelspec.hash_sha256": _tensor_data_sha256(kohya)})
        _write_summary(tmp, meta, len(kohya), diffusers_meta)
        _move_in(tmp, out_dir)
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
