"""`dvc repro` as one step of the retrain flow, and what its output says when it fails.

    from landmark_lora.retrain.dvc import run_dvc_repro, parse_dvc_failure
    result = run_dvc_repro(Path("."), flow_run_id=None)   # raises errors.StageFailed(stage, cause, transient)
    result.stages_run, result.log_path                    # the full output: Layout.repro_log
    dvc_add_raw(Path("data/raw"))                         # `dvc add` (writes data/raw.dvc); False outside a DVC repo

DVC decides which stages are stale and runs them; this module only starts it (with this venv
first on PATH, so dvc.yaml's `landmark-lora ...` commands are this install) and reads its output.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from landmark_lora.artifacts import Layout
from landmark_lora.config import Params
from landmark_lora.env import venv_env
from landmark_lora.exitcodes import EXIT_CONTRACT
from landmark_lora.retrain.errors import Log, StageFailed, is_transient_text, say


def dvc_add_raw(raw: Path) -> bool:
    """`dvc add data/raw` (writes data/raw.dvc). False when this is not a DVC repository."""
    if not Path(".dvc").is_dir():
        return False
    subprocess.run([sys.executable, "-m", "dvc", "add", "--quiet", str(raw)], check=True, env=venv_env())
    return True


@dataclass
class ReproResult:
    stages_run: list[str]
    log_path: str
    # Wall seconds per stage that ran, from its "Running stage" line to the next stage's (or the end).
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def up_to_date(self) -> bool:
        return not self.stages_run


_RUNNING = re.compile(r"^Running stage '([^']+)'")
_CLOCK = "\x00clock "  # a line no process prints: _repro_process's own time marks
_FAILED = re.compile(r"ERROR: failed to reproduce '([^']+)': (.*)")
_EXITED = re.compile(r"exited with (-?\d+)\b")
# Progress bars, warnings and libraries' own log lines ("[transformers] ... requires torchvision"):
# never the cause of a failure, so never its headline.
_NOISE = re.compile(r"(it/s\]|s/it\]|\d+%\|)|^\s*$|Warning|warnings.warn|^> |^\s+warn|Loading (weights|pipeline)"
                    r"|^\[(transformers|diffusers|accelerate|peft|torch)\] ")


def clean_line(line: str) -> str:
    # tqdm redraws with \r; keep the final state of the line.
    return line.rstrip("\n").split("\r")[-1].rstrip()


def broke_the_contract(dvc_error: str) -> bool:
    """DVC's "failed to run: landmark-lora validate, exited with 3": the CLI's EXIT_CONTRACT."""
    return any(int(code) == EXIT_CONTRACT for code in _EXITED.findall(dvc_error))


def parse_dvc_failure(output: str, returncode: int) -> StageFailed:
    """Name the failing stage and its cause from `dvc repro` output, and say if a retry may help."""
    lines = [clean_line(x) for x in output.splitlines()]
    failed = [m for m in (_FAILED.search(x) for x in lines) if m]
    if failed:
        stage, dvc_error = failed[-1].group(1), failed[-1].group(2).strip()
    else:
        running = [m.group(1) for m in (_RUNNING.match(x) for x in lines) if m]
        errors = [x.split("ERROR:", 1)[1].strip() for x in lines if "ERROR:" in x]
        stage, dvc_error = "dvc", errors[-1] if errors else f"dvc repro exited with {returncode}"
        if running and not errors:
            stage = running[-1]
    # The stage's own output: from its "Running stage" line to DVC's ERROR line.
    start = max((i for i, x in enumerate(lines) if _RUNNING.match(x) and f"'{stage}'" in x), default=0)
    end = next((i for i in range(len(lines) - 1, -1, -1) if "ERROR:" in lines[i]), len(lines))
    body = [x for x in lines[start + 1:end] if not _NOISE.search(x)]
    details = "\n".join(body[-25:] + [f"ERROR: {dvc_error}"])
    transient = not broke_the_contract(dvc_error) and is_transient_text("\n".join(body[-40:]) + "\n" + dvc_error)
    return StageFailed(stage, _headline(stage, body, dvc_error), transient, details, returncode)


def _headline(stage: str, body: list[str], dvc_error: str) -> str:
    """The one line that says why ``stage`` failed: the exception of a crash, else its first message."""
    trace_at = max((i for i, x in enumerate(body) if x.startswith("Traceback")), default=None)
    if trace_at is not None:  # a Python crash: the exception line is the cause
        exc_lines = [x for x in body[trace_at:] if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", x)]
        return exc_lines[-1] if exc_lines else dvc_error
    useful = [x.strip() for x in body if not re.match(rf"^{re.escape(stage)}: FAILED$", x.strip(), re.I)]
    headline = useful[0] if useful else dvc_error
    # the stage's bullet list says what exactly is wrong (e.g. which contract checks broke)
    bullets = [x for x in useful[1:] if x.startswith("- ")][:3]
    if bullets:
        headline = " ".join([headline.rstrip(".") + ":", "; ".join(b[2:] for b in bullets)])
    return headline


def _repro_process(workdir: Path, env: dict[str, str], on_line: Log) -> tuple[int, list[str]]:
    """Run `dvc repro` in ``workdir``; stream each line to ``on_line``. Returns (exit code, lines)."""
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1, errors="replace")
    lines: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = clean_line(raw)
        lines.append(line)
        if _RUNNING.match(line):
            lines.append(f"{_CLOCK}{time.monotonic():.3f}")  # when the stage started (dropped from the log)
        if line and not _NOISE.search(line):
            on_line(line)
    lines.append(f"{_CLOCK}{time.monotonic():.3f}")
    return proc.wait(), lines


def stage_seconds(lines: list[str]) -> dict[str, float]:
    """Wall seconds per stage from the clock marks _repro_process puts after each "Running stage"."""
    marks: list[tuple[str | None, float]] = []
    current: str | None = None
    for line in lines:
        running = _RUNNING.match(line)
        if running:
            current = running.group(1)
        elif line.startswith(_CLOCK):
            marks.append((current, float(line[len(_CLOCK):])))
    return {stage: round(marks[i + 1][1] - t, 2) for i, (stage, t) in enumerate(marks[:-1]) if stage}


def run_dvc_repro(workdir: Path, flow_run_id: str | None, log: Log = say, layout: Layout | None = None) -> ReproResult:
    """`dvc repro` as one step, with this venv first on PATH and the Prefect flow-run id in the
    environment (the train stage tags its MLflow run with it). Raises StageFailed.

    The full output goes to ``layout.repro_log`` under ``workdir`` (default: the default layout)."""
    env = venv_env()  # this install first on PATH, offline defaults
    if flow_run_id:
        env["PREFECT__FLOW_RUN_ID"] = str(flow_run_id)
    rc, marked = _repro_process(Path(workdir), env, log)
    lines = [x for x in marked if not x.startswith(_CLOCK)]
    log_path = Path(workdir) / (layout or Layout.of(Params())).repro_log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if rc:
        raise parse_dvc_failure("\n".join(lines), rc)
    stages = [m.group(1) for m in (_RUNNING.match(x) for x in lines) if m]
    return ReproResult(stages, str(log_path), stage_seconds(marked))
