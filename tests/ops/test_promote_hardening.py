"""Registry hardening (issue 10, points 1-4; issue 18 item 7), on a real MLflow SQLite registry:
a rollback sticks, promote is one all-or-nothing and idempotent path (CLI and flow alike), a
half-registered version is repaired, the blow-up gate sees every LoRA pair, and synthetic
sample data never lands beside a champion or a DVC-versioned dataset.

Two tiny training runs are made once for the module; each test judges them in its own
registered model (``promotion.registered_model``), so tests do not share registry state.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_promote import FAST

from landmark_lora.config import parse_params
from tests.helpers.tiny_data import write_processed
from tests.helpers.tiny_params import deep_merge as _deep_merge
from tests.helpers.workspace import inside

NAME_TAGS = ("git_sha", "data_version", "base_model", "eval_loss", "mlflow_run_id")


def _train_and_evaluate(params) -> dict:
    from landmark_lora.stages.evaluate import evaluate
    from landmark_lora.stages.train import run_training

    run_training(params)
    return evaluate(params)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A workspace with two finished pipeline runs, snapshotted (train.json, eval.json, adapter).

    Run "worse" is a real train + evaluate on the tiny base. Run "better" is a second MLflow run
    with the same adapter and an eval_loss 10 % lower (a second training costs minutes on a busy
    2-core machine; the registry logic under test only reads the run id, metrics and adapter)."""
    import mlflow

    from landmark_lora.stages.cache_latents import cache_latents
    from landmark_lora.tracking import configure

    root = tmp_path_factory.mktemp("hardening")
    write_processed(root)
    with inside(root):
        params = parse_params(FAST)
        cache_latents(params)
        _train_and_evaluate(params)
        snaps = {}
        for which in ("worse", "better"):
            snap = root / "snapshots" / which
            snap.mkdir(parents=True)
            shutil.copytree(root / "models" / "adapter", snap / "adapter")
            train = json.loads((root / "reports/train.json").read_text())
            evaluation = json.loads((root / "reports/eval.json").read_text())
            if which == "better":
                experiment = configure(params.mlflow)
                original = mlflow.MlflowClient().get_run(train["mlflow_run_id"])
                with mlflow.start_run(experiment_id=experiment, tags=dict(original.data.tags)) as run:
                    pass
                train["mlflow_run_id"] = evaluation["mlflow_run_id"] = run.info.run_id
                evaluation["eval_loss"] = evaluation["eval_loss"] * 0.9
            (snap / "train.json").write_text(json.dumps(train))
            (snap / "eval.json").write_text(json.dumps(evaluation))
            snaps[which] = snap
    return {"root": root, "snaps": snaps, "worse": "worse", "better": "better"}


