"""The retrain report's time split: the loops are what the trainer and the scorer timed themselves."""

from __future__ import annotations

import json

from landmark_lora.config import parse_params
from landmark_lora.retrain.report import time_split

TIMINGS = {"start-up": 5.0, "dvc:train": 20.0, "dvc:evaluate": 30.0, "promote": 10.0, "report": 1.0}


def _reports(root, train: dict, evaluation: dict, promotion: dict) -> None:
    (root / "reports").mkdir()
    for name, data in (("train", train), ("eval", evaluation), ("promotion", promotion)):
        (root / "reports" / f"{name}.json").write_text(json.dumps(data))


def test_loops_are_the_training_loop_and_the_generation_loops(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _reports(tmp_path, {"steps": 10, "seconds_per_step": 0.5, "loop_seconds": 7.5},
             {"seconds": {"generation_loops": 3.25, "pipeline_load": 9.0}},
             {"previous_champion": {"rescored": True, "metrics": {"seconds": {"generation_loops": 2.0}}}})
    params = parse_params({})
    # promote scored the champion again in this run: its generation is a loop too
    assert time_split({"timings": TIMINGS, "decision": "promoted"}, params) == {
        "total_s": 65.0, "loops_s": 12.75, "overhead_s": 52.25}
    assert time_split({"timings": TIMINGS}, params)["loops_s"] == 10.75  # no promote in this run
    # a stage that did not run in this run: its (older) report does not count
    assert time_split({"timings": {"start-up": 2.0, "dvc:evaluate": 30.0}}, params)["loops_s"] == 3.25


def test_reports_without_loop_times_fall_back_to_steps_and_the_evaluate_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _reports(tmp_path, {"steps": 10, "seconds_per_step": 0.5}, {}, {})
    assert time_split({"timings": TIMINGS}, parse_params({}))["loops_s"] == 35.0  # 10 x 0.5 + the whole stage
