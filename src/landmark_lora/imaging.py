"""Photos as pixels: decoding to upright RGB, EXIF orientation, and where the person is.

    from landmark_lora.imaging import detect_person, exif_orientation, load_rgb
    image = load_rgb(path)                 # upright 8-bit RGB, whatever the mode (CMYK, 16-bit, RGBA...)
    exif_orientation(Image.open(path))     # 1-8 (5-8: rotated 90 degrees, width and height swap)
    detect_person(image)                   # (x0, y0, x1, y1) around the people, or None

Person detection uses OpenCV's bundled detectors only (Haar frontal face and upper-body cascades,
HOG people), so it needs no downloaded weights. Used by the preprocess stage (crops that keep the
person) and by ``landmark_lora.metrics`` (shot type, background outside the person).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

Box = tuple[int, int, int, int]  # x0, y0, x1, y1


# ---------------------------------------------------------------- decoding


def exif_orientation(im: Image.Image) -> int:
    """EXIF orientation 1-8; missing, garbage or out-of-range values mean upright (as viewers treat them)."""
    try:
        value = int(im.getexif().get(0x0112, 1) or 1)
    except (TypeError, ValueError, OverflowError):
        return 1
    return value if 1 <= value <= 8 else 1


def load_rgb(path: Path, min_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode a photo to upright 8-bit RGB, whatever its mode (CMYK, L, RGBA, 16-bit, palette)."""
    with Image.open(path) as opened:
        if min_size and opened.format == "JPEG":
            # Decode at a reduced scale straight from the DCT when the photo is much bigger.
            opened.draft("RGB", (min_size[0] * 2, min_size[1] * 2))
        im: Image.Image = ImageOps.exif_transpose(opened)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float64)
            peak = 65535.0 if arr.max() > 255 else 255.0
            im = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "PA", "RGBa"):
            im = im.convert("RGBA")
            canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(canvas, im)
        return im.convert("RGB")


# ---------------------------------------------------------------- person detection


_DETECTORS: dict = {}


def cv2_detectors() -> dict:
    """OpenCV and its bundled detectors, loaded once: keys cv2, hog, face, upper."""
    if not _DETECTORS:
        import cv2

        cv2.setNumThreads(1)  # we are one DVC stage among others; don't grab every core
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())  # type: ignore[attr-defined]
        root = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]
        _DETECTORS.update(
            cv2=cv2,
            hog=hog,
            face=cv2.CascadeClassifier(str(root / "haarcascade_frontalface_default.xml")),
            upper=cv2.CascadeClassifier(str(root / "haarcascade_upperbody.xml")),
        )
    return _DETECTORS


def detect_person(image: Image.Image) -> Box | None:
    """Bounding box of the people in an RGB image (union of detections), or None.

    Faces are grown to head-and-shoulders, since a crop that keeps only the face
    would still cut the person.
    """
    d = cv2_detectors()
    cv2 = d["cv2"]
    boxes: list[tuple[float, float, float, float]] = []
    # Most specific detector first: faces, then upper bodies, then whole people (HOG),
    # since the looser detectors fire on background clutter more often. Haar cascades
    # are scale-sensitive, so faces get two tries at different working sizes.
    for max_side in (640, 448):
        scale = min(1.0, max_side / max(image.size))
        small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        gray = cv2.cvtColor(np.asarray(small), cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        min_face = max(12, min(w, h) // 20)
        for x, y, fw, fh in d["face"].detectMultiScale(gray, 1.05, 4, minSize=(min_face, min_face)):
            boxes.append((x - 0.6 * fw, y - 0.4 * fh, x + 1.6 * fw, y + 2.6 * fh))
        if boxes:
            break
    if not boxes:
        for x, y, bw, bh in d["upper"].detectMultiScale(gray, 1.1, 4, minSize=(max(24, w // 6), max(24, h // 6))):
            boxes.append((x, y, x + bw, y + bh))
    if not boxes and w >= 64 and h >= 128:
        rects, weights = d["hog"].detectMultiScale(gray, winStride=(8, 8), padding=(8, 8), scale=1.05)
        for (x, y, bw, bh), wt in zip(rects, np.ravel(weights) if len(rects) else [], strict=False):
            if wt > 0.8:
                boxes.append((x, y, x + bw, y + bh))
    if not boxes:
        return None
    x0 = max(0.0, min(b[0] for b in boxes)) / scale
    y0 = max(0.0, min(b[1] for b in boxes)) / scale
    x1 = min(float(w), max(b[2] for b in boxes)) / scale
    y1 = min(float(h), max(b[3] for b in boxes)) / scale
    return int(x0), int(y0), int(math.ceil(x1)), int(math.ceil(y1))
