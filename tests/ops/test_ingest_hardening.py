"""Ingest hardening (issue 10, points 5, 7, 8 and 9): files still arriving are left for the next run,
a non-UTF-8 name is quarantined without stopping the run, a file swapped under ingest is never
followed, tables are formula-safe, the preprocess cache survives a failed write, and overlapping
drop/raw/quarantine folders are refused.

Writers here are real processes (a slow copy in a child process) or real changes to real files made
at an injected point; nothing mocks the file system.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_ingest import CAT, Drop, G, N, assert_accounted, category, entries, reason_for

from landmark_lora import fsutil, rawtable
from landmark_lora.config import ConfigError
from landmark_lora.ops import ingest as ingest_mod
from landmark_lora.ops.ingest import pending_photos

# ---------------------------------------------------------------- a real writer, mid-copy

SLOW_COPY = textwrap.dedent(
    """
    import select, sys, time
    src, dest, chunks, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    data = open(src, "rb").read()
    step = -(-len(data) // chunks)
    with open(dest, "wb") as out:
        for i in range(0, len(data), step):
            out.write(data[i:i + step])
            out.flush()
            if i == 0:
                print("started", flush=True)
            if select.select([sys.stdin], [], [], pause)[0]:  # "finish": the rest in one go
                out.write(data[i + step:])
                break
    """
)


class SlowCopy:
    """``cp`` of ``chunks`` pieces ``pause`` s apart, in its own process (an SMB or USB copy).

    It keeps writing until ``finish()`` (at most ``chunks * pause`` s: long enough that an ingest run
    on a loaded machine still sees it growing), then writes the rest at once and exits.
    """

    def __init__(self, tmp: Path, dest: Path, data: bytes, chunks: int = 600, pause: float = 0.08):
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.src = tmp / f"source-{dest.name}"
        self.src.write_bytes(data)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SLOW_COPY, str(self.src), str(dest), str(chunks), str(pause)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout.readline().strip() == "started"  # the first chunk is on disk

    def running(self) -> bool:
        return self.proc.poll() is None

    def finish(self) -> None:
        self.proc.stdin.write("finish\n")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0


@pytest.fixture
def pb(make_photo_bytes):
    return make_photo_bytes


def arriving_ws(tmp_path, make_params, min_age_s: float = 1.0) -> Drop:
    return Drop(make_params(tmp_path, ingest={"min_age_s": min_age_s}))


def big_photo(pb, seed: int) -> bytes:
    return pb(size=(640, 480), seed=seed, quality=95)


def test_a_photo_still_being_copied_is_left_and_taken_whole_by_the_next_run(tmp_path, make_params, pb):
    ws = arriving_ws(tmp_path, make_params)
    data = big_photo(pb, 1)
    ws.put(f"{G}/done.jpg", pb(seed=2))
    copy = SlowCopy(tmp_path, ws.incoming / G / "arriving.jpg", data)

    report = ws.run()
    assert copy.running(), "the writer must still be writing during the run for this test to mean anything"
    assert report.accepted == [f"{G}/done.jpg"]
    assert report.left == [f"{G}/arriving.jpg"] and report.rejected == []
    assert "left 1 still arriving" in report.summary(ws.quarantine)
    assert (ws.incoming / G / "arriving.jpg").exists(), "never unlinked while it is being written"
    assert entries(ws.quarantine) == {} and [r["source"] for r in ws.rows()] == [f"{G}/done.jpg"]

    copy.finish()
    report = ws.run()  # waits out min_age_s once, sees no change, takes it
    assert report.accepted == [f"{G}/arriving.jpg"] and report.left == []
    assert (ws.raw / G / "arriving.jpg").read_bytes() == data, "the whole photo, not the half seen first"
    assert entries(ws.incoming) == {}


def test_a_complete_fresh_file_is_taken_after_waiting_out_min_age(tmp_path, make_params, pb):
    ws = arriving_ws(tmp_path, make_params, min_age_s=0.5)
    ws.put(f"{G}/fresh.jpg", pb(seed=3))
    started = time.monotonic()
    report = ws.run()
    assert report.accepted == [f"{G}/fresh.jpg"] and report.left == []
    assert time.monotonic() - started >= 0.3  # it did look twice


def test_metadata_csv_stays_while_a_labelled_photo_is_still_arriving(tmp_path, make_params, pb):
    ws = arriving_ws(tmp_path, make_params)
    ws.put(f"{G}/a.jpg", pb(seed=4))
    manifest = ws.manifest(f"file,shot,caption\n{G}/a.jpg,wide,first\n{G}/b.jpg,close_up,second\n"
                           f"{G}/c.jpg,upper_body,third\n")
    data = big_photo(pb, 5)
    copy = SlowCopy(tmp_path, ws.incoming / G / "b.jpg", data)  # c.jpg has not even started

    report = ws.run()
    assert copy.running()
    assert report.accepted == [f"{G}/a.jpg"] and ws.row(f"{G}/a.jpg")["caption"] == "first"
    assert report.left == [f"{G}/b.jpg"]
    # c.jpg is not reported missing while a copy is in progress: its row waits with b.jpg's
    assert report.rejected == [] and report.manifest_archived_as is None and report.manifest_waiting == 2
    assert manifest.exists() and "kept metadata.csv: 2 row(s) wait" in report.summary(ws.quarantine)

    copy.finish()
    ws.put(f"{G}/c.jpg", pb(seed=6))
    report = ws.run()
    assert sorted(report.accepted) == [f"{G}/b.jpg", f"{G}/c.jpg"] and report.rejected == []
    assert (ws.row(f"{G}/b.jpg")["shot"], ws.row(f"{G}/b.jpg")["caption"]) == ("close_up", "second")
    assert ws.row(f"{G}/c.jpg")["caption"] == "third"
    assert not manifest.exists() and Path(report.manifest_archived_as).read_bytes().startswith(b"file,shot")


def test_hidden_and_temporary_files_stay_in_the_drop_folder(tmp_path, make_params, pb):
    ws = arriving_ws(tmp_path, make_params, min_age_s=0)
    names = [f"{G}/.IMG_1.jpg.Ab12Cd", f"{G}/~$IMG_2.jpg", f"{G}/IMG_3.jpg~", f"{G}/IMG_4.jpg.part",
             f"{G}/.DS_Store", f"{N}/.sync/IMG_5.jpg"]
    for i, rel in enumerate(names):
        ws.put(rel, pb(seed=10 + i))
    ws.put(f"{G}/IMG_6.jpg", pb(seed=20))
    assert pending_photos(ws.incoming) == 1  # the scheduler does not count them either
    report = ws.run()
    assert report.accepted == [f"{G}/IMG_6.jpg"] and report.rejected == []
    assert sorted(report.hidden) == sorted(names)
    assert "left 6 hidden or temporary file(s)" in report.summary(ws.quarantine)
    assert sorted(entries(ws.incoming)) == sorted(names)
    assert entries(ws.quarantine) == {}


def test_a_file_rewritten_between_the_check_and_the_copy_is_left_not_half_taken(ws_changing, pb):
    ws, grow = ws_changing
    report = ws.run()
    assert report.accepted == [f"{G}/b.jpg"] and report.left == [f"{G}/a.jpg"]
    assert [r["source"] for r in ws.rows()] == [f"{G}/b.jpg"] and entries(ws.quarantine) == {}
    assert (ws.incoming / G / "a.jpg").read_bytes() == grow  # the original is untouched, whole
    report = ws.run()
    assert report.accepted == [f"{G}/a.jpg"] and (ws.raw / G / "a.jpg").read_bytes() == grow


@pytest.fixture
def ws_changing(tmp_path, make_params, pb, monkeypatch):
    """Drop a.jpg (first half of a photo) and b.jpg; the rest of a.jpg is written right after
    ingest has judged it (the writer resumes between the check and the copy)."""
    ws = Drop(make_params(tmp_path))
    full = pb(seed=30)
    a = ws.put(f"{G}/a.jpg", full[: len(full) // 2])
    ws.put(f"{G}/b.jpg", pb(seed=31))
    real = ingest_mod.inspect_photo

    def judged_then_written(path, cfg, *args, **kwargs):
        facts = real(path, cfg, *args, **kwargs)
        if path == a and a.stat().st_size < len(full):
            with a.open("ab") as fh:  # a real write by another open file, not a mock
                fh.write(full[len(full) // 2:])
        return facts

    monkeypatch.setattr(ingest_mod, "inspect_photo", judged_then_written)
    return ws, full


def test_a_file_swapped_for_a_symlink_after_the_check_is_not_followed(tmp_path, make_params, pb, monkeypatch):
    ws = Drop(make_params(tmp_path))
    secret = tmp_path / "outside" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes(pb(seed=40))
    src = ws.put(f"{G}/a.jpg", pb(seed=41))
    real = ingest_mod.inspect_photo

    def swap_then_inspect(path, cfg, *args, **kwargs):
        if path == src and not path.is_symlink():
            path.unlink()
            os.symlink(secret, path)  # the attacker's swap, after the scan looked at a regular file
        return real(path, cfg, *args, **kwargs)

    monkeypatch.setattr(ingest_mod, "inspect_photo", swap_then_inspect)
    report = ws.run()
    assert report.accepted == [] and report.left == [f"{G}/a.jpg"]
    assert ws.rows() == [] and entries(ws.raw) == {}, "the secret's bytes never enter data/raw"
    monkeypatch.undo()
    report = ws.run()  # now judged as what it is
    assert category(reason_for(report, f"{G}/a.jpg")) == "symlink"
    assert ws.rows() == [] and secret.read_bytes() == pb(seed=40)


def test_a_file_swapped_for_another_file_after_the_check_is_not_taken(tmp_path, make_params, pb, monkeypatch):
    ws = Drop(make_params(tmp_path))
    src = ws.put(f"{G}/a.jpg", pb(seed=42))
    other = tmp_path / "other.jpg"
    other.write_bytes(pb(seed=43))
    real = ingest_mod.inspect_photo
    swapped = []

    def swap_then_inspect(path, cfg, *args, **kwargs):
        if path == src and not swapped:
            os.replace(other, path)  # same name, another inode
            swapped.append(path)
        return real(path, cfg, *args, **kwargs)

    monkeypatch.setattr(ingest_mod, "inspect_photo", swap_then_inspect)
    report = ws.run()
    assert report.accepted == [] and report.left == [f"{G}/a.jpg"] and ws.rows() == []
    report = ws.run()
    assert report.accepted == [f"{G}/a.jpg"] and (ws.raw / G / "a.jpg").read_bytes() == pb(seed=43)


# ---------------------------------------------------------------- non-UTF-8 names


def latin1_file(ws: Drop, folder: str, data: bytes) -> bytes:
    path = os.fsencode(ws.incoming) + b"/" + folder.encode() + b"/caf\xe9.jpg"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def test_a_non_utf8_file_name_is_quarantined_and_the_batch_goes_on(ws_plain, pb):
    ws = ws_plain
    data = pb(seed=50)
    path = latin1_file(ws, G, data)
    ws.put(f"{G}/good.jpg", pb(seed=51))
    originals = {f"{G}/good.jpg": ("file", pb(seed=51)), f"{G}/caf\\xe9.jpg": ("file", data)}

    report = ws.run()
    assert report.accepted == [f"{G}/good.jpg"]
    reason = reason_for(report, f"{G}/caf\\xe9.jpg")
    assert category(reason) == "file name not UTF-8" and "caf\\xe9.jpg" in reason and "rename it" in reason
    report.summary(ws.quarantine).encode("utf-8")  # printable
    assert not os.path.exists(path)
    assert_accounted(ws, originals)  # bytes unchanged, under the readable name, one line each
    assert (ws.quarantine / G / "caf\\xe9.jpg").read_bytes() == data

    report = ws.run()  # and later runs are not blocked
    assert (report.accepted, report.rejected) == ([], [])
    ws.put(f"{G}/next.jpg", pb(seed=52))
    assert ws.run().accepted == [f"{G}/next.jpg"]


def test_a_non_utf8_folder_and_a_crash_mid_batch_are_recovered(tmp_path, make_params, pb, monkeypatch):
    ws = Drop(make_params(tmp_path))
    data = pb(seed=53)
    latin1_file(ws, f"{G}/sube", data)
    folder = os.fsencode(ws.incoming) + b"/d\xe9j\xe0"
    os.makedirs(folder)
    with open(folder + b"/x.jpg", "wb") as fh:
        fh.write(pb(seed=54))
    calls = []

    def crash_once(where: str) -> None:
        if where == "copied" and not calls:
            calls.append(where)
            raise RuntimeError("crash after the first copy")

    monkeypatch.setattr(ingest_mod, "_crash_hook", crash_once)
    with pytest.raises(RuntimeError):
        ws.run()
    report = ws.run()
    rels = sorted(f for f, _ in report.rejected)
    assert rels == ["d\\xe9j\\xe0/x.jpg", f"{G}/sube/caf\\xe9.jpg"]
    assert_accounted(ws, {"d\\xe9j\\xe0/x.jpg": ("file", pb(seed=54)), f"{G}/sube/caf\\xe9.jpg": ("file", data)})


@pytest.fixture
def ws_plain(tmp_path, make_params) -> Drop:
    return Drop(make_params(tmp_path))


# ---------------------------------------------------------------- formula-safe tables

DANGEROUS = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "'quoted already"]


def test_formula_cells_are_neutralised_and_round_trip(ws_plain, pb):
    ws = ws_plain
    rows = "".join(f"{G}/p{i}.jpg,wide,\"{c.replace(chr(34), chr(34) * 2)}\"\n" for i, c in enumerate(DANGEROUS))
    ws.manifest("file,shot,caption\n" + rows)
    for i in range(len(DANGEROUS)):
        ws.put(f"{G}/p{i}.jpg", pb(seed=60 + i))
    ws.put("=cmd|' /C calc'!A0.jpg", b"not even a photo")  # top level: rejected, its name in rejections.csv
    ws.put("@evil.txt", b"x")
    report = ws.run()
    assert len(report.accepted) == len(DANGEROUS)

    for table in (rawtable.table_path(ws.raw), ws.quarantine / "rejections.csv"):
        with table.open(newline="", encoding="utf-8") as fh:
            for line in csv.reader(fh):
                for cell in line:
                    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (table.name, cell)
    assert [ws.row(f"{G}/p{i}.jpg")["caption"] for i in range(len(DANGEROUS))] == DANGEROUS
    assert {r["file"] for r in fsutil.read_csv_rows(ws.quarantine / "rejections.csv")[1]} == {"=cmd|' /C calc'!A0.jpg", "@evil.txt"}

    before = {p: p.read_bytes() for p in (rawtable.table_path(ws.raw), ws.quarantine / "rejections.csv")}
    report = ws.run()  # read back and written again: no second quote, nothing recorded twice
    assert (report.accepted, report.rejected) == ([], [])
    ws.put(f"{N}/new.jpg", pb(seed=70))
    ws.run()
    assert [ws.row(f"{G}/p{i}.jpg")["caption"] for i in range(len(DANGEROUS))] == DANGEROUS
    assert (ws.quarantine / "rejections.csv").read_bytes() == before[ws.quarantine / "rejections.csv"]
    assert rawtable.table_path(ws.raw).read_bytes().startswith(before[rawtable.table_path(ws.raw)])


# ---------------------------------------------------------------- overlapping folders


@pytest.mark.parametrize(
    "paths, named",
    [
        ({"incoming": "data/x", "raw": "data/x"}, ("paths.incoming", "paths.raw", "same folder")),
        ({"raw": "data/incoming/raw"}, ("paths.raw", "inside paths.incoming")),
        ({"incoming": "data/quarantine/drop"}, ("paths.incoming", "inside paths.quarantine")),
        ({"quarantine": "data/raw/q"}, ("paths.quarantine", "inside paths.raw")),
        ({"quarantine": "data/raw/../raw"}, ("paths.raw", "paths.quarantine", "same folder")),
    ],
)
def test_overlapping_drop_raw_and_quarantine_are_refused(tmp_path, make_params, paths, named):
    with pytest.raises(ConfigError) as err:
        make_params(tmp_path, paths={k: str(tmp_path / v) for k, v in paths.items()})
    for words in named:
        assert words in str(err.value)


def test_neighbouring_folders_with_a_common_prefix_are_fine(tmp_path, make_params):
    params = make_params(tmp_path, paths={"raw": str(tmp_path / "data/incoming2"), "quarantine": str(tmp_path / "q")})
    assert params.paths.raw.name == "incoming2"


# ---------------------------------------------------------------- the preprocess cache


@pytest.fixture
def ingested(tmp_path, make_params, pb):
    params = make_params(tmp_path, data={"person_detector": "center"})
    ws = Drop(params)
    for i in range(3):
        ws.put(f"{G}/p{i}.jpg", pb(seed=80 + i))
    assert len(ws.run().accepted) == 3
    return params


def test_a_failed_cache_write_leaves_no_entry_and_the_rerun_succeeds(ingested, monkeypatch):
    from landmark_lora.stages.preprocess import preprocess

    real_fsync = os.fsync

    def disk_full_for_json(fd):
        if ".json." in os.readlink(f"/proc/self/fd/{fd}"):  # the first entry's facts, after its image
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_for_json)
    with pytest.raises(OSError, match="No space left"):
        preprocess(ingested, CAT)
    monkeypatch.setattr(os, "fsync", real_fsync)
    cache = Path(ingested.paths.cache) / "preprocess"
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == [], "no temp file left behind"
    assert list(cache.glob("*.json")) == [], "no partial entry that a later run would trust"

    summary = preprocess(ingested, CAT)
    assert summary.cache_misses == 3 and sum(summary.counts.values()) == 3


def test_an_unreadable_cache_entry_counts_as_a_miss_and_is_rewritten(ingested):
    from landmark_lora.stages.preprocess import preprocess

    preprocess(ingested, CAT)
    cache = Path(ingested.paths.cache) / "preprocess"
    metas = sorted(cache.glob("*.json"))
    images = sorted(cache.glob("*.png"))
    assert len(metas) == len(images) == 3
    metas[0].write_text(metas[0].read_text()[:7])  # what an in-place write on a full disk left
    metas[1].write_bytes(b"")
    images[2].write_bytes(images[2].read_bytes()[:20])  # an image cut short

    summary = preprocess(ingested, CAT)
    assert summary.cache_misses == 3 and summary.cache_hits == 0
    for meta in metas:
        assert "bucket" in json.loads(meta.read_text())
    assert preprocess(ingested, CAT).cache_hits == 3


def test_a_table_temp_file_left_by_a_killed_write_is_removed(ws_plain, pb):
    ws = ws_plain
    ws.put(f"{G}/a.jpg", pb(seed=90))
    ws.run()
    killed = ws.raw / ".metadata.csv.k1l2m3.tmp"  # kill -9 inside fsutil.write_csv_atomic
    killed.write_bytes(b"file,landmark\nhalf")
    (ws.quarantine).mkdir(exist_ok=True)
    (ws.quarantine / ".rejections.csv.x9y8.tmp").write_bytes(b"file,re")
    ws.put(f"{G}/b.jpg", pb(seed=91))
    assert ws.run().accepted == [f"{G}/b.jpg"]
    assert entries(ws.raw, skip=("metadata.csv",)).keys() == {f"{G}/a.jpg", f"{G}/b.jpg"}
    assert entries(ws.quarantine) == {}


def test_the_retrain_report_says_how_many_photos_were_left_arriving(tmp_path, make_params):
    from landmark_lora.retrain.report import render_report

    outcome = {"status": "skipped", "reason": "no new photos", "photos": {"pending": 2, "ingest": {"left": 2}}}
    assert "- still arriving, left for the next run: 2" in render_report(outcome, make_params(tmp_path))
    outcome["photos"]["ingest"]["left"] = 0
    assert "still arriving" not in render_report(outcome, make_params(tmp_path))
