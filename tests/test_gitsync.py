"""The flow option commit_lineage (retrain/gitsync.py): commits dvc.lock, data/raw.dvc and DVC's
.gitignore, and nothing else; a second call with nothing new commits nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

from landmark_lora.retrain.gitsync import commit_lineage


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def test_commit_lineage_commits_only_the_lineage_files(tmp_path):
    root = tmp_path
    _git(root, "init", "-q")
    (root / "code.py").write_text("x = 1\n")
    _git(root, "add", "code.py")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    (root / "data").mkdir()
    (root / "data/raw.dvc").write_text("outs:\n- md5: abc.dir\n  path: raw\n")
    (root / "data/.gitignore").write_text("/raw\n")
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    (root / "code.py").write_text("x = 2\n")  # a code change of someone else's: never committed here
    said: list[str] = []
    sha = commit_lineage(root, Path("data/raw"), "retrain: lineage of version 1", log=said.append)
    assert sha and _git(root, "rev-parse", "HEAD").strip() == sha
    committed = set(_git(root, "show", "--name-only", "--format=", "HEAD").split())
    assert committed == {"dvc.lock", "data/raw.dvc", "data/.gitignore"}
    assert "retrain: lineage of version 1" in _git(root, "log", "-1", "--format=%s")
    assert " M code.py" in _git(root, "status", "--porcelain")
    assert commit_lineage(root, Path("data/raw"), "again", log=said.append) is None
    assert "already committed" in said[-1]


def test_commit_lineage_outside_git_commits_nothing(tmp_path):
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    said: list[str] = []
    assert commit_lineage(tmp_path, Path("data/raw"), "x", log=said.append) is None
    assert "nothing committed" in said[0]
