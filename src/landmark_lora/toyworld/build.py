"""Train the toy-world base: a small SD 1.x-shaped pipeline learnt from the toy world, on a CPU.

    landmark-lora build-base toyworld --out models/base-toyworld-rebuilt   # the shipped recipe
    python -m landmark_lora.toyworld.build --work .cache/toyworld-build --out OUT  # same, resumable

    from landmark_lora.toyworld.build import RECIPE, build
    report = build(RECIPE, out=Path("OUT"), work=Path(".cache/toyworld-build"))

Order: render the world once (cached as .npz), train the tokenizer, train the VAE (MSE + a tiny KL),
measure its PSNR on held-out world photos, set ``scaling_factor`` so latents have unit std, encode
every photo once, then train the UNet and the CLIP text encoder together on those latents
(epsilon prediction, DDPM noise schedule, 10 % empty captions for classifier-free guidance).
Each phase checkpoints into ``work``; a killed build resumes where it stopped. Weights are saved
in fp16 (they load as fp32), and ``toyworld.json`` records the recipe, timings, PSNR, the
final losses and each file's sha256. Progress is logged at INFO (``landmark_lora.toyworld.*``).

Where the parts live: the recipe and model shapes in ``toyworld.recipe``, the VAE phase in
``toyworld.train_vae``, the UNet + text-encoder phase in ``toyworld.train_unet``, their shared
schedule and checkpoints in ``toyworld.training``; this module renders, orders the phases, saves
and hashes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landmark_lora import fsutil, logs
from landmark_lora.diffusion.base import MAX_TOKENS, SCHEDULER_CONFIG, TOYWORLD_DIR, TOYWORLD_MANIFEST
from landmark_lora.toyworld.recipe import RECIPE, Recipe
from landmark_lora.toyworld.train_unet import train_unet
from landmark_lora.toyworld.train_vae import calibrate_scale, encode_latents, heldout_psnr, train_vae
from landmark_lora.toyworld.training import Progress

if TYPE_CHECKING:  # transformers costs seconds to import: only when a build really runs
    from transformers import CLIPTokenizer

__all__ = ["MANIFEST", "RECIPE", "Recipe", "build", "compare_with_shipped", "main", "render_dataset",
           "save_pipeline", "tokenizer_corpus", "train_tokenizer", "weight_hashes"]

MANIFEST = TOYWORLD_MANIFEST  # toyworld.json: the recipe, timings, PSNR, final losses, every file's sha256

log = logs.get_logger(__name__)

# ---------------------------------------------------------------- data


def tokenizer_corpus() -> list[str]:
    """Every generic caption piece, plus the packaged catalogue's names and descriptions, so
    landmark names and description words tokenize into whole words (their embeddings stay untrained)."""
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.config import CaptionConfig
    from landmark_lora.synthetic.person import POSES
    from landmark_lora.toyworld.world import PLACES

    words = CaptionConfig()
    corpus = ["snapshot photo, in front of, person", CaptionConfig().trigger]
    corpus += list(words.shot_words.values()) + list(words.angle_words.values()) + list(POSES)
    corpus += [phrase for phrase, _ in PLACES.values()]
    for _, make in PLACES.values():  # every description the places can produce
        corpus += sorted({make(np.random.default_rng(i))[1] for i in range(64)})
    for lm in load_catalogue().values():
        corpus += [lm.name_en, lm.description]
    return corpus


def render_dataset(recipe: Recipe, work: Path) -> dict[str, Any]:
    """Train + held-out photos as uint8 arrays, and captions; cached in ``work`` per recipe."""
    from landmark_lora.toyworld.world import world_samples

    path = work / f"world-{recipe.world_key()}.npz"
    if path.exists():
        data = np.load(path, allow_pickle=False)
        return {"train": data["train"], "heldout": data["heldout"], "captions": [str(c) for c in data["captions"]]}
    t0 = time.time()
    imgs, caps = [], []
    total = recipe.images + recipe.heldout
    for start in range(0, total, 200):
        batch = world_samples(min(200, total - start), seed=recipe.seed, width=recipe.width, height=recipe.height,
                              start=start)
        imgs += [np.asarray(s.image, dtype=np.uint8) for s in batch]
        caps += [s.caption for s in batch]
        log.info("toyworld: rendered %d/%d world photos (%.0f s)", len(imgs), total, time.time() - t0)
    arr = np.stack(imgs)
    # Held-out photos come last in the stream: new place instances' poses and variants.
    out: dict[str, Any] = {"train": arr[: recipe.images], "heldout": arr[recipe.images:],
                           "captions": caps[: recipe.images]}
    # a file handle: np.savez would append ".npz" to the temp name
    with fsutil.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, train=out["train"], heldout=out["heldout"], captions=np.array(out["captions"]))
    return out


def train_tokenizer(folder: Path) -> CLIPTokenizer:
    """The CLIP BPE tokenizer trained on ``tokenizer_corpus()``, written to and loaded from ``folder``."""
    from landmark_lora.toyworld.tokenizer import train_bpe, write_clip_tokenizer

    return write_clip_tokenizer(folder, train_bpe(tokenizer_corpus()))


def weight_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file of the pipeline (not the manifest), by relative path."""
    return {p.relative_to(folder).as_posix(): fsutil.sha256_file(p) for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def save_pipeline(out: Path, vae: Any, unet: Any, text: Any, tokenizer_dir: Path, report: dict[str, Any]) -> Path:
    """Save in diffusers layout with fp16 weights, then the manifest with every file's sha256."""
    import torch
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=MAX_TOKENS)
    pipe: Any = StableDiffusionPipeline(
        vae=vae.to(torch.float16), text_encoder=text.to(torch.float16), tokenizer=tokenizer,
        unet=unet.to(torch.float16), scheduler=DDPMScheduler.from_config(SCHEDULER_CONFIG),
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):  # the readable BPE files beside tokenizer.json
        shutil.copyfile(tokenizer_dir / name, tmp / "tokenizer" / name)
    report = {**report, "files": weight_hashes(tmp)}
    (tmp / MANIFEST).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def seed_vae(recipe: Recipe, work: Path, source: Path) -> dict[str, Any]:
    """Start the VAE phase from ``source``'s trained VAE (a built base, the shipped one say), for a
    recipe that changes only the UNet phase: writes the finished VAE checkpoint the build resumes
    from. Returns where the VAE came from (the manifest's ``vae_from``)."""
    import torch
    from diffusers import AutoencoderKL

    from landmark_lora.toyworld.recipe import vae_config
    from landmark_lora.toyworld.training import save_checkpoint

    manifest = json.loads((Path(source) / MANIFEST).read_text(encoding="utf-8"))
    origin = {"recipe_key": manifest.get("recipe_key"),
              "vae_sha256": manifest["files"].get("vae/diffusion_pytorch_model.safetensors")}
    ckpt = Path(work) / f"vae-{recipe.vae_key()}.pt"
    if ckpt.exists():  # a VAE phase already trained or seeded: never overwrite it
        return origin
    theirs = Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["recipe"].items()
                       if k in {f.name for f in dataclasses.fields(Recipe)}})
    if theirs.vae_key() != recipe.vae_key():
        fields = [f for f in dataclasses.fields(Recipe) if getattr(theirs, f.name) != getattr(recipe, f.name)]
        raise ValueError(f"{source}: its VAE was built by another recipe (differs in "
                         f"{', '.join(f.name for f in fields)}): build without --vae-from")
    vae = AutoencoderKL(**vae_config(recipe))
    vae.load_state_dict(AutoencoderKL.from_pretrained(str(Path(source) / "vae")).float().state_dict(),
                        strict=False)  # strict=False: scaling_factor is config, not a weight
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr)
    save_checkpoint(ckpt, {"model": vae}, opt, recipe.vae_steps, [])
    log.info("toyworld: VAE phase seeded from %s (recipe %s)", source, origin["recipe_key"])
    return origin


