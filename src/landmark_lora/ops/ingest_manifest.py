"""Ingest's reading of the drop folder's labels manifest (``data/incoming/metadata.csv``).

    from landmark_lora.ops.ingest_manifest import read_manifest
    m = read_manifest(Path("data/incoming"), known_sources=set())
    m.labels["gyeongbokgung/IMG_0001.jpg"]   # {'shot': 'wide', 'angle': ..., 'pose': ..., 'caption': ...}

Columns ``file, shot, angle, pose, caption`` (``landmark_lora.labels``), ``file`` relative to the
drop folder. Rows are matched in NFC, whatever normalisation the file system used. A row that
cannot be used is a rejection with its reason (empty file, path traversal, duplicate, missing
photo); a bad label quarantines the photo it labels. An unreadable file is an ``IngestError``:
nothing moves until it is fixed.
"""

from __future__ import annotations

import csv
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from landmark_lora.catalogue import normalise_label
from landmark_lora.fsutil import nfc
from landmark_lora.labels import MANIFEST, MANIFEST_COLUMNS
from landmark_lora.ops.ingest_checks import IngestError


@dataclass
class Manifest:
    labels: dict[str, dict[str, str]]  # incoming-relative NFC path -> normalised labels
    bad_labels: dict[str, str]  # incoming-relative path -> rejection reason for its photo
    row_rejections: list[tuple[str, str]]  # ("metadata.csv row N", reason)
    absent: list[tuple[str, str, str]] = field(default_factory=list)  # (where, NFC path, reason) of rows
    # whose photo is not here: missing, or not arrived yet while a copy is in progress (decided later)


def read_manifest(incoming: Path, known_sources: set[str], present: set[str] | None = None) -> Manifest:
    """``present``: NFC incoming-relative paths of the files found (rows are matched in NFC, whatever
    normalisation the file system used); None = look on disk."""
    path = incoming / MANIFEST
    out = Manifest({}, {}, [])
    if not path.is_file() or path.is_symlink():
        return out
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            if "file" not in header:
                raise IngestError(
                    f"{path}: no 'file' column (found: {', '.join(header) or 'nothing'}). The header must be "
                    f"{','.join(MANIFEST_COLUMNS)}; fix the file and run `landmark-lora ingest` again. "
                    "Nothing was moved."
                )
            reader.fieldnames = header
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise IngestError(f"{path}: not UTF-8 text ({err}); save it as UTF-8 CSV. Nothing was moved.") from None
    except csv.Error as err:
        raise IngestError(f"{path}: not a valid CSV ({err}). Nothing was moved.") from None

    for n, row in enumerate(rows, start=2):  # row 1 is the header
        where = f"{MANIFEST} row {n}"
        raw_name = (row.get("file") or "").strip()
        if not raw_name:
            out.row_rejections.append((where, "metadata row without file: the 'file' column is empty"))
            continue
        name = nfc(raw_name.replace("\\", "/"))
        norm = posixpath.normpath(name)
        if name.startswith("/") or norm == ".." or norm.startswith("../") or (len(name) > 1 and name[1] == ":"):
            out.row_rejections.append(
                (
                    where,
                    f"metadata path traversal: '{raw_name}' points outside {incoming}; "
                    "use a path like <landmark>/<photo>.jpg",
                )
            )
            continue
        if norm in out.labels or norm in out.bad_labels:
            out.row_rejections.append((where, f"metadata duplicate row: '{raw_name}' is labelled twice"))
            continue
        if present is not None:
            found = norm in present
        else:
            found = (incoming / norm).exists() or (incoming / norm).is_symlink()
        if not found:
            if norm in known_sources:  # consumed by an earlier (possibly interrupted) run
                continue
            out.absent.append(
                (where, norm, f"metadata file missing: '{raw_name}' is not in {incoming}; check the name")
            )
            continue
        try:
            labels = {
                "shot": normalise_label("shot", row.get("shot")),
                "angle": normalise_label("angle", row.get("angle")),
                "pose": normalise_label("pose", row.get("pose")),
                "caption": " ".join((row.get("caption") or "").split()),
            }
        except ValueError as err:
            # Reported once, on the photo it labels (which is quarantined with this reason).
            out.bad_labels[norm] = f"invalid label: {where}: {err}; fix {MANIFEST} and drop the photo in again"
            continue
        out.labels[norm] = labels
    return out

