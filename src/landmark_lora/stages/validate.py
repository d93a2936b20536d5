"""Validate: the dataset contract for ``data/raw``, checked with Great Expectations.

    landmark-lora validate            # run by the DVC stage `validate` (dvc repro)

    from landmark_lora.stages.validate import validate_dataset
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
  many without a shot label, every ``validation.required_landmarks`` present.

Outputs, pass or fail: ``reports/validation.json`` (counts, statistics and, for
each failed check, a plain-words explanation, the fix and the offending paths)
and Data Docs HTML in ``reports/validation/index.html``. A broken contract raises
DatasetContractError (the CLI exits 3), so `dvc repro` stops before preprocess.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from PIL import Image

from landmark_lora import fsutil, rawtable
from landmark_lora.catalogue import ANGLES, SHOTS, UNSPECIFIED
from landmark_lora.config import ValidationConfig

REPORT_NAME = "validation.json"
DOCS_DIR = "validation"
PHOTO_SUITE = "raw_photos"
LANDMARK_SUITE = "raw_landmarks"
DOCS_SITE = "validation"
FORMATS = ("JPEG", "PNG", "WEBP")
# Pillow modes imaging.load_rgb turns into 8-bit RGB; float ("F") and exotic modes are not.
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "I;16", "I;16B", "I;16L")
MAX_ROWS_PER_CHECK = 50  # offending rows listed per failed check in validation.json
MAX_PATHS_IN_MESSAGE = 5

PHOTO_COLUMNS = (
    "path", "landmark", "shot", "angle", "pose", "in_metadata", "on_disk", "decodes", "error",
    "width", "height", "aspect_ratio", "format", "mode", "bytes", "sha256", "recorded_sha256",
)
LANDMARK_COLUMNS = ("landmark", "photos", "unspecified_shot_fraction")


class DatasetContractError(RuntimeError):
    """The raw dataset breaks its contract; the message says what, where and how to fix it."""


@dataclass
class ValidationOutcome:
    success: bool
    report: dict
    report_path: Path
    docs_index: Path | None  # None when the table could not even be read (no GX run)


# ---------------------------------------------------------------- the photo table


def _inspect(path: Path) -> dict[str, Any]:
    """Facts measured from the bytes on disk. Never raises: a bad file is a row, not a crash."""
    facts: dict[str, Any] = {
        "on_disk": False, "decodes": False, "error": None, "width": None, "height": None,
        "format": None, "mode": None, "bytes": None, "sha256": None,
    }
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        facts["error"] = "file not found"
        return facts
    except OSError as err:
        facts["error"] = f"cannot read: {err}"
        return facts
    facts.update(on_disk=True, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            facts.update(format=im.format, mode=im.mode)
            orientation = int(im.getexif().get(0x0112, 1) or 1)
            if orientation in (5, 6, 7, 8):  # rotated 90 degrees: displayed size is swapped
                width, height = height, width
            facts.update(width=width, height=height)
            if im.format == "JPEG":
                # A 1/8-scale DCT decode still reads every byte, so truncation shows up, ~10x faster.
                im.draft(None, (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
            im.load()
        facts["decodes"] = True
    except Exception as err:  # noqa: BLE001 - any decoder failure means "does not decode"
        facts["error"] = f"{type(err).__name__}: {err}"[:300]
    return facts


def _disk_files(raw_dir: Path) -> dict[str, str]:
    """NFC relative path -> relative path as on disk, for every visible file under raw/<landmark>/."""
    found: dict[str, str] = {}
    if not raw_dir.is_dir():
        return found
    for folder in sorted(p for p in raw_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(raw_dir)
            # Hidden names: ingest's .partial- temp files, .DS_Store and the like.
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                found[fsutil.nfc(rel.as_posix())] = rel.as_posix()
    return found


def build_photo_table(raw_dir: Path) -> pd.DataFrame:
    """One row per photo in the raw table plus one per unlisted file on disk (``in_metadata`` False).

    Columns: PHOTO_COLUMNS. ``sha256`` is recomputed from the bytes, ``recorded_sha256`` is what
    ingest wrote; width/height are as displayed (EXIF orientation applied); ``aspect_ratio`` is
    long side / short side. Raises ValueError only when metadata.csv itself is unreadable.
    """
    raw_dir = Path(raw_dir)
    rows = rawtable.read_rows(raw_dir)
    on_disk = _disk_files(raw_dir)
    listed = {fsutil.nfc(r["file"]) for r in rows}

    records: list[dict[str, Any]] = []
    for r in rows:
        pose = (r.get("pose") or "").strip()
        records.append({
            "path": r["file"], "landmark": r["landmark"], "shot": r["shot"], "angle": r["angle"],
            "pose": pose or None,  # blank pose = no label at all (ingest writes 'unspecified')
            "in_metadata": True, "recorded_sha256": r["sha256"] or None,
            "_disk": raw_dir / on_disk.get(fsutil.nfc(r["file"]), r["file"]),
        })
    for key, rel in on_disk.items():
        if key not in listed:
            # Labelled like an unlabelled ingest, so only the in_metadata check flags it.
            records.append({
                "path": rel, "landmark": rel.split("/", 1)[0], "shot": UNSPECIFIED, "angle": UNSPECIFIED,
                "pose": UNSPECIFIED, "in_metadata": False, "recorded_sha256": None, "_disk": raw_dir / rel,
            })

    workers = min(8, os.cpu_count() or 1)
    # Pillow decodes outside the GIL. Warnings are silenced here, not per thread, because
    # catch_warnings is not thread-safe; EXIF/ICC chatter is noise, real damage raises.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
        warnings.simplefilter("ignore")
        facts = list(pool.map(_inspect, [rec.pop("_disk") for rec in records]))
    for rec, fact in zip(records, facts):
        rec.update(fact)
        w, h = rec["width"], rec["height"]
        rec["aspect_ratio"] = round(max(w, h) / min(w, h), 4) if w and h else None

    df = pd.DataFrame.from_records(records, columns=list(PHOTO_COLUMNS))
    for col in ("in_metadata", "on_disk", "decodes"):
        df[col] = df[col].astype(bool)
    for col in ("width", "height", "bytes"):
        df[col] = df[col].astype("Int64")
    df["aspect_ratio"] = df["aspect_ratio"].astype("float64")
    return df


def build_landmark_table(photos: pd.DataFrame, catalogue: dict) -> pd.DataFrame:
    """One row per catalogue landmark with photos: count and share without a shot label.

    Counts photos listed in metadata.csv and present on disk. Unknown landmarks are left to the
    photo suite's landmark check; absent required ones to the required-landmarks check.
    """
    present = photos[photos["in_metadata"] & photos["on_disk"] & photos["landmark"].isin(list(catalogue))]
    out = []
    for landmark, group in sorted(present.groupby("landmark"), key=lambda kv: kv[0]):
        out.append({
            "landmark": landmark,
            "photos": len(group),
            "unspecified_shot_fraction": round(float((group["shot"] == UNSPECIFIED).mean()), 4),
        })
    df = pd.DataFrame.from_records(out, columns=list(LANDMARK_COLUMNS))
    df["photos"] = df["photos"].astype("int64")
    df["unspecified_shot_fraction"] = df["unspecified_shot_fraction"].astype("float64")
    return df


# ---------------------------------------------------------------- the contract


@dataclass(frozen=True)
class Check:
    """One contract clause: a GX expectation plus the words a person needs when it fails."""

    id: str
    suite: str
    expectation: Any  # a gx.expectations.Expectation
    explain: Callable[[int], str]  # unexpected count -> one-line explanation
    fix: str


def _gx() -> Any:
    """great_expectations, imported on first use (~3 s) with its usage analytics off."""
    from landmark_lora.env import apply_offline_defaults

    apply_offline_defaults()  # GX reads its analytics switch at import
    import great_expectations as gx

    return gx


def _contract(cfg: ValidationConfig, catalogue: dict, raw_dir: Path) -> list[Check]:
    E = _gx().expectations
    table = str(rawtable.table_path(raw_dir))
    slugs = sorted(catalogue)
    shots = [*SHOTS, UNSPECIFIED]
    angles = [*ANGLES, UNSPECIFIED]
    relabel = f"fix the labels in {table}"
    restore = f"restore the original bytes (`dvc checkout {raw_dir}`)"
    add_photos = "add photos to data/incoming/<landmark>/ and run `landmark-lora ingest`"

    def photo(id: str, exp: Any, explain: Callable[[int], str], fix: str) -> Check:
        return Check(id, PHOTO_SUITE, exp, explain, fix)

    def landmark(id: str, exp: Any, explain: Callable[[int], str], fix: str) -> Check:
        return Check(id, LANDMARK_SUITE, exp, explain, fix)

    checks = [
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
    for check in checks:
        # meta ties GX's results (which come back in its own order) to our clause.
        check.expectation.meta = {"check": check.id}
    return checks


# ---------------------------------------------------------------- running GX


def _run_gx(
    photos: pd.DataFrame, landmarks: pd.DataFrame, checks: list[Check], docs_dir: Path
) -> dict[str, dict]:
    """Validate both tables in a throwaway file context and build Data Docs into ``docs_dir``.

    Returns suite name -> validation result (JSON dict).
    """
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    results: dict[str, dict] = {}
    # The context is scratch: everything worth keeping is the report and the docs.
    with tempfile.TemporaryDirectory(prefix="landmark-lora-gx-") as tmp:
        context = gx.get_context(mode="file", project_root_dir=tmp)
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
            suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
            for check in checks:
                if check.suite == suite_name:
                    suite.add_expectation(check.expectation)
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
            )
            result = definition.run(
                batch_parameters={"dataframe": frame},
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [index_col]},
            )
            results[suite_name] = result.to_json_dict()
        context.build_data_docs(site_names=[DOCS_SITE])
    return results


# ---------------------------------------------------------------- the report


def _plain(value: Any) -> Any:
    """JSON-friendly scalars: numpy/pandas numbers -> int/float, NA -> None, 80.0 -> 80."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        if value.is_integer():
            return int(value)
    return value


