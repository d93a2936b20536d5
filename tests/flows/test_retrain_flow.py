"""The `retrain` flow end to end, against a real `mlflow server` on loopback.

One workspace serves the whole module (a full pipeline run is the expensive part), in order:
first run on the sample set -> nothing new skips -> a broken dataset contract fails at
`validate` -> 3 new photos: promote crashes after registering (nothing left behind), then a
rerun registers the new version -> the lock makes a second trigger skip or wait.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import threading
import time

import pytest
import yaml
from report_fixtures import CHROMIUM, body_attr, external_refs, open_in_chromium

from landmark_lora import locking, rawtable
from landmark_lora.locking import lock_path, pipeline_lock
from tests.helpers.workspace import build_workspace

pytestmark = pytest.mark.slow


def _client():
    import mlflow

    return mlflow.MlflowClient()


def _runs(experiment: str = "landmark-lora") -> list:
    client = _client()
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def _versions() -> list:
    return sorted(_client().search_model_versions("name='landmark-lora'"), key=lambda v: int(v.version))


def _champion() -> str:
    return _client().get_model_version_by_alias("landmark-lora", "champion").version


def _latest_artifact(key: str = "retrain-report") -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
        found = [a for a in artifact if a.key == key]
    assert found, f"no Prefect artifact with key {key!r}"
    return str(found[0].data)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, mlflow_server, checkout_tiny_base):
    """A workspace whose every MLflow call (flow and dvc subprocess alike) goes to the server
    (models/base-tiny copied in: tests/conftest.py builds it once per checkout)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        root = build_workspace(tmp_path_factory.mktemp("retrain") / "ws")
        yield root


@pytest.fixture(scope="module")
def first_run(ws, retrain_module):
    t0 = time.monotonic()
    outcome = retrain_module.retrain(workdir=str(ws))
    return outcome, time.monotonic() - t0


def test_first_run_samples_ingests_trains_registers_and_reports(ws, first_run, mlflow_server):
    outcome, seconds = first_run
    assert outcome["status"] == "trained", outcome["reason"]
    # 2 landmarks x 3 angles x 5 shots x 1 pose, + 2 background plates per landmark and angle
    assert outcome["photos"]["ingest"]["accepted"] == 30 + 12
    assert outcome["stages_run"] == ["validate", "preprocess", "cache_latents", "train", "evaluate"]
    assert outcome["decision"] == "promoted" and outcome["champion"] == "1"

    # exactly one MLflow run, tagged with the flow run, the git sha and the dvc.lock data hashes
    runs = _runs()
    assert len(runs) == 1
    tags = runs[0].data.tags
    assert runs[0].info.run_id == outcome["mlflow_run_id"]
    assert tags["prefect_flow_run_id"] == outcome["flow_run_id"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True, text=True, check=False).stdout.strip()
    assert tags["git_sha"].startswith(head)
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert tags["dvc.data/processed"] == next(o["md5"] for o in lock["stages"]["preprocess"]["outs"])
    assert tags["dvc.data/latents"] == next(o["md5"] for o in lock["stages"]["cache_latents"]["outs"])
    assert _champion() == "1" and [v.version for v in _versions()] == ["1"]

    # the artifact: photos, metrics next to the champion's, the decision, the MLflow run to open
    md = _latest_artifact()
    assert md == (ws / "reports/retrain.md").read_text()
    for needle in ("accepted: 42", "## Metrics", "| eval_loss |", "decision: **promoted**",
                   outcome["mlflow_run_id"], mlflow_server, "prefect server start"):
        assert needle in md, needle
    print(f"first run: {seconds:.0f} s")


def test_first_run_reports_and_logs_the_time_of_every_phase(ws, first_run):
    """reports/retrain.json, the markdown and the MLflow run hold a time per phase; the phases add
    up to (no more than) the flow's own wall time."""
    outcome, seconds = first_run
    timings = outcome["timings"]
    stages = ["dvc:validate", "dvc:preprocess", "dvc:cache_latents", "dvc:train", "dvc:evaluate"]
    assert [k for k in timings if k.startswith("dvc:")] == stages
    for phase in ("start-up", "detect", "ingest", "dvc", "promote", *stages):
        assert timings[phase] >= 0, phase
    assert timings["dvc:train"] > timings["dvc:validate"] > 0
    assert sum(v for k, v in timings.items() if k != "start-up") <= seconds + 1
    assert json.loads((ws / "reports/retrain.json").read_text())["timings"]["dvc:train"] == timings["dvc:train"]
    md = (ws / "reports/retrain.md").read_text()
    assert "## Time per phase" in md and "| dvc:train |" in md and "of everything else" in md
    logged = _runs()[0].data.metrics
    assert logged["time/dvc.train_s"] == timings["dvc:train"] and "time/report_s" in logged
    assert logged["time/total_s"] == pytest.approx(logged["time/loops_s"] + logged["time/overhead_s"], abs=0.02)


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="browser check of the real reports/retrain.html skipped: "
                    "/usr/bin/chromium is missing (apt-get install -y chromium; .ci/run tries that)")
def test_first_run_report_page_opens_offline_with_every_image(ws, first_run, tmp_path):
    outcome, _ = first_run
    page = ws / "reports" / "retrain.html"
    assert external_refs(page.read_text(encoding="utf-8")) == []
    dom = open_in_chromium(page, tmp_path / "profile")  # headless, every network request blocked
    grids = len(list((ws / "reports" / "samples").glob("*.png")))
    assert grids == 2 and int(body_attr(dom, "data-images")) >= grids
    assert body_attr(dom, "data-images-loaded") == body_attr(dom, "data-images")
    assert body_attr(dom, "data-metric-table-visible") == "yes"
    assert "PROMOTED: version 1 is the new champion" in dom and outcome["mlflow_run_id"] in dom


