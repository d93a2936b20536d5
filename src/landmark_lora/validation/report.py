"""validation.json, built from the GX results: counts, statistics, and each failed clause in words.

    from landmark_lora.validation.report import contract_report, error_message
    report = contract_report(raw_dir, photos, checks, results, docs_index)   # the dict for validation.json
    message = error_message(report, report_path, docs_index)                # what the person reads on failure

Each failed check gets a plain-words explanation, the fix and up to ``MAX_ROWS_PER_CHECK``
offending rows (paths), so a broken dataset says what, where and how to fix it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from landmark_lora.catalogue import SHOT_LABELS, UNSPECIFIED
from landmark_lora.validation.contract import FORMATS, PHOTO_SUITE, Check

MAX_ROWS_PER_CHECK = 50  # offending rows listed per failed check in validation.json
MAX_PATHS_IN_MESSAGE = 5


def plain(value: Any) -> Any:
    """JSON-friendly scalars: numpy/pandas numbers -> int/float, NA -> None, 80.0 -> 80."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
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


def counts(photos: pd.DataFrame) -> dict[str, Any]:
    listed = photos[photos["in_metadata"]]
    order = (*SHOT_LABELS, UNSPECIFIED)
    landmarks = {}
    for slug in sorted(listed["landmark"].astype(str).unique()):
        group = listed[listed["landmark"] == slug]
        landmarks[slug] = {"photos": len(group), "shots": _ordered(Counter(group["shot"].astype(str)), order)}
    return {
        "photos": len(listed),
        "landmarks": landmarks,
        "shots": _ordered(Counter(listed["shot"].astype(str)), order),
    }


def image_stats(photos: pd.DataFrame) -> dict[str, Any]:
    ok = photos[photos["decodes"]]

    def spread(col: str) -> dict[str, Any]:
        s = ok[col].dropna().astype("float64")
        if s.empty:
            return {"min": None, "median": None, "max": None}
        return {"min": plain(s.min()), "median": plain(round(s.median(), 4)), "max": plain(s.max())}

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


def failure(check: Check, res: dict, photos: pd.DataFrame) -> dict[str, Any]:
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
        rows = [{id_col: r.get(id_col), **{k: plain(v) for k, v in r.items() if k != id_col}}
                for r in result.get("unexpected_index_list") or []]
        count = int(result.get("unexpected_count") or len(rows))
    if check.id in ("decodes", "file_on_disk") and rows:
        # The reason a file does not decode is what the person needs, not just "False".
        errors = dict(zip(photos["path"], photos["error"], strict=False))
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
        "kwargs": {k: plain(v) for k, v in cfg_kwargs.items() if k not in ("batch_id", "column")},
        "explanation": explanation,
        "fix": check.fix,
        "unexpected_count": count,
        "rows": rows[:MAX_ROWS_PER_CHECK],
        "rows_not_shown": max(0, len(rows) - MAX_ROWS_PER_CHECK),
    }
    if "observed_value" in result and check.id != "required_landmarks":
        out["observed_value"] = plain(result["observed_value"])
    return out


def statistics(results: dict[str, dict]) -> dict[str, Any]:
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


def error_message(report: dict, report_path: Path, docs_index: Path | None) -> str:
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


def contract_report(raw_dir: Path, photos: pd.DataFrame, checks: list[Check], results: dict[str, dict],
                    docs_index: Path) -> dict[str, Any]:
    """validation.json for a contract that GX ran: success, counts, statistics, image facts, failures."""
    by_id = {}
    for res in results.values():
        for r in res["results"]:
            by_id[(r["expectation_config"].get("meta") or {}).get("check")] = r
    failed = [failure(c, by_id[c.id], photos) for c in checks if c.id in by_id and not by_id[c.id]["success"]]
    success = bool(all(res["success"] for res in results.values()) and not failed)
    report: dict[str, Any] = {"success": success, "raw_dir": str(raw_dir)}
    report.update(counts(photos))
    report["statistics"] = statistics(results)
    report["images"] = image_stats(photos)
    report["failed"] = failed
    report["docs"] = str(docs_index)
    return report


def unreadable_table_report(raw_dir: Path, table: str, err: Exception) -> dict[str, Any]:
    """validation.json when metadata.csv itself cannot be read (GX never runs)."""
    return {
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
