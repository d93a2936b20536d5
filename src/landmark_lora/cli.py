"""The `landmark-lora` command. Thin: parse arguments, load params, call a stage function.

    landmark-lora run                 # main job: the Prefect flow `retrain` once (sample data if empty,
                                      #   ingest, dvc repro, promote, report); --force, --min-new-photos N
    landmark-lora serve               # nightly schedule + photo trigger (prefect.yaml) via flow.serve
    landmark-lora watch [--dry-run]   # emit a Prefect event when photos land in data/incoming/
    landmark-lora sample-data         # render the synthetic photo set into data/incoming/
    landmark-lora ingest              # data/incoming -> data/raw | data/quarantine
    landmark-lora validate            # DVC stage: GX dataset contract -> reports/validation.json
    landmark-lora preprocess          # DVC stage: buckets, crops, captions, split -> data/processed/
    landmark-lora cache-latents       # DVC stage: VAE latents + caption embeddings -> data/latents/
    landmark-lora train               # DVC stage: LoRA training (accelerate) -> models/adapter/, MLflow run
    landmark-lora evaluate            # DVC stage: base vs adapter metrics and grids -> reports/eval.json
    landmark-lora promote [--rollback]  # registry: challenger -> champion only when it is better
    landmark-lora reproduce 1|champion|challenger [--keep]   # replay a version from its lineage, compare
    landmark-lora report [--mlflow]   # rebuild reports/retrain.html (offline page) from reports/
    landmark-lora generate --model champion --prompt "..." --out snap.png
    landmark-lora generate --mode composite --landmark gyeongbokgung --angle low_angle --shot upper_body \
                           --pose waving --out snap.png       # the person inpainted into a real plate
    landmark-lora build-base toyworld --out models/base-toyworld   # retrain the shipped toy-world base

Every command takes ``--params PATH`` (default ./params.yaml) and ``--set key=value``
overrides (e.g. ``--set data.resolution=128``); ``-v`` (debug lines) and ``-q`` (warnings and
errors only) go before the command: ``landmark-lora -v preprocess``, ``landmark-lora -q run``.
This module owns the terminal: it sets up logging once, and prints each command's result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landmark_lora import logs
from landmark_lora.artifacts import Layout
from landmark_lora.config import ConfigError, Params, load_params, parse_overrides
from landmark_lora.env import apply_offline_defaults
from landmark_lora.exitcodes import EXIT_BUSY, EXIT_CONTRACT, EXIT_TEMPFAIL, EXIT_USAGE
from landmark_lora.locking import LockBusy

log = logs.get_logger(__name__)


def _catalogue(params: Params):
    from landmark_lora.catalogue import load_catalogue

    return load_catalogue(params.catalogue)


def cmd_sample_data(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.synthetic.render import render_sample_set

    out = Path(args.out) if args.out else params.paths.incoming
    log.info("sample-data: rendering the synthetic photo set into %s/ ...", out)
    from landmark_lora.catalogue import ANGLES

    catalogue = _catalogue(params)
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
        outcome = validate_dataset(params.paths.raw, params.paths.reports, params.validation, _catalogue(params))
    except DatasetContractError as err:
        print(f"validate: FAILED\n{err}", file=sys.stderr)
        return EXIT_CONTRACT
    print(f"validate: dataset contract holds; report {outcome.report_path}, docs {outcome.docs_index}")
    return 0


def cmd_preprocess(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.stages.preprocess import preprocess

    summary = preprocess(params, _catalogue(params))
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


def cmd_evaluate(params: Params, args: argparse.Namespace) -> int:
    from landmark_lora.stages.evaluate import evaluate

    m = evaluate(params)
    print(f"evaluate: eval_loss {m['eval_loss']:.4f} (base {m['base']['eval_loss']:.4f}), background_consistency "
          f"{m['background_consistency']:.3f} (base {m['base']['background_consistency']:.3f}), shot_agreement "
          f"{m['shot_agreement']:.2f} (base {m['base']['shot_agreement']:.2f}), clip_score: "
          f"{m['clip_score'] if m['clip_score'] is not None else m['clip_score_status']} "
          f"-> {Layout.of(params).eval_json}")
    section = m.get("composite") or {}
    if section.get("status") == "computed":
        c, t = section["composite"], section["t2i"]
        print(f"  composite on {section['prompts']} prompts: background_consistency {c['background_consistency']:.3f} "
              f"(text-to-image {t['background_consistency']:.3f}), shot_agreement {c['shot_agreement']:.2f} "
              f"(text-to-image {t['shot_agreement']:.2f}), seam score {c['seam_score']:.2f} "
              f"(real photos {section.get('real_seam_score') or float('nan'):.2f})")
    elif section:
        print(f"  composite: {section.get('status')}")
    for name in ("landmark_accuracy", "angle_accuracy", "pose_accuracy"):
        if m.get(name) is not None:
            print(f"  {name} {m[name]:.2f} (base {m['base'][name]:.2f}; "
                  f"calibration on real val photos {m[name + '_calibration']:.2f})")
        elif str(m.get(name + "_status", "")).startswith("skipped"):
            print(f"  {name}: {m[name + '_status']}")
    return 0


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


def cmd_run(params: Params, args: argparse.Namespace) -> int:
    """The main job: the `retrain` flow (flows/retrain.py) once, on an ephemeral Prefect server
    unless PREFECT_API_URL points at one."""
    if args.overrides:
        print("landmark-lora run: --set does not reach the DVC stages (they read params.yaml); edit "
              f"{args.params} instead", file=sys.stderr)
        return EXIT_USAGE
    from landmark_lora.retrain.deploy import load_retrain_flow
    from landmark_lora.retrain.prefect_api import PrefectStartupError, ensure_prefect_api
    from landmark_lora.retrain.report import print_outcome

    try:  # migrated database, generous timeout, one retry: a busy machine must not stop the run
        ensure_prefect_api("landmark-lora run")
    except PrefectStartupError as err:
        print(err, file=sys.stderr)
        return EXIT_TEMPFAIL
    retrain = load_retrain_flow()
    state = retrain(force=args.force, min_new_photos=args.min_new_photos, workdir=".", params_path=args.params,
                    sample_if_empty=not args.no_sample, if_busy=args.if_busy, return_state=True)
    layout = Layout.of(params)
    return print_outcome(state, "run", f"{layout.retrain_md}, {layout.repro_log}")


def _need_prefect_server(command: str) -> str | None:
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    return (f"landmark-lora {command}: needs a running Prefect server (the ephemeral one has no scheduler "
            "and no triggers). In another terminal:\n"
            "    prefect server start\n"
            "then here:\n"
            "    export PREFECT_API_URL=http://127.0.0.1:4200/api\n"
            f"    landmark-lora {command}")


def cmd_serve(params: Params, args: argparse.Namespace) -> int:
    """flow.serve with the schedule, trigger and parameters of a prefect.yaml deployment."""
    problem = _need_prefect_server("serve")
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    from landmark_lora.retrain.deploy import deployment_spec, load_retrain_flow, serve_kwargs

    spec = deployment_spec(args.deployment, Path(args.prefect_yaml) if args.prefect_yaml else None)
    kwargs = serve_kwargs(spec)
    limit = spec.get("concurrency_limit")
    limit = limit.get("limit") if isinstance(limit, dict) else limit
    crons = ", ".join(f"{s.cron} ({s.timezone})" for s in kwargs["schedules"]) or "none"
    print(f"serve: deployment '{spec['name']}': schedule {crons}; {len(kwargs['triggers'])} event trigger(s); "
          "Ctrl-C stops (and pauses the schedule)")
    load_retrain_flow().serve(name=spec["name"], global_limit=limit, **kwargs)
    return 0


def cmd_watch(params: Params, args: argparse.Namespace) -> int:
    import json
    import threading

    from landmark_lora.events import EVENT_PHOTOS_ARRIVED
    from landmark_lora.retrain.watcher import emit_photos_arrived, watch

    incoming = Path(params.paths.incoming)
    if args.dry_run:
        def emit(batch: list[str]) -> None:
            print(json.dumps({"event": EVENT_PHOTOS_ARRIVED, "files": len(batch), "examples": batch[:10]}))
    else:
        problem = _need_prefect_server("watch")
        if problem:
            print(problem, file=sys.stderr)
            return EXIT_USAGE

        def emit(batch: list[str]) -> None:
            emit_photos_arrived(batch, incoming)

    stop = threading.Event()
    try:
        watch(incoming, emit, params.ingest.extensions, quiet_s=args.quiet_seconds,
              max_wait_s=max(args.max_wait_seconds, args.quiet_seconds), stop=stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        if not args.dry_run:
            from prefect.events.worker import EventsWorker

            EventsWorker.drain_all()  # send what is queued before exiting
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


def _add_registry_commands(sub) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="landmark-lora", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug lines too (before the command)")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="warnings and errors only (before the command)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="main job: the Prefect flow `retrain` once (ingest, dvc repro, promote)")
    p.add_argument("--force", action="store_true", help="run the pipeline even with too few new photos")
    p.add_argument("--min-new-photos", type=int, default=1, help="fewer new photos than this: skip (default 1)")
    p.add_argument("--no-sample", action="store_true", help="do not render the sample set into an empty workspace")
    p.add_argument("--if-busy", choices=["wait", "skip"], default="wait", help="when another retrain runs")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("serve", help="serve `retrain` with the nightly schedule and photo trigger (prefect.yaml)")
    p.add_argument("--deployment", default="nightly-retrain", help="deployment in prefect.yaml")
    p.add_argument("--prefect-yaml", help="default: prefect.yaml of this checkout")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("watch", help="emit a Prefect event when photos land in the drop folder (watchdog)")
    p.add_argument("--quiet-seconds", type=float, default=30.0, help="a batch ends after this long without new photos")
    p.add_argument("--max-wait-seconds", type=float, default=600.0, help="send a trickling batch after this long")
    p.add_argument("--dry-run", action="store_true", help="print events instead of sending them")
    p.set_defaults(func=cmd_watch)
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
    _add_registry_commands(sub)
    _add_exp_parser(sub)
    p = sub.add_parser("build-base", help="retrain the shipped toy-world base from its recipe (resumable)")
    p.add_argument("name", choices=["toyworld"])
    p.add_argument("--out", default="models/base-toyworld", help="diffusers folder to write")
    p.add_argument("--work", default=".cache/toyworld-build", help="renders and checkpoints (resume from here)")
    p.set_defaults(func=cmd_build_base)
    return parser


def main(argv: list[str] | None = None) -> int:
    apply_offline_defaults()  # offline and quiet; an explicit setting in the environment wins
    args = build_parser().parse_args(argv)
    logs.setup(args.verbose - args.quiet)  # the one set-up: modules only log
    log.debug("landmark-lora %s: params %s, overrides %s", args.command, args.params, args.overrides or "none")
    try:
        params = load_params(args.params, parse_overrides(args.overrides))
        return args.func(params, args)
    except ConfigError as err:
        print(f"landmark-lora: {err}", file=sys.stderr)
        return EXIT_USAGE
    except LockBusy as err:
        print(f"landmark-lora {args.command}: {err}", file=sys.stderr)
        return EXIT_BUSY
    except Exception as err:  # stage errors carry the actionable message; no traceback wall
        from landmark_lora.catalogue import CatalogueError
        from landmark_lora.ops.ingest import IngestError
        from landmark_lora.ops.promote import PromotionError
        from landmark_lora.tracking import TrackingUnreachableError
        from landmark_lora.plates import PlateError

        if isinstance(err, (CatalogueError, IngestError, PlateError, ValueError)):
            print(f"landmark-lora {args.command}: {err}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(err, TrackingUnreachableError):  # a retry later may work
            print(f"landmark-lora {args.command}: {err}", file=sys.stderr)
            return EXIT_TEMPFAIL
        if isinstance(err, PromotionError):
            print(f"landmark-lora {args.command}: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
