"""The on-disk contract: Layout agrees with dvc.yaml, typed readers name the broken file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from landmark_lora.artifacts import (
    EvalReport,
    Layout,
    ProcessedRecord,
    TrainReport,
    data_version,
    read_records,
    write_records,
)
from landmark_lora.config import load_params
from landmark_lora.locking import lock_path

REPO = Path(__file__).resolve().parents[1]


def _record(name: str = "a.png") -> ProcessedRecord:
    return ProcessedRecord(file_name=name, text="lmksnap, gyeongbokgung", landmark="gyeongbokgung", shot="full-body",
                           angle="front", pose="standing", width=56, height=72, sha256="ab" * 32,
                           raw_file="gyeongbokgung/a.jpg", person_box=True)


def test_layout_defaults_are_the_paths_dvc_yaml_declares():
    layout = Layout.of(load_params(REPO / "params.yaml"))
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]

    def declared(stage: str, kind: str) -> set[str]:
        return {next(iter(o)) if isinstance(o, dict) else o for o in stages[stage].get(kind, [])}

    assert str(layout.processed) in declared("preprocess", "outs")
    assert str(layout.latents) in declared("cache_latents", "outs")
    assert str(layout.adapter_dir) in declared("train", "outs")
    assert str(layout.train_json) in declared("train", "metrics")
    assert str(layout.eval_json) in declared("evaluate", "metrics")
    assert str(layout.validation_json) in declared("validate", "metrics")
    assert str(layout.preprocess_json) in declared("preprocess", "metrics")
    assert str(layout.samples) in declared("evaluate", "outs")
    assert str(layout.raw) in declared("validate", "deps")
    # the plate library and the person regions live inside preprocess's out (DVC outs may not overlap)
    for path in (layout.plates_dir, layout.plates_index, layout.person_regions):
        assert layout.processed in path.parents
    assert str(layout.processed) in declared("evaluate", "deps")  # composite scoring reads them


def _layout(tmp: Path, **paths: Path) -> Layout:
    params = load_params(REPO / "params.yaml")
    data = params.model_dump()
    data["paths"].update({k: str(v) for k, v in paths.items()})
    return Layout.of(type(params).model_validate(data))


def test_layout_follows_params_paths(tmp_path):
    layout = _layout(tmp_path, processed=tmp_path / "proc", latents=tmp_path / "lat", raw=tmp_path / "photos")
    assert layout.metadata("val") == tmp_path / "proc" / "val" / "metadata.jsonl"
    assert layout.latents_index == tmp_path / "lat" / "index.json"
    assert layout.plates_index == tmp_path / "proc" / "plates" / "index.json"
    assert layout.person_regions == tmp_path / "proc" / "person_regions.json"
    assert layout.raw_dvc == tmp_path / "photos.dvc"


def test_ingest_files_and_the_lock_follow_params_paths(tmp_path):
    params = load_params(REPO / "params.yaml")
    data = params.model_dump()
    data["paths"].update(incoming=str(tmp_path / "drop"), raw=str(tmp_path / "d" / "photos"),
                         quarantine=str(tmp_path / "q"), cache=str(tmp_path / "c"))
    params = type(params).model_validate(data)
    layout = Layout.of(params)
    assert layout.raw_table == tmp_path / "d" / "photos" / "metadata.csv"
    assert layout.rejections_csv == tmp_path / "q" / "rejections.csv"
    assert layout.incoming_manifest == tmp_path / "drop" / "metadata.csv"
    assert layout.manifest_archive == tmp_path / "d" / "manifests"
    assert lock_path(params) == layout.lock == tmp_path / "c" / "retrain.lock"


def test_one_data_hash_whoever_asks(tmp_path):
    layout = _layout(tmp_path, processed=tmp_path / "proc")
    write_records(layout, "val", [_record()])
    assert Layout.of_processed(tmp_path / "proc").metadata("val") == layout.metadata("val")
    assert data_version(Layout.of_processed(tmp_path / "proc")) == data_version(layout)


def test_records_round_trip_and_set_the_data_version(tmp_path):
    layout = _layout(tmp_path, processed=tmp_path)
    empty = data_version(layout)
    write_records(layout, "train", [_record("a.png"), _record("b.png")])
    assert [r.file_name for r in read_records(layout, "train")] == ["a.png", "b.png"]
    assert read_records(layout, "val") == []
    first = data_version(layout)
    assert first != empty
    write_records(layout, "train", [_record("a.png")])
    assert data_version(layout) != first


def test_a_broken_row_names_file_and_line(tmp_path):
    layout = _layout(tmp_path, processed=tmp_path)
    good = json.dumps(_record().to_json())
    bad = json.loads(good)
    del bad["shot"]
    layout.metadata("train").parent.mkdir(parents=True)
    layout.metadata("train").write_text(good + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"metadata.jsonl:2: a row lacks shot; rerun `dvc repro preprocess`"):
        read_records(layout, "train")
    layout.metadata("train").write_text("{not json\n")
    with pytest.raises(ValueError, match=r"metadata.jsonl:1: not JSON"):
        read_records(layout, "train")


def test_reports_keep_unknown_keys_and_type_the_shared_ones(tmp_path):
    path = tmp_path / "train.json"
    TrainReport(mlflow_run_id="r1", data_version="abc", steps=5, extra={"final_loss": 0.5}).write(path)
    again = TrainReport.read(path)
    assert (again.mlflow_run_id, again.steps, again.get("final_loss")) == ("r1", 5, 0.5)
    assert json.loads(path.read_text())["final_loss"] == 0.5
    assert TrainReport.read(tmp_path / "missing.json").mlflow_run_id is None

    ev = EvalReport.from_dict({"mlflow_run_id": "r1", "eval_loss": 0.2, "landmark_accuracy": True})
    assert ev.metric("eval_loss") == 0.2 and ev.metric("landmark_accuracy") is None
    assert ev.scores_run("r1") and not ev.scores_run("r2")
    (tmp_path / "eval.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="eval.json: expected a JSON object"):
        EvalReport.read(tmp_path / "eval.json")
