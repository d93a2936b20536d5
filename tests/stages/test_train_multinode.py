"""Multi-node resume with 2 CPU processes whose working directories differ, as on two nodes:
rank 0 chooses the checkpoint and every rank resumes from it, or the run stops naming the path
when a rank cannot read it (`.cache/train` not on shared storage)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import workspace  # noqa: F401  (the module's processed data + cached latents)

HERE = Path(__file__).parent
SETS = ("train.num_processes=2", "train.max_steps=6", "train.checkpoint_every=2", "train.eval_every=100")


def _cmd(*extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "per_rank_workdir.py"), "--params", "params.yaml"]
    for s in (*SETS, *extra):
        cmd += ["--set", s]
    return cmd


def _env(node0: Path, node1: Path) -> dict[str, str]:
    """2 CPU ranks (torchrun, as train.launch does on CPU): rank 0 in node0, rank 1 in node1."""
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               LANDMARK_TEST_WORKDIR_0=str(node0), LANDMARK_TEST_WORKDIR_1=str(node1))
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _torchrun(node0: Path, node1: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(), env=_env(node0, node1), capture_output=True, text=True, timeout=timeout,
                          cwd=node0, check=False)


def _checkpoints(node: Path) -> list[Path]:
    found = [p.parent for p in (node / ".cache" / "train").glob("*/checkpoint-*/state.json")]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _node_disk(ws: Path, dest: Path) -> Path:
    """A second node's checkout: the same commit and data (dvc pull), none of rank 0's checkpoints."""
    shutil.copytree(ws, dest, ignore=shutil.ignore_patterns(".cache", "mlruns", "reports", "adapter"))
    return dest


@pytest.fixture(scope="module")
def interrupted(workspace, tmp_path_factory):  # noqa: F811
    """Rank 0's checkout after a 2-process run killed (-9, whole process group) past its first
    checkpoint: .cache/train/<key>/checkpoint-N to resume from."""
    root = tmp_path_factory.mktemp("node0") / "ws"
    shutil.copytree(workspace, root, ignore=shutil.ignore_patterns(".cache", "mlruns", "reports", "adapter"))
    proc = subprocess.Popen(_cmd(), env=_env(root, root), cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 400
    try:
        while time.time() < deadline and proc.poll() is None and not _checkpoints(root):
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before it could be killed:\n" + proc.stdout.read().decode()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    assert _checkpoints(root), "no complete checkpoint was written"
    return root


@pytest.fixture
def node0(interrupted, tmp_path):
    """A fresh copy of rank 0's checkout per test (a finished run removes its checkpoints)."""
    root = tmp_path / "node0"
    shutil.copytree(interrupted, root, symlinks=True)
    return root


def test_rank_without_the_checkpoint_fails_naming_the_path(node0, tmp_path):
    node1 = _node_disk(node0, tmp_path / "node1")
    out = _torchrun(node0, node1, timeout=180)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-3000:]
    assert "CheckpointNotShared" in text and "rank 1" in text, text[-3000:]
    ckpt = _checkpoints(node0)[-1]
    assert f".cache/train/{ckpt.parent.name}/{ckpt.name}" in text  # the path rank 0 chose
    assert "shared" in text and "docs/deploy.md" in text


def test_rank_with_a_different_checkpoint_of_the_same_name_fails(node0, tmp_path):
    """Its own disk holds a checkpoint of the same name from an earlier attempt: not rank 0's."""
    node1 = _node_disk(node0, tmp_path / "node1")
    shutil.copytree(node0 / ".cache" / "train", node1 / ".cache" / "train")
    state = _checkpoints(node1)[-1] / "state.json"
    data = json.loads(state.read_text())
    data["curve"] = data["curve"][:1]
    state.write_text(json.dumps(data))
    out = _torchrun(node0, node1, timeout=180)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "sees a different" in text, text[-3000:]


def test_ranks_on_shared_storage_resume_together(node0, tmp_path):
    node1 = _node_disk(node0, tmp_path / "node1")
    (node1 / ".cache").mkdir(exist_ok=True)
    (node1 / ".cache" / "train").symlink_to(node0 / ".cache" / "train")  # the shared mount
    resumed_at = int(_checkpoints(node0)[-1].name.split("-")[1])
    out = _torchrun(node0, node1)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "resuming from" in out.stdout + out.stderr
    report = json.loads((node0 / "reports" / "train.json").read_text())
    assert report["steps"] == 6 and report["resumed_from_step"] == resumed_at > 0
