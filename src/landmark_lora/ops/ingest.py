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

The checks on one file (decoding, names, verified copies) are in ``ops.ingest_checks``; what the
drop folder holds this run (still-arriving files, ``metadata.csv``) is ``ops.ingest_drop``.
"""

from __future__ import annotations

import os
import stat
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from landmark_lora import fsutil, rawtable
from landmark_lora.artifacts import REJECTIONS, Layout
from landmark_lora.catalogue import Landmark
from landmark_lora.config import IngestConfig, Params
from landmark_lora.fsutil import nfc
from landmark_lora.labels import MANIFEST
from landmark_lora.locking import locked
from landmark_lora.logs import get_logger
from landmark_lora.ops.ingest_checks import (
    PARTIAL_PREFIX,
    REJECTION_COLUMNS,
    Changed,
    IngestError,
    PhotoFacts,
    copy_verified,
    dest_for,
    inspect_photo,
    is_temporary_name,
    open_checked,
    read_rejections,
    real_folders,
    remove_partials,
    safe_name,
    same_file,
    write_rejections,
)
from landmark_lora.ops.ingest_drop import Manifest, look_around, lstat_or_none, scan
from landmark_lora.parallel import Prefetcher

__all__ = ["BATCH", "PARTIAL_PREFIX", "REJECTIONS", "REJECTION_COLUMNS", "IngestError", "IngestReport",
           "ingest", "inspect_photo", "pending_photos"]

BATCH = 64  # files copied before one atomic record + removal round

log = get_logger(__name__)


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


def _slug_of(folder: str) -> str:
    return nfc(folder).strip().lower().replace("-", "_").replace(" ", "_")


def _progress(items: list, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="ingest", unit="file", file=sys.stderr)


class _Run:
    """One run's state: the tables as read, the batch not yet recorded, the files that stay."""

    def __init__(self, layout: Layout, report: IngestReport) -> None:
        self.layout, self.report = layout, report
        self.incoming, self.raw, self.quarantine = layout.incoming, layout.raw, layout.quarantine
        self.table = rawtable.read_rows(self.raw)
        self.rejections = read_rejections(layout.rejections_csv)
        self.by_sha = {r["sha256"]: r for r in self.table}
        self.recorded_rejects = {(r["file"], r["quarantined_as"]) for r in self.rejections}
        self.recorded_rows = {(r["file"], r["reason"]) for r in self.rejections if not r["quarantined_as"]}
        self.known_sources = {nfc(r["source"]) for r in self.table} | {nfc(r["file"]) for r in self.rejections}
        self.next_seq = 0
        self.now = ""
        self.left: set[Path] = set()
        self.pending_rows: list[dict] = []
        self.pending_rejects: list[dict] = []
        self.pending_remove: list[tuple[Path, os.stat_result | None]] = []
        self.taken: set[Path] = set()
        self.inspector: Prefetcher | None = None  # decodes and hashes photos ahead, on every core

    def commit(self) -> None:
        """Record the batch (raw table, rejections), then remove its originals from incoming."""
        log.debug("ingest: recording %d row(s), %d rejection(s); removing %d original(s)",
                  len(self.pending_rows), len(self.pending_rejects), len(self.pending_remove))
        if self.pending_rows:
            self.table.extend(self.pending_rows)
            rawtable.write_rows(self.raw, self.table)
        if self.pending_rejects:
            self.rejections.extend(self.pending_rejects)
            write_rejections(self.layout.rejections_csv, self.rejections)
        _crash_hook("recorded")
        for src, look in self.pending_remove:
            again = lstat_or_none(src)
            if look is not None and again is not None and not same_file(again, look):
                # Written to after we copied it: keep it (the next run takes the new bytes), never unlink.
                self.left.add(src)
                continue
            src.unlink()
        self.pending_rows, self.pending_rejects, self.pending_remove = [], [], []
        self.taken.clear()

    def note(self, where: str, reason: str) -> None:
        """A rejection with nothing to quarantine (a manifest row), recorded once across runs."""
        if (where, reason) not in self.recorded_rows:  # an interrupted run may have recorded it already
            self.pending_rejects.append(
                {"file": where, "reason": reason, "quarantined_as": "", "rejected_at": self.now}
            )
        self.report.rejected.append((where, reason))

    def reject(self, src: Path, rel: str, reason: str, sha: str | None = None,
               look: os.stat_result | None = None) -> None:
        if sha is None and look is not None and stat.S_ISREG(look.st_mode):
            with open_checked(src, look) as fh:  # lets a rerun recognise the copy an interrupted run made
                sha = fsutil.sha256_fh(fh)
        base = real_folders(self.quarantine, rel)
        if base == self.layout.rejections_csv:  # a dropped rejections.csv must not become the table
            base = base.with_name(f"_{REJECTIONS}")
        dest, already = dest_for(base, src, sha, self.taken)
        if not already:
            copy_verified(src, dest, sha, look if look is not None and stat.S_ISREG(look.st_mode) else None)
        _crash_hook("copied")
        self.taken.add(dest)
        stored_as = dest.relative_to(self.quarantine).as_posix()
        if (rel, stored_as) not in self.recorded_rejects:  # an interrupted run may have recorded it already
            self.pending_rejects.append(
                {"file": rel, "reason": reason, "quarantined_as": stored_as, "rejected_at": self.now}
            )
        self.pending_remove.append((src, look))
        self.report.rejected.append((rel, reason))

    def take(self, src: Path, look: os.stat_result | None, manifest: Manifest,
             catalogue: dict[str, Landmark], cfg: IngestConfig) -> None:
        """Accept or quarantine one file found in incoming. Raises Changed when it is still arriving."""
        true_rel = nfc(src.relative_to(self.incoming).as_posix())
        rel = safe_name(true_rel)  # what the tables and the quarantine call it: always valid UTF-8
        parts = rel.split("/")
        if look is None:  # gone since the scan (moved away by its owner): nothing to do
            return
        if stat.S_ISLNK(look.st_mode):
            target = safe_name(os.readlink(src))
            self.reject(src, rel, f"symlink: not followed (points to {target}); copy the real photo in instead")
        elif not stat.S_ISREG(look.st_mode):
            # A FIFO, socket or device: reading it could block forever and it holds no photo to keep.
            # It stays where it is (nothing to copy), recorded once.
            reason = "not a regular file (FIFO, socket or device): left in place, ingest skips it; remove it"
            if (rel, reason) not in self.recorded_rows:
                self.pending_rejects.append(
                    {"file": rel, "reason": reason, "quarantined_as": "", "rejected_at": self.now}
                )
                self.recorded_rows.add((rel, reason))
            self.report.rejected.append((rel, reason))
        elif rel != true_rel:
            raw_bytes = os.fsencode(src.relative_to(self.incoming).as_posix())
            self.reject(
                src,
                rel,
                f"file name not UTF-8: the name is the bytes {raw_bytes!r} (shown here as '{rel}'); "
                "rename it with UTF-8 characters (e.g. é, not a Latin-1 byte) and drop it in again",
                look=look,
            )
        elif len(parts) == 1:
            self.reject(src, rel, "outside a landmark folder: put photos in data/incoming/<landmark-slug>/", look=look)
        elif _slug_of(parts[0]) not in catalogue:
            self.reject(
                src,
                rel,
                f"unknown landmark folder: '{parts[0]}' is not in the catalogue "
                f"({', '.join(sorted(catalogue))}); rename the folder or add the landmark to the catalogue",
                look=look,
            )
        elif src.suffix.lower() not in cfg.extensions:
            self.reject(
                src,
                rel,
                f"unsupported file type: '{src.suffix or 'no extension'}'; photos must be {', '.join(cfg.extensions)}",
                look=look,
            )
        else:
            self.take_photo(src, rel, _slug_of(parts[0]), look, manifest, cfg)

    def take_photo(self, src: Path, rel: str, slug: str, look: os.stat_result, manifest: Manifest,
                   cfg: IngestConfig) -> None:
        facts = (self.inspector.result(src, src, cfg, look) if self.inspector is not None
                 else inspect_photo(src, cfg, look))
        if isinstance(facts, str):
            self.reject(src, rel, facts, look=look)
        elif rel in manifest.bad_labels:
            self.reject(src, rel, manifest.bad_labels[rel], facts.sha256, look=look)
        elif facts.sha256 in self.by_sha:
            twin = self.by_sha[facts.sha256]
            if nfc(twin["source"]) == rel and (self.raw / twin["file"]).is_file():
                self.pending_remove.append((src, look))  # stored and recorded by an interrupted run
                self.report.resumed += 1
            else:
                self.reject(
                    src,
                    rel,
                    f"duplicate content: same bytes as data/raw/{twin['file']} (from {twin['source']})",
                    facts.sha256,
                    look=look,
                )
        else:
            self.accept(src, rel, slug, facts, look, manifest.labels.get(rel, {}))

    def accept(self, src: Path, rel: str, slug: str, facts: PhotoFacts, look: os.stat_result,
               labels: dict[str, str]) -> None:
        dest, already = dest_for(self.raw / slug / src.name, src, facts.sha256, self.taken)
        if not already:
            copy_verified(src, dest, facts.sha256, look)
        _crash_hook("copied")
        self.taken.add(dest)
        row: dict[str, Any] = {
            "file": dest.relative_to(self.raw).as_posix(),
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
            "seq": self.next_seq,
            "ingested_at": self.now,
        }
        self.next_seq += 1
        self.by_sha[facts.sha256] = row
        self.pending_rows.append(row)
        self.pending_remove.append((src, look))
        self.report.accepted.append(row["file"])