def _ordered(counter: Counter, first: tuple[str, ...]) -> dict[str, int]:
    keys = [k for k in first if k in counter] + sorted(k for k in counter if k not in first)
    return {k: int(counter[k]) for k in keys}


def _counts(photos: pd.DataFrame) -> dict[str, Any]:
    listed = photos[photos["in_metadata"]]
    order = (*SHOTS, UNSPECIFIED)
    landmarks = {}
    for slug in sorted(listed["landmark"].astype(str).unique()):
        group = listed[listed["landmark"] == slug]
        landmarks[slug] = {"photos": len(group), "shots": _ordered(Counter(group["shot"].astype(str)), order)}
    return {
        "photos": len(listed),
        "landmarks": landmarks,
        "shots": _ordered(Counter(listed["shot"].astype(str)), order),
    }


def _image_stats(photos: pd.DataFrame) -> dict[str, Any]:
    ok = photos[photos["decodes"]]

    def spread(col: str) -> dict[str, Any]:
        s = ok[col].dropna().astype("float64")
        if s.empty:
            return {"min": None, "median": None, "max": None}
        return {"min": _plain(s.min()), "median": _plain(round(s.median(), 4)), "max": _plain(s.max())}

    return {
        "files_on_disk": int(photos["on_disk"].sum()),
        "unlisted_files": int((~photos["in_metadata"]).sum()),
        "missing_files": int((photos["in_metadata"] & ~photos["on_disk"]).sum()),
        "undecodable": int((photos["on_disk"] & ~photos["decodes"]).sum()),
        "width": spread("width"),
        "height": spread("height"),
        "aspect_ratio": spread("aspect_ratio"),
        "formats": _ordered(Counter(ok["format"].astype(str)), FORMATS),
        "modes": _ordered(Counter(ok["mode"].astype(str)), ()),
    }


