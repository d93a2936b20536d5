"""The dataset contract for ``data/raw`` as Great Expectations suites, and running them.

    from landmark_lora.validation.contract import contract, run_gx
    checks = contract(params.validation, catalogue, Path("data/raw"))        # list[Check]
    results = run_gx(photos, landmarks, checks, Path("reports/validation"))  # suite -> GX result; Data Docs

Two suites: ``raw_photos`` (one row per photo: files and table agree, content is unique and
unchanged since ingest, labels come from the vocabulary, pixels decode and have a sane size and
shape) and ``raw_landmarks`` (one row per landmark: enough photos, not too many without a shot
label, every ``validation.required_landmarks`` present). Each clause carries the words a person
needs when it fails: what is wrong and how to fix it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from landmark_lora import rawtable
from landmark_lora.catalogue import ANGLES, SHOT_LABELS, UNSPECIFIED
from landmark_lora.config import ValidationConfig

PHOTO_SUITE = "raw_photos"
LANDMARK_SUITE = "raw_landmarks"
DOCS_SITE = "validation"
FORMATS = ("JPEG", "PNG", "WEBP")
# Pillow modes imaging.load_rgb turns into 8-bit RGB; float ("F") and exotic modes are not.
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "I;16", "I;16B", "I;16L")


@dataclass(frozen=True)
class Check:
    """One contract clause: a GX expectation plus the words a person needs when it fails."""

    id: str
    suite: str
    expectation: Any  # a gx.expectations.Expectation
    explain: Callable[[int], str]  # unexpected count -> one-line explanation
    fix: str


def gx() -> Any:
    """great_expectations, imported on first use (~3 s) with its usage analytics off."""
    from landmark_lora.env import apply_offline_defaults

    apply_offline_defaults()  # GX reads its analytics switch at import
    import great_expectations as gx

    return gx


@dataclass(frozen=True)
class _Words:
    """The phrases several clauses share: where the table is and how to fix the usual problems."""

    table: str
    raw_dir: Path

    @property
    def relabel(self) -> str:
        return f"fix the labels in {self.table}"

    @property
    def restore(self) -> str:
        return f"restore the original bytes (`dvc checkout {self.raw_dir}`)"

    add_photos = "add photos to data/incoming/<landmark>/ and run `landmark-lora ingest`"


def _photo(id: str, exp: Any, explain: Callable[[int], str], fix: str) -> Check:
    return Check(id, PHOTO_SUITE, exp, explain, fix)


def _landmark(id: str, exp: Any, explain: Callable[[int], str], fix: str) -> Check:
    return Check(id, LANDMARK_SUITE, exp, explain, fix)


def _file_and_label_checks(E: Any, cfg: ValidationConfig, catalogue: dict, w: _Words) -> list[Check]:
    """Files and table agree, content is unique and unchanged since ingest, labels from the vocabulary."""
    table, raw_dir, relabel, restore, add_photos = w.table, w.raw_dir, w.relabel, w.restore, w.add_photos
    slugs = sorted(catalogue)
    shots = [*SHOT_LABELS, UNSPECIFIED]
    angles = [*ANGLES, UNSPECIFIED]
    photo = _photo
    return [
        photo("has_photos", E.ExpectTableRowCountToBeBetween(min_value=1),
              lambda n: f"{table} lists no photos", add_photos),
        photo("path_unique", E.ExpectColumnValuesToBeUnique(column="path"),
              lambda n: f"{n} row(s) of {table} list the same file more than once",
              f"delete the duplicate rows from {table}"),
        photo("file_on_disk", E.ExpectColumnValuesToBeInSet(column="on_disk", value_set=[True]),
              lambda n: f"{n} photo(s) listed in {table} are missing on disk",
              f"{restore}, or delete their rows from {table}"),
        photo("file_in_metadata", E.ExpectColumnValuesToBeInSet(column="in_metadata", value_set=[True]),
              lambda n: f"{n} file(s) on disk are not in {table}",
              "move them to data/incoming/<landmark>/ and run `landmark-lora ingest` (or delete them); "
              f"never copy photos into {raw_dir} by hand"),
        photo("content_unique", E.ExpectColumnValuesToBeUnique(column="sha256"),
              lambda n: f"{n} photo(s) have exactly the same bytes as another photo (duplicates)",
              f"keep one copy: delete the others from {raw_dir}/ and their rows from {table}"),
        photo("content_unchanged",
              E.ExpectColumnPairValuesToBeEqual(column_A="sha256", column_B="recorded_sha256",
                                                ignore_row_if="either_value_is_missing"),
              lambda n: f"{n} photo(s) changed on disk since ingest (sha256 differs from {table})",
              f"{restore}; to use an edited photo, ingest it as a new file and delete the old row"),
        photo("landmark_known", E.ExpectColumnValuesToBeInSet(column="landmark", value_set=slugs),
              lambda n: f"{n} photo(s) have a landmark outside the catalogue ({', '.join(slugs)})",
              f"{relabel}, or add the landmark to the catalogue (params.yaml `catalogue`)"),
        photo("shot_label", E.ExpectColumnValuesToBeInSet(column="shot", value_set=shots),
              lambda n: f"{n} photo(s) have a shot label outside {', '.join(shots)}", relabel),
        photo("angle_label", E.ExpectColumnValuesToBeInSet(column="angle", value_set=angles),
              lambda n: f"{n} photo(s) have an angle label outside {', '.join(angles)}", relabel),
        photo("pose_present", E.ExpectColumnValuesToNotBeNull(column="pose"),
              lambda n: f"{n} photo(s) have an empty pose label", f"{relabel} (write '{UNSPECIFIED}' when unknown)"),
        photo("pose_length",
              E.ExpectColumnValueLengthsToBeBetween(column="pose", min_value=1, max_value=cfg.max_pose_chars),
              lambda n: f"{n} photo(s) have a pose label longer than {cfg.max_pose_chars} characters",
              f"shorten them in {table}, or raise validation.max_pose_chars in params.yaml"),
    ]


def _pixel_checks(E: Any, cfg: ValidationConfig, w: _Words) -> list[Check]:
    """Pixels decode and have a sane size, shape, format and mode."""
    table, restore = w.table, w.restore
    photo = _photo
    return [
        photo("decodes", E.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]),
              lambda n: f"{n} photo(s) cannot be decoded (missing, truncated, corrupt or not an image)",
              f"{restore} or export the photo again; or delete it and its row from {table}"),
        photo("width", E.ExpectColumnValuesToBeBetween(column="width", min_value=cfg.min_side, max_value=cfg.max_side),
              lambda n: f"{n} photo(s) have a width outside {cfg.min_side}..{cfg.max_side} px",
              "remove them, or set validation.min_side / validation.max_side in params.yaml"),
        photo("height", E.ExpectColumnValuesToBeBetween(column="height", min_value=cfg.min_side, max_value=cfg.max_side),
              lambda n: f"{n} photo(s) have a height outside {cfg.min_side}..{cfg.max_side} px",
              "remove them, or set validation.min_side / validation.max_side in params.yaml"),
        photo("aspect_ratio",
              E.ExpectColumnValuesToBeBetween(column="aspect_ratio", min_value=1.0, max_value=cfg.max_aspect_ratio),
              lambda n: f"{n} photo(s) are more elongated than {cfg.max_aspect_ratio:g}:1",
              "crop them to a normal photo shape, or raise validation.max_aspect_ratio in params.yaml"),
        photo("format", E.ExpectColumnValuesToBeInSet(column="format", value_set=list(FORMATS)),
              lambda n: f"{n} photo(s) are not {', '.join(FORMATS)}", "convert them to JPEG, PNG or WebP and re-ingest"),
        photo("mode", E.ExpectColumnValuesToBeInSet(column="mode", value_set=list(MODES)),
              lambda n: f"{n} photo(s) have a pixel mode outside {', '.join(MODES)}",
              "convert them to 8-bit RGB and re-ingest"),
    ]


def _landmark_checks(E: Any, cfg: ValidationConfig, w: _Words) -> list[Check]:
    """Enough photos per landmark, not too many without a shot label, the required ones present."""
    table, add_photos, landmark = w.table, w.add_photos, _landmark
    checks = [
        landmark("min_photos",
                 E.ExpectColumnValuesToBeBetween(column="photos", min_value=cfg.min_photos_per_landmark),
                 lambda n: f"{n} landmark(s) have fewer than {cfg.min_photos_per_landmark} photos",
                 f"{add_photos}, or set validation.min_photos_per_landmark in params.yaml"),
        landmark("unspecified_shots",
                 E.ExpectColumnValuesToBeBetween(column="unspecified_shot_fraction", min_value=0.0,
                                                 max_value=cfg.max_unspecified_fraction),
                 lambda n: f"{n} landmark(s) have more than {cfg.max_unspecified_fraction:.0%} of photos "
                           f"without a shot label",
                 f"label the shots in {table}, or raise validation.max_unspecified_fraction in params.yaml"),
    ]
    if cfg.required_landmarks:
        checks.append(landmark(
            "required_landmarks",
            E.ExpectColumnDistinctValuesToContainSet(column="landmark", value_set=sorted(cfg.required_landmarks)),
            lambda n: f"{n} required landmark(s) have no photos",
            f"{add_photos}, or remove them from validation.required_landmarks in params.yaml"))
    return checks


def contract(cfg: ValidationConfig, catalogue: dict, raw_dir: Path) -> list[Check]:
    """Every clause of the dataset contract for ``raw_dir``, in report order."""
    E = gx().expectations
    words = _Words(str(rawtable.table_path(raw_dir)), raw_dir)
    checks = (_file_and_label_checks(E, cfg, catalogue, words) + _pixel_checks(E, cfg, words)
              + _landmark_checks(E, cfg, words))
    for check in checks:
        # meta ties GX's results (which come back in its own order) to our clause.
        check.expectation.meta = {"check": check.id}
    return checks


def run_gx(
    photos: pd.DataFrame, landmarks: pd.DataFrame, checks: list[Check], docs_dir: Path
) -> dict[str, dict]:
    """Validate both tables in a throwaway file context and build Data Docs into ``docs_dir``.

    Returns suite name -> validation result (JSON dict).
    """
    gxm = gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    results: dict[str, dict] = {}
    # The context is scratch: everything worth keeping is the report and the docs.
    with tempfile.TemporaryDirectory(prefix="landmark-lora-gx-") as tmp:
        context = gxm.get_context(mode="file", project_root_dir=tmp)
        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm spam in CI logs
        context.add_data_docs_site(DOCS_SITE, {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        source = context.data_sources.add_pandas("raw")
        for suite_name, asset_name, frame, index_col in (
            (PHOTO_SUITE, "photos", photos, "path"),
            (LANDMARK_SUITE, "landmarks", landmarks, "landmark"),
        ):
            batch = source.add_dataframe_asset(asset_name).add_batch_definition_whole_dataframe("all")
            # the whole suite in one save: add_expectation on a stored suite rewrites it each time (seconds)
            suite = context.suites.add(gxm.ExpectationSuite(
                name=suite_name, expectations=[c.expectation for c in checks if c.suite == suite_name]))
            definition = context.validation_definitions.add(
                gxm.ValidationDefinition(name=suite_name, data=batch, suite=suite)
            )
            result = definition.run(
                batch_parameters={"dataframe": frame},
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [index_col]},
            )
            results[suite_name] = result.to_json_dict()
        context.build_data_docs(site_names=[DOCS_SITE])
    return results
