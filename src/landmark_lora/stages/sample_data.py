"""Synthetic sample photos: offline, deterministic, license-clean snapshots at the landmarks.

    landmark-lora sample-data        # -> render_sample_set(params.paths.incoming, catalogue, params.sample_data)

    from landmark_lora.stages.sample_data import POSES, render_photo, render_sample_set
    n = render_sample_set(Path("data/incoming"), load_catalogue(), params.sample_data)   # -> 150
    img = render_photo(cat["gyeongbokgung"], "low_angle", "full_body", "waving", 0, params.sample_data)
    img, mask = render_photo(..., return_mask=True)   # mask: bool (H, W), True where the person is

Every photo is drawn from scratch with numpy + Pillow (no downloads, no model weights), so
the demo has a labelled training set with no licensing questions. Each landmark has its own
procedural scene (palace hall, tower on a hill, hanok alley, beach with high-rises, volcanic
cone); a catalogue entry without one still renders: a generic monument whose shape follows
its description (temple -> pagoda, gate, dome, tower) and whose colours come from its slug.
A stylised person stands in front, framed by the shot type and posed by the pose text.

Determinism: every random choice comes from a numpy Generator seeded by ``cfg.seed`` and a
blake2b hash of the photo's labels (never Python's salted ``hash()``), so two runs write
byte-identical files. The background depends only on (landmark, angle): the same place seen
from the same camera angle in every shot, with small per-photo jitter (shift, light, noise).

Layout written by ``render_sample_set``::

    out_dir/<slug>/<slug>_<angle>_<shot>_<k>.jpg
    out_dir/metadata.csv      file,shot,angle,pose,caption   (file relative to out_dir)

Rows already in ``out_dir/metadata.csv`` for other files (e.g. your own labelled photos
waiting to be ingested) are kept; rows for the files rendered here are replaced.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Literal, TypeVar, overload

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from landmark_lora import fsutil
from landmark_lora.catalogue import ANGLES, SHOTS, UNSPECIFIED, Landmark
from landmark_lora.config import SampleDataConfig
from landmark_lora.stages.ingest import MANIFEST, MANIFEST_COLUMNS  # the drop folder's label file

POSES: tuple[str, ...] = (
    "standing relaxed",
    "waving",
    "making a peace sign",
    "hands on hips",
    "arms crossed",
    "pointing at the landmark",
    "sitting on steps",
)


SS = 2  # draw at 2x and downsample: anti-aliased edges without per-primitive AA
RGB = tuple[int, int, int]
Pt = tuple[float, float]
T = TypeVar("T")


# ---------------------------------------------------------------- seeding


def _seed(*parts: object) -> int:
    """Stable 64-bit seed from labels (same value in every process, unlike hash())."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(_seed(*parts))


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _shade(c: RGB, f: float) -> RGB:
    return tuple(int(max(0, min(255, round(x * f)))) for x in c)  # type: ignore[return-value]


# ---------------------------------------------------------------- camera angle


@dataclass(frozen=True)
class _View:
    horizon: float  # screen y of the horizon, as a fraction of the height
    scale: float  # landmark size relative to eye level
    stretch: float  # extra vertical scale: >1 looking up (looms), <1 looking down (flattened)
    keystone: float  # >0: verticals converge upward (looking up); <0: converge downward
    ground: float  # vertical scale of the ground: squashed at a grazing view from below, opened up from above
    head: float  # person's head size: foreshortening from below/above


_VIEWS = {
    "eye_level": _View(horizon=0.52, scale=1.0, stretch=1.0, keystone=0.0, ground=1.0, head=1.0),
    "low_angle": _View(horizon=0.80, scale=1.12, stretch=1.45, keystone=0.7, ground=0.45, head=0.92),
    "high_angle": _View(horizon=0.30, scale=0.72, stretch=0.72, keystone=-0.5, ground=1.5, head=1.1),
}


class _Canvas:
    """Draws a scene in world units, mapped to pixels through the camera angle.

    World: x = 0 at the frame centre, y = height above the horizon; both in frame heights
    (so a 3:4 portrait frame spans x in [-0.375, 0.375] at eye level). Negative y is ground.
    """

    def __init__(self, width: int, height: int, pad: int, view: _View) -> None:
        self.w, self.h, self.pad, self.view = width, height, pad, view
        self.img = Image.new("RGB", (width + 2 * pad, height + 2 * pad))
        self.d = ImageDraw.Draw(self.img)
        self.horizon_px = pad + view.horizon * height
        self.unit = height * view.scale  # pixels per world unit, horizontally

    def xy(self, x: float, y: float) -> Pt:
        v = self.view
        # Keystone acts on what rises above the horizon only: buildings lean, the ground stays put.
        k = min(max(1.0 - v.keystone * max(y, 0.0), 0.45), 2.5)
        vertical = v.stretch if y > 0 else v.ground
        return (self.pad + self.w / 2 + x * self.unit * k, self.horizon_px - y * self.unit * vertical)

    def poly(self, pts: list[Pt], fill: RGB) -> None:
        self.d.polygon([self.xy(x, y) for x, y in pts], fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: RGB, n: int = 24) -> None:
        a = np.linspace(0, 2 * np.pi, n, endpoint=False)
        self.poly(list(zip(cx + rx * np.cos(a), cy + ry * np.sin(a))), fill)

    def line(self, pts: list[Pt], fill: RGB, width: float = 1.0) -> None:
        self.d.line([self.xy(x, y) for x, y in pts], fill=fill, width=max(1, round(width * SS)))

    def dot(self, x: float, y: float, r: float, fill: RGB) -> None:
        """A round blob of world radius r (cheap: no keystone on its shape)."""
        px, py = self.xy(x, y)
        rp = max(0.6, r * self.unit)
        self.d.ellipse((px - rp, py - rp * 0.8, px + rp, py + rp * 0.8), fill=fill)

    def vgradient(self, y0: float, y1: float, top: RGB, bottom: RGB) -> None:
        """Screen-space vertical gradient between pixel rows y0..y1."""
        y0i, y1i = int(math.floor(y0)), int(math.ceil(y1))
        for y in range(max(0, y0i), min(self.img.height, y1i + 1)):
            t = (y - y0) / max(1.0, y1 - y0)
            self.d.line([(0, y), (self.img.width, y)], fill=_mix(top, bottom, min(max(t, 0.0), 1.0)))

    def sky(self, top: RGB, horizon: RGB) -> None:
        self.vgradient(0, self.horizon_px, top, horizon)

    def ground(self, far: RGB, near: RGB) -> None:
        self.vgradient(self.horizon_px, self.img.height, far, near)

    def band(self, y_top: float, y_bottom: float, c_top: RGB, c_bottom: RGB, steps: int = 10) -> None:
        """World-space horizontal band with a colour gradient (sea, fields)."""
        ys = np.linspace(y_top, y_bottom, steps + 1)
        for i in range(steps):
            self.rect(-3, ys[i + 1], 3, ys[i], _mix(c_top, c_bottom, i / max(1, steps - 1)))


