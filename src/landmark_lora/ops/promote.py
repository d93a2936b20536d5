"""Promote: register the new adapter as ``challenger`` and move ``champion`` only when it is better.

    landmark-lora promote                     # after `dvc repro`; writes reports/promotion.json
    landmark-lora promote --rollback --reason "faces look wrong"

Rules, in order (every decision and its reason land in version tags and reports/promotion.json):
1. Sanity gates for the challenger, whatever the metrics say: finite weights, finite eval loss
   below ``promotion.max_eval_loss``, a LoRA update no larger than ``promotion.max_delta_ratio``
   times the weights it changes, it loaded (evaluate ran it) and it changes the output by at
   least ``promotion.min_output_change``. A NaN, diverged or unloadable adapter is never promoted.
2. No champion yet: the challenger becomes champion (it passed the gates).
3. Same evaluation: if the champion was scored under another eval fingerprint (another data
   version, base, ``eval.*``, ``train.eval_*``, caption config or metrics code:
   ``scoring.eval_fingerprint``), it is scored again the challenger's way first (its adapter
   comes back from MLflow); ``promote_rules.rescore_reason`` says why.
4. Primary: eval_loss must drop by at least ``promotion.min_improvement`` (relative).
5. Guards: no metric in ``promotion.guard_tolerance`` may drop by more than its tolerance.

Before registering, reports/eval.json must belong to reports/train.json (same MLflow run, same
data version) and to the current params (same eval fingerprint); otherwise promote refuses.

The rules themselves are pure functions in landmark_lora.ops.promote_rules; the registry calls
(aliases, versions, half-registered clean-up) are landmark_lora.registry's.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from landmark_lora import fsutil, registry
from landmark_lora.artifacts import EvalReport, Layout, TrainReport, data_version
from landmark_lora.config import Params
from landmark_lora.env import pin_threads
from landmark_lora.locking import locked
from landmark_lora.logs import get_logger
from landmark_lora.ops import runcache
from landmark_lora.ops.lineage import LINEAGE_TAGS, record_lineage, unreproducible_refusal
from landmark_lora.ops.promote_rules import Decision, decide, finite, rescore_reason, sanity_gates
from landmark_lora.ops.runcache import Resolved
from landmark_lora.registry import (
    CHALLENGER,
    CHAMPION,
    METRIC_KEYS,
    alias,
    discard_half_registered,
    run_versions,
    version_metrics,
)

_log = get_logger(__name__)


class PromotionError(RuntimeError):
    """promote or rollback cannot go on; the message says what to run first."""


def _train_run(params: Params, client, log: Callable[[str], None] = _log.info) -> Resolved:
    """The run reports/train.json names, as it is in the current store: re-logged from DVC's cached
    outputs when the store does not hold it (ops/runcache.py), so a registered version's run exists."""
    path = Layout.of(params).train_json
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; run `dvc repro train` first")
    if not TrainReport.read(path).mlflow_run_id:
        raise PromotionError(f"{path} has no MLflow run id; run `dvc repro train` with MLflow on")
    try:
        found = runcache.reconcile(params, log, client)
    except runcache.RunCacheError as err:
        raise PromotionError(str(err)) from err
    assert found.run_id is not None
    return found


def matching_evaluation(params: Params) -> EvalReport:
    """reports/eval.json, when it scored the training run of reports/train.json, on its data
    version, under the eval fingerprint the current params give. Else PromotionError: e.g.
    `dvc repro train` retrained without evaluating, and eval.json still scores the previous adapter."""
    from landmark_lora.scoring import eval_fingerprint

    layout = Layout.of(params)
    if not layout.eval_json.exists():
        raise FileNotFoundError(f"{layout.eval_json}: not found; run `dvc repro evaluate` first")
    train, evaluation = TrainReport.read(layout.train_json), EvalReport.read(layout.eval_json)
    problems = []
    if evaluation.mlflow_run_id != train.mlflow_run_id:
        problems.append(f"it scored MLflow run {evaluation.mlflow_run_id or '(none)'} but {layout.train_json} is "
                        f"run {train.mlflow_run_id}")
    if evaluation.data_version != train.data_version:
        problems.append(f"it scored data version {evaluation.data_version or '(none)'} but {layout.train_json} "
                        f"trained on {train.data_version}")
    if not problems:
        expected = eval_fingerprint(params, evaluation.data_version or "")
        if evaluation.get("eval_fingerprint") != expected:
            problems.append(f"it was scored under eval fingerprint {evaluation.get('eval_fingerprint', '(none)')} "
                            f"but the current params give {expected} (eval.*, train.eval_*, caption or model.base "
                            "changed since)")
    if problems:
        raise PromotionError(f"refusing to register: {layout.eval_json} does not belong to this training run: "
                             + "; ".join(problems) + ". Run `dvc repro` (it evaluates the new adapter), then promote")
    return evaluation


