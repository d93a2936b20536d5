"""promotion.guard_tolerance names metrics: a misspelt one fails loudly instead of switching its guard off."""

from __future__ import annotations

import pytest

from landmark_lora.config import ConfigError, parse_params


def test_misspelt_guard_metric_is_named_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        parse_params({"promotion": {"guard_tolerance": {"backgroud_consistency": 0.05}}}, source="params.yaml")
    msg = str(err.value)
    assert "params.yaml: promotion.guard_tolerance.backgroud_consistency: unknown key" in msg
    assert "did you mean 'background_consistency'" in msg


def test_unguessable_guard_metric_lists_the_known_ones():
    from landmark_lora.config import GUARD_METRICS

    with pytest.raises(ConfigError) as err:
        parse_params({"promotion": {"guard_tolerance": {"vibes": 0.1}}})
    assert "background_consistency" in GUARD_METRICS and "shot_agreement" in GUARD_METRICS
    assert f"promotion.guard_tolerance.vibes: unknown key (known keys: {', '.join(GUARD_METRICS)})" \
        in str(err.value)


def test_known_guards_and_an_empty_mapping_load():
    from landmark_lora.config import GUARD_METRICS

    params = parse_params({"promotion": {"guard_tolerance": {"shot_agreement": 0.2}}})
    assert params.promotion.guard_tolerance == {"shot_agreement": 0.2}
    assert parse_params({"promotion": {"guard_tolerance": {}}}).promotion.guard_tolerance == {}
    # on by default: the two image guards; the label accuracies are opt-in (they may be refused)
    assert set(parse_params({}).promotion.guard_tolerance) == {"background_consistency", "shot_agreement"}
    assert set(parse_params({}).promotion.guard_tolerance) <= set(GUARD_METRICS)


def test_every_guard_metric_reaches_the_decision():
    """A guard is only real when promote carries its metric from the registry tags into decide()."""
    from landmark_lora.config import GUARD_METRICS
    from landmark_lora.registry import METRIC_KEYS

    assert set(GUARD_METRICS) <= set(METRIC_KEYS)
