"""Photos in: ingest the drop folder, version data/raw with DVC, and (fresh clone only) the sample set.

    from landmark_lora.retrain.intake import ingest_photos, render_sample_if_empty
    summary = ingest_photos(params)                 # data/incoming -> data/raw | data/quarantine, then `dvc add`
    landmark-lora ingest [--no-dvc-add]             # the same function, from the CLI
    render_sample_if_empty(params)                  # synthetic photos, only where sample_data_refusal allows

The one "ingest, then `dvc add data/raw`" path, for the flow and `landmark-lora ingest` alike.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from landmark_lora import registry
from landmark_lora.artifacts import Layout
from landmark_lora.config import Params
from landmark_lora.retrain.dvc import dvc_add_raw
from landmark_lora.retrain.errors import Log, say


@dataclass
class IngestSummary:
    accepted: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    versioned: bool = False
    rejections_csv: str = ""
    left: int = 0  # still arriving: stay in the drop folder for the next run

    def to_dict(self) -> dict:
        return asdict(self)


def ingest_photos(params: Params, log: Log = say, progress: bool | None = False, dvc_add: bool = True) -> IngestSummary:
    """Ingest the drop folder; if photos were accepted, `dvc add` data/raw (unless ``dvc_add`` is
    False or params.ingest.dvc_add is off). ``progress``: None shows a bar on a terminal."""
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.ops.ingest import ingest

    report = ingest(params, load_catalogue(params.catalogue), progress=progress)
    log(report.summary(params.paths.quarantine))
    summary = IngestSummary(
        accepted=len(report.accepted),
        rejected=list(report.rejected),
        reasons=dict(Counter(report.reasons()).most_common()),
        resumed=report.resumed,
        left=len(report.left),
        rejections_csv=str(Layout.of(params).rejections_csv) if report.rejected else "",
    )
    if report.accepted and params.ingest.dvc_add and dvc_add:
        summary.versioned = version_raw(params.paths.raw, log)
    return summary


def version_raw(raw: Path, log: Log = say) -> bool:
    """Version the raw photo set: `dvc add` writes data/raw.dvc (commit it) and caches the files."""
    if not dvc_add_raw(raw):
        log(f"ingest: not a DVC repo here; {raw} is not versioned (run `dvc init` to version it)")
        return False
    log(f"ingest: versioned {raw} with DVC ({raw}.dvc); `dvc push` sends it to the remote")
    return True


def sample_data_refusal(params: Params) -> str | None:
    """Why the synthetic sample set must not be rendered here, or None when it may.

    Synthetic photos are for the embedded default in a fresh clone only. Never over a dataset
    that exists elsewhere (``data/raw.dvc``: `dvc pull` may just have failed) or next to a real
    champion (it would be rescored on synthetic val data and could be replaced)."""
    raw = Path(params.paths.raw)
    dvc_file = raw.parent / f"{raw.name}.dvc"
    if dvc_file.exists():
        return f"{dvc_file} exists: the photos are versioned by DVC; run `dvc pull` instead"
    try:
        champion = registry.alias(registry.client(params), params.promotion.registered_model, registry.CHAMPION)
    except Exception as err:  # cannot tell: do not risk it
        return f"could not check the MLflow registry for a champion ({type(err).__name__}: {err})"
    if champion is not None:
        return (f"'{params.promotion.registered_model}' has a champion (version {champion.version}) trained on "
                "real photos")
    return None


def render_sample_if_empty(params: Params, log: Log = say) -> int:
    """Fresh clone: render the synthetic sample set into the drop folder. Returns photos rendered.

    Renders nothing when there are photos, or when sample_data_refusal says no (and says why)."""
    from landmark_lora import rawtable
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.ops.ingest import pending_photos
    from landmark_lora.synthetic.render import render_sample_set

    if rawtable.read_rows(params.paths.raw) or pending_photos(params.paths.incoming):
        return 0
    refusal = sample_data_refusal(params)
    if refusal:
        log(f"no photos here, and no synthetic sample set either: {refusal}")
        return 0
    log("no photos yet: rendering the synthetic sample set (landmark-lora sample-data)")
    return render_sample_set(Path(params.paths.incoming), load_catalogue(params.catalogue), params.sample_data)
