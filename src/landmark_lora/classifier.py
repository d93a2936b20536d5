"""Which landmark, camera angle and pose a photo shows: a small offline classifier (numpy + Pillow).

    from landmark_lora.classifier import calibrated_classifiers, fit_label_classifier, label_accuracies
    clf = fit_label_classifier("landmark", train_images, train_labels)   # real train photos
    clf.calibrate(val_images, val_labels)          # accuracy on real val photos -> clf.calibration
    clf.predict(generated_images)                  # -> ['gyeongbokgung', ...]
    cal = calibrated_classifiers(Path("data/processed"), min_calibration=0.6, min_photos=10)
    label_accuracies(cal, generated_images, prompts)   # {'landmark_accuracy': 0.8, ..., 'pose_accuracy': None}

No downloaded weights: every feature is computed from the pixels.

- ``landmark``: the background's layout and colours. A map of the top rows and side columns
  (where the person rarely is) plus HSV colour histograms.
- ``angle``: where the horizon sits and how the lines lean, not colours (so it carries over to a
  place it has not seen). Per-row edge strength, brightness, blueness and saturation of the side
  strips (a low camera puts the horizon near the bottom, a high one near the top) and
  gradient-orientation histograms on a coarse grid.
- ``pose``: gradient orientations and a grey map of the centre, where the person stands.
- ``shot``: the same centre blocks: the framing is how much of the centre the person fills (a face
  filling it, a torso, a small figure on the ground). Evaluate's ``eval.shot_reader`` may read
  generated images' framing with it instead of OpenCV's detectors, which rarely find a person in
  a 56x72 image (docs/results.md).

With ``roundtrip`` (evaluate passes the base's VAE, encode then decode), every task is trained on
the train photos and on their round trips, and calibrated on the val photos' round trips: every
generated image comes out of that decoder, so its blur, which neither base nor adapter can avoid,
is not read as a wrong label. The accuracy on the sharp val photos is reported beside it
(``calibration_sharp``), and a task is refused when either is poor.

The model is a multinomial logistic regression (L2, full-batch gradient descent with a fixed
number of steps from zero weights): same photos in, same numbers out. Calibration is its
accuracy on real photos it was not trained on; evaluate refuses to report a metric whose
calibration is below ``eval.min_calibration``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from landmark_lora.artifacts import Layout, ProcessedRecord, read_records

UNSPECIFIED = "unspecified"
WORK = (28, 36)  # (width, height) every photo is reduced to: generated images and photos alike
BORDER = (14, 18)  # the background map's size
# Which feature blocks each label is read from (measured on the sample set: see README).
TASK_FEATURES: dict[str, tuple[str, ...]] = {
    "landmark": ("border", "hsv"),
    "angle": ("horizon", "orient"),
    "pose": ("orient_centre", "grey_centre"),
    "shot": ("orient_centre", "grey_centre"),
}
# A label counts as a closed vocabulary (worth classifying) when it has at most this many
# values, each seen in at least MIN_PER_CLASS train photos.
MAX_CLASSES = 20
MIN_PER_CLASS = 2


# ---------------------------------------------------------------- features


def _rgb(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Box-averaged RGB in [0, 1], (height, width, 3)."""
    small = image.convert("RGB").resize(size, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _hsv(rgb: np.ndarray) -> np.ndarray:
    mx, mn = rgb.max(-1), rgb.min(-1)
    delta = mx - mn
    sat = np.where(mx > 0, delta / np.maximum(mx, 1e-6), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    d = np.maximum(delta, 1e-6)
    hue = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) / 6.0
    hue = np.where(delta > 0, hue, 0.0)
    return np.stack([hue, sat, mx], -1)


def _hist(values: np.ndarray, bins: int) -> np.ndarray:
    h, _ = np.histogram(values, bins=bins, range=(0.0, 1.0))
    return h / max(values.size, 1)


def _gradients(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gy, gx = np.gradient(grey)
    return gx, gy


def _orient_hist(gx: np.ndarray, gy: np.ndarray, cells: tuple[int, int], bins: int = 8) -> np.ndarray:
    """Magnitude-weighted, unsigned gradient-orientation histograms on a cells[0] x cells[1] grid."""
    mag = np.hypot(gx, gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi) / np.pi  # 0..1, unsigned
    idx = np.minimum((ang * bins).astype(int), bins - 1)
    h, w = mag.shape
    out = []
    for rows in np.array_split(np.arange(h), cells[0]):
        for cols in np.array_split(np.arange(w), cells[1]):
            m, i = mag[np.ix_(rows, cols)].ravel(), idx[np.ix_(rows, cols)].ravel()
            hist = np.bincount(i, weights=m, minlength=bins)
            out.append(hist / (hist.sum() + 1e-3))
    return np.concatenate(out)


Blocks = dict[str, np.ndarray]


def photo_blocks(image: Image.Image) -> Blocks:
    """Every feature block of one image; compute once, then fit or predict any task from them."""
    rgb = _rgb(image, WORK)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gx, gy = _gradients(grey)
    border = _rgb(image, BORDER)
    hsv = _hsv(rgb)
    w = WORK[0]
    side = np.r_[0:w // 4, w - w // 4:w]  # the side strips: background in most framings
    edge_rows = np.abs(gy[:, side]).mean(1)
    horizon = np.concatenate([
        edge_rows / (edge_rows.sum() + 1e-3),  # where the strong horizontal lines are
        grey[:, side].mean(1),  # bright sky above, darker ground below
        (rgb[:, side, 2] - rgb[:, side, 0]).mean(1),  # blueness per row: sky vs ground
        hsv[:, side, 1].mean(1),
    ])
    c0, c1 = w // 4, w - w // 4
    return {
        "border": np.concatenate([border[:5].ravel(), border[5:, :3].ravel(), border[5:, -3:].ravel()]),
        "hsv": np.concatenate([_hist(hsv[..., k], 16) for k in range(3)]),
        "horizon": horizon,
        "orient": _orient_hist(gx, gy, (4, 3)),
        "orient_centre": _orient_hist(gx[:, c0:c1], gy[:, c0:c1], (6, 2)),
        "grey_centre": grey[:, c0:c1].ravel(),
    }


def photo_features(image: Image.Image | Blocks, blocks: Sequence[str]) -> np.ndarray:
    """One feature vector for ``image`` (or its photo_blocks) from the named blocks (TASK_FEATURES)."""
    all_blocks = image if isinstance(image, dict) else photo_blocks(image)
    unknown = [b for b in blocks if b not in all_blocks]
    if unknown:
        raise KeyError(f"unknown feature block(s) {unknown}; known: {sorted(all_blocks)}")
    return np.concatenate([all_blocks[b] for b in blocks]).astype(np.float64)


# ---------------------------------------------------------------- model


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(1, keepdims=True))


def _top_eigenvalue(x: np.ndarray, iters: int = 50) -> float:
    """Largest eigenvalue of x.T @ x by power iteration from a fixed start (an upper-side estimate).

    Cheaper and steadier than an SVD on a busy machine; 50 steps are plenty for a step size."""
    v = np.ones(x.shape[1]) / np.sqrt(x.shape[1])
    lam = 0.0
    for _ in range(iters):
        u = x.T @ (x @ v)
        lam = float(np.linalg.norm(u))
        if lam == 0.0:
            return 0.0
        v = u / lam
    return lam * 1.05  # power iteration approaches from below: leave a margin


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1e-2,
                steps: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by Nesterov gradient descent from zero. Returns (W, b).

    ``x`` should be standardised; the step size comes from a bound on the loss's curvature,
    so it needs no tuning and the result is the same on every run."""
    n, d = x.shape
    onehot = np.eye(n_classes)[y]
    lr = 1.0 / (0.5 * (_top_eigenvalue(x) / n + 1.0) + l2)  # 1 / Lipschitz bound
    w, b = np.zeros((d, n_classes)), np.zeros(n_classes)
    vw, vb = w.copy(), b.copy()
    for t in range(steps):
        p = _softmax(x @ vw + vb)
        g = (p - onehot) / n
        gw, gb = x.T @ g + l2 * vw, g.sum(0)
        w_next, b_next = vw - lr * gw, vb - lr * gb
        mom = t / (t + 3)
        vw, vb = w_next + mom * (w_next - w), b_next + mom * (b_next - b)
        w, b = w_next, b_next
    return w, b


@dataclass
class LabelClassifier:
    """A fitted classifier for one label (``task``) with its calibration on held-out real photos."""

    task: str
    classes: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    train_photos: int
    calibration: float | None = None
    calibration_photos: int = 0
    calibration_sharp: float | None = None  # on the sharp val photos, when calibrated on their VAE round trips

    @property
    def blocks(self) -> tuple[str, ...]:
        return TASK_FEATURES[self.task]

    @property
    def chance(self) -> float:
        return 1.0 / len(self.classes)

    def _x(self, images: Sequence[Image.Image | Blocks]) -> np.ndarray:
        x = np.stack([photo_features(im, self.blocks) for im in images])
        return np.asarray((x - self.mean) / self.scale)

    def predict_proba(self, images: Sequence[Image.Image | Blocks]) -> np.ndarray:
        if not images:
            return np.zeros((0, len(self.classes)))
        return _softmax(self._x(images) @ self.weights + self.bias)

    def predict(self, images: Sequence[Image.Image | Blocks]) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(images).argmax(1)]

    def accuracy(self, images: Sequence[Image.Image | Blocks], labels: Sequence[str]) -> float | None:
        """Share of images whose predicted label is the given one; unspecified labels are left out.
        None when no image has a label. A label the classifier never saw counts as wrong."""
        pairs = [(im, lab) for im, lab in zip(images, labels, strict=False) if lab != UNSPECIFIED]
        if not pairs:
            return None
        pred = self.predict([im for im, _ in pairs])
        return float(np.mean([p == lab for p, (_, lab) in zip(pred, pairs, strict=False)]))

    def calibrate(self, images: Sequence[Image.Image | Blocks], labels: Sequence[str]) -> float | None:
        self.calibration = self.accuracy(images, labels)
        self.calibration_photos = sum(lab != UNSPECIFIED for lab in labels)
        return self.calibration


class NotClassifiable(ValueError):
    """The train photos do not support a classifier for this label (reason in the message)."""


def fit_label_classifier(task: str, images: Sequence[Image.Image | Blocks], labels: Sequence[str],
                         l2: float = 1e-2, steps: int = 400) -> LabelClassifier:
    """Train the ``task`` classifier ("landmark", "angle" or "pose") on real photos and labels.

    ``images`` may also be their photo_blocks (computed once for several tasks).
    Raises NotClassifiable when the labels are not a closed vocabulary of two or more values
    (free-text poses, a single landmark), saying why."""
    if task not in TASK_FEATURES:
        raise KeyError(f"unknown task {task!r}; known: {sorted(TASK_FEATURES)}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    pairs = [(im, lab) for im, lab in zip(images, labels, strict=False) if lab != UNSPECIFIED]
    counts = Counter(lab for _, lab in pairs)
    if len(counts) < 2:
        raise NotClassifiable(f"the train photos show {len(counts)} distinct {task} value(s): nothing to tell apart")
    if len(counts) > MAX_CLASSES:
        raise NotClassifiable(f"{len(counts)} distinct {task} values in the train photos (more than {MAX_CLASSES}): "
                              "not a closed vocabulary")
    rare = sorted(lab for lab, n in counts.items() if n < MIN_PER_CLASS)
    if rare:
        raise NotClassifiable(f"{task} value(s) {rare[:3]} have fewer than {MIN_PER_CLASS} train photos: "
                              "not a closed vocabulary")
    classes = sorted(counts)
    x = np.stack([photo_features(im, TASK_FEATURES[task]) for im, _ in pairs])
    y = np.array([classes.index(lab) for _, lab in pairs])
    mean = x.mean(0)
    scale = np.maximum(x.std(0), 1e-3)
    w, b = fit_softmax((x - mean) / scale, y, len(classes), l2=l2, steps=steps)
    return LabelClassifier(task, classes, mean, scale, w, b, train_photos=len(pairs))


# ---------------------------------------------------------------- evaluation on a processed dataset

TASKS = ("landmark", "angle", "pose")
COMPUTED = "computed"


@dataclass
class Calibrated:
    """One task's classifier for evaluation, or why its metric is not reported (``status``)."""

    task: str
    status: str  # "computed" or "skipped: <reason>"
    classifier: LabelClassifier | None = None

    @property
    def usable(self) -> bool:
        return self.status == COMPUTED and self.classifier is not None


Roundtrip = Callable[[list[Image.Image]], list[Image.Image]]  # photos -> the same through the base's VAE
CHUNK = 32  # photos in memory at once (and per VAE batch)


def _read_split(processed: Path, split: str, roundtrip: Roundtrip | None = None,
                ) -> tuple[list[Blocks], list[Blocks], list[ProcessedRecord]]:
    """Feature blocks of every photo of a split, of their VAE round trips (empty without ``roundtrip``), and
    the records. The photos themselves are not kept: a real dataset of 512 px photos would not fit in memory."""
    layout = Layout.of_processed(processed)
    meta = layout.metadata(split)
    blocks: list[Blocks] = []
    round_blocks: list[Blocks] = []
    recs = read_records(layout, split)
    for start in range(0, len(recs), CHUNK):
        chunk = []
        for n, rec in enumerate(recs[start:start + CHUNK], start + 1):
            path = layout.split_dir(split) / rec.file_name
            try:
                with Image.open(path) as im:
                    chunk.append(im.convert("RGB"))
            except OSError as exc:
                raise FileNotFoundError(f"{meta}:{n}: cannot open {path} ({exc}); rerun `dvc repro preprocess`") from exc
        blocks += [photo_blocks(im) for im in chunk]
        if roundtrip is not None:
            round_blocks += [photo_blocks(im) for im in roundtrip(chunk)]
    return blocks, round_blocks, recs


def calibrated_classifiers(processed: Path, min_calibration: float, min_photos: int,
                           tasks: Sequence[str] = TASKS, roundtrip: Roundtrip | None = None) -> dict[str, Calibrated]:
    """Fit each task on ``processed/train`` and calibrate it on ``processed/val`` (real photos).

    With ``roundtrip`` (photos -> the same through the base's VAE), fit on the train photos and their round
    trips and calibrate on the val photos' round trips, the sharp val photos' accuracy in ``calibration_sharp``.
    A task is skipped, with the reason, when its labels are not a closed vocabulary, when fewer
    than ``min_photos`` val photos carry its label, or when a calibration is < ``min_calibration``."""
    train_blocks, train_round, train_recs = _read_split(processed, "train", roundtrip)
    val_blocks, val_round, val_recs = _read_split(processed, "val", roundtrip)
    out: dict[str, Calibrated] = {}
    for task in tasks:
        train_labels = [getattr(r, task, UNSPECIFIED) for r in train_recs]
        val_labels = [getattr(r, task, UNSPECIFIED) for r in val_recs]
        try:
            clf = fit_label_classifier(task, train_blocks + train_round,
                                       train_labels + (train_labels if train_round else []))
        except NotClassifiable as exc:
            out[task] = Calibrated(task, f"skipped: {exc}")
            continue
        acc = clf.calibrate(val_round or val_blocks, val_labels)
        if val_round:
            clf.calibration_sharp = clf.accuracy(val_blocks, val_labels)
        worst = min((a for a in (acc, clf.calibration_sharp) if a is not None), default=None)
        if clf.calibration_photos < min_photos:
            status = (f"skipped: only {clf.calibration_photos} val photo(s) with a {task} label to calibrate on "
                      f"(eval.min_calibration_photos: {min_photos})")
        elif worst is None or worst < min_calibration:
            which = ("real val photos" if not val_round else
                     "VAE round trips of the real val photos" if worst == acc else "sharp real val photos")
            status = (f"skipped: calibration {worst or 0:.2f} on {clf.calibration_photos} {which} is below "
                      f"eval.min_calibration {min_calibration} (chance {clf.chance:.2f})")
        else:
            status = COMPUTED
        out[task] = Calibrated(task, status, clf)
    return out


def label_accuracies(calibrated: dict[str, Calibrated], images: Sequence[Image.Image],
                     prompts: Sequence[dict]) -> dict[str, float | None]:
    """``<task>_accuracy``: share of generated images whose predicted label is the prompt's.
    None for a skipped task or when no prompt carries that label."""
    out: dict[str, float | None] = {}
    blocks = [photo_blocks(im) for im in images] if any(c.usable for c in calibrated.values()) else []
    for task, cal in calibrated.items():
        value = None
        if cal.usable:
            assert cal.classifier is not None
            value = cal.classifier.accuracy(blocks, [p.get(task, UNSPECIFIED) for p in prompts])
        out[f"{task}_accuracy"] = value
    return out