def _failure(check: Check, res: dict, photos: pd.DataFrame) -> dict[str, Any]:
    """One failed clause for validation.json: what, why in words, how to fix, which rows."""
    cfg_kwargs = res["expectation_config"]["kwargs"]
    result = res.get("result") or {}
    exc = res.get("exception_info") or {}
    column = cfg_kwargs.get("column") or (
        f"{cfg_kwargs['column_A']},{cfg_kwargs['column_B']}" if "column_A" in cfg_kwargs else None
    )
    rows: list[dict[str, Any]]
    if check.id == "required_landmarks":
        rows = [{"landmark": m} for m in result.get("partial_missing_list") or []]
        count = int(result.get("missing_count") or len(rows))
    else:
        id_col = "path" if check.suite == PHOTO_SUITE else "landmark"
        # GX puts the offending value first; the row's id reads better first.
        rows = [{id_col: r.get(id_col), **{k: _plain(v) for k, v in r.items() if k != id_col}}
                for r in result.get("unexpected_index_list") or []]
        count = int(result.get("unexpected_count") or len(rows))
    if check.id in ("decodes", "file_on_disk") and rows:
        # The reason a file does not decode is what the person needs, not just "False".
        errors = dict(zip(photos["path"], photos["error"]))
        for r in rows:
            r["error"] = errors.get(r.get("path"))
    explanation = check.explain(count)
    if exc.get("raised_exception"):
        explanation = f"check could not run: {exc.get('exception_message')}"
    out: dict[str, Any] = {
        "check": check.id,
        "suite": check.suite,
        "expectation": res["expectation_config"]["type"],
        "column": column,
        "kwargs": {k: _plain(v) for k, v in cfg_kwargs.items() if k not in ("batch_id", "column")},
        "explanation": explanation,
        "fix": check.fix,
        "unexpected_count": count,
        "rows": rows[:MAX_ROWS_PER_CHECK],
        "rows_not_shown": max(0, len(rows) - MAX_ROWS_PER_CHECK),
    }
    if "observed_value" in result and check.id != "required_landmarks":
        out["observed_value"] = _plain(result["observed_value"])
    return out


