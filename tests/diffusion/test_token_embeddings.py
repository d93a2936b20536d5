"""lora.train_token_embeddings (pivotal tuning): the landmark names get trained token embeddings,
saved beside the LoRA, loaded by every consumer (evaluate, serving, promote's rescoring all go
through diffusion.pipeline.load_adapter) and guarded by promote's blow-up gate.

Trains on the random tiny base: a few steps, seconds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from landmark_lora.config import parse_params
from tests.helpers.tiny_data import write_processed
from tests.helpers.tiny_params import TINY_TRAIN, deep_merge
from tests.helpers.workspace import inside

NAME = "Gyeongbokgung Palace"  # the catalogue's name_en, as captions spell it
RAW = deep_merge(TINY_TRAIN, {"lora": {"train_token_embeddings": True, "token_embedding_lr": 0.05},
                              "train": {"max_steps": 6, "checkpoint_every": 100}})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace trained with token embeddings; returns (root, params)."""
    from landmark_lora.stages.cache_latents import cache_latents
    from landmark_lora.stages.train import run_training

    root = tmp_path_factory.mktemp("ti")
    write_processed(root)
    for split in ("train", "val"):  # the tiny set says "Gyeongbokgung": use the catalogue's full name
        meta = root / "data/processed" / split / "metadata.jsonl"
        meta.write_text(meta.read_text().replace("of Gyeongbokgung", f"of {NAME}"))
    params = parse_params(RAW)
    with inside(root):
        cache_latents(params)
        run_training(params, log_mlflow=False)
    return root, params


def _base(root: Path) -> Path:
    from landmark_lora.diffusion.components import resolve_base

    with inside(root):
        return resolve_base(parse_params(RAW).model).resolve()


def test_training_saves_a_trained_embedding_for_the_landmark_name(trained):
    from landmark_lora.diffusion.components import load_components

    root, _ = trained
    vectors = load_file(str(root / "models/adapter/token_embeddings.safetensors"))
    assert list(vectors) == [NAME]
    parts = load_components(_base(root), text=True)
    pieces = parts.tokenizer(NAME, add_special_tokens=False).input_ids
    start = parts.text_encoder.get_input_embeddings().weight[pieces].mean(0)
    assert vectors[NAME].shape == start.shape
    assert torch.isfinite(vectors[NAME]).all()
    assert (vectors[NAME] - start).norm() > 1e-3 * start.norm()  # it trained away from its initial value


def test_only_the_new_rows_train(tiny_base):
    """The gradient mask and the decay-free group leave every other embedding exactly as it was."""
    from landmark_lora.diffusion import token_embeddings as te
    from landmark_lora.diffusion.components import load_components, token_ids
    from landmark_lora.diffusion.trainer import make_optimizer

    parts = load_components(tiny_base, text=True)
    before = parts.text_encoder.get_input_embeddings().weight.detach().clone()
    start = before[parts.tokenizer(NAME, add_special_tokens=False).input_ids].mean(0)
    ids = te.add_tokens(parts.tokenizer, parts.text_encoder, [NAME])
    for spelling in (NAME, NAME.lower()):  # the whole name is one token, whatever its case
        assert parts.tokenizer(f"in front of {spelling}", add_special_tokens=False).input_ids.count(ids[0]) == 1
    table = te.train_rows(parts.text_encoder, ids)
    assert torch.allclose(table[ids[0]], start)  # it starts as the mean of the pieces it replaces
    optimizer, _ = make_optimizer([], parse_params({"train": {"warmup_steps": 0}}).train, torch.device("cpu"), table, 0.1)
    for _ in range(3):
        out = parts.text_encoder(token_ids(parts, [f"a photo in front of {NAME}", "a street"]))[0]
        out.pow(2).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    after = parts.text_encoder.get_input_embeddings().weight.detach()
    assert torch.equal(after[: before.shape[0]], before)
    assert not torch.allclose(after[ids[0]], start)  # while the name's own row trained


def test_load_adapter_applies_the_embeddings_and_they_change_the_image(trained, generate):
    from landmark_lora.diffusion.pipeline import load_pipeline

    root, _ = trained
    adapter = root / "models/adapter"
    pipe = load_pipeline(_base(root), adapter)
    token = pipe.tokenizer.convert_tokens_to_ids(NAME)
    saved = load_file(str(adapter / "token_embeddings.safetensors"))[NAME]
    assert torch.allclose(pipe.text_encoder.get_input_embeddings().weight[token], saved)
    prompt = f"lmksnap snapshot photo, upper_body shot, in front of {NAME}"
    with_tokens = generate(pipe, prompt)
    lora_only = load_pipeline(_base(root))
    lora_only.load_lora_weights(str(adapter))
    assert np.abs(with_tokens - generate(lora_only, prompt)).mean() > 1e-3


