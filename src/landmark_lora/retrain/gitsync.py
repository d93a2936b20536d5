"""Commit the lineage files back to git after a run: the flow option ``commit_lineage`` (off by default).

    from landmark_lora.retrain.gitsync import commit_lineage
    sha = commit_lineage(Path("."), Path("data/raw"), "retrain: version 3")   # None: nothing new, or no git

Every registered version already carries its lineage in MLflow (ops/lineage.py) and its data in
the DVC remote, so this is for teams that also want git history to say which photos and which
pipeline state each night produced: ``dvc.lock``, ``data/raw.dvc`` and the ``.gitignore`` DVC
keeps beside it, and nothing else (other changes, staged or not, are left alone).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from landmark_lora.retrain.errors import Log, say

# Who commits when git has no identity configured (a worker's service account often has none).
_IDENTITY = ("-c", "user.name=landmark-lora", "-c", "user.email=landmark-lora@localhost")


def lineage_paths(root: Path, raw: Path) -> list[str]:
    """The lineage files of the workspace at ``root`` that exist: dvc.lock, <raw>.dvc, its .gitignore."""
    raw = Path(raw)
    candidates = ["dvc.lock", f"{raw.as_posix()}.dvc", (raw.parent / ".gitignore").as_posix()]
    return [p for p in candidates if (Path(root) / p).is_file()]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=120, check=False)


def commit_lineage(root: Path, raw: Path, message: str, log: Log = say) -> str | None:
    """git add + commit the lineage files only. Returns the new commit's sha, or None when they did
    not change or git refused (said in the log; never fails the run: the lineage is in MLflow)."""
    paths = lineage_paths(root, raw)
    if not paths or _git(root, "rev-parse", "HEAD").returncode != 0:
        log("commit_lineage: not a git checkout with a commit, or no lineage files; nothing committed")
        return None
    _git(root, "add", "--", *paths)
    if _git(root, "diff", "--cached", "--quiet", "--", *paths).returncode == 0:
        log("commit_lineage: dvc.lock and the .dvc files are already committed as they are")
        return None
    identity = () if _git(root, "config", "user.email").stdout.strip() else _IDENTITY
    out = _git(root, *identity, "commit", "--no-verify", "-q", "-m", message, "--", *paths)
    if out.returncode != 0:
        log(f"commit_lineage: git commit failed: {(out.stderr or out.stdout).strip()[-300:]}")
        return None
    sha = _git(root, "rev-parse", "HEAD").stdout.strip()
    log(f"commit_lineage: committed {', '.join(paths)} as {sha[:12]}")
    return sha
