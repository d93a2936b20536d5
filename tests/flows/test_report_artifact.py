"""The Prefect artifact `retrain-report` links to the offline page reports/retrain.html."""

from __future__ import annotations

import json

import yaml
from report_fixtures import make_state  # tests/report_fixtures.py


def test_publish_report_writes_the_page_and_the_artifact_links_to_it(tmp_path, retrain_module, monkeypatch):
    from prefect import flow
    from prefect.client.orchestration import get_client

    outcome, reports, quarantine = make_state(tmp_path, "failed_train")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"paths": {
        "reports": str(reports), "quarantine": str(quarantine), "incoming": str(tmp_path / "in"),
        "raw": str(tmp_path / "raw"), "processed": str(tmp_path / "processed"), "cache": str(tmp_path / "c")}}))
    monkeypatch.chdir(tmp_path)

    @flow
    def publish() -> dict:
        return retrain_module.publish_report(json.loads(json.dumps(outcome)), "params.yaml")

    assert publish()["report"] == str(reports / "retrain.md")
    page = reports / "retrain.html"
    assert "FAILED at stage &#x27;train&#x27;" in page.read_text(encoding="utf-8")
    with get_client(sync_client=True) as client:
        found = [a for a in client.read_latest_artifacts() if a.key == "retrain-report"]
    assert found and f"]({page.resolve().as_uri()})" in str(found[0].data)
    assert str(found[0].data) == (reports / "retrain.md").read_text(encoding="utf-8")  # the same markdown


def test_the_flow_run_logs_show_the_report_lines(tmp_path, retrain_module):
    """The steps log (landmark_lora loggers, not print): the flow run's Prefect logs still hold them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"ingest": {"dvc_add": False}}), encoding="utf-8")
    state = retrain_module.retrain(workdir=str(tmp_path), sample_if_empty=False, return_state=True)
    assert state.is_completed(), state.message
    APILogWorker.drain_all()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    lines = [entry.message for entry in logs]
    assert any(line.startswith("detect: 0 photo(s) in the drop folder") for line in lines), lines
    assert any(line.startswith("skipped: 0 new photo(s) to train on") for line in lines), lines
