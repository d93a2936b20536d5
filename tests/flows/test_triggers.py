"""Scheduling and triggers: the watcher's debounce (fake clock, then real watchdog), prefect.yaml
as Prefect reads it, and the served deployment's trigger turning a burst of events into ONE run."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from landmark_lora.orchestration import EVENT_PHOTOS_ARRIVED, EVENT_RESOURCE_ID, deployment_spec, serve_kwargs
from landmark_lora.watcher import PhotoBatcher, emit_photos_arrived, is_photo, watch
from tests.helpers.workspace import REPO

EXTS = [".jpg", ".jpeg", ".png", ".webp"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- debounce logic


def test_a_batch_of_200_photos_is_one_batch_sent_after_the_quiet_period():
    clock = Clock()
    batcher = PhotoBatcher(quiet_s=30, max_wait_s=600, clock=clock)
    assert batcher.pop_due() is None and batcher.seconds_until_due() is None
    for i in range(200):  # a copy that takes 20 s
        batcher.add(f"gyeongbokgung/IMG_{i:04d}.jpg")
        batcher.add(f"gyeongbokgung/IMG_{i:04d}.jpg")  # modified events for the same file count once
        clock.now += 0.1
        assert batcher.pop_due() is None
    clock.now += 29.0
    assert batcher.pop_due() is None  # still inside the quiet period after the last photo
    clock.now += 1.0
    batch = batcher.pop_due()
    assert batch is not None and len(batch) == 200
    assert batcher.pop_due() is None  # sent once


def test_a_steady_trickle_is_sent_after_max_wait():
    clock = Clock()
    batcher = PhotoBatcher(quiet_s=30, max_wait_s=120, clock=clock)
    sent = []
    for i in range(40):  # one photo every 10 s, never 30 s of quiet
        batcher.add(f"haeundae_beach/{i}.jpg")
        clock.now += 10
        if (batch := batcher.pop_due()) is not None:
            sent.append(batch)
    assert [len(b) for b in sent] == [12, 12, 12]


def test_only_photos_count():
    assert is_photo("data/incoming/gyeongbokgung/IMG_1.JPG", EXTS)
    assert not is_photo("data/incoming/metadata.csv", EXTS)
    assert not is_photo("data/incoming/gyeongbokgung/.IMG_1.jpg.x8Hk2", EXTS)  # rsync temp file
    assert not is_photo("data/incoming/gyeongbokgung/.partial-123-a.jpg", EXTS)
    with pytest.raises(ValueError):
        PhotoBatcher(quiet_s=10, max_wait_s=5)


def test_the_watcher_turns_a_burst_of_files_into_one_event_per_batch(tmp_path, make_photo_bytes):
    incoming = tmp_path / "incoming"
    (incoming / "gyeongbokgung").mkdir(parents=True)
    (incoming / "gyeongbokgung" / "already_there.jpg").write_bytes(make_photo_bytes(seed=1))
    emitted: list[list[str]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(incoming, emitted.append, EXTS),
                               kwargs={"quiet_s": 0.8, "max_wait_s": 30, "stop": stop, "poll_s": 0.05,
                                       "log": lambda _: None})
    watcher.start()
    try:
        deadline = time.monotonic() + 10
        while not emitted and time.monotonic() < deadline:  # the photo waiting at start-up
            time.sleep(0.05)
        assert [len(b) for b in emitted] == [1]
        data = make_photo_bytes(seed=2)
        for i in range(25):
            (incoming / "gyeongbokgung" / f"IMG_{i}.jpg").write_bytes(data)
        (incoming / "metadata.csv").write_text("file,shot\n")
        (incoming / "gyeongbokgung" / ".IMG_0.jpg.tmp").write_bytes(b"partial")
        deadline = time.monotonic() + 15
        while len(emitted) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # long enough for a wrongly split second batch to show up
    finally:
        stop.set()
        watcher.join(10)
    assert [len(b) for b in emitted] == [1, 25]
    assert all(Path(p).name.startswith("IMG_") for p in emitted[1])


# ---------------------------------------------------------------- prefect.yaml and the trigger


def test_prefect_yaml_declares_a_nightly_seoul_schedule_on_a_process_pool_with_a_debounced_trigger(retrain_module):
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.events.schemas.deployment_triggers import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    raw = yaml.safe_load((REPO / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(raw)
    dep = next(d for d in model.deployments if d.name == "nightly-retrain")
    assert dep.entrypoint == "flows/retrain.py:retrain"
    assert dep.schedules[0].cron == "0 3 * * *" and dep.schedules[0].timezone == "Asia/Seoul"
    assert dep.work_pool.name == "landmark-lora"
    assert dep.concurrency_limit.limit == 1
    trigger = TypeAdapter(DeploymentTriggerTypes).validate_python(dep.triggers[0])
    assert trigger.expect == {EVENT_PHOTOS_ARRIVED}
    assert trigger.threshold == 1 and trigger.within == timedelta(seconds=300)
    # every parameter the deployment and its trigger pass is one the flow takes
    flow_params = set(retrain_module.retrain.parameters.properties)
    assert set(dep.parameters) <= flow_params and set(trigger.parameters or {}) <= flow_params


def test_served_deployment_has_the_schedule_and_a_burst_of_events_starts_one_run():
    """What `landmark-lora serve` registers, applied to the test server; then 5 events -> 1 run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events.worker import EventsWorker

    from landmark_lora.orchestration import load_retrain_flow

    spec = deployment_spec("nightly-retrain", REPO / "prefect.yaml")
    kwargs = serve_kwargs(spec)
    deployment = load_retrain_flow().to_deployment(name=spec["name"], **kwargs)
    deployment_id = deployment.apply()
    for i in range(5):  # e.g. five watchers' batches, or a watcher restarted mid-copy
        emit_photos_arrived([f"/drop/gyeongbokgung/IMG_{i}.jpg"], Path("/drop"))
    EventsWorker.drain_all()
    runs = []
    with get_client(sync_client=True) as client:
        schedules = client.read_deployment(deployment_id).schedules
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
            if runs and time.monotonic() > deadline - 22:  # give late duplicates 8 s to show up
                break
            time.sleep(0.5)
    assert schedules[0].schedule.cron == "0 3 * * *" and schedules[0].schedule.timezone == "Asia/Seoul"
    assert len(runs) == 1, [r.name for r in runs]
    assert runs[0].created_by is not None and runs[0].created_by.type == "AUTOMATION"
    assert runs[0].parameters.get("min_new_photos") == 1


def test_the_event_names_the_drop_folder(monkeypatch):
    sent = {}

    def fake_emit(event, resource, payload):
        sent.update(event=event, resource=resource, payload=payload)

    monkeypatch.setattr("prefect.events.emit_event", fake_emit)
    emit_photos_arrived(["/drop/gyeongbokgung/a.jpg", "/drop/haeundae_beach/b.jpg"], Path("/drop"))
    assert sent["event"] == EVENT_PHOTOS_ARRIVED
    assert sent["resource"]["prefect.resource.id"] == EVENT_RESOURCE_ID
    assert sent["payload"] == {"files": 2, "landmarks": ["gyeongbokgung", "haeundae_beach"],
                               "examples": ["gyeongbokgung/a.jpg", "haeundae_beach/b.jpg"]}
