"""Our trainer against diffusers' reference LoRA script, same base, data and settings (never a timed test).

    make bench-reference REFERENCE_SCRIPT=/path/to/train_text_to_image_lora.py
    python -m tools.bench_reference --script /path/to/train_text_to_image_lora.py [--steps 30 --repeats 3]

The reference script is never vendored and nothing is fetched at run time: obtain it once, at the
commit this comparison was made with (``REFERENCE_COMMIT``), e.g.

    git clone https://github.com/huggingface/diffusers && git -C diffusers checkout 58eb52c080
    # or: curl -LO https://raw.githubusercontent.com/huggingface/diffusers/58eb52c0803ea9af3abec60841c2a093bdf1f951/examples/text_to_image/train_text_to_image_lora.py

What runs: one throwaway workspace (tools.bench.prepare_workspace: sample data -> ingest ->
preprocess -> cached latents, and the tiny base saved in diffusers layout under models/base-tiny).
Then, ``--repeats`` times in rotating order, each in a fresh process with the same torch thread count:
our trainer from cached latents, our trainer encoding every step, and the reference script
(plain ``python``, in-process via runpy, ``--mixed_precision no``) on data/processed/train as an
``imagefolder`` (its metadata.jsonl: file_name, text), at ``--resolution 64 --center_crop``, batch 4,
rank 4, the same lr, warm-up, cosine schedule, SNR gamma, noise offset, grad-norm clip and seed.

Timing, steps only, the same rule on both sides: ours is the trainer's own step clock (each
optimiser step, its batch gathering or encoding included; eval and checkpoints excluded). The
reference's is its ``Steps`` progress bar: ``tqdm.auto.tqdm`` is swapped, in that process only, for
a subclass that records ``time.perf_counter()`` when the bar is made (just before the first batch is
loaded) and at every ``update`` (after each optimiser step); steps time = last - first, so image
loading, transforms, the VAE and text encoder are in it, model loading, dataset scanning and the
final LoRA save are not. images/s = steps x batch / steps time. Beside it, images per CPU-second:
the same steps over the main thread's CPU time (``time.thread_time``; one torch thread and no
loader workers, so the step's work is on that thread), which a loaded machine inflates far less
than wall time.

The reference imports torchvision, whose newest wheel in the package index (0.29.1) does not load beside torch
2.13.0+cpu; its process gets ``tools/reference_transforms.py`` (a minimal ``torchvision.transforms``)
registered as ``torchvision.transforms`` (``use_transforms_shim``); nothing else ever sees it. It
needs ``datasets`` (the ``bench`` extra: ``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE_COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"
REFERENCE_PATH = "examples/text_to_image/train_text_to_image_lora.py"
MODES = ("ours_cached", "ours_uncached", "reference")
HOW_TO_GET = (f"get it with `git clone https://github.com/huggingface/diffusers && git -C diffusers checkout "
              f"{REFERENCE_COMMIT[:10]}` (then pass diffusers/{REFERENCE_PATH}), or `curl -LO https://raw."
              f"githubusercontent.com/huggingface/diffusers/{REFERENCE_COMMIT}/{REFERENCE_PATH}`")


def reference_args(ws: Path, steps: int, resolution: int) -> list[str]:
    """The reference script's arguments matching tools.bench's tiny config (config.py's defaults)."""
    from landmark_lora.config import parse_params
    from tools.bench import _bench_params

    p = parse_params(_bench_params(steps, resolution))
    t = p.train
    return [
        "--pretrained_model_name_or_path", str(ws / "models" / "base-tiny"),
        "--train_data_dir", str(ws / "data" / "processed" / "train"),
        "--image_column", "image", "--caption_column", "text", "--cache_dir", str(ws / "hf-datasets"),
        "--resolution", str(resolution), "--center_crop",
        "--train_batch_size", str(t.batch_size), "--max_train_steps", str(steps), "--rank", str(p.lora.rank),
        "--learning_rate", str(t.learning_rate), "--lr_scheduler", "cosine", "--lr_warmup_steps", str(t.warmup_steps),
        "--adam_beta1", str(t.adam_beta1), "--adam_beta2", str(t.adam_beta2),
        "--adam_weight_decay", str(t.weight_decay), "--max_grad_norm", str(t.max_grad_norm),
        "--snr_gamma", str(t.min_snr_gamma), "--noise_offset", str(t.noise_offset), "--seed", str(t.seed),
        "--mixed_precision", "no", "--dataloader_num_workers", str(t.num_workers),
        "--checkpointing_steps", "1000000", "--output_dir", str(ws / "reference-out"),
        "--report_to", "tensorboard",  # not installed here: accelerate skips an unavailable tracker
    ]


def use_transforms_shim() -> None:
    """Register tools/reference_transforms.py as ``torchvision.transforms`` (this process only),
    after the libraries that probe for torchvision have looked and cached "not installed"."""
    import types

    import datasets  # noqa: F401  (probes torchvision at import)
    import diffusers  # noqa: F401
    import peft  # noqa: F401
    import transformers.utils.import_utils as tiu

    tiu.is_torchvision_available()  # lru-cached: False from here on
    from tools import reference_transforms

    package = types.ModuleType("torchvision")
    package.transforms = reference_transforms  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.transforms"] = package, reference_transforms


def run_reference(script: Path, args: list[str], threads: int, profile: bool = False) -> dict:
    """In this process: the reference script under runpy, its ``Steps`` bar timed (module docstring);
    with ``profile``, cProfile over its steps after the warm-up instead (tools.profile_steps)."""
    import runpy

    import torch
    import tqdm.auto

    from tools.bench import peak_rss_mib
    from tools.profile_steps import REFERENCE, StepProfiler

    prof = StepProfiler(int(args[args.index("--max_train_steps") + 1]), REFERENCE)

    torch.set_num_threads(threads)
    use_transforms_shim()
    stamps: list[float] = []
    cpu: list[float] = []  # this thread's CPU time at the same moments

    class TimedBar(tqdm.auto.tqdm):  # type: ignore[misc, name-defined]
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self._timed = k.get("desc") == "Steps"
            if self._timed:
                stamps.append(time.perf_counter())
                cpu.append(time.thread_time())

        def update(self, n=1):
            out = super().update(n)
            if self._timed:
                stamps.append(time.perf_counter())
                cpu.append(time.thread_time())
                if profile:
                    prof.step_finished()
            return out

    tqdm.auto.tqdm = TimedBar  # type: ignore[misc]
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name="__main__")
    steps = len(stamps) - 1
    if steps < 1:
        raise RuntimeError(f"{script}: no 'Steps' progress bar updates were seen; is it {REFERENCE_PATH}?")
    if profile:
        return prof.result()
    batch = int(args[args.index("--train_batch_size") + 1])
    seconds = stamps[-1] - stamps[0]
    return {"images_per_sec": round(steps * batch / seconds, 3), "seconds_per_step": round(seconds / steps, 4),
            "cpu_images_per_sec": round(steps * batch / (cpu[-1] - cpu[0]), 3), "steps": steps,
            "peak_rss_mib": peak_rss_mib()}


