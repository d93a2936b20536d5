"""The shot classifier behind the `shot_agreement` guard, on photos whose shot is known.

The sample renderer draws every photo for a requested shot type, so its photos are ground
truth. Haar faces and HOG people are not perfect on drawn people: each shot asserts the hit
rate the classifier really reaches on a fixed set (measured when the thresholds were set), so a
deleted branch or a broken threshold drops it to zero.
"""

from __future__ import annotations

from collections import Counter

import pytest

from landmark_lora.catalogue import ANGLES, SHOTS, load_catalogue
from landmark_lora.config import SampleDataConfig
from landmark_lora.metrics import classify_shot
from landmark_lora.synthetic.person import POSES
from landmark_lora.synthetic.photo import render_photo

CAT = load_catalogue()
CFG = SampleDataConfig()
# Every landmark, the three angles in turn, one pose each: 5 photos per shot.
VIEWS = [(slug, ANGLES[i % 3], POSES[i % len(POSES)]) for i, slug in enumerate(sorted(CAT))]
# Photos of VIEWS classified right, per shot, as measured (of 5). Raise them when the classifier improves.
# Before the thresholds were set on these photos: 4, 4, 0, 1, 0 ('wide' was unreachable).
HITS = {"close_up": 5, "upper_body": 4, "thigh_up": 2, "full_body": 4, "wide": 5}


@pytest.fixture(scope="module")
def verdicts() -> dict[str, Counter]:
    return {shot: Counter(classify_shot(render_photo(CAT[slug], angle, shot, pose, 0, CFG))
                          for slug, angle, pose in VIEWS) for shot in SHOTS}


@pytest.mark.parametrize("shot", SHOTS)
def test_each_shot_is_recognised_on_photos_drawn_for_it(verdicts, shot):
    assert verdicts[shot][shot] >= HITS[shot] > 0, dict(verdicts[shot])

