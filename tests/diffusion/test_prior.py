"""``train.prior``: the base's own images at every shot type, drawn once, cached, trained beside the photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from landmark_lora.config import ConfigError, parse_params
from tests.helpers.tiny_data import cached_workspace
from tests.helpers.tiny_params import TINY_TRAIN, deep_merge


def test_prior_prompts_cover_every_shot_type_and_cycle_the_angles():
    from landmark_lora.diffusion.prior import prior_prompts

    params = parse_params({"train": {"prior": {"per_shot": 3, "prompt": "photo, {shot}, {angle}"}}})
    prompts = prior_prompts(params)
    words = params.caption
    assert len(prompts) == 3 * len(words.shot_words)
    for shot in words.shot_words.values():
        assert sum(shot in p for p in prompts) == 3
    assert {p.split(", ")[2] for p in prompts} == set(words.angle_words.values())
    assert prior_prompts(parse_params({})) == []  # off by default


def test_a_prompt_with_an_unknown_placeholder_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"train\.prior\.prompt.*\{shot\} and \{angle\}"):
        parse_params({"train": {"prior": {"prompt": "photo of {landmark}"}}})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return cached_workspace(tmp_path_factory.mktemp("ws-prior"), TINY_TRAIN)


def _train(**prior):
    from safetensors.torch import load_file

    from landmark_lora.stages.train import run_training

    params = parse_params(deep_merge(TINY_TRAIN, {"train": {"prior": prior}} if prior else {}))
    run_training(params, log_mlflow=False)
    return load_file("models/adapter/pytorch_lora_weights.safetensors"), json.loads(Path("reports/train.json").read_text())


def test_the_prior_is_drawn_once_cached_and_changes_what_the_lora_learns(workspace, monkeypatch):
    import torch
    from safetensors import safe_open

    from landmark_lora.diffusion import prior

    monkeypatch.chdir(workspace)
    off, _ = _train()
    weighted, report = _train(per_shot=2, weight=1.0, batch=2, steps=2)

    files = list(Path(".cache/prior").glob("*.safetensors"))
    assert len(files) == 1
    with safe_open(str(files[0]), "pt") as fh:
        prompts = json.loads(fh.metadata()["prompts"])
        assert len(prompts) == 2 * 5 and "upper-body shot" in " ".join(prompts)
        latent = fh.get_tensor("0.mean")
    assert latent.shape[0] == 4 and torch.isfinite(latent).all()  # a latent of the tiny base's 4 channels
    assert report["steps"] == 4

    # drawn once: a second run with the same recipe reads the file, it does not draw again
    monkeypatch.setattr(prior, "generate", lambda *a, **k: pytest.fail("drew the prior again"))
    mtime = files[0].stat().st_mtime_ns
    zero, _ = _train(per_shot=2, weight=0.0, batch=2, steps=2)
    assert files[0].stat().st_mtime_ns == mtime

    assert off.keys() == weighted.keys() == zero.keys()
    # weight 0 adds exact zeros to the gradients, and the prior's noise has its own RNG: the photos-only adapter
    assert all(torch.equal(off[k], zero[k]) for k in off)
    # weight 1 trains on the prior too: a different adapter
    assert any(not torch.allclose(off[k], weighted[k]) for k in off)