def _statistics(results: dict[str, dict]) -> dict[str, Any]:
    per_suite = {}
    for suite, res in results.items():
        stats = res.get("statistics") or {}
        per_suite[suite] = {
            "evaluated": int(stats.get("evaluated_expectations", 0)),
            "passed": int(stats.get("successful_expectations", 0)),
            "failed": int(stats.get("unsuccessful_expectations", 0)),
        }
    evaluated = sum(s["evaluated"] for s in per_suite.values())
    passed = sum(s["passed"] for s in per_suite.values())
    return {
        "checks": evaluated,
        "passed": passed,
        "failed": evaluated - passed,
        "success_percent": round(100.0 * passed / evaluated, 1) if evaluated else 0.0,
        "suites": per_suite,
    }


def _row_label(row: dict[str, Any]) -> str:
    """'path (value=...)' for the error message: the id, then the offending values, shortened."""
    key = "path" if "path" in row else "landmark"
    details = []
    for k, v in row.items():
        if k == key or isinstance(v, bool):  # the True/False flag adds nothing to the explanation
            continue
        text = repr(v)
        details.append(f"{k}={text[:40] + '...' if len(text) > 43 else text}")
    return f"{row.get(key, '?')} ({', '.join(details)})" if details else str(row.get(key, "?"))


