"""Replay a registered version from its lineage bundle and check it gives the recorded metrics.

    landmark-lora reproduce 1            # a version number, or champion / challenger
    landmark-lora reproduce champion --keep   # keep the temporary worktree to look around

    from landmark_lora.ops.reproduce import reproduce, format_report
    result = reproduce(params, "champion")
    print(format_report(result)); result.ok, result.first_difference

What it does, never touching the working tree or the registry:
1. reads the version's run: the lineage bundle (ops/lineage.py: raw.dvc, dvc.lock, params.yaml,
   git.json, requirements.txt) and the evaluation it was registered with (``eval/eval.json``);
2. checks the recorded git sha out into a temporary ``git worktree``;
3. writes the recorded data/raw.dvc, dvc.lock and params.yaml there (the ``mlflow`` section
   pointed at a throwaway store inside the worktree), and restores the photos by their hashes
   from the project's DVC remote (``dvc pull``, into the worktree's own cache);
4. runs ``dvc repro --force`` there with the worktree's code (PYTHONPATH) and compares.

The first difference decides the exit status, checked in this order: code (the sha is there and
was clean), data (the photos came back by hash and the pipeline read them), params (every stage
read the recorded params), package versions (as recorded), metrics (within 1e-5).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from landmark_lora import registry
from landmark_lora.artifacts import MLFLOW_EVAL_JSON, EvalReport, Layout
from landmark_lora.config import Params, load_params
from landmark_lora.env import venv_env
from landmark_lora.logs import get_logger
from landmark_lora.ops.lineage import LOCK_FILE, PARAMS_FILE, installed_packages, read_bundle

log = get_logger(__name__)

TOLERANCE = 1e-5
ORDER = ("code", "data", "params", "packages", "metric")
COMPARED = (*registry.METRIC_KEYS, "data_version", "eval_fingerprint")


class ReproduceError(RuntimeError):
    """The version cannot be replayed at all (no such version, no bundle, no repository)."""


@dataclass
class Check:
    kind: str  # one of ORDER
    name: str
    recorded: str
    reproduced: str
    ok: bool


@dataclass
class Reproduction:
    version: str
    run_id: str
    git_sha: str
    checks: list[Check] = field(default_factory=list)
    worktree: Path | None = None

    @property
    def first_difference(self) -> Check | None:
        bad = [c for c in self.checks if not c.ok]
        return min(bad, key=lambda c: ORDER.index(c.kind)) if bad else None

    @property
    def ok(self) -> bool:
        return self.first_difference is None


def resolve_version(client, name: str, ref: str):
    """A version number, or an alias (champion, challenger)."""
    try:
        return client.get_model_version(name, ref) if ref.isdigit() else client.get_model_version_by_alias(name, ref)
    except Exception as err:
        raise ReproduceError(f"'{name}' has no version {ref!r} ({type(err).__name__}); see `mlflow ui` for the "
                             "registered versions") from err


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[int, str]:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return out.returncode, (out.stdout + out.stderr).strip()


def _dvc_local_config(project: Path) -> str:
    """``.dvc/config.local`` for the worktree: the project's remotes (local paths made absolute,
    so ``.dvc-storage`` means the project's) and its default remote."""
    from dvc.config import Config

    conf = Config(dvc_dir=str(project / ".dvc"))
    lines = []
    if conf["core"].get("remote"):
        lines += ["[core]", f"    remote = {conf['core']['remote']}"]
    for name, opts in conf["remote"].items():
        lines.append(f"['remote \"{name}\"']")
        lines += [f"    {k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in opts.items()]
    return "\n".join(lines) + "\n"


def _lock_params(lock_text: str) -> dict:
    stages = (yaml.safe_load(lock_text) or {}).get("stages") or {}
    return {name: stage.get("params") for name, stage in stages.items()}


def _lock_raw_md5(lock_text: str, raw: str) -> set[str]:
    stages = (yaml.safe_load(lock_text) or {}).get("stages") or {}
    return {d.get("md5", "") for s in stages.values() for d in s.get("deps") or [] if d.get("path") == raw}


def _package_check(recorded: str) -> Check:
    was = dict(line.split("==", 1) for line in recorded.splitlines() if "==" in line)
    now = dict(line.split("==", 1) for line in installed_packages().splitlines() if "==" in line)
    diff = [f"{k} {was.get(k, '-')} -> {now.get(k, '-')}" for k in sorted(set(was) | set(now), key=str.lower)
            if was.get(k) != now.get(k)]
    shown = "; ".join(diff[:3]) + (f" (+{len(diff) - 3} more)" if len(diff) > 3 else "")
    return Check("packages", "installed distributions", f"{len(was)} recorded",
                 shown or f"{len(now)} as recorded", not diff)


def _number(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def metric_checks(recorded: dict, reproduced: dict, tolerance: float = TOLERANCE) -> list[Check]:
    """One check per compared key: numbers within ``tolerance`` (NaN = NaN, null = null), strings equal."""
    checks = []
    for key in COMPARED:
        a, b = recorded.get(key), reproduced.get(key)
        if a is None and b is None:
            continue
        x, y = _number(a), _number(b)
        if x is not None and y is not None:
            ok = (math.isnan(x) and math.isnan(y)) or abs(x - y) <= tolerance
            checks.append(Check("metric", key, f"{x:.6f}", f"{y:.6f}", ok))
        else:
            checks.append(Check("metric" if key in registry.METRIC_KEYS else "params" if key == "eval_fingerprint"
                                else "data", key, str(a), str(b), a == b))
    return checks


def _recorded_evaluation(run_id: str, tmp: Path, version) -> dict:
    """The evaluation the version was registered with (the run's eval/eval.json), else its tags."""
    import mlflow

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=MLFLOW_EVAL_JSON,
                                                   dst_path=str(tmp))
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except Exception:
        return {k: float(v) if k in registry.METRIC_KEYS else v for k, v in (version.tags or {}).items()}


def _share_tiny_base(project: Path, wt: Path, model: dict) -> None:
    """The tiny test base is built locally (git-ignored): the worktree gets the project's copy.
    Its bytes are in the eval fingerprint, so a base that changed since still shows as a difference."""
    from landmark_lora.diffusion.base import TINY_DIR_NAME

    if model.get("base", "tiny") != "tiny":
        return
    models = Path(model.get("dir") or "models")
    src = models / TINY_DIR_NAME if models.is_absolute() else project / models / TINY_DIR_NAME
    dest = wt / models / TINY_DIR_NAME if not models.is_absolute() else None
    if dest is not None and src.is_dir() and not dest.exists():
        shutil.copytree(src, dest)


def _prepare(result: Reproduction, project: Path, tmp: Path, bundle: dict[str, Path]) -> tuple[Path, dict] | None:
    """The worktree at the recorded sha with the recorded files and data; None when code or data fail."""
    info = json.loads(bundle["lineage.json"].read_text()) if "lineage.json" in bundle else {}
    wt = tmp / "worktree"
    code, out = _run(["git", "worktree", "add", "--detach", str(wt), result.git_sha], project)
    if code != 0:
        result.checks.append(Check("code", "git sha", result.git_sha, f"not checked out: {out[-300:]}", False))
        return None
    dirty = info.get("dirty_files") or []
    result.checks.append(Check("code", "git sha", result.git_sha + (" (dirty)" if dirty else ""),
                               result.git_sha, not dirty))
    result.worktree = wt
    raw_dvc = info.get("raw_dvc", "data/raw.dvc")
    for name, dest in (("raw.dvc", raw_dvc), (LOCK_FILE, LOCK_FILE), (PARAMS_FILE, PARAMS_FILE)):
        if name in bundle:
            (wt / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundle[name], wt / dest)
    raw = yaml.safe_load((wt / PARAMS_FILE).read_text()) or {}
    _share_tiny_base(project, wt, raw.get("model") or {})
    raw["mlflow"] = {**(raw.get("mlflow") or {}), "tracking_uri": f"sqlite:///{wt / 'mlruns/mlflow.db'}",
                     "artifact_location": str(wt / "mlruns/artifacts")}  # a throwaway store, never the registry
    (wt / PARAMS_FILE).write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    (wt / ".dvc/config.local").write_text(_dvc_local_config(project), encoding="utf-8")
    env = {**venv_env(), "PYTHONPATH": str(wt / "src"), "MLFLOW_TRACKING_URI": f"sqlite:///{wt / 'mlruns/mlflow.db'}"}
    env.pop("PREFECT__FLOW_RUN_ID", None)
    code, out = _run([sys.executable, "-m", "dvc", "pull", raw_dvc], wt, env)
    if code != 0:
        lines = [ln for ln in out.splitlines() if ln.strip()]
        log.warning("reproduce: dvc pull %s in %s failed:\n%s", raw_dvc, wt, out[-3000:])
        result.checks.append(Check("data", "photos from the DVC remote", raw_dvc,
                                   f"dvc pull failed: {lines[-1] if lines else f'exit {code}'}", False))
        return None
    return wt, env


def reproduce(params: Params, ref: str, keep: bool = False, say=log.info) -> Reproduction:
    """Replay version ``ref`` (number, champion, challenger) in a temporary worktree; compare."""
    client = registry.client(params)
    version = resolve_version(client, params.promotion.registered_model, ref)
    code, top = _run(["git", "rev-parse", "--show-toplevel"], Path("."))
    project = Path(top)
    if code != 0 or not (project / ".git").exists():
        raise ReproduceError("not inside a git checkout: reproduce checks the recorded sha out of this repository")
    tmp = Path(tempfile.mkdtemp(prefix="landmark-lora-reproduce-"))
    try:
        bundle = read_bundle(version.run_id, tmp / "bundle")
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ReproduceError(f"version {version.version} has no lineage bundle in run {version.run_id} ({err}); "
                             "it was registered before lineage was recorded") from err
    sha = json.loads(bundle["git.json"].read_text()).get("sha") if "git.json" in bundle else None
    result = Reproduction(str(version.version), version.run_id, sha or "unknown")
    recorded = _recorded_evaluation(version.run_id, tmp / "eval", version)
    try:
        if not sha:
            result.checks.append(Check("code", "git sha", "none recorded", "-", False))
            return result
        say(f"reproduce: version {version.version}: checking out {sha[:12]} into {tmp / 'worktree'}")
        prepared = _prepare(result, project, tmp, bundle)
        if prepared is not None:
            _replay(result, *prepared, bundle, recorded, say)
        return result
    finally:
        if not keep:
            if result.worktree is not None:
                _run(["git", "worktree", "remove", "--force", str(result.worktree)], project)
            shutil.rmtree(tmp, ignore_errors=True)
            _run(["git", "worktree", "prune"], project)


def _replay(result: Reproduction, wt: Path, env: dict, bundle: dict[str, Path], recorded: dict, say) -> None:
    """dvc repro --force in the worktree, then the data, params, packages and metric checks."""
    say("reproduce: running `dvc repro --force` in the worktree (every stage, from the raw photos)")
    code, out = _run([sys.executable, "-m", "dvc", "repro", "--force", "--no-commit"], wt, env)
    (wt / "reproduce.log").write_text(out, encoding="utf-8")
    if code != 0:
        tail = [ln for ln in out.splitlines() if ln.strip()][-3:]
        result.checks.append(Check("code", "dvc repro", "exit 0", f"exit {code}: {' | '.join(tail)}", False))
        return
    lock_now = (wt / LOCK_FILE).read_text(encoding="utf-8")
    lock_was = bundle[LOCK_FILE].read_text(encoding="utf-8") if LOCK_FILE in bundle else ""
    raw = json.loads(bundle["lineage.json"].read_text()).get("raw_dvc", "data/raw.dvc") if "lineage.json" in bundle \
        else "data/raw.dvc"
    raw_path = raw.removesuffix(".dvc")
    was_md5, now_md5 = _lock_raw_md5(lock_was, raw_path), _lock_raw_md5(lock_now, raw_path)
    result.checks.append(Check("data", f"{raw_path} md5", ",".join(sorted(was_md5)) or "-",
                               ",".join(sorted(now_md5)) or "-", was_md5 == now_md5))
    params_was, params_now = _lock_params(lock_was), _lock_params(lock_now)
    changed = sorted(s for s in set(params_was) | set(params_now) if params_was.get(s) != params_now.get(s))
    result.checks.append(Check("params", "params per stage", f"{len(params_was)} stages",
                               f"differ in {', '.join(changed)}" if changed else "as recorded", not changed))
    if "requirements.txt" in bundle:
        result.checks.append(_package_check(bundle["requirements.txt"].read_text(encoding="utf-8")))
    try:  # the recorded params say where reports go; params of an older code version may not load now
        layout = Layout.of(load_params(wt / PARAMS_FILE))
    except ValueError:
        layout = Layout.of(Params())
    reproduced = EvalReport.read(wt / layout.eval_json).to_dict()
    result.checks += metric_checks(recorded, reproduced)


def format_report(result: Reproduction) -> str:
    """The table `landmark-lora reproduce` prints, and its verdict."""
    rows = [("check", "name", "recorded", "reproduced", "")]
    rows += [(c.kind, c.name, c.recorded, c.reproduced, "ok" if c.ok else "DIFFERS") for c in result.checks]
    widths = [min(max(len(r[i]) for r in rows), 48) for i in range(5)]
    lines = [f"reproduce: version {result.version} (run {result.run_id}, git {result.git_sha[:12]})"]
    lines += ["  ".join(cell[:48].ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    first = result.first_difference
    if first is None:
        lines.append(f"reproduced: every metric within {TOLERANCE:g} of the recorded one")
    else:
        lines.append(f"NOT reproduced: first difference in {first.kind}: {first.name}: recorded {first.recorded}, "
                     f"reproduced {first.reproduced}")
    if result.worktree is not None and result.worktree.exists():
        lines.append(f"worktree kept at {result.worktree} (remove with `git worktree remove --force {result.worktree}`)")
    return "\n".join(lines)


__all__ = ["Check", "ReproduceError", "Reproduction", "format_report", "metric_checks", "reproduce",
           "resolve_version"]
