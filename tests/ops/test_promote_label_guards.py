"""Promotion can guard on the offline classifier metrics; a misspelt guard is a params error."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from landmark_lora.config import ConfigError, parse_params
from landmark_lora.ops.promote_rules import decide
from landmark_lora.registry import version_metrics as _version_metrics

GOOD = {"eval_loss": 1.00, "background_consistency": 0.50, "shot_agreement": 0.60, "output_change": 0.05,
        "landmark_accuracy": 0.9, "angle_accuracy": 0.7}


def test_registry_tags_carry_the_label_metrics_for_the_champion():
    # the champion's metrics are read back from its version tags: a guard on a metric missing
    # there could never compare, so it would never block anything
    version = SimpleNamespace(tags={"eval_loss": "1.0", "landmark_accuracy": "0.9", "angle_accuracy": "0.7",
                                    "pose_accuracy": "0.3", "git_sha": "abc"})
    assert _version_metrics(version) == {"eval_loss": 1.0, "landmark_accuracy": 0.9, "angle_accuracy": 0.7,
                                         "pose_accuracy": 0.3}


def test_landmark_accuracy_guard_blocks_a_challenger_that_forgets_the_landmark():
    params = parse_params({"promotion": {"guard_tolerance": {"landmark_accuracy": 0.2}}})
    better_loss_worse_landmark = {**GOOD, "eval_loss": 0.8, "landmark_accuracy": 0.5}
    d = decide(better_loss_worse_landmark, GOOD, params, [])
    assert not d.promote and "guard landmark_accuracy regressed" in d.reason
    assert decide({**GOOD, "eval_loss": 0.8, "landmark_accuracy": 0.8}, GOOD, params, []).promote
    # refused (no calibration): not comparable, so it neither blocks nor passes silently
    d = decide({**GOOD, "eval_loss": 0.8, "landmark_accuracy": None}, GOOD, params, [])
    assert d.promote and any("landmark_accuracy: not comparable" in c for c in d.checks)


def test_unknown_guard_metric_is_a_params_error_naming_it():
    with pytest.raises(ConfigError, match="landmark_acuracy"):
        parse_params({"promotion": {"guard_tolerance": {"landmark_acuracy": 0.2}}})
