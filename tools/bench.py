"""Training throughput benchmark (never a timed test).

    make bench                          # = python -m tools.bench (from the repository root)
    python -m tools.bench --steps 60 --repeats 5 --resolution 64   # steadier, one size
    python -m tools.bench --gpu         # + SD 1.5-size UNet at 512 px, bf16 (needs CUDA)

CPU part: builds a throwaway workspace (sample data -> ingest -> preprocess -> cache latents),
then trains the tiny config in two modes, each run in its own process so peak memory is its
own: from cached latents and caption embeddings, and encoding with the VAE and text encoder on
every step. Each mode runs ``--repeats`` times (alternating order; the median is reported), at
each ``--resolution`` (64 px, the embedded default, is the headline). Writes
``reports/bench.json`` (key ``cached_over_uncached``: the throughput ratio) and the table in
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from landmark_lora.env import apply_offline_defaults, venv_env

# A dev tool of the checkout: results go to its reports/ and docs/ (the installed package never writes there).
REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} x {cpu}, {mem:.0f} GiB RAM, torch {torch.__version__}"


def _bench_params(steps: int, resolution: int = 64) -> dict:
    return {
        "data": {"resolution": resolution},
        "sample_data": {"poses_per_view": 1},
        "ingest": {"dvc_add": False},
        "train": {"max_steps": steps, "batch_size": 4, "eval_every": 10_000, "checkpoint_every": 10_000,
                  "warmup_steps": 1},
        "mlflow": {"system_metrics": False},
    }


def prepare_workspace(root: Path, steps: int, resolution: int = 64) -> None:
    """Sample data through cached latents, in ``root`` (the current directory must be root)."""
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.config import parse_params
    from landmark_lora.ops.ingest import ingest
    from landmark_lora.stages.cache_latents import cache_latents
    from landmark_lora.stages.preprocess import preprocess
    from landmark_lora.synthetic.render import render_sample_set

    params = parse_params(_bench_params(steps, resolution))
    cat = load_catalogue()
    render_sample_set(params.paths.incoming, cat, params.sample_data)
    ingest(params, cat, progress=False)
    preprocess(params, cat)
    cache_latents(params)


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM belongs to the address space, so it starts
    afresh at exec; ru_maxrss would carry over the forking parent's peak (Linux keeps it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_mode(cached: bool, steps: int, resolution: int = 64) -> dict:
    """One training run in this process; returns throughput and peak RSS."""
    from landmark_lora.config import parse_params
    from landmark_lora.stages.train import run_training

    raw = _bench_params(steps, resolution)
    raw["train"]["cached_latents"] = cached
    result = run_training(parse_params(raw), export=False, log_mlflow=False)
    return {
        "images_per_sec": round(result.images_per_sec, 3),
        "seconds_per_step": round(result.seconds_per_step, 4),
        "steps": result.steps,
        "peak_rss_mib": peak_rss_mib(),
    }


def cpu_benchmark(steps: int, resolution: int = 64, repeats: int = 3) -> dict:
    """Both modes ``repeats`` times, in alternating order, each in a fresh process; the median
    run of each mode is reported (a shared 2-core machine is noisy)."""
    import statistics

    with tempfile.TemporaryDirectory(prefix="landmark-bench-") as tmp:
        os.chdir(tmp)
        try:
            prepare_workspace(Path(tmp), steps, resolution)
            runs: dict[str, list[dict]] = {"cached": [], "uncached": []}
            for i in range(repeats):
                for mode in ("cached", "uncached") if i % 2 == 0 else ("uncached", "cached"):
                    # This file as a script: the child runs in the temp workspace, not the repository root.
                    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--inner", mode, "--steps",
                                          str(steps), "--resolution", str(resolution)], capture_output=True,
                                         text=True, check=True, env=venv_env())
                    runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        finally:
            os.chdir(REPO)
    results: dict = {"resolution": resolution, "repeats": repeats}
    for mode, rs in runs.items():
        median = statistics.median_low([r["images_per_sec"] for r in rs])
        results[mode] = {**next(r for r in rs if r["images_per_sec"] == median),
                         "all_images_per_sec": [r["images_per_sec"] for r in rs]}
    results["cached_over_uncached"] = round(results["cached"]["images_per_sec"]
                                            / results["uncached"]["images_per_sec"], 2)
    return results


# ---------------------------------------------------------------- GPU


SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}


def _train_step(model, opt, x, t, text) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(x, t, text).sample.float().pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def gpu_benchmark(batches=(8, 16), steps: int = 20, compile_: bool = True) -> list[dict]:
    """SD 1.5-architecture UNet (random weights: speed does not depend on them), 512 px
    (64x64 latents), bf16, LoRA rank 4 on attention, AdamW fused. MFU from counted FLOPs."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from torch.utils.flop_counter import FlopCounterMode

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    rows = []
    for batch in batches:
        unet = UNet2DConditionModel(**SD15_UNET).to("cuda", torch.bfloat16).to(memory_format=torch.channels_last)
        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
        params = [p for p in unet.parameters() if p.requires_grad]
        for p in params:
            p.data = p.data.float()
        opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
        model = torch.compile(unet) if compile_ else unet
        x = torch.randn(batch, 4, 64, 64, device="cuda", dtype=torch.bfloat16).to(memory_format=torch.channels_last)
        text = torch.randn(batch, 77, 768, device="cuda", dtype=torch.bfloat16)
        t = torch.randint(0, 1000, (batch,), device="cuda")

        for _ in range(3):
            _train_step(model, opt, x, t, text)
        with FlopCounterMode(display=False) as counter:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = unet(x, t, text).sample.float().pow(2).mean()
            loss.backward()
        opt.zero_grad(set_to_none=True)
        flops = counter.get_total_flops()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(steps):
            _train_step(model, opt, x, t, text)
        torch.cuda.synchronize()
        per_step = (time.perf_counter() - start) / steps
        achieved = flops / per_step / 1e12
        rows.append({
            "gpu": name, "batch": batch, "images_per_sec": round(batch / per_step, 2),
            "seconds_per_step": round(per_step, 4),
            "peak_vram_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "tflops": round(achieved, 1), "mfu": round(achieved / peak, 3) if peak else None,
            "compile": compile_, "channels_last": True, "fused_adamw": True, "tf32": True,
        })
        del unet, model, opt
        torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------- report


