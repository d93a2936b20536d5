"""``train.compile`` on the tiny config: compile time (cold and warm cache), step throughput and the
eval-loss effect, against eager and, with ``--script``, diffusers' reference script (never a timed test).

    python -m tools.bench_compile [--steps 30 --repeats 3] [--script /path/to/train_text_to_image_lora.py]

One throwaway workspace (tools.bench's: sample data through cached latents, the tiny base), then
``--repeats`` rounds in rotating order, each run in a fresh process: ours from cached latents eager,
ours from cached latents with ``train.compile: true``, and the reference (tools.bench_reference's run)
when ``--script`` is given. The compiled runs share one inductor cache (``<workspace>/.cache/inductor``,
what ``Layout.inductor_cache`` names): the first compiled run starts from an empty cache (cold), the
later ones reuse it (warm), as the next nightly run does.

Per run: images/s over every step (the trainer's step clock, the same rule as tools.bench_reference),
images/s over the steps after the compiling one(s), the compile step's wall time (``compile_seconds``
in reports/train.json), and eval_loss at the last step (the trainer's held-out loss on the val split,
the same timesteps and seed in every run). Writes ``reports/bench_compile.json`` and the
``bench:compile`` block of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("eager", "compiled", "reference")


def run_ours(compile_: bool, steps: int, resolution: int) -> dict:
    """One training run in this process (cwd: the workspace), with the main thread's CPU time per step."""
    from landmark_lora.config import parse_params
    from landmark_lora.diffusion import trainer
    from landmark_lora.stages.train import run_training
    from tools.bench import _bench_params, peak_rss_mib

    step, cpu = trainer._optimiser_step, []

    def timed(*a, **k):
        c0 = time.thread_time()
        loss = step(*a, **k)
        cpu.append(time.thread_time() - c0)
        return loss

    trainer._optimiser_step = timed  # type: ignore[assignment]
    raw = _bench_params(steps, resolution)
    raw["train"]["compile"] = compile_
    r = run_training(parse_params(raw), export=False, log_mlflow=False)
    batch = raw["train"]["batch_size"]
    return {"images_per_sec": round(r.images_per_sec, 3), "seconds_per_step": round(r.seconds_per_step, 4),
            "images_per_sec_after_compile": round(r.images_per_sec_after_compile, 3) if compile_ else None,
            "compile_seconds": round(r.compile_seconds, 1), "compile_steps": r.compile_steps,
            "eval_loss": r.eval.get("eval_loss"), "final_loss": r.final_loss, "steps": r.steps,
            "peak_rss_mib": peak_rss_mib(),
            # steps 2.. over their CPU time (step 1 compiles, partly in inductor's worker processes)
            "cpu_images_per_sec_after_step_1": round((len(cpu) - 1) * batch / sum(cpu[1:]), 3)}


