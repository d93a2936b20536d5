"""DVC experiments with a baseline: `dvc exp run` starts from the last git commit.

    landmark-lora exp -S train.learning_rate=3e-4 -S train.max_steps=60   # checks, then `dvc exp run ...`
    landmark-lora exp --queue -S train.learning_rate=1e-3 && dvc queue start
    landmark-lora exp --check                                              # only the check

A queued (or ``--temp``) experiment runs in a clean copy of that commit: a ``.dvc`` file that is
not committed (data/raw.dvc after an ingest) is simply not there, and DVC fails with a bare "No
such file or directory: .../.dvc/tmp/exps/.../data/raw". An uncommitted dvc.lock leaves the
experiment without the baseline's results to compare with (and it reruns every stage). So the
check refuses both and says what to commit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from landmark_lora.env import venv_env


class ExperimentBaselineError(RuntimeError):
    """The git baseline lacks what an experiment needs; the message says what to commit."""


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=60)


def uncommitted_pipeline_files(root: Path) -> list[str]:
    """``.dvc`` files and dvc.lock that differ from HEAD (untracked, modified, staged only)."""
    out = _git(root, "status", "--porcelain", "--untracked-files=all", "--", "*.dvc", "dvc.lock")
    return sorted({line[3:].strip().strip('"') for line in out.stdout.splitlines() if len(line) > 3})


def check_baseline(root: Path = Path(".")) -> None:
    """Raise ExperimentBaselineError unless ``root`` is a git repo with a commit holding every
    ``.dvc`` file and dvc.lock as they are in the workspace."""
    root = Path(root)
    if _git(root, "rev-parse", "--is-inside-work-tree").returncode != 0:
        raise ExperimentBaselineError(f"{root.resolve()} is not a git repository: DVC experiments need one "
                                      "(git init && git add -A && git commit -m baseline)")
    if _git(root, "rev-parse", "--verify", "-q", "HEAD").returncode != 0:
        raise ExperimentBaselineError("no git commit yet: experiments start from the last commit; "
                                      "commit the project first (git add -A && git commit -m baseline)")
    files = uncommitted_pipeline_files(root)
    if files:
        listed = " ".join(files)
        raise ExperimentBaselineError(
            f"not committed: {listed}. A DVC experiment starts from the last commit, and a queued one runs in "
            f"a clean copy of it, where these are missing or stale. Commit them first: "
            f"git add {listed} && git commit -m 'data and pipeline state for experiments'")


def run_experiment(dvc_args: list[str], root: Path = Path(".")) -> int:
    """check_baseline, then `dvc exp run <dvc_args>` with this install first on PATH; its exit code."""
    check_baseline(root)
    return subprocess.run([sys.executable, "-m", "dvc", "exp", "run", *dvc_args], cwd=root, env=venv_env(),
                          check=False).returncode
