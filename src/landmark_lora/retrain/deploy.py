"""The `retrain` flow as a deployment: prefect.yaml's schedule, trigger and parameters, for flow.serve.

    landmark-lora serve                                   # what this module is for
    from landmark_lora.retrain.deploy import deployment_spec, load_retrain_flow, serve_kwargs
    spec = deployment_spec("nightly-retrain")             # one deployment of prefect.yaml
    load_retrain_flow().serve(name=spec["name"], **serve_kwargs(spec))

`prefect deploy --all` reads prefect.yaml itself (entrypoint flows/retrain.py:retrain, a thin
re-export of landmark_lora.retrain.flow); `landmark-lora serve` registers the same deployment
with the flow imported from the package.
"""

from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """The checkout holding flows/ and prefect.yaml: the current folder if it has them, else the
    source tree of this (editable) install."""
    here = Path.cwd()
    if (here / "flows" / "retrain.py").is_file():
        return here
    return Path(__file__).resolve().parents[3]  # src/landmark_lora/retrain/deploy.py -> the checkout


def load_retrain_flow():
    """The `retrain` flow (landmark_lora.retrain.flow; flows/retrain.py re-exports it)."""
    from landmark_lora.retrain.flow import retrain

    return retrain


def deployment_spec(name: str = "nightly-retrain", prefect_yaml: Path | None = None) -> dict:
    """One deployment from prefect.yaml (schedules, triggers, parameters, concurrency)."""
    import yaml

    path = prefect_yaml or repo_root() / "prefect.yaml"
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for dep in spec.get("deployments") or []:
        if dep.get("name") == name:
            return dep
    raise KeyError(f"{path}: no deployment named {name!r}")


def serve_kwargs(spec: dict) -> dict:
    """flow.serve / flow.to_deployment arguments equal to a prefect.yaml deployment.

    The flow is found by its module path (landmark_lora.retrain.flow.retrain), wherever the
    package is installed, not by a file path relative to the current folder."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    schedules = [Cron(s["cron"], timezone=s.get("timezone")) for s in spec.get("schedules") or [] if s.get("cron")]
    triggers = [DeploymentEventTrigger(**t) for t in spec.get("triggers") or []]
    return {"schedules": schedules, "triggers": triggers, "parameters": spec.get("parameters") or {},
            "description": spec.get("description"), "tags": spec.get("tags") or [],
            "entrypoint_type": EntrypointType.MODULE_PATH}