# ---------------------------------------------------------------- shared landmark parts


def _curved_roof(
    c: _Canvas, base: float, half_w: float, height: float, ridge_half: float, lift: float, color: RGB, cx: float = 0.0
) -> None:
    """Korean tiled roof seen from the front: sagging eave with upturned corners, concave slopes."""
    ts = np.linspace(0.0, 1.0, 17)
    top = base + height
    eave = [(cx - half_w + 2 * half_w * t, base + lift * (2 * t - 1) ** 4) for t in ts]
    # Concave slope: steep by the ridge, flattening out towards the eave tip.
    side = [(ridge_half + (half_w - ridge_half) * s, base + lift + (height - lift) * (1 - s) ** 1.8) for s in ts]
    right = [(cx + dx, y) for dx, y in reversed(side)]
    left = [(cx - dx, y) for dx, y in side]
    c.poly(eave + right + [(cx - ridge_half, top)] + left, color)
    # Tile rows: lines from the eave up to the outline.
    side_dx = np.array([dx for dx, _ in side])  # increasing from the ridge end to the tip
    side_y = np.array([y for _, y in side])
    dark, light = _shade(color, 0.72), _shade(color, 1.5)
    for t in np.linspace(0.03, 0.97, 23):
        x = -half_w + 2 * half_w * t
        y_top = top if abs(x) <= ridge_half else float(np.interp(abs(x), side_dx, side_y))
        y_bot = base + lift * (2 * t - 1) ** 4
        c.line([(cx + x, y_bot), (cx + x, y_top)], dark, 0.6)
    c.line(eave, light, 0.9)  # pale fascia under the tiles
    c.line([(cx - ridge_half - 0.01, top + 0.006), (cx - ridge_half, top), (cx + ridge_half, top),
            (cx + ridge_half + 0.01, top + 0.006)], _shade(color, 0.6), 2.2)  # ridge cap, flared ends


def _columns(c: _Canvas, xs: np.ndarray, y0: float, y1: float, half: float, color: RGB) -> None:
    for x in xs:
        c.rect(x - half, y0, x + half, y1, color)
        c.rect(x - half, y0, x - half * 0.3, y1, _shade(color, 1.25))  # lit edge: round wooden column


def _skyline(c: _Canvas, rng: np.random.Generator, x0: float, x1: float, hmax: float, color: RGB) -> None:
    """Distant hazy city blocks sitting on the horizon."""
    x = x0
    while x < x1:
        w = rng.uniform(0.015, 0.045)
        c.rect(x, -0.002, x + w, rng.uniform(0.008, hmax), _shade(color, rng.uniform(0.93, 1.05)))
        x += w * rng.uniform(0.7, 1.1)


def _waves(c: _Canvas, rng: np.random.Generator, y_far: float, y_near: float, n: int, color: RGB) -> None:
    for _ in range(n):
        y = rng.uniform(y_near, y_far)
        depth = (y_far - y) / max(1e-6, y_far - y_near)  # 0 far .. 1 near: longer, thicker lines
        x = rng.uniform(-1.2, 1.2)
        ln = 0.02 + 0.12 * depth
        xs = np.linspace(x, x + ln, 6)
        c.line([(xx, y + 0.002 * math.sin(i)) for i, xx in enumerate(xs)], color, 0.5 + 1.0 * depth)


# ---------------------------------------------------------------- the five catalogue landmarks


def _gyeongbokgung(c: _Canvas, rng: np.random.Generator) -> None:
    c.sky((92, 148, 212), (206, 223, 236))
    c.ground((184, 178, 166), (214, 206, 190))
    # Bugaksan behind the hall: a hazy far ridge and a greener near one.
    c.poly([(-2, 0), (-0.8, 0.06), (-0.45, 0.16), (-0.2, 0.27), (-0.06, 0.35), (0.04, 0.33), (0.2, 0.25),
            (0.42, 0.2), (0.7, 0.13), (1.1, 0.07), (2, 0.02), (2, 0)], (128, 148, 146))
    c.poly([(-2, 0), (-0.7, 0.04), (-0.5, 0.1), (-0.3, 0.2), (-0.12, 0.26), (0.0, 0.24), (0.14, 0.19),
            (0.35, 0.14), (0.6, 0.09), (0.9, 0.05), (2, 0.01), (2, 0)], (84, 112, 86))
    for _ in range(90):  # trees along the palace wall
        x = rng.uniform(-1.4, 1.4)
        c.dot(x, rng.uniform(0.0, 0.03), rng.uniform(0.012, 0.025), _shade((58, 92, 56), rng.uniform(0.8, 1.2)))
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
    _columns(c, np.linspace(-0.255, 0.255, 8), 0.028, 0.12, 0.009, (170, 40, 34))
    c.rect(-0.28, 0.112, 0.28, 0.132, (52, 126, 112))  # dancheong band
    for x in np.linspace(-0.27, 0.27, 19):
        c.dot(x, 0.122, 0.004, (224, 206, 120))
    # Upper storey, then the lower roof over its foot, then the upper roof.
    c.rect(-0.2, 0.16, 0.2, 0.205, (112, 50, 40))
    _columns(c, np.linspace(-0.19, 0.19, 6), 0.16, 0.205, 0.007, (170, 40, 34))
    c.rect(-0.21, 0.198, 0.21, 0.212, (52, 126, 112))
    _curved_roof(c, base=0.125, half_w=0.355, height=0.058, ridge_half=0.25, lift=0.024, color=(56, 58, 64))
    _curved_roof(c, base=0.205, half_w=0.275, height=0.072, ridge_half=0.16, lift=0.026, color=(50, 52, 58))


