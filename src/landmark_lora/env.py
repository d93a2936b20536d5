"""The process environment the pipeline runs in: offline and quiet by default.

    from landmark_lora.env import apply_offline_defaults, pin_threads, venv_env
    apply_offline_defaults()                       # at an entry point: os.environ, setdefault only
    pin_threads(params.train.threads)              # torch.set_num_threads; None = torch's default
    subprocess.run(["dvc", "repro"], env=venv_env())   # a child that runs `landmark-lora ...`

The one owner of these defaults: the CLI entry, the training entry point (torchrun / accelerate)
and every subprocess env the package builds go through here. An explicit setting in the
environment always wins (``HF_HUB_OFFLINE=0 landmark-lora train`` may download a base model).
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

# No network at run time and no usage analytics. MLflow reads DO_NOT_TRACK only when it is the
# string "true", so its own switch is set as well.
OFFLINE_DEFAULTS: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def offline_defaults() -> dict[str, str]:
    """A copy of the defaults (variable -> value), e.g. for a Dockerfile check or a test."""
    return dict(OFFLINE_DEFAULTS)


def apply_offline_defaults(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set each default in ``env`` (``os.environ`` when None) unless it is already set; returns ``env``."""
    target: MutableMapping[str, str] = os.environ if env is None else env
    for key, value in OFFLINE_DEFAULTS.items():
        target.setdefault(key, value)
    return target


def venv_env() -> dict[str, str]:
    """A copy of this environment with this interpreter's bin/ first on PATH (dvc.yaml's
    `landmark-lora ...` commands resolve to this install) and the offline defaults applied."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    apply_offline_defaults(env)
    return env


def pin_threads(threads: int | None) -> int:
    """``torch.set_num_threads(threads)`` (``train.threads`` / ``eval.threads``); None leaves torch's
    default. Returns the count in effect. On a shared 2-core machine torch's default of one thread
    per core trained 10x slower: a descheduled OpenMP thread stalls the other at every barrier."""
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 or None, not {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc), or None where that cannot be read. The
    retrain flow reports it as its start-up time: imports, Prefect's server, until the flow body."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(after_name[19])  # field 22, starttime, in clock ticks since boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return round(uptime - started_ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None


def project_root() -> Path:
    """The folder relative project paths live under (the MLflow store, the built tiny base):
    ``DVC_ROOT`` when a DVC stage runs (DVC sets it for every stage command; in a queued or
    ``--temp`` experiment it names the project, not the throw-away copy the stage runs in), else
    the working directory (where params.yaml is)."""
    root = os.environ.get("DVC_ROOT")
    return Path(root).resolve() if root and Path(root).is_dir() else Path.cwd().resolve()
