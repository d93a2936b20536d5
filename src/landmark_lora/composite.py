"""Composite generation: the person painted into a real background plate, the plate's pixels kept.

    from landmark_lora.composite import compose, person_region, feather_mask, paste_back, seam_score
    box = person_region(regions, "upper_body", (56, 72), params.composite)   # pixels (x0, y0, x1, y1)
    mask = feather_mask((56, 72), box, feather_px=4, corner=0.5)             # float (h, w), 0 outside the region
    snap = paste_back(plate, generated, mask)                                # exact plate pixels where mask == 0
    seam_score(snap, plate, box, feather_px=4)                               # ~1 = seam as quiet as the plate
    compose(plate, "p0", regions, "upper_body", params.composite, inpaint)   # all of it: a Composite

The person region for a shot type is not a hard-coded box: it is the median person box that
the preprocess detectors found in the train photos of that shot (``person_regions.json``, see
``landmark_lora.plates``), grown by ``composite.region_spread`` spreads and
``composite.region_margin`` of the image per side, its corners rounded by ``composite.corner``.
Inside it the champion LoRA inpaints
(``landmark_lora.diffusion.inpaint``); the result goes back with a mask that ramps from 0 at
the region's border to 1 at ``feather_px`` inside, so every pixel outside the region is the
plate's own, bit for bit.

Seam score: the colour jump between pixels just outside the region and pixels just inside the
feathered band, plus the jump in gradient magnitude across the band, each divided by the same
measure on the plate at the same places (the plate's own texture there). 1.0 means the seam is
as quiet as the plate itself; under ~1.5 is hard to see; above 2 is a visible edge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from landmark_lora.config import CompositeConfig
from landmark_lora.plates import PlateError

PixelBox = tuple[int, int, int, int]
MAX_REGION_SHARE = 0.9  # a region covering more of the image leaves no background to keep
MIN_REGION_PX = 8  # smaller regions cannot hold a person at any resolution the model draws


class RegionError(PlateError):
    """The shot has no person region, or its region does not fit the asked image."""


def person_region(regions: dict[str, Any], shot: str, size: tuple[int, int], cfg: CompositeConfig) -> PixelBox:
    """The pixel box to paint the person into for ``shot`` on an image of ``size`` (w, h)."""
    shots = regions.get("shots") or {}
    stats = shots.get(shot)
    if not stats or not stats.get("count"):
        known = ", ".join(f"{s} ({v['count']} boxes)" for s, v in sorted(shots.items())) or "none"
        raise RegionError(f"no person region for shot '{shot}': the train photos' detector boxes give regions for "
                          f"{known}; add train photos of that shot with a visible person and rerun preprocess")
    w, h = size
    grow = [cfg.region_spread * float(s) + cfg.region_margin for s in stats["spread"]]
    x0, y0, x1, y1 = (float(v) for v in stats["box"])
    box = (max(0.0, x0 - grow[0]), max(0.0, y0 - grow[1]), min(1.0, x1 + grow[2]), min(1.0, y1 + grow[3]))
    px = (int(np.floor(box[0] * w)), int(np.floor(box[1] * h)), int(np.ceil(box[2] * w)), int(np.ceil(box[3] * h)))
    side = min(px[2] - px[0], px[3] - px[1])
    share = (px[2] - px[0]) * (px[3] - px[1]) / float(w * h)
    if side < MIN_REGION_PX + 2 * cfg.feather_px:
        raise RegionError(f"the '{shot}' person region is {px[2] - px[0]}x{px[3] - px[1]} px on a {w}x{h} image: "
                          f"too small for a person and a {cfg.feather_px} px feather; ask for a larger image or "
                          "lower composite.feather_px")
    if share > MAX_REGION_SHARE:
        raise RegionError(f"the '{shot}' person region covers {share:.0%} of the {w}x{h} image, leaving almost no "
                          "plate to keep; use text-to-image for this shot, or lower composite.region_spread / "
                          "composite.region_margin")
    return px


def feather_mask(size: tuple[int, int], box: PixelBox, feather_px: int, corner: float = 0.0) -> np.ndarray:
    """float32 (h, w): 0 outside ``box``, rising linearly to 1 at ``feather_px`` inside its border. ``corner``
    rounds the box's corners by that share of its shorter side (0.5: a capsule), keeping more plate there."""
    w, h = size
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    r = corner * min(hx, hy)
    qx, qy = np.abs(xs - cx) - (hx - r), np.abs(ys - cy) - (hy - r)
    # signed distance to the rounded box (negative inside), in pixels
    dist = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r
    alpha = np.clip((-dist + 0.5) / float(feather_px + 1), 0.0, 1.0) if feather_px > 0 else (dist < 0) * 1.0
    return np.where(dist < 0, alpha, 0.0).astype(np.float32)


