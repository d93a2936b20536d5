"""The nightly run's fixed overhead: three `landmark-lora run`s in a scratch clone (never a timed test).

    make bench-nightly                       # = python -m tools.bench_nightly (from the repository root)
    python -m tools.bench_nightly --steps 10 --prompts 2 --no-profile     # without the import profile

In a fresh copy of this checkout (its own git repo, DVC store, MLflow store and PREFECT_HOME), with
params.yaml as shipped except a small training and evaluation (``--steps`` training steps,
``--prompts`` evaluation prompts: the target leaves the loops out anyway):

1. ``first``: ``landmark-lora run`` on the empty workspace (renders the sample set, ingests, the
   whole DVC pipeline, promotes version 1); the Prefect database is created here.
2. ``new-photos``: 3 new photos dropped into data/incoming/ (their mtime an hour back, as photos
   dropped during the day are when the nightly run starts), then ``landmark-lora run`` again:
   ingest, every DVC stage again, promote (which rescores the champion on the new val data).
3. ``skip``: ``landmark-lora run`` with nothing new: the skip path.

Each run's wall time is the command's, from outside. Its loops are what the trainer and the
scorer timed themselves: ``loop_seconds`` in reports/train.json (the training loop: steps, their
periodic eval, checkpoints) and ``seconds.generation_loops`` in reports/eval.json and, when
promote scored the champion again, in reports/promotion.json (image generation: base, adapter,
composite). **overhead = wall - training loop - generation loops**; targets: <= 30 s for
``new-photos``, <= 10 s for ``skip`` (on 2 idle cores). The per-phase times are the run's own
(reports/retrain.json). With ``--profile`` (default) each stage command then runs once more
under ``python -X importtime`` to show which heavy packages it imports and what that costs.

Writes ``reports/bench_nightly.json`` and the ``nightly`` blocks of ``docs/benchmarks.md``.
The 1-minute load average is recorded before each run: on a shared machine the numbers move with it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from landmark_lora.env import apply_offline_defaults, venv_env
from tests.helpers.workspace import commit_all, copy_checkout
from tools.bench import machine, write_block

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "landmark-lora")
TARGETS = {"new-photos": 30.0, "skip": 10.0}
HEAVY = ("torch", "diffusers", "transformers", "great_expectations", "mlflow", "prefect", "pandas", "cv2",
         "accelerate", "peft", "sklearn", "dvc")
# The stage commands profiled with -X importtime, after the three runs (the workspace is complete then).
PROFILED = ("validate", "preprocess", "cache-latents", "train", "evaluate")


def small_params(steps: int, prompts: int) -> dict:
    """params.yaml as shipped, with a short training and evaluation."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["train"]["max_steps"] = steps
    raw["eval"]["max_prompts"] = prompts
    return raw


def make_workspace(root: Path, steps: int, prompts: int) -> Path:
    ws = copy_checkout(root / "ws")
    (ws / "params.yaml").write_text(yaml.safe_dump(small_params(steps, prompts), sort_keys=False), encoding="utf-8")
    return commit_all(ws)


