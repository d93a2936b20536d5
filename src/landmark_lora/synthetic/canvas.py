"""The drawing surface of the sample renderer: camera angles, a world-unit canvas, colours, seeding.

    from landmark_lora.synthetic.canvas import Canvas, VIEWS, draw_background, shade, skyline
    img = draw_background(my_scene, "my/place", "low_angle", cfg)   # my_scene(c: Canvas, rng) draws on c

``Canvas`` maps world units (x from the frame centre, y above the horizon, both in frame heights)
to pixels through a camera angle (``VIEWS``). Everything is drawn at ``SUPERSAMPLE`` x the target
size and downsampled later. ``stable_seed``/``seeded_rng`` hash labels with blake2b (never Python's
salted ``hash()``), so every process draws the same pixels. The landmark scenes (``scenes``) and
the toy world (``landmark_lora.toyworld``) both draw with these primitives.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from landmark_lora.catalogue import ANGLES, UNSPECIFIED
from landmark_lora.config import SampleDataConfig

SS = 2  # draw at 2x and downsample: anti-aliased edges without per-primitive AA
SUPERSAMPLE = SS
RGB = tuple[int, int, int]
Pt = tuple[float, float]


# ---------------------------------------------------------------- seeding


def stable_seed(*parts: object) -> int:
    """Stable 64-bit seed from labels (same value in every process, unlike hash())."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def seeded_rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(stable_seed(*parts))


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=False))  # type: ignore[return-value]


def shade(c: RGB, f: float) -> RGB:
    return tuple(int(max(0, min(255, round(x * f)))) for x in c)  # type: ignore[return-value]


# ---------------------------------------------------------------- camera angle


@dataclass(frozen=True)
class View:
    horizon: float  # screen y of the horizon, as a fraction of the height
    scale: float  # landmark size relative to eye level
    stretch: float  # extra vertical scale: >1 looking up (looms), <1 looking down (flattened)
    keystone: float  # >0: verticals converge upward (looking up); <0: converge downward
    ground: float  # vertical scale of the ground: squashed at a grazing view from below, opened up from above
    head: float  # person's head size: foreshortening from below/above


VIEWS = {
    "eye_level": View(horizon=0.52, scale=1.0, stretch=1.0, keystone=0.0, ground=1.0, head=1.0),
    "low_angle": View(horizon=0.80, scale=1.12, stretch=1.45, keystone=0.7, ground=0.45, head=0.92),
    "high_angle": View(horizon=0.30, scale=0.72, stretch=0.72, keystone=-0.5, ground=1.5, head=1.1),
}


class Canvas:
    """Draws a scene in world units, mapped to pixels through the camera angle.

    World: x = 0 at the frame centre, y = height above the horizon; both in frame heights
    (so a 3:4 portrait frame spans x in [-0.375, 0.375] at eye level). Negative y is ground.
    """

    def __init__(self, width: int, height: int, pad: int, view: View) -> None:
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
        self.poly(list(zip(cx + rx * np.cos(a), cy + ry * np.sin(a), strict=False)), fill)

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
            self.d.line([(0, y), (self.img.width, y)], fill=mix(top, bottom, min(max(t, 0.0), 1.0)))

    def sky(self, top: RGB, horizon: RGB) -> None:
        self.vgradient(0, self.horizon_px, top, horizon)

    def ground(self, far: RGB, near: RGB) -> None:
        self.vgradient(self.horizon_px, self.img.height, far, near)

    def band(self, y_top: float, y_bottom: float, c_top: RGB, c_bottom: RGB, steps: int = 10) -> None:
        """World-space horizontal band with a colour gradient (sea, fields)."""
        ys = np.linspace(y_top, y_bottom, steps + 1)
        for i in range(steps):
            self.rect(-3, ys[i + 1], 3, ys[i], mix(c_top, c_bottom, i / max(1, steps - 1)))


def check_label(kind: str, value: str, vocab: tuple[str, ...], default: str) -> str:
    """``value`` if it is in ``vocab``; ``default`` for 'unspecified'; else a ValueError naming the vocabulary."""
    if value == UNSPECIFIED:
        return default
    if value not in vocab:
        raise ValueError(f"{kind} '{value}' is not one of: {', '.join(vocab)}")
    return value


# ---------------------------------------------------------------- scenes on a canvas

Scene = Callable[[Canvas, np.random.Generator], None]


def draw_background(scene: Scene, key: str, angle: str, cfg: SampleDataConfig) -> Image.Image:
    """``scene`` seen from ``angle``, drawn at SUPERSAMPLE x cfg's size plus the shake margin.

    ``key`` seeds the scene's own randomness (the same trees from every angle).
    """
    w, h, pad = cfg.width * SS, cfg.height * SS, 2 * SS
    c = Canvas(w, h, pad, VIEWS[check_label("angle", angle, ANGLES, "eye_level")])
    scene(c, seeded_rng(cfg.seed, key, "scene"))
    return c.img


# ---------------------------------------------------------------- shared landmark parts


def curved_roof(
    c: Canvas, base: float, half_w: float, height: float, ridge_half: float, lift: float, color: RGB, cx: float = 0.0
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
    dark, light = shade(color, 0.72), shade(color, 1.5)
    for t in np.linspace(0.03, 0.97, 23):
        x = -half_w + 2 * half_w * t
        y_top = top if abs(x) <= ridge_half else float(np.interp(abs(x), side_dx, side_y))
        y_bot = base + lift * (2 * t - 1) ** 4
        c.line([(cx + x, y_bot), (cx + x, y_top)], dark, 0.6)
    c.line(eave, light, 0.9)  # pale fascia under the tiles
    c.line([(cx - ridge_half - 0.01, top + 0.006), (cx - ridge_half, top), (cx + ridge_half, top),
            (cx + ridge_half + 0.01, top + 0.006)], shade(color, 0.6), 2.2)  # ridge cap, flared ends


def columns(c: Canvas, xs: np.ndarray, y0: float, y1: float, half: float, color: RGB) -> None:
    for x in xs:
        c.rect(x - half, y0, x + half, y1, color)
        c.rect(x - half, y0, x - half * 0.3, y1, shade(color, 1.25))  # lit edge: round wooden column


def skyline(c: Canvas, rng: np.random.Generator, x0: float, x1: float, hmax: float, color: RGB) -> None:
    """Distant hazy city blocks sitting on the horizon."""
    x = x0
    while x < x1:
        w = rng.uniform(0.015, 0.045)
        c.rect(x, -0.002, x + w, rng.uniform(0.008, hmax), shade(color, rng.uniform(0.93, 1.05)))
        x += w * rng.uniform(0.7, 1.1)


def waves(c: Canvas, rng: np.random.Generator, y_far: float, y_near: float, n: int, color: RGB) -> None:
    for _ in range(n):
        y = rng.uniform(y_near, y_far)
        depth = (y_far - y) / max(1e-6, y_far - y_near)  # 0 far .. 1 near: longer, thicker lines
        x = rng.uniform(-1.2, 1.2)
        ln = 0.02 + 0.12 * depth
        xs = np.linspace(x, x + ln, 6)
        c.line([(xx, y + 0.002 * math.sin(i)) for i, xx in enumerate(xs)], color, 0.5 + 1.0 * depth)
