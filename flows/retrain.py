"""The `retrain` flow (landmark_lora.retrain.flow), as the file prefect.yaml's entrypoint names.

    python flows/retrain.py                        # once; an ephemeral Prefect server when PREFECT_API_URL is unset
    python flows/retrain.py --force                # run the pipeline even with too few new photos
    python flows/retrain.py --min-new-photos 20 --workdir /srv/landmark-lora --if-busy skip
    prefect deploy --all                           # entrypoint flows/retrain.py:retrain (prefect.yaml)

The flow, its tasks and its steps live in the package (src/landmark_lora/retrain/flow.py); this
file only re-exports them and runs the flow once from the command line.
"""

from __future__ import annotations

import argparse
import sys

from landmark_lora.retrain.flow import (  # noqa: F401  (re-exported: the deployment's entrypoint and its tasks)
    RetrainFailed,
    dvc_repro,
    ingest_task,
    promote_task,
    publish_report,
    retrain,
    retry_if_transient,
)


def main(argv: list[str] | None = None) -> int:
    from landmark_lora.retrain import flow as flow_module

    parser = argparse.ArgumentParser(prog="python flows/retrain.py", description=flow_module.__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="run the pipeline even with too few new photos")
    parser.add_argument("--min-new-photos", type=int, default=1)
    parser.add_argument("--workdir", default=".")
    parser.add_argument("--params", default="params.yaml", help="relative to --workdir")
    parser.add_argument("--no-sample", action="store_true", help="do not render the sample set into an empty workspace")
    parser.add_argument("--if-busy", choices=["wait", "skip"], default="wait")
    parser.add_argument("--commit-lineage", action="store_true", help="commit dvc.lock and data/raw.dvc after a run")
    args = parser.parse_args(argv)
    from landmark_lora import logs
    from landmark_lora.exitcodes import EXIT_TEMPFAIL
    from landmark_lora.retrain.prefect_api import PrefectStartupError, ensure_prefect_api
    from landmark_lora.retrain.report import print_outcome

    logs.setup(0)  # an entry point like the CLI: the steps' lines on stdout (and in the run's Prefect logs)
    try:  # the same robust start as `landmark-lora run`
        ensure_prefect_api("python flows/retrain.py")
    except PrefectStartupError as err:
        print(err, file=sys.stderr)
        return EXIT_TEMPFAIL
    state = retrain(force=args.force, min_new_photos=args.min_new_photos, workdir=args.workdir,
                    params_path=args.params, sample_if_empty=not args.no_sample, if_busy=args.if_busy,
                    commit_lineage=args.commit_lineage, return_state=True)
    return print_outcome(state, "retrain")


if __name__ == "__main__":
    sys.exit(main())
