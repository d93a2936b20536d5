"""The raw metadata table: one row per accepted photo, at ``data/raw/metadata.csv``.

Ingest appends to it (atomically); validate and preprocess read it. ``file`` is
relative to the raw folder (``<landmark>/<name>``). ``seq`` is the ingest order,
which keeps train/val splits stable as photos are added.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

COLUMNS = (
    "file",
    "landmark",
    "shot",
    "angle",
    "pose",
    "caption",
    "sha256",
    "bytes",
    "width",
    "height",
    "format",
    "mode",
    "exif_orientation",
    "source",
    "seq",
    "ingested_at",
)
TABLE_NAME = "metadata.csv"
INT_COLUMNS = ("bytes", "width", "height", "exif_orientation", "seq")


def table_path(raw_dir: str | Path) -> Path:
    return Path(raw_dir) / TABLE_NAME


def read_rows(raw_dir: str | Path) -> list[dict]:
    """Rows of the raw table (ints parsed), in ingest order. Missing table -> []."""
    path = table_path(raw_dir)
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; it should have {', '.join(COLUMNS)}")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            for col in INT_COLUMNS:
                try:
                    row[col] = int(row[col])
                except (TypeError, ValueError):
                    raise ValueError(f"{path}: line {lineno}: column '{col}' is not an integer: {row[col]!r}") from None
            rows.append(row)
    rows.sort(key=lambda r: r["seq"])
    return rows


def write_rows(raw_dir: str | Path, rows: list[dict]) -> None:
    """Replace the table atomically: a crash leaves old or new, never half."""
    write_csv_atomic(table_path(raw_dir), COLUMNS, rows)


def write_csv_atomic(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    """Write a CSV next to ``path`` (temp file, fsync), then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=f"{path.suffix}.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
