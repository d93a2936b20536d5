"""Ingest's checks on one file: is it a photo, is it still arriving, where does its copy go.

    from landmark_lora.ops.ingest_checks import inspect_photo, safe_name, is_temporary_name
    inspect_photo(path, params.ingest)   # PhotoFacts, or 'category: details; how to fix' to quarantine it
    safe_name(rel)                       # a non-UTF-8 name as readable text (caf\\xe9.jpg)
    is_temporary_name("a/.IMG_1.jpg.Ab12")   # True: rsync/editor/browser temp names are never taken
    copy_verified(src, dest, sha, look)  # temp name, fsync, sha256 check, rename

The protocol that uses them (copy, verify, record, remove; crash points) is ``ops.ingest``.
A file is judged by the bytes read through one descriptor, opened with ``O_NOFOLLOW`` and checked
to be the regular file first looked at (same inode, size and mtime); a file swapped or written
meanwhile raises ``Changed`` (it is still arriving). Copies go through a hidden temp name
(``PARTIAL_PREFIX``), are fsynced and verified by sha256, then renamed into place.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from landmark_lora import fsutil
from landmark_lora.artifacts import RAW_TABLE, REJECTIONS
from landmark_lora.config import IngestConfig
from landmark_lora.imaging import exif_orientation

REJECTION_COLUMNS = ("file", "reason", "quarantined_as", "rejected_at")
PARTIAL_PREFIX = ".partial-"  # our temp copies: every run deletes them
# Names that downloaders, editors and office programs use while a file is being written.
TEMP_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".swp")

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


class Changed(Exception):
    """The file changed, vanished or was swapped since it was first looked at: it is still arriving."""


# ---------------------------------------------------------------- names and files


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


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    # Same inode, and not written since (size and mtime): the bytes we judged are the bytes we copy.
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def open_checked(path: Path, look: os.stat_result) -> BinaryIO:
    """Open ``path`` for reading without following a symlink, and only if the descriptor is the regular
    file ``look`` (an lstat) saw: a file swapped for a link or another file after the check raises Changed."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR, errno.ENXIO, errno.EMLINK):
            raise Changed(f"{path}: {err.strerror}") from None
        raise
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or not same_file(now, look):
            raise Changed(f"{path}: not the file first looked at")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def check_unchanged(fh: BinaryIO, look: os.stat_result) -> None:
    if not same_file(os.fstat(fh.fileno()), look):
        raise Changed(f"{fh.name}: changed while being read")


# ---------------------------------------------------------------- inspection


@dataclass
class PhotoFacts:
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


def inspect_photo(path: Path, cfg: IngestConfig, look: os.stat_result | None = None) -> PhotoFacts | str:
    """Return photo facts, or a rejection reason ('category: details; how to fix').

    ``look``: the lstat the caller judged ``path`` by (default: taken now). Raises Changed when the file
    is not that regular file any more or changes while it is read (it is still arriving)."""
    look = look if look is not None else path.lstat()
    with open_checked(path, look) as fh:
        result = _inspect_open(path, fh, look.st_size, cfg)
        check_unchanged(fh, look)
    return result


def _inspect_open(path: Path, fh: BinaryIO, size: int, cfg: IngestConfig) -> PhotoFacts | str:
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
                        # Decode every byte: catches truncated and corrupt data the header hides. A
                        # JPEG is entropy-decoded whole but its pixels made at 1/8 scale (DCT
                        # scaling), which proves the file whole at a fraction of the cost.
                        if real_fmt == "JPEG":
                            im.draft(None, (max(1, width // 8), max(1, height // 8)))
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
    return PhotoFacts(fsutil.sha256_fh(fh), size, width, height, real_fmt, mode, orientation)


# ---------------------------------------------------------------- storage


def dest_for(dest: Path, src: Path, sha: str | None, taken: set[Path]) -> tuple[Path, bool]:
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
        if sha and cand.is_file() and not cand.is_symlink() and fsutil.sha256_file(cand) == sha:
            return cand, True
    raise IngestError(f"cannot find a free name for {dest}")


def real_folders(root: Path, rel: str) -> Path:
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


def copy_verified(src: Path, dest: Path, sha: str | None, look: os.stat_result | None = None) -> None:
    """Copy src to dest via a temp file in dest's folder; symlinks are recreated, never followed.

    ``look``: src must still be that regular file, unchanged until the copy is done (else Changed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        tmp = dest.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{dest.name}")
        tmp.unlink(missing_ok=True)
        os.symlink(os.readlink(src), tmp)
        os.replace(tmp, dest)
        fsutil.fsync_dir(dest.parent)
        return
    fd, tmp_name = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, (open_checked(src, look) if look else src.open("rb")) as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
            if look is not None:
                check_unchanged(inp, look)
        if sha is not None and fsutil.sha256_file(tmp) != sha:
            raise IngestError(f"copy of {src} to {dest} does not match the original; the original is untouched")
        shutil.copystat(src, tmp, follow_symlinks=False)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsutil.fsync_dir(dest.parent)


def read_rejections(path: Path) -> list[dict]:
    """The rows of ``Layout.rejections_csv``; [] before the first rejection."""
    if not path.exists():
        return []
    return fsutil.read_csv_rows(path)[1]  # formula-safe cells back to what was written


def write_rejections(path: Path, rows: list[dict]) -> None:
    fsutil.write_csv_atomic(path, REJECTION_COLUMNS, rows)


def remove_partials(*roots: Path) -> None:
    # Only our own temp copies; the originals are still in incoming.
    for root in roots:
        if root.is_dir():
            for p in root.rglob(f"{PARTIAL_PREFIX}*"):
                if p.is_symlink() or p.is_file():  # not a user's folder that shares the prefix
                    p.unlink(missing_ok=True)
            # The atomic writer's temp file of a table, left by a kill -9 mid-write (never read).
            for name in (RAW_TABLE, REJECTIONS):
                for p in root.glob(f".{name}.*.tmp"):
                    if p.is_file() and not p.is_symlink():
                        p.unlink(missing_ok=True)
