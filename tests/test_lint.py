"""`ruff` (rule set in pyproject.toml) and `mypy` (the bottom layer and the domain modules listed in
pyproject.toml) pass, so a new violation fails `make test`. `make lint` runs the same two commands."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: `make test` installs it with the dev extra")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)


def test_ruff_finds_nothing():
    done = _run("ruff", "check", "--no-cache", "src", "tests", "tools", "flows")
    assert done.returncode == 0, f"ruff check failed (fix, or `ruff check --fix`):\n{done.stdout}{done.stderr}"


def test_mypy_finds_nothing():
    done = _run("mypy", "--cache-dir", str(REPO / ".cache" / "mypy"))
    assert done.returncode == 0, f"mypy failed:\n{done.stdout}{done.stderr}"
