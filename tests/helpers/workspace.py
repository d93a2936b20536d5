"""A user's clone in a temp folder, for the end-to-end tests (tests/test_pipeline.py, tests/flows/):

    from tests.helpers.workspace import build_workspace
    ws = build_workspace(tmp / "ws")                                   # fast params, two landmarks
    ws = build_workspace(tmp / "ws", {"train": {"checkpoint_every": 100}}, landmarks=None)  # all five
    commit_all(copy_checkout(tmp / "ws"))      # the checkout as it is (its own params.yaml), one commit
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]  # the checkout these helpers live in

# Two landmarks instead of five: the same pipeline, a third of the photos.
TEST_LANDMARKS = ("gyeongbokgung", "haeundae_beach")
FAST_PARAMS = {
    "sample_data": {"poses_per_view": 1},
    "ingest": {"min_age_s": 0},  # photos are rendered complete just before ingest
    "validation": {"min_photos_per_landmark": 5},
    "train": {"max_steps": 4, "batch_size": 2, "eval_every": 4, "checkpoint_every": 4, "learning_rate": 0.001},
    "eval": {"max_prompts": 2, "num_inference_steps": 2},
    "mlflow": {"system_metrics": False},
    # params.yaml's LoRA recipe is for the toy-world base (rank 16, wide targets, text encoder):
    # the tests' tiny base keeps the small attention-only LoRA
    "lora": {"rank": 4, "alpha": 4.0, "targets": ["to_q", "to_k", "to_v", "to_out.0"], "text_encoder": False},
    "model": {"base": "tiny"},  # params.yaml ships the trained toy-world base; tests keep the fast random one
}
# Never copied into a workspace: data, outputs and local state of the checkout.
_SKIP_TOP = {"tests", "data", "models", "mlruns", "reports", ".cache", ".venv", ".git", ".dvc-storage", "gx"}


def _repo_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files of the checkout (falls back to a walk)."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True, timeout=60).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        out = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()]
    return [f for f in out if f.split("/", 1)[0] not in _SKIP_TOP and "__pycache__" not in f]


def build_workspace(root: Path, params: dict | None = None,
                    landmarks: tuple[str, ...] | None = TEST_LANDMARKS) -> Path:
    """A copy of the checkout at ``root`` with its own git repo and commit.

    params.yaml gets FAST_PARAMS, then ``params`` merged key by key within each section;
    ``landmarks`` limits the catalogue (None: every landmark)."""
    copy_checkout(root)
    raw = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    if landmarks is not None:
        catalogue = yaml.safe_load((REPO / "src/landmark_lora/data/landmarks.yaml").read_text(encoding="utf-8"))
        (root / "landmarks-test.yaml").write_text(
            yaml.safe_dump([c for c in catalogue if c["slug"] in landmarks], allow_unicode=True), encoding="utf-8")
        raw["catalogue"] = "landmarks-test.yaml"
    for overrides in (FAST_PARAMS, params or {}):
        for section, values in overrides.items():
            raw[section] = {**(raw.get(section) or {}), **values}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tiny = REPO / "models" / "base-tiny"
    if (tiny / "model_index.json").is_file():  # building it again costs ~10 s; same config, same weights
        shutil.copytree(tiny, root / "models" / "base-tiny")
    return commit_all(root)


def copy_checkout(root: Path) -> Path:
    """The checkout's files (not its data, models, stores or tests) copied to ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel in _repo_files():
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    return root


def commit_all(root: Path) -> Path:
    """``git init`` at ``root`` (if needed) and one commit of everything there."""
    git = ["git", "-c", "user.email=tests@landmark-lora", "-c", "user.name=tests", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "workspace"], cwd=root, check=True)
    return root



@contextmanager
def inside(root: Path) -> Iterator[Path]:
    """Work in ``root`` with no MLFLOW_TRACKING_URI, so its params.yaml picks the store; the folder
    and the variable are restored afterwards (for module-scoped fixtures that run a pipeline)."""
    old_cwd, old_uri = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(root)
    try:
        yield Path(root)
    finally:
        os.chdir(old_cwd)
        if old_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_uri