def build(recipe: Recipe, out: Path, work: Path, progress: bool = True,
          notes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the toy-world base into ``out`` (diffusers layout); resumable through ``work``.
    ``notes`` go into the manifest as they are (``--vae-from`` records where the VAE came from)."""
    import resource

    import torch

    torch.set_num_threads(recipe.threads)
    torch.set_flush_denormal(True)  # Adam's tiny second moments otherwise go denormal: 10x slower steps on x86
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t = time.time()
    data = render_dataset(recipe, work)
    times["render_s"] = round(time.time() - t, 1)
    tok_dir = work / f"tokenizer-{recipe.key()}"
    tokenizer = train_tokenizer(tok_dir)
    bar = _bar(progress)
    t = time.time()
    vae = train_vae(recipe, data, work, bar("VAE"))
    times["vae_s"] = round(time.time() - t, 1)
    psnr = heldout_psnr(vae, data["heldout"])
    log.info("toyworld: VAE held-out PSNR %.2f dB on %d photos", psnr, len(data["heldout"]))
    scale = calibrate_scale(vae, data["train"])
    vae.register_to_config(scaling_factor=scale)
    t = time.time()
    means, stds = encode_latents(vae, data["train"])
    times["latents_s"] = round(time.time() - t, 1)
    t = time.time()
    from landmark_lora.toyworld.world import name_angles

    captions = name_angles(data["captions"], recipe.angle_caption_rate, recipe.seed)
    unet, text, hist = train_unet(recipe, captions, means, stds, scale, tokenizer, work, bar("UNet"))
    times["unet_s"] = round(time.time() - t, 1)
    report = {
        "recipe": dataclasses.asdict(recipe), "recipe_key": recipe.key(), "vae_heldout_psnr_db": round(psnr, 2),
        "heldout_photos": int(len(data["heldout"])), "scaling_factor": scale,
        "unet_final_loss": round(float(np.mean(hist[-100:])), 4), "times": times,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__, "threads": recipe.threads,
        **(notes or {}),
        "params": {"vae": sum(p.numel() for p in vae.parameters()), "unet": sum(p.numel() for p in unet.parameters()),
                   "text_encoder": sum(p.numel() for p in text.parameters()), "vocab": len(tokenizer)},
    }
    save_pipeline(Path(out), vae, unet, text, tok_dir, report)
    log.info("toyworld: saved %s: %s", out, json.dumps({k: v for k, v in report.items() if k != "recipe"}))
    return report


def compare_with_shipped(out: Path) -> bool:
    """True when every file of ``out`` has the sha256 the shipped base's manifest records."""
    try:
        shipped = json.loads((TOYWORLD_DIR / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError):
        return False
    return weight_hashes(Path(out)) == shipped


def _bar(enabled: bool) -> Callable[[str], Progress | None]:
    """A maker of tqdm progress callbacks, one per phase; None for each when off or stderr is no terminal."""
    def make(name: str) -> Progress | None:
        if not enabled or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        state: dict[str, Any] = {}

        def update(step: int, total: int, loss: float) -> None:
            if "bar" not in state:
                state["bar"] = tqdm(total=total, initial=step - 1, desc=f"toyworld {name}", unit="step")
            state["bar"].update(1)
            state["bar"].set_postfix(loss=f"{loss:.4f}")
            if step == total:
                state["bar"].close()

        return update

    return make


def main(argv: list[str] | None = None) -> int:
    """``python -m landmark_lora.toyworld.build --out OUT [--work DIR] [--set FIELD=VALUE ...]``."""
    ap = argparse.ArgumentParser(description="Build the toy-world base model from its recipe.")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path(".cache/toyworld-build"))
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a recipe field (e.g. --set unet_steps=200), for experiments")
    ap.add_argument("--vae-from", type=Path, metavar="BASE",
                    help="reuse BASE's VAE (e.g. src/landmark_lora/data/toyworld) when only the UNet recipe changed")
    args = ap.parse_args(argv)
    logs.setup(0)  # started without the CLI: log the build's progress like it does
    recipe = RECIPE
    for item in args.set:
        key, _, value = item.partition("=")
        current = getattr(recipe, key)
        parsed: Any = tuple(int(v) for v in value.split(",")) if isinstance(current, tuple) else type(current)(value)
        recipe = dataclasses.replace(recipe, **{key: parsed})
    notes: dict[str, Any] = {}
    if args.vae_from:
        args.work.mkdir(parents=True, exist_ok=True)
        notes["vae_from"] = seed_vae(recipe, args.work, args.vae_from)
    build(recipe, args.out, args.work, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
