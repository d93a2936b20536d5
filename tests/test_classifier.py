"""The offline landmark / angle / pose classifier on real sample-set photos, noise, and bad labels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter
from sample_photos import render_small_set, write_processed_set

from landmark_lora.classifier import (
    COMPUTED,
    NotClassifiable,
    calibrated_classifiers,
    fit_label_classifier,
    label_accuracies,
)
from tests.helpers.tiny_data import write_processed


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return render_small_set(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def processed(photos, tmp_path_factory):
    root = tmp_path_factory.mktemp("processed")
    write_processed_set(root, photos)
    return root


def _split(photos):
    train = [(im, lab) for im, lab in photos if lab["k"] == 0]
    held = [(im, lab) for im, lab in photos if lab["k"] == 1]
    return train, held


def _noise(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (72, 56, 3), dtype=np.uint8)) for _ in range(n)]


def test_landmark_is_read_from_held_out_real_photos(photos):
    train, held = _split(photos)
    assert len(train) == len(held) == 75  # 5 landmarks x 3 angles x 5 shots, one pose each
    clf = fit_label_classifier("landmark", [im for im, _ in train], [lab["landmark"] for _, lab in train])
    assert len(clf.classes) == 5
    assert clf.accuracy([im for im, _ in held], [lab["landmark"] for _, lab in held]) >= 0.9


def test_angle_is_read_from_held_out_real_photos_well_above_chance(photos):
    train, held = _split(photos)
    clf = fit_label_classifier("angle", [im for im, _ in train], [lab["angle"] for _, lab in train])
    assert clf.chance == pytest.approx(1 / 3)
    assert clf.accuracy([im for im, _ in held], [lab["angle"] for _, lab in held]) >= 0.7


@pytest.mark.parametrize("task", ["landmark", "angle"])
def test_noise_scores_near_chance(photos, task):
    train, _ = _split(photos)
    clf = fit_label_classifier(task, [im for im, _ in train], [lab[task] for _, lab in train])
    n = 15 * len(clf.classes)
    labels = [clf.classes[i % len(clf.classes)] for i in range(n)]  # every class asked for equally often
    assert clf.accuracy(_noise(n), labels) <= clf.chance + 0.2


def test_fitting_is_deterministic(photos):
    train, held = _split(photos)
    ims, labs = [im for im, _ in train], [lab["angle"] for _, lab in train]
    a, b = fit_label_classifier("angle", ims, labs), fit_label_classifier("angle", ims, labs)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.predict_proba([im for im, _ in held]), b.predict_proba([im for im, _ in held]))


def test_unspecified_labels_are_left_out_of_training_and_scoring(photos):
    train, held = _split(photos)
    labs = [lab["landmark"] if i % 3 else "unspecified" for i, (_, lab) in enumerate(train)]
    clf = fit_label_classifier("landmark", [im for im, _ in train], labs)
    assert "unspecified" not in clf.classes and clf.train_photos == sum(lab != "unspecified" for lab in labs)
    assert clf.accuracy([held[0][0]], ["unspecified"]) is None


def test_calibration_on_real_val_photos_and_refusal(processed):
    cal = calibrated_classifiers(processed, min_calibration=0.6, min_photos=10)
    lm = cal["landmark"]
    assert lm.status == COMPUTED and lm.classifier.calibration >= 0.9 and lm.classifier.calibration_photos == 75
    strict = calibrated_classifiers(processed, min_calibration=1.01, min_photos=10)
    for task, c in strict.items():
        assert not c.usable
        assert "below eval.min_calibration 1.01" in c.status, (task, c.status)
    few = calibrated_classifiers(processed, min_calibration=0.0, min_photos=1000, tasks=("landmark",))
    assert "only 75 val photo(s)" in few["landmark"].status


def test_refused_metric_is_none_and_computed_one_is_a_share(processed, photos):
    cal = calibrated_classifiers(processed, min_calibration=0.6, min_photos=10, tasks=("landmark",))
    _, held = _split(photos)
    prompts = [{"landmark": lab["landmark"]} for _, lab in held]
    real = label_accuracies(cal, [im for im, _ in held], prompts)["landmark_accuracy"]
    noise = label_accuracies(cal, _noise(len(held)), prompts)["landmark_accuracy"]
    assert real >= 0.9 and noise <= 0.4
    refused = calibrated_classifiers(processed, min_calibration=1.01, min_photos=10, tasks=("landmark",))
    assert label_accuracies(refused, [im for im, _ in held], prompts) == {"landmark_accuracy": None}


def test_one_landmark_or_free_text_poses_are_not_classified(tmp_path, photos):
    train, _ = _split(photos)
    ims = [im for im, _ in train]
    with pytest.raises(NotClassifiable, match="nothing to tell apart"):
        fit_label_classifier("landmark", ims, ["gyeongbokgung"] * len(ims))
    with pytest.raises(NotClassifiable, match="not a closed vocabulary"):  # every pose written differently
        fit_label_classifier("pose", ims, [f"pose number {i}" for i in range(len(ims))])
    write_processed(tmp_path)  # the tiny dataset: one landmark, one angle
    cal = calibrated_classifiers(tmp_path / "data/processed", min_calibration=0.6, min_photos=1)
    assert cal["landmark"].status.startswith("skipped:") and "nothing to tell apart" in cal["landmark"].status


def test_no_val_photos_means_no_calibration(tmp_path, photos):
    train, _ = _split(photos)
    write_processed_set(tmp_path, train, val_k=99)  # every photo in train
    cal = calibrated_classifiers(tmp_path, min_calibration=0.6, min_photos=10, tasks=("landmark",))
    assert "only 0 val photo(s)" in cal["landmark"].status


def test_unreadable_photo_names_the_metadata_line(tmp_path, photos):
    write_processed_set(tmp_path, photos[:20], val_k=1)
    next(iter((tmp_path / "train").rglob("*.png"))).write_bytes(b"not a png")
    with pytest.raises(FileNotFoundError, match=r"metadata.jsonl:\d+: cannot open .*dvc repro preprocess"):
        calibrated_classifiers(tmp_path, min_calibration=0.6, min_photos=1, tasks=("landmark",))


def test_unknown_task_is_a_clear_error(photos):
    with pytest.raises(KeyError, match="unknown task 'mood'"):
        fit_label_classifier("mood", [photos[0][0]], ["happy"])


def test_shot_is_read_from_held_out_real_photos(photos):
    """The framing (close-up ... wide) from the centre's layout: what eval.shot_reader's classifier reads."""
    train, held = _split(photos)
    clf = fit_label_classifier("shot", [im for im, _ in train], [lab["shot"] for _, lab in train])
    assert clf.classes == ["close_up", "full_body", "thigh_up", "upper_body", "wide"]
    assert clf.accuracy([im for im, _ in held], [lab["shot"] for _, lab in held]) >= 0.8
    assert clf.accuracy(_noise(50), [clf.classes[i % 5] for i in range(50)]) <= clf.chance + 0.2


def _blur(images):
    return [im.filter(ImageFilter.GaussianBlur(1.5)) for im in images]


def test_roundtrip_trains_on_both_and_calibrates_on_the_round_trips(processed):
    """With a round trip (evaluate: the base's VAE), calibration is read on the val photos' round trips and
    the sharp photos' accuracy kept beside it; a round trip that destroys the photos refuses the metric."""
    blurred = calibrated_classifiers(processed, 0.6, 10, tasks=("landmark",), roundtrip=_blur)["landmark"]
    assert blurred.usable and blurred.classifier.train_photos == 2 * 75  # the photos and their round trips
    assert blurred.classifier.calibration >= 0.9 and blurred.classifier.calibration_sharp >= 0.9

    def destroy(images):
        return _noise(len(images), seed=len(images))

    ruined = calibrated_classifiers(processed, 0.6, 10, tasks=("landmark",), roundtrip=destroy)["landmark"]
    assert not ruined.usable and "VAE round trips of the real val photos" in ruined.status
    assert ruined.classifier.calibration_sharp >= 0.9  # the sharp photos are still read: the round trip is at fault
