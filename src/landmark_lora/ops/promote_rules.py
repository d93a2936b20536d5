"""What promote decides, as pure functions: the sanity gates and the comparison with the champion.

    from landmark_lora.ops.promote_rules import decide, sanity_gates
    problems = sanity_gates(metrics, Path("models/adapter"), params)   # [] = the adapter may be promoted
    decision = decide(challenger_metrics, champion_metrics_or_None, params, problems)
    decision.promote, decision.reason, decision.checks
    rescore_reason(champion.tags, data_version, fingerprint)   # why the champion is scored again, or None

The rules (in order) are in landmark_lora.ops.promote's docstring; promote calls these and
writes what they say to the registry and reports/promotion.json.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from landmark_lora.artifacts import ADAPTER_WEIGHTS, TOKEN_EMBEDDINGS
from landmark_lora.config import Params


@dataclass
class Decision:
    promote: bool
    reason: str
    checks: list[str] = field(default_factory=list)


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def sanity_gates(metrics: dict, adapter_dir: Path | None, params: Params) -> list[str]:
    """Problems that forbid promotion, whatever the comparison says. [] = passes."""
    cfg = params.promotion
    problems = []
    loss = metrics.get("eval_loss")
    if not finite(loss):
        problems.append(f"eval_loss is {loss} (not finite): the adapter diverged")
    elif loss > cfg.max_eval_loss:
        problems.append(f"eval_loss {loss:.4f} > promotion.max_eval_loss {cfg.max_eval_loss}: diverged")
    change = metrics.get("output_change")
    if not finite(change):
        problems.append("the adapter was not evaluated (no output_change): it may not load")
    elif change < cfg.min_output_change:
        problems.append(f"the adapter barely changes the output ({change:.5f} < promotion.min_output_change {cfg.min_output_change})")
    if adapter_dir is not None:
        weight_problems = adapter_weight_problems(adapter_dir)
        problems += weight_problems
        if not weight_problems:
            from landmark_lora.diffusion.components import resolve_base

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
        problems += embedding_problems(adapter_dir, params)
    return problems


def embedding_problems(adapter_dir: Path, params: Params) -> list[str]:
    """The blow-up gate of trained token embeddings (``lora.train_token_embeddings``): none is
    longer than ``promotion.max_embedding_ratio`` x the base's mean token-embedding norm."""
    path = Path(adapter_dir) / TOKEN_EMBEDDINGS
    if not path.is_file():
        return []
    from landmark_lora.diffusion.components import resolve_base
    from landmark_lora.diffusion.token_embeddings import embedding_ratio

    limit = params.promotion.max_embedding_ratio
    try:
        ratio, token = embedding_ratio(path, resolve_base(params.model))
    except Exception as err:  # a truncated or foreign file: the adapter cannot be trusted
        return [f"{path}: cannot read the trained token embeddings ({err})"]
    if ratio > limit:
        return [f"the trained embedding of {token!r} is {ratio:.1f}x the base's mean token-embedding norm "
                f"(> promotion.max_embedding_ratio {limit}): training blew up"]
    return []


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

    path = Path(adapter_dir) / ADAPTER_WEIGHTS
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

    path = Path(adapter_dir) / ADAPTER_WEIGHTS
    try:
        tensors = load_file(str(path))
    except Exception as err:  # unreadable = unloadable
        return [f"{path} does not load: {err}"]
    if not tensors:
        return [f"{path} holds no tensors"]
    bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
    return [f"{len(bad)} LoRA tensor(s) hold NaN/inf, e.g. {bad[0]}"] if bad else []


def rescore_reason(champion_tags: Mapping[str, str], data_version: str, fingerprint: str | None) -> str | None:
    """Why the champion's stored score cannot be compared with the challenger's, so it must be
    scored again first; None when both were scored the same way (same eval fingerprint:
    scoring.eval_fingerprint). A champion with no fingerprint recorded is scored again."""
    old_data = champion_tags.get("data_version")
    if old_data != data_version:
        return f"the champion was scored on data version {old_data or 'unknown'}, the challenger on {data_version}"
    old = champion_tags.get("eval_fingerprint")
    if fingerprint is not None and old != fingerprint:
        return (f"the champion was scored under eval fingerprint {old or '(none recorded)'}, the challenger under "
                f"{fingerprint} (model.base, eval.*, train.eval_*, caption or the metrics code changed)")
    return None


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
        if not (finite(a) and finite(b)):
            checks.append(f"{metric}: not comparable ({a} vs {b}); skipped")
            continue
        drop = b - a
        checks.append(f"{metric} {a:.4f} vs champion {b:.4f} (drop {drop:+.4f}, tolerance {tol})")
        if drop > tol:
            return Decision(False, f"guard {metric} regressed beyond tolerance: {checks[-1]}", checks)
    return Decision(True, f"better than the champion: {checks[0]}; guards held", checks)

