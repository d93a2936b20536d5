"""Validate: the dataset contract for ``data/raw``, checked with Great Expectations.

    landmark-lora validate            # run by the DVC stage `validate` (dvc repro)

    from landmark_lora.stages.validate import run, validate_dataset
    outcome = run(params)                     # paths from artifacts.Layout, catalogue from params
    outcome = validate_dataset(Path("data/raw"), Path("reports"), params.validation, catalogue)
    outcome.success, outcome.report_path      # True, reports/validation.json

Every photo in ``data/raw/metadata.csv`` (and every file found under
``data/raw/<landmark>/`` that the table does not list) becomes one row of a
table: labels from the metadata, plus facts measured from the bytes on disk
(sha256, whether Pillow decodes it, displayed size, format, mode). Two GX suites
state the contract:

* ``raw_photos`` (one row per photo): files and table agree, content is unique
  and unchanged since ingest, labels come from the vocabulary, pixels decode and
  have a sane size and shape;
* ``raw_landmarks`` (one row per landmark): enough photos per landmark, not too
  many without a shot label, every ``validation.required_landmarks`` present;
* plates (``validation.plates``, with ``validation.require_plates``): a background plate
  (``shot: background``) of a usable size for every (landmark, angle) the photos show.

The tables are built by ``landmark_lora.validation.table``, the suites by
``validation.contract`` and the report by ``validation.report``; this stage runs them and writes.
Outputs, pass or fail: ``reports/validation.json`` (counts, statistics and, for
each failed check, a plain-words explanation, the fix and the offending paths)
and Data Docs HTML in ``reports/validation/index.html``. A broken contract raises
DatasetContractError (the CLI exits 3), so `dvc repro` stops before preprocess.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from landmark_lora import fsutil, rawtable
from landmark_lora.artifacts import Layout
from landmark_lora.catalogue import load_catalogue
from landmark_lora.config import Params, ValidationConfig
from landmark_lora.logs import get_logger
from landmark_lora.validation.contract import contract, run_gx
from landmark_lora.validation.plates import add_plate_failures
from landmark_lora.validation.report import contract_report, error_message, unreadable_table_report
from landmark_lora.validation.table import build_landmark_table, build_photo_table

__all__ = ["DatasetContractError", "ValidationOutcome", "build_landmark_table", "build_photo_table", "run",
           "validate", "validate_dataset"]

log = get_logger(__name__)


class DatasetContractError(RuntimeError):
    """The raw dataset breaks its contract; the message says what, where and how to fix it."""


@dataclass
class ValidationOutcome:
    success: bool
    report: dict
    report_path: Path
    docs_index: Path | None  # None when the table could not even be read (no GX run)


def _write_json(path: Path, report: dict) -> None:
    fsutil.write_json_atomic(path, report, indent=2, ensure_ascii=False)  # a reader never sees half a report


def _fail(report: dict, report_path: Path, docs_index: Path | None, raise_on_failure: bool) -> None:
    if raise_on_failure:
        raise DatasetContractError(error_message(report, report_path, docs_index))
    log.warning("validate: dataset contract broken; report %s", report_path)


def validate(layout: Layout, cfg: ValidationConfig, catalogue: dict, raise_on_failure: bool = True,
             cache: Path | None = None) -> ValidationOutcome:
    """Check ``layout.raw`` against the dataset contract; write ``layout.validation_json`` and the Data
    Docs in ``layout.validation_dir``. Raises DatasetContractError (listing each failed check, the
    offending paths and the fix) when the contract is broken and ``raise_on_failure`` is set; the
    report is written either way. ``cache``: facts of photos unchanged since they last decoded
    (``Layout.validate_cache`` in the DVC stage), so a nightly run reads only the new photos."""
    raw_dir, report_path, docs_dir = layout.raw, layout.validation_json, layout.validation_dir
    # Stale docs from an earlier run would show results that no longer hold.
    shutil.rmtree(docs_dir, ignore_errors=True)
    try:
        photos = build_photo_table(raw_dir, cache)
    except ValueError as err:  # metadata.csv unreadable: nothing to hand to GX
        report = unreadable_table_report(raw_dir, str(rawtable.table_path(raw_dir)), err)
        _write_json(report_path, report)
        _fail(report, report_path, None, raise_on_failure)
        return ValidationOutcome(False, report, report_path, None)

    landmarks = build_landmark_table(photos, catalogue)
    checks = contract(cfg, catalogue, raw_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    log.debug("validate: %d photos, %d landmarks, %d checks", len(photos), len(landmarks), len(checks))
    results = run_gx(photos, landmarks, checks, docs_dir.resolve())
    docs_index = docs_dir / "index.html"
    report = add_plate_failures(contract_report(raw_dir, photos, checks, results, docs_index), photos, cfg)
    _write_json(report_path, report)
    if not report["success"]:
        _fail(report, report_path, docs_index, raise_on_failure)
    return ValidationOutcome(report["success"], report, report_path, docs_index)


def validate_dataset(raw_dir: Path, reports_dir: Path, cfg: ValidationConfig, catalogue: dict,
                     raise_on_failure: bool = True) -> ValidationOutcome:
    """``validate`` for a raw folder and a reports folder given directly (the other paths as in params)."""
    layout = dataclasses.replace(Layout.of(Params()), raw=Path(raw_dir), reports=Path(reports_dir))
    return validate(layout, cfg, catalogue, raise_on_failure)


def run(params: Params, raise_on_failure: bool = True) -> ValidationOutcome:
    """The DVC stage: validate ``paths.raw`` with ``params.validation`` and the catalogue in params."""
    layout = Layout.of(params)
    return validate(layout, params.validation, load_catalogue(params.catalogue), raise_on_failure,
                    cache=layout.validate_cache)