def _version_tags(params: Params, client, run_id: str, evaluation: EvalReport) -> dict[str, str]:
    """The tags every registered version carries: where it came from and how it scored."""
    from landmark_lora.tracking import git_sha, scrub

    run = client.get_run(run_id)
    tags = {
        "git_sha": run.data.tags.get("git_sha", git_sha()),
        "base_model": params.model.base,
        "mlflow_run_id": run_id,
        "data_version": evaluation.get("data_version", ""),
        "eval_fingerprint": evaluation.get("eval_fingerprint", ""),
    }
    tags.update({k: str(evaluation.get(k)) for k in METRIC_KEYS if evaluation.get(k) is not None})
    tags.update({k: run.data.tags[k] for k in LINEAGE_TAGS if k in run.data.tags})
    return scrub(tags)


def _find_or_register(params: Params, client, train: Resolved):
    """The registry version of the last training run: registered (pyfunc logged into the run) if
    it has none yet, else reused, with any tag a crashed earlier attempt did not write re-applied.
    ``train``: that run as the current store holds it (re-logged there after a DVC run-cache hit)."""
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.diffusion.components import resolve_base
    from landmark_lora.serving import composite_bundle, log_adapter_model

    run_id = str(train.run_id)
    evaluation = matching_evaluation(params)  # compares the reports' own run ids: both from one pipeline run
    name = params.promotion.registered_model

    def log_model():  # a new version: record its lineage first (dvc push, lineage/ bundle, tags)
        record_lineage(params, run_id, client=client)
        layout = Layout.of(params)
        bundle = composite_bundle(layout.plates_dir, layout.person_regions, params.composite, params.caption,
                                  load_catalogue(params.catalogue), params.model.inpaint_base)
        return log_adapter_model(layout.adapter_dir, params.model.base, resolve_base(params.model),
                                 params.eval.num_inference_steps, params.eval.guidance_scale, bundle)

    version, reused = registry.register(client, name, run_id, log_model)
    have = (client.get_model_version(name, version.version).tags or {}) if reused else {}
    for k, v in _version_tags(params, client, run_id, evaluation).items():
        if k not in have:  # a reused version keeps what it has (e.g. a rescore), gets what it lacks
            client.set_model_version_tag(name, version.version, k, v)
    return client.get_model_version(name, version.version)


def register_challenger(params: Params, client=None):
    """Log the adapter (pyfunc) into its training run and register it with tags + alias challenger.

    Idempotent: the same training run is registered once; a reused version gets missing tags back."""
    client = client or registry.client(params)
    version = _find_or_register(params, client, _train_run(params, client))
    client.set_registered_model_alias(params.promotion.registered_model, CHALLENGER, version.version)
    return client.get_model_version(params.promotion.registered_model, version.version)


