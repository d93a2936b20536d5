"""`landmark-lora run` on a machine too busy for Prefect's 20 s start-up default: the real
command, a real ephemeral Prefect server, a fresh PREFECT_HOME, and a server start slowed down on
purpose (a sitecustomize that sleeps in the server's process only, before it imports anything).

    .venv/bin/python -m pytest tests/test_prefect_startup.py -q
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from landmark_lora.env import apply_offline_defaults
from landmark_lora.exitcodes import EXIT_TEMPFAIL
from landmark_lora.retrain.prefect_api import DEFAULT_STARTUP_TIMEOUT_S, TIMEOUT_SETTING

CLI = Path(sys.executable).parent / "landmark-lora"

# Runs at start-up of every Python process on PYTHONPATH; only the ephemeral server has
# PREFECT__SERVER_EPHEMERAL=1 (Prefect sets it for the uvicorn subprocess).
SLOW_START = """
import os, time
if os.environ.get("PREFECT__SERVER_EPHEMERAL") == "1":
    marker = os.environ["SLOW_SERVER_MARKER"]
    if os.environ.get("SLOW_SERVER_EVERY_TIME") == "1" or not os.path.exists(marker):
        open(marker, "a").close()
        time.sleep(float(os.environ["SLOW_SERVER_S"]))
"""


@pytest.fixture(scope="module")
def slow_home(tmp_path_factory):
    """A fresh PREFECT_HOME and the directory holding the slowing sitecustomize."""
    root = tmp_path_factory.mktemp("prefect-startup")
    (root / "slow").mkdir()
    (root / "slow" / "sitecustomize.py").write_text(SLOW_START)
    return root


def _run(root: Path, ws: Path, slow_s: float, every_time: bool = False, timeout_setting: str | None = None):
    ws.mkdir()
    (ws / "params.yaml").write_text("{}\n")  # an empty workspace: the flow starts, finds nothing, skips
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    env.update(PREFECT_HOME=str(root / "home"), PYTHONPATH=str(root / "slow"), SLOW_SERVER_S=str(slow_s),
               SLOW_SERVER_MARKER=str(root / "slowed-once"), SLOW_SERVER_EVERY_TIME="1" if every_time else "0")
    apply_offline_defaults(env)  # PREFECT_* was dropped above: the analytics switch goes back
    if timeout_setting is not None:
        env[TIMEOUT_SETTING] = timeout_setting
    return subprocess.run([str(CLI), "run", "--no-sample"], cwd=ws, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def test_a_server_slower_than_prefects_default_still_runs_the_flow(slow_home):
    """Fresh database and a first server start that takes 25 s (> Prefect's 20 s default)."""
    out = _run(slow_home, slow_home / "ws1", slow_s=25)
    text = out.stdout + out.stderr
    assert (slow_home / "slowed-once").exists()  # the slow start did happen
    assert out.returncode == 0, text[-4000:]
    assert "Timed out while attempting to connect" not in text
    assert "run: skipped: 0 new photo(s)" in out.stdout
    assert (slow_home / "home").is_dir() and list((slow_home / "home").glob("*.db"))  # migrated there


def test_a_server_that_never_starts_in_time_gets_a_retry_then_says_what_to_do(slow_home):
    """The user's own (tiny) timeout is kept; two attempts; then a message, not a traceback."""
    out = _run(slow_home, slow_home / "ws2", slow_s=120, every_time=True, timeout_setting="3")
    text = out.stdout + out.stderr
    assert out.returncode == EXIT_TEMPFAIL, text[-4000:]
    assert "trying once more with 6 s" in out.stdout
    assert "attempt 1" in out.stderr and "attempt 2" in out.stderr
    assert f"export {TIMEOUT_SETTING}=600" in out.stderr
    assert "prefect server start" in out.stderr and "export PREFECT_API_URL=http://127.0.0.1:4200/api" in out.stderr
    assert "Traceback" not in text
    assert not (slow_home / "ws2" / "reports" / "retrain.md").exists()  # the flow never started


def test_the_users_timeout_wins_over_the_default(tmp_path):
    code = "from landmark_lora.retrain.prefect_api import startup_timeout; print(startup_timeout())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path)  # no profile
    unset = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert unset.stdout.strip() == f"({DEFAULT_STARTUP_TIMEOUT_S}, False)"
    mine = subprocess.run([sys.executable, "-c", code], env={**env, TIMEOUT_SETTING: "7"}, capture_output=True,
                          text=True, check=True)
    assert mine.stdout.strip() == "(7, True)"


def test_the_database_is_migrated_once_per_prefect_version_and_file(tmp_path):
    """A stamp beside the SQLite file: the second call neither migrates nor imports the migration code;
    a new database file (another inode) is migrated again."""
    code = ("import sys; from landmark_lora.retrain.prefect_api import migrate_once\n"
            "print(migrate_once(), 'prefect.server.database' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path)
    apply_offline_defaults(env)

    def once() -> str:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                              timeout=300).stdout.strip().splitlines()[-1]

    assert once() == "True True"
    assert list(tmp_path.glob("*.db.landmark-lora-migrated"))
    assert once() == "False False"
    for db in tmp_path.glob("*.db*"):
        if not db.name.endswith("migrated"):
            db.unlink()
    assert once() == "True True"


def test_the_server_is_told_not_to_migrate_again_unless_the_user_chose(monkeypatch):
    from landmark_lora.retrain import prefect_api

    monkeypatch.delenv(prefect_api.MIGRATE_SETTING, raising=False)
    monkeypatch.delenv("PREFECT_API_DATABASE_MIGRATE_ON_START", raising=False)
    with prefect_api._server_migrates_not():
        assert os.environ[prefect_api.MIGRATE_SETTING] == "false"
    assert prefect_api.MIGRATE_SETTING not in os.environ
    monkeypatch.setenv("PREFECT_API_DATABASE_MIGRATE_ON_START", "true")  # the user's, under its old name
    with prefect_api._server_migrates_not():
        assert prefect_api.MIGRATE_SETTING not in os.environ


def test_meanwhile_runs_while_the_server_boots_and_its_own_error_is_not_retried(monkeypatch):
    import threading
    import time

    import prefect.server.api.server as server_module
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE, temporary_settings

    from landmark_lora.retrain import prefect_api

    booting = threading.Event()
    starts: list[float] = []

    class FakeServer:
        running, api_url = False, "http://127.0.0.1:1/api"

        def start(self, timeout=None):
            starts.append(timeout)
            booting.set()
            time.sleep(0.5)

        def stop(self):
            pass

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(server_module, "SubprocessASGIServer", FakeServer)
    monkeypatch.setattr(prefect_api, "migrate_once", lambda: False)
    # A session-wide Prefect test server (tests/flows) sets PREFECT_API_URL in the settings of this
    # worker process, not in its environment: clear it, or ensure_prefect_api rightly starts nothing.
    with temporary_settings(restore_defaults={PREFECT_API_URL}, updates={PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: True}):
        seen = []
        assert prefect_api.ensure_prefect_api(meanwhile=lambda: seen.append(booting.wait(5))) == FakeServer.api_url
        assert seen == [True] and len(starts) == 1  # it ran while start() was under way

        def broken():
            raise ImportError("the flow module is broken")

        starts.clear()
        with pytest.raises(ImportError, match="flow module is broken"):
            prefect_api.ensure_prefect_api(meanwhile=broken)
        assert len(starts) == 1  # no second attempt: the server was fine