def _namsan_hill(x: np.ndarray) -> np.ndarray:
    return 0.15 * np.clip(1 - ((x - 0.1) / 0.8) ** 2, 0, None) ** 1.3 + 0.004 * np.sin(x * 41)


def _n_seoul_tower(c: _Canvas, rng: np.random.Generator) -> None:
    c.sky((84, 144, 214), (200, 220, 238))
    c.ground((150, 150, 146), (196, 190, 180))
    _skyline(c, rng, -2.0, 2.0, 0.05, (162, 172, 188))
    xs = np.linspace(-1.6, 1.6, 81)
    c.poly(list(zip(xs, _namsan_hill(xs))) + [(1.6, -0.01), (-1.6, -0.01)], (64, 110, 58))
    for _ in range(160):  # forest texture on Namsan
        x = rng.uniform(-0.7, 0.9)
        top = float(_namsan_hill(np.array([x]))[0])
        if top > 0.01:
            tint = rng.choice([0.7, 0.85, 1.15, 1.3])
            c.dot(x, rng.uniform(0.0, top - 0.008), rng.uniform(0.008, 0.02), _shade((64, 110, 58), tint))
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


def _bukchon_hanok_village(c: _Canvas, rng: np.random.Generator) -> None:
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
    for za, zb in zip(bounds[:-1], bounds[1:]):
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
            eave = [p(eave_x, eave_y + float(l), float(z)) for z, l in zip(zs, lift)]
            c.poly(eave + [p(ridge_x, ridge_y, zb), p(ridge_x, ridge_y, za)], roof)
            c.poly([p(wall_x, top, zb), p(eave_x, eave_y + 0.35, zb), p(ridge_x, ridge_y, zb)], _shade(roof, 0.8))
            for z in np.linspace(za, zb, 10)[1:-1]:
                c.line([p(eave_x, eave_y, z), p(ridge_x, ridge_y, z)], _shade(roof, 0.7), 0.3 + 0.4 * w)
            c.line(eave, (200, 196, 186), 0.3 + 0.5 * w)  # pale fascia
            c.line([p(ridge_x, ridge_y, za), p(ridge_x, ridge_y, zb)], _shade(roof, 0.55), 0.5 + 0.9 * w)


def _haeundae_beach(c: _Canvas, rng: np.random.Generator) -> None:
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
    for i, (x, w, h) in enumerate(towers):
        col = palette[int(rng.integers(len(palette)))]
        c.rect(x, -0.004, x + w, h, col)
        c.rect(x + w * 0.72, -0.004, x + w, h, _shade(col, 0.82))  # shaded side
        for y in np.arange(0.01, h - 0.004, 0.011):
            c.line([(x + 0.003, y), (x + w - 0.003, y)], _shade(col, 0.78), 0.4)
        if h > 0.26:  # landmark towers get a crown
            c.poly([(x, h), (x + w, h), (x + w * 0.5, h + 0.03)], _shade(col, 0.9))
    c.rect(-2, -0.01, 0.25, 0.0, (120, 124, 116))  # shore road
    # Sea: deep blue at the horizon, lighter towards the beach; wave lines and a foam edge.
    c.band(0.0, -0.14, (40, 98, 162), (72, 152, 182), steps=12)
    _waves(c, rng, -0.005, -0.135, 70, (222, 236, 244))
    foam = [(x, -0.14 + 0.006 * math.sin(x * 30)) for x in np.linspace(-2, 2, 80)]
    c.poly(foam + [(2, -0.158), (-2, -0.158)], (240, 244, 246))
    c.rect(-3, -0.185, 3, -0.158, (196, 174, 136))  # wet sand
    for x, col in ((-0.34, (230, 70, 60)), (-0.22, (250, 200, 60)), (0.24, (60, 130, 210)), (0.36, (240, 120, 40))):
        c.line([(x, -0.2), (x, -0.16)], (90, 80, 70), 0.6)  # parasols on the beach
        c.poly([(x - 0.035, -0.165), (x, -0.15), (x + 0.035, -0.165)], col)


def _seongsan_ilchulbong(c: _Canvas, rng: np.random.Generator) -> None:
    c.sky((88, 150, 216), (204, 224, 240))
    c.ground((150, 162, 80), (120, 150, 64))
    c.band(0.0, -0.075, (38, 92, 158), (64, 136, 176), steps=8)
    _waves(c, rng, -0.004, -0.07, 40, (214, 230, 240))
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
        c.dot(x, rng.uniform(0.01, 0.1), rng.uniform(0.006, 0.014), _shade((78, 122, 62), rng.uniform(0.75, 1.2)))
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


