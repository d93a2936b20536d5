"""Landmark catalogue, label vocabulary and caption rendering (the seed project's key idea)."""

import pytest

from landmark_lora.catalogue import (
    ANGLES,
    SHOTS,
    UNSPECIFIED,
    CatalogueError,
    load_catalogue,
    normalise_label,
    render_caption,
)
from landmark_lora.config import CaptionConfig

REQUIRED = {"gyeongbokgung", "n_seoul_tower", "bukchon_hanok_village", "haeundae_beach", "seongsan_ilchulbong"}


def test_catalogue_has_the_required_landmarks_with_names_in_both_languages():
    cat = load_catalogue()
    assert set(cat) >= REQUIRED
    for lm in cat.values():
        assert lm.name_en and lm.description
        assert any("\uac00" <= ch <= "\ud7a3" for ch in lm.name_ko), f"{lm.slug} needs a Korean name"


def test_custom_catalogue_errors_name_the_entry(tmp_path):
    path = tmp_path / "cat.yaml"
    path.write_text("- slug: Bad Slug\n  name_en: x\n  name_ko: y\n  description: z\n")
    with pytest.raises(CatalogueError, match="entry 1: slug 'Bad Slug' must be lower_snake_case"):
        load_catalogue(path)
    path.write_text("- slug: ok\n  name_en: x\n  name_ko: y\n")
    with pytest.raises(CatalogueError, match=r"entry 1 \(ok\) lacks description"):
        load_catalogue(path)


@pytest.mark.parametrize(
    "kind,given,expected",
    [("shot", "Upper-Body", "upper_body"), ("shot", "close up", "close_up"), ("angle", "LOW_ANGLE", "low_angle"),
     ("shot", "", UNSPECIFIED), ("angle", None, UNSPECIFIED), ("pose", "  sitting   on steps ", "sitting on steps")],
)
def test_labels_are_normalised(kind, given, expected):
    assert normalise_label(kind, given) == expected


def test_invalid_label_lists_vocabulary():
    with pytest.raises(ValueError) as err:
        normalise_label("shot", "selfie")
    for shot in SHOTS:
        assert shot in str(err.value)
    with pytest.raises(ValueError, match="high_angle"):
        normalise_label("angle", "dutch")


def test_caption_spells_out_landmark_shot_angle_and_pose():
    lm = load_catalogue()["gyeongbokgung"]
    cap = render_caption(CaptionConfig(), lm, "upper_body", "low_angle", "waving")
    assert cap.startswith("lmksnap snapshot photo, in front of Gyeongbokgung Palace, upper-body shot, "
                          "low-angle shot from below, person waving, Joseon royal palace")


def test_caption_drops_unspecified_parts_and_appends_user_caption():
    lm = load_catalogue()["haeundae_beach"]
    cap = render_caption(CaptionConfig(), lm, UNSPECIFIED, "eye_level", UNSPECIFIED, "at sunset")
    assert cap.startswith("lmksnap snapshot photo, in front of Haeundae Beach, eye-level angle, wide sandy")
    assert "person" not in cap
    assert cap.endswith("at sunset")


def test_every_vocabulary_label_has_caption_words():
    cfg = CaptionConfig()
    assert set(cfg.shot_words) == set(SHOTS)
    assert set(cfg.angle_words) == set(ANGLES)


def test_template_with_unknown_field_fails_clearly():
    cfg = CaptionConfig(template=("{trigger}", "{weather}"))
    with pytest.raises(ValueError, match=r"caption.template part '\{weather\}' uses unknown field"):
        render_caption(cfg, load_catalogue()["gyeongbokgung"])
