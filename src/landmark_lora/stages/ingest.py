"""Ingest: the only door for new photos.

    landmark-lora ingest          # data/incoming/<landmark>/* -> data/raw/<landmark>/ or data/quarantine/

Every file found under ``data/incoming/`` ends up in exactly one place with its
bytes unchanged: accepted into ``data/raw/<landmark>/`` (with a row in
``data/raw/metadata.csv``) or rejected into ``data/quarantine/`` (with a line in
``data/quarantine/rejections.csv`` saying what is wrong). Nothing is deleted.

Crash safety comes from the order of operations, per batch of files:
copy to a temporary name -> fsync -> verify sha256 -> rename; record the batch
atomically; only then remove the originals from incoming. A rerun after a crash
at any point recognises copies it already made and finishes the job.

Files that may still be arriving are left in the drop folder for the next run: a file changed
(mtime or ctime) within ``ingest.min_age_s`` that is still changing after waiting out the rest
of that time, a file that changes while it is read, and hidden or temporary names (``.*``,
``~$*``, ``*~``, ``*.part``, ...: rsync, editor and browser temp files). Photos are opened with
``O_NOFOLLOW`` and the descriptor must be the regular file first looked at (same inode, size
and mtime), so a file swapped for a symlink or rewritten mid-run is never taken.

A file name that is not valid UTF-8 is quarantined (under a readable name, see
``safe_name``) instead of stopping the run.

An optional ``data/incoming/metadata.csv`` labels photos: ``file, shot, angle,
pose, caption`` with ``file`` relative to ``data/incoming`` (e.g.
``gyeongbokgung/IMG_0001.jpg``). Missing labels are recorded as ``unspecified``. It stays in
the drop folder while it has rows for photos that have not arrived yet (left as still arriving,
or absent while a copy is still in progress); otherwise it is archived under ``data/manifests``.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import os
import posixpath
import shutil
import stat
import sys
import tempfile
import time
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from landmark_lora import fsutil, rawtable
from landmark_lora.catalogue import Landmark, normalise_label
from landmark_lora.config import IngestConfig, Params
from landmark_lora.locking import locked

MANIFEST = "metadata.csv"
MANIFEST_COLUMNS = ("file", "shot", "angle", "pose", "caption")
REJECTIONS = "rejections.csv"
REJECTION_COLUMNS = ("file", "reason", "quarantined_as", "rejected_at")
PARTIAL_PREFIX = ".partial-"
# Names that downloaders, editors and office programs use while a file is being written.
TEMP_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".swp")
BATCH = 64  # files copied before one atomic record + removal round

# Formats we accept, by magic number: the extension alone proves nothing.
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
_OTHER_MAGIC = {
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive",
    b"\x7fELF": "an executable",
    b"<": "text/HTML",
}


class IngestError(RuntimeError):
    """The run cannot start (e.g. an unreadable metadata.csv); nothing was moved."""


class _Changed(Exception):
    """The file changed, vanished or was swapped since it was first looked at: it is still arriving."""


@dataclass
class IngestReport:
    accepted: list[str] = field(default_factory=list)  # raw paths, relative to data/raw
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (incoming file, reason)
    resumed: int = 0  # files a crashed run had already stored; removed from incoming now
    manifest_archived_as: str | None = None
    left: list[str] = field(default_factory=list)  # still arriving: stay in incoming for the next run
    hidden: list[str] = field(default_factory=list)  # hidden or temporary names: never taken
    manifest_waiting: int = 0  # metadata.csv rows for photos not here yet (the file stays)
    min_age_s: float = 0.0

    def reasons(self) -> Counter:
        return Counter(reason.split(":", 1)[0] for _, reason in self.rejected)

    def summary(self, quarantine: Path) -> str:
        lines = [f"ingest: {len(self.accepted)} accepted, {len(self.rejected)} rejected"]
        if self.resumed:
            lines[0] += f", {self.resumed} finished from an interrupted run"
        for reason, n in sorted(self.reasons().items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  rejected {n:>4} x {reason}")
        if self.rejected:
            lines.append(f"  details: {quarantine / REJECTIONS}")
        if self.left:
            lines.append(
                f"  left {len(self.left)} still arriving (changed in the last ingest.min_age_s={self.min_age_s:g} s "
                "or while being read); the next run takes them"
            )
        if self.hidden:
            lines.append(
                f"  left {len(self.hidden)} hidden or temporary file(s) (.*, ~$*, *~, *.part, ...); "
                "ingest never takes them"
            )
        if self.manifest_waiting:
            lines.append(
                f"  kept {MANIFEST}: {self.manifest_waiting} row(s) wait for photos that have not arrived yet"
            )
        return "\n".join(lines)


def _crash_hook(point: str) -> None:
    """Called between the steps of the copy/record/remove protocol (tests inject crashes here)."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    with path.open("rb") as fh:
        return _sha256_fh(fh, chunk)


