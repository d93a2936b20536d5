"""LoRA exports: the diffusers/peft file and the kohya file load back and give the same images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from landmark_lora.diffusion.lora_export import (
    KOHYA_WEIGHTS,
    METADATA_JSON,
    PEFT_WEIGHTS,
    add_lora_adapter,
    export_adapter,
    read_adapter_metadata,
)
from landmark_lora.diffusion.pipeline import load_pipeline

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
META = {"base_model": "tiny", "rank": "4", "alpha": "8.0", "trigger_words": "lmksnap",
        "data_version": "abc123", "steps": "30"}
KOHYA_KEY = re.compile(r"^lora_(unet|te)_[a-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$")
TOL = 1e-4  # images in [0, 1]; the formats differ only in float rounding of the same product


def _trained(base: Path, text_encoder: bool = True, seed: int = 1, **lora_kwargs):
    """A pipeline with LoRA on the UNet (and text encoder) whose lora_B is random: gaussian init
    alone leaves B = 0, i.e. no change to the output."""
    from peft import LoraConfig

    kwargs = {"r": 4, "lora_alpha": 8.0, **lora_kwargs}
    pipe = load_pipeline(base)
    pipe.unet.add_adapter(LoraConfig(init_lora_weights="gaussian", target_modules=UNET_TARGETS, **kwargs))
    models = [pipe.unet]
    if text_encoder:
        te_kwargs = {k: v for k, v in kwargs.items() if k in ("r", "lora_alpha", "use_rslora")}
        add_lora_adapter(pipe.text_encoder,
                         LoraConfig(init_lora_weights="gaussian", target_modules=TE_TARGETS, **te_kwargs))
        models.append(pipe.text_encoder)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in models:
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return pipe


def _text_embedding(pipe) -> torch.Tensor:
    ids = pipe.tokenizer(["lmksnap photo"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


@pytest.fixture(scope="module")
def export(tiny_base, tmp_path_factory, generate):
    """UNet + text-encoder LoRA (r=4, alpha=8) exported once, with reference images/embeddings."""
    pipe = _trained(tiny_base)
    out = tmp_path_factory.mktemp("adapter")
    files = export_adapter(out, pipe.unet, text_encoder=pipe.text_encoder, metadata=META)
    base = load_pipeline(tiny_base)
    return {"out": out, "files": files, "trained_img": generate(pipe), "base_img": generate(base),
            "trained_emb": _text_embedding(pipe), "base_emb": _text_embedding(base)}


def test_export_writes_the_three_files(export):
    files = export["files"]
    assert files == {"peft": export["out"] / PEFT_WEIGHTS, "kohya": export["out"] / KOHYA_WEIGHTS,
                     "metadata": export["out"] / METADATA_JSON}
    assert all(p.is_file() for p in files.values())
    out = export["out"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp-")], "temp folders left"


def test_peft_export_loads_and_changes_the_image(export, tiny_base, generate):
    pipe = load_pipeline(tiny_base)
    pipe.load_lora_weights(str(export["out"]))  # picks pytorch_lora_weights.safetensors
    img = generate(pipe)
    assert np.abs(img - export["base_img"]).max() > 0.05  # the adapter matters
    assert np.abs(img - export["trained_img"]).max() < TOL  # and is the trained one
    assert torch.allclose(_text_embedding(pipe), export["trained_emb"], atol=1e-5)  # text-encoder LoRA too
    assert not torch.allclose(export["trained_emb"], export["base_emb"], atol=1e-3)


def test_kohya_export_loads_on_a_fresh_pipeline_and_matches(export, tiny_base, generate):
    peft_pipe = load_pipeline(tiny_base)
    peft_pipe.load_lora_weights(str(export["out"]))
    kohya_pipe = load_pipeline(tiny_base)
    kohya_pipe.load_lora_weights(str(export["files"]["kohya"]))
    img = generate(kohya_pipe)
    assert np.abs(img - generate(peft_pipe)).max() < TOL
    assert np.abs(img - export["trained_img"]).max() < TOL
    assert torch.allclose(_text_embedding(kohya_pipe), export["trained_emb"], atol=1e-5)


def test_kohya_keys_and_alphas(export, tiny_base):
    tensors = load_file(export["files"]["kohya"])
    assert all(KOHYA_KEY.match(k) for k in tensors), [k for k in tensors if not KOHYA_KEY.match(k)][:3]
    modules = {k.split(".")[0] for k in tensors}
    assert len(tensors) == 3 * len(modules)
    unet = sorted(m for m in modules if m.startswith("lora_unet_"))
    te = sorted(m for m in modules if m.startswith("lora_te_"))
    # 2 down + 1 mid + 3 up transformer blocks, attn1 + attn2, 4 projections; 2 CLIP layers x 4
    assert len(unet) == 6 * 2 * 4 and len(te) == 2 * 4
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" in unet
    assert "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0" in unet
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj" in te  # SD 1.x spelling, not te1_
    for m in modules:
        alpha = tensors[f"{m}.alpha"]
        assert alpha.dtype == torch.float32 and alpha.ndim == 0 and alpha.item() == 8.0
        assert tensors[f"{m}.lora_down.weight"].shape[0] == 4 and tensors[f"{m}.lora_up.weight"].shape[1] == 4


def test_metadata_is_readable_from_both_files(export):
    peft_meta = read_adapter_metadata(export["files"]["peft"])
    kohya_meta = read_adapter_metadata(export["files"]["kohya"])
    assert read_adapter_metadata(export["out"]) == peft_meta  # a folder reads its peft file
    for meta in (peft_meta, kohya_meta):
        assert all(isinstance(v, str) for v in meta.values())
        assert meta["base_model"] == "tiny" and meta["trigger_words"] == "lmksnap"
        assert meta["data_version"] == "abc123" and meta["rank"] == "4" and meta["alpha"] == "8"
        assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "8"
        assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_network_module"] == "networks.lora"
        assert meta["ss_network_train_unet_only"] == "False" and meta["text_encoder_lora"] == "true"
        assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
        assert meta["modelspec.trigger_phrase"] == "lmksnap" and meta["modelspec.resolution"] == "64x64"
        assert meta["modelspec.hash_sha256"].startswith("0x") and meta["ss_steps"] == "30"
    assert peft_meta["landmark_lora.format"] == "diffusers-peft"
    assert kohya_meta["landmark_lora.format"] == "kohya"
    lora_cfg = json.loads(peft_meta["lora_adapter_metadata"])  # diffusers' own: keeps alpha != rank
    assert lora_cfg["unet.lora_alpha"] == 8.0 and lora_cfg["text_encoder.r"] == 4

    doc = json.loads(export["files"]["metadata"].read_text())
    assert doc["metadata"]["trigger_words"] == "lmksnap" and doc["kohya_tensors"] == 3 * (48 + 8)
    assert {f["file"] for f in doc["files"].values()} == {PEFT_WEIGHTS, KOHYA_WEIGHTS}


@pytest.mark.parametrize("lora_kwargs", [
    {"r": 4, "lora_alpha": 16.0},                               # alpha != rank
    {"r": 4, "lora_alpha": 8.0, "use_rslora": True},           # scale alpha / sqrt(r)
    {"r": 4, "lora_alpha": 4.0, "alpha_pattern": {"to_q": 16.0}, "rank_pattern": {"to_k": 2}},
], ids=["alpha16", "rslora", "patterns"])
def test_unet_only_exports_keep_the_scale(lora_kwargs, tiny_base, tmp_path, generate):
    pipe = _trained(tiny_base, text_encoder=False, seed=3, **lora_kwargs)
    expected = generate(pipe)
    files = export_adapter(tmp_path / "adapter", pipe.unet, metadata={"trigger_words": "lmksnap"})
    for source in (tmp_path / "adapter", files["kohya"]):
        fresh = load_pipeline(tiny_base)
        fresh.load_lora_weights(str(source))
        assert np.abs(generate(fresh) - expected).max() < TOL, source
    tensors = load_file(files["kohya"])
    assert not any(k.startswith("lora_te") for k in tensors)
    assert len({v.item() for k, v in tensors.items() if k.endswith(".alpha")}) == 1  # one alpha, ratios folded
    assert read_adapter_metadata(files["kohya"])["ss_network_train_unet_only"] == "True"


def test_export_replaces_files_in_place_and_keeps_others(tiny_base, tmp_path):
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "README.txt").write_text("keep me")
    first = export_adapter(out, _trained(tiny_base, text_encoder=False, seed=1).unet, metadata={"data_version": "v1"})
    export_adapter(out, _trained(tiny_base, text_encoder=False, seed=2).unet, metadata={"data_version": "v2"})
    assert (out / "README.txt").read_text() == "keep me"
    assert read_adapter_metadata(first["kohya"])["data_version"] == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temp folders left


def test_export_rejects_bad_input(tiny_base, tmp_path):
    pipe = _trained(tiny_base, text_encoder=False)
    with pytest.raises(ValueError, match="reserved"):
        export_adapter(tmp_path / "a", pipe.unet, metadata={"format": "mine"})
    with pytest.raises(ValueError, match="contradicts"):
        export_adapter(tmp_path / "a", pipe.unet, metadata={"rank": "16"})
    with pytest.raises(ValueError, match="no LoRA adapter"):
        export_adapter(tmp_path / "a", load_pipeline(tiny_base).unet)
    assert not (tmp_path / "a" / PEFT_WEIGHTS).exists()


def test_exports_are_byte_identical_with_source_date_epoch(tiny_base, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    unet = _trained(tiny_base, text_encoder=False, seed=5).unet
    a = export_adapter(tmp_path / "a", unet, metadata={"trigger_words": "lmksnap"})
    b = export_adapter(tmp_path / "b", unet, metadata={"trigger_words": "lmksnap"})
    for key in ("peft", "kohya", "metadata"):
        assert a[key].read_bytes() == b[key].read_bytes(), key
    assert read_adapter_metadata(a["kohya"])["modelspec.date"] == "2023-11-14T22:13:20+00:00"