def run_ours(cached: bool, steps: int, resolution: int) -> dict:
    """In this process: tools.bench's run of our trainer, plus the main thread's CPU time over its
    optimiser steps (``cpu_images_per_sec``, the same measure as the reference's)."""
    from landmark_lora.diffusion import trainer
    from tools.bench import _bench_params, run_mode

    step, cpu = trainer._optimiser_step, [0.0, 0]

    def timed(*a, **k):
        c0 = time.thread_time()
        loss = step(*a, **k)
        cpu[0] += time.thread_time() - c0
        cpu[1] += 1
        return loss

    trainer._optimiser_step = timed  # type: ignore[assignment]
    out = run_mode(cached, steps, resolution)
    batch = _bench_params(steps, resolution)["train"]["batch_size"]
    return {**out, "cpu_images_per_sec": round(cpu[1] * batch / cpu[0], 3)}


def _child(mode: str, script: Path, ws: Path, steps: int, resolution: int, threads: int,
           profile: bool = False) -> dict:
    from landmark_lora.env import venv_env

    env = venv_env()
    env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if mode == "reference":
        cmd = [sys.executable, "-m", "tools.bench_reference", "--inner-reference", "--script", str(script),
               "--steps", str(steps), "--resolution", str(resolution), "--threads", str(threads)]
        cmd += ["--profile"] * profile
    elif profile:
        cmd = [sys.executable, "-m", "tools.profile_steps", mode.removeprefix("ours_"), "--steps", str(steps),
               "--resolution", str(resolution)]
    else:  # tools.bench's inner run of our trainer (train.threads from the config: 1), CPU time added
        cmd = [sys.executable, "-m", "tools.bench_reference", "--inner-ours", mode.removeprefix("ours_"),
               "--steps", str(steps), "--resolution", str(resolution)]
    done = subprocess.run(cmd, check=False, cwd=ws, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextmanager
def workspace(steps: int, resolution: int) -> Iterator[Path]:
    """tools.bench's throwaway workspace: sample data through cached latents, and the tiny base."""
    from tools.bench import prepare_workspace

    with tempfile.TemporaryDirectory(prefix="landmark-bench-ref-") as tmp:
        ws = Path(tmp)
        cwd = Path.cwd()
        os.chdir(ws)
        try:
            prepare_workspace(ws, steps, resolution)
        finally:
            os.chdir(cwd)
        yield ws


def profile_all(script: Path, steps: int, resolution: int, threads: int, command: str) -> dict:
    """One cProfiled run per mode; writes reports/profile_steps.json and the profile block."""
    from tools.bench import machine, write_block
    from tools.profile_steps import markdown

    load = [round(x, 2) for x in os.getloadavg()]
    with workspace(steps, resolution) as ws:
        results = {mode: _child(mode, script, ws, steps, resolution, threads, profile=True) for mode in MODES}
    report = {"machine": machine(), "command": command, "date": time.strftime("%Y-%m-%d"),
              "load_average_start": load, "load_average_end": [round(x, 2) for x in os.getloadavg()],
              "threads": threads, **results}
    (REPO / "reports").mkdir(exist_ok=True)
    (REPO / "reports/profile_steps.json").write_text(json.dumps(report, indent=2) + "\n")
    write_block(REPO / "docs/benchmarks.md", "profile", [
        f"Machine: {report['machine']}; load average {load} at the start, {report['load_average_end']} at the end  ",
        f"Command: `{command}` ({report['date']}); {threads} torch thread(s), {resolution} px, batch 4, rank 4.",
        *markdown(results)])
    return report


def compare(script: Path, steps: int, resolution: int, repeats: int, threads: int) -> dict:
    """Every mode ``repeats`` times, rotating the order, each in a fresh process; medians reported."""
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with workspace(steps, resolution) as ws:
        for i in range(repeats):
            for mode in MODES[i % 3:] + MODES[:i % 3]:
                runs[mode].append(_child(mode, script, ws, steps, resolution, threads))
                print(f"bench-reference: {mode} run {i + 1}: {runs[mode][-1]['images_per_sec']} images/s",
                      file=sys.stderr)
    out: dict = {}
    for mode, rs in runs.items():
        median = statistics.median_low([r["images_per_sec"] for r in rs])
        out[mode] = {**next(r for r in rs if r["images_per_sec"] == median),
                     "all_images_per_sec": [r["images_per_sec"] for r in rs],
                     "median_cpu_images_per_sec": statistics.median_low([r["cpu_images_per_sec"] for r in rs])}
    ref = out["reference"]["images_per_sec"]
    out["cached_over_reference"] = round(out["ours_cached"]["images_per_sec"] / ref, 2)
    out["uncached_over_reference"] = round(out["ours_uncached"]["images_per_sec"] / ref, 2)
    ref_cpu = out["reference"]["median_cpu_images_per_sec"]
    for mode in ("cached", "uncached"):
        out[f"cpu_{mode}_over_reference"] = round(out[f"ours_{mode}"]["median_cpu_images_per_sec"] / ref_cpu, 2)
    return out


def write_report(result: dict, script: Path, command: str, threads: int, steps: int, resolution: int,
                 load: dict) -> dict:
    from tools.bench import machine, write_block

    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    report = {"machine": machine(), "command": command, "date": time.strftime("%Y-%m-%d"),
              "reference_script": {"path": REFERENCE_PATH, "commit": REFERENCE_COMMIT, "sha256": digest},
              "settings": {"resolution": resolution, "batch": 4, "rank": 4, "steps": steps, "torch_threads": threads},
              "load_average": load, **result,
              "targets": {"cached_over_reference": 2.0, "uncached_over_reference": 1.0}}
    (REPO / "reports").mkdir(exist_ok=True)
    (REPO / "reports/bench_reference.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = [
        f"Machine: {report['machine']}; load average {load['start']} at the start, {load['end']} at the end  ",
        f"Command: `{command}` ({report['date']})  ",
        f"Reference: diffusers `{REFERENCE_PATH}` at {REFERENCE_COMMIT[:10]} (sha256 {digest[:12]}), "
        f"{resolution} px, batch 4, rank 4, {steps} steps, {threads} torch thread(s), median of "
        f"{len(result['reference']['all_images_per_sec'])} runs per mode.",
        "",
        "| trainer | images/s (median) | s/step | peak RSS (MiB) | all runs, images/s | / reference "
        "| images per CPU-second (median) | / reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"ours_cached": "ours, cached latents", "ours_uncached": "ours, encoding every step",
             "reference": "reference script (encodes every step)"}
    ratios = {"ours_cached": result["cached_over_reference"], "ours_uncached": result["uncached_over_reference"],
              "reference": 1.0}
    cpu_ratios = {"ours_cached": result["cpu_cached_over_reference"],
                  "ours_uncached": result["cpu_uncached_over_reference"], "reference": 1.0}
    for mode in MODES:
        r = result[mode]
        rows.append(f"| {names[mode]} | {r['images_per_sec']} | {r['seconds_per_step']} | {r['peak_rss_mib']} | "
                    f"{', '.join(map(str, r['all_images_per_sec']))} | **{ratios[mode]}** | "
                    f"{r['median_cpu_images_per_sec']} | {cpu_ratios[mode]} |")
    met = lambda ok: "met" if ok else "NOT met"
    rows += ["", f"Targets: cached >= 2x reference: {met(result['cached_over_reference'] >= 2)}; "
                 f"encoding every step >= 1x reference: {met(result['uncached_over_reference'] >= 1)}."]
    write_block(REPO / "docs/benchmarks.md", "reference", rows)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_reference")
    parser.add_argument("--script", type=Path, default=os.environ.get("REFERENCE_SCRIPT") or None,
                        help=f"a local copy of diffusers' {REFERENCE_PATH} (or $REFERENCE_SCRIPT)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every run (train.threads: 1)")
    parser.add_argument("--profile", action="store_true",
                        help="instead: cProfile one run per mode, phases in docs/benchmarks.md (tools.profile_steps)")
    parser.add_argument("--inner-reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inner-ours", choices=("cached", "uncached"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from landmark_lora.env import apply_offline_defaults

    apply_offline_defaults()
    if args.inner_ours:
        print(json.dumps(run_ours(args.inner_ours == "cached", args.steps, args.resolution)))
        return 0
    if args.script is None or not Path(args.script).is_file():
        print(f"bench-reference: no reference script at {args.script!r}: {HOW_TO_GET}; then pass "
              "--script PATH (make bench-reference REFERENCE_SCRIPT=PATH)", file=sys.stderr)
        return 2
    script = Path(args.script).resolve()
    if args.inner_reference:
        print(json.dumps(run_reference(script, reference_args(Path.cwd(), args.steps, args.resolution),
                                       args.threads, args.profile)))
        return 0
    command = "python -m tools.bench_reference " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.profile:
        print(json.dumps(profile_all(script, args.steps, args.resolution, args.threads, command.strip()), indent=2))
        return 0
    load = {"start": [round(x, 2) for x in os.getloadavg()]}
    result = compare(script, args.steps, args.resolution, args.repeats, args.threads)
    load["end"] = [round(x, 2) for x in os.getloadavg()]
    report = write_report(result, script, command.strip(), args.threads, args.steps, args.resolution, load)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
