"""A stand-in for the few ``torchvision.transforms`` that diffusers' reference LoRA script uses.

Not torchvision, never installed and never imported by the project: the torchvision 0.29.1 wheel in the
package index does not load beside torch 2.13.0+cpu (``operator torchvision::nms does not exist``), so
``tools.bench_reference`` registers this module as ``torchvision.transforms`` in the reference
script's benchmark process only, after transformers, peft and diffusers have been imported (so they
still see no torchvision and keep their PIL code paths). It covers what
``train_text_to_image_lora.py`` calls on PIL images, with torchvision's semantics: Compose, Resize
(an int scales the shorter side), CenterCrop, RandomCrop and RandomHorizontalFlip (torch's RNG),
Lambda, ToTensor, Normalize, InterpolationMode."""

from __future__ import annotations

import enum

import numpy as np
import torch
from PIL import Image


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


_PIL = {m: getattr(Image.Resampling, m.name) for m in InterpolationMode}


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class Lambda:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)


class Resize:
    """An int size scales the shorter side to it, keeping the aspect ratio (torchvision's rule)."""

    def __init__(self, size, interpolation=InterpolationMode.BILINEAR):
        self.size, self.interpolation = size, interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        if isinstance(self.size, int):
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.size, int(self.size * long / short)
            size = (new_short, new_long) if w <= h else (new_long, new_short)
        else:
            size = (self.size[1], self.size[0])
        return img.resize(size, _PIL[self.interpolation])


def _hw(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (size[0], size[1])


class CenterCrop:
    def __init__(self, size):
        self.h, self.w = _hw(size)

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        top, left = int(round((h - self.h) / 2.0)), int(round((w - self.w) / 2.0))
        return img.crop((left, top, left + self.w, top + self.h))


class RandomCrop(CenterCrop):
    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        top = int(torch.randint(0, h - self.h + 1, size=(1,)).item())
        left = int(torch.randint(0, w - self.w + 1, size=(1,)).item())
        return img.crop((left, top, left + self.w, top + self.h))


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if torch.rand(1) < self.p else img


class ToTensor:
    """PIL -> float [C, H, W] in [0, 1]."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        arr = np.asarray(img, dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


class Normalize:
    def __init__(self, mean, std):
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean[:, None, None]) / self.std[:, None, None]
