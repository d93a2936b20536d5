"""Promote: register the new adapter as ``challenger`` and move ``champion`` only when it is better.

    landmark-lora promote                     # after `dvc repro`; writes reports/promotion.json
    landmark-lora promote --rollback --reason "faces look wrong"

Rules, in order (every decision and its reason land in version tags and reports/promotion.json):
1. Sanity gates for the challenger, whatever the metrics say: finite weights, finite eval loss
   below ``promotion.max_eval_loss``, a LoRA update no larger than ``promotion.max_delta_ratio``
   times the weights it changes, it loaded (evaluate ran it) and it changes the output by at
   least ``promotion.min_output_change``. A NaN, diverged or unloadable adapter is never promoted.
2. No champion yet: the challenger becomes champion (it passed the gates).
3. Same eval data: if the champion was scored on another data version, it is scored again on
   the current val data first (its adapter comes back from MLflow).
4. Primary: eval_loss must drop by at least ``promotion.min_improvement`` (relative).
5. Guards: no metric in ``promotion.guard_tolerance`` may drop by more than its tolerance.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from landmark_lora.config import Params

CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_KEYS = ("eval_loss", "background_consistency", "shot_agreement", "output_change")


class PromotionError(RuntimeError):
    pass


@dataclass
class Decision:
    promote: bool
    reason: str
    checks: list[str] = field(default_factory=list)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def sanity_gates(metrics: dict, adapter_dir: Path | None, params: Params) -> list[str]:
    """Problems that forbid promotion, whatever the comparison says. [] = passes."""
    cfg = params.promotion
    problems = []
    loss = metrics.get("eval_loss")
    if not _finite(loss):
        problems.append(f"eval_loss is {loss} (not finite): the adapter diverged")
    elif loss > cfg.max_eval_loss:
        problems.append(f"eval_loss {loss:.4f} > promotion.max_eval_loss {cfg.max_eval_loss}: diverged")
    change = metrics.get("output_change")
    if not _finite(change):
        problems.append("the adapter was not evaluated (no output_change): it may not load")
    elif change < cfg.min_output_change:
        problems.append(f"the adapter barely changes the output ({change:.5f} < promotion.min_output_change {cfg.min_output_change})")
    if adapter_dir is not None:
        weight_problems = adapter_weight_problems(adapter_dir)
        problems += weight_problems
        if not weight_problems:
            from landmark_lora.diffusion import resolve_base

            ratio = lora_delta_ratio(adapter_dir, resolve_base(params.model))
            if ratio > cfg.max_delta_ratio:
                problems.append(f"the LoRA update is {ratio:.1f}x the size of the base weights it changes "
                                f"(> promotion.max_delta_ratio {cfg.max_delta_ratio}): training blew up")
    return problems


def lora_delta_ratio(adapter_dir: Path, base: Path) -> float:
    """Largest ||up @ down * alpha/r|| / ||W|| over the adapted UNet layers.

    A healthy LoRA nudges its layers (typically well under 0.5); a run with a wild learning
    rate makes the update dwarf the weights long before the loss says so."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(adapter_dir) / "pytorch_lora_weights.safetensors"
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    lora = load_file(str(path))
    scale = 1.0
    if meta.get("alpha") and meta.get("rank"):
        scale = float(meta["alpha"]) / float(meta["rank"])
    weights = {}
    for f in sorted((Path(base) / "unet").glob("*.safetensors")):
        weights.update(load_file(str(f)))
    worst = 0.0
    for key, down in lora.items():
        if not key.startswith("unet.") or not key.endswith("lora.down.weight"):
            continue
        module = key[len("unet."):-len(".lora.down.weight")]
        base_w = weights.get(module + ".weight")
        up = lora.get(key.replace("lora.down.weight", "lora.up.weight"))
        if base_w is None or up is None or base_w.dim() != 2:
            continue
        delta = (up.float() @ down.float()) * scale
        worst = max(worst, float(delta.norm() / base_w.float().norm().clamp(min=1e-12)))
    return worst


