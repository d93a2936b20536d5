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
final losses and each file's sha256.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

MANIFEST = "toyworld.json"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the toy-world base's weights. Change any field -> a new base."""

    version: int = 1
    seed: int = 0
    width: int = 56  # the 3:4 bucket preprocess makes from the sample photos at data.resolution 64
    height: int = 72
    images: int = 3600  # training photos of the world
    heldout: int = 120  # photos for the VAE's PSNR, never trained on
    # VAE: downsamples by 8 like SD (4 blocks), light at full resolution, no mid-block attention
    vae_channels: tuple[int, ...] = (16, 32, 64, 64)
    latent_channels: int = 8
    vae_steps: int = 600
    vae_batch: int = 32
    vae_lr: float = 2e-3
    kl_weight: float = 1e-6
    # UNet + text encoder
    unet_channels: tuple[int, ...] = (64, 128)
    unet_layers: int = 1
    cross_dim: int = 64
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    unet_steps: int = 1600
    unet_batch: int = 64
    unet_lr: float = 1e-3
    caption_dropout: float = 0.1
    warmup: int = 50
    threads: int = 1  # a shared 2-core machine: a 2nd OpenMP thread stalls at every barrier when descheduled

    def key(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def world_key(self) -> str:
        """Only the fields that change the rendered photos (a new step count reuses them)."""
        return self._key_of(WORLD_FIELDS)

    def vae_key(self) -> str:
        """The fields that change the VAE (a new UNet recipe resumes from the same VAE)."""
        return self._key_of(WORLD_FIELDS + VAE_FIELDS)

    def _key_of(self, fields: tuple[str, ...]) -> str:
        chosen = {k: getattr(self, k) for k in fields}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:12]


WORLD_FIELDS = ("version", "seed", "width", "height", "images", "heldout")
VAE_FIELDS = ("vae_channels", "latent_channels", "vae_steps", "vae_batch", "vae_lr", "kl_weight", "warmup", "threads")


RECIPE = Recipe()


def _log(msg: str) -> None:
    print(f"[toyworld {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine down to 5 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


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


def render_dataset(recipe: Recipe, work: Path) -> dict[str, np.ndarray | list[str]]:
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
        _log(f"rendered {len(imgs)}/{total} world photos ({time.time() - t0:.0f} s)")
    arr = np.stack(imgs)
    # Held-out photos come last in the stream: new place instances' poses and variants.
    out = {"train": arr[: recipe.images], "heldout": arr[recipe.images:], "captions": caps[: recipe.images]}
    from landmark_lora import fsutil

    # a file handle: np.savez would append ".npz" to the temp name
    with fsutil.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, train=out["train"], heldout=out["heldout"], captions=np.array(out["captions"]))
    return out


def _to_tensor(arr: np.ndarray):
    import torch

    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


# ---------------------------------------------------------------- models


def vae_config(recipe: Recipe) -> dict[str, Any]:
    n = len(recipe.vae_channels)
    return dict(in_channels=3, out_channels=3, block_out_channels=recipe.vae_channels,
                down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                layers_per_block=1, latent_channels=recipe.latent_channels, norm_num_groups=8,
                sample_size=recipe.height, mid_block_add_attention=False, force_upcast=False)


def unet_config(recipe: Recipe) -> dict[str, Any]:
    n = len(recipe.unet_channels)
    return dict(sample_size=8, in_channels=recipe.latent_channels,
                out_channels=recipe.latent_channels, block_out_channels=recipe.unet_channels,
                layers_per_block=recipe.unet_layers, down_block_types=("CrossAttnDownBlock2D",) * n,
                up_block_types=("CrossAttnUpBlock2D",) * n, mid_block_type="UNetMidBlock2DCrossAttn",
                cross_attention_dim=recipe.cross_dim, attention_head_dim=4, norm_num_groups=32)


def text_config(recipe: Recipe, vocab_size: int, bos: int, eos: int) -> dict[str, Any]:
    from landmark_lora.diffusion.base import MAX_TOKENS

    return dict(vocab_size=vocab_size, hidden_size=recipe.text_hidden, intermediate_size=recipe.text_hidden * 4,
                num_hidden_layers=recipe.text_layers, num_attention_heads=recipe.text_heads,
                max_position_embeddings=MAX_TOKENS, projection_dim=recipe.text_hidden, hidden_act="quick_gelu",
                bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)


def _checkpoint(path: Path, modules: dict, opt, step: int, hist: list) -> None:
    """Save ``modules`` (name -> nn.Module), the optimizer, step and loss history, atomically."""
    import torch

    from landmark_lora import fsutil

    state = {name: m.state_dict() for name, m in modules.items()}
    with fsutil.atomic_path(path) as tmp:
        torch.save({**state, "opt": opt.state_dict(), "step": step, "hist": hist}, tmp)


