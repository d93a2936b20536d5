"""The promotion gate on real learning: the toy-world base (`model.base: toyworld`) with the
synthetic sample set, trained, evaluated and promoted in-process against a SQLite MLflow store.

    PYTHONPATH=$PWD/src OMP_NUM_THREADS=1 pytest -q tests/ops/test_promote_real_learning.py -s   # prints the metrics

History (one workspace, three training runs):
1. 200 steps on the sample set (five landmarks, one pose per view): the first champion.
2. 5 steps on the same photos: rejected, eval_loss worse than the champion's beyond
   promotion.min_improvement; the champion alias stays.
3. 400 steps after a second pose per view was ingested (more photos, a new data version): the
   champion is rescored on the new val data first, then the challenger beats it and the alias moves.
The same decision rules run on the random tiny base in tests/ops/test_promote.py. About 4 minutes
on 2 CPU cores, so marked `toyworld`: `make test-toyworld` runs it, `make test` leaves it out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from landmark_lora.config import parse_params
from tests.helpers.workspace import inside

REPO = Path(__file__).resolve().parents[2]
# ~220 s with OMP_NUM_THREADS=1 on the shared 2-core machine (four trainings, five evaluations)
pytestmark = [pytest.mark.slow, pytest.mark.toyworld]
CHAMPION_STEPS, SHORT_STEPS, LONG_STEPS = 200, 5, 400


def _params(steps: int, poses_per_view: int = 1):
    """params.yaml's toy-world recipe (LoRA, learning rate), sized for a test: 4 inference steps.

    All 25 eval prompts: with 10, one prompt moves shot_agreement by 0.1 (its guard tolerance)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert raw["model"]["base"] == "toyworld"
    over = {
        "ingest": {"min_age_s": 0, "dvc_add": False},
        "validation": {"min_photos_per_landmark": 5},
        "sample_data": {"poses_per_view": poses_per_view},
        "train": {"max_steps": steps, "eval_every": 1000, "checkpoint_every": 1000},
        "eval": {"max_prompts": 25, "num_inference_steps": 4},
        "mlflow": {"system_metrics": False},
        "promotion": {"allow_unreproducible": True},  # a temp folder, no git: versions are reproducible=false
    }
    for section, values in over.items():
        raw[section] = {**(raw.get(section) or {}), **values}
    return parse_params(raw, source="test params")


def _add_photos(params) -> None:
    """sample-data -> ingest -> validate -> preprocess -> cache_latents, as `landmark-lora run` does."""
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.retrain.intake import ingest_photos
    from landmark_lora.stages import validate
    from landmark_lora.stages.cache_latents import cache_latents
    from landmark_lora.stages.preprocess import preprocess
    from landmark_lora.synthetic.render import render_sample_set

    catalogue = load_catalogue(params.catalogue)
    render_sample_set(params.paths.incoming, catalogue, params.sample_data)
    ingest_photos(params, log=lambda *_: None, dvc_add=False)
    validate.run(params)
    preprocess(params, catalogue)
    cache_latents(params)


def _train_and_promote(params, client) -> tuple[dict, dict, str | None, str | None]:
    """train -> evaluate -> promote; (eval metrics, promotion report, champion before, after)."""
    from landmark_lora.ops.promote import promote
    from landmark_lora.stages.evaluate import evaluate
    from landmark_lora.stages.train import run_training

    before = _champion(client)
    run_training(params)
    metrics = evaluate(params)
    report = promote(params)
    keys = ("eval_loss", "landmark_accuracy", "angle_accuracy", "shot_agreement", "background_consistency",
            "output_change")
    print(f"\n{params.train.max_steps} steps: {({k: metrics.get(k) for k in keys})}\n  -> {report['decision']}: "
          f"{report['reason']}")
    return metrics, report, before, _champion(client)


def _champion(client) -> str | None:
    try:
        return str(client.get_model_version_by_alias("landmark-lora", "champion").version)
    except Exception:  # no registered model or no alias yet
        return None


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    import mlflow

    root = tmp_path_factory.mktemp("real-learning")
    with inside(root):
        first = _params(CHAMPION_STEPS)
        _add_photos(first)
        Path("mlruns").mkdir(exist_ok=True)
        mlflow.set_tracking_uri(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
        client = mlflow.MlflowClient()
        out = {"champion": _train_and_promote(first, client)}
        out["short"] = _train_and_promote(_params(SHORT_STEPS), client)
        longer = _params(LONG_STEPS, poses_per_view=2)
        _add_photos(longer)
        out["longer"] = _train_and_promote(longer, client)
        out["client"] = client
        yield out


def test_the_200_step_champion_is_promoted_first(history):
    metrics, report, before, after = history["champion"]
    assert before is None and report["decision"] == "promoted" and "first adapter" in report["reason"]
    assert after == report["challenger"]["version"]


def test_a_5_step_run_is_not_promoted_over_the_200_step_champion(history):
    champion_metrics = history["champion"][0]
    metrics, report, before, after = history["short"]
    # real learning, not noise: 5 steps leave the loss clearly above the champion's
    assert metrics["eval_loss"] > champion_metrics["eval_loss"] * 1.03, (metrics, champion_metrics)
    assert report["decision"] == "rejected"
    assert report["reason"].startswith("eval_loss did not improve enough"), report["reason"]
    prev = report["previous_champion"]
    assert prev["version"] == before and prev["rescored"] is False  # same photos: no rescore needed
    assert after == before  # the champion alias did not move
    tags = history["client"].get_model_version("landmark-lora", report["challenger"]["version"]).tags
    assert tags["promotion_decision"] == "rejected"


def test_a_longer_run_on_more_photos_is_promoted_against_the_rescored_champion(history):
    metrics, report, before, after = history["longer"]
    prev = report["previous_champion"]
    assert report["decision"] == "promoted", report
    assert report["reason"].startswith("better than the champion") and "guards held" in report["reason"]
    # like for like: the champion was scored again on the new photos' val split
    assert prev["version"] == before and prev["rescored"] is True
    client = history["client"]
    old, new = client.get_model_version("landmark-lora", before), client.get_model_version("landmark-lora", after)
    assert old.tags["data_version"] == new.tags["data_version"] and old.tags.get("rescored_at")
    assert after == report["challenger"]["version"] != before  # the alias moved
    assert new.tags["previous_champion"] == before
    gain = (prev["metrics"]["eval_loss"] - metrics["eval_loss"]) / prev["metrics"]["eval_loss"]
    assert gain >= parse_params({}).promotion.min_improvement