def _generic(slug: str, description: str) -> Callable[[_Canvas, np.random.Generator], None]:
    """A plausible monument for a slug with no hand-made scene: shape from the description, colours from the slug."""
    words = {w for word in re.findall(r"[a-z]+", description.lower()) for w in (word, word.removesuffix("s"))}
    kind = next((k for k, ws in _KIND_WORDS.items() if words & set(ws)), None)
    pick = _rng("generic", slug)
    kind = kind or _GENERIC_KINDS[int(pick.integers(len(_GENERIC_KINDS)))]
    main = tuple(int(v) for v in pick.integers(60, 220, 3))
    accent = tuple(int(v) for v in pick.integers(30, 200, 3))
    sky_top = _mix((80, 140, 210), tuple(int(v) for v in pick.integers(60, 200, 3)), 0.3)
    ground = [(120, 150, 80), (180, 174, 162), (222, 204, 160)][int(pick.integers(3))]

    def scene(c: _Canvas, rng: np.random.Generator) -> None:
        c.sky(sky_top, (208, 222, 234))
        c.ground(_shade(ground, 0.85), ground)
        c.poly([(-2, 0), (-0.6, 0.07), (-0.2, 0.12), (0.3, 0.09), (0.8, 0.05), (2, 0)], (118, 140, 128))
        _skyline(c, rng, -2.0, 2.0, 0.03, (160, 170, 182))
        if kind == "pagoda":
            for i in range(5):
                w, y = 0.12 - 0.018 * i, 0.055 * i
                c.rect(-w * 0.6, y, w * 0.6, y + 0.04, main)
                _curved_roof(c, y + 0.035, w, 0.02, w * 0.55, 0.012, accent)
            c.rect(-0.004, 0.29, 0.004, 0.34, accent)
        elif kind == "gate":
            c.rect(-0.3, 0.0, 0.3, 0.12, _shade(main, 0.8))
            c.ellipse(0, 0.06, 0.05, 0.06, (40, 36, 34))
            c.rect(-0.05, 0.0, 0.05, 0.06, (40, 36, 34))
            c.rect(-0.2, 0.12, 0.2, 0.17, accent)
            _curved_roof(c, 0.165, 0.27, 0.06, 0.16, 0.02, (56, 58, 64))
        elif kind == "dome":
            c.rect(-0.28, 0.0, 0.28, 0.13, main)
            _columns(c, np.linspace(-0.25, 0.25, 10), 0.0, 0.11, 0.008, _shade(main, 1.2))
            c.ellipse(0, 0.13, 0.13, 0.13, accent, n=40)
            c.rect(-0.3, 0.125, 0.3, 0.14, _shade(main, 0.85))
        else:  # spire
            c.rect(-0.08, 0.0, 0.08, 0.04, _shade(main, 0.8))
            c.poly([(-0.035, 0.04), (0.035, 0.04), (0.012, 0.38), (-0.012, 0.38)], main)
            c.poly([(-0.012, 0.38), (0.012, 0.38), (0.0, 0.43)], accent)

    return scene


_SCENES: dict[str, Callable[[_Canvas, np.random.Generator], None]] = {
    "gyeongbokgung": _gyeongbokgung,
    "n_seoul_tower": _n_seoul_tower,
    "bukchon_hanok_village": _bukchon_hanok_village,
    "haeundae_beach": _haeundae_beach,
    "seongsan_ilchulbong": _seongsan_ilchulbong,
}


@lru_cache(maxsize=16)
def _background(slug: str, description: str, angle: str, width: int, height: int, pad: int, seed: int) -> Image.Image:
    """The place seen from one camera angle, with a ``pad`` margin for per-photo shifts. Cached: read-only."""
    c = _Canvas(width, height, pad, _VIEWS[angle])
    scene = _SCENES.get(slug) or _generic(slug, description)
    scene(c, _rng(seed, slug, "scene"))  # not the angle: same trees and towers from every angle
    return c.img


# ---------------------------------------------------------------- the person


@dataclass(frozen=True)
class _Look:
    skin: RGB
    hair: RGB
    hair_style: str  # short | long | bun
    top: RGB
    long_sleeves: bool
    bottom: RGB
    bottom_kind: str  # pants | shorts | skirt
    shoes: RGB


def _look(rng: np.random.Generator) -> _Look:
    def pick(options: list[T]) -> T:
        return options[int(rng.integers(len(options)))]

    return _Look(
        skin=pick([(242, 204, 176), (228, 186, 150), (206, 160, 124), (170, 122, 90)]),
        hair=pick([(24, 20, 20), (42, 30, 24), (74, 50, 34), (112, 78, 46)]),
        hair_style=pick(["short", "long", "bun"]),
        top=pick([(200, 40, 48), (246, 246, 242), (34, 52, 92), (240, 196, 60), (60, 130, 90),
                  (236, 150, 170), (130, 134, 140), (30, 30, 34), (90, 160, 210)]),
        long_sleeves=bool(rng.random() < 0.5),
        bottom=pick([(52, 78, 128), (34, 34, 38), (196, 180, 150), (236, 234, 228), (86, 96, 70)]),
        bottom_kind=pick(["pants", "pants", "shorts", "skirt"]),
        shoes=pick([(240, 240, 236), (30, 30, 32), (120, 70, 44), (200, 60, 50)]),
    )


# Body in "standing units": head top near y=0, feet at y=1, x=0 on the body's centre line, x>0 screen right.
_SHOULDER = (0.092, 0.178)
_HIP = (0.048, 0.5)
_ARM = (0.16, 0.15)
_LEG = (0.245, 0.235)

