"""The dataset contract for ``data/raw`` (the validate stage's domain code; no stage code here).

    from landmark_lora.validation.table import build_photo_table, build_landmark_table   # the tables
    from landmark_lora.validation.contract import contract, run_gx                       # GX suites, Data Docs
    from landmark_lora.validation.report import contract_report, error_message           # validation.json

``landmark-lora validate`` (``landmark_lora.stages.validate``) runs them and writes the report.
Importing this package loads nothing heavy: great_expectations comes with ``contract.gx()``.
"""
