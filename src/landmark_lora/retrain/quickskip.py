"""The skip path of `landmark-lora run` without Prefect: nothing new, so nothing to orchestrate.

    from landmark_lora.retrain.quickskip import quick_skip
    public = quick_skip(params, min_new_photos=1)   # the published outcome (status "skipped"), or None

Before it starts Prefect (its import, the database, a temporary server: most of a skipped run's
time), `landmark-lora run` asks the same questions the flow's first steps ask, from files alone
(retrain/detect.py): photos in the drop folder? accepted photos no finished run trained on? a
finished run promote never judged? When the answer is no to all three, it writes the same
report the flow would (reports/retrain.json, .md, .html, status ``skipped``), with no Prefect
flow run. In every other case, and when another retrain holds the lock, it returns None and the
flow runs as before (it waits or skips by ``--if-busy``, ingests, trains). An empty workspace
(no photos at all) also goes to the flow: it renders the sample set there, or says why not.
A deployment (prefect.yaml) always runs the flow: this is the one-off command's shortcut only.
"""

from __future__ import annotations

from pathlib import Path

from landmark_lora.config import Params
from landmark_lora.env import process_age_s
from landmark_lora.locking import LockBusy, lock_path, pipeline_lock
from landmark_lora.retrain.detect import detect
from landmark_lora.retrain.errors import say
from landmark_lora.retrain.outcome import Outcome, Photos, skip_reason
from landmark_lora.retrain.report import publish

NOTE = "; nothing new, so Prefect was not started (no flow run)"


def quick_skip(params: Params, min_new_photos: int) -> dict | None:
    """The published outcome of a skipped run when there is nothing to do, else None (run the flow)."""
    outcome = Outcome(flow_run_id=None, workdir=str(Path.cwd().resolve()))
    startup = process_age_s()
    if startup is not None:
        outcome.timings["start-up"] = startup
    try:
        with pipeline_lock(lock_path(params), wait_s=0.0, owner="landmark-lora run (quick check)"):
            with outcome.timed("detect"):
                found = detect(params)
            if found.pending or not found.has_data or found.unpromoted_run or found.untrained >= min_new_photos:
                return None
            say(f"detect: {found.describe()}")
            outcome.photos = Photos(0, untrained=found.untrained)
            outcome.finish("skipped", skip_reason(found.untrained, min_new_photos) + NOTE)
            say(outcome.reason)
            with outcome.timed("report"):
                public, _ = publish(outcome, params)
    except LockBusy:  # another retrain runs: the flow waits or skips, and says so
        return None
    return public
