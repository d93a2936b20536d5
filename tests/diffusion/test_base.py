"""The embedded tiny base model and base-model resolution (all offline)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from landmark_lora.diffusion import base as base_mod
from landmark_lora.diffusion.base import (
    BaseModelError,
    build_bpe_tokenizer,
    build_tiny_pipeline,
    ensure_base_model,
)
from landmark_lora.diffusion.pipeline import load_pipeline

CAPTION = "lmksnap snapshot photo, upper-body shot, in front of Gyeongbokgung Palace"
SRC = Path(__file__).resolve().parents[2] / "src"


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_tiny_build_is_deterministic_and_rebuild_is_byte_identical(tmp_path, tiny_base):
    a, b = build_tiny_pipeline(seed=0), build_tiny_pipeline(seed=0)
    for name in ("unet", "vae", "text_encoder"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    other = build_tiny_pipeline(seed=1)
    assert not torch.equal(other.unet.conv_in.weight, a.unet.conv_in.weight)

    rebuilt = ensure_base_model("tiny", tmp_path / "models")
    assert _files(rebuilt) == _files(tiny_base)


def test_tiny_saves_in_diffusers_layout_reloads_and_generates(tiny_base, generate):
    from diffusers import StableDiffusionPipeline

    assert tiny_base.name == "base-tiny"
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_base / sub).is_dir(), sub
    index = json.loads((tiny_base / "model_index.json").read_text())
    assert index["safety_checker"] == [None, None] and index["requires_safety_checker"] is False
    assert json.loads((tiny_base / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "DDPMScheduler"
    assert not [p for p in tiny_base.parent.iterdir() if p.name.startswith(".")], "temp folders left behind"

    pipe = StableDiffusionPipeline.from_pretrained(tiny_base)  # plain diffusers, no extra arguments
    assert pipe.safety_checker is None and pipe.vae_scale_factor == 8
    pipe.set_progress_bar_config(disable=True)
    img = generate(pipe, steps=2)  # the saved DDPM scheduler also runs
    assert img.shape == (64, 64, 3)

    fast = load_pipeline(tiny_base)
    assert type(fast.scheduler).__name__ == "DPMSolverMultistepScheduler"
    a, b = generate(fast), generate(fast)
    assert a.shape == (64, 64, 3) and (a == b).all()  # same seed, same image
    assert a.std() > 0.01  # not a blank image
    wide = generate(fast, height=48, width=80, steps=2)
    assert wide.shape == (48, 80, 3)


def test_ensure_tiny_reuses_existing_build(tiny_base):
    before = (tiny_base / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert ensure_base_model("tiny", tiny_base.parent) == tiny_base
    assert (tiny_base / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == before


def test_a_crash_while_building_leaves_no_half_model(tmp_path, monkeypatch):
    def broken(target, seed=0):
        (Path(target) / "unet").mkdir(parents=True)
        (Path(target) / "model_index.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(base_mod, "save_tiny_pipeline", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_base_model("tiny", tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (80, 48)])
def test_vae_downsamples_by_8_and_roundtrips_bucket_sizes(tiny_base, size):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    vae = AutoencoderKL.from_pretrained(tiny_base, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(tiny_base, subfolder="unet")
    h, w = size
    pixels = torch.rand(2, 3, h, w) * 2 - 1
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.sample(torch.Generator().manual_seed(0))
        assert latents.shape == (2, 4, h // 8, w // 8)
        assert vae.decode(latents).sample.shape == (2, 3, h, w)
        noise_pred = unet(latents * vae.config.scaling_factor, 10, encoder_hidden_states=torch.randn(2, 77, 32)).sample
    assert noise_pred.shape == latents.shape


def test_vae_latents_are_scaled_to_unit_std(tiny_base):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_base, subfolder="vae")
    with torch.no_grad():
        z = vae.encode(base_mod._calibration_images(seed=7)).latent_dist.mean * vae.config.scaling_factor
    assert 0.5 < z.std().item() < 2.0


def test_bpe_tokenizer_has_whole_words_no_unknowns_and_truncates_to_77(tmp_path, tiny_base):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tiny_base, subfolder="tokenizer")
    assert tok.model_max_length == 77 and len(tok) > 514  # 512 byte symbols + merges + BOS/EOS
    ids = tok(CAPTION).input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    body = ids[1:-1]
    assert tok.unk_token_id not in body
    assert tok.convert_ids_to_tokens(body[:3]) == ["lmksnap</w>", "snapshot</w>", "photo</w>"]  # whole words
    assert "gyeongbokgung</w>" in tok.convert_ids_to_tokens(body)

    korean = tok("경복궁 앞에서 찍은 사진 🙂").input_ids  # any UTF-8 byte has a token
    assert tok.unk_token_id not in korean[1:-1] and len(korean) > 10

    batch = tok([CAPTION * 5, "short"], padding="max_length", max_length=tok.model_max_length,
                truncation=True, return_tensors="pt").input_ids
    assert batch.shape == (2, 77)
    assert batch[0, -1].item() == tok.eos_token_id  # truncated, still ends with EOS

    fresh = build_bpe_tokenizer(tmp_path / "tok")  # built from the packaged vocab.json + merges.txt
    assert fresh(CAPTION).input_ids == ids
    assert (tiny_base / "tokenizer" / "vocab.json").is_file()
    assert len((tiny_base / "tokenizer" / "merges.txt").read_text().splitlines()) > 100


def test_local_diffusers_folder_is_used_as_is(tiny_base, tmp_path):
    assert ensure_base_model(str(tiny_base), tmp_path / "unused") == tiny_base
    assert not (tmp_path / "unused").exists()
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(BaseModelError, match="model_index.json"):
        ensure_base_model(str(tmp_path / "not-a-model"))
    broken = tmp_path / "half"
    shutil.copytree(tiny_base, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(BaseModelError, match="unet"):
        ensure_base_model(str(broken))


@pytest.mark.parametrize("spec", ["not-a/real-model", "/nonexistent/dir", "runwayml/stable-diffusion-v1-5",
                                  "bad id with spaces"])
def test_unusable_base_fails_fast_with_a_helpful_message(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(BaseModelError) as info:
        ensure_base_model(spec, tmp_path / "models", cache_dir=tmp_path / "empty-cache")
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert spec in msg
    assert "model.base" in msg and "tiny" in msg and f"huggingface-cli download {spec}" in msg
    if spec.count("/") == 1 and not spec.startswith("/"):
        assert "not in the local Hugging Face cache" in msg
    assert not (tmp_path / "models").exists()


def _fake_hf_cache(cache: Path, repo_id: str, source: Path) -> Path:
    """The hub cache layout: models--org--name/{refs/main, snapshots/<sha>/...}."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    shutil.copytree(source, repo / "snapshots" / sha)
    return repo / "snapshots" / sha


