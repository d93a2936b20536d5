"""background_consistency detects the person once per image: once in the generated image, once per
real reference photo for as long as the caller keeps ``ref_masks`` (evaluate scores base and
adapter images against the same references), with the same value as detecting every time."""

from __future__ import annotations

from landmark_lora import metrics
from landmark_lora.catalogue import load_catalogue
from landmark_lora.config import SampleDataConfig
from landmark_lora.synthetic.photo import render_photo


def test_masks_are_computed_once_per_image_and_the_score_is_unchanged(monkeypatch):
    lm = load_catalogue()["gyeongbokgung"]
    cfg = SampleDataConfig(width=64, height=84)
    refs = [render_photo(lm, "eye_level", shot, "waving", k, cfg) for k, shot in enumerate(("wide", "upper_body"))]
    generated = [render_photo(lm, "eye_level", "thigh_up", "waving", k, cfg) for k in (5, 6)]
    plain = [max(metrics.background_similarity(g, r) for r in refs) for g in generated]  # masks detected every time

    calls = []
    real = metrics._person_mask
    monkeypatch.setattr(metrics, "_person_mask", lambda im, size: calls.append(id(im)) or real(im, size))
    cache: dict = {}
    cached = [metrics.background_consistency(g, refs, cache) for g in generated]
    assert cached == plain
    assert len(calls) == len(generated) + len(refs)  # not 2 x generated x refs
    assert sorted(cache) == sorted(id(r) for r in refs)
    calls.clear()
    assert metrics.background_consistency(generated[0], refs) == plain[0]  # no cache: each ref once per call
    assert len(calls) == 1 + len(refs)