def write_report(cpu_runs: list[dict], gpu: list[dict] | None, command: str) -> dict:
    """The headline ``cached_over_uncached`` is the first resolution asked for (64 px: the
    embedded default); the others show how the gap grows as the VAE's share of a step grows."""
    head = cpu_runs[0]
    report = {"machine": machine(), "command": command, "date": time.strftime("%Y-%m-%d"),
              "cpu": head, "cpu_by_resolution": cpu_runs, "cached_over_uncached": head["cached_over_uncached"],
              "target_cached_over_uncached": 1.5}
    if gpu:
        report["gpu"] = gpu
    (REPO / "reports").mkdir(exist_ok=True)
    (REPO / "reports/bench.json").write_text(json.dumps(report, indent=2) + "\n")
    _write_markdown(report)
    return report


def _write_markdown(report: dict) -> None:
    doc = REPO / "docs/benchmarks.md"
    head = report["cpu"]
    rows = [
        f"Machine: {report['machine']}  ",
        f"Command: `{report['command']}` ({report['date']})  ",
        f"Tiny config, batch 4, {head['cached']['steps']} steps per run, median of {head['repeats']} runs per mode.",
        "",
        "| data.resolution | mode | images/s (median) | s/step | peak RSS (MiB) | all runs, images/s "
        "| cached / uncached |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in report["cpu_by_resolution"]:
        for mode in ("cached", "uncached"):
            r = res[mode]
            ratio = f"**{res['cached_over_uncached']}**" if mode == "cached" else ""
            rows.append(f"| {res['resolution']} | {mode} | {r['images_per_sec']} | {r['seconds_per_step']} | "
                        f"{r['peak_rss_mib']} | {', '.join(map(str, r['all_images_per_sec']))} | {ratio} |")
    verdict = "met" if report["cached_over_uncached"] >= 1.5 else "NOT met"
    rows += ["", f"**cached_over_uncached = {report['cached_over_uncached']}** at {head['resolution']} px "
                 f"(`reports/bench.json`); target >= 1.5: {verdict}."]
    if report.get("gpu"):
        rows += ["", "| GPU | batch | images/s | s/step | peak VRAM (GiB) | TFLOPS | MFU |",
                 "|---|---|---|---|---|---|---|"]
        rows += [f"| {g['gpu']} | {g['batch']} | {g['images_per_sec']} | {g['seconds_per_step']} | "
                 f"{g['peak_vram_gib']} | {g['tflops']} | {g['mfu']} |" for g in report["gpu"]]
    write_block(doc, "cpu", rows)


def write_block(doc: Path, name: str, rows: list[str]) -> None:
    """Replace what lies between ``<!-- bench:NAME:start -->`` and its end marker in ``doc`` (appended
    when the markers are missing); the text around the block is kept as written."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = start + "\n" + "\n".join(rows) + "\n" + end
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text += "\n" + block + "\n"
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--resolution", type=int, nargs="+", default=[64, 128, 256],
                        help="data.resolution values of the tiny config; the first is the headline")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (the median is reported)")
    parser.add_argument("--gpu", action="store_true", help="also benchmark the SD 1.5-size UNet (CUDA)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--inner", choices=("cached", "uncached"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    apply_offline_defaults()
    if args.inner:
        print(json.dumps(run_mode(args.inner == "cached", args.steps, args.resolution[0])))
        return 0
    command = "python -m tools.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    cpu = [cpu_benchmark(args.steps, res, args.repeats) for res in args.resolution]
    gpu = None
    if args.gpu:
        if not torch.cuda.is_available():
            print("bench: --gpu asked but no CUDA device is visible", file=sys.stderr)
            return 2
        gpu = gpu_benchmark(compile_=not args.no_compile)
    report = write_report(cpu, gpu, command.strip())
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
