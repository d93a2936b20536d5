"""evaluate's label metrics (landmark / angle / pose accuracy with calibration), the metrics moving
the right way on real photos vs noise, and what lands in eval.json and a real SQLite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sample_photos import render_small_set, write_processed_set

from landmark_lora.classifier import calibrated_classifiers
from landmark_lora.config import parse_params
from landmark_lora.readers import choose_shot_reader
from landmark_lora.scoring import image_metrics

LANDMARKS = ("gyeongbokgung", "haeundae_beach", "n_seoul_tower")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return render_small_set(tmp_path_factory.mktemp("sample"))


def _noise(size, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_every_metric_scores_real_val_photos_above_noise(photos, tmp_path):
    """Real val photos standing in for generations score above noise on every image metric.

    Few photos: background consistency runs the person detector on every pair (~1 s each)."""
    write_processed_set(tmp_path, photos)
    cal = calibrated_classifiers(tmp_path, min_calibration=0.6, min_photos=10)
    val = [(im, lab) for im, lab in photos if lab["k"] == 1 and lab["shot"] == "upper_body"
           and lab["landmark"] in ("gyeongbokgung", "n_seoul_tower")]  # x 3 angles
    refs = {(lab["landmark"], lab["angle"]): [im] for im, lab in photos
            if lab["k"] == 0 and lab["shot"] == "wide"}  # the same place and angle, another framing
    prompts = [{k: lab[k] for k in ("landmark", "angle", "shot", "pose")} for _, lab in val]
    real = image_metrics([im for im, _ in val], prompts, refs, cal)
    noise = image_metrics([_noise(im.size, i) for i, (im, _) in enumerate(val)], prompts, refs, cal)
    assert real["background_consistency"] > noise["background_consistency"] + 0.2
    assert real["shot_agreement"] > noise["shot_agreement"]
    assert real["landmark_accuracy"] >= 5 / 6 > noise["landmark_accuracy"]
    assert real["angle_accuracy"] >= 5 / 6 > noise["angle_accuracy"]


@pytest.mark.slow  # cache -> train -> evaluate: like test_promote's registry fixture
def test_evaluate_reports_and_logs_base_vs_adapter_with_calibration(photos, tmp_path, monkeypatch):
    """cache -> train -> evaluate on real sample photos, tracked in a real SQLite MLflow store."""
    import mlflow

    from landmark_lora.stages.cache_latents import cache_latents
    from landmark_lora.stages.evaluate import evaluate
    from landmark_lora.stages.train import run_training

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # 3 landmarks x 3 angles x 1 framing x 2 variants: 9 train and 9 val photos (every stage is slow on 2 cores)
    write_processed_set(tmp_path / "data/processed", [p for p in photos if p[1]["landmark"] in LANDMARKS
                                                      and p[1]["shot"] == "upper_body"])
    params = parse_params({
        "train": {"max_steps": 2, "batch_size": 2, "eval_every": 2, "checkpoint_every": 100, "warmup_steps": 1,
                  "eval_timesteps": [500]},
        "eval": {"max_prompts": 2, "num_inference_steps": 2, "min_calibration": 0.6, "min_calibration_photos": 5},
        "mlflow": {"system_metrics": False},
    })
    cache_latents(params)
    run_training(params)
    result = evaluate(params)

    saved = json.loads(Path("reports/eval.json").read_text())
    assert saved["landmark_accuracy_status"] == "computed"
    assert saved["landmark_accuracy_calibration"] >= 0.9
    assert saved["classifiers"]["landmark"]["classes"] == sorted(LANDMARKS)
    for name in ("landmark_accuracy", "angle_accuracy", "pose_accuracy"):
        status = saved[f"{name}_status"]
        if status == "computed":  # a share of the 2 prompts, for base and adapter alike
            assert saved[name] in (0.0, 0.5, 1.0) and saved["base"][name] in (0.0, 0.5, 1.0)
            assert saved[f"{name}_calibration"] >= 0.6
        else:  # refused: no number at all, for either
            assert status.startswith("skipped: "), status
            assert saved[name] is None and saved["base"][name] is None
    assert result["landmark_accuracy"] == saved["landmark_accuracy"]
    assert "landmark_accuracy" in Path("reports/eval.html").read_text()

    # every grid: per prompt, the real val photo | base | adapter
    grids = sorted(Path("reports/samples").glob("*.png"))
    assert [g.stem for g in grids] == sorted(LANDMARKS)[:2]  # prompts go round-robin over landmarks
    with Image.open(grids[0]) as g:
        cells = np.asarray(g.convert("RGB"))[20:140, 4:132]  # the first row's "real (val)" cell
    assert cells.std() > 10  # a photo, not the blank cell left when no real photo is found

    # the training run holds base vs adapter metrics, calibration, statuses and the grids
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    run = client.get_run(saved["mlflow_run_id"])
    m = run.data.metrics
    for key in ("eval_loss", "background_consistency", "shot_agreement", "landmark_accuracy"):
        assert m[f"eval/base_{key}"] == pytest.approx(saved["base"][key])
        assert m[f"eval/adapter_{key}"] == pytest.approx(saved[key])
    assert m["eval/landmark_accuracy_calibration"] == pytest.approx(saved["landmark_accuracy_calibration"])
    assert run.data.tags["eval.landmark_accuracy_status"] == "computed"
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "eval/samples")}
    assert arts == {f"eval/samples/{lm}.png" for lm in sorted(LANDMARKS)[:2]}


def test_refused_metrics_are_none_and_their_calibration_still_shown(photos, tmp_path):
    """With a calibration bar no classifier can clear, the metrics are reported as skipped, not 0."""
    from landmark_lora.scoring import classifier_report

    write_processed_set(tmp_path, photos)
    params = parse_params({"eval": {"min_calibration": 1.01}})
    cal = calibrated_classifiers(tmp_path, params.eval.min_calibration, params.eval.min_calibration_photos)
    report = classifier_report(cal)
    for task in ("landmark", "angle", "pose"):
        assert report[f"{task}_accuracy_status"].startswith("skipped: calibration")
        assert 0.0 <= report[f"{task}_accuracy_calibration"] <= 1.0  # still shown: it says why
    prompts = [{"landmark": "gyeongbokgung", "angle": "eye_level", "shot": "wide", "pose": "waving"}]
    m = image_metrics([photos[0][0]], prompts, {}, cal)
    assert m["landmark_accuracy"] is None and m["angle_accuracy"] is None and m["pose_accuracy"] is None


def test_shot_reader_is_the_one_that_reads_real_val_photos_better(photos, tmp_path):
    """auto picks the calibrated classifier when it reads the real val photos (at the generation size) better
    than the detectors, and shot_agreement then follows the classifier; a refused classifier gives no number."""
    write_processed_set(tmp_path, photos)
    shot = calibrated_classifiers(tmp_path, 0.6, 10, tasks=("shot",))["shot"]
    val = [(im, lab["shot"]) for im, lab in photos if lab["k"] == 1][::5]  # 15 photos: the detectors are slow
    auto = choose_shot_reader("auto", shot, val)
    assert auto.readers["classifier"] >= 0.9 > auto.readers["detector"]
    assert auto.name == "classifier" and auto.calibration == auto.readers["classifier"]
    assert choose_shot_reader("detector", shot, val).name == "detector"
    prompts = [{"landmark": "gyeongbokgung", "angle": "eye_level", "shot": s, "pose": "waving"} for _, s in val]
    real = image_metrics([im for im, _ in val], prompts, {}, {}, shot_reader=auto)
    noise = image_metrics([_noise(im.size, i) for i, (im, _) in enumerate(val)], prompts, {}, {}, shot_reader=auto)
    assert real["shot_agreement"] >= 0.9 and noise["shot_agreement"] <= 0.5
    refused = calibrated_classifiers(tmp_path, 1.01, 10, tasks=("shot",))["shot"]
    assert choose_shot_reader("auto", refused, val).name == "detector"
    explicit = choose_shot_reader("classifier", refused, val)
    assert explicit.status.startswith("skipped: calibration")
    assert image_metrics([val[0][0]], prompts[:1], {}, {}, shot_reader=explicit)["shot_agreement"] is None
