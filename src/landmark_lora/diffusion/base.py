"""The base Stable Diffusion model: an embedded tiny SD 1.x built from config, or a local checkpoint.

    from landmark_lora.diffusion.base import ensure_base_model, build_tiny_pipeline
    from landmark_lora.diffusion.pipeline import load_pipeline

    path = ensure_base_model("tiny")                    # builds models/base-tiny once, offline
    path = ensure_base_model("/data/sd15")              # a local diffusers folder (has model_index.json)
    path = ensure_base_model("runwayml/stable-diffusion-v1-5", revision=None)  # local HF cache only
    pipe = load_pipeline(path)                          # fp32, DPM-Solver++ (few steps), no safety checker
    image = pipe("lmksnap snapshot photo, upper-body shot, in front of Gyeongbokgung Palace",
                 num_inference_steps=4, height=64, width=64,
                 generator=torch.Generator().manual_seed(0)).images[0]

Nothing here ever downloads: a Hugging Face id is looked up in the local cache only, and an id that
is not there raises ``BaseModelError`` with the fix (download elsewhere, copy, point ``model.base``
at the folder, or use ``tiny``).

The tiny model ("tiny") is a real SD 1.x-shaped pipeline with random weights, so every stage
(latent caching, LoRA training, export, evaluation, serving) runs end to end on a laptop CPU:

* UNet2DConditionModel: blocks (32, 64), CrossAttnDownBlock2D + DownBlock2D (mirrored up),
  cross-attention mid block, 2 layers per block, 2 heads, cross_attention_dim 32, sample_size 8.
* AutoencoderKL: 4 blocks (32, 32, 64, 64), so it **downsamples by 8** like real SD: a 64x64 image
  is an 8x8x4 latent; any width/height that is a multiple of 8 (64x64, 48x80, 80x48, ...) encodes
  and decodes back to the same size. ``scaling_factor`` is calibrated so latents have unit std.
* CLIPTextModel: hidden 32, 2 layers, 4 heads, 77 positions, with the toy world's CLIP BPE
  tokenizer (``write_bpe_vocab``): caption and landmark words are whole tokens, so a sample caption
  is about 45 of the 77; any other text (Korean, emoji) falls back to byte pieces, never <unk>.

The toy-world model ("toyworld") is the same shape, really trained on a generic procedural world
(landmark_lora.toyworld) and shipped in the package (``TOYWORLD_DIR``, fp16 safetensors, each
file's sha256 in toyworld.json); ``landmark-lora build-base toyworld`` retrains it from its recipe.
* DDPMScheduler (SD 1.x betas, epsilon) saved with it: training's noise schedule;
  ``diffusion.pipeline.load_pipeline`` swaps in DPMSolverMultistepScheduler built from the same config.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from landmark_lora import fsutil

if TYPE_CHECKING:  # diffusers/torch imports cost seconds: only where a model is really built
    import torch
    from diffusers import StableDiffusionPipeline

TINY_SPEC = "tiny"
TINY_DIR_NAME = "base-tiny"
# Bump when the tiny recipe below changes: an older models/base-tiny is then rebuilt, never reused.
TINY_RECIPE_VERSION = 2  # 2: the toy world's BPE tokenizer instead of one token per byte
TOYWORLD_SPEC = "toyworld"
# The trained toy-world base, shipped in the package (diffusers layout, fp16 safetensors).
TOYWORLD_DIR = Path(__file__).resolve().parent.parent / "data" / "toyworld"
TOYWORLD_MANIFEST = "toyworld.json"  # recipe, PSNR, timings and every file's sha256
TINY_MARKER = "landmark_lora_tiny.json"  # outside the diffusers sub-folders, so fingerprints ignore it

MAX_TOKENS = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# SD 1.x noise schedule; DPM-Solver/DDIM read the same keys via from_config.
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


class BaseModelError(RuntimeError):
    """The base model named in ``model.base`` cannot be used (not found, not cached, not diffusers)."""


# --------------------------------------------------------------------------- tiny model


def _unet_config() -> dict[str, Any]:
    return dict(
        sample_size=8,  # latent side: 8 * 8 (VAE factor) = 64 px default images
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        cross_attention_dim=32,
        attention_head_dim=2,  # diffusers' legacy name: this is the number of heads
        norm_num_groups=32,
    )


def _vae_config() -> dict[str, Any]:
    return dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32, 64, 64),  # 4 blocks -> 3 downsamples -> factor 8, as in SD
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
        force_upcast=False,  # fp32 model: nothing to upcast
    )


def _text_config(vocab_size: int, bos_id: int, eos_id: int) -> dict[str, Any]:
    return dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=32,
        hidden_act="quick_gelu",
        bos_token_id=bos_id,
        eos_token_id=eos_id,  # pooled output reads the EOS position (not argmax of legacy id 2)
        pad_token_id=eos_id,
    )


def _calibration_images(seed: int) -> torch.Tensor:
    """Photo-like inputs in [-1, 1] (smooth gradients plus noise) to calibrate the latent scale."""
    import torch

    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    imgs = []
    for _ in range(8):
        a, b, c = (torch.rand(3, generator=g) * 2 - 1).tolist()
        base = torch.stack([a * x + b * y, b * x - c * y, c * x * y + a], 0)
        imgs.append((base + 0.3 * torch.randn(3, 64, 64, generator=g)).clamp(-1, 1))
    return torch.stack(imgs)


def write_bpe_vocab(folder: Path) -> Path:
    """Copy the toy world's BPE tokenizer files (vocab.json, merges.txt) into ``folder``.

    Trained on generic and landmark captions (landmark_lora.toyworld.tokenizer), so a whole
    sample caption is about 40 tokens; unknown words fall back to byte pieces, never to <unk>.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(TOYWORLD_DIR / "tokenizer" / name, folder / name)
    return folder


