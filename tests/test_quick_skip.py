"""`landmark-lora run` with nothing new leaves before Prefect starts (retrain/quickskip.py), and
says the same thing the flow would: the real command, in a subprocess, under -X importtime.

    .venv/bin/python -m pytest tests/test_quick_skip.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from landmark_lora import rawtable
from landmark_lora.env import apply_offline_defaults
from landmark_lora.locking import pipeline_lock

HEAVY = ("prefect", "torch", "diffusers", "transformers", "great_expectations", "mlflow")


def _imported(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def _workspace(root: Path) -> Path:
    """Two accepted photos in data/raw (no pipeline run yet), nothing in the drop folder."""
    root.mkdir()
    (root / "params.yaml").write_text("{}\n")
    rows = [{"file": f"gyeongbokgung/p{i}.jpg", "landmark": "gyeongbokgung", "shot": "wide", "angle": "eye_level",
             "pose": "", "caption": "", "sha256": f"{i:064x}", "bytes": 1, "width": 64, "height": 64,
             "format": "JPEG", "mode": "RGB", "exif_orientation": 1, "source": "test", "seq": i,
             "ingested_at": "2026-01-01T00:00:00"} for i in range(2)]
    rawtable.write_rows(root / "data/raw", rows)
    return root


def _run(ws: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env["PREFECT_HOME"] = str(ws / "prefect-home")
    apply_offline_defaults(env)
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "landmark_lora.cli", "run", *extra], cwd=ws,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_nothing_new_skips_without_prefect_or_heavy_imports(tmp_path):
    ws = _workspace(tmp_path / "ws")
    out = _run(ws, "--min-new-photos", "5")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "run: skipped: 2 new photo(s) to train on, fewer than min_new_photos=5" in out.stdout
    assert "Prefect was not started" in out.stdout
    imported = _imported(out.stderr)
    assert not [m for m in HEAVY if m in imported], sorted(m for m in HEAVY if m in imported)
    assert not (ws / "prefect-home").exists()  # no database, no server
    report = json.loads((ws / "reports/retrain.json").read_text())
    assert report["status"] == "skipped" and report["flow_run_id"] is None
    assert report["photos"]["untrained"] == 2
    assert set(report["timings"]) >= {"detect"}
    assert (ws / "reports/retrain.md").read_text().startswith("# retrain: skipped")


def test_photos_to_train_on_or_a_held_lock_go_to_the_flow(tmp_path, monkeypatch):
    """Enough new photos: the quick check steps aside (the flow ingests and trains); so does a held lock."""
    from landmark_lora.config import parse_params
    from landmark_lora.locking import lock_path
    from landmark_lora.retrain.quickskip import quick_skip

    ws = _workspace(tmp_path / "ws")
    monkeypatch.chdir(ws)
    params = parse_params({})
    assert quick_skip(params, min_new_photos=2) is None  # 2 untrained photos: train
    assert not (ws / "reports/retrain.json").exists()
    (ws / "data/incoming/gyeongbokgung").mkdir(parents=True)
    (ws / "data/incoming/gyeongbokgung/new.jpg").write_bytes(b"not judged yet")
    assert quick_skip(params, min_new_photos=5) is None  # a photo waiting: ingest it
    (ws / "data/incoming/gyeongbokgung/new.jpg").unlink()
    with pipeline_lock(lock_path(params)):
        # another retrain holds the lock: the flow decides (wait or skip); a separate process would be
        # refused the flock, this one re-enters it, so a held lock is seen by a child here
        code = ("import sys; from landmark_lora.config import parse_params; "
                "from landmark_lora.retrain.quickskip import quick_skip; "
                "sys.exit(0 if quick_skip(parse_params({}), 5) is None else 1)")
        assert subprocess.run([sys.executable, "-c", code], cwd=ws, check=False, timeout=120).returncode == 0
    assert quick_skip(params, min_new_photos=5)["status"] == "skipped"  # lock free, nothing new: skipped