def _sha256_fh(fh: BinaryIO, chunk: int = 1 << 20) -> str:
    fh.seek(0)
    h = hashlib.sha256()
    while block := fh.read(chunk):
        h.update(block)
    return h.hexdigest()


def is_temporary_name(rel: str) -> bool:
    """Hidden or temp names (``.IMG_1.jpg.Ab12Cd`` from rsync, ``~$x.jpg``, ``x.jpg~``, ``x.part``), in
    any folder of ``rel``: files still being written under a name that changes when they are done."""
    for part in rel.split("/"):
        if part.startswith((".", "~$")) or part.endswith("~"):
            return True
    return rel.lower().endswith(TEMP_SUFFIXES)


def safe_name(rel: str) -> str:
    """``rel`` as valid UTF-8 text: bytes of a non-UTF-8 name (decoded by Python as surrogates)
    become ``\\xNN``, e.g. ``caf\\xe9.jpg`` for the Latin-1 bytes ``caf\xe9.jpg``. Valid names are unchanged."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return os.fsencode(rel).decode("utf-8", errors="backslashreplace")


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    # Same inode, and not written since (size and mtime): the bytes we judged are the bytes we copy.
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def _open_checked(path: Path, look: os.stat_result) -> BinaryIO:
    """Open ``path`` for reading without following a symlink, and only if the descriptor is the regular
    file ``look`` (an lstat) saw: a file swapped for a link or another file after the check raises _Changed."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR, errno.ENXIO, errno.EMLINK):
            raise _Changed(f"{path}: {err.strerror}") from None
        raise
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or not _same_file(now, look):
            raise _Changed(f"{path}: not the file first looked at")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _check_unchanged(fh: BinaryIO, look: os.stat_result) -> None:
    if not _same_file(os.fstat(fh.fileno()), look):
        raise _Changed(f"{fh.name}: changed while being read")


def _nfc(text: str) -> str:
    # macOS writes NFD file names; metadata typed by hand is NFC. Compare in NFC.
    return unicodedata.normalize("NFC", text)


def _slug_of(folder: str) -> str:
    return _nfc(folder).strip().lower().replace("-", "_").replace(" ", "_")


# ---------------------------------------------------------------- inspection


@dataclass
class _Photo:
    sha256: str
    size: int
    width: int
    height: int
    format: str
    mode: str
    orientation: int


def _sniff(head: bytes) -> str | None:
    for magic, fmt in _MAGIC.items():
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def exif_orientation(im: Image.Image) -> int:
    """EXIF orientation 1-8; missing, garbage or out-of-range values mean upright (as viewers treat them)."""
    try:
        value = int(im.getexif().get(0x0112, 1) or 1)
    except (TypeError, ValueError, OverflowError):
        return 1
    return value if 1 <= value <= 8 else 1


def inspect_photo(path: Path, cfg: IngestConfig, look: os.stat_result | None = None) -> _Photo | str:
    """Return photo facts, or a rejection reason ('category: details; how to fix').

    ``look``: the lstat the caller judged ``path`` by (default: taken now). Raises _Changed when the file
    is not that regular file any more or changes while it is read (it is still arriving)."""
    look = look if look is not None else path.lstat()
    with _open_checked(path, look) as fh:
        result = _inspect_open(path, fh, look.st_size, cfg)
        _check_unchanged(fh, look)
    return result


