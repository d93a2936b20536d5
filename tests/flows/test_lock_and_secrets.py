"""One pipeline lock for every writer (issue 10 point 6), synthetic data never in a deployment
(point 4) and no credential in anything the flow publishes (point 10).

The lock tests use real processes: a holder process takes the lock, and the real
`landmark-lora` CLI runs beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import yaml

from landmark_lora.config import load_params
from landmark_lora.locking import LockBusy, lock_path, operation_lock, pipeline_lock

CLI = str(Path(sys.executable).parent / "landmark-lora")
CATALOGUE = ("- slug: gyeongbokgung\n  name_en: Gyeongbokgung Palace\n  name_ko: 경복궁\n"
             "  description: Joseon royal palace with a tiered tiled roof\n")

_HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from landmark_lora.locking import pipeline_lock
    with pipeline_lock(Path(sys.argv[1]), owner=sys.argv[2]):
        print("held", flush=True)
        sys.stdin.readline()  # hold until the test writes a line (or closes stdin)
""")


def _workspace(root: Path, **sections) -> Path:
    """A folder with params.yaml (one landmark, fast sample set) and nothing else."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "landmarks-one.yaml").write_text(CATALOGUE, encoding="utf-8")
    raw = {"catalogue": "landmarks-one.yaml", "sample_data": {"poses_per_view": 1},
           "ingest": {"dvc_add": False}, **sections}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return root


class Holder:
    """Another process holding the pipeline lock of ``ws`` until release()."""

    def __init__(self, ws: Path, owner: str):
        path = ws / lock_path(load_params(ws / "params.yaml"))
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), owner], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def _cli(ws: Path, *args: str, wait_s: float | None = None, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "LANDMARK_LORA_LOCK_WAIT_S"}
    if wait_s is not None:
        env["LANDMARK_LORA_LOCK_WAIT_S"] = str(wait_s)
    return subprocess.Popen([CLI, *args], cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


# ---------------------------------------------------------------- the lock


def test_cli_ingest_fails_busy_or_waits_while_another_process_holds_the_lock(tmp_path, make_photo):
    ws = _workspace(tmp_path / "ws")
    photo = make_photo(ws / "data/incoming/gyeongbokgung/a.jpg", (320, 400), seed=1)
    holder = Holder(ws, "nightly retrain (test holder)")
    try:
        out, err = _cli(ws, "ingest", "--no-progress").communicate(timeout=120)
        assert "busy" in err and "nightly retrain (test holder)" in err, (out, err)
        assert photo.exists() and not (ws / "data/raw/gyeongbokgung").exists(), "ingest ran beside the holder"

        waiting = _cli(ws, "ingest", "--no-progress", wait_s=120)
        time.sleep(4)
        assert waiting.poll() is None and photo.exists(), "ingest did not wait for the lock"
    finally:
        holder.release()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert "1 accepted" in out and not photo.exists() and (ws / "data/raw/gyeongbokgung/a.jpg").exists()


def test_cli_promote_and_rollback_take_the_same_lock(tmp_path):
    ws = _workspace(tmp_path / "ws")
    holder = Holder(ws, "flow run 1234 (test holder)")
    try:
        for args in (["promote"], ["promote", "--rollback", "--reason", "faces look wrong"]):
            proc = _cli(ws, *args)
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 75, (args, out, err)
            assert "busy" in err and "flow run 1234 (test holder)" in err, (args, err)
    finally:
        holder.release()


def test_the_lock_is_reentrant_in_one_call_chain_and_exclusive_across_threads(tmp_path, make_photo, monkeypatch):
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.ops.ingest import ingest

    ws = _workspace(tmp_path / "ws")
    monkeypatch.chdir(ws)
    params = load_params("params.yaml")
    make_photo(ws / "data/incoming/gyeongbokgung/a.jpg", (320, 400), seed=2)
    seen: list[BaseException | None] = []

    def other_thread() -> None:  # a fresh context: an unrelated caller in this process
        try:
            with operation_lock(params, "another thread", wait_s=0.2):
                seen.append(None)
        except LockBusy as busy:
            seen.append(busy)

    with pipeline_lock(lock_path(params), owner="the flow") as waited:
        assert waited < 0.5
        report = ingest(params, load_catalogue(params.catalogue), progress=False)  # takes it again: no wait
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(30)
    assert len(report.accepted) == 1
    assert isinstance(seen[0], LockBusy) and "the flow" in str(seen[0])
    with operation_lock(params, "after") as waited:  # released
        assert waited < 0.5


def test_a_flow_holding_the_lock_runs_its_ingest_task_without_waiting_on_itself(tmp_path, make_photo, monkeypatch):
    from prefect import flow, task

    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.ops.ingest import ingest

    ws = _workspace(tmp_path / "ws")
    monkeypatch.chdir(ws)
    make_photo(ws / "data/incoming/gyeongbokgung/a.jpg", (320, 400), seed=3)
    make_photo(ws / "data/incoming/gyeongbokgung/b.jpg", (320, 400), seed=4)
    params = load_params("params.yaml")

    @task
    def ingest_task() -> int:
        return len(ingest(params, load_catalogue(params.catalogue), progress=False).accepted)

    @flow
    def holds_the_lock() -> int:
        with pipeline_lock(lock_path(params), owner="test flow"):
            return ingest_task()

    assert holds_the_lock() == 2


# ---------------------------------------------------------------- synthetic data: never in a deployment


def test_the_deployment_never_renders_sample_data(tmp_path, retrain_module, monkeypatch):
    from landmark_lora.retrain.deploy import deployment_spec

    assert deployment_spec("nightly-retrain")["parameters"]["sample_if_empty"] is False
    # a flow run of any deployment refuses, whatever its parameters say (Prefect's runtime override)
    ws = _workspace(tmp_path / "ws")
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", "00000000-0000-0000-0000-000000000001")
    outcome = retrain_module.retrain(workdir=str(ws), sample_if_empty=True)
    assert outcome["status"] == "skipped", outcome["reason"]
    assert not list((ws / "data").rglob("*.png")) if (ws / "data").exists() else True
    monkeypatch.delenv("PREFECT__RUNTIME__DEPLOYMENT__ID")
    outcome = retrain_module.retrain(workdir=str(ws), sample_if_empty=True, min_new_photos=10_000)
    assert outcome["photos"]["ingest"]["accepted"] > 0  # outside a deployment, a fresh clone gets its sample


# ---------------------------------------------------------------- secrets


SECRET = "s3cr3t-Passw0rd"


def _latest_artifact(key: str = "retrain-report") -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        found = [a for a in client.read_latest_artifacts() if a.key == key]
    assert found, f"no Prefect artifact with key {key!r}"
    return str(found[0].data)


def test_a_password_in_the_tracking_uri_reaches_nothing_the_flow_publishes(tmp_path, retrain_module, monkeypatch):
    ws = _workspace(tmp_path / "ws")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{SECRET}@127.0.0.1:9")
    outcome = retrain_module.retrain(workdir=str(ws), sample_if_empty=False)
    assert outcome["status"] == "skipped", outcome["reason"]
    published = {
        "return value": json.dumps(outcome, default=str),
        "reports/retrain.md": (ws / "reports/retrain.md").read_text(encoding="utf-8"),
        "reports/retrain.json": (ws / "reports/retrain.json").read_text(encoding="utf-8"),
        "Prefect artifact": _latest_artifact(),
    }
    for where, text in published.items():
        assert SECRET not in text, f"the password reached the {where}"
        assert "http://***@127.0.0.1:9" in text, where  # the URI itself stays, minus the secret


def test_publish_scrubs_every_field_the_same_way_as_mlflow_params(tmp_path, make_params, monkeypatch):
    from landmark_lora.retrain.report import publish
    from landmark_lora.tracking import scrub

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = make_params(tmp_path, mlflow={"tracking_uri": f"https://bob:{SECRET}@mlflow.example.com"})
    cause = f"ConnectionError: Max retries exceeded (https://bob:{SECRET}@mlflow.example.com/api/2.0/runs)"
    outcome = {"status": "failed", "reason": f"retrain failed at stage 'promote': {cause}", "champion": "3",
               "failure": {"stage": "promote", "cause": cause, "transient": True, "details": f"token={SECRET}"},
               "photos": {"pending": 0, "ingest": {}, "untrained": 0}}
    public, markdown = publish(outcome, params)
    for text in (json.dumps(public), markdown, (tmp_path / "reports/retrain.json").read_text(),
                 (tmp_path / "reports/retrain.md").read_text()):
        assert SECRET not in text
    assert public["failure"]["cause"] == scrub({"cause": cause})["cause"]
    assert "https://***@mlflow.example.com" in markdown and public["failure"]["transient"] is True
