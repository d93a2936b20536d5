"""Small shared test helpers: params rooted in a temp folder, and synthetic photo factories.

    def test_x(tmp_path, make_params, make_photo):
        params = make_params(tmp_path, ingest={"min_side": 32})   # every paths.* under tmp_path
        make_photo(params.paths.incoming / "gyeongbokgung" / "a.jpg", (80, 96), seed=1)

Only `_tracking_uri_does_not_leak` is autouse, and nothing changes the working directory. ``checkout_tiny_base`` is
the one fixture with a side effect: it builds models/base-tiny in the checkout (git-ignored, the
same folder and bytes `landmark-lora` builds there), so every end-to-end workspace copies it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from landmark_lora.config import Params, parse_params
from tests.helpers.suite_order import run_first_rank

REPO = Path(__file__).resolve().parents[1]

# `make test` runs two pytest-xdist workers on two cores: one OpenMP thread per process, or the
# two torch processes' threads wait on each other at every barrier (several times slower).
# Subprocesses (dvc stages, the CLI) inherit it; a value the caller set is kept.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# paths.<key> -> location under the test root (mirrors the repository layout)
PATH_LAYOUT = {
    "incoming": "data/incoming",
    "raw": "data/raw",
    "quarantine": "data/quarantine",
    "processed": "data/processed",
    "reports": "reports",
    "cache": ".cache",
}


def build_params(root: str | Path, **overrides: Any) -> Params:
    """A validated Params with every ``paths.*`` under ``root`` (and ``ingest.min_age_s`` 0).

    ``overrides`` are sections merged over that: ``build_params(tmp, ingest={"min_side": 8})``.
    """
    raw: dict[str, Any] = {"paths": {k: str(Path(root) / v) for k, v in PATH_LAYOUT.items()}}
    # Test files are complete when written: no waiting for them to settle (tests of that set it).
    raw["ingest"] = {"min_age_s": 0}
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section] = {**raw[section], **values}
        else:
            raw[section] = values
    return parse_params(raw, source="test params")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first (tests/helpers/suite_order.py: why, and which)."""
    items.sort(key=run_first_rank)  # stable: every other file keeps its place


@pytest.fixture(scope="session")
def checkout_tiny_base() -> Path:
    """models/base-tiny of the checkout, built once (later sessions reuse it; a stale one is rebuilt).

    build_workspace (tests/workspace.py) copies it into each workspace, whose pipeline then finds
    it instead of building its own (~10 s of torch per workspace). Safe under pytest-xdist: the
    build lands in a temp folder and is renamed into place, and a loser of the race reuses it."""
    from landmark_lora.diffusion.base import ensure_base_model

    return Path(ensure_base_model("tiny", REPO / "models"))


@pytest.fixture
def make_params():
    """``make_params(tmp_path, **section_overrides) -> Params`` (see build_params)."""
    return build_params


def photo_array(size: tuple[int, int] = (80, 96), seed: int = 0, noise: int = 60) -> np.ndarray:
    """An RGB uint8 array (height, width, 3): a smooth gradient plus seeded noise, unique per seed."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y + seed * 37) % 256], axis=-1
    ).astype(np.int16)
    if noise:
        base = base + rng.integers(-noise, noise + 1, base.shape, dtype=np.int16)
    return np.clip(base, 0, 255).astype(np.uint8)


def photo_image(size: tuple[int, int] = (80, 96), seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A PIL image of ``size`` (width, height) in ``mode`` (RGB, L, RGBA, CMYK, P, I;16, ...)."""
    arr = photo_array(size, seed)
    if mode == "I;16":
        return Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
    im = Image.fromarray(arr)
    if mode == "RGBA":
        im.putalpha(Image.fromarray(arr[..., 1]))
        return im
    return im.convert(mode) if mode != "RGB" else im


def photo_bytes(
    size: tuple[int, int] = (80, 96), seed: int = 0, format: str = "JPEG", mode: str = "RGB", **save: Any
) -> bytes:
    """Encoded photo bytes (JPEG by default; any format Pillow can write)."""
    buf = io.BytesIO()
    photo_image(size, seed, mode).save(buf, format=format, **save)
    return buf.getvalue()


def write_photo(
    path: str | Path,
    size: tuple[int, int] = (80, 96),
    seed: int = 0,
    format: str = "JPEG",
    mode: str = "RGB",
    **save: Any,
) -> Path:
    """Write a synthetic photo to ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(photo_bytes(size, seed, format, mode, **save))
    return path


@pytest.fixture
def make_photo():
    """``make_photo(path, size=(80, 96), seed=0, format="JPEG", mode="RGB", **save) -> Path``."""
    return write_photo


@pytest.fixture
def make_photo_bytes():
    """``make_photo_bytes(size=(80, 96), seed=0, format="JPEG", mode="RGB", **save) -> bytes``."""
    return photo_bytes


@pytest.fixture(autouse=True)
def _tracking_uri_does_not_leak():
    """The one autouse fixture: a test that calls ``mlflow.set_tracking_uri`` (which exports
    MLFLOW_TRACKING_URI) must not point the next test in the same worker at its store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
