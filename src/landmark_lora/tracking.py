"""MLflow plumbing: where to track, what to tag, and nothing secret in params or tags.

    from landmark_lora.tracking import configure, run_tags
    configure(params.mlflow)          # sqlite:///mlruns/mlflow.db unless MLFLOW_TRACKING_URI is set
    with mlflow.start_run(tags=run_tags(params)): ...

Browse runs with ``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from landmark_lora import artifacts
from landmark_lora.artifacts import Layout
from landmark_lora.config import MlflowConfig, Params, flatten
from landmark_lora.env import project_root

_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api[_-]?key|credential|private[_-]?key|auth)", re.I)
_SECRET_VALUE = re.compile(
    r"(://[^/\s:@]+:[^/\s@]+@"  # user:password@ in a URL
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    # common token prefixes (Slack's xoxb-/xoxp- use a dash), not inside a word (desk_lamp_...)
    r"|\b(?:(?:ghp|gho|github_pat|hf|sk|xox[bp])_|xox[bp]-)[A-Za-z0-9_\-]{10,}"
    # a private key: the whole block to its END line (or to the end of a cut-off value)
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z ]*PRIVATE KEY-----|\Z))"
)
REDACTED = "***"
# Shapes the pattern above misses, each (pattern, replacement); the replacement keeps the
# non-secret part so the value still says what it was.
_SECRET_VALUE_MORE = (
    # a bare token as URL userinfo (https://<token>@github.com); short names like git@ stay
    (re.compile(r"://[A-Za-z0-9_\-.~%]{16,}@"), "://***@"),
    # key=value with a secret-ish key, in a query string or free text (?X-Amz-Signature=..., password=...)
    (re.compile(r"(?i)((?:^|[?&;,\s])[\w.\-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|signature|sig|credential)=)"
                r"[^&\s#;,]+"), r"\1***"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/\-]{8,}=*"), r"\1 ***"),  # Authorization header values
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"), REDACTED),  # JWT
)


def scrub_text(text: str) -> str:
    """``text`` with every credential-shaped part replaced (user:password@ in a URI, tokens,
    keys, key=secret pairs); the rest kept, so the text still says what it was."""
    text = _SECRET_VALUE.sub(lambda m: "://***@" if m.group(0).startswith("://") else REDACTED, str(text))
    for pattern, replacement in _SECRET_VALUE_MORE:
        text = pattern.sub(replacement, text)
    return text


def scrub(mapping: dict[str, Any]) -> dict[str, str]:
    """Replace anything that looks like a credential, by key name or by value shape."""
    out = {}
    for key, value in mapping.items():
        text = str(value)
        if _SECRET_KEY.search(key) and text not in ("", "None", "null"):
            out[key] = REDACTED
        else:
            out[key] = scrub_text(text)
    return out


def scrub_deep(value: Any) -> Any:
    """``value`` (dicts, lists, strings, numbers) with the scrub above applied to every string,
    and secret-named keys redacted; structure and non-string values kept. For what is published."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub_deep(k): (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "")
                                else scrub_deep(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_deep(v) for v in value)
    return value


