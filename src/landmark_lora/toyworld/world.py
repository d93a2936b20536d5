"""The toy world: generic places (streets, parks, buildings, hills, beaches, rooms) with a person in
front, at every shot type, camera angle and pose, and generic captions. It never shows a catalogue
landmark: the base model learns people, framings and ordinary places, as Stable Diffusion did.

    from landmark_lora.toyworld.world import world_samples, PLACES
    samples = world_samples(count=64, seed=0, width=56, height=72)   # [WorldSample(image, caption, ...)]
    samples[0].caption  # 'snapshot photo, in front of a park, upper-body shot, low-angle shot from below,
                        #  person waving, green lawn with round trees and a gravel path'

The drawing reuses the sample-data renderer's primitives (camera angles, canvas, people, framing,
light and noise): ``draw_background`` + ``compose_photo``. Every place instance has its own
colours and layout, seeded from (seed, place, instance), so the same arguments give the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from landmark_lora.catalogue import ANGLES, SHOTS
from landmark_lora.config import CaptionConfig, SampleDataConfig
from landmark_lora.synthetic.canvas import Canvas, draw_background, mix, shade, skyline, waves
from landmark_lora.synthetic.person import POSES
from landmark_lora.synthetic.photo import compose_photo

RGB = tuple[int, int, int]


def _pick(rng: np.random.Generator, options: list) -> object:
    return options[int(rng.integers(len(options)))]


def _jitter(rng: np.random.Generator, c: RGB, amount: float = 0.12) -> RGB:
    return shade(c, float(rng.uniform(1 - amount, 1 + amount)))


def _tree(c: Canvas, x: float, y: float, size: float, green: RGB, rng: np.random.Generator) -> None:
    c.rect(x - size * 0.08, y, x + size * 0.08, y + size * 0.6, (96, 70, 48))
    for dx, dy, r in ((0, 0.9, 0.5), (-0.25, 0.75, 0.38), (0.25, 0.75, 0.38), (0, 1.15, 0.36)):
        c.dot(x + dx * size, y + dy * size, r * size, _jitter(rng, green, 0.15))


def _facade(c: Canvas, x0: float, x1: float, y0: float, y1: float, wall: RGB, window: RGB,
            rng: np.random.Generator) -> None:
    """A block of flats or offices seen from the front: wall and a grid of windows."""
    c.rect(x0, y0, x1, y1, wall)
    cols = max(2, int((x1 - x0) / 0.035))
    rows = max(2, int((y1 - y0) / 0.03))
    for i in range(cols):
        for j in range(rows):
            wx = x0 + (i + 0.25) * (x1 - x0) / cols
            wy = y0 + (j + 0.3) * (y1 - y0) / rows
            c.rect(wx, wy, wx + 0.5 * (x1 - x0) / cols, wy + 0.45 * (y1 - y0) / rows,
                   _jitter(rng, window, 0.08))


# ---------------------------------------------------------------- places


def _street(rng: np.random.Generator) -> tuple[Callable[[Canvas, np.random.Generator], None], str]:
    walls = [(214, 200, 180), (190, 170, 150), (170, 176, 186), (226, 220, 206), (160, 110, 90)]
    sky = _jitter(rng, (96, 150, 210))
    lanes = bool(rng.random() < 0.5)

    def scene(c: Canvas, r: np.random.Generator) -> None:
        c.sky(sky, (210, 222, 232))
        c.ground((110, 110, 114), (138, 138, 140))  # asphalt
        skyline(c, r, -2.0, 2.0, 0.06, (150, 160, 176))
        for s in (-1, 1):  # buildings receding along both sides of the road
            x = 0.06 * s
            while abs(x) < 1.6:
                w = float(r.uniform(0.08, 0.2))
                h = float(r.uniform(0.12, 0.4))
                x0, x1 = sorted((x, x + s * w))
                _facade(c, x0, x1, 0.0, h * (0.4 + abs(x)), _pick(r, walls), (70, 90, 110), r)  # type: ignore[arg-type]
                x += s * w * 1.05
        c.poly([(-0.06, -0.001), (0.06, -0.001), (1.2, -1.0), (-1.2, -1.0)], (92, 92, 96))  # the road
        if lanes:
            for d in (0.02, 0.05, 0.1, 0.2, 0.4):
                c.line([(0, -d), (0, -d * 1.4)], (236, 230, 200), 0.6 + 2 * d)
        for s in (-1, 1):  # lamp posts
            for d in (0.05, 0.15, 0.4):
                x = s * (0.08 + d * 1.1)
                c.line([(x, -d * 0.4), (x, 0.08 + d * 0.5)], (50, 52, 56), 0.5 + 2 * d)

    desc = "city street lined with buildings" + (", with painted road lines" if lanes else "")
    return scene, desc


def _park(rng: np.random.Generator) -> tuple[Callable[[Canvas, np.random.Generator], None], str]:
    grass = _jitter(rng, (96, 150, 70))
    autumn = bool(rng.random() < 0.3)
    green = (200, 120, 50) if autumn else (58, 110, 52)
    pond = bool(rng.random() < 0.35)

    def scene(c: Canvas, r: np.random.Generator) -> None:
        c.sky(_jitter(r, (90, 150, 215)), (212, 226, 238))
        c.ground(shade(grass, 0.85), grass)
        for _ in range(50):  # far tree line
            c.dot(float(r.uniform(-1.5, 1.5)), float(r.uniform(0.0, 0.03)), float(r.uniform(0.02, 0.04)),
                  _jitter(r, shade(green, 0.8)))
        if pond:
            c.ellipse(float(r.uniform(-0.3, 0.3)), -0.06, 0.35, 0.03, (90, 140, 180))
        c.poly([(-0.02, 0), (0.02, 0), (0.25, -1.0), (-0.25, -1.0)], (196, 180, 150))  # gravel path
        for _ in range(int(r.integers(4, 9))):
            x = float(r.uniform(-1.2, 1.2))
            d = float(r.uniform(0.01, 0.12))
            _tree(c, x, -d, 0.08 + d * 0.8, green, r)
        bx = float(r.choice([-0.35, 0.35]))
        c.rect(bx - 0.06, -0.05, bx + 0.06, -0.035, (120, 80, 50))  # bench
        c.rect(bx - 0.06, -0.035, bx + 0.06, -0.015, (140, 96, 60))

    desc = ("park with autumn trees" if autumn else "green park with round trees") + \
        (" around a pond" if pond else " and a gravel path")
    return scene, desc


def _building(rng: np.random.Generator) -> tuple[Callable[[Canvas, np.random.Generator], None], str]:
    kind = _pick(rng, ["office tower", "apartment block", "brick building", "glass building"])
    wall = {"office tower": (180, 186, 196), "apartment block": (226, 214, 190),
            "brick building": (160, 84, 62), "glass building": (110, 150, 180)}[kind]  # type: ignore[index]
    window = (60, 80, 100) if kind != "glass building" else (170, 200, 220)

    def scene(c: Canvas, r: np.random.Generator) -> None:
        c.sky(_jitter(r, (92, 146, 210)), (208, 222, 236))
        c.ground((168, 164, 156), (196, 190, 180))  # plaza paving
        skyline(c, r, -2.0, 2.0, 0.08, (156, 166, 180))
        h = float(r.uniform(0.25, 0.42))
        w = float(r.uniform(0.25, 0.4))
        cx = float(r.uniform(-0.1, 0.1))
        _facade(c, cx - w, cx + w, 0.0, h, _jitter(r, wall, 0.08), window, r)
        c.rect(cx - 0.05, 0.0, cx + 0.05, 0.05, (50, 46, 44))  # entrance
        for d in (0.03, 0.08, 0.16, 0.3, 0.55):
            c.line([(-3, -d), (3, -d)], (150, 146, 140), 0.6)

    return scene, f"{kind} on a paved plaza"


def _hills(rng: np.random.Generator) -> tuple[Callable[[Canvas, np.random.Generator], None], str]:
    dry = bool(rng.random() < 0.3)
    base = (150, 150, 80) if dry else (80, 130, 64)
    fence = bool(rng.random() < 0.5)

    def scene(c: Canvas, r: np.random.Generator) -> None:
        c.sky(_jitter(r, (100, 156, 220)), (216, 230, 240))
        c.ground(shade(base, 0.9), shade(base, 1.1))
        xs = np.linspace(-2, 2, 60)
        for layer in range(3):  # far (hazy) to near ridges
            amp = 0.06 + 0.04 * layer * float(r.uniform(0.5, 1.2))
            ph, fr = float(r.uniform(0, 6)), float(r.uniform(2, 5))
            top = 0.02 + amp * (0.5 + 0.5 * np.sin(xs * fr + ph)) * (1.0 - 0.3 * layer)
            col = mix(shade(base, 0.8 + 0.15 * layer), (170, 190, 200), 0.5 - 0.2 * layer)
            c.poly(list(zip(xs, top, strict=True)) + [(2, -0.01), (-2, -0.01)], col)
        if fence:
            for x in np.linspace(-1.2, 1.2, 24):
                c.line([(x, -0.05), (x, -0.02)], (110, 86, 60), 0.8)
            c.line([(-1.2, -0.03), (1.2, -0.03)], (110, 86, 60), 0.6)

    desc = ("dry golden hills" if dry else "rolling green hills") + (" behind a wooden fence" if fence else "")
    return scene, desc


def _beach(rng: np.random.Generator) -> tuple[Callable[[Canvas, np.random.Generator], None], str]:
    sand = _jitter(rng, (226, 206, 164), 0.06)
    rocks = bool(rng.random() < 0.4)

    def scene(c: Canvas, r: np.random.Generator) -> None:
        c.sky(_jitter(r, (70, 140, 220)), (200, 224, 242))
        c.ground(shade(sand, 0.95), sand)
        c.band(0.0, -0.1, (44, 104, 168), (80, 160, 190), steps=8)
        waves(c, r, -0.004, -0.095, 40, (224, 238, 244))
        c.rect(-3, -0.118, 3, -0.1, (240, 244, 246))  # foam
        if rocks:
            side = float(r.choice([-1, 1]))
            c.poly([(side * 0.5, -0.002), (side * 0.7, 0.05), (side * 0.9, 0.06), (side * 1.4, 0.02),
                    (side * 1.6, -0.002)], (100, 96, 92))
        for _ in range(int(r.integers(0, 4))):  # parasols
            x = float(r.uniform(-0.6, 0.6))
            c.line([(x, -0.2), (x, -0.16)], (90, 80, 70), 0.6)
            c.poly([(x - 0.035, -0.165), (x, -0.15), (x + 0.035, -0.165)],
                   _pick(r, [(230, 70, 60), (250, 200, 60), (60, 130, 210)]))  # type: ignore[arg-type]

    return scene, "sandy beach by the blue sea" + (" with dark rocks" if rocks else "")


def _room(rng: np.random.Generator) -> tuple[Callable[[Canvas, np.random.Generator], None], str]:
    wall = _jitter(rng, _pick(rng, [(226, 220, 204), (200, 214, 220), (236, 210, 190), (210, 200, 226)]), 0.05)  # type: ignore[arg-type]
    floor = _pick(rng, [(150, 110, 76), (180, 150, 110), (120, 120, 124)])
    kind = _pick(rng, ["living room", "cafe", "bedroom"])

    def scene(c: Canvas, r: np.random.Generator) -> None:
        c.sky(shade(wall, 1.05), wall)  # no sky indoors: the wall fills the upper frame
        c.ground(shade(floor, 0.85), floor)  # type: ignore[arg-type]
        for d in (0.02, 0.05, 0.1, 0.18, 0.3, 0.5):  # floor boards
            c.line([(-3, -d), (3, -d)], shade(floor, 0.8), 0.5)  # type: ignore[arg-type]
        wx = float(r.uniform(-0.4, 0.1))
        c.rect(wx, 0.06, wx + 0.22, 0.24, (236, 236, 230))  # window with a view of the sky
        c.rect(wx + 0.01, 0.07, wx + 0.21, 0.23, (150, 196, 236))
        c.line([(wx + 0.11, 0.07), (wx + 0.11, 0.23)], (236, 236, 230), 1.0)
        px = float(r.uniform(0.15, 0.35))
        c.rect(px, 0.12, px + 0.1, 0.2, _pick(r, [(60, 90, 140), (170, 70, 60), (80, 130, 80)]))  # type: ignore[arg-type]
        if kind == "cafe":
            for x in (-0.45, 0.0, 0.45):
                c.rect(x - 0.07, -0.02, x + 0.07, 0.03, (120, 80, 50))
        else:
            c.rect(-0.6, -0.03, -0.2, 0.05, _pick(r, [(90, 110, 150), (150, 100, 80), (120, 130, 100)]))  # type: ignore[arg-type]

    return scene, f"cosy {kind} with a window"


# place key -> (caption phrase after "in front of", generator)
PLACES: dict[str, tuple[str, Callable]] = {
    "street": ("a city street", _street),
    "park": ("a park", _park),
    "building": ("a building", _building),
    "hills": ("green hills", _hills),
    "beach": ("a beach", _beach),
    "room": ("a room interior", _room),
}


# ---------------------------------------------------------------- samples


@dataclass(frozen=True)
class WorldSample:
    image: Image.Image
    caption: str
    place: str
    shot: str
    angle: str
    pose: str


def caption_for(place: str, shot: str, angle: str, pose: str, description: str,
                words: CaptionConfig | None = None, drop: frozenset[str] = frozenset()) -> str:
    """The base's caption: the LoRA template minus the trigger, with a generic place.

    ``drop`` leaves fields out (``shot``, ``angle``, ``pose``, ``description``), so the model also
    learns from partial captions as users write them.
    """
    words = words or CaptionConfig()
    parts = ["snapshot photo", f"in front of {PLACES[place][0]}"]
    if "shot" not in drop:
        parts.append(words.shot_words[shot])
    if "angle" not in drop:
        parts.append(words.angle_words[angle])
    if "pose" not in drop:
        parts.append(f"person {pose}")
    if "description" not in drop:
        parts.append(description)
    return ", ".join(parts)


@lru_cache(maxsize=64)
def _place(place: str, instance: int, seed: int) -> tuple[Callable, str]:
    return PLACES[place][1](np.random.default_rng([seed, instance, sum(map(ord, place))]))


@lru_cache(maxsize=512)
def _backdrop(place: str, instance: int, angle: str, width: int, height: int, seed: int) -> Image.Image:
    scene, _ = _place(place, instance, seed)
    cfg = SampleDataConfig(seed=seed, width=width, height=height)
    return draw_background(scene, f"toyworld/{place}/{instance}", angle, cfg)  # read-only: cached


def render_world_photo(place: str, instance: int, angle: str, shot: str, pose: str, variant: int,  # noqa: PLR0913
                       width: int, height: int, seed: int = 0) -> tuple[Image.Image, str]:  # a photo's every coordinate
    """One toy-world photo (width x height) and the place's description."""
    _, desc = _place(place, instance, seed)
    # Drawn at 2x the output, then resized with Lanczos: like a phone photo shrunk by preprocess.
    cfg = SampleDataConfig(seed=seed, width=width * 2, height=height * 2)
    bg = _backdrop(place, instance, angle, cfg.width, cfg.height, seed)
    img = compose_photo(bg, f"toyworld/{place}/{instance}", angle, shot, pose, variant, cfg)
    return img.resize((width, height), Image.Resampling.LANCZOS), desc