def _error_message(report: dict, report_path: Path, docs_index: Path | None) -> str:
    stats = report["statistics"]
    lines = [
        f"dataset contract broken: {stats['failed']} of {stats['checks']} checks failed "
        f"for {report['raw_dir']} ({report['photos']} photos listed)."
    ]
    for f in report["failed"]:
        lines.append(f"- {f['explanation']}")
        shown = f["rows"][:MAX_PATHS_IN_MESSAGE]
        for row in shown:
            lines.append(f"    {_row_label(row)}")
        rest = f["unexpected_count"] - len(shown)
        if rest > 0 and shown:
            lines.append(f"    ... and {rest} more (see the report)")
        lines.append(f"  fix: {f['fix']}")
    lines.append(f"Full report: {report_path}")
    if docs_index is not None:
        lines.append(f"Data Docs: {docs_index}")
    lines.append("Then rerun `landmark-lora validate` (or `dvc repro`).")
    return "\n".join(lines)


def _write_json(path: Path, report: dict) -> None:
    fsutil.write_json_atomic(path, report, indent=2, ensure_ascii=False)  # a reader never sees half a report


# ---------------------------------------------------------------- entry point


def validate_dataset(
    raw_dir: Path,
    reports_dir: Path,
    cfg: ValidationConfig,
    catalogue: dict,
    raise_on_failure: bool = True,
) -> ValidationOutcome:
    """Check ``raw_dir`` against the dataset contract; write validation.json and Data Docs.

    Returns the outcome; when the contract is broken and ``raise_on_failure`` is set, raises
    DatasetContractError whose message lists each failed check, offending paths and the fix.
    The report is written either way.
    """
    raw_dir, reports_dir = Path(raw_dir), Path(reports_dir)
    report_path = reports_dir / REPORT_NAME
    docs_dir = reports_dir / DOCS_DIR
    table = str(rawtable.table_path(raw_dir))
    # Stale docs from an earlier run would show results that no longer hold.
    shutil.rmtree(docs_dir, ignore_errors=True)

    try:
        photos = build_photo_table(raw_dir)
    except ValueError as err:  # metadata.csv unreadable: nothing to hand to GX
        report = {
            "success": False, "raw_dir": str(raw_dir), "photos": 0, "landmarks": {}, "shots": {},
            "statistics": {"checks": 1, "passed": 0, "failed": 1, "success_percent": 0.0, "suites": {}},
            "images": None,
            "failed": [{
                "check": "table_readable", "suite": None, "expectation": None, "column": None, "kwargs": {},
                "explanation": f"{table} cannot be read: {err}",
                "fix": f"repair {table} (restore it with `dvc checkout {raw_dir}`)",
                "unexpected_count": 1, "rows": [], "rows_not_shown": 0,
            }],
            "docs": None,
        }
        _write_json(report_path, report)
        if raise_on_failure:
            raise DatasetContractError(_error_message(report, report_path, None)) from None
        return ValidationOutcome(False, report, report_path, None)

    landmarks = build_landmark_table(photos, catalogue)
    checks = _contract(cfg, catalogue, raw_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    results = _run_gx(photos, landmarks, checks, docs_dir.resolve())

    by_id = {}
    for res in results.values():
        for r in res["results"]:
            by_id[(r["expectation_config"].get("meta") or {}).get("check")] = r
    failed = [_failure(c, by_id[c.id], photos) for c in checks if c.id in by_id and not by_id[c.id]["success"]]
    success = bool(all(res["success"] for res in results.values()) and not failed)
    docs_index = docs_dir / "index.html"

    report: dict[str, Any] = {"success": success, "raw_dir": str(raw_dir)}
    report.update(_counts(photos))
    report["statistics"] = _statistics(results)
    report["images"] = _image_stats(photos)
    report["failed"] = failed
    report["docs"] = str(docs_index)
    _write_json(report_path, report)

    if not success and raise_on_failure:
        raise DatasetContractError(_error_message(report, report_path, docs_index))
    return ValidationOutcome(success, report, report_path, docs_index)
