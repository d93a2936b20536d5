"""Training checkpoints: the run key, atomic writes, and the resume point every rank agrees on.

    from landmark_lora.diffusion.checkpoints import run_key, save_checkpoint, shared_resume_point
    run_dir = layout.train_runs / run_key(params, identity)      # .cache/train/<key>
    save_checkpoint(accelerator, run_dir, step, {"step": step, ...}, keep=2)   # every rank calls it
    path = shared_resume_point(accelerator, params, run_dir)     # rank 0 picks, all ranks check

A checkpoint is written as ``.checkpoint-<step>.tmp``, its ``state.json`` last, fsynced, then
renamed to ``checkpoint-<step>``: a crash never leaves one that looks complete. Only rank 0
writes; on several nodes ``run_dir`` must be on storage they share (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from landmark_lora import fsutil
from landmark_lora.config import Params


def run_key(params: Params, data_fingerprint: str) -> str:
    t = params.train.model_dump(mode="json")
    for volatile in ("resume", "num_workers", "eval_every", "checkpoint_every", "checkpoints_keep"):
        t.pop(volatile, None)
    blob = json.dumps({"train": t, "lora": params.lora.model_dump(mode="json"), "base": params.model.base,
                       "data": data_fingerprint}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints whose state.json exists (it is written last, before the rename), oldest first."""
    found = [p for p in run_dir.glob("checkpoint-*") if (p / "state.json").exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def find_resume(params: Params, run_dir: Path) -> Path | None:
    mode = params.train.resume
    if mode == "never":
        return None
    if mode == "auto":
        done = complete_checkpoints(run_dir)
        return done[-1] if done else None
    path = Path(mode)
    if not (path / "state.json").exists():
        raise FileNotFoundError(f"train.resume: {path} is not a complete checkpoint (no state.json)")
    return path


class CheckpointNotShared(RuntimeError):
    """A rank cannot read the checkpoint rank 0 resumes from (multi-node without shared storage)."""


def _resume_problem(accelerator, path: Path | None, sha256: str) -> str:
    """'' when this rank reads the same state.json as rank 0, else what is wrong, naming host and path."""
    import socket

    if path is None or accelerator.is_main_process:
        return ""
    where = f"rank {accelerator.process_index} on {socket.gethostname()} (cwd {Path.cwd()})"
    try:
        if hashlib.sha256((path / "state.json").read_bytes()).hexdigest() != sha256:
            return f"{where} sees a different {path / 'state.json'} than rank 0"
    except OSError as err:
        return f"{where} cannot read {path / 'state.json'} ({err.strerror or err})"
    return ""


def shared_resume_point(accelerator, params: Params, run_dir: Path) -> Path | None:
    """The checkpoint every rank resumes from: rank 0 chooses it and broadcasts its path.

    Only rank 0 writes checkpoints, so a rank on another node finds it only when ``run_dir``
    is on storage all nodes share. Each rank checks that it reads the same ``state.json`` as
    rank 0; if one cannot, every rank raises CheckpointNotShared naming the path, instead of
    some ranks starting at step 0 while rank 0 resumes."""
    n = accelerator.num_processes
    choice: list[dict | None] = [None]
    if accelerator.is_main_process:
        try:
            found = find_resume(params, run_dir)
            digest = hashlib.sha256((found / "state.json").read_bytes()).hexdigest() if found else ""
            choice = [{"path": str(found) if found else None, "sha256": digest}]
        except (OSError, ValueError) as err:  # say it on every rank, not only on rank 0
            choice = [{"error": f"{type(err).__name__}: {err}"}]
    if n > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(choice, from_process=0)
    pick = choice[0] or {}
    if pick.get("error"):
        raise FileNotFoundError(pick["error"])
    path = Path(pick["path"]) if pick.get("path") else None
    problems = [_resume_problem(accelerator, path, pick.get("sha256", ""))]
    if n > 1:
        from accelerate.utils import gather_object

        problems = gather_object(problems)
    problems = [p for p in problems if p]
    if problems:
        raise CheckpointNotShared(
            f"train: rank 0 resumes from checkpoint {path}, but " + "; ".join(problems) + ". Only rank 0 "
            f"writes checkpoints, so for a multi-node run {run_dir.parent} must be on storage every node shares "
            "(NFS, a shared volume; docs/deploy.md, 'Several nodes'). Or start over with --set train.resume=never.")
    return path


def save_checkpoint(accelerator, run_dir: Path, step: int, state: dict, keep: int) -> None:
    """Write ``run_dir/checkpoint-<step>`` atomically (all ranks call this); keep the newest ``keep``."""
    main = accelerator.is_main_process
    final = run_dir / f"checkpoint-{step}"
    tmp = run_dir / f".checkpoint-{step}.tmp"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if main:
        fsutil.write_json_atomic(tmp / "state.json", state, newline=False)
        fsutil.fsync_tree(tmp)  # the rename below must never expose a checkpoint whose bytes are not on disk
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        fsutil.fsync_dir(run_dir)
        for old in complete_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