def world_samples(count: int, seed: int = 0, width: int = 56, height: int = 72, instances: int = 24,
                  start: int = 0, drop_rate: float = 0.1) -> list[WorldSample]:
    """``count`` photos, cycling place x angle x shot so every combination is covered evenly.

    ``start`` skips the first samples of the same stream (a held-out set is ``start=N``).
    """
    out = []
    combos = [(p, a, s) for p in PLACES for a in ANGLES for s in SHOTS]
    for i in range(start, start + count):
        rng = np.random.default_rng([seed, i, 7])
        place, angle, shot = combos[i % len(combos)]
        pose = POSES[int(rng.integers(len(POSES)))]
        instance = int(rng.integers(instances))
        img, desc = render_world_photo(place, instance, angle, shot, pose, i, width, height, seed)
        drop = frozenset(f for f in ("shot", "angle", "pose", "description") if rng.random() < drop_rate)
        out.append(WorldSample(img, caption_for(place, shot, angle, pose, desc, drop=drop), place, shot, angle, pose))
    return out


def name_angles(captions: list[str], rate: float, seed: int = 0) -> list[str]:
    """``captions`` with the camera-angle phrase kept in only ``rate`` of them (a seeded choice).

    Web captions, which taught Stable Diffusion, rarely say "low-angle shot": SD draws every camera
    angle but follows the words weakly. ``Recipe.angle_caption_rate`` below 1 builds a toy-world base
    like that (the shipped one uses 1.0; what 0 gave: docs/results.md).
    """
    angle_parts = set(CaptionConfig().angle_words.values())
    rng = np.random.default_rng([seed, 13])
    keep = rng.random(len(captions)) < rate
    return [c if k else ", ".join(p for p in c.split(", ") if p not in angle_parts)
            for c, k in zip(captions, keep, strict=True)]


def place_phrases() -> list[str]:
    return [phrase for phrase, _ in PLACES.values()]

