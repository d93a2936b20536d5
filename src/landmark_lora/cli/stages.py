"""The pipeline's own commands: sample data, ingest, the DVC stages, and the toy-world base build.

    landmark-lora sample-data | ingest | validate | preprocess | cache-latents | train | evaluate
    landmark-lora build-base toyworld --out models/base-toyworld
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landmark_lora.artifacts import Layout
from landmark_lora.cli.common import catalogue_of, log
from landmark_lora.config import Params
from landmark_lora.exitcodes import EXIT_CONTRACT


def cmd_sample_data(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.synthetic.render import render_sample_set

    out = Path(args.out) if args.out else params.paths.incoming
    log.info("sample-data: rendering the synthetic photo set into %s/ ...", out)
    from landmark_lora.catalogue import ANGLES

    catalogue = catalogue_of(params)
    n = render_sample_set(out, catalogue, params.sample_data)
    plates = len(catalogue) * len(ANGLES) * params.sample_data.plates_per_view
    print(f"sample-data: rendered {n} labelled photos ({n - plates} with a person, {plates} background plates) "
          f"into {out}/ (labels in {out}/metadata.csv)")
    return 0


def cmd_ingest(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.retrain.intake import ingest_photos

    ingest_photos(params, log=print, progress=None if not args.no_progress else False, dvc_add=not args.no_dvc_add)
    return 0


def cmd_validate(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.stages.validate import DatasetContractError, validate_dataset

    try:
        outcome = validate_dataset(params.paths.raw, params.paths.reports, params.validation, catalogue_of(params))
    except DatasetContractError as err:
        print(f"validate: FAILED\n{err}", file=sys.stderr)
        return EXIT_CONTRACT
    print(f"validate: dataset contract holds; report {outcome.report_path}, docs {outcome.docs_index}")
    return 0


def cmd_preprocess(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.stages.preprocess import preprocess

    summary = preprocess(params, catalogue_of(params))
    print(summary.describe())
    return 0


def cmd_cache_latents(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.stages.cache_latents import cache_latents

    index = cache_latents(params)
    print(f"cache-latents: encoded {index['images']} images and their captions with base "
          f"'{index['base_model']}' in {index['seconds']} s -> data/latents/")
    return 0


def cmd_train(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.stages.train import launch

    argv = ["--params", args.params] + [x for pair in args.overrides for x in ("--set", pair)]
    return launch(params, argv)


def _num(x: float | None) -> str:
    return f"{x:.2f}" if x is not None else "skipped"


def cmd_evaluate(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.stages.evaluate import evaluate

    m = evaluate(params)
    print(f"evaluate: eval_loss {m['eval_loss']:.4f} (base {m['base']['eval_loss']:.4f}), background_consistency "
          f"{m['background_consistency']:.3f} (base {m['base']['background_consistency']:.3f}), shot_agreement "
          f"{_num(m['shot_agreement'])} (base {_num(m['base']['shot_agreement'])}; "
          f"{(m.get('shot_reader') or {}).get('reader', 'detector')}), clip_score: "
          f"{m['clip_score'] if m['clip_score'] is not None else m['clip_score_status']} "
          f"-> {Layout.of(params).eval_json}")
    section = m.get("composite") or {}
    if section.get("status") == "computed":
        c, t = section["composite"], section["t2i"]
        print(f"  composite on {section['prompts']} prompts: background_consistency {c['background_consistency']:.3f} "
              f"(text-to-image {t['background_consistency']:.3f}), shot_agreement {_num(c['shot_agreement'])} "
              f"(text-to-image {_num(t['shot_agreement'])}), seam score {c['seam_score']:.2f} "
              f"(real photos {section.get('real_seam_score') or float('nan'):.2f})")
    elif section:
        print(f"  composite: {section.get('status')}")
    for name in ("landmark_accuracy", "angle_accuracy", "pose_accuracy"):
        if m.get(name) is not None:
            print(f"  {name} {m[name]:.2f} (base {m['base'][name]:.2f}; "
                  f"calibration {m[name + '_calibration']:.2f})")
        elif str(m.get(name + "_status", "")).startswith("skipped"):
            print(f"  {name}: {m[name + '_status']}")
    return 0


def cmd_build_base(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.toyworld.build import RECIPE, build, compare_with_shipped

    report = build(RECIPE, Path(args.out), Path(args.work))
    same = compare_with_shipped(Path(args.out))
    print(f"build-base: {args.out} (VAE held-out PSNR {report['vae_heldout_psnr_db']} dB, UNet loss "
          f"{report['unet_final_loss']}, {sum(report['times'].values()):.0f} s); "
          + ("identical to the shipped weights (sha256)" if same else
             "weights differ from the shipped sha256 (float rounding differs across CPUs/thread counts); "
             f"use it with --set model.base={args.out}"))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("sample-data", help="render the synthetic labelled photo set")
    p.add_argument("--out", help="folder (default: paths.incoming)")
    p.set_defaults(func=cmd_sample_data)
    p = sub.add_parser("ingest", help="move new photos from the drop folder into raw or quarantine")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-dvc-add", action="store_true", help="skip `dvc add` of the raw folder")
    p.set_defaults(func=cmd_ingest)
    p = sub.add_parser("validate", help="DVC stage: check the dataset contract (Great Expectations)")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("preprocess", help="DVC stage: crop, bucket, caption and split")
    p.set_defaults(func=cmd_preprocess)
    p = sub.add_parser("cache-latents", help="DVC stage: encode images (VAE) and captions (CLIP) once")
    p.set_defaults(func=cmd_cache_latents)
    p = sub.add_parser("train", help="DVC stage: LoRA training with accelerate, logged to MLflow")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", help="DVC stage: base vs adapter metrics, sample grids, MLflow")
    p.set_defaults(func=cmd_evaluate)


def add_build_base(sub) -> None:
    p = sub.add_parser("build-base", help="retrain the shipped toy-world base from its recipe (resumable)")
    p.add_argument("name", choices=["toyworld"])
    p.add_argument("--out", default="models/base-toyworld", help="diffusers folder to write")
    p.add_argument("--work", default=".cache/toyworld-build", help="renders and checkpoints (resume from here)")
    p.set_defaults(func=cmd_build_base)
