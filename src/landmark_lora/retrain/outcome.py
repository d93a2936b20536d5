"""What one retrain run did, typed; ``to_dict()`` is reports/retrain.json and the flow's return value.

    from landmark_lora.retrain.outcome import Outcome, Photos
    outcome = Outcome(flow_run_id="…", workdir="/srv/landmark-lora")
    outcome.finish("skipped", "skipped: 0 new photo(s) …")
    outcome.to_dict()["status"]                         # "skipped"; reports/retrain.json keeps these keys

Statuses: ``trained`` (pipeline ran, promote judged), ``up_to_date`` (nothing stale), ``skipped``
(too few new photos), ``busy`` (another retrain held the lock), ``failed`` (a stage or promote).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Literal

from landmark_lora.retrain.intake import IngestSummary

Status = Literal["trained", "up_to_date", "skipped", "busy", "failed"]
# Runs that got as far as the registry say which version is champion, even when it is none (null).
_CHAMPION_KNOWN = ("trained", "up_to_date", "failed")


def skip_reason(untrained: int, min_new_photos: int) -> str:
    """Why a run with too few new photos trains nothing (the flow's and the quick check's words)."""
    return (f"skipped: {untrained} new photo(s) to train on, fewer than min_new_photos={min_new_photos}; "
            "nothing trained, no MLflow run (force=True runs the pipeline anyway)")


@dataclass
class Photos:
    pending: int = 0  # in the drop folder when the run started
    ingest: IngestSummary = field(default_factory=IngestSummary)
    untrained: int = 0  # accepted photos no finished run had trained on


@dataclass
class Failure:
    stage: str  # a dvc.yaml stage, "dvc", or "promote"
    cause: str
    transient: bool  # retried (network, lock) or not (a hard failure)
    details: str = ""


@dataclass
class Outcome:
    flow_run_id: str | None = None
    workdir: str = ""
    status: Status | None = None
    reason: str = ""
    waited_for_lock_s: float | None = None
    photos: Photos | None = None
    stages_run: list[str] | None = None
    repro_log: str | None = None
    mlflow_run_id: str | None = None
    decision: str | None = None  # promoted | rejected | unchanged
    decision_reason: str | None = None
    challenger_version: str | None = None
    champion: str | None = None
    failure: Failure | None = None
    # Seconds per phase, in the order they ran: start-up, detect, ingest, dvc:<stage> (each stage
    # dvc ran), dvc (DVC's own work around them), promote, report.
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the block's wall time to ``timings[phase]`` (also when it raises)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = round(self.timings.get(phase, 0.0) + time.perf_counter() - t0, 2)

    def finish(self, status: Status, reason: str, **fields) -> Outcome:
        """Set the final status and reason (and any other field); returns self."""
        for key, value in fields.items():
            if not hasattr(self, key):
                raise AttributeError(f"Outcome has no field {key!r}")
            setattr(self, key, value)
        self.status, self.reason = status, reason
        return self

    def to_dict(self) -> dict:
        """The JSON form: only what this run got to (a skipped run has no stages_run, no champion)."""
        out = {k: v for k, v in asdict(self).items() if v is not None or k == "flow_run_id"}
        if self.status in _CHAMPION_KNOWN:
            out["champion"] = self.champion
        return out