@pytest.fixture
def ws(runs, monkeypatch, request):
    """chdir into the workspace; ``ws.use("worse"|"better")`` makes that run the last finished
    pipeline run; ``ws.params`` judge into a registered model of this test's own."""
    import mlflow

    monkeypatch.chdir(runs["root"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    name = "t-" + request.node.name.replace("_", "-")[:60]

    class WS:
        root = runs["root"]
        worse, better = runs["worse"], runs["better"]
        model = name
        params = parse_params(_deep_merge(FAST, {"promotion": {"registered_model": name}}))
        client = mlflow.MlflowClient()

        @staticmethod
        def use(which: str) -> str:
            snap = runs["snaps"][which]
            for f in ("train.json", "eval.json"):
                shutil.copy2(snap / f, runs["root"] / "reports" / f)
            shutil.rmtree(runs["root"] / "models" / "adapter")
            shutil.copytree(snap / "adapter", runs["root"] / "models" / "adapter")
            return json.loads((snap / "train.json").read_text())["mlflow_run_id"]

        def champion(self) -> str | None:
            try:
                return str(self.client.get_model_version_by_alias(name, "champion").version)
            except Exception:
                return None

        def versions(self) -> list:
            return sorted(self.client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))

    return WS()


# ---------------------------------------------------------------- 1. a rollback sticks


def test_a_rollback_survives_the_next_run_and_only_force_undoes_it(ws):
    from landmark_lora.ops.promote import promote, rollback
    from landmark_lora.retrain.cleanup import promote_all_or_nothing
    from landmark_lora.retrain.detect import unpromoted_run

    ws.use(ws.worse)
    assert promote(ws.params)["champion"] == "1"
    better_run = ws.use(ws.better)
    second = promote(ws.params)
    assert second["decision"] == "promoted" and ws.champion() == "2", second

    report = rollback(ws.params, "faces look wrong")
    assert ws.champion() == "1"
    # the nightly run with zero new photos: nothing waits for promotion ...
    assert unpromoted_run(ws.params) is None
    # ... the rollback report keeps what it rolled back ...
    saved = json.loads(Path("reports/promotion.json").read_text())
    assert saved["rolled_back"] == {"version": "2", "run_id": better_run} == report["rolled_back"]
    # ... and even a promote of that run (flow path, CLI path) keeps the rollback and says why
    for again in (promote_all_or_nothing(ws.params, log=lambda _: None), promote(ws.params)):
        assert ws.champion() == "1", "the rolled-back version was promoted again"
        assert again["decision"] == "unchanged" and "rolled back" in again["reason"], again
        assert "faces look wrong" in again["reason"]
    assert ws.client.get_model_version(ws.model, "2").tags["promotion_decision"] == "promoted"

    # asked for explicitly: judged again (gates and comparison apply) and promoted
    forced = promote(ws.params, force=True)
    assert forced["decision"] == "promoted" and ws.champion() == "2", forced
    assert any("judged again on request" in c for c in forced["checks"])
    assert "rolled_back" not in ws.client.get_model_version(ws.model, "2").tags


# ---------------------------------------------------------------- 2. one all-or-nothing, idempotent path


def test_promoting_the_champion_again_is_a_noop_that_says_so(ws):
    from landmark_lora.ops.promote import promote

    ws.use(ws.worse)
    first = promote(ws.params)
    assert first["decision"] == "promoted"
    again = promote(ws.params)
    assert again["decision"] == "unchanged" and "already champion" in again["reason"], again
    tags = ws.client.get_model_version(ws.model, first["challenger"]["version"]).tags
    assert tags["promotion_decision"] == "promoted", "the champion was re-tagged by a second promote"
    assert len(ws.versions()) == 1 and ws.champion() == "1"


def test_a_promote_that_fails_after_the_champion_moved_restores_the_previous_champion(ws, monkeypatch):
    """Issue 18 item 7: the champion alias has moved, then the report cannot be written."""
    from landmark_lora.ops import promote as promote_mod

    ws.use(ws.worse)
    promote_mod.promote(ws.params)
    assert ws.champion() == "1"
    ws.use(ws.better)
    moved = []

    def disk_full(params, report):
        moved.append(ws.champion())
        raise OSError(28, "No space left on device")

    real_write = promote_mod._write
    monkeypatch.setattr(promote_mod, "_write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        promote_mod.promote(ws.params)
    assert moved == ["2"], "the failure was meant to come after the champion alias moved"
    assert ws.champion() == "1"
    assert [str(v.version) for v in ws.versions()] == ["1"], "the failed attempt's version is still there"
    assert str(ws.client.get_model_version_by_alias(ws.model, "challenger").version) == "1"
    monkeypatch.setattr(promote_mod, "_write", real_write)
    retry = promote_mod.promote(ws.params)
    assert retry["decision"] == "promoted" and ws.champion() == retry["challenger"]["version"]


_CRASH_AFTER_REGISTER = textwrap.dedent("""
    import os, sys
    from mlflow.tracking import MlflowClient
    from landmark_lora.config import parse_params
    from landmark_lora.ops.promote import promote
    import json

    def crash(*args, **kwargs):  # the process dies between register_model and the first tag
        os._exit(9)

    MlflowClient.set_model_version_tag = crash
    promote(parse_params(json.loads(sys.argv[1])))
""")


def test_a_crash_between_registering_and_tagging_does_not_poison_later_runs(ws):
    from landmark_lora.ops.promote import promote, register_challenger

    ws.use(ws.worse)
    raw = _deep_merge(FAST, {"promotion": {"registered_model": ws.model}})
    proc = subprocess.run([sys.executable, "-c", _CRASH_AFTER_REGISTER, json.dumps(raw)], cwd=ws.root,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 9, proc.stderr[-2000:]
    half = ws.versions()
    assert len(half) == 1 and "eval_loss" not in half[0].tags  # registered, never tagged

    report = promote(ws.params)
    assert report["decision"] == "promoted", report  # judged on its metrics, not "eval_loss is None"
    version = ws.client.get_model_version(ws.model, report["challenger"]["version"])
    for tag in NAME_TAGS:
        assert version.tags.get(tag), tag

    # a reused version gets its missing tags re-applied (and keeps the ones it has)
    for tag in ("eval_loss", "git_sha"):
        ws.client.delete_model_version_tag(ws.model, version.version, tag)
    again = register_challenger(ws.params, ws.client)
    assert again.version == version.version
    assert again.tags["eval_loss"] == version.tags["eval_loss"] and again.tags["git_sha"] == version.tags["git_sha"]
    assert again.tags["promotion_decision"] == "promoted"


# ---------------------------------------------------------------- 3. the blow-up gate sees every LoRA pair


def _base_module(folder: str, needle: str, dims: int) -> tuple[str, torch.Tensor]:
    from landmark_lora.diffusion.components import resolve_base

    base = resolve_base(FAST_PARAMS.model)
    weights = {}
    for f in sorted((base / folder).glob("*.safetensors")):
        weights.update(load_file(str(f)))
    key = next(k for k in sorted(weights) if needle in k and k.endswith(".weight") and weights[k].dim() == dims)
    return key[: -len(".weight")], weights[key]


FAST_PARAMS = parse_params(FAST)


def _pair(weight: torch.Tensor, scale: float, rank: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, up) whose product is ``scale`` times the size of ``weight``, any layer shape."""
    out, rest = weight.shape[0], weight[0].numel()
    down = torch.randn(rank, rest, generator=torch.Generator().manual_seed(0))
    up = torch.randn(out, rank, generator=torch.Generator().manual_seed(1))
    delta = up @ down
    k = (scale * weight.float().norm() / delta.norm()).sqrt()
    down, up = down * k, up * k
    if weight.dim() == 4:
        return down.reshape(rank, *weight.shape[1:]), up.reshape(out, rank, 1, 1)
    return down, up


@pytest.mark.parametrize("fmt", ["peft", "diffusers", "kohya"])
@pytest.mark.parametrize("target", ["ff.net.2", "proj_in", "text_encoder q_proj"])
def test_the_blow_up_gate_checks_every_lora_pair_whatever_its_key_format(tmp_path, fmt, target):
    from landmark_lora.diffusion.components import resolve_base
    from landmark_lora.ops.promote_rules import lora_delta_ratio

    folder = "text_encoder" if target.startswith("text_encoder") else "unet"
    module, weight = _base_module(folder, target.split()[-1], 4 if target == "proj_in" else 2)
    for scale, blown in ((0.1, False), (50.0, True)):
        down, up = _pair(weight, scale)
        if fmt == "kohya":
            name = {"unet": "lora_unet_", "text_encoder": "lora_te_"}[folder] + \
                module.removeprefix("text_model.").replace(".", "_")
            tensors = {f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up,
                       f"{name}.alpha": torch.tensor(2.0)}
        else:
            a, b = ("lora_A", "lora_B") if fmt == "peft" else ("lora.down", "lora.up")
            tensors = {f"{folder}.{module}.{a}.weight": down, f"{folder}.{module}.{b}.weight": up}
        adapter = tmp_path / f"{fmt}-{scale}"
        adapter.mkdir()
        save_file(tensors, str(adapter / "pytorch_lora_weights.safetensors"), metadata={"rank": "2", "alpha": "2"})
        ratio = lora_delta_ratio(adapter, resolve_base(FAST_PARAMS.model))
        assert (ratio > FAST_PARAMS.promotion.max_delta_ratio) is blown, (fmt, target, scale, ratio)
        assert abs(ratio - scale) / scale < 1e-3, (fmt, target, scale, ratio)


def test_a_sabotaged_run_on_ff_proj_in_and_the_text_encoder_fails_the_gate(ws):
    from landmark_lora.ops.promote_rules import sanity_gates
    from landmark_lora.stages.train import run_training

    good = {"eval_loss": 1.0, "output_change": 0.05}
    sabotage = parse_params(_deep_merge(FAST, {
        "lora": {"targets": ["ff.net.2", "proj_in"], "text_encoder": True},
        "train": {"learning_rate": 5.0, "max_steps": 2, "eval_every": 2}}))
    try:
        run_training(sabotage)
        tensors = load_file("models/adapter/pytorch_lora_weights.safetensors")
        unet = [k for k in tensors if k.startswith("unet.")]
        assert unet and all(".ff.net.2." in k or ".proj_in." in k for k in unet), unet
        assert any(k.startswith("text_encoder.") for k in tensors)
        problems = sanity_gates(good, Path("models/adapter"), sabotage)
        assert any("blew up" in p for p in problems), problems
        # every pair was measured, the text encoder's too (its base file may drop "text_model.")
        from landmark_lora.diffusion.components import resolve_base
        from landmark_lora.ops.promote_rules import lora_delta

        delta = lora_delta(Path("models/adapter"), resolve_base(sabotage.model))
        assert not delta.unchecked and delta.checked == sum(k.endswith(".lora_A.weight") for k in tensors), delta
    finally:
        ws.use(ws.worse)


def test_a_healthy_run_passes_the_gate_with_every_pair_checked(ws):
    from landmark_lora.diffusion.components import resolve_base
    from landmark_lora.ops.promote_rules import lora_delta, sanity_gates

    ws.use(ws.worse)
    delta = lora_delta(Path("models/adapter"), resolve_base(ws.params.model))
    n_pairs = sum(k.endswith((".lora_A.weight", ".lora.down.weight"))
                  for k in load_file("models/adapter/pytorch_lora_weights.safetensors"))
    assert delta.checked == n_pairs > 0 and not delta.unchecked, delta
    assert 0 < delta.worst < ws.params.promotion.max_delta_ratio
    assert not sanity_gates({"eval_loss": 1.0, "output_change": 0.05}, Path("models/adapter"), ws.params)


# ---------------------------------------------------------------- 4. synthetic data: the embedded default only


def test_no_sample_data_beside_a_champion(ws, capsys):
    from landmark_lora.ops.promote import promote
    from landmark_lora.retrain.intake import render_sample_if_empty

    ws.use(ws.worse)
    promote(ws.params)
    params = parse_params(_deep_merge(FAST, {"promotion": {"registered_model": ws.model},
                                             "paths": {"incoming": "empty/incoming", "raw": "empty/raw"}}))
    try:
        assert render_sample_if_empty(params, log=print) == 0
        assert not Path("empty/incoming").exists() or not any(Path("empty/incoming").rglob("*.png"))
        assert "has a champion (version 1)" in capsys.readouterr().out
    finally:
        shutil.rmtree("empty", ignore_errors=True)


def test_no_sample_data_when_the_dataset_is_versioned_by_dvc(tmp_path, make_params, capsys):
    from landmark_lora.retrain.intake import render_sample_if_empty

    catalogue = tmp_path / "one-landmark.yaml"
    catalogue.write_text("- slug: gyeongbokgung\n  name_en: Gyeongbokgung Palace\n  name_ko: 경복궁\n"
                         "  description: Joseon royal palace\n", encoding="utf-8")
    params = make_params(tmp_path, catalogue=str(catalogue), sample_data={"poses_per_view": 1},
                         mlflow={"tracking_uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db",
                                 "artifact_location": str(tmp_path / "mlruns/artifacts")})
    (tmp_path / "data").mkdir()
    (tmp_path / "data/raw.dvc").write_text("outs:\n- md5: 0123456789abcdef.dir\n  path: raw\n")
    assert render_sample_if_empty(params, log=print) == 0
    assert "raw.dvc exists" in capsys.readouterr().out
    assert not any(Path(params.paths.incoming).rglob("*.*")) if Path(params.paths.incoming).exists() else True
    # a fresh clone (no raw.dvc, no champion) still gets its sample set
    (tmp_path / "data/raw.dvc").unlink()
    assert render_sample_if_empty(params, log=print) > 0