def tracking_uri(cfg: MlflowConfig) -> str:
    """MLFLOW_TRACKING_URI, else params; a relative SQLite path is made absolute under
    project_root() (so a queued experiment logs to the project's store, and MLflow, which caches
    stores by URI, never keeps pointing at the first working directory)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = project_root() / uri.removeprefix("sqlite:///")
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{path.resolve()}"
    return uri


def sqlite_run_alive(cfg: MlflowConfig, run_id: str) -> bool | None:
    """Whether ``run_id`` is a live (not deleted) run of the store, when that store is a local SQLite
    file, read with the standard library alone: importing MLflow and opening its store take seconds,
    which the skip path of a nightly run does not have. None: not a local SQLite store, or it did not
    answer (ask MLflow)."""
    import sqlite3

    uri = tracking_uri(cfg)
    path = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if path is None or not path.is_file():
        return None
    try:
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return row is not None and row[0] != "deleted"


def artifact_location(cfg: MlflowConfig) -> str:
    """``cfg.artifact_location`` as MLflow wants it: a relative folder is made an absolute file URI
    under project_root(), like the store."""
    if "://" in cfg.artifact_location:
        return cfg.artifact_location
    return (project_root() / cfg.artifact_location).resolve().as_uri()


class TrackingUnreachableError(ConnectionError):
    """The MLflow tracking server (or its database) does not answer; the message names the URI."""


_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306}


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """A short TCP connection to the host of a server store (http(s), postgresql, mysql), so an
    unreachable one fails in seconds, naming the URI, instead of after MLflow's minutes of retries."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except (OSError, ValueError) as err:
        raise TrackingUnreachableError(
            f"MLflow tracking store {scrub_text(uri)} cannot be reached ({err}); start the server "
            "(`mlflow server ...`, see docs/deploy.md), fix MLFLOW_TRACKING_URI / mlflow.tracking_uri in "
            "params.yaml, or unset MLFLOW_TRACKING_URI to track to sqlite:///mlruns/mlflow.db") from err


def forget_deleted_store(uri: str) -> None:
    """A SQLite store deleted while this process runs (`rm mlruns/mlflow.db` to start tracking afresh
    beside a served flow): MLflow caches stores and database engines by URI and would go on using the
    deleted file, so drop them; the next call creates a fresh store. Best effort (MLflow internals)."""
    if not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists():
        return
    try:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistrySql
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingSql
        from mlflow.tracking._model_registry.registry import ModelRegistryStoreRegistry
        from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

        for store in (TrackingSql, RegistrySql):
            engine = store._engine_map.pop(uri, None)
            if engine is not None:
                engine.dispose()
        TrackingStoreRegistry._get_store_with_resolved_uri.cache_clear()
        ModelRegistryStoreRegistry._get_store_with_resolved_uri.cache_clear()
    except (ImportError, AttributeError):
        pass


def configure(cfg: MlflowConfig) -> str:
    """Point MLflow at the configured store and make sure the experiment exists. Returns its id.

    Raises TrackingUnreachableError (a ConnectionError: the flow retries it) when a server store
    does not answer."""
    import mlflow

    uri = tracking_uri(cfg)
    check_reachable(uri)
    forget_deleted_store(uri)
    user_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    # set_tracking_uri also exports MLFLOW_TRACKING_URI; undo that, or this workspace's store would
    # look like the user's choice to every later workspace in the process (a served flow, a test run).
    if user_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user_env
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith(("http://", "https://")):
        # A tracking server owns artifact storage (--artifacts-destination, proxied): a local
        # folder here would strand artifacts on this machine, so let the server choose.
        location = None
    elif "://" not in cfg.artifact_location:  # a local folder: MLflow wants an absolute URI
        location = artifact_location(cfg)
    elif uri.startswith(("sqlite:", "postgresql:", "mysql:")):
        location = cfg.artifact_location
    return mlflow.create_experiment(cfg.experiment, artifact_location=location)


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dvc_data_hashes(lock: Path = Path("dvc.lock")) -> dict[str, str]:
    """md5 of every data dependency and output recorded in dvc.lock (path -> md5)."""
    if not lock.exists():
        return {}
    data = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    hashes: dict[str, str] = {}
    for stage in (data.get("stages") or {}).values():
        for entry in (stage.get("deps") or []) + (stage.get("outs") or []):
            path = str(entry.get("path", ""))
            if path.startswith("data/") and entry.get("md5"):
                hashes[path] = entry["md5"]
    return hashes


# What `dvc exp run` (queued or not) puts in every stage's environment -> the MLflow tag for it.
DVC_EXP_ENV = {"DVC_EXP_NAME": "dvc.exp_name", "DVC_EXP_BASELINE_REV": "dvc.exp_baseline_rev"}


def dvc_exp_tags() -> dict[str, str]:
    """``dvc.exp_name`` and ``dvc.exp_baseline_rev`` inside `dvc exp run`; {} elsewhere."""
    return {tag: os.environ[env] for env, tag in DVC_EXP_ENV.items() if os.environ.get(env)}


