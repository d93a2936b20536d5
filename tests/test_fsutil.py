"""The one atomic writer: old or new content, never half, and no temp file left, whatever fails.

A full disk is real here where it can be: a child process with a small RLIMIT_FSIZE gets EFBIG from
the kernel in the middle of the write. Where a failure must hit one exact step (the fsync, the
rename), it is injected by raising from that call.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from landmark_lora import fsutil


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


@pytest.mark.parametrize("write", ["bytes", "text", "json", "csv"])
def test_each_writer_replaces_the_file_whole(tmp_path, write):
    path = tmp_path / "sub" / "state"
    for value in ("first", "second"):
        if write == "bytes":
            fsutil.write_bytes_atomic(path, value.encode())
            assert path.read_bytes() == value.encode()
        elif write == "text":
            fsutil.write_text_atomic(path, value)
            assert path.read_text() == value
        elif write == "json":
            fsutil.write_json_atomic(path, {"v": value}, indent=2)
            assert json.loads(path.read_text()) == {"v": value} and path.read_text().endswith("}\n")
        else:
            fsutil.write_csv_atomic(path, ("a", "b"), [{"a": value, "b": 1}])
            assert fsutil.read_csv_rows(path) == (["a", "b"], [{"a": value, "b": "1"}])
    assert leftovers(path.parent, "state") == []


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_a_failure_at_any_step_keeps_the_old_file_and_removes_the_temp(tmp_path, monkeypatch, step):
    path = tmp_path / "cache.json"
    fsutil.write_json_atomic(path, {"old": True})
    real = getattr(os, step)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, step, disk_full)
    with pytest.raises(OSError, match="No space left"):
        fsutil.write_json_atomic(path, {"new": "x" * 10_000})
    monkeypatch.setattr(os, step, real)
    assert json.loads(path.read_text()) == {"old": True}
    assert leftovers(tmp_path, "cache.json") == []
    fsutil.write_json_atomic(path, {"new": 1})  # and the next write succeeds
    assert json.loads(path.read_text()) == {"new": 1}


def test_an_error_inside_atomic_path_keeps_the_old_file(tmp_path):
    path = tmp_path / "img.png"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), fsutil.atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder died")
    assert path.read_bytes() == b"old" and leftovers(tmp_path, "img.png") == []


FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    from landmark_lora import fsutil
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)        # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # any file past 4 KiB: the disk is full
    try:
        fsutil.write_bytes_atomic(sys.argv[1], b"n" * 100_000)
    except OSError as err:
        print("failed", err.errno)
    """
)


def test_a_real_full_disk_mid_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_bytes(b"old table\n")
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert out.stdout.split() == ["failed", str(errno.EFBIG)], out.stderr
    assert path.read_bytes() == b"old table\n"
    assert leftovers(tmp_path, "metadata.csv") == []


def test_fsync_tree_syncs_every_file_of_a_folder(tmp_path, monkeypatch):
    (tmp_path / "ck" / "sub").mkdir(parents=True)
    for name in ("ck/a", "ck/sub/b"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink("/nowhere", tmp_path / "ck" / "link")  # not followed
    real, synced = os.fsync, []

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    fsutil.fsync_tree(tmp_path / "ck")
    assert {str(tmp_path / n) for n in ("ck/a", "ck/sub/b", "ck", "ck/sub")} <= set(synced)


FORMULAS = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'x", "''x", "plain", "", "a=b", "-"]


def test_csv_cells_cannot_start_a_formula_and_round_trip(tmp_path):
    path = tmp_path / "t.csv"
    rows = [{"v": v, "n": i} for i, v in enumerate(FORMULAS)]
    fsutil.write_csv_atomic(path, ("v", "n"), rows)
    with path.open(newline="", encoding="utf-8") as fh:
        cells = [r["v"] for r in csv.DictReader(fh)]
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells), cells
    assert cells[0] == "'=1+1" and cells[8] == "plain"
    assert [r["v"] for r in fsutil.read_csv_rows(path)[1]] == FORMULAS


def test_a_written_file_gets_the_mode_a_plain_write_would_give(tmp_path):
    # mkstemp creates 0600: without the chmod, reports and tables became unreadable to the team
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.json"
        fsutil.write_json_atomic(fresh, {"a": 1})
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        kept = tmp_path / "kept.csv"
        kept.write_text("x\n")
        kept.chmod(0o640)
        fsutil.write_text_atomic(kept, "y\n")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    finally:
        os.umask(old)