def bench_env(root: Path) -> dict[str, str]:
    """This venv first on PATH, offline, a Prefect home of its own, the workspace's own stores."""
    env = {k: v for k, v in venv_env().items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING", "DVC_"))}
    env["PREFECT_HOME"] = str(root / "prefect-home")
    return dict(apply_offline_defaults(env))


def drop_new_photos(ws: Path, count: int = 3, age_s: float = 3600) -> list[str]:
    """``count`` new sample-world photos (variants the sample set never rendered) with their labels."""
    from landmark_lora.catalogue import ANGLES, load_catalogue
    from landmark_lora.config import load_params
    from landmark_lora.synthetic.photo import render_photo

    params = load_params(ws / "params.yaml")
    catalogue = load_catalogue()
    slug = sorted(catalogue)[0]
    incoming = ws / params.paths.incoming
    rows, names = [], []
    for i in range(count):
        angle, shot, pose = ANGLES[i % len(ANGLES)], "upper_body", "waving"
        name = f"{slug}/bench_new_{i}.jpg"
        buf = io.BytesIO()
        render_photo(catalogue[slug], angle, shot, pose, 100 + i, params.sample_data).save(buf, "JPEG", quality=92)
        (incoming / slug).mkdir(parents=True, exist_ok=True)
        (incoming / name).write_bytes(buf.getvalue())
        rows.append(f"{name},{shot},{angle},{pose}")
        names.append(name)
    (incoming / "metadata.csv").write_text("file,shot,angle,pose\n" + "\n".join(rows) + "\n", encoding="utf-8")
    past = time.time() - age_s
    for path in [incoming / "metadata.csv", *(incoming / n for n in names)]:
        os.utime(path, (past, past))
    return names


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def loops_of(ws: Path, retrain: dict) -> dict[str, float]:
    """The loops of this run, as the trainer and the scorer timed them (0 for what did not run)."""
    timings = retrain.get("timings") or {}
    train = _read(ws / "reports/train.json") if "dvc:train" in timings else {}
    evaluation = _read(ws / "reports/eval.json") if "dvc:evaluate" in timings else {}
    champion = ((_read(ws / "reports/promotion.json").get("previous_champion") or {}) if retrain.get("decision")
                else {})
    rescore = (champion.get("metrics") or {}).get("seconds") or {} if champion.get("rescored") else {}
    return {"training": float(train.get("loop_seconds") or 0.0),
            "generation_evaluate": float((evaluation.get("seconds") or {}).get("generation_loops") or 0.0),
            "generation_promote": float(rescore.get("generation_loops") or 0.0),
            "evaluate_parts": evaluation.get("seconds") or {}, "promote_rescore_parts": rescore}


def run_once(name: str, ws: Path, env: dict[str, str], expect: str) -> dict:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = subprocess.run([CLI, "run"], cwd=ws, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    retrain = _read(ws / "reports/retrain.json")
    if out.returncode != 0 or retrain.get("status") != expect:
        raise SystemExit(f"bench-nightly: run '{name}' ended with exit {out.returncode}, status "
                         f"{retrain.get('status')!r} (expected {expect!r}):\n{(out.stdout + out.stderr)[-4000:]}")
    loops = loops_of(ws, retrain)
    loop_s = loops["training"] + loops["generation_evaluate"] + loops["generation_promote"]
    return {"run": name, "status": retrain["status"], "wall_s": round(wall, 2), "loops_s": round(loop_s, 2),
            "overhead_s": round(wall - loop_s, 2), "target_overhead_s": TARGETS.get(name), "load_1min": round(load, 2),
            "timings": retrain.get("timings") or {}, "loops": loops, "stages_run": retrain.get("stages_run")}


# ---------------------------------------------------------------- where the overhead goes


def parse_importtime(stderr: str) -> dict:
    """Seconds of all imports (top level) and the cumulative import time of each HEAVY package
    (a package imported inside another is counted in both)."""
    total, heavy = 0.0, {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _self, cumulative, name = line[len("import time:"):].split("|")
        if cumulative.strip().isdigit():
            us = int(cumulative)
            if not name.startswith("  "):
                total += us / 1e6
            pkg = name.strip()
            if pkg in HEAVY:
                heavy[pkg] = max(heavy.get(pkg, 0.0), round(us / 1e6, 2))
    return {"imports_s": round(total, 2), "packages_s": heavy}


def profile_command(args: list[str], ws: Path, env: dict[str, str]) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "landmark_lora.cli", *args], cwd=ws, env=env,
                         capture_output=True, text=True, check=False)
    row = {"command": "landmark-lora " + " ".join(args), "wall_s": round(time.perf_counter() - t0, 2),
           "exit": out.returncode, **parse_importtime(out.stderr)}
    return row


def profile(ws: Path, env: dict[str, str]) -> list[dict]:
    """The skip path and each stage command once more, under -X importtime. The stages last: run
    outside DVC, they leave outputs that dvc.lock does not know (the workspace is thrown away)."""
    rows = [profile_command(["--help"], ws, env), profile_command(["run"], ws, env)]
    rows += [profile_command([stage], ws, env) for stage in PROFILED]
    return rows


# ---------------------------------------------------------------- report


def write_report(report: dict, out: Path = REPO / "reports/bench_nightly.json", doc: Path | None = None) -> None:
    """``out`` (JSON) and, unless ``doc`` is None, its tables in the ``nightly`` blocks of ``doc``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if doc is not None:
        write_tables(report, doc)


def write_tables(report: dict, doc: Path) -> None:
    runs = report["runs"]
    rows = [f"Machine: {report['machine']}  ",
            f"Command: `{report['command']}` ({report['date']}); train.max_steps {report['steps']}, "
            f"eval.max_prompts {report['prompts']}, params.yaml otherwise as shipped.",
            "",
            "| run | status | 1-min load | wall (s) | training loop (s) | generation loops (s) | **overhead (s)** "
            "| target (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        gen = r["loops"]["generation_evaluate"] + r["loops"]["generation_promote"]
        verdict = "" if r["target_overhead_s"] is None else (
            f"{r['target_overhead_s']:.0f} ({'met' if r['overhead_s'] <= r['target_overhead_s'] else 'NOT met'})")
        rows.append(f"| {r['run']} | {r['status']} | {r['load_1min']} | {r['wall_s']:.1f} | "
                    f"{r['loops']['training']:.1f} | {gen:.1f} | **{r['overhead_s']:.1f}** | {verdict} |")
    phases = list(dict.fromkeys(k for r in runs for k in r["timings"]))
    rows += ["", "Per phase (the run's own reports/retrain.json; `dvc` is DVC's own time around the stages):", "",
             "| phase | " + " | ".join(r["run"] for r in runs) + " |", "|---|" + "---|" * len(runs)]
    rows += [f"| {p} | " + " | ".join(f"{r['timings'][p]:.1f}" if p in r["timings"] else "" for r in runs) + " |"
             for p in phases]
    write_block(doc, "nightly", rows)
    if report.get("profile"):
        cols = ("torch", "diffusers", "peft", "transformers", "great_expectations", "mlflow", "prefect", "pandas")
        prof = ["| command (python -X importtime) | wall (s) | all imports (s) | " + " | ".join(cols) + " |",
                "|---|---|---|" + "---|" * len(cols)]
        prof += [f"| `{p['command']}` | {p['wall_s']:.1f} | {p['imports_s']:.1f} | "
                 + " | ".join(f"{p['packages_s'][c]:.1f}" if c in p["packages_s"] else "–" for c in cols) + " |"
                 for p in report["profile"]]
        write_block(doc, "nightly-imports", prof)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_nightly")
    parser.add_argument("--steps", type=int, default=10, help="train.max_steps of the scratch workspace")
    parser.add_argument("--prompts", type=int, default=2, help="eval.max_prompts of the scratch workspace")
    parser.add_argument("--no-profile", action="store_true", help="skip the -X importtime profile of each stage")
    parser.add_argument("--keep", help="build the workspace in this folder and keep it (default: a temp folder)")
    parser.add_argument("--json", default=str(REPO / "reports/bench_nightly.json"), help="where the results go")
    parser.add_argument("--no-doc", action="store_true", help="leave docs/benchmarks.md as it is")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the docs/benchmarks.md tables from this JSON")
    args = parser.parse_args(argv)
    doc = None if args.no_doc else REPO / "docs/benchmarks.md"
    if args.render:
        write_tables(json.loads(Path(args.render).read_text(encoding="utf-8")), REPO / "docs/benchmarks.md")
        return 0
    apply_offline_defaults()
    command = "python -m tools.bench_nightly " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"machine": machine(), "command": command.strip(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "steps": args.steps, "prompts": args.prompts, "runs": [], "profile": [],
              "overhead_definition": "wall time of `landmark-lora run` minus train.json loop_seconds minus the "
                                     "generation loops (eval.json and promote's rescoring seconds.generation_loops)"}
    with tempfile.TemporaryDirectory(prefix="landmark-nightly-") as tmp:
        root = Path(args.keep).resolve() if args.keep else Path(tmp)
        ws, env = make_workspace(root, args.steps, args.prompts), bench_env(root)
        for name, expect in (("first", "trained"), ("new-photos", "trained"), ("skip", "skipped")):
            if name == "new-photos":
                drop_new_photos(ws)
            report["runs"].append(run_once(name, ws, env, expect))
            write_report(report, Path(args.json), doc)  # after each run: a bench that stops leaves what it measured
        if not args.no_profile:
            report["profile"] = profile(ws, env)
            write_report(report, Path(args.json), doc)
    print(json.dumps({r["run"]: {k: r[k] for k in ("status", "wall_s", "loops_s", "overhead_s", "load_1min")}
                      for r in report["runs"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