def test_scoring_reads_the_loss_through_the_trained_tokens(trained):
    """held_out_loss runs the text encoder (not the base's cached caption embeddings) once tokens are loaded."""
    from landmark_lora.diffusion.pipeline import load_adapter, load_pipeline
    from landmark_lora.scoring import held_out_loss

    root, params = trained
    with inside(root):
        pipe = load_pipeline(_base(root))
        pipe.load_lora_weights("models/adapter")
        lora_only = held_out_loss(params, pipe)["eval_loss"]
        pipe = load_pipeline(_base(root))
        assert load_adapter(pipe, "models/adapter") == [NAME]
        assert held_out_loss(params, pipe)["eval_loss"] != lora_only
        report = json.loads(Path("reports/train.json").read_text())
    assert report["eval_loss"] == pytest.approx(held_out_loss_of(root, params), rel=1e-4)


def held_out_loss_of(root: Path, params) -> float:
    """The evaluate stage's eval_loss for the trained adapter (it must match what training logged)."""
    from landmark_lora.diffusion.pipeline import load_pipeline
    from landmark_lora.scoring import held_out_loss

    with inside(root):
        return held_out_loss(params, load_pipeline(_base(root), "models/adapter"))["eval_loss"]


def test_gate_refuses_blown_up_embeddings_and_passes_the_trained_ones(trained, tmp_path):
    from landmark_lora.ops.promote_rules import embedding_problems

    root, params = trained
    adapter = tmp_path / "adapter"
    shutil.copytree(root / "models/adapter", adapter)
    with inside(root):
        assert embedding_problems(adapter, params) == []
        vectors = load_file(str(adapter / "token_embeddings.safetensors"))
        save_file({k: v * 1000 for k, v in vectors.items()}, str(adapter / "token_embeddings.safetensors"))
        problems = embedding_problems(adapter, params)
        assert len(problems) == 1 and NAME in problems[0] and "promotion.max_embedding_ratio" in problems[0]
        save_file({k: v * float("nan") for k, v in vectors.items()}, str(adapter / "token_embeddings.safetensors"))
        assert "max_embedding_ratio" in embedding_problems(adapter, params)[0]
        (adapter / "token_embeddings.safetensors").write_bytes(b"not safetensors")
        assert "cannot read" in embedding_problems(adapter, params)[0]


def test_training_without_them_removes_a_stale_file(trained, tmp_path):
    from landmark_lora.stages.train import run_training

    root, _ = trained
    ws = tmp_path / "ws"
    shutil.copytree(root, ws, ignore=shutil.ignore_patterns("mlruns", ".cache"))
    assert (ws / "models/adapter/token_embeddings.safetensors").is_file()
    with inside(ws):
        run_training(parse_params(deep_merge(RAW, {"lora": {"train_token_embeddings": False},
                                                   "train": {"max_steps": 2}})), log_mlflow=False)
    assert not (ws / "models/adapter/token_embeddings.safetensors").exists()
    assert (ws / "models/adapter/pytorch_lora_weights.safetensors").is_file()


def test_a_resumed_run_ends_with_the_same_embeddings(trained, tmp_path, monkeypatch):
    """Checkpoints carry the trained rows: crash after checkpoint 2, resume, and the tokens match
    an uninterrupted run's."""
    from landmark_lora.diffusion import trainer
    from landmark_lora.stages.train import run_training

    root, _ = trained
    raw = deep_merge(RAW, {"train": {"max_steps": 4, "checkpoint_every": 2}})
    save = trainer.save_checkpoint

    def save_then_crash(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt("killed after the first checkpoint")

    finals = []
    for crash in (False, True):
        ws = tmp_path / f"ws-{crash}"
        shutil.copytree(root, ws, ignore=shutil.ignore_patterns("mlruns", ".cache", "models"))
        shutil.copytree(root / "models", ws / "models", ignore=shutil.ignore_patterns("adapter"))
        with inside(ws):
            if crash:
                monkeypatch.setattr(trainer, "save_checkpoint", save_then_crash)
                with pytest.raises(KeyboardInterrupt):
                    run_training(parse_params(raw), log_mlflow=False)
                monkeypatch.setattr(trainer, "save_checkpoint", save)
            result = run_training(parse_params(raw), log_mlflow=False)
            assert result.resumed_from == (2 if crash else 0)
        finals.append(load_file(str(ws / "models/adapter/token_embeddings.safetensors"))[NAME])
    assert torch.allclose(finals[0], finals[1], atol=1e-6)
