"""Retries and the lock, without a pipeline: transient failures are retried with backoff, hard
ones are not; DVC's output names the failing stage; two processes never hold the lock at once."""

from __future__ import annotations

import contextvars
import json
import subprocess
import sys
import textwrap
import time

import pytest
from prefect import flow, task

from landmark_lora.locking import LockBusy, pipeline_lock
from landmark_lora.retrain import dvc as retrain_dvc
from landmark_lora.retrain.dvc import parse_dvc_failure
from landmark_lora.retrain.errors import StageFailed, is_transient_error

CONTRACT_OUTPUT = """\
Running stage 'validate':
> landmark-lora validate
validate: FAILED
dataset contract broken: 1 of 19 checks failed for data/raw (75 photos listed).
- 5 landmark(s) have fewer than 1000 photos
    gyeongbokgung (photos=15)
  fix: add photos to data/incoming/<landmark>/ and run `landmark-lora ingest`, or set validation.min_photos_per_landmark in params.yaml
ERROR: failed to reproduce 'validate': failed to run: landmark-lora validate, exited with 3
"""

MLFLOW_DOWN_OUTPUT = """\
Stage 'validate' didn't change, skipping
Running stage 'train':
> landmark-lora train
train:  25%|##5       | 1/4 [00:01<00:03,  1.00s/it]\r
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/urllib3/connection.py", line 198, in _new_conn
ConnectionRefusedError: [Errno 111] Connection refused
The above exception was the direct cause of the following exception:
requests.exceptions.ConnectionError: HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded with url: /api/2.0/mlflow/runs/create
mlflow.exceptions.MlflowException: API request to http://mlflow:5000/api/2.0/mlflow/runs/create failed with exception HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded
ERROR: failed to reproduce 'train': failed to run: landmark-lora train, exited with 1
"""

CRASH_OUTPUT = """\
Running stage 'preprocess':
> landmark-lora preprocess
Traceback (most recent call last):
  File "/repo/src/landmark_lora/stages/preprocess.py", line 12, in preprocess
ValueError: bucket 56x72 is smaller than data.bucket_multiple
ERROR: failed to reproduce 'preprocess': failed to run: landmark-lora preprocess, exited with 1
"""

LOCKED_OUTPUT = "ERROR: Unable to acquire lock. Most likely another DVC process is running or was terminated abruptly.\n"


# ---------------------------------------------------------------- what DVC says


def test_contract_failure_names_validate_and_is_hard():
    err = parse_dvc_failure(CONTRACT_OUTPUT, 255)
    assert err.stage == "validate" and not err.transient
    assert err.cause.startswith("dataset contract broken: 1 of 19 checks failed")
    assert "fewer than 1000 photos" in err.details and "exited with 3" in err.details


def test_unreachable_mlflow_in_train_is_transient_and_names_the_exception():
    err = parse_dvc_failure(MLFLOW_DOWN_OUTPUT, 255)
    assert err.stage == "train" and err.transient
    assert err.cause.startswith("mlflow.exceptions.MlflowException: API request")


def test_a_crash_names_its_exception_and_is_hard():
    err = parse_dvc_failure(CRASH_OUTPUT, 255)
    assert err.stage == "preprocess" and not err.transient
    assert err.cause == "ValueError: bucket 56x72 is smaller than data.bucket_multiple"


def test_a_library_log_line_is_never_the_cause():
    # seen in a real run: transformers' torchvision notice came before the stage's own error
    output = (
        "Running stage 'evaluate':\n> landmark-lora evaluate\n"
        "[transformers] `CLIPImageProcessor` requires torchvision (not installed); falling back\n"
        "landmark-lora: invalid parameters: eval.foo: unknown key\n"
        "ERROR: failed to reproduce 'evaluate': failed to run: landmark-lora evaluate, exited with 2\n"
    )
    err = parse_dvc_failure(output, 255)
    assert err.stage == "evaluate" and err.cause == "landmark-lora: invalid parameters: eval.foo: unknown key"


def test_dvcs_own_lock_is_transient():
    err = parse_dvc_failure(LOCKED_OUTPUT, 255)
    assert err.stage == "dvc" and err.transient and "Unable to acquire lock" in err.cause


def test_exception_chains_are_judged_by_their_cause():
    class MlflowException(Exception):
        pass

    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise MlflowException("API request failed") from inner
    except MlflowException as outer:
        assert is_transient_error(outer)
    assert not is_transient_error(ValueError("eval_loss is nan"))
    assert is_transient_error(TimeoutError())
    assert not is_transient_error(StageFailed("validate", "contract", transient=False))


# ---------------------------------------------------------------- retries in Prefect


def test_transient_failures_are_retried_until_success(retrain_module):
    calls = []

    @task(retries=3, retry_delay_seconds=0, retry_condition_fn=retrain_module.retry_if_transient)
    def flaky_s3_upload() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("S3: Connection reset by peer")
        return "uploaded"

    @flow
    def parent() -> str:
        return flaky_s3_upload()

    assert parent() == "uploaded"
    assert len(calls) == 3


