"""The on-disk contract: every path a stage reads or writes, and the typed files stages hand on.

    from landmark_lora.artifacts import Layout, read_records, TrainReport
    layout = Layout.of(params)
    layout.metadata("train")                 # data/processed/train/metadata.jsonl
    rows = read_records(layout, "train")     # list[ProcessedRecord]
    report = TrainReport.read(layout.train_json)
    report.mlflow_run_id, report.data_version

One owner per path: a stage that needs a file another stage wrote asks ``Layout`` for it and reads it through
the typed reader here, so a file name is spelled once in ``src/``. Defaults = ``dvc.yaml``'s ``outs`` (tested).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from landmark_lora import fsutil
from landmark_lora.config import Params, PathsConfig
from landmark_lora.labels import MANIFEST

SPLITS = ("train", "val")
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "pytorch_lora_weights.safetensors"
TOKEN_EMBEDDINGS = "token_embeddings.safetensors"  # lora.train_token_embeddings: beside the LoRA
RAW_TABLE = "metadata.csv"
REJECTIONS = "rejections.csv"
METADATA = "metadata.jsonl"
PLATES_DIR = "plates"
PLATES_INDEX = "index.json"
PERSON_REGIONS = "person_regions.json"
LOCK = "retrain.lock"
MLFLOW_EVAL_JSON = "eval/eval.json"  # the evaluation in the training run's MLflow artifacts (evaluate -> reproduce)


@dataclass(frozen=True)
class Layout:
    """Where everything lives, from ``params.paths`` and ``params.model.dir``."""

    incoming: Path
    raw: Path
    quarantine: Path
    processed: Path
    latents: Path
    reports: Path
    cache: Path
    models: Path

    @classmethod
    def of(cls, params: Params) -> Layout:
        p = params.paths
        return cls(incoming=Path(p.incoming), raw=Path(p.raw), quarantine=Path(p.quarantine),
                   processed=Path(p.processed), latents=Path(p.latents), reports=Path(p.reports),
                   cache=Path(p.cache), models=Path(params.model.dir))

    @classmethod
    def of_processed(cls, processed: str | Path) -> Layout:
        """The default layout with ``processed`` moved there: for helpers handed only that folder
        (``classifier.calibrated_classifiers(processed, ...)``); its other paths are the defaults."""
        return cls.of(Params(paths=PathsConfig(processed=Path(processed))))

    # --- the drop folder (the sample renderer or a person -> ingest)
    @property
    def incoming_manifest(self) -> Path:
        """The labels manifest beside the dropped photos (``landmark_lora.labels``)."""
        return self.incoming / MANIFEST

    @property
    def manifest_archive(self) -> Path:
        """Where ingest keeps each fully used labels manifest, beside the raw folder (``data/manifests``)."""
        return self.raw.parent / "manifests"

    # --- raw data (ingest -> validate, preprocess)
    @property
    def raw_table(self) -> Path:
        return self.raw / RAW_TABLE

    @property
    def rejections_csv(self) -> Path:
        """Ingest's record of every rejected file and why (``data/quarantine/rejections.csv``)."""
        return self.quarantine / REJECTIONS

    @property
    def raw_dvc(self) -> Path:
        """DVC's pointer file for the raw photos, beside the folder (``data/raw.dvc``)."""
        return self.raw.with_name(self.raw.name + ".dvc")

    # --- preprocess -> cache_latents, train, evaluate
    def split_dir(self, split: str) -> Path:
        return self.processed / split

    def metadata(self, split: str) -> Path:
        return self.processed / split / METADATA

    # --- preprocess -> composite generation (generate, serving, evaluate)
    @property
    def plates_dir(self) -> Path:  # the plate library: <plates_dir>/<landmark>/<angle>/<name>.png, in data/processed
        return self.processed / PLATES_DIR

    @property
    def plates_index(self) -> Path:
        return self.plates_dir / PLATES_INDEX

    @property
    def person_regions(self) -> Path:  # per shot type: the train photos' median person box, normalised
        return self.processed / PERSON_REGIONS

    # --- cache_latents -> train, evaluate
    @property
    def latents_index(self) -> Path:
        return self.latents / "index.json"

    # --- train -> evaluate, promote
    @property
    def adapter_dir(self) -> Path:
        return self.models / ADAPTER_DIR

    @property
    def adapter_weights(self) -> Path:
        return self.adapter_dir / ADAPTER_WEIGHTS

    @property
    def token_embeddings(self) -> Path:
        return self.adapter_dir / TOKEN_EMBEDDINGS

    @property
    def train_runs(self) -> Path:  # per-run checkpoints for resume (on shared storage for multi-node training)
        return self.cache / "train"

    @property
    def prior_cache(self) -> Path:  # train.prior: the base's generated latents, one file per recipe
        return self.cache / "prior"

    @property
    def inductor_cache(self) -> Path:  # torch.compile's kernels (train.compile), reused by the next run
        return self.cache / "inductor"

    # --- reports
    @property
    def validation_json(self) -> Path:
        return self.reports / "validation.json"

    @property
    def validation_dir(self) -> Path:
        return self.reports / "validation"

    @property
    def preprocess_json(self) -> Path:
        return self.reports / "preprocess.json"

    @property
    def train_json(self) -> Path:
        return self.reports / "train.json"

    @property
    def plots(self) -> Path:
        return self.reports / "plots"

    @property
    def eval_json(self) -> Path:
        return self.reports / "eval.json"

    @property
    def eval_html(self) -> Path:
        return self.reports / "eval.html"

    @property
    def samples(self) -> Path:
        return self.reports / "samples"

    @property
    def promotion_json(self) -> Path:
        return self.reports / "promotion.json"

    @property
    def retrain_json(self) -> Path:
        return self.reports / "retrain.json"

    @property
    def retrain_md(self) -> Path:
        return self.reports / "retrain.md"

    @property
    def retrain_html(self) -> Path:
        return self.reports / "retrain.html"

    # --- caches and run-time state
    @property
    def preprocess_cache(self) -> Path:
        return self.cache / "preprocess"

    @property
    def validate_cache(self) -> Path:  # validate's facts per raw photo, keyed by its stat
        return self.cache / "validate" / "photo-facts.json"

    @property
    def lock(self) -> Path:
        return self.cache / LOCK

    @property
    def repro_log(self) -> Path:  # the full output of the last `dvc repro`
        return self.cache / "retrain" / "dvc-repro.log"