def test_cached_hub_id_resolves_from_the_local_cache(tiny_base, tmp_path):
    snapshot = _fake_hf_cache(tmp_path / "hub", "someorg/tiny-sd", tiny_base)
    assert ensure_base_model("someorg/tiny-sd", cache_dir=tmp_path / "hub") == snapshot
    with pytest.raises(BaseModelError, match="revision 'v2'"):
        ensure_base_model("someorg/tiny-sd", revision="v2", cache_dir=tmp_path / "hub")


def test_no_network_and_no_hang_without_offline_mode(tiny_base, tmp_path):
    """A fresh interpreter with HF_HUB_OFFLINE unset, an empty HF_HOME and a black-hole endpoint:
    any network attempt would hang until the subprocess timeout."""
    _fake_hf_cache(tmp_path / "hf" / "hub", "someorg/tiny-sd", tiny_base)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                                            "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://10.255.255.1",
               PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]))
    code = textwrap.dedent("""
        import sys, time
        from landmark_lora.diffusion.base import BaseModelError, ensure_base_model
        print(ensure_base_model("someorg/tiny-sd"))
        for spec in ("not-a/real-model", "/nonexistent/dir"):
            t = time.monotonic()
            try:
                ensure_base_model(spec, models_dir="unused")
            except BaseModelError as err:
                print("ERR", round(time.monotonic() - t, 2), err)
            else:
                sys.exit("no error for " + spec)
    """)
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=90, check=False)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].endswith("snapshots/0123456789abcdef0123456789abcdef01234567")
    errors = [line for line in lines if line.startswith("ERR")]
    assert len(errors) == 2 and "not in the local Hugging Face cache" in errors[0]
    assert all(float(line.split()[1]) < 5 for line in errors)
    assert time.monotonic() - start < 60
