"""Fixtures for the flow tests: a Prefect test server, the flow module, and a real
`mlflow server` on loopback.

    def test_x(retrain_module, tmp_path):
        ws = build_workspace(tmp_path / "ws")        # tests/helpers/workspace.py: a fast, two-landmark clone
        retrain_module.retrain(workdir=str(ws))

One Prefect server (prefect_test_harness) serves the whole session: starting it costs ~10 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from landmark_lora.env import apply_offline_defaults
from tests.helpers.ports import free_port
from tests.helpers.workspace import REPO

apply_offline_defaults()


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """A temporary Prefect API (SQLite) for every test in tests/flows/."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def retrain_module():
    """flows/retrain.py as a module: the flow `retrain` and its tasks."""
    from prefect.utilities.importtools import load_script_as_module

    return load_script_as_module(str(REPO / "flows" / "retrain.py"))


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on loopback (SQLite store, proxied artifacts), started and stopped here.
    Yields its URL; MLFLOW_TRACKING_URI is the caller's to set."""
    tmp = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp}/m.db",
           "--artifacts-destination", str(tmp / "art"), "--serve-artifacts", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    log = (tmp / "server.log").open("w")
    # No job runner: MLflow 3 otherwise starts ~8 huey consumer processes beside the server (GenAI
    # scorer jobs), each importing mlflow and polling, CPU the flow tests' pipeline runs need.
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
            pytest.fail(f"mlflow server did not start: {(tmp / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
