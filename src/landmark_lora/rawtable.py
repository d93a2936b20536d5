"""The raw metadata table: one row per accepted photo, at ``data/raw/metadata.csv``.

Ingest appends to it (atomically); validate and preprocess read it. ``file`` is
relative to the raw folder (``<landmark>/<name>``). ``seq`` is the ingest order,
which keeps train/val splits stable as photos are added.

Text cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR) are
stored with a leading ``'``; ``read_rows`` removes it (see ``landmark_lora.fsutil``), so read
the table with ``read_rows``, not a plain CSV reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from landmark_lora import fsutil
from landmark_lora.artifacts import RAW_TABLE

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
TABLE_NAME = RAW_TABLE  # the name Layout.raw_table uses; kept under this name for callers
INT_COLUMNS = ("bytes", "width", "height", "exif_orientation", "seq")


def table_path(raw_dir: str | Path) -> Path:
    """``<raw_dir>/metadata.csv``: ``Layout.of(params).raw_table`` for a raw folder given alone."""
    return Path(raw_dir) / TABLE_NAME


def read_rows(raw_dir: str | Path) -> list[dict]:
    """Rows of the raw table (ints parsed), in ingest order. Missing table -> []."""
    path = table_path(raw_dir)
    if not path.exists():
        return []
    fieldnames, found = fsutil.read_csv_rows(path)
    missing = [c for c in COLUMNS if c not in fieldnames]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; it should have {', '.join(COLUMNS)}")
    rows: list[dict] = []
    for lineno, cells in enumerate(found, start=2):
        row: dict[str, Any] = cells  # ints parsed in place below
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
    """Kept for callers of the old name: see ``fsutil.write_csv_atomic``."""
    fsutil.write_csv_atomic(path, columns, rows)
