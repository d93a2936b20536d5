"""The MLflow model registry as this project uses it: one registered model, two aliases.

    from landmark_lora import registry
    client = registry.client(params)                       # tracking configured from params.mlflow
    champ = registry.alias(client, "landmark-lora", registry.CHAMPION)   # a ModelVersion, or None
    registry.champion_version(params)                      # "3", or None (also when unreachable)
    registry.discard_half_registered(params, run_id)       # undo a promote that crashed half-way

``champion`` is what `landmark-lora generate` and serving load; ``challenger`` is the last adapter
promote judged. Every version carries its metrics as tags (METRIC_KEYS); ``promotion_decision`` is
the tag promote writes last, so a version without it is an unfinished attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from landmark_lora.config import Params
from landmark_lora.logs import get_logger

CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_KEYS = ("eval_loss", "background_consistency", "shot_agreement", "output_change", "landmark_accuracy",
               "angle_accuracy", "pose_accuracy")
DESCRIPTION = "LoRA for snapshots at Korean landmarks (landmark-lora)"
_log = get_logger(__name__)


def client(params: Params):
    """An MlflowClient on the tracking store (and registry) of ``params.mlflow``."""
    import mlflow

    from landmark_lora.tracking import configure

    configure(params.mlflow)
    return mlflow.MlflowClient()


def alias(mlflow_client, name: str, alias_name: str):
    """The version ``alias_name`` points at, or None (no such alias or no such model)."""
    try:
        return mlflow_client.get_model_version_by_alias(name, alias_name)
    except Exception:
        return None


def set_alias(mlflow_client, name: str, alias_name: str, version: str | int | None) -> None:
    """Point ``alias_name`` at ``version``; None removes the alias."""
    if version is None:
        mlflow_client.delete_registered_model_alias(name, alias_name)
    else:
        mlflow_client.set_registered_model_alias(name, alias_name, version)


def champion_version(params: Params) -> str | None:
    """The champion version now, or None (also when the registry cannot be reached)."""
    try:
        version = alias(client(params), params.promotion.registered_model, CHAMPION)
    except Exception:
        return None
    return None if version is None else str(version.version)


def version_metrics(version) -> dict:
    """The metrics a version was tagged with (floats), by METRIC_KEYS."""
    return {k: float(version.tags[k]) for k in METRIC_KEYS if k in version.tags}


def run_versions(mlflow_client, name: str, run_id: str | None) -> list:
    """Every version of ``name`` registered from the MLflow run ``run_id`` ([] if none, or no model yet)."""
    if not run_id:
        return []
    try:
        return [v for v in mlflow_client.search_model_versions(f"name='{name}'") if v.run_id == run_id]
    except Exception as err:  # no registered model yet
        if "RESOURCE_DOES_NOT_EXIST" in str(err):
            return []
        raise


def register(mlflow_client, name: str, run_id: str, log_model: Callable[[], Any]) -> tuple[Any, bool]:
    """The version of ``name`` registered from ``run_id``: the oldest one if there is any, else
    ``log_model()`` (called inside that run; returns a ModelInfo) is registered. Creates the
    registered model if needed. Returns (version, reused)."""
    import mlflow

    try:
        mlflow_client.get_registered_model(name)
    except Exception:
        mlflow_client.create_registered_model(name, description=DESCRIPTION)
    existing = run_versions(mlflow_client, name, run_id)
    if existing:
        return min(existing, key=lambda v: int(v.version)), True
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        info = log_model()
    return mlflow.register_model(info.model_uri, name), False


def discard_half_registered(params: Params, run_id: str | None, log: Callable[[str], None] = _log.info,
                            mlflow_client=None) -> list[str]:
    """Delete registry versions of ``run_id`` that promote did not finish (no promotion_decision
    tag): a crash (even kill -9) between `register_model` and the decision must leave nothing
    behind. If such a version had already become champion, the previous champion gets the alias back."""
    mlflow_client = mlflow_client or client(params)
    name = params.promotion.registered_model
    removed = []
    for v in run_versions(mlflow_client, name, run_id):
        if "promotion_decision" in (v.tags or {}):
            continue
        champion = alias(mlflow_client, name, CHAMPION)
        if champion is not None and champion.version == v.version:
            set_alias(mlflow_client, name, CHAMPION, (v.tags or {}).get("previous_champion") or None)
        mlflow_client.delete_model_version(name, v.version)
        removed.append(v.version)
        log(f"promote: removed half-registered version {v.version} of '{name}' (run {run_id})")
    return removed
