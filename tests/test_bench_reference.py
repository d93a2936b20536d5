"""tools.bench_reference's pieces that need no reference script: the torchvision.transforms
stand-in the reference's process gets, and the refusal (with how to get the script) when the
script is missing. The comparison itself is a benchmark (`make bench-reference`), never a test."""

from __future__ import annotations

import torch
from PIL import Image

from tools import bench_reference
from tools import reference_transforms as T


def test_transforms_stand_in_follows_torchvision_on_pil():
    img = Image.new("RGB", (56, 72), (255, 0, 0))
    img.putpixel((0, 0), (0, 0, 255))
    resized = T.Resize(64, interpolation=T.InterpolationMode.BILINEAR)(img)
    assert resized.size == (64, 82)  # the shorter side to 64, aspect kept (int(64 * 72 / 56))
    assert T.CenterCrop(64)(resized).size == (64, 64)
    assert T.CenterCrop(64)(Image.new("RGB", (64, 82))).getbbox() is None
    torch.manual_seed(0)
    assert T.RandomCrop(64)(resized).size == (64, 64)
    flipped = T.RandomHorizontalFlip(p=1.0)(img)
    assert flipped.getpixel((55, 0)) == (0, 0, 255)
    x = T.Compose([T.ToTensor(), T.Normalize([0.5], [0.5])])(img)
    assert x.shape == (3, 72, 56) and x.dtype == torch.float32
    assert x[0, 1, 1].item() == 1.0 and x[1, 1, 1].item() == -1.0 and x[2, 0, 0].item() == 1.0


def test_missing_script_is_refused_with_how_to_get_it(tmp_path, capsys):
    assert bench_reference.main(["--script", str(tmp_path / "nope.py")]) == 2
    err = capsys.readouterr().err
    assert "git clone https://github.com/huggingface/diffusers" in err
    assert bench_reference.REFERENCE_COMMIT[:10] in err and "REFERENCE_SCRIPT" in err