# pose -> arm targets (screen-right arm, screen-left arm): hand (x outward, y), elbow preference, gesture.
# The left arm is mirrored, so "outward" is +x for both.
_RELAXED = ((0.118, 0.47), (1.0, 0.0), None)
_POSE_ARMS: dict[str, tuple[tuple, tuple]] = {
    "standing relaxed": (_RELAXED, _RELAXED),
    "waving": (((0.185, -0.02), (1.0, 0.3), "open"), _RELAXED),
    "making a peace sign": (((0.078, 0.075), (1.0, 0.8), "peace"), _RELAXED),
    "hands on hips": (((0.082, 0.42), (1.0, -0.1), None), ((0.082, 0.42), (1.0, -0.1), None)),
    "arms crossed": (((-0.085, 0.325), (1.0, 0.3), None), ((-0.085, 0.305), (1.0, 0.3), None)),
    "pointing at the landmark": (((0.3, 0.07), (0.0, 1.0), "point"), _RELAXED),
    "sitting on steps": (((0.1, 0.56), (1.0, 0.0), None), ((0.1, 0.56), (1.0, 0.0), None)),
}


def _ik(root: Pt, target: Pt, l1: float, l2: float, prefer: Pt) -> tuple[Pt, Pt]:
    """Two-bone reach: (elbow, hand); the elbow bends towards ``prefer``."""
    dx, dy = target[0] - root[0], target[1] - root[1]
    d = min(max(math.hypot(dx, dy), abs(l1 - l2) + 1e-6), (l1 + l2) * 0.999)
    a = math.atan2(dy, dx)
    b = math.acos(min(1.0, max(-1.0, (l1 * l1 + d * d - l2 * l2) / (2 * l1 * d))))
    elbows = [(root[0] + l1 * math.cos(a + s * b), root[1] + l1 * math.sin(a + s * b)) for s in (1, -1)]
    elbow = max(elbows, key=lambda e: (e[0] - root[0]) * prefer[0] + (e[1] - root[1]) * prefer[1])
    hand = (root[0] + d * math.cos(a), root[1] + d * math.sin(a))
    return elbow, hand


@dataclass
class _Body:
    joints: dict[str, Pt]
    gestures: dict[str, str | None]
    seated: bool
    head_c: Pt
    head_r: Pt

    @property
    def top(self) -> float:
        hands = (p[1] - 0.03 for k, p in self.joints.items() if "hand" in k)  # a waving hand rises above the head
        return min(self.head_c[1] - self.head_r[1] - 0.012, *hands)

    @property
    def bottom(self) -> float:
        return max(p[1] for k, p in self.joints.items() if "foot" in k) + 0.02

    def x_extent(self) -> tuple[float, float]:
        xs = [p[0] for p in self.joints.values()]
        return min(xs) - 0.06, max(xs) + 0.06


def _body(pose: str, head_factor: float, rng: np.random.Generator) -> _Body:
    arms = _POSE_ARMS.get(pose) or _POSE_ARMS["standing relaxed"]
    joints: dict[str, Pt] = {}
    gestures: dict[str, str | None] = {}
    for side, (hand, prefer, gesture) in zip(("r", "l"), arms):
        s = 1.0 if side == "r" else -1.0
        shoulder = (s * _SHOULDER[0], _SHOULDER[1])
        elbow, wrist = _ik(shoulder, (s * hand[0], hand[1]), *_ARM, (s * prefer[0], prefer[1]))
        joints.update({f"{side}_shoulder": shoulder, f"{side}_elbow": elbow, f"{side}_hand": wrist})
        gestures[side] = gesture
    seated = pose == "sitting on steps"
    stance = 0.07 if pose in ("waving", "hands on hips", "pointing at the landmark") else 0.058
    stance += float(rng.uniform(-0.008, 0.008))
    for side, s in (("r", 1.0), ("l", -1.0)):
        hip = (s * _HIP[0], _HIP[1])
        if seated:  # thighs come towards the camera (foreshortened), shins hang down the step
            knee, foot = (s * 0.088, 0.565), (s * 0.098, 0.8)
        else:
            knee, foot = _ik(hip, (s * stance, 0.972), *_LEG, (s, 0.0))
        joints.update({f"{side}_hip": hip, f"{side}_knee": knee, f"{side}_foot": foot})
    ry, rx = 0.064 * head_factor, 0.047 * head_factor
    return _Body(joints, gestures, seated, head_c=(0.0, 0.136 - ry), head_r=(rx, ry))


class _Pen:
    """Draws body parts in standing units onto the photo and, for the person, onto the mask."""

    def __init__(self, img: Image.Image, mask: Image.Image, ox: float, oy: float, scale: float) -> None:
        self.d, self.m = ImageDraw.Draw(img), ImageDraw.Draw(mask)
        self.ox, self.oy, self.s = ox, oy, scale

    def p(self, pt: Pt) -> Pt:
        return (self.ox + pt[0] * self.s, self.oy + pt[1] * self.s)

    def poly(self, pts: list[Pt], fill: RGB, person: bool = True) -> None:
        xy = [self.p(q) for q in pts]
        self.d.polygon(xy, fill=fill)
        if person:
            self.m.polygon(xy, fill=255)

    def ellipse(self, c: Pt, rx: float, ry: float, fill: RGB, person: bool = True) -> None:
        x, y = self.p(c)
        box = (x - rx * self.s, y - ry * self.s, x + rx * self.s, y + ry * self.s)
        self.d.ellipse(box, fill=fill)
        if person:
            self.m.ellipse(box, fill=255)

    def limbs(self, parts: list[tuple[list[Pt], float, RGB]]) -> None:
        """Thick polylines with round joints; all darker rims first, so a chain (thigh + shin,
        sleeve + forearm) reads as one limb while a sleeve still shows against the shirt."""
        for pts, width, fill in parts:
            self._line(pts, width + 0.006, _shade(fill, 0.72))
        for pts, width, fill in parts:
            self._line(pts, width, fill)

    def _line(self, pts: list[Pt], width: float, fill: RGB) -> None:
        xy = [self.p(q) for q in pts]
        w = max(1, round(width * self.s))
        self.d.line(xy, fill=fill, width=w)
        self.m.line(xy, fill=255, width=w)
        for q in pts:
            self.ellipse(q, width / 2, width / 2, fill)

    def stroke(self, pts: list[Pt], width: float, fill: RGB) -> None:
        """Thin detail line (eyes, mouth, folds); inside the person already, so no mask."""
        self.d.line([self.p(q) for q in pts], fill=fill, width=max(1, round(width * self.s)))


