"""One sample photo: a background, a person framed and posed, camera shake, light and sensor noise.

    from landmark_lora.synthetic.photo import compose_photo, render_photo
    img = render_photo(cat["gyeongbokgung"], "low_angle", "full_body", "waving", 0, params.sample_data)
    plate = render_plate(cat["gyeongbokgung"], "low_angle", 0, params.sample_data)   # no person: a plate
    img, mask = render_photo(..., return_mask=True)   # mask: bool (H, W), True where the person is
    img = compose_photo(draw_background(scene, key, angle, cfg), key, angle, shot, pose, 0, cfg)

Every random choice comes from ``cfg.seed`` and a hash of the photo's labels: same arguments,
same pixels, in every process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, overload

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from landmark_lora.catalogue import ANGLES, SHOTS, Landmark
from landmark_lora.config import SampleDataConfig
from landmark_lora.synthetic.canvas import SS, VIEWS, check_label, seeded_rng
from landmark_lora.synthetic.person import Pen, draw_person, frame_shot, pose_body, random_look
from landmark_lora.synthetic.scenes import landmark_background


@lru_cache(maxsize=4)
def _vignette(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((x - width / 2) / (width / 2)) ** 2 + ((y - height / 2) / (height / 2)) ** 2
    return (1.0 - 0.07 * r2)[..., None]


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
    angle = check_label("angle", angle, ANGLES, "eye_level")
    shot = check_label("shot", shot, SHOTS, "full_body")
    bg = landmark_background(landmark, angle, cfg)
    return compose_photo(bg, landmark.slug, angle, shot, pose, variant, cfg, return_mask=return_mask)


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
    angle = check_label("angle", angle, ANGLES, "eye_level")
    shot = check_label("shot", shot, SHOTS, "full_body")
    view = VIEWS[angle]
    w, h, pad = cfg.width * SS, cfg.height * SS, 2 * SS
    rng = seeded_rng(cfg.seed, key, angle, shot, pose, variant)

    dx, dy = (int(v) for v in rng.integers(0, 2 * pad + 1, 2))  # hand-held camera: a few px off
    img = background.crop((dx, dy, dx + w, dy + h))
    if shot in ("close_up", "upper_body"):  # shallow depth of field behind a near subject
        img = img.filter(ImageFilter.GaussianBlur((1.2 if shot == "close_up" else 0.6) * SS))

    body = pose_body(pose, view.head, rng)
    look = random_look(seeded_rng(cfg.seed, key, angle, shot, variant, "look"))
    scale, cx, oy = frame_shot(shot, body, w, h, rng)
    if shot in ("full_body", "wide"):  # contact shadow under the feet
        shadow = Image.new("L", (w, h), 0)
        fy = oy + body.bottom * scale
        ImageDraw.Draw(shadow).ellipse((cx - 0.2 * scale, fy - 0.03 * scale, cx + 0.2 * scale, fy + 0.02 * scale),
                                       fill=90)
        shadow = shadow.filter(ImageFilter.GaussianBlur(0.02 * scale))
        img = Image.composite(Image.new("RGB", (w, h), (40, 40, 40)), img, shadow)
    mask = Image.new("L", (w, h), 0)
    draw_person(Pen(img, mask, cx, oy, scale), body, look)

    out = _finish(img, rng, cfg)
    if return_mask:
        return out, np.asarray(mask.reduce(SS)) >= 128
    return out


def _finish(img: Image.Image, rng: np.random.Generator, cfg: SampleDataConfig) -> Image.Image:
    """Back to the target size, then light and sensor noise so nothing is flat colour."""
    img = img.reduce(SS)
    arr = np.asarray(img, dtype=np.float32)
    gain = rng.uniform(0.95, 1.05) * (1.0 + rng.uniform(-0.02, 0.02, 3))  # exposure and white balance
    arr = arr * gain * _vignette(cfg.width, cfg.height)
    arr += rng.normal(0.0, 3.0, arr.shape) + rng.normal(0.0, 2.0, arr.shape[:2] + (1,))
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


def render_plate(landmark: Landmark, angle: str, variant: int, cfg: SampleDataConfig) -> Image.Image:
    """A background plate: the landmark from ``angle`` with no one in it (same camera, light and noise
    as ``render_photo``, the person omitted). Same arguments -> same pixels."""
    angle = check_label("angle", angle, ANGLES, "eye_level")
    bg = landmark_background(landmark, angle, cfg)
    w, h, pad = cfg.width * SS, cfg.height * SS, 2 * SS
    rng = seeded_rng(cfg.seed, landmark.slug, angle, "plate", variant)
    dx, dy = (int(v) for v in rng.integers(0, 2 * pad + 1, 2))
    return _finish(bg.crop((dx, dy, dx + w, dy + h)), rng, cfg)
