"""Landmarks, label vocabulary and caption rendering shared by every stage.

    from landmark_lora.catalogue import load_catalogue, render_caption
    cat = load_catalogue()            # packaged data/landmarks.yaml
    cat["gyeongbokgung"].name_ko      # -> '경복궁'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from landmark_lora.config import CaptionConfig

SHOTS = ("close_up", "upper_body", "thigh_up", "full_body", "wide")
ANGLES = ("eye_level", "low_angle", "high_angle")
UNSPECIFIED = "unspecified"
BACKGROUND = "background"  # shot label of a plate: the landmark from one of its spots, no one in it
SHOT_LABELS = (*SHOTS, BACKGROUND)  # what a photo's shot label may say (plates are not trained on)
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class CatalogueError(ValueError):
    pass


@dataclass(frozen=True)
class Landmark:
    slug: str
    name_en: str
    name_ko: str
    description: str


def load_catalogue(path: str | Path | None = None) -> dict[str, Landmark]:
    """Load the landmark catalogue: the packaged one, or the YAML file at ``path``."""
    if path is None:
        text = resources.files("landmark_lora").joinpath("data/landmarks.yaml").read_text(encoding="utf-8")
        source = "landmark_lora/data/landmarks.yaml"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise CatalogueError(f"{source}: cannot read landmark catalogue: {err}") from None
    entries = yaml.safe_load(text)
    if not isinstance(entries, list) or not entries:
        raise CatalogueError(f"{source}: expected a non-empty list of landmarks")
    out: dict[str, Landmark] = {}
    for i, entry in enumerate(entries, 1):
        fields = ("slug", "name_en", "name_ko", "description")
        if not isinstance(entry, dict):
            raise CatalogueError(f"{source}: entry {i} must be a mapping with {', '.join(fields)}")
        missing = [f for f in fields if not str(entry.get(f) or "").strip()]
        if missing:
            raise CatalogueError(f"{source}: entry {i} ({entry.get('slug', '?')}) lacks {', '.join(missing)}")
        extra = set(entry) - set(fields)
        if extra:
            raise CatalogueError(f"{source}: entry {i} ({entry['slug']}) has unknown keys {sorted(extra)}")
        slug = str(entry["slug"])
        if not SLUG_RE.match(slug):
            raise CatalogueError(f"{source}: entry {i}: slug '{slug}' must be lower_snake_case ASCII")
        if slug in out:
            raise CatalogueError(f"{source}: slug '{slug}' appears twice")
        out[slug] = Landmark(**{f: str(entry[f]).strip() for f in fields})
    return out


def normalise_label(kind: str, value: str | None) -> str:
    """Map a user label to the vocabulary ('Upper-Body' -> 'upper_body'); blank -> 'unspecified'.

    Raises ValueError naming the allowed values when the label is not in the vocabulary.
    """
    text = (value or "").strip()
    if not text:
        return UNSPECIFIED
    if kind == "pose":
        return " ".join(text.split())
    vocab = {"shot": SHOT_LABELS, "angle": ANGLES}[kind]
    key = re.sub(r"[\s\-]+", "_", text.lower())
    if key in vocab or key == UNSPECIFIED:
        return key
    raise ValueError(f"{kind} '{value}' is not one of: {', '.join(vocab)} (or leave it blank)")


_FIELD_RE = re.compile(r"{(\w+)}")


def render_caption(
    cfg: CaptionConfig,
    landmark: Landmark,
    shot: str = UNSPECIFIED,
    angle: str = UNSPECIFIED,
    pose: str = UNSPECIFIED,
    caption: str = "",
) -> str:
    """Build a training caption from the template: landmark, shot type, camera angle and pose.

    Parts whose fields are unspecified or empty are dropped, so a photo without labels
    still gets a clean caption naming its landmark.
    """
    values = {
        "trigger": cfg.trigger,
        "shot": cfg.shot_words.get(shot, "") if shot != UNSPECIFIED else "",
        "angle": cfg.angle_words.get(angle, "") if angle != UNSPECIFIED else "",
        "pose": "" if pose == UNSPECIFIED else pose,
        "landmark": landmark.name_en,
        "landmark_ko": landmark.name_ko,
        "description": landmark.description,
        "caption": (caption or "").strip(),
    }
    parts = []
    for part in cfg.template:
        fields = _FIELD_RE.findall(part)
        unknown = [f for f in fields if f not in values]
        if unknown:
            raise ValueError(
                f"caption.template part '{part}' uses unknown field(s) {unknown}; known: {', '.join(values)}"
            )
        if any(not values[f] for f in fields):
            continue
        parts.append(part.format(**values))
    return ", ".join(parts)
