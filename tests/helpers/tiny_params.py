"""The tiny training recipe the stage and ops tests share (4 steps on the random tiny base).

    from tests.helpers.tiny_params import TINY_TRAIN, deep_merge
    params = parse_params(deep_merge(TINY_TRAIN, {"lora": {"rank": 2}}))
"""

from __future__ import annotations

TINY_TRAIN = {
    "train": {"max_steps": 4, "batch_size": 2, "eval_every": 2, "checkpoint_every": 2, "warmup_steps": 1,
              "eval_timesteps": [200, 600]},
    "mlflow": {"system_metrics": False},
    # the stage and ops tests run in plain temp folders (no git, no DVC): their versions are
    # tagged reproducible=false, which must not stop them becoming champion
    "promotion": {"allow_unreproducible": True},
}


def deep_merge(a: dict, b: dict) -> dict:
    """``b`` over ``a``, section by section (nested dicts merged, everything else replaced)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
