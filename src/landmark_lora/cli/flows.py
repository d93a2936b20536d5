"""The Prefect side: the retrain flow once, served on its schedule, and the drop-folder watcher.

    landmark-lora run | serve | watch [--dry-run]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landmark_lora.artifacts import Layout
from landmark_lora.config import Params
from landmark_lora.exitcodes import EXIT_TEMPFAIL, EXIT_USAGE


def cmd_run(params: Params, args: argparse.Namespace) -> int:
    """The main job: the `retrain` flow (flows/retrain.py) once, on an ephemeral Prefect server
    unless PREFECT_API_URL points at one."""
    if args.overrides:
        print("landmark-lora run: --set does not reach the DVC stages (they read params.yaml); edit "
              f"{args.params} instead", file=sys.stderr)
        return EXIT_USAGE
    if not args.force:  # nothing new: say so and leave before Prefect starts (retrain/quickskip.py)
        from landmark_lora.retrain.quickskip import quick_skip
        from landmark_lora.retrain.report import print_public

        skipped = quick_skip(params, args.min_new_photos)
        if skipped is not None:
            return print_public(skipped, "run")
    from landmark_lora.retrain.deploy import load_retrain_flow
    from landmark_lora.retrain.prefect_api import PrefectStartupError, ensure_prefect_api
    from landmark_lora.retrain.report import print_outcome

    loaded: list = []

    def meanwhile() -> None:  # while the server boots (its own process): this one imports what the flow uses
        loaded.append(load_retrain_flow())
        import mlflow  # noqa: F401  (quick_skip found work: the flow's run-cache check and promote need it)

        import landmark_lora.ops.promote  # noqa: F401

    try:  # migrated database, generous timeout, one retry: a busy machine must not stop the run
        ensure_prefect_api("landmark-lora run", meanwhile=meanwhile)
    except PrefectStartupError as err:
        print(err, file=sys.stderr)
        return EXIT_TEMPFAIL
    retrain = loaded[0] if loaded else load_retrain_flow()
    state = retrain(force=args.force, min_new_photos=args.min_new_photos, workdir=".", params_path=args.params,
                    sample_if_empty=not args.no_sample, if_busy=args.if_busy, return_state=True)
    layout = Layout.of(params)
    return print_outcome(state, "run", f"{layout.retrain_md}, {layout.repro_log}")


def need_prefect_server(command: str) -> str | None:
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
    problem = need_prefect_server("serve")
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
        problem = need_prefect_server("watch")
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


def add_commands(sub) -> None:
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
