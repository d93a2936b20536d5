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
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from landmark_lora import fsutil
from landmark_lora.config import Params
from landmark_lora.locking import locked

CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_KEYS = ("eval_loss", "background_consistency", "shot_agreement", "output_change", "landmark_accuracy",
               "angle_accuracy", "pose_accuracy")


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

            delta = lora_delta(adapter_dir, resolve_base(params.model))
            if delta.worst > cfg.max_delta_ratio:
                problems.append(f"the LoRA update is {delta.worst:.1f}x the size of the base weights it changes "
                                f"({delta.worst_layer}; > promotion.max_delta_ratio {cfg.max_delta_ratio}): "
                                "training blew up")
            if delta.unchecked:
                problems.append(f"{len(delta.unchecked)} LoRA layer(s) match no base weight, so the blow-up gate "
                                f"cannot check them, e.g. {delta.unchecked[0]}")
            if not delta.checked:
                problems.append(f"{adapter_dir} holds no LoRA layer the blow-up gate recognises")
    return problems


# Each LoRA key format as (down suffix, up suffix): peft, diffusers/kohya, kohya (older).
_PAIR_SUFFIXES = ((".lora_A.weight", ".lora_B.weight"), (".lora_A.default.weight", ".lora_B.default.weight"),
                  (".lora.down.weight", ".lora.up.weight"), (".lora_down.weight", ".lora_up.weight"))
# Prefix of a LoRA module name -> base component folder: diffusers/peft names and kohya names.
_COMPONENTS = (("unet.", "unet"), ("text_encoder.", "text_encoder"),
               ("lora_unet_", "unet"), ("lora_te_", "text_encoder"), ("lora_te1_", "text_encoder"))


@dataclass
class LoraDelta:
    worst: float = 0.0  # largest ||up @ down * alpha/r|| / ||W|| over every LoRA pair
    worst_layer: str = ""
    checked: int = 0  # pairs measured
    unchecked: list[str] = field(default_factory=list)  # pairs with no base weight of that name and size


def _base_weights(base: Path, component: str) -> tuple[dict, dict]:
    """(diffusers module name -> weight, kohya module name -> weight) of one base component."""
    from safetensors.torch import load_file

    weights = {}
    for f in sorted((Path(base) / component).glob("*.safetensors")):
        weights.update(load_file(str(f)))
    by_name, by_kohya = {}, {}
    for key, w in weights.items():
        if not key.endswith(".weight") or w.dim() < 2:
            continue
        module = key[: -len(".weight")]
        # transformers saves CLIPTextModel as "text_model.encoder..." or, newer, "encoder...";
        # LoRA files name it either way too: index both spellings.
        bare = module.removeprefix("text_model.")
        for name in {module, bare, "text_model." + bare}:
            by_name[name] = w
            by_kohya[name.replace(".", "_")] = w
    return by_name, by_kohya


