"""The drop folder as one ingest run sees it: what is there, what is still arriving, the labels.

    from landmark_lora.ops.ingest_drop import look_around, read_manifest
    drop = look_around(Path("data/incoming"), known_sources=set(), min_age_s=2.0)
    drop.files, drop.left        # take these now; these are still being written (next run)
    m = read_manifest(Path("data/incoming"), known_sources=set())
    m.labels["gyeongbokgung/IMG_0001.jpg"]   # {'shot': 'wide', 'angle': ..., 'pose': ..., 'caption': ...}

A file changed (mtime or ctime) within ``min_age_s`` gets the rest of that time to settle; one
still changing then is left for the next run, and so is everything while ``metadata.csv`` itself
changes. The labels manifest (``data/incoming/metadata.csv``) has columns ``file, shot, angle,
pose, caption`` (``landmark_lora.labels``), ``file`` relative to the drop folder. Rows are
matched in NFC, whatever normalisation the file system used. A row that cannot be used is a
rejection with its reason (empty file, path traversal, duplicate, missing photo); a bad label
quarantines the photo it labels. An unreadable file is an ``IngestError``: nothing moves until
it is fixed.
"""

from __future__ import annotations

import csv
import os
import posixpath
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from landmark_lora.catalogue import normalise_label
from landmark_lora.fsutil import nfc
from landmark_lora.labels import MANIFEST, MANIFEST_COLUMNS
from landmark_lora.ops.ingest_checks import IngestError, is_temporary_name, safe_name, same_file


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


# ---------------------------------------------------------------- the drop folder


def scan(incoming: Path) -> list[Path]:
    """Every entry under incoming except the manifest; symlinks are listed, never followed."""
    found: list[Path] = []
    stack = [incoming]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                p = Path(entry.path)
                if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                    if not (folder == incoming and entry.name == MANIFEST and not entry.is_symlink()):
                        found.append(p)
                else:
                    stack.append(p)
    return sorted(found, key=lambda p: p.as_posix())


def lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def age(st: os.stat_result, now: float) -> float:
    # ctime too: a rename or chmod by the copying tool, or an mtime set back by `cp -p`, is recent activity.
    return now - max(st.st_mtime, st.st_ctime)


def settle(paths: list[Path], looks: dict[Path, os.stat_result], min_age_s: float) -> set[Path]:
    """The paths that may still be being written: changed within ``min_age_s`` and changed again while
    we wait out the rest of it (at most ``min_age_s``). ``looks`` gets the second look of the others."""
    if min_age_s <= 0:
        return set()
    now = time.time()
    young = {p: min_age_s - age(looks[p], now) for p in paths if p in looks and age(looks[p], now) < min_age_s}
    if not young:
        return set()
    time.sleep(min(max(young.values()), min_age_s))
    unsettled = set()
    for p in young:
        again = lstat_or_none(p)
        if again is None or not same_file(again, looks[p]) or again.st_ctime_ns != looks[p].st_ctime_ns:
            unsettled.add(p)
        else:
            looks[p] = again
    return unsettled


@dataclass
class Drop:
    """What the drop folder holds this run, after waiting out files that may still be arriving."""

    files: list[Path]  # to take now
    looks: dict[Path, os.stat_result]
    manifest: Manifest
    manifest_busy: bool  # metadata.csv itself still changing: nothing is taken this run
    busy_hidden: bool  # a hidden/temp file changed lately: a copy is in progress
    hidden: list[str]  # hidden or temporary names (safe_name'd): never taken
    left: set[Path]  # still arriving: they stay for the next run


def look_around(incoming: Path, known_sources: set[str], min_age_s: float) -> Drop:
    """Scan ``incoming``, wait out files changed within ``min_age_s``, read metadata.csv unless it is changing."""
    # First look at everything; hidden/temp names are never taken; a file (or metadata.csv) that
    # changed within min_age_s gets the rest of that time to settle, else it is still arriving.
    found = scan(incoming)
    hidden = [p for p in found if is_temporary_name(p.relative_to(incoming).as_posix())]
    files = [p for p in found if p not in set(hidden)] if hidden else found
    manifest_path = incoming / MANIFEST
    looks = {p: st for p in [*found, manifest_path] if (st := lstat_or_none(p)) is not None}
    busy_hidden = min_age_s > 0 and any(age(looks[p], time.time()) < min_age_s for p in hidden if p in looks)
    unsettled = settle([p for p in [*files, manifest_path] if p in looks and stat.S_ISREG(looks[p].st_mode)],
                       looks, min_age_s)
    hidden_names = [safe_name(nfc(p.relative_to(incoming).as_posix())) for p in hidden]
    manifest_busy = manifest_path in unsettled
    if manifest_busy:  # its rows may be half written: labels would be lost, so take nothing this time
        unsettled |= set(files)
    left = set(unsettled) - {manifest_path}
    files = [p for p in files if p not in left]

    present = {nfc(p.relative_to(incoming).as_posix()) for p in found}
    manifest = Manifest({}, {}, []) if manifest_busy else read_manifest(incoming, known_sources, present)
    return Drop(files, looks, manifest, manifest_busy, busy_hidden, hidden_names, left)