def _toward(a: Pt, b: Pt, dist: float) -> Pt:
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy) or 1.0
    return (b[0] + dx / n * dist, b[1] + dy / n * dist)


def _draw_hand(pen: _Pen, elbow: Pt, hand: Pt, gesture: str | None, skin: RGB) -> None:
    finger, fingers = 0.0075, []
    if gesture == "open":  # waving: spread fingers fanning out from the forearm's direction
        dx, dy = hand[0] - elbow[0], hand[1] - elbow[1]
        n = math.hypot(dx, dy) or 1.0
        for ang in (-0.6, -0.25, 0.1, 0.45, 1.1):
            ca, sa = math.cos(ang), math.sin(ang)
            tip = (hand[0] + (dx * ca - dy * sa) / n * 0.038, hand[1] + (dx * sa + dy * ca) / n * 0.038)
            fingers.append([hand, tip])
    elif gesture == "peace":  # V of two fingers pointing up
        fingers = [[hand, (hand[0] - 0.012, hand[1] - 0.045)], [hand, (hand[0] + 0.012, hand[1] - 0.045)]]
    elif gesture == "point":
        fingers = [[hand, _toward(elbow, hand, 0.045)]]
    pen.limbs([(f, finger, skin) for f in fingers] + [([hand], 0.04, skin)])


def _draw_person(pen: _Pen, body: _Body, look: _Look) -> None:
    j = body.joints
    skin, shade_skin = look.skin, _shade(look.skin, 0.82)
    hx, hy = body.head_c
    rx, ry = body.head_r
    if body.seated:  # stone steps behind and under the person (scenery, not person)
        pen.poly([(-0.42, 0.49), (0.42, 0.49), (0.42, 0.66), (-0.42, 0.66)], (176, 170, 160), person=False)
        pen.poly([(-0.42, 0.49), (0.42, 0.49), (0.42, 0.505), (-0.42, 0.505)], (204, 198, 188), person=False)
        pen.poly([(-0.5, 0.66), (0.5, 0.66), (0.5, 0.83), (-0.5, 0.83)], (160, 154, 146), person=False)
        pen.poly([(-0.5, 0.66), (0.5, 0.66), (0.5, 0.675), (-0.5, 0.675)], (196, 190, 180), person=False)
    if look.hair_style == "long":  # hair falling behind the shoulders
        pen.poly([(hx - rx * 1.15, hy), (hx + rx * 1.15, hy), (hx + rx * 1.3, 0.25), (hx - rx * 1.3, 0.25)], look.hair)
    # Legs: trousers cover the whole leg, shorts and skirts show the shins.
    for side in ("r", "l"):
        hip, knee, foot = j[f"{side}_hip"], j[f"{side}_knee"], j[f"{side}_foot"]
        lower = look.bottom if look.bottom_kind == "pants" else skin
        upper = look.bottom if look.bottom_kind == "pants" or body.seated else skin
        parts = [([hip, knee], 0.062 if body.seated else 0.058, upper),
                 ([knee, (foot[0], foot[1] - 0.02)], 0.046, lower)]
        if look.bottom_kind == "shorts":
            parts.append(([hip, (hip[0] + (knee[0] - hip[0]) * 0.45, hip[1] + (knee[1] - hip[1]) * 0.45)], 0.062,
                          look.bottom))
        pen.limbs(parts)
        pen.ellipse((foot[0] + (0.008 if side == "r" else -0.008), foot[1] - 0.006), 0.03, 0.017, look.shoes)
    if look.bottom_kind == "skirt":
        hem = 0.6 if body.seated else 0.66
        pen.poly([(-0.075, 0.42), (0.075, 0.42), (0.13, hem), (-0.13, hem)], look.bottom)
    elif look.bottom_kind == "shorts" or look.bottom_kind == "pants":
        pen.poly([(-0.076, 0.42), (0.076, 0.42), (0.085, 0.54), (-0.085, 0.54)], look.bottom)  # seat of the trousers
    # Neck, torso, shoulders.
    pen.poly([(-0.019, hy + ry * 0.6), (0.019, hy + ry * 0.6), (0.021, 0.19), (-0.021, 0.19)], shade_skin)
    top = look.top
    pen.poly([(-0.094, 0.18), (-0.07, 0.168), (-0.035, 0.163), (0.035, 0.163), (0.07, 0.168), (0.094, 0.18),
              (0.106, 0.205), (0.084, 0.3), (0.074, 0.43), (-0.074, 0.43), (-0.084, 0.3), (-0.106, 0.205)], top)
    pen.poly([(-0.03, 0.165), (0.03, 0.165), (0.0, 0.195)], skin, person=True)  # neckline
    pen.stroke([(-0.074, 0.428), (0.074, 0.428)], 0.006, _shade(look.bottom, 0.7))  # waistband
    # Head: hair behind, face, ears, fringe, features.
    pen.ellipse((hx, hy - ry * 0.08), rx * 1.1, ry * 1.04, look.hair)
    pen.ellipse((hx - rx, hy + ry * 0.1), rx * 0.18, ry * 0.2, shade_skin)
    pen.ellipse((hx + rx, hy + ry * 0.1), rx * 0.18, ry * 0.2, shade_skin)
    pen.ellipse((hx, hy + ry * 0.06), rx, ry * 0.94, skin)
    x0, y0 = pen.p((hx - rx * 1.06, hy - ry * 1.04))
    x1, y1 = pen.p((hx + rx * 1.06, hy + ry * 0.3))
    pen.d.chord((x0, y0, x1, y1), 180, 360, fill=look.hair)  # fringe over the forehead
    if look.hair_style == "bun":
        pen.ellipse((hx, hy - ry * 1.08), rx * 0.45, ry * 0.3, look.hair)
    dark = (36, 28, 26)
    for s in (-1, 1):
        pen.ellipse((hx + s * rx * 0.38, hy + ry * 0.18), rx * 0.12, ry * 0.1, dark)
        pen.stroke([(hx + s * rx * 0.2, hy - ry * 0.04), (hx + s * rx * 0.38, hy - ry * 0.1),
                    (hx + s * rx * 0.58, hy - ry * 0.06)], 0.0035, look.hair)  # arched brows
        pen.ellipse((hx + s * rx * 0.55, hy + ry * 0.45), rx * 0.14, ry * 0.08, _mix(skin, (230, 120, 120), 0.3))
    pen.stroke([(hx, hy + ry * 0.3), (hx + rx * 0.06, hy + ry * 0.45)], 0.003, shade_skin)
    mx, my = pen.p((hx, hy + ry * 0.62))
    mw = rx * 0.28 * pen.s
    pen.d.arc((mx - mw, my - mw * 0.6, mx + mw, my + mw * 0.6), 20, 160, fill=(170, 70, 70),
              width=max(1, round(0.004 * pen.s)))
    # Arms last: in front of the body and, for the peace sign, beside the face.
    sleeve_to = 1.0 if look.long_sleeves else 0.55
    for side in ("r", "l"):
        sh, el, hand = j[f"{side}_shoulder"], j[f"{side}_elbow"], j[f"{side}_hand"]
        sh_in = (sh[0] * 0.95, sh[1] + 0.012)
        cut = (sh_in[0] + (el[0] - sh_in[0]) * sleeve_to, sh_in[1] + (el[1] - sh_in[1]) * sleeve_to)
        pen.limbs([([sh_in, el], 0.036, skin), ([el, hand], 0.03, look.top if look.long_sleeves else skin),
                   ([sh_in, cut], 0.042, look.top)])
        _draw_hand(pen, el, hand, body.gestures[side], skin)