def _resume(path: Path, modules: dict, opt, label: str) -> tuple[int, list]:
    """Load a ``_checkpoint`` into ``modules`` and ``opt`` when there is one: (step, hist)."""
    import torch

    if not path.exists():
        return 0, []
    state = torch.load(path, weights_only=False)
    for name, m in modules.items():
        m.load_state_dict(state[name])
    opt.load_state_dict(state["opt"])
    _log(f"{label}: resumed at step {state['step']}")
    return state["step"], state["hist"]


def train_vae(recipe: Recipe, data: dict, work: Path, progress: Callable[[int, int, float], None] | None = None):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(recipe.seed)
    vae = AutoencoderKL(**vae_config(recipe)).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0, foreach=True)
    ckpt = work / f"vae-{recipe.vae_key()}.pt"
    step, hist = _resume(ckpt, {"model": vae}, opt, "VAE")
    x_all = _to_tensor(data["train"])
    g = torch.Generator().manual_seed(recipe.seed + 11)
    for _ in range(step):  # keep the batch stream identical across resumes
        torch.randint(0, len(x_all), (recipe.vae_batch,), generator=g)
    vae.train()
    t0 = time.time()
    while step < recipe.vae_steps:
        idx = torch.randint(0, len(x_all), (recipe.vae_batch,), generator=g)
        x = x_all[idx].contiguous(memory_format=torch.channels_last)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, recipe.vae_steps, recipe.vae_lr, recipe.warmup)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        mse = torch.nn.functional.mse_loss(rec, x)
        loss = mse + recipe.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        hist.append(mse.item())
        if progress:
            progress(step, recipe.vae_steps, float(mse))
        if step % 25 == 0 or step == recipe.vae_steps:
            psnr = 10 * math.log10(4.0 / max(np.mean(hist[-25:]), 1e-12))  # range [-1, 1]: peak^2 = 4
            _log(f"VAE step {step}/{recipe.vae_steps} mse {np.mean(hist[-25:]):.5f} (train PSNR {psnr:.2f} dB) "
                 f"{(time.time() - t0) / max(1, len(hist)):.2f} s/step")
        if step % 100 == 0 or step == recipe.vae_steps:
            _checkpoint(ckpt, {"model": vae}, opt, step, hist)
    vae.eval()
    return vae


def heldout_psnr(vae, heldout: np.ndarray) -> float:
    """Mean PSNR (dB, on 0..255 pixels) of the VAE's reconstructions (posterior mean) of ``heldout``."""
    import torch

    with torch.no_grad():
        x = _to_tensor(heldout)
        rec = torch.cat([vae.decode(vae.encode(x[i:i + 64]).latent_dist.mean).sample for i in range(0, len(x), 64)])
        mse = ((rec.clamp(-1, 1) - x) ** 2).mean(dim=(1, 2, 3)) / 4.0  # -> 0..1 range
        return float((10 * torch.log10(1.0 / mse.clamp_min(1e-12))).mean())


def train_tokenizer(folder: Path):
    from landmark_lora.toyworld.tokenizer import train_bpe, write_clip_tokenizer

    return write_clip_tokenizer(folder, train_bpe(tokenizer_corpus()))


def calibrate_scale(vae, train: np.ndarray) -> float:
    """1 / std of the latents of up to 512 training photos (the job 0.18215 does for SD's VAE)."""
    import torch

    with torch.no_grad():
        mean = vae.encode(_to_tensor(train[:512])).latent_dist.mean
    return round(1.0 / max(float(mean.std()), 1e-6), 5)


