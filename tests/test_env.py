"""landmark_lora/env.py: the one owner of the offline/analytics defaults.

    .venv/bin/python -m pytest tests/test_env.py -q
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from landmark_lora.env import OFFLINE_DEFAULTS, apply_offline_defaults, offline_defaults, venv_env


def _unset_defaults(monkeypatch) -> None:
    """Remove every default from os.environ; teardown restores the environment as it was."""
    for key in OFFLINE_DEFAULTS:
        monkeypatch.setenv(key, "placeholder")  # records the original, set or not, for teardown
        monkeypatch.delenv(key)


def test_defaults_fill_gaps_and_never_override_an_explicit_setting():
    env = {"HF_HUB_OFFLINE": "0", "UNRELATED": "x"}
    assert apply_offline_defaults(env) is env
    assert env["HF_HUB_OFFLINE"] == "0"  # the person who set it wins
    assert env["GX_ANALYTICS_ENABLED"] == "false" and env["DO_NOT_TRACK"] == "1"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"  # MLflow only honours DO_NOT_TRACK=true, not 1
    assert env["UNRELATED"] == "x"
    assert offline_defaults() == OFFLINE_DEFAULTS and offline_defaults() is not OFFLINE_DEFAULTS


def test_os_environ_is_the_default_target(monkeypatch):
    _unset_defaults(monkeypatch)
    apply_offline_defaults()
    assert all(os.environ[k] == v for k, v in OFFLINE_DEFAULTS.items())


def test_venv_env_puts_this_interpreter_first_and_leaves_os_environ_alone(monkeypatch):
    _unset_defaults(monkeypatch)
    env = venv_env()
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["GX_ANALYTICS_ENABLED"] == "false"
    assert "GX_ANALYTICS_ENABLED" not in os.environ


def test_cli_entry_applies_the_defaults(monkeypatch):
    from landmark_lora.cli import main

    _unset_defaults(monkeypatch)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert all(os.environ[k] == v for k, v in OFFLINE_DEFAULTS.items())
