"""Image metrics that need no downloaded weights: shot type and background consistency.

    from landmark_lora.metrics import classify_shot, background_consistency
    classify_shot(image)                          # -> 'upper_body' (or 'no_person')
    background_consistency(generated, [real1, real2])   # -> 0..1, higher = same place and angle

- ``classify_shot`` reads framing from OpenCV's bundled detectors (Haar frontal face, HOG people):
  the face's height relative to the frame says close-up / upper-body / thigh-up; a whole person
  (HOG) says full-body or wide by how much of the frame they fill. Thresholds are set on the
  sample renderer's photos, whose shot is known (tests/stages/test_shot_classifier.py).
- ``background_consistency`` is the structural similarity (SSIM) of two images outside the
  person region, at a common size, taking the best match among the references.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from landmark_lora.imaging import cv2_detectors, detect_person

NO_PERSON = "no_person"
WORK_SIZE = 256  # detectors need a few dozen pixels per face; small generations are upscaled

# Face height / frame height at the boundaries between shot types (portrait framing), between
# the faces measured in the sample renderer's shots: close-up 0.30-0.42, upper-body 0.12-0.21,
# thigh-up 0.125-0.17, full-body 0.105-0.125.
CLOSE_UP_FACE = 0.26
UPPER_BODY_FACE = 0.16
THIGH_UP_FACE = 0.12
FULL_BODY_PERSON = 0.45  # person height / frame height
# HOG's detection window is 128 px tall with the person in its middle 3/4 (Dalal & Triggs): at
# 256 px a wide-shot person (~1/3 of the frame) is too small for it, and a box is never under
# half the frame, so 'wide' was unreachable. People are searched at this height, in a border.
HOG_HEIGHT = 512
HOG_PERSON_IN_BOX = 0.75
HOG_BORDER = 0.2  # of the height, so a person filling the frame still fits one window


def _work(image: Image.Image) -> Image.Image:
    image = image.convert("RGB")
    scale = WORK_SIZE / max(image.size)
    if scale > 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    return image


def classify_shot(image: Image.Image) -> str:
    """Shot type from detected framing, or 'no_person' when no face or body is found."""
    image = _work(image)
    d = cv2_detectors()
    cv2 = d["cv2"]
    gray = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY)
    h = gray.shape[0]
    faces = d["face"].detectMultiScale(gray, 1.05, 4, minSize=(max(12, h // 25), max(12, h // 25)))
    if len(faces):
        face_h = max(f[3] for f in faces) / h
        if face_h >= CLOSE_UP_FACE:
            return "close_up"
        if face_h >= UPPER_BODY_FACE:
            return "upper_body"
        if face_h >= THIGH_UP_FACE:
            return "thigh_up"
    if h >= 128 and gray.shape[1] >= 64:
        tall = [(y1 - y0) / h for x0, y0, x1, y1 in hog_people(gray)]
        if tall:
            return "full_body" if max(tall) >= FULL_BODY_PERSON else "wide"
    if len(faces):  # a small face and no body found: a person far away
        return "wide" if max(f[3] for f in faces) / h < 0.04 else "full_body"
    return NO_PERSON


def hog_people(gray: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Whole people (HOG) in a grayscale image: (x0, y0, x1, y1) boxes in its pixels, the window trimmed to
    the person (the middle ``HOG_PERSON_IN_BOX`` of its height). Searched at ``HOG_HEIGHT`` in a border."""
    d = cv2_detectors()
    cv2 = d["cv2"]
    h = gray.shape[0]
    s = max(1.0, HOG_HEIGHT / h)
    big = cv2.resize(gray, (round(gray.shape[1] * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
    pad = round(HOG_BORDER * big.shape[0])
    big = cv2.copyMakeBorder(big, pad, pad, pad // 2, pad // 2, cv2.BORDER_REPLICATE)
    rects, weights = d["hog"].detectMultiScale(big, winStride=(8, 8), padding=(8, 8), scale=1.05)
    trim = (1 - HOG_PERSON_IN_BOX) / 2
    return [((x - pad // 2 + 0.2 * bw) / s, (y - pad + trim * bh) / s, (x - pad // 2 + 0.8 * bw) / s,
             (y - pad + (1 - trim) * bh) / s)
            for (x, y, bw, bh), w in zip(rects, np.ravel(weights) if len(rects) else [], strict=False) if w > 0.5]


_SEARCH = object()  # person_extent: no head-and-shoulders box given, search for one


def person_extent(image: Image.Image, face: Any = _SEARCH) -> tuple[int, int, int, int] | None:
    """The whole person in ``image`` (its pixels): the union of the head-and-shoulders box
    (``imaging.detect_person``) and the whole people HOG finds, clipped to the image; None when neither.
    Preprocess records it per photo; composite generation paints into its median per shot type.
    ``face``: detect_person(image) when the caller has it already (box or None); used as is when
    the working size is the image's own, so the cascades do not run twice."""
    work = _work(image)
    if face is _SEARCH or work.size != image.size:
        face = detect_person(work)
    boxes: list[tuple[float, ...]] = [tuple(float(v) for v in face)] if face else []
    if work.height >= 128 and work.width >= 64:
        import cv2

        boxes += hog_people(cv2.cvtColor(np.asarray(work), cv2.COLOR_RGB2GRAY))
    if not boxes:
        return None
    sx, sy = image.width / work.width, image.height / work.height
    x0, y0 = max(0.0, min(b[0] for b in boxes)) * sx, max(0.0, min(b[1] for b in boxes)) * sy
    x1, y1 = min(work.width, max(b[2] for b in boxes)) * sx, min(work.height, max(b[3] for b in boxes)) * sy
    return int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))


SSIM_RADIUS = 3  # _ssim_map's 7x7 Gaussian window


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two float grayscale images in [0, 1] (Gaussian window, as Wang et al.)."""
    import cv2

    c1, c2 = 0.01**2, 0.03**2
    blur = lambda x: cv2.GaussianBlur(x, (7, 7), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def _gray(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(image.convert("L").resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def _person_mask(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """True outside the detected person (the background), at ``size``."""
    mask = np.ones((size[1], size[0]), dtype=bool)
    work = _work(image)
    box = detect_person(work)
    if box is not None:
        sx, sy = size[0] / work.width, size[1] / work.height
        x0, y0, x1, y1 = box
        mask[int(y0 * sy):int(np.ceil(y1 * sy)), int(x0 * sx):int(np.ceil(x1 * sx))] = False
    return mask


def background_similarity(a: Image.Image, b: Image.Image, size: tuple[int, int] = (96, 96),
                          masks: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Mean SSIM over pixels that are background in both images, clipped to [0, 1]. ``masks``: the two
    images' background masks at ``size`` when the caller has them already (each is a person detection)."""
    mask_a, mask_b = masks if masks is not None else (_person_mask(a, size), _person_mask(b, size))
    mask = mask_a & mask_b
    if mask.mean() < 0.1:  # people cover almost everything: no background left to compare
        mask = np.ones_like(mask)
    ssim = _ssim_map(_gray(a, size), _gray(b, size))
    return float(np.clip(ssim[mask].mean(), 0.0, 1.0))


def background_consistency(generated: Image.Image, references: list[Image.Image],
                           ref_masks: dict[int, np.ndarray] | None = None) -> float:
    """How well ``generated`` matches the best of the real photos of its landmark and angle.

    The person is detected once in ``generated`` and once per reference: ``ref_masks`` (by the
    reference's id) keeps the references' masks for the caller's next image, while it holds them."""
    if not references:
        return float("nan")
    size = (96, 96)
    own = _person_mask(generated, size)
    cache = {} if ref_masks is None else ref_masks
    for ref in references:
        if id(ref) not in cache:
            cache[id(ref)] = _person_mask(ref, size)
    return max(background_similarity(generated, ref, size, (own, cache[id(ref)])) for ref in references)


def masked_similarity(image: Image.Image, reference: Image.Image, keep: np.ndarray) -> float:
    """Mean SSIM of ``image`` and ``reference`` (resized to it) over the pixels where ``keep`` (h, w) is
    True and ``SSIM_RADIUS`` px from any pixel that is not, clipped to [0, 1]; NaN when nothing is kept. Composite scoring compares each image with its
    plate outside the person region this way, for both modes alike."""
    import cv2

    # only windows wholly inside `keep`: the 7x7 SSIM window of a pixel next to the region reads region pixels
    keep = cv2.erode(keep.astype(np.uint8), np.ones((2 * SSIM_RADIUS + 1,) * 2, np.uint8),
                     borderType=cv2.BORDER_REPLICATE).astype(bool)
    if not keep.any():
        return float("nan")
    size = image.size
    ssim = _ssim_map(_gray(image, size), _gray(reference, size))
    return float(np.clip(ssim[keep].mean(), 0.0, 1.0))
