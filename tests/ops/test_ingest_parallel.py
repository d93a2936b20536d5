"""Ingest on every core ends exactly where the serial run ends: same rows in the same order, same
rejections, same bytes; and a crash part-way through a parallel run still loses nothing."""

from __future__ import annotations

import pytest

from landmark_lora.ops import ingest as ingest_mod
from tests.ops.test_ingest import Drop, G, N, SimulatedCrash, assert_accounted, comparable, crash_at, no_crash


def drop_many(ws: Drop, pb) -> dict:
    """30 photos over two landmarks, with a duplicate, a truncated JPEG and an HTML file among them."""
    for i in range(24):
        ws.put(f"{G if i % 2 else N}/p{i:02d}.jpg", pb(seed=200 + i))
    ws.put(f"{G}/p05_copy.jpg", pb(seed=205))
    ws.put(f"{G}/cut.jpg", pb(seed=230)[:400])
    ws.put(f"{N}/page.jpg", b"<html>not a photo</html>")
    for i in range(3):
        ws.put(f"{N}/q{i}.png", pb(seed=240 + i, format="PNG"))
    ws.manifest(f"file,shot\n{G}/p01.jpg,wide\n{N}/p00.jpg,close_up\n")
    return ws.snapshot()


def test_parallel_ingest_equals_the_serial_run(tmp_path, make_params, make_photo_bytes):
    pb = make_photo_bytes
    serial = Drop(make_params(tmp_path / "serial", ingest={"workers": 1}))
    parallel = Drop(make_params(tmp_path / "parallel", ingest={"workers": 2}))
    originals = drop_many(serial, pb)
    drop_many(parallel, pb)
    serial.run()
    report = parallel.run()
    assert len(report.accepted) == 27 and len(report.rejected) == 3
    assert comparable(parallel) == comparable(serial)
    assert_accounted(parallel, originals)
    assert [r["seq"] for r in parallel.rows()] == list(range(1, 28))


@pytest.mark.parametrize("point, nth", [("copied", 9), ("recorded", 2)])
def test_a_crash_in_a_parallel_run_loses_nothing(tmp_path, make_params, make_photo_bytes, monkeypatch, point, nth):
    pb = make_photo_bytes
    monkeypatch.setattr(ingest_mod, "BATCH", 8)
    ws = Drop(make_params(tmp_path / "crashed", ingest={"workers": 2}))
    originals = drop_many(ws, pb)
    crash_at(monkeypatch, point, nth)
    with pytest.raises(SimulatedCrash):
        ws.run()
    no_crash(monkeypatch)
    ws.run()
    assert_accounted(ws, originals)

    clean = Drop(make_params(tmp_path / "clean", ingest={"workers": 1}))
    drop_many(clean, pb)
    clean.run()
    assert comparable(ws) == comparable(clean), "the rerun ends where an uninterrupted serial run ends"