def lora_delta(adapter_dir: Path, base: Path) -> LoraDelta:
    """How large the LoRA update is against the weights it changes, for EVERY LoRA pair in
    ``pytorch_lora_weights.safetensors`` whatever its key format (peft ``lora_A``/``lora_B``,
    diffusers ``lora.down``/``lora.up``, kohya ``lora_down``/``lora_up`` with ``.alpha``), UNet
    and text encoder, linear and conv layers.

    A healthy LoRA nudges its layers (typically well under 0.5); a run with a wild learning
    rate makes the update dwarf the weights long before the loss says so."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(adapter_dir) / "pytorch_lora_weights.safetensors"
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata() or {}
    lora = load_file(str(path))
    alpha = float(meta["alpha"]) if meta.get("alpha") else None
    bases: dict[str, tuple[dict, dict]] = {}
    out = LoraDelta()
    for key, down in sorted(lora.items()):
        pair = next(((key[: -len(d)], u) for d, u in _PAIR_SUFFIXES if key.endswith(d)), None)
        if pair is None:
            continue
        module, up_suffix = pair
        up = lora.get(module + up_suffix)
        component = next(((p, c) for p, c in _COMPONENTS if module.startswith(p)), None)
        if up is None or component is None:
            out.unchecked.append(key)
            continue
        prefix, folder = component
        if folder not in bases:
            bases[folder] = _base_weights(base, folder)
        by_name, by_kohya = bases[folder]
        name = module[len(prefix):]
        base_w = (by_kohya if prefix.startswith("lora_") else by_name).get(name)
        rank = down.shape[0]
        module_alpha = lora.get(module + ".alpha")
        a = float(module_alpha) if module_alpha is not None else (alpha if alpha is not None else rank)
        if base_w is None or up.shape[0] != base_w.shape[0] or down[0].numel() * up.shape[0] != base_w.numel():
            out.unchecked.append(key)
            continue
        # conv LoRA: down (r, in, kh, kw), up (out, r, 1, 1): flattened, it is a matrix product
        delta = (up.float().reshape(up.shape[0], rank) @ down.float().reshape(rank, -1)) * (a / rank)
        ratio = float(delta.norm() / base_w.float().norm().clamp(min=1e-12))
        out.checked += 1
        if ratio > out.worst or not math.isfinite(ratio):
            out.worst, out.worst_layer = ratio, f"{folder}: {name}"
    return out


def lora_delta_ratio(adapter_dir: Path, base: Path) -> float:
    """Largest ||up @ down * alpha/r|| / ||W|| over every LoRA pair (see lora_delta)."""
    return lora_delta(adapter_dir, base).worst


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


def _run_versions(client, name: str, run_id: str | None) -> list:
    if not run_id:
        return []
    try:
        return [v for v in client.search_model_versions(f"name='{name}'") if v.run_id == run_id]
    except Exception as err:  # no registered model yet
        if "RESOURCE_DOES_NOT_EXIST" in str(err):
            return []
        raise


def _train_run_id(params: Params) -> str:
    reports = Path(params.paths.reports)
    run_id = json.loads((reports / "train.json").read_text()).get("mlflow_run_id")
    if not run_id:
        raise PromotionError(f"{reports / 'train.json'} has no MLflow run id; run `dvc repro train` with MLflow on")
    return run_id


def _version_tags(params: Params, client, run_id: str) -> dict[str, str]:
    """The tags every registered version carries: where it came from and how it scored."""
    from landmark_lora.tracking import git_sha, scrub

    evaluation = json.loads((Path(params.paths.reports) / "eval.json").read_text())
    run = client.get_run(run_id)
    tags = {
        "git_sha": run.data.tags.get("git_sha", git_sha()),
        "base_model": params.model.base,
        "mlflow_run_id": run_id,
    }
    if evaluation.get("mlflow_run_id") in (None, run_id):  # eval.json scored this very run
        tags["data_version"] = evaluation.get("data_version", "")
        tags.update({k: str(evaluation[k]) for k in METRIC_KEYS if evaluation.get(k) is not None})
    return scrub(tags)


def _find_or_register(params: Params, client):
    """The registry version of the last training run: registered (pyfunc logged into the run) if
    it has none yet, else reused, with any tag a crashed earlier attempt did not write re-applied."""
    import mlflow

    from landmark_lora.diffusion import resolve_base
    from landmark_lora.serving import log_adapter_model

    run_id = _train_run_id(params)
    name = params.promotion.registered_model
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name, description="LoRA for snapshots at Korean landmarks (landmark-lora)")
    existing = _run_versions(client, name, run_id)
    if existing:
        version = min(existing, key=lambda v: int(v.version))
    else:
        adapter_dir = Path(params.model.dir) / "adapter"
        with mlflow.start_run(run_id=run_id, log_system_metrics=False):
            info = log_adapter_model(adapter_dir, params.model.base, resolve_base(params.model),
                                     params.eval.num_inference_steps, params.eval.guidance_scale)
        version = mlflow.register_model(info.model_uri, name)
    have = (client.get_model_version(name, version.version).tags or {}) if existing else {}
    for k, v in _version_tags(params, client, run_id).items():
        if k not in have:  # a reused version keeps what it has (e.g. a rescore), gets what it lacks
            client.set_model_version_tag(name, version.version, k, v)
    return client.get_model_version(name, version.version)


def register_challenger(params: Params, client=None):
    """Log the adapter (pyfunc) into its training run and register it with tags + alias challenger.

    Idempotent: the same training run is registered once; a reused version gets missing tags back."""
    client = client or _client(params)
    version = _find_or_register(params, client)
    client.set_registered_model_alias(params.promotion.registered_model, CHALLENGER, version.version)
    return client.get_model_version(params.promotion.registered_model, version.version)


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


# Tags a promote attempt may change on a version that existed before it (restored on failure).
_DECISION_TAGS = ("promotion_decision", "promotion_reason", "previous_champion", "rolled_back")


@locked("landmark-lora promote")
def promote(params: Params, force: bool = False, log=print) -> dict:
    """Register the last training run's adapter as challenger and judge it; all or nothing.

    The one promote path (CLI `landmark-lora promote` and the flow). Under the pipeline lock.
    A failure at any point leaves the registry as it was: the champion (and challenger) alias
    back where they were, no version this attempt created, no half-tagged version. A version
    left undecided by a crashed earlier attempt (kill -9) is removed first. Promoting what is
    already champion is a no-op that says so; a rolled-back version is not judged again unless
    ``force`` (it then faces the gates and the champion like any challenger)."""
    client = _client(params)
    name = params.promotion.registered_model
    run_id = _train_run_id(params)
    discard_half_registered(params, run_id, log, client)
    before = {v.version: dict(v.tags or {}) for v in _run_versions(client, name, run_id)}
    aliases_before = {a: _alias(client, name, a) for a in (CHAMPION, CHALLENGER)}
    try:
        return _promote(params, client, force)
    except BaseException:
        try:
            _undo(client, name, run_id, before, aliases_before, log)
        except Exception as err:  # the registry may be what is down; the next attempt cleans up
            log(f"promote: could not clean up after the failure ({err}); the next run will")
        raise


def _undo(client, name: str, run_id: str, before: dict[str, dict], aliases_before: dict, log) -> None:
    """Put the registry back as it was before a failed attempt."""
    for alias, version in aliases_before.items():
        now = _alias(client, name, alias)
        if version is None and now is not None:
            client.delete_registered_model_alias(name, alias)
        elif version is not None and (now is None or now.version != version.version):
            client.set_registered_model_alias(name, alias, version.version)
    for v in _run_versions(client, name, run_id):
        if v.version not in before:
            client.delete_model_version(name, v.version)
            log(f"promote: removed version {v.version} of '{name}' (run {run_id}): the attempt failed")
            continue
        for k in _DECISION_TAGS:
            old, new = before[v.version].get(k), (v.tags or {}).get(k)
            if old is None and new is not None:
                client.delete_model_version_tag(name, v.version, k)
            elif old is not None and old != new:
                client.set_model_version_tag(name, v.version, k, old)


def discard_half_registered(params: Params, run_id: str | None, log=print, client=None) -> list[str]:
    """Delete registry versions of ``run_id`` that promote did not finish (no promotion_decision
    tag): a crash (even kill -9) between `register_model` and the decision must leave nothing
    behind. If such a version had already become champion, the previous champion gets the alias back."""
    client = client or _client(params)
    name = params.promotion.registered_model
    removed = []
    for v in _run_versions(client, name, run_id):
        if "promotion_decision" in (v.tags or {}):
            continue
        champion = _alias(client, name, CHAMPION)
        if champion is not None and champion.version == v.version:
            previous = (v.tags or {}).get("previous_champion")
            if previous:
                client.set_registered_model_alias(name, CHAMPION, previous)
            else:
                client.delete_registered_model_alias(name, CHAMPION)
        client.delete_model_version(name, v.version)
        removed.append(v.version)
        log(f"promote: removed half-registered version {v.version} of '{name}' (run {run_id})")
    return removed


def _promote(params: Params, client, force: bool) -> dict:
    from landmark_lora.tracking import data_version

    name = params.promotion.registered_model
    challenger = _find_or_register(params, client)
    chall_metrics = _version_metrics(challenger)
    champion = _alias(client, name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        return _unchanged(params, challenger, champion, f"version {challenger.version} is already champion: nothing to do")
    rolled_back = (challenger.tags or {}).get("rolled_back") == "true"
    if rolled_back and not force:
        why = (challenger.tags or {}).get("rollback_reason", "")
        return _unchanged(params, challenger, champion,
                          f"version {challenger.version} was rolled back ({why or 'no reason given'}): not promoted "
                          "again; train a new run, or ask for it with `landmark-lora promote --force`")
    client.set_registered_model_alias(name, CHALLENGER, challenger.version)
    current = data_version(params.paths.processed)
    champ_metrics, rescored = None, False
    if champion is not None:
        if champion.tags.get("data_version") != current:
            champ_metrics, rescored = rescore(params, champion, client), True
        else:
            champ_metrics = _version_metrics(champion)
    gates = sanity_gates(chall_metrics, Path(params.model.dir) / "adapter", params)
    decision = decide(chall_metrics, champ_metrics, params, gates)
    if rolled_back:
        decision.checks.append(f"version {challenger.version} had been rolled back; judged again on request (--force)")
    return _record(params, client, challenger, champion, decision, chall_metrics, champ_metrics, rescored)


def _record(params, client, challenger, champion, decision: Decision, chall_metrics, champ_metrics, rescored) -> dict:
    """Write the decision. The ``promotion_decision`` tag is the commit mark, set after the alias
    moved: a version without it is an unfinished attempt (discard_half_registered)."""
    name = params.promotion.registered_model
    client.set_model_version_tag(name, challenger.version, "promotion_reason", decision.reason[:5000])
    if decision.promote:
        if champion is not None:
            client.set_model_version_tag(name, challenger.version, "previous_champion", str(champion.version))
        client.set_registered_model_alias(name, CHAMPION, challenger.version)
        if (challenger.tags or {}).get("rolled_back"):
            client.delete_model_version_tag(name, challenger.version, "rolled_back")
    client.set_model_version_tag(name, challenger.version, "promotion_decision", "promoted" if decision.promote else "rejected")
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


def _unchanged(params, challenger, champion, reason: str) -> dict:
    """A promote that changes nothing in the registry (already champion, rolled back): says so."""
    report = {
        "decision": "unchanged",
        "reason": reason,
        "checks": [],
        "challenger": {"version": str(challenger.version), "run_id": challenger.run_id,
                       "metrics": _version_metrics(challenger)},
        "previous_champion": None,
        "champion": None if champion is None else str(champion.version),
        "registered_model": params.promotion.registered_model,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _write(params, report)
    return report


@locked("landmark-lora promote --rollback")
def rollback(params: Params, reason: str) -> dict:
    """Move ``champion`` back to the previous champion. Sticks: the rolled-back version is tagged
    ``rolled_back=true`` and no later promote (flow or CLI) makes it champion again without --force."""
    client = _client(params)
    name = params.promotion.registered_model
    champion = _alias(client, name, CHAMPION)
    if champion is None:
        raise PromotionError(f"registered model '{name}' has no champion to roll back")
    previous = champion.tags.get("previous_champion")
    if not previous:
        raise PromotionError(f"champion version {champion.version} has no previous champion to roll back to")
    client.set_model_version_tag(name, champion.version, "rolled_back", "true")
    client.set_model_version_tag(name, champion.version, "rollback_reason", reason[:5000])
    try:
        client.set_registered_model_alias(name, CHAMPION, previous)
        report = {"decision": "rolled_back", "reason": reason, "from_version": str(champion.version),
                  "rolled_back": {"version": str(champion.version), "run_id": champion.run_id},
                  "champion": str(previous), "registered_model": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _write(params, report)
    except BaseException:  # all or nothing: the champion stays, and is not marked rolled back
        client.set_registered_model_alias(name, CHAMPION, champion.version)
        client.delete_model_version_tag(name, champion.version, "rolled_back")
        raise
    return report


def _write(params: Params, report: dict) -> None:
    path = Path(params.paths.reports) / "promotion.json"
    fsutil.write_json_atomic(path, report, indent=2, default=str)


__all__ = ["Decision", "decide", "discard_half_registered", "promote", "rollback", "register_challenger",
           "sanity_gates", "asdict"]
