"""How evaluation reads generated images: the shot reader and the VAE round trip the classifiers learn from.

    from landmark_lora.readers import choose_shot_reader, vae_roundtrip, val_shots
    reader = choose_shot_reader("auto", classifiers.pop("shot"), val_shots(layout, "val"))
    reader.read(images, detected)          # shot per image, by the detectors or the calibrated classifier

- ``choose_shot_reader``: OpenCV's face and people detectors read the real val photos at the generation
  size (56x72 on the toy-world base) at about 0.6, the offline classifier's shot task at 0.92-0.96
  (docs/results.md); ``eval.shot_reader: auto`` takes the one that reads the real photos better.
- ``vae_roundtrip``: every generated image comes out of the base's VAE decoder; classifiers trained and
  calibrated on photos passed through it do not count the decoder's blur against base or adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from landmark_lora.artifacts import Layout, read_records
from landmark_lora.classifier import COMPUTED, UNSPECIFIED, Calibrated
from landmark_lora.diffusion.components import image_to_tensor
from landmark_lora.metrics import classify_shot


@dataclass
class ShotReader:
    """How shot_agreement reads a generated image's framing: ``name`` detector or classifier, ``status``
    computed or why refused, ``calibration`` its agreement on the real val photos, ``readers`` both readers'."""

    name: str = "detector"
    status: str = COMPUTED
    calibration: float | None = None
    readers: dict[str, float | None] = field(default_factory=dict)
    classify: Callable[[list[Image.Image]], list[str]] | None = None

    def read(self, images: list[Image.Image], detected: list[str]) -> list[str]:
        """Shot per image; ``detected`` is what the detectors read (the detector reader's answer)."""
        return self.classify(images) if self.classify is not None else detected

    def report(self) -> dict:
        return {"shot_agreement_calibration": self.calibration, "shot_agreement_status": self.status,
                "shot_reader": {"reader": self.name, "agreement_on_real_val_photos": self.readers}}


def choose_shot_reader(choice: str, shot: Calibrated | None, val: list[tuple[Image.Image, str]]) -> ShotReader:
    """The shot reader ``eval.shot_reader`` names (auto: the one that reads the real val photos, which are
    stored at the generation size, better; the classifier only when its calibration passed)."""
    labelled = [(im, s) for im, s in val if s != UNSPECIFIED]
    det = float(np.mean([classify_shot(im) == s for im, s in labelled])) if labelled else None
    clf = shot.classifier if shot is not None else None
    sharp = clf.calibration_sharp if clf is not None and clf.calibration_sharp is not None else (
        clf.calibration if clf is not None else None)
    readers = {"detector": det, "classifier": sharp}
    usable = shot is not None and shot.usable and clf is not None
    if choice == "auto":
        choice = "classifier" if usable and (det is None or (sharp or 0.0) >= det) else "detector"
    if choice == "detector":
        return ShotReader("detector", COMPUTED, det, readers)
    if not usable or clf is None:
        status = shot.status if shot is not None else "skipped: no shot classifier"
        return ShotReader("classifier", status, sharp, readers)
    return ShotReader("classifier", COMPUTED, sharp, readers, clf.predict)


def vae_roundtrip(vae) -> Callable[[list[Image.Image]], list[Image.Image]]:
    """Photos -> encoded (posterior mean) and decoded by ``vae``: what the generator's decoder makes of them."""
    @torch.no_grad()
    def run(images: list[Image.Image]) -> list[Image.Image]:
        out: list[Image.Image] = []
        for im in images:  # buckets differ in size; a handful of small photos per call
            x = image_to_tensor(im)[None].to(vae.device, vae.dtype)
            y = vae.decode(vae.encode(x).latent_dist.mean).sample[0].float().clamp(-1, 1)
            out.append(Image.fromarray(((y + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()))
        return out
    return run


def val_shots(layout: Layout, split: str) -> list[tuple[Image.Image, str]]:
    """The real photos of the eval split, at their stored size (the generation size), with their shot."""
    out = []
    for rec in read_records(layout, split):
        with Image.open(layout.split_dir(split) / rec.file_name) as im:
            out.append((im.convert("RGB"), rec.shot))
    return out
