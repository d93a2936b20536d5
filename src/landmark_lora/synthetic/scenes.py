"""The landmarks' backgrounds: one hand-made procedural scene per catalogue landmark, a generic one otherwise.

    from landmark_lora.synthetic.scenes import landmark_background
    bg = landmark_background(cat["gyeongbokgung"], "low_angle", cfg)   # PIL image, SUPERSAMPLE x size + margin

Palace hall, tower on a hill, hanok alley, beach with high-rises, volcanic cone; a catalogue entry
without a scene still renders: a generic monument whose shape follows its description (temple ->
pagoda, gate, dome, tower) and whose colours come from its slug. The background depends only on
(landmark, angle, seed): the same place seen from the same camera angle in every shot.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image

from landmark_lora.catalogue import Landmark
from landmark_lora.config import SampleDataConfig
from landmark_lora.synthetic.canvas import (
    SS,
    VIEWS,
    Canvas,
    Pt,
    columns,
    curved_roof,
    mix,
    seeded_rng,
    shade,
    skyline,
    waves,
)

# ---------------------------------------------------------------- the five catalogue landmarks


def _gyeongbokgung(c: Canvas, rng: np.random.Generator) -> None:
    c.sky((92, 148, 212), (206, 223, 236))
    c.ground((184, 178, 166), (214, 206, 190))
    # Bugaksan behind the hall: a hazy far ridge and a greener near one.
    c.poly([(-2, 0), (-0.8, 0.06), (-0.45, 0.16), (-0.2, 0.27), (-0.06, 0.35), (0.04, 0.33), (0.2, 0.25),
            (0.42, 0.2), (0.7, 0.13), (1.1, 0.07), (2, 0.02), (2, 0)], (128, 148, 146))
    c.poly([(-2, 0), (-0.7, 0.04), (-0.5, 0.1), (-0.3, 0.2), (-0.12, 0.26), (0.0, 0.24), (0.14, 0.19),
            (0.35, 0.14), (0.6, 0.09), (0.9, 0.05), (2, 0.01), (2, 0)], (84, 112, 86))
    for _ in range(90):  # trees along the palace wall
        x = rng.uniform(-1.4, 1.4)
        c.dot(x, rng.uniform(0.0, 0.03), rng.uniform(0.012, 0.025), shade((58, 92, 56), rng.uniform(0.8, 1.2)))
    c.rect(-2, -0.012, 2, 0.012, (150, 60, 48))  # low red palace wall
    c.rect(-2, 0.012, 2, 0.018, (62, 64, 68))
    # Stone courtyard: transverse joints closer together with distance, rows converging on the hall.
    for d in (0.015, 0.035, 0.06, 0.095, 0.14, 0.2, 0.28, 0.39, 0.54, 0.75, 1.0):
        c.line([(-3, -d), (3, -d)], (160, 152, 140), 0.7)
    for x in np.linspace(-1.6, 1.6, 15):
        c.line([(x * 0.06, -0.012), (x, -1.2)], (166, 158, 146), 0.7)
    # The hall on its two-tier stone platform.
    c.rect(-0.33, -0.04, 0.33, 0.0, (170, 165, 155))
    c.rect(-0.3, 0.0, 0.3, 0.028, (186, 180, 168))
    c.rect(-0.05, -0.04, 0.05, 0.028, (198, 192, 180))
    for y in np.linspace(-0.035, 0.024, 8):
        c.line([(-0.05, y), (0.05, y)], (160, 154, 144), 0.5)
    c.rect(-0.27, 0.028, 0.27, 0.118, (112, 50, 40))  # latticed doors behind the columns
    for x in np.linspace(-0.26, 0.26, 27):
        c.line([(x, 0.035), (x, 0.108)], (150, 98, 72), 0.5)
    columns(c, np.linspace(-0.255, 0.255, 8), 0.028, 0.12, 0.009, (170, 40, 34))
    c.rect(-0.28, 0.112, 0.28, 0.132, (52, 126, 112))  # dancheong band
    for x in np.linspace(-0.27, 0.27, 19):
        c.dot(x, 0.122, 0.004, (224, 206, 120))
    # Upper storey, then the lower roof over its foot, then the upper roof.
    c.rect(-0.2, 0.16, 0.2, 0.205, (112, 50, 40))
    columns(c, np.linspace(-0.19, 0.19, 6), 0.16, 0.205, 0.007, (170, 40, 34))
    c.rect(-0.21, 0.198, 0.21, 0.212, (52, 126, 112))
    curved_roof(c, base=0.125, half_w=0.355, height=0.058, ridge_half=0.25, lift=0.024, color=(56, 58, 64))
    curved_roof(c, base=0.205, half_w=0.275, height=0.072, ridge_half=0.16, lift=0.026, color=(50, 52, 58))


def _namsan_hill(x: np.ndarray) -> np.ndarray:
    return 0.15 * np.clip(1 - ((x - 0.1) / 0.8) ** 2, 0, None) ** 1.3 + 0.004 * np.sin(x * 41)


def _n_seoul_tower(c: Canvas, rng: np.random.Generator) -> None:
    c.sky((84, 144, 214), (200, 220, 238))
    c.ground((150, 150, 146), (196, 190, 180))
    skyline(c, rng, -2.0, 2.0, 0.05, (162, 172, 188))
    xs = np.linspace(-1.6, 1.6, 81)
    c.poly(list(zip(xs, _namsan_hill(xs), strict=False)) + [(1.6, -0.01), (-1.6, -0.01)], (64, 110, 58))
    for _ in range(160):  # forest texture on Namsan
        x = rng.uniform(-0.7, 0.9)
        top = float(_namsan_hill(np.array([x]))[0])
        if top > 0.01:
            tint = rng.choice([0.7, 0.85, 1.15, 1.3])
            c.dot(x, rng.uniform(0.0, top - 0.008), rng.uniform(0.008, 0.02), shade((64, 110, 58), tint))
    # The tower, right of centre so it shows beside the person: shaft, observation pod, antenna mast.
    tx, white, shadow = 0.14, (238, 238, 234), (198, 200, 204)
    c.rect(tx - 0.04, 0.13, tx + 0.04, 0.155, (214, 212, 206))
    c.poly([(tx - 0.018, 0.15), (tx + 0.018, 0.15), (tx + 0.011, 0.34), (tx - 0.011, 0.34)], white)
    c.poly([(tx + 0.004, 0.15), (tx + 0.018, 0.15), (tx + 0.011, 0.34), (tx + 0.003, 0.34)], shadow)
    c.poly([(tx - 0.011, 0.335), (tx + 0.011, 0.335), (tx + 0.044, 0.355), (tx - 0.044, 0.355)], white)
    c.rect(tx - 0.046, 0.355, tx + 0.046, 0.383, (62, 82, 104))  # windows of the observation deck
    for x in np.linspace(tx - 0.042, tx + 0.042, 9):
        c.line([(x, 0.357), (x, 0.381)], (120, 140, 160), 0.5)
    c.rect(tx - 0.048, 0.383, tx + 0.048, 0.392, white)
    c.poly([(tx - 0.042, 0.392), (tx + 0.042, 0.392), (tx + 0.022, 0.408), (tx - 0.022, 0.408)], white)
    c.rect(tx - 0.007, 0.408, tx + 0.007, 0.43, white)
    for i, y in enumerate(np.linspace(0.43, 0.462, 5)):
        c.rect(tx - 0.0025, y, tx + 0.0025, y + 0.008, (210, 60, 50) if i % 2 == 0 else white)
    # Plaza in the foreground: hedge, paving, and the railing hung with love locks.
    c.rect(-3, -0.02, 3, 0.0, (52, 92, 50))
    for d in (0.05, 0.09, 0.15, 0.24, 0.38, 0.6, 0.9):
        c.line([(-3, -d), (3, -d)], (170, 166, 158), 0.7)
    c.line([(-3, -0.03), (3, -0.03)], (90, 90, 96), 1.2)
    c.line([(-3, -0.045), (3, -0.045)], (90, 90, 96), 0.8)
    for x in np.linspace(-1.2, 1.2, 25):
        c.line([(x, -0.06), (x, -0.03)], (80, 80, 86), 1.0)
    for _ in range(260):
        col = [(230, 60, 80), (250, 200, 60), (80, 150, 230), (240, 130, 170), (120, 200, 110)][int(rng.integers(5))]
        c.dot(rng.uniform(-1.2, 1.2), rng.uniform(-0.05, -0.028), 0.004, col)


def _bukchon_hanok_village(c: Canvas, rng: np.random.Generator) -> None:
    c.sky((104, 156, 214), (214, 226, 236))
    c.ground((150, 144, 136), (176, 168, 156))
    # Looking up a sloping alley: a tiny 3D model (metres), camera 1.6 m up, ground rising 5% per metre.
    grade, eye, k = 0.05, 1.6, 0.45

    def p(x: float, y: float, z: float) -> Pt:
        return (k * x / z, k * (y - eye) / z)

    c.poly([(-2, 0.0), (-0.5, 0.05), (-0.2, 0.1), (0.0, 0.12), (0.25, 0.08), (0.6, 0.04), (2, 0.0)],
           (120, 142, 130))  # hills beyond the top of the alley
    far = 70.0
    c.poly([p(-1.6, grade * far, far), p(1.6, grade * far, far), p(1.6, 0.0, 0.5), p(-1.6, 0.0, 0.5)],
           (172, 164, 152))  # granite paving
    for z in np.geomspace(far, 0.8, 26):
        c.line([p(-1.6, grade * z, z), p(1.6, grade * z, z)], (150, 142, 132), 0.4 + 1.6 / z)
    c.line([p(0, grade * far, far), p(0, 0, 0.5)], (140, 132, 124), 1.0)  # drain channel down the middle
    # Hanok on both sides, far to near; each house's roof is level, so the roofs step down the slope.
    house_ends = (40, 27, 19, 13.5, 9.6, 6.9, 5.0, 3.6, 2.6, 1.9)  # distances (m); houses get longer nearby
    bounds = [far] + [float(z * rng.uniform(0.9, 1.1)) for z in house_ends] + [1.3, 0.9]
    roof, plaster, stone, wood = (56, 58, 64), (234, 228, 214), (150, 146, 140), (108, 72, 48)
    for za, zb in zip(bounds[:-1], bounds[1:], strict=False):
        floor = grade * (za + zb) / 2
        w = 2.5 / zb  # nearer houses get thicker lines
        for s in (-1.0, 1.0):
            wall_x, eave_x, ridge_x = 1.6 * s, 1.05 * s, 3.8 * s
            top, eave_y, ridge_y = floor + 2.3, floor + 2.55, floor + 4.3
            c.poly([p(wall_x, grade * za, za), p(wall_x, grade * zb, zb), p(wall_x, top, zb), p(wall_x, top, za)],
                   plaster)
            c.poly([p(wall_x, grade * za, za), p(wall_x, grade * zb, zb), p(wall_x, floor + 0.8, zb),
                    p(wall_x, floor + 0.8, za)], stone)  # granite footing
            zm = (za + zb) / 2
            if rng.random() < 0.3:  # a wooden gate instead of a window
                zw0, zw1 = zm + (za - zb) * 0.12, zm - (za - zb) * 0.12
                c.poly([p(wall_x, grade * zw0, zw0), p(wall_x, grade * zw1, zw1), p(wall_x, floor + 2.1, zw1),
                        p(wall_x, floor + 2.1, zw0)], (96, 60, 40))
                c.line([p(wall_x, grade * zm, zm), p(wall_x, floor + 2.1, zm)], (70, 44, 30), 0.3 + 0.4 * w)
            else:
                zw0, zw1 = zm + (za - zb) * 0.2, zm - (za - zb) * 0.2
                c.poly([p(wall_x, floor + 1.1, zw0), p(wall_x, floor + 1.1, zw1), p(wall_x, floor + 2.0, zw1),
                        p(wall_x, floor + 2.0, zw0)], wood)  # latticed window
                for yy in (1.4, 1.7):
                    c.line([p(wall_x, floor + yy, zw0), p(wall_x, floor + yy, zw1)], (220, 204, 170), 0.3 + 0.5 * w)
            for z in (za, zb):
                c.line([p(wall_x, grade * z, z), p(wall_x, top, z)], wood, 0.5 + 0.8 * w)  # posts
            # Roof: eave with upturned corners, the slope back to the ridge, the end face towards us.
            zs = np.linspace(za, zb, 9)
            lift = 0.35 * (2 * np.linspace(0, 1, 9) - 1) ** 4
            eave = [p(eave_x, eave_y + float(dy), float(z)) for z, dy in zip(zs, lift, strict=False)]
            c.poly(eave + [p(ridge_x, ridge_y, zb), p(ridge_x, ridge_y, za)], roof)
            c.poly([p(wall_x, top, zb), p(eave_x, eave_y + 0.35, zb), p(ridge_x, ridge_y, zb)], shade(roof, 0.8))
            for z in np.linspace(za, zb, 10)[1:-1]:
                c.line([p(eave_x, eave_y, z), p(ridge_x, ridge_y, z)], shade(roof, 0.7), 0.3 + 0.4 * w)
            c.line(eave, (200, 196, 186), 0.3 + 0.5 * w)  # pale fascia
            c.line([p(ridge_x, ridge_y, za), p(ridge_x, ridge_y, zb)], shade(roof, 0.55), 0.5 + 0.9 * w)


def _haeundae_beach(c: Canvas, rng: np.random.Generator) -> None:
    c.sky((66, 138, 222), (196, 222, 242))
    c.ground((214, 196, 158), (238, 222, 186))  # sand
    for cx, cy, s in ((-0.5, 0.42, 1.0), (0.25, 0.38, 0.8), (0.8, 0.44, 1.1)):
        for dx, dy, r in ((0, 0, 0.04), (0.04, 0.01, 0.035), (-0.04, -0.005, 0.03), (0.075, -0.005, 0.025)):
            c.dot(cx + dx * s, cy + dy * s, r * s, (246, 248, 250))
    c.poly([(-2, 0), (-1.2, 0.05), (-0.8, 0.09), (-0.55, 0.07), (-0.3, 0.03), (0.2, 0.0)], (96, 124, 110))  # Jangsan
    # High-rise row on the shore, left of centre; the right opens onto the sea.
    x = -1.3
    towers = []
    while x < 0.12:
        w = rng.uniform(0.035, 0.07)
        h = rng.uniform(0.09, 0.22) if rng.random() > 0.25 else rng.uniform(0.27, 0.36)
        towers.append((x, w, h))
        x += w * rng.uniform(0.8, 1.15)
    palette = [(206, 214, 222), (150, 176, 196), (228, 224, 214), (120, 146, 170), (186, 196, 204)]
    for _i, (x, w, h) in enumerate(towers):
        col = palette[int(rng.integers(len(palette)))]
        c.rect(x, -0.004, x + w, h, col)
        c.rect(x + w * 0.72, -0.004, x + w, h, shade(col, 0.82))  # shaded side
        for y in np.arange(0.01, h - 0.004, 0.011):
            c.line([(x + 0.003, y), (x + w - 0.003, y)], shade(col, 0.78), 0.4)
        if h > 0.26:  # landmark towers get a crown
            c.poly([(x, h), (x + w, h), (x + w * 0.5, h + 0.03)], shade(col, 0.9))
    c.rect(-2, -0.01, 0.25, 0.0, (120, 124, 116))  # shore road
    # Sea: deep blue at the horizon, lighter towards the beach; wave lines and a foam edge.
    c.band(0.0, -0.14, (40, 98, 162), (72, 152, 182), steps=12)
    waves(c, rng, -0.005, -0.135, 70, (222, 236, 244))
    foam = [(x, -0.14 + 0.006 * math.sin(x * 30)) for x in np.linspace(-2, 2, 80)]
    c.poly(foam + [(2, -0.158), (-2, -0.158)], (240, 244, 246))
    c.rect(-3, -0.185, 3, -0.158, (196, 174, 136))  # wet sand
    for x, col in ((-0.34, (230, 70, 60)), (-0.22, (250, 200, 60)), (0.24, (60, 130, 210)), (0.36, (240, 120, 40))):
        c.line([(x, -0.2), (x, -0.16)], (90, 80, 70), 0.6)  # parasols on the beach
        c.poly([(x - 0.035, -0.165), (x, -0.15), (x + 0.035, -0.165)], col)


def _seongsan_ilchulbong(c: Canvas, rng: np.random.Generator) -> None:
    c.sky((88, 150, 216), (204, 224, 240))
    c.ground((150, 162, 80), (120, 150, 64))
    c.band(0.0, -0.075, (38, 92, 158), (64, 136, 176), steps=8)
    waves(c, rng, -0.004, -0.07, 40, (214, 230, 240))
    # The tuff cone: low green isthmus on the left, steep flanks, flat crater rim.
    c.poly([(-1.6, -0.002), (-0.7, 0.012), (-0.45, 0.03), (-0.3, 0.025), (-0.2, 0.0)], (96, 132, 76))
    rim_l, rim_r, rim_y = -0.17, 0.14, 0.2
    outline = [(-0.42, -0.004), (-0.32, 0.03), (-0.24, 0.085), (-0.2, 0.14), (rim_l, rim_y)]
    crown = [(x, rim_y + (0.012 if i % 2 else 0.0) + 0.004 * math.sin(i * 2.3))
             for i, x in enumerate(np.linspace(rim_l, rim_r, 15))]
    outline = outline + crown + [(0.17, 0.14), (0.22, 0.08), (0.31, 0.03), (0.44, -0.004)]
    c.poly(outline, (78, 122, 62))
    # Rock crown: brown cliffs below the rim with vertical ridges.
    band = crown + [(0.165, 0.14), (0.12, 0.125), (0.0, 0.13), (-0.12, 0.128), (-0.195, 0.14)]
    c.poly(band, (132, 116, 94))
    for x in np.linspace(rim_l + 0.01, rim_r - 0.01, 12):
        c.line([(x, rim_y - 0.002), (x * 1.05, 0.13)], (98, 86, 72), 0.8)
    c.rect(rim_l + 0.01, rim_y + 0.004, rim_r - 0.01, rim_y + 0.012, (96, 134, 70))  # green crater floor
    for _ in range(40):
        x = rng.uniform(-0.3, 0.3)
        c.dot(x, rng.uniform(0.01, 0.1), rng.uniform(0.006, 0.014), shade((78, 122, 62), rng.uniform(0.75, 1.2)))
    # Jeju foreground: black basalt wall, then a canola field.
    c.rect(-3, -0.095, 3, -0.075, (58, 58, 62))
    for x in np.linspace(-1.2, 1.2, 60):
        c.dot(x, -0.078, 0.008, (72, 72, 76))
    for _ in range(700):
        y = -rng.uniform(0.1, 1.0)
        c.dot(rng.uniform(-1.0, 1.0), y, 0.003 + 0.012 * -y, (236, 206, 48) if rng.random() < 0.8 else (250, 228, 90))


# ---------------------------------------------------------------- landmarks added by users


_GENERIC_KINDS = ("pagoda", "gate", "dome", "spire")
_KIND_WORDS = {
    "pagoda": ("pagoda", "temple", "shrine"),
    "gate": ("gate", "fortress", "wall", "palace", "hanok"),
    "dome": ("dome", "museum", "hall", "stadium", "church"),
    "spire": ("tower", "spire", "obelisk", "statue", "lighthouse"),
}


def _generic(slug: str, description: str) -> Callable[[Canvas, np.random.Generator], None]:
    """A plausible monument for a slug with no hand-made scene: shape from the description, colours from the slug."""
    words = {w for word in re.findall(r"[a-z]+", description.lower()) for w in (word, word.removesuffix("s"))}
    kind = next((k for k, ws in _KIND_WORDS.items() if words & set(ws)), None)
    pick = seeded_rng("generic", slug)
    kind = kind or _GENERIC_KINDS[int(pick.integers(len(_GENERIC_KINDS)))]
    main = tuple(int(v) for v in pick.integers(60, 220, 3))
    accent = tuple(int(v) for v in pick.integers(30, 200, 3))
    sky_top = mix((80, 140, 210), tuple(int(v) for v in pick.integers(60, 200, 3)), 0.3)
    ground = [(120, 150, 80), (180, 174, 162), (222, 204, 160)][int(pick.integers(3))]

    def scene(c: Canvas, rng: np.random.Generator) -> None:
        c.sky(sky_top, (208, 222, 234))
        c.ground(shade(ground, 0.85), ground)
        c.poly([(-2, 0), (-0.6, 0.07), (-0.2, 0.12), (0.3, 0.09), (0.8, 0.05), (2, 0)], (118, 140, 128))
        skyline(c, rng, -2.0, 2.0, 0.03, (160, 170, 182))
        if kind == "pagoda":
            for i in range(5):
                w, y = 0.12 - 0.018 * i, 0.055 * i
                c.rect(-w * 0.6, y, w * 0.6, y + 0.04, main)
                curved_roof(c, y + 0.035, w, 0.02, w * 0.55, 0.012, accent)
            c.rect(-0.004, 0.29, 0.004, 0.34, accent)
        elif kind == "gate":
            c.rect(-0.3, 0.0, 0.3, 0.12, shade(main, 0.8))
            c.ellipse(0, 0.06, 0.05, 0.06, (40, 36, 34))
            c.rect(-0.05, 0.0, 0.05, 0.06, (40, 36, 34))
            c.rect(-0.2, 0.12, 0.2, 0.17, accent)
            curved_roof(c, 0.165, 0.27, 0.06, 0.16, 0.02, (56, 58, 64))
        elif kind == "dome":
            c.rect(-0.28, 0.0, 0.28, 0.13, main)
            columns(c, np.linspace(-0.25, 0.25, 10), 0.0, 0.11, 0.008, shade(main, 1.2))
            c.ellipse(0, 0.13, 0.13, 0.13, accent, n=40)
            c.rect(-0.3, 0.125, 0.3, 0.14, shade(main, 0.85))
        else:  # spire
            c.rect(-0.08, 0.0, 0.08, 0.04, shade(main, 0.8))
            c.poly([(-0.035, 0.04), (0.035, 0.04), (0.012, 0.38), (-0.012, 0.38)], main)
            c.poly([(-0.012, 0.38), (0.012, 0.38), (0.0, 0.43)], accent)

    return scene


_SCENES: dict[str, Callable[[Canvas, np.random.Generator], None]] = {
    "gyeongbokgung": _gyeongbokgung,
    "n_seoul_tower": _n_seoul_tower,
    "bukchon_hanok_village": _bukchon_hanok_village,
    "haeundae_beach": _haeundae_beach,
    "seongsan_ilchulbong": _seongsan_ilchulbong,
}


@lru_cache(maxsize=16)
def _background(slug: str, description: str, angle: str, width: int, height: int, pad: int, seed: int) -> Image.Image:
    """The place seen from one camera angle, with a ``pad`` margin for per-photo shifts. Cached: read-only."""
    c = Canvas(width, height, pad, VIEWS[angle])
    scene = _SCENES.get(slug) or _generic(slug, description)
    scene(c, seeded_rng(seed, slug, "scene"))  # not the angle: same trees and towers from every angle
    return c.img


def landmark_background(landmark: Landmark, angle: str, cfg: SampleDataConfig) -> Image.Image:
    """``landmark`` seen from ``angle`` (a valid angle), at SUPERSAMPLE x cfg's size plus the shake margin."""
    return _background(landmark.slug, landmark.description, angle, cfg.width * SS, cfg.height * SS, 2 * SS, cfg.seed)