@locked("landmark-lora ingest")  # the pipeline lock, whoever calls (CLI, flow): one writer at a time
def ingest(params: Params, catalogue: dict[str, Landmark], progress: bool | None = None) -> IngestReport:
    """Move every file in ``paths.incoming`` into raw or quarantine. Idempotent and crash-safe.
    Files still arriving (see the module docstring) stay in incoming for the next run."""
    cfg, layout = params.ingest, Layout.of(params)
    incoming = layout.incoming
    incoming.mkdir(parents=True, exist_ok=True)
    remove_partials(layout.raw, layout.quarantine)
    report = IngestReport(min_age_s=cfg.min_age_s)
    run = _Run(layout, report)
    drop = look_around(incoming, run.known_sources, cfg.min_age_s)
    report.hidden, run.left = drop.hidden, drop.left
    manifest = drop.manifest
    run.next_seq = max((r["seq"] for r in run.table), default=0) + 1
    run.now = datetime.now(timezone.utc).isoformat(timespec="seconds")

    for where, reason in manifest.row_rejections:
        run.note(where, reason)
    show = progress if progress is not None else len(drop.files) >= cfg.progress_threshold
    # Decoding and hashing run ahead in worker processes; the copy/record/remove protocol below
    # stays sequential, in drop-folder order, so its crash safety and ordering are unchanged.
    photos = [(src, (src, cfg, drop.looks[src])) for src in drop.files
              if src.suffix.lower() in cfg.extensions and _is_regular(drop.looks.get(src))]
    with Prefetcher(inspect_photo, photos, cfg.workers) as run.inspector:
        for src in _progress(drop.files, show):
            try:
                run.take(src, drop.looks.get(src), manifest, catalogue, cfg)
            except Changed:
                if lstat_or_none(src) is not None:  # written or swapped under us: no copy kept, the original stays
                    run.left.add(src)
            if len(run.pending_remove) >= BATCH:
                run.commit()

    # A row whose photo is not here: missing (a typo) once the drop folder is quiet; while a copy
    # is still in progress, it waits with metadata.csv for the next run.
    in_progress = bool(run.left) or drop.busy_hidden
    waiting = 0
    for where, _norm, reason in manifest.absent:
        if in_progress:
            waiting += 1
            continue
        run.note(where, reason)
    run.commit()

    left_rels = {nfc(p.relative_to(incoming).as_posix()) for p in run.left}
    waiting += sum(1 for rel in left_rels if rel in manifest.labels or rel in manifest.bad_labels)
    report.left = sorted(safe_name(rel) for rel in left_rels) + ([MANIFEST] if drop.manifest_busy else [])
    report.manifest_waiting = waiting
    if not waiting and not drop.manifest_busy:
        report.manifest_archived_as = _archive_manifest(layout.incoming_manifest, layout.manifest_archive, run.now)
    _remove_empty_dirs(incoming, catalogue)
    return report


def _is_regular(look: os.stat_result | None) -> bool:
    return look is not None and stat.S_ISREG(look.st_mode)


def _archive_manifest(src: Path, archive: Path, now: str) -> str | None:
    """Every row of metadata.csv has been used or rejected: keep it for the record, out of the drop folder."""
    if not src.is_file() or src.is_symlink():
        return None
    stamp = now.replace(":", "").replace("+0000", "Z")
    dest, already = dest_for(archive / f"metadata-{stamp}.csv", src, fsutil.sha256_file(src), set())
    if not already:
        copy_verified(src, dest, fsutil.sha256_file(src))
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
    return sum(1 for p in scan(incoming) if not is_temporary_name(p.relative_to(incoming).as_posix()))