def _inspect_open(path: Path, fh: BinaryIO, size: int, cfg: IngestConfig) -> _Photo | str:
    if size == 0:
        return "empty file: 0 bytes; copy the photo again"
    if size > cfg.max_file_mb * 1024 * 1024:
        return f"file too large: {size / 2**20:.0f} MB > ingest.max_file_mb={cfg.max_file_mb:g}"
    head = fh.read(16)
    fh.seek(0)
    fmt = _sniff(head)
    if fmt is None:
        what = next((name for magic, name in _OTHER_MAGIC.items() if head.startswith(magic)), None)
        if what and "image" in what:
            return f"unsupported image format: the content is {what}; convert it to JPEG, PNG or WebP"
        return (
            f"not an image: the content is {what or 'not JPEG, PNG or WebP'} despite the "
            f"'{path.suffix}' extension"
        )
    limit = cfg.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            old_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
            try:
                with Image.open(fh) as im:
                    width, height = im.size
                    if width * height > limit:
                        raise Image.DecompressionBombError(f"{width}x{height}")
                    mode, real_fmt = im.mode, (im.format or fmt)
                    orientation = exif_orientation(im)
                    if min(width, height) >= cfg.min_side:
                        # Decode fully: catches truncated and corrupt data the header hides.
                        if real_fmt == "JPEG" and width * height > 16_000_000:
                            im.draft("RGB", (width // 4, height // 4))  # still reads every byte
                        im.load()
            finally:
                Image.MAX_IMAGE_PIXELS = old_limit
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        dims = str(err).split(" ")[0] if "x" in str(err).split(" ")[0] else "its header"
        return (
            f"decompression bomb: {dims} declares more than ingest.max_pixels={limit:,} pixels; "
            "a real photo is far smaller"
        )
    except UnidentifiedImageError:
        return f"corrupt image: {fmt} signature but the header cannot be read; export the photo again"
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        return f"truncated or corrupt image: {fmt} data does not decode ({err}); copy or export it again"
    if orientation in (5, 6, 7, 8):  # rotated 90 degrees: displayed size is swapped
        width, height = height, width
    if min(width, height) < cfg.min_side:
        return f"too small: {width}x{height} px; the short side must be at least ingest.min_side={cfg.min_side} px"
    ratio = max(width, height) / min(width, height)
    if ratio > cfg.max_aspect_ratio:
        return (
            f"extreme aspect ratio: {width}x{height} px is {ratio:.1f}:1, above "
            f"ingest.max_aspect_ratio={cfg.max_aspect_ratio:g}; crop it to a normal photo shape"
        )
    return _Photo(_sha256_fh(fh), size, width, height, real_fmt, mode, orientation)


# ---------------------------------------------------------------- manifest


@dataclass
class _Manifest:
    labels: dict[str, dict[str, str]]  # incoming-relative NFC path -> normalised labels
    bad_labels: dict[str, str]  # incoming-relative path -> rejection reason for its photo
    row_rejections: list[tuple[str, str]]  # ("metadata.csv row N", reason)
    absent: list[tuple[str, str, str]] = field(default_factory=list)  # (where, NFC path, reason) of rows
    # whose photo is not here: missing, or not arrived yet while a copy is in progress (decided later)


def read_manifest(incoming: Path, known_sources: set[str], present: set[str] | None = None) -> _Manifest:
    """``present``: NFC incoming-relative paths of the files found (rows are matched in NFC, whatever
    normalisation the file system used); None = look on disk."""
    path = incoming / MANIFEST
    out = _Manifest({}, {}, [])
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
        name = _nfc(raw_name.replace("\\", "/"))
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


# ---------------------------------------------------------------- storage


_fsync_dir = fsutil.fsync_dir


def _dest_for(dest: Path, src: Path, sha: str | None, taken: set[Path]) -> tuple[Path, bool]:
    """Pick the destination name. Returns (path, already_there) — already_there when an
    interrupted run left an identical copy at that name."""
    if dest.name.startswith(PARTIAL_PREFIX):  # that prefix marks our temp copies, which every run deletes
        dest = dest.with_name(f"_{dest.name}")
    candidates = [dest] + [dest.with_name(f"{dest.stem}-{sha[:8] if sha else i}{dest.suffix}") for i in range(1, 3)]
    candidates += [dest.with_name(f"{dest.stem}-{i}{dest.suffix}") for i in range(2, 10_000)]
    for cand in candidates:
        if cand in taken:
            continue
        if cand.is_symlink() and src.is_symlink():
            if os.readlink(cand) == os.readlink(src):
                return cand, True
            continue
        if not cand.exists() and not cand.is_symlink():
            return cand, False
        if sha and cand.is_file() and not cand.is_symlink() and sha256_file(cand) == sha:
            return cand, True
    raise IngestError(f"cannot find a free name for {dest}")


def _real_folders(root: Path, rel: str) -> Path:
    """root/rel, stepping around any folder name already taken by a file or a symlink (quarantined
    earlier): never write through a link into someone else's folder, never fail on a file."""
    *folders, name = rel.split("/")
    here = root
    for part in folders:
        step, i = here / part, 1
        while step.is_symlink() or (step.exists() and not step.is_dir()):
            step, i = here / f"{part}-{i}", i + 1
        here = step
    return here / name


def _copy_verified(src: Path, dest: Path, sha: str | None, look: os.stat_result | None = None) -> None:
    """Copy src to dest via a temp file in dest's folder; symlinks are recreated, never followed.

    ``look``: src must still be that regular file, unchanged until the copy is done (else _Changed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        tmp = dest.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{dest.name}")
        tmp.unlink(missing_ok=True)
        os.symlink(os.readlink(src), tmp)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        return
    fd, tmp_name = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, (_open_checked(src, look) if look else src.open("rb")) as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
            if look is not None:
                _check_unchanged(inp, look)
        if sha is not None and sha256_file(tmp) != sha:
            raise IngestError(f"copy of {src} to {dest} does not match the original; the original is untouched")
        shutil.copystat(src, tmp, follow_symlinks=False)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


def _read_rejections(quarantine: Path) -> list[dict]:
    path = quarantine / REJECTIONS
    if not path.exists():
        return []
    return fsutil.read_csv_rows(path)[1]  # formula-safe cells back to what was written


def _write_rejections(quarantine: Path, rows: list[dict]) -> None:
    fsutil.write_csv_atomic(quarantine / REJECTIONS, REJECTION_COLUMNS, rows)


def _remove_partials(*roots: Path) -> None:
    # Only our own temp copies; the originals are still in incoming.
    for root in roots:
        if root.is_dir():
            for p in root.rglob(f"{PARTIAL_PREFIX}*"):
                if p.is_symlink() or p.is_file():  # not a user's folder that shares the prefix
                    p.unlink(missing_ok=True)
            # The atomic writer's temp file of a table, left by a kill -9 mid-write (never read).
            for name in (rawtable.TABLE_NAME, REJECTIONS):
                for p in root.glob(f".{name}.*.tmp"):
                    if p.is_file() and not p.is_symlink():
                        p.unlink(missing_ok=True)


# ---------------------------------------------------------------- the run


def _scan(incoming: Path) -> list[Path]:
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


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _age(st: os.stat_result, now: float) -> float:
    # ctime too: a rename or chmod by the copying tool, or an mtime set back by `cp -p`, is recent activity.
    return now - max(st.st_mtime, st.st_ctime)


def _settle(paths: list[Path], looks: dict[Path, os.stat_result], min_age_s: float) -> set[Path]:
    """The paths that may still be being written: changed within ``min_age_s`` and changed again while
    we wait out the rest of it (at most ``min_age_s``). ``looks`` gets the second look of the others."""
    if min_age_s <= 0:
        return set()
    now = time.time()
    young = {p: min_age_s - _age(looks[p], now) for p in paths if p in looks and _age(looks[p], now) < min_age_s}
    if not young:
        return set()
    time.sleep(min(max(young.values()), min_age_s))
    unsettled = set()
    for p in young:
        again = _lstat(p)
        if again is None or not _same_file(again, looks[p]) or again.st_ctime_ns != looks[p].st_ctime_ns:
            unsettled.add(p)
        else:
            looks[p] = again
    return unsettled


def _progress(items: list, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="ingest", unit="file", file=sys.stderr)


@locked("landmark-lora ingest")  # the pipeline lock, whoever calls (CLI, flow): one writer at a time
def ingest(params: Params, catalogue: dict[str, Landmark], progress: bool | None = None) -> IngestReport:
    """Move every file in ``paths.incoming`` into raw or quarantine. Idempotent and crash-safe.
    Files still arriving (see the module docstring) stay in incoming for the next run."""
    cfg, paths = params.ingest, params.paths
    incoming, raw, quarantine = Path(paths.incoming), Path(paths.raw), Path(paths.quarantine)
    incoming.mkdir(parents=True, exist_ok=True)
    _remove_partials(raw, quarantine)
    report = IngestReport(min_age_s=cfg.min_age_s)

    table = rawtable.read_rows(raw)
    rejections = _read_rejections(quarantine)
    by_sha = {r["sha256"]: r for r in table}
    recorded_rejects = {(r["file"], r["quarantined_as"]) for r in rejections}
    recorded_rows = {(r["file"], r["reason"]) for r in rejections if not r["quarantined_as"]}
    known_sources = {_nfc(r["source"]) for r in table} | {_nfc(r["file"]) for r in rejections}

    # First look at everything; hidden/temp names are never taken; a file (or metadata.csv) that
    # changed within min_age_s gets the rest of that time to settle, else it is still arriving.
    found = _scan(incoming)
    hidden = [p for p in found if is_temporary_name(p.relative_to(incoming).as_posix())]
    files = [p for p in found if p not in set(hidden)] if hidden else found
    manifest_path = incoming / MANIFEST
    looks = {p: st for p in [*found, manifest_path] if (st := _lstat(p)) is not None}
    busy_hidden = cfg.min_age_s > 0 and any(_age(looks[p], time.time()) < cfg.min_age_s for p in hidden if p in looks)
    unsettled = _settle([p for p in [*files, manifest_path] if p in looks and stat.S_ISREG(looks[p].st_mode)],
                        looks, cfg.min_age_s)
    report.hidden = [safe_name(_nfc(p.relative_to(incoming).as_posix())) for p in hidden]
    manifest_busy = manifest_path in unsettled
    if manifest_busy:  # its rows may be half written: labels would be lost, so take nothing this time
        unsettled |= set(files)
    left: set[Path] = set(unsettled) - {manifest_path}
    files = [p for p in files if p not in left]

    present = {_nfc(p.relative_to(incoming).as_posix()) for p in found}
    manifest = _Manifest({}, {}, []) if manifest_busy else read_manifest(incoming, known_sources, present)
    next_seq = max((r["seq"] for r in table), default=0) + 1
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")

    pending_rows: list[dict] = []
    pending_rejects: list[dict] = []
    pending_remove: list[tuple[Path, os.stat_result | None]] = []
    taken: set[Path] = set()

    def commit() -> None:
        nonlocal pending_rows, pending_rejects, pending_remove
        if pending_rows:
            table.extend(pending_rows)
            rawtable.write_rows(raw, table)
        if pending_rejects:
            rejections.extend(pending_rejects)
            _write_rejections(quarantine, rejections)
        _crash_hook("recorded")
        for src, look in pending_remove:
            again = _lstat(src)
            if look is not None and again is not None and not _same_file(again, look):
                # Written to after we copied it: keep it (the next run takes the new bytes), never unlink.
                left.add(src)
                continue
            src.unlink()
        pending_rows, pending_rejects, pending_remove = [], [], []
        taken.clear()

    def reject(src: Path, rel: str, reason: str, sha: str | None = None, look: os.stat_result | None = None) -> None:
        if sha is None and look is not None and stat.S_ISREG(look.st_mode):
            with _open_checked(src, look) as fh:  # lets a rerun recognise the copy an interrupted run made
                sha = _sha256_fh(fh)
        base = _real_folders(quarantine, rel)
        if base == quarantine / REJECTIONS:  # a dropped rejections.csv must not become the table
            base = base.with_name(f"_{REJECTIONS}")
        dest, already = _dest_for(base, src, sha, taken)
        if not already:
            _copy_verified(src, dest, sha, look if look is not None and stat.S_ISREG(look.st_mode) else None)
        _crash_hook("copied")
        taken.add(dest)
        stored_as = dest.relative_to(quarantine).as_posix()
        if (rel, stored_as) not in recorded_rejects:  # an interrupted run may have recorded it already
            pending_rejects.append({"file": rel, "reason": reason, "quarantined_as": stored_as, "rejected_at": now})
        pending_remove.append((src, look))
        report.rejected.append((rel, reason))

    for where, reason in manifest.row_rejections:
        if (where, reason) not in recorded_rows:  # an interrupted run may have recorded it already
            pending_rejects.append({"file": where, "reason": reason, "quarantined_as": "", "rejected_at": now})
        report.rejected.append((where, reason))

    show = progress if progress is not None else len(files) >= cfg.progress_threshold
    for src in _progress(files, show):
        true_rel = _nfc(src.relative_to(incoming).as_posix())
        rel = safe_name(true_rel)  # what the tables and the quarantine call it: always valid UTF-8
        parts = rel.split("/")
        look = looks.get(src)
        try:
            if look is None:  # gone since the scan (moved away by its owner): nothing to do
                continue
            if stat.S_ISLNK(look.st_mode):
                target = safe_name(os.readlink(src))
                reject(src, rel, f"symlink: not followed (points to {target}); copy the real photo in instead")
            elif not stat.S_ISREG(look.st_mode):
                # A FIFO, socket or device: reading it could block forever and it holds no photo to keep.
                # It stays where it is (nothing to copy), recorded once.
                reason = "not a regular file (FIFO, socket or device): left in place, ingest skips it; remove it"
                if (rel, reason) not in recorded_rows:
                    pending_rejects.append({"file": rel, "reason": reason, "quarantined_as": "", "rejected_at": now})
                    recorded_rows.add((rel, reason))
                report.rejected.append((rel, reason))
            elif rel != true_rel:
                raw_bytes = os.fsencode(src.relative_to(incoming).as_posix())
                reject(
                    src,
                    rel,
                    f"file name not UTF-8: the name is the bytes {raw_bytes!r} (shown here as '{rel}'); "
                    "rename it with UTF-8 characters (e.g. é, not a Latin-1 byte) and drop it in again",
                    look=look,
                )
            elif len(parts) == 1:
                reject(src, rel, "outside a landmark folder: put photos in data/incoming/<landmark-slug>/", look=look)
            elif _slug_of(parts[0]) not in catalogue:
                reject(
                    src,
                    rel,
                    f"unknown landmark folder: '{parts[0]}' is not in the catalogue "
                    f"({', '.join(sorted(catalogue))}); rename the folder or add the landmark to the catalogue",
                    look=look,
                )
            elif src.suffix.lower() not in cfg.extensions:
                reject(
                    src,
                    rel,
                    f"unsupported file type: '{src.suffix or 'no extension'}'; photos must be {', '.join(cfg.extensions)}",
                    look=look,
                )
            else:
                facts = inspect_photo(src, cfg, look)
                if isinstance(facts, str):
                    reject(src, rel, facts, look=look)
                elif rel in manifest.bad_labels:
                    reject(src, rel, manifest.bad_labels[rel], facts.sha256, look=look)
                elif facts.sha256 in by_sha:
                    twin = by_sha[facts.sha256]
                    if _nfc(twin["source"]) == rel and (raw / twin["file"]).is_file():
                        pending_remove.append((src, look))  # stored and recorded by an interrupted run
                        report.resumed += 1
                    else:
                        reject(
                            src,
                            rel,
                            f"duplicate content: same bytes as data/raw/{twin['file']} (from {twin['source']})",
                            facts.sha256,
                            look=look,
                        )
                else:
                    slug = _slug_of(parts[0])
                    dest, already = _dest_for(raw / slug / src.name, src, facts.sha256, taken)
                    if not already:
                        _copy_verified(src, dest, facts.sha256, look)
                    _crash_hook("copied")
                    taken.add(dest)
                    labels = manifest.labels.get(rel, {})
                    row = {
                        "file": dest.relative_to(raw).as_posix(),
                        "landmark": slug,
                        "shot": labels.get("shot", "unspecified"),
                        "angle": labels.get("angle", "unspecified"),
                        "pose": labels.get("pose", "unspecified"),
                        "caption": labels.get("caption", ""),
                        "sha256": facts.sha256,
                        "bytes": facts.size,
                        "width": facts.width,
                        "height": facts.height,
                        "format": facts.format,
                        "mode": facts.mode,
                        "exif_orientation": facts.orientation,
                        "source": rel,
                        "seq": next_seq,
                        "ingested_at": now,
                    }
                    next_seq += 1
                    by_sha[facts.sha256] = row
                    pending_rows.append(row)
                    pending_remove.append((src, look))
                    report.accepted.append(row["file"])
        except _Changed:
            if _lstat(src) is not None:  # being written or swapped under us: no copy kept, the original stays
                left.add(src)
        if len(pending_remove) >= BATCH:
            commit()

    # A row whose photo is not here: missing (a typo) once the drop folder is quiet; while a copy
    # is still in progress, it waits with metadata.csv for the next run.
    in_progress = bool(left) or busy_hidden
    waiting = 0
    for where, norm, reason in manifest.absent:
        if in_progress:
            waiting += 1
            continue
        if (where, reason) not in recorded_rows:
            pending_rejects.append({"file": where, "reason": reason, "quarantined_as": "", "rejected_at": now})
        report.rejected.append((where, reason))
    commit()

    left_rels = {_nfc(p.relative_to(incoming).as_posix()) for p in left}
    waiting += sum(1 for rel in left_rels if rel in manifest.labels or rel in manifest.bad_labels)
    report.left = sorted(safe_name(rel) for rel in left_rels) + ([MANIFEST] if manifest_busy else [])
    report.manifest_waiting = waiting
    if not waiting and not manifest_busy:
        report.manifest_archived_as = _archive_manifest(incoming, raw.parent / "manifests", now)
    _remove_empty_dirs(incoming, catalogue)
    return report


def _archive_manifest(incoming: Path, archive: Path, now: str) -> str | None:
    """Every row of metadata.csv has been used or rejected: keep it for the record, out of the drop folder."""
    src = incoming / MANIFEST
    if not src.is_file() or src.is_symlink():
        return None
    stamp = now.replace(":", "").replace("+0000", "Z")
    dest, already = _dest_for(archive / f"metadata-{stamp}.csv", src, sha256_file(src), set())
    if not already:
        _copy_verified(src, dest, sha256_file(src))
    src.unlink()
    return dest.as_posix()


def _remove_empty_dirs(incoming: Path, catalogue: dict[str, Landmark]) -> None:
    # Folders emptied by ingest go; landmark folders stay for the next drop.
    for folder in sorted((p for p in incoming.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
        rel = folder.relative_to(incoming).parts
        if (len(rel) > 1 or _slug_of(rel[0]) not in catalogue) and not any(folder.iterdir()):
            folder.rmdir()


def pending_photos(incoming: Path) -> int:
    """How many files wait in the drop folder (used by the scheduler to decide whether to retrain);
    hidden and temporary names are not counted (ingest never takes them)."""
    incoming = Path(incoming)
    if not incoming.is_dir():
        return 0
    return sum(1 for p in _scan(incoming) if not is_temporary_name(p.relative_to(incoming).as_posix()))