# ---------------------------------------------------------------- processed records (metadata.jsonl)


@dataclass(frozen=True)
class ProcessedRecord:
    """One row of ``<processed>/<split>/metadata.jsonl`` (Hugging Face imagefolder layout)."""

    file_name: str
    text: str
    landmark: str
    shot: str
    angle: str
    pose: str
    width: int
    height: int
    sha256: str
    raw_file: str
    person_box: bool
    # the detected person box normalised to this image (x0, y0, x1, y1 in 0..1); None = none found
    person: tuple[float, float, float, float] | None = None

    @classmethod
    def from_json(cls, row: Mapping[str, Any], where: str = METADATA) -> ProcessedRecord:
        names = [f.name for f in fields(cls)]
        optional = {"person"}
        missing = [n for n in names if n not in row and n not in optional]
        if missing:
            raise ValueError(f"{where}: a row lacks {', '.join(missing)}; rerun `dvc repro preprocess`")
        values = {n: row[n] for n in names if n in row}
        if values.get("person") is not None:
            values["person"] = tuple(float(v) for v in values["person"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_records(layout: Layout, split: str) -> list[ProcessedRecord]:
    """The split's rows, [] when preprocess has not written it; a broken row names file and line."""
    path = layout.metadata(split)
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(ProcessedRecord.from_json(json.loads(line), f"{path}:{n}"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc.msg}); rerun `dvc repro preprocess`") from exc
    return rows


def write_records(layout: Layout, split: str, records: Iterable[ProcessedRecord]) -> Path:
    path = layout.metadata(split)
    text = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)
    fsutil.write_text_atomic(path, text)
    return path


# ---------------------------------------------------------------- plates and person regions


@dataclass(frozen=True)
class PlateRecord:
    """One plate of ``<plates_dir>/index.json``: a background photo of a landmark from one angle."""

    landmark: str
    angle: str
    name: str
    file: str  # relative to plates_dir: <landmark>/<angle>/<name>.png
    width: int
    height: int
    raw_file: str
    sha256: str


def read_plates(layout: Layout) -> list[PlateRecord]:
    """The plate library's index; [] when preprocess has written none."""
    return read_plates_in(layout.plates_dir)


def read_plates_in(plates_dir: Path) -> list[PlateRecord]:
    """The index of a plate library folder (the workspace's, or a copy bundled with an MLflow model)."""
    path = Path(plates_dir) / PLATES_INDEX
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [PlateRecord(**row) for row in data["plates"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a plate index ({exc}); rerun `dvc repro preprocess`") from exc


def write_plates(layout: Layout, plates: Iterable[PlateRecord]) -> Path:
    rows = [asdict(p) for p in sorted(plates, key=lambda p: (p.landmark, p.angle, p.name))]
    fsutil.write_json_atomic(layout.plates_index, {"plates": rows}, indent=2, sort_keys=True)
    return layout.plates_index


def read_person_regions(layout: Layout | Path) -> dict[str, Any]:
    """``person_regions.json`` (of the layout, or at a path): {"shots": {shot: {"box", "spread", "count"}}, ...};
    {} when absent."""
    path = layout.person_regions if isinstance(layout, Layout) else Path(layout)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg}); rerun `dvc repro preprocess`") from exc
    if not isinstance(data, dict) or not isinstance(data.get("shots"), dict):
        raise ValueError(f"{path}: expected an object with 'shots'; rerun `dvc repro preprocess`")
    return data


def write_person_regions(layout: Layout, regions: Mapping[str, Any]) -> Path:
    fsutil.write_json_atomic(layout.person_regions, dict(regions), indent=2, sort_keys=True)
    return layout.person_regions


def data_version(layout: Layout) -> str:
    """Short content hash of the processed data both splits train and evaluate on, and of the plate
    library composite mode is scored on: the one data hash."""
    h = hashlib.sha256()
    for split in SPLITS:
        meta = layout.metadata(split)
        if meta.exists():
            h.update(meta.read_bytes())
    if layout.plates_index.exists():
        h.update(layout.plates_index.read_bytes())
    return h.hexdigest()[:12]


# ---------------------------------------------------------------- stage reports


@dataclass
class _Report:
    """A JSON report with the fields other modules rely on typed; every other key kept in ``extra``."""
    mlflow_run_id: str | None = None
    data_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Any:
        """The report at ``path``; an empty one when it does not exist yet."""
        if not Path(path).exists():
            return cls()
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg}); rerun the stage that writes it") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object; rerun the stage that writes it")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        typed = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: data[k] for k in typed if k in data}, extra={k: v for k, v in data.items() if k not in typed})

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"})
        return out

    def get(self, key: str, default: Any = None) -> Any:
        value = self.to_dict().get(key, default)
        return default if value is None else value

    def write(self, path: Path) -> Path:
        fsutil.write_json_atomic(path, self.to_dict(), indent=2, sort_keys=True)
        return path


@dataclass
class TrainReport(_Report):
    """``reports/train.json``: what ``train`` did (steps, losses) and the MLflow run that holds it."""
    steps: int | None = None
    eval_loss: float | None = None


@dataclass
class EvalReport(_Report):
    """``reports/eval.json``: the adapter's metrics against the base, for the run in ``mlflow_run_id``."""
    def metric(self, name: str) -> float | None:
        value = self.extra.get(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def scores_run(self, run_id: str | None) -> bool:
        """True when this evaluation scored ``run_id`` (or predates run ids)."""
        return self.mlflow_run_id in (None, run_id)