def adapter_weight_problems(adapter_dir: Path) -> list[str]:
    import torch
    from safetensors.torch import load_file

    path = Path(adapter_dir) / "pytorch_lora_weights.safetensors"
    try:
        tensors = load_file(str(path))
    except Exception as err:  # unreadable = unloadable
        return [f"{path} does not load: {err}"]
    if not tensors:
        return [f"{path} holds no tensors"]
    bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
    return [f"{len(bad)} LoRA tensor(s) hold NaN/inf, e.g. {bad[0]}"] if bad else []


def decide(challenger: dict, champion: dict | None, params: Params, gate_problems: list[str]) -> Decision:
    cfg = params.promotion
    if gate_problems:
        return Decision(False, "failed sanity gates: " + "; ".join(gate_problems), gate_problems)
    if champion is None:
        return Decision(True, "first adapter: passed the sanity gates and there is no champion yet")
    checks = []
    old, new = champion["eval_loss"], challenger["eval_loss"]
    # A zero-loss champion cannot be beaten, only tied: any higher loss is an infinite relative drop.
    gain = (old - new) / old if old else (0.0 if new <= old else -math.inf)
    checks.append(f"eval_loss {new:.5f} vs champion {old:.5f}: {gain:+.2%} (need >= {cfg.min_improvement:.2%})")
    if gain < cfg.min_improvement:
        return Decision(False, f"eval_loss did not improve enough: {checks[-1]}", checks)
    for metric, tol in cfg.guard_tolerance.items():
        a, b = challenger.get(metric), champion.get(metric)
        if not (_finite(a) and _finite(b)):
            checks.append(f"{metric}: not comparable ({a} vs {b}); skipped")
            continue
        drop = b - a
        checks.append(f"{metric} {a:.4f} vs champion {b:.4f} (drop {drop:+.4f}, tolerance {tol})")
        if drop > tol:
            return Decision(False, f"guard {metric} regressed beyond tolerance: {checks[-1]}", checks)
    return Decision(True, f"better than the champion: {checks[0]}; guards held", checks)


# ---------------------------------------------------------------- registry


def _client(params: Params):
    import mlflow

    from landmark_lora.tracking import configure

    configure(params.mlflow)
    return mlflow.MlflowClient()


def _version_metrics(version) -> dict:
    return {k: float(version.tags[k]) for k in METRIC_KEYS if k in version.tags}


def _alias(client, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception:
        return None


def register_challenger(params: Params, client=None):
    """Log the adapter (pyfunc) into its training run and register it with tags + alias challenger.

    Idempotent: the same training run is registered once."""
    import mlflow

    from landmark_lora.diffusion import resolve_base
    from landmark_lora.serving import log_adapter_model
    from landmark_lora.tracking import git_sha, scrub

    client = client or _client(params)
    reports = Path(params.paths.reports)
    train = json.loads((reports / "train.json").read_text())
    evaluation = json.loads((reports / "eval.json").read_text())
    run_id = train.get("mlflow_run_id")
    if not run_id:
        raise PromotionError(f"{reports / 'train.json'} has no MLflow run id; run `dvc repro train` with MLflow on")
    name = params.promotion.registered_model
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name, description="LoRA for snapshots at Korean landmarks (landmark-lora)")
    existing = [v for v in client.search_model_versions(f"name='{name}'") if v.run_id == run_id]
    if existing:
        version = existing[0]
    else:
        adapter_dir = Path(params.model.dir) / "adapter"
        with mlflow.start_run(run_id=run_id, log_system_metrics=False):
            info = log_adapter_model(adapter_dir, params.model.base, resolve_base(params.model),
                                     params.eval.num_inference_steps, params.eval.guidance_scale)
        version = mlflow.register_model(info.model_uri, name)
        run = client.get_run(run_id)
        tags = {
            "git_sha": run.data.tags.get("git_sha", git_sha()),
            "data_version": evaluation.get("data_version", ""),
            "base_model": params.model.base,
            "mlflow_run_id": run_id,
            **{k: str(evaluation[k]) for k in METRIC_KEYS if evaluation.get(k) is not None},
        }
        for k, v in scrub(tags).items():
            client.set_model_version_tag(name, version.version, k, v)
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return client.get_model_version(name, version.version)