def _child(mode: str, script: Path | None, ws: Path, steps: int, resolution: int, threads: int) -> dict:
    from landmark_lora.env import venv_env
    from tools import bench_reference

    if mode == "reference":
        assert script is not None
        return bench_reference._child("reference", script, ws, steps, resolution, threads)
    env = venv_env()
    env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, "-m", "tools.bench_compile", "--inner", mode, "--steps", str(steps),
           "--resolution", str(resolution)]
    done = subprocess.run(cmd, check=False, cwd=ws, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(script: Path | None, steps: int, resolution: int, repeats: int, threads: int,
            seed_cache: Path | None = None) -> dict:
    from tools.bench_reference import workspace

    modes = MODES if script else MODES[:2]
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    with workspace(steps, resolution) as ws:
        if seed_cache is not None:  # start warm: a copy of an earlier run's kernels
            shutil.copytree(seed_cache, ws / ".cache" / "inductor", dirs_exist_ok=True)
        for i in range(repeats):
            for mode in modes[i % len(modes):] + modes[:i % len(modes)]:
                t0 = time.perf_counter()
                runs[mode].append({**_child(mode, script, ws, steps, resolution, threads),
                                   "process_seconds": round(time.perf_counter() - t0, 1),
                                   "load_average": [round(x, 2) for x in os.getloadavg()]})
                print(f"bench-compile: {mode} run {i + 1}: {json.dumps(runs[mode][-1])}", file=sys.stderr)
    out: dict = {"runs": runs}
    for mode, rs in runs.items():
        out[mode] = {"images_per_sec": statistics.median_low([r["images_per_sec"] for r in rs])}
    comp = runs["compiled"]
    out["compiled"]["images_per_sec_after_compile"] = statistics.median_low(
        [r["images_per_sec_after_compile"] for r in comp])
    out["compile_seconds_first"] = comp[0]["compile_seconds"]  # cold, unless --seed-cache
    out["compile_seconds_later"] = [r["compile_seconds"] for r in comp[1:]]
    out["seed_cache"] = str(seed_cache) if seed_cache else None
    out["eval_loss"] = {m: [r["eval_loss"] for r in runs[m]] for m in ("eager", "compiled")}
    for mode, rs in runs.items():  # per CPU-second: what other processes on the cores inflate least
        key = "cpu_images_per_sec" if mode == "reference" else "cpu_images_per_sec_after_step_1"
        out[mode]["cpu_images_per_sec"] = statistics.median_low([r[key] for r in rs])
    cpu = {m: out[m]["cpu_images_per_sec"] for m in runs}
    out["cpu_compiled_over_eager"] = round(cpu["compiled"] / cpu["eager"], 2)
    if script:
        out["cpu_eager_over_reference"] = round(cpu["eager"] / cpu["reference"], 2)
        out["cpu_compiled_over_reference"] = round(cpu["compiled"] / cpu["reference"], 2)
    eager = out["eager"]["images_per_sec"]
    out["compiled_after_compile_over_eager"] = round(out["compiled"]["images_per_sec_after_compile"] / eager, 2)
    if script:
        ref = out["reference"]["images_per_sec"]
        out["eager_over_reference"] = round(eager / ref, 2)
        out["compiled_over_reference"] = round(out["compiled"]["images_per_sec"] / ref, 2)
        out["compiled_after_compile_over_reference"] = round(out["compiled"]["images_per_sec_after_compile"] / ref, 2)
    return out


def write_report(result: dict, command: str, steps: int, resolution: int, load: list[float],
                 load_end: list[float] | None = None, date: str | None = None) -> dict:
    from tools.bench import machine, write_block

    report = {"machine": machine(), "command": command,
              "date": date or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average_start": load,
              "load_average_end": load_end or [round(x, 2) for x in os.getloadavg()],
              "steps": steps, "resolution": resolution, **result}
    (REPO / "reports").mkdir(exist_ok=True)
    (REPO / "reports/bench_compile.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = [f"Machine: {report['machine']}; load average {load} at the start, {report['load_average_end']} at the end  ",
            f"Command: `{command}` ({report['date']}); tiny config, {resolution} px, batch 4, rank 4, {steps} steps, "
            "1 torch thread.", "",
            "| run | mode | images/s, all steps | images/s after the compile step | images per CPU-second, steps 2.. "
            "| compile step (s) | eval_loss | process wall (s) | load average after |",
            "|---|---|---|---|---|---|---|---|---|"]
    for mode, rs in result["runs"].items():
        for i, r in enumerate(rs):
            cold = i == 0 and not result.get("seed_cache")
            cache = (" (cold cache)" if cold else " (warm cache)") if mode == "compiled" else ""
            rows.append(f"| {i + 1} | {mode}{cache} | {r['images_per_sec']} | {r.get('images_per_sec_after_compile') or ''} "
                        f"| {r.get('cpu_images_per_sec_after_step_1', r.get('cpu_images_per_sec', ''))} | {r.get('compile_seconds', '') if mode == 'compiled' else ''} | {r.get('eval_loss', '')} "
                        f"| {r['process_seconds']} | {r['load_average'][0]} |")
    cpu = {m: result[m]["cpu_images_per_sec"] for m in result["runs"]}
    rows += ["", "Medians per CPU-second (steps 2.. for ours, every step for the reference): "
                 + ", ".join(f"{m} {v}" for m, v in cpu.items())
                 + f"; compiled / eager **{result['cpu_compiled_over_eager']}x**"
                 + (f", eager / reference **{result['cpu_eager_over_reference']}x**, compiled / reference "
                    f"**{result['cpu_compiled_over_reference']}x**." if "reference" in result else ".")]
    rows += [f"Wall-clock medians: eager {result['eager']['images_per_sec']} images/s; compiled "
                 f"{result['compiled']['images_per_sec']} over every step, "
                 f"{result['compiled']['images_per_sec_after_compile']} after the compile step "
                 f"(**{result['compiled_after_compile_over_eager']}x eager**)."]
    if "reference" in result:
        rows += [f"Reference {result['reference']['images_per_sec']} images/s: eager "
                 f"**{result['eager_over_reference']}x**, compiled over every step (compile included) "
                 f"**{result['compiled_over_reference']}x**, compiled after the compile step "
                 f"**{result['compiled_after_compile_over_reference']}x**."]
    write_block(REPO / "docs/benchmarks.md", "compile", rows)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_compile")
    parser.add_argument("--script", type=Path, default=None, help="diffusers' train_text_to_image_lora.py")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed-cache", type=Path, default=None,
                        help="start from a copy of this inductor cache (warm) instead of an empty one")
    parser.add_argument("--inner", choices=("eager", "compiled"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from landmark_lora.env import apply_offline_defaults

    apply_offline_defaults()
    if args.inner:
        print(json.dumps(run_ours(args.inner == "compiled", args.steps, args.resolution)))
        return 0
    if args.script is not None and not args.script.is_file():
        print(f"bench-compile: --script {args.script}: no such file", file=sys.stderr)
        return 2
    command = "python -m tools.bench_compile " + " ".join(argv if argv is not None else sys.argv[1:])
    load = [round(x, 2) for x in os.getloadavg()]
    result = compare(args.script, args.steps, args.resolution, args.repeats, args.threads, args.seed_cache)
    print(json.dumps(write_report(result, command.strip(), args.steps, args.resolution, load), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
