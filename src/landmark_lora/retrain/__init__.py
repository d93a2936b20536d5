"""The `retrain` Prefect flow and the plain functions around `dvc repro` that it runs.

    landmark-lora run                             # the flow once (flow.py); python flows/retrain.py is the same
    from landmark_lora.retrain.detect import detect          # photos waiting / untrained / unpromoted run
    from landmark_lora.retrain.dvc import run_dvc_repro      # raises errors.StageFailed(stage, cause, transient)

Modules: errors (StageFailed, what is worth a retry), detect, intake (ingest + `dvc add`),
dvc (`dvc repro` and its failure), cleanup (orphaned MLflow runs), outcome (the run's result),
report (markdown) and report_html (offline page), flow (the Prefect flow), deploy (prefect.yaml,
flow.serve), watcher (drop-folder events), prefect_api (a Prefect API that starts on a busy machine),
quickskip (`landmark-lora run` with nothing new: the skip report without starting Prefect).
The DVC pipeline (dvc.yaml) stays the only DAG: nothing here runs a stage by itself.
"""