def rescore(params: Params, version, client) -> dict:
    """Score a registered version on the current val data; update its tags. Returns metrics."""
    import mlflow

    from landmark_lora.stages.evaluate import score_adapter
    from landmark_lora.tracking import data_version

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="adapter", dst_path=tmp)
        metrics, _ = score_adapter(params, Path(local))
    current = data_version(params.paths.processed)
    name = params.promotion.registered_model
    for k in METRIC_KEYS:
        if _finite(metrics.get(k)):
            client.set_model_version_tag(name, version.version, k, str(metrics[k]))
    client.set_model_version_tag(name, version.version, "data_version", current)
    client.set_model_version_tag(name, version.version, "rescored_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
    return {k: metrics[k] for k in METRIC_KEYS if k in metrics}


def promote(params: Params) -> dict:
    from landmark_lora.tracking import data_version

    client = _client(params)
    name = params.promotion.registered_model
    challenger = register_challenger(params, client)
    chall_metrics = _version_metrics(challenger)
    champion = _alias(client, name, CHAMPION)
    current = data_version(params.paths.processed)
    champ_metrics, rescored = None, False
    if champion is not None and champion.version != challenger.version:
        if champion.tags.get("data_version") != current:
            champ_metrics, rescored = rescore(params, champion, client), True
        else:
            champ_metrics = _version_metrics(champion)
    elif champion is not None:  # already champion (e.g. promote ran twice)
        return _record(params, client, challenger, champion, Decision(False, f"version {challenger.version} is already champion"),
                       chall_metrics, chall_metrics, False)
    gates = sanity_gates(chall_metrics, Path(params.model.dir) / "adapter", params)
    decision = decide(chall_metrics, champ_metrics, params, gates)
    if decision.promote:
        if champion is not None:
            client.set_model_version_tag(name, challenger.version, "previous_champion", str(champion.version))
        client.set_registered_model_alias(name, CHAMPION, challenger.version)
    return _record(params, client, challenger, champion, decision, chall_metrics, champ_metrics, rescored)


def _record(params, client, challenger, champion, decision: Decision, chall_metrics, champ_metrics, rescored) -> dict:
    name = params.promotion.registered_model
    client.set_model_version_tag(name, challenger.version, "promotion_decision", "promoted" if decision.promote else "rejected")
    client.set_model_version_tag(name, challenger.version, "promotion_reason", decision.reason[:5000])
    now_champion = _alias(client, name, CHAMPION)
    report = {
        "decision": "promoted" if decision.promote else "rejected",
        "reason": decision.reason,
        "checks": decision.checks,
        "challenger": {"version": str(challenger.version), "run_id": challenger.run_id, "metrics": chall_metrics},
        "previous_champion": None if champion is None else {
            "version": str(champion.version), "run_id": champion.run_id, "metrics": champ_metrics, "rescored": rescored},
        "champion": None if now_champion is None else str(now_champion.version),
        "registered_model": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _write(params, report)
    return report


def rollback(params: Params, reason: str) -> dict:
    client = _client(params)
    name = params.promotion.registered_model
    champion = _alias(client, name, CHAMPION)
    if champion is None:
        raise PromotionError(f"registered model '{name}' has no champion to roll back")
    previous = champion.tags.get("previous_champion")
    if not previous:
        raise PromotionError(f"champion version {champion.version} has no previous champion to roll back to")
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, champion.version, "rolled_back", "true")
    client.set_model_version_tag(name, champion.version, "rollback_reason", reason[:5000])
    report = {"decision": "rolled_back", "reason": reason, "from_version": str(champion.version),
              "champion": str(previous), "registered_model": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write(params, report)
    return report


def _write(params: Params, report: dict) -> None:
    path = Path(params.paths.reports) / "promotion.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


__all__ = ["Decision", "decide", "promote", "rollback", "register_challenger", "sanity_gates", "asdict"]
