"""`make infra-smoke` inside `make test`: the server deployment path for real (mlflow server on
PostgreSQL, S3 artifacts through moto, basic auth, the pipeline's tracking, registration and
promotion over HTTP). Runs whenever PostgreSQL answers on 127.0.0.1:5432 (`.ci/run` starts it).

    .venv/bin/python -m pytest tests/infra/test_infra_smoke.py -q
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.ports import free_port
from tools import infra_smoke

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _postgres_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


def _smoke(env: dict[str, str]) -> subprocess.CompletedProcess:
    # `python -m tools.infra_smoke` from the repository root, as `make infra-smoke` runs it.
    return subprocess.run([sys.executable, "-m", "tools.infra_smoke"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.mark.skipif(not _postgres_up(), reason=f"PostgreSQL is not on 127.0.0.1:5432 (start it: "
                                               f"{infra_smoke.PG_START_HINT})")
def test_pipeline_tracks_registers_and_promotes_through_the_mlflow_server():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = _smoke(env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for needle in ("anonymous request is refused", "wrong password is refused", "holds alias champion",
                   "adapter stored in s3://", "run row present in PostgreSQL",
                   "planted token appears nowhere in the stored run", "stopped mlflow", "dropped database"):
        assert needle in out, f"infra smoke did not check: {needle!r}\n{out[-4000:]}"


def test_unreachable_postgres_exits_2_and_says_how_to_start_it():
    port = free_port()  # nothing listens on it
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["LANDMARK_SMOKE_PG_ADMIN"] = f"postgresql://postgres@127.0.0.1:{port}/test"
    proc = _smoke(env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot connect to PostgreSQL" in proc.stdout and "pg_ctlcluster" in proc.stdout