def test_a_hard_failure_is_not_retried(retrain_module):
    calls = []

    @task(retries=3, retry_delay_seconds=0, retry_condition_fn=retrain_module.retry_if_transient)
    def broken_contract() -> None:
        calls.append(1)
        raise StageFailed("validate", "dataset contract broken", transient=False)

    @flow
    def parent() -> None:
        broken_contract()

    state = parent(return_state=True)
    assert state.is_failed() and len(calls) == 1


def test_the_dvc_repro_task_retries_an_unreachable_mlflow_then_succeeds(retrain_module, monkeypatch, tmp_path):
    outputs = [(255, MLFLOW_DOWN_OUTPUT), (0, "Running stage 'train':\nRunning stage 'evaluate':\n")]
    seen_env = []

    def fake_repro(workdir, env, on_line):
        seen_env.append(env.get("PREFECT__FLOW_RUN_ID"))
        rc, text = outputs.pop(0)
        return rc, text.splitlines()

    monkeypatch.setattr(retrain_dvc, "_repro_process", fake_repro)
    repro = retrain_module.dvc_repro.with_options(retry_delay_seconds=0)

    @flow
    def parent():
        from prefect.runtime import flow_run

        return repro(str(tmp_path), flow_run.get_id()), flow_run.get_id()

    result, flow_run_id = parent()
    assert result.stages_run == ["train", "evaluate"]
    assert seen_env == [flow_run_id, flow_run_id]  # the train stage tags its MLflow run with it
    assert (tmp_path / ".cache/retrain/dvc-repro.log").exists()


def test_the_dvc_repro_task_gives_up_at_once_on_a_broken_contract(retrain_module, monkeypatch, tmp_path):
    calls = []

    def fake_repro(workdir, env, on_line):
        calls.append(1)
        return 255, CONTRACT_OUTPUT.splitlines()

    monkeypatch.setattr(retrain_dvc, "_repro_process", fake_repro)
    repro = retrain_module.dvc_repro.with_options(retry_delay_seconds=0)

    @flow
    def parent():
        return repro(str(tmp_path), None)

    with pytest.raises(StageFailed) as err:
        parent()
    assert err.value.stage == "validate" and len(calls) == 1


def test_the_retry_policy_backs_off_exponentially(retrain_module):
    repro, promote = retrain_module.dvc_repro, retrain_module.promote_task
    assert repro.retries == 2 and repro.retry_delay_seconds == [30, 60]
    assert promote.retries == 3 and promote.retry_delay_seconds == [10, 20, 40]
    assert repro.retry_condition_fn is retrain_module.retry_if_transient


# ---------------------------------------------------------------- the lock


def test_lock_busy_names_the_holder(tmp_path):
    path = tmp_path / "retrain.lock"
    def another_caller() -> None:  # a fresh context: the lock is re-entrant only within one call chain
        with pipeline_lock(path, wait_s=0.3, poll_s=0.05):
            pass

    with pipeline_lock(path, owner="flow run abc"), pytest.raises(LockBusy) as busy:
        contextvars.Context().run(another_caller)
    assert "flow run abc" in str(busy.value) and busy.value.waited_s >= 0.3
    with pipeline_lock(path) as waited:  # released: free again at once
        assert waited < 0.5


def test_two_processes_never_hold_the_lock_at_once(tmp_path):
    script = textwrap.dedent("""
        import json, sys, time
        from pathlib import Path
        from landmark_lora.locking import pipeline_lock
        with pipeline_lock(Path(sys.argv[1]), wait_s=30, owner=sys.argv[2]) as waited:
            start = time.time(); time.sleep(1.0); end = time.time()
        print(json.dumps({"start": start, "end": end, "waited": waited}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "retrain.lock"), f"trigger-{i}"],
                              stdout=subprocess.PIPE, text=True) for i in range(2)]
    spans = sorted((json.loads(p.communicate(timeout=60)[0]) for p in procs), key=lambda s: s["start"])
    assert spans[0]["end"] <= spans[1]["start"], spans
    assert spans[1]["waited"] > 0.5  # the second trigger waited for the first


def test_stage_times_come_from_the_clock_marks_after_each_running_stage_line():
    from landmark_lora.retrain.dvc import _CLOCK, stage_seconds

    lines = ["Stage 'validate' didn't change, skipping", "Running stage 'preprocess':", f"{_CLOCK}100.0",
             "> landmark-lora preprocess", "Running stage 'train':", f"{_CLOCK}103.5", "> landmark-lora train",
             "Updating lock file 'dvc.lock'", f"{_CLOCK}160.25"]
    assert stage_seconds(lines) == {"preprocess": 3.5, "train": 56.75}
    assert stage_seconds(["Data and pipelines are up to date.", f"{_CLOCK}5.0"]) == {}