def build_bpe_tokenizer(folder: Path):
    """The toy world's CLIP BPE tokenizer, written to and loaded from ``folder``."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_bpe_vocab(folder)), model_max_length=MAX_TOKENS)


def build_tiny_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """The tiny SD 1.x pipeline, random but deterministic: same seed -> identical weights."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with tempfile.TemporaryDirectory(prefix="tiny-tokenizer-") as tmp:
        tokenizer = build_bpe_tokenizer(Path(tmp))

    torch.manual_seed(seed)  # before each component: building one never shifts another's weights
    unet = UNet2DConditionModel(**_unet_config())
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**_vae_config())
    with torch.no_grad():  # unit-variance latents, the job 0.18215 does for the real SD VAE
        std = vae.encode(_calibration_images(seed)).latent_dist.mean.std().item()
    vae.register_to_config(scaling_factor=round(1.0 / max(std, 1e-6), 5))
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config(len(tokenizer), tokenizer.bos_token_id,
                                                                tokenizer.eos_token_id)))
    # from_config keeps keys DDPM does not use (set_alpha_to_one) for DDIM built from this config
    scheduler = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    for module in (unet, vae, text_encoder):
        module.eval()
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)


def save_tiny_pipeline(target: Path, seed: int = 0) -> Path:
    """Build and save the tiny pipeline into ``target`` (a fresh folder): diffusers layout."""
    pipe = build_tiny_pipeline(seed)
    pipe.save_pretrained(str(target), safe_serialization=True)
    # keep the raw vocab/merges next to tokenizer.json: readable, and what older CLIPTokenizers load
    write_bpe_vocab(Path(target) / "tokenizer")
    (Path(target) / TINY_MARKER).write_text(
        json.dumps({"recipe_version": TINY_RECIPE_VERSION, "seed": seed}, sort_keys=True) + "\n",
        encoding="utf-8")
    return Path(target)


