"""The toy world: generic places, every shot/angle/pose, generic captions, never a landmark."""

from __future__ import annotations

import numpy as np

from landmark_lora.catalogue import ANGLES, SHOTS, load_catalogue
from landmark_lora.config import CaptionConfig
from landmark_lora.synthetic import scenes as sample_data
from landmark_lora.toyworld.world import PLACES, world_samples

WORDS = CaptionConfig()


def test_same_arguments_same_pixels_and_a_new_seed_changes_them():
    a = world_samples(6, seed=3, width=32, height=40)
    b = world_samples(6, seed=3, width=32, height=40)
    assert [s.caption for s in a] == [s.caption for s in b]
    assert all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(a, b, strict=False))
    c = world_samples(6, seed=4, width=32, height=40)
    assert not all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(a, c, strict=False))
    assert a[0].image.size == (32, 40)


def test_every_place_shot_and_angle_appears_with_its_caption_words():
    n = len(PLACES) * len(ANGLES) * len(SHOTS)
    samples = world_samples(n, seed=0, width=32, height=40, drop_rate=0.0)
    assert {(s.place, s.angle, s.shot) for s in samples} == {(p, a, s) for p in PLACES for a in ANGLES for s in SHOTS}
    for s in samples:
        assert s.caption.startswith(f"snapshot photo, in front of {PLACES[s.place][0]}, ")
        assert WORDS.shot_words[s.shot] in s.caption and WORDS.angle_words[s.angle] in s.caption
        assert f"person {s.pose}" in s.caption


def test_partial_captions_drop_fields_but_keep_the_place():
    samples = world_samples(60, seed=1, width=32, height=40, drop_rate=0.5)
    assert any(WORDS.shot_words[s.shot] not in s.caption for s in samples)
    assert all(PLACES[s.place][0] in s.caption for s in samples)


def test_the_world_never_draws_or_names_a_catalogue_landmark(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the toy world drew a landmark scene")

    monkeypatch.setattr(sample_data, "_SCENES", {slug: forbidden for slug in sample_data._SCENES})
    monkeypatch.setattr(sample_data, "_generic", forbidden)
    monkeypatch.setattr(sample_data, "_background", forbidden)
    from landmark_lora.toyworld import world

    world._backdrop.cache_clear()
    world._place.cache_clear()
    samples = world_samples(len(PLACES) * 3, seed=5, width=32, height=40, start=0)
    names = {w for lm in load_catalogue().values() for w in lm.name_en.lower().split() if len(w) > 3}
    names |= {lm.slug.split("_")[0] for lm in load_catalogue().values()}
    for s in samples:
        assert not set(s.caption.lower().replace(",", " ").split()) & names, s.caption


def test_each_place_looks_different_from_the_others():
    """Mean colours of the places' wide shots all differ (not one scene under six names)."""
    samples = world_samples(len(PLACES) * len(ANGLES) * len(SHOTS), seed=2, width=32, height=40)
    means = {p: np.mean([np.asarray(s.image, dtype=float) for s in samples if s.place == p and s.shot == "wide"],
                        axis=(0, 1, 2)) for p in PLACES}
    for p in PLACES:
        for q in PLACES:
            if p < q:
                assert np.abs(means[p] - means[q]).max() > 4, (p, q, means[p], means[q])


def test_the_base_captions_name_the_camera_angle_only_at_the_recipes_rate():
    """recipe.angle_caption_rate: only that share of the base's captions keeps its camera-angle phrase."""
    from landmark_lora.toyworld.world import name_angles

    samples = world_samples(60, seed=2, width=32, height=40, drop_rate=0.0)
    captions = [s.caption for s in samples]
    angle_words = set(WORDS.angle_words.values())
    assert name_angles(captions, 1.0) == captions
    none = name_angles(captions, 0.0)
    assert not any(w in c for c in none for w in angle_words)
    for before, after, s in zip(captions, none, samples, strict=True):  # only the angle phrase goes
        assert after == before.replace(f", {WORDS.angle_words[s.angle]}", "")
    some = name_angles(captions, 0.3, seed=1)
    named = sum(any(w in c for w in angle_words) for c in some)
    assert 8 <= named <= 30 and some == name_angles(captions, 0.3, seed=1)
