"""One atomic writer for every file of state the package keeps (tables, caches, reports, checkpoints).

    from landmark_lora import fsutil
    fsutil.write_json_atomic(reports / "eval.json", metrics, indent=2)
    fsutil.write_csv_atomic(raw / "metadata.csv", COLUMNS, rows)     # formula-safe, see below
    fsutil.sha256_file(photo)                                          # hex digest, read in 1 MiB blocks
    fsutil.nfc(name)                                                   # NFC: macOS NFD names match typed labels
    with fsutil.atomic_path(cache / "x.png") as tmp:                   # for writers that want a path
        image.save(tmp, format="PNG")

A reader sees the old file or the new one, never half of one, and a failed write (a full disk,
a crash, an exception in the caller) leaves the old file as it was and no temp file behind:
write a temp file in the target's folder, fsync it, ``os.replace`` it over the target, fsync
the folder (so the rename itself survives a power cut). Temp files are hidden
(``.<name>.<random>.tmp``), so a crash with no chance to clean up (kill -9) leaves a dot-file
that nothing reads.

CSV tables the project writes and reads back (the raw table, ``rejections.csv``) are protected
against spreadsheet formula injection: a text cell that starts with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return is written with a leading ``'`` (so a spreadsheet shows it as text),
and so is a cell that already starts with ``'``; ``read_csv_rows`` strips exactly one leading
``'``, so every value round-trips unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

# Cells a spreadsheet would run as a formula (OWASP "CSV injection"), plus our own escape mark.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new file in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename still happened
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """fsync every file under ``folder`` and the folders themselves: before a folder written in place
    (a checkpoint) is renamed into view, so the rename never exposes files whose data is not on disk."""
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; when the block ends without error, fsync it and rename
    it over ``path``. On any error the temp file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes the file 0600; keep the mode a plain open() would give (or the old file's),
        # so reports and tables stay readable by whoever could read them before.
        os.chmod(tmp, _mode_for(path))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: old or new content, never half."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | Path, obj: Any, *, newline: bool = True, **dumps: Any) -> None:
    """``json.dumps(obj, **dumps)`` (plus a final newline) written atomically."""
    write_text_atomic(path, json.dumps(obj, **dumps) + ("\n" if newline else ""))


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet will not run as a formula (see the module docstring)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_unsafe(value: str | None) -> str | None:
    """Undo :func:`csv_safe` for a cell read back from a table this package wrote."""
    if isinstance(value, str) and value.startswith("'"):
        return value[1:]
    return value


def write_csv_atomic(path: str | Path, columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write a CSV table (header + rows, text cells formula-safe) atomically."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: csv_safe(v) for k, v in row.items()} for row in rows)
    write_text_atomic(path, buf.getvalue())


def read_csv_rows(path: str | Path) -> tuple[list[str], list[dict[str, str | None]]]:
    """(header, rows) of a table written by :func:`write_csv_atomic`, cells as they were given."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [{k: csv_unsafe(v) for k, v in row.items()} for row in reader]
        return list(reader.fieldnames or []), rows


def sha256_fh(fh: BinaryIO, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of an open binary file, from its start (the position is left at the end)."""
    fh.seek(0)
    h = hashlib.sha256()
    while block := fh.read(chunk):
        h.update(block)
    return h.hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of the file at ``path``."""
    with Path(path).open("rb") as fh:
        return sha256_fh(fh, chunk)


def nfc(text: str) -> str:
    """``text`` in Unicode NFC: macOS writes NFD file names, metadata typed by hand is NFC; compare in NFC."""
    return unicodedata.normalize("NFC", text)
