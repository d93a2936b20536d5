"""Who writes reports/retrain.html: the flow's write_report, `landmark-lora report`, and the MLflow run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml
from report_fixtures import external_refs, make_state

from landmark_lora.retrain.report import write_report


def _params(make_params, tmp_path, reports, quarantine, **extra):
    return make_params(tmp_path, paths={"reports": str(reports), "quarantine": str(quarantine),
                                        "incoming": str(tmp_path / "in"), "raw": str(tmp_path / "raw")}, **extra)


def test_write_report_also_writes_the_html_page(tmp_path, make_params):
    outcome, reports, quarantine = make_state(tmp_path, "validation_failed")
    params = _params(make_params, tmp_path, reports, quarantine)
    write_report(outcome, params, "# retrain: failed\n")
    page = (reports / "retrain.html").read_text(encoding="utf-8")
    assert "FAILED at stage &#x27;validate&#x27;" in page and external_refs(page) == []


def test_report_command_rebuilds_the_page_from_the_files(tmp_path):
    outcome, reports, quarantine = make_state(tmp_path, "rejected")
    (reports / "retrain.json").write_text(json.dumps(outcome))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"paths": {
        "reports": str(reports), "quarantine": str(quarantine), "incoming": str(tmp_path / "in"),
        "raw": str(tmp_path / "raw"), "processed": str(tmp_path / "processed"), "cache": str(tmp_path / "c")}}))
    done = subprocess.run([sys.executable, "-m", "landmark_lora.cli", "--params", str(tmp_path / "params.yaml"),
                           "report"], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert "report: trained:" in done.stdout and str(reports / "retrain.html") in done.stdout
    assert "REJECTED: version 2" in (reports / "retrain.html").read_text(encoding="utf-8")


def test_the_page_is_logged_to_the_training_run(tmp_path, make_params, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    outcome, reports, quarantine = make_state(tmp_path, "first_run")
    params = _params(make_params, tmp_path, reports, quarantine,
                     mlflow={"tracking_uri": f"sqlite:///{tmp_path}/m.db", "artifact_location": str(tmp_path / "art"),
                             "system_metrics": False})
    from landmark_lora.tracking import configure

    exp = configure(params.mlflow)
    run_id = mlflow.MlflowClient().create_run(exp).info.run_id
    said: list[str] = []
    from landmark_lora.retrain.report_html import write_html_report

    write_html_report({**outcome, "mlflow_run_id": run_id}, params, log=said.append)
    assert said == []
    names = [a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "report")]
    assert names == ["report/retrain.html"]
    assert os.path.getsize(tmp_path / "art" / run_id / "artifacts" / "report" / "retrain.html") > 1000
