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
    landmark-lora generate --mode composite --landmark gyeongbokgung --angle low_angle --shot upper_body                            --pose waving --out snap.png       # the person inpainted into a real plate
    landmark-lora build-base toyworld --out models/base-toyworld   # retrain the shipped toy-world base

Every command takes ``--params PATH`` (default ./params.yaml) and ``--set key=value``
overrides (e.g. ``--set data.resolution=128``); ``-v`` (debug lines) and ``-q`` (warnings and
errors only) go before the command: ``landmark-lora -v preprocess``, ``landmark-lora -q run``.
This package owns the terminal (commands in cli/stages.py, cli/registry.py, cli/flows.py): it sets up logging once, and prints each command's result.
"""

from __future__ import annotations

import argparse
import sys

from landmark_lora import logs
from landmark_lora.cli import flows, registry, stages
from landmark_lora.cli.common import log
from landmark_lora.config import ConfigError, load_params, parse_overrides
from landmark_lora.env import apply_offline_defaults
from landmark_lora.exitcodes import EXIT_BUSY, EXIT_TEMPFAIL, EXIT_USAGE
from landmark_lora.locking import LockBusy


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="landmark-lora", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug lines too (before the command)")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="warnings and errors only (before the command)")
    sub = parser.add_subparsers(dest="command", required=True)

    flows.add_commands(sub)
    stages.add_commands(sub)
    registry.add_commands(sub)
    stages.add_build_base(sub)
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
        from landmark_lora.plates import PlateError
        from landmark_lora.tracking import TrackingUnreachableError

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