def rescore(params: Params, version, client) -> dict:
    """Score a registered version on the current val data; update its tags. Returns metrics."""
    import mlflow

    from landmark_lora.scoring import eval_fingerprint, score_adapter

    pin_threads(params.eval.threads)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="adapter", dst_path=tmp)
        metrics, _ = score_adapter(params, Path(local), base_metrics=False)  # the base's are evaluate's
    current = data_version(Layout.of(params))
    name = params.promotion.registered_model
    for k in METRIC_KEYS:
        if finite(metrics.get(k)):
            client.set_model_version_tag(name, version.version, k, str(metrics[k]))
    client.set_model_version_tag(name, version.version, "data_version", current)
    client.set_model_version_tag(name, version.version, "eval_fingerprint", eval_fingerprint(params, current))
    client.set_model_version_tag(name, version.version, "rescored_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
    # with the scoring's wall time per part: its generation loops are not the nightly run's overhead
    return {**{k: metrics[k] for k in METRIC_KEYS if k in metrics}, "seconds": metrics.get("seconds", {})}


# Tags a promote attempt may change on a version that existed before it (restored on failure).
_DECISION_TAGS = ("promotion_decision", "promotion_reason", "previous_champion", "rolled_back")


@locked("landmark-lora promote")
def promote(params: Params, force: bool = False, log: Callable[[str], None] = _log.info,
            allow_unreproducible: bool = False) -> dict:
    """Register the last training run's adapter as challenger and judge it; all or nothing.

    The one promote path (CLI `landmark-lora promote` and the flow). Under the pipeline lock.
    A failure at any point leaves the registry as it was: the champion (and challenger) alias
    back where they were, no version this attempt created, no half-tagged version. A version
    left undecided by a crashed earlier attempt (kill -9) is removed first. Promoting what is
    already champion is a no-op that says so; a rolled-back version is not judged again unless
    ``force`` (it then faces the gates and the champion like any challenger). A version tagged
    ``reproducible=false`` (ops/lineage.py) is registered but becomes champion only with
    ``allow_unreproducible`` or ``promotion.allow_unreproducible``."""
    client = registry.client(params)
    name = params.promotion.registered_model
    train = _train_run(params, client, log)
    run_id = str(train.run_id)
    discard_half_registered(params, run_id, log, client)
    before = {v.version: dict(v.tags or {}) for v in run_versions(client, name, run_id)}
    aliases_before = {a: alias(client, name, a) for a in (CHAMPION, CHALLENGER)}
    try:
        return _promote(params, client, force, train, allow_unreproducible or params.promotion.allow_unreproducible)
    except BaseException:
        try:
            _undo(client, name, run_id, before, aliases_before, log)
        except Exception as err:  # the registry may be what is down; the next attempt cleans up
            log(f"promote: could not clean up after the failure ({err}); the next run will")
        raise


def _undo(client, name: str, run_id: str, before: dict[str, dict], aliases_before: dict, log) -> None:
    """Put the registry back as it was before a failed attempt."""
    for alias_name, version in aliases_before.items():
        now = alias(client, name, alias_name)
        if version is None and now is not None:
            client.delete_registered_model_alias(name, alias_name)
        elif version is not None and (now is None or now.version != version.version):
            client.set_registered_model_alias(name, alias_name, version.version)
    for v in run_versions(client, name, run_id):
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


def _promote(params: Params, client, force: bool, train: Resolved, allow_unreproducible: bool) -> dict:
    name = params.promotion.registered_model
    challenger = _find_or_register(params, client, train)
    chall_metrics = version_metrics(challenger)
    champion = alias(client, name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        return _unchanged(params, challenger, champion, f"version {challenger.version} is already champion: nothing to do")
    rolled_back = (challenger.tags or {}).get("rolled_back") == "true"
    if rolled_back and not force:
        why = (challenger.tags or {}).get("rollback_reason", "")
        return _unchanged(params, challenger, champion,
                          f"version {challenger.version} was rolled back ({why or 'no reason given'}): not promoted "
                          "again; train a new run, or ask for it with `landmark-lora promote --force`")
    client.set_registered_model_alias(name, CHALLENGER, challenger.version)
    current = data_version(Layout.of(params))
    champ_metrics, why = None, None
    if champion is not None:
        why = rescore_reason(champion.tags or {}, current, (challenger.tags or {}).get("eval_fingerprint") or None)
        champ_metrics = rescore(params, champion, client) if why else version_metrics(champion)
    gates = sanity_gates(chall_metrics, Layout.of(params).adapter_dir, params)
    decision = decide(chall_metrics, champ_metrics, params, gates)
    refusal = unreproducible_refusal(challenger.tags or {}, allow_unreproducible)
    if refusal:  # whatever the comparison said (it stays in the checks)
        decision = Decision(False, refusal, [*decision.checks, f"comparison: {decision.reason}"])
    if why:
        decision.checks.append(f"champion version {champion.version} was scored again first: {why}")
    if rolled_back:
        decision.checks.append(f"version {challenger.version} had been rolled back; judged again on request (--force)")
    return _record(params, client, challenger, champion, decision, chall_metrics, champ_metrics, why)


def _record(params, client, challenger, champion, decision: Decision, chall_metrics, champ_metrics,
            rescored: str | None) -> dict:
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
    now_champion = alias(client, name, CHAMPION)
    report = {
        "decision": "promoted" if decision.promote else "rejected",
        "reason": decision.reason,
        "checks": decision.checks,
        "challenger": {"version": str(challenger.version), "run_id": challenger.run_id, "metrics": chall_metrics},
        "previous_champion": None if champion is None else {
            "version": str(champion.version), "run_id": champion.run_id, "metrics": champ_metrics, "rescored": bool(rescored),
            "rescore_reason": rescored},
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
                       "metrics": version_metrics(challenger)},
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
    client = registry.client(params)
    name = params.promotion.registered_model
    champion = alias(client, name, CHAMPION)
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
    layout = Layout.of(params)
    if isinstance(report.get("challenger"), dict):  # the id the reports name (differs once re-logged: runcache)
        report["challenger"]["reported_run_id"] = TrainReport.read(layout.train_json).mlflow_run_id
    path = layout.promotion_json
    fsutil.write_json_atomic(path, report, indent=2, default=str)


__all__ = ["Decision", "PromotionError", "decide", "discard_half_registered", "promote", "register_challenger",
           "rescore", "rollback", "sanity_gates"]