def encode_latents(vae, train: np.ndarray) -> tuple["torch.Tensor", "torch.Tensor"]:
    import torch

    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(train), 128):
            dist = vae.encode(_to_tensor(train[i:i + 128])).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def train_unet(recipe: Recipe, captions: list[str], means, stds, scale: float, tokenizer, work: Path,
               progress: Callable[[int, int, float], None] | None = None):
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from landmark_lora.diffusion.base import SCHEDULER_CONFIG

    torch.manual_seed(recipe.seed + 1)
    unet = UNet2DConditionModel(**unet_config(recipe))
    torch.manual_seed(recipe.seed + 2)
    text = CLIPTextModel(CLIPTextConfig(**text_config(recipe, len(tokenizer), tokenizer.bos_token_id,
                                                       tokenizer.eos_token_id)))
    sched = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.unet_lr, weight_decay=0.01, foreach=True)
    ckpt = work / f"unet-{recipe.key()}.pt"
    step, hist = _resume(ckpt, {"unet": unet, "text": text}, opt, "UNet")
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                      return_tensors="pt").input_ids[0]
    g = torch.Generator().manual_seed(recipe.seed + 21)
    alphas = sched.alphas_cumprod
    unet.train()
    text.train()
    t0, done0 = time.time(), step
    while step < recipe.unet_steps:
        # every draw from the generator, in a fixed order: a resumed run sees the same stream
        sg = torch.Generator().manual_seed(recipe.seed * 100003 + step)
        idx = torch.randint(0, len(means), (recipe.unet_batch,), generator=sg)
        lat = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=sg)) * scale
        noise = torch.randn(lat.shape, generator=sg)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), generator=sg)
        drop = torch.rand(len(idx), generator=sg) < recipe.caption_dropout
        batch_ids = torch.where(drop[:, None], empty[None, :], ids[idx])
        a = alphas[t].sqrt()[:, None, None, None]
        s = (1 - alphas[t]).sqrt()[:, None, None, None]
        noisy = a * lat + s * noise
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, recipe.unet_steps, recipe.unet_lr, recipe.warmup)
        cond = text(batch_ids)[0]
        pred = unet(noisy, t, encoder_hidden_states=cond).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        hist.append(loss.item())
        if progress:
            progress(step, recipe.unet_steps, float(loss))
        if step % 25 == 0 or step == recipe.unet_steps:
            _log(f"UNet step {step}/{recipe.unet_steps} loss {np.mean(hist[-25:]):.4f} "
                 f"{(time.time() - t0) / max(1, step - done0):.2f} s/step")
        if step % 100 == 0 or step == recipe.unet_steps:
            _checkpoint(ckpt, {"unet": unet, "text": text}, opt, step, hist)
    unet.eval()
    text.eval()
    return unet, text, hist


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weight_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file of the pipeline (not the manifest), by relative path."""
    return {p.relative_to(folder).as_posix(): sha256_of(p) for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def save_pipeline(out: Path, vae, unet, text, tokenizer_dir: Path, report: dict) -> Path:
    """Save in diffusers layout with fp16 weights, then the manifest with every file's sha256."""
    import torch
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from landmark_lora.diffusion.base import MAX_TOKENS, SCHEDULER_CONFIG

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), model_max_length=MAX_TOKENS)
    pipe = StableDiffusionPipeline(vae=vae.to(torch.float16), text_encoder=text.to(torch.float16), tokenizer=tokenizer,
                                   unet=unet.to(torch.float16), scheduler=DDPMScheduler.from_config(SCHEDULER_CONFIG),
                                   safety_checker=None, feature_extractor=None, image_encoder=None,
                                   requires_safety_checker=False)
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


def build(recipe: Recipe, out: Path, work: Path, progress: bool = True) -> dict:
    """Build the toy-world base into ``out`` (diffusers layout); resumable through ``work``."""
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
    _log(f"VAE held-out PSNR {psnr:.2f} dB on {len(data['heldout'])} photos")
    scale = calibrate_scale(vae, data["train"])
    vae.register_to_config(scaling_factor=scale)
    t = time.time()
    means, stds = encode_latents(vae, data["train"])
    times["latents_s"] = round(time.time() - t, 1)
    t = time.time()
    unet, text, hist = train_unet(recipe, data["captions"], means, stds, scale, tokenizer, work, bar("UNet"))
    times["unet_s"] = round(time.time() - t, 1)
    report = {
        "recipe": dataclasses.asdict(recipe), "recipe_key": recipe.key(), "vae_heldout_psnr_db": round(psnr, 2),
        "heldout_photos": int(len(data["heldout"])), "scaling_factor": scale,
        "unet_final_loss": round(float(np.mean(hist[-100:])), 4), "times": times,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__, "threads": recipe.threads,
        "params": {"vae": sum(p.numel() for p in vae.parameters()), "unet": sum(p.numel() for p in unet.parameters()),
                   "text_encoder": sum(p.numel() for p in text.parameters()), "vocab": len(tokenizer)},
    }
    save_pipeline(Path(out), vae, unet, text, tok_dir, report)
    _log(f"saved {out}: {json.dumps({k: v for k, v in report.items() if k != 'recipe'})}")
    return report


def compare_with_shipped(out: Path) -> bool:
    """True when every file of ``out`` has the sha256 the shipped base's manifest records."""
    from landmark_lora.diffusion.base import TOYWORLD_DIR

    try:
        shipped = json.loads((TOYWORLD_DIR / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError):
        return False
    return weight_hashes(Path(out)) == shipped


def _bar(enabled: bool) -> Callable[[str], Callable[[int, int, float], None] | None]:
    def make(name: str) -> Callable[[int, int, float], None] | None:
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
    ap = argparse.ArgumentParser(description="Build the toy-world base model from its recipe.")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path(".cache/toyworld-build"))
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a recipe field (e.g. --set unet_steps=200), for experiments")
    args = ap.parse_args(argv)
    recipe = RECIPE
    for item in args.set:
        key, _, value = item.partition("=")
        current = getattr(recipe, key)
        parsed = tuple(int(v) for v in value.split(",")) if isinstance(current, tuple) else type(current)(value)
        recipe = dataclasses.replace(recipe, **{key: parsed})
    build(recipe, args.out, args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
