"""train.threads / eval.threads: the torch thread count the train and evaluate stages run with."""

from __future__ import annotations

import pytest
import torch

from landmark_lora.config import ConfigError, parse_params
from landmark_lora.env import pin_threads


class _Stop(Exception):
    pass


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_defaults_pin_one_thread_and_null_means_torch_default():
    params = parse_params({})
    assert params.train.threads == 1 and params.eval.threads == 1
    assert parse_params({"train": {"threads": None}, "eval": {"threads": None}}).train.threads is None


@pytest.mark.parametrize("section", ["train", "eval"])
@pytest.mark.parametrize("bad", [0, -2, "two"])
def test_a_bad_thread_count_names_the_key(section, bad):
    with pytest.raises(ConfigError, match=rf"{section}\.threads"):
        parse_params({section: {"threads": bad}}, source="params.yaml")


def test_pin_threads_sets_torch_and_none_leaves_it():
    torch.set_num_threads(2)
    assert pin_threads(None) == 2
    assert pin_threads(1) == 1 and torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="threads"):
        pin_threads(0)


def test_train_stage_trains_with_train_threads(monkeypatch, tmp_path):
    from landmark_lora.stages import train

    seen = []

    def setup(params, layout):
        seen.append(torch.get_num_threads())
        raise _Stop

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train.trainer, "setup", setup)
    torch.set_num_threads(2)
    with pytest.raises(_Stop):
        train.run_training(parse_params({"train": {"threads": 1}}), log_mlflow=False)
    assert seen == [1]


def test_evaluate_stage_scores_with_eval_threads(monkeypatch, tmp_path):
    from landmark_lora.artifacts import Layout
    from landmark_lora.stages import evaluate

    seen = []

    def score(params, adapter_dir):
        seen.append(torch.get_num_threads())
        raise _Stop

    monkeypatch.chdir(tmp_path)
    params = parse_params({"eval": {"threads": 1}})
    Layout.of(params).adapter_weights.parent.mkdir(parents=True)
    Layout.of(params).adapter_weights.write_bytes(b"")
    monkeypatch.setattr(evaluate, "score_adapter", score)
    torch.set_num_threads(2)
    with pytest.raises(_Stop):
        evaluate.evaluate(params)
    assert seen == [1]