def test_nothing_new_skips_fast_without_an_mlflow_run(ws, first_run, retrain_module):
    before = len(_runs())
    t0 = time.monotonic()
    outcome = retrain_module.retrain(workdir=str(ws))
    seconds = time.monotonic() - t0
    assert outcome["status"] == "skipped"
    assert "0 new photo(s)" in outcome["reason"] and "min_new_photos=1" in outcome["reason"]
    assert len(_runs()) == before
    assert "# retrain: skipped" in _latest_artifact()
    assert seconds < 30, f"the skip path took {seconds:.1f} s"


def test_broken_contract_fails_at_validate_and_keeps_champion_and_photos(ws, first_run, retrain_module, make_photo):
    runs, versions, champion = len(_runs()), len(_versions()), _champion()
    for i in range(2):
        make_photo(ws / "data/incoming/haeundae_beach" / f"beach_{i}.jpg", (96, 128), seed=500 + i)
    params_file = ws / "params.yaml"
    original = params_file.read_text()
    broken = yaml.safe_load(original)
    broken["validation"]["min_photos_per_landmark"] = 1000
    params_file.write_text(yaml.safe_dump(broken, sort_keys=False))
    try:
        state = retrain_module.retrain(workdir=str(ws), return_state=True)
    finally:
        params_file.write_text(original)
    assert state.is_failed()
    assert "stage 'validate'" in state.message and "fewer than 1000 photos" in state.message, state.message
    assert len(_runs()) == runs and len(_versions()) == versions and _champion() == champion
    # no photo lost: both are in data/raw, none left behind or quarantined
    files = {row["file"] for row in rawtable.read_rows(ws / "data/raw")}
    assert {"haeundae_beach/beach_0.jpg", "haeundae_beach/beach_1.jpg"} <= files
    assert not list((ws / "data/incoming").rglob("*.jpg"))
    md = _latest_artifact()
    assert "## Failure" in md and "stage: `validate`" in md and "no (hard failure)" in md


def test_new_photos_make_a_new_version_and_a_promote_crash_leaves_nothing_behind(
        ws, first_run, retrain_module, make_photo, monkeypatch):
    from landmark_lora.ops import promote as promote_mod

    runs, versions, champion = len(_runs()), [v.version for v in _versions()], _champion()
    for i in range(3):
        make_photo(ws / "data/incoming/gyeongbokgung" / f"palace_{i}.jpg", (96, 128), seed=700 + i)

    calls = []

    def crash_after_registration(*args, **kwargs):  # runs after register_model, before any decision
        calls.append(1)
        raise RuntimeError("simulated registry crash")

    monkeypatch.setattr(promote_mod, "rescore", crash_after_registration)
    state = retrain_module.retrain(workdir=str(ws), min_new_photos=3, return_state=True)
    assert state.is_failed() and "stage 'promote'" in state.message, state.message
    assert calls == [1], "a hard failure must not be retried"
    assert [v.version for v in _versions()] == versions, "half-registered version left behind"
    assert _champion() == champion
    assert len(_runs()) == runs + 1  # the pipeline ran once: one new MLflow run
    crashed_flow_run = json.loads((ws / "reports/retrain.json").read_text())["flow_run_id"]

    monkeypatch.undo()
    outcome = retrain_module.retrain(workdir=str(ws), min_new_photos=3)
    assert outcome["status"] == "trained", outcome["reason"]
    assert outcome["stages_run"] == []  # the pipeline was done; only promotion was missing
    assert len(_runs()) == runs + 1
    new = _versions()[-1]
    assert len(_versions()) == len(versions) + 1 and new.version == outcome["challenger_version"]
    assert new.tags["promotion_decision"] in ("promoted", "rejected")
    run = _client().get_run(new.run_id)
    assert run.data.tags["prefect_flow_run_id"] == crashed_flow_run
    assert "champion (v1" in _latest_artifact()


def test_a_second_trigger_skips_or_waits_while_one_holds_the_lock(ws, first_run, retrain_module, monkeypatch):
    from landmark_lora.config import load_params

    path = ws / lock_path(load_params(ws / "params.yaml"))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another thread: the lock is re-entrant only within one call chain
        with pipeline_lock(path, owner="a running retrain"):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        busy = retrain_module.retrain(workdir=str(ws), if_busy="skip")
    finally:
        release.set()
        holder.join()
    assert busy["status"] == "busy" and "a running retrain" in busy["reason"]

    # Released 1.5 s after the retrain first finds the lock taken (not on a timer from here: the
    # flow's own start-up before it asks for the lock varies with the machine's load).
    contended = threading.Event()

    class SeesContention:
        def __getattr__(self, name):
            return getattr(fcntl, name)

        @staticmethod
        def flock(fd, op):
            try:
                return fcntl.flock(fd, op)
            except BlockingIOError:
                contended.set()
                raise

    monkeypatch.setattr(locking, "fcntl", SeesContention())

    def release_after_contention() -> None:
        contended.wait(60)
        time.sleep(1.5)
        release.set()

    held.clear()
    release.clear()
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    threading.Thread(target=release_after_contention, daemon=True).start()
    try:
        waited = retrain_module.retrain(workdir=str(ws), if_busy="wait", lock_timeout_s=60)
    finally:
        release.set()
        holder.join()
    assert waited["status"] == "skipped" and waited["waited_for_lock_s"] >= 1.0