def paste_back(plate: Image.Image, generated: Image.Image, mask: np.ndarray) -> Image.Image:
    """``generated`` inside the mask, blended over its feather; the plate's exact pixels where mask == 0."""
    p = np.asarray(plate.convert("RGB"))
    g = np.asarray(generated.convert("RGB").resize(plate.size, Image.Resampling.LANCZOS), dtype=np.float32)
    m = mask[..., None]
    blend = np.clip(p.astype(np.float32) * (1.0 - m) + g * m + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(np.where(m > 0, blend, p), "RGB")


def _jumps(arr: np.ndarray, box: PixelBox, band: int) -> tuple[float, float]:
    """(colour jump, gradient jump) across the region's border: pixel 1 px outside vs ``band`` px inside."""
    h, w = arr.shape[:2]
    x0, y0, x1, y1 = box
    gy, gx = np.gradient(arr.mean(axis=2))
    grad = np.hypot(gx, gy)
    pairs = []
    ys, xs = np.arange(y0, y1), np.arange(x0, x1)
    if x0 - 1 >= 0 and x0 + band < w:
        pairs.append(((ys, np.full_like(ys, x0 - 1)), (ys, np.full_like(ys, x0 + band))))
    if x1 < w and x1 - 1 - band >= 0:
        pairs.append(((ys, np.full_like(ys, x1)), (ys, np.full_like(ys, x1 - 1 - band))))
    if y0 - 1 >= 0 and y0 + band < h:
        pairs.append(((np.full_like(xs, y0 - 1), xs), (np.full_like(xs, y0 + band), xs)))
    if y1 < h and y1 - 1 - band >= 0:
        pairs.append(((np.full_like(xs, y1), xs), (np.full_like(xs, y1 - 1 - band), xs)))
    if not pairs:
        return float("nan"), float("nan")
    colour = np.concatenate([np.abs(arr[o] - arr[i]).mean(axis=-1) for o, i in pairs])
    gradient = np.concatenate([np.abs(grad[o] - grad[i]) for o, i in pairs])
    return float(colour.mean()), float(gradient.mean())


def seam_score(image: Image.Image, plate: Image.Image, box: PixelBox, feather_px: int) -> float:
    """Colour + gradient jump across the region border of ``image``, over the same on ``plate`` (1 = as quiet
    as the plate's own texture there; NaN when the region touches every edge)."""
    band = feather_px + 1
    c_img, g_img = _jumps(np.asarray(image.convert("RGB"), dtype=np.float32), box, band)
    c_ref, g_ref = _jumps(np.asarray(plate.convert("RGB"), dtype=np.float32), box, band)
    return float((c_img + g_img) / max(c_ref + g_ref, 1e-6))


@dataclass(frozen=True)
class Request:
    """What a composite snapshot is asked for: the place and view, the shot, the pose, the seed; optionally
    the plate's name, the prompt (default: the training caption of these labels) and the size (w, h)."""

    landmark: str
    angle: str
    shot: str
    pose: str = "unspecified"
    seed: int = 0
    plate: str | None = None
    prompt: str | None = None
    size: tuple[int, int] | None = None


@dataclass
class Composite:
    image: Image.Image
    plate: Image.Image
    plate_name: str
    box: PixelBox
    mask: np.ndarray
    generated: Image.Image  # the inpainting output before paste-back

    def seam(self, feather_px: int) -> float:
        return seam_score(self.image, self.plate, self.box, feather_px)


# (plate, region box in pixels, seed) -> the inpainted image (the whole frame, plate size)
Inpaint = Callable[[Image.Image, PixelBox, int], Image.Image]


def compose(plate: Image.Image, plate_name: str, regions: dict[str, Any], shot: str, cfg: CompositeConfig,
            inpaint: Inpaint, seed: int = 0) -> Composite:
    """Inpaint the person for ``shot`` into ``plate`` and paste it back with the feathered mask."""
    box = person_region(regions, shot, plate.size, cfg)
    generated = inpaint(plate, box, seed)
    mask = feather_mask(plate.size, box, cfg.feather_px, cfg.corner)
    return Composite(paste_back(plate, generated, mask), plate, plate_name, box, mask, generated)
