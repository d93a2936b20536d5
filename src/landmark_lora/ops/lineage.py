"""The lineage bundle of a registered version: what it takes to rebuild it, kept with its MLflow run.

    from landmark_lora.ops.lineage import record_lineage, read_bundle
    bundle = record_lineage(params, run_id)     # dvc push, artifacts under lineage/, run tags
    bundle.reproducible, bundle.reason, bundle.tags()
    files = read_bundle(run_id, "/tmp/x")       # {"raw.dvc": Path, "dvc.lock": Path, ...} (reproduce)

Before promote registers a version (ops/promote.py), the raw photos and every pipeline output
go to the configured DVC remote (``dvc push``; the embedded default is the ``local`` remote at
``.dvc-storage/`` set in ``.dvc/config``), and the run stores under ``lineage/``: the exact
``data/raw.dvc``, ``dvc.lock`` and ``params.yaml``, ``git.json`` (sha, dirty flag, changed
files), ``requirements.txt`` (every installed distribution, as ``pip freeze`` would list it)
and ``lineage.json`` (base model fingerprint, Python, the push result, the verdict).

A version whose lineage is incomplete (no git, a dirty tree, a failed push, no dvc.lock) is
still registered, tagged ``reproducible=false`` with ``reproducible_reason``; promoting it takes
``landmark-lora promote --allow-unreproducible`` (``promotion.allow_unreproducible``).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

from landmark_lora.artifacts import Layout
from landmark_lora.config import Params
from landmark_lora.env import venv_env
from landmark_lora.logs import get_logger

log = get_logger(__name__)

BUNDLE_DIR = "lineage"
LOCK_FILE = "dvc.lock"
PARAMS_FILE = "params.yaml"
# Files a run changes on purpose and the bundle records itself: they never make the tree dirty.
_RECORDED = (LOCK_FILE, PARAMS_FILE)
# The tags a version carries from its run (the run gets them too).
LINEAGE_TAGS = ("reproducible", "reproducible_reason", "git_dirty", "lineage_git_sha", "base_fingerprint")


@dataclass
class Lineage:
    """What was recorded for one training run, and whether it is enough to rebuild it."""

    git_sha: str | None = None
    dirty_files: list[str] = field(default_factory=list)
    push_error: str | None = None
    missing: list[str] = field(default_factory=list)  # bundle files that did not exist
    base_fingerprint: str = ""
    raw_dvc: str = "data/raw.dvc"
    python: str = platform.python_version()

    @property
    def git_dirty(self) -> bool:
        return bool(self.dirty_files)

    def problems(self) -> list[str]:
        out = []
        if not self.git_sha:
            out.append("not a git checkout: no commit to rebuild the code from")
        elif self.dirty_files:
            shown = ", ".join(self.dirty_files[:5]) + (" ..." if len(self.dirty_files) > 5 else "")
            out.append(f"the git tree was dirty ({len(self.dirty_files)} changed file(s): {shown}); commit first")
        if self.push_error:
            out.append(f"dvc push failed: {self.push_error}")
        out += [f"{m} was missing" for m in self.missing]
        return out

    @property
    def reproducible(self) -> bool:
        return not self.problems()

    @property
    def reason(self) -> str:
        return "; ".join(self.problems()) or "complete: git sha clean, data pushed, dvc.lock and params recorded"

    def tags(self) -> dict[str, str]:
        return {"reproducible": str(self.reproducible).lower(), "reproducible_reason": self.reason[:5000],
                "git_dirty": str(self.git_dirty).lower() if self.git_sha else "unknown",
                "lineage_git_sha": self.git_sha or "unknown",
                "base_fingerprint": self.base_fingerprint}

    def to_json(self) -> dict:
        return {**asdict(self), "git_dirty": self.git_dirty, "reproducible": self.reproducible, "reason": self.reason}


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(root: Path = Path(".")) -> tuple[str | None, list[str]]:
    """(HEAD sha or None outside git, files that differ from it). Changed files that the bundle
    records itself (dvc.lock, params.yaml, *.dvc, a .gitignore DVC wrote) do not count."""
    sha = (_git(["rev-parse", "HEAD"], root) or "").strip() or None
    if sha is None:
        return None, []
    status = _git(["status", "--porcelain", "--untracked-files=all"], root) or ""
    outputs = _pipeline_outputs(root / LOCK_FILE)
    dirty = []
    for line in status.splitlines():
        path = line[3:].split(" -> ")[-1].strip().strip('"')
        if path in _RECORDED or path.endswith(".dvc") or (path.endswith(".gitignore") and path != ".gitignore"):
            continue
        if any(path == out or path.startswith(out.rstrip("/") + "/") for out in outputs):
            continue  # a stage's output (metrics, plots): its hash is in dvc.lock, which the bundle keeps
        dirty.append(path)
    return sha, dirty


def _pipeline_outputs(lock: Path) -> list[str]:
    """Every output path dvc.lock records (reports/train.json, reports/plots, data/processed, ...)."""
    import yaml

    try:
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        return []
    return [str(out["path"]) for stage in stages.values() for out in (stage.get("outs") or []) if "path" in out]


def dvc_push(root: Path = Path("."), raw_dvc: Path = Path("data/raw.dvc"), remote: str | None = None) -> str | None:
    """`dvc push` of the raw photos (``raw_dvc``) and every output of dvc.yaml, to the default
    remote (or ``remote``): None when it worked, else why not. The targets are named: a bare
    `dvc push` skips a .dvc file inside a git-ignored folder (data/raw.dvc, as .gitignore has it)."""
    if not (root / ".dvc").is_dir():
        return "not a DVC repository (no .dvc/)"
    targets = [str(t) for t in (raw_dvc, Path("dvc.yaml")) if (root / t).is_file()]
    cmd = [sys.executable, "-m", "dvc", "push", "--quiet", *(["-r", remote] if remote else []), *targets]
    try:
        out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=3600, env=venv_env(), check=False)
    except (OSError, subprocess.SubprocessError) as err:
        return f"{type(err).__name__}: {err}"
    if out.returncode != 0:
        lines = [ln for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
        return (lines[-1] if lines else f"exit {out.returncode}")[:500]
    return None


def installed_packages() -> str:
    """Every installed distribution, one ``name==version`` a line, sorted (what pip freeze lists)."""
    found = {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]}
    return "\n".join(sorted(found, key=str.lower)) + "\n"


def collect(params: Params, root: Path = Path("."), push: bool = True) -> tuple[Lineage, dict[str, str]]:
    """The lineage of the workspace at ``root`` and the bundle's files (name -> text)."""
    from landmark_lora.diffusion.components import base_fingerprint, resolve_base

    sha, dirty = git_state(root)
    raw_dvc = Layout.of(params).raw_dvc
    lineage = Lineage(git_sha=sha, dirty_files=dirty, raw_dvc=raw_dvc.as_posix(),
                      base_fingerprint=base_fingerprint(resolve_base(params.model)))
    files: dict[str, str] = {}
    for name, path in (("raw.dvc", raw_dvc), (LOCK_FILE, Path(LOCK_FILE))):
        if (root / path).is_file():
            files[name] = (root / path).read_text(encoding="utf-8")
        else:
            lineage.missing.append(path.as_posix())
    # the file the stages read; without one (params given in code), the params in effect
    params_file = root / PARAMS_FILE
    files[PARAMS_FILE] = (params_file.read_text(encoding="utf-8") if params_file.is_file()
                          else yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    if push:
        lineage.push_error = dvc_push(root, raw_dvc)
    files["git.json"] = json.dumps({"sha": sha, "dirty": bool(dirty), "dirty_files": dirty}, indent=2)
    files["requirements.txt"] = installed_packages()
    files["lineage.json"] = json.dumps({**lineage.to_json(), "platform": platform.platform()}, indent=2)
    return lineage, files


def record_lineage(params: Params, run_id: str, root: Path = Path("."), client=None) -> Lineage:
    """Push the data, store the bundle under ``lineage/`` in run ``run_id`` and tag the run."""
    import mlflow

    client = client or mlflow.MlflowClient()
    lineage, files = collect(params, root)
    for name, text in files.items():
        client.log_text(run_id, text, f"{BUNDLE_DIR}/{name}")
    for key, value in lineage.tags().items():
        client.set_tag(run_id, key, value)
    if not lineage.reproducible:
        log.warning("lineage: run %s is not reproducible: %s", run_id, lineage.reason)
    return lineage


def read_bundle(run_id: str, dst: Path) -> dict[str, Path]:
    """Download run ``run_id``'s lineage bundle into ``dst``: {file name: local path}."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=BUNDLE_DIR, dst_path=str(dst)))
    return {p.name: p for p in local.iterdir() if p.is_file()}


def unreproducible_refusal(tags: dict[str, str], allowed: bool) -> str | None:
    """Why a version may not become champion for want of lineage, or None."""
    if tags.get("reproducible") != "false" or allowed:
        return None
    return (f"not reproducible ({tags.get('reproducible_reason', 'no reason recorded')}): not promoted; fix the "
            "lineage and retrain, or promote it anyway with `landmark-lora promote --allow-unreproducible` "
            "(promotion.allow_unreproducible: true)")
