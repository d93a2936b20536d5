"""Promotion: every decision path, the real registry (first champion, sabotaged challenger,
re-scoring the champion on new data, rollback) and offline generation from the champion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from landmark_lora.config import parse_params
from landmark_lora.ops.promote import PromotionError, promote, rollback
from landmark_lora.ops.promote_rules import adapter_weight_problems, decide, sanity_gates
from tests.helpers.tiny_data import write_processed
from tests.helpers.tiny_params import TINY_TRAIN as TINY
from tests.helpers.tiny_params import deep_merge as _deep_merge
from tests.helpers.workspace import inside

GOOD = {"eval_loss": 1.00, "background_consistency": 0.50, "shot_agreement": 0.60, "output_change": 0.05}
P = parse_params({})


# ---------------------------------------------------------------- decision paths (pure)


def test_first_adapter_is_promoted_when_sane():
    d = decide(GOOD, None, P, sanity_gates(GOOD, None, P))
    assert d.promote and "first adapter" in d.reason


@pytest.mark.parametrize("bad,needle", [
    ({"eval_loss": float("nan")}, "not finite"),
    ({"eval_loss": float("inf")}, "not finite"),
    ({"eval_loss": 50.0}, "diverged"),
    ({"output_change": 0.0}, "barely changes the output"),
    ({"output_change": float("nan")}, "may not load"),
])
def test_insane_adapter_is_never_promoted_whatever_the_metrics(bad, needle):
    metrics = {**GOOD, **bad}
    gates = sanity_gates(metrics, None, P)
    assert any(needle in g for g in gates)
    worse_champion = {**GOOD, "eval_loss": 100.0}
    for champion in (None, worse_champion):
        d = decide(metrics, champion, P, gates)
        assert not d.promote and "sanity gates" in d.reason


def test_primary_metric_must_improve_by_the_margin():
    champion = dict(GOOD)
    slightly = {**GOOD, "eval_loss": 0.995}  # 0.5 % better, 1 % needed
    clearly = {**GOOD, "eval_loss": 0.95}
    worse = {**GOOD, "eval_loss": 1.2}
    assert not decide(slightly, champion, P, []).promote
    assert "did not improve enough" in decide(worse, champion, P, []).reason
    d = decide(clearly, champion, P, [])
    assert d.promote and "+5.00%" in d.reason


@pytest.mark.parametrize("guard", ["background_consistency", "shot_agreement"])
def test_guard_regression_beyond_tolerance_blocks_promotion(guard):
    champion = dict(GOOD)
    tol = P.promotion.guard_tolerance[guard]
    within = {**GOOD, "eval_loss": 0.9, guard: GOOD[guard] - tol / 2}
    beyond = {**GOOD, "eval_loss": 0.9, guard: GOOD[guard] - tol * 2}
    assert decide(within, champion, P, []).promote
    d = decide(beyond, champion, P, [])
    assert not d.promote and f"guard {guard} regressed" in d.reason


def test_incomparable_guard_is_skipped_not_fatal():
    d = decide({**GOOD, "eval_loss": 0.9, "shot_agreement": float("nan")}, GOOD, P, [])
    assert d.promote and any("not comparable" in c for c in d.checks)


def test_nan_or_unreadable_weights_are_caught(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    save_file({"a.lora_A.weight": torch.ones(2, 2)}, str(good / "pytorch_lora_weights.safetensors"))
    assert adapter_weight_problems(good) == []
    nan = tmp_path / "nan"
    nan.mkdir()
    save_file({"a.lora_A.weight": torch.tensor([[float("nan")]])}, str(nan / "pytorch_lora_weights.safetensors"))
    assert "NaN/inf" in adapter_weight_problems(nan)[0]
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "pytorch_lora_weights.safetensors").write_bytes(b"not a tensor file")
    assert "does not load" in adapter_weight_problems(junk)[0]


# ---------------------------------------------------------------- the real registry

# lr 5e-3: 3 steps at the default 1e-3 change the tiny base's image by ~0.0009, just under the
# promotion.min_output_change gate (0.001), so a healthy adapter would be rejected as "no change".
FAST = _deep_merge(TINY, {"eval": {"max_prompts": 2, "num_inference_steps": 2},
                          "train": {"max_steps": 3, "eval_every": 3, "checkpoint_every": 100,
                                    "learning_rate": 5e-3}})


def _pipeline(params) -> dict:
    """cache -> train -> evaluate, as `dvc repro` would; returns eval.json."""
    from landmark_lora.stages.cache_latents import cache_latents
    from landmark_lora.stages.evaluate import evaluate
    from landmark_lora.stages.train import run_training

    cache_latents(params)
    run_training(params)
    return evaluate(params)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    write_processed(root)
    with inside(root):
        params = parse_params(FAST)
        _pipeline(params)
        first = promote(params)
        yield {"root": root, "first": first, "params": params}


@pytest.fixture
def client(registry, monkeypatch):
    import mlflow

    monkeypatch.chdir(registry["root"])
    mlflow.set_tracking_uri(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    return mlflow.MlflowClient()


def test_first_trained_adapter_becomes_champion_with_tags(registry, client):
    report = registry["first"]
    assert report["decision"] == "promoted" and report["champion"] == report["challenger"]["version"]
    champ = client.get_model_version_by_alias("landmark-lora", "champion")
    assert str(champ.version) == report["challenger"]["version"]
    for tag in ("git_sha", "data_version", "base_model", "eval_loss", "mlflow_run_id", "promotion_reason"):
        assert champ.tags.get(tag), tag
    assert client.get_model_version_by_alias("landmark-lora", "challenger").version == champ.version
    saved = json.loads(Path("reports/promotion.json").read_text())
    assert saved["decision"] == "promoted"
    # the eval metrics and grids sit in the training run, next to its loss curve
    run = client.get_run(champ.run_id)
    assert "eval/eval_loss" in run.data.metrics and "loss" in run.data.metrics
    arts = {a.path for a in client.list_artifacts(champ.run_id, "eval")}
    assert "eval/eval.html" in arts and "eval/samples" in arts


def test_promote_twice_registers_once(registry, client):
    before = len(client.search_model_versions("name='landmark-lora'"))
    again = promote(registry["params"])
    assert again["decision"] == "unchanged" and "already champion" in again["reason"]
    assert len(client.search_model_versions("name='landmark-lora'")) == before


def test_champion_makes_an_image_offline(registry, client):
    from landmark_lora.serving import load_registered

    model = load_registered("landmark-lora", "champion")
    image = model.generate("lmksnap snapshot photo, in front of Gyeongbokgung Palace", seed=3)
    assert image.size == (64, 64)


def test_sabotaged_learning_rate_is_not_promoted(registry, client):
    champion_before = client.get_model_version_by_alias("landmark-lora", "champion").version
    params = parse_params(_deep_merge(FAST, {"train": {"learning_rate": 1.0}}))  # blows the LoRA up
    metrics = _pipeline(params)
    report = promote(params)
    assert report["decision"] == "rejected", report
    assert "blew up" in report["reason"]
    assert client.get_model_version_by_alias("landmark-lora", "champion").version == champion_before
    challenger = client.get_model_version_by_alias("landmark-lora", "challenger")
    assert str(challenger.version) == report["challenger"]["version"] != str(champion_before)
    assert challenger.tags["promotion_decision"] == "rejected"
    # the decision judged the numbers this evaluation produced (a blown-up loss may be NaN)
    assert report["challenger"]["metrics"]["eval_loss"] == pytest.approx(metrics["eval_loss"], nan_ok=True)
    assert report["challenger"]["metrics"]["output_change"] == pytest.approx(metrics["output_change"])


# A champion rescored on new data (rescored tags, data_version): tests/ops/test_promises.py,
# test_rescored_champion_is_judged_by_its_new_numbers (which also recomputes the new score).


def test_rollback_moves_champion_back_and_records_why(registry, client):
    from landmark_lora.ops.promote import register_challenger

    params = registry["params"]
    if len(client.search_model_versions("name='landmark-lora'")) < 2:  # run on its own: make a second version
        _pipeline(parse_params(_deep_merge(FAST, {"train": {"seed": 7}})))
        register_challenger(params)
    versions = sorted(int(v.version) for v in client.search_model_versions("name='landmark-lora'"))
    old, new = str(versions[0]), str(versions[-1])
    client.set_registered_model_alias("landmark-lora", "champion", new)
    client.set_model_version_tag("landmark-lora", new, "previous_champion", old)
    report = rollback(params, "faces look wrong")
    assert report["champion"] == old and report["from_version"] == new
    assert str(client.get_model_version_by_alias("landmark-lora", "champion").version) == old
    tags = client.get_model_version("landmark-lora", new).tags
    assert tags["rolled_back"] == "true" and tags["rollback_reason"] == "faces look wrong"
    assert json.loads(Path("reports/promotion.json").read_text())["decision"] == "rolled_back"
    client.delete_model_version_tag("landmark-lora", old, "previous_champion") if "previous_champion" in \
        client.get_model_version("landmark-lora", old).tags else None
    with pytest.raises(PromotionError, match="no previous champion"):
        rollback(params, "again")


def test_champion_is_rescored_when_the_eval_seed_changed(registry, client):
    """Same data, another train.eval_seed: the stored champion score is not comparable, so the
    champion is scored again under the challenger's eval fingerprint before the comparison."""
    params = parse_params(_deep_merge(FAST, {"train": {"eval_seed": 99}}))
    champion = client.get_model_version_by_alias("landmark-lora", "champion")
    _pipeline(params)
    report = promote(params)
    prev = report["previous_champion"]
    assert prev["version"] == str(champion.version) and prev["rescored"] is True, report
    assert "eval fingerprint" in prev["rescore_reason"]
    assert any("was scored again first" in c for c in report["checks"])
    rescored = client.get_model_version("landmark-lora", champion.version)
    challenger = client.get_model_version("landmark-lora", report["challenger"]["version"])
    assert rescored.tags["eval_fingerprint"] == challenger.tags["eval_fingerprint"]
    assert rescored.tags["eval_fingerprint"] != champion.tags["eval_fingerprint"]
    evaluation = json.loads(Path("reports/eval.json").read_text())
    assert evaluation["eval_fingerprint"] == challenger.tags["eval_fingerprint"]
    assert client.get_run(challenger.run_id).data.tags["eval_fingerprint"] == evaluation["eval_fingerprint"]