def _tiny_is_current(path: Path) -> bool:
    try:
        marker = json.loads((path / TINY_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("recipe_version") == TINY_RECIPE_VERSION and (path / "model_index.json").is_file()


def _normalize_permissions(root: Path) -> None:
    """mkdtemp makes 0700 folders and the savers write some files 0600: give the model the
    umask's usual modes so other users/containers sharing models/ can read it."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _ensure_tiny(models_dir: Path) -> Path:
    target = Path(models_dir) / TINY_DIR_NAME
    if _tiny_is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target, then rename: readers see no model or a whole one, never half of one
    # (a kill -9 mid-build can leave a .base-tiny.tmp-* folder, which nothing reads).
    tmp = Path(tempfile.mkdtemp(prefix=f".{TINY_DIR_NAME}.tmp-", dir=target.parent))
    try:
        save_tiny_pipeline(tmp)
        _normalize_permissions(tmp)
        fsutil.fsync_tree(tmp)  # on disk before it is renamed into view
        if target.exists():  # outdated recipe (or a folder from elsewhere): move it aside first
            if _tiny_is_current(target):  # another process finished first
                return target
            stale = Path(tempfile.mkdtemp(prefix=f".{TINY_DIR_NAME}.old-", dir=target.parent))
            os.replace(target, stale / "model")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
            fsutil.fsync_dir(target.parent)
        except OSError:
            if not _tiny_is_current(target):  # lost a race to a writer that produced something else
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- toy-world base


def _ensure_toyworld() -> Path:
    """The shipped toy-world base, checked against the sha256 its manifest records."""
    manifest = TOYWORLD_DIR / TOYWORLD_MANIFEST
    rebuild = ("Rebuild it with `landmark-lora build-base toyworld --out models/base-toyworld` (about "
               "an hour on 2 CPU cores, minutes on a GPU) and set `model.base: models/base-toyworld`.")
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError) as err:
        raise BaseModelError(f"Base model 'toyworld': {manifest} is missing or unreadable ({err}); the package "
                             f"was installed without its toy-world weights. {rebuild}") from err
    import hashlib

    for rel, digest in files.items():
        path = TOYWORLD_DIR / rel
        h = hashlib.sha256()
        try:
            h.update(path.read_bytes())
        except OSError as err:
            raise BaseModelError(f"Base model 'toyworld': {path} is missing ({err}). {rebuild}") from err
        if h.hexdigest() != digest:
            raise BaseModelError(f"Base model 'toyworld': {path} does not match the sha256 in {manifest} "
                                 f"(a partial checkout, or a Git LFS pointer?). {rebuild}")
    return TOYWORLD_DIR


# --------------------------------------------------------------------------- other bases

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _fix_hint(spec: str) -> str:
    return (
        "To fix: on a machine with network run `huggingface-cli download "
        f"{spec}` (or `hf download {spec}`), copy the folder here and set `model.base` in params.yaml "
        "to that local path (it must contain model_index.json); or copy the Hugging Face cache "
        "(~/.cache/huggingface/hub) and keep the id; or set `model.base: tiny` to use the embedded "
        "tiny model."
    )


def _check_diffusers_folder(path: Path, spec: str) -> Path:
    index = path / "model_index.json"
    if not index.is_file():
        raise BaseModelError(
            f"Base model {spec!r}: {path} is not a diffusers pipeline folder (no model_index.json). "
            "Single-file checkpoints (.safetensors/.ckpt) are not read directly; convert them once with "
            "diffusers' StableDiffusionPipeline.from_single_file(...).save_pretrained(folder). "
            + _fix_hint(spec))
    try:
        components = json.loads(index.read_text(encoding="utf-8"))
    except ValueError as err:
        raise BaseModelError(f"Base model {spec!r}: {index} is not valid JSON ({err}).") from err
    missing = [name for name, value in components.items()
               if not name.startswith("_") and isinstance(value, list) and value and value[0]
               and name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
               and not (path / name).is_dir()]
    if missing:
        raise BaseModelError(
            f"Base model {spec!r}: {path} lacks the component folder(s) {', '.join(missing)} "
            "(an interrupted copy or download?). " + _fix_hint(spec))
    return path


def _looks_like_path(spec: str) -> bool:
    # hub ids are "name" or "owner/name"; anything rooted, relative-dotted or deeper is a path
    return (spec.startswith(("/", ".", "~")) or "\\" in spec or spec.count("/") > 1
            or (len(spec) > 1 and spec[1] == ":"))


def _from_hf_cache(spec: str, revision: str | None, cache_dir: Path | None) -> Path:
    """The snapshot folder of a cached hub id; local files only, never the network."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        from huggingface_hub.errors import IncompleteSnapshotError  # hub >= 1.x: a partial snapshot
    except ImportError:  # pragma: no cover - older huggingface_hub
        IncompleteSnapshotError = ()  # type: ignore[assignment,misc]

    where = str(cache_dir or constants.HF_HUB_CACHE)
    try:
        folder = snapshot_download(repo_id=spec, revision=revision, local_files_only=True,
                                   cache_dir=str(cache_dir) if cache_dir else None)
    except IncompleteSnapshotError as err:  # type: ignore[misc]
        # diffusers downloads only what a pipeline needs (not every file in the repo): fine for us
        folder = getattr(err, "snapshot_path", None)
        if not folder:
            raise BaseModelError(f"Base model {spec!r} is only partly in the local Hugging Face cache "
                                 f"({where}). {_fix_hint(spec)}") from err
    except (LocalEntryNotFoundError, FileNotFoundError) as err:
        rev = f" (revision {revision!r})" if revision else ""
        raise BaseModelError(
            f"Base model {spec!r}{rev} is not in the local Hugging Face cache ({where}), and this "
            f"project never downloads models. {_fix_hint(spec)}") from err
    except HFValidationError as err:
        raise BaseModelError(f"Base model {spec!r} is neither a local folder nor a valid Hugging Face id "
                             f"({err}). {_fix_hint(spec)}") from err
    return _check_diffusers_folder(Path(folder), spec)


def ensure_base_model(spec: str, models_dir: Path = Path("models"), revision: str | None = None,
                      cache_dir: Path | None = None) -> Path:
    """A local diffusers folder for ``spec``: ``tiny`` (built once under ``models_dir``), a local
    folder with model_index.json, or a Hugging Face id already in the local cache (``cache_dir``,
    default the hub cache: $HF_HUB_CACHE or $HF_HOME/hub, read when huggingface_hub is imported).

    Raises BaseModelError, quickly and without network, for anything else.
    """
    spec = str(spec).strip()
    if spec == TINY_SPEC:
        return _ensure_tiny(Path(models_dir))
    if spec == TOYWORLD_SPEC:
        return _ensure_toyworld()
    if not spec:
        raise BaseModelError("Base model is empty: set `model.base` in params.yaml (e.g. `tiny`).")
    local = Path(spec).expanduser()
    if local.exists():
        return _check_diffusers_folder(local, spec)
    if _looks_like_path(spec) or not _HUB_ID.match(spec):
        raise BaseModelError(
            f"Base model {spec!r} is not an existing local folder (looked in {Path.cwd()}) and not a "
            "Hugging Face id. "
            + _fix_hint(spec))
    return _from_hf_cache(spec, revision, cache_dir)