def run_tags(params: Params, extra: dict[str, str] | None = None) -> dict[str, str]:
    tags = {
        "git_sha": git_sha(),
        "base_model": params.model.base,
        "data_version": artifacts.data_version(Layout.of(params)),
    }
    for path, md5 in dvc_data_hashes().items():
        tags[f"dvc.{path}"] = md5
    flow_run = os.environ.get("PREFECT__FLOW_RUN_ID")
    if flow_run:
        tags["prefect_flow_run_id"] = flow_run
    tags.update(dvc_exp_tags())
    tags.update(extra or {})
    return scrub(tags)


def flat_eval_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """reports/eval.json as MLflow metrics: ``eval/<key>`` for each number, and ``eval/base_<m>``
    beside ``eval/adapter_<m>`` so two runs compare side by side in the MLflow UI."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    base = metrics.get("base") or {}
    flat = {f"eval/{k}": float(v) for k, v in metrics.items() if number(v)}
    flat.update({f"eval/base_{k}": float(v) for k, v in base.items() if number(v)})
    flat.update({f"eval/adapter_{k}": float(metrics[k]) for k in base if number(metrics.get(k))})
    section = metrics.get("composite") or {}  # eval/composite_<metric> and eval/composite_t2i_<metric>
    flat.update({f"eval/composite_{k}": float(v) for k, v in (section.get("composite") or {}).items() if number(v)})
    flat.update({f"eval/composite_t2i_{k}": float(v) for k, v in (section.get("t2i") or {}).items() if number(v)})
    if number(section.get("real_seam_score")):
        flat["eval/composite_real_seam_score"] = float(section["real_seam_score"])
    return flat


def run_params(params: Params) -> dict[str, str]:
    # MLflow caps param values at 6000 chars; ours are short, but keep it safe.
    return {k: v[:6000] for k, v in scrub(flatten(params)).items()}


def _dvc_source(path: str, md5: str) -> Any:
    """An MLflow dataset source naming a DVC-tracked folder and its md5 (from dvc.lock)."""
    from mlflow.data.dataset_source import DatasetSource

    class DvcSource(DatasetSource):
        def __init__(self, path: str, md5: str):
            self.path, self.md5 = path, md5

        @staticmethod
        def _get_source_type() -> str:
            return "dvc"

        def load(self) -> str:
            return self.path  # `dvc checkout` / `dvc pull` by the md5 brings the folder back

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> Any:
            raise NotImplementedError

        def to_dict(self) -> dict:
            return {"path": self.path, "md5": self.md5, "uri": f"dvc://{self.path}?md5={self.md5}"}

        @classmethod
        def from_dict(cls, source_dict: dict) -> Any:
            return cls(source_dict["path"], source_dict.get("md5", ""))

    return DvcSource(path, md5)


def log_datasets(params: Params, lock: Path = Path("dvc.lock")) -> list[str]:
    """Log the train and val splits as dataset inputs of the active MLflow run (the run page's
    Datasets section): each split's metadata.jsonl as a table (schema, row count, digest), its
    source the DVC-tracked processed folder and its md5 in dvc.lock. Returns the splits logged."""
    import mlflow
    import pandas as pd  # type: ignore[import-untyped]
    from mlflow.data.pandas_dataset import from_pandas

    layout = Layout.of(params)
    processed = layout.processed.as_posix()
    md5 = dvc_data_hashes(lock).get(processed, "")
    logged = []
    for split, context in (("train", "training"), ("val", "evaluation")):
        rows = [r.to_json() for r in artifacts.read_records(layout, split)]
        if not rows:
            continue
        dataset = from_pandas(pd.DataFrame(rows), source=_dvc_source(f"{processed}/{split}", md5),
                                          name=split)
        mlflow.log_input(dataset, context=context, tags={"dvc_path": processed, "dvc_md5": md5 or "unknown"})
        logged.append(split)
    return logged