def test_promote_refuses_an_eval_json_of_another_training_run(registry, client):
    """`dvc repro train` retrains but leaves eval.json scoring the previous adapter: refused."""
    params = registry["params"]
    train = Path("reports/train.json")
    saved = train.read_text()
    before = len(client.search_model_versions("name='landmark-lora'"))
    train.write_text(json.dumps({**json.loads(saved), "mlflow_run_id": "0123456789abcdef0123456789abcdef"}))
    try:
        with pytest.raises(PromotionError, match=r"eval.json does not belong to this training run: it scored "
                                                 r"MLflow run \w+ but .*train.json is run 0123.*dvc repro"):
            promote(params)
        train.write_text(json.dumps({**json.loads(saved), "data_version": "000000000000"}))
        with pytest.raises(PromotionError, match="scored data version"):
            promote(params)
    finally:
        train.write_text(saved)
    # another eval seed in params.yaml than eval.json was scored with: not the same evaluation
    with pytest.raises(PromotionError, match="eval fingerprint"):
        promote(parse_params(_deep_merge(FAST, {"eval": {"seed": 7}})))
    assert len(client.search_model_versions("name='landmark-lora'")) == before


def test_unreproducible_version_is_registered_with_its_bundle_but_needs_the_flag(registry, client):
    """A temp folder is no git checkout: the version is registered, tagged reproducible=false
    with the reason, its lineage bundle and datasets in the run; champion only with the flag."""
    params = parse_params(_deep_merge(FAST, {"train": {"seed": 11}, "promotion": {"allow_unreproducible": False}}))
    champion_before = client.get_model_version_by_alias("landmark-lora", "champion").version
    _pipeline(params)
    report = promote(params)
    assert report["decision"] == "rejected" and "not reproducible" in report["reason"], report
    assert "--allow-unreproducible" in report["reason"]
    assert client.get_model_version_by_alias("landmark-lora", "champion").version == champion_before
    version = client.get_model_version("landmark-lora", report["challenger"]["version"])
    assert version.tags["reproducible"] == "false" and "not a git checkout" in version.tags["reproducible_reason"]
    assert version.tags["base_fingerprint"] and version.tags["git_dirty"] == "unknown"
    names = {Path(a.path).name for a in client.list_artifacts(version.run_id, "lineage")}
    assert {"params.yaml", "requirements.txt", "git.json", "lineage.json"} <= names
    datasets = {d.dataset.name for d in client.get_run(version.run_id).inputs.dataset_inputs}
    assert datasets == {"train", "val"}