# ---------------------------------------------------------------- framing by shot type


def _frame(shot: str, body: _Body, width: int, height: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """(scale px/unit, x of the body centre line, y of the unit origin) for a shot type."""
    head_top = body.head_c[1] - body.head_r[1] - 0.012
    if shot == "wide":  # a small full figure, feet low in the frame, landmark all around
        scale = 0.3 * height / (body.bottom - body.top)
        oy = 0.93 * height - body.bottom * scale
    elif shot == "full_body":
        margin = 0.06 * (body.bottom - body.top)
        scale = height / (body.bottom - body.top + 2 * margin)
        oy = -(body.top - margin) * scale
    else:  # close_up / upper_body / thigh_up: from just above the head down to chest / waist / mid-thigh
        above, below = {"close_up": (0.035, 0.3), "upper_body": (0.05, 0.56), "thigh_up": (0.05, 0.73)}[shot]
        scale = height / (below - head_top + above)
        oy = -(head_top - above) * scale
    jitter = {"close_up": 0.03, "upper_body": 0.06, "thigh_up": 0.07, "full_body": 0.12, "wide": 0.3}[shot]
    cx = width * (0.5 + float(rng.uniform(-jitter, jitter)))
    if shot in ("full_body", "wide"):  # the whole figure stays inside the frame
        x0, x1 = body.x_extent()
        lo, hi = -x0 * scale + 2, width - x1 * scale - 2
        cx = min(max(cx, lo), hi) if lo <= hi else width / 2
    return scale, cx, oy


# ---------------------------------------------------------------- photo


@lru_cache(maxsize=4)
def _vignette(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((x - width / 2) / (width / 2)) ** 2 + ((y - height / 2) / (height / 2)) ** 2
    return (1.0 - 0.07 * r2)[..., None]


def _check(kind: str, value: str, vocab: tuple[str, ...], default: str) -> str:
    if value == UNSPECIFIED:
        return default
    if value not in vocab:
        raise ValueError(f"{kind} '{value}' is not one of: {', '.join(vocab)}")
    return value


@overload
def render_photo(landmark: Landmark, angle: str, shot: str, pose: str, variant: int, cfg: SampleDataConfig,
                 *, return_mask: Literal[False] = False) -> Image.Image: ...
@overload
def render_photo(landmark: Landmark, angle: str, shot: str, pose: str, variant: int, cfg: SampleDataConfig,
                 *, return_mask: Literal[True]) -> tuple[Image.Image, np.ndarray]: ...


def render_photo(
    landmark: Landmark,
    angle: str,
    shot: str,
    pose: str,
    variant: int,
    cfg: SampleDataConfig,
    *,
    return_mask: bool = False,
) -> Image.Image | tuple[Image.Image, np.ndarray]:
    """One snapshot: the landmark from ``angle``, a person framed by ``shot`` doing ``pose``.

    Returns an RGB image of cfg.width x cfg.height; with ``return_mask=True`` also a bool
    array (height, width), True on the person. Same arguments -> same pixels.
    """
    angle = _check("angle", angle, ANGLES, "eye_level")
    shot = _check("shot", shot, SHOTS, "full_body")
    bg = _background(landmark.slug, landmark.description, angle, cfg.width * SS, cfg.height * SS, 2 * SS, cfg.seed)
    return compose_photo(bg, landmark.slug, angle, shot, pose, variant, cfg, return_mask=return_mask)


# ---------------------------------------------------------------- primitives for other renderers
# The toy world (landmark_lora.toyworld) draws its generic places with these, never the
# landmark scenes above.

Canvas = _Canvas
Scene = Callable[[_Canvas, np.random.Generator], None]
shade, mix, columns, skyline, waves = _shade, _mix, _columns, _skyline, _waves
SUPERSAMPLE = SS


def draw_background(scene: Scene, key: str, angle: str, cfg: SampleDataConfig) -> Image.Image:
    """``scene`` seen from ``angle``, drawn at SUPERSAMPLE x cfg's size plus the shake margin.

    ``key`` seeds the scene's own randomness (the same trees from every angle).
    """
    w, h, pad = cfg.width * SS, cfg.height * SS, 2 * SS
    c = _Canvas(w, h, pad, _VIEWS[_check("angle", angle, ANGLES, "eye_level")])
    scene(c, _rng(cfg.seed, key, "scene"))
    return c.img


@overload
def compose_photo(background: Image.Image, key: str, angle: str, shot: str, pose: str, variant: int,
                  cfg: SampleDataConfig, *, return_mask: Literal[False] = False) -> Image.Image: ...
@overload
def compose_photo(background: Image.Image, key: str, angle: str, shot: str, pose: str, variant: int,
                  cfg: SampleDataConfig, *, return_mask: Literal[True]) -> tuple[Image.Image, np.ndarray]: ...


def compose_photo(
    background: Image.Image,
    key: str,
    angle: str,
    shot: str,
    pose: str,
    variant: int,
    cfg: SampleDataConfig,
    *,
    return_mask: bool = False,
) -> Image.Image | tuple[Image.Image, np.ndarray]:
    """A person framed by ``shot`` doing ``pose`` in front of ``background`` (from ``draw_background``),
    then camera shake, depth of field, light and sensor noise; ``key`` names the place for seeding."""
    angle = _check("angle", angle, ANGLES, "eye_level")
    shot = _check("shot", shot, SHOTS, "full_body")
    view = _VIEWS[angle]
    w, h, pad = cfg.width * SS, cfg.height * SS, 2 * SS
    rng = _rng(cfg.seed, key, angle, shot, pose, variant)

    dx, dy = (int(v) for v in rng.integers(0, 2 * pad + 1, 2))  # hand-held camera: a few px off
    img = background.crop((dx, dy, dx + w, dy + h))
    if shot in ("close_up", "upper_body"):  # shallow depth of field behind a near subject
        img = img.filter(ImageFilter.GaussianBlur((1.2 if shot == "close_up" else 0.6) * SS))

    body = _body(pose, view.head, rng)
    look = _look(_rng(cfg.seed, key, angle, shot, variant, "look"))
    scale, cx, oy = _frame(shot, body, w, h, rng)
    if shot in ("full_body", "wide"):  # contact shadow under the feet
        shadow = Image.new("L", (w, h), 0)
        fy = oy + body.bottom * scale
        ImageDraw.Draw(shadow).ellipse((cx - 0.2 * scale, fy - 0.03 * scale, cx + 0.2 * scale, fy + 0.02 * scale),
                                       fill=90)
        shadow = shadow.filter(ImageFilter.GaussianBlur(0.02 * scale))
        img = Image.composite(Image.new("RGB", (w, h), (40, 40, 40)), img, shadow)
    mask = Image.new("L", (w, h), 0)
    _draw_person(_Pen(img, mask, cx, oy, scale), body, look)

    # Back to the target size, then light and sensor noise so nothing is flat colour.
    img = img.reduce(SS)
    arr = np.asarray(img, dtype=np.float32)
    gain = rng.uniform(0.95, 1.05) * (1.0 + rng.uniform(-0.02, 0.02, 3))  # exposure and white balance
    arr = arr * gain * _vignette(cfg.width, cfg.height)
    arr += rng.normal(0.0, 3.0, arr.shape) + rng.normal(0.0, 2.0, arr.shape[:2] + (1,))
    out = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    if return_mask:
        return out, np.asarray(mask.reduce(SS)) >= 128
    return out


# ---------------------------------------------------------------- the set


def _atomic_write(path: Path, data: bytes) -> None:
    """Write next to the target, then rename: a crash never leaves a half-written photo."""
    # A hidden temp name: an ingest running meanwhile leaves it alone.
    fsutil.write_bytes_atomic(path, data)


def _pose_for(cfg: SampleDataConfig, slug: str, angle: str, shot: str, k: int) -> str:
    # Consecutive variants of one view get different poses; the start rotates per view.
    return POSES[(_seed(cfg.seed, slug, angle, shot, "pose") + k) % len(POSES)]


def render_sample_set(out_dir: Path, catalogue: dict[str, Landmark], cfg: SampleDataConfig) -> int:
    """Render every landmark x angle x shot x ``cfg.poses_per_view`` into ``out_dir``; return the count.

    Also writes ``out_dir/metadata.csv`` (file,shot,angle,pose,caption); rows it holds for
    other files are kept.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    for slug, landmark in catalogue.items():
        (out_dir / slug).mkdir(exist_ok=True)
        for angle in ANGLES:
            for shot in SHOTS:
                for k in range(cfg.poses_per_view):
                    pose = _pose_for(cfg, slug, angle, shot, k)
                    name = f"{slug}/{slug}_{angle}_{shot}_{k}.jpg"
                    buf = io.BytesIO()
                    render_photo(landmark, angle, shot, pose, k, cfg).save(buf, "JPEG", quality=cfg.jpeg_quality)
                    _atomic_write(out_dir / name, buf.getvalue())
                    rows.append({"file": name, "shot": shot, "angle": angle, "pose": pose, "caption": ""})
    _write_manifest(out_dir / MANIFEST, rows)
    return len(rows)


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    ours = {r["file"] for r in rows}
    kept: list[dict[str, str]] = []
    if path.exists():  # someone's own labels waiting for ingest: keep them
        with path.open(newline="", encoding="utf-8-sig") as fh:
            kept = [r for r in csv.DictReader(fh) if (r.get("file") or "") not in ours]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: (r.get(c) or "") for c in MANIFEST_COLUMNS} for r in kept + rows)
    _atomic_write(path, buf.getvalue().encode("utf-8"))
