"""Ingest: every dropped file ends up in exactly one place (raw or quarantine) with its bytes unchanged.

Hostile and broken files are quarantined with a reason and never crash the run; unusual but valid
photos are accepted; metadata.csv labels are checked; reruns are idempotent; and a crash at any
step of the copy/record/remove protocol loses and duplicates nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import struct
import unicodedata
import zipfile
import zlib
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from PIL import Image

from landmark_lora import rawtable
from landmark_lora.catalogue import ANGLES, SHOTS, load_catalogue
from landmark_lora.cli import main
from landmark_lora.ops import ingest as ingest_mod
from landmark_lora.ops.ingest import (
    PARTIAL_PREFIX,
    REJECTION_COLUMNS,
    IngestError,
    ingest,
    pending_photos,
)

CAT = load_catalogue()
G, N = "gyeongbokgung", "n_seoul_tower"


# ---------------------------------------------------------------- helpers


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def entries(root: Path, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    """Every file and symlink under root (links never followed), by root-relative posix path."""
    out: dict[str, Path] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        for name in filenames + [n for n in dirnames if (d / n).is_symlink()]:
            rel = (d / name).relative_to(root).as_posix()
            if rel not in skip:
                out[rel] = d / name
    return out


def content(path: Path) -> tuple[str, bytes | str]:
    return ("link", os.readlink(path)) if path.is_symlink() else ("file", path.read_bytes())


def partials(*roots: Path) -> list[Path]:
    return [p for root in roots for p in entries(root).values() if p.name.startswith(PARTIAL_PREFIX)]


class Drop:
    """A workspace with every path under one root: drop files in, run ingest, read the outcome."""

    def __init__(self, params):
        self.params = params
        self.incoming = Path(params.paths.incoming)
        self.raw = Path(params.paths.raw)
        self.quarantine = Path(params.paths.quarantine)
        self.root = self.incoming.parents[1]
        self.incoming.mkdir(parents=True, exist_ok=True)

    def put(self, rel: str, data: bytes) -> Path:
        path = self.incoming / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def link(self, rel: str, target: Path) -> Path:
        path = self.incoming / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        return path

    def manifest(self, text: str, encoding: str = "utf-8") -> Path:
        path = self.incoming / "metadata.csv"
        path.write_bytes(text.encode(encoding))
        return path

    def run(self, **kw):
        return ingest(self.params, CAT, **kw)

    def rows(self) -> list[dict]:
        return rawtable.read_rows(self.raw)

    def row(self, source: str) -> dict:
        found = [r for r in self.rows() if r["source"] == source]
        assert len(found) == 1, (source, found)
        return found[0]

    def rejections(self) -> list[dict]:
        path = self.quarantine / "rejections.csv"
        if not path.exists():
            return []
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames) == REJECTION_COLUMNS
            return list(reader)

    def rejection(self, file: str) -> dict:
        found = [r for r in self.rejections() if r["file"] == file]
        assert len(found) == 1, (file, self.rejections())
        return found[0]

    def snapshot(self) -> dict[str, tuple[str, bytes | str]]:
        """What waits in incoming (NFC-relative path -> content), metadata.csv aside."""
        files = entries(self.incoming)
        if "metadata.csv" in files and not files["metadata.csv"].is_symlink():
            del files["metadata.csv"]
        return {nfc(rel): content(p) for rel, p in files.items()}


def assert_accounted(ws: Drop, originals: dict[str, tuple[str, bytes | str]]) -> dict[str, str]:
    """Each original is in exactly one place with identical content; tables match the disk exactly.

    Returns {original: 'raw/<file>' | 'quarantine/<file>'}.
    """
    rows, rejs = ws.rows(), ws.rejections()
    raw_files = entries(ws.raw, skip=("metadata.csv",))
    q_files = entries(ws.quarantine, skip=("rejections.csv",))
    # one row per stored photo and one stored photo per row; no duplicate rows
    assert sorted(r["file"] for r in rows) == sorted(raw_files)
    assert len({r["sha256"] for r in rows}) == len(rows)
    assert len({r["source"] for r in rows}) == len(rows)
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for r in rows:
        data = (ws.raw / r["file"]).read_bytes()
        assert r["sha256"] == sha(data) and r["bytes"] == len(data)
    stored = [r["quarantined_as"] for r in rejs if r["quarantined_as"]]
    assert sorted(stored) == sorted(q_files), "every quarantined entry has exactly one rejections.csv line"
    row_rejects = [(r["file"], r["reason"]) for r in rejs if not r["quarantined_as"]]
    assert len(set(row_rejects)) == len(row_rejects), "metadata row rejections recorded once"
    homes = {}
    for rel, original in originals.items():
        found = [
            f"raw/{r['file']}" for r in rows if r["source"] == rel and content(ws.raw / r["file"]) == original
        ] + [
            f"quarantine/{r['quarantined_as']}"
            for r in rejs
            if r["file"] == rel and r["quarantined_as"] and content(ws.quarantine / r["quarantined_as"]) == original
        ]
        assert len(found) == 1, f"{rel} should be in exactly one place, found {found}"
        homes[rel] = found[0]
    assert entries(ws.incoming) == {}, "incoming should hold no files after a run"
    assert partials(ws.raw, ws.quarantine) == []
    return homes


def category(reason: str) -> str:
    return reason.split(":", 1)[0]


def reason_for(report, file: str) -> str:
    found = [reason for f, reason in report.rejected if f == file]
    assert len(found) == 1, (file, report.rejected)
    return found[0]


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height (a decompression bomb by its header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("photo.jpg", b"not really")
    return buf.getvalue()


def exif_orientation_bytes(typ: int, count: int, payload: bytes) -> bytes:
    """Hand-made EXIF with one Orientation entry of any TIFF type (payload > 4 bytes goes out of line)."""
    header = b"II*\x00" + struct.pack("<I", 8)
    if len(payload) <= 4:
        ifd = struct.pack("<HHHI", 1, 0x0112, typ, count) + payload.ljust(4, b"\x00") + struct.pack("<I", 0)
        return b"Exif\x00\x00" + header + ifd
    offset = 8 + 2 + 12 + 4
    ifd = struct.pack("<HHHII", 1, 0x0112, typ, count, offset) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + header + ifd + payload


@pytest.fixture
def ws(tmp_path, make_params) -> Drop:
    return Drop(make_params(tmp_path))


@pytest.fixture
def pb(make_photo_bytes):
    return make_photo_bytes


# ---------------------------------------------------------------- hostile and broken files


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


HOSTILE = [
    # id, incoming path, bytes (built from the photo factory), reason category, the reason mentions
    ("empty", f"{G}/empty.jpg", lambda pb: b"", "empty file", ["0 bytes"]),
    ("truncated-jpeg", f"{G}/cut.jpg", lambda pb: _truncated(pb(seed=1)), "truncated or corrupt image", ["JPEG", "does not decode"]),
    ("truncated-png", f"{G}/cut.png", lambda pb: _truncated(pb(seed=2, format="PNG")), "truncated or corrupt image", ["PNG", "does not decode"]),
    ("corrupt-jpeg-signature", f"{G}/eaten.jpg", lambda pb: b"\xff\xd8\xff" + b"this photo was eaten by a sync client " * 20, "corrupt image", ["JPEG signature", "header cannot be read"]),
    ("html-named-jpg", f"{G}/download.jpg", lambda pb: b"<!DOCTYPE html>\n<html><body>403 Forbidden</body></html>\n", "not an image", ["text/HTML", "'.jpg'"]),
    ("text-named-jpg", f"{G}/note.jpg", lambda pb: b"hello, this is not a photo\n", "not an image", ["not JPEG, PNG or WebP", "'.jpg'"]),
    ("pdf-named-png", f"{G}/ticket.png", lambda pb: b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer\n%%EOF\n", "not an image", ["PDF", "'.png'"]),
    ("zip-named-png", f"{G}/album.png", lambda pb: zip_bytes(), "not an image", ["ZIP", "'.png'"]),
    ("gif-named-jpg", f"{G}/anim.jpg", lambda pb: pb(seed=5, format="GIF"), "unsupported image format", ["GIF", "convert it to JPEG, PNG or WebP"]),
    ("bmp-named-jpg", f"{G}/paint.jpg", lambda pb: pb(seed=6, format="BMP"), "unsupported image format", ["BMP"]),
    ("tiff-named-jpeg", f"{G}/scan.jpeg", lambda pb: pb(seed=7, format="TIFF"), "unsupported image format", ["TIFF"]),
    ("decompression-bomb-header", f"{G}/bomb.png", lambda pb: png_header_only(30_000, 30_000), "decompression bomb", ["max_pixels=120,000,000"]),
    ("too-small", f"{G}/thumb.jpg", lambda pb: pb(size=(40, 40), seed=8), "too small", ["40x40", "min_side=64"]),
    ("extreme-aspect-ratio", f"{G}/panorama.jpg", lambda pb: pb(size=(400, 80), seed=9), "extreme aspect ratio", ["400x80", "5.0:1", "max_aspect_ratio=4"]),
    ("txt-extension", f"{G}/notes.txt", lambda pb: b"shot list\n", "unsupported file type", ["'.txt'", ".jpg"]),
    ("heic-extension", f"{G}/IMG_0001.HEIC", lambda pb: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "unsupported file type", ["'.HEIC'"]),
    ("no-extension", f"{G}/DS_Store", lambda pb: b"\x00\x00\x00\x01Bud1", "unsupported file type", ["no extension"]),
    ("unknown-landmark", "eiffel_tower/p.jpg", lambda pb: pb(seed=10), "unknown landmark folder", ["'eiffel_tower'", G, N]),
    ("outside-landmark-folder", "stray.jpg", lambda pb: pb(seed=11), "outside a landmark folder", ["data/incoming/<landmark-slug>/"]),
]


@pytest.mark.parametrize("rel, build, expected, mentions", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_or_broken_file_is_quarantined_intact(ws, pb, rel, build, expected, mentions):
    data = build(pb)
    ws.put(rel, data)
    good = ws.put(f"{G}/good.jpg", pb(seed=99))  # a good photo in the same batch still gets in
    report = ws.run()

    assert report.accepted == [f"{G}/good.jpg"]
    assert not good.exists()
    reason = reason_for(report, rel)
    assert category(reason) == expected
    for text in mentions:
        assert text in reason
    assert report.reasons() == Counter({expected: 1})
    record = ws.rejection(rel)
    assert record["reason"] == reason
    assert record["quarantined_as"] == rel  # the quarantine mirrors the drop folder
    datetime.fromisoformat(record["rejected_at"])
    assert (ws.quarantine / rel).read_bytes() == data
    assert_accounted(ws, {rel: ("file", data), f"{G}/good.jpg": ("file", pb(seed=99))})


def test_every_hostile_file_in_one_batch_is_quarantined_without_crashing_the_run(ws, pb):
    for _, rel, build, _, _ in HOSTILE:
        ws.put(rel, build(pb))
    originals = ws.snapshot()
    report = ws.run()
    assert report.accepted == []
    assert Counter(category(r) for _, r in report.rejected) == Counter(h[3] for h in HOSTILE)
    homes = assert_accounted(ws, originals)
    assert all(home.startswith("quarantine/") for home in homes.values())


def test_decompression_bomb_by_configured_pixel_limit(tmp_path, make_params, pb):
    ws = Drop(make_params(tmp_path, ingest={"max_pixels": 5_000}))
    just_over = ws.put(f"{G}/a.jpg", pb(size=(80, 96), seed=1))  # 7,680 px: between the limit and twice it
    far_over = ws.put(f"{G}/b.png", pb(size=(200, 200), seed=2, format="PNG"))  # 40,000 px
    limit_before = Image.MAX_IMAGE_PIXELS
    originals = ws.snapshot()
    report = ws.run()
    for src in (just_over, far_over):
        reason = reason_for(report, src.relative_to(ws.incoming).as_posix())
        assert category(reason) == "decompression bomb"
        assert "ingest.max_pixels=5,000" in reason
    assert report.accepted == []
    assert limit_before == Image.MAX_IMAGE_PIXELS  # Pillow's global limit is restored
    assert_accounted(ws, originals)


def test_file_above_max_file_mb_is_rejected(tmp_path, make_params, pb):
    ws = Drop(make_params(tmp_path, ingest={"max_file_mb": 0.001}))  # ~1 KB
    data = pb(seed=3)
    assert len(data) > 1100
    ws.put(f"{G}/huge.jpg", data)
    report = ws.run()
    reason = reason_for(report, f"{G}/huge.jpg")
    assert category(reason) == "file too large"
    assert "ingest.max_file_mb=0.001" in reason
    assert (ws.quarantine / G / "huge.jpg").read_bytes() == data


# ---------------------------------------------------------------- duplicates


def test_duplicate_content_in_the_same_batch_is_quarantined(ws, pb):
    data = pb(seed=4)
    ws.put(f"{G}/a.jpg", data)
    ws.put(f"{G}/a_copy.jpg", data)
    ws.put(f"{N}/same.jpg", data)  # same bytes filed under another landmark
    originals = ws.snapshot()
    report = ws.run()
    assert report.accepted == [f"{G}/a.jpg"]
    for rel in (f"{G}/a_copy.jpg", f"{N}/same.jpg"):
        reason = reason_for(report, rel)
        assert category(reason) == "duplicate content"
        assert f"data/raw/{G}/a.jpg" in reason
    assert report.reasons() == Counter({"duplicate content": 2})
    assert_accounted(ws, originals)


def test_duplicate_of_a_photo_ingested_in_an_earlier_run_is_quarantined(ws, pb):
    data = pb(seed=5)
    ws.put(f"{G}/first.jpg", data)
    assert ws.run().accepted == [f"{G}/first.jpg"]
    ws.put(f"{G}/again.jpg", data)
    originals = ws.snapshot()
    report = ws.run()
    assert report.accepted == []
    reason = reason_for(report, f"{G}/again.jpg")
    assert category(reason) == "duplicate content"
    assert f"data/raw/{G}/first.jpg" in reason and f"from {G}/first.jpg" in reason
    assert len(ws.rows()) == 1
    assert_accounted(ws, originals)


def test_same_photo_dropped_again_under_the_same_name_is_not_stored_twice(ws, pb):
    data = pb(seed=6)
    ws.put(f"{G}/p.jpg", data)
    ws.run()
    ws.put(f"{G}/p.jpg", data)
    ws.run()
    assert len(ws.rows()) == 1
    assert list(entries(ws.raw, skip=("metadata.csv",))) == [f"{G}/p.jpg"]
    assert (ws.raw / G / "p.jpg").read_bytes() == data
    assert entries(ws.incoming) == {}


def test_new_photo_with_a_name_already_taken_is_stored_beside_the_old_one(ws, pb):
    old, new = pb(seed=7), pb(seed=8)
    ws.put(f"{G}/IMG_0001.jpg", old)
    ws.run()
    ws.put(f"{G}/IMG_0001.jpg", new)
    report = ws.run()
    assert len(report.accepted) == 1 and report.accepted[0] != f"{G}/IMG_0001.jpg"
    assert (ws.raw / G / "IMG_0001.jpg").read_bytes() == old  # never overwritten
    assert (ws.raw / report.accepted[0]).read_bytes() == new
    assert [r["seq"] for r in ws.rows()] == [1, 2]


# ---------------------------------------------------------------- symlinks


def test_symlink_to_a_photo_is_quarantined_as_a_link_and_never_followed(tmp_path, ws, pb):
    target = tmp_path / "elsewhere" / "real.jpg"
    target.parent.mkdir()
    data = pb(seed=12)
    target.write_bytes(data)
    ws.link(f"{G}/linked.jpg", target)
    report = ws.run()

    assert report.accepted == [] and ws.rows() == []
    reason = reason_for(report, f"{G}/linked.jpg")
    assert category(reason) == "symlink"
    assert str(target) in reason
    stored = ws.quarantine / G / "linked.jpg"
    assert stored.is_symlink() and os.readlink(stored) == str(target)  # a link, not a copy
    assert target.read_bytes() == data and not target.is_symlink()  # the target is untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["real.jpg"]
    assert entries(ws.incoming) == {}


def test_symlink_to_a_directory_is_quarantined_as_a_link_and_never_followed(tmp_path, ws, pb):
    album = tmp_path / "album"
    album.mkdir()
    inside = pb(seed=13)
    (album / "inside.jpg").write_bytes(inside)
    ws.link(f"{G}/album", album)
    report = ws.run()

    assert report.accepted == [] and ws.rows() == []
    assert [f for f, _ in report.rejected] == [f"{G}/album"]  # the folder's photo was not scanned
    assert category(reason_for(report, f"{G}/album")) == "symlink"
    stored = ws.quarantine / G / "album"
    assert stored.is_symlink() and os.readlink(stored) == str(album)
    assert sorted(p.name for p in album.iterdir()) == ["inside.jpg"]
    assert (album / "inside.jpg").read_bytes() == inside
    assert entries(ws.incoming) == {}


def test_a_fifo_wearing_a_photo_name_never_blocks_ingest_and_is_recorded_once(ws, pb):
    fifo = ws.incoming / G / "pipe.jpg"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)  # opening it for reading would block forever: ingest must not try
    ws.put(f"{G}/ok.jpg", pb(seed=14))
    report = ws.run()

    assert [Path(f).name for f in report.accepted] == ["ok.jpg"]
    assert category(reason_for(report, f"{G}/pipe.jpg")) == "not a regular file (FIFO, socket or device)"
    assert fifo.exists() and not fifo.is_file()  # left in place: there is nothing to copy
    again = ws.run()  # idempotent: still skipped, recorded in rejections.csv only once
    assert again.accepted == [] and [f for f, _ in again.rejected] == [f"{G}/pipe.jpg"]
    assert len([r for r in ws.rejections() if r["file"] == f"{G}/pipe.jpg"]) == 1


def test_a_symlinked_metadata_csv_is_not_followed_and_does_not_linger(tmp_path, ws, pb):
    labels = tmp_path / "labels.csv"
    labels.write_text(f"file,shot\n{G}/a.jpg,wide\n")
    os.symlink(labels, ws.incoming / "metadata.csv")
    ws.put(f"{G}/a.jpg", pb(seed=14))
    report = ws.run()
    assert ws.row(f"{G}/a.jpg")["shot"] == "unspecified"  # the link was not read
    assert category(reason_for(report, "metadata.csv")) == "symlink"
    assert (ws.quarantine / ws.rejection("metadata.csv")["quarantined_as"]).is_symlink()
    assert labels.read_text() == f"file,shot\n{G}/a.jpg,wide\n"
    assert entries(ws.incoming) == {}, "a linked metadata.csv must not stay in the drop folder unnoticed"


def test_a_quarantined_folder_link_is_never_written_through_later(tmp_path, ws, pb):
    pictures = tmp_path / "Pictures"
    pictures.mkdir()
    (pictures / "mine.jpg").write_bytes(pb(seed=15))
    ws.link(G, pictures)  # the whole landmark folder is a link (`ln -s ~/Pictures data/incoming/...`)
    first = ws.run()
    assert category(reason_for(first, G)) == "symlink"
    assert (ws.quarantine / G).is_symlink()
    # the user follows the advice and copies real files in
    ws.put(f"{G}/notes.txt", b"not a photo")
    ws.put(f"{G}/ok.jpg", pb(seed=16))
    originals = ws.snapshot()
    second = ws.run()
    assert second.accepted == [f"{G}/ok.jpg"]
    assert sorted(p.name for p in pictures.iterdir()) == ["mine.jpg"], "nothing written into the linked folder"
    assert_accounted(ws, originals)


# ---------------------------------------------------------------- names the run itself uses


def test_a_photo_named_like_a_temp_file_survives_later_runs(ws, pb):
    data = pb(seed=17)
    ws.put(f"{G}/{PARTIAL_PREFIX}sunset.jpg", data)
    report = ws.run()
    assert report.hidden == [f"{G}/{PARTIAL_PREFIX}sunset.jpg"]  # a hidden name: left where it is (issue 10)
    ws.run()  # every run cleans up leftover temp copies in raw and quarantine, never in the drop folder
    assert (ws.incoming / G / f"{PARTIAL_PREFIX}sunset.jpg").read_bytes() == data


def test_a_quarantined_folder_named_like_a_temp_file_does_not_break_later_runs(ws, pb):
    ws.put(f"unknown_place/{PARTIAL_PREFIX}album/p.jpg", pb(seed=18))
    ws.run()
    ws.put(f"{G}/new.jpg", pb(seed=19))
    report = ws.run()
    assert report.accepted == [f"{G}/new.jpg"]
    assert (ws.incoming / "unknown_place" / f"{PARTIAL_PREFIX}album" / "p.jpg").read_bytes() == pb(seed=18)  # hidden: left


def test_a_dropped_rejections_csv_does_not_clobber_the_rejection_table(ws):
    mine = b"my,own\ncsv,file\n"
    ws.put("rejections.csv", mine)
    ws.put(f"{G}/notes.txt", b"notes")
    originals = ws.snapshot()
    ws.run()
    assert {r["file"] for r in ws.rejections()} == {"rejections.csv", f"{G}/notes.txt"}
    assert ws.rejection("rejections.csv")["quarantined_as"] != "rejections.csv"
    assert_accounted(ws, originals)


def test_a_file_where_a_landmark_folder_should_be_does_not_block_later_runs(ws, pb):
    # `cp photo.jpg data/incoming/gyeongbokgung` before the folder exists makes a FILE of that name
    first = pb(seed=20)
    ws.put(G, first)
    assert category(reason_for(ws.run(), G)) == "outside a landmark folder"
    ws.put(f"{G}/notes.txt", b"not a photo")
    ws.put(f"{G}/ok.jpg", pb(seed=21))
    originals = ws.snapshot()
    report = ws.run()
    assert report.accepted == [f"{G}/ok.jpg"]
    assert (ws.quarantine / ws.rejection(G)["quarantined_as"]).read_bytes() == first
    assert_accounted(ws, originals)


# ---------------------------------------------------------------- metadata.csv


def test_manifest_labels_are_normalised_and_recorded(ws, pb):
    for name, seed in (("a", 30), ("b", 31), ("c", 32)):
        ws.put(f"{G}/{name}.jpg", pb(seed=seed))
    ws.manifest(
        "\ufeffFile,Shot,Angle,Pose,Caption\n"  # Excel writes a BOM and capitalised headers
        f'{G}/a.jpg,Upper-Body,Low Angle,  waving   both hands ,"  smiling,  in hanbok "\n'
        f"{G}/b.jpg,FULL_BODY,eye-level,,\n"
    )
    report = ws.run()
    assert report.rejected == []
    a, b, c = (ws.row(f"{G}/{n}.jpg") for n in "abc")
    assert (a["shot"], a["angle"], a["pose"], a["caption"]) == ("upper_body", "low_angle", "waving both hands", "smiling, in hanbok")
    assert (b["shot"], b["angle"], b["pose"], b["caption"]) == ("full_body", "eye_level", "unspecified", "")
    assert (c["shot"], c["angle"], c["pose"], c["caption"]) == ("unspecified", "unspecified", "unspecified", "")


def test_manifest_is_archived_under_manifests_with_identical_bytes(ws, pb):
    ws.put(f"{G}/a.jpg", pb(seed=33))
    text = f"file,shot\n{G}/a.jpg,wide\n"
    ws.manifest(text)
    report = ws.run()
    archived = Path(report.manifest_archived_as)
    assert archived.parent == ws.raw.parent / "manifests"
    assert archived.read_bytes() == text.encode()
    assert not (ws.incoming / "metadata.csv").exists()
    # a later manifest is archived beside it, never over it
    ws.put(f"{G}/b.jpg", pb(seed=34))
    text2 = f"file,shot\n{G}/b.jpg,close-up\n"
    ws.manifest(text2)
    second = Path(ws.run().manifest_archived_as)
    assert second != archived
    assert archived.read_bytes() == text.encode() and second.read_bytes() == text2.encode()
    assert ws.row(f"{G}/b.jpg")["shot"] == "close_up"


def test_manifest_rows_with_path_traversal_are_rejected_and_touch_nothing(ws, pb):
    passwd = ws.root / "etc" / "passwd"  # where ../../etc/passwd points from data/incoming
    passwd.parent.mkdir()
    passwd.write_bytes(b"root:x:0:0\n")
    ws.put(f"{G}/a.jpg", pb(seed=35))
    ws.manifest(
        "file,shot\n"
        "../../etc/passwd,wide\n"
        f"{passwd},wide\n"
        f"{G}/../../../etc/passwd,wide\n"
        "C:\\Users\\me\\a.jpg,wide\n"
        f"{G}/a.jpg,wide\n"
    )
    report = ws.run()
    for n, shown in ((2, "../../etc/passwd"), (3, str(passwd)), (4, f"{G}/../../../etc/passwd"), (5, "C:\\Users\\me\\a.jpg")):
        reason = reason_for(report, f"metadata.csv row {n}")
        assert category(reason) == "metadata path traversal"
        assert shown in reason
        assert ws.rejection(f"metadata.csv row {n}")["quarantined_as"] == ""
    assert passwd.read_bytes() == b"root:x:0:0\n"
    assert report.accepted == [f"{G}/a.jpg"] and ws.row(f"{G}/a.jpg")["shot"] == "wide"
    assert entries(ws.quarantine, skip=("rejections.csv",)) == {}


def test_manifest_row_for_a_missing_file_is_rejected(ws, pb):
    ws.put(f"{G}/a.jpg", pb(seed=36))
    ws.manifest(f"file,shot\n{G}/a.jpg,wide\n{G}/IMG_9999.jpg,close_up\n")
    report = ws.run()
    reason = reason_for(report, "metadata.csv row 3")
    assert category(reason) == "metadata file missing"
    assert f"'{G}/IMG_9999.jpg'" in reason
    assert report.accepted == [f"{G}/a.jpg"]


@pytest.mark.parametrize(
    "column, value, vocabulary",
    [("shot", "sideways", SHOTS), ("angle", "drone", ANGLES)],
)
def test_invalid_label_quarantines_the_photo_and_names_row_and_allowed_values(ws, pb, column, value, vocabulary):
    data = pb(seed=37)
    ws.put(f"{G}/labelled.jpg", data)
    ws.put(f"{G}/plain.jpg", pb(seed=38))
    ws.manifest(f"file,{column}\n{G}/plain.jpg,\n{G}/labelled.jpg,{value}\n")
    originals = ws.snapshot()
    report = ws.run()
    assert report.accepted == [f"{G}/plain.jpg"]
    reason = reason_for(report, f"{G}/labelled.jpg")
    assert category(reason) == "invalid label"
    assert "metadata.csv row 3" in reason and f"'{value}'" in reason
    for allowed in vocabulary:
        assert allowed in reason
    assert (ws.quarantine / G / "labelled.jpg").read_bytes() == data
    assert len(report.rejected) == 1  # reported once, on the photo
    assert_accounted(ws, originals)


def test_duplicate_manifest_row_is_rejected_and_the_first_labels_win(ws, pb):
    ws.put(f"{G}/a.jpg", pb(seed=39))
    ws.manifest(f"file,shot\n{G}/a.jpg,Upper-Body\n{G}/a.jpg,wide\n")
    report = ws.run()
    reason = reason_for(report, "metadata.csv row 3")
    assert category(reason) == "metadata duplicate row"
    assert f"'{G}/a.jpg'" in reason
    assert ws.row(f"{G}/a.jpg")["shot"] == "upper_body"


def test_nfd_file_name_is_matched_by_an_nfc_manifest_row(ws, pb):
    name = "경복궁 사진 1.jpg"
    nfd = unicodedata.normalize("NFD", name)
    assert nfd != name
    data = pb(seed=40)
    ws.put(f"{G}/{nfd}", data)  # as macOS writes it
    ws.manifest(f"file,shot\n{G}/{name},close-up\n", encoding="utf-8")  # as typed by hand
    report = ws.run()
    assert report.rejected == []
    row = ws.row(f"{G}/{name}")
    assert row["shot"] == "close_up"
    assert (ws.raw / row["file"]).read_bytes() == data


@pytest.mark.parametrize(
    "text, encoding, says",
    [
        ("photo,shot\ngyeongbokgung/a.jpg,wide\n", "utf-8", "no 'file' column"),
        ("file,pose\ngyeongbokgung/a.jpg,한복 입고 손 흔들기\n", "cp949", "not UTF-8"),
    ],
    ids=["no-file-column", "cp949-encoded"],
)
def test_unreadable_manifest_raises_and_moves_nothing(ws, pb, text, encoding, says):
    ws.put(f"{G}/a.jpg", pb(seed=41))
    ws.put("stray.txt", b"x")
    manifest = ws.manifest(text, encoding)
    before = {rel: content(p) for rel, p in entries(ws.incoming).items()}
    with pytest.raises(IngestError) as err:
        ws.run()
    assert str(manifest) in str(err.value) and says in str(err.value)
    assert "Nothing was moved" in str(err.value)
    assert {rel: content(p) for rel, p in entries(ws.incoming).items()} == before
    assert entries(ws.raw) == {} and entries(ws.quarantine) == {}


# ---------------------------------------------------------------- unusual but valid photos


VALID = [
    # id, incoming path, photo factory kwargs, format, mode, (width, height)
    ("cmyk-jpeg", f"{G}/cmyk.jpg", dict(mode="CMYK"), "JPEG", "CMYK", (80, 96)),
    ("grayscale-jpeg", f"{G}/gray.jpg", dict(mode="L"), "JPEG", "L", (80, 96)),
    ("rgba-png", f"{G}/rgba.png", dict(format="PNG", mode="RGBA"), "PNG", "RGBA", (80, 96)),
    ("16-bit-png", f"{G}/depth16.png", dict(format="PNG", mode="I;16"), "PNG", "I;16", (80, 96)),
    ("palette-png-with-transparency", f"{G}/palette.png", dict(format="PNG", mode="P", transparency=0), "PNG", "P", (80, 96)),
    ("webp", f"{G}/photo.webp", dict(format="WEBP", quality=80), "WEBP", "RGB", (80, 96)),
    ("webp-lossless-rgba", f"{G}/alpha.webp", dict(format="WEBP", mode="RGBA", lossless=True), "WEBP", "RGBA", (80, 96)),
    ("upper-case-extension", f"{G}/IMG_0001.JPG", {}, "JPEG", "RGB", (80, 96)),
    ("jpeg-extension", f"{G}/IMG_0002.jpeg", {}, "JPEG", "RGB", (80, 96)),
    ("korean-spaced-name", f"{G}/경복궁 사진 1.jpg", {}, "JPEG", "RGB", (80, 96)),
    ("jpeg-content-named-png", f"{G}/exported.png", {}, "JPEG", "RGB", (80, 96)),
    ("exactly-at-the-limits", f"{G}/tall.jpg", dict(size=(64, 256)), "JPEG", "RGB", (64, 256)),
]


@pytest.mark.parametrize("rel, kwargs, fmt, mode, size", [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_unusual_but_valid_photo_is_accepted_byte_identical(ws, pb, rel, kwargs, fmt, mode, size):
    data = pb(seed=50, **kwargs)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == mode  # the factory really made that kind of file
    ws.put(rel, data)
    report = ws.run()
    assert report.rejected == []
    assert report.accepted == [rel]
    row = ws.row(rel)
    assert (row["file"], row["landmark"], row["format"], row["mode"]) == (rel, G, fmt, mode)
    assert (row["width"], row["height"]) == size
    assert (row["sha256"], row["bytes"]) == (sha(data), len(data))
    assert (row["shot"], row["angle"], row["pose"], row["caption"]) == ("unspecified",) * 3 + ("",)
    assert row["seq"] == 1 and row["exif_orientation"] == 1
    assert (ws.raw / rel).read_bytes() == data
    assert entries(ws.incoming) == {}


@pytest.mark.parametrize(
    "rel, slug",
    [
        ("Gyeongbokgung/p.jpg", G),
        ("n-seoul-tower/p.jpg", N),
        ("N Seoul Tower/p.jpg", N),
        (f"{G}/2024 trip/day-1/p.jpg", G),
    ],
)
def test_landmark_folder_spelling_and_subfolders_are_accepted(ws, pb, rel, slug):
    data = pb(seed=51)
    ws.put(rel, data)
    report = ws.run()
    assert report.accepted == [f"{slug}/p.jpg"]
    row = ws.row(rel)
    assert row["landmark"] == slug
    assert (ws.raw / slug / "p.jpg").read_bytes() == data
    assert entries(ws.incoming) == {}
    assert (ws.incoming / rel.split("/")[0]).is_dir()  # the landmark folder stays for the next drop
    assert not (ws.incoming / G / "2024 trip").exists()  # emptied subfolders go


def test_same_name_in_two_subfolders_keeps_both(ws, pb):
    a, b = pb(seed=52), pb(seed=53)
    ws.put(f"{G}/day1/IMG_0001.jpg", a)
    ws.put(f"{G}/day2/IMG_0001.jpg", b)
    originals = ws.snapshot()
    report = ws.run()
    assert len(report.accepted) == 2
    assert_accounted(ws, originals)


@pytest.mark.parametrize(
    "orientation, stored, shown",
    [(6, (120, 80), (80, 120)), (8, (120, 80), (80, 120)), (3, (120, 80), (120, 80))],
)
def test_exif_rotated_photo_records_the_displayed_size(ws, pb, orientation, stored, shown):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = pb(size=stored, seed=54, exif=exif.tobytes())
    ws.put(f"{G}/rotated.jpg", data)
    report = ws.run()
    assert report.accepted == [f"{G}/rotated.jpg"]
    row = ws.row(f"{G}/rotated.jpg")
    assert (row["width"], row["height"]) == shown
    assert row["exif_orientation"] == orientation
    assert (ws.raw / row["file"]).read_bytes() == data  # never re-encoded or rotated


@pytest.mark.parametrize(
    "typ, count, payload",
    [
        (2, 4, b"abc\x00"),  # ASCII
        (12, 1, struct.pack("<d", float("inf"))),  # DOUBLE infinity
        (10, 1, struct.pack("<ii", 6, 0)),  # SRATIONAL 6/0
        (3, 1, struct.pack("<H", 0)),  # 0: not an orientation
        (3, 1, struct.pack("<H", 9)),  # 9: not an orientation
    ],
    ids=["ascii", "double-inf", "rational-div-zero", "zero", "nine"],
)
def test_garbage_exif_orientation_does_not_reject_or_crash(ws, pb, typ, count, payload):
    data = pb(size=(120, 80), seed=55, exif=exif_orientation_bytes(typ, count, payload))
    ws.put(f"{G}/odd-exif.jpg", data)
    ws.put(f"{G}/fine.jpg", pb(seed=56))
    report = ws.run()
    assert report.rejected == []
    row = ws.row(f"{G}/odd-exif.jpg")
    assert row["exif_orientation"] == 1  # treated as upright, as viewers do
    assert (row["width"], row["height"]) == (120, 80)
    assert (ws.raw / row["file"]).read_bytes() == data


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    w, h = 6000, 4000
    ramp = Image.linear_gradient("L").resize((w, h))  # smooth: quick to encode and decode
    im = Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.ROTATE_180), Image.new("L", (w, h), 128)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def test_very_large_photo_is_accepted(ws, big_jpeg):
    ws.put(f"{G}/DSC_24MP.jpg", big_jpeg)
    report = ws.run()
    assert report.accepted == [f"{G}/DSC_24MP.jpg"]
    row = ws.row(f"{G}/DSC_24MP.jpg")
    assert (row["width"], row["height"]) == (6000, 4000)
    assert (ws.raw / row["file"]).read_bytes() == big_jpeg


def test_very_large_truncated_photo_is_still_caught(ws, big_jpeg):
    cut = big_jpeg[: len(big_jpeg) * 2 // 3]
    ws.put(f"{G}/DSC_cut.jpg", cut)
    report = ws.run()
    assert category(reason_for(report, f"{G}/DSC_cut.jpg")) == "truncated or corrupt image"
    assert (ws.quarantine / G / "DSC_cut.jpg").read_bytes() == cut


# ---------------------------------------------------------------- accounting


def drop_mixed_batch(ws: Drop, pb) -> None:
    ws.put(f"{G}/a.jpg", pb(seed=60))
    ws.put(f"{G}/b.png", pb(seed=61, format="PNG"))
    ws.put(f"{G}/b dup.jpg", pb(seed=60))
    ws.put(f"{G}/c.webp", pb(seed=62, format="WEBP"))
    ws.put(f"{G}/html.jpg", b"<html>nope</html>")
    ws.put(f"{G}/pdf.jpg", b"%PDF-1.4 nope")
    ws.put(f"{G}/tiny.jpg", pb(size=(30, 30), seed=63))
    ws.put(f"{N}/d.jpg", pb(seed=64))
    ws.put(f"{N}/e.JPG", pb(seed=65, mode="L"))
    ws.put(f"{N}/notes.txt", b"todo")
    ws.put("eiffel_tower/f.jpg", pb(seed=66))
    ws.put("stray.jpg", pb(seed=67))
    ws.manifest(
        "file,shot,angle,pose\n"
        f"{G}/a.jpg,Upper-Body,eye level,peace sign\n"
        f"{N}/d.jpg,wide,High-Angle,\n"
        f"{N}/missing.jpg,wide,,\n"
        "../../etc/passwd,wide,,\n"
    )


def test_every_input_file_lands_in_exactly_one_place(ws, pb):
    drop_mixed_batch(ws, pb)
    originals = ws.snapshot()
    assert pending_photos(ws.incoming) == len(originals) == 12
    report = ws.run()

    homes = assert_accounted(ws, originals)
    raw_homes = sorted(rel for rel, home in homes.items() if home.startswith("raw/"))
    assert raw_homes == sorted([f"{G}/a.jpg", f"{G}/b.png", f"{G}/c.webp", f"{N}/d.jpg", f"{N}/e.JPG"])
    assert len(entries(ws.raw, skip=("metadata.csv",))) + len(entries(ws.quarantine, skip=("rejections.csv",))) == 12
    assert pending_photos(ws.incoming) == 0
    # rows in ingest (sorted path) order, with correct facts and labels
    rows = ws.rows()
    assert [r["source"] for r in rows] == [f"{G}/a.jpg", f"{G}/b.png", f"{G}/c.webp", f"{N}/d.jpg", f"{N}/e.JPG"]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["format"] for r in rows] == ["JPEG", "PNG", "WEBP", "JPEG", "JPEG"]
    a, d, e = ws.row(f"{G}/a.jpg"), ws.row(f"{N}/d.jpg"), ws.row(f"{N}/e.JPG")
    assert (a["shot"], a["angle"], a["pose"]) == ("upper_body", "eye_level", "peace sign")
    assert (d["landmark"], d["shot"], d["angle"], d["pose"]) == (N, "wide", "high_angle", "unspecified")
    assert (e["shot"], e["angle"], e["mode"]) == ("unspecified", "unspecified", "L")
    assert report.reasons() == Counter(
        {
            "not an image": 2,
            "duplicate content": 1,
            "too small": 1,
            "unsupported file type": 1,
            "unknown landmark folder": 1,
            "outside a landmark folder": 1,
            "metadata file missing": 1,
            "metadata path traversal": 1,
        }
    )
    # the emptied unknown folder goes; landmark folders stay for the next drop
    assert not (ws.incoming / "eiffel_tower").exists()
    assert (ws.incoming / G).is_dir() and (ws.incoming / N).is_dir()


def test_summary_counts_rejections_per_reason(ws, pb):
    ws.put(f"{G}/a.jpg", pb(seed=70))
    ws.put(f"{G}/b.jpg", pb(seed=71))
    ws.put(f"{G}/x.jpg", b"<html>")
    ws.put(f"{G}/y.jpg", b"plain text")
    ws.put(f"{G}/z.jpg", pb(size=(20, 20), seed=72))
    report = ws.run()
    lines = report.summary(ws.quarantine).splitlines()
    assert lines == [
        "ingest: 2 accepted, 3 rejected",
        "  rejected    2 x not an image",
        "  rejected    1 x too small",
        f"  details: {ws.quarantine / 'rejections.csv'}",
    ]


# ---------------------------------------------------------------- idempotency


def tree_state(root: Path) -> dict:
    # .cache/retrain.lock: the pipeline lock records its latest holder on every run
    return {rel: (content(p), p.lstat().st_mtime_ns) for rel, p in entries(root).items() if rel != ".cache/retrain.lock"}


def test_second_run_with_nothing_new_changes_nothing(ws, pb):
    drop_mixed_batch(ws, pb)
    ws.run()
    before = tree_state(ws.root)
    report = ws.run()
    assert (report.accepted, report.rejected, report.resumed, report.manifest_archived_as) == ([], [], 0, None)
    assert tree_state(ws.root) == before  # tables byte-identical and not even rewritten; no new files
    assert report.summary(ws.quarantine) == "ingest: 0 accepted, 0 rejected"


def test_second_batch_appends_rows_with_higher_seq(ws, pb):
    ws.put(f"{G}/a.jpg", pb(seed=80))
    ws.put(f"{N}/b.jpg", pb(seed=81))
    ws.run()
    first = ws.rows()
    ws.put(f"{G}/c.jpg", pb(seed=82))
    ws.put(f"{N}/0-first-in-order.jpg", pb(seed=83))
    ws.put(f"{G}/a-again.jpg", pb(seed=80))
    report = ws.run()
    rows = ws.rows()
    assert rows[:2] == first  # earlier rows untouched
    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    assert sorted(r["source"] for r in rows[2:]) == [f"{G}/c.jpg", f"{N}/0-first-in-order.jpg"]
    assert report.reasons() == Counter({"duplicate content": 1})


# ---------------------------------------------------------------- crash safety


class SimulatedCrash(Exception):
    pass


def crash_at(monkeypatch, point: str, nth: int) -> None:
    calls = Counter()

    def hook(where: str) -> None:
        if where == point:
            calls[where] += 1
            if calls[where] == nth:
                raise SimulatedCrash(f"crash at {where} #{nth}")

    monkeypatch.setattr(ingest_mod, "_crash_hook", hook)


def no_crash(monkeypatch) -> None:
    monkeypatch.setattr(ingest_mod, "_crash_hook", lambda where: None)


def drop_crash_batch(ws: Drop, pb) -> dict:
    """Sorted order: a, b, b_copy (duplicate), c, d_notes (HTML), e, f.txt, stray, unknown/g."""
    ws.put(f"{G}/a.jpg", pb(seed=90))
    ws.put(f"{G}/b.jpg", pb(seed=91))
    ws.put(f"{G}/b_copy.jpg", pb(seed=91))
    ws.put(f"{G}/c.png", pb(seed=92, format="PNG"))
    ws.put(f"{G}/d_notes.jpg", b"<html>saved web page</html>")
    ws.put(f"{N}/e.jpg", pb(seed=93))
    ws.put(f"{N}/f.txt", b"todo")
    ws.put("stray.jpg", pb(seed=94))
    ws.put("unknown_place/g.jpg", pb(seed=95))
    ws.manifest(f"file,shot\n{G}/a.jpg,Upper-Body\n../../etc/passwd,wide\n{G}/missing.jpg,wide\n")
    return ws.snapshot()


def comparable(ws: Drop) -> tuple:
    """The outcome minus timestamps and the workspace root (to compare with an uninterrupted run)."""
    root = str(ws.root)
    rows = [{k: v for k, v in r.items() if k != "ingested_at"} for r in ws.rows()]
    rejs = sorted(
        (r["file"], r["reason"].replace(root, "<root>"), r["quarantined_as"]) for r in ws.rejections()
    )
    raw = {rel: content(p) for rel, p in entries(ws.raw, skip=("metadata.csv",)).items()}
    quarantine = {rel: content(p) for rel, p in entries(ws.quarantine, skip=("rejections.csv",)).items()}
    return rows, rejs, raw, quarantine


@pytest.mark.parametrize(
    "point, nth, resumed",
    [("copied", 1, 0), ("copied", 5, 0), ("recorded", 1, 4)],
    ids=["copied-first", "copied-fifth-a-rejected-file", "recorded"],
)
def test_crash_then_rerun_loses_nothing_and_duplicates_nothing(tmp_path, make_params, pb, monkeypatch, point, nth, resumed):
    ws = Drop(make_params(tmp_path / "crashed"))
    originals = drop_crash_batch(ws, pb)
    crash_at(monkeypatch, point, nth)
    with pytest.raises(SimulatedCrash):
        ws.run()
    assert ws.snapshot() == originals  # nothing removed from incoming before it is recorded
    assert (ws.incoming / "metadata.csv").exists()

    no_crash(monkeypatch)
    report = ws.run()
    assert report.resumed == resumed
    assert len(report.accepted) + report.resumed == 4  # a, b, c, e
    if resumed:
        assert f"{resumed} finished from an interrupted run" in report.summary(ws.quarantine)
    assert_accounted(ws, originals)
    assert ws.row(f"{G}/a.jpg")["shot"] == "upper_body"

    clean = Drop(make_params(tmp_path / "clean"))
    drop_crash_batch(clean, pb)
    clean.run()
    assert comparable(ws) == comparable(clean), "the rerun ends where an uninterrupted run ends"


def test_crash_after_an_earlier_batch_was_committed(tmp_path, make_params, pb, monkeypatch):
    monkeypatch.setattr(ingest_mod, "BATCH", 3)
    ws = Drop(make_params(tmp_path / "crashed"))
    originals = drop_crash_batch(ws, pb)
    crash_at(monkeypatch, "recorded", 2)  # batch 1 (a, b, b_copy) done; batch 2 (c, d_notes, e) recorded
    with pytest.raises(SimulatedCrash):
        ws.run()
    left = ws.snapshot()
    assert f"{G}/a.jpg" not in left and f"{G}/c.png" in left

    no_crash(monkeypatch)
    report = ws.run()
    assert report.resumed == 2  # c.png and e.jpg were stored and recorded before the crash
    assert not [f for f, r in report.rejected if category(r) == "metadata file missing" and "a.jpg" in r]
    assert_accounted(ws, originals)
    assert ws.row(f"{G}/a.jpg")["shot"] == "upper_body"

    clean = Drop(make_params(tmp_path / "clean"))
    drop_crash_batch(clean, pb)
    clean.run()
    assert comparable(ws) == comparable(clean)


def test_failed_rename_inside_the_copy_keeps_the_original_and_a_rerun_succeeds(ws, pb, monkeypatch):
    ws.put(f"{G}/a.jpg", pb(seed=100))
    ws.put(f"{G}/b.jpg", pb(seed=101))
    originals = ws.snapshot()
    real_replace, calls = os.replace, Counter()

    def flaky_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="No space left"):
        ws.run()
    monkeypatch.setattr(os, "replace", real_replace)
    assert ws.snapshot() == originals
    assert entries(ws.raw) == {} and partials(ws.raw, ws.quarantine) == []

    report = ws.run()
    assert sorted(report.accepted) == [f"{G}/a.jpg", f"{G}/b.jpg"]
    assert_accounted(ws, originals)


def test_failed_write_inside_the_copy_keeps_the_original_and_a_rerun_succeeds(ws, pb, monkeypatch):
    ws.put(f"{G}/a.jpg", pb(seed=102))
    ws.put(f"{G}/b.txt", b"rejected file")
    originals = ws.snapshot()
    real_copy = shutil.copyfileobj

    def half_then_fail(fsrc, fdst, length=0):
        data = fsrc.read()
        fdst.write(data[: len(data) // 2])
        monkeypatch.setattr(shutil, "copyfileobj", real_copy)  # fails once
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(shutil, "copyfileobj", half_then_fail)
    with pytest.raises(OSError, match="Input/output error"):
        ws.run()
    assert ws.snapshot() == originals
    assert partials(ws.raw, ws.quarantine) == []

    report = ws.run()
    assert report.accepted == [f"{G}/a.jpg"]
    assert_accounted(ws, originals)


def test_temp_copies_left_by_a_killed_run_are_removed(ws, pb):
    data = pb(seed=103)
    ws.put(f"{G}/a.jpg", data)
    (ws.raw / G).mkdir(parents=True)
    (ws.raw / G / f"{PARTIAL_PREFIX}k1l2m3").write_bytes(data[:100])  # kill -9 mid-copy
    (ws.quarantine / "unknown_place").mkdir(parents=True)
    os.symlink("/nowhere", ws.quarantine / "unknown_place" / f"{PARTIAL_PREFIX}123-link")
    originals = ws.snapshot()
    report = ws.run()
    assert report.accepted == [f"{G}/a.jpg"]
    assert_accounted(ws, originals)


# ---------------------------------------------------------------- progress


def test_progress_bar_goes_to_stderr_from_the_threshold(tmp_path, make_params, pb, capsys):
    ws = Drop(make_params(tmp_path, ingest={"progress_threshold": 3}))
    for i in range(3):
        ws.put(f"{G}/p{i}.jpg", pb(seed=110 + i))
    ws.run()
    captured = capsys.readouterr()
    assert "ingest" in captured.err and "3/3" in captured.err
    assert captured.out == ""


def test_no_progress_bar_below_the_threshold_or_when_turned_off(tmp_path, make_params, pb, capsys):
    ws = Drop(make_params(tmp_path, ingest={"progress_threshold": 4}))
    for i in range(3):
        ws.put(f"{G}/p{i}.jpg", pb(seed=120 + i))
    ws.run()
    assert capsys.readouterr().err == ""
    ws.put(f"{G}/later.jpg", pb(seed=130))
    ws.run(progress=False)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- command line


def write_params_yaml(ws: Drop) -> Path:
    doc = {"paths": {k: str(v) for k, v in ws.params.paths.model_dump().items()}, "ingest": {"dvc_add": False, "min_age_s": 0}}
    path = ws.root / "params.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_cli_ingest_prints_the_summary(tmp_path, make_params, pb, capsys):
    ws = Drop(make_params(tmp_path))
    params_file = write_params_yaml(ws)
    ws.put(f"{G}/a.jpg", pb(seed=140))
    ws.put(f"{N}/b.jpg", pb(seed=141))
    ws.put(f"{G}/page.jpg", b"<html></html>")
    rc = main(["--params", str(params_file), "ingest", "--no-dvc-add"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "ingest: 2 accepted, 1 rejected" in out
    assert "rejected    1 x not an image" in out
    assert str(ws.quarantine / "rejections.csv") in out
    assert len(ws.rows()) == 2

    ws.put(f"{G}/small.jpg", pb(seed=142))  # 80x96: too small once min_side is raised
    rc = main(["--params", str(params_file), "--set", "ingest.min_side=90", "ingest", "--no-dvc-add", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "ingest: 0 accepted, 1 rejected" in out and "1 x too small" in out


def test_cli_ingest_with_a_broken_manifest_exits_2_and_moves_nothing(tmp_path, make_params, pb, capsys):
    ws = Drop(make_params(tmp_path))
    params_file = write_params_yaml(ws)
    photo = ws.put(f"{G}/a.jpg", pb(seed=150))
    ws.manifest("photo,shot\na.jpg,wide\n")
    rc = main(["--params", str(params_file), "ingest", "--no-dvc-add"])
    captured = capsys.readouterr()
    assert rc == 2
    assert "no 'file' column" in captured.err and "Nothing was moved" in captured.err
    assert photo.exists() and ws.rows() == []
