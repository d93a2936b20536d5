"""What reads or changes the MLflow registry, and DVC experiments.

    landmark-lora promote [--rollback] | reproduce VERSION | report | generate ... | exp -S k=v
"""

from __future__ import annotations

import argparse
import sys

from landmark_lora.artifacts import Layout
from landmark_lora.config import Params
from landmark_lora.exitcodes import EXIT_USAGE


def cmd_promote(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.ops.promote import promote, rollback

    if args.rollback and args.force:
        print("landmark-lora promote: --force and --rollback do not go together", file=sys.stderr)
        return EXIT_USAGE
    if args.rollback:
        report = rollback(params, args.reason or "manual rollback")
        print(f"promote: rolled back: champion is now version {report['champion']} (was {report['from_version']})")
        return 0
    report = promote(params, force=args.force, allow_unreproducible=args.allow_unreproducible)
    print(f"promote: {report['decision']} version {report['challenger']['version']}: {report['reason']}\n"
          f"  champion: version {report['champion']} of '{report['registered_model']}' "
          f"({Layout.of(params).promotion_json})")
    return 0


def cmd_reproduce(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.ops.reproduce import ReproduceError, format_report, reproduce

    try:
        result = reproduce(params, args.version, keep=args.keep)
    except ReproduceError as err:
        print(f"reproduce: {err}", file=sys.stderr)
        return 1
    print(format_report(result))
    return 0 if result.ok else 1


def cmd_exp(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.retrain.experiments import ExperimentBaselineError, check_baseline, run_experiment

    dvc_args = (["--queue"] if args.queue else []) + (["--name", args.name] if args.name else [])
    dvc_args += [a for kv in args.set_param for a in ("-S", kv)]
    try:
        if args.check:
            check_baseline()
            print("exp: the git baseline holds every .dvc file and dvc.lock: ready for `dvc exp run`")
            return 0
        return run_experiment(dvc_args)
    except ExperimentBaselineError as err:
        print(f"landmark-lora exp: {err}", file=sys.stderr)
        return EXIT_USAGE


def cmd_report(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.retrain.report_data import load_outcome
    from landmark_lora.retrain.report_html import write_html_report

    outcome = load_outcome(params.paths.reports)
    path = write_html_report(outcome, params, log_mlflow=args.mlflow)
    print(f"report: {outcome.get('status')}: {path} (one offline page; open it in any browser)")
    return 0


def cmd_generate(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.serving import load_registered
    from landmark_lora.tracking import configure

    ref = f"models:/{params.promotion.registered_model}@{args.model}"
    if args.mode == "t2i" and not args.prompt:
        print("landmark-lora generate: --prompt is needed (or --mode composite with --landmark, --angle, --shot)",
              file=sys.stderr)
        return EXIT_USAGE
    if args.mode == "composite":
        missing = [f"--{k}" for k in ("landmark", "angle", "shot") if not getattr(args, k)]
        if missing:
            print(f"landmark-lora generate --mode composite: give {', '.join(missing)}", file=sys.stderr)
            return EXIT_USAGE
    configure(params.mlflow)
    model = load_registered(params.promotion.registered_model, args.model)
    if args.mode == "composite":
        from landmark_lora.composite import Request
        from landmark_lora.serving import composite_in_workspace

        size = (args.width, args.height) if args.width and args.height else None
        req = Request(args.landmark, args.angle, args.shot, args.pose, args.seed, args.plate, args.prompt, size)
        snap = composite_in_workspace(model, params, req)
        snap.image.save(args.out)
        print(f"generate: {args.out} ({snap.image.width}x{snap.image.height}) composite on plate '{snap.plate_name}', "
              f"person region {snap.box}, seam score {snap.seam(params.composite.feather_px):.2f} from {ref}")
        return 0
    image = model.generate(args.prompt, args.seed, args.width, args.height)
    image.save(args.out)
    print(f"generate: {args.out} ({image.width}x{image.height}) from {ref}")
    return 0


def add_commands(sub) -> None:
    """promote, reproduce, report, generate: what reads or changes the MLflow registry."""
    p = sub.add_parser("promote", help="register the adapter as challenger; move champion if it is better")
    p.add_argument("--rollback", action="store_true", help="move champion back to the previous champion")
    p.add_argument("--reason", help="why (recorded with --rollback)")
    p.add_argument("--force", action="store_true", help="judge a rolled-back version again (gates still apply)")
    p.add_argument("--allow-unreproducible", action="store_true",
                   help="a version tagged reproducible=false (dirty tree, failed dvc push) may become champion")
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser("reproduce", help="rebuild a registered version from its lineage and compare the metrics")
    p.add_argument("version", help="a version number, champion or challenger")
    p.add_argument("--keep", action="store_true", help="keep the temporary git worktree")
    p.set_defaults(func=cmd_reproduce)
    p = sub.add_parser("report", help="rebuild reports/retrain.html (offline page) from the report files")
    p.add_argument("--mlflow", action="store_true", help="also log the page to the last run's MLflow artifacts")
    p.set_defaults(func=cmd_report)
    _add_generate(sub)
    _add_exp_parser(sub)


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="make an image with a registered adapter, offline")
    p.add_argument("--model", default="champion", help="alias (champion, challenger) or version number")
    p.add_argument("--mode", choices=["t2i", "composite"], default="t2i",
                   help="t2i: text-to-image (default); composite: the person inpainted into a real background plate")
    p.add_argument("--prompt", help="t2i: required; composite: default is the training caption of the labels")
    p.add_argument("--landmark", help="composite: landmark slug")
    p.add_argument("--angle", help="composite: camera angle (eye_level, low_angle, high_angle)")
    p.add_argument("--shot", help="composite: shot type (close_up, upper_body, thigh_up, full_body, wide)")
    p.add_argument("--pose", default="unspecified", help="composite: the person's pose, e.g. waving")
    p.add_argument("--plate", help="composite: plate name (default: chosen by --seed among the view's plates)")
    p.add_argument("--width", type=int, help="image width (composite: at most the plate's)")
    p.add_argument("--height", type=int, help="image height (composite: at most the plate's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="generated.png")
    p.set_defaults(func=cmd_generate)


def _add_exp_parser(sub) -> None:
    p = sub.add_parser("exp", help="`dvc exp run`, after checking data/raw.dvc and dvc.lock are committed")
    p.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE", help="as dvc exp run -S")
    p.add_argument("--queue", action="store_true", help="queue it; start with `dvc queue start`")
    p.add_argument("-n", "--name", help="experiment name")
    p.add_argument("--check", action="store_true", help="only check the baseline")
    p.set_defaults(func=cmd_exp)
